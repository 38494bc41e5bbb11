//! The helper's request loop: one request, one reply, until the agent closes stdin.
//!
//! Every request names a keystore of the policy and a part of it; the path comes from the policy.
//! Writes need both the restore rule (`--restore` in the helper's fixed argv, i.e. the sudoers
//! line the operator chose to install) and `restore: true` for that keystore in the policy, and
//! run one at a time per policy (an exclusive `flock` on a file in the helper's root-only state
//! directory, with a deadline; tree reads take it shared, so they never see a swap half done).
//! What a request's header decides (keystore, kind, rule, policy, size) is decided before any of
//! its payload is read, and a refusal then ends the session: the payload is never read. A
//! malformed request ends the session too: after it the stream cannot be trusted to be in step.

use super::policy::{KeystorePolicy, Kind, Policy};
use super::proto::{self, ErrorKind, FrameError, Op, Part, Reply, Request, UploadRoot};
use super::record::{Journal, Phase, SwapRecord};
use super::resolve::{FsError, Resolver, fail, lstat_at, open_file_at, stat_of};
use super::users::Names;
use super::write::{Kernel, Want};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use zeroize::Zeroizing;

/// How long a write waits for another coldkeep restore on this node to finish.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// A running helper.
pub struct Server {
    /// The checked policy.
    pub policy: Policy,
    /// Its path (for messages).
    pub policy_path: String,
    /// The helper's state directory (lock, slot, swap records).
    pub state: super::state::State,
    /// Started under the restore rule.
    pub restore: bool,
    /// Path resolution.
    pub resolver: Resolver,
    /// Owner names.
    pub names: Names,
}

/// A failure that ends the session.
enum Stop {
    /// The stream is out of step or gone (a last error reply is attempted).
    Frame(FrameError),
    /// A request refused before its payload was read: the refusal was sent, and the bytes that
    /// follow it are not read (they could be large, or never come).
    Refused,
}

impl From<FrameError> for Stop {
    fn from(e: FrameError) -> Stop {
        Stop::Frame(e)
    }
}

fn flush_err(e: std::io::Error) -> Stop {
    Stop::Frame(FrameError::Io(e))
}

/// Sends `e` and ends the session (a request whose payload is not read).
fn refuse_payload(out: &mut dyn Write, e: FsError) -> Result<(), Stop> {
    proto::write_json(out, &error_reply(e)).map_err(flush_err)?;
    Err(Stop::Refused)
}

fn error_reply(e: FsError) -> Reply {
    Reply::Error {
        kind: e.kind,
        message: e.message,
        state: None,
    }
}

impl Server {
    /// Serves requests until the agent closes the stream (0), or a malformed request or a broken
    /// stream ends it (2, after a last error reply when the stream still takes one).
    pub fn serve(&mut self, input: &mut dyn Read, out: &mut dyn Write) -> i32 {
        loop {
            let result = match proto::read_json::<_, Request>(input) {
                Err(FrameError::Closed) => return 0,
                Err(e) => Err(Stop::Frame(e)),
                Ok(req) if req.v != proto::VERSION => {
                    let _ = proto::write_json(
                        out,
                        &Reply::Error {
                            kind: ErrorKind::BadRequest,
                            message: format!(
                                "this node helper speaks protocol version {} and the request is version {}: install \
                                 the same coldkeep version on the agent and the node",
                                proto::VERSION,
                                req.v
                            ),
                            state: None,
                        },
                    );
                    let _ = out.flush();
                    return 2;
                }
                Ok(req) => self.handle(req.op, input, out),
            };
            match result.and_then(|()| out.flush().map_err(flush_err)) {
                Ok(()) => {}
                Err(Stop::Refused) => {
                    let _ = out.flush();
                    return 2;
                }
                Err(Stop::Frame(e)) => {
                    eprintln!("coldkeep node-helper: {e}");
                    let _ = proto::write_json(
                        out,
                        &Reply::Error {
                            kind: ErrorKind::BadRequest,
                            message: format!("bad request, session ended: {e}"),
                            state: None,
                        },
                    );
                    let _ = out.flush();
                    return 2;
                }
            }
        }
    }

    fn keystore(&self, name: &str) -> Result<&KeystorePolicy, FsError> {
        self.policy.keystore(name).ok_or_else(|| {
            fail(
                ErrorKind::NotAllowed,
                format!(
                    "keystore `{name}` is not in the node's policy {}",
                    self.policy_path
                ),
            )
        })
    }

    /// The path the policy gives for `part` of `keystore`.
    fn locate(&self, keystore: &str, part: Part) -> Result<(KeystorePolicy, String), FsError> {
        let ks = self.keystore(keystore)?.clone();
        let parent = |p: &str| super::resolve::split(p).map(|(d, _)| d.to_string());
        let not_listed = |what: &str| {
            fail(
                ErrorKind::NotAllowed,
                format!(
                    "the node's policy {} lists no {what} for keystore `{}`",
                    self.policy_path, ks.name
                ),
            )
        };
        let path = match part {
            Part::Key => ks.path.clone(),
            Part::KeyDir => parent(&ks.path)?,
            Part::Public => ks.public_path.clone().ok_or_else(|| not_listed("public_path"))?,
            Part::PublicDir => parent(
                ks.public_path
                    .as_deref()
                    .ok_or_else(|| not_listed("public_path"))?,
            )?,
            Part::NodectlConfig => ks
                .nodectl_config
                .clone()
                .ok_or_else(|| not_listed("nodectl_config"))?,
            Part::AcraVersion if ks.kind == Kind::Acra => {
                format!("{}/{}", ks.path, crate::material::acra::VERSION_FILE)
            }
            Part::AcraVersion => return Err(not_listed("acra version file")),
        };
        Ok((ks, path))
    }

    /// Refuses a write the helper's rule or the policy does not allow.
    fn may_write(&self, ks: &KeystorePolicy) -> Result<Want, FsError> {
        if !self.restore {
            return Err(fail(
                ErrorKind::NotAllowed,
                "this helper runs under the read-only sudo rule; a restore needs the restore rule: install the \
                 lines `coldkeep config sudoers --node NODE --restore` prints",
            ));
        }
        match (&ks.owner, ks.restore) {
            (Some(o), true) => Ok(Want {
                uid: o.uid,
                gid: o.gid,
                mode: ks.mode,
            }),
            _ => Err(fail(
                ErrorKind::NotAllowed,
                format!(
                    "the node's policy {} does not allow restoring keystore `{}`: give it `restore: true`, `owner` and \
                     `mode` (`coldkeep config node-policy --node NODE --restore` prints it)",
                    self.policy_path, ks.name
                ),
            )),
        }
    }

    /// Takes the per-policy write lock (exclusive), or the read lock (shared).
    fn lock_for(&self, write: bool) -> Result<(), FsError> {
        self.state
            .lock(write, LOCK_WAIT)
            .map_err(|m| fail(ErrorKind::Failed, m))
    }

    fn lock(&self) -> Result<(), FsError> {
        self.lock_for(true)
    }

    fn unlock(&self) {
        self.state.unlock();
    }

    /// The largest file the helper reads or writes as `part` of `ks`: per kind, so a P12 cannot
    /// be declared (and buffered) at the size of a whole keystore.
    fn cap(ks: &KeystorePolicy, part: Part) -> u64 {
        match (part, ks.kind) {
            (Part::AcraVersion, _) => 4096,
            (Part::NodectlConfig, _) => proto::MAX_SMALL_FILE,
            (_, Kind::P12) => proto::MAX_P12,
            (_, Kind::File) => proto::MAX_SMALL_FILE,
            (_, Kind::Acra) => proto::MAX_ACRA_FILE,
        }
    }

    /// Everything a file write's header decides, before its bytes are read.
    fn plan_write(
        &self,
        keystore: &str,
        mode: u32,
        size: u64,
    ) -> Result<(KeystorePolicy, String, Want), FsError> {
        let (ks, path) = self.locate(keystore, Part::Key)?;
        if ks.kind == Kind::Acra {
            return Err(fail(
                ErrorKind::BadRequest,
                format!("keystore `{keystore}` is a directory: restore it as a tree"),
            ));
        }
        let mut want = self.may_write(&ks)?;
        if mode & !0o777 != 0 {
            return Err(fail(
                ErrorKind::NotAllowed,
                format!("mode {mode:04o}: set-id and sticky bits are never set"),
            ));
        }
        let cap = Self::cap(&ks, Part::Key);
        if size > cap {
            return Err(fail(
                ErrorKind::TooLarge,
                format!(
                    "a {} keystore of {size} bytes, over the helper's {cap}-byte cap",
                    ks.kind.as_str()
                ),
            ));
        }
        want.mode &= mode;
        Ok((ks, path, want))
    }

    fn handle(&mut self, op: Op, input: &mut dyn Read, out: &mut dyn Write) -> Result<(), Stop> {
        match op {
            Op::Stat { keystore, part } => {
                let reply = self.stat(&keystore, part).unwrap_or_else(error_reply);
                proto::write_json(out, &reply).map_err(flush_err)
            }
            Op::ReadFile {
                keystore,
                part,
                max_size,
            } => match self.read_file(&keystore, part, max_size) {
                Ok((stat, bytes)) => {
                    let sha256 = crate::digest::sha256_hex(&bytes);
                    proto::write_json(out, &Reply::File { stat, sha256 }).map_err(flush_err)?;
                    proto::write_data(out, &bytes).map_err(flush_err)
                }
                Err(e) => proto::write_json(out, &error_reply(e)).map_err(flush_err),
            },
            Op::ReadTree {
                keystore,
                part,
                max_files,
                max_size,
                contents,
            } => self.read_tree(&keystore, part, max_files, max_size, contents, out),
            Op::Leftovers { keystore, part } => {
                let reply = self.leftovers(&keystore, part).unwrap_or_else(error_reply);
                proto::write_json(out, &reply).map_err(flush_err)
            }
            Op::Sweep { keystore, part } => {
                let reply = self.sweep(&keystore, part).unwrap_or_else(error_reply);
                proto::write_json(out, &reply).map_err(flush_err)
            }
            Op::WriteFile {
                keystore,
                mode,
                size,
                sha256,
            } => {
                let (_, path, want) = match self.plan_write(&keystore, mode, size) {
                    Ok(planned) => planned,
                    Err(e) => return refuse_payload(out, e),
                };
                let bytes = proto::read_bytes(input, size, &sha256)?;
                let reply = self.write_file(&path, want, &bytes).unwrap_or_else(error_reply);
                proto::write_json(out, &reply).map_err(flush_err)
            }
            Op::RestoreTrees { keystore, roots } => {
                // Everything the header decides is decided before a byte of the upload is read.
                let jobs = match self
                    .plan_trees(&keystore, &roots)
                    .and_then(|jobs| self.not_interrupted(&keystore).map(|()| jobs))
                {
                    Ok(jobs) => jobs,
                    Err(e) => return refuse_payload(out, e),
                };
                let data = super::stream::receive_upload(input, &roots)?;
                let reply = self.restore_trees(&keystore, jobs, data);
                proto::write_json(out, &reply).map_err(flush_err)
            }
            Op::FinishSwap { keystore, forward } => {
                let reply = self.finish_swap(&keystore, forward).unwrap_or_else(error_reply);
                proto::write_json(out, &reply).map_err(flush_err)
            }
        }
    }

    fn stat(&mut self, keystore: &str, part: Part) -> Result<Reply, FsError> {
        let (_, path) = self.locate(keystore, part)?;
        let st = if path == "/" {
            let fd = self.resolver.open_dir("/")?;
            Some(rustix::fs::fstat(&fd).map_err(|e| super::resolve::errno(e, "/"))?)
        } else {
            match self.resolver.parent_of(&path) {
                Ok((dir, name)) => lstat_at(&dir, &name, &path)?,
                Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::NotADirectory) => None,
                Err(e) => return Err(e),
            }
        };
        Ok(Reply::Stat {
            stat: st.map(|s| stat_of(&s, &mut self.names)),
        })
    }

    fn read_file(
        &mut self,
        keystore: &str,
        part: Part,
        max_size: u64,
    ) -> Result<(proto::Stat, Zeroizing<Vec<u8>>), FsError> {
        if !matches!(part, Part::Key | Part::NodectlConfig | Part::AcraVersion) {
            return Err(fail(
                ErrorKind::BadRequest,
                "only a key file, nodectl's config or Acra's version file is read",
            ));
        }
        let (ks, path) = self.locate(keystore, part)?;
        if ks.kind == Kind::Acra {
            self.lock_for(false)?;
            let interrupted = self.not_interrupted(keystore);
            self.unlock();
            interrupted?;
        }
        let cap = max_size.min(Self::cap(&ks, part));
        let (dir, name) = self.resolver.parent_of(&path)?;
        let (fd, st) = open_file_at(&dir, &name, &path, None)?;
        let bytes = super::read::read_all(&fd, st.st_size as u64, cap, &path)?;
        let mut stat = stat_of(&st, &mut self.names);
        stat.size = bytes.len() as u64;
        Ok((stat, bytes))
    }

    fn read_tree(
        &mut self,
        keystore: &str,
        part: Part,
        max_files: u64,
        max_size: u64,
        contents: bool,
        out: &mut dyn Write,
    ) -> Result<(), Stop> {
        let bytes_cap = max_size.min(proto::MAX_TREE_BYTES);
        // Shared: a restore of this policy's keystores (exclusive) is never seen half done.
        if let Err(e) = self.lock_for(false) {
            return proto::write_json(out, &error_reply(e)).map_err(flush_err);
        }
        let sent = self.send_tree(keystore, part, max_files, bytes_cap, contents, out);
        self.unlock();
        sent
    }

    fn send_tree(
        &mut self,
        keystore: &str,
        part: Part,
        max_files: u64,
        bytes_cap: u64,
        contents: bool,
        out: &mut dyn Write,
    ) -> Result<(), Stop> {
        let tree = (|| {
            if !matches!(part, Part::Key | Part::Public) {
                return Err(fail(
                    ErrorKind::BadRequest,
                    "only a keys or public directory is read as a tree",
                ));
            }
            let (_, path) = self.locate(keystore, part)?;
            self.not_interrupted(keystore)?;
            let root = match self.resolver.open_dir(&path) {
                Ok(fd) => fd,
                Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let caps = super::read::Caps {
                entries: max_files.min(proto::MAX_TREE_ENTRIES),
                bytes: bytes_cap,
                names: super::read::MAX_NAME_BYTES,
            };
            super::read::read_tree(root, &path, caps, &crate::material::acra::skipped_when_read)
                .map(|t| Some((t, path)))
        })();
        match tree {
            Err(e) => proto::write_json(out, &error_reply(e)).map_err(flush_err),
            Ok(None) => {
                let reply = Reply::Tree {
                    root: None,
                    dirs: 0,
                    files: 0,
                };
                proto::write_json(out, &reply).map_err(flush_err)
            }
            Ok(Some((tree, path))) => {
                super::stream::send_tree(out, &tree, &path, contents, bytes_cap, &mut self.names)
                    .map_err(flush_err)
            }
        }
    }

    fn leftovers(&mut self, keystore: &str, part: Part) -> Result<Reply, FsError> {
        if !matches!(part, Part::Key | Part::Public) {
            return Err(fail(
                ErrorKind::BadRequest,
                "leftovers are looked for beside a keystore path",
            ));
        }
        let (_, path) = self.locate(keystore, part)?;
        // Shared lock: a restore in progress is waited for, a record left half swapped is told.
        self.lock_for(false)?;
        let interrupted = self.not_interrupted(keystore);
        self.unlock();
        interrupted?;
        let (dir_path, name) = super::resolve::split(&path)?;
        let names = match self.resolver.open_dir(dir_path) {
            Ok(dir) => super::sweep::names_with_prefix(&dir, &super::sweep::old_prefix(name), dir_path)?,
            Err(e) if e.kind == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(Reply::Names { names })
    }

    fn sweep(&mut self, keystore: &str, part: Part) -> Result<Reply, FsError> {
        if !matches!(part, Part::Key | Part::Public) {
            return Err(fail(
                ErrorKind::BadRequest,
                "temps are swept beside a keystore path",
            ));
        }
        let (ks, path) = self.locate(keystore, part)?;
        self.may_write(&ks)?;
        let (dir, name) = match self.resolver.parent_of(&path) {
            Ok(found) => found,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(Reply::Done { notes: vec![] }),
            Err(e) => return Err(e),
        };
        self.lock()?;
        let swept = super::sweep::sweep(&dir, &name, &path);
        self.unlock();
        Ok(Reply::Done { notes: swept? })
    }

    fn write_file(&mut self, path: &str, want: Want, bytes: &[u8]) -> Result<Reply, FsError> {
        let (dir, name) = self.resolver.parent_of(path)?;
        self.lock()?;
        let written = super::write::write_file(&dir, &name, path, bytes, want, &mut Kernel);
        self.unlock();
        let w = written?;
        Ok(Reply::Written {
            mode: w.mode,
            uid: w.uid,
            gid: w.gid,
        })
    }

    /// The directories a tree restore writes, from its header: the keystore is an Acra one,
    /// the rule and the policy allow writing it, the roots are its directories.
    fn plan_trees(&self, keystore: &str, roots: &[UploadRoot]) -> Result<(Vec<RootPlan>, Want), FsError> {
        let ks = self.keystore(keystore)?.clone();
        if ks.kind != Kind::Acra {
            return Err(fail(
                ErrorKind::BadRequest,
                format!("keystore `{keystore}` is not an Acra keystore"),
            ));
        }
        let want = self.may_write(&ks)?;
        super::stream::check_roots(roots).map_err(|m| fail(ErrorKind::BadRequest, m))?;
        let mut plans = Vec::new();
        for root in roots {
            let (_, path) = self.locate(keystore, root.part)?;
            let (parent, name) = self.resolver.parent_of(&path)?;
            plans.push(RootPlan {
                parent,
                name,
                path,
                replace: root.replace,
            });
        }
        Ok((plans, want))
    }

    fn restore_trees(
        &mut self,
        keystore: &str,
        (plans, want): (Vec<RootPlan>, Want),
        data: Vec<Vec<super::stream::Received>>,
    ) -> Reply {
        let jobs = plans
            .into_iter()
            .zip(data)
            .map(|(p, files)| super::trees::RootJob {
                parent: p.parent,
                name: p.name,
                path: p.path,
                replace: p.replace,
                files,
            })
            .collect();
        if let Err(e) = self.lock() {
            return error_reply(e);
        }
        let result = self.journal(keystore).and_then(|journal| {
            // Under the lock: an earlier restore's record is either half swapped (refused) or
            // only its temp directories are left (removed first).
            let mut notes = match journal.read()? {
                Some(r) if r.phase == Phase::Swapping => return Err(self.interrupted_error(keystore, &r)),
                Some(r) => {
                    let parents = self.parents_of(keystore, &r)?;
                    super::record::finish_swap(r, &parents, false, want, &mut Kernel, &journal)?
                }
                None => Vec::new(),
            };
            Ok(
                super::trees::restore_trees(jobs, want, &mut Kernel, &journal).map(|more| {
                    notes.extend(more);
                    notes
                }),
            )
        });
        self.unlock();
        match result {
            Err(e) => error_reply(e),
            Ok(Ok(notes)) => Reply::Done { notes },
            Ok(Err(f)) => Reply::Error {
                kind: f.error.kind,
                message: f.error.message,
                state: Some(f.state),
            },
        }
    }

    /// The record of `keystore`'s tree restores, in the state directory.
    fn journal(&self, keystore: &str) -> Result<Journal, FsError> {
        let dir = self
            .state
            .dir
            .try_clone()
            .map_err(|e| fail(ErrorKind::Failed, format!("{}: {e}", self.state.path)))?;
        Ok(Journal::new(dir, keystore, &self.state.path))
    }

    /// The parent directory and name of every root of `record`, which must be directories the
    /// policy still lists for the keystore (a record never leads the helper anywhere else).
    fn parents_of(&self, keystore: &str, record: &SwapRecord) -> Result<Vec<(OwnedFd, String)>, FsError> {
        let ks = self.keystore(keystore)?;
        record
            .roots
            .iter()
            .map(|r| {
                if r.path != ks.path && ks.public_path.as_deref() != Some(r.path.as_str()) {
                    return Err(fail(
                        ErrorKind::NotAllowed,
                        format!(
                            "the record of keystore `{keystore}`'s last restore names {}, which the policy no longer \
                             lists for it: finish it by hand, then remove {}/swap-{keystore}",
                            r.path, self.state.path
                        ),
                    ));
                }
                self.resolver.parent_of(&r.path)
            })
            .collect()
    }

    fn interrupted_error(&self, keystore: &str, record: &SwapRecord) -> FsError {
        let parents: Vec<_> = record
            .roots
            .iter()
            .map(|r| self.resolver.parent_of(&r.path).ok())
            .collect();
        fail(
            ErrorKind::Interrupted,
            format!(
                "keystore `{keystore}`: a restore was interrupted between its swaps ({}); it is neither read nor \
                 restored until that is finished: `coldkeep restore --node NODE --keystore {keystore} --identity \
                 FILE --interrupted back` puts the previous keystore back whole, `--interrupted forward` puts the \
                 restored one in",
                super::record::describe(record, &parents)
            ),
        )
    }

    /// Refuses while a restore of `keystore` is recorded half swapped.
    fn not_interrupted(&self, keystore: &str) -> Result<(), FsError> {
        if self.keystore(keystore)?.kind != Kind::Acra {
            return Ok(());
        }
        match self.journal(keystore)?.read()? {
            Some(r) if r.phase == Phase::Swapping => Err(self.interrupted_error(keystore, &r)),
            _ => Ok(()),
        }
    }

    /// Finishes an interrupted tree restore of `keystore` one way or the other.
    fn finish_swap(&mut self, keystore: &str, forward: bool) -> Result<Reply, FsError> {
        let ks = self.keystore(keystore)?.clone();
        if ks.kind != Kind::Acra {
            return Err(fail(
                ErrorKind::BadRequest,
                format!("keystore `{keystore}` is not an Acra keystore"),
            ));
        }
        let want = self.may_write(&ks)?;
        self.lock()?;
        let result = (|| {
            let journal = self.journal(keystore)?;
            let Some(record) = journal.read()? else {
                return Ok(vec![format!(
                    "no interrupted restore of keystore `{keystore}` is recorded on this node: nothing to finish"
                )]);
            };
            let swapping = record.phase == Phase::Swapping;
            let parents = self.parents_of(keystore, &record)?;
            let mut notes =
                super::record::finish_swap(record, &parents, forward, want, &mut Kernel, &journal)?;
            notes.insert(
                0,
                match (swapping, forward) {
                    (true, false) => format!("keystore `{keystore}`: the previous keystore is back whole"),
                    (true, true) => format!("keystore `{keystore}`: the restored keystore is in place whole"),
                    (false, _) => format!(
                        "keystore `{keystore}` was not half swapped; what its last restore left was removed"
                    ),
                },
            );
            Ok(notes)
        })();
        self.unlock();
        result.map(|notes| Reply::Done { notes })
    }
}

/// One directory of a tree restore, located before its files are read.
struct RootPlan {
    parent: OwnedFd,
    name: String,
    path: String,
    replace: bool,
}

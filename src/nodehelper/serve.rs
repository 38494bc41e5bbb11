//! The helper's request loop: one request, one reply, until the agent closes stdin.
//!
//! Every request names a keystore of the policy and a part of it; the path comes from the policy.
//! Writes need both the restore rule (`--restore` in the helper's fixed argv, i.e. the sudoers
//! line the operator chose to install) and `restore: true` for that keystore in the policy, and
//! run one at a time per node (an exclusive `flock` on the policy file, with a deadline). A
//! malformed request ends the session: after it the stream cannot be trusted to be in step.

use super::policy::{KeystorePolicy, Kind, Policy};
use super::proto::{self, ErrorKind, FrameError, Op, Part, Reply, Request, UploadRoot};
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
    /// Its fd (the write lock).
    pub policy_fd: OwnedFd,
    /// Started under the restore rule.
    pub restore: bool,
    /// Path resolution.
    pub resolver: Resolver,
    /// Owner names.
    pub names: Names,
}

/// A failure that ends the session (the stream is out of step or gone).
struct Stop(FrameError);

impl From<FrameError> for Stop {
    fn from(e: FrameError) -> Stop {
        Stop(e)
    }
}

fn flush_err(e: std::io::Error) -> Stop {
    Stop(FrameError::Io(e))
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
                Err(e) => Err(Stop(e)),
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
                Err(Stop(e)) => {
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

    /// Takes the per-node write lock (an exclusive flock on the policy file's fd).
    fn lock(&self) -> Result<(), FsError> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match rustix::fs::flock(
                &self.policy_fd,
                rustix::fs::FlockOperation::NonBlockingLockExclusive,
            ) {
                Ok(()) => return Ok(()),
                Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(fail(
                        ErrorKind::Failed,
                        format!("another coldkeep restore holds this node ({e}); try again when it is done"),
                    ));
                }
            }
        }
    }

    fn unlock(&self) {
        let _ = rustix::fs::flock(&self.policy_fd, rustix::fs::FlockOperation::Unlock);
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
                if size > proto::MAX_FILE {
                    return Err(Stop(FrameError::Malformed(format!(
                        "a file of {size} bytes, over the {}-byte cap",
                        proto::MAX_FILE
                    ))));
                }
                let bytes = proto::read_bytes(input, size, &sha256)?;
                let reply = self
                    .write_file(&keystore, mode, &bytes)
                    .unwrap_or_else(error_reply);
                proto::write_json(out, &reply).map_err(flush_err)
            }
            Op::RestoreTrees { keystore, roots } => {
                check_upload(&roots).map_err(|m| Stop(FrameError::Malformed(m)))?;
                let mut data = Vec::new();
                for root in &roots {
                    let mut files = Vec::new();
                    for f in &root.files {
                        files.push(proto::read_bytes(input, f.size, &f.sha256)?);
                    }
                    data.push(files);
                }
                let reply = self.restore_trees(&keystore, roots, data);
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
        let (_, path) = self.locate(keystore, part)?;
        let cap = max_size.min(proto::MAX_FILE);
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
        let tree = (|| {
            if !matches!(part, Part::Key | Part::Public) {
                return Err(fail(
                    ErrorKind::BadRequest,
                    "only a keys or public directory is read as a tree",
                ));
            }
            let (_, path) = self.locate(keystore, part)?;
            let root = match self.resolver.open_dir(&path) {
                Ok(fd) => fd,
                Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let caps = super::read::Caps {
                entries: max_files.min(proto::MAX_TREE_ENTRIES),
                bytes: max_size.min(proto::MAX_TREE_BYTES),
            };
            super::read::read_tree(
                root,
                &path,
                caps,
                contents,
                &crate::material::acra::skipped_when_read,
            )
            .map(Some)
        })();
        let tree = match tree {
            Ok(t) => t,
            Err(e) => return proto::write_json(out, &error_reply(e)).map_err(flush_err),
        };
        let Some(tree) = tree else {
            let reply = Reply::Tree {
                root: None,
                dirs: vec![],
                files: vec![],
            };
            return proto::write_json(out, &reply).map_err(flush_err);
        };
        let entry = |r: &super::read::Read, names: &mut Names| proto::Entry {
            rel: r.rel.clone(),
            stat: stat_of(&r.stat, names),
            sha256: r.bytes.as_ref().map(|b| crate::digest::sha256_hex(b)),
        };
        let reply = Reply::Tree {
            root: Some(stat_of(&tree.root, &mut self.names)),
            dirs: tree.dirs.iter().map(|d| entry(d, &mut self.names)).collect(),
            files: tree
                .files
                .iter()
                .map(|f| {
                    let mut e = entry(f, &mut self.names);
                    if let Some(b) = &f.bytes {
                        e.stat.size = b.len() as u64;
                    }
                    e
                })
                .collect(),
        };
        // A listing of a huge tree could pass the control-frame cap: say so instead of sending it.
        if let Err(e) = proto::write_json(out, &reply) {
            let e = fail(
                ErrorKind::TreeTooLarge,
                format!("the listing does not fit one message ({e}): lower max_files"),
            );
            return proto::write_json(out, &error_reply(e)).map_err(flush_err);
        }
        for f in &tree.files {
            if let Some(b) = &f.bytes {
                proto::write_data(out, b).map_err(flush_err)?;
            }
        }
        Ok(())
    }

    fn leftovers(&mut self, keystore: &str, part: Part) -> Result<Reply, FsError> {
        if !matches!(part, Part::Key | Part::Public) {
            return Err(fail(
                ErrorKind::BadRequest,
                "leftovers are looked for beside a keystore path",
            ));
        }
        let (_, path) = self.locate(keystore, part)?;
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

    fn write_file(&mut self, keystore: &str, mode: u32, bytes: &[u8]) -> Result<Reply, FsError> {
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
        want.mode &= mode;
        let (dir, name) = self.resolver.parent_of(&path)?;
        self.lock()?;
        let written = super::write::write_file(&dir, &name, &path, bytes, want, &mut Kernel);
        self.unlock();
        let w = written?;
        Ok(Reply::Written {
            mode: w.mode,
            uid: w.uid,
            gid: w.gid,
        })
    }

    fn restore_trees(
        &mut self,
        keystore: &str,
        roots: Vec<UploadRoot>,
        data: Vec<Vec<Zeroizing<Vec<u8>>>>,
    ) -> Reply {
        let jobs = (|| {
            let ks = self.keystore(keystore)?.clone();
            if ks.kind != Kind::Acra {
                return Err(fail(
                    ErrorKind::BadRequest,
                    format!("keystore `{keystore}` is not an Acra keystore"),
                ));
            }
            let want = self.may_write(&ks)?;
            let mut jobs = Vec::new();
            for (root, bytes) in roots.into_iter().zip(data) {
                let (_, path) = self.locate(keystore, root.part)?;
                let (parent, name) = self.resolver.parent_of(&path)?;
                let mut files = Vec::new();
                for (f, b) in root.files.into_iter().zip(bytes) {
                    if f.mode & !0o777 != 0 {
                        return Err(fail(
                            ErrorKind::NotAllowed,
                            format!("{}: set-id and sticky bits are never set", f.rel),
                        ));
                    }
                    files.push((f.rel, f.mode, b));
                }
                jobs.push(super::trees::RootJob {
                    parent,
                    name,
                    path,
                    replace: root.replace,
                    files,
                });
            }
            Ok((jobs, want))
        })();
        let (jobs, want) = match jobs {
            Ok(j) => j,
            Err(e) => return error_reply(e),
        };
        if let Err(e) = self.lock() {
            return error_reply(e);
        }
        let result = super::trees::restore_trees(jobs, want, &mut Kernel);
        self.unlock();
        match result {
            Ok(notes) => Reply::Done { notes },
            Err(f) => Reply::Error {
                kind: f.error.kind,
                message: f.error.message,
                state: Some(f.state),
            },
        }
    }
}

/// The shape of a tree upload, checked before any of its bytes are read: one or two roots (keys
/// and public), valid relative names, no name twice, within the caps.
fn check_upload(roots: &[UploadRoot]) -> Result<(), String> {
    if roots.is_empty() || roots.len() > 2 {
        return Err("a tree restore has one or two roots".into());
    }
    if roots.iter().any(|r| !matches!(r.part, Part::Key | Part::Public))
        || (roots.len() == 2 && roots[0].part == roots[1].part)
    {
        return Err("the roots of a tree restore are the keys and the public directory, once each".into());
    }
    let mut total = 0u64;
    let mut count = 0u64;
    for r in roots {
        let mut seen = std::collections::BTreeSet::new();
        for f in &r.files {
            if !proto::valid_rel(&f.rel) || !seen.insert(f.rel.as_str()) {
                return Err(format!(
                    "a file name that is not allowed or listed twice: {:?}",
                    crate::text::escape_control(&f.rel)
                ));
            }
            if f.size > proto::MAX_FILE {
                return Err(format!("{} is over the {}-byte file cap", f.rel, proto::MAX_FILE));
            }
            total += f.size;
            count += 1;
        }
        // A file may not also be a directory of another ("a" and "a/b").
        for f in &r.files {
            let prefix = format!("{}/", f.rel);
            let bounds = (
                std::ops::Bound::Included(prefix.as_str()),
                std::ops::Bound::Unbounded,
            );
            if seen
                .range::<str, _>(bounds)
                .next()
                .is_some_and(|n| n.starts_with(&prefix))
            {
                return Err(format!("{} is both a file and a directory", f.rel));
            }
        }
    }
    if total > proto::MAX_TREE_BYTES || count > proto::MAX_TREE_ENTRIES {
        return Err("the tree is over the helper's caps".into());
    }
    Ok(())
}

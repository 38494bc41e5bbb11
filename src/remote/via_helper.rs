//! [`Session`] with `become: sudo`: every read and write of the node goes through the node
//! helper, one process per session, started here (`sudo -n -u <become_user> -- <node_helper>
//! node-helper [--policy=...] [--restore]` on one exec channel, no pty).
//!
//! The session's path-based calls are mapped to the policy's keystore names
//! ([`super::helper::locate`]); a path the policy does not cover fails here with
//! [`RemoteError::NotInPolicy`]. Replies become the same [`RemoteError`]s the plain session
//! gives, so `ops` decides the same way on both. A broken stream poisons the session.

use super::helper::{Client, StartError, Timed, TreeAnswer, UploadError, UploadTree};
use super::swap::{SwapState, TreeRestoreError, TreeUpload};
use super::{
    FetchedTree, Owner, RemoteError, RemoteFile, RemoteStat, RemoteTree, Session, TreeEntry, TreeLimits,
    shell_quote,
};
use crate::config::{Become, NodeConfig};
use crate::nodehelper::proto::{self, EntryKind, ErrorKind, FrameError, Listed, Op, Part, Reply};
use std::cell::RefCell;

/// What a session needs the helper for: reads, or reads and the writes of a restore (the
/// restore rule, `--restore`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Backup, verify, check, discover, a restore's dry run.
    Read,
    /// A restore.
    Restore,
}

/// The helper of one session.
pub(super) struct HelperSession {
    client: RefCell<Client<Timed<ssh2::Channel>>>,
    /// The configured node name (for fixes).
    node: String,
    /// The policy it was started with.
    policy: String,
}

/// The owner and loosest mode a write gets on the node, decided by the node's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRule {
    /// `user:group` of what is written (a replaced file must already have it).
    pub owner: Option<String>,
    /// The loosest mode a file gets.
    pub max_mode: u32,
    /// Why the policy does not allow writing there at all.
    pub refused: Option<String>,
}

/// The command line that starts the helper (every word validated when the config was read, and
/// quoted anyway).
pub fn command_line(node: &NodeConfig, user: &str, access: Access) -> String {
    let mut line = format!(
        "sudo -n -u {} -- {}",
        shell_quote(user),
        shell_quote(&node.helper.program)
    );
    for word in crate::nodehelper::argv(&node.helper.policy, access == Access::Restore) {
        line.push(' ');
        line.push_str(&shell_quote(&word));
    }
    line
}

/// Starts the helper on `sess` for `node`.
pub(super) fn start(
    sess: &ssh2::Session,
    node: &NodeConfig,
    access: Access,
    addr: &str,
    io_secs: u64,
) -> Result<Option<HelperSession>, RemoteError> {
    let Become::Sudo { user } = &node.become_ else {
        return Ok(None);
    };
    let during = "starting the node helper";
    let map = |e: ssh2::Error| super::map_ssh(e, during, io_secs);
    let mut ch = sess.channel_session().map_err(map)?;
    ch.exec(&command_line(node, user, access)).map_err(map)?;
    let mut io = Timed::new(ch);
    io.set_deadline(std::time::Instant::now() + std::time::Duration::from_secs(io_secs.saturating_mul(2)));
    let mut client = match Client::start(io) {
        Ok(c) => c,
        Err((e, io)) => return Err(start_failure(e, io, node, user, access, addr, io_secs)),
    };
    client.io().set_deadline(far());
    Ok(Some(HelperSession {
        client: RefCell::new(client),
        node: node.name.clone(),
        policy: node.helper.policy.clone(),
    }))
}

fn far() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(365 * 24 * 3600)
}

/// Why the helper did not start, as an error that names the fix.
fn start_failure(
    e: StartError,
    mut io: Timed<ssh2::Channel>,
    node: &NodeConfig,
    user: &str,
    access: Access,
    addr: &str,
    io_secs: u64,
) -> RemoteError {
    let addr = addr.to_string();
    match e {
        StartError::Closed => {
            use std::io::Read;
            let ch = io.inner();
            let mut stderr = Vec::new();
            let _ = ch.stderr().take(64 * 1024).read_to_end(&mut stderr);
            let _ = ch.close();
            let _ = ch.wait_close();
            let status = ch.exit_status().unwrap_or(-1);
            let stderr = String::from_utf8_lossy(&stderr).trim().to_string();
            refusal(&addr, node, user, access, status, &stderr)
        }
        StartError::Frame(f) => super::map_io(
            match f {
                FrameError::Io(e) => e,
                other => std::io::Error::other(other.to_string()),
            },
            "waiting for the node helper's hello",
            io_secs,
        ),
        StartError::NotHelper(detail) => RemoteError::HelperStart {
            addr,
            detail: format!(
                "{} answered, but not as the node helper ({})",
                node.helper.program,
                crate::text::escape_control(&detail)
            ),
        },
        StartError::Version { version, build } => {
            let side = if version > proto::VERSION {
                "the agent"
            } else {
                "the node (the coldkeep package)"
            };
            RemoteError::HelperVersion {
                addr,
                detail: format!(
                    "speaks protocol version {version} (coldkeep {}), this agent speaks version {} (coldkeep {}): \
                     upgrade coldkeep on {side}",
                    crate::text::escape_control(&build),
                    proto::VERSION,
                    env!("CARGO_PKG_VERSION")
                ),
            }
        }
        StartError::Refused { problem, fix } => RemoteError::HelperRefused {
            addr,
            problem: crate::text::escape_control(&problem),
            fix: crate::text::escape_control(&fix),
        },
    }
}

/// sudo's (or the shell's) refusal, from the exit status and stderr of a helper that never said
/// hello.
pub fn refusal(
    addr: &str,
    node: &NodeConfig,
    user: &str,
    access: Access,
    status: i32,
    stderr: &str,
) -> RemoteError {
    let addr = addr.to_string();
    let program = &node.helper.program;
    if stderr.contains("unknown user") {
        return RemoteError::BecomeUserMissing {
            addr,
            user: user.to_string(),
        };
    }
    if status == 127 && !stderr.contains(program.as_str()) {
        return RemoteError::SudoMissing { addr };
    }
    if stderr.contains(&format!("{program}: command not found"))
        || stderr.contains("No such file or directory")
    {
        return RemoteError::HelperMissing {
            addr,
            program: program.clone(),
        };
    }
    let tty = stderr.contains("must have a tty");
    let refused = [
        "a password is required",
        "is not allowed to execute",
        "not in the sudoers file",
    ];
    if tty || refused.iter().any(|r| stderr.contains(r)) {
        let detail = if tty {
            format!(
                "sudo wants a terminal (`Defaults requiretty`): add `Defaults:{} !requiretty`",
                node.user
            )
        } else {
            crate::text::escape_control(stderr.lines().last().unwrap_or("").trim_start_matches("sudo: "))
        };
        return RemoteError::SudoRefused {
            addr,
            node: node.name.clone(),
            detail,
            flags: if access == Access::Restore {
                " --restore".into()
            } else {
                String::new()
            },
            rule: super::sudoers::rule(&node.user, user, &node.helper, access == Access::Restore),
        };
    }
    RemoteError::HelperStart {
        addr,
        detail: if stderr.is_empty() {
            format!("it exited with status {status} before saying hello")
        } else {
            crate::text::escape_control(stderr)
        },
    }
}

/// The owner the helper reports; a name outside [`proto::valid_account_name`] is dropped (a
/// lying node's words go into manifests and into the `owner:` of a printed policy).
fn owner_of(st: &proto::Stat) -> Owner {
    let safe = |n: &Option<String>| n.clone().filter(|n| proto::valid_account_name(n));
    Owner {
        uid: st.uid,
        gid: st.gid,
        user: safe(&st.user),
        group: safe(&st.group),
    }
}

fn remote_stat(st: &proto::Stat) -> RemoteStat {
    RemoteStat {
        is_dir: st.kind == EntryKind::Dir,
        is_file: st.kind == EntryKind::File,
        size: st.size,
        mode: st.mode,
        owner: Some(owner_of(st)),
    }
}

fn entry(e: &proto::Entry) -> TreeEntry {
    TreeEntry {
        rel: e.rel.clone(),
        size: e.stat.size,
        mode: e.stat.mode,
        owner: Some(owner_of(&e.stat)),
    }
}

impl Session {
    fn helper_session(&self) -> &HelperSession {
        self.helper.as_ref().expect("called only with a helper")
    }

    /// The listed keystore and part for `path`, or [`RemoteError::NotInPolicy`].
    fn locate(&self, path: &str) -> Result<(Listed, Part), RemoteError> {
        let h = self.helper_session();
        let client = h.client.borrow();
        super::helper::locate(client.listing(), path)
            .map(|(k, p)| (k.clone(), p))
            .ok_or_else(|| RemoteError::NotInPolicy {
                path: path.to_string(),
                policy: h.policy.clone(),
                addr: self.addr.clone(),
                node: h.node.clone(),
            })
    }

    /// Sends a request with its data, under the read deadline; a broken stream poisons the
    /// session.
    fn ask(&self, op: Op, data: &[&[u8]], during: &str) -> Result<Reply, RemoteError> {
        self.usable()?;
        let mut client = self.helper_session().client.borrow_mut();
        client.io().set_deadline(self.read_deadline());
        client.request(op, data).map_err(|e| self.broken(e, during))
    }

    /// Reads bytes that follow a reply.
    fn bytes_after(
        &self,
        size: u64,
        sha256: &str,
        during: &str,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, RemoteError> {
        let mut client = self.helper_session().client.borrow_mut();
        client
            .read_bytes(size, sha256)
            .map_err(|e| self.broken(e, during))
    }

    fn broken(&self, e: FrameError, during: &str) -> RemoteError {
        self.poisoned.set(true);
        match e {
            FrameError::Io(io) => self.io_err(io, during),
            other => RemoteError::Ssh {
                during: during.to_string(),
                detail: format!("the node helper's stream broke: {other}"),
            },
        }
    }

    fn failed(&self, kind: ErrorKind, message: String, path: &str) -> RemoteError {
        let message = crate::text::escape_control(&message);
        let path = path.to_string();
        match kind {
            ErrorKind::NotFound => RemoteError::NotFound { path },
            ErrorKind::IsDirectory => RemoteError::IsDirectory { path },
            ErrorKind::NotADirectory => RemoteError::NotADirectory { path },
            ErrorKind::Unsafe => RemoteError::UnsafeEntry {
                path,
                detail: message,
            },
            ErrorKind::TreeTooLarge => RemoteError::TreeTooLarge {
                path,
                detail: message,
            },
            ErrorKind::Interrupted => RemoteError::Helper {
                addr: self.addr.clone(),
                detail: message.replace("--node NODE", &format!("--node {}", self.helper_session().node)),
            },
            ErrorKind::BadRequest => {
                self.poisoned.set(true);
                RemoteError::Helper {
                    addr: self.addr.clone(),
                    detail: message,
                }
            }
            _ => RemoteError::Helper {
                addr: self.addr.clone(),
                detail: message,
            },
        }
    }

    fn unexpected(&self, during: &str) -> RemoteError {
        self.poisoned.set(true);
        RemoteError::Ssh {
            during: during.to_string(),
            detail: "the node helper gave an unexpected reply".into(),
        }
    }

    /// `lstat` through the helper (it never follows a link): the stat and whether it is a link.
    pub(super) fn helper_stat(&self, path: &str) -> Result<Option<(RemoteStat, bool)>, RemoteError> {
        let (k, part) = self.locate(path)?;
        let during = format!("stat of {path}");
        match self.ask(
            Op::Stat {
                keystore: k.name,
                part,
            },
            &[],
            &during,
        )? {
            Reply::Stat { stat } => Ok(stat.map(|s| (remote_stat(&s), s.kind == EntryKind::Symlink))),
            Reply::Error { kind, message, .. } => Err(self.failed(kind, message, path)),
            _ => Err(self.unexpected(&during)),
        }
    }

    /// A regular file through the helper, capped.
    pub(super) fn helper_fetch(&self, path: &str, max_size: u64) -> Result<RemoteFile, RemoteError> {
        let (k, part) = self.locate(path)?;
        let during = format!("reading {path}");
        match self.ask(
            Op::ReadFile {
                keystore: k.name,
                part,
                max_size,
            },
            &[],
            &during,
        )? {
            Reply::File { stat, sha256 } => {
                if stat.size > max_size {
                    return Err(self.unexpected(&during));
                }
                let bytes = self.bytes_after(stat.size, &sha256, &during)?;
                Ok(RemoteFile {
                    bytes,
                    mode: stat.mode,
                    owner: Some(owner_of(&stat)),
                })
            }
            Reply::Error { kind, message, .. } => Err(self.failed(kind, message, path)),
            _ => Err(self.unexpected(&during)),
        }
    }

    /// A tree through the helper; with `contents`, every file's bytes too. `skip` drops entries
    /// (and what is under a skipped directory) after the fact: the helper applies the same Acra
    /// rule itself.
    pub(super) fn helper_tree(
        &self,
        root: &str,
        limits: TreeLimits,
        skip: &dyn Fn(&str) -> bool,
        contents: bool,
    ) -> Result<Option<(RemoteTree, FetchedTree)>, RemoteError> {
        let (k, part) = self.locate(root)?;
        let during = format!("reading the tree {root}");
        let op = Op::ReadTree {
            keystore: k.name,
            part,
            max_files: limits.max_files,
            max_size: limits.max_size,
            contents,
        };
        let answer = {
            self.usable()?;
            let mut client = self.helper_session().client.borrow_mut();
            client.io().set_deadline(self.read_deadline());
            client
                .read_tree(op, contents)
                .map_err(|e| self.broken(e, &during))?
        };
        let (root_st, dirs, files) = match answer {
            TreeAnswer::Missing => return Ok(None),
            TreeAnswer::Refused { kind, message } => return Err(self.failed(kind, message, root)),
            TreeAnswer::Tree(t) => (t.root, t.dirs, t.files),
        };
        if root_st.kind != EntryKind::Dir {
            return Err(RemoteError::NotADirectory {
                path: root.to_string(),
            });
        }
        let skipped = |rel: &str| {
            rel.match_indices('/')
                .map(|(i, _)| &rel[..i])
                .chain(std::iter::once(rel))
                .any(skip)
        };
        let fetched: Vec<_> = files
            .into_iter()
            .filter(|(f, _)| !skipped(&f.rel))
            .map(|(f, bytes)| (entry(&f), bytes))
            .collect();
        let mut dir_entries = vec![TreeEntry {
            rel: String::new(),
            size: 0,
            mode: root_st.mode,
            owner: Some(owner_of(&root_st)),
        }];
        dir_entries.extend(dirs.iter().filter(|d| !skipped(&d.rel)).map(entry));
        let tree = RemoteTree {
            root_mode: root_st.mode,
            files: fetched.iter().map(|(e, _)| e.clone()).collect(),
            dirs: dir_entries[1..].iter().map(|d| (d.rel.clone(), d.mode)).collect(),
            dir_entries: dir_entries.clone(),
        };
        let whole = FetchedTree {
            root_mode: root_st.mode,
            dirs: dir_entries,
            files: fetched
                .into_iter()
                .map(|(e, b)| (e, b.unwrap_or_default()))
                .collect(),
        };
        Ok(Some((tree, whole)))
    }

    /// `.NAME.<tag>*` beside `path` (only the swap's leftovers are asked for).
    pub(super) fn helper_beside(&self, path: &str, tag: &str) -> Result<Vec<String>, RemoteError> {
        let (k, part) = self.locate(path)?;
        let during = format!("looking beside {path}");
        if tag != "coldkeep-old-" || !matches!(part, Part::Key | Part::Public) {
            return Err(RemoteError::Helper {
                addr: self.addr.clone(),
                detail: format!(
                    "only an interrupted swap's leftovers are looked for beside a keystore ({path})"
                ),
            });
        }
        match self.ask(
            Op::Leftovers {
                keystore: k.name,
                part,
            },
            &[],
            &during,
        )? {
            Reply::Names { names } => {
                let (dir, _) = super::split_remote(path);
                Ok(names
                    .iter()
                    .map(|n| super::join_remote(&dir, &crate::text::escape_control(n)))
                    .collect())
            }
            Reply::Error { kind, message, .. } => Err(self.failed(kind, message, path)),
            _ => Err(self.unexpected(&during)),
        }
    }

    /// Removes what an interrupted write left beside `path`.
    pub(super) fn helper_sweep(&self, path: &str) -> Result<(), RemoteError> {
        let (k, part) = self.locate(path)?;
        let during = format!("removing leftovers beside {path}");
        match self.ask(
            Op::Sweep {
                keystore: k.name,
                part,
            },
            &[],
            &during,
        )? {
            Reply::Done { notes } => {
                for n in notes {
                    tracing::warn!(node = %self.addr, "{}", crate::text::escape_control(&n));
                }
                Ok(())
            }
            Reply::Error { kind, message, .. } => Err(self.failed(kind, message, path)),
            _ => Err(self.unexpected(&during)),
        }
    }

    /// Replaces or creates a file keystore (owner and loosest mode from the node's policy).
    pub(super) fn helper_push(&self, path: &str, bytes: &[u8], mode: u32) -> Result<(), RemoteError> {
        let (k, part) = self.locate(path)?;
        if part != Part::Key || k.kind == "acra" {
            return Err(RemoteError::Helper {
                addr: self.addr.clone(),
                detail: format!("{path} is not a file keystore of the node's policy"),
            });
        }
        let during = format!("writing {path}");
        let op = Op::WriteFile {
            keystore: k.name,
            mode: mode & 0o777,
            size: bytes.len() as u64,
            sha256: crate::digest::sha256_hex(bytes),
        };
        match self.ask(op, &[bytes], &during)? {
            Reply::Written { .. } => Ok(()),
            Reply::Error { kind, message, .. } => Err(self.failed(kind, message, path)),
            _ => Err(self.unexpected(&during)),
        }
    }

    /// Restores an Acra keystore's directories in one request (one frame per file).
    pub(super) fn helper_restore_trees(&self, uploads: &[TreeUpload]) -> Result<(), TreeRestoreError> {
        let nothing = |e: RemoteError| TreeRestoreError {
            cause: e.to_string(),
            state: SwapState::NothingChanged,
        };
        let mut keystore: Option<String> = None;
        let mut roots = Vec::new();
        for up in uploads {
            let (k, part) = self.locate(&up.path).map_err(nothing)?;
            if keystore.get_or_insert_with(|| k.name.clone()) != &k.name
                || !matches!(part, Part::Key | Part::Public)
            {
                return Err(nothing(RemoteError::Helper {
                    addr: self.addr.clone(),
                    detail: format!(
                        "{} is not a directory of one Acra keystore of the node's policy",
                        up.path
                    ),
                }));
            }
            roots.push(UploadTree {
                part,
                replace: up.replace,
                files: up.files.iter().map(|f| (f.rel.clone(), f.mode, f.data)).collect(),
            });
        }
        let Some(keystore) = keystore else {
            return Ok(());
        };
        let paths = uploads
            .iter()
            .map(|u| u.path.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let during = format!("restoring {paths}");
        self.usable().map_err(nothing)?;
        let answer = {
            let mut client = self.helper_session().client.borrow_mut();
            client.io().set_deadline(self.read_deadline());
            client.restore_trees(&keystore, &roots)
        };
        match answer {
            Ok(Reply::Done { notes }) => {
                for n in notes {
                    tracing::warn!(node = %self.addr, "{}", crate::text::escape_control(&n));
                }
                Ok(())
            }
            Ok(Reply::Error { message, state, .. }) => Err(TreeRestoreError {
                cause: crate::text::escape_control(&message),
                state: state.unwrap_or(SwapState::NothingChanged),
            }),
            Ok(_) => Err(nothing(self.unexpected(&during))),
            // The helper acts on a whole upload only: one that did not get through changed nothing.
            Err(UploadError::Sent(e)) => Err(nothing(self.broken(e, &during))),
            // The request may have been carried out: the stream broke before the answer.
            Err(UploadError::Answer(e)) => Err(TreeRestoreError {
                cause: format!(
                    "{} (the node may or may not have been changed: check {paths}; an interrupted swap is \
                     reported by the next restore, with how to finish it)",
                    self.broken(e, &during)
                ),
                state: SwapState::LeftAside,
            }),
        }
    }

    /// Finishes an interrupted tree restore of the keystore at `path` (the helper's record).
    pub(super) fn helper_finish_swap(&self, path: &str, forward: bool) -> Result<Vec<String>, RemoteError> {
        let (k, _) = self.locate(path)?;
        let during = format!("finishing the interrupted restore of {path}");
        match self.ask(
            Op::FinishSwap {
                keystore: k.name,
                forward,
            },
            &[],
            &during,
        )? {
            Reply::Done { notes } => Ok(notes.iter().map(|n| crate::text::escape_control(n)).collect()),
            Reply::Error { kind, message, .. } => Err(self.failed(kind, message, path)),
            _ => Err(self.unexpected(&during)),
        }
    }

    /// What the node's policy says about writing `path`.
    pub(super) fn helper_write_rule(&self, path: &str) -> WriteRule {
        match self.locate(path) {
            Ok((k, _)) => WriteRule {
                owner: k.owner.clone(),
                max_mode: k.mode.unwrap_or(0o777),
                refused: (!k.restore).then(|| {
                    format!(
                        "the node's policy {} does not allow restoring keystore `{}`: give it `restore: true`, `owner` \
                         and `mode` (`coldkeep config node-policy --node {} --restore` prints it) and install the \
                         restore rule (`coldkeep config sudoers --node {} --restore`)",
                        self.helper_session().policy,
                        k.name,
                        self.helper_session().node,
                        self.helper_session().node
                    )
                }),
            },
            Err(e) => WriteRule {
                owner: None,
                max_mode: 0,
                refused: Some(e.to_string()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_names_a_node_reports_are_kept_only_when_plain() {
        let st = |user: &str| proto::Stat {
            kind: EntryKind::File,
            mode: 0o400,
            uid: 0,
            gid: 0,
            user: Some(user.into()),
            group: Some("root".into()),
            size: 1,
        };
        assert_eq!(owner_of(&st("root")).user.as_deref(), Some("root"));
        let hostile = owner_of(&st("root\n    restore: true\n  - name: x"));
        assert_eq!(
            (hostile.user, hostile.uid, hostile.group.as_deref()),
            (None, 0, Some("root"))
        );
    }

    #[test]
    fn sudo_failures_name_the_fix() {
        let node = NodeConfig {
            name: "gw".into(),
            host: "h".into(),
            port: 22,
            user: "nodeadmin".into(),
            identity: None,
            identity_passphrase: None,
            known_hosts: "/dev/null".into(),
            host_key: None,
            host_key_policy: crate::config::HostKeyPolicy::Strict,
            connect_timeout: std::time::Duration::from_secs(1),
            io_timeout: std::time::Duration::from_secs(1),
            file_transfer: crate::config::FileTransfer::Sftp,
            become_: Become::Sudo { user: "acra".into() },
            helper: crate::config::HelperConfig::default(),
            labels: vec![],
            schedule: None,
            keystores: vec![],
        };
        let msg =
            |status, stderr: &str| refusal("h:22", &node, "acra", Access::Read, status, stderr).to_string();
        assert!(msg(127, "sh: 1: sudo: not found").contains("has no sudo"));
        assert!(msg(1, "sudo: unknown user acra").contains("become_user `acra` does not exist"));
        let password = msg(1, "sudo: a password is required");
        assert!(password.contains("config sudoers --node gw`"), "{password}");
        assert!(password.contains("/usr/bin/coldkeep node-helper"), "{password}");
        let restore = refusal(
            "h:22",
            &node,
            "acra",
            Access::Restore,
            1,
            "sudo: a password is required",
        )
        .to_string();
        assert!(
            restore.contains("--node gw --restore`") && restore.contains("node-helper --restore"),
            "{restore}"
        );
        assert!(
            msg(1, "sudo: sorry, you must have a tty to run sudo").contains("Defaults:nodeadmin !requiretty")
        );
        let missing = msg(1, "sudo: /usr/bin/coldkeep: command not found");
        assert!(missing.contains("install the coldkeep package"), "{missing}");
        let odd = msg(3, "\x1b[2Jsomething else");
        assert!(odd.contains("\\u{1b}[2J") && !odd.contains('\x1b'), "{odd}");
        assert_eq!(
            command_line(&node, "root", Access::Restore),
            "sudo -n -u 'root' -- '/usr/bin/coldkeep' 'node-helper' '--restore'"
        );
    }
}

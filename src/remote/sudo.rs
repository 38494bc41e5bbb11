//! Reads and writes through `sudo -n -u <become_user>` on the SSH session (`become: sudo`).
//!
//! nodectl makes migrated P12s `root:root 0400` and turns root logins off; Acra keys belong to
//! the service user, mode 0700. The SSH user cannot read either, so on such nodes every
//! [`Session`] operation runs a fixed program through sudo instead of SFTP/SCP. Each operation is
//! one exact argument vector ([`Op`]), so `coldkeep config sudoers` can print NOPASSWD rules that
//! pin every argument (a rule with free arguments would make the SSH user root).
//!
//! - Nothing follows a symbolic link: `stat` without `-L`, reads with `dd iflag=nofollow`, trees
//!   with `tar` (which stores links as links, refused here), writes into a temp file beside the
//!   target renamed with `mv -T` (which replaces a link, never writes through it).
//! - `sudo -n` never prompts: a missing rule fails at once and the error names the rule.
//! - Bytes come over the channel into memory ([`Zeroizing`]), capped while reading.

use super::{
    FetchedTree, Owner, RemoteError, RemoteFile, RemoteStat, RemoteTree, Session, TreeEntry, TreeLimits,
    shell_quote, split_remote,
};
use zeroize::Zeroizing;

/// How one node is reached with `become: sudo`.
#[derive(Debug, Clone)]
pub(super) struct Become {
    /// `become_user`.
    pub user: String,
    /// The SSH user (named in the sudoers line an error suggests).
    pub ssh_user: String,
    /// The node's name (for `coldkeep config sudoers --node`).
    pub node: String,
}

/// One remote operation as the exact argument vector sudo runs (and a sudoers rule pins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Program (absolute) and arguments.
    pub argv: Vec<String>,
    /// What the rule is for, for the comment above it.
    pub purpose: String,
}

const STAT: &str = "/usr/bin/stat";
const DD: &str = "/usr/bin/dd";
const TAR: &str = "/usr/bin/tar";
const RM: &str = "/usr/bin/rm";
const INSTALL: &str = "/usr/bin/install";
const CHOWN: &str = "/usr/bin/chown";
const CHMOD: &str = "/usr/bin/chmod";
const MV: &str = "/usr/bin/mv";
const MKDIR: &str = "/usr/bin/mkdir";
const FIND: &str = "/usr/bin/find";

/// `stat` format: raw mode (hex), uid, gid, owner, group, size; `/` cannot occur in any of them.
const STAT_FORMAT: &str = "%f/%u/%g/%U/%G/%s";

fn op(purpose: impl Into<String>, argv: &[&str]) -> Op {
    Op {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        purpose: purpose.into(),
    }
}

/// Stat without following a link.
pub fn stat_op(path: &str) -> Op {
    op(
        format!("stat {path} (no link following)"),
        &[STAT, "-c", STAT_FORMAT, "--", path],
    )
}

/// Read a file, refusing a symbolic link.
pub fn read_op(path: &str) -> Op {
    let input = format!("if={path}");
    op(
        format!("read {path} (refuses a symlink)"),
        &[DD, &input, "iflag=nofollow", "status=none"],
    )
}

/// Stream a directory tree as one tar archive (links stored as links, then refused).
pub fn tar_op(root: &str) -> Op {
    op(
        format!("read the tree {root} as one tar stream"),
        &[TAR, "--hard-dereference", "-C", root, "-cf", "-", "."],
    )
}

/// The temp file a write to `path` goes through: fixed, so a sudoers rule can name it. A fixed
/// name is predictable, so it is never trusted: see `WriteSteps`.
pub fn temp_of(path: &str) -> String {
    let (dir, name) = split_remote(path);
    super::join_remote(&dir, &format!(".{name}.coldkeep-tmp"))
}

/// The steps of an atomic write of `path` through sudo, each one pinned command.
///
/// The temp name is fixed (so sudoers can pin it) and therefore guessable: whoever can write in
/// the target's directory could plant something there. So nothing at that name is trusted:
/// `clean` removes whatever is there (`rm` removes a link, never its target), `create` makes the
/// temp exclusively (`install` unlinks, then creates with `O_EXCL` at mode 0600: a link or file
/// that appears in between makes it fail, never followed), `write` refuses a link
/// (`oflag=nofollow`, `conv=nocreat`), `check_temp` confirms before owner and mode are set that
/// the temp is still the regular file the become user just wrote, `rename` is `mv -T` (replaces,
/// never follows, a link), and `check_target` confirms the result before it is read back.
#[derive(Debug, Clone)]
pub(super) struct WriteSteps {
    /// `rm -f` whatever is at the temp name.
    pub clean: Op,
    /// Exclusive create of the temp, mode 0600.
    pub create: Op,
    /// Contents from stdin, no link following.
    pub write: Op,
    /// lstat of the temp: still ours?
    pub check_temp: Op,
    /// Owner of the replaced file (`chown -h`).
    pub owner_like: Op,
    /// Mode of the replaced file.
    pub mode_like: Op,
    /// Mode of a new file.
    pub new_mode: Op,
    /// `mv -f -T` over the target.
    pub rename: Op,
    /// lstat of the target after the rename.
    pub check_target: Op,
}

impl WriteSteps {
    /// The steps for `path`; a new file gets `new_mode`.
    pub fn new(path: &str, new_mode: u32) -> WriteSteps {
        let temp = temp_of(path);
        let reference = format!("--reference={path}");
        let output = format!("of={temp}");
        WriteSteps {
            clean: op(
                format!("remove whatever is at the temp name of {path} (a link is removed, not followed)"),
                &[RM, "-f", "--", &temp],
            ),
            create: op(
                format!("create the temp file of {path} exclusively (0600, never through a link)"),
                &[INSTALL, "-m", "0600", "/dev/null", &temp],
            ),
            write: op(
                format!("write the temp file of {path} from stdin (no link following)"),
                &[
                    DD,
                    &output,
                    "conv=nocreat,notrunc,fsync",
                    "oflag=nofollow",
                    "status=none",
                ],
            ),
            check_temp: stat_op(&temp),
            owner_like: op(
                format!("give the temp file the owner of {path}"),
                &[CHOWN, "-h", &reference, "--", &temp],
            ),
            mode_like: op(
                format!("give the temp file the mode of {path}"),
                &[CHMOD, &reference, "--", &temp],
            ),
            new_mode: chmod_op(path, new_mode),
            rename: op(
                format!("rename the temp file over {path} (replaces, never follows, a link)"),
                &[MV, "-f", "-T", "--", &temp, path],
            ),
            check_target: stat_op(path),
        }
    }

    /// Every step, in the order a write may run them.
    pub fn all(self) -> Vec<Op> {
        vec![
            self.clean,
            self.create,
            self.write,
            self.check_temp,
            self.owner_like,
            self.mode_like,
            self.new_mode,
            self.rename,
            self.check_target,
        ]
    }
}

/// Give the temp file of a write to `path` exactly `mode`: a new file's mode, or a replaced
/// file's mode narrowed to what the backup recorded.
fn chmod_op(path: &str, mode: u32) -> Op {
    let temp = temp_of(path);
    let text = format!("{mode:04o}");
    op(
        format!("mode {text} for the file written to {path}"),
        &[CHMOD, &text, "--", &temp],
    )
}

/// Every operation an atomic write of `path` may run, in order (the owner/mode pair by
/// reference when the target exists, `chmod new_mode` when it does not).
pub fn write_ops(path: &str, new_mode: u32) -> Vec<Op> {
    WriteSteps::new(path, new_mode).all()
}

/// Give the temp file of a write to `path` the owner `user:group` (a newly created file whose
/// backup recorded an owner that exists on the node).
pub fn chown_op(path: &str, owner: &str) -> Op {
    let temp = temp_of(path);
    op(
        format!("give a newly created {path} the owner {owner} recorded in its backup"),
        &[CHOWN, "-h", owner, "--", &temp],
    )
}

/// Remove everything named `.NAME.coldkeep-tmp*` directly beside `path` (`find` neither
/// descends nor follows links; the pattern is literal to sudoers).
pub fn stale_temps_op(path: &str) -> Op {
    let (dir, name) = split_remote(path);
    let pattern = format!(".{name}.coldkeep-tmp*");
    op(
        format!("remove temp files an interrupted restore of {path} left"),
        &[
            FIND,
            &dir,
            "-mindepth",
            "1",
            "-maxdepth",
            "1",
            "-name",
            &pattern,
            "-exec",
            RM,
            "-rf",
            "--",
            "{}",
            "+",
        ],
    )
}

/// List what is named `.NAME.<tag>*` directly beside `path` (no descent, no link following).
pub fn beside_op(path: &str, tag: &str) -> Op {
    let (dir, name) = split_remote(path);
    let pattern = format!(".{name}.{tag}*");
    op(
        format!("look for leftovers `{pattern}` beside {path}"),
        &[FIND, &dir, "-mindepth", "1", "-maxdepth", "1", "-name", &pattern],
    )
}

/// The command line run on the node: `sudo -n -u USER -- ARGV...`, each word quoted.
fn command_line(user: &str, argv: &[String]) -> String {
    let mut line = format!("sudo -n -u {} --", shell_quote(user));
    for a in argv {
        line.push(' ');
        line.push_str(&shell_quote(a));
    }
    line
}

/// Escapes one word for a sudoers command specification.
fn sudoers_word(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        // Separators and sudoers syntax, and the wildcards `*?[]`: a path holding one must match
        // only itself.
        if matches!(
            c,
            '\\' | ',' | ':' | '=' | ' ' | '"' | '#' | '(' | ')' | '!' | '*' | '?' | '[' | ']'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The sudoers rule allowing exactly `op` for `ssh_user` as `become_user`, without a password.
pub fn sudoers_rule(ssh_user: &str, become_user: &str, op: &Op) -> String {
    let words: Vec<String> = op.argv.iter().map(|w| sudoers_word(w)).collect();
    format!("{ssh_user} ALL=({become_user}) NOPASSWD: {}", words.join(" "))
}

/// What a finished command gave back.
struct Ran {
    status: i32,
    stdout: Zeroizing<Vec<u8>>,
    stderr: String,
}

/// Reads at most `cap` bytes; `Ok(None)` when the stream holds more. `in_time` is asked before
/// every read (each single read is bounded by the session's io timeout), so a node that drips
/// bytes cannot hold a run forever.
fn read_capped(
    r: &mut dyn std::io::Read,
    cap: u64,
    in_time: &dyn Fn() -> Result<(), RemoteError>,
    io_err: &dyn Fn(std::io::Error) -> RemoteError,
) -> Result<Option<Zeroizing<Vec<u8>>>, RemoteError> {
    let mut out = Zeroizing::new(Vec::with_capacity(cap.min(1 << 20) as usize));
    crate::harden::lock_in_memory(&out);
    let mut chunk = Zeroizing::new(vec![0u8; 32 * 1024]);
    loop {
        in_time()?;
        let n = r.read(&mut chunk).map_err(io_err)?;
        if n == 0 {
            return Ok(Some(out));
        }
        if out.len() as u64 + n as u64 > cap {
            return Ok(None);
        }
        // Never let the Vec reallocate (that would leave unwiped copies behind).
        if out.len() + n > out.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity((out.len() + n) * 2));
            crate::harden::lock_in_memory(&bigger);
            bigger.extend_from_slice(&out);
            out = bigger;
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

impl Session {
    /// Runs `op` through sudo, feeding `stdin`, keeping at most `cap` bytes of output. sudo's own
    /// refusals become per-node errors that say what to do; the program's exit status is the
    /// caller's to judge. `Ok(None)`: the output went over `cap`. As every read of a file, the
    /// whole command may take [`super::READ_TIME_FACTOR`] io timeouts (then the session is
    /// poisoned), and the node's stderr is escaped before it can reach a terminal.
    fn sudo_run(&self, b: &Become, op: &Op, stdin: &[u8], cap: u64) -> Result<Option<Ran>, RemoteError> {
        use std::io::{Read, Write};
        self.usable()?;
        let line = command_line(&b.user, &op.argv);
        let during = format!("running `{}` through sudo", op.argv.join(" "));
        let deadline = self.read_deadline();
        let in_time = || self.check_deadline(deadline, &during);
        let io_err = |e| self.io_err(e, &during);
        let mut ch = self.sess.channel_session().map_err(|e| self.err(e, &during))?;
        ch.exec(&line).map_err(|e| self.err(e, &during))?;
        for chunk in stdin.chunks(30_000) {
            in_time()?;
            ch.write_all(chunk).map_err(io_err)?;
        }
        ch.send_eof().map_err(|e| self.err(e, &during))?;
        let Some(stdout) = read_capped(&mut ch, cap, &in_time, &io_err)? else {
            let _ = ch.close();
            return Ok(None);
        };
        let mut stderr = Vec::new();
        let mut err_stream = ch.stderr().take(64 * 1024);
        let mut chunk = [0u8; 4096];
        loop {
            in_time()?;
            let n = err_stream.read(&mut chunk).map_err(io_err)?;
            if n == 0 {
                break;
            }
            stderr.extend_from_slice(&chunk[..n]);
        }
        let _ = ch.close();
        ch.wait_close().map_err(|e| self.err(e, &during))?;
        let status = ch.exit_status().map_err(|e| self.err(e, &during))?;
        let stderr = String::from_utf8_lossy(&stderr).trim_end().to_string();
        if status != 0 {
            self.sudo_refusal(b, op, status, &stderr)?;
        }
        // The node's words, printed in errors: control characters escaped.
        let stderr = crate::text::escape_control(&stderr);
        Ok(Some(Ran {
            status,
            stdout,
            stderr,
        }))
    }

    /// Turns sudo's own failures (not the program's) into errors that name the fix.
    fn sudo_refusal(&self, b: &Become, op: &Op, status: i32, stderr: &str) -> Result<(), RemoteError> {
        match refusal(&self.addr, b, op, status, stderr) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs `op` and turns a non-zero exit into [`RemoteError::Command`].
    fn sudo_ok(&self, b: &Become, op: &Op, stdin: &[u8]) -> Result<(), RemoteError> {
        let ran = self
            .sudo_run(b, op, stdin, 64 * 1024)?
            .ok_or_else(|| RemoteError::Ssh {
                during: format!("running `{}`", op.argv.join(" ")),
                detail: "unexpectedly large output".into(),
            })?;
        if ran.status != 0 {
            return Err(RemoteError::Command {
                command: format!("sudo {}", op.argv.join(" ")),
                status: ran.status,
                stderr: ran.stderr,
            });
        }
        Ok(())
    }

    /// `stat` through sudo, not following a link; `Ok(None)` when nothing is there.
    pub(super) fn sudo_stat(&self, b: &Become, path: &str) -> Result<Option<RemoteStat>, RemoteError> {
        Ok(self.sudo_stat_raw(b, path)?.map(|(st, _)| st))
    }

    /// Whether `path` is a symbolic link (false when nothing is there).
    pub(super) fn sudo_is_symlink(&self, b: &Become, path: &str) -> Result<bool, RemoteError> {
        Ok(self
            .sudo_stat_raw(b, path)?
            .is_some_and(|(_, raw)| raw & 0o170000 == 0o120000))
    }

    /// The stat and the raw `st_mode` (file type bits included).
    fn sudo_stat_raw(&self, b: &Become, path: &str) -> Result<Option<(RemoteStat, u32)>, RemoteError> {
        let op = stat_op(path);
        let ran = self
            .sudo_run(b, &op, &[], 4096)?
            .ok_or_else(|| RemoteError::Ssh {
                during: format!("stat of {path}"),
                detail: "unexpectedly long output".into(),
            })?;
        if ran.status != 0 {
            if ran.stderr.contains("No such file") || ran.stderr.contains("Not a directory") {
                return Ok(None);
            }
            // Permission denied here means become_user may not reach it: the command and its
            // stderr say so better than the hint to set `become`, which is already set.
            return Err(RemoteError::Command {
                command: format!("sudo {}", op.argv.join(" ")),
                status: ran.status,
                stderr: ran.stderr,
            });
        }
        let text = String::from_utf8_lossy(&ran.stdout);
        let raw = text
            .split('/')
            .next()
            .and_then(|m| u32::from_str_radix(m, 16).ok());
        match (parse_stat(&text), raw) {
            (Some(st), Some(raw)) => Ok(Some((st, raw))),
            _ => Err(RemoteError::Ssh {
                during: format!("stat of {path}"),
                detail: "unexpected output from stat".into(),
            }),
        }
    }

    /// Reads a regular file through sudo (capped), refusing links, directories and devices.
    pub(super) fn sudo_fetch(
        &self,
        b: &Become,
        path: &str,
        max_size: u64,
    ) -> Result<RemoteFile, RemoteError> {
        let st = self.sudo_stat(b, path)?.ok_or_else(|| RemoteError::NotFound {
            path: path.to_string(),
        })?;
        if st.is_dir {
            return Err(RemoteError::IsDirectory {
                path: path.to_string(),
            });
        }
        if !st.is_file {
            return Err(RemoteError::UnsafeEntry {
                path: path.to_string(),
                detail: "not a regular file (a symbolic link, device, fifo or socket)".into(),
            });
        }
        if st.size > max_size {
            return Err(RemoteError::TooLarge {
                path: path.to_string(),
                size: st.size,
                cap: max_size,
            });
        }
        let op = read_op(path);
        let ran = self
            .sudo_run(b, &op, &[], max_size)?
            .ok_or_else(|| RemoteError::TooLarge {
                path: path.to_string(),
                size: max_size + 1,
                cap: max_size,
            })?;
        if ran.status != 0 {
            return Err(RemoteError::Command {
                command: format!("sudo {}", op.argv.join(" ")),
                status: ran.status,
                stderr: ran.stderr,
            });
        }
        Ok(RemoteFile {
            bytes: ran.stdout,
            mode: st.mode,
            owner: st.owner,
        })
    }

    /// Reads a whole tree as one tar stream and parses it in memory with the same caps and
    /// refusals as the SFTP walk.
    pub(super) fn sudo_fetch_tree(
        &self,
        b: &Become,
        root: &str,
        limits: TreeLimits,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Option<(RemoteTree, FetchedTree)>, RemoteError> {
        let Some(st) = self.sudo_stat(b, root)? else {
            return Ok(None);
        };
        if !st.is_dir {
            return Err(RemoteError::NotADirectory {
                path: root.to_string(),
            });
        }
        let too_large = |detail: String| RemoteError::TreeTooLarge {
            path: root.to_string(),
            detail,
        };
        // Headers and padding: up to 1.5 KiB per entry on top of the contents.
        let cap = limits
            .max_size
            .saturating_add(limits.max_files.saturating_add(256).saturating_mul(1536))
            .saturating_add(20 * 1024);
        let op = tar_op(root);
        let ran = self
            .sudo_run(b, &op, &[], cap)?
            .ok_or_else(|| too_large(format!("the tar stream is over {cap} bytes")))?;
        if ran.status != 0 {
            return Err(RemoteError::Command {
                command: format!("sudo {}", op.argv.join(" ")),
                status: ran.status,
                stderr: ran.stderr,
            });
        }
        let parsed = parse_tar(root, &ran.stdout, limits, skip)?;
        let listed = parsed.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>();
        let (files, mut dir_entries) = parsed_split(parsed);
        dir_entries.insert(
            0,
            TreeEntry {
                rel: String::new(),
                size: 0,
                mode: st.mode,
                owner: st.owner,
            },
        );
        let tree = RemoteTree {
            root_mode: st.mode,
            files: listed
                .into_iter()
                .filter(|e| !dir_entries.iter().any(|d| d.rel == e.rel))
                .collect(),
            dirs: dir_entries[1..].iter().map(|d| (d.rel.clone(), d.mode)).collect(),
            dir_entries: dir_entries.clone(),
        };
        Ok(Some((
            tree,
            FetchedTree {
                root_mode: st.mode,
                dirs: dir_entries,
                files,
            },
        )))
    }

    /// Writes `path` atomically through sudo: temp file beside it created exclusively (0600),
    /// contents over stdin, checked to be still ours, owner and mode of the replaced file (or
    /// `mode` and `owner` for a new one), `mv -T` over the target, the result checked (a regular
    /// file with the size, owner and mode intended), read back and compared. The temp file is
    /// removed on failure. See [`WriteSteps`] for why each step cannot be redirected.
    pub(super) fn sudo_push(
        &self,
        b: &Become,
        path: &str,
        bytes: &[u8],
        mode: u32,
        owner: Option<&str>,
    ) -> Result<(), RemoteError> {
        let steps = WriteSteps::new(path, mode);
        let result = self.sudo_push_via(b, path, bytes, mode, owner, &steps);
        if result.is_err() {
            let _ = self.sudo_ok(b, &steps.clean, &[]);
        }
        result
    }

    fn sudo_push_via(
        &self,
        b: &Become,
        path: &str,
        bytes: &[u8],
        mode: u32,
        owner: Option<&str>,
        steps: &WriteSteps,
    ) -> Result<(), RemoteError> {
        let existing = self.sudo_stat(b, path)?;
        if let Some(st) = &existing
            && !st.is_file
        {
            return Err(RemoteError::UnsafeEntry {
                path: path.to_string(),
                detail: "exists and is not a regular file; refusing to replace it".into(),
            });
        }
        let temp = temp_of(path);
        self.sudo_ok(b, &steps.clean, &[])?;
        self.sudo_ok(b, &steps.create, &[])?;
        self.sudo_ok(b, &steps.write, bytes)?;
        // Still the regular file the become user created and wrote? (Someone who may write in
        // the directory could have swapped it; owner and mode are not set through a swap.)
        let ours = self.sudo_stat(b, &temp)?;
        let ours = ours.filter(|st| {
            st.is_file
                && st.size == bytes.len() as u64
                && st.owner.as_ref().and_then(|o| o.user.as_deref()) == Some(b.user.as_str())
        });
        if ours.is_none() {
            return Err(RemoteError::UnsafeEntry {
                path: temp,
                detail: "the temp file changed while being written (not the file coldkeep created); \
                         nothing was renamed"
                    .into(),
            });
        }
        // A replaced file keeps its owner and its mode narrowed to `mode` (never looser than the
        // backup recorded, as without sudo); a pinned rule exists for the usual case, where the
        // narrowed mode is the replaced one or the recorded one.
        let mode = mode & 0o777;
        let want_mode = existing.as_ref().map_or(mode, |st| st.mode & mode);
        let new_owner = match &existing {
            Some(st) => {
                self.sudo_ok(b, &steps.owner_like, &[])?;
                if want_mode == st.mode {
                    self.sudo_ok(b, &steps.mode_like, &[])?;
                } else {
                    self.sudo_ok(b, &chmod_op(path, want_mode), &[])?;
                }
                None
            }
            None => {
                self.sudo_ok(b, &steps.new_mode, &[])?;
                if let Some(owner) = owner {
                    self.sudo_ok(b, &chown_op(path, owner), &[])?;
                }
                owner
            }
        };
        self.sudo_ok(b, &steps.rename, &[])?;
        // The result: a regular file of the right size, with the owner and mode intended.
        let after = self.sudo_stat(b, path)?;
        let owner_ok = |got: Option<&super::Owner>| match (&existing, new_owner, got) {
            (Some(old), _, got) => old.owner.as_ref().map(|o| (o.uid, o.gid)) == got.map(|o| (o.uid, o.gid)),
            (None, Some(want), Some(got)) => {
                Some(want)
                    == got
                        .user
                        .as_deref()
                        .zip(got.group.as_deref())
                        .map(|(u, g)| format!("{u}:{g}"))
                        .as_deref()
            }
            (None, Some(_), None) => false,
            (None, None, _) => true,
        };
        match &after {
            Some(st)
                if st.is_file
                    && st.size == bytes.len() as u64
                    && st.mode == want_mode
                    && owner_ok(st.owner.as_ref()) => {}
            _ => {
                return Err(RemoteError::UnsafeEntry {
                    path: path.to_string(),
                    detail: "after the rename the target is not the regular file written (size, owner or mode differ)"
                        .into(),
                });
            }
        }
        let back = self.sudo_fetch(b, path, bytes.len() as u64 + 1024 * 1024)?;
        let expected = crate::digest::sha256_hex(bytes);
        let got = crate::digest::sha256_hex(&back.bytes);
        if expected != got {
            return Err(RemoteError::ReadBackMismatch {
                path: path.to_string(),
                expected,
                got,
            });
        }
        Ok(())
    }

    /// Removes what interrupted writes to `path` left beside it: the fixed temp file, and
    /// temp directories of tree restores.
    pub(super) fn sudo_remove_temp(&self, b: &Become, path: &str) -> Result<(), RemoteError> {
        self.sudo_ok(b, &stale_temps_op(path), &[])
    }

    /// Paths named `.NAME.<tag>*` beside `path`, through sudo.
    pub(super) fn sudo_beside(&self, b: &Become, path: &str, tag: &str) -> Result<Vec<String>, RemoteError> {
        let op = beside_op(path, tag);
        let ran = self
            .sudo_run(b, &op, &[], 1024 * 1024)?
            .ok_or_else(|| RemoteError::Ssh {
                during: format!("looking beside {path}"),
                detail: "unexpectedly long output".into(),
            })?;
        if ran.status != 0 {
            return Err(RemoteError::Command {
                command: format!("sudo {}", op.argv.join(" ")),
                status: ran.status,
                stderr: ran.stderr,
            });
        }
        Ok(String::from_utf8_lossy(&ran.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// A new directory with exactly `mode`.
    pub(super) fn sudo_make_dir(&self, b: &Become, path: &str, mode: u32) -> Result<(), RemoteError> {
        let mode = format!("{:04o}", mode & 0o7777);
        self.sudo_ok(b, &op("make a directory", &[MKDIR, "-m", &mode, "--", path]), &[])
    }

    /// A new file with exactly `mode`: created 0600, written over stdin, then chmod.
    pub(super) fn sudo_write_new_file(
        &self,
        b: &Become,
        path: &str,
        bytes: &[u8],
        mode: u32,
    ) -> Result<(), RemoteError> {
        if self.sudo_stat(b, path)?.is_some() {
            return Err(RemoteError::UnsafeEntry {
                path: path.to_string(),
                detail: "already exists".into(),
            });
        }
        let output = format!("of={path}");
        let mode = format!("{:04o}", mode & 0o7777);
        self.sudo_ok(b, &op("create", &[INSTALL, "-m", "0600", "/dev/null", path]), &[])?;
        self.sudo_ok(
            b,
            &op(
                "write",
                &[
                    DD,
                    &output,
                    "conv=nocreat,notrunc,fsync",
                    "oflag=nofollow",
                    "status=none",
                ],
            ),
            bytes,
        )?;
        self.sudo_ok(b, &op("mode", &[CHMOD, &mode, "--", path]), &[])
    }

    /// `chown -R --reference` through sudo.
    pub(super) fn sudo_chown_like(&self, b: &Become, path: &str, reference: &str) -> Result<(), RemoteError> {
        let reference = format!("--reference={reference}");
        self.sudo_ok(b, &op("owner", &[CHOWN, "-R", &reference, "--", path]), &[])
    }

    /// `chown -R -h USER:GROUP` through sudo.
    pub(super) fn sudo_chown_tree(&self, b: &Become, path: &str, owner: &str) -> Result<(), RemoteError> {
        self.sudo_ok(b, &op("owner", &[CHOWN, "-R", "-h", owner, "--", path]), &[])
    }

    /// `mv -T` through sudo.
    pub(super) fn sudo_rename(&self, b: &Become, from: &str, to: &str) -> Result<(), RemoteError> {
        self.sudo_ok(b, &op("rename", &[MV, "-T", "--", from, to]), &[])
    }

    /// `rm -rf` through sudo, for trees coldkeep itself created.
    pub(super) fn sudo_remove_tree(&self, b: &Become, path: &str) -> Result<(), RemoteError> {
        self.sudo_ok(b, &op("remove", &[RM, "-rf", "--", path]), &[])
    }
}

/// sudo's own failure in a command's exit status and stderr, as an error naming the fix; `None`
/// when sudo ran the program (whose failure is the caller's to judge).
fn refusal(addr: &str, b: &Become, op: &Op, status: i32, stderr: &str) -> Option<RemoteError> {
    let addr = addr.to_string();
    if status == 127 && !stderr.contains(op.argv[0].as_str()) {
        return Some(RemoteError::SudoMissing { addr });
    }
    if stderr.contains("unknown user") {
        return Some(RemoteError::BecomeUserMissing {
            addr,
            user: b.user.clone(),
        });
    }
    let refused = [
        "a password is required",
        "is not allowed to execute",
        "not in the sudoers file",
    ];
    let tty = stderr.contains("must have a tty");
    if !tty && !refused.iter().any(|r| stderr.contains(r)) {
        return None;
    }
    let detail = if tty {
        format!(
            "sudo wants a terminal (`Defaults requiretty`): add `Defaults:{} !requiretty`",
            b.ssh_user
        )
    } else {
        crate::text::escape_control(stderr.lines().last().unwrap_or("").trim_start_matches("sudo: "))
    };
    Some(RemoteError::SudoRefused {
        addr,
        node: b.node.clone(),
        detail,
        rule: sudoers_rule(&b.ssh_user, &b.user, op),
    })
}

/// Parses `stat -c STAT_FORMAT` output.
fn parse_stat(text: &str) -> Option<RemoteStat> {
    let mut f = text.trim_end_matches('\n').splitn(6, '/');
    let raw = u32::from_str_radix(f.next()?, 16).ok()?;
    let uid = f.next()?.parse().ok()?;
    let gid = f.next()?.parse().ok()?;
    let user = f.next()?.to_string();
    let group = f.next()?.to_string();
    let size = f.next()?.parse().ok()?;
    let known = |n: String| (n != "UNKNOWN").then_some(n);
    Some(RemoteStat {
        is_dir: raw & 0o170000 == 0o040000,
        is_file: raw & 0o170000 == 0o100000,
        size,
        mode: raw & 0o7777,
        owner: Some(Owner {
            uid,
            gid,
            user: known(user),
            group: known(group),
        }),
    })
}

/// A file or directory read from a tar stream.
type Parsed = Vec<(TreeEntry, Option<Zeroizing<Vec<u8>>>)>;

/// Files with their bytes, and directories.
type Split = (Vec<(TreeEntry, Zeroizing<Vec<u8>>)>, Vec<TreeEntry>);

fn parsed_split(parsed: Parsed) -> Split {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for (entry, bytes) in parsed {
        match bytes {
            Some(b) => files.push((entry, b)),
            None => dirs.push(entry),
        }
    }
    files.sort_by(|a, b| a.0.rel.cmp(&b.0.rel));
    dirs.sort_by(|a: &TreeEntry, b: &TreeEntry| a.rel.cmp(&b.rel));
    (files, dirs)
}

/// Parses a tar stream of the tree under `root`: directories and regular files only, with the
/// caps of [`TreeLimits`]; entries (and everything under directories) that `skip` names dropped.
fn parse_tar(
    root: &str,
    stream: &[u8],
    limits: TreeLimits,
    skip: &dyn Fn(&str) -> bool,
) -> Result<Parsed, RemoteError> {
    use std::io::Read;
    let bad = |detail: String| RemoteError::Ssh {
        during: format!("reading the tar stream of {root}"),
        detail,
    };
    let mut out: Parsed = Vec::new();
    let mut files = 0u64;
    let mut total = 0u64;
    let mut archive = tar::Archive::new(stream);
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let raw_path = entry.path_bytes().into_owned();
        let Ok(text) = String::from_utf8(raw_path) else {
            return Err(RemoteError::UnsafeEntry {
                path: root.to_string(),
                detail: "a name that is not valid UTF-8".into(),
            });
        };
        let rel = text.trim_start_matches("./").trim_end_matches('/').to_string();
        if rel.is_empty() || rel == "." {
            continue;
        }
        if rel.split('/').any(|c| c == ".." || c.is_empty()) || rel.starts_with('/') {
            return Err(RemoteError::UnsafeEntry {
                path: format!("{root}/{rel}"),
                detail: "a path that leaves the tree".into(),
            });
        }
        let skipped = rel
            .match_indices('/')
            .map(|(i, _)| &rel[..i])
            .chain(std::iter::once(rel.as_str()))
            .any(skip);
        if skipped {
            continue;
        }
        let header = entry.header();
        let mode = header.mode().map_err(|e| bad(e.to_string()))? & 0o7777;
        let owner = match (header.uid(), header.gid()) {
            (Ok(uid), Ok(gid)) => Some(Owner {
                uid: uid as u32,
                gid: gid as u32,
                user: header.username().ok().flatten().map(str::to_string),
                group: header.groupname().ok().flatten().map(str::to_string),
            }),
            _ => None,
        };
        let abs = format!("{root}/{rel}");
        match header.entry_type() {
            tar::EntryType::Directory => out.push((
                TreeEntry {
                    rel,
                    size: 0,
                    mode,
                    owner,
                },
                None,
            )),
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                files += 1;
                total = total.saturating_add(size);
                if files > limits.max_files {
                    return Err(RemoteError::TreeTooLarge {
                        path: root.to_string(),
                        detail: format!("more than {} files (max_files)", limits.max_files),
                    });
                }
                if total > limits.max_size {
                    return Err(RemoteError::TreeTooLarge {
                        path: root.to_string(),
                        detail: format!("more than {} bytes in all (max_size)", limits.max_size),
                    });
                }
                let mut bytes = Zeroizing::new(Vec::with_capacity(size as usize));
                entry.read_to_end(&mut bytes).map_err(|e| bad(e.to_string()))?;
                out.push((
                    TreeEntry {
                        rel,
                        size,
                        mode,
                        owner,
                    },
                    Some(bytes),
                ));
            }
            tar::EntryType::Symlink => {
                return Err(RemoteError::UnsafeEntry {
                    path: abs,
                    detail: "a symbolic link (refused: a keystore holds only files and directories)".into(),
                });
            }
            _ => {
                return Err(RemoteError::UnsafeEntry {
                    path: abs,
                    detail: "not a regular file or directory (device, fifo, socket or hard link)".into(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_output() {
        let st = parse_stat("8100/0/0/root/root/2048\n").unwrap();
        assert!(st.is_file && !st.is_dir);
        assert_eq!((st.mode, st.size), (0o400, 2048));
        let o = st.owner.unwrap();
        assert_eq!((o.uid, o.gid, o.user.as_deref()), (0, 0, Some("root")));
        let link = parse_stat("a1ff/0/0/root/root/9").unwrap();
        assert!(!link.is_file && !link.is_dir);
        assert!(parse_stat("garbage").is_none());
        assert_eq!(
            parse_stat("41c0/7/7/UNKNOWN/x/4096").unwrap().owner.unwrap().user,
            None
        );
    }

    #[test]
    fn sudoers_rules_pin_and_escape_every_argument() {
        let rule = sudoers_rule("nodeadmin", "root", &read_op("/home/a b/k,1.p12"));
        assert_eq!(
            rule,
            r"nodeadmin ALL=(root) NOPASSWD: /usr/bin/dd if\=/home/a\ b/k\,1.p12 iflag\=nofollow status\=none"
        );
        assert_eq!(temp_of("/home/n/t/a.p12"), "/home/n/t/.a.p12.coldkeep-tmp");
        assert!(sudoers_rule("u", "root", &stat_op("/k/a*[1]?")).ends_with(r"-- /k/a\*\[1\]\?"));
        assert!(
            sudoers_rule("u", "root", &stale_temps_op("/k/a.p12"))
                .contains(r"-name .a.p12.coldkeep-tmp\* -exec")
        );
        assert!(
            command_line("root", &stat_op("/x'y").argv).starts_with("sudo -n -u 'root' -- '/usr/bin/stat'")
        );
    }

    #[test]
    fn sudo_failures_name_the_fix() {
        let b = Become {
            user: "acra".into(),
            ssh_user: "nodeadmin".into(),
            node: "gw".into(),
        };
        let op = read_op("/k/a");
        let msg = |status, stderr: &str| refusal("h:22", &b, &op, status, stderr).map(|e| e.to_string());
        let missing = msg(127, "sh: 1: sudo: not found").unwrap();
        assert!(missing.contains("has no sudo"), "{missing}");
        let user = msg(
            1,
            "sudo: unknown user acra\nsudo: error initializing audit plugin",
        )
        .unwrap();
        assert!(user.contains("become_user `acra` does not exist"), "{user}");
        let password = msg(1, "sudo: a password is required").unwrap();
        assert!(password.contains("config sudoers --node gw"), "{password}");
        assert!(
            password.contains(r"nodeadmin ALL=(acra) NOPASSWD: /usr/bin/dd if\=/k/a"),
            "{password}"
        );
        let tty = msg(1, "sudo: sorry, you must have a tty to run sudo").unwrap();
        assert!(tty.contains("Defaults:nodeadmin !requiretty"), "{tty}");
        // The program's own failure is not sudo's.
        assert!(msg(1, "dd: failed to open '/k/a': No such file or directory").is_none());
        assert!(msg(127, "sudo: /usr/bin/dd: command not found").is_none());
    }

    #[test]
    fn a_dripping_or_flooding_node_is_cut_off_and_its_words_are_escaped() {
        // A node that never stops sending: the cap ends it, and the deadline ends it first.
        let io = |e: std::io::Error| RemoteError::Ssh {
            during: "test".into(),
            detail: e.to_string(),
        };
        let mut endless = std::io::repeat(b'x');
        let capped = read_capped(&mut endless, 100_000, &|| Ok(()), &io).unwrap();
        assert!(capped.is_none(), "over the cap");
        let calls = std::cell::Cell::new(0);
        let late = || {
            calls.set(calls.get() + 1);
            if calls.get() > 3 {
                Err(RemoteError::Timeout {
                    during: "reading".into(),
                    secs: 1,
                })
            } else {
                Ok(())
            }
        };
        let err = read_capped(&mut endless, u64::MAX, &late, &io).unwrap_err();
        assert!(matches!(err, RemoteError::Timeout { .. }), "{err}");
        // sudo's refusal quotes the node's stderr only with control characters escaped.
        let b = Become {
            user: "root".into(),
            ssh_user: "nodeadmin".into(),
            node: "gw".into(),
        };
        let e = refusal(
            "h:22",
            &b,
            &read_op("/k"),
            1,
            "sudo: first line\n\x1b[2Jsudo: a password is required",
        )
        .unwrap()
        .to_string();
        assert!(e.contains("\\u{1b}[2J") && !e.contains('\x1b'), "{e}");
    }

    fn tar_of(entries: &[(&str, &[u8], tar::EntryType)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data, kind) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_path(name).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_uid(7);
            h.set_gid(8);
            h.set_entry_type(*kind);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn tar_parsing_keeps_caps_and_refusals() {
        let limits = TreeLimits {
            max_files: 2,
            max_size: 10,
        };
        let dir = tar::EntryType::Directory;
        let reg = tar::EntryType::Regular;
        let ok = tar_of(&[
            ("./", b"", dir),
            ("./a", b"12", reg),
            ("./d/", b"", dir),
            ("./d/b", b"3", reg),
        ]);
        let parsed = parse_tar("/k", &ok, limits, &|_| false).unwrap();
        let (files, dirs) = parsed_split(parsed);
        assert_eq!(files.len(), 2);
        assert_eq!(&files[1].1[..], b"3");
        let dirs: Vec<(String, u32, u32)> = dirs
            .into_iter()
            .map(|d| (d.rel, d.mode, d.owner.unwrap().uid))
            .collect();
        assert_eq!(dirs, vec![("d".to_string(), 0o600, 7)]);
        let skipped = parse_tar("/k", &ok, limits, &|p| p == "d").unwrap();
        assert_eq!(skipped.len(), 1);
        let many = tar_of(&[("a", b"1", reg), ("b", b"1", reg), ("c", b"1", reg)]);
        assert!(matches!(
            parse_tar("/k", &many, limits, &|_| false),
            Err(RemoteError::TreeTooLarge { .. })
        ));
        let big = tar_of(&[("a", b"12345678901", reg)]);
        assert!(matches!(
            parse_tar("/k", &big, limits, &|_| false),
            Err(RemoteError::TreeTooLarge { .. })
        ));
        for kind in [
            tar::EntryType::Symlink,
            tar::EntryType::Fifo,
            tar::EntryType::Char,
            tar::EntryType::Link,
        ] {
            let t = tar_of(&[("x", b"", kind)]);
            assert!(matches!(
                parse_tar("/k", &t, limits, &|_| false),
                Err(RemoteError::UnsafeEntry { .. })
            ));
        }
    }
}

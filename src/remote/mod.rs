//! SSH to one node: connect with host-key checking, authenticate, fetch and push files.
//!
//! One [`Session`] per node per run, used from one thread. Fetched bytes live only in memory
//! ([`Zeroizing`] buffers), never on local disk.

mod connect;
mod error;
pub mod helper;
pub(crate) mod known_hosts;
mod node;
mod policy_text;
mod push;
mod sudoers;
mod swap;
mod tree;
mod via_helper;

pub use connect::fingerprint_of_blob;
pub use error::RemoteError;
pub use node::Node;
pub use policy_text::{bootstrap_policy_text, node_policy_text};
pub use sudoers::{rule as sudoers_rule, sudoers_text};
pub use swap::{
    SwapState, TreeRestoreError, TreeUpload, UploadFile, no_record as no_swap_record, swap_trees,
};
pub use tree::{FetchedTree, RemoteTree, TreeEntry, TreeLimits};
pub use via_helper::{Access, WriteRule, command_line as helper_command_line};

use zeroize::Zeroizing;

/// A file read from the node.
pub struct RemoteFile {
    /// The exact bytes, wiped on drop.
    pub bytes: Zeroizing<Vec<u8>>,
    /// Unix permission bits (e.g. 0o400).
    pub mode: u32,
    /// Who owns it, when the transport tells.
    pub owner: Option<Owner>,
}

/// The owner and group of a remote file: ids always, names when the node knows them. Kept in the
/// manifest so a restore can give a recreated file the owner it had.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    /// Numeric user id.
    pub uid: u32,
    /// Numeric group id.
    pub gid: u32,
    /// User name, when known.
    pub user: Option<String>,
    /// Group name, when known.
    pub group: Option<String>,
}

/// What `stat` found at a remote path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteStat {
    /// A directory.
    pub is_dir: bool,
    /// A regular file.
    pub is_file: bool,
    /// Size in bytes.
    pub size: u64,
    /// Unix permission bits.
    pub mode: u32,
    /// Owner and group.
    pub owner: Option<Owner>,
}

/// Output of a remote command.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// Exit status.
    pub status: i32,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: String,
}

/// An authenticated SSH session to one node.
pub struct Session {
    sess: ssh2::Session,
    fingerprint: String,
    /// `host:port`, for messages.
    addr: String,
    /// The io timeout in whole seconds (for [`RemoteError::Timeout`]).
    io_secs: u64,
    sftp: std::cell::OnceCell<ssh2::Sftp>,
    /// Opening SFTP failed on this session (no `Subsystem sftp` on the node): single files go
    /// over SCP from then on, without asking again.
    no_sftp: std::cell::Cell<bool>,
    transfer: crate::config::FileTransfer,
    /// Set after a timeout: see [`Session::poison_on_timeout`].
    poisoned: std::cell::Cell<bool>,
    /// `become: sudo`: every read and write goes through the node helper ([`via_helper`]).
    helper: Option<via_helper::HelperSession>,
}

/// Most bytes coldkeep reads from one stream (stdout or stderr) of a remote command: its
/// commands (`chmod`, `mv`, `rm`, `ls`) print a few lines at most.
pub const MAX_EXEC_OUTPUT: u64 = 256 * 1024;
/// A remote command may run this many io timeouts in all (each read is bounded by one).
pub const EXEC_TIME_FACTOR: u64 = 2;
/// A file or tree read may take this many io timeouts in all: a node that drips bytes just
/// under the io timeout must not hold a run forever.
pub const READ_TIME_FACTOR: u64 = 20;

/// libssh2's `LIBSSH2_ERROR_TIMEOUT`.
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
/// SFTP status codes (`LIBSSH2_FX_*`).
const FX_NO_SUCH_FILE: i32 = 2;
const FX_PERMISSION_DENIED: i32 = 3;

/// Maps an ssh2 error to a [`RemoteError`]: libssh2 timeouts become `Timeout`.
fn map_ssh(e: ssh2::Error, during: &str, secs: u64) -> RemoteError {
    let timed_out = e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT);
    timeout_or_ssh(timed_out, during, secs, e.to_string())
}

/// Maps an I/O error from a channel or SFTP file read/write.
fn map_io(e: std::io::Error, during: &str, secs: u64) -> RemoteError {
    let timed_out = matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    );
    timeout_or_ssh(timed_out, during, secs, e.to_string())
}

fn timeout_or_ssh(timed_out: bool, during: &str, secs: u64, detail: String) -> RemoteError {
    let during = during.to_string();
    if timed_out {
        RemoteError::Timeout { during, secs }
    } else {
        RemoteError::Ssh { during, detail }
    }
}

/// Standard base64 without padding (as OpenSSH prints fingerprints).
fn base64_nopad(data: &[u8]) -> String {
    base64_encode(data).trim_end_matches('=').to_string()
}

/// Standard base64 with padding.
fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// The key type name (`ssh-ed25519`, ...) at the start of an SSH public key blob.
fn blob_key_type(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(blob.get(4..4 + len)?).ok()
}

/// A `FileStat` that sets only the permission bits.
fn mode_only(mode: u32) -> ssh2::FileStat {
    ssh2::FileStat {
        size: None,
        uid: None,
        gid: None,
        perm: Some(mode & 0o7777),
        atime: None,
        mtime: None,
    }
}

/// Splits a remote path into (directory, file name).
fn split_remote(path: &str) -> (String, String) {
    match path.rsplit_once('/') {
        Some(("", name)) => ("/".to_string(), name.to_string()),
        Some((dir, name)) => (dir.to_string(), name.to_string()),
        None => (".".to_string(), path.to_string()),
    }
}

/// `dir` joined with `name` without doubling the slash of `/`.
fn join_remote(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

impl Session {
    fn err(&self, e: ssh2::Error, during: &str) -> RemoteError {
        self.poison_on_timeout(map_ssh(e, during, self.io_secs))
    }

    fn io_err(&self, e: std::io::Error, during: &str) -> RemoteError {
        self.poison_on_timeout(map_io(e, during, self.io_secs))
    }

    /// After a timeout libssh2 may still expect the reply to the request that timed out (the
    /// SFTP channel keeps per-request state), so a later request could get an earlier one's
    /// answer: the session is not used again.
    fn poison_on_timeout(&self, e: RemoteError) -> RemoteError {
        if matches!(e, RemoteError::Timeout { .. }) {
            self.poisoned.set(true);
        }
        e
    }

    /// Refuses further requests on a session that timed out.
    fn usable(&self) -> Result<(), RemoteError> {
        if self.poisoned.get() {
            return Err(RemoteError::Ssh {
                during: format!("talking to {}", self.addr),
                detail: "an earlier operation on this connection timed out; not reusing it".into(),
            });
        }
        Ok(())
    }

    /// The node's SFTP channel, opened on first use and kept for the session: opening one costs
    /// a channel and a subsystem start (tens of milliseconds), a request on it well under one.
    fn sftp(&self) -> Result<&ssh2::Sftp, RemoteError> {
        self.usable()?;
        if let Some(sftp) = self.sftp.get() {
            return Ok(sftp);
        }
        let during = format!(
            "opening SFTP on {} (does its sshd_config have `Subsystem sftp`?)",
            self.addr
        );
        if self.no_sftp.get() {
            return Err(RemoteError::Ssh {
                during,
                detail: "the node refused the SFTP subsystem earlier in this session".into(),
            });
        }
        let sftp = self.sess.sftp().map_err(|e| {
            let e = self.err(e, &during);
            if !matches!(e, RemoteError::Timeout { .. }) {
                self.no_sftp.set(true);
            }
            e
        })?;
        Ok(self.sftp.get_or_init(|| sftp))
    }

    /// Logs, once per node address for the whole process, that a node serves no SFTP and
    /// single files are read over SCP instead: worth knowing (Acra trees and restores need
    /// SFTP), not worth a line per file.
    fn log_scp_fallback(&self, cause: &RemoteError) {
        static LOGGED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let mut logged = LOGGED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !logged.contains(&self.addr) {
            logged.push(self.addr.clone());
            tracing::warn!(node = %self.addr, "no SFTP on this node ({cause}); fetching single files over SCP");
        }
    }

    /// `SHA256:<base64>` fingerprint of the host key the node presented.
    pub fn host_key_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Stats a path (SFTP); `Ok(None)` when it does not exist.
    pub fn stat(&self, path: &str) -> Result<Option<RemoteStat>, RemoteError> {
        if self.helper.is_some() {
            // The helper never follows a link: a link is reported as one (neither file nor dir).
            return Ok(self.helper_stat(path)?.map(|(st, _)| st));
        }
        let sftp = self.sftp()?;
        self.stat_with(sftp, path)
    }

    fn stat_with(&self, sftp: &ssh2::Sftp, path: &str) -> Result<Option<RemoteStat>, RemoteError> {
        self.sftp_stat(sftp, path, true)
    }

    /// Reads a whole regular file into memory, refusing files over `max_size` bytes.
    /// Uses SFTP (or SCP with `file_transfer: scp`); a node without an SFTP subsystem is read
    /// over SCP alone, whatever the setting.
    pub fn fetch(&self, path: &str, max_size: u64) -> Result<RemoteFile, RemoteError> {
        if self.helper.is_some() {
            return self.helper_fetch(path, max_size);
        }
        // SFTP stat first: clean status codes for missing / forbidden / directory paths.
        let sftp = match self.sftp() {
            Ok(sftp) => sftp,
            Err(e) if self.no_sftp.get() && !self.poisoned.get() => {
                self.log_scp_fallback(&e);
                return self.fetch_scp_only(path, max_size);
            }
            Err(e) => return Err(e),
        };
        let st = self.stat_with(sftp, path)?.ok_or_else(|| RemoteError::NotFound {
            path: path.to_string(),
        })?;
        if st.is_dir {
            return Err(RemoteError::IsDirectory {
                path: path.to_string(),
            });
        }
        if st.size > max_size {
            return Err(RemoteError::TooLarge {
                path: path.to_string(),
                size: st.size,
                cap: max_size,
            });
        }
        if self.transfer == crate::config::FileTransfer::Sftp {
            let bytes = self.read_sftp(sftp, path, st.size, max_size)?;
            return Ok(RemoteFile {
                bytes,
                mode: st.mode,
                owner: st.owner,
            });
        }
        let bytes = match self.sess.scp_recv(std::path::Path::new(path)) {
            Ok((channel, scp)) => self.read_scp(channel, scp.size(), path, max_size)?,
            Err(e) => {
                // A node without an `scp` binary still serves SFTP.
                tracing::debug!(node = %self.addr, "SCP unavailable ({e}); reading {path} over SFTP");
                self.read_sftp(sftp, path, st.size, max_size)?
            }
        };
        Ok(RemoteFile {
            bytes,
            mode: st.mode,
            owner: st.owner,
        })
    }

    /// SCP without an SFTP stat first: the remote `scp`'s own error line says why a path
    /// cannot be read, mapped to the same errors as the SFTP path.
    fn fetch_scp_only(&self, path: &str, max_size: u64) -> Result<RemoteFile, RemoteError> {
        self.usable()?;
        let (channel, stat) = match self.sess.scp_recv(std::path::Path::new(path)) {
            Ok(found) => found,
            Err(e) => return Err(self.scp_failure(e, path)),
        };
        let mode = u32::try_from(stat.mode()).unwrap_or(0) & 0o7777;
        let bytes = self.read_scp(channel, stat.size(), path, max_size)?;
        // SCP tells no owner (the SFTP stat it replaces would have).
        Ok(RemoteFile {
            bytes,
            mode,
            owner: None,
        })
    }

    /// Why an SCP download failed: libssh2 only says "Failed to recv file", so one remote
    /// `test` (only on this error path) tells a missing, unreadable or directory path apart.
    fn scp_failure(&self, e: ssh2::Error, path: &str) -> RemoteError {
        let fallback = self.err(e, &format!("reading {path} over SCP"));
        if self.poisoned.get() {
            return fallback;
        }
        let p = shell_quote(path);
        let probe = format!(
            "if [ -d {p} ]; then echo dir; elif [ ! -e {p} ]; then echo missing; \
             elif [ ! -r {p} ]; then echo denied; else echo other; fi"
        );
        let path = path.to_string();
        match self
            .exec(&probe)
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        {
            Ok(kind) if kind == "dir" => RemoteError::IsDirectory { path },
            Ok(kind) if kind == "missing" => RemoteError::NotFound { path },
            Ok(kind) if kind == "denied" => RemoteError::PermissionDenied { path },
            _ => fallback,
        }
    }

    /// Reads exactly `size` bytes of an SCP download, then closes the channel properly.
    fn read_scp(
        &self,
        mut channel: ssh2::Channel,
        size: u64,
        path: &str,
        max_size: u64,
    ) -> Result<Zeroizing<Vec<u8>>, RemoteError> {
        use std::io::Read;
        if size > max_size {
            return Err(RemoteError::TooLarge {
                path: path.to_string(),
                size,
                cap: max_size,
            });
        }
        let during = format!("reading {path}");
        // Allocated once at the announced size: no reallocation leaves unwiped copies.
        let mut bytes = Zeroizing::new(vec![0u8; size as usize]);
        crate::harden::lock_in_memory(&bytes);
        let deadline = self.read_deadline();
        let mut at = 0;
        while at < bytes.len() {
            self.check_deadline(deadline, &during)?;
            let end = (at + 32 * 1024).min(bytes.len());
            let n = channel
                .read(&mut bytes[at..end])
                .map_err(|e| self.io_err(e, &during))?;
            if n == 0 {
                return Err(self.io_err(std::io::ErrorKind::UnexpectedEof.into(), &during));
            }
            at += n;
        }
        // libssh2 omits the trailing NUL, so the remote scp's exit status is not meaningful.
        let _ = channel.send_eof();
        let _ = channel.wait_eof();
        let _ = channel.close();
        let _ = channel.wait_close();
        Ok(bytes)
    }

    /// Reads a file over SFTP into memory, checking the cap while reading.
    fn read_sftp(
        &self,
        sftp: &ssh2::Sftp,
        path: &str,
        size_hint: u64,
        max_size: u64,
    ) -> Result<Zeroizing<Vec<u8>>, RemoteError> {
        use std::io::Read;
        let during = format!("reading {path}");
        let mut file = sftp
            .open(std::path::Path::new(path))
            .map_err(|e| match e.code() {
                ssh2::ErrorCode::SFTP(FX_NO_SUCH_FILE) => RemoteError::NotFound {
                    path: path.to_string(),
                },
                ssh2::ErrorCode::SFTP(FX_PERMISSION_DENIED) => RemoteError::PermissionDenied {
                    path: path.to_string(),
                },
                _ => self.err(e, &during),
            })?;
        let capacity = usize::try_from(size_hint).unwrap_or(0).min(16 * 1024 * 1024);
        let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
        crate::harden::lock_in_memory(&bytes);
        // Sized to the file (key files are a few KiB): a 32 KiB buffer zeroed and wiped for
        // each of an Acra tree's files cost 0.03 s of CPU in a 32-node backup (bench --quick,
        // 0.34 to 0.31 s). A file that grew since its size was read is still read whole.
        let chunk_len = usize::try_from(size_hint)
            .unwrap_or(usize::MAX)
            .saturating_add(1)
            .clamp(512, 32 * 1024);
        let mut chunk = Zeroizing::new(vec![0u8; chunk_len]);
        let deadline = self.read_deadline();
        loop {
            self.check_deadline(deadline, &during)?;
            let n = file.read(&mut chunk).map_err(|e| self.io_err(e, &during))?;
            if n == 0 {
                break;
            }
            if bytes.len() as u64 + n as u64 > max_size {
                return Err(RemoteError::TooLarge {
                    path: path.to_string(),
                    size: bytes.len() as u64 + n as u64,
                    cap: max_size,
                });
            }
            // Never let the Vec reallocate (that would leave unwiped copies behind).
            if bytes.len() + n > bytes.capacity() {
                let mut bigger = Zeroizing::new(Vec::with_capacity((bytes.len() + n) * 2));
                crate::harden::lock_in_memory(&bigger);
                bigger.extend_from_slice(&bytes);
                bytes = bigger;
            }
            bytes.extend_from_slice(&chunk[..n]);
        }
        let _ = file.close();
        Ok(bytes)
    }

    /// Runs a command; a non-zero exit is returned in [`ExecOutput`], not as an error.
    ///
    /// A hostile node must not be able to exhaust coldkeep: stdout and stderr are each capped at
    /// [`MAX_EXEC_OUTPUT`] bytes and the whole command at [`EXEC_TIME_FACTOR`] x the io timeout.
    /// Past either cap the command fails and the session is not used again (that node alone
    /// fails; the channel is abandoned mid-stream).
    pub fn exec(&self, command: &str) -> Result<ExecOutput, RemoteError> {
        self.usable()?;
        let during = format!("running `{command}`");
        let deadline = std::time::Instant::now()
            + std::time::Duration::from_secs(self.io_secs.saturating_mul(EXEC_TIME_FACTOR));
        let mut ch = self.sess.channel_session().map_err(|e| self.err(e, &during))?;
        ch.exec(command).map_err(|e| self.err(e, &during))?;
        let stdout = self.read_capped(&mut ch, MAX_EXEC_OUTPUT, deadline, &during, EXEC_TIME_FACTOR)?;
        let stderr = self.read_capped(
            &mut ch.stderr(),
            MAX_EXEC_OUTPUT,
            deadline,
            &during,
            EXEC_TIME_FACTOR,
        )?;
        let _ = ch.close();
        ch.wait_close().map_err(|e| self.err(e, &during))?;
        let status = ch.exit_status().map_err(|e| self.err(e, &during))?;
        Ok(ExecOutput {
            status,
            stdout,
            // The node's words, printed in errors: control characters escaped.
            stderr: crate::text::escape_control(String::from_utf8_lossy(&stderr).trim_end()),
        })
    }

    /// When a file read that starts now must have finished ([`READ_TIME_FACTOR`]).
    fn read_deadline(&self) -> std::time::Instant {
        std::time::Instant::now()
            + std::time::Duration::from_secs(self.io_secs.saturating_mul(READ_TIME_FACTOR))
    }

    /// Fails (and poisons the session) once `deadline` has passed.
    fn check_deadline(&self, deadline: std::time::Instant, during: &str) -> Result<(), RemoteError> {
        if std::time::Instant::now() > deadline {
            self.poisoned.set(true);
            return Err(RemoteError::Timeout {
                during: format!("{during} (too slow in all)"),
                secs: self.io_secs.saturating_mul(READ_TIME_FACTOR),
            });
        }
        Ok(())
    }

    /// Reads a stream to its end, failing past `cap` bytes or after `deadline` (each single
    /// read is bounded by the session's io timeout). Either failure poisons the session.
    fn read_capped(
        &self,
        reader: &mut dyn std::io::Read,
        cap: u64,
        deadline: std::time::Instant,
        during: &str,
        factor: u64,
    ) -> Result<Vec<u8>, RemoteError> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if std::time::Instant::now() > deadline {
                self.poisoned.set(true);
                return Err(RemoteError::Timeout {
                    during: format!("{during} (the node kept sending)"),
                    secs: self.io_secs.saturating_mul(factor),
                });
            }
            let n = reader.read(&mut chunk).map_err(|e| self.io_err(e, during))?;
            if n == 0 {
                return Ok(out);
            }
            if out.len() as u64 + n as u64 > cap {
                self.poisoned.set(true);
                return Err(RemoteError::TooLarge {
                    path: format!("output of {during}"),
                    size: out.len() as u64 + n as u64,
                    cap,
                });
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }

    /// Runs a command and turns a non-zero exit into [`RemoteError::Command`].
    fn exec_ok(&self, command: &str) -> Result<ExecOutput, RemoteError> {
        let out = self.exec(command)?;
        if out.status != 0 {
            return Err(RemoteError::Command {
                command: command.to_string(),
                status: out.status,
                stderr: out.stderr,
            });
        }
        Ok(out)
    }

    /// Writes `bytes` to `path` atomically, trusting nothing that sits at `path`:
    /// - a target that is not a regular file (symlink, directory, device) is refused, never
    ///   followed;
    /// - the mode is `mode` (what the backup recorded) for a new file, and the replaced file's
    ///   mode narrowed to `mode` otherwise: never looser than recorded;
    /// - the temp file beside it is created exclusively (`O_EXCL`) under a 128-bit random name;
    /// - `mv -T` renames it over the target (never into a directory that appeared there);
    /// - the replaced file's owner and group are kept; where the SSH user may not, it stops
    ///   before the rename ([`RemoteError::OwnerNotKept`]);
    /// - afterwards the target must be a regular file with the SHA-256 of `bytes`.
    ///
    /// On any failure before the rename the old file stays under its name and the temp file is
    /// removed (best effort). With `become: sudo` the node helper does the write through fds, with
    /// the owner and loosest mode its policy names (see `crate::nodehelper::write`).
    pub fn push(&self, path: &str, bytes: &[u8], mode: u32) -> Result<(), RemoteError> {
        self.push_owned(path, bytes, mode, None)
    }

    /// Like [`Session::push`]; a file that did not exist gets `owner` (`user:group`), the owner
    /// its backup recorded, so a restored key is not left owned by whoever wrote it.
    pub fn push_owned(
        &self,
        path: &str,
        bytes: &[u8],
        mode: u32,
        owner: Option<&str>,
    ) -> Result<(), RemoteError> {
        if self.helper.is_some() {
            // The node's policy decides the owner (`write_rule` tells the plan which).
            return self.helper_push(path, bytes, mode);
        }
        self.push_plain(path, bytes, mode, owner)
    }

    /// Whether the user and group names exist on the node (`getent`, as the SSH user).
    pub fn owner_exists(&self, user: &str, group: &str) -> Result<bool, RemoteError> {
        let out = self.exec(&format!(
            "getent passwd {} >/dev/null && getent group {} >/dev/null",
            shell_quote(user),
            shell_quote(group)
        ))?;
        Ok(out.status == 0)
    }

    /// Stats a path without following a final symlink (`is_file` and `is_dir` are then false);
    /// `Ok(None)` when it does not exist.
    pub fn lstat(&self, path: &str) -> Result<Option<RemoteStat>, RemoteError> {
        if self.helper.is_some() {
            return Ok(self.helper_stat(path)?.map(|(st, _)| st));
        }
        let sftp = self.sftp()?;
        self.lstat_with(sftp, path)
    }

    fn lstat_with(&self, sftp: &ssh2::Sftp, path: &str) -> Result<Option<RemoteStat>, RemoteError> {
        self.sftp_stat(sftp, path, false)
    }

    /// One SFTP stat, following a final symlink or not; `Ok(None)` when nothing is there.
    fn sftp_stat(
        &self,
        sftp: &ssh2::Sftp,
        path: &str,
        follow: bool,
    ) -> Result<Option<RemoteStat>, RemoteError> {
        let p = std::path::Path::new(path);
        let (result, what) = if follow {
            (sftp.stat(p), "stat")
        } else {
            (sftp.lstat(p), "lstat")
        };
        match result {
            Ok(st) => Ok(Some(RemoteStat {
                is_dir: st.is_dir(),
                is_file: st.is_file(),
                size: st.size.unwrap_or(0),
                mode: st.perm.unwrap_or(0) & 0o7777,
                owner: st.uid.zip(st.gid).map(|(uid, gid)| Owner {
                    uid,
                    gid,
                    user: None,
                    group: None,
                }),
            })),
            Err(e) if e.code() == ssh2::ErrorCode::SFTP(FX_NO_SUCH_FILE) => Ok(None),
            Err(e) if e.code() == ssh2::ErrorCode::SFTP(FX_PERMISSION_DENIED) => {
                Err(RemoteError::PermissionDenied {
                    path: path.to_string(),
                })
            }
            Err(e) => Err(self.err(e, &format!("{what} of {path}"))),
        }
    }

    /// Removes temp files (or directories) an interrupted upload to `path` left beside it.
    pub fn remove_stale_temps(&self, path: &str) -> Result<(), RemoteError> {
        if self.helper.is_some() {
            return self.helper_sweep(path);
        }
        let (dir, name) = split_remote(path);
        let dir_prefix = if dir.ends_with('/') {
            shell_quote(&dir)
        } else {
            format!("{}/", shell_quote(&dir))
        };
        let cmd = format!(
            "rm -rf -- {dir_prefix}{}*",
            shell_quote(&format!(".{name}.coldkeep-tmp-"))
        );
        self.exec_ok(&cmd)?;
        Ok(())
    }

    /// Closes the session politely.
    pub fn close(self) {
        let _ = self.sess.disconnect(None, "bye", None);
    }
}

/// Quotes a string for a POSIX shell (single quotes).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_nopad(b"fo"), "Zm8");
    }

    #[test]
    fn splits_remote_paths() {
        assert_eq!(split_remote("/a/b"), ("/a".into(), "b".into()));
        assert_eq!(split_remote("/b"), ("/".into(), "b".into()));
        assert_eq!(split_remote("b"), (".".into(), "b".into()));
        assert_eq!(join_remote("/", "x"), "/x");
    }
}

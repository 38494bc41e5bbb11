//! SSH to one node: connect with host-key checking, authenticate, fetch and push files.
//!
//! One [`Session`] per node per run, used from one thread. Fetched bytes live only in memory
//! ([`Zeroizing`] buffers), never on local disk.

use crate::config::NodeConfig;
use zeroize::Zeroizing;

/// Why an SSH operation failed. Messages never contain secret material.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("timed out after {secs}s while {during}")]
    Timeout { during: String, secs: u64 },
    #[error("SSH handshake with {addr} failed: {detail}")]
    Handshake { addr: String, detail: String },
    #[error(
        "host key of {host}:{port} is unknown (not in {known_hosts}); its fingerprint is {fingerprint}.\n  \
         If that is the node's key, accept it with either:\n    \
         ssh-keyscan -p {port} {host} >> {known_hosts}   (then compare the fingerprint)\n    \
         host_key: {fingerprint}   (pin it in the node's config)\n    \
         host_key_policy: accept-new   (record it on first contact)"
    )]
    UnknownHostKey {
        host: String,
        port: u16,
        fingerprint: String,
        known_hosts: String,
    },
    #[error(
        "HOST KEY OF {host}:{port} HAS CHANGED: expected {expected}, got {fingerprint}. \
         Someone may be intercepting the connection, or the node was reinstalled. Refusing to connect."
    )]
    HostKeyChanged {
        host: String,
        port: u16,
        expected: String,
        fingerprint: String,
    },
    #[error("authentication as {user} failed: {detail}")]
    Auth { user: String, detail: String },
    #[error("remote file {path} does not exist")]
    NotFound { path: String },
    #[error("remote path {path} is a directory, not a file")]
    IsDirectory { path: String },
    #[error("permission denied reading {path}")]
    PermissionDenied { path: String },
    #[error("remote file {path} is {size} bytes, over the {cap}-byte cap")]
    TooLarge { path: String, size: u64, cap: u64 },
    #[error("remote command `{command}` failed (exit {status}): {stderr}")]
    Command {
        command: String,
        status: i32,
        stderr: String,
    },
    #[error("read back of {path} does not match what was written (sha256 {expected} vs {got})")]
    ReadBackMismatch {
        path: String,
        expected: String,
        got: String,
    },
    #[error("SSH error during {during}: {detail}")]
    Ssh { during: String, detail: String },
}

impl RemoteError {
    /// Worth retrying later (connection refused, timeouts); host-key and auth errors are not.
    pub fn is_transient(&self) -> bool {
        matches!(self, RemoteError::Connect { .. } | RemoteError::Timeout { .. })
    }
}

/// A file read from the node.
pub struct RemoteFile {
    /// The exact bytes, wiped on drop.
    pub bytes: Zeroizing<Vec<u8>>,
    /// Unix permission bits (e.g. 0o400).
    pub mode: u32,
}

/// What `stat` found at a remote path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteStat {
    pub is_dir: bool,
    pub is_file: bool,
    pub size: u64,
    /// Unix permission bits.
    pub mode: u32,
}

/// Output of a remote command.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// An authenticated SSH session to one node.
pub struct Session {
    _private: (),
}

impl Session {
    /// Connects (TCP with `connect_timeout`), checks the host key (pin, or known_hosts with
    /// `check_port`; `accept-new` records unknown keys), and authenticates with the identity file
    /// (passphrase from its secret) or, failing that / without one, ssh-agent.
    pub fn connect(node: &NodeConfig) -> Result<Session, RemoteError> {
        let _ = node;
        todo!()
    }

    /// `SHA256:<base64>` fingerprint of the host key the node presented.
    pub fn host_key_fingerprint(&self) -> &str {
        todo!()
    }

    /// Stats a path (SFTP); `Ok(None)` when it does not exist.
    pub fn stat(&self, path: &str) -> Result<Option<RemoteStat>, RemoteError> {
        let _ = path;
        todo!()
    }

    /// Reads a whole regular file into memory, refusing files over `max_size` bytes.
    pub fn fetch(&self, path: &str, max_size: u64) -> Result<RemoteFile, RemoteError> {
        let _ = (path, max_size);
        todo!()
    }

    /// Runs a command; a non-zero exit is returned in [`ExecOutput`], not as an error.
    pub fn exec(&self, command: &str) -> Result<ExecOutput, RemoteError> {
        let _ = command;
        todo!()
    }

    /// Writes `bytes` to `path` atomically: upload to a temp name in the same directory with
    /// `mode`, `mv -f` over the target, read back and compare SHA-256. On any failure the old
    /// file stays under its name and the temp file is removed (best effort).
    pub fn push(&self, path: &str, bytes: &[u8], mode: u32) -> Result<(), RemoteError> {
        let _ = (path, bytes, mode);
        todo!()
    }

    /// Removes temp files an interrupted [`Session::push`] to `path` left in its directory.
    pub fn remove_stale_temps(&self, path: &str) -> Result<(), RemoteError> {
        let _ = path;
        todo!()
    }

    /// Closes the session politely.
    pub fn close(self) {}
}

/// Quotes a string for a POSIX shell (single quotes).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

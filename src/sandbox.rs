//! Throwaway SSH nodes on loopback: real OpenSSH `sshd` processes with their own host keys,
//! a client key and a known_hosts file. Used by `coldkeep demo` and by the integration tests.
//!
//! Each node serves the whole local filesystem; tests give each node its own directory tree
//! (`node.root`) and point keystore paths into it.

use std::path::{Path, PathBuf};
use std::process::Child;

/// Why a sandbox node could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sshd not found (looked for /usr/sbin/sshd and sshd on PATH); install openssh-server")]
    NoSshd,
    #[error("{what}: {detail}")]
    Failed { what: String, detail: String },
}

/// Client-side material shared by every node of a sandbox.
pub struct Sandbox {
    /// Directory holding keys, configs and node trees.
    pub dir: PathBuf,
    /// Private key (OpenSSH ed25519, no passphrase) the nodes accept.
    pub client_key: PathBuf,
    /// known_hosts listing every started node as `[127.0.0.1]:port`.
    pub known_hosts: PathBuf,
    /// The user the nodes accept (the current user).
    pub user: String,
}

/// One running sshd.
pub struct SandboxNode {
    pub name: String,
    pub port: u16,
    /// `SHA256:...` of its ed25519 host key.
    pub host_key_fingerprint: String,
    /// The node's own file tree (`<sandbox>/nodes/<name>/root`).
    pub root: PathBuf,
    /// Its host private key file (to make another node present the same key, or to change it).
    pub host_key: PathBuf,
    child: Option<Child>,
}

impl Sandbox {
    /// Creates client key and empty known_hosts under `dir` (created 0700 if missing).
    pub fn new(dir: &Path) -> Result<Sandbox, SandboxError> {
        let _ = dir;
        todo!()
    }

    /// Starts an sshd for `name` on a free 127.0.0.1 port, waits until it accepts connections
    /// (by polling the port, not sleeping blindly), and, when `trust` is true, adds its key
    /// to known_hosts.
    pub fn start_node(&self, name: &str, trust: bool) -> Result<SandboxNode, SandboxError> {
        let _ = (name, trust);
        todo!()
    }
}

impl SandboxNode {
    /// Kills the sshd (and so every connection it serves) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for SandboxNode {
    fn drop(&mut self) {
        self.kill();
    }
}

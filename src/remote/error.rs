//! Why a remote operation failed, one variant per cause, each message naming the fix where
//! there is one. Messages never contain secret material; strings from the node are escaped
//! before they get here.

/// Why an SSH operation failed. Messages never contain secret material.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot connect to {addr}: {source}")]
    /// The TCP connection failed.
    Connect {
        /// `host:port` of the node.
        addr: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    #[error("timed out after {secs}s while {during}")]
    /// An operation timed out.
    Timeout {
        /// What coldkeep was doing.
        during: String,
        /// The timeout, in seconds.
        secs: u64,
    },
    #[error("SSH handshake with {addr} failed: {detail}")]
    /// The SSH handshake failed.
    Handshake {
        /// `host:port` of the node.
        addr: String,
        /// What went wrong, as the library reported it.
        detail: String,
    },
    #[error(
        "host key of {host}:{port} is unknown (not in {known_hosts}); its fingerprint is {fingerprint}.\n  \
         If that is the node's key, accept it with either:\n    \
         ssh-keyscan -p {port} {host} >> {known_hosts}   (then compare the fingerprint)\n    \
         host_key: {fingerprint}   (pin it in the node's config)\n    \
         host_key_policy: accept-new   (record it on first contact)"
    )]
    /// The host key is in no known_hosts file and not pinned.
    UnknownHostKey {
        /// The node's host name or address.
        host: String,
        /// The node's SSH port.
        port: u16,
        /// `SHA256:` fingerprint of the key the node presented.
        fingerprint: String,
        /// The known_hosts file that was searched.
        known_hosts: String,
    },
    #[error(
        "HOST KEY OF {host}:{port} HAS CHANGED: expected {expected}, got {fingerprint}. \
         Someone may be intercepting the connection, or the node was reinstalled. Refusing to connect."
    )]
    /// The host key differs from the known one.
    HostKeyChanged {
        /// The node's host name or address.
        host: String,
        /// The node's SSH port.
        port: u16,
        /// What was expected.
        expected: String,
        /// `SHA256:` fingerprint of the key the node presented.
        fingerprint: String,
    },
    #[error(
        "HOST KEY OF {host}:{port} IS REVOKED ({fingerprint} is listed under @revoked on line {line} \
         of {known_hosts}). Refusing to connect."
    )]
    /// The host key is listed under `@revoked` in known_hosts: refused even if also listed plainly.
    HostKeyRevoked {
        /// The node's host name or address.
        host: String,
        /// The node's SSH port.
        port: u16,
        /// `SHA256:` fingerprint of the key the node presented.
        fingerprint: String,
        /// The known_hosts file that revokes it.
        known_hosts: String,
        /// The line of the `@revoked` entry.
        line: usize,
    },
    #[error(
        "{known_hosts} trusts {host}:{port} only through @cert-authority (line {lines}), and coldkeep \
         does not verify host certificates: it negotiates the node's plain host key ({fingerprint}). \
         Add that key (ssh-keyscan -p {port} {host}, then compare the fingerprint) or pin it with \
         host_key: {fingerprint}"
    )]
    /// Only `@cert-authority` lines match the host; host certificates are not verified.
    HostKeyCertOnly {
        /// The node's host name or address.
        host: String,
        /// The node's SSH port.
        port: u16,
        /// `SHA256:` fingerprint of the key the node presented.
        fingerprint: String,
        /// The known_hosts file concerned.
        known_hosts: String,
        /// The `@cert-authority` lines that match, comma-separated.
        lines: String,
    },
    #[error("authentication as {user} failed: {detail}")]
    /// Authentication failed.
    Auth {
        /// The SSH user.
        user: String,
        /// What went wrong, as the library reported it.
        detail: String,
    },
    #[error("remote file {path} does not exist")]
    /// No such path.
    NotFound {
        /// The path concerned.
        path: String,
    },
    #[error("remote path {path} is a directory, not a file")]
    /// A directory where a file was expected.
    IsDirectory {
        /// The path concerned.
        path: String,
    },
    #[error("remote path {path} is not a directory")]
    /// A file where a directory was expected.
    NotADirectory {
        /// The path concerned.
        path: String,
    },
    #[error("refusing {path}: {detail}")]
    /// A symlink or special file inside a tree.
    UnsafeEntry {
        /// The path concerned.
        path: String,
        /// What went wrong, as the library reported it.
        detail: String,
    },
    #[error("the tree under {path} is too large: {detail}")]
    /// A tree over its caps.
    TreeTooLarge {
        /// The path concerned.
        path: String,
        /// What went wrong, as the library reported it.
        detail: String,
    },
    #[error(
        "permission denied on {path}: if root or a service user owns it, set `become: sudo` for this \
         node and set up the node helper there (README: Node setup)"
    )]
    /// No permission.
    PermissionDenied {
        /// The path concerned.
        path: String,
    },
    #[error(
        "sudo on {addr} refused to start the node helper: {detail}. coldkeep never types a password; allow \
         it with the line `coldkeep config sudoers --node {node}{flags}` prints (this one: `{rule}`)"
    )]
    /// `sudo -n` refused to run the helper (a password is required, requiretty, no rule).
    SudoRefused {
        /// `user@host:port`.
        addr: String,
        /// The configured node name, for the `config sudoers --node` hint.
        node: String,
        /// What sudo said, classified.
        detail: String,
        /// ` --restore` when the restore rule was wanted.
        flags: String,
        /// The sudoers line that would allow it.
        rule: String,
    },
    #[error(
        "the node helper {program} is not on {addr}: install the coldkeep package on the node (README: \
         Node setup), or set `node_helper` to where it is"
    )]
    /// sudo could not find the helper binary.
    HelperMissing {
        /// `host:port`.
        addr: String,
        /// The configured `node_helper`.
        program: String,
    },
    #[error("the node helper on {addr} refused to run: {problem}. Fix: {fix}")]
    /// The helper started and refused (its binary or policy is not root's alone, the policy is
    /// missing or invalid).
    HelperRefused {
        /// `host:port`.
        addr: String,
        /// What is wrong.
        problem: String,
        /// What fixes it.
        fix: String,
    },
    #[error("the node helper on {addr} {detail}")]
    /// The helper speaks another protocol version (the fix: upgrade one side).
    HelperVersion {
        /// `host:port`.
        addr: String,
        /// Versions and which side to upgrade.
        detail: String,
    },
    #[error("cannot start the node helper on {addr}: {detail}")]
    /// The helper did not start for another reason.
    HelperStart {
        /// `host:port`.
        addr: String,
        /// What happened (sudo's or the helper's words, escaped).
        detail: String,
    },
    #[error("node helper on {addr}: {detail}")]
    /// The helper refused or failed a request (policy, permission, disk).
    Helper {
        /// `host:port`.
        addr: String,
        /// Its message (paths and names only).
        detail: String,
    },
    #[error(
        "{path} is not in the node's policy {policy} on {addr}: list its keystore there \
         (`coldkeep config node-policy --node {node}` prints the policy to install)"
    )]
    /// With `become: sudo`, a path no keystore of the node's policy covers: refused before any
    /// request (and the helper would refuse it too).
    NotInPolicy {
        /// The path.
        path: String,
        /// The policy file.
        policy: String,
        /// `host:port`.
        addr: String,
        /// The configured node name.
        node: String,
    },
    #[error(
        "cannot give the new {path} the owner and group of the file it replaces as the SSH user: \
         set `become: sudo` for this node (nothing was changed)"
    )]
    /// Without `become`, the replaced file's owner could not be given to the new one.
    OwnerNotKept {
        /// The target path.
        path: String,
    },
    #[error(
        "`become: sudo` is set for {addr}, but the node has no sudo: install it there or remove `become`"
    )]
    /// `become: sudo` on a node without sudo.
    SudoMissing {
        /// `user@host:port`.
        addr: String,
    },
    #[error("become_user `{user}` does not exist on {addr}: create it or fix `become_user`")]
    /// The configured `become_user` does not exist on the node.
    BecomeUserMissing {
        /// `user@host:port`.
        addr: String,
        /// The missing user.
        user: String,
    },
    #[error("remote file {path} is {size} bytes, over the {cap}-byte cap")]
    /// A file over its cap.
    TooLarge {
        /// The path concerned.
        path: String,
        /// Size in bytes.
        size: u64,
        /// The cap in bytes.
        cap: u64,
    },
    #[error("remote command `{command}` failed (exit {status}): {stderr}")]
    /// A remote command failed.
    Command {
        /// The remote command.
        command: String,
        /// Exit status.
        status: i32,
        /// Standard error.
        stderr: String,
    },
    #[error("read back of {path} does not match what was written")]
    /// What was read back differs from what was written.
    ReadBackMismatch {
        /// The path concerned.
        path: String,
        /// SHA-256 of what was written (for a debugger; never printed: a hash of key material).
        expected: String,
        /// SHA-256 of what was read back (never printed).
        got: String,
    },
    #[error("SSH error during {during}: {detail}")]
    /// Another SSH error.
    Ssh {
        /// What coldkeep was doing.
        during: String,
        /// What went wrong, as the library reported it.
        detail: String,
    },
}

impl RemoteError {
    /// Worth retrying later (connection refused, timeouts); host-key and auth errors are not.
    pub fn is_transient(&self) -> bool {
        matches!(self, RemoteError::Connect { .. } | RemoteError::Timeout { .. })
    }
}

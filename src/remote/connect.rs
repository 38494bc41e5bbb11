//! Connecting to a node: TCP with a timeout, the SSH handshake, the host-key check (pin, or
//! known_hosts with `check_port`; `accept-new` records unknown keys), authentication, and with
//! `become: sudo` the start of the node helper.

use super::{
    Access, LIBSSH2_ERROR_TIMEOUT, RemoteError, Session, base64_encode, base64_nopad, blob_key_type,
    known_hosts, via_helper,
};
use crate::config::NodeConfig;

/// `SHA256:<base64 without padding>` of a raw SSH public key blob, like `ssh-keygen -l`.
pub fn fingerprint_of_blob(blob: &[u8]) -> String {
    use sha2::Digest;
    format!("SHA256:{}", base64_nopad(&sha2::Sha256::digest(blob)))
}

/// Normalises a fingerprint for comparison (trailing `=` padding is optional).
fn normalize_fingerprint(f: &str) -> &str {
    f.trim().trim_end_matches('=')
}

/// The host name as known_hosts writes it.
fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Offers only plain host-key algorithms: a node with a `HostCertificate` then presents its
/// plain key, which known_hosts or a pin can vouch for (host certificates are not verified).
fn prefer_plain_host_keys(sess: &ssh2::Session) {
    let Ok(algs) = sess.supported_algs(ssh2::MethodType::HostKey) else {
        return;
    };
    let plain: Vec<&str> = algs.into_iter().filter(|a| !a.contains("-cert-")).collect();
    if !plain.is_empty()
        && let Err(e) = sess.method_pref(ssh2::MethodType::HostKey, &plain.join(","))
    {
        tracing::debug!("cannot restrict host-key algorithms to plain keys: {e}");
    }
}

/// Line numbers as `3, 7`.
fn join_lines(lines: &[usize]) -> String {
    lines
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Appends one known_hosts line, creating the parent directory (0700) and file (0600).
fn append_known_host(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let mut existing_ends_with_newline = true;
    if let Ok(text) = std::fs::read(path) {
        existing_ends_with_newline = text.is_empty() || text.ends_with(b"\n");
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let mut text = String::new();
    if !existing_ends_with_newline {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

impl Session {
    /// Connects (TCP with `connect_timeout`), checks the host key (pin, or known_hosts with
    /// `check_port`; `accept-new` records unknown keys), and authenticates with the identity file
    /// (passphrase from its secret) or, failing that / without one, ssh-agent.
    pub fn connect(node: &NodeConfig) -> Result<Session, RemoteError> {
        Session::connect_for(node, Access::Read)
    }

    /// [`Session::connect`] for `access`: with `become: sudo`, the node helper is started now,
    /// under the read rule or (for a restore) the restore rule.
    pub fn connect_for(node: &NodeConfig, access: Access) -> Result<Session, RemoteError> {
        use std::net::ToSocketAddrs;
        let addr = format!("{}:{}", node.host, node.port);
        let io_secs = node.io_timeout.as_secs().max(1);
        let connect_secs = node.connect_timeout.as_secs().max(1);
        let connect_timeout = if node.connect_timeout.is_zero() {
            std::time::Duration::from_secs(30)
        } else {
            node.connect_timeout
        };

        // TCP.
        let addrs: Vec<std::net::SocketAddr> = (node.host.as_str(), node.port)
            .to_socket_addrs()
            .map_err(|source| RemoteError::Connect {
                addr: addr.clone(),
                source,
            })?
            .collect();
        let mut last_err: Option<std::io::Error> = None;
        let mut stream = None;
        for a in &addrs {
            match std::net::TcpStream::connect_timeout(a, connect_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let stream = match stream {
            Some(s) => s,
            None => {
                let e = last_err.unwrap_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "host name resolved to no address")
                });
                return Err(if e.kind() == std::io::ErrorKind::TimedOut {
                    RemoteError::Timeout {
                        during: format!("connecting to {addr}"),
                        secs: connect_secs,
                    }
                } else {
                    RemoteError::Connect { addr, source: e }
                });
            }
        };
        let _ = stream.set_nodelay(true);

        // SSH handshake.
        let mut sess = ssh2::Session::new().map_err(|e| RemoteError::Handshake {
            addr: addr.clone(),
            detail: e.to_string(),
        })?;
        sess.set_tcp_stream(stream);
        let timeout_ms = u32::try_from(node.io_timeout.as_millis()).unwrap_or(u32::MAX);
        sess.set_timeout(timeout_ms);
        prefer_plain_host_keys(&sess);
        sess.handshake().map_err(|e| {
            if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT) {
                RemoteError::Timeout {
                    during: format!("the SSH handshake with {addr}"),
                    secs: io_secs,
                }
            } else {
                RemoteError::Handshake {
                    addr: addr.clone(),
                    detail: e.to_string(),
                }
            }
        })?;

        // Host key.
        let (blob, key_type) = sess.host_key().ok_or_else(|| RemoteError::Handshake {
            addr: addr.clone(),
            detail: "the server presented no host key".into(),
        })?;
        let blob = blob.to_vec();
        let fingerprint = fingerprint_of_blob(&blob);
        Self::check_host_key(node, &blob, key_type, &fingerprint, &addr)?;

        // Authentication.
        Self::authenticate(node, &sess, io_secs)?;
        let helper = via_helper::start(&sess, node, access, &addr, io_secs)?;

        Ok(Session {
            sess,
            fingerprint,
            addr,
            io_secs,
            sftp: std::cell::OnceCell::new(),
            no_sftp: std::cell::Cell::new(false),
            transfer: node.file_transfer,
            poisoned: std::cell::Cell::new(false),
            helper,
        })
    }

    fn check_host_key(
        node: &NodeConfig,
        blob: &[u8],
        key_type: ssh2::HostKeyType,
        fingerprint: &str,
        addr: &str,
    ) -> Result<(), RemoteError> {
        let kh_err = |detail: String| RemoteError::Handshake {
            addr: addr.to_string(),
            detail,
        };
        let kh = match std::fs::read_to_string(&node.known_hosts) {
            Ok(text) => known_hosts::KnownHosts::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => known_hosts::KnownHosts::default(),
            // A pinned node does not need the file; it is read only for @revoked lines.
            Err(e) if node.host_key.is_some() => {
                // Visible by default: @revoked lines in it are not applied to this node now.
                tracing::warn!(known_hosts = %node.known_hosts.display(), "cannot read known_hosts ({e}): its @revoked lines are not checked; checking the pin only");
                known_hosts::KnownHosts::default()
            }
            Err(e) => {
                return Err(kh_err(format!(
                    "cannot read known_hosts {}: {e}",
                    node.known_hosts.display()
                )));
            }
        };
        if !kh.skipped.is_empty() {
            tracing::debug!(
                known_hosts = %node.known_hosts.display(),
                "skipping known_hosts lines that do not parse: {:?}",
                kh.skipped
            );
        }
        let revoked = |line: usize| RemoteError::HostKeyRevoked {
            host: node.host.clone(),
            port: node.port,
            fingerprint: fingerprint.to_string(),
            known_hosts: node.known_hosts.display().to_string(),
            line,
        };
        // A revoked key is refused whatever else vouches for it, a pin included.
        if let Some(e) = kh.revoked(blob) {
            return Err(revoked(e.line));
        }
        if let Some(pin) = &node.host_key {
            if normalize_fingerprint(pin) == normalize_fingerprint(fingerprint) {
                return Ok(());
            }
            return Err(RemoteError::HostKeyChanged {
                host: node.host.clone(),
                port: node.port,
                expected: pin.trim().to_string(),
                fingerprint: fingerprint.to_string(),
            });
        }
        match kh.check(&node.host, node.port, blob) {
            known_hosts::Verdict::Match { .. } => Ok(()),
            known_hosts::Verdict::Revoked { line } => Err(revoked(line)),
            known_hosts::Verdict::Mismatch { lines } => {
                let cas = kh.cert_authorities(&node.host, node.port);
                if cas.len() == lines.len() {
                    // Only @cert-authority lines cover this host: coldkeep negotiates plain host
                    // keys and does not verify host certificates.
                    return Err(RemoteError::HostKeyCertOnly {
                        host: node.host.clone(),
                        port: node.port,
                        fingerprint: fingerprint.to_string(),
                        known_hosts: node.known_hosts.display().to_string(),
                        lines: join_lines(&lines),
                    });
                }
                Err(RemoteError::HostKeyChanged {
                    host: node.host.clone(),
                    port: node.port,
                    expected: format!(
                        "the key on line {} of {}",
                        join_lines(&lines),
                        node.known_hosts.display()
                    ),
                    fingerprint: fingerprint.to_string(),
                })
            }
            known_hosts::Verdict::NotFound => match node.host_key_policy {
                crate::config::HostKeyPolicy::Strict => Err(RemoteError::UnknownHostKey {
                    host: node.host.clone(),
                    port: node.port,
                    fingerprint: fingerprint.to_string(),
                    known_hosts: node.known_hosts.display().to_string(),
                }),
                crate::config::HostKeyPolicy::AcceptNew => {
                    let type_name = blob_key_type(blob)
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("{key_type:?}"));
                    let line = format!(
                        "{} {} {}",
                        known_hosts_name(&node.host, node.port),
                        type_name,
                        base64_encode(blob)
                    );
                    append_known_host(&node.known_hosts, &line).map_err(|e| {
                        kh_err(format!(
                            "cannot record the new host key in {}: {e}",
                            node.known_hosts.display()
                        ))
                    })?;
                    tracing::warn!(
                        node = %node.name,
                        host = %node.host,
                        port = node.port,
                        %fingerprint,
                        known_hosts = %node.known_hosts.display(),
                        "recorded a new host key for {}:{} ({fingerprint}) in {} (host_key_policy: accept-new)",
                        node.host,
                        node.port,
                        node.known_hosts.display()
                    );
                    Ok(())
                }
            },
        }
    }

    fn authenticate(node: &NodeConfig, sess: &ssh2::Session, io_secs: u64) -> Result<(), RemoteError> {
        let user = node.user.as_str();
        let mut tried: Vec<String> = Vec::new();
        let is_timeout = |e: &ssh2::Error| e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT);
        if let Some(identity) = &node.identity {
            if let Err(m) =
                crate::config::perms::check_file(identity, crate::config::perms::FileKind::Identity)
            {
                return Err(RemoteError::Auth {
                    user: user.to_string(),
                    detail: m,
                });
            }
            if !identity.exists() {
                tried.push(format!("identity file {} does not exist", identity.display()));
            } else {
                let passphrase = match &node.identity_passphrase {
                    Some(secret) => Some(secret.resolve().map_err(|e| RemoteError::Auth {
                        user: user.to_string(),
                        detail: format!(
                            "cannot read the passphrase of {} ({}): {e}",
                            identity.display(),
                            secret.describe()
                        ),
                    })?),
                    None => None,
                };
                match sess.userauth_pubkey_file(user, None, identity, passphrase.as_ref().map(|p| p.as_str()))
                {
                    Ok(()) if sess.authenticated() => return Ok(()),
                    Ok(()) => tried.push(format!(
                        "key {} was accepted but more authentication is required",
                        identity.display()
                    )),
                    Err(e) if is_timeout(&e) => {
                        return Err(RemoteError::Timeout {
                            during: "authenticating".into(),
                            secs: io_secs,
                        });
                    }
                    Err(e) => {
                        let hint = if e.message().contains("Unsupported private key format")
                            || e.message().contains("Unable to extract public key")
                        {
                            " (unreadable key: wrong or missing passphrase, or an unsupported format)"
                        } else {
                            ""
                        };
                        tried.push(format!(
                            "key {} was refused: {}{hint}",
                            identity.display(),
                            e.message()
                        ));
                    }
                }
            }
        }
        let agent = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty());
        if agent.is_some() {
            match sess.userauth_agent(user) {
                Ok(()) if sess.authenticated() => return Ok(()),
                Ok(()) => tried.push("ssh-agent key accepted but more authentication is required".into()),
                Err(e) if is_timeout(&e) => {
                    return Err(RemoteError::Timeout {
                        during: "authenticating with ssh-agent".into(),
                        secs: io_secs,
                    });
                }
                Err(e) => tried.push(format!("ssh-agent (SSH_AUTH_SOCK): {}", e.message())),
            }
        } else if node.identity.is_none() {
            tried.push("no identity file configured and no ssh-agent (SSH_AUTH_SOCK is not set)".into());
        }
        Err(RemoteError::Auth {
            user: user.to_string(),
            detail: tried.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_names_carry_the_port_unless_22() {
        assert_eq!(known_hosts_name("h", 22), "h");
        assert_eq!(known_hosts_name("h", 2222), "[h]:2222");
    }
}

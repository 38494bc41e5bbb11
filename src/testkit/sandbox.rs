//! Throwaway SSH nodes on loopback: real OpenSSH `sshd` processes with their own host keys,
//! a client key and a known_hosts file. Used by `coldkeep demo` and by the integration tests.
//!
//! Each node serves the whole local filesystem; tests give each node its own directory tree
//! (`node.root`) and point keystore paths into it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a sandbox node could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sshd not found (looked for /usr/sbin/sshd and sshd on PATH); install openssh-server")]
    /// No sshd binary on this machine.
    NoSshd,
    #[error("{what}: {detail}")]
    /// Setting up the sandbox failed.
    Failed {
        /// What was being set up.
        what: String,
        /// What went wrong, as the library reported it.
        detail: String,
    },
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

/// How a sandbox node's sshd is configured, beyond the defaults every node shares.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Serve the SFTP subsystem (true by default). Some hardened hosts remove the `Subsystem`
    /// line; coldkeep must then fall back to SCP, and tests need such a server.
    pub sftp: bool,
    /// Extra sshd_config lines appended to the defaults (e.g. a `HostCertificate`), empty by
    /// default.
    pub extra_config: String,
}

impl Default for NodeOptions {
    fn default() -> NodeOptions {
        NodeOptions {
            sftp: true,
            extra_config: String::new(),
        }
    }
}

/// One running sshd.
pub struct SandboxNode {
    /// The node's name.
    pub name: String,
    /// Its sshd port on 127.0.0.1.
    pub port: u16,
    /// `SHA256:...` of its ed25519 host key.
    pub host_key_fingerprint: String,
    /// The node's own file tree (`<sandbox>/nodes/<name>/root`).
    pub root: PathBuf,
    /// Its host private key file (to make another node present the same key, or to change it).
    pub host_key: PathBuf,
    child: Option<Child>,
}

fn failed(what: impl Into<String>, detail: impl std::fmt::Display) -> SandboxError {
    SandboxError::Failed {
        what: what.into(),
        detail: detail.to_string(),
    }
}

fn io_failed(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError {
    let what = format!("{what} {}", path.display());
    move |e| failed(what, e)
}

/// Runs a command to completion; a non-zero exit is an error carrying its stderr.
fn run(what: &str, cmd: &mut Command) -> Result<String, SandboxError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| failed(what, format!("cannot run: {e}")))?;
    if !out.status.success() {
        return Err(failed(
            what,
            format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Makes an ed25519 key pair at `path` (and `path.pub`) unless it already exists.
fn keygen(path: &Path, comment: &str) -> Result<(), SandboxError> {
    if path.exists() && pub_path(path).exists() {
        return Ok(());
    }
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(pub_path(path));
    run(
        &format!("ssh-keygen for {}", path.display()),
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path),
    )?;
    Ok(())
}

fn pub_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

fn find_sshd() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/sbin/sshd");
    if fixed.is_file() {
        return Some(fixed);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("sshd"))
        .find(|p| p.is_file())
        .and_then(|p| std::path::absolute(p).ok())
}

fn current_user() -> Result<String, SandboxError> {
    if let Ok(u) = std::env::var("USER")
        && !u.is_empty()
    {
        return Ok(u);
    }
    let out = run("id -un", Command::new("id").arg("-un"))?;
    Ok(out.trim().to_string())
}

fn free_port() -> Result<u16, SandboxError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| failed("picking a free port", e))?;
    let port = l
        .local_addr()
        .map_err(|e| failed("picking a free port", e))?
        .port();
    Ok(port)
}

/// True once something on `port` speaks SSH (sends its banner).
fn speaks_ssh(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    while buf.len() < 4096 {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(7).any(|w| w == b"SSH-2.0") {
                    // Say hello back so sshd does not log a banner error, then leave.
                    let _ = s.write_all(b"SSH-2.0-coldkeep-probe\r\n");
                    return true;
                }
            }
        }
    }
    false
}

/// Pids of every live descendant of `pid` (from /proc).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // "pid (comm) state ppid ..."; comm may contain spaces and parentheses.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                parents.push((p, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &parents {
            if pp == p && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

fn signal(sig: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(sig)
        .arg("--")
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Sandbox {
    /// The config of a node reached the way tests reach it: this sandbox's user, key and
    /// known_hosts, strict host-key checking, SFTP, no sudo, short timeouts. Tests change the
    /// field they are about with struct update syntax.
    pub fn node_config(&self, node: &SandboxNode) -> crate::config::NodeConfig {
        crate::config::NodeConfig {
            name: node.name.clone(),
            host: "127.0.0.1".into(),
            port: node.port,
            user: self.user.clone(),
            identity: Some(self.client_key.clone()),
            identity_passphrase: None,
            known_hosts: self.known_hosts.clone(),
            host_key: None,
            host_key_policy: crate::config::HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(20),
            file_transfer: crate::config::FileTransfer::Sftp,
            become_: crate::config::Become::None,
            helper: crate::config::HelperConfig::default(),
            labels: vec![],
            schedule: None,
            keystores: vec![],
        }
    }

    /// Creates client key and empty known_hosts under `dir` (created 0700 if missing).
    pub fn new(dir: &Path) -> Result<Sandbox, SandboxError> {
        let dir = std::path::absolute(dir).map_err(io_failed("resolving", dir))?;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io_failed("creating", &dir))?;
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_failed("chmod", &dir))?;
        let client_key = dir.join("client_key");
        keygen(&client_key, "coldkeep-sandbox")?;
        let known_hosts = dir.join("known_hosts");
        std::fs::write(&known_hosts, b"").map_err(io_failed("writing", &known_hosts))?;
        std::fs::set_permissions(&known_hosts, std::fs::Permissions::from_mode(0o600))
            .map_err(io_failed("chmod", &known_hosts))?;
        let user = current_user()?;
        Ok(Sandbox {
            dir,
            client_key,
            known_hosts,
            user,
        })
    }

    /// Makes the nodes log in as `user`, an unprivileged local account created if missing, the
    /// way nodectl nodes are reached (root logins off): for tests of `become: sudo`. Needs root.
    ///
    /// Idempotent and safe to call from parallel tests: the account is created under a lock file
    /// and unlocked with `usermod -p '*'` (with `UsePAM no`, sshd refuses a `!` password field)
    /// without getting a password. sshd reads `AuthorizedKeysFile` with the user's rights, so
    /// the sandbox directory, its ancestors and the nodes' directories and roots become
    /// traversable (never listable) by others, and the nodes' `authorized_keys` (public keys)
    /// readable: a harness running under umask 077 would otherwise lock the login user out.
    pub fn login_as(&mut self, user: &str) -> Result<(), SandboxError> {
        ensure_user(user)?;
        let add = |path: &Path, bits: u32| -> Result<(), SandboxError> {
            let meta = std::fs::symlink_metadata(path).map_err(io_failed("stat", path))?;
            let mode = meta.permissions().mode();
            if mode & bits != bits {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode((mode | bits) & 0o7777))
                    .map_err(io_failed("chmod", path))?;
            }
            Ok(())
        };
        for dir in self.dir.ancestors() {
            add(dir, 0o001)?;
        }
        // The nodes' own directories (not what tests put under their roots).
        let nodes = self.dir.join("nodes");
        if nodes.is_dir() {
            add(&nodes, 0o001)?;
            for entry in std::fs::read_dir(&nodes).map_err(io_failed("listing", &nodes))? {
                let node = entry.map_err(io_failed("listing", &nodes))?.path();
                for path in [node.clone(), node.join("root")] {
                    if path.is_dir() {
                        add(&path, 0o001)?;
                    }
                }
                let keys = node.join("authorized_keys");
                if keys.is_file() {
                    add(&keys, 0o004)?;
                }
            }
        }
        self.user = user.to_string();
        Ok(())
    }

    /// Starts an sshd for `name` on a free 127.0.0.1 port, waits until it accepts connections
    /// (by polling the port, not sleeping blindly), and, when `trust` is true, adds its key
    /// to known_hosts.
    pub fn start_node(&self, name: &str, trust: bool) -> Result<SandboxNode, SandboxError> {
        self.start_node_with(name, trust, &NodeOptions::default())
    }

    /// [`Sandbox::start_node`] with options, for tests of server setups the default node does
    /// not have (against a real server rather than a mock): no SFTP subsystem (the SCP fallback),
    /// extra sshd_config lines (e.g. a `HostCertificate`; files they name may be placed in
    /// `<sandbox>/nodes/<name>/` beforehand, an existing `host_key` pair is kept).
    pub fn start_node_with(
        &self,
        name: &str,
        trust: bool,
        options: &NodeOptions,
    ) -> Result<SandboxNode, SandboxError> {
        let sshd = find_sshd().ok_or(SandboxError::NoSshd)?;
        let node_dir = self.dir.join("nodes").join(name);
        let root = node_dir.join("root");
        std::fs::create_dir_all(&root).map_err(io_failed("creating", &root))?;
        let host_key = node_dir.join("host_key");
        keygen(&host_key, &format!("coldkeep-sandbox-{name}"))?;
        let authorized_keys = node_dir.join("authorized_keys");
        std::fs::copy(pub_path(&self.client_key), &authorized_keys)
            .map_err(io_failed("writing", &authorized_keys))?;
        // Privilege separation directory (needed when running as root).
        let _ = std::fs::create_dir_all("/run/sshd");

        let config = node_dir.join("sshd_config");
        let log = node_dir.join("sshd.log");
        let mut last_detail = String::new();
        for _attempt in 0..5 {
            let port = free_port()?;
            let text = format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
                 {subsystem}LogLevel ERROR\nMaxStartups 100\nMaxSessions 50\n{}\n",
                host_key.display(),
                node_dir.join("sshd.pid").display(),
                authorized_keys.display(),
                options.extra_config,
                subsystem = if options.sftp {
                    "Subsystem sftp internal-sftp\n"
                } else {
                    ""
                },
            );
            std::fs::write(&config, text).map_err(io_failed("writing", &config))?;
            let log_file = std::fs::File::create(&log).map_err(io_failed("creating", &log))?;
            let mut child = Command::new(&sshd)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .process_group(0)
                .spawn()
                .map_err(|e| failed(format!("starting {}", sshd.display()), e))?;
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut exited = false;
            let mut ready = false;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    last_detail = format!("sshd exited ({status}): {}", text.trim());
                    exited = true;
                    break;
                }
                if speaks_ssh(port) {
                    ready = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if ready {
                let mut node = SandboxNode {
                    name: name.to_string(),
                    port,
                    host_key_fingerprint: String::new(),
                    root: root.clone(),
                    host_key: host_key.clone(),
                    child: Some(child),
                };
                node.host_key_fingerprint = fingerprint(&host_key)?;
                if trust {
                    self.trust(port, &host_key)?;
                }
                return Ok(node);
            }
            if !exited {
                let _ = child.kill();
                let _ = child.wait();
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(failed(
                    format!("sshd for node {name} on port {port}"),
                    format!("not ready after 10 s; log: {}", text.trim()),
                ));
            }
            let lower = last_detail.to_lowercase();
            if !(lower.contains("address already in use") || lower.contains("cannot bind")) {
                break;
            }
        }
        Err(failed(format!("sshd for node {name}"), last_detail))
    }

    /// Appends `[127.0.0.1]:port <type> <key>` to known_hosts.
    fn trust(&self, port: u16, host_key: &Path) -> Result<(), SandboxError> {
        let pub_file = pub_path(host_key);
        let text = std::fs::read_to_string(&pub_file).map_err(io_failed("reading", &pub_file))?;
        let mut fields = text.split_whitespace();
        let (Some(kind), Some(b64)) = (fields.next(), fields.next()) else {
            return Err(failed(
                format!("parsing {}", pub_file.display()),
                "not a public key",
            ));
        };
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.known_hosts)
            .map_err(io_failed("opening", &self.known_hosts))?;
        writeln!(f, "[127.0.0.1]:{port} {kind} {b64}").map_err(io_failed("writing", &self.known_hosts))?;
        Ok(())
    }
}

/// Creates the unprivileged local account `user` unless it exists (a login shell, a home, no
/// password, not locked), serialised across processes by a lock file. Needs root.
pub fn ensure_user(user: &str) -> Result<(), SandboxError> {
    if !user
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(failed(
            "creating a user",
            format!("`{user}` is not a plain user name"),
        ));
    }
    let script =
        format!("id -u {user} >/dev/null 2>&1 || useradd -m -s /bin/sh {user}; usermod -p '*' {user}");
    run(
        &format!("creating the user {user}"),
        Command::new("flock")
            .arg("/tmp/coldkeep-sandbox-users.lock")
            .args(["sh", "-c", &script]),
    )?;
    Ok(())
}

/// `SHA256:...` of a key pair's public half, from `ssh-keygen -l`.
fn fingerprint(key: &Path) -> Result<String, SandboxError> {
    let out = run(
        "ssh-keygen -l",
        Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(pub_path(key)),
    )?;
    out.split_whitespace()
        .nth(1)
        .filter(|f| f.starts_with("SHA256:"))
        .map(str::to_string)
        .ok_or_else(|| failed("ssh-keygen -l", format!("unexpected output: {out}")))
}

impl SandboxNode {
    /// Kills the sshd (and so every connection it serves) and waits for it.
    ///
    /// sshd puts each connection's processes in a session of their own (`setsid`), so killing
    /// the process group is not enough: the listener is stopped first (so it cannot fork),
    /// then it and every descendant found in /proc are killed.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id();
            if let Ok(None) = c.try_wait() {
                signal("-STOP", &[pid]);
                let mut all = vec![pid];
                // Children may fork while we look; stop them too and look again.
                for _ in 0..3 {
                    let found: Vec<u32> = descendants(pid)
                        .into_iter()
                        .filter(|p| !all.contains(p))
                        .collect();
                    if found.is_empty() {
                        break;
                    }
                    signal("-STOP", &found);
                    all.extend(found);
                }
                for d in descendants(pid) {
                    if !all.contains(&d) {
                        all.push(d);
                    }
                }
                signal("-KILL", &all);
                signal("-KILL", &[pid]);
            }
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

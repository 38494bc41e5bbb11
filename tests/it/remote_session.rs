//! The SSH layer against real sshd nodes from the sandbox.

use coldkeep::config::{HostKeyPolicy, NodeConfig, Secret};
use coldkeep::remote::{RemoteError, Session};
use coldkeep::testkit::sandbox::{Sandbox, SandboxNode};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

struct Env {
    _tmp: tempfile::TempDir,
    sandbox: Sandbox,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(&tmp.path().join("ssh")).unwrap();
    Env { _tmp: tmp, sandbox }
}

fn node_config(sandbox: &Sandbox, node: &SandboxNode) -> NodeConfig {
    NodeConfig {
        file_transfer: coldkeep::config::FileTransfer::Scp,
        ..sandbox.node_config(node)
    }
}

fn put(node: &SandboxNode, rel: &str, bytes: &[u8], mode: u32) -> String {
    let path = node.root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, bytes).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path.display().to_string()
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn connects_and_reports_the_host_key_fingerprint() {
    let e = env();
    let node = e.sandbox.start_node("n1", true).unwrap();
    assert!(node.host_key_fingerprint.starts_with("SHA256:"));
    let s = Session::connect(&node_config(&e.sandbox, &node)).unwrap();
    assert_eq!(s.host_key_fingerprint(), node.host_key_fingerprint);
    let out = s.exec("echo hello; echo oops >&2; exit 3").unwrap();
    assert_eq!(out.status, 3);
    assert_eq!(out.stdout, b"hello\n");
    assert_eq!(out.stderr, "oops");
    s.close();
}

#[test]
fn fetches_files_and_refuses_missing_directories_and_oversized() {
    let e = env();
    let node = e.sandbox.start_node("n1", true).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = put(&node, "keys/a.p12", &data, 0o400);
    let s = Session::connect(&node_config(&e.sandbox, &node)).unwrap();

    let f = s.fetch(&path, 1024 * 1024).unwrap();
    assert_eq!(&f.bytes[..], &data[..]);
    assert_eq!(f.mode, 0o400);

    // The same over SFTP (`ssh.file_transfer: sftp`).
    let mut sftp_cfg = node_config(&e.sandbox, &node);
    sftp_cfg.file_transfer = coldkeep::config::FileTransfer::Sftp;
    let over_sftp = Session::connect(&sftp_cfg).unwrap();
    let f = over_sftp.fetch(&path, 1024 * 1024).unwrap();
    assert_eq!(&f.bytes[..], &data[..]);
    assert!(matches!(
        over_sftp.fetch(&path, 1000),
        Err(RemoteError::TooLarge { .. })
    ));

    let st = s.stat(&path).unwrap().unwrap();
    assert!(st.is_file && !st.is_dir);
    assert_eq!(st.size, data.len() as u64);
    assert_eq!(st.mode, 0o400);

    let missing = node.root.join("keys/missing.p12").display().to_string();
    assert!(s.stat(&missing).unwrap().is_none());
    assert!(matches!(
        s.fetch(&missing, 1024),
        Err(RemoteError::NotFound { .. })
    ));

    let dir = node.root.join("keys").display().to_string();
    assert!(s.stat(&dir).unwrap().unwrap().is_dir);
    assert!(matches!(
        s.fetch(&dir, 1024),
        Err(RemoteError::IsDirectory { .. })
    ));

    match s.fetch(&path, 1000) {
        Err(RemoteError::TooLarge { size, cap, .. }) => {
            assert_eq!(size, data.len() as u64);
            assert_eq!(cap, 1000);
        }
        other => panic!("expected TooLarge, got {:?}", other.err()),
    }
    // An empty file is fine.
    let empty = put(&node, "keys/empty", b"", 0o600);
    assert!(s.fetch(&empty, 10).unwrap().bytes.is_empty());
}

#[test]
fn unknown_host_is_refused_with_its_fingerprint() {
    let e = env();
    let node = e.sandbox.start_node("n1", false).unwrap();
    match Session::connect(&node_config(&e.sandbox, &node)) {
        Err(err @ RemoteError::UnknownHostKey { .. }) => {
            let msg = err.to_string();
            assert!(msg.contains(&node.host_key_fingerprint), "{msg}");
            assert!(!err.is_transient());
        }
        other => panic!("expected UnknownHostKey, got {:?}", other.err()),
    }
}

#[test]
fn accept_new_records_the_key_then_strict_accepts_it() {
    let e = env();
    let node = e.sandbox.start_node("n1", false).unwrap();
    let mut cfg = node_config(&e.sandbox, &node);
    cfg.known_hosts = e.sandbox.dir.join("fresh/sub/known_hosts");
    cfg.host_key_policy = HostKeyPolicy::AcceptNew;
    let s = Session::connect(&cfg).unwrap();
    assert_eq!(s.host_key_fingerprint(), node.host_key_fingerprint);
    s.close();
    let text = fs::read_to_string(&cfg.known_hosts).unwrap();
    assert!(
        text.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", node.port)),
        "{text}"
    );
    assert_eq!(mode_of(&cfg.known_hosts), 0o600);
    assert_eq!(mode_of(cfg.known_hosts.parent().unwrap()), 0o700);
    // ssh-keygen agrees on the recorded key.
    let out = std::process::Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(&cfg.known_hosts)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&node.host_key_fingerprint));

    cfg.host_key_policy = HostKeyPolicy::Strict;
    Session::connect(&cfg).unwrap().close();
    // Nothing more was appended.
    assert_eq!(fs::read_to_string(&cfg.known_hosts).unwrap(), text);
}

#[test]
fn changed_host_key_is_refused() {
    let e = env();
    let node = e.sandbox.start_node("n1", true).unwrap();
    let mut cfg = node_config(&e.sandbox, &node);

    // A wrong pin.
    cfg.host_key = Some("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    match Session::connect(&cfg) {
        Err(RemoteError::HostKeyChanged {
            expected,
            fingerprint,
            ..
        }) => {
            assert_eq!(expected, "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
            assert_eq!(fingerprint, node.host_key_fingerprint);
        }
        other => panic!("expected HostKeyChanged, got {:?}", other.err()),
    }
    // The right pin works even with an empty known_hosts.
    cfg.host_key = Some(node.host_key_fingerprint.clone());
    cfg.known_hosts = e.sandbox.dir.join("empty_known_hosts");
    Session::connect(&cfg).unwrap().close();

    // known_hosts lists another key for this host:port.
    let other = e.sandbox.dir.join("other_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    let pubkey = fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut f = pubkey.split_whitespace();
    let kh = e.sandbox.dir.join("changed_known_hosts");
    fs::write(
        &kh,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            node.port,
            f.next().unwrap(),
            f.next().unwrap()
        ),
    )
    .unwrap();
    cfg.host_key = None;
    cfg.known_hosts = kh.clone();
    cfg.host_key_policy = HostKeyPolicy::AcceptNew; // a changed key is refused even so
    match Session::connect(&cfg) {
        Err(err @ RemoteError::HostKeyChanged { .. }) => {
            assert!(err.to_string().contains(&kh.display().to_string()), "{err}");
        }
        other => panic!("expected HostKeyChanged, got {:?}", other.err()),
    }
}

#[test]
fn wrong_client_key_fails_authentication() {
    let e = env();
    let node = e.sandbox.start_node("n1", true).unwrap();
    let wrong = e.sandbox.dir.join("wrong_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&wrong)
        .status()
        .unwrap();
    assert!(st.success());
    let mut cfg = node_config(&e.sandbox, &node);
    cfg.identity = Some(wrong.clone());
    match Session::connect(&cfg) {
        Err(err @ RemoteError::Auth { .. }) => {
            assert!(err.to_string().contains(&wrong.display().to_string()), "{err}");
            assert!(!err.is_transient());
        }
        other => panic!("expected Auth, got {:?}", other.err()),
    }
    // A missing key file is named too.
    cfg.identity = Some(e.sandbox.dir.join("nope"));
    match Session::connect(&cfg) {
        Err(err @ RemoteError::Auth { .. }) => assert!(err.to_string().contains("nope"), "{err}"),
        other => panic!("expected Auth, got {:?}", other.err()),
    }
}

#[test]
fn encrypted_identity_with_passphrase_from_a_secret() {
    let e = env();
    let node = e.sandbox.start_node("n1", true).unwrap();
    let key = e.sandbox.dir.join("enc_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "s3cret-pass", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    // Let the node accept it as well.
    let ak = e.sandbox.dir.join("nodes/n1/authorized_keys");
    let mut text = fs::read_to_string(&ak).unwrap();
    text.push_str(&fs::read_to_string(key.with_extension("pub")).unwrap());
    fs::write(&ak, text).unwrap();

    let pass = e.sandbox.dir.join("pass.txt");
    fs::write(&pass, "s3cret-pass\n").unwrap();
    let mut cfg = node_config(&e.sandbox, &node);
    cfg.identity = Some(key);
    cfg.identity_passphrase = Some(Secret::File(pass.clone()));
    // A secret file everyone may read is refused, naming the fix.
    fs::set_permissions(&pass, fs::Permissions::from_mode(0o644)).unwrap();
    let err = Session::connect(&cfg).err().expect("world-readable secret");
    assert!(err.to_string().contains("chmod o-rwx"), "{err}");
    fs::set_permissions(&pass, fs::Permissions::from_mode(0o600)).unwrap();
    Session::connect(&cfg).unwrap().close();

    fs::write(&pass, "Zq9-bad-passphrase\n").unwrap();
    match Session::connect(&cfg) {
        Err(err @ RemoteError::Auth { .. }) => {
            assert!(!err.to_string().contains("Zq9-bad"), "passphrase leaked: {err}")
        }
        other => panic!("expected Auth, got {:?}", other.err()),
    }
}

#[test]
fn closed_port_is_a_transient_connect_error() {
    let e = env();
    let mut node = e.sandbox.start_node("n1", true).unwrap();
    let cfg = node_config(&e.sandbox, &node);
    node.kill();
    match Session::connect(&cfg) {
        Err(err @ RemoteError::Connect { .. }) => assert!(err.is_transient()),
        other => panic!("expected Connect, got {:?}", other.err()),
    }
}

#[test]
fn silent_server_times_out() {
    let e = env();
    let node = e.sandbox.start_node("n1", true).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        // Hold the connection open, silent, until the client has given up.
        let _ = done_rx.recv();
        drop(sock);
    });
    let mut cfg = node_config(&e.sandbox, &node);
    cfg.port = port;
    cfg.io_timeout = Duration::from_secs(1);
    let start = Instant::now();
    let res = Session::connect(&cfg);
    let took = start.elapsed();
    done_tx.send(()).unwrap();
    holder.join().unwrap();
    match res {
        Err(RemoteError::Timeout { .. }) | Err(RemoteError::Handshake { .. }) => {}
        other => panic!("expected Timeout or Handshake, got {:?}", other.err()),
    }
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn push_creates_and_replaces_atomically() {
    let e = env();
    let node = e.sandbox.start_node("n1", true).unwrap();
    let dir = node.root.join("tessellation");
    fs::create_dir_all(&dir).unwrap();
    let target = dir.join("key.p12");
    let target_s = target.display().to_string();
    let s = Session::connect(&node_config(&e.sandbox, &node)).unwrap();

    let first: Vec<u8> = (0..70_001u32).map(|i| (i % 253) as u8).collect();
    s.push(&target_s, &first, 0o400).unwrap();
    assert_eq!(fs::read(&target).unwrap(), first);
    assert_eq!(mode_of(&target), 0o400);

    let second = b"second version".to_vec();
    s.push(&target_s, &second, 0o640).unwrap();
    assert_eq!(fs::read(&target).unwrap(), second);
    // The replaced file's 0400, narrowed to the recorded 0640: never looser than either.
    assert_eq!(mode_of(&target), 0o400);
    let back = s.fetch(&target_s, 1024).unwrap();
    assert_eq!(
        coldkeep::digest::sha256_hex(&back.bytes),
        coldkeep::digest::sha256_hex(&second)
    );

    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["key.p12".to_string()], "temp files left: {names:?}");

    // Into a missing directory: fails, nothing created.
    let bad = node.root.join("nope/key.p12").display().to_string();
    assert!(s.push(&bad, b"x", 0o600).is_err());
    assert!(!node.root.join("nope").exists());
}

#[test]
fn stale_temps_are_removed() {
    let e = env();
    let node = e.sandbox.start_node("n1", true).unwrap();
    let dir = node.root.join("d i r");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("x"), b"keep").unwrap();
    fs::write(dir.join(".x.coldkeep-tmp-abc"), b"stale").unwrap();
    fs::write(dir.join(".x.coldkeep-tmp-12345678"), b"stale").unwrap();
    fs::write(dir.join(".y.coldkeep-tmp-abc"), b"other file's").unwrap();
    let s = Session::connect(&node_config(&e.sandbox, &node)).unwrap();
    let target = dir.join("x").display().to_string();
    s.remove_stale_temps(&target).unwrap();
    assert!(!dir.join(".x.coldkeep-tmp-abc").exists());
    assert!(!dir.join(".x.coldkeep-tmp-12345678").exists());
    assert!(dir.join(".y.coldkeep-tmp-abc").exists());
    assert!(dir.join("x").exists());
    // Nothing to remove is fine.
    s.remove_stale_temps(&target).unwrap();
}

#[test]
fn killing_the_node_drops_connections() {
    let e = env();
    let mut node = e.sandbox.start_node("n1", true).unwrap();
    let mut cfg = node_config(&e.sandbox, &node);
    cfg.io_timeout = Duration::from_secs(5);
    let s = Session::connect(&cfg).unwrap();
    assert_eq!(s.exec("true").unwrap().status, 0);
    node.kill();
    // The live session is gone too.
    let start = Instant::now();
    assert!(s.exec("true").is_err());
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(Session::connect(&cfg).is_err());
}

#[test]
fn two_nodes_run_side_by_side() {
    let e = env();
    let a = e.sandbox.start_node("a", true).unwrap();
    let b = e.sandbox.start_node("b", true).unwrap();
    assert_ne!(a.port, b.port);
    assert_ne!(a.host_key_fingerprint, b.host_key_fingerprint);
    let sa = Session::connect(&node_config(&e.sandbox, &a)).unwrap();
    let sb = Session::connect(&node_config(&e.sandbox, &b)).unwrap();
    assert_eq!(sa.host_key_fingerprint(), a.host_key_fingerprint);
    assert_eq!(sb.host_key_fingerprint(), b.host_key_fingerprint);
}

//! known_hosts with OpenSSH's semantics, against real sshd nodes: `@revoked`, wildcard lines,
//! negations, hashed names and host certificates.

use coldkeep::config::{HostKeyPolicy, NodeConfig};
use coldkeep::remote::{RemoteError, Session};
use coldkeep::testkit::sandbox::{Sandbox, SandboxNode};
use std::fs;
use std::path::Path;
use std::process::Command;

fn node_config(sandbox: &Sandbox, node: &SandboxNode, known_hosts: &Path) -> NodeConfig {
    NodeConfig {
        known_hosts: known_hosts.to_path_buf(),
        ..sandbox.node_config(node)
    }
}

/// `<type> <base64>` of a node's host key.
fn host_pub(node: &SandboxNode) -> String {
    let text = fs::read_to_string(node.host_key.with_extension("pub")).unwrap();
    let mut f = text.split_whitespace();
    format!("{} {}", f.next().unwrap(), f.next().unwrap())
}

fn other_pub(dir: &Path) -> String {
    let key = dir.join("other_key");
    if !key.exists() {
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let text = fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut f = text.split_whitespace();
    format!("{} {}", f.next().unwrap(), f.next().unwrap())
}

fn write_kh(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

#[test]
fn revoked_key_is_refused_even_when_listed_pinned_or_accept_new() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(&tmp.path().join("ssh")).unwrap();
    let node = sandbox.start_node("n1", false).unwrap();
    let key = host_pub(&node);
    let kh = write_kh(
        &sandbox.dir,
        "kh_revoked",
        &format!("[127.0.0.1]:{} {key}\n@revoked * {key}\n", node.port),
    );
    let mut cfg = node_config(&sandbox, &node, &kh);
    let err = Session::connect(&cfg)
        .err()
        .expect("a revoked key must be refused");
    assert!(
        matches!(err, RemoteError::HostKeyRevoked { line: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("REVOKED"), "{err}");

    // A pin of the very same key does not override the revocation.
    cfg.host_key = Some(node.host_key_fingerprint.clone());
    let err = Session::connect(&cfg).err().expect("pinned but revoked");
    assert!(matches!(err, RemoteError::HostKeyRevoked { .. }), "{err}");

    // accept-new neither trusts nor records a revoked key.
    let kh = write_kh(&sandbox.dir, "kh_revoked_only", &format!("@revoked * {key}\n"));
    let before = fs::read_to_string(&kh).unwrap();
    let mut cfg = node_config(&sandbox, &node, &kh);
    cfg.host_key_policy = HostKeyPolicy::AcceptNew;
    let err = Session::connect(&cfg).err().expect("accept-new of a revoked key");
    assert!(matches!(err, RemoteError::HostKeyRevoked { .. }), "{err}");
    assert_eq!(fs::read_to_string(&kh).unwrap(), before);
}

#[test]
fn accept_new_never_records_a_key_for_a_host_a_wildcard_line_covers() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(&tmp.path().join("ssh")).unwrap();
    let node = sandbox.start_node("n1", false).unwrap();
    let other = other_pub(&sandbox.dir);
    let kh = write_kh(&sandbox.dir, "kh_wild", &format!("[127.0.0.*]:* {other}\n"));
    let before = fs::read_to_string(&kh).unwrap();
    let mut cfg = node_config(&sandbox, &node, &kh);
    cfg.host_key_policy = HostKeyPolicy::AcceptNew;
    let err = Session::connect(&cfg)
        .err()
        .expect("a covered host with another key");
    assert!(matches!(err, RemoteError::HostKeyChanged { .. }), "{err}");
    assert!(err.to_string().contains("line 1"), "{err}");
    assert_eq!(fs::read_to_string(&kh).unwrap(), before, "nothing recorded");

    // The wildcard line with the right key is a match.
    let key = host_pub(&node);
    let kh = write_kh(
        &sandbox.dir,
        "kh_wild_ok",
        &format!("[127.0.0.?]:{} {key}\n", node.port),
    );
    Session::connect(&node_config(&sandbox, &node, &kh))
        .unwrap()
        .close();

    // A negation takes the host out of the wildcard line: then it is simply unknown, and
    // accept-new records it.
    let kh = write_kh(
        &sandbox.dir,
        "kh_negated",
        &format!("*,![127.0.0.1]:{} {other}\n", node.port),
    );
    let mut cfg = node_config(&sandbox, &node, &kh);
    let err = Session::connect(&cfg).err().expect("strict: unknown");
    assert!(matches!(err, RemoteError::UnknownHostKey { .. }), "{err}");
    cfg.host_key_policy = HostKeyPolicy::AcceptNew;
    Session::connect(&cfg).unwrap().close();
    assert!(fs::read_to_string(&kh).unwrap().contains(&key));
}

#[test]
fn names_hashed_by_ssh_keygen_are_matched() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(&tmp.path().join("ssh")).unwrap();
    let node = sandbox.start_node("n1", true).unwrap();
    let st = Command::new("ssh-keygen")
        .arg("-q")
        .arg("-H")
        .arg("-f")
        .arg(&sandbox.known_hosts)
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let text = fs::read_to_string(&sandbox.known_hosts).unwrap();
    assert!(text.starts_with("|1|"), "{text}");
    Session::connect(&node_config(&sandbox, &node, &sandbox.known_hosts))
        .unwrap()
        .close();
}

#[test]
fn host_certificates_get_plain_keys_or_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(&tmp.path().join("ssh")).unwrap();
    // Host key, CA and certificate made before the node starts.
    let node_dir = sandbox.dir.join("nodes/cert");
    fs::create_dir_all(&node_dir).unwrap();
    let keygen = |args: &[&str]| {
        let out = Command::new("ssh-keygen").args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let host_key = node_dir.join("host_key");
    let ca = sandbox.dir.join("host_ca");
    keygen(&["-q", "-t", "ed25519", "-N", "", "-f", host_key.to_str().unwrap()]);
    keygen(&["-q", "-t", "ed25519", "-N", "", "-f", ca.to_str().unwrap()]);
    keygen(&[
        "-q",
        "-s",
        ca.to_str().unwrap(),
        "-I",
        "cert-node",
        "-h",
        "-n",
        "127.0.0.1",
        host_key.with_extension("pub").to_str().unwrap(),
    ]);
    let cert = node_dir.join("host_key-cert.pub");
    assert!(cert.exists());
    let node = sandbox
        .start_node_with(
            "cert",
            false,
            &coldkeep::testkit::sandbox::NodeOptions {
                extra_config: format!("HostCertificate {}", cert.display()),
                ..Default::default()
            },
        )
        .unwrap();
    let ca_pub = fs::read_to_string(ca.with_extension("pub")).unwrap();
    let ca_pub: Vec<&str> = ca_pub.split_whitespace().take(2).collect();

    // Only a CA line: a clear message naming the line and what to do, not "HOST KEY HAS CHANGED".
    let kh = write_kh(
        &sandbox.dir,
        "kh_ca",
        &format!("@cert-authority [127.0.0.1]:* {}\n", ca_pub.join(" ")),
    );
    let mut cfg = node_config(&sandbox, &node, &kh);
    cfg.host_key_policy = HostKeyPolicy::AcceptNew;
    let err = Session::connect(&cfg).err().expect("CA-only known_hosts");
    assert!(matches!(err, RemoteError::HostKeyCertOnly { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("@cert-authority (line 1)"), "{msg}");
    assert!(msg.contains(&node.host_key_fingerprint), "{msg}");
    assert_eq!(
        fs::read_to_string(&kh).unwrap().lines().count(),
        1,
        "nothing recorded"
    );

    // The plain host key (as ssh-keyscan lists it) is what coldkeep negotiates: it connects.
    let kh = write_kh(
        &sandbox.dir,
        "kh_plain",
        &format!("[127.0.0.1]:{} {}\n", node.port, host_pub(&node)),
    );
    let s = Session::connect(&node_config(&sandbox, &node, &kh)).unwrap();
    assert_eq!(s.host_key_fingerprint(), node.host_key_fingerprint);
    s.close();
}

//! A hostile node fails alone: every read from it is capped in bytes and time (real sshd).

use coldkeep::config::NodeConfig;
use coldkeep::remote::{MAX_EXEC_OUTPUT, RemoteError, Session, TreeLimits};
use coldkeep::testkit::sandbox::{Sandbox, SandboxNode};
use std::fs;
use std::time::{Duration, Instant};

fn node_config(sandbox: &Sandbox, node: &SandboxNode, io: Duration) -> NodeConfig {
    NodeConfig {
        io_timeout: io,
        ..sandbox.node_config(node)
    }
}

#[test]
fn endless_command_output_is_cut_at_the_cap_and_the_session_retired() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(&tmp.path().join("ssh")).unwrap();
    let node = sandbox.start_node("n1", true).unwrap();
    let s = Session::connect(&node_config(&sandbox, &node, Duration::from_secs(20))).unwrap();
    // Output within the cap is fine.
    let out = s.exec("head -c 1000 /dev/zero").unwrap();
    assert_eq!(out.stdout.len(), 1000);
    // `yes` never ends: coldkeep stops reading at the cap instead of growing without bound.
    let err = s.exec("yes").expect_err("endless output");
    match &err {
        RemoteError::TooLarge { cap, .. } => assert_eq!(*cap, MAX_EXEC_OUTPUT),
        other => panic!("expected TooLarge, got {other}"),
    }
    // The half-read channel is abandoned: the session refuses further use.
    assert!(s.exec("true").is_err());
    // Endless stderr, on a fresh session: stdout is read first and waits while stderr fills the
    // channel window, so this ends at the time cap rather than the byte cap; bounded either way.
    let s = Session::connect(&node_config(&sandbox, &node, Duration::from_secs(2))).unwrap();
    let started = Instant::now();
    let err = s.exec("yes >&2").expect_err("endless stderr");
    assert!(
        matches!(err, RemoteError::TooLarge { .. } | RemoteError::Timeout { .. }),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_command_that_drips_output_is_cut_at_the_time_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(&tmp.path().join("ssh")).unwrap();
    let node = sandbox.start_node("n1", true).unwrap();
    // io timeout 1 s: each read gets a byte well within it, but the whole command may take 2 s.
    let s = Session::connect(&node_config(&sandbox, &node, Duration::from_secs(1))).unwrap();
    let started = Instant::now();
    let err = s
        .exec("while :; do echo x; sleep 0.2; done")
        .expect_err("never-ending drip");
    assert!(matches!(err, RemoteError::Timeout { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn directories_count_toward_max_files() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(&tmp.path().join("ssh")).unwrap();
    let node = sandbox.start_node("n1", true).unwrap();
    let root = node.root.join("keys");
    for i in 0..30 {
        fs::create_dir_all(root.join(format!("d{i:02}"))).unwrap();
    }
    let s = Session::connect(&node_config(&sandbox, &node, Duration::from_secs(20))).unwrap();
    let limits = TreeLimits {
        max_files: 10,
        max_size: 1 << 20,
    };
    let err = s
        .list_tree(root.to_str().unwrap(), limits, &|_| false)
        .expect_err("30 empty directories over max_files 10");
    assert!(matches!(err, RemoteError::TreeTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("directories counted together"), "{err}");
    // Within the cap the same tree lists.
    let limits = TreeLimits {
        max_files: 30,
        max_size: 1 << 20,
    };
    let tree = s
        .list_tree(root.to_str().unwrap(), limits, &|_| false)
        .unwrap()
        .unwrap();
    assert_eq!(tree.dirs.len(), 30);
}

/// `config check` warns when jobs x max_size could exceed the memory limit (here the
/// Kubernetes manifest's 256 Mi, given through COLDKEEP_MEMORY_LIMIT as in a pod's cgroup).
#[test]
fn config_check_warns_when_caps_times_jobs_exceed_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("coldkeep.yaml");
    // Every config needs a signing key (stock ssh-keygen) and an allowed_signers trusting it.
    let key = dir.path().join("signing_key");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "coldkeep", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let allowed = dir.path().join("allowed_signers");
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();
    fs::write(
        &allowed,
        format!("coldkeep namespaces=\"{}\" {public}", coldkeep::sign::NAMESPACE),
    )
    .unwrap();
    let write = |jobs: usize| {
        let mut nodes = String::new();
        for i in 0..8 {
            nodes.push_str(&format!(
                "  - name: a{i}\n    host: h{i}\n    keystores:\n      - name: keys\n        kind: acra\n        path: /opt/acra/.acrakeys\n"
            ));
        }
        fs::write(
            &config,
            format!(
                "store:\n  path: {}\nencryption:\n  recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]\n\
                 signing:\n  key: {}\n  allowed_signers: {}\njobs: {jobs}\nnodes:\n{nodes}",
                dir.path().join("store").display(),
                key.display(),
                allowed.display()
            ),
        )
        .unwrap();
    };
    let check = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_coldkeep"))
            .arg("--config")
            .arg(&config)
            .args(["config", "check"])
            .env("COLDKEEP_MEMORY_LIMIT", (256u64 << 20).to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    write(8);
    let stderr = check();
    assert!(stderr.contains("over the 256 MiB memory limit"), "{stderr}");
    assert!(stderr.contains("8 jobs"), "{stderr}");
    // One job at the default 64 MiB cap fits (4 x 64 MiB = 256 MiB, not over).
    write(1);
    let stderr = check();
    assert!(!stderr.contains("memory limit"), "{stderr}");
}

/// What a hostile node prints reaches the operator with control characters escaped.
#[test]
fn remote_stderr_is_printed_with_control_characters_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(&tmp.path().join("ssh")).unwrap();
    let node = sandbox.start_node("n1", true).unwrap();
    let s = Session::connect(&node_config(&sandbox, &node, Duration::from_secs(20))).unwrap();
    let out = s
        .exec(r"printf 'ok\033[2J\nINFO forged line\n' >&2; exit 3")
        .unwrap();
    assert_eq!(out.status, 3);
    assert!(
        !out.stderr.contains('\u{1b}') && !out.stderr.contains('\n'),
        "{:?}",
        out.stderr
    );
    assert_eq!(out.stderr, r"ok\u{1b}[2J\nINFO forged line");
}

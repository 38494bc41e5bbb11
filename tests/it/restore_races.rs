//! Restore uploads trust nothing at the target path: real sshd, a symlink or a directory planted
//! where the keystore goes.

use coldkeep::config::NodeConfig;
use coldkeep::remote::{RemoteError, Session};
use coldkeep::testkit::sandbox::{Sandbox, SandboxNode};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn node_config(sandbox: &Sandbox, node: &SandboxNode) -> NodeConfig {
    sandbox.node_config(node)
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Names in `dir` other than `keep`.
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn a_symlink_at_the_target_is_refused_and_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(&tmp.path().join("ssh")).unwrap();
    let node = sandbox.start_node("n1", true).unwrap();
    let dir = node.root.join("keys");
    fs::create_dir_all(&dir).unwrap();
    let victim = node.root.join("victim");
    fs::write(&victim, b"attacker-readable").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    let target = dir.join("node.p12");
    std::os::unix::fs::symlink(&victim, &target).unwrap();

    let s = Session::connect(&node_config(&sandbox, &node)).unwrap();
    let err = s
        .push(target.to_str().unwrap(), b"SECRET KEY", 0o600)
        .expect_err("a symlink at the target must be refused");
    assert!(matches!(err, RemoteError::UnsafeEntry { .. }), "{err}");
    assert_eq!(fs::read(&victim).unwrap(), b"attacker-readable");
    assert!(fs::symlink_metadata(&target).unwrap().file_type().is_symlink());
    assert_eq!(leftovers(&dir, &["node.p12"]), Vec::<String>::new());
    // lstat reports the link as neither file nor directory (restore refuses it on that basis).
    let st = s.lstat(target.to_str().unwrap()).unwrap().unwrap();
    assert!(!st.is_file && !st.is_dir);
    assert!(s.stat(target.to_str().unwrap()).unwrap().unwrap().is_file);
}

#[test]
fn a_directory_at_the_target_is_refused_and_nothing_lands_in_it() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(&tmp.path().join("ssh")).unwrap();
    let node = sandbox.start_node("n1", true).unwrap();
    let dir = node.root.join("keys");
    let target = dir.join("node.p12");
    fs::create_dir_all(&target).unwrap();
    let s = Session::connect(&node_config(&sandbox, &node)).unwrap();
    let err = s
        .push(target.to_str().unwrap(), b"SECRET KEY", 0o600)
        .expect_err("a directory at the target must be refused");
    assert!(matches!(err, RemoteError::UnsafeEntry { .. }), "{err}");
    assert_eq!(fs::read_dir(&target).unwrap().count(), 0, "nothing moved into it");
    assert_eq!(leftovers(&dir, &["node.p12"]), Vec::<String>::new());
}

#[test]
fn the_mode_is_never_looser_than_recorded_and_temps_are_unpredictable() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(&tmp.path().join("ssh")).unwrap();
    let node = sandbox.start_node("n1", true).unwrap();
    let dir = node.root.join("keys");
    fs::create_dir_all(&dir).unwrap();
    let target = dir.join("node.p12");
    // Someone loosened the live file to 0644; the backup recorded 0600.
    fs::write(&target, b"old").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    let s = Session::connect(&node_config(&sandbox, &node)).unwrap();
    s.push(target.to_str().unwrap(), b"new key", 0o600).unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"new key");
    assert_eq!(mode_of(&target), 0o600);
    // A tighter live mode is kept.
    fs::set_permissions(&target, fs::Permissions::from_mode(0o400)).unwrap();
    s.push(target.to_str().unwrap(), b"newer key", 0o600).unwrap();
    assert_eq!(mode_of(&target), 0o400);
    // A new file gets the recorded mode.
    let fresh = dir.join("fresh.p12");
    s.push(fresh.to_str().unwrap(), b"k", 0o640).unwrap();
    assert_eq!(mode_of(&fresh), 0o640);
    assert_eq!(leftovers(&dir, &["node.p12", "fresh.p12"]), Vec::<String>::new());
}

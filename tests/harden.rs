//! The binary disables core dumps for itself before doing anything else: the process reads its
//! own dumpable flag and core limit back from the kernel (prctl, getrlimit) and logs them.

use std::process::Command;

#[test]
fn the_binary_is_not_dumpable_and_has_no_core_limit() {
    let dir = tempfile::tempdir().unwrap();
    // Any command works: the hardening runs before the config is read (a missing one here).
    let out = Command::new(env!("CARGO_BIN_EXE_coldkeep"))
        .args(["-vv", "--config"])
        .arg(dir.path().join("missing.yaml"))
        .args(["config", "check"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("process hardening: dumpable 0, core limit 0"),
        "{stderr}"
    );
    assert!(!stderr.contains("core dumps could not be disabled"), "{stderr}");
}

#[test]
fn the_library_call_sets_both_and_reads_them_back() {
    // This test binary itself: dumpable is 1 for a normal process before the call.
    let h = coldkeep::harden::at_start();
    assert_eq!(h.dumpable, 0);
    assert_eq!(h.core_limit, (0, 0));
    // The kernel's view, independent of our own readback: /proc/self/limits.
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
}

#[test]
fn a_config_others_may_write_is_refused_naming_the_chmod() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("coldkeep.yaml");
    std::fs::write(&config, "store:\n  path: /nonexistent\nnodes: []\n").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_coldkeep"))
        .arg("--config")
        .arg(&config)
        .args(["config", "check"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("chmod go-w {}", config.display())),
        "{stderr}"
    );
}

//! sudoers drop-ins for tests of `become: sudo`: validated with `visudo -cf`, installed 0440 in
//! /etc/sudoers.d under a unique name, removed on drop (also when the test fails).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The SSH login user of the test nodes (unprivileged).
pub const LOGIN_USER: &str = "coldkeep-node";
/// The service user that owns Acra keys in the tests.
pub const SERVICE_USER: &str = "coldkeep-acra";

/// Tests in one binary that depend on which sudo rules exist hold this, so one test's rules
/// cannot make another's refusal pass.
pub fn sudo_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A sudoers drop-in that exists while this value lives.
pub struct DropIn {
    path: PathBuf,
}

impl DropIn {
    /// Validates `text` with `visudo -cf` (panics with visudo's message when it is invalid) and
    /// installs it.
    pub fn install(text: &str) -> DropIn {
        static N: AtomicU32 = AtomicU32::new(0);
        // Names in /etc/sudoers.d must not contain `.` (sudo skips them).
        let name = format!(
            "coldkeep-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let staging = std::env::temp_dir().join(format!("{name}-staging"));
        fs::write(&staging, text).unwrap();
        fs::set_permissions(&staging, fs::Permissions::from_mode(0o440)).unwrap();
        let check = Command::new("visudo").arg("-cf").arg(&staging).output().unwrap();
        if !check.status.success() {
            let _ = fs::remove_file(&staging);
            panic!(
                "visudo -cf rejects the drop-in:\n{text}\n{}{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
        }
        let path = PathBuf::from("/etc/sudoers.d").join(&name);
        fs::copy(&staging, &path).unwrap();
        let _ = fs::remove_file(&staging);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o440)).unwrap();
        DropIn { path }
    }
}

impl Drop for DropIn {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Gives `path` to `user` (and its group), like `chown -R`.
pub fn chown(path: &std::path::Path, user: &str) {
    let out = Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:{user}"))
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Owner and group names of `path` (`stat -c %U:%G`).
pub fn owner_of(path: &std::path::Path) -> String {
    let out = Command::new("stat")
        .args(["-c", "%U:%G"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `sudo -n ARGS` as `user` (through `su`), as the SSH user would on the node.
pub fn sudo_as(user: &str, args: &str) -> std::process::Output {
    Command::new("su")
        .args([user, "-s", "/bin/sh", "-c", &format!("sudo -n {args}")])
        .output()
        .unwrap()
}

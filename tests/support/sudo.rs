//! `become: sudo` in tests: the node helper installed the way an operator installs it (the
//! binary's own `config sudoers` and `config node-policy` output, `visudo -cf`, a root-owned
//! policy), sudoers drop-ins for other cases, and running things as the unprivileged login user.
//! Everything installed is removed on drop, also when the test fails. Needs root.
//!
//! For another branch's end-to-end tests, the whole API is:
//! ```ignore
//! let h = support::sudo::helper();                       // fresh policy path, shared binary
//! fleet.write_config(&format!("  - name: a\n    host: ...\n{}    keystores: ...", h.yaml()));
//! let _installed = support::sudo::install(&fleet, &h, "a", false);   // true: the restore rule too
//! ```
//! and [`Helper`] drives the helper directly, started by sudo as the login user.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use coldkeep::testkit::node_helper::{Installed, NodeHelper};

use super::fleet::{Fleet, text};

/// The SSH login user of the test nodes (unprivileged).
pub const LOGIN_USER: &str = "coldkeep-node";
/// The service user that owns Acra keys in the tests.
pub const SERVICE_USER: &str = "coldkeep-acra";

/// A node helper with a fresh policy path (its `yaml()` goes into the node's config entry).
pub fn helper() -> NodeHelper {
    NodeHelper::new(Path::new(env!("CARGO_BIN_EXE_coldkeep")))
}

/// Installs the node helper's sudoers rule and policy for `node` of `fleet` as an operator does:
/// the lines `coldkeep config sudoers --node NODE [--restore]` prints, checked with `visudo -cf`,
/// in /etc/sudoers.d (0440), and the file `coldkeep config node-policy --node NODE [--restore]`
/// prints, at the config's `node_policy` (root 0644). Removed when the result drops.
pub fn install(fleet: &Fleet, h: &NodeHelper, node: &str, restore: bool) -> Installed {
    let flag: &[&str] = if restore { &["--restore"] } else { &[] };
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(flag);
        let out = fleet.run(&all);
        assert!(out.status.success(), "{all:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let sudoers = run(&["config", "sudoers", "--node", node]);
    let policy = run(&["config", "node-policy", "--node", node]);
    h.install(&sudoers, &policy)
}

/// A sudoers drop-in that exists while this value lives.
pub struct DropIn {
    path: PathBuf,
}

impl DropIn {
    /// Validates `text` with `visudo -cf` (panics with visudo's message when it is invalid) and
    /// installs it.
    pub fn install(text: &str) -> DropIn {
        DropIn {
            path: coldkeep::testkit::node_helper::install_dropin(text),
        }
    }
}

impl Drop for DropIn {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Gives `path` to `user` (and its group), like `chown -R`.
pub fn chown(path: &Path, user: &str) {
    let out = Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:{user}"))
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Owner and group names of `path` (`stat -c %U:%G`).
pub fn owner_of(path: &Path) -> String {
    let out = Command::new("stat")
        .args(["-c", "%U:%G"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Permission bits of `path` (not following a link).
pub fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Runs `sh -c SCRIPT` as `user` (through `su`), as the SSH user would on the node.
pub fn as_user(user: &str, script: &str) -> std::process::Output {
    Command::new("su")
        .args([user, "-s", "/bin/sh", "-c", script])
        .output()
        .unwrap()
}

/// Runs `sudo -n ARGS` as `user` (through `su`), as the SSH user would on the node.
pub fn sudo_as(user: &str, args: &str) -> std::process::Output {
    as_user(user, &format!("sudo -n {args}"))
}

/// The node helper started as the SSH user would start it (`sudo -n` as [`LOGIN_USER`], through
/// `su`, no terminal), with its stdin and stdout: for tests that speak the protocol themselves.
pub struct Helper {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: std::process::ChildStdout,
}

impl Helper {
    /// Starts `h`'s helper under its read rule, or (`restore`) its restore rule.
    pub fn start(h: &NodeHelper, restore: bool) -> Helper {
        let words = coldkeep::nodehelper::argv(&h.policy, restore).join(" ");
        Helper::start_line(&format!("sudo -n {} {words}", h.program))
    }

    /// Starts `sh -c LINE` as the login user with piped stdin and stdout.
    pub fn start_line(line: &str) -> Helper {
        use std::process::Stdio;
        let mut child = Command::new("su")
            .args([LOGIN_USER, "-s", "/bin/sh", "-c", line])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Helper {
            stdin: child.stdin.take(),
            stdout: child.stdout.take().unwrap(),
            child,
        }
    }

    /// Closes stdin and waits: exit status and stderr.
    pub fn finish(mut self) -> (Option<i32>, String) {
        use std::io::Read;
        self.stdin = None;
        let mut rest = Vec::new();
        let _ = self.stdout.read_to_end(&mut rest);
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let status = self.child.wait().unwrap();
        (status.code(), err)
    }
}

impl std::io::Read for Helper {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stdout.read(buf)
    }
}

impl std::io::Write for Helper {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stdin.as_mut().expect("stdin open").write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.stdin.as_mut().expect("stdin open").flush()
    }
}

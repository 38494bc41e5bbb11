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

    /// Bytes written to the helper's stdin that it has not read yet.
    pub fn unread(&self) -> usize {
        use std::os::fd::AsRawFd;
        let mut n: libc::c_int = 0;
        let fd = self.stdin.as_ref().expect("stdin open").as_raw_fd();
        // SAFETY: FIONREAD writes one int through the valid pointer; the fd is our pipe's.
        let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
        assert_eq!(rc, 0, "FIONREAD on the helper's stdin");
        n as usize
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

/// The pid of the running helper started with `policy` (its argv names it; one at a time).
pub fn helper_pid(policy: &str) -> Option<u32> {
    let want = format!("--policy={policy}");
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_helper = args.get(1) == Some(&&b"node-helper"[..])
            && args.contains(&want.as_bytes())
            && !args[0].ends_with(b"sudo");
        is_helper.then_some(pid)
    })
}

/// Waits until the helper `pid` has read every byte sent to it on `h` and waits for more (it
/// sits in `poll`): a handshake on the helper's own state, no timing.
pub fn until_waiting_for_input(h: &Helper, pid: u32) {
    loop {
        if h.unread() == 0 {
            let syscall = fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
            // poll (7) or ppoll (271) on x86_64, ppoll (73) on aarch64.
            let nr = syscall.split_whitespace().next().unwrap_or("");
            if ["7", "271", "73"].contains(&nr) {
                return;
            }
        }
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "the helper {pid} ended"
        );
        std::thread::yield_now();
    }
}

/// A line of `/proc/PID/status` in KiB (`VmLck`, `VmRSS`).
pub fn status_kib(pid: u32, key: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in {status}"))
}

/// A pause point of the node helper (debug builds, see `coldkeep::nodehelper::state::pause`): a
/// fifo `pause-STEP` in the helper's root-only state directory. [`Pause::reached`] returns when
/// the helper is at STEP and waits there; dropping what it returns lets the helper go on.
pub struct Pause {
    path: PathBuf,
    step: String,
}

impl Pause {
    /// Arms STEP for `h`'s helpers (making the state directory as the helper would, root 0700).
    pub fn at(h: &NodeHelper, step: &str) -> Pause {
        let dir = PathBuf::from(h.state_dir());
        for d in [dir.parent().unwrap(), dir.as_path()] {
            let _ = fs::create_dir(d);
            fs::set_permissions(d, fs::Permissions::from_mode(0o700)).unwrap();
        }
        let path = dir.join(format!("pause-{step}"));
        let _ = fs::remove_file(&path);
        let out = Command::new("mkfifo")
            .arg("-m")
            .arg("600")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Pause {
            path,
            step: step.to_string(),
        }
    }

    /// Blocks until a helper is at the step (its open of the fifo is what lets ours return);
    /// panics when none gets there within two minutes (a guard against a hang, not a timing).
    pub fn reached(&self) -> fs::File {
        let (tx, rx) = std::sync::mpsc::channel();
        let path = self.path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(fs::OpenOptions::new().write(true).open(&path));
        });
        match rx.recv_timeout(std::time::Duration::from_secs(120)) {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => panic!("opening the pause fifo: {e}"),
            Err(_) => {
                // Unblock the opener, then fail.
                let _ = fs::OpenOptions::new().read(true).open(&self.path);
                panic!("no node helper reached {}", self.step)
            }
        }
    }
}

impl Drop for Pause {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// SIGKILL to the running helper of `h` (the one started with its policy).
pub fn kill_helper(h: &NodeHelper) {
    let pid = helper_pid(&h.policy).expect("a helper runs");
    // SAFETY: kill(2) on the pid of a helper this test started; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    while Path::new(&format!("/proc/{pid}/status")).exists()
        && !fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .contains("State:\tZ")
    {
        std::thread::yield_now();
    }
}

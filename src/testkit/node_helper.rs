//! The node helper installed the way an operator installs it, for tests and the bench: the
//! binary in a root-owned directory, a sudoers drop-in checked by `visudo -cf` (0440), a policy
//! file (root 0644 in a root 0755 directory); all removed on drop. Needs root.
//!
//! Every install gets its own policy path (`/etc/coldkeep-test-<pid>-<n>/node.yaml`), and the
//! sudoers rule pins that path, so tests with different policies run in parallel without seeing
//! each other's rules. Leftovers of a killed test process (a pid no longer running) are removed
//! when the next install starts.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The helper binary under `/usr/local/lib/coldkeep-test-<pid>/coldkeep` (root-owned, not
/// writable by others, as the helper demands), shared by this process's installs.
pub struct HelperBinary {
    dir: PathBuf,
    /// Its path, as `node_helper`.
    pub program: String,
}

impl Drop for HelperBinary {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_ours_and_dead(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes what killed test processes left: binaries, policies, drop-ins.
fn sweep_dead() {
    for (dir, prefix) in [
        ("/usr/local/lib", "coldkeep-test-"),
        ("/etc", "coldkeep-test-"),
        ("/etc/sudoers.d", "coldkeep-test-"),
        (crate::nodehelper::state::STATE_ROOT, "etc+coldkeep-test-"),
    ] {
        let Ok(rd) = std::fs::read_dir(dir) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if is_ours_and_dead(&name, prefix) {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
}

/// The binary for this process, installed from `built` (a hard link when on the same
/// filesystem, else a copy) if no install of this process holds it.
pub fn helper_binary(built: &Path) -> Arc<HelperBinary> {
    static SHARED: Mutex<Weak<HelperBinary>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = shared.upgrade() {
        return b;
    }
    sweep_dead();
    let dir = PathBuf::from(format!("/usr/local/lib/coldkeep-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).expect("creating the helper's directory (needs root)");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let program = dir.join("coldkeep");
    if std::fs::hard_link(built, &program).is_err() {
        std::fs::copy(built, &program).expect("copying the helper binary");
    }
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let b = Arc::new(HelperBinary {
        dir,
        program: program.display().to_string(),
    });
    *shared = Arc::downgrade(&b);
    b
}

/// Where one install's policy goes, with the shared binary.
pub struct NodeHelper {
    /// The binary (`node_helper:`).
    pub program: String,
    /// The policy file (`node_policy:`).
    pub policy: String,
    dir: PathBuf,
    binary: Arc<HelperBinary>,
}

impl NodeHelper {
    /// A fresh policy path, the binary from `built` (`env!("CARGO_BIN_EXE_coldkeep")`).
    pub fn new(built: &Path) -> NodeHelper {
        static N: AtomicU32 = AtomicU32::new(0);
        let binary = helper_binary(built);
        let dir = PathBuf::from(format!(
            "/etc/coldkeep-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        NodeHelper {
            program: binary.program.clone(),
            policy: dir.join("node.yaml").display().to_string(),
            dir,
            binary,
        }
    }

    /// The lines a node entry needs to use this helper (indented for a node under `nodes:`).
    pub fn yaml(&self) -> String {
        format!(
            "    become: sudo\n    node_helper: {}\n    node_policy: {}\n",
            self.program, self.policy
        )
    }

    /// The helper's root-only state directory for this policy (made by the helper on its first
    /// start; removed with the install).
    pub fn state_dir(&self) -> String {
        crate::nodehelper::state::dir_for(&self.policy)
    }

    /// Installs `sudoers` (checked with `visudo -cf`; panics with its message when invalid) and
    /// `policy` (root 0644 in a root 0755 directory). Both are removed when the result drops.
    pub fn install(&self, sudoers: &str, policy: &str) -> Installed {
        let dropin = install_dropin(sudoers);
        std::fs::create_dir_all(&self.dir).unwrap();
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = PathBuf::from(&self.policy);
        let staging = self.dir.join(".node.yaml.new");
        std::fs::write(&staging, policy).unwrap();
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::rename(&staging, &file).unwrap();
        Installed {
            dropin,
            dir: self.dir.clone(),
            state: PathBuf::from(self.state_dir()),
            _binary: self.binary.clone(),
        }
    }
}

/// Validates `text` with `visudo -cf` and installs it 0440 as `/etc/sudoers.d/coldkeep-test-
/// <pid>-<n>` (sudo skips names with a dot). Panics with visudo's words when it is invalid.
pub fn install_dropin(text: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "coldkeep-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let staging = std::env::temp_dir().join(format!("{name}-staging"));
    std::fs::write(&staging, text).unwrap();
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o440)).unwrap();
    let check = Command::new("visudo").arg("-cf").arg(&staging).output().unwrap();
    if !check.status.success() {
        let _ = std::fs::remove_file(&staging);
        panic!(
            "visudo -cf rejects the drop-in:\n{text}\n{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let path = PathBuf::from("/etc/sudoers.d").join(&name);
    std::fs::copy(&staging, &path).unwrap();
    let _ = std::fs::remove_file(&staging);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).unwrap();
    path
}

/// An installed drop-in and policy; removed on drop (also when a test fails).
pub struct Installed {
    dropin: PathBuf,
    dir: PathBuf,
    state: PathBuf,
    _binary: Arc<HelperBinary>,
}

impl Installed {
    /// The installed drop-in.
    pub fn dropin(&self) -> &Path {
        &self.dropin
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.dropin);
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

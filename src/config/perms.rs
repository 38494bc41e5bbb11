//! Who may write (or read) the files coldkeep trusts: its config (whose hooks are shell commands
//! the daemon re-reads), secret files and SSH identities.
//!
//! Accepted, and why:
//! - owner: the running user or root (root can write any file anyway); another user could
//!   rewrite the file, so it is refused;
//! - never group- or world-writable: anyone who may write the config may run commands as
//!   coldkeep through its hooks, and whoever may write a secret or identity may swap it;
//! - secrets and identities: not world-readable. Group-readable is accepted: Kubernetes projects
//!   Secret volumes as `root:<fsGroup>` mode 0440 when the pod sets `fsGroup`
//!   (deploy/kubernetes/cronjob.yaml), and `install -m 0640 -g coldkeep` is the usual way to
//!   hand a root-owned file to a service user.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What a file is, for the rules and the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The coldkeep config.
    Config,
    /// A secret (`{file: PATH}`).
    Secret,
    /// An SSH private key.
    Identity,
}

impl FileKind {
    fn name(self) -> &'static str {
        match self {
            FileKind::Config => "config file",
            FileKind::Secret => "secret file",
            FileKind::Identity => "identity file",
        }
    }
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses a file others may write (or, for secrets and identities, that anyone may read),
/// naming the `chmod` / `chown` that fixes it. A missing file is left to the caller's read.
pub fn check_file(path: &Path, kind: FileKind) -> Result<(), String> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    check_meta(path, kind, meta.uid(), meta.mode(), euid())
}

fn check_meta(path: &Path, kind: FileKind, uid: u32, mode: u32, me: u32) -> Result<(), String> {
    let what = kind.name();
    let p = path.display();
    if uid != me && uid != 0 {
        return Err(format!(
            "{what} {p} is owned by uid {uid}, neither the running user (uid {me}) nor root, who \
             could rewrite it; refusing. Fix: chown {me} {p}"
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "{what} {p} is writable by group or others (mode {:04o}); refusing. Fix: chmod go-w {p}",
            mode & 0o7777
        ));
    }
    if kind != FileKind::Config && mode & 0o004 != 0 {
        return Err(format!(
            "{what} {p} is readable by everyone (mode {:04o}); refusing. Fix: chmod o-rwx {p}",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// Refuses a store root others may write or that another user owns (a store root is always a
/// directory coldkeep made, 0700), naming the fix.
pub fn check_store_root(path: &Path) -> Result<(), String> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let me = euid();
    let p = path.display();
    if meta.uid() != me {
        return Err(format!(
            "store root {p} is owned by uid {}, not by the running user (uid {me}); refusing. \
             Fix: chown {me} {p} (or point store.path at a directory coldkeep creates)",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "store root {p} is writable by group or others (mode {:04o}); refusing. Fix: chmod 700 {p}",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u32 = 1000;

    fn check(kind: FileKind, uid: u32, mode: u32) -> Result<(), String> {
        check_meta(Path::new("/f"), kind, uid, mode, ME)
    }

    #[test]
    fn kubernetes_secret_volumes_and_usual_installs_pass() {
        // root:<fsGroup> 0440 (Kubernetes with fsGroup), and 0400 without it.
        assert!(check(FileKind::Secret, 0, 0o100440).is_ok());
        assert!(check(FileKind::Identity, 0, 0o100400).is_ok());
        // install -m 0640 -g coldkeep; own 0600.
        assert!(check(FileKind::Config, 0, 0o100640).is_ok());
        assert!(check(FileKind::Secret, ME, 0o100600).is_ok());
        // A config may be world-readable: it holds no secret.
        assert!(check(FileKind::Config, ME, 0o100644).is_ok());
    }

    #[test]
    fn writable_foreign_or_world_readable_files_are_refused_with_the_fix() {
        let e = check(FileKind::Config, ME, 0o100666).unwrap_err();
        assert!(e.contains("chmod go-w /f") && e.contains("0666"), "{e}");
        let e = check(FileKind::Config, ME, 0o100664).unwrap_err();
        assert!(e.contains("chmod go-w"), "{e}");
        let e = check(FileKind::Secret, ME, 0o100644).unwrap_err();
        assert!(e.contains("chmod o-rwx /f"), "{e}");
        let e = check(FileKind::Identity, 4242, 0o100600).unwrap_err();
        assert!(e.contains("uid 4242") && e.contains("chown 1000 /f"), "{e}");
    }
}

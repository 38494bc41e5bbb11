//! Is a file root's alone? The checks the helper makes on its own binary and its policy before
//! it trusts either.
//!
//! Why: sudo runs the helper by path, and the helper obeys the policy file. If the SSH user could
//! write either, or rename any directory above them, the rule would be as good as root. So the
//! path is walked from `/` one component at a time with `O_PATH|O_NOFOLLOW` (no symlink is ever
//! followed), and every directory must be root-owned and not group- or world-writable; the file
//! itself must be a root-owned regular file nobody else may write. The checks are made with
//! `fstat` on the fds of the walk, and the policy is read from the fd the walk opened.

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::os::fd::OwnedFd;

/// Why a path is not trustworthy, and what fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What is wrong.
    pub problem: String,
    /// The command that fixes it.
    pub fix: String,
}

fn refuse(problem: String, fix: String) -> Refusal {
    Refusal { problem, fix }
}

/// Checks one walked fd: root-owned, not writable by group or others.
fn check_owned(path: &str, st: &rustix::fs::Stat, what: &str) -> Result<(), Refusal> {
    if st.st_uid != 0 {
        return Err(refuse(
            format!("{path} ({what}) is owned by uid {}, not root", st.st_uid),
            format!("chown root:root {path}"),
        ));
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refuse(
            format!("{path} ({what}) is writable by group or others (mode {mode:04o})"),
            format!("chmod go-w {path}"),
        ));
    }
    Ok(())
}

fn io_refusal(path: &str, what: &str, e: rustix::io::Errno) -> Refusal {
    let (problem, fix) = match e {
        rustix::io::Errno::NOENT => (
            format!("{path} ({what}) does not exist"),
            match what {
                "the node policy" => format!(
                    "print it on the agent with `coldkeep config node-policy --node NODE` and install it as \
                     {path} (root:root 0644)"
                ),
                _ => "install the coldkeep package on the node (README: Node setup)".to_string(),
            },
        ),
        e => (
            format!("cannot open {path} ({what}): {e}"),
            format!("make {path} a root-owned file in root-owned directories"),
        ),
    };
    refuse(problem, fix)
}

/// Walks `path` from `/` without following links; every directory on the way must be root's
/// alone. Returns the parent directory's fd, the leaf's name and the leaf's `lstat`.
fn walk(path: &str, what: &str) -> Result<(OwnedFd, String, rustix::fs::Stat), Refusal> {
    let comps: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if !path.starts_with('/') || comps.iter().any(|c| c.is_empty() || *c == "." || *c == "..") {
        return Err(refuse(
            format!("{path} ({what}) is not a plain absolute path"),
            "use an absolute path without `.`, `..` or `//`".into(),
        ));
    }
    let mut dir = rustix::fs::openat(
        rustix::fs::CWD,
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_refusal("/", what, e))?;
    let st = rustix::fs::fstat(&dir).map_err(|e| io_refusal("/", what, e))?;
    check_owned("/", &st, "a directory above it")?;
    let mut walked = String::new();
    // A missing component means the file is missing: say so of the file, with how to install it.
    let missing = |walked: &str, e| {
        if e == rustix::io::Errno::NOENT {
            io_refusal(path, what, e)
        } else {
            io_refusal(walked, what, e)
        }
    };
    for (i, comp) in comps.iter().enumerate() {
        walked.push('/');
        walked.push_str(comp);
        let last = i + 1 == comps.len();
        if last {
            let st = rustix::fs::statat(&dir, *comp, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| missing(&walked, e))?;
            return Ok((dir, comp.to_string(), st));
        }
        let next = rustix::fs::openat(
            &dir,
            *comp,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| missing(&walked, e))?;
        let st = rustix::fs::fstat(&next).map_err(|e| io_refusal(&walked, what, e))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {}
            FileType::Symlink => {
                return Err(refuse(
                    format!("{walked} (above {what} {path}) is a symbolic link"),
                    format!("use the real path of {path} (the helper follows no links)"),
                ));
            }
            _ => {
                return Err(refuse(
                    format!("{walked} (above {what} {path}) is not a directory"),
                    format!("fix the path {path}"),
                ));
            }
        }
        check_owned(&walked, &st, &format!("a directory above {what} {path}"))?;
        dir = next;
    }
    unreachable!("a path has at least one component")
}

/// Checks the leaf's `lstat`: a root-owned regular file nobody else may write.
fn check_leaf(path: &str, what: &str, st: &rustix::fs::Stat) -> Result<(), Refusal> {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {}
        FileType::Symlink => {
            return Err(refuse(
                format!("{path} ({what}) is a symbolic link"),
                format!("put the file itself at {path}"),
            ));
        }
        _ => {
            return Err(refuse(
                format!("{path} ({what}) is not a regular file"),
                format!("put the file itself at {path}"),
            ));
        }
    }
    check_owned(path, st, what)
}

/// Opens the policy for reading after checking it and every directory above it; checks are
/// repeated on the opened fd (a swap between walk and open is caught). Returns its text.
pub fn read_policy(path: &str) -> Result<(OwnedFd, String), Refusal> {
    let what = "the node policy";
    let (dir, name, st) = walk(path, what)?;
    check_leaf(path, what, &st)?;
    let fd = rustix::fs::openat(
        &dir,
        name.as_str(),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_refusal(path, what, e))?;
    let st2 = rustix::fs::fstat(&fd).map_err(|e| io_refusal(path, what, e))?;
    check_leaf(path, what, &st2)?;
    if (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino) {
        return Err(refuse(
            format!("{path} ({what}) was replaced while it was checked"),
            "run again; if it repeats, someone is racing the helper".into(),
        ));
    }
    if st2.st_nlink != 1 {
        return Err(refuse(
            format!("{path} ({what}) has {} names (hard links)", st2.st_nlink),
            format!(
                "install it as a file of its own: cp --remove-destination {path} {path}.new && mv {path}.new {path}"
            ),
        ));
    }
    if st2.st_size as u64 > super::policy::MAX_POLICY_SIZE {
        return Err(refuse(
            format!("{path} ({what}) is over {} bytes", super::policy::MAX_POLICY_SIZE),
            "print it again with `coldkeep config node-policy`".into(),
        ));
    }
    let mut text = Vec::with_capacity(st2.st_size as usize);
    let mut file = std::fs::File::from(fd.try_clone().map_err(|e| {
        io_refusal(
            path,
            what,
            rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO),
        )
    })?);
    use std::io::Read;
    (&mut file)
        .take(super::policy::MAX_POLICY_SIZE + 1)
        .read_to_end(&mut text)
        .map_err(|e| {
            io_refusal(
                path,
                what,
                rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO),
            )
        })?;
    let text = String::from_utf8(text).map_err(|_| {
        refuse(
            format!("{path} ({what}) is not UTF-8 text"),
            "print it again with `coldkeep config node-policy`".into(),
        )
    })?;
    Ok((fd, text))
}

/// Opens the directory `path` (readable, for `*at` calls) after checking it and every directory
/// above it are root's alone, the same walk as for the policy; checked again on the opened fd.
pub fn open_trusted_dir(path: &str, what: &str) -> Result<OwnedFd, Refusal> {
    let (dir, name, st) = walk(path, what)?;
    let opened = rustix::fs::openat(
        &dir,
        name.as_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_refusal(path, what, e))?;
    let st2 = rustix::fs::fstat(&opened).map_err(|e| io_refusal(path, what, e))?;
    if (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino) {
        return Err(refuse(
            format!("{path} ({what}) was replaced while it was checked"),
            "run again; if it repeats, someone is racing the helper".into(),
        ));
    }
    check_owned(path, &st2, what)?;
    Ok(opened)
}

/// Checks the running binary: the path the kernel says it was started from, walked like the
/// policy, must be the same file that runs (device and inode of `/proc/self/exe`).
pub fn check_own_binary() -> Result<String, Refusal> {
    let what = "the node helper";
    let exe = rustix::fs::readlinkat(rustix::fs::CWD, "/proc/self/exe", Vec::new())
        .map_err(|e| io_refusal("/proc/self/exe", what, e))?;
    let path = exe.to_string_lossy().into_owned();
    if path.ends_with(" (deleted)") {
        return Err(refuse(
            format!("the running helper binary was deleted or replaced ({path})"),
            "run it again (the package was probably upgraded)".into(),
        ));
    }
    let (_dir, _name, st) = walk(&path, what)?;
    check_leaf(&path, what, &st)?;
    let running = rustix::fs::openat(
        rustix::fs::CWD,
        "/proc/self/exe",
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .and_then(rustix::fs::fstat)
    .map_err(|e| io_refusal("/proc/self/exe", what, e))?;
    if (running.st_dev, running.st_ino) != (st.st_dev, st.st_ino) {
        return Err(refuse(
            format!("{path} is not the binary that runs (it was replaced)"),
            "run it again".into(),
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_file_in_a_writable_directory_or_writable_itself_is_refused() {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test needs root (root-owned files outside /tmp), as .ci/run runs the tests"
        );
        // A root-owned directory outside /tmp (which is world-writable, and must be refused).
        let base = std::path::PathBuf::from(format!("/var/tmp/coldkeep-trust-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = base.join("node.yaml");
        std::fs::write(&file, "version: 1\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let p = file.display().to_string();
        let check = |p: &str| read_policy(p).map(|(_, t)| t);
        // /var/tmp is 1777: refused, naming it.
        let e = check(&p).unwrap_err();
        assert!(
            e.problem.contains("/var/tmp ") && e.fix.contains("chmod go-w /var/tmp"),
            "{e:?}"
        );
        // A path under /tmp names /tmp the same way.
        let e = check("/tmp/x/node.yaml").unwrap_err();
        assert!(e.problem.starts_with("/tmp "), "{e:?}");
        let _ = std::fs::remove_dir_all(&base);
        // /etc itself is fine: a missing file there says how to install it.
        let e = check("/etc/coldkeep-no-such-dir/node.yaml").unwrap_err();
        assert!(e.problem.contains("does not exist"), "{e:?}");
        let e = check("/etc/../etc/passwd").unwrap_err();
        assert!(e.problem.contains("not a plain absolute path"), "{e:?}");
        let e = check("/etc").unwrap_err();
        assert!(e.problem.contains("not a regular file"), "{e:?}");
    }
}

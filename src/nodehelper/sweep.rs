//! Names beside a keystore (temps of an interrupted write, a tree swapped aside) and their
//! removal through fds.
//!
//! Why fds: what sits beside a key may sit in a directory someone else can write, and a
//! path-based recursive delete follows whatever that someone swaps in (CVE-2022-21658 was this
//! in `std::fs::remove_dir_all`). Here every directory is opened `O_NOFOLLOW|O_DIRECTORY`
//! relative to its parent's fd, must stay on one device, and entries are unlinked relative to
//! it; a symlink is unlinked, never followed.

use super::proto::ErrorKind;
use super::resolve::{FsError, errno, fail, kind_of};
use rustix::fs::AtFlags;
use std::os::fd::OwnedFd;

/// The prefix of a write's temp names beside `name`.
pub fn temp_prefix(name: &str) -> String {
    format!(".{name}.coldkeep-tmp-")
}

/// The prefix of a tree swapped aside by a restore beside `name`.
pub fn old_prefix(name: &str) -> String {
    format!(".{name}.coldkeep-old-")
}

/// A fresh 128-bit random suffix.
pub fn tag() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Names in `dir` starting with `prefix`, sorted.
pub fn names_with_prefix(dir: &OwnedFd, prefix: &str, path: &str) -> Result<Vec<String>, FsError> {
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir).map_err(|e| errno(e, path))? {
        let entry = entry.map_err(|e| errno(e, path))?;
        if let Ok(name) = entry.file_name().to_str()
            && name.starts_with(prefix)
        {
            out.push(name.to_string());
            if out.len() > 10_000 {
                return Err(fail(
                    ErrorKind::Unsafe,
                    format!("{path}: more than 10,000 entries named {prefix}*"),
                ));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Removes every `.NAME.coldkeep-tmp-*` in `dir` (what an interrupted write left); returns how
/// many.
pub fn sweep(dir: &OwnedFd, name: &str, path: &str) -> Result<usize, FsError> {
    let names = names_with_prefix(dir, &temp_prefix(name), path)?;
    let dev = rustix::fs::fstat(dir).map_err(|e| errno(e, path))?.st_dev;
    for n in &names {
        remove_at(dir, n, &format!("{path}/{n}"), dev)?;
    }
    Ok(names.len())
}

/// Removes `name` in `dir`: a file or link is unlinked, a directory emptied through fds first.
pub fn remove_at(dir: &OwnedFd, name: &str, path: &str, dev: u64) -> Result<(), FsError> {
    let mut budget = 200_000u64;
    let c = std::ffi::CString::new(name)
        .map_err(|_| fail(ErrorKind::BadRequest, format!("{path}: a NUL in a name")))?;
    remove_inner(dir, &c, path, dev, 0, &mut budget)
}

/// Removes one entry (a name read from a directory: any bytes, never interpreted as a path).
fn remove_inner(
    dir: &OwnedFd,
    name: &std::ffi::CStr,
    path: &str,
    dev: u64,
    depth: u32,
    budget: &mut u64,
) -> Result<(), FsError> {
    *budget = budget
        .checked_sub(1)
        .ok_or_else(|| fail(ErrorKind::Unsafe, format!("{path}: too many entries to remove")))?;
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(errno(e, path)),
    };
    if kind_of(&st) != super::proto::EntryKind::Dir {
        return rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(|e| errno(e, path));
    }
    if depth > 64 {
        return Err(fail(
            ErrorKind::Unsafe,
            format!("{path}: nested too deep to remove"),
        ));
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::DIRECTORY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| errno(e, path))?;
    let sub_st = rustix::fs::fstat(&sub).map_err(|e| errno(e, path))?;
    if sub_st.st_dev != dev || kind_of(&sub_st) != super::proto::EntryKind::Dir {
        return Err(errno(rustix::io::Errno::XDEV, path));
    }
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&sub).map_err(|e| errno(e, path))? {
        let entry = entry.map_err(|e| errno(e, path))?;
        let raw = entry.file_name().to_bytes();
        if raw != b"." && raw != b".." {
            names.push(entry.file_name().to_owned());
        }
    }
    for n in names {
        let shown = format!("{path}/{}", n.to_string_lossy());
        remove_inner(&sub, &n, &shown, dev, depth + 1, budget)?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(|e| errno(e, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodehelper::resolve::Resolver;

    #[test]
    fn sweeping_removes_only_temps_and_never_follows_a_link_out() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let outside = base.join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("precious"), b"keep").unwrap();
        let d = base.join("d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("node.p12"), b"key").unwrap();
        std::fs::write(d.join(".node.p12.coldkeep-tmp-1"), b"t").unwrap();
        std::fs::create_dir_all(d.join(".node.p12.coldkeep-tmp-2/a/b")).unwrap();
        std::os::unix::fs::symlink(&outside, d.join(".node.p12.coldkeep-tmp-2/a/out")).unwrap();
        std::os::unix::fs::symlink(&outside, d.join(".node.p12.coldkeep-tmp-3")).unwrap();
        std::fs::create_dir(d.join(".node.p12.coldkeep-old-x")).unwrap();
        let fd = Resolver::new()
            .unwrap()
            .open_dir(&d.display().to_string())
            .unwrap();
        assert_eq!(sweep(&fd, "node.p12", "d").unwrap(), 3);
        let mut left: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".node.p12.coldkeep-old-x", "node.p12"]);
        assert_eq!(std::fs::read(outside.join("precious")).unwrap(), b"keep");
        assert_eq!(
            names_with_prefix(&fd, &old_prefix("node.p12"), "d").unwrap(),
            [".node.p12.coldkeep-old-x"]
        );
    }
}

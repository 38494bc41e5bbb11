//! Names beside a keystore (temps of an interrupted write, a tree swapped aside) and their
//! removal through fds.
//!
//! Why so careful: what sits beside a key may sit in a directory someone else can write (the
//! node admin owns nodectl's key directory), who can put anything at a temp name, including a
//! directory of root's they can rename. So:
//! - a sweep of temps only unlinks names that are not directories (a file temp is never a
//!   directory; a link is unlinked, never followed) and leaves directories with a note;
//! - a tree is only removed when the name still holds the directory the helper expects (device
//!   and inode compared on the opened fd), walked through fds on one device, and only entries
//!   owned by the users the caller names are removed (the tree's owner, and the helper for the
//!   trees it built itself); anything else is left, with a note.
//!
//! A path-based recursive delete follows whatever is swapped in (CVE-2022-21658 was this in
//! `std::fs::remove_dir_all`); this never resolves a path.

use super::proto::{EntryKind, ErrorKind};
use super::resolve::{FsError, errno, fail, kind_of};
use rustix::fs::{AtFlags, Mode, OFlags};
use std::ffi::CStr;
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

/// Unlinks every `.NAME.coldkeep-tmp-*` in `dir` that is not a directory (what an interrupted
/// file write left); a directory there is left alone and named in the notes returned.
pub fn sweep(dir: &OwnedFd, name: &str, path: &str) -> Result<Vec<String>, FsError> {
    let mut notes = Vec::new();
    let parent = super::resolve::split(path)
        .map(|(d, _)| d.to_string())
        .unwrap_or_default();
    for n in names_with_prefix(dir, &temp_prefix(name), path)? {
        let at = format!("{parent}/{n}");
        match super::resolve::lstat_at(dir, &n, &at)? {
            Some(st) if kind_of(&st) == EntryKind::Dir => notes.push(format!(
                "left {at}: a directory at a temp name (an interrupted tree restore, or someone else's); \
                 check it and remove it by hand"
            )),
            Some(_) => rustix::fs::unlinkat(dir, n.as_str(), AtFlags::empty()).map_err(|e| errno(e, &at))?,
            None => {}
        }
    }
    Ok(notes)
}

/// What a tree removal may remove.
pub struct Removal<'a> {
    /// The directory's device and inode (the one the helper swapped aside or built).
    pub expect: (u64, u64),
    /// Owners (uids) whose entries are removed; others are left, with a note.
    pub owners: &'a [u32],
}

/// Removes the tree at `name` in `dir` if it is still the directory `r.expect` names, through
/// fds; returns notes for what was left.
pub fn remove_tree(dir: &OwnedFd, name: &str, path: &str, r: &Removal) -> Result<Vec<String>, FsError> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| errno(e, path))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| errno(e, path))?;
    if (st.st_dev, st.st_ino) != r.expect {
        return Ok(vec![format!(
            "left {path}: it is not the directory the restore put there (swapped)"
        )]);
    }
    let mut notes = Vec::new();
    let mut budget = 200_000u64;
    empty(&fd, path, st.st_dev, r.owners, 0, &mut budget, &mut notes)?;
    if notes.is_empty() {
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(|e| errno(e, path))?;
    }
    Ok(notes)
}

/// Removes what is in the directory `fd` (entries of `owners` only), depth first.
fn empty(
    fd: &OwnedFd,
    path: &str,
    dev: u64,
    owners: &[u32],
    depth: u32,
    budget: &mut u64,
    notes: &mut Vec<String>,
) -> Result<(), FsError> {
    if depth > 64 {
        return Err(fail(
            ErrorKind::Unsafe,
            format!("{path}: nested too deep to remove"),
        ));
    }
    let mut names: Vec<std::ffi::CString> = Vec::new();
    for entry in rustix::fs::Dir::read_from(fd).map_err(|e| errno(e, path))? {
        let entry = entry.map_err(|e| errno(e, path))?;
        let raw = entry.file_name().to_bytes();
        if raw != b"." && raw != b".." {
            names.push(entry.file_name().to_owned());
        }
    }
    for n in names {
        *budget = budget
            .checked_sub(1)
            .ok_or_else(|| fail(ErrorKind::Unsafe, format!("{path}: too many entries to remove")))?;
        let shown = format!("{path}/{}", crate::text::escape_control(&n.to_string_lossy()));
        remove_entry(fd, &n, &shown, dev, owners, depth, budget, notes)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn remove_entry(
    dir: &OwnedFd,
    name: &CStr,
    path: &str,
    dev: u64,
    owners: &[u32],
    depth: u32,
    budget: &mut u64,
    notes: &mut Vec<String>,
) -> Result<(), FsError> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(errno(e, path)),
    };
    if !owners.contains(&st.st_uid) || st.st_dev != dev {
        notes.push(format!(
            "left {path}: not owned by the keystore's owner (or on another device)"
        ));
        return Ok(());
    }
    if kind_of(&st) != EntryKind::Dir {
        return rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(|e| errno(e, path));
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| errno(e, path))?;
    let sub_st = rustix::fs::fstat(&sub).map_err(|e| errno(e, path))?;
    if (sub_st.st_dev, sub_st.st_ino) != (st.st_dev, st.st_ino) {
        notes.push(format!("left {path}: swapped while it was removed"));
        return Ok(());
    }
    let before = notes.len();
    empty(&sub, path, dev, owners, depth + 1, budget, notes)?;
    if notes.len() == before {
        // rmdir by name: a swapped-in directory that is not empty fails, a file fails.
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(|e| errno(e, path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodehelper::resolve::Resolver;
    use std::os::unix::fs::MetadataExt;

    fn names(d: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn sweeping_unlinks_file_temps_and_links_and_leaves_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let outside = base.join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("precious"), b"keep").unwrap();
        let d = base.join("d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("node.p12"), b"key").unwrap();
        std::fs::write(d.join(".node.p12.coldkeep-tmp-1"), b"t").unwrap();
        std::fs::create_dir_all(d.join(".node.p12.coldkeep-tmp-2/a")).unwrap();
        std::fs::write(d.join(".node.p12.coldkeep-tmp-2/a/f"), b"someone's").unwrap();
        std::os::unix::fs::symlink(&outside, d.join(".node.p12.coldkeep-tmp-3")).unwrap();
        std::fs::create_dir(d.join(".node.p12.coldkeep-old-x")).unwrap();
        let fd = Resolver::new()
            .unwrap()
            .open_dir(&d.display().to_string())
            .unwrap();
        let notes = sweep(&fd, "node.p12", &format!("{}/node.p12", d.display())).unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains(".node.p12.coldkeep-tmp-2") && notes[0].contains("by hand"),
            "{notes:?}"
        );
        assert_eq!(
            names(&d),
            [".node.p12.coldkeep-old-x", ".node.p12.coldkeep-tmp-2", "node.p12"]
        );
        assert_eq!(
            std::fs::read(d.join(".node.p12.coldkeep-tmp-2/a/f")).unwrap(),
            b"someone's"
        );
        assert_eq!(std::fs::read(outside.join("precious")).unwrap(), b"keep");
        assert_eq!(
            names_with_prefix(&fd, &old_prefix("node.p12"), "d").unwrap(),
            [".node.p12.coldkeep-old-x"]
        );
    }

    #[test]
    fn a_tree_is_removed_only_when_it_is_the_expected_one_and_only_its_owners_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let t = base.join("t");
        std::fs::create_dir_all(t.join("sub")).unwrap();
        std::fs::write(t.join("sub/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", t.join("sub/link")).unwrap();
        let me = rustix::process::geteuid().as_raw();
        let fd = Resolver::new()
            .unwrap()
            .open_dir(&base.display().to_string())
            .unwrap();
        let meta = std::fs::metadata(&t).unwrap();
        // Another inode expected: nothing removed.
        let other = Removal {
            expect: (meta.dev(), meta.ino() + 1),
            owners: &[me],
        };
        assert!(remove_tree(&fd, "t", "t", &other).unwrap()[0].contains("swapped"));
        assert!(t.join("sub/f").exists());
        // Entries of someone else are left (here: nobody is allowed).
        let nobody = Removal {
            expect: (meta.dev(), meta.ino()),
            owners: &[],
        };
        let notes = remove_tree(&fd, "t", "t", &nobody).unwrap();
        assert!(
            notes.iter().all(|n| n.contains("not owned")) && !notes.is_empty(),
            "{notes:?}"
        );
        assert!(t.join("sub/f").exists());
        // The expected tree of the allowed owner: gone, the link unlinked, /etc untouched.
        let ok = Removal {
            expect: (meta.dev(), meta.ino()),
            owners: &[me],
        };
        assert!(remove_tree(&fd, "t", "t", &ok).unwrap().is_empty());
        assert!(!t.exists() && std::path::Path::new("/etc/passwd").exists());
    }
}

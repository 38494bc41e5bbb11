//! Atomic replacement of one file through fds.
//!
//! In the key's directory fd: temps an interrupted write left are swept; what is there now must
//! be a regular file with one name owned by the policy's owner (else nothing is written); a temp
//! is created `O_CREAT|O_EXCL|O_NOFOLLOW` under a 128-bit random name (a planted name makes it
//! fail, never followed); the bytes are written and `fsync`ed; `fchown` then `fchmod` go to the
//! fd (chown clears set-id bits, so mode last; never set-id, never looser than the policy); the
//! temp is swapped in with `renameat2(RENAME_EXCHANGE)` (or `RENAME_NOREPLACE` for a new file;
//! a plain `renameat` where the filesystem has neither) and the name is checked to hold the
//! inode written, else the exchange is undone; the directory is `fsync`ed and the file read back
//! through a fresh fd. Killed at any point, the old file or the new one is under the name, and a
//! temp at most beside it (swept by the next write).

use super::proto::ErrorKind;
use super::resolve::{FsError, errno, fail, kind_of, lstat_at, open_file_at};
use rustix::fs::{Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use std::os::fd::OwnedFd;

/// The renames of a restore, behind a trait so tests can make the Nth one fail on real
/// directories (the rollback paths); the helper itself only ever uses [`Kernel`].
pub trait Rename {
    /// `renameat2(from_dir, from, to_dir, to, flags)`.
    fn rename(
        &mut self,
        from_dir: &OwnedFd,
        from: &str,
        to_dir: &OwnedFd,
        to: &str,
        flags: RenameFlags,
    ) -> Result<(), Errno>;
}

/// The kernel's renameat2.
pub struct Kernel;

impl Rename for Kernel {
    fn rename(
        &mut self,
        from_dir: &OwnedFd,
        from: &str,
        to_dir: &OwnedFd,
        to: &str,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        rustix::fs::renameat_with(from_dir, from, to_dir, to, flags)
    }
}

/// Whether a renameat2 flag is unsupported here (NFS says `EINVAL` for any flag).
pub fn flag_unsupported(e: Errno) -> bool {
    matches!(e, Errno::INVAL | Errno::OPNOTSUPP | Errno::NOSYS)
}

/// Owner and loosest mode from the policy.
#[derive(Debug, Clone, Copy)]
pub struct Want {
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
    /// Mode (already narrowed to the policy's; no set-id bits).
    pub mode: u32,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Final mode.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
}

/// Writes all of `bytes` to `fd`.
pub fn write_all(fd: &OwnedFd, mut bytes: &[u8], path: &str) -> Result<(), FsError> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(0) => return Err(fail(ErrorKind::Failed, format!("{path}: the disk took no bytes"))),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(errno(e, path)),
        }
    }
    Ok(())
}

/// Creates `.NAME.coldkeep-tmp-<random>` in `dir` exclusively (0600, no link followed).
pub fn create_temp(dir: &OwnedFd, name: &str, path: &str) -> Result<(OwnedFd, String), FsError> {
    for _ in 0..8 {
        let temp = format!("{}{}", super::sweep::temp_prefix(name), super::sweep::tag());
        match rustix::fs::openat(
            dir,
            temp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => return Ok((fd, temp)),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(errno(e, path)),
        }
    }
    Err(fail(
        ErrorKind::Unsafe,
        format!("{path}: every temp name tried was taken"),
    ))
}

/// Removes the POSIX ACLs a new file or directory inherited from a default ACL on its parent
/// (whoever owns the parent may have set one naming themselves): the restored file's access is
/// then its owner and mode alone, as the policy says. A filesystem without ACLs has nothing to
/// remove.
pub fn strip_acls(fd: &OwnedFd, path: &str) -> Result<(), FsError> {
    for name in ["system.posix_acl_access", "system.posix_acl_default"] {
        match rustix::fs::fremovexattr(fd, name) {
            Ok(()) | Err(Errno::NODATA) | Err(Errno::OPNOTSUPP) => {}
            // A file has no default ACL to remove on some filesystems.
            Err(Errno::INVAL) | Err(Errno::ACCESS) if name.ends_with("default") => {}
            Err(e) => return Err(errno(e, path)),
        }
    }
    Ok(())
}

/// `fchown` then `fchmod` on `fd` (inherited ACLs removed first), then checks the result on the
/// same fd.
pub fn own_and_mode(
    fd: &OwnedFd,
    want: Want,
    size: Option<u64>,
    path: &str,
) -> Result<rustix::fs::Stat, FsError> {
    strip_acls(fd, path)?;
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(want.uid)),
        Some(rustix::fs::Gid::from_raw(want.gid)),
    )
    .map_err(|e| errno(e, path))?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(want.mode & 0o777)).map_err(|e| errno(e, path))?;
    let st = rustix::fs::fstat(fd).map_err(|e| errno(e, path))?;
    if st.st_uid != want.uid
        || st.st_gid != want.gid
        || st.st_mode & 0o7777 != want.mode & 0o777
        || size.is_some_and(|s| s != st.st_size as u64)
    {
        return Err(fail(
            ErrorKind::Failed,
            format!("{path}: owner, mode or size did not come out as set"),
        ));
    }
    Ok(st)
}

/// Refuses an existing target the policy does not cover: a non-file, a hard link, or a file
/// that belongs to someone other than the policy's owner (whose file it is would be handed to
/// the restored key).
fn check_existing(st: &rustix::fs::Stat, want: Want, path: &str) -> Result<(), FsError> {
    if kind_of(st) != super::proto::EntryKind::File {
        return Err(fail(
            ErrorKind::Unsafe,
            format!(
                "{path} exists and is not a regular file (a link, directory or device is never replaced)"
            ),
        ));
    }
    if st.st_nlink != 1 {
        return Err(fail(
            ErrorKind::Unsafe,
            format!(
                "{path} has {} names (a hard link): refusing to replace it",
                st.st_nlink
            ),
        ));
    }
    if (st.st_uid, st.st_gid) != (want.uid, want.gid) {
        return Err(fail(
            ErrorKind::NotAllowed,
            format!(
                "{path} belongs to uid {} gid {}, not to the policy's owner (uid {} gid {}): nothing was \
                 written. If that owner is right, give the file to it (chown) or fix `owner` in the node's policy",
                st.st_uid, st.st_gid, want.uid, want.gid
            ),
        ));
    }
    Ok(())
}

/// Replaces (or creates) `name` in `dir` with `bytes`.
pub fn write_file(
    dir: &OwnedFd,
    name: &str,
    path: &str,
    bytes: &[u8],
    want: Want,
    ren: &mut dyn Rename,
) -> Result<Written, FsError> {
    // What an interrupted write left (a directory there is not a file temp: left alone).
    super::sweep::sweep(dir, name, path)?;
    let existing = lstat_at(dir, name, path)?;
    let mut want = want;
    if let Some(st) = &existing {
        check_existing(st, want, path)?;
        // Never looser than the file it replaces.
        want.mode &= st.st_mode & 0o777;
    }
    let (fd, temp) = create_temp(dir, name, path)?;
    super::state::pause("write-temp");
    let result = publish(dir, name, path, bytes, want, ren, &fd, &temp, existing.is_some());
    if result.is_err() {
        // Whatever is left at our temp name is ours or the old file after an undone exchange:
        // either way not the key under its name.
        let _ = unlink_if(dir, &temp, &fd);
    }
    result
}

/// Unlinks `temp` in `dir` only if it still names the inode of `fd`.
fn unlink_if(dir: &OwnedFd, temp: &str, fd: &OwnedFd) -> Result<(), Errno> {
    let ours = rustix::fs::fstat(fd)?;
    let there = rustix::fs::statat(dir, temp, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
    if (there.st_dev, there.st_ino) == (ours.st_dev, ours.st_ino) {
        rustix::fs::unlinkat(dir, temp, rustix::fs::AtFlags::empty())?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn publish(
    dir: &OwnedFd,
    name: &str,
    path: &str,
    bytes: &[u8],
    want: Want,
    ren: &mut dyn Rename,
    fd: &OwnedFd,
    temp: &str,
    replacing: bool,
) -> Result<Written, FsError> {
    write_all(fd, bytes, path)?;
    rustix::fs::fsync(fd).map_err(|e| errno(e, path))?;
    let ours = own_and_mode(fd, want, Some(bytes.len() as u64), path)?;
    super::state::pause("write-ready");
    let mut exchanged = false;
    if replacing {
        match ren.rename(dir, temp, dir, name, RenameFlags::EXCHANGE) {
            Ok(()) => exchanged = true,
            Err(e) if flag_unsupported(e) => ren
                .rename(dir, temp, dir, name, RenameFlags::empty())
                .map_err(|e| errno(e, path))?,
            Err(e) => return Err(errno(e, path)),
        }
    } else {
        match ren.rename(dir, temp, dir, name, RenameFlags::NOREPLACE) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                return Err(fail(
                    ErrorKind::Unsafe,
                    format!("{path} appeared while it was written; nothing was replaced"),
                ));
            }
            Err(e) if flag_unsupported(e) => {
                if lstat_at(dir, name, path)?.is_some() {
                    return Err(fail(
                        ErrorKind::Unsafe,
                        format!("{path} appeared while it was written"),
                    ));
                }
                ren.rename(dir, temp, dir, name, RenameFlags::empty())
                    .map_err(|e| errno(e, path))?;
            }
            Err(e) => return Err(errno(e, path)),
        }
    }
    super::state::pause("write-renamed");
    // The name must now hold the inode written: whoever may write in the directory could have
    // swapped the temp between the fchmod and the rename.
    let now = lstat_at(dir, name, path)?;
    if now.map(|s| (s.st_dev, s.st_ino)) != Some((ours.st_dev, ours.st_ino)) {
        if exchanged && ren.rename(dir, temp, dir, name, RenameFlags::EXCHANGE).is_ok() {
            return Err(fail(
                ErrorKind::Unsafe,
                format!(
                    "{path}: the temp file was swapped while it was written; the exchange was undone, nothing changed"
                ),
            ));
        }
        return Err(fail(
            ErrorKind::Unsafe,
            format!(
                "{path}: after the rename the name does not hold the file written (swapped by someone who may write there)"
            ),
        ));
    }
    if exchanged {
        // The old file is at the temp name now.
        let _ = rustix::fs::unlinkat(dir, temp, rustix::fs::AtFlags::empty());
    }
    rustix::fs::fsync(dir).map_err(|e| errno(e, path))?;
    // Read back through a fresh fd: the same inode, the same bytes.
    let (back, st) = open_file_at(dir, name, path, Some(ours.st_dev))?;
    if st.st_ino != ours.st_ino {
        return Err(fail(
            ErrorKind::ReadBack,
            format!("{path}: read back a different file"),
        ));
    }
    let got = super::read::read_all(&back, st.st_size as u64, bytes.len() as u64, path)?;
    if crate::digest::sha256_hex(&got) != crate::digest::sha256_hex(bytes) {
        return Err(fail(
            ErrorKind::ReadBack,
            format!("{path}: read back of the file does not match what was written"),
        ));
    }
    Ok(Written {
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::nodehelper::resolve::Resolver;
    use std::os::unix::fs::MetadataExt;

    /// Fails the renames whose 1-based numbers are listed, with `errno`.
    pub struct Failing {
        pub n: usize,
        pub fail: Vec<(usize, Errno)>,
    }

    impl Rename for Failing {
        fn rename(
            &mut self,
            from_dir: &OwnedFd,
            from: &str,
            to_dir: &OwnedFd,
            to: &str,
            flags: RenameFlags,
        ) -> Result<(), Errno> {
            self.n += 1;
            if let Some((_, e)) = self.fail.iter().find(|(k, _)| *k == self.n) {
                return Err(*e);
            }
            Kernel.rename(from_dir, from, to_dir, to, flags)
        }
    }

    fn me(mode: u32) -> Want {
        Want {
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            mode,
        }
    }

    fn names(d: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_file_is_created_and_replaced_atomically_with_its_mode_never_looser() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let fd = Resolver::new()
            .unwrap()
            .open_dir(&d.display().to_string())
            .unwrap();
        let w = write_file(&fd, "node.p12", "p", b"first", me(0o400), &mut Kernel).unwrap();
        assert_eq!(w.mode, 0o400);
        assert_eq!(std::fs::read(d.join("node.p12")).unwrap(), b"first");
        // Replacing a 0400 file with a wish for 0644 stays 0400; the old inode is gone.
        let before = std::fs::metadata(d.join("node.p12")).unwrap().ino();
        let w = write_file(&fd, "node.p12", "p", b"second", me(0o644), &mut Kernel).unwrap();
        assert_eq!(w.mode, 0o400);
        assert_ne!(std::fs::metadata(d.join("node.p12")).unwrap().ino(), before);
        assert_eq!(std::fs::read(d.join("node.p12")).unwrap(), b"second");
        assert_eq!(names(d), ["node.p12"], "no temp left");
        // Without RENAME_EXCHANGE (NFS): the plain rename path, same result.
        let mut no_flags = Failing {
            n: 0,
            fail: vec![(1, Errno::INVAL)],
        };
        write_file(&fd, "node.p12", "p", b"third", me(0o400), &mut no_flags).unwrap();
        assert_eq!(std::fs::read(d.join("node.p12")).unwrap(), b"third");
        assert_eq!(names(d), ["node.p12"]);
    }

    #[test]
    fn a_link_or_odd_file_at_the_target_is_never_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("victim"), b"do not touch").unwrap();
        std::os::unix::fs::symlink(d.join("victim"), d.join("node.p12")).unwrap();
        let fd = Resolver::new()
            .unwrap()
            .open_dir(&d.display().to_string())
            .unwrap();
        let e = write_file(&fd, "node.p12", "p", b"key", me(0o400), &mut Kernel).unwrap_err();
        assert!(e.message.contains("not a regular file"), "{e:?}");
        std::fs::remove_file(d.join("node.p12")).unwrap();
        std::fs::hard_link(d.join("victim"), d.join("node.p12")).unwrap();
        let e = write_file(&fd, "node.p12", "p", b"key", me(0o400), &mut Kernel).unwrap_err();
        assert!(e.message.contains("hard link"), "{e:?}");
        assert_eq!(std::fs::read(d.join("victim")).unwrap(), b"do not touch");
        assert_eq!(names(d), ["node.p12", "victim"]);
        // A failed rename leaves the old file and no temp.
        std::fs::remove_file(d.join("node.p12")).unwrap();
        std::fs::write(d.join("node.p12"), b"old").unwrap();
        let mut failing = Failing {
            n: 0,
            fail: vec![(1, Errno::IO)],
        };
        assert!(write_file(&fd, "node.p12", "p", b"new", me(0o400), &mut failing).is_err());
        assert_eq!(std::fs::read(d.join("node.p12")).unwrap(), b"old");
        assert_eq!(names(d), ["node.p12", "victim"]);
    }

    #[test]
    fn a_planted_temp_name_makes_the_create_pick_another_never_follow() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("victim"), b"v").unwrap();
        let fd = Resolver::new()
            .unwrap()
            .open_dir(&d.display().to_string())
            .unwrap();
        // O_EXCL|O_NOFOLLOW on a planted link: EEXIST, the victim untouched.
        std::os::unix::fs::symlink(d.join("victim"), d.join("planted")).unwrap();
        let e = rustix::fs::openat(
            &fd,
            "planted",
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )
        .unwrap_err();
        assert_eq!(e, Errno::EXIST);
        let (_t, name) = create_temp(&fd, "node.p12", "p").unwrap();
        assert!(
            name.starts_with(".node.p12.coldkeep-tmp-") && name.len() == ".node.p12.coldkeep-tmp-".len() + 32
        );
        assert_eq!(std::fs::read(d.join("victim")).unwrap(), b"v");
    }

    #[test]
    fn a_file_of_another_owner_is_not_replaced() {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test needs root (it gives a file to another user), as .ci/run runs the tests"
        );
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("node.p12"), b"theirs").unwrap();
        std::os::unix::fs::chown(d.join("node.p12"), Some(65534), Some(65534)).unwrap();
        let fd = Resolver::new()
            .unwrap()
            .open_dir(&d.display().to_string())
            .unwrap();
        let e = write_file(&fd, "node.p12", "p", b"key", me(0o400), &mut Kernel).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotAllowed, "{e:?}");
        assert_eq!(std::fs::read(d.join("node.p12")).unwrap(), b"theirs");
    }

    /// A default ACL naming another user (65534) on `dir`, as its owner could set it.
    pub fn default_acl_for_nobody(dir: &std::path::Path) {
        let mut acl = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (0x01u16, 7u16, u32::MAX),
            (0x02, 7, 65534),
            (0x04, 5, u32::MAX),
            (0x10, 7, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            acl.extend_from_slice(&tag.to_le_bytes());
            acl.extend_from_slice(&perm.to_le_bytes());
            acl.extend_from_slice(&id.to_le_bytes());
        }
        rustix::fs::setxattr(
            dir,
            "system.posix_acl_default",
            &acl,
            rustix::fs::XattrFlags::empty(),
        )
        .expect("this filesystem takes POSIX ACLs (ext4 does)");
    }

    /// Whether `path` carries an ACL of its own.
    pub fn has_acl(path: &std::path::Path) -> bool {
        let mut buf = [0u8; 256];
        ["system.posix_acl_access", "system.posix_acl_default"]
            .iter()
            .any(|n| rustix::fs::lgetxattr(path, *n, &mut buf).is_ok())
    }

    #[test]
    fn a_default_acl_of_the_directory_is_not_inherited_by_the_written_file() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        default_acl_for_nobody(d);
        std::fs::write(d.join("plain"), b"x").unwrap();
        assert!(
            has_acl(&d.join("plain")),
            "the premise: files made there inherit it"
        );
        let fd = Resolver::new()
            .unwrap()
            .open_dir(&d.display().to_string())
            .unwrap();
        write_file(&fd, "node.p12", "p", b"key", me(0o640), &mut Kernel).unwrap();
        assert!(
            !has_acl(&d.join("node.p12")),
            "the restored file's access is its mode alone"
        );
    }
}

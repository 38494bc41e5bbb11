//! Writing below a store root that others may write (a replica): each directory under the root
//! is created and opened from its parent's handle without following links (`mkdirat`, then
//! `openat` with `O_NOFOLLOW | O_DIRECTORY`), and files are created, renamed and synced through
//! the last handle. A link planted anywhere on the way is refused, never written through; a
//! path-based walk could be redirected between two of its steps.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// An open directory and the path it was reached by (for messages).
pub(crate) struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

fn c_name(name: &str) -> io::Result<CString> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a single path component: {name:?}"),
        ));
    }
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a name"))
}

/// `r` as an `io::Result`, retried on `EINTR`.
fn check(mut call: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        let r = call();
        if r >= 0 {
            return Ok(r);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl Dir {
    /// Opens `root`, the configured path (the operator's own: followed as given).
    pub(crate) fn open_root(root: &Path) -> io::Result<Dir> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(root)?;
        Ok(Dir {
            fd: f.into(),
            path: root.to_path_buf(),
        })
    }

    /// The path this directory was reached by.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the subdirectory `name`, creating it (0700) when missing; a link or a file there is
    /// an error (`ELOOP` / `ENOTDIR`), not followed.
    pub(crate) fn sub(&self, name: &str) -> io::Result<Dir> {
        let c = c_name(name)?;
        // SAFETY: a valid directory fd and a NUL-terminated name.
        let created = match check(|| unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o700) }) {
            Ok(_) => true,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => false,
            Err(e) => return Err(e),
        };
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: as above; the fd returned is owned here.
        let fd = check(|| unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags) })?;
        // SAFETY: `fd` is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if created {
            // The umask may have taken bits away; nothing to add beyond the owner's.
            // SAFETY: a valid fd.
            check(|| unsafe { libc::fchmod(fd.as_raw_fd(), 0o700) })?;
        }
        Ok(Dir {
            fd,
            path: self.path.join(name),
        })
    }

    /// Writes `data` as `name`: a new 0600 file under a temp name made through this handle
    /// (`O_EXCL | O_NOFOLLOW`), synced, then renamed over `name` (a link there is replaced, not
    /// followed). The caller syncs the directory.
    pub(crate) fn write_atomic(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let target = c_name(name)?;
        let temp_name = format!(".{name}.tmp-{:08x}", rand::random::<u32>());
        let temp = c_name(&temp_name)?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: a valid directory fd and a NUL-terminated name.
        let fd = check(|| unsafe {
            libc::openat(self.fd.as_raw_fd(), temp.as_ptr(), flags, 0o600 as libc::c_uint)
        })?;
        // SAFETY: `fd` is a new descriptor nobody else owns.
        let mut f = unsafe { File::from_raw_fd(fd) };
        let written = f.write_all(data).and_then(|()| f.sync_all()).and_then(|()| {
            // SAFETY: valid fds and NUL-terminated names.
            check(|| unsafe {
                libc::renameat(
                    self.fd.as_raw_fd(),
                    temp.as_ptr(),
                    self.fd.as_raw_fd(),
                    target.as_ptr(),
                )
            })
            .map(drop)
        });
        if written.is_err() {
            // SAFETY: as above; only the file this call created is removed.
            unsafe { libc::unlinkat(self.fd.as_raw_fd(), temp.as_ptr(), 0) };
        }
        written
    }

    /// Syncs the directory (its new entries are durable).
    pub(crate) fn sync(&self) -> io::Result<()> {
        // SAFETY: a valid fd.
        check(|| unsafe { libc::fsync(self.fd.as_raw_fd()) }).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, symlink};

    #[test]
    fn creates_private_dirs_and_files_and_refuses_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = Dir::open_root(dir.path()).unwrap();
        let a = root.sub("a").unwrap();
        let b = a.sub("b").unwrap();
        b.write_atomic("f", b"one").unwrap();
        b.write_atomic("f", b"two").unwrap();
        b.sync().unwrap();
        assert_eq!(fs::read(dir.path().join("a/b/f")).unwrap(), b"two");
        assert_eq!(
            fs::metadata(dir.path().join("a/b")).unwrap().mode() & 0o777,
            0o700
        );
        assert_eq!(
            fs::metadata(dir.path().join("a/b/f")).unwrap().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(dir.path().join("a/b")).unwrap().count(),
            1,
            "no temp left"
        );
        assert_eq!(b.path(), dir.path().join("a/b"));

        // A link to a directory elsewhere, and a file, where a directory belongs.
        let elsewhere = tempfile::tempdir().unwrap();
        symlink(elsewhere.path(), dir.path().join("link")).unwrap();
        let e = root.sub("link").err().unwrap();
        assert!(
            matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)),
            "{e}"
        );
        fs::write(dir.path().join("file"), b"x").unwrap();
        assert!(root.sub("file").is_err());
        // A link where the file goes is replaced, its target untouched.
        let target = elsewhere.path().join("t");
        fs::write(&target, b"keep").unwrap();
        symlink(&target, dir.path().join("a/b/g")).unwrap();
        b.write_atomic("g", b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        assert!(fs::symlink_metadata(dir.path().join("a/b/g")).unwrap().is_file());
        assert!(root.sub("../x").is_err() && root.sub("..").is_err());
    }
}

//! Resolving policy paths to fds without following links, and opening what is inside them.
//!
//! Why: the directories on the way to a key may belong to someone else (nodectl puts a
//! root-owned P12 in a directory the node admin owns), who can swap a name between two calls. So
//! a path is resolved once, with `openat2(RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS|
//! RESOLVE_BENEATH)` from an fd of `/` (a component-by-component `O_NOFOLLOW|O_DIRECTORY` walk
//! where the kernel or a seccomp filter refuses openat2 with `ENOSYS` or `EPERM`), and everything
//! after that works on the fds: `*at` calls relative to the directory fd, and `fstat` on the fd
//! that is then read or written (type, owner, link count and device checked before any byte).

use super::proto::{EntryKind, ErrorKind, Stat};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::cell::Cell;
use std::os::fd::OwnedFd;

/// A refusal or failure, with the class the agent maps to its own errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsError {
    /// The class.
    pub kind: ErrorKind,
    /// For the operator: paths and names, never contents.
    pub message: String,
}

/// Builds an [`FsError`].
pub fn fail(kind: ErrorKind, message: impl Into<String>) -> FsError {
    FsError {
        kind,
        message: message.into(),
    }
}

/// Maps a syscall error on `path` to an [`FsError`] that says what it means here.
pub fn errno(e: Errno, path: &str) -> FsError {
    match e {
        Errno::LOOP => fail(
            ErrorKind::Unsafe,
            format!("{path}: a symbolic link is on the path (the node helper follows no links)"),
        ),
        Errno::XDEV => fail(
            ErrorKind::Unsafe,
            format!("{path}: the path crosses a mount point or leaves its directory (refused)"),
        ),
        Errno::NOENT => fail(ErrorKind::NotFound, format!("{path} does not exist")),
        Errno::NOTDIR => fail(
            ErrorKind::NotADirectory,
            format!("{path}: a component is not a directory"),
        ),
        Errno::ACCESS | Errno::PERM => fail(ErrorKind::Failed, format!("{path}: permission denied")),
        e => fail(ErrorKind::Failed, format!("{path}: {e}")),
    }
}

/// Whether an openat2 failure means "this kernel or sandbox has no openat2": fall back to the
/// walk. `ENOSYS`: before Linux 5.6. `EPERM`: seccomp filters (Docker's default profile) that
/// cannot inspect `open_how`. Anything else is a real answer about the path.
pub fn falls_back(e: Errno) -> bool {
    matches!(e, Errno::NOSYS | Errno::PERM)
}

/// How paths are resolved.
pub struct Resolver {
    root: OwnedFd,
    openat2: Cell<bool>,
}

impl Resolver {
    /// A resolver from `/`, trying openat2 first.
    pub fn new() -> Result<Resolver, FsError> {
        let root = rustix::fs::openat(
            rustix::fs::CWD,
            "/",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno(e, "/"))?;
        Ok(Resolver {
            root,
            openat2: Cell::new(true),
        })
    }

    /// A resolver that always walks (what a kernel without openat2 gets): for tests that the
    /// walk refuses what openat2 refuses.
    pub fn walking() -> Result<Resolver, FsError> {
        let r = Resolver::new()?;
        r.openat2.set(false);
        Ok(r)
    }

    /// Whether openat2 is in use (false after `ENOSYS`/`EPERM`, or for [`Resolver::walking`]).
    pub fn uses_openat2(&self) -> bool {
        self.openat2.get()
    }

    /// Opens the directory at `path` (readable, for listing, `*at` calls and `fsync`).
    pub fn open_dir(&self, path: &str) -> Result<OwnedFd, FsError> {
        let rel = relative(path)?;
        if self.openat2.get() {
            let how = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::BENEATH;
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            // EAGAIN: the kernel saw a rename race on `..` and wants a retry.
            for _ in 0..16 {
                match rustix::fs::openat2(&self.root, rel, flags, Mode::empty(), how) {
                    Ok(fd) => return checked_dir(fd, path),
                    Err(Errno::AGAIN) => continue,
                    Err(e) if falls_back(e) => {
                        self.openat2.set(false);
                        break;
                    }
                    Err(e) => return Err(self.classify(e, path)),
                }
            }
            if self.openat2.get() {
                return Err(fail(
                    ErrorKind::Failed,
                    format!("{path}: the kernel kept reporting a race"),
                ));
            }
        }
        self.walk(path)
    }

    /// The component-by-component walk: `O_PATH|O_NOFOLLOW|O_DIRECTORY` for every directory on
    /// the way, each checked with `fstat`, the last one opened readable.
    fn walk(&self, path: &str) -> Result<OwnedFd, FsError> {
        let rel = relative(path)?;
        let mut cur = rustix::fs::openat(
            &self.root,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno(e, "/"))?;
        if rel == "." {
            return checked_dir(
                rustix::fs::openat(
                    &cur,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| errno(e, path))?,
                path,
            );
        }
        let comps: Vec<&str> = rel.split('/').collect();
        for (i, comp) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let access = if last { OFlags::RDONLY } else { OFlags::PATH };
            let walked = format!("/{}", comps[..=i].join("/"));
            let next = rustix::fs::openat(
                &cur,
                *comp,
                access | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| match e {
                // A link at this name gives ELOOP or ENOTDIR: say which it is.
                Errno::LOOP | Errno::NOTDIR => {
                    match rustix::fs::statat(&cur, *comp, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                            errno(Errno::LOOP, path)
                        }
                        _ => errno(Errno::NOTDIR, &walked),
                    }
                }
                e => errno(e, &walked),
            })?;
            cur = checked_dir(next, &walked)?;
        }
        Ok(cur)
    }

    /// An openat2 error, told apart (a symlink on the way, a missing or non-directory component).
    fn classify(&self, e: Errno, path: &str) -> FsError {
        match e {
            Errno::NOTDIR => {
                // The walk names the component and tells a link from a file.
                match self.walk(path) {
                    Err(err) => err,
                    Ok(_) => errno(e, path),
                }
            }
            e => errno(e, path),
        }
    }

    /// The directory holding `path`, opened, and `path`'s last component.
    pub fn parent_of(&self, path: &str) -> Result<(OwnedFd, String), FsError> {
        let (dir, name) = split(path)?;
        Ok((self.open_dir(dir)?, name.to_string()))
    }
}

/// `/a/b` -> (`/a`, `b`); refuses paths the policy would not have let through.
pub fn split(path: &str) -> Result<(&str, &str), FsError> {
    relative(path)?;
    match path.rsplit_once('/') {
        Some(("", name)) if !name.is_empty() => Ok(("/", name)),
        Some((dir, name)) if !name.is_empty() => Ok((dir, name)),
        _ => Err(fail(ErrorKind::BadRequest, format!("{path} has no file name"))),
    }
}

/// `path` without its leading `/` (`.` for `/`), checked: no empty, `.` or `..` component.
fn relative(path: &str) -> Result<&str, FsError> {
    if path == "/" {
        return Ok(".");
    }
    if !super::policy::valid_node_path(path) {
        return Err(fail(
            ErrorKind::BadRequest,
            format!("{path} is not a plain absolute path"),
        ));
    }
    Ok(&path[1..])
}

fn checked_dir(fd: OwnedFd, path: &str) -> Result<OwnedFd, FsError> {
    let st = rustix::fs::fstat(&fd).map_err(|e| errno(e, path))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => Ok(fd),
        FileType::Symlink => Err(errno(Errno::LOOP, path)),
        _ => Err(fail(
            ErrorKind::NotADirectory,
            format!("{path} is not a directory"),
        )),
    }
}

/// The kind of a raw `st_mode`.
pub fn kind_of(st: &rustix::fs::Stat) -> EntryKind {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Dir,
        FileType::Symlink => EntryKind::Symlink,
        _ => EntryKind::Other,
    }
}

/// The protocol's view of a `stat`, names looked up.
pub fn stat_of(st: &rustix::fs::Stat, names: &mut super::users::Names) -> Stat {
    Stat {
        kind: kind_of(st),
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        user: names.user(st.st_uid),
        group: names.group(st.st_gid),
        size: st.st_size as u64,
    }
}

/// `lstat` of `name` in `dir`; `None` when nothing is there.
pub fn lstat_at(dir: &OwnedFd, name: &str, path: &str) -> Result<Option<rustix::fs::Stat>, FsError> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(errno(e, path)),
    }
}

/// Opens the regular file `name` in `dir` for reading and checks the fd: a regular file (a
/// link, fifo or device is refused, and `O_NONBLOCK` keeps a fifo swapped in from blocking the
/// open), one name only (a hard link to a file elsewhere, `/etc/shadow` say, is refused), and on
/// `dev` when given (no mount crossing inside a tree).
pub fn open_file_at(
    dir: &OwnedFd,
    name: &str,
    path: &str,
    dev: Option<u64>,
) -> Result<(OwnedFd, rustix::fs::Stat), FsError> {
    if let Some(st) = lstat_at(dir, name, path)? {
        match kind_of(&st) {
            EntryKind::File => {}
            EntryKind::Dir => {
                return Err(fail(
                    ErrorKind::IsDirectory,
                    format!("{path} is a directory, not a file"),
                ));
            }
            EntryKind::Symlink => return Err(symlink_refused(path)),
            EntryKind::Other => return Err(not_regular(path)),
        }
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::LOOP => symlink_refused(path),
        e => errno(e, path),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| errno(e, path))?;
    check_regular(&st, path, dev)?;
    Ok((fd, st))
}

/// The checks on an opened file's `fstat`: regular, one link, on `dev`.
pub fn check_regular(st: &rustix::fs::Stat, path: &str, dev: Option<u64>) -> Result<(), FsError> {
    if kind_of(st) != EntryKind::File {
        return Err(not_regular(path));
    }
    if st.st_nlink != 1 {
        return Err(fail(
            ErrorKind::Unsafe,
            format!(
                "{path} has {} names (a hard link: it may be another file, refused)",
                st.st_nlink
            ),
        ));
    }
    if dev.is_some_and(|d| d != st.st_dev) {
        return Err(errno(Errno::XDEV, path));
    }
    Ok(())
}

/// Opens the directory `name` in `dir` (readable) and checks it is one, on `dev`.
pub fn open_dir_at(dir: &OwnedFd, name: &str, path: &str, dev: u64) -> Result<OwnedFd, FsError> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::LOOP => symlink_refused(path),
        e => errno(e, path),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| errno(e, path))?;
    if kind_of(&st) != EntryKind::Dir {
        return Err(fail(
            ErrorKind::NotADirectory,
            format!("{path} is not a directory"),
        ));
    }
    if st.st_dev != dev {
        return Err(errno(Errno::XDEV, path));
    }
    Ok(fd)
}

/// The refusal of a symbolic link where a file or directory was expected.
pub fn symlink_refused(path: &str) -> FsError {
    fail(
        ErrorKind::Unsafe,
        format!("{path} is a symbolic link (refused: the node helper never follows links)"),
    )
}

fn not_regular(path: &str) -> FsError {
    fail(
        ErrorKind::Unsafe,
        format!("{path} is not a regular file (a device, fifo or socket: refused)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn both() -> [Resolver; 2] {
        [Resolver::new().unwrap(), Resolver::walking().unwrap()]
    }

    #[test]
    fn links_anywhere_on_the_path_are_refused_by_openat2_and_by_the_walk() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        std::fs::create_dir_all(base.join("real/sub")).unwrap();
        std::fs::write(base.join("real/sub/key"), b"k").unwrap();
        symlink(base.join("real"), base.join("link")).unwrap();
        symlink("/etc", base.join("real/etc")).unwrap();
        let p = |rel: &str| format!("{}/{rel}", base.display());
        for r in both() {
            assert!(r.open_dir(&p("real/sub")).is_ok());
            let e = r.open_dir(&p("link/sub")).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Unsafe, "{e:?}");
            assert!(e.message.contains("symbolic link"), "{e:?}");
            let e = r.open_dir(&p("real/etc")).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Unsafe, "{e:?}");
            assert_eq!(
                r.open_dir(&p("real/missing")).unwrap_err().kind,
                ErrorKind::NotFound
            );
            assert_eq!(
                r.open_dir(&p("real/sub/key")).unwrap_err().kind,
                ErrorKind::NotADirectory
            );
            assert_eq!(
                r.open_dir(&p("real/../real")).unwrap_err().kind,
                ErrorKind::BadRequest
            );
            let (dir, name) = r.parent_of(&p("real/sub/key")).unwrap();
            assert_eq!(name, "key");
            assert!(open_file_at(&dir, "key", "key", None).is_ok());
        }
        // The decision to fall back is taken on exactly these errors.
        assert!(falls_back(Errno::NOSYS) && falls_back(Errno::PERM));
        assert!(!falls_back(Errno::LOOP) && !falls_back(Errno::NOENT) && !falls_back(Errno::XDEV));
        assert!(Resolver::new().unwrap().uses_openat2(), "this kernel has openat2");
    }

    #[test]
    fn files_are_opened_only_when_regular_with_one_name() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        std::fs::write(base.join("key"), b"k").unwrap();
        std::fs::write(base.join("other"), b"o").unwrap();
        std::fs::hard_link(base.join("other"), base.join("hard")).unwrap();
        symlink(base.join("key"), base.join("soft")).unwrap();
        std::fs::create_dir(base.join("dir")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            base.join("fifo").as_path(),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let dir = Resolver::new()
            .unwrap()
            .open_dir(&base.display().to_string())
            .unwrap();
        assert!(open_file_at(&dir, "key", "key", None).is_ok());
        let kind = |name: &str| open_file_at(&dir, name, name, None).unwrap_err();
        assert!(kind("hard").message.contains("2 names"));
        assert!(kind("soft").message.contains("symbolic link"));
        assert_eq!(kind("dir").kind, ErrorKind::IsDirectory);
        assert!(kind("fifo").message.contains("not a regular file"));
        assert_eq!(kind("missing").kind, ErrorKind::NotFound);
        let st = rustix::fs::fstat(&dir).unwrap();
        assert_eq!(
            open_file_at(&dir, "key", "key", Some(st.st_dev + 1))
                .unwrap_err()
                .kind,
            ErrorKind::Unsafe
        );
    }
}

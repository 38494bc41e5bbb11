//! Reads through fds: one file, or a whole tree (an Acra keystore), with caps.
//!
//! The helper reads trees itself (no `tar`): every directory is opened `O_NOFOLLOW|O_DIRECTORY`
//! relative to its parent's fd and must stay on the root's device, every entry is classified with
//! `fstatat(AT_SYMLINK_NOFOLLOW)` (a link, device, fifo or socket refuses the whole tree), and
//! every file is opened and checked as in [`super::resolve::open_file_at`] before a byte is read.

use super::proto::{EntryKind, ErrorKind, valid_name};
use super::resolve::{FsError, errno, fail, kind_of, open_dir_at, open_file_at, symlink_refused};
use std::os::fd::OwnedFd;
use zeroize::Zeroizing;

/// Reads an opened file to its end, refusing more than `cap` bytes; the buffer never reallocates
/// (no unwiped copies).
pub fn read_all(fd: &OwnedFd, size_hint: u64, cap: u64, path: &str) -> Result<Zeroizing<Vec<u8>>, FsError> {
    let too_large = |size: u64| {
        fail(
            ErrorKind::TooLarge,
            format!("{path} is {size} bytes, over the {cap}-byte cap"),
        )
    };
    if size_hint > cap {
        return Err(too_large(size_hint));
    }
    let mut out = Zeroizing::new(Vec::with_capacity(size_hint as usize + 1));
    crate::harden::lock_in_memory(&out);
    let mut chunk = Zeroizing::new(vec![0u8; 64 * 1024]);
    loop {
        let n = match rustix::io::read(fd, &mut chunk[..]) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(errno(e, path)),
        };
        if n == 0 {
            return Ok(out);
        }
        if out.len() as u64 + n as u64 > cap {
            return Err(too_large(out.len() as u64 + n as u64));
        }
        if out.len() + n > out.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity((out.len() + n) * 2));
            crate::harden::lock_in_memory(&bigger);
            bigger.extend_from_slice(&out);
            out = bigger;
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// One entry of a tree listing.
pub struct Read {
    /// Relative name.
    pub rel: String,
    /// `fstat` of the directory's fd (directories) or `lstat` (files).
    pub stat: rustix::fs::Stat,
}

/// A tree as listed.
pub struct Tree {
    /// The root directory.
    pub root: rustix::fs::Stat,
    /// The root's fd (files are opened from it when their bytes are read).
    pub fd: OwnedFd,
    /// Subdirectories, sorted (parents first).
    pub dirs: Vec<Read>,
    /// Files, sorted.
    pub files: Vec<Read>,
}

/// Caps of a tree read.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Most entries, files and directories together.
    pub entries: u64,
    /// Most bytes in all.
    pub bytes: u64,
    /// Most bytes of relative names in all (what the listing holds in memory and sends).
    pub names: u64,
}

/// Most bytes of relative names a listing gathers (16 MiB: 100,000 entries of 160 bytes).
pub const MAX_NAME_BYTES: u64 = 16 * 1024 * 1024;

/// Deepest relative name a tree may hold: what [`super::proto::valid_rel`] accepts, so
/// everything listed can be restored.
pub const MAX_DEPTH: usize = 32;

/// What a listing has gathered, and its budgets.
struct Walk<'a> {
    path: &'a str,
    caps: Caps,
    dev: u64,
    skip: &'a dyn Fn(&str) -> bool,
    seen: u64,
    total: u64,
    names: u64,
    dirs: Vec<Read>,
    files: Vec<Read>,
}

/// Lists the tree whose root directory is `root` (opened by the resolver). `skip` drops an
/// entry by relative name. Names outside [`valid_name`] are refused: a keystore holds only names
/// coldkeep can restore. Depth first, one directory fd per level (at most [`MAX_DEPTH`] open at
/// once, however wide the tree); deeper than that, more entries, more listed bytes or more name
/// bytes than the caps, and the listing stops there with a refusal (nothing past a budget is
/// gathered first). The sizes listed (`lstat`) count against `caps.bytes` already, so a tree
/// too large is refused before a byte of it is read.
pub fn read_tree(
    root: OwnedFd,
    path: &str,
    caps: Caps,
    skip: &dyn Fn(&str) -> bool,
) -> Result<Tree, FsError> {
    let root_st = rustix::fs::fstat(&root).map_err(|e| errno(e, path))?;
    let mut walk = Walk {
        path,
        caps,
        dev: root_st.st_dev,
        skip,
        seen: 0,
        total: 0,
        names: 0,
        dirs: Vec::new(),
        files: Vec::new(),
    };
    walk.dir(&root, "", 0)?;
    let Walk {
        mut dirs, mut files, ..
    } = walk;
    dirs.sort_by(|a, b| a.rel.cmp(&b.rel));
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(Tree {
        root: root_st,
        fd: root,
        dirs,
        files,
    })
}

impl Walk<'_> {
    fn dir(&mut self, fd: &OwnedFd, dir_rel: &str, depth: usize) -> Result<(), FsError> {
        let path = self.path;
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(fd).map_err(|e| errno(e, path))? {
            let entry = entry.map_err(|e| errno(e, path))?;
            let raw = entry.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            self.seen += 1;
            if self.seen > self.caps.entries {
                return Err(fail(
                    ErrorKind::TreeTooLarge,
                    format!(
                        "{path}: more than {} files and directories counted together (max_files)",
                        self.caps.entries
                    ),
                ));
            }
            let Some(name) = std::str::from_utf8(raw).ok().filter(|n| valid_name(n)) else {
                return Err(fail(
                    ErrorKind::Unsafe,
                    format!(
                        "{path}: an entry named {:?}, which no keystore holds (names are [A-Za-z0-9._@:+=-])",
                        crate::text::escape_control(&String::from_utf8_lossy(raw))
                    ),
                ));
            };
            if depth + 1 > MAX_DEPTH {
                return Err(fail(
                    ErrorKind::TreeTooLarge,
                    format!(
                        "{path}/{dir_rel}: nested deeper than {MAX_DEPTH} levels (no keystore is; refused, it could \
                         not be restored)"
                    ),
                ));
            }
            self.names += (dir_rel.len() + 1 + name.len()) as u64;
            if self.names > self.caps.names {
                return Err(fail(
                    ErrorKind::TreeTooLarge,
                    format!("{path}: more than {} bytes of names in all", self.caps.names),
                ));
            }
            names.push(name.to_string());
        }
        names.sort();
        for name in names {
            let rel = if dir_rel.is_empty() {
                name.clone()
            } else {
                format!("{dir_rel}/{name}")
            };
            if (self.skip)(&rel) {
                continue;
            }
            let at = format!("{path}/{rel}");
            let Some(st) = super::resolve::lstat_at(fd, &name, &at)? else {
                continue; // gone since the listing (Acra's .lock comes and goes)
            };
            match kind_of(&st) {
                EntryKind::Dir => {
                    let sub = open_dir_at(fd, &name, &at, self.dev)?;
                    let st = rustix::fs::fstat(&sub).map_err(|e| errno(e, &at))?;
                    self.dirs.push(Read {
                        rel: rel.clone(),
                        stat: st,
                    });
                    self.dir(&sub, &rel, depth + 1)?;
                }
                EntryKind::File => {
                    if st.st_dev != self.dev {
                        return Err(errno(rustix::io::Errno::XDEV, &at));
                    }
                    self.total = self.total.saturating_add(st.st_size as u64);
                    if self.total > self.caps.bytes {
                        return Err(tree_too_large(path, self.caps));
                    }
                    self.files.push(Read { rel, stat: st });
                }
                EntryKind::Symlink => {
                    return Err(fail(
                        symlink_refused(&at).kind,
                        format!(
                            "{at} is a symbolic link (refused: a keystore holds only files and directories)"
                        ),
                    ));
                }
                EntryKind::Other => {
                    return Err(fail(
                        ErrorKind::Unsafe,
                        format!("{at} is not a regular file or directory (device, fifo or socket: refused)"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Reads the files of a listed tree one at a time, through fds opened from the root's (every
/// directory on the way `O_NOFOLLOW|O_DIRECTORY` on the root's device, every file checked as in
/// [`open_file_at`]): the helper holds one file's bytes at a time, not the tree's.
pub struct FileReader<'t> {
    tree: &'t Tree,
    path: &'t str,
    /// The directory of the last file read, kept open (files come sorted, so mostly the same).
    dir: Option<(String, OwnedFd)>,
}

impl<'t> FileReader<'t> {
    /// A reader of `tree`'s files; `path` is the root's path (for messages).
    pub fn new(tree: &'t Tree, path: &'t str) -> FileReader<'t> {
        FileReader {
            tree,
            path,
            dir: None,
        }
    }

    /// The bytes of the file `rel`, at most `cap`, and the `fstat` of the fd they came from.
    pub fn read(&mut self, rel: &str, cap: u64) -> Result<(rustix::fs::Stat, Zeroizing<Vec<u8>>), FsError> {
        let dev = self.tree.root.st_dev;
        let (dir_rel, leaf) = rel.rsplit_once('/').unwrap_or(("", rel));
        if self.dir.as_ref().is_none_or(|(d, _)| d != dir_rel) {
            let mut fd = self
                .tree
                .fd
                .try_clone()
                .map_err(|e| fail(ErrorKind::Failed, format!("{}: {e}", self.path)))?;
            let mut walked = self.path.to_string();
            for comp in dir_rel.split('/').filter(|c| !c.is_empty()) {
                walked = format!("{walked}/{comp}");
                fd = open_dir_at(&fd, comp, &walked, dev)?;
            }
            self.dir = Some((dir_rel.to_string(), fd));
        }
        let (_, dir) = self.dir.as_ref().expect("just set");
        let at = format!("{}/{rel}", self.path);
        let (file, st) = open_file_at(dir, leaf, &at, Some(dev))?;
        let bytes = read_all(&file, st.st_size as u64, cap, &at)?;
        Ok((st, bytes))
    }
}

fn tree_too_large(path: &str, caps: Caps) -> FsError {
    fail(
        ErrorKind::TreeTooLarge,
        format!("{path}: more than {} bytes in all (max_size)", caps.bytes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodehelper::resolve::Resolver;

    fn open(p: &std::path::Path) -> OwnedFd {
        Resolver::new()
            .unwrap()
            .open_dir(&p.display().to_string())
            .unwrap()
    }

    const CAPS: Caps = Caps {
        entries: 100,
        bytes: 1000,
        names: 10_000,
    };

    #[test]
    fn a_tree_is_read_with_caps_and_every_link_or_odd_entry_refuses_it() {
        let tmp = tempfile::tempdir().unwrap();
        let k = tmp.path().join("keys");
        std::fs::create_dir_all(k.join("client/Alice")).unwrap();
        std::fs::write(k.join("client/Alice/storage.keyring"), b"ring").unwrap();
        std::fs::write(k.join("Alice_hmac"), b"hmac").unwrap();
        std::fs::write(k.join(".lock"), b"").unwrap();
        let t = read_tree(open(&k), "k", CAPS, &crate::material::acra::skipped_when_read).unwrap();
        let rels: Vec<&str> = t.files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, ["Alice_hmac", "client/Alice/storage.keyring"]);
        assert_eq!(
            t.dirs.iter().map(|d| d.rel.as_str()).collect::<Vec<_>>(),
            ["client", "client/Alice"]
        );
        let mut files = FileReader::new(&t, "k");
        assert_eq!(
            &files.read("client/Alice/storage.keyring", 100).unwrap().1[..],
            b"ring"
        );
        assert_eq!(&files.read("Alice_hmac", 100).unwrap().1[..], b"hmac");
        assert_eq!(
            files.read("Alice_hmac", 3).err().unwrap().kind,
            ErrorKind::TooLarge
        );
        let listed = read_tree(open(&k), "k", CAPS, &|_| false).unwrap();
        assert_eq!(listed.files.len(), 3);

        let small = Caps { entries: 3, ..CAPS };
        assert_eq!(
            read_tree(open(&k), "k", small, &|_| false).err().unwrap().kind,
            ErrorKind::TreeTooLarge
        );
        let tight = Caps { bytes: 5, ..CAPS };
        assert_eq!(
            read_tree(open(&k), "k", tight, &|_| false).err().unwrap().kind,
            ErrorKind::TreeTooLarge
        );

        std::os::unix::fs::symlink("/etc/shadow", k.join("client/evil")).unwrap();
        let e = read_tree(open(&k), "k", CAPS, &|_| false).err().unwrap();
        assert!(e.message.contains("symbolic link"), "{e:?}");
        std::fs::remove_file(k.join("client/evil")).unwrap();
        std::fs::write(tmp.path().join("elsewhere"), b"x").unwrap();
        std::fs::hard_link(tmp.path().join("elsewhere"), k.join("linked")).unwrap();
        let t = read_tree(open(&k), "k", CAPS, &|_| false).unwrap();
        let e = FileReader::new(&t, "k").read("linked", 100).err().unwrap();
        assert!(e.message.contains("2 names"), "{e:?}");
        std::fs::remove_file(k.join("linked")).unwrap();
        std::fs::write(k.join("bad name"), b"x").unwrap();
        let e = read_tree(open(&k), "k", CAPS, &|_| false).err().unwrap();
        assert!(e.message.contains("no keystore holds"), "{e:?}");
    }

    /// A chain of directories deeper than any keystore (and than a restore accepts) is refused
    /// while it is walked, as is a listing past its budget of name bytes; one fd per level is
    /// open at a time, however wide the tree.
    #[test]
    fn depth_and_name_bytes_are_capped_while_walking() {
        let tmp = tempfile::tempdir().unwrap();
        let k = tmp.path().join("keys");
        let deep: std::path::PathBuf = (1..MAX_DEPTH).map(|i| format!("d{i}")).collect();
        std::fs::create_dir_all(k.join(&deep)).unwrap();
        std::fs::write(k.join(&deep).join("key"), b"k").unwrap();
        let t = read_tree(open(&k), "k", CAPS, &|_| false).unwrap();
        assert_eq!(t.files[0].rel.split('/').count(), MAX_DEPTH);
        assert!(crate::nodehelper::proto::valid_rel(&t.files[0].rel));
        std::fs::create_dir(k.join(&deep).join("one-more")).unwrap();
        std::fs::write(k.join(&deep).join("one-more/key"), b"k").unwrap();
        let e = read_tree(open(&k), "k", CAPS, &|_| false).err().unwrap();
        assert_eq!(e.kind, ErrorKind::TreeTooLarge, "{e:?}");
        assert!(e.message.contains("deeper than 32"), "{e:?}");
        // Name bytes: the budget stops the walk.
        let few = Caps { names: 40, ..CAPS };
        let e = read_tree(open(&k), "k", few, &|_| false).err().unwrap();
        assert!(e.message.contains("bytes of names"), "{e:?}");
        // Wide: more sibling directories than fds a small limit allows, listed with few open.
        let wide = tmp.path().join("wide");
        for i in 0..300 {
            std::fs::create_dir_all(wide.join(format!("c{i:03}"))).unwrap();
        }
        let caps = Caps {
            entries: 1000,
            ..CAPS
        };
        let fds_before = std::fs::read_dir("/proc/self/fd").unwrap().count();
        let t = read_tree(open(&wide), "w", caps, &|_| false).unwrap();
        assert_eq!(t.dirs.len(), 300);
        assert!(std::fs::read_dir("/proc/self/fd").unwrap().count() <= fds_before + 2);
    }
}

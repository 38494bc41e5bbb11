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

/// One entry of a tree read.
pub struct Read {
    /// Relative name.
    pub rel: String,
    /// `fstat` of the fd it was read from (files with contents) or `lstat` (listing).
    pub stat: rustix::fs::Stat,
    /// Its bytes, when contents were asked for.
    pub bytes: Option<Zeroizing<Vec<u8>>>,
}

/// A tree as read.
pub struct Tree {
    /// The root directory.
    pub root: rustix::fs::Stat,
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
}

/// Reads the tree whose root directory is `root` (opened by the resolver). `skip` drops an
/// entry by relative name. Names outside [`valid_name`] are refused: a keystore holds only names
/// coldkeep can restore.
pub fn read_tree(
    root: OwnedFd,
    path: &str,
    caps: Caps,
    contents: bool,
    skip: &dyn Fn(&str) -> bool,
) -> Result<Tree, FsError> {
    let root_st = rustix::fs::fstat(&root).map_err(|e| errno(e, path))?;
    let dev = root_st.st_dev;
    let mut tree = Tree {
        root: root_st,
        dirs: Vec::new(),
        files: Vec::new(),
    };
    let too_many = || {
        fail(
            ErrorKind::TreeTooLarge,
            format!(
                "{path}: more than {} files and directories counted together (max_files)",
                caps.entries
            ),
        )
    };
    let mut seen = 0u64;
    let mut total = 0u64;
    let mut pending: Vec<(String, OwnedFd)> = vec![(String::new(), root)];
    while let Some((dir_rel, fd)) = pending.pop() {
        let mut names = Vec::new();
        let listing = rustix::fs::Dir::read_from(&fd).map_err(|e| errno(e, path))?;
        for entry in listing {
            let entry = entry.map_err(|e| errno(e, path))?;
            let raw = entry.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            seen += 1;
            if seen > caps.entries {
                return Err(too_many());
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
            names.push(name.to_string());
        }
        names.sort();
        for name in names {
            let rel = if dir_rel.is_empty() {
                name.clone()
            } else {
                format!("{dir_rel}/{name}")
            };
            if skip(&rel) {
                continue;
            }
            let at = format!("{path}/{rel}");
            let Some(st) = super::resolve::lstat_at(&fd, &name, &at)? else {
                continue; // gone since the listing (Acra's .lock comes and goes)
            };
            match kind_of(&st) {
                EntryKind::Dir => {
                    let sub = open_dir_at(&fd, &name, &at, dev)?;
                    let st = rustix::fs::fstat(&sub).map_err(|e| errno(e, &at))?;
                    tree.dirs.push(Read {
                        rel: rel.clone(),
                        stat: st,
                        bytes: None,
                    });
                    pending.push((rel, sub));
                }
                EntryKind::File => {
                    let (stat, bytes) = if contents {
                        let (file, st) = open_file_at(&fd, &name, &at, Some(dev))?;
                        let left = caps.bytes.saturating_sub(total);
                        let bytes =
                            read_all(&file, st.st_size as u64, left, &at).map_err(|e| match e.kind {
                                ErrorKind::TooLarge => tree_too_large(path, caps),
                                _ => e,
                            })?;
                        total += bytes.len() as u64;
                        (st, Some(bytes))
                    } else {
                        if st.st_dev != dev {
                            return Err(errno(rustix::io::Errno::XDEV, &at));
                        }
                        total = total.saturating_add(st.st_size as u64);
                        (st, None)
                    };
                    if total > caps.bytes {
                        return Err(tree_too_large(path, caps));
                    }
                    tree.files.push(Read { rel, stat, bytes });
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
    }
    tree.dirs.sort_by(|a, b| a.rel.cmp(&b.rel));
    tree.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(tree)
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
    };

    #[test]
    fn a_tree_is_read_with_caps_and_every_link_or_odd_entry_refuses_it() {
        let tmp = tempfile::tempdir().unwrap();
        let k = tmp.path().join("keys");
        std::fs::create_dir_all(k.join("client/Alice")).unwrap();
        std::fs::write(k.join("client/Alice/storage.keyring"), b"ring").unwrap();
        std::fs::write(k.join("Alice_hmac"), b"hmac").unwrap();
        std::fs::write(k.join(".lock"), b"").unwrap();
        let t = read_tree(
            open(&k),
            "k",
            CAPS,
            true,
            &crate::material::acra::skipped_when_read,
        )
        .unwrap();
        let rels: Vec<&str> = t.files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, ["Alice_hmac", "client/Alice/storage.keyring"]);
        assert_eq!(
            t.dirs.iter().map(|d| d.rel.as_str()).collect::<Vec<_>>(),
            ["client", "client/Alice"]
        );
        assert_eq!(&t.files[1].bytes.as_ref().unwrap()[..], b"ring");
        let listed = read_tree(open(&k), "k", CAPS, false, &|_| false).unwrap();
        assert!(listed.files.iter().all(|f| f.bytes.is_none()) && listed.files.len() == 3);

        let small = Caps {
            entries: 3,
            bytes: 1000,
        };
        assert_eq!(
            read_tree(open(&k), "k", small, false, &|_| false)
                .err()
                .unwrap()
                .kind,
            ErrorKind::TreeTooLarge
        );
        let tight = Caps {
            entries: 100,
            bytes: 5,
        };
        assert_eq!(
            read_tree(open(&k), "k", tight, true, &|_| false)
                .err()
                .unwrap()
                .kind,
            ErrorKind::TreeTooLarge
        );

        std::os::unix::fs::symlink("/etc/shadow", k.join("client/evil")).unwrap();
        let e = read_tree(open(&k), "k", CAPS, true, &|_| false).err().unwrap();
        assert!(e.message.contains("symbolic link"), "{e:?}");
        std::fs::remove_file(k.join("client/evil")).unwrap();
        std::fs::write(tmp.path().join("elsewhere"), b"x").unwrap();
        std::fs::hard_link(tmp.path().join("elsewhere"), k.join("linked")).unwrap();
        let e = read_tree(open(&k), "k", CAPS, true, &|_| false).err().unwrap();
        assert!(e.message.contains("2 names"), "{e:?}");
        std::fs::remove_file(k.join("linked")).unwrap();
        std::fs::write(k.join("bad name"), b"x").unwrap();
        let e = read_tree(open(&k), "k", CAPS, false, &|_| false).err().unwrap();
        assert!(e.message.contains("no keystore holds"), "{e:?}");
    }
}

//! Directory trees over SFTP: list and fetch a whole tree (Acra keystores), create one file by
//! file, and swap directories by rename.
//!
//! SFTP, not SCP: one channel serves the whole tree (listing with modes included), where SCP needs
//! a channel and a remote `scp` process per file. Inside the tree only directories and regular
//! files are accepted; a symlink or a device file is refused, so a fetch never follows a link out
//! of the keystore.

use super::{FX_NO_SUCH_FILE, FX_PERMISSION_DENIED, RemoteError, Session, join_remote, shell_quote};
use std::path::Path;
use zeroize::Zeroizing;

/// Caps on a tree fetch.
#[derive(Debug, Clone, Copy)]
pub struct TreeLimits {
    /// Most entries in the tree, files and directories counted (every one costs memory).
    pub max_files: u64,
    /// At most this many bytes in all.
    pub max_size: u64,
}

/// A regular file in a remote tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Path relative to the tree's root, `/`-separated.
    pub rel: String,
    /// Size in bytes.
    pub size: u64,
    /// Unix permission bits.
    pub mode: u32,
    /// Owner and group, when the transport tells.
    pub owner: Option<super::Owner>,
}

/// The listing of a remote tree.
#[derive(Debug, Clone)]
pub struct RemoteTree {
    /// Mode of the root directory.
    pub root_mode: u32,
    /// Regular files, sorted by path.
    pub files: Vec<TreeEntry>,
    /// Subdirectories (relative paths) with their modes, parents before children.
    pub dirs: Vec<(String, u32)>,
    /// Owners of the root (first, `rel` empty) and of every subdirectory, for the manifest.
    pub dir_entries: Vec<TreeEntry>,
}

/// A fetched tree: every file's bytes in memory, wiped on drop.
pub struct FetchedTree {
    /// Mode of the root directory.
    pub root_mode: u32,
    /// The root (first, `rel` empty) and every subdirectory, with modes and owners.
    pub dirs: Vec<TreeEntry>,
    /// Each file with its bytes (wiped on drop).
    pub files: Vec<(TreeEntry, Zeroizing<Vec<u8>>)>,
}

/// libssh2's `LIBSSH2_ERROR_FILE`: the end of a directory listing.
const LIBSSH2_ERROR_FILE: i32 = -16;

/// The error for a tree over `max_files` entries (files and directories).
fn too_many(root: &str, limits: TreeLimits) -> RemoteError {
    RemoteError::TreeTooLarge {
        path: root.to_string(),
        detail: format!(
            "more than {} files and directories counted together (max_files)",
            limits.max_files
        ),
    }
}

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

impl Session {
    /// Lists the tree under `root` (directories and regular files only). `skip` is given each
    /// relative path and drops the entry (and a directory's contents). `Ok(None)`: no such root.
    pub fn list_tree(
        &self,
        root: &str,
        limits: TreeLimits,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Option<RemoteTree>, RemoteError> {
        if self.helper.is_some() {
            return Ok(self.helper_tree(root, limits, skip, false)?.map(|(tree, _)| tree));
        }
        let sftp = self.sftp()?;
        let Some(st) = self.stat_with(sftp, root)? else {
            return Ok(None);
        };
        if !st.is_dir {
            return Err(RemoteError::NotADirectory {
                path: root.to_string(),
            });
        }
        let mut tree = RemoteTree {
            root_mode: st.mode,
            files: Vec::new(),
            dirs: Vec::new(),
            dir_entries: vec![TreeEntry {
                rel: String::new(),
                size: 0,
                mode: st.mode,
                owner: st.owner.clone(),
            }],
        };
        let mut total = 0u64;
        // Entries seen so far, directories included (30,000 empty directories are no keystore).
        let mut seen = 0u64;
        let mut pending = vec![String::new()];
        while let Some(dir_rel) = pending.pop() {
            let dir_abs = if dir_rel.is_empty() {
                root.to_string()
            } else {
                join_remote(root, &dir_rel)
            };
            let during = format!("listing {dir_abs}");
            let mut entries = self.read_dir_capped(sftp, &dir_abs, &during, root, limits, &mut seen)?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (path, stat) in entries {
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    return Err(RemoteError::UnsafeEntry {
                        path: crate::text::escape_control(&path.display().to_string()),
                        detail: "the name is not valid UTF-8".into(),
                    });
                };
                if name == "." || name == ".." {
                    continue;
                }
                let rel = if dir_rel.is_empty() {
                    name.to_string()
                } else {
                    format!("{dir_rel}/{name}")
                };
                if skip(&rel) {
                    continue;
                }
                let perm = stat.perm.unwrap_or(0);
                let abs = join_remote(root, &rel);
                match perm & S_IFMT {
                    S_IFDIR => {
                        if tree.files.len() as u64 + tree.dirs.len() as u64 >= limits.max_files {
                            return Err(too_many(root, limits));
                        }
                        tree.dirs.push((rel.clone(), perm & 0o7777));
                        tree.dir_entries.push(TreeEntry {
                            rel: rel.clone(),
                            size: 0,
                            mode: perm & 0o7777,
                            owner: stat.uid.zip(stat.gid).map(|(uid, gid)| super::Owner {
                                uid,
                                gid,
                                user: None,
                                group: None,
                            }),
                        });
                        pending.push(rel);
                    }
                    S_IFREG => {
                        let size = stat.size.unwrap_or(0);
                        total = total.saturating_add(size);
                        tree.files.push(TreeEntry {
                            rel,
                            size,
                            mode: perm & 0o7777,
                            owner: stat.uid.zip(stat.gid).map(|(uid, gid)| super::Owner {
                                uid,
                                gid,
                                user: None,
                                group: None,
                            }),
                        });
                        if tree.files.len() as u64 + tree.dirs.len() as u64 > limits.max_files {
                            return Err(too_many(root, limits));
                        }
                        if total > limits.max_size {
                            return Err(RemoteError::TreeTooLarge {
                                path: root.to_string(),
                                detail: format!("more than {} bytes in all (max_size)", limits.max_size),
                            });
                        }
                    }
                    S_IFLNK => {
                        return Err(RemoteError::UnsafeEntry {
                            path: crate::text::escape_control(&abs),
                            detail: "a symbolic link (refused: a keystore holds only files and directories)"
                                .into(),
                        });
                    }
                    _ => {
                        return Err(RemoteError::UnsafeEntry {
                            path: crate::text::escape_control(&abs),
                            detail: "not a regular file or directory (device, fifo or socket)".into(),
                        });
                    }
                }
            }
        }
        tree.files.sort_by(|a, b| a.rel.cmp(&b.rel));
        tree.dirs.sort();
        tree.dir_entries.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(Some(tree))
    }

    /// Reads one directory's entries (names relative to it, `.` and `..` dropped) entry by
    /// entry, so a directory with millions of names fails at the cap instead of filling memory.
    fn read_dir_capped(
        &self,
        sftp: &ssh2::Sftp,
        dir_abs: &str,
        during: &str,
        root: &str,
        limits: TreeLimits,
        seen: &mut u64,
    ) -> Result<Vec<(std::path::PathBuf, ssh2::FileStat)>, RemoteError> {
        let mut dir = sftp.opendir(Path::new(dir_abs)).map_err(|e| match e.code() {
            ssh2::ErrorCode::SFTP(FX_PERMISSION_DENIED) => RemoteError::PermissionDenied {
                path: dir_abs.to_string(),
            },
            _ => self.err(e, during),
        })?;
        let deadline = self.read_deadline();
        let mut out = Vec::new();
        loop {
            self.check_deadline(deadline, during)?;
            match dir.readdir() {
                Ok((name, stat)) => {
                    if name == Path::new(".") || name == Path::new("..") {
                        continue;
                    }
                    *seen += 1;
                    if *seen > limits.max_files {
                        return Err(too_many(root, limits));
                    }
                    out.push((Path::new(dir_abs).join(name), stat));
                }
                Err(e) if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_FILE) => break,
                Err(e) => return Err(self.err(e, during)),
            }
        }
        Ok(out)
    }

    /// Lists and reads the whole tree under `root`; `Ok(None)` when there is no such directory.
    pub fn fetch_tree(
        &self,
        root: &str,
        limits: TreeLimits,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Option<FetchedTree>, RemoteError> {
        if self.helper.is_some() {
            return Ok(self
                .helper_tree(root, limits, skip, true)?
                .map(|(_, fetched)| fetched));
        }
        let Some(tree) = self.list_tree(root, limits, skip)? else {
            return Ok(None);
        };
        let sftp = self.sftp()?;
        let mut budget = limits.max_size;
        let mut files = Vec::with_capacity(tree.files.len());
        for entry in tree.files {
            let path = join_remote(root, &entry.rel);
            let bytes = self
                .read_sftp(sftp, &path, entry.size, budget)
                .map_err(|e| match e {
                    RemoteError::TooLarge { .. } => RemoteError::TreeTooLarge {
                        path: root.to_string(),
                        detail: format!("more than {} bytes in all (max_size)", limits.max_size),
                    },
                    other => other,
                })?;
            budget -= bytes.len() as u64;
            files.push((entry, bytes));
        }
        Ok(Some(FetchedTree {
            root_mode: tree.root_mode,
            dirs: tree.dir_entries,
            files,
        }))
    }

    /// Creates a directory with exactly `mode` (not subject to the server's umask).
    pub fn make_dir(&self, path: &str, mode: u32) -> Result<(), RemoteError> {
        self.not_through_helper(path)?;
        let sftp = self.sftp()?;
        sftp.mkdir(Path::new(path), (mode & 0o777) as i32)
            .map_err(|e| self.sftp_err(e, path, &format!("creating directory {path}")))?;
        // setstat follows links: check that the name still is the directory just made.
        match sftp.lstat(Path::new(path)) {
            Ok(st) if st.perm.unwrap_or(0) & S_IFMT == S_IFDIR => {}
            _ => {
                return Err(RemoteError::UnsafeEntry {
                    path: path.to_string(),
                    detail: "the directory just created was replaced".into(),
                });
            }
        }
        self.set_mode(sftp, path, mode)
    }

    /// Writes a new file (it must not exist) with exactly `mode`, and syncs it when the server can.
    pub fn write_new_file(&self, path: &str, bytes: &[u8], mode: u32) -> Result<(), RemoteError> {
        self.not_through_helper(path)?;
        use std::io::Write;
        let sftp = self.sftp()?;
        let during = format!("writing {path}");
        let mut file = sftp
            .open_mode(
                Path::new(path),
                ssh2::OpenFlags::WRITE | ssh2::OpenFlags::CREATE | ssh2::OpenFlags::EXCLUSIVE,
                0o600,
                ssh2::OpenType::File,
            )
            .map_err(|e| self.sftp_err(e, path, &during))?;
        for chunk in bytes.chunks(30_000) {
            file.write_all(chunk).map_err(|e| self.io_err(e, &during))?;
        }
        file.flush().map_err(|e| self.io_err(e, &during))?;
        let _ = file.fsync();
        // On the open handle (fsetstat), so a name swapped meanwhile is never chmod-ed.
        file.setstat(super::mode_only(mode))
            .map_err(|e| self.sftp_err(e, path, &format!("setting the mode of {path}")))?;
        file.close().map_err(|e| self.err(e, &during))
    }

    fn set_mode(&self, sftp: &ssh2::Sftp, path: &str, mode: u32) -> Result<(), RemoteError> {
        sftp.setstat(Path::new(path), super::mode_only(mode))
            .map_err(|e| self.sftp_err(e, path, &format!("setting the mode of {path}")))
    }

    fn sftp_err(&self, e: ssh2::Error, path: &str, during: &str) -> RemoteError {
        match e.code() {
            ssh2::ErrorCode::SFTP(FX_PERMISSION_DENIED) => RemoteError::PermissionDenied {
                path: path.to_string(),
            },
            ssh2::ErrorCode::SFTP(FX_NO_SUCH_FILE) => RemoteError::NotFound {
                path: path.to_string(),
            },
            _ => self.err(e, during),
        }
    }

    /// Whether `path` is a symbolic link (lstat); false when it does not exist.
    pub fn is_symlink(&self, path: &str) -> Result<bool, RemoteError> {
        if self.helper.is_some() {
            return Ok(self.helper_stat(path)?.is_some_and(|(_, link)| link));
        }
        let sftp = self.sftp()?;
        match sftp.lstat(Path::new(path)) {
            Ok(st) => Ok(st.perm.unwrap_or(0) & S_IFMT == S_IFLNK),
            Err(e) if e.code() == ssh2::ErrorCode::SFTP(FX_NO_SUCH_FILE) => Ok(false),
            Err(e) => Err(self.sftp_err(e, path, &format!("lstat of {path}"))),
        }
    }

    /// Gives the tree at `path` the owner and group of `reference` (`chown -R --reference`).
    pub fn chown_like(&self, path: &str, reference: &str) -> Result<(), RemoteError> {
        self.not_through_helper(path)?;
        self.exec_ok(&format!(
            "chown -R --reference={} -- {}",
            shell_quote(reference),
            shell_quote(path)
        ))?;
        Ok(())
    }

    /// Gives the tree at `path` the owner `user:group` (`chown -R -h`, links not followed).
    pub fn chown_tree(&self, path: &str, owner: &str) -> Result<(), RemoteError> {
        self.not_through_helper(path)?;
        self.exec_ok(&format!(
            "chown -R -h {} -- {}",
            shell_quote(owner),
            shell_quote(path)
        ))?;
        Ok(())
    }

    /// Renames `from` to `to` on the node (`mv -T`: `to` must not be a non-empty directory).
    /// Afterwards `to` must be a directory (not a link someone swapped in).
    pub fn rename_dir(&self, from: &str, to: &str) -> Result<(), RemoteError> {
        self.not_through_helper(from)?;
        self.exec_ok(&format!("mv -T -- {} {}", shell_quote(from), shell_quote(to)))?;
        let sftp = self.sftp()?;
        match sftp.lstat(Path::new(to)) {
            Ok(st) if st.perm.unwrap_or(0) & S_IFMT == S_IFDIR => Ok(()),
            _ => Err(RemoteError::UnsafeEntry {
                path: to.to_string(),
                detail: "after the rename it is not a directory".into(),
            }),
        }
    }

    /// Paths named `.NAME.<tag>*` directly beside `path` (leftovers of an interrupted restore),
    /// read with the node's rights (`become` included).
    pub fn beside(&self, path: &str, tag: &str) -> Result<Vec<String>, RemoteError> {
        if self.helper.is_some() {
            return self.helper_beside(path, tag);
        }
        let (dir, name) = super::split_remote(path);
        let prefix = format!(".{name}.{tag}");
        let sftp = self.sftp()?;
        let entries = sftp
            .readdir(Path::new(&dir))
            .map_err(|e| self.sftp_err(e, &dir, &format!("listing {dir}")))?;
        let mut found: Vec<String> = entries
            .into_iter()
            .filter_map(|(p, _)| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .filter(|n| n.starts_with(&prefix))
            .map(|n| join_remote(&dir, &n))
            .collect();
        found.sort();
        Ok(found)
    }

    /// The step-by-step tree operations are not offered through the node helper: it restores a
    /// whole tree in one request ([`super::Node::restore_trees`]), through fds.
    fn not_through_helper(&self, path: &str) -> Result<(), RemoteError> {
        if self.helper.is_some() {
            return Err(RemoteError::Helper {
                addr: self.addr.clone(),
                detail: format!(
                    "{path}: through the node helper a tree is restored in one request, not step by step"
                ),
            });
        }
        Ok(())
    }

    /// Removes a directory tree that coldkeep itself created (temp or swapped-out directories).
    pub fn remove_tree(&self, path: &str) -> Result<(), RemoteError> {
        self.not_through_helper(path)?;
        self.exec_ok(&format!("rm -rf -- {}", shell_quote(path)))?;
        Ok(())
    }
}

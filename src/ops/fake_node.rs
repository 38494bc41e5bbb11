//! An in-memory node for unit tests of the decisions in `ops`, with fault injection.
//!
//! Why: the decisions that read a node (backup's "unchanged", restore's "identical / different /
//! missing", the Acra swap and its rollback) must be tested on cases a real sshd cannot easily
//! produce: the Nth rename failing, a read cut short, a full disk. The fake holds files (bytes,
//! mode, owner), directories and symlinks in maps, follows the same contracts as
//! [`crate::remote::Session`] (exclusive create, `mv -T` renames, caps), and fails the calls a
//! test names. It is a supplement to the sshd tests in `tests/`, never a replacement.

use crate::remote::{
    FetchedTree, Node, Owner, RemoteError, RemoteFile, RemoteStat, RemoteTree, TreeEntry, TreeLimits,
    TreeRestoreError, TreeUpload, WriteRule,
};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use zeroize::Zeroizing;

/// A call the fake can be told to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// [`Node::fetch`] (and the reads of [`Node::fetch_tree`]).
    Read,
    /// [`Node::write_new_file`] and [`Node::push`].
    Write,
    /// [`Node::rename_dir`].
    Rename,
    /// [`Node::make_dir`].
    MakeDir,
}

/// One file on the fake node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Contents.
    pub bytes: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    /// Owner, as a name (`user`, or `user:group` when the group differs).
    pub owner: String,
}

/// Users (and groups of the same name) every fake node has; uids by position, root 0.
const USERS: [&str; 3] = ["root", "app", "coldkeep"];

/// Everything on the node: comparable, so a test can assert "as before".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fs {
    /// Regular files by absolute path.
    pub files: BTreeMap<String, File>,
    /// Directories by absolute path, with mode and owner.
    pub dirs: BTreeMap<String, (u32, String)>,
    /// Symbolic links by absolute path (to their target).
    pub links: BTreeMap<String, String>,
}

#[derive(Default)]
struct State {
    fs: Fs,
    calls: BTreeMap<Op, usize>,
    fail_nth: BTreeSet<(Op, usize)>,
    short_reads: BTreeSet<String>,
    free_bytes: Option<u64>,
    log: Vec<String>,
    /// Users beyond [`USERS`] (each with a group of the same name).
    users: Vec<String>,
    /// What the node decides about writes (a node helper's policy), when set.
    write_rule: Option<WriteRule>,
}

/// The fake node.
#[derive(Default)]
pub struct FakeNode {
    state: RefCell<State>,
}

fn parent(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) => "/",
        Some((dir, _)) => dir,
        None => ".",
    }
}

fn under(path: &str, root: &str) -> Option<String> {
    let root = root.trim_end_matches('/');
    path.strip_prefix(root)?.strip_prefix('/').map(str::to_string)
}

/// What the node reports as the owner of a file recorded as `owner` (`user` or `user:group`):
/// names, and ids by position in the user list (unknown names get 65534, like `nobody`).
fn owner_info(owner: &str, users: &[String]) -> Owner {
    let (user, group) = owner.split_once(':').unwrap_or((owner, owner));
    let id = |name: &str| {
        USERS
            .iter()
            .map(|u| u.to_string())
            .chain(users.iter().cloned())
            .position(|u| u == name)
            .map_or(65534, |i| if i == 0 { 0 } else { 1000 + i as u32 })
    };
    Owner {
        uid: id(user),
        gid: id(group),
        user: Some(user.to_string()),
        group: Some(group.to_string()),
    }
}

/// How the fake records `user:group`: just `user` when the group has the same name.
fn owner_name(owner: &str) -> String {
    match owner.split_once(':') {
        Some((user, group)) if user == group => user.to_string(),
        _ => owner.to_string(),
    }
}

fn io_failure(during: &str) -> RemoteError {
    RemoteError::Ssh {
        during: during.to_string(),
        detail: "injected failure".into(),
    }
}

impl FakeNode {
    /// An empty node with `/` only.
    pub fn new() -> FakeNode {
        let node = FakeNode::default();
        node.state
            .borrow_mut()
            .fs
            .dirs
            .insert("/".into(), (0o755, "root".into()));
        node
    }

    /// Makes the node decide writes as a node helper's policy does (owner, loosest mode, or a
    /// refusal), so plans can be tested against it.
    pub fn set_write_rule(&self, rule: WriteRule) {
        self.state.borrow_mut().write_rule = Some(rule);
    }

    /// Creates a directory and its parents (mode 0755, owner `app`).
    pub fn mkdirs(&self, path: &str) {
        let mut st = self.state.borrow_mut();
        let mut at = String::new();
        for part in path.trim_matches('/').split('/') {
            at.push('/');
            at.push_str(part);
            st.fs.dirs.entry(at.clone()).or_insert((0o755, "app".into()));
        }
    }

    /// Puts a file (creating its parents) owned by `app`.
    pub fn put(&self, path: &str, bytes: &[u8], mode: u32) {
        self.mkdirs(parent(path));
        self.state.borrow_mut().fs.files.insert(
            path.to_string(),
            File {
                bytes: bytes.to_vec(),
                mode,
                owner: "app".into(),
            },
        );
    }

    /// Gives a file or directory another owner (`user` or `user:group`).
    pub fn chown(&self, path: &str, owner: &str) {
        let mut st = self.state.borrow_mut();
        if let Some(f) = st.fs.files.get_mut(path) {
            f.owner = owner_name(owner);
        }
        if let Some((_, o)) = st.fs.dirs.get_mut(path) {
            *o = owner_name(owner);
        }
    }

    /// Adds a user (and a group of the same name) to the node.
    pub fn add_user(&self, name: &str) {
        self.state.borrow_mut().users.push(name.to_string());
    }

    /// Makes `path` a symbolic link.
    pub fn symlink(&self, path: &str, target: &str) {
        self.mkdirs(parent(path));
        self.state
            .borrow_mut()
            .fs
            .links
            .insert(path.to_string(), target.to_string());
    }

    /// A file's contents, if it exists.
    pub fn get(&self, path: &str) -> Option<File> {
        self.state.borrow().fs.files.get(path).cloned()
    }

    /// A snapshot of everything on the node.
    pub fn fs(&self) -> Fs {
        self.state.borrow().fs.clone()
    }

    /// Makes the `n`th call (1-based, counted from now on) of `op` fail.
    pub fn fail_nth(&self, op: Op, n: usize) {
        let mut st = self.state.borrow_mut();
        let done = st.calls.get(&op).copied().unwrap_or(0);
        st.fail_nth.insert((op, done + n));
    }

    /// Makes reads of `path` stop half way (the connection drops mid-file).
    pub fn cut_reads_short(&self, path: &str) {
        self.state.borrow_mut().short_reads.insert(path.to_string());
    }

    /// Leaves only `bytes` of free space for writes from now on.
    pub fn disk_free(&self, bytes: u64) {
        self.state.borrow_mut().free_bytes = Some(bytes);
    }

    /// How many times `op` was called.
    pub fn calls(&self, op: Op) -> usize {
        self.state.borrow().calls.get(&op).copied().unwrap_or(0)
    }

    /// The changing calls made, in order (`rename a -> b`, `write p`, ...).
    pub fn log(&self) -> Vec<String> {
        self.state.borrow().log.clone()
    }

    /// Counts a call and fails it when a test asked for that.
    fn call(&self, op: Op, during: &str) -> Result<(), RemoteError> {
        let mut st = self.state.borrow_mut();
        let n = st.calls.entry(op).or_insert(0);
        *n += 1;
        let n = *n;
        if st.fail_nth.contains(&(op, n)) {
            return Err(io_failure(during));
        }
        Ok(())
    }

    fn exists(fs: &Fs, path: &str) -> bool {
        fs.files.contains_key(path) || fs.dirs.contains_key(path) || fs.links.contains_key(path)
    }

    fn read(&self, path: &str, max_size: u64) -> Result<RemoteFile, RemoteError> {
        self.call(Op::Read, &format!("reading {path}"))?;
        let st = self.state.borrow();
        if st.fs.dirs.contains_key(path) {
            return Err(RemoteError::IsDirectory { path: path.into() });
        }
        let file = st
            .fs
            .files
            .get(path)
            .ok_or_else(|| RemoteError::NotFound { path: path.into() })?;
        if file.bytes.len() as u64 > max_size {
            return Err(RemoteError::TooLarge {
                path: path.into(),
                size: file.bytes.len() as u64,
                cap: max_size,
            });
        }
        if st.short_reads.contains(path) {
            // What Session reports when the channel ends before the stat'ed size was read.
            return Err(RemoteError::Ssh {
                during: format!("reading {path}"),
                detail: format!("got {} of {} bytes", file.bytes.len() / 2, file.bytes.len()),
            });
        }
        Ok(RemoteFile {
            bytes: Zeroizing::new(file.bytes.clone()),
            mode: file.mode,
            owner: Some(owner_info(&file.owner, &st.users)),
        })
    }

    fn write(&self, path: &str, bytes: &[u8], mode: u32, owner: Option<String>) -> Result<(), RemoteError> {
        self.call(Op::Write, &format!("writing {path}"))?;
        let mut st = self.state.borrow_mut();
        if let Some(free) = st.free_bytes {
            if (bytes.len() as u64) > free {
                return Err(RemoteError::Ssh {
                    during: format!("writing {path}"),
                    detail: "no space left on device".into(),
                });
            }
            st.free_bytes = Some(free - bytes.len() as u64);
        }
        if !st.fs.dirs.contains_key(parent(path)) {
            return Err(RemoteError::NotFound { path: path.into() });
        }
        let owner = owner.unwrap_or_else(|| "coldkeep".into());
        st.log.push(format!("write {path}"));
        st.fs.files.insert(
            path.to_string(),
            File {
                bytes: bytes.to_vec(),
                mode: mode & 0o7777,
                owner,
            },
        );
        Ok(())
    }

    fn tree(
        &self,
        root: &str,
        limits: TreeLimits,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Option<RemoteTree>, RemoteError> {
        let st = self.state.borrow();
        if st.fs.links.contains_key(root) {
            return Err(RemoteError::UnsafeEntry {
                path: root.into(),
                detail: "a symbolic link".into(),
            });
        }
        let Some((root_mode, _)) = st.fs.dirs.get(root) else {
            return Ok(None);
        };
        let skipped = |rel: &str| {
            let mut at = 0;
            while let Some(i) = rel[at..].find('/') {
                if skip(&rel[..at + i]) {
                    return true;
                }
                at += i + 1;
            }
            skip(rel)
        };
        let files: Vec<TreeEntry> = st
            .fs
            .files
            .iter()
            .filter_map(|(p, f)| under(p, root).map(|rel| (rel, f)))
            .filter(|(rel, _)| !skipped(rel))
            .map(|(rel, f)| TreeEntry {
                rel,
                size: f.bytes.len() as u64,
                mode: f.mode,
                owner: Some(owner_info(&f.owner, &st.users)),
            })
            .collect();
        let dir_entries: Vec<TreeEntry> = st
            .fs
            .dirs
            .iter()
            .filter_map(|(p, (m, o))| {
                let rel = if p == root {
                    Some(String::new())
                } else {
                    under(p, root)
                };
                rel.map(|rel| TreeEntry {
                    rel,
                    size: 0,
                    mode: *m,
                    owner: Some(owner_info(o, &st.users)),
                })
            })
            .filter(|d| d.rel.is_empty() || !skipped(&d.rel))
            .collect();
        let dirs: Vec<(String, u32)> = dir_entries
            .iter()
            .filter(|d| !d.rel.is_empty())
            .map(|d| (d.rel.clone(), d.mode))
            .collect();
        // Directories count toward max_files, as in Session's listing.
        if (files.len() + dirs.len()) as u64 > limits.max_files
            || files.iter().map(|f| f.size).sum::<u64>() > limits.max_size
        {
            return Err(RemoteError::TreeTooLarge {
                path: root.into(),
                detail: "over the caps".into(),
            });
        }
        Ok(Some(RemoteTree {
            root_mode: *root_mode,
            files,
            dirs,
            dir_entries,
        }))
    }
}

impl Node for FakeNode {
    fn host_key_fingerprint(&self) -> &str {
        "SHA256:fake"
    }

    fn restore_trees(&self, uploads: &[TreeUpload]) -> Result<(), TreeRestoreError> {
        crate::remote::swap_trees(self, uploads)
    }

    fn finish_swap(&self, path: &str, _forward: bool) -> Result<Vec<String>, RemoteError> {
        Err(crate::remote::no_swap_record(path))
    }

    fn write_rule(&self, _path: &str) -> Option<WriteRule> {
        self.state.borrow().write_rule.clone()
    }

    fn stat(&self, path: &str) -> Result<Option<RemoteStat>, RemoteError> {
        let st = self.state.borrow();
        let path = st.fs.links.get(path).map(String::as_str).unwrap_or(path);
        Ok(if let Some((mode, owner)) = st.fs.dirs.get(path) {
            Some(RemoteStat {
                is_dir: true,
                is_file: false,
                size: 0,
                mode: *mode,
                owner: Some(owner_info(owner, &st.users)),
            })
        } else {
            st.fs.files.get(path).map(|f| RemoteStat {
                is_dir: false,
                is_file: true,
                size: f.bytes.len() as u64,
                mode: f.mode,
                owner: Some(owner_info(&f.owner, &st.users)),
            })
        })
    }

    fn lstat(&self, path: &str) -> Result<Option<RemoteStat>, RemoteError> {
        if self.state.borrow().fs.links.contains_key(path) {
            // As SFTP lstat reports a link: neither a file nor a directory.
            return Ok(Some(RemoteStat {
                is_dir: false,
                is_file: false,
                size: 0,
                mode: 0o777,
                owner: None,
            }));
        }
        self.stat(path)
    }

    fn is_symlink(&self, path: &str) -> Result<bool, RemoteError> {
        Ok(self.state.borrow().fs.links.contains_key(path))
    }

    fn fetch(&self, path: &str, max_size: u64) -> Result<RemoteFile, RemoteError> {
        self.read(path, max_size)
    }

    fn list_tree(
        &self,
        root: &str,
        limits: TreeLimits,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Option<RemoteTree>, RemoteError> {
        self.tree(root, limits, skip)
    }

    fn fetch_tree(
        &self,
        root: &str,
        limits: TreeLimits,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Option<FetchedTree>, RemoteError> {
        let Some(tree) = self.tree(root, limits, skip)? else {
            return Ok(None);
        };
        let mut files = Vec::new();
        for entry in tree.files {
            let path = format!("{}/{}", root.trim_end_matches('/'), entry.rel);
            let file = self.read(&path, u64::MAX)?;
            files.push((entry, file.bytes));
        }
        Ok(Some(FetchedTree {
            root_mode: tree.root_mode,
            dirs: tree.dir_entries,
            files,
        }))
    }

    fn make_dir(&self, path: &str, mode: u32) -> Result<(), RemoteError> {
        self.call(Op::MakeDir, &format!("creating directory {path}"))?;
        let mut st = self.state.borrow_mut();
        if Self::exists(&st.fs, path) {
            return Err(io_failure(&format!("creating directory {path} (exists)")));
        }
        if !st.fs.dirs.contains_key(parent(path)) {
            return Err(RemoteError::NotFound { path: path.into() });
        }
        st.log.push(format!("mkdir {path}"));
        st.fs
            .dirs
            .insert(path.to_string(), (mode & 0o7777, "coldkeep".into()));
        Ok(())
    }

    fn write_new_file(&self, path: &str, bytes: &[u8], mode: u32) -> Result<(), RemoteError> {
        if Self::exists(&self.state.borrow().fs, path) {
            return Err(io_failure(&format!("writing {path} (exists)")));
        }
        self.write(path, bytes, mode, None)
    }

    fn push(&self, path: &str, bytes: &[u8], mode: u32) -> Result<(), RemoteError> {
        self.push_owned(path, bytes, mode, None)
    }

    fn push_owned(
        &self,
        path: &str,
        bytes: &[u8],
        mode: u32,
        owner: Option<&str>,
    ) -> Result<(), RemoteError> {
        // As Session::push: a link or directory at the target is never replaced or followed, a
        // replaced file's mode is narrowed to `mode` (never looser than recorded) and its owner
        // kept; a new file gets `owner` when given.
        let (existing, mode) = {
            let st = self.state.borrow();
            if st.fs.links.contains_key(path) || st.fs.dirs.contains_key(path) {
                return Err(RemoteError::UnsafeEntry {
                    path: path.into(),
                    detail:
                        "not a regular file (a symlink, directory or device is never replaced or followed)"
                            .into(),
                });
            }
            match st.fs.files.get(path) {
                Some(f) => (Some(f.owner.clone()), f.mode & mode & 0o777),
                None => (None, mode & 0o777),
            }
        };
        let Some(owner) = owner.filter(|_| existing.is_none()) else {
            return self.write(path, bytes, mode, existing);
        };
        let (user, group) = owner.split_once(':').unwrap_or((owner, owner));
        if !self.owner_exists(user, group)? {
            // What `chown` says for an unknown name; the caller checked before, so a bug.
            return Err(RemoteError::Command {
                command: format!("chown {owner}"),
                status: 1,
                stderr: "invalid user".into(),
            });
        }
        self.write(path, bytes, mode, Some(owner_name(owner)))
    }

    fn owner_exists(&self, user: &str, group: &str) -> Result<bool, RemoteError> {
        let st = self.state.borrow();
        let known = |n: &str| USERS.contains(&n) || st.users.iter().any(|u| u == n);
        Ok(known(user) && known(group))
    }

    fn chown_tree(&self, path: &str, owner: &str) -> Result<(), RemoteError> {
        let (user, group) = owner.split_once(':').unwrap_or((owner, owner));
        if !self.owner_exists(user, group)? {
            return Err(RemoteError::Command {
                command: format!("chown -R -h {owner}"),
                status: 1,
                stderr: "invalid user".into(),
            });
        }
        let owner = owner_name(owner);
        let mut st = self.state.borrow_mut();
        for (p, f) in st.fs.files.iter_mut() {
            if p == path || under(p, path).is_some() {
                f.owner = owner.clone();
            }
        }
        for (p, (_, o)) in st.fs.dirs.iter_mut() {
            if p == path || under(p, path).is_some() {
                *o = owner.clone();
            }
        }
        st.log.push(format!("chown {path} {owner}"));
        Ok(())
    }

    fn chown_like(&self, path: &str, reference: &str) -> Result<(), RemoteError> {
        let mut st = self.state.borrow_mut();
        let owner = st
            .fs
            .dirs
            .get(reference)
            .map(|(_, o)| o.clone())
            .or_else(|| st.fs.files.get(reference).map(|f| f.owner.clone()))
            .ok_or_else(|| RemoteError::NotFound {
                path: reference.into(),
            })?;
        for (p, f) in st.fs.files.iter_mut() {
            if p == path || under(p, path).is_some() {
                f.owner = owner.clone();
            }
        }
        for (p, (_, o)) in st.fs.dirs.iter_mut() {
            if p == path || under(p, path).is_some() {
                *o = owner.clone();
            }
        }
        Ok(())
    }

    fn rename_dir(&self, from: &str, to: &str) -> Result<(), RemoteError> {
        self.call(Op::Rename, &format!("renaming {from} to {to}"))?;
        let mut st = self.state.borrow_mut();
        let fs = &mut st.fs;
        if !Self::exists(fs, from) {
            return Err(RemoteError::NotFound { path: from.into() });
        }
        let to_occupied = fs.files.contains_key(to)
            || fs.files.keys().any(|p| under(p, to).is_some())
            || fs.dirs.keys().any(|p| under(p, to).is_some());
        if to_occupied || !fs.dirs.contains_key(parent(to)) {
            return Err(io_failure(&format!("mv -T {from} {to}")));
        }
        fs.dirs.remove(to);
        let moved = |p: &str| -> Option<String> {
            if p == from {
                Some(to.to_string())
            } else {
                under(p, from).map(|rel| format!("{to}/{rel}"))
            }
        };
        fs.files = std::mem::take(&mut fs.files)
            .into_iter()
            .map(|(p, f)| (moved(&p).unwrap_or(p), f))
            .collect();
        fs.dirs = std::mem::take(&mut fs.dirs)
            .into_iter()
            .map(|(p, d)| (moved(&p).unwrap_or(p), d))
            .collect();
        st.log.push(format!("rename {from} -> {to}"));
        Ok(())
    }

    fn remove_tree(&self, path: &str) -> Result<(), RemoteError> {
        let mut st = self.state.borrow_mut();
        let fs = &mut st.fs;
        fs.files.retain(|p, _| p != path && under(p, path).is_none());
        fs.dirs.retain(|p, _| p != path && under(p, path).is_none());
        fs.links.remove(path);
        st.log.push(format!("remove {path}"));
        Ok(())
    }

    fn remove_stale_temps(&self, path: &str) -> Result<(), RemoteError> {
        for stale in self.beside(path, "coldkeep-tmp-")? {
            self.remove_tree(&stale)?;
        }
        Ok(())
    }

    fn beside(&self, path: &str, tag: &str) -> Result<Vec<String>, RemoteError> {
        let (dir, name) = (parent(path), path.rsplit('/').next().unwrap_or(path));
        self.entries_with_prefix(dir, &format!(".{name}.{tag}"))
    }
}

impl FakeNode {
    /// The entries of directory `dir` whose names start with `prefix` (full paths, sorted).
    pub fn entries_with_prefix(&self, dir: &str, prefix: &str) -> Result<Vec<String>, RemoteError> {
        let st = self.state.borrow();
        let start = format!("{}/{prefix}", dir.trim_end_matches('/'));
        let mut found: BTreeSet<String> = BTreeSet::new();
        for p in st
            .fs
            .files
            .keys()
            .chain(st.fs.dirs.keys())
            .chain(st.fs.links.keys())
        {
            if let Some(rest) = p.strip_prefix(&start) {
                let first = rest.split('/').next().unwrap_or_default();
                found.insert(format!("{start}{first}"));
            }
        }
        Ok(found.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_move_whole_trees_and_refuse_occupied_targets() {
        let node = FakeNode::new();
        node.put("/a/k/x", b"1", 0o600);
        node.put("/a/k/sub/y", b"2", 0o600);
        node.put("/a/other/z", b"3", 0o600);
        node.rename_dir("/a/k", "/a/moved").unwrap();
        assert_eq!(node.get("/a/moved/sub/y").unwrap().bytes, b"2");
        assert!(node.get("/a/k/x").is_none());
        assert!(
            node.rename_dir("/a/moved", "/a/other").is_err(),
            "mv -T onto a non-empty dir"
        );
        node.fail_nth(Op::Rename, 1);
        assert!(node.rename_dir("/a/moved", "/a/again").is_err());
        assert!(
            node.rename_dir("/a/moved", "/a/again").is_ok(),
            "only the chosen call fails"
        );
    }

    #[test]
    fn faults_short_reads_and_full_disk() {
        let node = FakeNode::new();
        node.put("/d/f", b"abcdef", 0o600);
        node.cut_reads_short("/d/f");
        assert!(node.fetch("/d/f", 100).is_err());
        node.disk_free(3);
        assert!(node.write_new_file("/d/g", b"toolong", 0o600).is_err());
        assert!(node.get("/d/g").is_none());
        assert!(matches!(node.fetch("/d/f", 2), Err(RemoteError::TooLarge { .. })));
    }
}

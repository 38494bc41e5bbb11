//! The operations coldkeep performs on a node, as a trait.
//!
//! Why: every decision that reads a node (backup's "unchanged", restore's "identical / different /
//! missing", the Acra swap and its rollback) is written against [`Node`], so it runs the same
//! against a real [`Session`] and against the in-memory fake in `ops`, which can fail a chosen
//! call. The implementation for [`Session`] only delegates to its methods.

use super::swap::{TreeRestoreError, TreeUpload};
use super::tree::FetchedTree;
use super::{RemoteError, RemoteFile, RemoteStat, RemoteTree, Session, TreeLimits, WriteRule};

/// What coldkeep does on a node. Paths are absolute remote paths.
pub trait Node {
    /// `SHA256:<base64>` fingerprint of the node's host key, recorded in manifests.
    fn host_key_fingerprint(&self) -> &str;
    /// Stats a path, following links; `Ok(None)` when it does not exist.
    fn stat(&self, path: &str) -> Result<Option<RemoteStat>, RemoteError>;
    /// Stats a path without following a final symlink (a link is neither file nor directory);
    /// `Ok(None)` when it does not exist. Restore uses it so a link at the target is refused.
    fn lstat(&self, path: &str) -> Result<Option<RemoteStat>, RemoteError>;
    /// Whether `path` is a symbolic link (stat without following it); false when missing.
    fn is_symlink(&self, path: &str) -> Result<bool, RemoteError>;
    /// Reads a whole regular file, refusing one over `max_size` bytes.
    fn fetch(&self, path: &str, max_size: u64) -> Result<RemoteFile, RemoteError>;
    /// Lists a tree (directories and regular files only, within `limits`); `Ok(None)`: no root.
    fn list_tree(
        &self,
        root: &str,
        limits: TreeLimits,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Option<RemoteTree>, RemoteError>;
    /// Lists and reads a whole tree within `limits`; `Ok(None)`: no root.
    fn fetch_tree(
        &self,
        root: &str,
        limits: TreeLimits,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Option<FetchedTree>, RemoteError>;
    /// Creates a directory with exactly `mode`.
    fn make_dir(&self, path: &str, mode: u32) -> Result<(), RemoteError>;
    /// Writes a file that must not exist yet (exclusive create) with exactly `mode`.
    fn write_new_file(&self, path: &str, bytes: &[u8], mode: u32) -> Result<(), RemoteError>;
    /// Replaces `path` atomically (exclusive temp file, `mv -T`) and reads it back; refuses a
    /// target that is not a regular file, narrows an existing file's mode to `mode`, and keeps
    /// its owner and group (or stops before the rename).
    fn push(&self, path: &str, bytes: &[u8], mode: u32) -> Result<(), RemoteError>;
    /// Like [`Node::push`]; a file that did not exist gets `owner` (`user:group`), the owner its
    /// backup recorded, so a restored key is not left owned by whoever wrote it.
    fn push_owned(&self, path: &str, bytes: &[u8], mode: u32, owner: Option<&str>)
    -> Result<(), RemoteError>;
    /// Whether the user and group names exist on the node (a recorded owner can be given back).
    fn owner_exists(&self, user: &str, group: &str) -> Result<bool, RemoteError>;
    /// Gives the tree at `path` the owner and group of `reference`.
    fn chown_like(&self, path: &str, reference: &str) -> Result<(), RemoteError>;
    /// Gives the tree at `path` the owner `user:group` (links not followed).
    fn chown_tree(&self, path: &str, owner: &str) -> Result<(), RemoteError>;
    /// Renames `from` to `to` (`to` must not be a non-empty directory).
    fn rename_dir(&self, from: &str, to: &str) -> Result<(), RemoteError>;
    /// Removes a tree coldkeep created (temp or swapped-out directories).
    fn remove_tree(&self, path: &str) -> Result<(), RemoteError>;
    /// Removes the temp files an interrupted upload to `path` left beside it.
    fn remove_stale_temps(&self, path: &str) -> Result<(), RemoteError>;
    /// Paths named `.NAME.<tag>*` directly beside `path` (leftovers of an interrupted restore),
    /// read with the node's rights (`become` included), sorted.
    fn beside(&self, path: &str, tag: &str) -> Result<Vec<String>, RemoteError>;
    /// Restores directory trees (an Acra keystore's keys and public directories) all or none:
    /// each uploaded beside its target and read back, then all swapped in, the swaps made undone
    /// when a later one fails. One request to the node helper with `become: sudo`; the
    /// primitives above otherwise ([`super::swap_trees`]).
    fn restore_trees(&self, uploads: &[TreeUpload]) -> Result<(), TreeRestoreError>;
    /// Finishes a tree restore of the keystore at `path` that was cut off between its swaps
    /// (the node helper's record of it): `forward` puts the restored trees in, else the
    /// previous ones back; returns what the node did. Only the node helper records swaps.
    fn finish_swap(&self, path: &str, forward: bool) -> Result<Vec<String>, RemoteError>;
    /// What the node itself decides about a write to `path`: with `become: sudo` its policy
    /// names the owner and loosest mode, or refuses. `None`: the node decides nothing (the
    /// plan's own rules apply: the replaced file's owner, else the recorded one).
    fn write_rule(&self, path: &str) -> Option<WriteRule>;
}

impl Node for Session {
    fn host_key_fingerprint(&self) -> &str {
        Session::host_key_fingerprint(self)
    }
    fn stat(&self, path: &str) -> Result<Option<RemoteStat>, RemoteError> {
        Session::stat(self, path)
    }
    fn lstat(&self, path: &str) -> Result<Option<RemoteStat>, RemoteError> {
        Session::lstat(self, path)
    }
    fn is_symlink(&self, path: &str) -> Result<bool, RemoteError> {
        Session::is_symlink(self, path)
    }
    fn fetch(&self, path: &str, max_size: u64) -> Result<RemoteFile, RemoteError> {
        Session::fetch(self, path, max_size)
    }
    fn list_tree(
        &self,
        root: &str,
        limits: TreeLimits,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Option<RemoteTree>, RemoteError> {
        Session::list_tree(self, root, limits, skip)
    }
    fn fetch_tree(
        &self,
        root: &str,
        limits: TreeLimits,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Option<FetchedTree>, RemoteError> {
        Session::fetch_tree(self, root, limits, skip)
    }
    fn make_dir(&self, path: &str, mode: u32) -> Result<(), RemoteError> {
        Session::make_dir(self, path, mode)
    }
    fn write_new_file(&self, path: &str, bytes: &[u8], mode: u32) -> Result<(), RemoteError> {
        Session::write_new_file(self, path, bytes, mode)
    }
    fn push(&self, path: &str, bytes: &[u8], mode: u32) -> Result<(), RemoteError> {
        Session::push(self, path, bytes, mode)
    }
    fn push_owned(
        &self,
        path: &str,
        bytes: &[u8],
        mode: u32,
        owner: Option<&str>,
    ) -> Result<(), RemoteError> {
        Session::push_owned(self, path, bytes, mode, owner)
    }
    fn owner_exists(&self, user: &str, group: &str) -> Result<bool, RemoteError> {
        Session::owner_exists(self, user, group)
    }
    fn chown_like(&self, path: &str, reference: &str) -> Result<(), RemoteError> {
        Session::chown_like(self, path, reference)
    }
    fn chown_tree(&self, path: &str, owner: &str) -> Result<(), RemoteError> {
        Session::chown_tree(self, path, owner)
    }
    fn rename_dir(&self, from: &str, to: &str) -> Result<(), RemoteError> {
        Session::rename_dir(self, from, to)
    }
    fn remove_tree(&self, path: &str) -> Result<(), RemoteError> {
        Session::remove_tree(self, path)
    }
    fn remove_stale_temps(&self, path: &str) -> Result<(), RemoteError> {
        Session::remove_stale_temps(self, path)
    }
    fn beside(&self, path: &str, tag: &str) -> Result<Vec<String>, RemoteError> {
        Session::beside(self, path, tag)
    }
    fn restore_trees(&self, uploads: &[TreeUpload]) -> Result<(), TreeRestoreError> {
        if self.helper.is_some() {
            return self.helper_restore_trees(uploads);
        }
        super::swap::swap_trees(self, uploads)
    }
    fn finish_swap(&self, path: &str, forward: bool) -> Result<Vec<String>, RemoteError> {
        if self.helper.is_some() {
            return self.helper_finish_swap(path, forward);
        }
        Err(super::swap::no_record(path))
    }
    fn write_rule(&self, path: &str) -> Option<WriteRule> {
        self.helper.as_ref().map(|_| self.helper_write_rule(path))
    }
}

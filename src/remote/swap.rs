//! Restoring directory trees (Acra keystores) on a node in one step as far as the caller can
//! tell: [`Node::restore_trees`]. Without `become`, [`swap_trees`] does it with the node's
//! primitive operations (upload into temp directories beside the targets, read back, swap in by
//! renames, undo on failure); with `become: sudo` the node helper does the same on the node in
//! one request, through fds.
//!
//! Why here and not in `ops`: the helper needs the whole operation as one request (it swaps with
//! `RENAME_EXCHANGE` and rolls back itself), so the operation is part of what a node does, and
//! the primitive version is the in-memory fake's and the plain session's implementation of it.

use super::{Node, RemoteError, TreeLimits};
pub use crate::nodehelper::proto::SwapState;
use std::collections::BTreeSet;

/// One file of a tree to restore.
pub struct UploadFile<'a> {
    /// Relative name inside the tree, `/`-separated.
    pub rel: String,
    /// Its mode.
    pub mode: u32,
    /// Its bytes.
    pub data: &'a [u8],
}

/// One directory to restore.
pub struct TreeUpload<'a> {
    /// The target directory.
    pub path: String,
    /// Its files.
    pub files: Vec<UploadFile<'a>>,
    /// A directory is there now: it is replaced, and its owner kept.
    pub replace: bool,
    /// For a new directory: `user:group` to give the tree (the owner its backup recorded). The
    /// node helper ignores it: there the node's policy decides.
    pub owner: Option<String>,
}

/// A tree restore that failed, and what state the node was left in.
#[derive(Debug, thiserror::Error)]
#[error("{cause}; {}", describe(*.state))]
pub struct TreeRestoreError {
    /// What failed (it names where a previous keystore was left, when it was).
    pub cause: String,
    /// How far it got.
    pub state: SwapState,
}

fn describe(state: SwapState) -> &'static str {
    match state {
        SwapState::NothingChanged => "nothing was changed on the node",
        SwapState::BackInPlace => "the previous keystore is back in place",
        SwapState::LeftAside => "the previous keystore was not moved back (see above)",
    }
}

/// Without the node helper nothing records a swap: an interrupted one left the previous
/// keystore at `.NAME.coldkeep-old-*` beside it, which the next restore names.
pub fn no_record(path: &str) -> RemoteError {
    RemoteError::Command {
        command: format!("finish the interrupted restore of {path}"),
        status: 1,
        stderr: "only the node helper (`become: sudo`) records a swap to finish; without it an interrupted \
                 restore leaves the previous keystore at .NAME.coldkeep-old-* beside it: move it back by hand"
            .into(),
    }
}

fn failed(cause: impl std::fmt::Display, state: SwapState) -> TreeRestoreError {
    TreeRestoreError {
        cause: cause.to_string(),
        state,
    }
}

struct Staged<'a, 'b> {
    up: &'b TreeUpload<'a>,
    temp: String,
    old: String,
}

fn beside(root: &str, suffix: &str) -> String {
    let (parent, name) = super::split_remote(root);
    format!("{}/.{name}.{suffix}", parent.trim_end_matches('/'))
}

/// The restore with a node's primitives: every tree uploaded into a temp directory beside it
/// (owned like the directory it replaces, or as recorded), read back, and only then all swapped
/// in by renames. A failure before the swaps removes the temp directories; a failed swap undoes
/// the swaps already made.
pub fn swap_trees(node: &dyn Node, uploads: &[TreeUpload]) -> Result<(), TreeRestoreError> {
    let tag = format!("{:032x}", rand::random::<u128>());
    let staged: Vec<Staged> = uploads
        .iter()
        .map(|up| Staged {
            up,
            temp: beside(&up.path, &format!("coldkeep-tmp-{tag}")),
            old: beside(&up.path, &format!("coldkeep-old-{tag}")),
        })
        .collect();
    if let Err(e) = staged.iter().try_for_each(|s| prepare(node, s)) {
        for s in &staged {
            let _ = node.remove_tree(&s.temp);
        }
        return Err(failed(e, SwapState::NothingChanged));
    }
    for (k, s) in staged.iter().enumerate() {
        if let Err((e, left_aside)) = swap(node, s) {
            let mut undone = Vec::new();
            for done in staged[..k].iter().rev() {
                undone.push(unswap(node, done));
            }
            for s in &staged[k..] {
                let _ = node.remove_tree(&s.temp);
            }
            let problems: Vec<String> = undone
                .into_iter()
                .filter_map(Result::err)
                .map(|e| e.to_string())
                .collect();
            if left_aside {
                return Err(failed(e, SwapState::LeftAside));
            }
            if !problems.is_empty() {
                return Err(failed(
                    format!("{e}; undoing failed too: {}", problems.join("; ")),
                    SwapState::LeftAside,
                ));
            }
            return Err(failed(e, SwapState::BackInPlace));
        }
    }
    for s in staged.iter().filter(|s| s.up.replace) {
        if let Err(e) = node.remove_tree(&s.old) {
            tracing::warn!(path = %s.old, "restored, but the previous keystore could not be removed: {e}");
        }
    }
    Ok(())
}

/// Uploads one tree into its temp directory and reads it back.
fn prepare(node: &dyn Node, s: &Staged) -> Result<(), RemoteError> {
    node.make_dir(&s.temp, 0o700)?;
    let mut dirs = BTreeSet::new();
    for f in &s.up.files {
        let mut at = 0;
        while let Some(i) = f.rel[at..].find('/') {
            dirs.insert(&f.rel[..at + i]);
            at += i + 1;
        }
    }
    for dir in &dirs {
        node.make_dir(&format!("{}/{dir}", s.temp), 0o700)?;
    }
    for f in &s.up.files {
        node.write_new_file(&format!("{}/{}", s.temp, f.rel), f.data, f.mode)?;
    }
    if s.up.replace {
        // Acra checks modes, and runs as whoever owns its keys: keep the owner.
        node.chown_like(&s.temp, &s.up.path)?;
    } else if let Some(owner) = &s.up.owner {
        node.chown_tree(&s.temp, owner)?;
    }
    if !tree_holds(node, &s.temp, &s.up.files)? {
        return Err(RemoteError::ReadBackMismatch {
            path: s.temp.clone(),
            expected: "the backup's files".into(),
            got: "other files".into(),
        });
    }
    Ok(())
}

/// Whether the tree at `dir` holds exactly `files` (names and SHA-256).
fn tree_holds(node: &dyn Node, dir: &str, files: &[UploadFile]) -> Result<bool, RemoteError> {
    let limits = TreeLimits {
        max_files: files.len() as u64 * 2 + 1,
        max_size: files.iter().map(|f| f.data.len() as u64).sum::<u64>() + 1,
    };
    let live = match node.fetch_tree(dir, limits, &|_| false) {
        Ok(Some(tree)) => tree,
        Ok(None) | Err(RemoteError::TreeTooLarge { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    let live: BTreeSet<(String, String)> = live
        .files
        .iter()
        .map(|(e, data)| (e.rel.clone(), crate::digest::sha256_hex(data)))
        .collect();
    let wanted: BTreeSet<(String, String)> = files
        .iter()
        .map(|f| (f.rel.clone(), crate::digest::sha256_hex(f.data)))
        .collect();
    Ok(live == wanted)
}

/// Swaps one tree in. `Err((e, true))`: moving the previous tree back failed too.
fn swap(node: &dyn Node, s: &Staged) -> Result<(), (String, bool)> {
    if !s.up.replace {
        return node
            .rename_dir(&s.temp, &s.up.path)
            .map_err(|e| (e.to_string(), false));
    }
    node.rename_dir(&s.up.path, &s.old)
        .map_err(|e| (e.to_string(), false))?;
    if let Err(e) = node.rename_dir(&s.temp, &s.up.path) {
        return match node.rename_dir(&s.old, &s.up.path) {
            Ok(()) => Err((e.to_string(), false)),
            Err(back) => Err((
                format!(
                    "{e}; moving the previous keystore back also failed ({back}): it is at {} on the node",
                    s.old
                ),
                true,
            )),
        };
    }
    Ok(())
}

/// Undoes a completed [`swap`].
fn unswap(node: &dyn Node, s: &Staged) -> Result<(), RemoteError> {
    node.rename_dir(&s.up.path, &s.temp)?;
    if s.up.replace {
        node.rename_dir(&s.old, &s.up.path)?;
    }
    let _ = node.remove_tree(&s.temp);
    Ok(())
}

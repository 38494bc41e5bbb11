//! The record of an Acra tree restore, and finishing one from it (see [`super::trees`]).
//!
//! Why a record: the SSH user can end the helper through sudo at any moment, also between the
//! swaps of a keystore's two directories, which would leave it half swapped with nothing to say
//! so. The record, in the helper's root-only state directory, names each directory's temp
//! container and the inodes of its new and previous trees; from it a half-swapped keystore is
//! refused by reads and restores and finished one way or the other ([`finish_swap`]), and the
//! containers of an interrupted restore are removed.

use super::proto::ErrorKind;
use super::resolve::{FsError, errno, fail, lstat_at, open_file_at};
use super::sweep::{Removal, remove_tree};
use super::write::{Rename, Want, flag_unsupported, write_all};
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;

/// The new tree's name inside its container.
pub const TREE: &str = "tree";
/// Where the previous tree goes inside the container when two renames replace an exchange.
pub const PREV: &str = "prev";
/// A spare name inside the container (finishing a swap without an exchange).
pub const SPARE: &str = "spare";

/// A (device, inode) pair: which directory, whatever its name now.
pub type Ino = (u64, u64);

/// Where a recorded restore is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Containers being made and filled; every target untouched.
    Staging,
    /// Swaps being made: the keystore may be half swapped.
    Swapping,
    /// Every swap made; the containers (holding the previous trees) are being removed.
    Cleaning,
}

/// One directory of a recorded restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootRecord {
    /// The target's path.
    pub path: String,
    /// The container's name in the target's parent.
    pub container: String,
    /// The container, once made and checked.
    pub boxed: Option<Ino>,
    /// The new tree (from `swapping` on).
    pub new: Option<Ino>,
    /// The tree it replaces, if one was there.
    pub previous: Option<Ino>,
}

/// The record of a tree restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapRecord {
    /// How far it got.
    pub phase: Phase,
    /// Its directories, in swap order.
    pub roots: Vec<RootRecord>,
}

/// The file that records a keystore's tree restore, in a directory only root may write (the
/// helper's state directory): each version written to a temp file, `fsync`ed, renamed over the
/// record and the directory `fsync`ed, so a reader sees one whole version or none.
pub struct Journal {
    dir: OwnedFd,
    name: String,
    shown: String,
}

impl Journal {
    /// The record of `keystore`'s restores in `dir` (shown as `shown` in messages).
    pub fn new(dir: OwnedFd, keystore: &str, shown: &str) -> Journal {
        Journal {
            dir,
            name: format!("swap-{keystore}"),
            shown: format!("{shown}/swap-{keystore}"),
        }
    }

    /// The record, if one exists.
    pub fn read(&self) -> Result<Option<SwapRecord>, FsError> {
        let (fd, st) = match open_file_at(&self.dir, &self.name, &self.shown, None) {
            Ok(found) => found,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if st.st_uid != rustix::process::geteuid().as_raw() {
            return Err(fail(ErrorKind::Unsafe, format!("{} is not root's", self.shown)));
        }
        let text = super::read::read_all(&fd, st.st_size as u64, 1 << 20, &self.shown)?;
        serde_json::from_slice(&text).map(Some).map_err(|e| {
            fail(
                ErrorKind::Failed,
                format!("{} is damaged ({e}): remove it", self.shown),
            )
        })
    }

    /// Writes `record` (replacing the one there).
    pub fn write(&self, record: &SwapRecord) -> Result<(), FsError> {
        let text = serde_json::to_vec(record).map_err(|e| fail(ErrorKind::Failed, e.to_string()))?;
        let temp = format!(".{}.new", self.name);
        let _ = rustix::fs::unlinkat(&self.dir, temp.as_str(), AtFlags::empty());
        let fd = rustix::fs::openat(
            &self.dir,
            temp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| errno(e, &self.shown))?;
        write_all(&fd, &text, &self.shown)?;
        rustix::fs::fsync(&fd).map_err(|e| errno(e, &self.shown))?;
        rustix::fs::renameat(&self.dir, temp.as_str(), &self.dir, self.name.as_str())
            .map_err(|e| errno(e, &self.shown))?;
        rustix::fs::fsync(&self.dir).map_err(|e| errno(e, &self.shown))
    }

    /// Removes the record.
    pub fn remove(&self) -> Result<(), FsError> {
        match rustix::fs::unlinkat(&self.dir, self.name.as_str(), AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(errno(e, &self.shown)),
        }
        rustix::fs::fsync(&self.dir).map_err(|e| errno(e, &self.shown))
    }
}

/// `fsync` of a directory fd.
pub fn fsync_dir(fd: &OwnedFd, path: &str) -> Result<(), FsError> {
    rustix::fs::fsync(fd).map_err(|e| errno(e, path))
}

/// The (device, inode) of a `stat`.
pub fn ino_of(st: &rustix::fs::Stat) -> Ino {
    (st.st_dev, st.st_ino)
}

/// Removes a container: one whose inode was recorded (and that the name still holds) with
/// what is in it (entries of root or of the keystore's owner); one never recorded only if it
/// is empty. Notes say what was left.
fn remove_container(parent: &OwnedFd, name: &str, path: &str, boxed: Option<Ino>, owner: u32) -> Vec<String> {
    let shown = format!("{path} (its restore's temp directory {name})");
    match boxed {
        Some(expect) => {
            let owners = [rustix::process::geteuid().as_raw(), owner];
            let removal = Removal {
                expect,
                owners: &owners,
            };
            match remove_tree(parent, name, &shown, &removal) {
                Ok(notes) => notes,
                Err(e) if e.kind == ErrorKind::NotFound => Vec::new(),
                Err(e) => vec![format!("left {shown}: {}", e.message)],
            }
        }
        None => {
            let _ = rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR);
            Vec::new()
        }
    }
}

/// Removes the containers `record` names (with the parents, in its order), what is in them the
/// keystore's owner's or root's; notes for what was left.
pub fn clean_up(parents: &[&OwnedFd], record: &SwapRecord, want: Want) -> Vec<String> {
    let mut notes = Vec::new();
    for (parent, r) in parents.iter().zip(&record.roots) {
        notes.extend(remove_container(parent, &r.container, &r.path, r.boxed, want.uid));
        let _ = fsync_dir(parent, &r.path);
    }
    notes
}

/// Finishes what `record` says, with the parents of its roots (opened by the resolver, in its
/// order): a `swapping` record's swaps are completed one way or the other (`forward`: every
/// target holds its new tree; else every target its previous tree, or nothing where there was
/// none), from the inodes recorded, wherever the trees are now (the target's name or the
/// container's); then, in every phase, the containers are removed and the record with them.
pub fn finish_swap(
    record: SwapRecord,
    parents: &[(OwnedFd, String)],
    forward: bool,
    want: Want,
    ren: &mut dyn Rename,
    journal: &Journal,
) -> Result<Vec<String>, FsError> {
    let mut record = record;
    if record.phase == Phase::Swapping {
        for ((parent, name), r) in parents.iter().zip(&record.roots) {
            let target = if forward { r.new } else { r.previous };
            settle(parent, name, r, target, ren)?;
            fsync_dir(parent, &r.path)?;
        }
        record.phase = Phase::Cleaning;
        journal.write(&record)?;
    }
    let fds: Vec<&OwnedFd> = parents.iter().map(|(p, _)| p).collect();
    let notes = clean_up(&fds, &record, want);
    if notes.is_empty() {
        journal.remove()?;
    }
    Ok(notes)
}

/// Puts the tree `target` (or nothing) at `name` in `parent`, taking it from the container.
fn settle(
    parent: &OwnedFd,
    name: &str,
    r: &RootRecord,
    target: Option<Ino>,
    ren: &mut dyn Rename,
) -> Result<(), FsError> {
    let path = r.path.as_str();
    let lost = |what: &str| {
        fail(
            ErrorKind::Failed,
            format!(
                "{path}: the {what} is neither at {path} nor in {} any more (moved by hand?): put it back, then \
                 remove the helper's record of the swap",
                r.container
            ),
        )
    };
    let boxed = rustix::fs::openat(
        parent,
        r.container.as_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| errno(e, path))?;
    let box_st = rustix::fs::fstat(&boxed).map_err(|e| errno(e, path))?;
    if Some(ino_of(&box_st)) != r.boxed {
        return Err(lost("restore's temp directory"));
    }
    let at = |dir: &OwnedFd, n: &str| lstat_at(dir, n, path).map(|st| st.as_ref().map(ino_of));
    let here = at(parent, name)?;
    if here == target {
        return Ok(());
    }
    let free = [TREE, PREV, SPARE]
        .into_iter()
        .find(|n| matches!(at(&boxed, n), Ok(None)))
        .ok_or_else(|| lost("room"))?;
    let e = |x| errno(x, path);
    match target {
        Some(t) => {
            let from = [TREE, PREV, SPARE]
                .into_iter()
                .find(|n| matches!(at(&boxed, n), Ok(Some(i)) if i == t))
                .ok_or_else(|| lost("tree it needs"))?;
            if here.is_none() {
                ren.rename(&boxed, from, parent, name, RenameFlags::NOREPLACE)
                    .or_else(|x| {
                        if flag_unsupported(x) {
                            ren.rename(&boxed, from, parent, name, RenameFlags::empty())
                        } else {
                            Err(x)
                        }
                    })
                    .map_err(e)?;
            } else {
                match ren.rename(&boxed, from, parent, name, RenameFlags::EXCHANGE) {
                    Ok(()) => {}
                    Err(x) if flag_unsupported(x) => {
                        ren.rename(parent, name, &boxed, free, RenameFlags::empty())
                            .map_err(e)?;
                        ren.rename(&boxed, from, parent, name, RenameFlags::empty())
                            .map_err(e)?;
                    }
                    Err(x) => return Err(e(x)),
                }
            }
        }
        None => ren
            .rename(parent, name, &boxed, free, RenameFlags::empty())
            .map_err(e)?,
    }
    if at(parent, name)? != target {
        return Err(fail(
            ErrorKind::Unsafe,
            format!("{path}: the name was swapped while the restore was finished"),
        ));
    }
    Ok(())
}

/// What a `swapping` record means for the operator: which directory holds which tree now.
pub fn describe(record: &SwapRecord, parents: &[Option<(OwnedFd, String)>]) -> String {
    record
        .roots
        .iter()
        .zip(parents)
        .map(|(r, p)| {
            let now = p
                .as_ref()
                .and_then(|(dir, name)| lstat_at(dir, name, &r.path).ok().flatten())
                .map(|st| ino_of(&st));
            let what = if now.is_some() && now == r.new {
                "the restored tree"
            } else if now == r.previous {
                "the previous tree"
            } else {
                "neither tree"
            };
            format!("{}: {what}", r.path)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

//! Restoring an Acra keystore's directories at once: build each tree beside its target, read it
//! back, swap all of them in, and undo the swaps made if a later one fails.
//!
//! Each new tree is built inside a *container*: `.NAME.coldkeep-tmp-<random>`, made with
//! `mkdirat` 0700 in the target's parent, opened, and accepted only as a fresh directory of
//! root's (owner the helper, mode exactly 0700, two links, empty, on the parent's device): the
//! parent may belong to the keystore's service user, who could have renamed another directory
//! of root's to that name between the `mkdirat` and the open, and whose directory must then never
//! be filled, given away or published. Inside the container (root's, 0700: nobody else can
//! reach a name in it) the tree is made at `tree` and, below it, directories `mkdirat` +
//! `O_NOFOLLOW|O_DIRECTORY` (checked the same way) and files `O_CREAT|O_EXCL|O_NOFOLLOW`, each
//! `fsync`ed, `fchown` then `fchmod` on the fd (files never looser than the policy, directories
//! 0700), read back through fresh fds. Then, root by root, `renameat2(RENAME_EXCHANGE)` swaps
//! `tree` with the target in one step (a missing target: `RENAME_NOREPLACE`), so the previous
//! tree lands inside the container, never at a name in the parent; the target's name is checked
//! to hold the tree built. Where the filesystem has no exchange, two renames do it (the target
//! to the container's `prev`, then `tree` to the target), and a failed second one moves the
//! previous tree back. A failure undoes every swap already made. Only after all swaps are in do
//! the previous trees go (through the container's fd).
//!
//! A *record* of the restore ([`Journal`], in the helper's root-only state directory) makes an
//! interruption (the SSH user can SIGTERM the helper through sudo at any moment) visible and
//! finishable: written before the first container is made (their names), updated with each
//! container's inode, then with both trees' inodes before the first swap (`swapping`), and after
//! the last swap (`cleaning`); removed when the containers are gone. While it says `swapping`
//! the keystore may be half swapped: reads and restores of it are refused, and
//! [`finish_swap`] puts the previous trees back or the new ones in, from the inodes recorded.
//! In the other phases nothing is half done and the next restore removes the containers the
//! record names (only a container still holding its recorded inode is emptied; one never
//! recorded is only `rmdir`ed, which cannot remove a directory with anything in it).

use super::proto::{ErrorKind, SwapState};
use super::resolve::{FsError, errno, fail, kind_of, lstat_at, open_file_at};
use super::sweep::{Removal, names_with_prefix, old_prefix, remove_tree, tag, temp_prefix};
use super::write::{Rename, Want, flag_unsupported, own_and_mode, write_all};
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use zeroize::Zeroizing;

/// The new tree's name inside its container.
const TREE: &str = "tree";
/// Where the previous tree goes inside the container when two renames replace an exchange.
const PREV: &str = "prev";
/// A spare name inside the container (finishing a swap without an exchange).
const SPARE: &str = "spare";

/// A (device, inode) pair: which directory, whatever its name now.
pub type Ino = (u64, u64);

/// One directory to restore.
pub struct RootJob {
    /// Its parent directory, opened by the resolver.
    pub parent: OwnedFd,
    /// Its name in the parent.
    pub name: String,
    /// Its path, for messages.
    pub path: String,
    /// Whether a directory is there now (else none may be).
    pub replace: bool,
    /// Its files: relative name, mode, bytes.
    pub files: Vec<(String, u32, Zeroizing<Vec<u8>>)>,
}

/// A failed restore and how far it got.
#[derive(Debug)]
pub struct TreeFailure {
    /// What failed.
    pub error: FsError,
    /// What state the node is in.
    pub state: SwapState,
}

fn nothing_changed(error: FsError) -> TreeFailure {
    TreeFailure {
        error,
        state: SwapState::NothingChanged,
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Published {
    No,
    Created,
    Exchanged,
    /// Two renames: the previous tree is at the container's [`PREV`].
    Moved,
}

struct Staged {
    job: RootJob,
    /// The container's name in the parent, its fd and inode.
    container: String,
    boxed: OwnedFd,
    box_ino: Ino,
    /// The new tree's root.
    ino: Ino,
    /// The directory it replaces, checked owned by the policy's owner.
    previous: Option<Ino>,
    published: Published,
    /// A rename of this root happened (even if it was undone).
    renamed: bool,
}

fn fsync_dir(fd: &OwnedFd, path: &str) -> Result<(), FsError> {
    rustix::fs::fsync(fd).map_err(|e| errno(e, path))
}

fn ino_of(st: &rustix::fs::Stat) -> Ino {
    (st.st_dev, st.st_ino)
}

/// Makes the directory `name` in `parent` and opens it, accepting only what `mkdirat` just
/// made: a directory of the helper's (root's), mode exactly 0700, two links (nothing below it),
/// empty, on `dev`. Whatever sits at the name by the time it is opened is checked on the fd, so
/// a directory of root's renamed there in between (by whoever may write `parent`) is refused,
/// never filled.
fn make_private_dir(parent: &OwnedFd, name: &str, path: &str, dev: u64) -> Result<OwnedFd, FsError> {
    make_private_dir_pausing(parent, name, path, dev, None)
}

fn make_private_dir_pausing(
    parent: &OwnedFd,
    name: &str,
    path: &str,
    dev: u64,
    pause: Option<&str>,
) -> Result<OwnedFd, FsError> {
    rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)).map_err(|e| errno(e, path))?;
    if let Some(step) = pause {
        super::state::pause(step);
    }
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| errno(e, path))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| errno(e, path))?;
    let mut empty = true;
    for entry in rustix::fs::Dir::read_from(&fd).map_err(|e| errno(e, path))? {
        let raw = entry.map_err(|e| errno(e, path))?.file_name().to_bytes().to_vec();
        if raw != b"." && raw != b".." {
            empty = false;
            break;
        }
    }
    let fresh = kind_of(&st) == super::proto::EntryKind::Dir
        && st.st_uid == rustix::process::geteuid().as_raw()
        && st.st_mode & 0o7777 == 0o700
        && st.st_nlink == 2
        && st.st_dev == dev
        && empty;
    if fresh {
        // Nothing made in it inherits a default ACL of the parent's.
        super::write::strip_acls(&fd, path)?;
    } else {
        return Err(fail(
            ErrorKind::Unsafe,
            format!(
                "{path}: the directory made for the restore was swapped for another (by someone who may write \
                 its parent); nothing was written into it"
            ),
        ));
    }
    Ok(fd)
}

/// Checks what is at the target now against the plan, and that no interrupted swap of an
/// older helper is beside it. Returns the parent's device and the previous tree.
fn check_target(job: &RootJob, want: Want) -> Result<(u64, Option<Ino>), FsError> {
    let path = &job.path;
    let dev = rustix::fs::fstat(&job.parent).map_err(|e| errno(e, path))?.st_dev;
    let left = names_with_prefix(&job.parent, &old_prefix(&job.name), path)?;
    if !left.is_empty() {
        return Err(fail(
            ErrorKind::Unsafe,
            format!(
                "an earlier restore was interrupted and left the previous keystore beside {path} ({}); check \
                 it, move it back or remove it, then restore again",
                left.join(", ")
            ),
        ));
    }
    let previous = match (lstat_at(&job.parent, &job.name, path)?, job.replace) {
        (Some(st), true) => {
            if kind_of(&st) != super::proto::EntryKind::Dir {
                return Err(fail(
                    ErrorKind::Unsafe,
                    format!("{path} is not a directory (a link is never replaced)"),
                ));
            }
            if (st.st_uid, st.st_gid) != (want.uid, want.gid) {
                return Err(fail(
                    ErrorKind::NotAllowed,
                    format!(
                        "{path} belongs to uid {} gid {}, not to the policy's owner (uid {} gid {}): nothing was \
                         written. If that owner is right, chown the directory or fix `owner` in the node's policy",
                        st.st_uid, st.st_gid, want.uid, want.gid
                    ),
                ));
            }
            Some(ino_of(&st))
        }
        (None, false) => None,
        (Some(_), false) => {
            return Err(fail(
                ErrorKind::Unsafe,
                format!("{path} appeared since the restore was planned"),
            ));
        }
        (None, true) => {
            return Err(fail(
                ErrorKind::NotFound,
                format!("{path} disappeared since the restore was planned"),
            ));
        }
    };
    Ok((dev, previous))
}

/// Makes one root's container (recorded as soon as it is checked).
fn make_container(job: &RootJob, container: &str, dev: u64) -> Result<(OwnedFd, Ino), FsError> {
    let shown = format!("{} (its restore's temp directory)", job.path);
    let boxed = make_private_dir_pausing(&job.parent, container, &shown, dev, Some("trees-container"))?;
    let st = rustix::fs::fstat(&boxed).map_err(|e| errno(e, &shown))?;
    Ok((boxed, ino_of(&st)))
}

/// Builds one tree in its container and reads it back; returns the tree's inode.
fn build(job: &RootJob, boxed: &OwnedFd, want: Want, dev: u64) -> Result<Ino, FsError> {
    let path = job.path.as_str();
    let staged_path = |rel: &str| format!("{path} (new, {rel})");
    let root = make_private_dir(boxed, TREE, &staged_path(""), dev)?;
    let root_st = rustix::fs::fstat(&root).map_err(|e| errno(e, path))?;
    let mut dirs: BTreeMap<String, OwnedFd> = BTreeMap::new();
    dirs.insert(String::new(), root);
    for (rel, mode, bytes) in &job.files {
        let (dir_rel, leaf) = rel.rsplit_once('/').unwrap_or(("", rel));
        let mut at = String::new();
        for comp in dir_rel.split('/').filter(|c| !c.is_empty()) {
            let parent_rel = at.clone();
            at = if at.is_empty() {
                comp.to_string()
            } else {
                format!("{at}/{comp}")
            };
            if !dirs.contains_key(&at) {
                let fd = make_private_dir(&dirs[&parent_rel], comp, &staged_path(&at), dev)?;
                dirs.insert(at.clone(), fd);
            }
        }
        let fd = rustix::fs::openat(
            &dirs[dir_rel],
            leaf,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| errno(e, &staged_path(rel)))?;
        write_all(&fd, bytes, &staged_path(rel))?;
        rustix::fs::fsync(&fd).map_err(|e| errno(e, &staged_path(rel)))?;
        let file_want = Want {
            mode: mode & want.mode & 0o777,
            ..want
        };
        own_and_mode(&fd, file_want, Some(bytes.len() as u64), &staged_path(rel))?;
    }
    // Directories deepest first: owner, 0700, fsync.
    for (rel, fd) in dirs.iter().rev() {
        own_and_mode(fd, Want { mode: 0o700, ..want }, None, &staged_path(rel))?;
        fsync_dir(fd, &staged_path(rel))?;
    }
    // Read back through fresh fds.
    for (rel, _, bytes) in &job.files {
        let (dir_rel, leaf) = rel.rsplit_once('/').unwrap_or(("", rel));
        let (fd, st) = open_file_at(&dirs[dir_rel], leaf, &staged_path(rel), Some(dev))?;
        let got = super::read::read_all(&fd, st.st_size as u64, bytes.len() as u64, &staged_path(rel))?;
        if crate::digest::sha256_hex(&got) != crate::digest::sha256_hex(bytes) {
            return Err(fail(
                ErrorKind::ReadBack,
                format!("{}: read back does not match", staged_path(rel)),
            ));
        }
    }
    fsync_dir(boxed, path)?;
    fsync_dir(&job.parent, path)?;
    Ok(ino_of(&root_st))
}

/// Puts one staged tree under its name. `Err((error, left_aside))`: `left_aside` when the
/// previous tree could not be moved back (two-rename path).
fn publish(s: &mut Staged, ren: &mut dyn Rename) -> Result<(), (FsError, bool)> {
    let (dir, name, path) = (&s.job.parent, s.job.name.as_str(), s.job.path.as_str());
    let boxed = &s.boxed;
    let e = |x| (errno(x, path), false);
    if s.job.replace {
        match ren.rename(boxed, TREE, dir, name, RenameFlags::EXCHANGE) {
            Ok(()) => s.published = Published::Exchanged,
            Err(x) if flag_unsupported(x) => {
                ren.rename(dir, name, boxed, PREV, RenameFlags::empty())
                    .map_err(e)?;
                s.renamed = true;
                if let Err(x) = ren.rename(boxed, TREE, dir, name, RenameFlags::empty()) {
                    return match ren.rename(boxed, PREV, dir, name, RenameFlags::empty()) {
                        Ok(()) => Err(e(x)),
                        Err(back) => Err((
                            fail(
                                ErrorKind::Failed,
                                format!(
                                    "{path}: {}; moving the previous keystore back also failed ({back}): it is in {}/{}/{PREV}",
                                    errno(x, path).message,
                                    super::resolve::split(path).map(|(d, _)| d).unwrap_or(""),
                                    s.container
                                ),
                            ),
                            true,
                        )),
                    };
                }
                s.published = Published::Moved;
            }
            Err(x) => return Err(e(x)),
        }
    } else {
        match ren.rename(boxed, TREE, dir, name, RenameFlags::NOREPLACE) {
            Ok(()) => {}
            Err(x) if flag_unsupported(x) => {
                if lstat_at(dir, name, path).map_err(|x| (x, false))?.is_some() {
                    return Err((
                        fail(ErrorKind::Unsafe, format!("{path} appeared during the restore")),
                        false,
                    ));
                }
                ren.rename(boxed, TREE, dir, name, RenameFlags::empty())
                    .map_err(e)?;
            }
            Err(x) => return Err(e(x)),
        }
        s.published = Published::Created;
    }
    let now = lstat_at(dir, name, path).map_err(|x| (x, false))?;
    if now.as_ref().map(ino_of) != Some(s.ino) {
        let message =
            format!("{path}: the new tree was swapped by someone who may write there; the swap was undone");
        let undone = undo(s, ren).is_ok();
        return Err((fail(ErrorKind::Unsafe, message), !undone));
    }
    Ok(())
}

/// Undoes a published tree (the previous one back under its name).
fn undo(s: &mut Staged, ren: &mut dyn Rename) -> Result<(), String> {
    let (dir, name, boxed) = (&s.job.parent, s.job.name.as_str(), &s.boxed);
    let r = match s.published {
        Published::No => Ok(()),
        Published::Exchanged => ren.rename(boxed, TREE, dir, name, RenameFlags::EXCHANGE),
        Published::Created => ren.rename(dir, name, boxed, TREE, RenameFlags::empty()),
        Published::Moved => ren
            .rename(dir, name, boxed, TREE, RenameFlags::empty())
            .and_then(|()| ren.rename(boxed, PREV, dir, name, RenameFlags::empty())),
    };
    r.map_err(|e| format!("{}: {e}", s.job.path))?;
    s.published = Published::No;
    Ok(())
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

/// What a restore's record says a directory is, for messages.
fn record_of(s: &Staged) -> RootRecord {
    RootRecord {
        path: s.job.path.clone(),
        container: s.container.clone(),
        boxed: Some(s.box_ino),
        new: Some(s.ino),
        previous: s.previous,
    }
}

/// Restores every root, or none. Returns notes (what could not be removed afterwards).
pub fn restore_trees(
    jobs: Vec<RootJob>,
    want: Want,
    ren: &mut dyn Rename,
    journal: &Journal,
) -> Result<Vec<String>, TreeFailure> {
    // Every target checked before anything is made.
    let mut checked = Vec::new();
    for job in &jobs {
        checked.push(check_target(job, want).map_err(nothing_changed)?);
    }
    let t = tag();
    let mut record = SwapRecord {
        phase: Phase::Staging,
        roots: jobs
            .iter()
            .map(|j| RootRecord {
                path: j.path.clone(),
                container: format!("{}{t}", temp_prefix(&j.name)),
                boxed: None,
                new: None,
                previous: None,
            })
            .collect(),
    };
    journal.write(&record).map_err(nothing_changed)?;
    let mut staged: Vec<Staged> = Vec::new();
    let mut jobs = jobs.into_iter();
    for (i, (dev, previous)) in checked.into_iter().enumerate() {
        let job = jobs.next().expect("one check per job");
        let container = record.roots[i].container.clone();
        let made = make_container(&job, &container, dev).and_then(|(boxed, box_ino)| {
            record.roots[i].boxed = Some(box_ino);
            journal.write(&record)?;
            Ok((boxed, box_ino))
        });
        let built = made.and_then(|(boxed, box_ino)| {
            let ino = build(&job, &boxed, want, dev)?;
            Ok((boxed, box_ino, ino))
        });
        match built {
            Ok((boxed, box_ino, ino)) => staged.push(Staged {
                job,
                container,
                boxed,
                box_ino,
                ino,
                previous,
                published: Published::No,
                renamed: false,
            }),
            Err(error) => {
                let _ = clean_up(&jobs_parents(&staged, Some(&job)), &record, want);
                let _ = journal.remove();
                return Err(nothing_changed(error));
            }
        }
    }
    super::state::pause("trees-staged");
    record = SwapRecord {
        phase: Phase::Swapping,
        roots: staged.iter().map(record_of).collect(),
    };
    if let Err(error) = journal.write(&record) {
        let _ = clean_up(&jobs_parents(&staged, None), &record, want);
        let _ = journal.remove();
        return Err(nothing_changed(error));
    }
    super::state::pause("trees-marked");
    for k in 0..staged.len() {
        if k > 0 {
            super::state::pause(&format!("trees-swapped-{k}"));
        }
        if let Err((error, left_aside)) = publish(&mut staged[k], ren) {
            let mut problems = Vec::new();
            for s in staged[..k].iter_mut().rev() {
                if let Err(p) = undo(s, ren) {
                    problems.push(p);
                }
            }
            let renamed = k > 0 || left_aside || staged[k].renamed || staged[k].published != Published::No;
            let state = if left_aside || !problems.is_empty() {
                SwapState::LeftAside
            } else if renamed {
                SwapState::BackInPlace
            } else {
                SwapState::NothingChanged
            };
            let mut message = error.message;
            if !problems.is_empty() {
                message.push_str(&format!("; undoing failed too: {}", problems.join("; ")));
            }
            if state != SwapState::LeftAside {
                // Every target holds its previous tree again: nothing is half swapped.
                record.phase = Phase::Staging;
                let _ = journal.write(&record);
                let _ = clean_up(&jobs_parents(&staged, None), &record, want);
                let _ = journal.remove();
            }
            return Err(TreeFailure {
                error: fail(error.kind, message),
                state,
            });
        }
    }
    for s in &staged {
        let _ = fsync_dir(&s.job.parent, &s.job.path);
    }
    super::state::pause("trees-published");
    record.phase = Phase::Cleaning;
    let mut notes = Vec::new();
    if let Err(e) = journal.write(&record) {
        notes.push(format!(
            "restored, but its record could not be updated: {}",
            e.message
        ));
    }
    super::state::pause("trees-cleaning");
    notes.extend(clean_up(&jobs_parents(&staged, None), &record, want));
    if notes.is_empty() {
        let _ = journal.remove();
    }
    Ok(notes)
}

/// The parents of the staged roots (and of the one that failed staging).
fn jobs_parents<'a>(staged: &'a [Staged], failed: Option<&'a RootJob>) -> Vec<&'a OwnedFd> {
    staged
        .iter()
        .map(|s| &s.job.parent)
        .chain(failed.map(|j| &j.parent))
        .collect()
}

/// Removes the containers `record` names (with the parents, in its order), what is in them the
/// keystore's owner's or root's; notes for what was left.
fn clean_up(parents: &[&OwnedFd], record: &SwapRecord, want: Want) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodehelper::resolve::Resolver;
    use crate::nodehelper::write::Kernel;
    use rustix::io::Errno;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    struct Failing {
        n: usize,
        fail: Vec<(usize, Errno)>,
        exchange: bool,
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
            if !self.exchange && flags.contains(RenameFlags::EXCHANGE) {
                return Err(Errno::INVAL);
            }
            self.n += 1;
            if let Some((_, e)) = self.fail.iter().find(|(k, _)| *k == self.n) {
                return Err(*e);
            }
            Kernel.rename(from_dir, from, to_dir, to, flags)
        }
    }

    /// A record kept in a directory of the test's own (the helper keeps it in its state
    /// directory).
    fn journal(state: &Path) -> Journal {
        let dir = Resolver::new()
            .unwrap()
            .open_dir(&state.display().to_string())
            .unwrap();
        Journal::new(dir, "acra", "state")
    }

    fn restore(
        jobs: Vec<RootJob>,
        want: Want,
        ren: &mut dyn Rename,
        state: &Path,
    ) -> Result<Vec<String>, TreeFailure> {
        restore_trees(jobs, want, ren, &journal(state))
    }

    fn me() -> Want {
        Want {
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            mode: 0o644,
        }
    }

    /// A tree's entries: relative name, bytes (empty for directories), mode.
    type Listing = Vec<(String, Vec<u8>, u32)>;

    fn tree(p: &Path) -> Listing {
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(p).min_depth(1).sort_by_file_name() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(p).unwrap().display().to_string();
            let mode = e.metadata().unwrap().permissions().mode() & 0o777;
            let bytes = if e.file_type().is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            out.push((rel, bytes, mode));
        }
        out
    }

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    fn job(base: &Path, name: &str, replace: bool, files: &[(&str, u32, &[u8])]) -> RootJob {
        RootJob {
            parent: Resolver::new()
                .unwrap()
                .open_dir(&base.display().to_string())
                .unwrap(),
            name: name.into(),
            path: format!("{}/{name}", base.display()),
            replace,
            files: files
                .iter()
                .map(|(r, m, b)| (r.to_string(), *m, Zeroizing::new(b.to_vec())))
                .collect(),
        }
    }

    fn two_roots() -> (tempfile::TempDir, Listing, Listing) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("state")).unwrap();
        for (d, f) in [("keys", "old_key"), ("public", "old.pub")] {
            std::fs::create_dir(tmp.path().join(d)).unwrap();
            std::fs::set_permissions(tmp.path().join(d), std::fs::Permissions::from_mode(0o700)).unwrap();
            std::fs::write(tmp.path().join(d).join(f), b"old").unwrap();
        }
        let (k, p) = (tree(&tmp.path().join("keys")), tree(&tmp.path().join("public")));
        (tmp, k, p)
    }

    fn new_jobs(base: &Path) -> Vec<RootJob> {
        vec![
            job(
                base,
                "keys",
                true,
                &[
                    ("client/A/storage.keyring", 0o600, b"ring"),
                    ("A_hmac", 0o600, b"h"),
                ],
            ),
            job(base, "public", true, &[("A.pub", 0o644, b"pub")]),
        ]
    }

    #[test]
    fn trees_are_created_or_swapped_in_with_modes_and_no_leftovers() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let state = tempfile::tempdir().unwrap();
        let jobs = vec![job(
            base,
            "keys",
            false,
            &[
                ("client/A/storage.keyring", 0o600, b"ring"),
                ("version", 0o644, b"v2"),
            ],
        )];
        restore(jobs, me(), &mut Kernel, state.path()).unwrap();
        assert_eq!(
            tree(&base.join("keys")),
            [
                ("client".to_string(), vec![], 0o700),
                ("client/A".to_string(), vec![], 0o700),
                ("client/A/storage.keyring".to_string(), b"ring".to_vec(), 0o600),
                ("version".to_string(), b"v2".to_vec(), 0o644),
            ]
        );
        let (tmp, _, _) = two_roots();
        let st = tmp.path().join("state");
        let notes = restore(new_jobs(tmp.path()), me(), &mut Kernel, &st).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert!(journal(&st).read().unwrap().is_none(), "the record is gone");
        assert_eq!(
            tree(&tmp.path().join("public")),
            [("A.pub".to_string(), b"pub".to_vec(), 0o644)]
        );
        assert_eq!(
            names(tmp.path()),
            ["keys", "public", "state"],
            "the old trees are gone"
        );
        // A mode looser than the policy's is narrowed to it.
        let tight = Want { mode: 0o600, ..me() };
        restore(
            vec![job(tmp.path(), "public", true, &[("A.pub", 0o644, b"pub")])],
            tight,
            &mut Kernel,
            &st,
        )
        .unwrap();
        assert_eq!(tree(&tmp.path().join("public"))[0].2, 0o600);
    }

    #[test]
    fn the_second_swap_failing_undoes_the_first() {
        let (tmp, keys, public) = two_roots();
        let mut ren = Failing {
            n: 0,
            fail: vec![(2, Errno::IO)],
            exchange: true,
        };
        let st = tmp.path().join("state");
        let e = restore(new_jobs(tmp.path()), me(), &mut ren, &st).unwrap_err();
        assert_eq!(e.state, SwapState::BackInPlace, "{e:?}");
        assert_eq!(ren.n, 3, "keys swapped, public failed, keys swapped back");
        assert_eq!(
            (tree(&tmp.path().join("keys")), tree(&tmp.path().join("public"))),
            (keys, public)
        );
        assert_eq!(names(tmp.path()), ["keys", "public", "state"], "temps removed");
        assert!(journal(&st).read().unwrap().is_none(), "the record is gone");
    }

    #[test]
    fn without_exchange_a_failed_second_rename_moves_the_old_tree_back() {
        let (tmp, keys, public) = two_roots();
        // keys: keys -> old (1), temp -> keys (2 fails), old -> keys (3).
        let mut ren = Failing {
            n: 0,
            fail: vec![(2, Errno::IO)],
            exchange: false,
        };
        let st = tmp.path().join("state");
        let e = restore(new_jobs(tmp.path()), me(), &mut ren, &st).unwrap_err();
        assert_eq!(e.state, SwapState::BackInPlace, "{e:?}");
        assert_eq!(ren.n, 3);
        assert_eq!(
            (tree(&tmp.path().join("keys")), tree(&tmp.path().join("public"))),
            (keys.clone(), public.clone())
        );
        assert_eq!(names(tmp.path()), ["keys", "public", "state"]);
        // And when moving back fails too, the error says where the previous keystore is (inside
        // the restore's temp directory), and the record says the keystore is half swapped.
        let mut ren = Failing {
            n: 0,
            fail: vec![(2, Errno::IO), (3, Errno::IO)],
            exchange: false,
        };
        let e = restore(new_jobs(tmp.path()), me(), &mut ren, &st).unwrap_err();
        assert_eq!(e.state, SwapState::LeftAside, "{e:?}");
        assert!(e.error.message.contains(".keys.coldkeep-tmp-"), "{e:?}");
        assert!(!tmp.path().join("keys").exists());
        let record = journal(&st).read().unwrap().unwrap();
        assert_eq!(record.phase, Phase::Swapping);
        // Finished backwards from the record: the previous keystore whole again, nothing left.
        let parents: Vec<_> = record
            .roots
            .iter()
            .map(|r| Resolver::new().unwrap().parent_of(&r.path).unwrap())
            .collect();
        let notes = finish_swap(record, &parents, false, me(), &mut Kernel, &journal(&st)).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(
            (tree(&tmp.path().join("keys")), tree(&tmp.path().join("public"))),
            (keys, public)
        );
        assert_eq!(names(tmp.path()), ["keys", "public", "state"]);
        assert!(journal(&st).read().unwrap().is_none());
    }

    /// A restore cut off after its first swap (the record says `swapping`: keys new, public
    /// previous) is finished forward or back from the record alone.
    #[test]
    fn a_half_swapped_keystore_is_finished_forward_or_back_from_its_record() {
        for forward in [false, true] {
            let (tmp, keys, public) = two_roots();
            let st = tmp.path().join("state");
            // The second swap fails and undoing the first fails: keys new, public previous.
            let mut ren = Failing {
                n: 0,
                fail: vec![(2, Errno::IO), (3, Errno::IO)],
                exchange: true,
            };
            let e = restore(new_jobs(tmp.path()), me(), &mut ren, &st).unwrap_err();
            assert_eq!(e.state, SwapState::LeftAside, "{e:?}");
            assert_eq!(tree(&tmp.path().join("public")), public, "public untouched");
            assert_ne!(tree(&tmp.path().join("keys")), keys, "keys swapped");
            let record = journal(&st).read().unwrap().unwrap();
            let parents: Vec<_> = record
                .roots
                .iter()
                .map(|r| Resolver::new().unwrap().parent_of(&r.path).unwrap())
                .collect();
            let opened: Vec<_> = record
                .roots
                .iter()
                .map(|r| Resolver::new().unwrap().parent_of(&r.path).ok())
                .collect();
            let said = describe(&record, &opened);
            assert!(
                said.contains("keys: the restored tree") && said.contains("public: the previous tree"),
                "{said}"
            );
            finish_swap(record, &parents, forward, me(), &mut Kernel, &journal(&st)).unwrap();
            if forward {
                assert_eq!(
                    tree(&tmp.path().join("public")),
                    [("A.pub".to_string(), b"pub".to_vec(), 0o644)]
                );
                assert!(tree(&tmp.path().join("keys")).iter().any(|e| e.0 == "A_hmac"));
            } else {
                assert_eq!(
                    (tree(&tmp.path().join("keys")), tree(&tmp.path().join("public"))),
                    (keys, public)
                );
            }
            assert_eq!(
                names(tmp.path()),
                ["keys", "public", "state"],
                "forward: {forward}"
            );
            assert!(journal(&st).read().unwrap().is_none());
        }
    }

    #[test]
    fn a_target_that_changed_since_the_plan_is_refused_before_anything_is_built() {
        let (tmp, keys, _) = two_roots();
        let st = tmp.path().join("state");
        let e = restore(
            vec![job(tmp.path(), "keys", false, &[("a", 0o600, b"x")])],
            me(),
            &mut Kernel,
            &st,
        )
        .unwrap_err();
        assert!(e.error.message.contains("appeared"), "{e:?}");
        std::os::unix::fs::symlink("/etc", tmp.path().join("link")).unwrap();
        let e = restore(
            vec![job(tmp.path(), "link", true, &[("a", 0o600, b"x")])],
            me(),
            &mut Kernel,
            &st,
        )
        .unwrap_err();
        assert!(e.error.message.contains("not a directory"), "{e:?}");
        assert_eq!(tree(&tmp.path().join("keys")), keys);
        assert_eq!(names(tmp.path()), ["keys", "link", "public", "state"]);
    }

    #[test]
    fn nothing_a_tree_restore_makes_inherits_a_default_acl_of_the_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        crate::nodehelper::write::tests::default_acl_for_nobody(tmp.path());
        let jobs = vec![job(
            tmp.path(),
            "keys",
            false,
            &[
                ("client/A/storage.keyring", 0o600, b"ring"),
                ("A.pub", 0o644, b"p"),
            ],
        )];
        restore(jobs, me(), &mut Kernel, state.path()).unwrap();
        for rel in ["", "client", "client/A", "client/A/storage.keyring", "A.pub"] {
            let p = tmp.path().join("keys").join(rel);
            assert!(!crate::nodehelper::write::tests::has_acl(&p), "{rel}");
        }
    }
}

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
//! [`super::record::finish_swap`] puts the previous trees back or the new ones in, from the inodes recorded.
//! In the other phases nothing is half done and the next restore removes the containers the
//! record names (only a container still holding its recorded inode is emptied; one never
//! recorded is only `rmdir`ed, which cannot remove a directory with anything in it).

use super::proto::{ErrorKind, SwapState};
use super::record::{Ino, Journal, PREV, Phase, RootRecord, SwapRecord, TREE, clean_up, fsync_dir, ino_of};
use super::resolve::{FsError, errno, fail, kind_of, lstat_at, open_file_at};
use super::sweep::{names_with_prefix, old_prefix, tag, temp_prefix};
use super::write::{Rename, Want, flag_unsupported, own_and_mode, write_all};
use rustix::fs::{Mode, OFlags, RenameFlags};
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use zeroize::Zeroizing;

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

#[cfg(test)]
#[path = "trees_tests.rs"]
mod tests;

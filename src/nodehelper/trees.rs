//! Restoring an Acra keystore's directories at once: build each tree beside its target, read it
//! back, swap all of them in, and undo the swaps made if a later one fails.
//!
//! Each new tree is built under `.NAME.coldkeep-tmp-<random>` (made with `mkdirat` 0700 in the
//! parent's fd) through fds: directories `mkdirat` + `O_NOFOLLOW|O_DIRECTORY`, files
//! `O_CREAT|O_EXCL|O_NOFOLLOW`, each `fsync`ed, `fchown` then `fchmod` on the fd (files never
//! looser than the policy, directories 0700), read back through fresh fds. Then, root by root,
//! `renameat2(RENAME_EXCHANGE)` swaps it with the existing directory in one step (a missing one:
//! `RENAME_NOREPLACE`), and the name is checked to hold the tree built. Where the filesystem
//! has no exchange, two renames do it (`NAME` -> `.NAME.coldkeep-old-<tag>`, temp -> `NAME`), and
//! a failed second rename moves the old one back. A failure undoes every swap already made. Only
//! after all swaps are in does the old content go (through fds).

use super::proto::{ErrorKind, SwapState};
use super::resolve::{FsError, errno, fail, kind_of, lstat_at, open_dir_at, open_file_at};
use super::sweep::{Removal, names_with_prefix, old_prefix, remove_tree, tag, temp_prefix};
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Published {
    No,
    Created,
    Exchanged,
    /// Two renames: the previous tree is at `old`.
    Moved,
}

struct Staged {
    job: RootJob,
    temp: String,
    old: String,
    /// The new tree's root (device, inode).
    ino: (u64, u64),
    /// The directory it replaces (device, inode), checked owned by the policy's owner.
    previous: Option<(u64, u64)>,
    /// Leftovers found beside it and left alone.
    notes: Vec<String>,
    published: Published,
    /// A rename of this root happened (even if it was undone).
    renamed: bool,
}

fn fsync_dir(fd: &OwnedFd, path: &str) -> Result<(), FsError> {
    rustix::fs::fsync(fd).map_err(|e| errno(e, path))
}

/// Checks what is at the target now against the plan, and that no interrupted swap is beside it.
fn check_target(job: &RootJob, want: Want) -> Result<(u64, Option<(u64, u64)>), FsError> {
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
            Some((st.st_dev, st.st_ino))
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

/// Builds one tree beside its target and reads it back.
fn stage(job: RootJob, want: Want) -> Result<Staged, FsError> {
    let (dev, previous) = check_target(&job, want)?;
    let notes = super::sweep::sweep(&job.parent, &job.name, &job.path)?;
    let t = tag();
    let temp = format!("{}{t}", temp_prefix(&job.name));
    let old = format!("{}{t}", old_prefix(&job.name));
    let path = job.path.clone();
    rustix::fs::mkdirat(&job.parent, temp.as_str(), Mode::from_raw_mode(0o700))
        .map_err(|e| errno(e, &path))?;
    let staged_path = |rel: &str| format!("{path} (new, {rel})");
    let root = open_dir_at(&job.parent, &temp, &staged_path(""), dev)?;
    let root_st = rustix::fs::fstat(&root).map_err(|e| errno(e, &path))?;
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
                let parent = &dirs[&parent_rel];
                rustix::fs::mkdirat(parent, comp, Mode::from_raw_mode(0o700))
                    .map_err(|e| errno(e, &staged_path(&at)))?;
                let fd = open_dir_at(parent, comp, &staged_path(&at), dev)?;
                dirs.insert(at.clone(), fd);
            }
        }
        let dir = &dirs[dir_rel];
        let fd = rustix::fs::openat(
            dir,
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
    fsync_dir(&job.parent, &path)?;
    Ok(Staged {
        job,
        temp,
        old,
        ino: (root_st.st_dev, root_st.st_ino),
        previous,
        notes,
        published: Published::No,
        renamed: false,
    })
}

/// Puts one staged tree under its name. `Err((error, left_aside))`: `left_aside` when the old
/// tree could not be moved back (two-rename path).
fn publish(s: &mut Staged, ren: &mut dyn Rename) -> Result<(), (FsError, bool)> {
    let (dir, name, path) = (&s.job.parent, s.job.name.as_str(), s.job.path.as_str());
    let e = |x| (errno(x, path), false);
    if s.job.replace {
        match ren.rename(dir, &s.temp, name, RenameFlags::EXCHANGE) {
            Ok(()) => s.published = Published::Exchanged,
            Err(x) if flag_unsupported(x) => {
                ren.rename(dir, name, &s.old, RenameFlags::empty()).map_err(e)?;
                s.renamed = true;
                if let Err(x) = ren.rename(dir, &s.temp, name, RenameFlags::empty()) {
                    return match ren.rename(dir, &s.old, name, RenameFlags::empty()) {
                        Ok(()) => Err(e(x)),
                        Err(back) => Err((
                            fail(
                                ErrorKind::Failed,
                                format!(
                                    "{path}: {}; moving the previous keystore back also failed ({back}): it is at {}/{}",
                                    errno(x, path).message,
                                    super::resolve::split(path).map(|(d, _)| d).unwrap_or(""),
                                    s.old
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
        match ren.rename(dir, &s.temp, name, RenameFlags::NOREPLACE) {
            Ok(()) => {}
            Err(x) if flag_unsupported(x) => {
                if lstat_at(dir, name, path).map_err(|x| (x, false))?.is_some() {
                    return Err((
                        fail(ErrorKind::Unsafe, format!("{path} appeared during the restore")),
                        false,
                    ));
                }
                ren.rename(dir, &s.temp, name, RenameFlags::empty()).map_err(e)?;
            }
            Err(x) => return Err(e(x)),
        }
        s.published = Published::Created;
    }
    let now = lstat_at(dir, name, path).map_err(|x| (x, false))?;
    if now.map(|st| (st.st_dev, st.st_ino)) != Some(s.ino) {
        let message =
            format!("{path}: the new tree was swapped by someone who may write there; the swap was undone");
        let undone = undo(s, ren).is_ok();
        return Err((fail(ErrorKind::Unsafe, message), !undone));
    }
    Ok(())
}

/// Undoes a published tree (the previous one back under its name).
fn undo(s: &mut Staged, ren: &mut dyn Rename) -> Result<(), String> {
    let (dir, name) = (&s.job.parent, s.job.name.as_str());
    let r = match s.published {
        Published::No => Ok(()),
        Published::Exchanged => ren.rename(dir, &s.temp, name, RenameFlags::EXCHANGE),
        Published::Created => ren.rename(dir, name, &s.temp, RenameFlags::empty()),
        Published::Moved => ren
            .rename(dir, name, &s.temp, RenameFlags::empty())
            .and_then(|()| ren.rename(dir, &s.old, name, RenameFlags::empty())),
    };
    r.map_err(|e| format!("{}: {e}", s.job.path))?;
    s.published = Published::No;
    Ok(())
}

/// Restores every root, or none. Returns notes (an old tree that could not be removed).
pub fn restore_trees(
    jobs: Vec<RootJob>,
    want: Want,
    ren: &mut dyn Rename,
) -> Result<Vec<String>, TreeFailure> {
    let mut staged: Vec<Staged> = Vec::new();
    for job in jobs {
        match stage(job, want) {
            Ok(s) => staged.push(s),
            Err(error) => {
                cleanup(&staged, want);
                return Err(TreeFailure {
                    error,
                    state: SwapState::NothingChanged,
                });
            }
        }
    }
    for k in 0..staged.len() {
        if let Err((error, left_aside)) = publish(&mut staged[k], ren) {
            let mut problems = Vec::new();
            for s in staged[..k].iter_mut().rev() {
                if let Err(p) = undo(s, ren) {
                    problems.push(p);
                }
            }
            let renamed = k > 0 || left_aside || ren_happened(&staged[k]);
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
                cleanup(&staged, want);
            }
            return Err(TreeFailure {
                error: fail(error.kind, message),
                state,
            });
        }
    }
    let mut notes = Vec::new();
    for s in &staged {
        notes.extend(s.notes.iter().cloned());
        let _ = fsync_dir(&s.job.parent, &s.job.path);
        let aside = match s.published {
            Published::Exchanged => Some(&s.temp),
            Published::Moved => Some(&s.old),
            _ => None,
        };
        // The previous tree, now under `aside`: removed only if it is still that directory,
        // and only what belongs to the keystore's owner.
        if let (Some(name), Some(previous)) = (aside, s.previous) {
            let shown = format!("{} (previous, at {name})", s.job.path);
            let owners = [want.uid];
            let removal = Removal {
                expect: previous,
                owners: &owners,
            };
            match remove_tree(&s.job.parent, name, &shown, &removal) {
                Ok(left) => notes.extend(left),
                Err(e) => notes.push(format!(
                    "restored, but the previous keystore could not be removed: {}",
                    e.message
                )),
            }
        }
    }
    Ok(notes)
}

/// Whether a failed publish of `s` renamed anything (the two-rename path moved the old tree and
/// moved it back).
fn ren_happened(s: &Staged) -> bool {
    s.renamed || s.published != Published::No
}

/// Removes the staged trees that are not in place (after undo, the temp names hold the new
/// trees): only the directories the helper built, only entries of the helper or the owner.
fn cleanup(staged: &[Staged], want: Want) {
    let owners = [rustix::process::geteuid().as_raw(), want.uid];
    for s in staged {
        if s.published == Published::No {
            let removal = Removal {
                expect: s.ino,
                owners: &owners,
            };
            let _ = remove_tree(&s.job.parent, &s.temp, &s.job.path, &removal);
        }
    }
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
        fn rename(&mut self, dir: &OwnedFd, from: &str, to: &str, flags: RenameFlags) -> Result<(), Errno> {
            if !self.exchange && flags.contains(RenameFlags::EXCHANGE) {
                return Err(Errno::INVAL);
            }
            self.n += 1;
            if let Some((_, e)) = self.fail.iter().find(|(k, _)| *k == self.n) {
                return Err(*e);
            }
            Kernel.rename(dir, from, to, flags)
        }
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
        let jobs = vec![job(
            base,
            "keys",
            false,
            &[
                ("client/A/storage.keyring", 0o600, b"ring"),
                ("version", 0o644, b"v2"),
            ],
        )];
        restore_trees(jobs, me(), &mut Kernel).unwrap();
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
        let notes = restore_trees(new_jobs(tmp.path()), me(), &mut Kernel).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(
            tree(&tmp.path().join("public")),
            [("A.pub".to_string(), b"pub".to_vec(), 0o644)]
        );
        assert_eq!(names(tmp.path()), ["keys", "public"], "the old trees are gone");
        // A mode looser than the policy's is narrowed to it.
        let tight = Want { mode: 0o600, ..me() };
        restore_trees(
            vec![job(tmp.path(), "public", true, &[("A.pub", 0o644, b"pub")])],
            tight,
            &mut Kernel,
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
        let e = restore_trees(new_jobs(tmp.path()), me(), &mut ren).unwrap_err();
        assert_eq!(e.state, SwapState::BackInPlace, "{e:?}");
        assert_eq!(ren.n, 3, "keys swapped, public failed, keys swapped back");
        assert_eq!(
            (tree(&tmp.path().join("keys")), tree(&tmp.path().join("public"))),
            (keys, public)
        );
        assert_eq!(names(tmp.path()), ["keys", "public"], "temps removed");
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
        let e = restore_trees(new_jobs(tmp.path()), me(), &mut ren).unwrap_err();
        assert_eq!(e.state, SwapState::BackInPlace, "{e:?}");
        assert_eq!(ren.n, 3);
        assert_eq!(
            (tree(&tmp.path().join("keys")), tree(&tmp.path().join("public"))),
            (keys.clone(), public.clone())
        );
        assert_eq!(names(tmp.path()), ["keys", "public"]);
        // And when moving back fails too, the error says where the old keystore is.
        let mut ren = Failing {
            n: 0,
            fail: vec![(2, Errno::IO), (3, Errno::IO)],
            exchange: false,
        };
        let e = restore_trees(new_jobs(tmp.path()), me(), &mut ren).unwrap_err();
        assert_eq!(e.state, SwapState::LeftAside, "{e:?}");
        assert!(e.error.message.contains(".keys.coldkeep-old-"), "{e:?}");
        let aside = names(tmp.path())
            .into_iter()
            .find(|n| n.starts_with(".keys.coldkeep-old-"))
            .unwrap();
        assert_eq!(tree(&tmp.path().join(aside)), keys);
        // The next restore refuses to touch it.
        let e = restore_trees(new_jobs(tmp.path()), me(), &mut Kernel).unwrap_err();
        assert_eq!(e.state, SwapState::NothingChanged);
        assert!(e.error.message.contains("interrupted"), "{e:?}");
    }

    #[test]
    fn a_target_that_changed_since_the_plan_is_refused_before_anything_is_built() {
        let (tmp, keys, _) = two_roots();
        let e = restore_trees(
            vec![job(tmp.path(), "keys", false, &[("a", 0o600, b"x")])],
            me(),
            &mut Kernel,
        )
        .unwrap_err();
        assert!(e.error.message.contains("appeared"), "{e:?}");
        std::os::unix::fs::symlink("/etc", tmp.path().join("link")).unwrap();
        let e = restore_trees(
            vec![job(tmp.path(), "link", true, &[("a", 0o600, b"x")])],
            me(),
            &mut Kernel,
        )
        .unwrap_err();
        assert!(e.error.message.contains("not a directory"), "{e:?}");
        assert_eq!(tree(&tmp.path().join("keys")), keys);
        assert_eq!(names(tmp.path()), ["keys", "link", "public"]);
    }
}

//! Tests of [`super`]: tree restores on real directories, renames failing on cue.

use super::*;
use crate::nodehelper::record::{describe, finish_swap};
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

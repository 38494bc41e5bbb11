//! Acra tree restores through the node helper, cut off and raced at chosen steps (the helper's
//! pause points, debug builds only: a fifo in its root-only state directory that the test opens
//! exactly when the helper is there; no timing).
//!
//! - Killed at every step of a two-directory restore (keys and public): the keystore is never
//!   silently mixed. While the helper's record says the swap is half done, backups and restores
//!   of that keystore are refused naming the fix, and `restore --interrupted back|forward`
//!   makes it whole one way or the other; otherwise the next restore cleans up.
//! - The keystore's parent belongs to the Acra service user (the layout where it may rename
//!   anything in it): a directory of root's renamed to the restore's temp name, when the helper
//!   has just made it or when it holds the previous tree, is never filled, given to the service
//!   user, published or emptied.
use super::become_cli::{Setup, names_in, setup};
use crate::support;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use support::acra::{read_tree, write_tree};
use support::fleet::text;
use support::sudo::{Pause, SERVICE_USER, as_user, chown, kill_helper, owner_of};

type Trees = (Vec<(String, u32, Vec<u8>)>, Vec<(String, u32, Vec<u8>)>);

/// Node `a` with an Acra keystore in two directories, backed up, then both changed.
/// Returns the setup, the rules, the backed-up trees and the changed ones.
fn two_directories() -> (Setup, support::sudo::Installed, PathBuf, Trees, Trees) {
    let s = setup(false);
    let public = s.acra.parent().unwrap().join("public");
    write_tree(
        &public,
        &[("client_storage.pub".into(), 0o644, b"public key".to_vec())],
    );
    chown(&public, SERVICE_USER);
    let node = s.fleet.node("a");
    s.fleet.write_config(&format!(
        "  - name: a\n    host: 127.0.0.1\n    port: {}\n{}    keystores:\n\
         \x20     - name: acra\n        kind: acra\n        path: {}\n        public_path: {}\n",
        node.port,
        s.h.yaml(),
        s.acra.display(),
        public.display()
    ));
    let rules = s.backup_then_allow_restore();
    let backed_up = (read_tree(&s.acra).0, read_tree(&public).0);
    fs::remove_file(s.acra.join("client_hmac")).unwrap();
    fs::write(public.join("client_storage.pub"), b"changed").unwrap();
    let changed = (read_tree(&s.acra).0, read_tree(&public).0);
    (s, rules, public, backed_up, changed)
}

fn trees(s: &Setup, public: &Path) -> Trees {
    (read_tree(&s.acra).0, read_tree(public).0)
}

/// Starts `restore --replace` of node a's Acra keystore (it runs until the helper is killed).
fn start_restore(s: &Setup) -> std::process::Child {
    let identity = s.fleet.age_identity.to_str().unwrap().to_string();
    s.fleet
        .command(&[
            "restore",
            "--node",
            "a",
            "--keystore",
            "acra",
            "--identity",
            &identity,
            "--yes",
            "--replace",
        ])
        .env("P12_PASSWORD", "password")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The helper killed (SIGKILL) at each step of a two-directory restore, then the swap finished
/// one way or the other. Every step is hit exactly (a pause point), and the state each leaves
/// is checked: what a backup sees, what `--interrupted` does, and that nothing is left behind.
#[test]
fn a_restore_killed_at_each_step_is_reported_and_finished_back_or_forward() {
    // (step, finish forward?, half swapped there?, what the keystore holds after the kill:
    // backed up / changed / mixed)
    let cases = [
        ("trees-staged", false, false, "changed"),
        ("trees-marked", true, true, "changed"),
        ("trees-swapped-1", false, true, "mixed"),
        ("trees-swapped-1", true, true, "mixed"),
        ("trees-published", false, true, "backed up"),
        ("trees-cleaning", true, false, "backed up"),
    ];
    for (step, forward, half, holds) in cases {
        let (s, _rules, public, backed_up, changed) = two_directories();
        let parent = s.acra.parent().unwrap().to_path_buf();
        let pause = Pause::at(&s.h, step);
        let mut restore = start_restore(&s);
        let held = pause.reached();
        kill_helper(&s.h);
        drop(held);
        let status = restore.wait().unwrap();
        assert!(!status.success(), "{step}: the killed restore reported success");
        drop(pause);
        let now = trees(&s, &public);
        let mixed = (backed_up.0.clone(), changed.1.clone());
        let expected = match holds {
            "changed" => &changed,
            "backed up" => &backed_up,
            _ => &mixed,
        };
        assert_eq!(&now, expected, "{step}: the keystore after the kill");
        // What a backup sees: refused naming the fix while half swapped, else the keystore.
        let report = s.backup_json();
        let acra = &report["outcomes"][0];
        if half {
            let error = acra["error"].as_str().unwrap_or_default();
            assert!(
                error.contains("interrupted between its swaps")
                    && error.contains("--node a --keystore acra")
                    && error.contains("--interrupted back"),
                "{step}: {acra}"
            );
        } else {
            assert_eq!(acra["ok"], true, "{step}: {acra}");
        }
        // A plain restore is refused while half swapped, too.
        if half {
            let (code, out) = s.restore("a", "acra", &["--replace"]);
            assert_ne!(code, 0, "{step}: {out}");
            assert!(out.contains("--interrupted forward"), "{step}: {out}");
            assert_eq!(
                trees(&s, &public),
                *expected,
                "{step}: the refused restore changed nothing"
            );
        }
        let way = if forward { "forward" } else { "back" };
        let (code, out) = s.restore("a", "acra", &["--interrupted", way]);
        assert_eq!(code, 0, "{step} {way}: {out}");
        let finished = match (half, forward) {
            (true, true) => &backed_up,
            (true, false) => &changed,
            (false, _) => expected,
        };
        assert_eq!(&trees(&s, &public), finished, "{step} {way}: {out}");
        assert_eq!(
            names_in(&parent),
            [".acrakeys", "public"],
            "{step} {way}: nothing left beside the keystore"
        );
        // Whole again: backups read it, and a restore of that backup finds it in place.
        assert_eq!(s.backup_json()["outcomes"][0]["ok"], true, "{step}");
        let (code, out) = s.restore("a", "acra", &["--replace"]);
        assert_eq!(code, 0, "{step}: {out}");
        assert!(out.contains("already in place"), "{step}: {out}");
        assert_eq!(&trees(&s, &public), finished, "{step}");
        let state = fs::read_dir(s.h.state_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("swap-"))
            .count();
        assert_eq!(state, 0, "{step}: the helper's record is gone");
    }
}

/// The Acra layout where the service user owns the keystore's parent, with a directory of
/// root's in it that the service user can rename (not read).
fn service_owned_parent() -> (Setup, support::sudo::Installed, PathBuf) {
    let s = setup(false);
    s.config_helper();
    let rules = s.backup_then_allow_restore();
    let parent = s.acra.parent().unwrap().to_path_buf();
    std::os::unix::fs::chown(&parent, Some(uid(SERVICE_USER)), Some(uid(SERVICE_USER))).unwrap();
    let rootdir = parent.join("root-owned");
    fs::create_dir(&rootdir).unwrap();
    fs::set_permissions(&rootdir, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(rootdir.join("root-file"), b"root's").unwrap();
    fs::remove_file(s.acra.join("client_hmac")).unwrap();
    (s, rules, rootdir)
}

use std::os::unix::fs::PermissionsExt;

fn uid(user: &str) -> u32 {
    text(
        &std::process::Command::new("id")
            .args(["-u", user])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .parse()
    .unwrap()
}

/// The restore's temp directory in `parent` (`..acrakeys.coldkeep-tmp-*`).
fn container(parent: &Path) -> String {
    names_in(parent)
        .into_iter()
        .find(|n| n.starts_with("..acrakeys.coldkeep-tmp-"))
        .expect("the restore's temp directory")
}

/// As the service user, puts the directory `with` at the name `at` (moving what is there to
/// `aside`).
fn swap_in(parent: &Path, at: &str, with: &Path) {
    let out = as_user(
        SERVICE_USER,
        &format!(
            "cd {} && mv {at} aside && mv {} {at}",
            parent.display(),
            with.file_name().unwrap().to_str().unwrap()
        ),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn unchanged_root_dir(dir: &Path, what: &str) {
    let meta = fs::metadata(dir).unwrap();
    assert_eq!(
        (meta.uid(), meta.mode() & 0o7777),
        (0, 0o700),
        "{what}: owner and mode kept"
    );
    assert_eq!(names_in(dir), ["root-file"], "{what}: nothing written into it");
    assert_eq!(fs::read(dir.join("root-file")).unwrap(), b"root's", "{what}");
    assert_eq!(owner_of(&dir.join("root-file")), "root:root", "{what}");
}

/// Right after the helper made its temp directory, the service user swaps a directory of
/// root's in at that name: the helper refuses it (not the fresh, empty, 0700 directory of its
/// own it made), writes nothing into it, gives it to nobody, publishes nothing.
#[test]
fn a_root_directory_swapped_in_for_the_new_temp_directory_is_never_filled_or_published() {
    let (s, _rules, rootdir) = service_owned_parent();
    let parent = rootdir.parent().unwrap().to_path_buf();
    let before = read_tree(&s.acra).0;
    let keys_ino = fs::metadata(&s.acra).unwrap().ino();
    let pause = Pause::at(&s.h, "trees-container");
    let restore = start_restore(&s);
    let held = pause.reached();
    let name = container(&parent);
    swap_in(&parent, &name, &rootdir);
    drop(held);
    let out = restore.wait_with_output().unwrap();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("swapped for another"), "{said}");
    unchanged_root_dir(&parent.join(&name), "the swapped-in directory");
    assert_eq!(
        fs::metadata(&s.acra).unwrap().ino(),
        keys_ino,
        "nothing published"
    );
    assert_eq!(read_tree(&s.acra).0, before);
}

/// After the swap, the previous keystore lies in the helper's temp directory; the service
/// user swaps a directory of root's in at that name before the helper removes it: the helper
/// removes nothing of it (it works on the directory it holds open, and names only what it
/// recorded), and the restore itself went through.
#[test]
fn a_root_directory_swapped_in_where_the_previous_tree_lies_is_never_emptied() {
    let (s, _rules, rootdir) = service_owned_parent();
    let parent = rootdir.parent().unwrap().to_path_buf();
    let pause = Pause::at(&s.h, "trees-cleaning");
    let restore = start_restore(&s);
    let held = pause.reached();
    let name = container(&parent);
    swap_in(&parent, &name, &rootdir);
    drop(held);
    let out = restore.wait_with_output().unwrap();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{said}");
    unchanged_root_dir(&parent.join(&name), "the swapped-in directory");
    assert!(s.acra.join("client_hmac").exists(), "the restore went through");
    assert_eq!(owner_of(&s.acra), format!("{SERVICE_USER}:{SERVICE_USER}"));
}

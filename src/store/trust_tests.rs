//! What a store writer can do with genuine, signed artifacts (issue 25): copy one where it does
//! not belong. Listings check every artifact's role against where it lies.

use super::tests::{sidecar, store};
use super::*;
use crate::bundle::{Purpose, Role};

/// The three files of artifact `id` copied from `from` to `to` (the attacker's `cp`).
fn copy_artifact(from: &Path, to: &Path, id: &str) {
    fs::create_dir_all(to).unwrap();
    for ext in [".age", ".json", ".json.sig"] {
        let name = format!("{id}{ext}");
        fs::copy(from.join(&name), to.join(&name)).unwrap();
    }
}

#[test]
fn a_genuine_master_key_artifact_copied_into_a_keystore_directory_is_reported_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let mut keystore = sidecar("gw", 0, b"keystore");
    keystore.manifest.keystore = "acra".into();
    keystore.manifest.kind = "acra".into();
    let real = s.write(&keystore, b"keystore").unwrap();
    // The master-key store, signed by the same key, with the same node and keystore names.
    let masters = Store {
        primary: dir.path().join("master"),
        replicas: Vec::new(),
        holds: Holds::MasterKeys,
        ..s.clone()
    };
    let mut master = sidecar("gw", 30, b"master key");
    master.manifest.keystore = "acra".into();
    master.manifest.kind = "acra-master-key".into();
    let planted = masters.write(&master, b"master key").unwrap();
    assert_eq!(masters.list(None).unwrap().artifacts.len(), 1);
    // One replica is enough: the attacker can write that one only.
    copy_artifact(
        &masters.primary.join("gw/acra"),
        &s.replicas[0].join("gw/acra"),
        &planted,
    );
    let listing = s.list(None).unwrap();
    let ids: Vec<&str> = listing.artifacts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, [real.as_str()], "only the keystore's own backup is listed");
    assert!(listing.untrusted.is_empty());
    let problem = listing
        .problems
        .iter()
        .find(|p| p.path.ends_with(format!("{planted}.json")))
        .expect("the plant is reported");
    assert!(
        problem.message.contains("master-key-backup") && !problem.interrupted,
        "{problem:?}"
    );
    // The summary listing (list, status, prune) says the same.
    let summaries = s.list_keystore::<Summary>("gw", "acra").unwrap();
    assert_eq!(summaries.artifacts.len(), 1);
    assert_eq!(summaries.artifacts[0].id, real);
    // Nothing is "repaired" from it into the primary.
    for a in &listing.artifacts {
        s.repair_missing(a).unwrap();
    }
    assert!(!s.primary.join(format!("gw/acra/{planted}.age")).exists());
    // The reverse: a keystore backup copied into the master-key store.
    copy_artifact(
        &s.primary.join("gw/acra"),
        &masters.primary.join("gw/acra"),
        &real,
    );
    let listing = masters.list(None).unwrap();
    assert_eq!(listing.artifacts.len(), 1);
    assert_eq!(listing.artifacts[0].id, planted);
    assert!(
        listing
            .problems
            .iter()
            .any(|p| p.message.contains("keystore-backup"))
    );
}

#[test]
fn a_recorded_role_is_checked_against_the_kind_it_was_signed_with() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    // A backup recorded as what it is: listed.
    let mut ok = sidecar("v1", 0, b"a");
    ok.manifest.role = Some(Role::KeystoreBackup);
    s.write(&ok, b"a").unwrap();
    // Signed, but contradicting itself (a pre-restore role with the backup purpose): reported.
    let mut odd = sidecar("v1", 1, b"b");
    odd.manifest.role = Some(Role::PreRestore);
    assert_eq!(odd.manifest.purpose, Purpose::Backup);
    s.write(&odd, b"b").unwrap();
    // Hardware keys belong under `hardware/` only.
    let mut key = sidecar("v1", 2, b"c");
    key.manifest.kind = "onlykey".into();
    s.write(&key, b"c").unwrap();
    let listing = s.list(None).unwrap();
    assert_eq!(listing.artifacts.len(), 1, "{:?}", listing.problems);
    assert_eq!(
        listing.problems.len(),
        2 * 2,
        "two misplaced, in both roots: {:?}",
        listing.problems
    );
    let mut hw = sidecar(crate::config::HARDWARE_NODE, 3, b"d");
    hw.manifest.kind = "bitbox02".into();
    s.write(&hw, b"d").unwrap();
    assert_eq!(
        s.list(Some(crate::config::HARDWARE_NODE))
            .unwrap()
            .artifacts
            .len(),
        1
    );
}

/// The run state is authenticated: an edit, a plain JSON file (as versions before wrote it), or
/// a state file copied from another store is never read as state.
#[test]
fn the_run_state_reads_back_only_as_this_store_wrote_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let _ = s.write(&sidecar("v1", 0, b"c"), b"c").unwrap();
    assert_eq!(
        RunState::load(&s).unwrap(),
        RunState::default(),
        "none yet: empty"
    );
    let mut state = RunState::default();
    state.entry("v1", "p12").last_failure = Some(chrono::Utc::now());
    state.entry("v1", "p12").last_error = Some("connection refused".into());
    state.save(&s).unwrap();
    assert_eq!(RunState::load(&s).unwrap(), state);
    let path = s.primary.join(STATE_DIR).join("state.json");
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("coldkeep-state-v1 "), "{text}");

    // The attacker's edit: the failure removed, the MAC line kept.
    let edited = text.replace("connection refused", "ok");
    fs::write(&path, &edited).unwrap();
    assert!(RunState::load_checked(&s).unwrap().is_none());
    let e = RunState::load(&s).unwrap_err().to_string();
    assert!(e.contains("does not authenticate"), "{e}");
    // Plain JSON, as an older version wrote it (or a forger who drops the MAC line).
    let body = &text[text.find('\n').unwrap() + 1..];
    fs::write(&path, body).unwrap();
    assert!(RunState::load_checked(&s).unwrap().is_none());
    // An authentic state file of another store, copied in.
    let other = Store {
        primary: dir.path().join("other"),
        ..s.clone()
    };
    state.save(&other).unwrap();
    fs::copy(other.primary.join(STATE_DIR).join("state.json"), &path).unwrap();
    assert!(RunState::load_checked(&s).unwrap().is_none());
    // A writer starts over rather than carrying an unauthenticated file forward.
    assert_eq!(RunState::load_for_update(&s).unwrap(), RunState::default());
    // Under another signing key it does not authenticate either.
    state.save(&s).unwrap();
    let rekeyed = Store {
        keys: super::tests::test_keys(),
        ..s.clone()
    };
    assert!(RunState::load_checked(&rekeyed).unwrap().is_none());
}

/// Temp files that writers now gone left behind (issue 25, reproduction 8) are removed by the
/// next writer, in every root; a write still in progress (or of a writer that cannot be checked
/// and is recent) is left alone.
#[test]
fn temp_files_of_gone_writers_are_removed_and_others_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.write(&sidecar("v1", 0, b"c"), b"c").unwrap();
    let dead = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    let mine = temps::name_for("x.age");
    let owner = &mine[".x.age.tmp-".len()..];
    let tag = &owner[..owner.find('p').unwrap()];
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    let plant = |root: &Path, name: &str, old: bool| {
        let path = root.join("v1/p12").join(name);
        fs::write(&path, b"partial").unwrap();
        if old {
            let f = fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(two_hours_ago).unwrap();
        }
        path
    };
    let mut gone = Vec::new();
    let mut kept = Vec::new();
    for root in [&s.primary, &s.replicas[0]] {
        gone.push(plant(root, &format!(".a.age.tmp-{tag}p{dead}-00000001"), false));
        gone.push(plant(root, ".b.json.tmp-0badf00d", true));
        gone.push(plant(
            root,
            &format!(".c.json.sig.tmp-ffffffffp{dead}-00000002"),
            true,
        ));
        kept.push(plant(
            root,
            &format!(".d.age.tmp-ffffffffp{dead}-00000003"),
            false,
        ));
        kept.push(plant(root, ".e.age.tmp-1234abcd", false));
        kept.push(plant(root, &mine, false));
    }
    let listing = s.list(None).unwrap();
    let said = |p: &Path| {
        listing
            .problems
            .iter()
            .find(|q| q.path == p)
            .map(|q| q.message.clone())
            .unwrap()
    };
    assert!(said(&gone[0]).contains("writer is gone"), "{}", said(&gone[0]));
    assert!(said(&kept[0]).contains("in progress"), "{}", said(&kept[0]));
    assert_eq!(s.remove_stale_temps(&listing.problems).unwrap(), gone.len());
    for p in &gone {
        assert!(!p.exists(), "{}", p.display());
    }
    for p in &kept {
        assert!(p.exists(), "{}", p.display());
    }
    // A ciphertext and a signature without a sidecar (a write killed after claiming its id):
    // removed once older than any write takes, kept while recent.
    let orphans = [
        plant(&s.primary, "20261122T000000Z-00000000.age", true),
        plant(&s.replicas[0], "20261122T000000Z-00000000.json.sig", true),
    ];
    let recent = plant(&s.primary, "20261122T000001Z-00000001.age", false);
    // One whose sidecar came in after the listing was taken: kept.
    let late = plant(&s.primary, "20261122T000002Z-00000002.age", true);
    let listing = s.list(None).unwrap();
    fs::write(late.with_file_name("20261122T000002Z-00000002.json"), b"{}").unwrap();
    assert_eq!(s.remove_stale_temps(&listing.problems).unwrap(), 2);
    assert!(orphans.iter().all(|p| !p.exists()) && recent.exists() && late.exists());
    // The run state's directory, which listings do not read.
    let state_dir = s.primary.join(STATE_DIR);
    fs::create_dir_all(&state_dir).unwrap();
    let left = state_dir.join(format!(".state.json.tmp-{tag}p{dead}-00000004"));
    fs::write(&left, b"{").unwrap();
    RunState::default().save(&s).unwrap();
    assert!(!left.exists());
    assert_eq!(RunState::load(&s).unwrap(), RunState::default());
}

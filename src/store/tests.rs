use super::*;
use crate::bundle::{FORMAT_VERSION, Manifest, Purpose};
use chrono::TimeZone;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::MetadataExt;

pub(super) fn sidecar(node: &str, second: u32, ciphertext: &[u8]) -> Sidecar {
    Sidecar {
        manifest: Manifest {
            format: FORMAT_VERSION,
            node: node.into(),
            keystore: "p12".into(),
            kind: "p12".into(),
            purpose: Purpose::Backup,
            role: None,
            created_at: chrono::Utc.with_ymd_and_hms(2026, 11, 22, 3, 15, second).unwrap(),
            coldkeep_version: "test".into(),
            host: "h:22".into(),
            host_key: String::new(),
            files: vec![],
            dirs: Vec::new(),
            identity: None,
            recipients: vec![],
            hash_key: None,
            identity_unchecked: None,
        },
        ciphertext_sha256: crate::digest::sha256_hex(ciphertext),
        ciphertext_size: ciphertext.len() as u64,
        seen_unchanged_at: None,
    }
}

/// A fresh signing key trusted by its own allowed_signers.
pub(super) fn test_keys() -> Option<std::sync::Arc<Keys>> {
    let signer = crate::sign::Signer::generate();
    let allowed = crate::sign::AllowedSigners::parse(&format!("test {}", signer.public_line())).unwrap();
    Some(std::sync::Arc::new(Keys { signer, allowed }))
}

pub(super) fn store(dir: &Path) -> Store {
    // A replica root is a mounted disk: it exists (coldkeep never creates one).
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.join("replica"))
        .unwrap();
    Store {
        lock_wait: std::time::Duration::from_secs(5),
        primary: dir.join("primary"),
        replicas: vec![dir.join("replica")],
        keys: test_keys(),
        holds: Holds::Keystores,
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn write_then_list_and_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let sc = sidecar("v1", 0, b"cipher-1");
    let id = s.write(&sc, b"cipher-1").unwrap();
    assert_eq!(id, format!("20261122T031500Z-{}", &sc.ciphertext_sha256[..8]));
    s.write(&sidecar("v1", 1, b"cipher-2"), b"cipher-2").unwrap();
    s.write(&sidecar("v2", 0, b"cipher-3"), b"cipher-3").unwrap();
    for root in [&s.primary, &s.replicas[0]] {
        assert_eq!(mode(root), 0o700);
        assert_eq!(mode(&root.join("v1")), 0o700);
        assert_eq!(mode(&root.join("v1/p12")), 0o700);
        assert_eq!(mode(&root.join(format!("v1/p12/{id}.age"))), 0o600);
        assert_eq!(mode(&root.join(format!("v1/p12/{id}.json"))), 0o600);
    }
    let all = s.list(None).unwrap();
    assert!(all.problems.is_empty(), "{:?}", all.problems);
    assert_eq!(all.artifacts.len(), 3);
    let v1 = s.list(Some("v1")).unwrap();
    assert_eq!(v1.artifacts.len(), 2);
    assert!(v1.artifacts[0].id < v1.artifacts[1].id, "oldest first");
    let a = &v1.artifacts[0];
    assert_eq!(a.copies.len(), 2);
    assert!(a.copies.iter().all(|c| c.present));
    assert_eq!(a.copies[0].root, s.primary);
    let (ct, read) = s.read(&a.copies[1]).unwrap();
    assert_eq!((ct.as_slice(), read), (&b"cipher-1"[..], sc.clone()));
    assert!(
        s.write(&sc, b"cipher-1").is_err(),
        "an existing id is never overwritten"
    );
    assert!(s.list(Some("nobody")).unwrap().artifacts.is_empty());
}

#[test]
fn list_reports_damage_and_missing_copies() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let id = s.write(&sidecar("v1", 0, b"c"), b"c").unwrap();
    fs::remove_file(s.replicas[0].join(format!("v1/p12/{id}.age"))).unwrap();
    let ks = s.primary.join("v1/p12");
    fs::write(ks.join(".x.age.tmp-1234abcd"), b"partial").unwrap();
    fs::write(ks.join("20261122T000000Z-deadbeef.age"), b"orphan").unwrap();
    fs::write(ks.join("20261122T000001Z-deadbeef.json"), b"{not json").unwrap();
    let listing = s.list(None).unwrap();
    assert_eq!(listing.artifacts.len(), 1);
    let copies = &listing.artifacts[0].copies;
    assert!(copies[0].present && !copies[1].present);
    let messages: Vec<String> = listing.problems.iter().map(|p| p.message.clone()).collect();
    assert_eq!(listing.problems.len(), 3, "{messages:?}");
    assert!(
        messages
            .iter()
            .any(|m| m.contains("temp file of a write in progress"))
    );
    assert!(messages.iter().any(|m| m.contains("without a sidecar")));
    assert!(messages.iter().any(|m| m.contains("unreadable sidecar")));
}

#[test]
fn write_error_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    fs::write(&blocker, b"").unwrap();
    let s = Store {
        lock_wait: std::time::Duration::from_secs(5),
        primary: blocker.join("store"),
        replicas: vec![],
        holds: Holds::Keystores,
        keys: test_keys(),
    };
    let e = s.write(&sidecar("v1", 0, b"c"), b"c").unwrap_err().to_string();
    assert!(e.contains(&blocker.display().to_string()), "{e}");
}

#[test]
fn a_second_write_of_the_same_id_changes_nothing_and_leaves_no_temp_files() {
    // The files are staged (written and synced under temp names) before the lock; a refusal
    // under the lock must drop them all, and the first artifact must stay as it was.
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let sc = sidecar("v1", 0, b"cipher-1");
    let id = s.write(&sc, b"cipher-1").unwrap();
    let ks = s.primary.join("v1/p12");
    // Every file of the keystore directory with its bytes, by name.
    let snapshot = || -> Vec<(std::ffi::OsString, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(&ks)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), fs::read(e.path()).unwrap())
            })
            .collect();
        files.sort();
        files
    };
    let before = snapshot();
    let err = s.write(&sc, b"cipher-1").unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(before, snapshot(), "no temp file left, nothing overwritten");
    assert_eq!(s.list(None).unwrap().artifacts[0].id, id);
    assert!(s.list(None).unwrap().problems.is_empty());
}

#[test]
fn a_file_sorting_between_a_sidecar_and_its_signature_hides_neither() {
    // `X.json-note` sorts between `X.json` and `X.json.sig` ('-' < '.'): the signature and
    // the ciphertext are still found (looked for beside the sidecar first, then anywhere).
    let dir = tempfile::tempdir().unwrap();
    let mut s = store(dir.path());
    s.replicas.clear();
    let id = s.write(&sidecar("v1", 0, b"cipher-1"), b"cipher-1").unwrap();
    let ks = s.primary.join("v1/p12");
    fs::write(ks.join(format!("{id}.json-note")), b"x").unwrap();
    fs::write(ks.join(format!("{id}.age-note")), b"x").unwrap();
    let listing = s.list(None).unwrap();
    assert_eq!(listing.artifacts.len(), 1, "{:?}", listing.untrusted);
    assert!(listing.artifacts[0].signature.is_valid());
    assert!(listing.artifacts[0].copies[0].present);
    assert_eq!(listing.problems.len(), 2, "{:?}", listing.problems);
}

#[test]
fn the_quick_id_check_agrees_with_the_id_a_write_gives() {
    let sha = crate::digest::sha256_hex(b"x");
    let times = [
        chrono::Utc.with_ymd_and_hms(2026, 11, 22, 3, 15, 0).unwrap(),
        chrono::Utc.with_ymd_and_hms(2001, 1, 9, 23, 59, 59).unwrap(),
        chrono::Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 7).unwrap(),
        chrono::Utc.with_ymd_and_hms(12345, 1, 1, 0, 0, 0).unwrap(),
        chrono::Utc.with_ymd_and_hms(2026, 6, 30, 23, 59, 59).unwrap() + chrono::Duration::milliseconds(1500),
    ];
    for t in times {
        let id = artifact_id(t, &sha);
        assert!(is_artifact_id(&id, t, &sha), "{id}");
        assert!(
            !is_artifact_id(&id, t + chrono::Duration::seconds(1), &sha),
            "{id}"
        );
        assert!(!is_artifact_id(&id, t, &crate::digest::sha256_hex(b"y")), "{id}");
        assert!(!is_artifact_id(&format!("{id}0"), t, &sha));
        assert!(!is_artifact_id(&id[1..], t, &sha));
    }
    assert!(is_artifact_id("20261122T031500Z-00000000", times[0], "abc"));
}

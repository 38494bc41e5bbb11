//! The store trusts nothing planted in it: lock symlinks, loose roots, missing replica roots.

use super::*;
use crate::bundle::{FORMAT_VERSION, Manifest, Purpose};
use chrono::TimeZone;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::PermissionsExt;

fn sidecar(ciphertext: &[u8]) -> Sidecar {
    Sidecar {
        manifest: Manifest {
            format: FORMAT_VERSION,
            node: "v1".into(),
            keystore: "p12".into(),
            kind: "p12".into(),
            purpose: Purpose::Backup,
            role: None,
            created_at: chrono::Utc.with_ymd_and_hms(2026, 11, 22, 3, 15, 0).unwrap(),
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

fn store(dir: &Path, replica: &Path) -> Store {
    Store {
        lock_wait: std::time::Duration::from_secs(1),
        primary: dir.join("primary"),
        replicas: vec![replica.to_path_buf()],
        holds: Holds::Keystores,
        keys: super::tests::test_keys(),
    }
}

#[test]
fn a_missing_replica_root_is_never_created_and_repaired_once_back() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("mnt/offsite");
    let s = store(dir.path(), &replica);
    let id = s
        .write(&sidecar(b"c"), b"c")
        .expect("the primary copy is written");
    assert!(
        !replica.exists(),
        "an unmounted replica must not be filled underneath"
    );
    let listing = s.list(None).unwrap();
    let a = &listing.artifacts[0];
    assert_eq!(a.id, id);
    assert!(a.copies[0].present && !a.copies[1].present, "reported as missing");
    // Not even repair creates it.
    assert_eq!(s.repair_missing(a).unwrap(), 0);
    assert!(!replica.exists());
    // Mounted again: the next run repairs the copy.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&replica)
        .unwrap();
    assert_eq!(s.repair_missing(a).unwrap(), 1);
    assert!(replica.join(format!("v1/p12/{id}.age")).is_file());
    // The repaired copy carries the signature: it is trusted like the primary's.
    let listing = s.list(None).unwrap();
    let a = &listing.artifacts[0];
    assert!(
        a.copies.iter().all(|c| c.present && c.signature.is_valid()),
        "{:?}",
        a.copies
    );
    assert!(listing.untrusted.is_empty());
}

#[test]
fn a_loose_store_root_is_refused_with_the_chmod() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    fs::DirBuilder::new().mode(0o700).create(&replica).unwrap();
    let s = store(dir.path(), &replica);
    fs::DirBuilder::new().mode(0o700).create(&s.primary).unwrap();
    fs::set_permissions(&s.primary, fs::Permissions::from_mode(0o777)).unwrap();
    let err = s.write(&sidecar(b"c"), b"c").unwrap_err().to_string();
    assert!(err.contains("writable by group or others"), "{err}");
    assert!(
        err.contains(&format!("chmod 700 {}", s.primary.display())),
        "{err}"
    );
    assert!(
        fs::read_dir(&s.primary).unwrap().next().is_none(),
        "nothing written"
    );
    fs::set_permissions(&s.primary, fs::Permissions::from_mode(0o700)).unwrap();
    s.write(&sidecar(b"c"), b"c").unwrap();
}

#[test]
fn a_symlink_planted_as_the_lock_is_refused_and_its_target_kept() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    fs::DirBuilder::new().mode(0o700).create(&replica).unwrap();
    let s = store(dir.path(), &replica);
    fs::DirBuilder::new().mode(0o700).create(&s.primary).unwrap();
    let victim = dir.path().join("precious");
    fs::write(&victim, b"do not empty me").unwrap();
    std::os::unix::fs::symlink(&victim, s.primary.join(lock::LOCK_FILE)).unwrap();
    assert!(s.lock().is_err(), "a symlinked lock is not opened");
    assert_eq!(fs::read(&victim).unwrap(), b"do not empty me");
}

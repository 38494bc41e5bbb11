//! The sidecar index is a cache: every way it can go stale makes the listing read the sidecar
//! again and rewrite the index, and it is never trusted for removal.

use super::tests::{sidecar, store};
use super::*;
use std::os::unix::fs::FileExt;

/// A primary-only store with three artifacts of node v1, listed once (index built) and the
/// index aged past the racy window.
fn settled() -> (tempfile::TempDir, Store, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = store(dir.path());
    s.replicas.clear();
    for i in 0..3 {
        let c = format!("cipher-{i}");
        s.write(&sidecar("v1", i, c.as_bytes()), c.as_bytes()).unwrap();
    }
    let first = s.list(None).unwrap();
    assert_eq!(
        first.index,
        IndexStats {
            cached: 0,
            read: 3,
            written: 1
        }
    );
    let ks = s.primary.join("v1/p12");
    index::shift_built_at(&ks, 10);
    let second = s.list(None).unwrap();
    assert_eq!(
        second.index,
        IndexStats {
            cached: 3,
            read: 0,
            written: 0
        }
    );
    assert!(
        second.problems.is_empty(),
        "the index file is not a problem: {:?}",
        second.problems
    );
    assert_eq!(second.artifacts.len(), 3);
    (dir, s, ks)
}

/// The path of the `n`th artifact's sidecar (oldest first).
fn sidecar_path(s: &Store, n: usize) -> PathBuf {
    s.list(None).unwrap().artifacts[n].copies[0].sidecar_path.clone()
}

#[test]
fn a_settled_index_serves_every_sidecar_without_reading_it() {
    let (_dir, s, ks) = settled();
    // The same sidecars as parsed from disk.
    let listing = s.list(None).unwrap();
    for a in &listing.artifacts {
        assert_eq!(a.sidecar, read_sidecar(&a.copies[0].sidecar_path).unwrap());
    }
    assert!(ks.join(INDEX_FILE).is_file());
    assert_eq!(
        fs::metadata(ks.join(INDEX_FILE)).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_fresh_write_is_not_trusted_within_the_racy_window() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.write(&sidecar("v1", 0, b"c"), b"c").unwrap();
    s.list(None).unwrap();
    // Written just now: an in-place edit in the same tick would keep the stamp, so read again.
    let again = s.list(None).unwrap();
    assert_eq!(again.index.cached, 0);
    assert_eq!(again.index.read, 2, "primary and replica");
}

#[test]
fn another_writer_adding_an_artifact_is_seen() {
    let (_dir, s, ks) = settled();
    let other = Store { ..s.clone() };
    other.write(&sidecar("v1", 9, b"new"), b"new").unwrap();
    let listing = s.list(None).unwrap();
    assert_eq!(listing.artifacts.len(), 4);
    assert_eq!(
        listing.index,
        IndexStats {
            cached: 3,
            read: 1,
            written: 1
        }
    );
    let text = fs::read_to_string(ks.join(INDEX_FILE)).unwrap();
    assert_eq!(
        text.matches("\"name\":").count(),
        4,
        "the rewritten index has the new entry"
    );
}

#[test]
fn a_removed_sidecar_drops_out_of_the_index() {
    let (_dir, s, ks) = settled();
    let gone = sidecar_path(&s, 1);
    fs::remove_file(&gone).unwrap();
    let listing = s.list(None).unwrap();
    assert_eq!(listing.artifacts.len(), 2);
    assert_eq!(
        listing.index,
        IndexStats {
            cached: 2,
            read: 0,
            written: 1
        }
    );
    let name = gone.file_name().unwrap().to_str().unwrap();
    assert!(!fs::read_to_string(ks.join(INDEX_FILE)).unwrap().contains(name));
}

#[test]
fn a_sidecar_edited_in_place_with_its_mtime_reset_is_read_again() {
    let (_dir, s, _ks) = settled();
    let path = sidecar_path(&s, 0);
    let before = fs::metadata(&path).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let at = text.find("\"h:22\"").unwrap();
    // Same size, same inode, mtime put back: only the ctime tells.
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_at(b"\"h:99\"", at as u64).unwrap();
    f.set_modified(before.modified().unwrap()).unwrap();
    drop(f);
    let after = fs::metadata(&path).unwrap();
    assert_eq!(
        (after.len(), after.modified().unwrap()),
        (before.len(), before.modified().unwrap())
    );
    let listing = s.list(None).unwrap();
    assert_eq!(
        listing.index,
        IndexStats {
            cached: 2,
            read: 1,
            written: 1
        }
    );
    assert_eq!(listing.artifacts[0].sidecar.manifest.host, "h:99");
}

#[test]
fn a_replaced_sidecar_is_read_again() {
    let (_dir, s, ks) = settled();
    let path = sidecar_path(&s, 2);
    let mut sc = read_sidecar(&path).unwrap();
    sc.seen_unchanged_at = Some(chrono::Utc::now());
    let mut json = serde_json::to_vec_pretty(&sc).unwrap();
    json.push(b'\n');
    write_atomic(&ks, &path, &json).unwrap();
    let listing = s.list(None).unwrap();
    assert_eq!(
        listing.index,
        IndexStats {
            cached: 2,
            read: 1,
            written: 1
        }
    );
    assert_eq!(
        listing.artifacts[2].sidecar.seen_unchanged_at,
        sc.seen_unchanged_at
    );
}

#[test]
fn a_damaged_or_foreign_index_is_rebuilt() {
    let (_dir, s, ks) = settled();
    let index = ks.join(INDEX_FILE);
    let good = fs::read(&index).unwrap();
    // A crash while writing it (no fsync: a torn file), garbage, another version.
    let other_version =
        String::from_utf8(good.clone())
            .unwrap()
            .replacen("\"version\":2", "\"version\":99", 1);
    assert_ne!(other_version.as_bytes(), &good[..]);
    for bad in [&good[..good.len() / 2], b"\0\0\0\0", other_version.as_bytes()] {
        fs::write(&index, bad).unwrap();
        let listing = s.list(None).unwrap();
        assert_eq!(listing.artifacts.len(), 3);
        assert!(listing.problems.is_empty(), "{:?}", listing.problems);
        assert_eq!(
            listing.index,
            IndexStats {
                cached: 0,
                read: 3,
                written: 1
            }
        );
        let rebuilt: serde_json::Value = serde_json::from_slice(&fs::read(&index).unwrap()).unwrap();
        assert_eq!(rebuilt["entries"].as_array().unwrap().len(), 3);
    }
}

#[test]
fn a_crash_between_the_artifact_and_the_index_loses_nothing() {
    // Store::write never touches the index: an artifact written after the last listing (the
    // writer killed before any listing ran) is found by the next one.
    let (_dir, s, _ks) = settled();
    s.write(&sidecar("v1", 30, b"late"), b"late").unwrap();
    s.write(&sidecar("v2", 0, b"other node"), b"other node").unwrap();
    let listing = s.list(None).unwrap();
    assert_eq!(listing.artifacts.len(), 5);
    assert_eq!(
        listing.index,
        IndexStats {
            cached: 3,
            read: 2,
            written: 2
        }
    );
}

#[test]
fn a_forged_index_never_makes_prune_remove_a_different_artifact() {
    let (_dir, s, ks) = settled();
    // Someone who can write the index changes an entry's creation time (keeping the stamp).
    let index = ks.join(INDEX_FILE);
    let text = fs::read_to_string(&index).unwrap();
    let forged = text.replacen("2026-11-22T03:15:00Z", "2001-01-01T00:00:00Z", 1);
    assert_ne!(text, forged);
    fs::write(&index, forged).unwrap();
    let listing = s.list(None).unwrap();
    let victim = listing
        .artifacts
        .iter()
        .find(|a| a.sidecar.manifest.created_at.format("%Y").to_string() == "2001")
        .expect("the cache serves what it holds");
    let e = s.remove(victim).unwrap_err().to_string();
    assert!(e.contains("differs from the listed artifact"), "{e}");
    assert!(victim.copies[0].sidecar_path.is_file() && victim.copies[0].age_path.is_file());
    // The real sidecar removes fine.
    let real = Artifact {
        sidecar: read_sidecar(&victim.copies[0].sidecar_path).unwrap(),
        ..victim.clone()
    };
    s.remove(&real).unwrap();
    assert!(!real.copies[0].sidecar_path.exists());
}

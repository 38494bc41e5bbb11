//! The sidecar index is a cache: every way it can go stale makes the listing read the sidecar
//! again and rewrite the index, and it is never trusted for removal.

use super::tests::{sidecar, store, test_keys};
use super::*;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};

/// The agent's index key of `s`.
fn key(s: &Store) -> zeroize::Zeroizing<[u8; 32]> {
    s.keys.as_ref().unwrap().index_key()
}

/// The JSON body of an index file (after the MAC line).
fn body(path: &Path) -> serde_json::Value {
    let bytes = fs::read(path).unwrap();
    let at = bytes.iter().position(|b| *b == b'\n').unwrap();
    serde_json::from_slice(&bytes[at + 1..]).unwrap()
}

/// A file's stamp as the index records it.
fn stamp_json(path: &Path) -> serde_json::Value {
    let m = fs::metadata(path).unwrap();
    serde_json::json!([
        m.ino(),
        m.size(),
        m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        m.ctime() * 1_000_000_000 + m.ctime_nsec(),
    ])
}

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
    index::shift_built_at(&ks, &key(&s), 10);
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
    // The edit breaks the signature: the cached "valid" verdict went with the old entry.
    assert_eq!(listing.untrusted.len(), 1);
    assert_eq!(listing.untrusted[0].sidecar.manifest.host, "h:99");
    assert!(matches!(listing.untrusted[0].signature, Verdict::Bad(_)));
}

#[test]
fn a_replaced_sidecar_is_read_again() {
    let (_dir, s, ks) = settled();
    let path = sidecar_path(&s, 2);
    let mut sc = read_sidecar(&path).unwrap();
    sc.seen_unchanged_at = Some(chrono::Utc::now());
    let mut json = serde_json::to_vec_pretty(&sc).unwrap();
    json.push(b'\n');
    write_atomic(&ks, &crate::sign::sig_path(&path), &s.sign(&json).unwrap()).unwrap();
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
    assert!(listing.untrusted.is_empty(), "re-signed: {:?}", listing.untrusted);
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
            .replacen("\"version\":4", "\"version\":99", 1);
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
        let rebuilt = body(&index);
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
fn an_index_that_lies_never_makes_prune_remove_a_different_artifact() {
    let (_dir, s, ks) = settled();
    // Were an entry ever wrong (a bug; a forger lacks the key), removal still reads the disk.
    // The entry's host is changed (not its time or hash: an entry that disagrees with its
    // file name is not listed at all) and the index authenticated with the agent's key.
    index::edit_entries(&ks, &key(&s), &key(&s), |e| {
        let text = e["sidecar"].to_string();
        e["sidecar"] = serde_json::from_str(&text.replacen("h:22", "h:99", 1)).unwrap();
    });
    let listing = s.list(None).unwrap();
    let victim = listing
        .artifacts
        .iter()
        .find(|a| a.sidecar.manifest.host == "h:99")
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

#[test]
fn a_forged_cache_entry_never_makes_a_forgery_trusted() {
    let (_dir, s, ks) = settled();
    // The attacker can write the store: a forged sidecar (its old signature no longer
    // matches), and an index claiming it is validly signed, with the new files' stamps, under
    // a key of the attacker's own (they do not have the agent's signing key).
    let path = sidecar_path(&s, 1);
    let forged = fs::read_to_string(&path).unwrap().replace("h:22", "h:66");
    fs::write(&path, &forged).unwrap();
    let forged_sidecar: serde_json::Value = serde_json::from_str(&forged).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    let (sig_stamp, stamp) = (stamp_json(&crate::sign::sig_path(&path)), stamp_json(&path));
    let attacker = test_keys().unwrap().index_key();
    let edit = |e: &mut serde_json::Value| {
        if e["name"] == name.as_str() {
            e["stamp"] = stamp.clone();
            e["sig"] = sig_stamp.clone();
            e["verdict"] = serde_json::json!({"Valid": {"principal": "test"}});
            e["sidecar"] = forged_sidecar.clone();
        }
    };
    index::edit_entries(&ks, &key(&s), &attacker, edit);
    let listing = s.list(None).unwrap();
    assert_eq!(
        listing.index.cached, 0,
        "an index the agent did not write is ignored"
    );
    assert_eq!(listing.artifacts.len(), 2);
    assert_eq!(listing.untrusted.len(), 1);
    assert_eq!(listing.untrusted[0].sidecar.manifest.host, "h:66");
    assert!(matches!(listing.untrusted[0].signature, Verdict::Bad(_)));
    // The rebuilt index keeps saying so.
    index::shift_built_at(&ks, &key(&s), 10);
    let again = s.list(None).unwrap();
    assert_eq!(again.index.cached, 3);
    assert_eq!(again.untrusted.len(), 1);
    assert!(matches!(again.untrusted[0].signature, Verdict::Bad(_)));
}

#[test]
fn an_index_copied_from_another_directory_or_made_under_other_signers_is_ignored() {
    let (dir, mut s, ks) = settled();
    // Another keystore directory's (authentic) index copied over this one's.
    s.write(&sidecar("v2", 0, b"x"), b"x").unwrap();
    let other = s.primary.join("v2/p12");
    s.list(None).unwrap();
    fs::copy(other.join(INDEX_FILE), ks.join(INDEX_FILE)).unwrap();
    let listing = s.list(Some("v1")).unwrap();
    assert_eq!((listing.index.cached, listing.index.read), (0, 3));
    index::shift_built_at(&ks, &key(&s), 10);
    assert_eq!(s.list(Some("v1")).unwrap().index.cached, 3);
    // allowed_signers changed (a key added or removed): every cached verdict is dropped.
    let keys = s.keys.clone().unwrap();
    let extra = crate::sign::Signer::generate();
    let allowed = crate::sign::AllowedSigners::parse(&format!(
        "test {}\nother {}",
        keys.signer.public_line(),
        extra.public_line()
    ))
    .unwrap();
    s.keys = Some(std::sync::Arc::new(crate::sign::Keys {
        signer: {
            let path = dir.path().join("signing_key");
            fs::write(&path, keys.signer.to_openssh().as_bytes()).unwrap();
            crate::sign::Signer::load(&path, None).unwrap()
        },
        allowed,
    }));
    let listing = s.list(Some("v1")).unwrap();
    assert_eq!((listing.index.cached, listing.index.read), (0, 3));
    assert_eq!(listing.artifacts.len(), 3);
}

#[test]
fn an_edited_or_removed_signature_invalidates_its_entry() {
    let (_dir, s, _ks) = settled();
    let (a, b) = (sidecar_path(&s, 0), sidecar_path(&s, 1));
    // A's signature replaced by B's (well-formed, allowed key, other content).
    fs::copy(crate::sign::sig_path(&b), crate::sign::sig_path(&a)).unwrap();
    fs::remove_file(crate::sign::sig_path(&b)).unwrap();
    let listing = s.list(None).unwrap();
    assert_eq!(
        listing.index,
        IndexStats {
            cached: 1,
            read: 2,
            written: 1
        }
    );
    let word = |p: &Path| {
        listing
            .untrusted
            .iter()
            .find(|x| x.copies[0].sidecar_path == p)
            .map(|x| x.signature.word())
    };
    assert_eq!((word(&a), word(&b)), (Some("bad"), Some("unsigned")));
    assert_eq!(listing.artifacts.len(), 1);
}

#[test]
fn summaries_match_the_whole_sidecars_from_the_index_and_from_disk() {
    let (_dir, s, ks) = settled();
    // One edited (untrusted), served from the index and then read from disk.
    let path = sidecar_path(&s, 2);
    let text = fs::read_to_string(&path).unwrap().replace("h:22", "h:77");
    fs::write(&path, text).unwrap();
    let whole = s.list(None).unwrap();
    // Summaries have their own index: built by the first listing of them, then served.
    let first = s.list_of::<Summary>(None).unwrap();
    assert_eq!((first.index.read, first.index.written), (3, 1));
    index::shift_built_at_of(&ks, SUMMARY_INDEX_FILE, &key(&s), 10);
    let cached = s.list_of::<Summary>(None).unwrap();
    assert_eq!(cached.index.cached, 3);
    // Neither index is valid as the other (the MAC names the file): the index of whole
    // sidecars, settled, would otherwise serve its entries as summaries (unknown fields are
    // ignored).
    index::shift_built_at(&ks, &key(&s), 10);
    fs::copy(ks.join(INDEX_FILE), ks.join(SUMMARY_INDEX_FILE)).unwrap();
    let read = s.list_of::<Summary>(None).unwrap();
    assert_eq!((read.index.cached, read.index.read), (0, 3));
    assert!(read.problems.is_empty(), "{:?}", read.problems);
    for light in [cached, read] {
        let key = |a: &Artifact<Summary>| (a.id.clone(), a.signature.word(), a.copies.len());
        let whole_key = |a: &Artifact| (a.id.clone(), a.signature.word(), a.copies.len());
        for (w, l) in [
            (&whole.artifacts, &light.artifacts),
            (&whole.untrusted, &light.untrusted),
        ] {
            assert_eq!(
                w.iter().map(whole_key).collect::<Vec<_>>(),
                l.iter().map(key).collect::<Vec<_>>()
            );
            for (w, l) in w.iter().zip(l) {
                let (wm, lm) = (&w.sidecar.manifest, &l.sidecar.manifest);
                assert_eq!(
                    (&wm.node, &wm.kind, wm.created_at),
                    (&lm.node, &lm.kind, lm.created_at)
                );
                assert_eq!(w.sidecar.ciphertext_size, l.sidecar.ciphertext_size);
                let files: Vec<&String> = wm.files.iter().map(|f| &f.path).collect();
                assert_eq!(files, lm.files.iter().map(|f| &f.path).collect::<Vec<_>>());
            }
        }
        assert_eq!(light.untrusted.len(), 1);
    }
}

#[test]
fn removal_from_a_summary_checks_the_sidecar_on_disk() {
    // Retention plans from summaries; were a summary ever wrong about which artifact it is,
    // the sidecar read again under the lock decides, and nothing is removed.
    let (_dir, s, _ks) = settled();
    let mut listed = s.list_of::<Summary>(None).unwrap().artifacts;
    let mut wrong = listed.remove(0);
    wrong.sidecar.ciphertext_sha256 = "0".repeat(64);
    let e = s.remove(&wrong).unwrap_err().to_string();
    assert!(e.contains("differs from the listed artifact"), "{e}");
    assert!(wrong.copies[0].sidecar_path.is_file() && wrong.copies[0].age_path.is_file());
    let mut shifted = listed.remove(0);
    shifted.sidecar.manifest.created_at -= chrono::Duration::days(1);
    assert!(s.remove(&shifted).is_err());
    // A true summary removes its artifact, signature included.
    let right = s.list_of::<Summary>(None).unwrap().artifacts.remove(0);
    s.remove(&right).unwrap();
    assert!(!right.copies[0].sidecar_path.exists() && !right.copies[0].age_path.exists());
    assert!(!crate::sign::sig_path(&right.copies[0].sidecar_path).exists());
}

#[test]
fn a_signed_sidecar_copied_under_another_name_is_not_listed_or_counted() {
    // The file name is not signed. Copies of one old artifact under new names (all three files,
    // valid signature) would otherwise list as several artifacts and satisfy `keep_last` alone.
    let (_dir, s, ks) = settled();
    let a = s.list(None).unwrap().artifacts.remove(0);
    let forged_id = "20991231T235959Z-00000000";
    for (from, ext) in [
        (a.copies[0].age_path.clone(), ".age"),
        (a.copies[0].sidecar_path.clone(), ".json"),
        (crate::sign::sig_path(&a.copies[0].sidecar_path), ".json.sig"),
    ] {
        fs::copy(from, ks.join(format!("{forged_id}{ext}"))).unwrap();
    }
    for listing in [
        s.list(None).unwrap().problems,
        s.list_of::<Summary>(None).unwrap().problems,
    ] {
        assert!(
            listing
                .iter()
                .any(|p| p.message.contains("another name") && p.path.ends_with(format!("{forged_id}.json"))),
            "{listing:?}"
        );
    }
    let listed = s.list(None).unwrap();
    assert_eq!(listed.artifacts.len(), 3, "the copy is not an artifact");
    assert!(listed.artifacts.iter().all(|x| x.id != forged_id));
}

//! The group commit of a run's writes (see `batch.rs`): what is handed in ends listed, whole and
//! signed in every root; what cannot be written is reported against its ticket.

use super::batch::Batch;
use super::tests::{sidecar, store};
use super::*;

/// A sidecar of node `v1` made `i` seconds into the test's minute, for ciphertext `c`.
fn artifact(i: u32, c: &[u8]) -> Sidecar {
    let mut s = sidecar("v1", i % 60, c);
    s.manifest.created_at += chrono::Duration::minutes(i64::from(i / 60));
    s
}

#[test]
fn what_a_batch_commits_is_listed_whole_in_every_root_with_few_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let batch = Batch::start();
    let mut tickets = Vec::new();
    for i in 0..40u32 {
        let c = format!("cipher-{i}").into_bytes();
        tickets.push(s.write_batched(&batch, &artifact(i, &c), c).unwrap());
    }
    let committed = batch.finish();
    for (id, ticket) in &tickets {
        assert!(committed.result(*ticket).is_ok(), "{id}");
    }
    assert_eq!(committed.committed, 40);
    // Two syncs a round, a round for up to 32 artifacts (or 2 s of waiting): far fewer
    // syncs than the 40 x 2 roots x 5 a lone write each would make.
    assert!(committed.rounds <= 3, "{} rounds", committed.rounds);
    let listing = s.list(None).unwrap();
    assert!(listing.problems.is_empty(), "{:?}", listing.problems);
    assert_eq!(listing.artifacts.len(), 40);
    for a in &listing.artifacts {
        assert!(
            a.copies.iter().all(|c| c.present && c.signature.is_valid()),
            "{}",
            a.id
        );
        assert!(a.copies.iter().all(|c| s.copy_intact(a, c)), "{}", a.id);
    }
    // Nothing is left under a temp name.
    for root in [&s.primary, &s.replicas[0]] {
        let names: Vec<String> = fs::read_dir(root.join("v1/p12"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| temps::is_temp(n))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }
}

#[test]
fn a_batched_write_that_finds_its_id_taken_or_its_store_unwritable_is_reported_failed() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let taken = artifact(0, b"c");
    s.write(&taken, b"c").unwrap();
    // The blocked store: its primary lies under a regular file.
    let blocker = dir.path().join("a-file");
    fs::write(&blocker, b"").unwrap();
    let blocked = Store {
        primary: blocker.join("store"),
        replicas: Vec::new(),
        ..s.clone()
    };
    let batch = Batch::start();
    let (_, again) = s.write_batched(&batch, &taken, b"c".to_vec()).unwrap();
    let (_, fresh) = s
        .write_batched(&batch, &artifact(1, b"d"), b"d".to_vec())
        .unwrap();
    let (_, nowhere) = blocked
        .write_batched(&batch, &artifact(2, b"e"), b"e".to_vec())
        .unwrap();
    let committed = batch.finish();
    let e = committed.result(again).unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
    assert!(committed.result(fresh).is_ok());
    let e = committed.result(nowhere).unwrap_err().to_string();
    assert!(e.contains(&blocker.display().to_string()), "{e}");
    // The taken id's artifact is untouched; the fresh one is listed.
    let listing = s.list(None).unwrap();
    assert_eq!(listing.artifacts.len(), 2);
    assert!(listing.problems.is_empty(), "{:?}", listing.problems);
}

#[test]
fn a_batch_dropped_without_finish_still_commits_what_was_handed_in() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    {
        let batch = Batch::start();
        s.write_batched(&batch, &artifact(0, b"c"), b"c".to_vec())
            .unwrap();
    }
    assert_eq!(s.list(None).unwrap().artifacts.len(), 1);
}

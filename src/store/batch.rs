//! Group commit of a backup run's writes: durable at less than one sync per file.
//!
//! A lone write costs three file syncs and two directory syncs (see [`super::Store::write`]);
//! a 32-node run made hundreds of them, each a disk cache flush, and the backup waited on the
//! disk instead of on its nodes. In a run, [`super::Store::write_batched`] writes the `.age`,
//! `.json.sig` and sidecar under temp names without syncing, claims the id by renaming the
//! `.age` and `.json.sig` in (under the store lock, as a lone write does), and hands the
//! sidecar to this batch; the worker goes on with its next node at once. A committer thread
//! takes whatever has been handed in, and per file system:
//!
//! 1. `syncfs`: every staged file's data, the `.age` and `.sig` renames and new directories
//!    become durable together (one flush);
//! 2. renames each sidecar into place (only now is the artifact listed);
//! 3. `syncfs` again: the sidecars' renames are durable.
//!
//! Then it takes what arrived meanwhile. So a sidecar is never in place before its ciphertext
//! and signature are durable (the promise of a lone write), and a crash leaves at most temp
//! files and a `.age`/`.sig` without a sidecar (never listed; see `temps.rs`). The run reports
//! nothing as written before [`Batch::finish`] says its round succeeded.
//!
//! `syncfs` syncs the whole file system, other programs' dirty data included: on a store that
//! shares a busy file system a round can take longer, but it is still one flush for many files.

use super::StoreError;
use super::write::Staged;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

/// What identifies one artifact's hand-in, to ask [`Committed`] how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

/// A run's group commit: hand sidecars in with [`Batch::submit`] (through
/// [`super::Store::write_batched`]), then [`Batch::finish`] before reporting anything written.
pub struct Batch {
    shared: Arc<Shared>,
    committer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Batch")
    }
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Entry>,
    closing: bool,
    next_ticket: u64,
    /// The first failure of each ticket that failed.
    failures: HashMap<Ticket, StoreError>,
    /// Rounds run and sidecars renamed in (for tests and the bench).
    rounds: usize,
    committed: usize,
}

/// One sidecar waiting to be renamed in, in directory `dir`.
struct Entry {
    ticket: Ticket,
    dir: PathBuf,
    sidecar: Staged,
}

/// How a batch ended: which hand-ins failed (none listed: all durable).
#[derive(Debug, Default)]
pub struct Committed {
    failures: HashMap<Ticket, StoreError>,
    /// Commit rounds run.
    pub rounds: usize,
    /// Sidecars renamed in.
    pub committed: usize,
}

impl Committed {
    /// `Ok` when everything handed in with `ticket` is in place and durable.
    pub fn result(&self, ticket: Ticket) -> Result<(), &StoreError> {
        self.failures.get(&ticket).map_or(Ok(()), Err)
    }
}

impl Batch {
    /// Starts the committer thread.
    pub fn start() -> Batch {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let for_thread = Arc::clone(&shared);
        let committer = std::thread::Builder::new()
            .name("coldkeep-commit".into())
            .spawn(move || commit_loop(&for_thread))
            .expect("spawn the commit thread");
        Batch {
            shared,
            committer: Some(committer),
        }
    }

    /// A ticket for one artifact's hand-ins (one per root).
    pub(super) fn ticket(&self) -> Ticket {
        let mut q = self.lock();
        q.next_ticket += 1;
        Ticket(q.next_ticket)
    }

    /// Hands in a staged sidecar for directory `dir`, whose `.age` and `.sig` are in place.
    pub(super) fn submit(&self, ticket: Ticket, dir: PathBuf, sidecar: Staged) {
        let mut q = self.lock();
        q.pending.push(Entry { ticket, dir, sidecar });
        self.shared.wake.notify_one();
    }

    /// Records a failure of `ticket` found before its hand-in (a root that could not be written).
    pub(super) fn fail(&self, ticket: Ticket, error: StoreError) {
        self.lock().failures.entry(ticket).or_insert(error);
    }

    /// Commits everything handed in and stops the committer; says how each hand-in ended.
    pub fn finish(mut self) -> Committed {
        self.close()
    }

    fn close(&mut self) -> Committed {
        self.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(committer) = self.committer.take()
            && committer.join().is_err()
        {
            tracing::error!("the commit thread panicked");
        }
        let mut q = self.lock();
        // Anything the thread left (it panicked): not committed, so failed; the staged temp
        // files are removed as their entries drop.
        for e in std::mem::take(&mut q.pending) {
            q.failures.entry(e.ticket).or_insert(StoreError::Invalid {
                path: e.dir,
                message: "not committed: the commit thread stopped".into(),
            });
        }
        Committed {
            failures: std::mem::take(&mut q.failures),
            rounds: q.rounds,
            committed: q.committed,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Batch {
    /// A batch dropped without [`Batch::finish`] (a panic in the run) still commits what was
    /// handed in: those artifacts are whole.
    fn drop(&mut self) {
        if self.committer.is_some() {
            let _ = self.close();
        }
    }
}

/// The committer: a round for whatever is pending, until closed and drained.
fn commit_loop(shared: &Shared) {
    loop {
        let entries = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            while q.pending.is_empty() && !q.closing {
                q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            if q.pending.is_empty() {
                return;
            }
            std::mem::take(&mut q.pending)
        };
        let (failures, committed) = round(entries);
        let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.rounds += 1;
        q.committed += committed;
        for (ticket, e) in failures {
            q.failures.entry(ticket).or_insert(e);
        }
    }
}

/// One round: sync each file system, rename the sidecars in, sync again (see the module doc).
/// Returns the failures and how many sidecars went in.
fn round(entries: Vec<Entry>) -> (Vec<(Ticket, StoreError)>, usize) {
    let mut failures = Vec::new();
    // One directory per file system to sync through (by device), and each entry's device.
    let mut through: HashMap<u64, PathBuf> = HashMap::new();
    let mut ready = Vec::new();
    for e in entries {
        match device(&e.dir) {
            Ok(dev) => {
                through.entry(dev).or_insert_with(|| e.dir.clone());
                ready.push((dev, e));
            }
            Err(err) => failures.push((e.ticket, err)),
        }
    }
    let synced = sync_all(&through);
    let mut renamed: HashMap<u64, PathBuf> = HashMap::new();
    let mut committed = Vec::new();
    for (dev, e) in ready {
        if let Some(Err(err)) = synced.get(&dev) {
            failures.push((e.ticket, clone_error(err)));
            continue;
        }
        match e.sidecar.commit() {
            Ok(()) => {
                renamed.entry(dev).or_insert_with(|| e.dir.clone());
                committed.push((dev, e.ticket));
            }
            Err(err) => failures.push((e.ticket, err)),
        }
    }
    let synced = sync_all(&renamed);
    let mut done = 0;
    for (dev, ticket) in committed {
        match synced.get(&dev) {
            Some(Err(err)) => failures.push((ticket, clone_error(err))),
            _ => done += 1,
        }
    }
    (failures, done)
}

/// `syncfs` on each file system, through one of its directories.
fn sync_all(through: &HashMap<u64, PathBuf>) -> HashMap<u64, Result<(), StoreError>> {
    through.iter().map(|(dev, dir)| (*dev, syncfs(dir))).collect()
}

/// The device of the file system `dir` is on.
fn device(dir: &std::path::Path) -> Result<u64, StoreError> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).map(|m| m.dev()).map_err(super::io(dir))
}

/// Syncs the whole file system `dir` is on: data, inodes and directories, one flush.
pub(super) fn syncfs(dir: &std::path::Path) -> Result<(), StoreError> {
    use std::os::fd::AsRawFd;
    let handle = std::fs::File::open(dir).map_err(super::io(dir))?;
    // SAFETY: syncfs takes an open descriptor and touches no memory of ours.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(super::io(dir)(std::io::Error::last_os_error()))
    }
}

/// A copy of an error (one failed sync fails every entry on that file system).
fn clone_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Io { path, source } => StoreError::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        StoreError::Invalid { path, message } => StoreError::Invalid {
            path: path.clone(),
            message: message.clone(),
        },
    }
}

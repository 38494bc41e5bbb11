//! Group commit of a backup run's new artifacts: durable at less than one sync per file, and
//! off the jobs' way.
//!
//! A lone write costs three file syncs and two directory syncs ([`super::Store::write`]); a
//! 32-node run made hundreds of them, each a disk cache flush, and its jobs waited on the disk
//! (creating files on this VM's ext4 costs as much as syncing them) rather than on their nodes.
//! In a run, a job hands each sealed artifact to the run's batch
//! ([`super::Store::write_batched`]) and goes on with its next node at once. A committer thread
//! writes every root's `.age`, `.json.sig` and sidecar under temp names as artifacts come in,
//! without syncing, and once [`ROUND_ARTIFACTS`] are written (or the oldest has waited
//! [`ROUND_WAIT`], or the run is over) commits them in one round:
//!
//! 1. under each store's lock (once per round) claims every id: renames the `.age` and `.sig`
//!    in (another writer of the same id then refuses, as for a lone write);
//! 2. `syncfs`, once per file system: every file's data, the renames and new directories are
//!    durable together, with one flush;
//! 3. renames each sidecar into place (only now is the artifact listed);
//! 4. `syncfs` again: the sidecars' renames are durable.
//!
//! A sidecar is never in place before its ciphertext and signature are durable (the promise of
//! a lone write); a crash before a round leaves only temp files (removed by the next writer,
//! see `temps.rs`), one during a round at most a `.age`/`.sig` without a sidecar (never
//! listed); and the run reports nothing as written before [`Batch::finish`] says its round
//! succeeded. What waits in the queue is ciphertext only, at most [`MAX_PENDING`] bytes of it
//! (a job that would pass that waits for the committer).
//!
//! `syncfs` syncs the whole file system, other programs' dirty data included: on a store that
//! shares a busy file system a round takes longer, but it is still one flush for many files.

use super::write::{Prepared, Staged, StagedCopy, claim};
use super::{Store, StoreError};
use crate::bundle::Sidecar;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

/// Ciphertext waiting to be written, at most (one artifact alone may be larger).
pub const MAX_PENDING: usize = 64 << 20;

/// Artifacts written before a round commits them: two syncs for this many.
pub const ROUND_ARTIFACTS: usize = 32;

/// How long a written artifact waits for its round at most (a slow run still commits as it goes).
pub const ROUND_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What identifies one artifact handed in, to ask [`Committed`] how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

/// A run's group commit: hand artifacts in through [`super::Store::write_batched`], then call
/// [`Batch::finish`] before reporting anything written.
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
    /// Wakes the committer: something was handed in, or the batch closes.
    wake: Condvar,
    /// Wakes jobs waiting for room in the queue.
    room: Condvar,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Job>,
    pending_bytes: usize,
    closing: bool,
    next_ticket: u64,
    /// The first failure of each ticket that failed.
    failures: HashMap<Ticket, StoreError>,
    rounds: usize,
    committed: usize,
}

/// One artifact handed in: the store to write it to, and its bytes.
struct Job {
    ticket: Ticket,
    store: Store,
    prepared: Prepared,
    ciphertext: Vec<u8>,
}

/// How a batch ended: which hand-ins failed (none listed: all in place and durable).
#[derive(Debug, Default)]
pub struct Committed {
    failures: HashMap<Ticket, StoreError>,
    /// Commit rounds run.
    pub rounds: usize,
    /// Artifacts committed in every root they were written to.
    pub committed: usize,
}

impl Committed {
    /// `Ok` when the artifact handed in with `ticket` is in place and durable in every root it
    /// was written to.
    pub fn result(&self, ticket: Ticket) -> Result<(), &StoreError> {
        self.failures.get(&ticket).map_or(Ok(()), Err)
    }
}

impl Store {
    /// Hands the artifact to a backup run's `batch`, which writes it into every root as
    /// [`Store::write`] does, but grouped with the run's other artifacts (see [the module doc](self)):
    /// it is neither in place nor durable until the batch has committed it. Returns the id and
    /// the ticket to ask [`Committed`] how its write ended.
    pub fn write_batched(
        &self,
        batch: &Batch,
        sidecar: &Sidecar,
        ciphertext: Vec<u8>,
    ) -> Result<(String, Ticket), StoreError> {
        let p = self.prepare(sidecar)?;
        let id = p.id.clone();
        Ok((id, batch.submit(self.clone(), p, ciphertext)))
    }
}

impl Batch {
    /// Starts the committer thread.
    pub fn start() -> Batch {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            room: Condvar::new(),
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

    /// Hands in an artifact for `store`; waits while the queue holds [`MAX_PENDING`] bytes.
    pub(super) fn submit(&self, store: Store, prepared: Prepared, ciphertext: Vec<u8>) -> Ticket {
        let mut q = self.lock();
        while !q.pending.is_empty() && q.pending_bytes + ciphertext.len() > MAX_PENDING {
            q = self.shared.room.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        q.next_ticket += 1;
        let ticket = Ticket(q.next_ticket);
        q.pending_bytes += ciphertext.len();
        q.pending.push(Job {
            ticket,
            store,
            prepared,
            ciphertext,
        });
        self.shared.wake.notify_one();
        ticket
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
        // Anything the thread left (it panicked) was not written: failed.
        for job in std::mem::take(&mut q.pending) {
            q.failures.entry(job.ticket).or_insert(StoreError::Invalid {
                path: job.store.primary.clone(),
                message: "not written: the commit thread stopped".into(),
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

/// One root's copy written under temp names, waiting for its round.
struct Written {
    ticket: Ticket,
    store: Store,
    root: PathBuf,
    copy: StagedCopy,
}

/// The committer: writes what is handed in as it comes, commits in rounds (see the module doc),
/// until closed and drained.
fn commit_loop(shared: &Shared) {
    let mut written: Vec<Written> = Vec::new();
    let mut tickets: std::collections::HashSet<Ticket> = std::collections::HashSet::new();
    let mut oldest: Option<std::time::Instant> = None;
    loop {
        let (jobs, closing) = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if !q.pending.is_empty() || q.closing || written.len() >= ROUND_ARTIFACTS {
                    break;
                }
                match oldest.map(|t| ROUND_WAIT.saturating_sub(t.elapsed())) {
                    Some(left) if left.is_zero() => break,
                    Some(left) => {
                        q = shared
                            .wake
                            .wait_timeout(q, left)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                    None => q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner()),
                }
            }
            q.pending_bytes = 0;
            shared.room.notify_all();
            (std::mem::take(&mut q.pending), q.closing)
        };
        let mut failures = Vec::new();
        for job in &jobs {
            tickets.insert(job.ticket);
            for root in job.store.roots() {
                match job.store.stage_copy(root, &job.prepared, &job.ciphertext, false) {
                    Ok(Some(copy)) => written.push(Written {
                        ticket: job.ticket,
                        store: job.store.clone(),
                        root: root.clone(),
                        copy,
                    }),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(root = %root.display(), "store write failed: {e}");
                        failures.push((job.ticket, e));
                    }
                }
            }
        }
        drop(jobs);
        if !written.is_empty() {
            oldest.get_or_insert_with(std::time::Instant::now);
        }
        let due = written.len() >= ROUND_ARTIFACTS
            || oldest.is_some_and(|t| t.elapsed() >= ROUND_WAIT)
            || (closing && !written.is_empty());
        let mut rounds = 0;
        if due {
            failures.extend(round(std::mem::take(&mut written)));
            oldest = None;
            rounds = 1;
        }
        let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.rounds += rounds;
        for (ticket, e) in failures {
            q.failures.entry(ticket).or_insert(e);
        }
        if due {
            let failed = tickets.iter().filter(|t| q.failures.contains_key(t)).count();
            q.committed += tickets.len() - failed;
            tickets.clear();
        }
        if closing && q.pending.is_empty() && written.is_empty() {
            return;
        }
    }
}

/// One round (see the module doc); returns the failures (a ticket may fail in several roots).
fn round(written: Vec<Written>) -> Vec<(Ticket, StoreError)> {
    let mut failures = Vec::new();
    let mut fail = |ticket: Ticket, root: &Path, e: StoreError| {
        tracing::error!(root = %root.display(), "store write failed: {e}");
        failures.push((ticket, e));
    };
    // 1. Every id claimed under its store's lock, once per store.
    let mut by_store: Vec<(Store, Vec<Written>)> = Vec::new();
    for w in written {
        match by_store.iter_mut().find(|(s, _)| s.primary == w.store.primary) {
            Some((_, list)) => list.push(w),
            None => by_store.push((w.store.clone(), vec![w])),
        }
    }
    let mut sidecars: Vec<(Ticket, PathBuf, Staged)> = Vec::new();
    for (store, copies) in by_store {
        let lock = match store.lock() {
            Ok(lock) => lock,
            Err(e) => {
                for w in copies {
                    fail(w.ticket, &w.root, clone_error(&e));
                }
                continue;
            }
        };
        for w in copies {
            match claim(w.copy) {
                Ok((dir, sidecar)) => sidecars.push((w.ticket, dir, sidecar)),
                Err(e) => fail(w.ticket, &w.root, e),
            }
        }
        drop(lock);
    }
    // 2. One sync per file system makes all of it durable.
    let synced = sync_file_systems(sidecars.iter().map(|(_, dir, _)| dir.as_path()));
    // 3. The sidecars go in.
    let mut placed = Vec::new();
    for (ticket, dir, sidecar) in sidecars {
        match synced.get(&dir) {
            Some(Err(e)) => fail(ticket, &dir, clone_error(e)),
            _ => match sidecar.commit() {
                Ok(()) => placed.push((ticket, dir)),
                Err(e) => fail(ticket, &dir, e),
            },
        }
    }
    // 4. And their renames are durable.
    let synced = sync_file_systems(placed.iter().map(|(_, dir)| dir.as_path()));
    for (ticket, dir) in placed {
        if let Some(Err(e)) = synced.get(&dir) {
            fail(ticket, &dir, clone_error(e));
        }
    }
    failures
}

/// Syncs the file system of each of `dirs`, once per file system; each directory's result.
fn sync_file_systems<'a>(dirs: impl Iterator<Item = &'a Path>) -> HashMap<PathBuf, Result<(), StoreError>> {
    use std::os::unix::fs::MetadataExt;
    let mut by_device: HashMap<u64, Result<(), StoreError>> = HashMap::new();
    let mut out = HashMap::new();
    for dir in dirs {
        if out.contains_key(dir) {
            continue;
        }
        let result = match std::fs::metadata(dir) {
            Ok(m) => by_device
                .entry(m.dev())
                .or_insert_with(|| syncfs(dir))
                .as_ref()
                .map(|_| ())
                .map_err(clone_error),
            Err(source) => Err(StoreError::Io {
                path: dir.to_path_buf(),
                source,
            }),
        };
        out.insert(dir.to_path_buf(), result);
    }
    out
}

/// Syncs the whole file system `dir` is on: data, inodes and directories, one flush.
fn syncfs(dir: &Path) -> Result<(), StoreError> {
    use std::os::fd::AsRawFd;
    let handle = std::fs::File::open(dir).map_err(super::io(dir))?;
    // SAFETY: syncfs takes an open descriptor and touches no memory of ours.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(super::io(dir)(std::io::Error::last_os_error()))
    }
}

/// A copy of an error (one failed sync fails every artifact on that file system).
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

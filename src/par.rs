//! An ordered parallel map with a bounded window. Listing a large store is one small job per
//! keystore directory (stat, read its index, parse); doing them on every core while handing
//! the results on in order lets a caller stream them out (`list --json` of 100,000 artifacts),
//! so memory is bounded by the window rather than by the store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, mpsc};

/// Worker threads for store listings: the cores (at most 8), or the config's `jobs` when that
/// is more (see [`set_width`]). Asked once: the core count reads cgroup files each time (it
/// showed in the profile of a large listing).
pub fn threads() -> usize {
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(8));
    cores.max(WIDTH.load(Ordering::Relaxed))
}

static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
static WIDTH: AtomicUsize = AtomicUsize::new(0);

/// Lists the store `jobs` wide (at most 32): a first listing reads every sidecar and its
/// signature, from a disk that may be cold (a store restored from tape, a replica), and more
/// reads in flight than cores keeps the disk busy; with a warm cache it costs little more.
pub fn set_width(jobs: usize) {
    WIDTH.store(jobs.min(32), Ordering::Relaxed);
}

thread_local! {
    /// Set on [`map_ordered`]'s workers: work they do is already spread over the threads.
    static IN_WORKER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is one of [`map_ordered`]'s workers (nested work then stays on it:
/// threads of its own would only compete with the other workers).
pub fn in_worker() -> bool {
    IN_WORKER.with(std::cell::Cell::get)
}

/// Calls `f` on every item on up to [`threads`] threads and `sink` on each result in item
/// order, on the calling thread as results come in. Workers stay at most `window` items ahead
/// of `sink`, so memory is bounded by the window. A panic in `f` is re-raised on the calling
/// thread; a panic in `sink` stops the workers.
pub fn map_ordered<I: Sync, T: Send>(
    items: &[I],
    window: usize,
    f: impl Fn(&I) -> T + Sync,
    sink: impl FnMut(T),
) {
    map_ordered_on(threads(), items, window, f, sink);
}

/// [`map_ordered`] on `threads` threads (the tests use several whatever the machine has).
fn map_ordered_on<I: Sync, T: Send>(
    threads: usize,
    items: &[I],
    window: usize,
    f: impl Fn(&I) -> T + Sync,
    mut sink: impl FnMut(T),
) {
    let threads = threads.min(items.len());
    if threads <= 1 {
        items.iter().for_each(|i| sink(f(i)));
        return;
    }
    let window = window.max(threads);
    let next = AtomicUsize::new(0);
    // How many results `sink` has had: a worker starts item i only once i < taken + window.
    let taken = (Mutex::new(0usize), Condvar::new());
    let (tx, rx) = mpsc::channel::<(usize, std::thread::Result<T>)>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, taken, f) = (&next, &taken, &f);
            scope.spawn(move || {
                IN_WORKER.with(|w| w.set(true));
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let mut t = taken.0.lock().unwrap_or_else(|e| e.into_inner());
                    while i >= *t + window {
                        t = taken.1.wait(t).unwrap_or_else(|e| e.into_inner());
                    }
                    drop(t);
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(item)));
                    // The caller has stopped (a panic): nothing more to do.
                    if tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let rx = rx;
        // However the loop ends, waiting workers are let go (then find `rx` gone and stop).
        let _release = Release(&taken);
        let mut pending = std::collections::BTreeMap::new();
        let mut want = 0;
        for (i, result) in rx.iter() {
            match result {
                Ok(t) => pending.insert(i, t),
                Err(panic) => std::panic::resume_unwind(panic),
            };
            while let Some(t) = pending.remove(&want) {
                sink(t);
                want += 1;
            }
            *taken.0.lock().unwrap_or_else(|e| e.into_inner()) = want;
            taken.1.notify_all();
        }
    });
}

/// Lets every waiting worker of [`map_ordered`] go when dropped.
struct Release<'a>(&'a (Mutex<usize>, Condvar));

impl Drop for Release<'_> {
    fn drop(&mut self) {
        *self.0.0.lock().unwrap_or_else(|e| e.into_inner()) = usize::MAX / 2;
        self.0.1.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_item_order_whatever_order_the_threads_finish_in() {
        let items: Vec<u64> = (0..1000).collect();
        let mut seen = Vec::new();
        // Early items take longest, so later ones finish first on other threads.
        map_ordered_on(
            4,
            &items,
            64,
            |i| {
                let spin = (1000 - i) * 50;
                (0..spin).fold(*i, |a, b| std::hint::black_box(a ^ b)) ^ (0..spin).fold(0, |a, b| a ^ b)
            },
            |r| seen.push(r),
        );
        assert_eq!(seen, items);
    }

    #[test]
    fn workers_never_run_more_than_the_window_ahead_of_the_sink() {
        let items: Vec<usize> = (0..500).collect();
        let started = AtomicUsize::new(0);
        let mut taken = 0;
        map_ordered_on(
            4,
            &items,
            16,
            |i| {
                started.fetch_add(1, Ordering::SeqCst);
                *i
            },
            |i| {
                // Item i is in hand, so at most i + 1 + window items can have started.
                assert!(started.load(Ordering::SeqCst) <= i + 1 + 16);
                assert_eq!(i, taken);
                taken += 1;
            },
        );
        assert_eq!(taken, 500);
    }

    #[test]
    fn a_panic_in_the_sink_stops_the_workers_instead_of_hanging() {
        let items: Vec<usize> = (0..10_000).collect();
        let caught = std::panic::catch_unwind(|| {
            map_ordered_on(4, &items, 8, |i| *i, |i| assert!(i < 20, "stop"));
        });
        assert!(caught.is_err());
    }

    #[test]
    fn a_panic_in_a_worker_reaches_the_caller() {
        let items = [1, 2, 3, 4];
        let caught = std::panic::catch_unwind(|| {
            map_ordered_on(4, &items, 4, |i| assert_ne!(*i, 3, "boom"), |_| {});
        });
        assert!(caught.is_err());
    }
}

//! A bound on the memory keystore backups hold at once, across parallel jobs.
//!
//! A backup holds a keystore in memory several times over (fetched bytes, the tar, the age
//! ciphertext): about 3.4x its size was measured for Acra, so [`PEAK_FACTOR`] is 4. With the
//! default Acra cap (64 MiB) and 8 jobs that is ~2 GiB at worst, where the Kubernetes manifest
//! allows 256 Mi. Each keystore backup therefore reserves `PEAK_FACTOR x max_size` from one
//! process-wide [`Budget`] before fetching; past the budget, jobs wait for each other instead of
//! running the pod out of memory. The budget is half the memory limit of the process's cgroup
//! (the pod's `resources.limits.memory`), or unbounded where there is none.

use std::sync::{Condvar, Mutex, OnceLock};

/// Peak bytes held per byte of keystore (3.4x measured, rounded up).
pub const PEAK_FACTOR: u64 = 4;

/// Env override of the memory limit in bytes (e.g. to run `config check` outside the pod
/// against the manifest's limit: `COLDKEEP_MEMORY_LIMIT=268435456`).
pub const LIMIT_ENV: &str = "COLDKEEP_MEMORY_LIMIT";

/// The memory limit this process runs under: [`LIMIT_ENV`], else the cgroup v2 `memory.max`
/// (v1 `memory.limit_in_bytes`); `None` when unlimited or unknown.
pub fn limit() -> Option<u64> {
    if let Some(v) = std::env::var(LIMIT_ENV).ok().and_then(|v| v.trim().parse().ok()) {
        return Some(v);
    }
    for file in [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ] {
        if let Ok(text) = std::fs::read_to_string(file)
            && let Ok(v) = text.trim().parse::<u64>()
            // cgroup v1 reports "unlimited" as a huge page-aligned number.
            && v < (1 << 60)
        {
            return Some(v);
        }
    }
    None
}

/// Worst-case bytes held when `jobs` keystores of up to `max_size` bytes are backed up at once.
pub fn worst_case(jobs: usize, max_size: u64) -> u64 {
    (jobs as u64).saturating_mul(PEAK_FACTOR).saturating_mul(max_size)
}

/// Bytes in flight, shared by all jobs of the process.
#[derive(Debug)]
pub struct Budget {
    total: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

/// A held reservation; returned to the budget on drop.
#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a Budget,
    bytes: u64,
}

impl Budget {
    /// A budget of `total` bytes.
    pub fn new(total: u64) -> Budget {
        Budget {
            total,
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// The process-wide budget: half the memory limit, unbounded without one.
    pub fn global() -> &'static Budget {
        static GLOBAL: OnceLock<Budget> = OnceLock::new();
        GLOBAL.get_or_init(|| Budget::new(limit().map_or(u64::MAX, |l| l / 2)))
    }

    /// Waits until `bytes` (at most the whole budget, so a large keystore runs alone rather
    /// than never) are free, and holds them.
    pub fn reserve(&self, bytes: u64) -> Reservation<'_> {
        let bytes = bytes.min(self.total);
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while self.total - *used < bytes {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += bytes;
        Reservation { budget: self, bytes }
    }

    /// Like [`Budget::reserve`] without waiting: `None` when the bytes are not free now.
    pub fn try_reserve(&self, bytes: u64) -> Option<Reservation<'_>> {
        let bytes = bytes.min(self.total);
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        (self.total - *used >= bytes).then(|| {
            *used += bytes;
            Reservation { budget: self, bytes }
        })
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|e| e.into_inner());
        *used -= self.bytes;
        self.budget.freed.notify_all();
    }
}

/// Lets glibc's allocator keep up to 8 MiB of freed memory per arena before giving it back to
/// the kernel (the default gives back anything past 128 KiB at once). Listing a store frees and
/// allocates buffers of 50-100 KiB per keystore directory on each worker thread (an index
/// file, a part of the output); with the default, each such free trimmed the thread's heap
/// (`madvise`) and the next allocation faulted the pages back in: 10-15% of `list --json` of
/// 100,000 artifacts, measured with `GLIBC_TUNABLES=glibc.malloc.trim_threshold=8388608`
/// (peak RSS unchanged at 15 MiB). Freed buffers that held secrets were wiped before (see
/// `zeroize` in the fetch and bundle paths), and core dumps are off (see [`crate::harden`]).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called once at start, before threads.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_past_the_budget_wait_for_a_release() {
        let b = Budget::new(100);
        let first = b.reserve(60);
        assert!(b.try_reserve(50).is_none(), "60 + 50 > 100");
        let second = b.try_reserve(40).expect("60 + 40 fits");
        drop(first);
        assert!(b.try_reserve(60).is_some());
        drop(second);
        // Larger than the budget: clamped, so it runs alone instead of never.
        let big = b.reserve(1_000);
        assert!(b.try_reserve(1).is_none());
        drop(big);
    }

    #[test]
    fn a_blocked_reservation_proceeds_when_memory_is_freed() {
        let b = std::sync::Arc::new(Budget::new(10));
        let held = b.reserve(10);
        let (tx, rx) = std::sync::mpsc::channel();
        let b2 = b.clone();
        let t = std::thread::spawn(move || {
            let _r = b2.reserve(5);
            tx.send(()).unwrap();
        });
        // Still blocked while the budget is full (it cannot have sent).
        assert!(rx.try_recv().is_err());
        drop(held);
        rx.recv().unwrap();
        t.join().unwrap();
    }

    #[test]
    fn the_worst_case_of_the_defaults_exceeds_a_256_mi_pod() {
        assert!(worst_case(8, crate::config::DEFAULT_ACRA_MAX_SIZE) > 256 << 20);
        assert!(worst_case(1, crate::config::DEFAULT_P12_MAX_SIZE) < 256 << 20);
    }
}

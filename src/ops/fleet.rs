//! Running per-node work in parallel, bounded by `jobs`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The shard (0..count) a node belongs to: a stable hash of its name (SHA-256, first 8 bytes), the
/// same on every machine and in every version, so sharded runs partition the fleet exactly.
pub fn shard_of(name: &str, count: u32) -> u32 {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32
}

/// Applies `work` to every item on up to `jobs` threads and returns the results in input order.
///
/// Each worker takes the next item when it is free, so at most `jobs` items are in flight and
/// memory stays bounded by `jobs`, not by the number of items.
pub fn run_parallel<T, R, F>(items: &[T], jobs: usize, work: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let workers = jobs.clamp(1, items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = work(item);
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every item was processed"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn keeps_order_and_bounds_concurrency() {
        let in_flight = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let items: Vec<u32> = (0..50).collect();
        let out = run_parallel(&items, 3, |&i| {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::yield_now();
            in_flight.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 3);
    }

    #[test]
    fn shards_partition_the_fleet_exactly() {
        let names: Vec<String> = (0..1000).map(|i| format!("validator-{i}")).collect();
        for count in [1u32, 2, 3, 7, 16] {
            let mut sizes = vec![0usize; count as usize];
            for n in &names {
                let s = shard_of(n, count);
                assert!(s < count);
                assert_eq!(s, shard_of(n, count), "stable");
                sizes[s as usize] += 1;
            }
            assert_eq!(
                sizes.iter().sum::<usize>(),
                names.len(),
                "every node in exactly one shard"
            );
            // Reasonably even: no shard gets less than half its share.
            assert!(
                sizes.iter().all(|&n| n * 2 * count as usize >= names.len()),
                "{sizes:?}"
            );
        }
        // A known value, so a change of the hash (which would move nodes between shards) shows.
        assert_eq!(shard_of("validator-3", 4), 3);
    }

    #[test]
    fn empty_input() {
        let out: Vec<u8> = run_parallel(&Vec::<u8>::new(), 4, |&x| x);
        assert!(out.is_empty());
    }
}

//! Process hardening: no core dumps, plaintext buffers locked in memory where the limit allows.
//!
//! coldkeep holds decrypted keys (a restore's P12, the node's current one) in memory. A core
//! file of an aborted run would put them on local disk in plaintext, so at start the process
//! makes itself non-dumpable (`PR_SET_DUMPABLE` 0, which also keeps other processes of the same
//! user from ptrace-attaching) and sets `RLIMIT_CORE` to 0. Both are set by the process itself,
//! so they hold however it is started (systemd, cron, Kubernetes, a shell).

use std::sync::atomic::{AtomicBool, Ordering};

/// What [`at_start`] achieved, read back from the kernel (not assumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardening {
    /// `prctl(PR_GET_DUMPABLE)` after the call: 0 means no core dump and no ptrace by peers.
    pub dumpable: i32,
    /// The soft and hard `RLIMIT_CORE` after the call (0 and 0 when it worked).
    pub core_limit: (u64, u64),
}

/// Disables core dumps for this process. Call first thing in `main`, before any secret is read.
/// Failures are returned in the readback, never fatal: the values say what holds.
pub fn at_start() -> Hardening {
    // SAFETY: plain syscalls with constant arguments and a valid pointer to a local struct.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &zero);
    }
    status()
}

/// The current dumpable flag and core limit of this process.
pub fn status() -> Hardening {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prctl without pointers; getrlimit writes into the local struct.
    let (dumpable, ok) = unsafe {
        (
            libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0),
            libc::getrlimit(libc::RLIMIT_CORE, &mut lim) == 0,
        )
    };
    Hardening {
        dumpable,
        core_limit: if ok {
            (lim.rlim_cur, lim.rlim_max)
        } else {
            (u64::MAX, u64::MAX)
        },
    }
}

static LOCK_FAILURE_LOGGED: AtomicBool = AtomicBool::new(false);

/// Locks the pages of a plaintext buffer in RAM (`mlock`), so they are never written to swap.
/// Best effort: `RLIMIT_MEMLOCK` is often small, and a failure is logged once (at `-v`) and
/// otherwise ignored. The pages are unlocked when the allocation is returned to the kernel.
/// The whole allocation (its capacity, not only its length) is locked, so bytes appended later
/// land in locked pages too.
#[allow(clippy::ptr_arg)] // the capacity is needed, which a slice does not carry
pub fn lock_in_memory(buf: &Vec<u8>) -> bool {
    if buf.capacity() == 0 {
        return true;
    }
    // SAFETY: the range is the caller's live allocation; mlock only pins its pages.
    let rc = unsafe { libc::mlock(buf.as_ptr().cast(), buf.capacity()) };
    if rc == 0 {
        return true;
    }
    if !LOCK_FAILURE_LOGGED.swap(true, Ordering::Relaxed) {
        let e = std::io::Error::last_os_error();
        tracing::info!(
            "cannot lock a {}-byte plaintext buffer in memory ({e}); it may reach swap \
             (raise RLIMIT_MEMLOCK / LimitMEMLOCK to allow it); continuing",
            buf.capacity()
        );
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_buffers_can_be_locked() {
        // 4 KiB fits the smallest default RLIMIT_MEMLOCK (64 KiB); root is not limited at all.
        let buf = vec![7u8; 4096];
        assert!(lock_in_memory(&buf));
        assert!(lock_in_memory(&Vec::new()));
    }
}

//! The store's writer lock: `flock` on `<store>/.coldkeep.lock`, held by every command that
//! writes. The kernel drops it when the holder dies, so a crash never leaves a lock that blocks.
//!
//! Threads of one process queue on an in-process lock first ([`Local`]) and only then take the
//! `flock`: a backup's parallel jobs each claim their artifacts' ids under the lock, and two
//! `flock`s of one process exclude each other like two processes' do, where a waiter polls. So
//! a job waits microseconds for another job, not a polling interval; another process's holder
//! is polled for with a backoff from 1 ms to 100 ms.

use super::StoreError;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Name of the lock file in the primary store.
pub const LOCK_FILE: &str = ".coldkeep.lock";

/// A held lock; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    file: File,
    path: PathBuf,
    _local: Local,
}

/// The in-process half of a held lock: which lock files this process's threads hold, and a
/// condition variable to wait for one to be released.
#[derive(Debug)]
struct Local {
    path: PathBuf,
}

fn held() -> &'static (
    std::sync::Mutex<std::collections::HashSet<PathBuf>>,
    std::sync::Condvar,
) {
    static HELD: std::sync::OnceLock<(
        std::sync::Mutex<std::collections::HashSet<PathBuf>>,
        std::sync::Condvar,
    )> = std::sync::OnceLock::new();
    HELD.get_or_init(Default::default)
}

impl Local {
    /// Waits (until `deadline`) for no other thread of this process to hold `path`; `None` when
    /// the deadline passed.
    fn acquire(path: &Path, deadline: Instant) -> Option<Local> {
        let (set, released) = held();
        let mut set = set.lock().unwrap_or_else(|e| e.into_inner());
        while set.contains(path) {
            let left = deadline.checked_duration_since(Instant::now())?;
            set = released
                .wait_timeout(set, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        set.insert(path.to_path_buf());
        Some(Local {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let (set, released) = held();
        set.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.path);
        released.notify_all();
    }
}

impl StoreLock {
    /// Takes the lock, waiting up to `wait` for another writer to finish.
    pub fn acquire(root: &Path, wait: Duration) -> Result<StoreLock, StoreError> {
        super::create_private_dirs(root, root)?;
        let path = root.join(LOCK_FILE);
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            // Never through a planted symlink (set_len below would empty its target).
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let deadline = Instant::now() + wait;
        let local = Local::acquire(&path, deadline).ok_or_else(|| StoreError::Invalid {
            path: path.clone(),
            message: format!(
                "the store is locked by another writer of this process and stayed locked for {}s (--lock-wait)",
                wait.as_secs()
            ),
        })?;
        let mut pause = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(pause.min(wait));
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(TryLockError::WouldBlock) => {
                    let holder = fs::read_to_string(&path).unwrap_or_default();
                    let holder = holder.trim();
                    return Err(StoreError::Invalid {
                        path: path.clone(),
                        message: format!(
                            "the store is locked by another coldkeep writer{} and stayed locked for {}s \
                             (--lock-wait); try again when it has finished",
                            if holder.is_empty() {
                                String::new()
                            } else {
                                format!(" ({holder})")
                            },
                            wait.as_secs()
                        ),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        // Who holds it, for the message another writer prints.
        file.set_len(0).map_err(io)?;
        write!(file, "pid {}", std::process::id()).map_err(io)?;
        Ok(StoreLock {
            file,
            path,
            _local: local,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

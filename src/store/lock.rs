//! The store's writer lock: `flock` on `<store>/.coldkeep.lock`, held by every command that
//! writes. The kernel drops it when the holder dies, so a crash never leaves a lock that blocks.

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
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100).min(wait));
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
        Ok(StoreLock { file, path })
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

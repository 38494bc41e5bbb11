//! The helper's own directory on the node: root's alone, one per policy file.
//!
//! Why: some things the helper keeps must be out of everyone else's reach. The write lock (a
//! lock on the world-readable policy file could be taken by any local user, blocking every
//! restore), the slots that cap how many helpers run at once for a policy (each may hold a file
//! in memory), and the record of a tree swap in progress (so one cut off between its swaps is
//! found, reported and finished, see [`super::trees`]). It lives in
//! `/var/lib/coldkeep-helper/<policy path with `/` as `+`>/`: under `/var/lib` (state, not
//! configuration), one directory per policy (tests run helpers of many policies at once, and a
//! node's policy names its keystores), made 0700 by the helper itself through fds, with every
//! directory above it checked root's like the policy's. Its files are opened `O_NOFOLLOW` in the
//! directory's fd and checked (regular, root's, one link) before use.

use super::trust::Refusal;
use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// Where every policy's state directory lives.
pub const STATE_ROOT: &str = "/var/lib/coldkeep-helper";
/// How many helpers of one policy may run at once: one per agent session, so a few runs at a
/// time (a daemon and an operator) fit; more is someone holding root processes open.
pub const SLOTS: usize = 8;

/// The state directory of the helper started with `policy` (a path [`super::proto::valid_fixed_path`]
/// accepts, so `+` cannot occur in it and the mapping is one to one).
pub fn dir_for(policy: &str) -> String {
    format!(
        "{STATE_ROOT}/{}",
        policy.trim_start_matches('/').replace('/', "+")
    )
}

fn refuse(problem: String, fix: String) -> Refusal {
    Refusal { problem, fix }
}

/// Makes (if missing) and opens the directory `name` in `parent`: it must be a directory owned
/// by root and not open to group or others.
fn own_dir(parent: &OwnedFd, name: &str, path: &str) -> Result<OwnedFd, Refusal> {
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => {
            return Err(refuse(
                format!("cannot create the node helper's state directory {path}: {e}"),
                format!("create it as root: install -d -m 0700 -o root -g root {path}"),
            ));
        }
    }
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        refuse(
            format!("cannot open the node helper's state directory {path}: {e}"),
            format!("make {path} a directory of root's: rm -rf {path} (the helper makes it again)"),
        )
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| refuse(format!("{path}: {e}"), "check the disk".into()))?;
    if st.st_uid != 0 || st.st_mode & 0o077 != 0 {
        return Err(refuse(
            format!(
                "the node helper's state directory {path} is not root's alone (uid {}, mode {:04o})",
                st.st_uid,
                st.st_mode & 0o7777
            ),
            format!("chown root:root {path} && chmod 0700 {path}"),
        ));
    }
    Ok(fd)
}

/// Opens (creating it 0600 if missing) the file `name` in the state directory and checks it:
/// a regular file of root's with one name.
pub fn own_file(dir: &OwnedFd, name: &str, path: &str) -> Result<OwnedFd, String> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| format!("{path}/{name}: {e}"))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| format!("{path}/{name}: {e}"))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_uid != 0 || st.st_nlink != 1 {
        return Err(format!("{path}/{name} is not a file of root's with one name"));
    }
    Ok(fd)
}

/// The state directory of a running helper, with its slot held.
pub struct State {
    /// The directory's fd.
    pub dir: OwnedFd,
    /// Its path (for messages).
    pub path: String,
    lock: OwnedFd,
    _slot: OwnedFd,
}

impl State {
    /// Opens (making them if needed) the state directories for `policy` and takes one of the
    /// [`SLOTS`]; refused with the fix when none is free or the directories are not root's.
    pub fn open(policy: &str) -> Result<State, Refusal> {
        let (base, name) = STATE_ROOT.rsplit_once('/').expect("an absolute path");
        let above = super::trust::open_trusted_dir(base, "a directory above the node helper's state")?;
        let root = own_dir(&above, name, STATE_ROOT)?;
        let path = dir_for(policy);
        let dir = own_dir(&root, path.rsplit('/').next().expect("a name"), &path)?;
        let io = |e: String| refuse(e, format!("remove {path} (the helper makes it again)"));
        let lock = own_file(&dir, "lock", &path).map_err(io)?;
        let mut slot = None;
        for n in 0..SLOTS {
            let fd = own_file(&dir, &format!("slot-{n}"), &path).map_err(io)?;
            if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_ok() {
                slot = Some(fd);
                break;
            }
        }
        let Some(slot) = slot else {
            return Err(refuse(
                format!("{SLOTS} node helpers of the policy {policy} are running on this node already"),
                "wait for the runs that started them to finish (or end the stray ones: they show in `ps` as \
                 `coldkeep node-helper`)"
                    .into(),
            ));
        };
        #[cfg(debug_assertions)]
        let _ = PAUSES.set(dir.try_clone().ok());
        Ok(State {
            dir,
            path,
            lock,
            _slot: slot,
        })
    }

    /// Takes the per-policy lock: exclusive for a write, shared for a read that must not see a
    /// write half done; waits up to `wait`.
    pub fn lock(&self, exclusive: bool, wait: Duration) -> Result<(), String> {
        let op = if exclusive {
            FlockOperation::NonBlockingLockExclusive
        } else {
            FlockOperation::NonBlockingLockShared
        };
        let deadline = Instant::now() + wait;
        loop {
            match rustix::fs::flock(&self.lock, op) {
                Ok(()) => return Ok(()),
                Err(Errno::WOULDBLOCK) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(format!(
                        "another coldkeep restore holds this node ({e}); try again when it is done"
                    ));
                }
            }
        }
    }

    /// Releases the lock.
    pub fn unlock(&self) {
        let _ = rustix::fs::flock(&self.lock, FlockOperation::Unlock);
    }

    /// Whether `name` exists in the state directory (not followed).
    pub fn has(&self, name: &str) -> bool {
        rustix::fs::statat(&self.dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }
}

#[cfg(debug_assertions)]
static PAUSES: std::sync::OnceLock<Option<OwnedFd>> = std::sync::OnceLock::new();

/// A test's pause point (debug builds only; release builds compile it to nothing). When the
/// state directory, which only root can write, holds a fifo `pause-STEP` of root's, the helper
/// opens it and waits until the test writes to it or closes it (at most two minutes): the test
/// opening the fifo for writing returns exactly when the helper is at STEP, so it can race the
/// helper there (rename a directory, kill it) without timing. Nobody but root can make the fifo.
pub fn pause(step: &str) {
    #[cfg(debug_assertions)]
    {
        let Some(Some(dir)) = PAUSES.get() else { return };
        let name = format!("pause-{step}");
        let Ok(st) = rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) else {
            return;
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::Fifo || st.st_uid != 0 {
            return;
        }
        let Ok(fifo) = rustix::fs::openat(
            dir,
            name.as_str(),
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return;
        };
        eprintln!("coldkeep node-helper: paused at {step}");
        let timeout = rustix::event::Timespec {
            tv_sec: 120,
            tv_nsec: 0,
        };
        let mut fds = [rustix::event::PollFd::new(&fifo, rustix::event::PollFlags::IN)];
        let _ = rustix::event::poll(&mut fds, Some(&timeout));
        let mut buf = [0u8; 16];
        let _ = rustix::io::read(&fifo, &mut buf);
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
}

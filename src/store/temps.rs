//! Temp files of interrupted writes: who wrote them, and whether that writer is gone.
//!
//! Every file the store writes is first written under a temp name beside its target
//! (`.<name>.tmp-<owner>-<random>`), then renamed into place. A writer killed in between
//! (kill -9, a crash, a power cut) leaves the temp file behind, and nothing ever reclaimed it: a
//! node that crashed nightly filled the store with them. The owner part names the writing
//! process: its PID and a tag of the PID namespace and boot it lives in, so another writer on
//! the same host (and in the same container) can tell that it is gone. A temp file of a
//! writer elsewhere (another host sharing the store, a pod), or from before owners were
//! recorded, counts as gone only once it is older than any write can take ([`stale_after`]).
//! Writers remove gone writers' temp files under the store lock ([`super::Store::remove_stale_temps`]);
//! `verify` reports them.

use super::{Problem, Store, StoreError};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// What marks a temp file name: `.<target name>.tmp-...`.
pub const MARK: &str = ".tmp-";

/// This process's owner tag: 8 hex digits of the boot and PID namespace, `p`, the PID.
pub fn owner() -> &'static str {
    static OWNER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OWNER.get_or_init(|| format!("{}p{}", namespace_tag(), std::process::id()))
}

/// 8 hex digits naming this boot and PID namespace (a PID means something only within both);
/// `x` when either cannot be read (such temp files are then judged by age alone).
fn namespace_tag() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id");
    let ns = std::fs::read_link("/proc/self/ns/pid");
    match (boot, ns) {
        (Ok(boot), Ok(ns)) => {
            let mut bytes = boot.trim().as_bytes().to_vec();
            bytes.push(0);
            bytes.extend_from_slice(ns.as_os_str().as_encoded_bytes());
            crate::digest::sha256_hex(&bytes)[..8].to_string()
        }
        _ => "x".into(),
    }
}

/// The temp name for a file `name` being written: `.<name>.tmp-<owner>-<random>`.
pub fn name_for(name: &str) -> String {
    format!(".{name}{MARK}{}-{:08x}", owner(), rand::random::<u32>())
}

/// Whether a directory entry's name is a temp file's.
pub fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.contains(MARK)
}

/// How old a temp file of a writer that cannot be checked must be before it counts as gone:
/// longer than staging, waiting for the lock (`lock_wait`) and committing ever take.
pub fn stale_after(lock_wait: Duration) -> Duration {
    Duration::from_secs(3600).max(lock_wait.saturating_mul(2))
}

/// Whether the temp file `name` (with modification time `modified`) was left by a writer that
/// is gone: a process of this host and namespace that no longer exists, or, for any other, a
/// file older than `stale`.
pub fn is_stale(name: &str, modified: Option<SystemTime>, stale: Duration) -> bool {
    if let Some(pid) = local_pid(name) {
        if pid == std::process::id() {
            return false;
        }
        if !alive(pid) {
            return true;
        }
    }
    modified
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age > stale)
}

/// The PID in a temp name written by a process of this boot and PID namespace.
fn local_pid(name: &str) -> Option<u32> {
    let rest = &name[name.find(MARK)? + MARK.len()..];
    let (owner, _) = rest.split_once('-')?;
    let (tag, pid) = owner.split_once('p')?;
    let mine = owner_tag_part();
    if tag != mine || mine == "x" {
        return None;
    }
    pid.parse().ok()
}

/// The namespace part of [`owner`].
fn owner_tag_part() -> &'static str {
    owner().split_once('p').map_or("x", |(tag, _)| tag)
}

/// Whether a process with this PID exists (signal 0 checks without sending anything; a process
/// of another user answers EPERM, and exists).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only reports whether `pid` exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Removes the gone writers' temp files directly in `dir` (the run state's directory, which
/// listings do not read); returns how many. Hold the store lock.
pub fn remove_stale_in(dir: &Path, stale: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_temp(name) && remove_if_stale(&entry.path(), name, stale) {
            removed += 1;
        }
    }
    removed
}

/// Removes `path` (named `name`) when it is a gone writer's temp file; never follows a link
/// (a link is removed itself, not what it points to).
pub fn remove_if_stale(path: &Path, name: &str, stale: Duration) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if meta.is_dir() || !is_stale(name, meta.modified().ok(), stale) {
        return false;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "removed a file left by an interrupted write");
            true
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), "cannot remove a file left by an interrupted write: {e}");
            false
        }
    }
}

/// Whether the `.age` or `.json.sig` at `path` (named `name`) has its sidecar now (looked at
/// again under the lock: the listing that named it may be older).
fn has_sidecar(path: &Path, name: &str) -> bool {
    let id = name
        .strip_suffix(".age")
        .or_else(|| name.strip_suffix(".json.sig"));
    id.is_none_or(|id| path.with_file_name(format!("{id}.json")).exists())
}

impl Store {
    /// Removes what interrupted writes left among `problems` (a listing's), under the writer
    /// lock: temp files of writers now gone (see the module doc), and a `.age` or `.json.sig`
    /// without a sidecar (a write killed between claiming its id and putting its sidecar in,
    /// or a removal cut short) once it is older than any write takes; never listed, never
    /// used, so nothing is lost. Returns how many.
    pub fn remove_stale_temps(&self, problems: &[Problem]) -> Result<usize, StoreError> {
        let temps: Vec<(&Path, &str)> = problems
            .iter()
            .filter(|p| p.interrupted)
            .filter_map(|p| Some((p.path.as_path(), p.path.file_name()?.to_str()?)))
            .collect();
        if temps.is_empty() {
            return Ok(0);
        }
        let _lock = self.lock()?;
        let stale = stale_after(self.lock_wait);
        Ok(temps
            .into_iter()
            .filter(|(path, name)| is_temp(name) || !has_sidecar(path, name))
            .filter(|(path, name)| remove_if_stale(path, name, stale))
            .count())
    }

    /// What a listing says of the temp file `entry` (named `name`): whether its writer is gone.
    pub(super) fn temp_problem(&self, entry: &std::fs::DirEntry, name: &str) -> Problem {
        let modified = entry.metadata().ok().and_then(|m| m.modified().ok());
        let message = if is_stale(name, modified, stale_after(self.lock_wait)) {
            "temp file left by an interrupted write whose writer is gone (the next backup removes it)"
        } else {
            "temp file of a write in progress (or of a writer on another host, removed by a backup once it is old)"
        };
        Problem {
            path: entry.path(),
            message: message.into(),
            interrupted: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn a_temp_file_is_stale_when_its_local_writer_is_gone_or_it_is_old() {
        let hour = Duration::from_secs(3600);
        let now = Some(SystemTime::now());
        let old = Some(SystemTime::now() - Duration::from_secs(7200));
        let mine = name_for("x.age");
        assert!(is_temp(&mine) && mine.starts_with(".x.age.tmp-"), "{mine}");
        assert!(!is_stale(&mine, old, hour), "this process is alive");
        let tag = owner_tag_part();
        let gone = format!(".x.age.tmp-{tag}p{}-0badf00d", dead_pid());
        assert!(is_stale(&gone, now, hour), "its writer is gone");
        let living = format!(".x.age.tmp-{tag}p1-0badf00d");
        assert!(!is_stale(&living, now, hour), "pid 1 lives");
        // Another host or namespace, and names from before owners: by age only.
        let foreign = format!(".x.age.tmp-ffffffffp{}-0badf00d", dead_pid());
        assert!(!is_stale(&foreign, now, hour));
        assert!(is_stale(&foreign, old, hour));
        assert!(!is_stale(".x.age.tmp-1234abcd", now, hour));
        assert!(is_stale(".x.age.tmp-1234abcd", old, hour));
        assert_eq!(stale_after(Duration::from_secs(60)), hour);
        assert_eq!(stale_after(Duration::from_secs(7200)), Duration::from_secs(14400));
    }
}

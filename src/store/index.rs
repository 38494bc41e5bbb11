//! A per-keystore-directory cache of parsed sidecars, so listing a store (`list`, `status`,
//! `prune`, the unchanged check of `backup`) does not open and parse one JSON file per artifact.
//!
//! The index is only a cache, never the source of truth:
//! - every sidecar it serves is matched by its file's inode, size, mtime and ctime (a `stat`,
//!   no open or read); a sidecar added, removed, replaced (atomic rename: new inode) or edited in
//!   place (ctime changes even when mtime is reset) is read from disk again;
//! - an entry whose ctime is within [`RACY_NS`] of when the index was built is read again (an
//!   edit in the same timestamp tick as the build would otherwise keep its stamp, as with Git's
//!   "racily clean" entries);
//! - a missing, truncated, foreign-version or unparsable index file is ignored and rebuilt (a
//!   crash while writing it, another writer, a hand edit);
//! - it is written best effort (temp file and rename, no fsync: losing it only costs a rebuild),
//!   and a store directory that cannot be written is simply listed without it;
//! - commands that change data never act on it alone: removal, repair, restore and
//!   `mark_unchanged` re-read the sidecar itself (see `Store::remove`).
//!
//! Hook for signed sidecars (`<id>.json.sig`): each entry keeps the SHA-256 of the sidecar's
//! bytes and an optional [`Entry::signature_verified_for`]. A signature check may record the
//! sidecar hash it verified there; it stays valid only while it equals the entry's
//! `sidecar_sha256` (it survives a rebuild of the entry when the bytes are unchanged), so a
//! signature is verified once per sidecar content, not once per listing. The `.sig` file's own
//! stamp belongs in that record too when signing lands.

use crate::bundle::Sidecar;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// File name of the index inside a keystore directory (a dot file, never an artifact).
pub const INDEX_FILE: &str = ".coldkeep-index.json";
/// Format version; an index of another version is rebuilt.
const VERSION: u32 = 2;
/// Entries changed this close (ns) to the index build time are not trusted (see module doc).
const RACY_NS: i64 = 2_000_000_000;

/// What identifies one version of a sidecar file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            ctime_ns: meta
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.ctime_nsec()),
        }
    }
}

/// One cached sidecar.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// The sidecar's file name (`<id>.json`).
    name: String,
    stamp: Stamp,
    /// SHA-256 of the sidecar file's bytes: the key for anything verified about this content.
    sidecar_sha256: String,
    /// Reserved for signed sidecars: the `sidecar_sha256` a signature was verified for. Valid
    /// only while equal to `sidecar_sha256`; nothing sets it yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature_verified_for: Option<String>,
    /// The parsed sidecar as [`Cached`], compact; parsed only when served.
    sidecar: Box<RawValue>,
}

/// A sidecar as cached: the same fields, with the manifest nested rather than flattened, since
/// serde buffers a flattened struct's every field before parsing it (a third of the parse).
#[derive(Deserialize)]
struct Cached {
    manifest: crate::bundle::Manifest,
    ciphertext_sha256: String,
    ciphertext_size: u64,
    seen_unchanged_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// [`Cached`] borrowed from a [`Sidecar`], for writing.
#[derive(Serialize)]
struct CachedRef<'a> {
    manifest: &'a crate::bundle::Manifest,
    ciphertext_sha256: &'a str,
    ciphertext_size: u64,
    seen_unchanged_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    /// Wall clock (ns since the epoch) when the listing that wrote this index began.
    built_at_ns: i64,
    entries: Vec<Entry>,
}

/// How a listing used the index caches (for tests and the benchmark).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    /// Sidecars served from an index.
    pub cached: usize,
    /// Sidecars read and parsed from disk (not in an index, or their entry was stale).
    pub read: usize,
    /// Index files (re)written.
    pub written: usize,
}

impl IndexStats {
    /// Adds another directory's figures.
    pub(crate) fn add(&mut self, other: IndexStats) {
        self.cached += other.cached;
        self.read += other.read;
        self.written += other.written;
    }
}

/// The index of one keystore directory while it is being listed.
pub(crate) struct DirIndex {
    dir: PathBuf,
    /// Entries of the index file as found, by sidecar name; taken out as they are served.
    old: HashMap<String, Entry>,
    old_built_at_ns: i64,
    /// Entries for the index to write, in listing order.
    new: Vec<Entry>,
    built_at_ns: i64,
    /// Something differs from the index file: it must be rewritten.
    changed: bool,
    pub(crate) stats: IndexStats,
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl DirIndex {
    /// Loads the directory's index; anything unreadable counts as no index.
    pub(crate) fn open(dir: &Path) -> DirIndex {
        let built_at_ns = now_ns();
        let file = std::fs::read(dir.join(INDEX_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<IndexFile>(&bytes).ok())
            .filter(|f| f.version == VERSION);
        let changed = file.is_none();
        let (old, old_built_at_ns) = match file {
            Some(f) => (
                f.entries.into_iter().map(|e| (e.name.clone(), e)).collect(),
                f.built_at_ns,
            ),
            None => (HashMap::new(), 0),
        };
        DirIndex {
            dir: dir.to_path_buf(),
            old,
            old_built_at_ns,
            new: Vec::new(),
            built_at_ns,
            changed,
            stats: IndexStats::default(),
        }
    }

    /// The sidecar `name` in this directory: from the index when its entry matches the file,
    /// else read and parsed from `path` (and recorded). `entry` is its directory entry: a stat
    /// relative to the open directory skips a walk of the whole path per sidecar.
    pub(crate) fn sidecar(
        &mut self,
        name: &str,
        path: &Path,
        entry: &std::fs::DirEntry,
    ) -> Result<Sidecar, super::StoreError> {
        // Stat before reading: a change after the stat leaves a stamp that no longer matches.
        let meta = match entry.metadata() {
            Ok(m) if !m.file_type().is_symlink() => m,
            _ => std::fs::metadata(path).map_err(super::io(path))?,
        };
        let stamp = Stamp::of(&meta);
        let old = self.old.remove(name);
        if let Some(entry) = old.as_ref().filter(|e| self.fresh(e, stamp))
            && let Ok(cached) = serde_json::from_str::<Cached>(entry.sidecar.get())
        {
            self.stats.cached += 1;
            self.new.extend(old);
            return Ok(Sidecar {
                manifest: cached.manifest,
                ciphertext_sha256: cached.ciphertext_sha256,
                ciphertext_size: cached.ciphertext_size,
                seen_unchanged_at: cached.seen_unchanged_at,
            });
        }
        self.changed = true;
        self.stats.read += 1;
        let bytes = std::fs::read(path).map_err(super::io(path))?;
        let sidecar: Sidecar = serde_json::from_slice(&bytes).map_err(|e| super::StoreError::Invalid {
            path: path.to_path_buf(),
            message: format!("not a valid sidecar: {e}"),
        })?;
        let sidecar_sha256 = crate::digest::sha256_hex(&bytes);
        // A verification recorded for these exact bytes still holds.
        let signature_verified_for = old
            .and_then(|e| e.signature_verified_for)
            .filter(|h| *h == sidecar_sha256);
        let cached = CachedRef {
            manifest: &sidecar.manifest,
            ciphertext_sha256: &sidecar.ciphertext_sha256,
            ciphertext_size: sidecar.ciphertext_size,
            seen_unchanged_at: sidecar.seen_unchanged_at,
        };
        if let Ok(raw) = serde_json::value::to_raw_value(&cached) {
            self.new.push(Entry {
                name: name.to_string(),
                stamp,
                sidecar_sha256,
                signature_verified_for,
                sidecar: raw,
            });
        }
        Ok(sidecar)
    }

    /// An entry may be served when the file has not changed since, and was not changed so
    /// close to the build that a same-tick edit could hide behind an equal stamp.
    fn fresh(&self, entry: &Entry, stamp: Stamp) -> bool {
        entry.stamp == stamp && stamp.ctime_ns < self.old_built_at_ns.saturating_sub(RACY_NS)
    }

    /// Writes the index when it differs from the file (entries changed, added or gone); best
    /// effort, since the index is only a cache. Returns the statistics.
    pub(crate) fn finish(mut self) -> IndexStats {
        if !self.changed && self.old.is_empty() {
            return self.stats;
        }
        let file = IndexFile {
            version: VERSION,
            built_at_ns: self.built_at_ns,
            entries: std::mem::take(&mut self.new),
        };
        match self.write(&file) {
            Ok(()) => self.stats.written += 1,
            Err(e) => tracing::debug!(dir = %self.dir.display(), "store index not written: {e}"),
        }
        self.stats
    }

    fn write(&self, file: &IndexFile) -> std::io::Result<()> {
        let target = self.dir.join(INDEX_FILE);
        let temp = self
            .dir
            .join(format!("{INDEX_FILE}.tmp-{:08x}", rand::random::<u32>()));
        let result = (|| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            let mut w = std::io::BufWriter::new(f);
            serde_json::to_writer(&mut w, file)?;
            w.flush()?;
            std::fs::rename(&temp, &target)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }
}

/// Test support: pretends the index of `dir` was built `secs` seconds later than it was, so
/// entries written just before count as settled (instead of sleeping past [`RACY_NS`]).
#[cfg(test)]
pub(crate) fn shift_built_at(dir: &Path, secs: i64) {
    let path = dir.join(INDEX_FILE);
    let mut file: IndexFile = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    file.built_at_ns += secs * 1_000_000_000;
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
}

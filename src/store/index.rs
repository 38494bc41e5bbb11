//! A per-keystore-directory cache of parsed sidecars, so listing a store (`list`, `status`,
//! `prune`, `verify`, the unchanged check of `backup`) does not open and parse one JSON file per
//! artifact.
//! There are two, one per view a listing holds (see [`Listed`]): whole sidecars
//! ([`INDEX_FILE`], for what needs them) and summaries ([`super::SUMMARY_INDEX_FILE`], for
//! `list`, `status` and `prune`, half the bytes to read, authenticate and parse). Both work alike and
//! are read without copying (entries borrow from the file's bytes).
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
//! Signatures (issue 14) are verified once per content, not once per listing: each entry also
//! records the `.sig` file's stamp (or that there was none), the SHA-256 of the sidecar and
//! signature bytes, and the signature's verdict. A stale entry whose re-read bytes hash the
//! same keeps its verdict without a new Ed25519 check.
//!
//! The index lies inside the store, which the threat model of issue 14 lets an attacker write.
//! So the whole file is authenticated: its first line carries an HMAC-SHA256 over the
//! index file's path (its directory and which index it is) and the JSON body, keyed with [`crate::sign::Keys::index_key`] (derived
//! from the agent's signing private key and bound to allowed_signers). Why this rather than a
//! cache outside the store: an agent-owned 0700 directory elsewhere would need its own
//! location, cleanup and per-host state, and would still be trusted only as far as local disk
//! is; the HMAC makes a cache anywhere as trustworthy as the key, costs one pass of SHA-256
//! over the file (not a MAC per entry), and goes wherever the store goes. An index whose MAC
//! does not check (forged, edited, copied from another directory or from the other index, written under other keys)
//! is ignored and rebuilt from the sidecars, with their signatures checked. Even a served
//! entry is only ever the content the agent itself verified, never what the file says now; an
//! old authentic index put back (a replay) serves an entry only while the files still carry
//! the stamps it recorded, and allowed_signers changes make every older index fail the MAC.
//! The time check (a `created_at` in the future) is not cached: it is applied on every read.

use super::summary::Listed;
use crate::bundle::Sidecar;
use crate::sign::Verdict;
use hmac::Mac;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// File name of the index of whole sidecars inside a keystore directory (a dot file, never an
/// artifact): what [`super::Store::list`] reads.
pub const INDEX_FILE: &str = ".coldkeep-index.json";

/// Format version; an index of another version is rebuilt.
const VERSION: u32 = 4;
/// The first line of an index file: this, a space, the hex HMAC of the rest, a newline.
const MAGIC: &str = "coldkeep-index-v4";
/// Entries changed this close (ns) to the index build time are not trusted (see module doc).
const RACY_NS: i64 = 2_000_000_000;

/// What identifies one version of a sidecar file without reading it. Written as an array
/// `[ino, size, mtime_ns, ctime_ns]` (two per entry, 100,000 entries in a large store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(u64, u64, i64, i64)", into = "(u64, u64, i64, i64)")]
struct Stamp {
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl From<(u64, u64, i64, i64)> for Stamp {
    fn from((ino, size, mtime_ns, ctime_ns): (u64, u64, i64, i64)) -> Stamp {
        Stamp {
            ino,
            size,
            mtime_ns,
            ctime_ns,
        }
    }
}

impl From<Stamp> for (u64, u64, i64, i64) {
    fn from(s: Stamp) -> Self {
        (s.ino, s.size, s.mtime_ns, s.ctime_ns)
    }
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

/// One cached sidecar and its signature verdict. Read borrowing from the index file's bytes
/// (names, hashes and cached JSON are not copied: a listing of 100,000 artifacts reads 100 MB
/// of index), written from borrowed and new entries alike.
#[derive(Debug, Serialize, Deserialize)]
struct Entry<'a> {
    /// The sidecar's file name (`<id>.json`).
    #[serde(borrow)]
    name: Cow<'a, str>,
    stamp: Stamp,
    /// The `.sig` file's stamp, `None` when there was none.
    sig: Option<Stamp>,
    /// [`content_sha256`] of the sidecar and signature bytes: what `verdict` was found for.
    #[serde(borrow)]
    content_sha256: Cow<'a, str>,
    /// The signature check's verdict for that content (without the time check).
    verdict: Verdict,
    /// The parsed sidecar as [`Cached`], compact; parsed only when served.
    #[serde(borrow, deserialize_with = "borrow_raw")]
    sidecar: Cow<'a, RawValue>,
}

/// Serde's own `Cow` deserializer always copies; this borrows the cached JSON from the file.
fn borrow_raw<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<Cow<'a, RawValue>, D::Error> {
    <&'a RawValue>::deserialize(d).map(Cow::Borrowed)
}

/// The stamps of a sidecar and of its `.sig` (None: no signature file), taken before reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamps {
    sidecar: Stamp,
    sig: Option<Stamp>,
}

impl Stamps {
    /// From the metadata of the sidecar and (when it exists) of its signature file.
    pub(crate) fn of(sidecar: &std::fs::Metadata, sig: Option<&std::fs::Metadata>) -> Stamps {
        Stamps {
            sidecar: Stamp::of(sidecar),
            sig: sig.map(Stamp::of),
        }
    }
}

/// The cache key of a verdict: SHA-256 of the sidecar's length, its bytes and the signature's
/// bytes (empty when unsigned; an unsigned and an empty-signature copy differ in the verdict
/// computed, and the `.sig` stamp tells them apart).
pub(crate) fn content_sha256(sidecar: &[u8], sig: Option<&[u8]>) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update((sidecar.len() as u64).to_le_bytes());
    h.update(sidecar);
    h.update([u8::from(sig.is_some())]);
    h.update(sig.unwrap_or_default());
    hex::encode(h.finalize())
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

/// A whole sidecar from an entry's cached JSON.
pub(crate) fn parse_cached(json: &str) -> Option<Sidecar> {
    let cached: Cached = serde_json::from_str(json).ok()?;
    Some(Sidecar {
        manifest: cached.manifest,
        ciphertext_sha256: cached.ciphertext_sha256,
        ciphertext_size: cached.ciphertext_size,
        seen_unchanged_at: cached.seen_unchanged_at,
    })
}

/// The whole sidecar as listed (the index caches it whole; [`super::Summary`] has its own).
impl Listed for Sidecar {
    const INDEX: &'static str = INDEX_FILE;

    fn from_cache(json: &str) -> Option<Sidecar> {
        parse_cached(json)
    }

    fn to_cache(sidecar: &Sidecar) -> Option<Box<RawValue>> {
        serde_json::value::to_raw_value(&CachedRef {
            manifest: &sidecar.manifest,
            ciphertext_sha256: &sidecar.ciphertext_sha256,
            ciphertext_size: sidecar.ciphertext_size,
            seen_unchanged_at: sidecar.seen_unchanged_at,
        })
        .ok()
    }

    fn from_sidecar(s: Sidecar) -> Sidecar {
        s
    }

    fn node(&self) -> &str {
        &self.manifest.node
    }

    fn keystore(&self) -> &str {
        &self.manifest.keystore
    }

    fn created_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.manifest.created_at
    }

    fn ciphertext_sha256(&self) -> &str {
        &self.ciphertext_sha256
    }

    fn purpose(&self) -> crate::bundle::Purpose {
        self.manifest.purpose
    }

    fn kind(&self) -> &str {
        &self.manifest.kind
    }

    fn role(&self) -> Option<crate::bundle::Role> {
        self.manifest.role
    }

    fn describes(&self, on_disk: &Sidecar) -> bool {
        on_disk.same_artifact(self)
    }
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
struct IndexFile<'a> {
    version: u32,
    /// Wall clock (ns since the epoch) when the listing that wrote this index began.
    built_at_ns: i64,
    #[serde(borrow)]
    entries: Vec<Entry<'a>>,
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

/// The index of one keystore directory while it is being listed (borrowing the index file's
/// bytes, read with [`DirIndex::read`]).
pub(crate) struct DirIndex<'a> {
    dir: &'a Path,
    /// The index file's name ([`INDEX_FILE`] or [`super::SUMMARY_INDEX_FILE`]).
    file: &'static str,
    /// The HMAC key (see the module doc).
    key: zeroize::Zeroizing<[u8; 32]>,
    /// Stale entries' (content hash, verdict), to reuse a verdict when the bytes are the same.
    stale: HashMap<String, (String, Verdict)>,
    /// Entries of the index file as found, by sidecar name; taken out as they are served.
    old: HashMap<Cow<'a, str>, Entry<'a>>,
    old_built_at_ns: i64,
    /// Entries for the index to write, in listing order.
    new: Vec<Entry<'a>>,
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

/// The HMAC of an index body for the index file `file` of `dir` (bound to both: an index is
/// never valid in another directory, nor as the other kind of index).
fn mac(key: &[u8; 32], dir: &Path, file: &str, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    use std::os::unix::ffi::OsStrExt;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    let path = dir.join(file);
    let dir = path.as_os_str().as_bytes();
    mac.update(&(dir.len() as u64).to_le_bytes());
    mac.update(dir);
    mac.update(body);
    mac
}

/// Parses an index file, `None` unless its MAC checks (in constant time) and its version fits.
fn parse<'a>(key: &[u8; 32], dir: &Path, file: &str, bytes: &'a [u8]) -> Option<IndexFile<'a>> {
    let newline = bytes.iter().position(|b| *b == b'\n')?;
    let header = std::str::from_utf8(&bytes[..newline]).ok()?;
    let tag = hex::decode(header.strip_prefix(MAGIC)?.strip_prefix(' ')?).ok()?;
    let body = &bytes[newline + 1..];
    mac(key, dir, file, body).verify_slice(&tag).ok()?;
    serde_json::from_slice::<IndexFile>(body)
        .ok()
        .filter(|f| f.version == VERSION)
}

impl<'a> DirIndex<'a> {
    /// The bytes of the directory's index file `file`, `None` when there is none or it is
    /// unreadable.
    pub(crate) fn read(dir: &Path, file: &str) -> Option<Vec<u8>> {
        std::fs::read(dir.join(file)).ok()
    }

    /// The directory's index `file` from its `bytes`; anything unauthenticated counts as none.
    pub(crate) fn open(
        dir: &'a Path,
        file: &'static str,
        key: zeroize::Zeroizing<[u8; 32]>,
        bytes: Option<&'a [u8]>,
    ) -> DirIndex<'a> {
        let built_at_ns = now_ns();
        let index_file = file;
        let file = bytes.and_then(|bytes| {
            let parsed = parse(&key, dir, index_file, bytes);
            if parsed.is_none() {
                tracing::debug!(dir = %dir.display(), "store index ignored (unauthenticated or old)");
            }
            parsed
        });
        let changed = file.is_none();
        let (old, old_built_at_ns) = match file {
            Some(f) => (
                f.entries.into_iter().map(|e| (e.name.clone(), e)).collect(),
                f.built_at_ns,
            ),
            None => (HashMap::new(), 0),
        };
        DirIndex {
            dir,
            file: index_file,
            key,
            stale: HashMap::new(),
            old,
            old_built_at_ns,
            new: Vec::new(),
            built_at_ns,
            changed,
            stats: IndexStats::default(),
        }
    }

    /// The sidecar `name` and its signature verdict from the index, when its entry matches the
    /// files' `stamps`; else `None` (the caller reads it and calls [`DirIndex::record`]).
    pub(crate) fn lookup<S: Listed>(&mut self, name: &str, stamps: Stamps) -> Option<(S, Verdict)> {
        let old = self.old.remove(name)?;
        if self.fresh(&old, stamps)
            && let Some(cached) = S::from_cache(old.sidecar.get())
        {
            self.stats.cached += 1;
            let verdict = old.verdict.clone();
            self.new.push(old);
            return Some((cached, verdict));
        }
        self.stale.insert(
            old.name.into_owned(),
            (old.content_sha256.into_owned(), old.verdict),
        );
        None
    }

    /// The (content hash, verdict) a stale entry had for `name`: when the re-read bytes hash
    /// the same (touched, copied, re-linked), the verdict holds without a new check.
    pub(crate) fn known_verdict(&self, name: &str) -> Option<&(String, Verdict)> {
        self.stale.get(name)
    }

    /// Records a sidecar read from disk (stamped before the read), as the view `S` caches it,
    /// and its signature verdict.
    pub(crate) fn record<S: Listed>(
        &mut self,
        name: &str,
        stamps: Stamps,
        content_sha256: String,
        sidecar: &Sidecar,
        verdict: &Verdict,
    ) {
        self.changed = true;
        self.stats.read += 1;
        if let Some(raw) = S::to_cache(sidecar) {
            self.new.push(Entry {
                name: Cow::Owned(name.to_string()),
                stamp: stamps.sidecar,
                sig: stamps.sig,
                content_sha256: Cow::Owned(content_sha256),
                verdict: verdict.clone(),
                sidecar: Cow::Owned(raw),
            });
        }
    }

    /// A sidecar that could not be read or checked: counted, and the index is rewritten
    /// without it.
    pub(crate) fn unreadable(&mut self) {
        self.changed = true;
        self.stats.read += 1;
    }

    /// An entry may be served when neither file changed since, and neither was changed so
    /// close to the build that a same-tick edit could hide behind an equal stamp.
    fn fresh(&self, entry: &Entry, stamps: Stamps) -> bool {
        let settled = self.old_built_at_ns.saturating_sub(RACY_NS);
        entry.stamp == stamps.sidecar
            && entry.sig == stamps.sig
            && stamps.sidecar.ctime_ns < settled
            && stamps.sig.is_none_or(|s| s.ctime_ns < settled)
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

    fn write(&self, file: &IndexFile<'_>) -> std::io::Result<()> {
        let body = serde_json::to_vec(file)?;
        let tag = hex::encode(mac(&self.key, self.dir, self.file, &body).finalize().into_bytes());
        let mut bytes = format!("{MAGIC} {tag}\n").into_bytes();
        bytes.extend_from_slice(&body);
        let target = self.dir.join(self.file);
        if overwrite_own(&target, &bytes)? {
            return Ok(());
        }
        // (The index file's name starts with a dot: `.<name>.tmp-...` for the others.)
        let temp = self
            .dir
            .join(super::temps::name_for(self.file.trim_start_matches('.')));
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            f.write_all(&bytes)?;
            std::fs::rename(&temp, &target)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }
}

/// Rewrites the index file at `path` in place when it is this process's own: a regular file,
/// not a link (opened without following one), with no other name (so no other file shares its
/// inode), owned by this user. `Ok(false)` when it is not (absent, or anything else: the caller
/// writes a new file and renames it over, which replaces the name, never a target). In place,
/// a listing after each backup costs no new file; a reader that meets a half-written index
/// finds its MAC wrong and reads the sidecars instead, as for any index it cannot trust.
fn overwrite_own(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let f = match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(_) => return Ok(false),
    };
    let meta = f.metadata()?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.nlink() != 1 || meta.uid() != me {
        return Ok(false);
    }
    f.write_all_at(bytes, 0)?;
    f.set_len(bytes.len() as u64)?;
    Ok(true)
}

/// Test support: pretends the index of `dir` was built `secs` seconds later than it was, so
/// entries written just before count as settled (instead of sleeping past [`RACY_NS`]); signs
/// it again with `key` (the tests hold the agent's keys).
#[cfg(test)]
pub(crate) fn shift_built_at(dir: &Path, key: &[u8; 32], secs: i64) {
    shift_built_at_of(dir, INDEX_FILE, key, secs);
}

/// [`shift_built_at`] for the index file `file` of `dir`.
#[cfg(test)]
pub(crate) fn shift_built_at_of(dir: &Path, file: &str, key: &[u8; 32], secs: i64) {
    let bytes = std::fs::read(dir.join(file)).unwrap();
    let mut index = parse(key, dir, file, &bytes).expect("an authenticated index");
    index.built_at_ns += secs * 1_000_000_000;
    let body = serde_json::to_vec(&index).unwrap();
    let tag = hex::encode(mac(key, dir, file, &body).finalize().into_bytes());
    let mut out = format!("{MAGIC} {tag}\n").into_bytes();
    out.extend_from_slice(&body);
    std::fs::write(dir.join(file), out).unwrap();
}

/// Test support: writes `file` as the index of `dir`, authenticated with `key` (a forger's
/// key in the tests that check forgeries are ignored).
#[cfg(test)]
fn write_for_test(dir: &Path, key: &[u8; 32], file: &IndexFile<'_>) {
    let body = serde_json::to_vec(file).unwrap();
    let tag = hex::encode(mac(key, dir, INDEX_FILE, &body).finalize().into_bytes());
    let mut out = format!("{MAGIC} {tag}\n").into_bytes();
    out.extend_from_slice(&body);
    std::fs::write(dir.join(INDEX_FILE), out).unwrap();
}

/// Test support: rewrites every entry of `dir`'s index with `edit`, dated 10 s later (so its
/// entries count as settled, as a forger would make them) and authenticated with `write_key`
/// (the agent's, or a forger's).
#[cfg(test)]
pub(crate) fn edit_entries(
    dir: &Path,
    read_key: &[u8; 32],
    write_key: &[u8; 32],
    edit: impl Fn(&mut serde_json::Value),
) {
    let bytes = std::fs::read(dir.join(INDEX_FILE)).unwrap();
    let mut file = parse(read_key, dir, INDEX_FILE, &bytes).expect("an authenticated index");
    file.built_at_ns += 10_000_000_000;
    let mut value = serde_json::to_value(&file).unwrap();
    for e in value["entries"].as_array_mut().unwrap() {
        edit(e);
    }
    let text = serde_json::to_vec(&value).unwrap();
    let file: IndexFile = serde_json::from_slice(&text).unwrap();
    write_for_test(dir, write_key, &file);
}

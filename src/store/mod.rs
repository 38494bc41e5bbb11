//! The cold-storage layout: `<root>/<node>/<keystore>/<UTC stamp>-<short id>.age` + `.json`.
//!
//! Every artifact goes to the primary store and to each replica. Directories are 0700, files
//! 0600, and writes are atomic (temp files, fsync, renames with the sidecar last, fsync the
//! directory): a crash never leaves a listed artifact that is not whole, at most leftovers
//! that listings name as such.

pub mod batch;
mod device_checks;
mod index;
mod lock;
pub mod retention;
mod signed;
mod state;
mod summary;
pub mod temps;
mod write;

pub(crate) use write::{create_private_dirs, write_atomic};

pub use device_checks::{CheckResult, DeviceCheck, DeviceChecks, Untrusted};
pub use index::{INDEX_FILE, IndexStats};
pub use lock::{LOCK_FILE, StoreLock};
pub use state::{KeystoreState, NOT_AUTHENTIC, RunState, STATE_DIR, VerifyState};
pub use summary::{FileName, Listed, SUMMARY_INDEX_FILE, Summary, SummaryManifest};

use crate::bundle::Sidecar;
pub use crate::bundle::role::Holds;
use crate::config::StoreConfig;
use crate::sign::{Keys, Verdict};

use std::fs;
use std::path::{Path, PathBuf};

/// Why a store operation failed; always names the path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    /// A file operation failed.
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    /// A file in the store is malformed.
    Invalid {
        /// The path concerned.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The primary store and its replicas. Every change takes the store's writer lock (on the
/// primary), waiting up to `lock_wait` for another writer: for its whole duration, except a
/// write of a new artifact, which holds it per root only while claiming the id (see
/// [`Store::write`]).
#[derive(Debug, Clone)]
pub struct Store {
    /// The primary root.
    pub primary: PathBuf,
    /// Replica roots (each gets a copy).
    pub replicas: Vec<PathBuf>,
    /// How long to wait for the store lock.
    pub lock_wait: std::time::Duration,
    /// Signs what is written and checks what is read; `None` = cannot write, trusts nothing.
    pub keys: Option<std::sync::Arc<Keys>>,
    /// What this store holds: every listed artifact's role must belong where it lies.
    pub holds: Holds,
}

/// One stored copy (primary or replica) of an artifact.
#[derive(Debug, Clone)]
pub struct Copy {
    /// The store root holding it.
    pub root: PathBuf,
    /// The `.age` file.
    pub age_path: PathBuf,
    /// Its `.json` sidecar.
    pub sidecar_path: PathBuf,
    /// Both files exist.
    pub present: bool,
    /// This copy's sidecar signature (`Unsigned` when the copy is missing).
    pub signature: Verdict,
}

/// An artifact as listed: its sidecar (whole, or a [`Summary`] for `list` and `status`) and
/// where its copies are.
#[derive(Debug, Clone)]
pub struct Artifact<S = Sidecar> {
    /// The node.
    pub node: String,
    /// The keystore.
    pub keystore: String,
    /// `<UTC stamp>-<short id>`, e.g. `20261122T031500Z-3f9a1c2b`.
    pub id: String,
    /// The sidecar as read.
    pub sidecar: S,
    /// Primary first, then replicas in config order.
    pub copies: Vec<Copy>,
    /// The signature of the sidecar above: valid when any copy is validly signed (that copy's
    /// sidecar is the one listed), else the first copy's verdict.
    pub signature: Verdict,
}

/// Something found in the store that is not a whole, readable artifact.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
    /// Left by an interrupted write (a temp file, a ciphertext whose sidecar never came): harmless,
    /// never listed as an artifact, safe to delete.
    pub interrupted: bool,
}

/// Result of [`Store::list`]: artifacts oldest first per keystore, plus problems found.
#[derive(Debug)]
pub struct Listing<S = Sidecar> {
    /// Validly signed artifacts: the only ones anything may trust (reuse, repair, retention,
    /// restore, status).
    pub artifacts: Vec<Artifact<S>>,
    /// Artifacts without a valid signature (unsigned, bad, foreign, future-dated): shown by
    /// `list` and `verify`, reported by `prune`, never used.
    pub untrusted: Vec<Artifact<S>>,
    /// Files that could not be read as artifacts.
    pub problems: Vec<Problem>,
    /// How the per-directory sidecar caches were used (see `index.rs`): for tests and the bench.
    pub index: IndexStats,
}

impl<S> Listing<S> {
    /// Adds another listing's artifacts, problems and figures after these.
    pub fn append(&mut self, mut other: Listing<S>) {
        self.artifacts.append(&mut other.artifacts);
        self.untrusted.append(&mut other.untrusted);
        self.problems.append(&mut other.problems);
        self.index.add(other.index);
    }
}

impl<S> Default for Listing<S> {
    fn default() -> Listing<S> {
        Listing {
            artifacts: Vec::new(),
            untrusted: Vec::new(),
            problems: Vec::new(),
            index: IndexStats::default(),
        }
    }
}

impl Store {
    /// The store described by the config (nothing is created yet).
    pub fn new(cfg: &StoreConfig) -> Store {
        Store {
            primary: cfg.path.clone(),
            replicas: cfg.replicas.clone(),
            lock_wait: cfg.lock_wait,
            keys: cfg.keys.clone(),
            holds: Holds::Keystores,
        }
    }

    /// The separate store for Acra master keys, when the config has one, with its own replicas.
    pub fn master_keys(cfg: &StoreConfig) -> Option<Store> {
        cfg.master_key_store.as_ref().map(|path| Store {
            primary: path.clone(),
            replicas: cfg.master_key_replicas.clone(),
            lock_wait: cfg.lock_wait,
            keys: cfg.keys.clone(),
            holds: Holds::MasterKeys,
        })
    }

    /// Writes the missing copies of an artifact (a replica that was offline, or a run killed
    /// between roots) from a present, validly signed copy whose ciphertext matches its sidecar;
    /// returns how many copies were written. A copy with a bad or missing signature counts as
    /// missing and is replaced; good copies are not touched. The sidecar and its signature are
    /// copied byte for byte.
    pub fn repair_missing<S: Listed>(&self, artifact: &Artifact<S>) -> Result<usize, StoreError> {
        if artifact
            .copies
            .iter()
            .all(|c| c.present && c.signature.is_valid())
        {
            return Ok(0);
        }
        // Under the lock, so a concurrent prune cannot have removed the artifact in between.
        let _lock = self.lock()?;
        let Some(source) = self.signed_source(artifact) else {
            return Ok(0);
        };
        let mut written = 0;
        for copy in artifact
            .copies
            .iter()
            .filter(|c| !c.present || !c.signature.is_valid())
        {
            if !copy.root.is_dir() {
                // An unmounted replica must not be filled on the local disk underneath it.
                tracing::warn!(root = %copy.root.display(), "replica root missing (not mounted?); copy not written");
                continue;
            }
            let dir = copy.age_path.parent().unwrap_or(&copy.root).to_path_buf();
            create_private_dirs(&copy.root, &dir)?;
            write_atomic(&dir, &copy.age_path, &source.ciphertext)?;
            write_atomic(
                &dir,
                &crate::sign::sig_path(&copy.sidecar_path),
                &source.signature,
            )?;
            write_atomic(&dir, &copy.sidecar_path, &source.sidecar)?;
            tracing::info!(artifact = %artifact.id, root = %copy.root.display(), "wrote a missing copy");
            written += 1;
        }
        Ok(written)
    }

    /// Takes the writer lock for one change.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        StoreLock::acquire(&self.primary, self.lock_wait)
    }

    /// Whether a copy is there, validly signed, and its ciphertext matches its sidecar (and the
    /// listed sidecar).
    pub fn copy_intact<S: Listed>(&self, artifact: &Artifact<S>, copy: &Copy) -> bool {
        copy.present
            && copy.signature.is_valid()
            && self.read(copy).is_ok_and(|(ciphertext, sidecar)| {
                crate::digest::sha256_hex(&ciphertext) == sidecar.ciphertext_sha256
                    && artifact.sidecar.describes(&sidecar)
            })
    }

    /// Primary first, then replicas.
    fn roots(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.primary).chain(&self.replicas)
    }

    /// Lists artifacts (all, or one node's), merging copies across primary and replicas.
    pub fn list(&self, node: Option<&str>) -> Result<Listing, StoreError> {
        self.list_of(node)
    }

    /// [`Store::list`] with [`Summary`]s: what a backup reads of a node's store before its
    /// work (the newest artifact's whole sidecar is then read by [`Store::whole`]); an Acra
    /// keystore's whole sidecars are ten times the size.
    pub fn list_summaries(&self, node: Option<&str>) -> Result<Listing<Summary>, StoreError> {
        self.list_of(node)
    }

    /// The listing with `S` per artifact: every keystore on up to 8 threads (see [`crate::par`]).
    fn list_of<S: Listed>(&self, node: Option<&str>) -> Result<Listing<S>, StoreError> {
        let keystores = self.keystores(node)?;
        let mut listing = Listing::default();
        let mut first_error = None;
        let mut sink = |one| match one {
            Ok(one) => listing.append(one),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        };
        // One node's few keystores (what a backup job lists, beside the others) on this thread:
        // threads of their own cost more than they save there.
        if keystores.len() <= 4 {
            for (n, ks) in &keystores {
                sink(self.list_keystore::<S>(n, ks));
            }
        } else {
            crate::par::map_ordered(&keystores, 256, |(n, ks)| self.list_keystore::<S>(n, ks), sink);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(listing),
        }
    }

    /// Every (node, keystore) directory under any root, sorted; only `node`'s when given. A
    /// listing is built one keystore at a time (see [`Store::list_keystore`]), so a caller can
    /// stream a large store instead of holding all of it.
    pub fn keystores(&self, node: Option<&str>) -> Result<Vec<(String, String)>, StoreError> {
        let mut all = std::collections::BTreeSet::new();
        for root in self.roots() {
            let nodes = match node {
                Some(n) => vec![n.to_string()],
                None => subdirs(root)?,
            };
            for n in nodes {
                for ks in subdirs(&root.join(&n))? {
                    all.insert((n.clone(), ks));
                }
            }
        }
        Ok(all.into_iter().collect())
    }

    /// One keystore's artifacts (oldest first) with their copies merged across the roots.
    pub fn list_keystore<S: Listed>(&self, node: &str, keystore: &str) -> Result<Listing<S>, StoreError> {
        let roots: Vec<&PathBuf> = self.roots().collect();
        // Every root's sidecars by id (each root's already sorted; a stable sort merges them).
        let mut each: Vec<(String, usize, Found<S>)> = Vec::new();
        let mut listing = Listing::default();
        for (i, root) in roots.iter().enumerate() {
            let one = self.list_dir(node, keystore, &root.join(node).join(keystore))?;
            listing.problems.extend(one.problems);
            listing.index.add(one.index);
            each.extend(one.found.into_iter().map(|(id, f)| (id, i, f)));
        }
        each.sort_by(|a, b| a.0.cmp(&b.0));
        let mut found: Vec<(String, Vec<Option<Found<S>>>)> = Vec::new();
        for (id, i, f) in each {
            if found.last().is_none_or(|(last, _)| *last != id) {
                found.push((id, std::iter::repeat_with(|| None).take(roots.len()).collect()));
            }
            if let Some((_, copies)) = found.last_mut() {
                copies[i] = Some(f);
            }
        }
        // Each root's directory of this keystore, joined once (not per artifact).
        let dirs: Vec<PathBuf> = roots.iter().map(|r| r.join(node).join(keystore)).collect();
        for (id, mut sidecars) in found {
            let present: Vec<bool> = sidecars
                .iter()
                .map(|s| s.as_ref().is_some_and(|(_, has_age, _)| *has_age))
                .collect();
            let verdicts: Vec<Verdict> = sidecars
                .iter()
                .map(|s| s.as_ref().map_or(Verdict::Unsigned, |(_, _, v)| v.clone()))
                .collect();
            // The listed sidecar is a validly signed copy's when there is one (taken, not cloned).
            let pick = sidecars
                .iter()
                .position(|s| s.as_ref().is_some_and(|(_, _, v)| v.is_valid()))
                .or_else(|| sidecars.iter().position(Option::is_some));
            let Some((sidecar, _, signature)) = pick.and_then(|i| sidecars[i].take()) else {
                continue;
            };
            let copies = roots
                .iter()
                .zip(&dirs)
                .zip(present.iter().zip(verdicts))
                .map(|((root, dir), (present, signature))| Copy {
                    root: (*root).clone(),
                    present: *present,
                    signature,
                    age_path: file_in(dir, &id, ".age"),
                    sidecar_path: file_in(dir, &id, ".json"),
                })
                .collect();
            let artifact = Artifact {
                node: node.to_string(),
                keystore: keystore.to_string(),
                id,
                sidecar,
                copies,
                signature,
            };
            if artifact.signature.is_valid() {
                listing.artifacts.push(artifact);
            } else {
                listing.untrusted.push(artifact);
            }
        }
        Ok(listing)
    }

    /// One keystore directory `dir` (of node `n`, keystore `ks`): its sidecars with their
    /// verdicts and whether the ciphertext is there, and its problems.
    fn list_dir<S: Listed>(&self, n: &str, ks: &str, dir: &Path) -> Result<DirListing<S>, StoreError> {
        let mut found = Vec::new();
        let mut problems = Vec::new();
        // Each entry's name (None: not UTF-8), and the regular files (or links to them) among
        // them, sorted like the entries: existence checks by binary search, no stat each.
        let (names, entries): (Vec<Option<String>>, Vec<fs::DirEntry>) = read_dir(dir)?
            .into_iter()
            .map(|(name, e)| (name.into_string().ok(), e))
            .unzip();
        let is_file: Vec<bool> = entries
            .iter()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_symlink() => e.path().is_file(),
                Ok(t) => t.is_file(),
                Err(_) => false,
            })
            .collect();
        let files: Vec<&str> = names
            .iter()
            .zip(&is_file)
            .filter(|(_, f)| **f)
            .filter_map(|(name, _)| name.as_deref())
            .collect();
        // A file of this name: looked for beside entry `i` first (an artifact's `.age`,
        // `.json` and `.json.sig` sort next to each other), then anywhere.
        let has = |i: usize, name: &str| {
            let at = |j: usize| is_file.get(j) == Some(&true) && names[j].as_deref() == Some(name);
            (i > 0 && at(i - 1)) || at(i + 1) || files.binary_search(&name).is_ok()
        };
        let mut index_stats = IndexStats::default();
        let mut checked = self.read_dir_sidecars::<S>(dir, &entries, &names, &mut index_stats);
        for (i, (entry, name)) in entries.iter().zip(&names).enumerate() {
            let Some(name) = name.as_deref() else {
                problems.push(Problem {
                    path: entry.path(),
                    message: "unexpected file in the store (its name is not UTF-8)".into(),
                    interrupted: false,
                });
                continue;
            };
            if name == INDEX_FILE || name == SUMMARY_INDEX_FILE {
                continue;
            }
            if temps::is_temp(name) {
                problems.push(self.temp_problem(entry, name));
                continue;
            }
            if let Some(sidecar) = name.strip_suffix(crate::sign::SIG_SUFFIX) {
                if !has(i, sidecar) {
                    problems.push(Problem {
                        path: entry.path(),
                        message: "signature without a sidecar (an interrupted write; safe to delete, and removed by a later backup, prune or import once it is an hour old)".into(),
                        interrupted: true,
                    });
                }
            } else if let Some(id) = name.strip_suffix(".json") {
                let has_age = has(i, &(id.to_string() + ".age"));
                let read = checked[i].take().unwrap_or_else(|| {
                    self.read_signed_sidecar(&entry.path())
                        .map(|(s, v)| (S::from_sidecar(s), v))
                });
                match read {
                    // The file name is not signed: a signed sidecar copied under another name
                    // would list (and count toward retention) twice.
                    Ok((s, _)) if !is_artifact_id(id, s.created_at(), s.ciphertext_sha256()) => problems
                        .push(Problem {
                            path: entry.path(),
                            message: format!(
                                "sidecar of artifact {}, stored under another name (a copy?); not listed",
                                artifact_id(s.created_at(), s.ciphertext_sha256())
                            ),
                            interrupted: false,
                        }),
                    Ok((s, _)) if s.node() != n || s.keystore() != ks => problems.push(Problem {
                        path: entry.path(),
                        message: format!(
                            "sidecar names {}/{}, but it is stored under {n}/{ks}",
                            s.node(),
                            s.keystore()
                        ),
                        interrupted: false,
                    }),
                    Ok((s, verdict)) => match crate::bundle::role::check_placement(
                        self.holds.place(n),
                        s.kind(),
                        s.purpose(),
                        s.role(),
                    ) {
                        Ok(_) => found.push((id.to_string(), (s, has_age, verdict))),
                        // Signed, but not what this directory holds (a master-key backup copied
                        // into a keystore's directory names the same node and keystore).
                        Err(why) => problems.push(Problem {
                            path: entry.path(),
                            message: format!("not listed: {why}"),
                            interrupted: false,
                        }),
                    },
                    Err(e) => problems.push(Problem {
                        path: entry.path(),
                        message: format!("unreadable sidecar: {e}"),
                        interrupted: false,
                    }),
                }
            } else if let Some(id) = name.strip_suffix(".age") {
                if !has(i, &(id.to_string() + ".json")) {
                    problems.push(Problem {
                        path: entry.path(),
                        message: "ciphertext without a sidecar (an interrupted write; safe to delete, and removed by a later backup, prune or import once it is an hour old)".into(),
                        interrupted: true,
                    });
                }
            } else {
                problems.push(Problem {
                    path: entry.path(),
                    message: "unexpected file in the store".into(),
                    interrupted: false,
                });
            }
        }
        Ok(DirListing {
            found,
            problems,
            index: index_stats,
        })
    }

    /// Records in every validly signed copy's sidecar that a backup at `at` found the same
    /// material, and signs the new sidecar.
    pub fn mark_unchanged(
        &self,
        artifact: &Artifact,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        let mut first_error = None;
        for copy in artifact
            .copies
            .iter()
            .filter(|c| c.present && c.signature.is_valid())
        {
            let result = (|| {
                let (mut sidecar, verdict) = self.read_signed_sidecar(&copy.sidecar_path)?;
                if !verdict.is_valid() {
                    return Err(StoreError::Invalid {
                        path: copy.sidecar_path.clone(),
                        message: format!("not updated: {verdict}"),
                    });
                }
                // Another writer may have put a different (validly signed) sidecar here since
                // the listing: re-signing it would vouch for content nobody compared.
                if !sidecar.same_artifact(&artifact.sidecar) {
                    return Err(StoreError::Invalid {
                        path: copy.sidecar_path.clone(),
                        message: "not updated: no longer the listed artifact".into(),
                    });
                }
                sidecar.seen_unchanged_at = Some(at);
                let mut json = serde_json::to_vec_pretty(&sidecar).map_err(|e| StoreError::Invalid {
                    path: copy.sidecar_path.clone(),
                    message: e.to_string(),
                })?;
                json.push(b'\n');
                let dir = copy.sidecar_path.parent().unwrap_or(&copy.root);
                // Signature first: a crash in between leaves a bad signature (never trusted, the
                // next run writes a new artifact), not a forged-looking good one.
                write_atomic(
                    dir,
                    &crate::sign::sig_path(&copy.sidecar_path),
                    &self.sign(&json)?,
                )?;
                write_atomic(dir, &copy.sidecar_path, &json)
            })();
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Deletes an artifact from every root: the sidecar first (so it is no longer listed), then
    /// its signature and the ciphertext. The listing may come from the index cache, so every
    /// sidecar on disk is read again first: if one no longer describes the listed artifact,
    /// nothing is removed.
    pub fn remove<S: Listed>(&self, artifact: &Artifact<S>) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        for copy in &artifact.copies {
            match read_sidecar(&copy.sidecar_path) {
                Ok(on_disk) if !artifact.sidecar.describes(&on_disk) => {
                    return Err(StoreError::Invalid {
                        path: copy.sidecar_path.clone(),
                        message: "the sidecar on disk differs from the listed artifact; not removing".into(),
                    });
                }
                _ => {}
            }
        }
        let mut first_error = None;
        for copy in &artifact.copies {
            for path in [
                &copy.sidecar_path,
                &crate::sign::sig_path(&copy.sidecar_path),
                &copy.age_path,
            ] {
                match fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        first_error.get_or_insert(io(path)(e));
                    }
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Reads one copy's ciphertext and sidecar.
    pub fn read(&self, copy: &Copy) -> Result<(Vec<u8>, Sidecar), StoreError> {
        let sidecar = read_sidecar(&copy.sidecar_path)?;
        let ciphertext = fs::read(&copy.age_path).map_err(|source| StoreError::Io {
            path: copy.age_path.clone(),
            source,
        })?;
        Ok((ciphertext, sidecar))
    }
}

/// One root's copy of an artifact while listing: its sidecar, whether its `.age` is beside it,
/// and its signature.
type Found<S> = (S, bool, Verdict);

/// What one keystore directory holds (see `Store::list_dir`): sidecars by artifact id.
struct DirListing<S> {
    found: Vec<(String, Found<S>)>,
    problems: Vec<Problem>,
    index: IndexStats,
}

/// An artifact's id: its sidecar's `created_at` (UTC, to the second) and the first 8 hex digits
/// of its ciphertext's SHA-256, both signed; a file name that disagrees is not the artifact.
fn artifact_id(created_at: chrono::DateTime<chrono::Utc>, ciphertext_sha256: &str) -> String {
    let short = ciphertext_sha256.get(..8).unwrap_or("00000000");
    format!("{}-{short}", created_at.format("%Y%m%dT%H%M%SZ"))
}

/// Whether `id` is [`artifact_id`] of these, without formatting a string (it is checked for
/// each of 100,000 listed artifacts).
fn is_artifact_id(id: &str, created_at: chrono::DateTime<chrono::Utc>, ciphertext_sha256: &str) -> bool {
    use chrono::{Datelike, Timelike};
    let year = created_at.year();
    // Years chrono prints other than as 4 digits, leap seconds, short hashes: the slow way.
    if !(0..=9999).contains(&year) || created_at.nanosecond() >= 1_000_000_000 || ciphertext_sha256.len() < 8
    {
        return id == artifact_id(created_at, ciphertext_sha256);
    }
    let mut stamp = *b"00000000T000000Z-";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for i in (at..at + width).rev() {
            stamp[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year as u32);
    put(4, 2, created_at.month());
    put(6, 2, created_at.day());
    put(9, 2, created_at.hour());
    put(11, 2, created_at.minute());
    put(13, 2, created_at.second());
    let id = id.as_bytes();
    id.len() == stamp.len() + 8
        && id[..stamp.len()] == stamp
        && id[stamp.len()..] == ciphertext_sha256.as_bytes()[..8]
}

/// `dir/<id><ext>` in one allocation (two per copy of each of 100,000 listed artifacts).
fn file_in(dir: &Path, id: &str, ext: &str) -> PathBuf {
    let mut path = std::ffi::OsString::with_capacity(dir.as_os_str().len() + id.len() + ext.len() + 1);
    path.push(dir);
    path.push("/");
    path.push(id);
    path.push(ext);
    PathBuf::from(path)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_sidecar(path: &Path) -> Result<Sidecar, StoreError> {
    let bytes = fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Invalid {
        path: path.to_path_buf(),
        message: format!("not a valid sidecar: {e}"),
    })
}

/// Entries of a directory with their names, sorted by name; a missing directory is empty.
fn read_dir(dir: &Path) -> Result<Vec<(std::ffi::OsString, fs::DirEntry)>, StoreError> {
    let mut entries = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.map(|e| (e.file_name(), e)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io(dir))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

fn subdirs(dir: &Path) -> Result<Vec<String>, StoreError> {
    Ok(read_dir(dir)?
        .into_iter()
        .filter(|(_, e)| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect())
}

#[cfg(test)]
mod hardening_tests;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod batch_tests;
#[cfg(test)]
mod index_tests;
#[cfg(test)]
mod trust_tests;

//! The store's side of artifact signatures: sign what is written, check what is read.
//! The primitives are in [`crate::sign`]; this file only ties them to copies and sidecars.

use super::index::{DirIndex, IndexStats, Stamps};
use super::summary::Listed;
use super::{Artifact, Copy, Store, StoreError, io, write_atomic};
use crate::bundle::Sidecar;
use crate::sign::{Verdict, sig_path};
use std::fs;
use std::path::{Path, PathBuf};

/// How far in the future a sidecar's `created_at` may lie (clock skew between hosts) before the
/// artifact is refused: a future stamp would make a forgery look like the newest backup.
pub const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// A sidecar read for the listing: parsed, its signature checked (not the time: see [`timed`]).
pub(super) struct Checked {
    pub sidecar: Sidecar,
    pub verdict: Verdict,
    /// The index's cache key for the verdict; `None` when it must not be cached (the signature
    /// file could not be read).
    pub content_sha256: Option<String>,
}

/// Parses sidecar bytes read from `path`.
fn parse(path: &Path, bytes: &[u8]) -> Result<Sidecar, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Invalid {
        path: path.to_path_buf(),
        message: format!("not a valid sidecar: {e}"),
    })
}

/// A signature verdict with the time check applied: a `created_at` further in the future than
/// [`MAX_CLOCK_SKEW`] makes a valid signature bad (checked on every read, never cached).
pub(super) fn timed(verdict: Verdict, created: chrono::DateTime<chrono::Utc>) -> Verdict {
    if verdict.is_valid() && created > chrono::Utc::now() + MAX_CLOCK_SKEW {
        return Verdict::Bad(format!("created_at {created} lies in the future"));
    }
    verdict
}

/// The stamps of a sidecar and its signature file, from their directory entries (a stat
/// relative to the open directory, no walk of the whole path); `None` when one cannot be taken.
fn stamps_of(sidecar: &fs::DirEntry, sig: Option<&fs::DirEntry>) -> Option<Stamps> {
    let meta = |e: &fs::DirEntry| match e.metadata() {
        Ok(m) if m.file_type().is_symlink() => fs::metadata(e.path()).ok(),
        other => other.ok(),
    };
    let sidecar = meta(sidecar)?;
    let sig = match sig {
        Some(e) => Some(meta(e)?),
        None => None,
    };
    Some(Stamps::of(&sidecar, sig.as_ref()))
}

/// A validly signed copy's exact bytes, to copy elsewhere.
pub(super) struct Source {
    pub ciphertext: Vec<u8>,
    pub sidecar: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Store {
    /// Signs sidecar bytes with the run's key.
    pub(super) fn sign(&self, sidecar_json: &[u8]) -> Result<Vec<u8>, StoreError> {
        match &self.keys {
            Some(keys) => Ok(keys.signer.sign(sidecar_json)),
            None => Err(StoreError::Invalid {
                path: self.primary.clone(),
                message: "no signing key loaded: artifacts cannot be written unsigned".into(),
            }),
        }
    }

    /// The keyed hash this store's sidecars carry instead of plaintext SHA-256 (`None` without
    /// keys: such a store cannot write).
    pub fn keyed_hash(&self) -> Option<crate::digest::Keyed> {
        self.keys.as_ref().map(|k| k.keyed_hash())
    }

    /// Checks a sidecar's bytes and its `.sig` against allowed_signers, and its `created_at`.
    pub(super) fn verdict(&self, sidecar_path: &Path, bytes: &[u8], sidecar: &Sidecar) -> Verdict {
        let sig = match fs::read(sig_path(sidecar_path)) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Verdict::Bad(format!("cannot read the signature: {e}")),
        };
        timed(
            self.signature_verdict(bytes, sig.as_deref(), sidecar.manifest.created_at),
            sidecar.manifest.created_at,
        )
    }

    /// The signature check alone, against allowed_signers' key windows at the sidecar's signed
    /// `created_at` (what the index may cache: it depends on the content and allowed_signers,
    /// which both key the cache, not on the clock).
    fn signature_verdict(
        &self,
        bytes: &[u8],
        sig: Option<&[u8]>,
        created_at: chrono::DateTime<chrono::Utc>,
    ) -> Verdict {
        match &self.keys {
            Some(keys) => keys.allowed.verify(bytes, sig, created_at),
            None => Verdict::Bad("no allowed_signers loaded".into()),
        }
    }

    /// Reads and parses a sidecar and checks its signature.
    pub(super) fn read_signed_sidecar(&self, path: &Path) -> Result<(Sidecar, Verdict), StoreError> {
        let bytes = fs::read(path).map_err(io(path))?;
        let sidecar: Sidecar = parse(path, &bytes)?;
        let verdict = self.verdict(path, &bytes, &sidecar);
        Ok((sidecar, verdict))
    }

    /// Reads a sidecar and its signature for the listing; `known` is a cached (content hash,
    /// verdict): when the bytes hash the same, the verdict is reused without an Ed25519 check.
    fn check_sidecar(&self, path: &Path, known: Option<&(String, Verdict)>) -> Result<Checked, StoreError> {
        let bytes = fs::read(path).map_err(io(path))?;
        let sidecar: Sidecar = parse(path, &bytes)?;
        let sig = match fs::read(sig_path(path)) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Ok(Checked {
                    sidecar,
                    verdict: Verdict::Bad(format!("cannot read the signature: {e}")),
                    content_sha256: None,
                });
            }
        };
        let content = super::index::content_sha256(&bytes, sig.as_deref());
        let verdict = match known {
            Some((hash, verdict)) if *hash == content => verdict.clone(),
            _ => self.signature_verdict(&bytes, sig.as_deref(), sidecar.manifest.created_at),
        };
        Ok(Checked {
            sidecar,
            verdict,
            content_sha256: Some(content),
        })
    }

    /// [`Store::check_sidecar`] for many files, on up to 8 threads (Ed25519 verification is
    /// most of the cost of listing a large store without an index); results in input order.
    pub(super) fn check_sidecars(
        &self,
        items: &[(PathBuf, Option<(String, Verdict)>)],
    ) -> Vec<Result<Checked, StoreError>> {
        // Inside a listing's worker the other keystores already keep every thread busy.
        let threads = match crate::par::in_worker() {
            true => 1,
            false => crate::par::threads().min(items.len().div_ceil(32)),
        };
        let one = |(p, known): &(PathBuf, Option<(String, Verdict)>)| self.check_sidecar(p, known.as_ref());
        if threads <= 1 {
            return items.iter().map(one).collect();
        }
        let chunk = items.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = items
                .chunks(chunk)
                .map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("signature check thread panicked"))
                .collect()
        })
    }

    /// Every sidecar of one keystore directory with its verdict (time-checked), by position in
    /// `entries` (`names` are their UTF-8 names, in the same sorted order): from the
    /// directory's index where its entry is fresh, the rest read and checked in parallel and
    /// recorded. Without keys there is no index (nothing could be trusted): all `None`.
    pub(super) fn read_dir_sidecars<S: Listed>(
        &self,
        dir: &Path,
        entries: &[fs::DirEntry],
        names: &[Option<String>],
        stats: &mut IndexStats,
    ) -> Vec<Option<Result<(S, Verdict), StoreError>>> {
        let mut out: Vec<Option<Result<(S, Verdict), StoreError>>> =
            std::iter::repeat_with(|| None).take(entries.len()).collect();
        let Some(keys) = &self.keys else {
            return out;
        };
        let bytes = DirIndex::read(dir, S::INDEX);
        let mut index = DirIndex::open(dir, S::INDEX, keys.index_key(), bytes.as_deref());
        // The UTF-8 names with their positions, still sorted: finds `X.json.sig` for `X.json`.
        let sorted: Vec<(&str, usize)> = names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((n.as_deref()?, i)))
            .collect();
        let find = |name: &str| {
            sorted
                .binary_search_by(|(n, _)| (*n).cmp(name))
                .ok()
                .map(|at| &entries[sorted[at].1])
        };
        let mut pending = Vec::new();
        let mut pending_at = Vec::new();
        for &(name, i) in &sorted {
            // Dot files (the index itself, temp files) are never sidecars.
            if !name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            // `X.json.sig` sorts right after `X.json` (nothing sorts between but other names
            // that start with `X.json`): looked for there first.
            let sig_name = name.to_string() + crate::sign::SIG_SUFFIX;
            let sig = match names.get(i + 1) {
                Some(Some(next)) if *next == sig_name => Some(&entries[i + 1]),
                _ => find(&sig_name),
            };
            let stamps = stamps_of(&entries[i], sig);
            if let Some(stamps) = stamps
                && let Some((sidecar, verdict)) = index.lookup::<S>(name, stamps)
            {
                let verdict = timed(verdict, sidecar.created_at());
                out[i] = Some(Ok((sidecar, verdict)));
                continue;
            }
            pending.push((entries[i].path(), index.known_verdict(name).cloned()));
            pending_at.push((name, i, stamps));
        }
        for ((name, i, stamps), result) in pending_at.into_iter().zip(self.check_sidecars(&pending)) {
            let result = match result {
                Ok(c) => {
                    match (stamps, c.content_sha256) {
                        (Some(stamps), Some(hash)) => {
                            index.record::<S>(name, stamps, hash, &c.sidecar, &c.verdict)
                        }
                        _ => index.unreadable(),
                    }
                    let verdict = timed(c.verdict, c.sidecar.manifest.created_at);
                    Ok((S::from_sidecar(c.sidecar), verdict))
                }
                Err(e) => {
                    index.unreadable();
                    Err(e)
                }
            };
            out[i] = Some(result);
        }
        stats.add(index.finish());
        out
    }

    /// The bytes of a copy that is validly signed (checked again now, under the caller's lock),
    /// whose ciphertext matches its sidecar and which is the listed artifact.
    pub(super) fn signed_source<S: Listed>(&self, artifact: &Artifact<S>) -> Option<Source> {
        artifact.copies.iter().find_map(|c| {
            let sidecar = fs::read(&c.sidecar_path).ok()?;
            let parsed: Sidecar = serde_json::from_slice(&sidecar).ok()?;
            if !self.verdict(&c.sidecar_path, &sidecar, &parsed).is_valid()
                || !artifact.sidecar.describes(&parsed)
            {
                return None;
            }
            let ciphertext = fs::read(&c.age_path).ok()?;
            if crate::digest::sha256_hex(&ciphertext) != parsed.ciphertext_sha256 {
                return None;
            }
            let signature = fs::read(sig_path(&c.sidecar_path)).ok()?;
            Some(Source {
                ciphertext,
                sidecar,
                signature,
            })
        })
    }

    /// The whole sidecar of an artifact listed as a summary: read again from its first present,
    /// validly signed copy that the summary describes (its signature checked now). For what acts
    /// on the newest artifact of a keystore after a light listing (a backup's unchanged check).
    pub fn whole<S: Listed>(&self, artifact: &Artifact<S>) -> Option<Artifact> {
        let sidecar = artifact
            .copies
            .iter()
            .filter(|c| c.present && c.signature.is_valid())
            .find_map(|c| {
                let (sidecar, verdict) = self.read_signed_sidecar(&c.sidecar_path).ok()?;
                (verdict.is_valid() && artifact.sidecar.describes(&sidecar)).then_some(sidecar)
            })?;
        Some(Artifact {
            node: artifact.node.clone(),
            keystore: artifact.keystore.clone(),
            id: artifact.id.clone(),
            sidecar,
            copies: artifact.copies.clone(),
            signature: artifact.signature.clone(),
        })
    }

    /// Signs one copy of an artifact that predates signing (`coldkeep adopt`). The caller must
    /// have deep-verified the artifact with an identity first; this only refuses copies whose
    /// sidecar changed since it was listed, or that already carry a signature file (a bad or
    /// foreign signature is evidence, not something to paper over).
    pub fn sign_unsigned(&self, artifact: &Artifact, copy: &Copy) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        let sig = sig_path(&copy.sidecar_path);
        if sig.exists() {
            return Err(StoreError::Invalid {
                path: sig,
                message: "already has a signature file; not replaced".into(),
            });
        }
        let bytes = fs::read(&copy.sidecar_path).map_err(io(&copy.sidecar_path))?;
        let sidecar: Sidecar = serde_json::from_slice(&bytes).map_err(|e| StoreError::Invalid {
            path: copy.sidecar_path.clone(),
            message: format!("not a valid sidecar: {e}"),
        })?;
        if !sidecar.same_artifact(&artifact.sidecar) {
            return Err(StoreError::Invalid {
                path: copy.sidecar_path.clone(),
                message: "the sidecar differs from the one verified; not signed".into(),
            });
        }
        if sidecar.manifest.created_at > chrono::Utc::now() + MAX_CLOCK_SKEW {
            return Err(StoreError::Invalid {
                path: copy.sidecar_path.clone(),
                message: "created_at lies in the future; not signed".into(),
            });
        }
        let dir = copy.sidecar_path.parent().unwrap_or(&copy.root);
        write_atomic(dir, &sig, &self.sign(&bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{sidecar, store, test_keys};
    use crate::sign::{Verdict, sig_path};
    use std::fs;

    #[test]
    fn written_artifacts_are_signed_and_edits_are_untrusted() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let id = s.write(&sidecar("v1", 0, b"c"), b"c").unwrap();
        let listing = s.list(None).unwrap();
        assert_eq!((listing.artifacts.len(), listing.untrusted.len()), (1, 0));
        assert!(listing.problems.is_empty(), "{:?}", listing.problems);
        let json = s.replicas[0].join(format!("v1/p12/{id}.json"));
        assert!(sig_path(&json).is_file());
        // One edited byte in the replica's sidecar: that copy is bad, the artifact stays good.
        let edited = fs::read_to_string(&json).unwrap().replace("h:22", "h:23");
        fs::write(&json, edited).unwrap();
        let a = &s.list(None).unwrap().artifacts[0];
        assert!(a.copies[0].signature.is_valid());
        assert!(
            matches!(a.copies[1].signature, Verdict::Bad(_)),
            "{:?}",
            a.copies[1].signature
        );
        assert!(!s.copy_intact(a, &a.copies[1]));
        // Repair replaces the bad copy with the signed one, signature included.
        assert_eq!(s.repair_missing(a).unwrap(), 1);
        let a = &s.list(None).unwrap().artifacts[0];
        assert!(a.copies.iter().all(|c| c.present && c.signature.is_valid()));
        s.remove(a).unwrap();
        assert!(!sig_path(&json).exists(), "remove deletes the signature too");
    }

    #[test]
    fn unsigned_foreign_and_future_artifacts_are_never_listed_as_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let id = s.write(&sidecar("v1", 0, b"c"), b"c").unwrap();
        // Another key (not in allowed_signers) writes into the same store.
        let mut other = store(dir.path());
        other.keys = test_keys();
        other.write(&sidecar("v1", 1, b"d"), b"d").unwrap();
        // A copy of the genuine artifact with its signature removed.
        let ks = s.primary.join("v1/p12");
        let mut future = sidecar("v1", 2, b"e");
        future.manifest.created_at = chrono::Utc::now() + chrono::Duration::hours(1);
        let fid = s.write(&future, b"e").unwrap();
        fs::remove_file(sig_path(&ks.join(format!("{id}.json")))).unwrap();
        fs::remove_file(sig_path(&s.replicas[0].join(format!("v1/p12/{id}.json")))).unwrap();
        let listing = s.list(None).unwrap();
        assert!(listing.artifacts.is_empty(), "{:?}", listing.artifacts);
        let verdicts: Vec<(String, &'static str)> = listing
            .untrusted
            .iter()
            .map(|a| (a.id.clone(), a.signature.word()))
            .collect();
        assert!(verdicts.contains(&(id.clone(), "unsigned")), "{verdicts:?}");
        assert!(verdicts.iter().any(|(_, w)| *w == "foreign"), "{verdicts:?}");
        assert!(verdicts.contains(&(fid, "bad")), "{verdicts:?}");
        // Nothing is repaired from an unsigned artifact; adoption signs it copy by copy.
        let a = listing.untrusted.iter().find(|a| a.id == id).unwrap();
        fs::remove_file(ks.join(format!("{id}.age"))).unwrap();
        assert_eq!(s.repair_missing(a).unwrap(), 0);
        let a = s
            .list(None)
            .unwrap()
            .untrusted
            .into_iter()
            .find(|a| a.id == id)
            .unwrap();
        s.sign_unsigned(&a, &a.copies[1]).unwrap();
        assert!(
            s.sign_unsigned(&a, &a.copies[1]).is_err(),
            "an existing signature is kept"
        );
        let a = s
            .list(None)
            .unwrap()
            .artifacts
            .into_iter()
            .find(|a| a.id == id)
            .unwrap();
        assert_eq!(
            s.repair_missing(&a).unwrap(),
            1,
            "now repaired from the signed copy"
        );
    }

    #[test]
    fn many_artifacts_are_checked_in_parallel_and_each_verdict_lands_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(dir.path());
        s.replicas.clear();
        let ids: Vec<String> = (0..70u32)
            .map(|i| {
                let mut sc = sidecar("v1", 0, &i.to_le_bytes());
                sc.manifest.created_at += chrono::Duration::seconds(i.into());
                s.write(&sc, &i.to_le_bytes()).unwrap()
            })
            .collect();
        let edited = s.primary.join(format!("v1/p12/{}.json", ids[41]));
        let text = fs::read_to_string(&edited).unwrap().replace("h:22", "h:99");
        fs::write(&edited, text).unwrap();
        let listing = s.list(None).unwrap();
        assert_eq!(listing.artifacts.len(), 69);
        assert_eq!(listing.untrusted.len(), 1);
        assert_eq!(listing.untrusted[0].id, ids[41]);
        assert_eq!(listing.untrusted[0].sidecar.manifest.host, "h:99");
    }

    /// Between the listing and the update another writer put a different, validly signed
    /// sidecar at the same path: "seen unchanged" must not be stamped (and re-signed) onto it.
    #[test]
    fn mark_unchanged_refuses_a_sidecar_that_is_no_longer_the_listed_artifact() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.write(&sidecar("v1", 0, b"c"), b"c").unwrap();
        let a = s.list(None).unwrap().artifacts.remove(0);
        // A genuine, differently signed-for sidecar written over both copies.
        let mut other = a.sidecar.clone();
        other.manifest.host = "h:99".into();
        let mut json = serde_json::to_vec_pretty(&other).unwrap();
        json.push(b'\n');
        for c in &a.copies {
            fs::write(crate::sign::sig_path(&c.sidecar_path), s.sign(&json).unwrap()).unwrap();
            fs::write(&c.sidecar_path, &json).unwrap();
        }
        assert!(s.mark_unchanged(&a, chrono::Utc::now()).is_err());
        for c in &a.copies {
            assert_eq!(fs::read(&c.sidecar_path).unwrap(), json, "left as it was");
        }
    }

    #[test]
    fn mark_unchanged_re_signs_and_no_key_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.write(&sidecar("v1", 0, b"c"), b"c").unwrap();
        let a = s.list(None).unwrap().artifacts.remove(0);
        s.mark_unchanged(&a, chrono::Utc::now()).unwrap();
        let a = s.list(None).unwrap().artifacts.remove(0);
        assert!(a.sidecar.seen_unchanged_at.is_some());
        let mut keyless = store(dir.path());
        keyless.keys = None;
        assert!(keyless.write(&sidecar("v1", 1, b"d"), b"d").is_err());
        assert!(
            keyless.list(None).unwrap().artifacts.is_empty(),
            "nothing trusted without keys"
        );
    }
}

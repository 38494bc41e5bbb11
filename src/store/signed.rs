//! The store's side of artifact signatures: sign what is written, check what is read.
//! The primitives are in [`crate::sign`]; this file only ties them to copies and sidecars.

use super::{Artifact, Copy, Store, StoreError, io, write_atomic};
use crate::bundle::Sidecar;
use crate::sign::{Verdict, sig_path};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// How far in the future a sidecar's `created_at` may lie (clock skew between hosts) before the
/// artifact is refused: a future stamp would make a forgery look like the newest backup.
pub const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

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

    /// Checks a sidecar's bytes and its `.sig` against allowed_signers, and its `created_at`.
    pub(super) fn verdict(&self, sidecar_path: &Path, bytes: &[u8], sidecar: &Sidecar) -> Verdict {
        let Some(keys) = &self.keys else {
            return Verdict::Bad("no allowed_signers loaded".into());
        };
        let sig = match fs::read(sig_path(sidecar_path)) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Verdict::Bad(format!("cannot read the signature: {e}")),
        };
        let verdict = keys.allowed.verify(bytes, sig.as_deref());
        let created = sidecar.manifest.created_at;
        if verdict.is_valid() && created > chrono::Utc::now() + MAX_CLOCK_SKEW {
            return Verdict::Bad(format!("created_at {created} lies in the future"));
        }
        verdict
    }

    /// Reads and parses a sidecar and checks its signature.
    pub(super) fn read_signed_sidecar(&self, path: &Path) -> Result<(Sidecar, Verdict), StoreError> {
        let bytes = fs::read(path).map_err(io(path))?;
        let sidecar: Sidecar = serde_json::from_slice(&bytes).map_err(|e| StoreError::Invalid {
            path: path.to_path_buf(),
            message: format!("not a valid sidecar: {e}"),
        })?;
        let verdict = self.verdict(path, &bytes, &sidecar);
        Ok((sidecar, verdict))
    }

    /// [`Store::read_signed_sidecar`] for many files, on up to 8 threads (Ed25519 verification
    /// is most of the cost of listing a large store).
    pub(super) fn read_signed_sidecars(
        &self,
        paths: Vec<PathBuf>,
    ) -> HashMap<PathBuf, Result<(Sidecar, Verdict), StoreError>> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8)
            .min(paths.len().div_ceil(32));
        if threads <= 1 {
            return paths
                .into_iter()
                .map(|p| {
                    let r = self.read_signed_sidecar(&p);
                    (p, r)
                })
                .collect();
        }
        let chunk = paths.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = paths
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|p| (p.clone(), self.read_signed_sidecar(p)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("signature check thread panicked"))
                .collect()
        })
    }

    /// The bytes of a copy that is validly signed (checked again now, under the caller's lock),
    /// whose ciphertext matches its sidecar and which is the listed artifact.
    pub(super) fn signed_source(&self, artifact: &Artifact) -> Option<Source> {
        artifact.copies.iter().find_map(|c| {
            let sidecar = fs::read(&c.sidecar_path).ok()?;
            let parsed: Sidecar = serde_json::from_slice(&sidecar).ok()?;
            if !self.verdict(&c.sidecar_path, &sidecar, &parsed).is_valid()
                || !parsed.same_artifact(&artifact.sidecar)
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

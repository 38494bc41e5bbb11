//! Adopting a store that predates signing (`verify --identity --sign-unsigned --before TIME`):
//! which unsigned artifacts may be signed, and signing them once the operator confirmed.
//!
//! Why a cut-off: the recipients are public (every sidecar lists them), so anyone who can write
//! a store can plant an unsigned artifact encrypted to them, with material of their own, that
//! decrypts and whose hashes match: deep verification alone cannot tell it from a genuine old
//! backup, and signing it made it trusted (the newest backup, restored onto the node). Only
//! artifacts from before signing started need adopting, so only those made before a time the
//! operator gives are proposed, and never one made after the newest signed artifact, nor after
//! the oldest signed artifact of its own keystore (from then on that keystore's artifacts were
//! written signed). A plant dated earlier still cannot become the newest backup; the candidates
//! are shown with their dates, when their sidecars appeared on disk and their contents' identity
//! before anything is signed, and the command asks (or takes `--yes`).

use super::verify::{Seen, StoreCheck, check_store};
use crate::bundle::Identities;
use crate::config::Config;
use crate::sign::Verdict;
use crate::store::{Artifact, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What adoption proposes and, once applied, did.
#[derive(Debug, Serialize)]
pub struct Adoption {
    /// The cut-off the operator gave.
    pub before: DateTime<Utc>,
    /// The newest validly signed artifact of either store: no cut-off reaches past it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_signed: Option<DateTime<Utc>>,
    /// Unsigned artifacts that passed deep verification and predate the cut-off: signed once
    /// confirmed.
    pub candidates: Vec<Candidate>,
    /// Unsigned artifacts that are not proposed, and why.
    pub refused: Vec<Refused>,
    /// Whether the candidates were signed (confirmed), or left as they are.
    pub applied: bool,
}

/// An unsigned artifact proposed for signing.
#[derive(Debug, Serialize)]
pub struct Candidate {
    /// The node.
    pub node: String,
    /// The keystore.
    pub keystore: String,
    /// The artifact id.
    pub id: String,
    /// When its sidecar says it was made.
    pub created_at: DateTime<Utc>,
    /// When its sidecar appeared on disk (the oldest status change of its copies): a planted
    /// artifact can claim any `created_at`, but not this, unless the store was copied since.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_disk_since: Option<DateTime<Utc>>,
    /// The identity of its contents (checked against the decrypted material by deep
    /// verification), short form.
    pub identity: String,
    /// Copies signed by `apply` (empty until then).
    pub signed: Vec<String>,
    /// What went wrong signing a copy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(skip)]
    store: usize,
    #[serde(skip)]
    artifact: Artifact,
}

/// An unsigned artifact adoption leaves alone.
#[derive(Debug, Serialize)]
pub struct Refused {
    /// The node.
    pub node: String,
    /// The keystore.
    pub keystore: String,
    /// The artifact id.
    pub id: String,
    /// Why it is not signed.
    pub reason: String,
}

/// Verifies the store (deep, with `ids`) and proposes the unsigned artifacts that may be
/// adopted: see the module doc for the rules. Signs nothing.
pub fn plan(
    config: &Config,
    names: Option<&[String]>,
    ids: &Identities,
    before: DateTime<Utc>,
) -> anyhow::Result<(StoreCheck, Adoption)> {
    let (check, seen) = check_store(config, names, Some(ids))?;
    let adoption = propose(seen, before);
    Ok((check, adoption))
}

/// The adoption decision for what [`check_store`] saw.
fn propose(seen: Seen, before: DateTime<Utc>) -> Adoption {
    let mut adoption = Adoption {
        before,
        newest_signed: seen.newest_signed,
        candidates: Vec::new(),
        refused: Vec::new(),
        applied: false,
    };
    for (store, a, deep_ok) in seen.unsigned {
        let created = a.sidecar.manifest.created_at;
        let keystore_signed = seen
            .oldest_signed
            .get(&(store, a.node.clone(), a.keystore.clone()))
            .copied();
        let refuse = |reason: String| Refused {
            node: a.node.clone(),
            keystore: a.keystore.clone(),
            id: a.id.clone(),
            reason,
        };
        let present: Vec<&crate::store::Copy> = a.copies.iter().filter(|c| c.present).collect();
        let reason = if !deep_ok {
            Some("it did not pass deep verification with this identity".to_string())
        } else if !present
            .iter()
            .all(|c| matches!(c.signature, Verdict::Unsigned | Verdict::Valid { .. }))
        {
            Some("another copy has a bad or foreign signature (evidence, not something to sign over)".into())
        } else if created >= before {
            Some(format!("made {created}, not before the cut-off {before}"))
        } else if let Some(newest) = seen.newest_signed.filter(|n| created >= *n) {
            Some(format!(
                "made {created}, not before the newest signed artifact ({newest}): written after signing began"
            ))
        } else {
            keystore_signed.filter(|f| created >= *f).map(|first| {
                format!(
                    "made {created}, after this keystore's first signed artifact ({first}): its artifacts \
                     are written signed since"
                )
            })
        };
        match reason {
            Some(reason) => adoption.refused.push(refuse(reason)),
            None => adoption.candidates.push(Candidate {
                node: a.node.clone(),
                keystore: a.keystore.clone(),
                id: a.id.clone(),
                created_at: created,
                on_disk_since: on_disk_since(&present),
                identity: a
                    .sidecar
                    .manifest
                    .identity
                    .as_ref()
                    .map(|i| i.short())
                    .unwrap_or_else(|| a.sidecar.manifest.kind.clone()),
                signed: Vec::new(),
                errors: Vec::new(),
                store,
                artifact: a,
            }),
        }
    }
    adoption
}

/// The oldest status-change time (ctime) of the copies' sidecars: when they appeared on disk.
fn on_disk_since(copies: &[&crate::store::Copy]) -> Option<DateTime<Utc>> {
    use std::os::unix::fs::MetadataExt;
    copies
        .iter()
        .filter_map(|c| std::fs::symlink_metadata(&c.sidecar_path).ok())
        .filter_map(|m| DateTime::from_timestamp(m.ctime(), m.ctime_nsec() as u32))
        .min()
}

/// Signs every unsigned copy of each candidate (the operator confirmed), and marks them in
/// `check`: their unsigned-copy problems go, `signed_now` is set.
pub fn apply(config: &Config, adoption: &mut Adoption, check: &mut StoreCheck) {
    let stores = [Some(Store::new(&config.store)), Store::master_keys(&config.store)];
    for c in &mut adoption.candidates {
        let Some(store) = stores[c.store].as_ref() else {
            continue;
        };
        for copy in c
            .artifact
            .copies
            .iter()
            .filter(|copy| copy.present && copy.signature == Verdict::Unsigned)
        {
            match store.sign_unsigned(&c.artifact, copy) {
                Ok(()) => {
                    tracing::info!(artifact = %c.id, root = %copy.root.display(), "signed (adopted)");
                    c.signed.push(copy.sidecar_path.display().to_string());
                }
                Err(e) => c.errors.push(format!("not signed: {e}")),
            }
        }
        if let Some(entry) = check
            .artifacts
            .iter_mut()
            .find(|e| e.node == c.node && e.keystore == c.keystore && e.id == c.id)
        {
            let mut kept = Vec::new();
            for (p, k) in entry.problems.drain(..).zip(entry.kinds.drain(..)) {
                let signed_here = k == super::verify::ProblemKind::Signature
                    && c.signed.iter().any(|s| p.starts_with(&format!("{s}: ")));
                if !signed_here {
                    kept.push((p, k));
                }
            }
            (entry.problems, entry.kinds) = kept.into_iter().unzip();
            entry.problems.extend(c.errors.iter().cloned());
            entry
                .kinds
                .extend(c.errors.iter().map(|_| super::verify::ProblemKind::Signature));
            entry.signed_now = !c.signed.is_empty();
            entry.ok = entry.problems.is_empty();
        }
    }
    adoption.applied = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Copy;

    fn artifact(id: &str, created: DateTime<Utc>, verdicts: &[Verdict]) -> Artifact {
        let sidecar = crate::bundle::Sidecar {
            manifest: crate::bundle::Manifest {
                format: 1,
                node: "n".into(),
                keystore: "p12".into(),
                kind: "p12".into(),
                purpose: crate::bundle::Purpose::Backup,
                role: None,
                created_at: created,
                coldkeep_version: "t".into(),
                host: "h".into(),
                host_key: String::new(),
                files: Vec::new(),
                dirs: Vec::new(),
                identity: None,
                recipients: Vec::new(),
                hash_key: None,
                identity_unchecked: None,
            },
            ciphertext_sha256: "00".repeat(32),
            ciphertext_size: 1,
            seen_unchanged_at: None,
        };
        Artifact {
            node: "n".into(),
            keystore: "p12".into(),
            id: id.into(),
            sidecar,
            copies: verdicts
                .iter()
                .map(|v| Copy {
                    root: "/r".into(),
                    age_path: format!("/r/{id}.age").into(),
                    sidecar_path: format!("/r/{id}.json").into(),
                    present: true,
                    signature: v.clone(),
                })
                .collect(),
            signature: verdicts[0].clone(),
        }
    }

    fn at(day: u32) -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(2026, 1, day, 0, 0, 0).unwrap()
    }

    /// Only what predates the cut-off, the newest signed artifact and its keystore's first
    /// signed artifact, passed deep verification and carries no bad or foreign signature.
    #[test]
    fn only_deep_verified_unsigned_artifacts_from_before_signing_are_proposed() {
        let u = Verdict::Unsigned;
        let bad = Verdict::Bad("edited".into());
        let mut seen = Seen {
            stores: [None, None],
            unsigned: vec![
                (0, artifact("old", at(1), &[u.clone(), u.clone()]), true),
                (0, artifact("not-deep", at(2), std::slice::from_ref(&u)), false),
                (0, artifact("evidence", at(3), &[u.clone(), bad]), true),
                (
                    0,
                    artifact("after-cutoff", at(20), std::slice::from_ref(&u)),
                    true,
                ),
                (
                    0,
                    artifact("after-keystore-signing", at(12), std::slice::from_ref(&u)),
                    true,
                ),
            ],
            oldest_signed: Default::default(),
            newest_signed: Some(at(15)),
        };
        seen.oldest_signed.insert((0, "n".into(), "p12".into()), at(10));
        let adoption = propose(seen, at(25));
        let ids: Vec<&str> = adoption.candidates.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["old"]);
        let refused: Vec<(&str, &str)> = adoption
            .refused
            .iter()
            .map(|r| (r.id.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(refused.len(), 4, "{refused:?}");
        assert!(refused[0].1.contains("deep verification"), "{refused:?}");
        assert!(refused[1].1.contains("bad or foreign"), "{refused:?}");
        assert!(refused[2].1.contains("newest signed artifact"), "{refused:?}");
        assert!(refused[3].1.contains("first signed artifact"), "{refused:?}");
        // An earlier cut-off leaves out what is after it.
        let seen = Seen {
            stores: [None, None],
            unsigned: vec![(0, artifact("old", at(5), &[Verdict::Unsigned]), true)],
            oldest_signed: Default::default(),
            newest_signed: None,
        };
        let adoption = propose(seen, at(5));
        assert!(adoption.candidates.is_empty());
        assert!(adoption.refused[0].reason.contains("cut-off"));
    }
}

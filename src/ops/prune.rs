//! Retention: plan and apply each keystore's policy to the store and its replicas. Used by
//! `coldkeep prune` and by the daemon after each run.

use crate::bundle::Purpose;
use crate::config::{Config, Retention};
use crate::store::retention::{self, Candidate};
use crate::store::{Artifact, Store, Summary};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// One artifact's fate.
#[derive(Debug, Serialize)]
pub struct Pruned {
    /// The node.
    pub node: String,
    /// The keystore.
    pub keystore: String,
    /// The artifact id.
    pub id: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Kept (true) or removed.
    pub keep: bool,
    /// Which rules kept it.
    pub reasons: Vec<String>,
    /// Set when removing it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Plans (and unless `dry_run`, applies) retention for every keystore in the store; returns
/// every artifact's fate (see [`prune_each`], which streams them instead).
pub fn prune(config: &Config, node: Option<&str>, dry_run: bool) -> anyhow::Result<Vec<Pruned>> {
    let mut results = Vec::new();
    prune_each(config, node, dry_run, |p| results.push(p))?;
    Ok(results)
}

/// Plans (and unless `dry_run`, applies) retention for every keystore in the store, calling
/// `emit` with each artifact's fate as it is known. Keystores no longer in the config are kept
/// whole. Each removal takes the store lock.
///
/// The store is listed a keystore at a time on every core, from the summary index, and each
/// keystore's plan is made as its listing arrives. What is kept (and, on a dry run, what would
/// go), and the artifacts without a valid signature (never counted, never removed), are emitted
/// at once, so memory is bounded by the listing's window, not by the store (300,000 artifacts
/// held 270 MiB). The artifacts to remove are held until every keystore is planned: nothing is
/// removed unless every keystore could be listed and planned; each removal then checks the
/// sidecar on disk first ([`Store::remove`]) and is emitted with its result.
pub fn prune_each(
    config: &Config,
    node: Option<&str>,
    dry_run: bool,
    mut emit: impl FnMut(Pruned),
) -> anyhow::Result<()> {
    let store = Store::new(&config.store);
    let keystores = store.keystores(node)?;
    // The planned removals: each one's fate (emitted once removed) and the artifact.
    let mut doomed: Vec<(Pruned, Artifact<Summary>)> = Vec::new();
    let mut first_error = None;
    crate::par::map_ordered(
        &keystores,
        64,
        |(n, ks)| {
            let listing = store.list_keystore::<Summary>(n, ks)?;
            // Temp files of interrupted writes whose writers are gone (never on a dry run).
            if !dry_run && let Err(e) = store.remove_stale_temps(&listing.problems) {
                tracing::warn!("cannot remove stale temp files: {e}");
            }
            let planned = plan_keystore(config, &store, listing.artifacts);
            Ok::<_, crate::store::StoreError>((planned, listing.untrusted))
        },
        |planned| match planned {
            Ok((planned, listed_untrusted)) => {
                for (pruned, artifact) in planned {
                    match artifact {
                        Some(a) if !dry_run => doomed.push((pruned, a)),
                        _ => emit(pruned),
                    }
                }
                // Never counted above, never removed: reported for a human to look at.
                for a in &listed_untrusted {
                    emit(Pruned {
                        node: a.node.clone(),
                        keystore: a.keystore.clone(),
                        id: a.id.clone(),
                        created_at: a.sidecar.manifest.created_at,
                        keep: true,
                        reasons: vec![super::signatures::untrusted_reason(a)],
                        error: None,
                    });
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        },
    );
    if let Some(e) = first_error {
        return Err(e.into());
    }
    for (mut pruned, a) in doomed {
        match store.remove(&a) {
            Ok(()) => {
                tracing::info!(node = %a.node, keystore = %a.keystore, id = %a.id, "removed by retention")
            }
            Err(e) => pruned.error = Some(e.to_string()),
        }
        emit(pruned);
    }
    Ok(())
}

/// One keystore's plan for its validly signed artifacts: each one's fate, with the artifact
/// itself when it is to be removed.
fn plan_keystore(
    config: &Config,
    store: &Store,
    artifacts: Vec<Artifact<Summary>>,
) -> Vec<(Pruned, Option<Artifact<Summary>>)> {
    let Some(first) = artifacts.first() else {
        return Vec::new();
    };
    let (node, keystore) = (first.node.clone(), first.keystore.clone());
    // Hardware keys follow the top-level policy; keystores their own (or the top-level one).
    let policy = if node == crate::config::HARDWARE_NODE {
        config.retention.clone()
    } else {
        config
            .node(&node)
            .and_then(|n| n.keystores.iter().find(|k| k.name == keystore))
            .map(|k| k.retention.clone())
            .unwrap_or_default()
    };
    let mut artifacts = artifacts;
    artifacts
        .sort_by(|x, y| (y.sidecar.manifest.created_at, &y.id).cmp(&(x.sidecar.manifest.created_at, &x.id)));
    let candidates = candidates(store, &artifacts, &policy);
    let mut by_id: BTreeMap<String, Artifact<Summary>> =
        artifacts.into_iter().map(|a| (a.id.clone(), a)).collect();
    retention::plan(&policy, &candidates, &config.timezone)
        .into_iter()
        .filter_map(|decision| {
            let a = by_id.remove(&decision.id)?;
            let pruned = Pruned {
                node: node.clone(),
                keystore: keystore.clone(),
                id: decision.id,
                created_at: a.sidecar.manifest.created_at,
                keep: decision.keep,
                reasons: decision.reasons,
                error: None,
            };
            Some((pruned, (!decision.keep).then_some(a)))
        })
        .collect()
}

/// The planner's view, newest first. Copies are checked (present, ciphertext hash = sidecar)
/// from the newest backward until an intact one is found, and until an intact one whose
/// identity was checked when stored is found: those are never removed.
fn candidates(store: &Store, artifacts: &[Artifact<Summary>], policy: &Retention) -> Vec<Candidate> {
    let mut found_intact = !policy.is_set();
    let mut found_checked = !policy.is_set();
    artifacts
        .iter()
        .map(|a| {
            let pre_restore = a.sidecar.manifest.purpose == Purpose::PreRestore;
            let checked = a.sidecar.manifest.identity_unchecked.is_none();
            let wanted = !found_intact || checked && !found_checked;
            let intact = if pre_restore || !wanted {
                false
            } else {
                // One good copy is enough to restore from (a replica may be offline).
                let ok = a.copies.iter().any(|c| store.copy_intact(a, c));
                found_intact |= ok;
                found_checked |= ok && checked;
                ok
            };
            Candidate {
                id: a.id.clone(),
                created_at: a.sidecar.manifest.created_at,
                pre_restore,
                intact,
                checked,
            }
        })
        .collect()
}

//! Retention: plan and apply each keystore's policy to the store and its replicas. Used by
//! `coldkeep prune` and by the daemon after each run.

use crate::bundle::Purpose;
use crate::config::{Config, Retention};
use crate::store::retention::{self, Candidate};
use crate::store::{Artifact, Store};
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

/// Plans (and unless `dry_run`, applies) retention for every keystore in the store. Keystores no
/// longer in the config are kept whole. Each removal takes the store lock.
pub fn prune(config: &Config, node: Option<&str>, dry_run: bool) -> anyhow::Result<Vec<Pruned>> {
    let store = Store::new(&config.store);
    let listing = store.list(node)?;
    let mut groups: BTreeMap<(&str, &str), Vec<&Artifact>> = BTreeMap::new();
    for a in &listing.artifacts {
        groups.entry((&a.node, &a.keystore)).or_default().push(a);
    }
    let mut results = Vec::new();
    for ((node, keystore), mut artifacts) in groups {
        // Hardware keys follow the top-level policy; keystores their own (or the top-level one).
        let policy = if node == crate::config::HARDWARE_NODE {
            config.retention.clone()
        } else {
            config
                .node(node)
                .and_then(|n| n.keystores.iter().find(|k| k.name == keystore))
                .map(|k| k.retention.clone())
                .unwrap_or_default()
        };
        artifacts.sort_by(|x, y| {
            (y.sidecar.manifest.created_at, &y.id).cmp(&(x.sidecar.manifest.created_at, &x.id))
        });
        let candidates = candidates(&store, &artifacts, &policy);
        let by_id: BTreeMap<&str, &Artifact> = artifacts.iter().map(|a| (a.id.as_str(), *a)).collect();
        for decision in retention::plan(&policy, &candidates, &config.timezone) {
            let a = by_id[decision.id.as_str()];
            let mut error = None;
            if !decision.keep && !dry_run {
                match store.remove(a) {
                    Ok(()) => tracing::info!(node, keystore, id = %a.id, "removed by retention"),
                    Err(e) => error = Some(e.to_string()),
                }
            }
            results.push(Pruned {
                node: node.to_string(),
                keystore: keystore.to_string(),
                id: a.id.clone(),
                created_at: a.sidecar.manifest.created_at,
                keep: decision.keep,
                reasons: decision.reasons,
                error,
            });
        }
    }
    // Never counted above, never removed: reported for a human to look at.
    results.extend(listing.untrusted.iter().map(|a| Pruned {
        node: a.node.clone(),
        keystore: a.keystore.clone(),
        id: a.id.clone(),
        created_at: a.sidecar.manifest.created_at,
        keep: true,
        reasons: vec![super::signatures::untrusted_reason(a)],
        error: None,
    }));
    Ok(results)
}

/// The planner's view, newest first. Copies are checked (present, ciphertext hash = sidecar)
/// from the newest backward until an intact one is found: that one is never removed.
fn candidates(store: &Store, artifacts: &[&Artifact], policy: &Retention) -> Vec<Candidate> {
    let mut found_intact = !policy.is_set();
    artifacts
        .iter()
        .map(|a| {
            let pre_restore = a.sidecar.manifest.purpose == Purpose::PreRestore;
            let intact = if found_intact || pre_restore {
                false
            } else {
                // One good copy is enough to restore from (a replica may be offline).
                let ok = a.copies.iter().any(|c| store.copy_intact(a, c));
                found_intact = ok;
                ok
            };
            Candidate {
                id: a.id.clone(),
                created_at: a.sidecar.manifest.created_at,
                pre_restore,
                intact,
            }
        })
        .collect()
}

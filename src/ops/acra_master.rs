//! The Acra master keys at hand for a keystore, and whether they open an opened backup's keys.
//!
//! Shared by `verify --identity`, `check --identity` and `restore`: each asks "does a master key
//! we have open every sealed key of this backup?" before trusting it.

use crate::bundle::{Identities, Opened};
use crate::config::Config;
use crate::material::acra_open::{self, OpenReport};
use crate::material::{Identity, acra};
use crate::store::{Artifact, Store};

/// Every master key at hand for a keystore: the config's `master_key`, then each master-key
/// artifact (newest first) that these identities open.
pub fn master_keys_for(
    config: &Config,
    node: &str,
    keystore: &str,
    ids: &Identities,
) -> Vec<acra::MasterKey> {
    let mut keys = Vec::new();
    let ks = config
        .node(node)
        .and_then(|n| n.keystores.iter().find(|k| k.name == keystore));
    if let Some(value) = ks
        .and_then(|k| k.master_key.as_ref())
        .and_then(|s| s.resolve().ok())
        && let Ok(key) = acra::MasterKey::parse(&value)
    {
        keys.push(key);
    }
    let Some(store) = Store::master_keys(&config.store) else {
        return keys;
    };
    let Ok(listing) = store.list(Some(node)) else {
        return keys;
    };
    let mut artifacts: Vec<&Artifact> = listing
        .artifacts
        .iter()
        .filter(|a| a.keystore == keystore)
        .collect();
    artifacts.sort_by_key(|a| std::cmp::Reverse(a.sidecar.manifest.created_at));
    for artifact in artifacts {
        let Ok(opened) = super::artifact::open_verified(&store, artifact, ids) else {
            continue;
        };
        if let Some(key) = opened
            .files
            .first()
            .and_then(|f| acra::MasterKey::parse(&String::from_utf8_lossy(&f.data)).ok())
            && !keys.iter().any(|k| k.identity() == key.identity())
        {
            keys.push(key);
        }
    }
    keys
}

/// For an opened Acra backup of `node`/`keystore`: opens every sealed key with each master key at
/// hand and returns the report of the one that opens them all, else the one that opens most.
/// `None` when this is not an Acra backup or no master key is at hand.
pub fn open_keys(
    config: &Config,
    node: &str,
    keystore: &str,
    opened: &Opened,
    ids: &Identities,
) -> Option<OpenReport> {
    if opened.manifest.kind != "acra" {
        return None;
    }
    let keys = master_keys_for(config, node, keystore, ids);
    if keys.is_empty() {
        tracing::info!(node, keystore, "no master key at hand: sealed keys not opened");
    }
    open_with(&keys, opened)
}

/// Decrypts a stored Acra backup and opens its sealed keys with the master keys at hand.
pub fn open_artifact_keys(
    config: &Config,
    store: &Store,
    a: &Artifact,
    ids: &Identities,
) -> anyhow::Result<Option<OpenReport>> {
    let opened = super::artifact::open_verified(store, a, ids)?;
    Ok(open_keys(config, &a.node, &a.keystore, &opened, ids))
}

/// Before an Acra restore onto `node`/`keystore`: with a master key at hand (the backup's or the
/// target's), refuses a backup whose sealed keys do not all open with one of them.
pub fn refuse_unless_keys_open(
    config: &Config,
    target: (&str, &str),
    picked: &Artifact,
    opened: &Opened,
    ids: &Identities,
) -> anyhow::Result<()> {
    let mut keys = master_keys_for(config, &picked.node, &picked.keystore, ids);
    if target != (picked.node.as_str(), picked.keystore.as_str()) {
        keys.extend(master_keys_for(config, target.0, target.1, ids));
    }
    let report = open_with(&keys, opened);
    if report.is_none() {
        // A configured master key that is not one (a character lost in copying) must not turn
        // the proof off without a word: the restore would go ahead unchecked.
        let mut targets = vec![(picked.node.as_str(), picked.keystore.as_str())];
        if !targets.contains(&target) {
            targets.push(target);
        }
        let unusable: Vec<String> = targets
            .into_iter()
            .filter_map(|(node, keystore)| configured_key_problem(config, node, keystore))
            .collect();
        if !unusable.is_empty() {
            anyhow::bail!(
                "cannot prove backup {} opens: {}; nothing was changed. Fix the configured master key.",
                picked.id,
                unusable.join("; ")
            );
        }
    }
    match report {
        None => {
            tracing::info!(
                artifact = %picked.id,
                "no Acra master key at hand: restoring without proof that the master key opens this backup"
            );
            Ok(())
        }
        Some(report) if report.ok() => {
            tracing::info!(artifact = %picked.id, "{}", report.summary());
            Ok(())
        }
        Some(report) => anyhow::bail!(
            "backup {} does not open with the master key at hand ({}); nothing was changed. \
             Choose another backup (--backup ID) or configure the master key it was made with.",
            picked.id,
            report.problems().join("; ")
        ),
    }
}

/// Why the configured `master_key` of `node`/`keystore` is unusable, naming its source, never its
/// value: `Some` when it is set and readable but is not an Acra master key. One that cannot be
/// read here (an unset variable on the operator's machine) is only warned about.
fn configured_key_problem(config: &Config, node: &str, keystore: &str) -> Option<String> {
    let secret = config
        .node(node)?
        .keystores
        .iter()
        .find(|k| k.name == keystore)?
        .master_key
        .as_ref()?;
    match secret.resolve() {
        Err(e) => {
            tracing::warn!(
                node,
                keystore,
                "the configured master_key cannot be read here ({e}): sealed keys not opened with it"
            );
            None
        }
        Ok(value) => acra::MasterKey::parse(&value).err().map(|e| {
            format!(
                "the master_key configured for {node}/{keystore} ({}) is not an Acra master key: {e}",
                secret.describe()
            )
        }),
    }
}

/// [`open_keys`] with the master keys already gathered.
pub fn open_with(keys: &[acra::MasterKey], opened: &Opened) -> Option<OpenReport> {
    if opened.manifest.kind != "acra" {
        return None;
    }
    let entries: Vec<acra::Entry> = opened
        .files
        .iter()
        .map(|f| acra::Entry {
            path: &f.entry.path,
            mode: f.entry.mode,
            data: &f.data,
        })
        .collect();
    let version = match &opened.manifest.identity {
        Some(Identity::Acra(id)) => id.version,
        _ => acra::detect_version(&entries),
    };
    let mut best: Option<OpenReport> = None;
    for key in keys {
        let report = acra_open::open_all(&entries, version, key);
        if report.ok() {
            return Some(report);
        }
        if best
            .as_ref()
            .is_none_or(|b| b.mismatch.is_some() || report.mismatch.is_none() && report.opened > b.opened)
        {
            best = Some(report);
        }
    }
    best
}

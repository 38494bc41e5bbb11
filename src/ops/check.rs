//! The pre-install check: backed-up P12 names against the config and nodectl's profiles, Acra
//! backups against the node's client ids. Used by `coldkeep check`; never prints.

use super::artifact;
use super::keystore;
use super::restore::{NameRow, nodectl_rows, split_path};
use crate::bundle::Identities;
use crate::config::{Config, KeystoreConfig, KeystoreKind, NodeConfig};
use crate::material::nodectl::{self, P12Location};
use crate::material::{Identity, acra};
use crate::remote::{Node, TreeLimits};
use crate::store::{Artifact, Store};
use anyhow::Context;
use serde::Serialize;

/// The check of one keystore.
#[derive(Debug, Serialize)]
pub struct KeystoreCheck {
    /// The node.
    pub node: String,
    /// The keystore.
    pub keystore: String,
    /// The path the config gives.
    pub configured_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The newest backup checked against, if any.
    pub backup_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The file name in that backup.
    pub backup_name: Option<String>,
    /// nodectl's effective P12 location per profile (empty when not configured).
    pub nodectl: Vec<P12Location>,
    /// Alias and node id of the backup, when `--identity` opened it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Acra: client ids in the latest backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_clients: Option<Vec<String>>,
    /// Acra: client ids in the keystore on the node (None when it is not there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_clients: Option<Vec<String>>,
    /// True when every check passed.
    pub ok: bool,
    /// What did not pass, one line each.
    pub problems: Vec<String>,
}

impl KeystoreCheck {
    fn new(node: &NodeConfig, ks: &KeystoreConfig) -> KeystoreCheck {
        KeystoreCheck {
            node: node.name.clone(),
            keystore: ks.name.clone(),
            configured_path: ks.path.clone(),
            backup_id: None,
            backup_name: None,
            nodectl: Vec::new(),
            identity: None,
            backup_clients: None,
            node_clients: None,
            ok: false,
            problems: Vec::new(),
        }
    }
}

/// Reads a local cn-config.yaml (provisioning: the node is not installed yet), with the same size cap.
pub fn read_local_nodectl(path: &std::path::Path) -> anyhow::Result<Vec<P12Location>> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        meta.len() <= nodectl::MAX_SIZE,
        "{} is too large for a cn-config.yaml",
        path.display()
    );
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    nodectl::p12_locations(&text).with_context(|| path.display().to_string())
}

/// Checks every keystore of one node (connecting only when a check needs the node).
pub fn check_node(
    config: &Config,
    node: &NodeConfig,
    store: &Store,
    artifacts: &[Artifact],
    local_nodectl: Option<&[P12Location]>,
    ids: Option<&Identities>,
) -> Vec<KeystoreCheck> {
    let p12s: Vec<&KeystoreConfig> = node
        .keystores
        .iter()
        .filter(|k| k.kind == KeystoreKind::P12)
        .collect();
    let acras: Vec<&KeystoreConfig> = node
        .keystores
        .iter()
        .filter(|k| k.kind == KeystoreKind::Acra)
        .collect();
    // Connect only when some keystore needs something from the node.
    let needs_node =
        !acras.is_empty() || local_nodectl.is_none() && p12s.iter().any(|k| k.nodectl_config.is_some());
    let session = if needs_node {
        Some(crate::ops::connect_with_retries(config, node).map_err(|e| format!("{e:#}")))
    } else {
        None
    };
    let mut checks: Vec<KeystoreCheck> = p12s
        .iter()
        .map(|ks| {
            let mut check = KeystoreCheck::new(node, ks);
            let (want_dir, want_name) = split_path(&ks.path);
            match artifact::latest(artifacts, &node.name, &ks.name) {
                None => check.problems.push("no backup in the store".into()),
                Some(a) => {
                    check.backup_id = Some(a.id.clone());
                    let name = a
                        .sidecar
                        .manifest
                        .files
                        .first()
                        .map(|f| f.path.clone())
                        .unwrap_or_default();
                    if name != want_name {
                        check.problems.push(format!(
                            "backup file name {name} differs from the configured {want_name}"
                        ));
                    }
                    check.backup_name = Some(name);
                    if let Some(ids) = ids {
                        match identity_of(store, a, ks, ids) {
                            Ok(identity) => check.identity = Some(identity),
                            Err(e) => check.problems.push(format!("{e:#}")),
                        }
                    }
                }
            }
            let locations = match (local_nodectl, &ks.nodectl_config, &session) {
                (Some(local), _, _) => Ok(local.to_vec()),
                (None, Some(path), Some(Ok(session))) => nodectl_from_node(session, path),
                (None, Some(_), Some(Err(e))) => Err(format!("node unreachable: {e}")),
                _ => Ok(Vec::new()),
            };
            match locations {
                Ok(locations) => {
                    let rows: Vec<NameRow> = nodectl_rows(&locations, want_dir, want_name);
                    for r in rows.iter().filter(|r| !r.ok) {
                        check.problems.push(format!(
                            "{} expects {}/{}, the config says {}",
                            r.source, r.directory, r.name, ks.path
                        ));
                    }
                    check.nodectl = locations;
                }
                Err(e) => check.problems.push(e),
            }
            check.ok = check.problems.is_empty();
            check
        })
        .collect();
    for ks in acras {
        let on_node = session.as_ref().map(|r| r.as_ref().map(|s| s as &dyn Node));
        let mut check = check_acra(node, ks, artifacts, on_node);
        if let (Some(ids), Some(a)) = (ids, artifact::latest(artifacts, &node.name, &ks.name)) {
            match super::acra_master::open_artifact_keys(config, store, a, ids) {
                Ok(Some(report)) => {
                    check.problems.extend(report.problems());
                    check.identity = Some(format!(
                        "{}; {}",
                        check.identity.unwrap_or_default(),
                        report.summary()
                    ));
                }
                Ok(None) => {}
                Err(e) => check.problems.push(format!("{e:#}")),
            }
            check.ok = check.problems.is_empty();
        }
        checks.push(check);
    }
    if let Some(Ok(session)) = session {
        session.close();
    }
    checks
}

/// Acra: do the latest backup's client ids match the keystore on the node?
fn check_acra(
    node: &NodeConfig,
    ks: &KeystoreConfig,
    artifacts: &[Artifact],
    session: Option<Result<&dyn Node, &String>>,
) -> KeystoreCheck {
    let mut check = KeystoreCheck::new(node, ks);
    let latest = artifact::latest(artifacts, &node.name, &ks.name);
    let backup = latest.and_then(|a| match &a.sidecar.manifest.identity {
        Some(Identity::Acra(id)) => Some((a, id)),
        _ => None,
    });
    match backup {
        None => check.problems.push("no backup in the store".into()),
        Some((a, id)) => {
            check.backup_id = Some(a.id.clone());
            check.identity = Some(id.short());
            check.backup_clients = Some(id.client_ids.clone());
        }
    }
    let version = backup.map(|(_, id)| id.version).or(ks.acra_version);
    match session {
        Some(Ok(session)) => {
            let limits = TreeLimits {
                max_files: ks.max_files,
                max_size: ks.max_size,
            };
            match session.list_tree(&ks.path, limits, &keystore::acra_skip) {
                Ok(None) => {}
                Ok(Some(tree)) => {
                    let rels: Vec<&str> = tree.files.iter().map(|f| f.rel.as_str()).collect();
                    let version = version.unwrap_or(if rels.contains(&acra::VERSION_FILE) { 2 } else { 1 });
                    check.node_clients = Some(acra::client_ids_of(version, &rels));
                }
                Err(e) => check
                    .problems
                    .push(format!("reading the keystore on the node: {e}")),
            }
        }
        Some(Err(e)) => check.problems.push(format!("node unreachable: {e}")),
        None => {}
    }
    if let (Some(backup), Some(live)) = (&check.backup_clients, &check.node_clients)
        && backup != live
    {
        let only = |a: &[String], b: &[String]| {
            a.iter()
                .filter(|x| !b.contains(x))
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        };
        check.problems.push(format!(
            "client ids differ: only in the backup [{}], only on the node [{}]",
            only(backup, live),
            only(live, backup)
        ));
    }
    check.ok = check.problems.is_empty();
    check
}

fn nodectl_from_node(session: &dyn Node, path: &str) -> Result<Vec<P12Location>, String> {
    let file = session
        .fetch(path, nodectl::MAX_SIZE)
        .map_err(|e| format!("nodectl config: {e}"))?;
    nodectl::p12_locations(&nodectl::text_of(&file.bytes)).map_err(|e| format!("{path}: {e}"))
}

/// Decrypts the backup and, with a configured password, opens the P12: alias and node id.
fn identity_of(store: &Store, a: &Artifact, ks: &KeystoreConfig, ids: &Identities) -> anyhow::Result<String> {
    let opened = artifact::open_verified(store, a, ids)?;
    let file = opened.files.first().context("the backup holds no file")?;
    if ks.password.is_none() {
        return Ok("decrypted (no password configured: P12 not opened)".into());
    }
    let identity = keystore::identify(ks, &file.data)
        .with_context(|| format!("backup {} does not open with the configured password", a.id))?;
    Ok(identity.short())
}

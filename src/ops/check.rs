//! The pre-install check: backed-up P12 names against the config and nodectl's profiles (each
//! keystore against the profiles that use it, and every enabled profile covered by a keystore
//! with a backup, see [`super::nodectl_names`]); with `--identity`, the newest backup opens with
//! every such profile's passphrase; Acra backups against the node's client ids. Used by
//! `coldkeep check`; never prints.

use super::artifact;
use super::keystore;
use super::nodectl_names::{self, NotCovered};
use super::passphrase::{self, ProfileCheck};
use super::restore::{NameRow, split_path};
use crate::bundle::Identities;
use crate::config::{Config, KeystoreConfig, KeystoreKind, NodeConfig};
use crate::material::nodectl::{self, NodectlConfig, P12Location};
use crate::material::{Identity, acra};
use crate::remote::{Node, TreeLimits};
use crate::store::{Artifact, Store};
use anyhow::Context;
use serde::Serialize;
use zeroize::Zeroizing;

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
    /// nodectl's effective P12 location per enabled profile (empty when not configured).
    pub nodectl: Vec<P12Location>,
    /// The name checks against nodectl's profiles, one row per profile.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<NameRow>,
    /// With `--identity`: whether each profile that uses the file opens the backup with its
    /// passphrase in the node's current cn-config.yaml.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub passphrases: Vec<ProfileCheck>,
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
    /// What deserves a look but passes (a duplicated key in cn-config.yaml).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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
            checks: Vec::new(),
            passphrases: Vec::new(),
            identity: None,
            backup_clients: None,
            node_clients: None,
            ok: false,
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// One node's check: its keystores, and the nodectl profiles no keystore covers.
#[derive(Debug, Default)]
pub struct NodeCheck {
    /// One check per keystore, P12s first.
    pub keystores: Vec<KeystoreCheck>,
    /// Enabled profiles whose P12 no keystore backs up (or whose keystore has no backup yet).
    pub not_covered: Vec<NotCovered>,
}

/// Reads a local cn-config.yaml (provisioning: the node is not installed yet), with the same size cap.
pub fn read_local_nodectl(path: &std::path::Path) -> anyhow::Result<NodectlConfig> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        meta.len() <= nodectl::MAX_SIZE,
        "{} is too large for a cn-config.yaml",
        path.display()
    );
    let text =
        Zeroizing::new(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?);
    nodectl::parse(&text).with_context(|| path.display().to_string())
}

/// The newest backup of a P12 keystore, decrypted: the file, and its identity as the configured
/// password opens it.
struct OpenedBackup {
    data: Zeroizing<Vec<u8>>,
    identity: String,
    aliases: Option<Vec<String>>,
}

/// Checks every keystore of one node (connecting only when a check needs the node).
pub fn check_node(
    config: &Config,
    node: &NodeConfig,
    store: &Store,
    artifacts: &[Artifact],
    local_nodectl: Option<&NodectlConfig>,
    ids: Option<&Identities>,
) -> NodeCheck {
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
    // Each cn-config.yaml the node's keystores name, read once.
    let mut read: Vec<(String, Result<NodectlConfig, String>)> = Vec::new();
    if local_nodectl.is_none() {
        for path in p12s.iter().filter_map(|k| k.nodectl_config.as_ref()) {
            if read.iter().any(|(p, _)| p == path) {
                continue;
            }
            let config = match &session {
                Some(Ok(session)) => nodectl_from_node(session, path),
                Some(Err(e)) => Err(format!("node unreachable: {e}")),
                None => Err("not connected".into()),
            };
            read.push((path.clone(), config));
        }
    }
    let nodectl_of = |ks: &KeystoreConfig| -> Option<Result<&NodectlConfig, &String>> {
        match local_nodectl {
            Some(local) => Some(Ok(local)),
            None => {
                let path = ks.nodectl_config.as_ref()?;
                read.iter().find(|(p, _)| p == path).map(|(_, c)| c.as_ref())
            }
        }
    };
    let keystores = nodectl_names::p12_keystores(node);
    let mut out = NodeCheck::default();
    for ks in &p12s {
        let mut check = KeystoreCheck::new(node, ks);
        let (_, want_name) = split_path(&ks.path);
        let mut opened = None;
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
                    match open_backup(store, a, ks, ids) {
                        Ok(backup) => {
                            check.identity = Some(backup.identity.clone());
                            opened = Some(backup);
                        }
                        Err(e) => check.problems.push(format!("{e:#}")),
                    }
                }
            }
        }
        match nodectl_of(ks) {
            Some(Ok(cn)) => {
                check.nodectl = cn.enabled().map(P12Location::from).collect();
                check.checks = nodectl_names::name_rows(cn, &keystores, &ks.name);
                for r in check.checks.iter().filter(|r| !r.ok) {
                    check.problems.push(format!(
                        "{} expects {}/{}: {}",
                        r.source,
                        r.directory,
                        r.name,
                        r.note.as_deref().unwrap_or("differs from the config")
                    ));
                }
                if let Some(backup) = &opened {
                    check.passphrases =
                        passphrase::profile_checks(cn, &ks.path, &backup.data, backup.aliases.as_deref());
                    for p in check.passphrases.iter().filter(|p| !p.ok) {
                        check
                            .problems
                            .push(format!("nodectl {}: the backup {}", p.profile, p.result));
                    }
                }
                check.warnings = cn.warnings.clone();
                for r in check.checks.iter().filter(|r| r.warning) {
                    check.warnings.push(format!(
                        "{} {}/{}: {}",
                        r.source,
                        r.directory,
                        r.name,
                        r.note.as_deref().unwrap_or_default()
                    ));
                }
            }
            Some(Err(e)) => check.problems.push(e.clone()),
            None => {}
        }
        check.ok = check.problems.is_empty();
        out.keystores.push(check);
    }
    // Every enabled profile covered by a keystore with a backup, per cn-config.yaml read.
    let has_backup = |k: &str| artifact::latest(artifacts, &node.name, k).is_some();
    let configs: Vec<&NodectlConfig> = match local_nodectl {
        Some(local) if !p12s.is_empty() => vec![local],
        Some(_) => Vec::new(),
        None => read.iter().filter_map(|(_, c)| c.as_ref().ok()).collect(),
    };
    for cn in configs {
        for n in nodectl_names::not_covered(&node.name, cn, &keystores, &has_backup) {
            if !out
                .not_covered
                .iter()
                .any(|x| x.profile == n.profile && x.p12 == n.p12)
            {
                out.not_covered.push(n);
            }
        }
    }
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
        out.keystores.push(check);
    }
    if let Some(Ok(session)) = session {
        session.close();
    }
    out
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

fn nodectl_from_node(session: &dyn Node, path: &str) -> Result<NodectlConfig, String> {
    let file = session
        .fetch(path, nodectl::MAX_SIZE)
        .map_err(|e| format!("nodectl config: {e}"))?;
    nodectl::parse(&nodectl::text_of(&file.bytes)).map_err(|e| format!("{path}: {e}"))
}

/// Decrypts the backup and, with a configured password, opens the P12: alias and node id.
fn open_backup(
    store: &Store,
    a: &Artifact,
    ks: &KeystoreConfig,
    ids: &Identities,
) -> anyhow::Result<OpenedBackup> {
    let opened = artifact::open_verified(store, a, ids)?;
    let file = opened.files.first().context("the backup holds no file")?;
    let data = file.data.clone();
    if ks.password.is_none() {
        return Ok(OpenedBackup {
            data,
            identity: "decrypted (no password configured: P12 not opened)".into(),
            aliases: None,
        });
    }
    let identity = keystore::identify(ks, &file.data)
        .with_context(|| format!("backup {} does not open with the configured password", a.id))?;
    let aliases = match &identity {
        Identity::P12(id) if id.opened => Some(id.aliases.clone()),
        _ => None,
    };
    Ok(OpenedBackup {
        data,
        identity: identity.short(),
        aliases,
    })
}

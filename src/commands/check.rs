//! `coldkeep check`: the pre-install check that backed-up P12 names match the node configs
//! (and, for Acra keystores, that the latest backup has the node's client ids).
//!
//! For each node and P12 keystore: the configured path, the latest backup's file name, and the
//! P12 location/name nodectl's cn-config.yaml gives per profile (read from the node, or from a
//! local file for nodes not installed yet). With `--identity`, also whether the backup opens with
//! the configured password, and its alias / node id.

use super::artifact;
use super::fleet::run_parallel;
use super::keystore;
use super::report::{Table, print_json};
use super::restore::{NameRow, nodectl_rows, split_path};
use crate::bundle::Identities;
use crate::cli::CheckArgs;
use crate::config::{Config, KeystoreConfig, KeystoreKind, NodeConfig};
use crate::error::Exit;
use crate::material::nodectl::{self, P12Location};
use crate::material::{Identity, acra};
use crate::remote::{Session, TreeLimits};
use crate::store::{Artifact, Store};
use anyhow::Context;
use serde::Serialize;

/// The check of one keystore.
#[derive(Debug, Serialize)]
pub struct KeystoreCheck {
    pub node: String,
    pub keystore: String,
    pub configured_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
    pub ok: bool,
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

/// Runs `coldkeep check`.
pub fn run(config: &Config, args: &CheckArgs) -> anyhow::Result<Exit> {
    super::check_node_names(config, &args.nodes)?;
    let nodes: Vec<&NodeConfig> = config
        .nodes
        .iter()
        .filter(|n| args.nodes.is_empty() || args.nodes.contains(&n.name))
        .collect();
    let local_nodectl = match &args.nodectl_config {
        Some(path) => Some(read_local_nodectl(path)?),
        None => None,
    };
    let ids = args.identity.as_deref().map(Identities::from_file).transpose()?;
    let store = Store::new(&config.store);
    let listing = store.list(None)?;
    let checks: Vec<KeystoreCheck> = run_parallel(&nodes, config.jobs, |node| {
        check_node(
            node,
            &store,
            &listing.artifacts,
            local_nodectl.as_deref(),
            ids.as_ref(),
        )
    })
    .into_iter()
    .flatten()
    .collect();
    let passphrases = ids
        .as_ref()
        .map(|ids| super::passphrase::check_all(&nodes, &store, &listing.artifacts, ids))
        .unwrap_or_default();
    if args.json {
        print_json(&checks)?;
    } else {
        print_human(&checks);
        super::passphrase::print(&passphrases);
    }
    Ok(
        if checks.iter().all(|c| c.ok) && passphrases.iter().all(|p| p.ok) {
            Exit::Ok
        } else {
            Exit::Failed
        },
    )
}

fn read_local_nodectl(path: &std::path::Path) -> anyhow::Result<Vec<P12Location>> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        meta.len() <= nodectl::MAX_SIZE,
        "{} is too large for a cn-config.yaml",
        path.display()
    );
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    nodectl::p12_locations(&text).with_context(|| path.display().to_string())
}

fn check_node(
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
        Some(Session::connect(node).map_err(|e| e.to_string()))
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
        checks.push(check_acra(node, ks, artifacts, session.as_ref()));
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
    session: Option<&Result<Session, String>>,
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

fn nodectl_from_node(session: &Session, path: &str) -> Result<Vec<P12Location>, String> {
    let file = session
        .fetch(path, nodectl::MAX_SIZE)
        .map_err(|e| format!("nodectl config: {e}"))?;
    nodectl::p12_locations(&String::from_utf8_lossy(&file.bytes)).map_err(|e| format!("{path}: {e}"))
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

fn print_human(checks: &[KeystoreCheck]) {
    let mut table = Table::new(&["NODE", "KEYSTORE", "CONFIGURED", "BACKUP", "NODECTL", "RESULT"]);
    for c in checks {
        let nodectl = if c.nodectl.is_empty() {
            "-".to_string()
        } else {
            c.nodectl
                .iter()
                .map(|l| {
                    format!(
                        "{}: {}",
                        l.profile,
                        l.path().unwrap_or_else(|| "(not set)".into())
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let backup = match (&c.backup_id, &c.backup_name, &c.backup_clients) {
            (Some(id), Some(name), _) => format!("{name} ({id})"),
            (Some(id), None, Some(clients)) => format!("clients {} ({id})", clients.join(",")),
            _ => "-".into(),
        };
        let nodectl = match &c.node_clients {
            Some(clients) => format!("on node: clients {}", clients.join(",")),
            None => nodectl,
        };
        let result = if c.ok {
            c.identity
                .clone()
                .map(|i| format!("ok: {i}"))
                .unwrap_or_else(|| "ok".into())
        } else {
            format!("MISMATCH: {}", c.problems.join("; "))
        };
        table.row(vec![
            c.node.clone(),
            c.keystore.clone(),
            c.configured_path.clone(),
            backup,
            nodectl,
            result,
        ]);
    }
    if table.is_empty() {
        println!("No keystores to check.");
        return;
    }
    print!("{}", table.render());
    let bad = checks.iter().filter(|c| !c.ok).count();
    if bad == 0 {
        println!(
            "\nAll {} keystores agree: backups, configs, nodectl and the nodes name the same keys.",
            checks.len()
        );
    } else {
        println!("\n{bad} of {} keystores need attention.", checks.len());
    }
}

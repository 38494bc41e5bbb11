//! `coldkeep backup`: fetch every selected node's keystores and store them encrypted.
//!
//! Nodes run in parallel (`jobs`), one SSH session each. A node that fails (down, host key,
//! auth) fails alone; a keystore that fails (missing file, not a P12, wrong password) fails alone.

use super::fleet::run_parallel;
use super::keystore;
use super::report::{Table, human_size, print_json};
use crate::bundle::{self, Purpose, Sidecar};
use crate::cli::BackupArgs;
use crate::config::{Config, NodeConfig};
use crate::error::Exit;
use crate::remote::Session;
use crate::store::Store;
use serde::Serialize;

/// The outcome for one keystore.
#[derive(Debug, Serialize)]
pub struct KeystoreOutcome {
    pub node: String,
    pub keystore: String,
    pub ok: bool,
    /// Artifact id (None on failure or dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The failure's cause, one line per context level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole run's report.
#[derive(Debug, Serialize)]
pub struct BackupReport {
    pub dry_run: bool,
    pub outcomes: Vec<KeystoreOutcome>,
}

impl BackupReport {
    /// The failed outcomes.
    pub fn failures(&self) -> impl Iterator<Item = &KeystoreOutcome> {
        self.outcomes.iter().filter(|o| !o.ok)
    }
}

/// Runs `coldkeep backup`.
pub fn run(config: &Config, args: &BackupArgs) -> anyhow::Result<Exit> {
    let nodes = super::select_nodes(config, &args.select)?;
    let report = backup(config, &nodes, args.dry_run);
    if args.json {
        print_json(&report)?;
    } else {
        print_human(&report);
    }
    Ok(if report.failures().next().is_none() {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

/// Backs up the given nodes and returns one outcome per keystore, in config order.
pub fn backup(config: &Config, nodes: &[&NodeConfig], dry_run: bool) -> BackupReport {
    let store = Store::new(&config.store);
    let per_node = run_parallel(nodes, config.jobs, |node| {
        backup_node(config, &store, node, dry_run)
    });
    BackupReport {
        dry_run,
        outcomes: per_node.into_iter().flatten().collect(),
    }
}

fn backup_node(config: &Config, store: &Store, node: &NodeConfig, dry_run: bool) -> Vec<KeystoreOutcome> {
    let _span = tracing::info_span!("node", node = %node.name).entered();
    let session = match Session::connect(node) {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!(error = %err, "node failed");
            let cause = format!("{:#}", anyhow::Error::from(err));
            return node
                .keystores
                .iter()
                .map(|ks| failed(node, &ks.name, cause.clone()))
                .collect();
        }
    };
    let outcomes = node
        .keystores
        .iter()
        .map(|ks| {
            let result = (|| -> anyhow::Result<(Option<String>, u64, String)> {
                let fetched = keystore::fetch(&session, ks)?;
                let identity = fetched.identity.short();
                let recipients = config
                    .encryption
                    .recipients
                    .iter()
                    .map(|r| r.as_str().to_string())
                    .collect();
                let (manifest, files) = keystore::bundle_parts(
                    node,
                    ks,
                    session.host_key_fingerprint(),
                    fetched.file,
                    Some(fetched.identity),
                    Purpose::Backup,
                    recipients,
                );
                let sealed = bundle::seal(&manifest, &files, &config.encryption.recipients)?;
                drop(files);
                let size = sealed.ciphertext.len() as u64;
                if dry_run {
                    return Ok((None, size, identity));
                }
                let sidecar = Sidecar {
                    manifest,
                    ciphertext_sha256: sealed.sha256,
                    ciphertext_size: size,
                };
                let id = store.write(&sidecar, &sealed.ciphertext)?;
                Ok((Some(id), size, identity))
            })();
            match result {
                Ok((id, size, identity)) => {
                    tracing::info!(keystore = %ks.name, id = id.as_deref().unwrap_or("-"), "backed up");
                    KeystoreOutcome {
                        node: node.name.clone(),
                        keystore: ks.name.clone(),
                        ok: true,
                        id,
                        size: Some(size),
                        identity: Some(identity),
                        error: None,
                    }
                }
                Err(err) => {
                    tracing::warn!(keystore = %ks.name, error = %format!("{err:#}"), "keystore failed");
                    failed(node, &ks.name, format!("{err:#}"))
                }
            }
        })
        .collect();
    session.close();
    outcomes
}

fn failed(node: &NodeConfig, keystore: &str, error: String) -> KeystoreOutcome {
    KeystoreOutcome {
        node: node.name.clone(),
        keystore: keystore.to_string(),
        ok: false,
        id: None,
        size: None,
        identity: None,
        error: Some(error),
    }
}

fn print_human(report: &BackupReport) {
    let mut table = Table::new(&["NODE", "KEYSTORE", "STATUS", "ARTIFACT", "SIZE", "IDENTITY"]);
    for o in &report.outcomes {
        let status = match (o.ok, report.dry_run) {
            (true, true) => "ok (dry run)",
            (true, false) => "ok",
            (false, _) => "FAILED",
        };
        table.row(vec![
            o.node.clone(),
            o.keystore.clone(),
            status.to_string(),
            o.id.clone().unwrap_or_else(|| "-".into()),
            o.size.map(human_size).unwrap_or_else(|| "-".into()),
            o.identity.clone().unwrap_or_default(),
        ]);
    }
    print!("{}", table.render());
    let failed: Vec<&KeystoreOutcome> = report.failures().collect();
    let done = report.outcomes.len() - failed.len();
    let verb = if report.dry_run {
        "checked (dry run, nothing written)"
    } else {
        "backed up"
    };
    println!("\n{done} of {} keystores {verb}.", report.outcomes.len());
    if !failed.is_empty() {
        println!("{} failed:", failed.len());
        for o in failed {
            println!(
                "  {}/{}: {}",
                o.node,
                o.keystore,
                o.error.as_deref().unwrap_or("unknown error")
            );
        }
    }
}

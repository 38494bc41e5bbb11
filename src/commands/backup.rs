//! `coldkeep backup`: fetch every selected node's keystores and store them encrypted.
//!
//! Nodes run in parallel (`jobs`), one SSH session each. A node that fails (down, host key,
//! auth) fails alone; a keystore that fails (missing file, not a P12, wrong password) fails alone.

use super::fleet::run_parallel;
use super::keystore;
use super::report::{Table, human_size, print_json};
use crate::bundle::{self, PlainFile, Purpose};
use crate::cli::BackupArgs;
use crate::config::{Config, KeystoreConfig, NodeConfig};
use crate::error::Exit;
use crate::material::{Identity, acra};
use crate::remote::Session;
use crate::store::Store;
use anyhow::Context;
use serde::Serialize;
use std::io::IsTerminal;
use std::time::Instant;

/// Suffix of the report line for a keystore's master key.
pub const MASTER_KEY_SUFFIX: &str = ":master-key";
/// The `kind` of master-key artifacts.
pub const MASTER_KEY_KIND: &str = "acra-master-key";

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
    /// Problems found on the node that did not stop the backup.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Nothing new was stored: the newest artifact already holds this material.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
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

/// How a backup run behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Fetch and check, write nothing.
    pub dry_run: bool,
    /// Store a new artifact even when the material is unchanged.
    pub force: bool,
    /// Show a progress bar (one-shot runs on a terminal).
    pub progress: bool,
}

/// Runs `coldkeep backup`.
pub fn run(config: &Config, args: &BackupArgs) -> anyhow::Result<Exit> {
    let nodes = super::select_nodes(config, &args.select)?;
    let options = Options {
        dry_run: args.dry_run,
        force: args.force,
        progress: !args.json && std::io::stderr().is_terminal() && nodes.len() > 1,
    };
    let started = Instant::now();
    let report = backup(config, &nodes, options);
    if !args.dry_run {
        super::after_run::record(config, &report, started.elapsed());
    }
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
pub fn backup(config: &Config, nodes: &[&NodeConfig], options: Options) -> BackupReport {
    let store = Store::new(&config.store);
    let bar = options.progress.then(|| {
        let bar = indicatif::ProgressBar::new(nodes.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} nodes, {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let per_node = run_parallel(nodes, config.jobs, |node| {
        let outcomes = backup_node(config, &store, node, options);
        if let Some(bar) = &bar {
            bar.inc(1);
        }
        outcomes
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    BackupReport {
        dry_run: options.dry_run,
        outcomes: per_node.into_iter().flatten().collect(),
    }
}

/// Connects, retrying transient failures (refused, timed out) `retries` times with doubling
/// waits; host-key, authentication and other errors are not retried.
fn connect_with_retries(config: &Config, node: &NodeConfig) -> anyhow::Result<Session> {
    let mut wait = config.retry_wait;
    let mut attempt = 1;
    loop {
        match Session::connect(node) {
            Ok(s) => return Ok(s),
            Err(e) if e.is_transient() && attempt <= config.retries => {
                tracing::info!(
                    attempt,
                    wait_s = wait.as_secs_f64(),
                    "transient failure, retrying: {e}"
                );
                std::thread::sleep(wait);
                wait = wait.saturating_mul(2);
                attempt += 1;
            }
            Err(e) if attempt > 1 => {
                return Err(anyhow::Error::from(e).context(format!("gave up after {attempt} attempts")));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn backup_node(config: &Config, store: &Store, node: &NodeConfig, options: Options) -> Vec<KeystoreOutcome> {
    let _span = tracing::info_span!("node", node = %node.name).entered();
    let dry_run = options.dry_run;
    let session = match connect_with_retries(config, node) {
        Ok(s) => s,
        Err(err) => {
            let cause = format!("{err:#}");
            tracing::warn!(error = %cause, "node failed");
            return node
                .keystores
                .iter()
                .map(|ks| failed(node, &ks.name, cause.clone()))
                .collect();
        }
    };
    let existing = match store.list(Some(&node.name)) {
        Ok(listing) => {
            // Copies missing from a root (offline replica, interrupted run) are written again.
            let mut repaired = 0;
            if !options.dry_run {
                for a in &listing.artifacts {
                    match store.repair_missing(a) {
                        Ok(n) => repaired += n,
                        Err(e) => tracing::warn!(artifact = %a.id, "cannot write a missing copy: {e}"),
                    }
                }
            }
            match repaired {
                0 => listing.artifacts,
                _ => store
                    .list(Some(&node.name))
                    .map(|l| l.artifacts)
                    .unwrap_or(listing.artifacts),
            }
        }
        Err(e) => {
            let cause = format!("reading the store: {e}");
            return node
                .keystores
                .iter()
                .map(|ks| failed(node, &ks.name, cause.clone()))
                .collect();
        }
    };
    let mut outcomes = Vec::new();
    for ks in &node.keystores {
        let mut unchanged = false;
        let result = (|| -> anyhow::Result<(Option<String>, u64, Identity)> {
            let fetched = keystore::fetch(&session, ks)?;
            // The same files as the newest backup: record that it was seen, store nothing new.
            if !options.force
                && let Some(latest) = super::artifact::latest(&existing, &node.name, &ks.name)
                && keystore::same_files(&fetched.files, &latest.sidecar.manifest)
                && reusable(store, latest, &config.encryption.recipients)
            {
                if !dry_run {
                    store.mark_unchanged(latest, chrono::Utc::now())?;
                }
                unchanged = true;
                return Ok((
                    Some(latest.id.clone()),
                    latest.sidecar.ciphertext_size,
                    fetched.identity,
                ));
            }
            let mut manifest = keystore::manifest(
                node,
                &ks.name,
                ks.kind.as_str(),
                session.host_key_fingerprint(),
                &fetched.files,
                Some(fetched.identity.clone()),
                Purpose::Backup,
            );
            manifest.dirs = fetched.dirs.clone();
            let (id, size) = keystore::seal_and_store(
                store,
                &config.encryption.recipients,
                manifest,
                &fetched.files,
                dry_run,
            )?;
            Ok((id, size, fetched.identity))
        })();
        match result {
            Ok((id, size, identity)) => {
                tracing::info!(keystore = %ks.name, id = id.as_deref().unwrap_or("-"), "backed up");
                let warnings = match &identity {
                    Identity::Acra(a) => a.warnings.clone(),
                    _ => Vec::new(),
                };
                for w in &warnings {
                    tracing::warn!(keystore = %ks.name, "{w}");
                }
                let acra_version = match &identity {
                    Identity::Acra(a) => Some(a.version),
                    _ => None,
                };
                outcomes.push(KeystoreOutcome {
                    node: node.name.clone(),
                    keystore: ks.name.clone(),
                    ok: true,
                    id,
                    size: Some(size),
                    identity: Some(identity.short()),
                    error: None,
                    warnings,
                    unchanged,
                });
                if ks.master_key.is_some() {
                    outcomes.push(backup_master_key(
                        config,
                        node,
                        ks,
                        acra_version,
                        &session,
                        dry_run,
                    ));
                }
            }
            Err(err) => {
                tracing::warn!(keystore = %ks.name, error = %format!("{err:#}"), "keystore failed");
                outcomes.push(failed(node, &ks.name, format!("{err:#}")));
            }
        }
    }
    session.close();
    outcomes
}

/// Stores an Acra keystore's master key (read on this machine) into the master-key store, to its
/// own recipients, unless the newest one stored there is the same key.
fn backup_master_key(
    config: &Config,
    node: &NodeConfig,
    ks: &KeystoreConfig,
    keystore_version: Option<u8>,
    session: &Session,
    dry_run: bool,
) -> KeystoreOutcome {
    let name = format!("{}{MASTER_KEY_SUFFIX}", ks.name);
    let result = (|| -> anyhow::Result<KeystoreOutcome> {
        let secret = ks.master_key.as_ref().context("no master_key configured")?;
        let value = secret
            .resolve()
            .with_context(|| format!("master key of {}/{}", node.name, ks.name))?;
        let key = acra::MasterKey::parse(&value)
            .with_context(|| format!("master key of {}/{} ({})", node.name, ks.name, secret.describe()))?;
        let identity = key.identity();
        let mut warnings = Vec::new();
        if keystore_version.is_some_and(|v| v != identity.version) {
            warnings.push(format!(
                "the master key is a v{} key but the keystore is v{}: is it the right key?",
                identity.version,
                keystore_version.unwrap_or_default()
            ));
        }
        let store = Store::master_keys(&config.store).context("no store.master_key_store configured")?;
        let listing = store.list(Some(&node.name))?;
        let same = super::artifact::latest(&listing.artifacts, &node.name, &ks.name)
            .filter(|a| a.sidecar.manifest.identity == Some(Identity::AcraMasterKey(identity.clone())))
            .filter(|a| reusable(&store, a, &config.encryption.master_key_recipients));
        let mut outcome = KeystoreOutcome {
            node: node.name.clone(),
            keystore: name.clone(),
            ok: true,
            id: None,
            size: None,
            identity: Some(Identity::AcraMasterKey(identity.clone()).short()),
            error: None,
            warnings,
            unchanged: false,
        };
        if let Some(existing) = same {
            outcome.id = Some(existing.id.clone());
            outcome.unchanged = true;
            return Ok(outcome);
        }
        let data = zeroize::Zeroizing::new(value.as_bytes().to_vec());
        let files = [PlainFile {
            entry: bundle::file_entry(
                acra::MASTER_KEY_FILE,
                &format!("(agent) {}", secret.describe()),
                &data,
                0o600,
            ),
            data,
        }];
        let manifest = keystore::manifest(
            node,
            &ks.name,
            MASTER_KEY_KIND,
            session.host_key_fingerprint(),
            &files,
            Some(Identity::AcraMasterKey(identity)),
            Purpose::Backup,
        );
        let (id, size) = keystore::seal_and_store(
            &store,
            &config.encryption.master_key_recipients,
            manifest,
            &files,
            dry_run,
        )?;
        outcome.id = id;
        outcome.size = Some(size);
        Ok(outcome)
    })();
    result.unwrap_or_else(|err| {
        tracing::warn!(keystore = %name, error = %format!("{err:#}"), "master key failed");
        failed(node, &name, format!("{err:#}"))
    })
}

/// Whether an artifact can stand for unchanged material: every copy intact (so a damaged or
/// missing copy gets rewritten) and encrypted to exactly the current recipients (so a recipient
/// change re-encrypts).
fn reusable(
    store: &Store,
    artifact: &crate::store::Artifact,
    recipients: &[crate::config::Recipient],
) -> bool {
    let mut want: Vec<&str> = recipients.iter().map(|r| r.as_str()).collect();
    let mut have: Vec<&str> = artifact
        .sidecar
        .manifest
        .recipients
        .iter()
        .map(String::as_str)
        .collect();
    want.sort_unstable();
    have.sort_unstable();
    want == have && artifact.copies.iter().all(|c| store.copy_intact(artifact, c))
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
        warnings: Vec::new(),
        unchanged: false,
    }
}

fn print_human(report: &BackupReport) {
    let mut table = Table::new(&["NODE", "KEYSTORE", "STATUS", "ARTIFACT", "SIZE", "IDENTITY"]);
    for o in &report.outcomes {
        let status = match (o.ok, report.dry_run, o.unchanged) {
            (true, _, true) => "ok (unchanged)",
            (true, true, false) => "ok (dry run)",
            (true, false, false) => "ok",
            (false, _, _) => "FAILED",
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
    for o in &report.outcomes {
        for w in &o.warnings {
            println!("warning: {}/{}: {w}", o.node, o.keystore);
        }
    }
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

//! Backing up nodes: fetch every selected node's keystores, decide "unchanged, reuse" or seal
//! and store, per keystore. Never prints: returns a [`BackupReport`].
//!
//! Nodes run in parallel (`jobs`), one SSH session each. A node that fails (down, host key,
//! auth) fails alone; a keystore that fails (missing file, not a P12, wrong password) fails alone.

use super::fleet::run_parallel;
use super::keystore;
use super::vocab::{ArtifactKind, master_key};
use crate::bundle::{self, PlainFile, Purpose};
use crate::config::{Config, KeystoreConfig, NodeConfig};
use crate::material::{Identity, acra};
use crate::remote::Node;
use crate::store::batch::{Batch, Ticket};
use crate::store::{Artifact, Store};
use anyhow::Context;
use serde::Serialize;

/// The outcome for one keystore.
#[derive(Debug, Serialize)]
pub struct KeystoreOutcome {
    /// The node.
    pub node: String,
    /// The keystore (a master key as `<keystore>:master-key`).
    pub keystore: String,
    /// Whether it was backed up.
    pub ok: bool,
    /// Artifact id (None on failure or dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Ciphertext size in bytes.
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The material's public identity, short form.
    pub identity: Option<String>,
    /// The failure's cause, one line per context level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Problems found on the node that did not stop the backup.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Backed up, but its identity could not be checked, and why (the configured P12 password
    /// is unset or stale, or the file is not a PKCS#12 file). The run exits 1 for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_unchecked: Option<String>,
    /// Nothing new was stored: the newest artifact already holds this material.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
    /// The artifact written through the run's group commit: `ok` holds only once the batch
    /// committed it (see [`backup`]).
    #[serde(skip)]
    pub ticket: Option<Ticket>,
}

/// The whole run's report.
#[derive(Debug, Serialize)]
pub struct BackupReport {
    /// Nothing was written.
    pub dry_run: bool,
    /// One outcome per keystore, in config order.
    pub outcomes: Vec<KeystoreOutcome>,
}

impl BackupReport {
    /// The failed outcomes.
    pub fn failures(&self) -> impl Iterator<Item = &KeystoreOutcome> {
        self.outcomes.iter().filter(|o| !o.ok)
    }

    /// The outcomes backed up without their identity checked.
    pub fn unchecked(&self) -> impl Iterator<Item = &KeystoreOutcome> {
        self.outcomes.iter().filter(|o| o.identity_unchecked.is_some())
    }

    /// The outcomes hooks and monitoring report as failures: failed ones, and ones backed up
    /// without their identity checked (see [`KeystoreOutcome::problem`]).
    pub fn problems(&self) -> impl Iterator<Item = (&KeystoreOutcome, String)> {
        self.outcomes.iter().filter_map(|o| o.problem().map(|p| (o, p)))
    }
}

impl KeystoreOutcome {
    /// What went wrong, for hooks (`COLDKEEP_ERROR`) and the run's failure count; None when all
    /// is well.
    ///
    /// A backup stored (or found unchanged) without its identity checked counts as a failure
    /// here, as it makes `backup` exit 1: the artifact is safe, but nobody has seen that it
    /// opens with the password the node needs (unset or stale since `nodectl passwd12`), and a
    /// dead-man's switch or a pager that only hears `success` would never learn it. The line
    /// says the backup was taken, so no one restores from an older one in a hurry.
    pub fn problem(&self) -> Option<String> {
        match (&self.error, &self.identity_unchecked) {
            (Some(error), _) => Some(error.clone()),
            (None, _) if !self.ok => Some("unknown error".to_string()),
            (None, Some(why)) => Some(format!(
                "backed up ({}) but its identity was not checked: {why}",
                self.id.as_deref().unwrap_or("dry run")
            )),
            (None, None) => None,
        }
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
    // New artifacts become durable (and listed) through one group commit for the run (see
    // `store::batch`): no outcome says "written" before its round succeeded.
    let batch = Batch::start();
    let per_node = run_parallel(nodes, config.jobs, |node| {
        let outcomes = backup_node(config, &store, node, options, &batch);
        if let Some(bar) = &bar {
            bar.inc(1);
        }
        outcomes
    });
    let waited = std::time::Instant::now();
    let committed = batch.finish();
    tracing::debug!(
        rounds = committed.rounds,
        artifacts = committed.committed,
        waited_ms = waited.elapsed().as_millis() as u64,
        "store writes committed"
    );
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let mut outcomes: Vec<KeystoreOutcome> = per_node.into_iter().flatten().collect();
    for o in &mut outcomes {
        if let Some(Err(e)) = o.ticket.map(|t| committed.result(t)) {
            let cause = format!("writing the artifact {}: {e}", o.id.as_deref().unwrap_or("-"));
            tracing::warn!(node = %o.node, keystore = %o.keystore, error = %cause, "keystore failed");
            o.ok = false;
            o.error = Some(cause);
        }
    }
    BackupReport {
        dry_run: options.dry_run,
        outcomes,
    }
}

fn backup_node(
    config: &Config,
    store: &Store,
    node: &NodeConfig,
    options: Options,
    batch: &Batch,
) -> Vec<KeystoreOutcome> {
    let _span = tracing::info_span!("node", node = %node.name).entered();
    let dry_run = options.dry_run;
    // The node's before hooks decide whether it is backed up at all (maintenance, a check that
    // it is the right machine); a dry run changes nothing, so runs none.
    if !dry_run {
        let env = [("COLDKEEP_NODE", node.name.clone())];
        if let Err(cause) =
            super::hooks::run_until_failure(&config.hooks.before_node, &env, config.hooks.timeout)
        {
            let cause = format!("skipped: the before_node {cause}");
            tracing::warn!(error = %cause, "node skipped");
            return all_failed(node, &cause);
        }
    }
    let session = match super::connect_with_retries(config, node) {
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
    // The node's artifacts as summaries (light), then the whole sidecar of each keystore's
    // newest backup: all the unchanged check and reuse need.
    let existing = match store.list_summaries(Some(&node.name)) {
        Ok(listing) => {
            // Copies missing from a root (offline replica, interrupted run) are written again,
            // and temp files of interrupted writes whose writers are gone removed.
            let mut repaired = 0;
            if !options.dry_run {
                if let Err(e) = store.remove_stale_temps(&listing.problems) {
                    tracing::warn!("cannot remove stale temp files: {e}");
                }
                for a in &listing.artifacts {
                    match store.repair_missing(a) {
                        Ok(n) => repaired += n,
                        Err(e) => tracing::warn!(artifact = %a.id, "cannot write a missing copy: {e}"),
                    }
                }
            }
            let listed = match repaired {
                0 => listing.artifacts,
                _ => store
                    .list_summaries(Some(&node.name))
                    .map(|l| l.artifacts)
                    .unwrap_or(listing.artifacts),
            };
            node.keystores
                .iter()
                .filter_map(|ks| super::artifact::latest(&listed, &node.name, &ks.name))
                .filter_map(|a| store.whole(a))
                .collect::<Vec<Artifact>>()
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
        let result = backup_keystore(config, store, node, ks, &session, &existing, options, Some(batch));
        match result {
            Ok(Backed {
                id,
                size,
                identity,
                unchanged,
                ticket,
                unchecked,
            }) => {
                tracing::info!(keystore = %ks.name, id = id.as_deref().unwrap_or("-"), "backed up");
                if let Some(why) = &unchecked {
                    tracing::warn!(keystore = %ks.name, "backed up without its identity checked: {why}");
                }
                let warnings = match &identity {
                    Some(Identity::Acra(a)) => a.warnings.clone(),
                    _ => Vec::new(),
                };
                for w in &warnings {
                    tracing::warn!(keystore = %ks.name, "{w}");
                }
                let acra_version = match &identity {
                    Some(Identity::Acra(a)) => Some(a.version),
                    _ => None,
                };
                outcomes.push(KeystoreOutcome {
                    node: node.name.clone(),
                    keystore: ks.name.clone(),
                    ok: true,
                    id,
                    size: Some(size),
                    identity: identity.map(|i| i.short()),
                    error: None,
                    warnings,
                    identity_unchecked: unchecked,
                    unchanged,
                    ticket,
                });
                if ks.master_key.is_some() {
                    outcomes.push(backup_master_key(
                        config,
                        node,
                        ks,
                        acra_version,
                        &session,
                        write(dry_run, Some(batch)),
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

/// What backing up one keystore gave: the artifact standing for the material now on the node.
#[derive(Debug)]
pub struct Backed {
    /// Artifact id (None on a dry run that would store a new one).
    pub id: Option<String>,
    /// Ciphertext size of that artifact.
    pub size: u64,
    /// The material's public identity (what is known of it when its check failed).
    pub identity: Option<Identity>,
    /// True when the newest artifact already holds this material and nothing new was stored.
    pub unchanged: bool,
    /// A new artifact written through a batch: its ticket.
    pub ticket: Option<Ticket>,
    /// Why the material's identity could not be checked now (it was stored all the same).
    pub unchecked: Option<String>,
}

/// How a run writes: not at all on a dry run, else through its batch (or at once).
fn write(dry_run: bool, batch: Option<&Batch>) -> keystore::Write<'_> {
    match (dry_run, batch) {
        (true, _) => keystore::Write::DryRun,
        (false, Some(batch)) => keystore::Write::Batched(batch),
        (false, None) => keystore::Write::Now,
    }
}

/// Fetches one keystore from `session` and either reuses the newest artifact (the same files,
/// every copy intact, the same recipients; not with `force`) or seals and stores a new one,
/// through `batch` when given (then durable once it commits), else at once.
///
/// A check of the material that fails (the configured P12 password unset or stale) never skips
/// the backup: a new artifact is marked with why its identity was not checked. An artifact so
/// marked is reused only while the same check fails the same way, so the mark goes away with
/// the cause (and says the current one).
#[allow(clippy::too_many_arguments)]
pub fn backup_keystore(
    config: &Config,
    store: &Store,
    node: &NodeConfig,
    ks: &KeystoreConfig,
    session: &dyn Node,
    existing: &[Artifact],
    options: Options,
    batch: Option<&Batch>,
) -> anyhow::Result<Backed> {
    let dry_run = options.dry_run;
    // Bounded memory across parallel jobs (see src/memory.rs): held until the keystore is stored.
    let _memory =
        crate::memory::Budget::global().reserve(crate::memory::PEAK_FACTOR.saturating_mul(ks.max_size));
    let fetched = keystore::fetch(session, ks)?;
    // The same files as the newest backup: record that it was seen, store nothing new. Only a
    // sidecar with keyed hashes by this key counts: one from before them (plain SHA-256s) is
    // followed by a new artifact, so a store moves to sidecars without plaintext hashes.
    if !options.force
        && let Some(latest) = super::artifact::latest(existing, &node.name, &ks.name)
        && let Some(keyed) = store.keyed_hash()
        && latest.sidecar.manifest.hash_key.is_some()
        && keystore::same_files(&fetched.files, &latest.sidecar.manifest, &keyed) == Some(true)
        && (latest.sidecar.manifest.identity_unchecked.is_none()
            || latest.sidecar.manifest.identity_unchecked == fetched.unchecked)
        && reusable(store, latest, &config.encryption.recipients)
    {
        if !dry_run {
            store.mark_unchanged(latest, chrono::Utc::now())?;
        }
        return Ok(Backed {
            id: Some(latest.id.clone()),
            size: latest.sidecar.ciphertext_size,
            identity: fetched.identity,
            unchanged: true,
            ticket: None,
            unchecked: fetched.unchecked,
        });
    }
    let mut manifest = keystore::manifest(
        node,
        &ks.name,
        ArtifactKind::of_keystore(ks.kind),
        session.host_key_fingerprint(),
        &fetched.files,
        fetched.identity.clone(),
        Purpose::Backup,
    );
    manifest.dirs = fetched.dirs.clone();
    manifest.identity_unchecked = fetched.unchecked.clone();
    let stored = keystore::seal_and_store(
        store,
        &config.encryption.recipients,
        manifest,
        &fetched.files,
        write(dry_run, batch),
    )?;
    Ok(Backed {
        id: stored.id,
        size: stored.size,
        identity: fetched.identity,
        unchanged: false,
        ticket: stored.ticket,
        unchecked: fetched.unchecked,
    })
}

/// Stores an Acra keystore's master key (read on this machine) into the master-key store, to its
/// own recipients, unless the newest one stored there is the same key.
fn backup_master_key(
    config: &Config,
    node: &NodeConfig,
    ks: &KeystoreConfig,
    keystore_version: Option<u8>,
    session: &dyn Node,
    write: keystore::Write<'_>,
) -> KeystoreOutcome {
    let dry_run = matches!(write, keystore::Write::DryRun);
    let name = master_key::report_name(&ks.name);
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
        let mut listing = store.list(Some(&node.name))?;
        // Same repair rules as the keystore store: missing master-key replica copies are written
        // again (never into a missing replica root), gone writers' temp files removed.
        if !dry_run {
            if let Err(e) = store.remove_stale_temps(&listing.problems) {
                tracing::warn!("cannot remove stale temp files: {e}");
            }
            let repaired: usize = listing
                .artifacts
                .iter()
                .map(|a| {
                    store.repair_missing(a).unwrap_or_else(|e| {
                        tracing::warn!(artifact = %a.id, "cannot write a missing master-key copy: {e}");
                        0
                    })
                })
                .sum();
            if repaired > 0 {
                listing = store.list(Some(&node.name))?;
            }
        }
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
            identity_unchecked: None,
            unchanged: false,
            ticket: None,
        };
        if let Some(existing) = same {
            // Seen unchanged now: `status` counts it as backed up at this run, as for keystores.
            if !dry_run {
                store.mark_unchanged(existing, chrono::Utc::now())?;
            }
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
            ArtifactKind::AcraMasterKey,
            session.host_key_fingerprint(),
            &files,
            Some(Identity::AcraMasterKey(identity)),
            Purpose::Backup,
        );
        let stored = keystore::seal_and_store(
            &store,
            &config.encryption.master_key_recipients,
            manifest,
            &files,
            write,
        )?;
        outcome.id = stored.id;
        outcome.size = Some(stored.size);
        outcome.ticket = stored.ticket;
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
fn reusable(store: &Store, artifact: &Artifact, recipients: &[crate::config::Recipient]) -> bool {
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

/// Every keystore of `node` failed for the same cause (the node was skipped or vetoed), so
/// status, metrics and hooks report it like any other failure of that node.
pub fn all_failed(node: &NodeConfig, cause: &str) -> Vec<KeystoreOutcome> {
    node.keystores
        .iter()
        .map(|ks| failed(node, &ks.name, cause.to_string()))
        .collect()
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
        identity_unchecked: None,
        unchanged: false,
        ticket: None,
    }
}

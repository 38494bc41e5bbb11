//! A whole run with its bookkeeping, as the one-shot commands and the daemon run it: a backup run
//! wrapped in its hooks and recorded, and the scheduled store verification recorded for
//! `status` and the metrics.

use super::backup::{BackupReport, Options, all_failed, backup};
use super::hooks;
use super::verify::{StoreCheck, verify_store};
use super::vocab::OutcomeStatus;
use crate::bundle::Identities;
use crate::config::{Config, NodeConfig};
use std::time::Instant;

/// `COLDKEEP_STATUS` of the `on_start` hooks.
pub const START_STATUS: &str = "start";

/// Backs up `nodes` with the hooks around it and records the run (state, metrics, keystore
/// hooks): `on_start`; `before` (a failure vetoes the run: every keystore fails with that cause);
/// the backup, where `before_node` may skip a node; then `on_run_success` or `on_run_failure`.
/// A dry run writes nothing and pings nothing: no hooks, no record.
pub fn backup_run(config: &Config, nodes: &[&NodeConfig], options: Options) -> BackupReport {
    if options.dry_run {
        return backup(config, nodes, options);
    }
    let h = &config.hooks;
    let names = nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let started = Instant::now();
    let start_env = [
        ("COLDKEEP_STATUS", START_STATUS.to_string()),
        ("COLDKEEP_NODES", names.clone()),
    ];
    hooks::run_all(&h.on_start, &start_env, h.timeout);
    let report = match hooks::run_until_failure(&h.before, &[("COLDKEEP_NODES", names.clone())], h.timeout) {
        Ok(()) => backup(config, nodes, options),
        Err(cause) => {
            let cause = format!("run vetoed: the before {cause}");
            tracing::warn!(error = %cause, "run vetoed");
            BackupReport {
                dry_run: false,
                outcomes: nodes.iter().flat_map(|n| all_failed(n, &cause)).collect(),
            }
        }
    };
    super::run_state::record(config, &report, started.elapsed());
    finish_hooks(config, &report, names, started.elapsed());
    report
}

/// Runs `on_run_success` or `on_run_failure` for a finished run of `names` (space-separated):
/// the finish half of the start/finish ping pair, also sent by the daemon when a batch panicked,
/// so a dead-man's switch that got the start ping hears how the run ended. A keystore backed up
/// without its identity checked counts as failed here (see [`KeystoreOutcome::problem`]).
///
/// [`KeystoreOutcome::problem`]: super::backup::KeystoreOutcome::problem
pub fn finish_hooks(config: &Config, report: &BackupReport, names: String, took: std::time::Duration) {
    let h = &config.hooks;
    let failures: Vec<String> = report
        .problems()
        .map(|(o, problem)| format!("{}/{}: {problem}", o.node, o.keystore))
        .collect();
    let env = [
        (
            "COLDKEEP_STATUS",
            OutcomeStatus::of(failures.is_empty()).as_str().to_string(),
        ),
        ("COLDKEEP_NODES", names),
        ("COLDKEEP_KEYSTORES", report.outcomes.len().to_string()),
        ("COLDKEEP_FAILED", failures.len().to_string()),
        ("COLDKEEP_DURATION", took.as_secs().to_string()),
        ("COLDKEEP_ERROR", failures.join("\n")),
    ];
    let finish = if failures.is_empty() {
        &h.on_run_success
    } else {
        &h.on_run_failure
    };
    hooks::run_all(finish, &env, h.timeout);
}

/// The daemon's scheduled verification: the whole store, replicas and master-key store, deep
/// when `verify_identity` is set; the result goes to the state file (for `status`) and the
/// metrics file. An error means nothing could be checked (unreadable identity or store).
pub fn scheduled_verify(config: &Config) -> anyhow::Result<StoreCheck> {
    let ids = config
        .verify_identity
        .as_deref()
        .map(Identities::from_file)
        .transpose()?;
    let started = Instant::now();
    // Signatures are checked as `coldkeep verify` checks them; adopting unsigned artifacts stays
    // an operator's decision (`verify --sign-unsigned`), never the daemon's.
    let check = verify_store(config, None, ids.as_ref())?;
    super::run_state::record_verify(config, &check, ids.is_some(), started.elapsed())?;
    Ok(check)
}

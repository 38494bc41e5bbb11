//! What follows every backup run (one-shot or daemon): the run state for `status`, the Prometheus
//! textfile, and the hooks.

use super::backup::{BackupReport, KeystoreOutcome};
use super::verify::{ProblemKind, StoreCheck};
use super::vocab::{OutcomeStatus, master_key};
use crate::config::{Config, Hooks};
use crate::store::{Artifact, RunState, Store, VerifyState};
use chrono::Utc;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

/// Records the run's outcomes in the state file (under the store lock), rewrites the metrics file
/// and runs the hooks. Problems are logged; they never turn a good run into a failure.
pub fn record(config: &Config, report: &BackupReport, took: Duration) {
    let now = Utc::now();
    let store = Store::new(&config.store);
    let state = store.lock().and_then(|_lock| {
        let mut state = RunState::load_for_update(&store)?;
        for o in &report.outcomes {
            let entry = state.entry(&o.node, &o.keystore);
            if o.ok {
                entry.last_success = Some(now);
                entry.last_artifact = o.id.clone();
                entry.last_size = o.size;
                // From the run, not the artifact: an unchanged P12 whose password went missing
                // reuses its checked artifact, and only the run knows the check failed.
                entry.last_unchecked = o.identity_unchecked.clone();
            } else {
                entry.last_failure = Some(now);
                entry.last_error = o.error.clone();
            }
        }
        state.last_run_seconds = Some(took.as_secs_f64());
        state.save(&store)?;
        Ok(state)
    });
    match state {
        Ok(state) => {
            if let Some(path) = &config.metrics_file
                && let Err(e) = write_metrics(config, &state, path)
            {
                tracing::error!(path = %path.display(), "cannot write the metrics file: {e:#}");
            }
        }
        Err(e) => tracing::error!("cannot record the run in the store's state file: {e}"),
    }
    run_hooks(&config.hooks, &report.outcomes);
}

/// Records a scheduled verification in the state file (under the store lock) and rewrites the
/// metrics file, so `status` and the `coldkeep_verify_*` metrics show it.
pub fn record_verify(config: &Config, check: &StoreCheck, deep: bool, took: Duration) -> anyhow::Result<()> {
    let mut bad: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in check.artifacts.iter().filter(|c| !c.ok) {
        let entry = bad.entry(format!("{}/{}", c.node, c.keystore)).or_default();
        // A few lines are enough to point at the problem; `coldkeep verify` lists them all.
        entry.extend(c.problems.iter().map(|p| format!("{}: {p}", c.id)));
        entry.truncate(MAX_PROBLEMS_KEPT);
    }
    for p in check.passphrases.iter().filter(|p| !p.ok) {
        let entry = bad.entry(format!("{}/{}", p.node, p.keystore)).or_default();
        entry.push(p.line());
        entry.truncate(MAX_PROBLEMS_KEPT);
    }
    let verify = VerifyState {
        at: Utc::now(),
        deep,
        artifacts: check.artifacts.len() as u64,
        seconds: took.as_secs_f64(),
        problems: check
            .problems_by_kind()
            .into_iter()
            .map(|(k, n)| (k.as_str().to_string(), n))
            .collect(),
        bad,
        store_problems: check
            .store_problems
            .iter()
            .take(MAX_PROBLEMS_KEPT)
            .cloned()
            .collect(),
    };
    let state = {
        let store = Store::new(&config.store);
        let _lock = store.lock()?;
        let mut state = RunState::load_for_update(&store)?;
        state.verify = Some(verify);
        state.save(&store)?;
        state
    };
    if let Some(path) = &config.metrics_file {
        write_metrics(config, &state, path)
            .map_err(|e| e.context(format!("cannot write the metrics file {}", path.display())))?;
    }
    Ok(())
}

/// Problem lines kept per keystore in the state file.
const MAX_PROBLEMS_KEPT: usize = 5;

/// Every `(node, keystore)` that runs report on: configured keystores, and their master keys.
pub fn keystore_names(config: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for n in &config.nodes {
        for k in &n.keystores {
            out.push((n.name.clone(), k.name.clone()));
            if k.master_key.is_some() {
                out.push((n.name.clone(), master_key::report_name(&k.name)));
            }
        }
    }
    out
}

/// Escapes a Prometheus label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics as Prometheus text exposition format.
pub fn metrics_text(config: &Config, state: &RunState, artifacts: &[Artifact]) -> String {
    let mut out = String::new();
    let names = keystore_names(config);
    let keystores: Vec<(&str, &str)> = names.iter().map(|(n, k)| (n.as_str(), k.as_str())).collect();
    let mut family = |name: &str, help: &str, value: &dyn Fn(&str, &str) -> Option<String>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (node, keystore) in &keystores {
            if let Some(v) = value(node, keystore) {
                let _ = writeln!(
                    out,
                    "{name}{{node=\"{}\",keystore=\"{}\"}} {v}",
                    label(node),
                    label(keystore)
                );
            }
        }
    };
    family(
        "coldkeep_last_success_timestamp_seconds",
        "Unix time of the last successful backup of the keystore.",
        &|n, k| {
            state
                .get(n, k)
                .and_then(|s| s.last_success)
                .map(|t| t.timestamp().to_string())
        },
    );
    family(
        "coldkeep_last_run_success",
        "1 if the last backup attempt of the keystore succeeded, 0 if it failed.",
        &|n, k| {
            state
                .get(n, k)
                .filter(|s| s.last_success.is_some() || s.last_failure.is_some())
                .map(|s| if s.failing() { "0" } else { "1" }.to_string())
        },
    );
    let newest = |n: &str, k: &str| {
        artifacts
            .iter()
            .filter(|a| a.node == n && a.keystore == k)
            .max_by_key(|a| (a.sidecar.manifest.created_at, a.id.clone()))
    };
    family(
        "coldkeep_backup_bytes",
        "Size in bytes of the newest artifact of the keystore.",
        &|n, k| newest(n, k).map(|a| a.sidecar.ciphertext_size.to_string()),
    );
    family(
        "coldkeep_backup_identity_unchecked",
        "1 if the last backup of the keystore was taken without its identity checked (a configured \
         P12 password unset or stale), or its newest artifact is so marked, else 0.",
        &|n, k| {
            // The run's record: an unchanged P12 whose check fails now reuses its checked
            // artifact. The newest backup (not a pre-restore copy a restore saved since) for
            // what the store says.
            let last_run = state.get(n, k).is_some_and(|s| s.last_unchecked.is_some());
            let newest = super::artifact::latest(artifacts, n, k);
            (last_run || newest.is_some()).then(|| {
                let marked = newest.is_some_and(|a| a.sidecar.manifest.identity_unchecked.is_some());
                u8::from(last_run || marked).to_string()
            })
        },
    );
    family(
        "coldkeep_artifacts",
        "Number of artifacts stored for the keystore.",
        &|n, k| {
            Some(
                artifacts
                    .iter()
                    .filter(|a| a.node == n && a.keystore == k)
                    .count()
                    .to_string(),
            )
        },
    );
    let _ = writeln!(
        out,
        "# HELP coldkeep_run_duration_seconds Duration of the last backup run.\n\
         # TYPE coldkeep_run_duration_seconds gauge\ncoldkeep_run_duration_seconds {}",
        state.last_run_seconds.unwrap_or(0.0)
    );
    if let Some(v) = &state.verify {
        verify_metrics(&mut out, v);
    }
    out
}

/// The `coldkeep_verify_*` families: every kind gets a line (zero when none was found), so an
/// alert on `> 0` has a series to watch from the first verification on.
fn verify_metrics(out: &mut String, v: &VerifyState) {
    let _ = writeln!(
        out,
        "# HELP coldkeep_verify_last_run_timestamp_seconds Unix time of the last scheduled store verification.\n\
         # TYPE coldkeep_verify_last_run_timestamp_seconds gauge\n\
         coldkeep_verify_last_run_timestamp_seconds {}",
        v.at.timestamp()
    );
    let _ = writeln!(
        out,
        "# HELP coldkeep_verify_problems Problems the last scheduled store verification found, by kind.\n\
         # TYPE coldkeep_verify_problems gauge"
    );
    for kind in ProblemKind::ALL {
        let n = v.problems.get(kind.as_str()).copied().unwrap_or(0);
        let _ = writeln!(out, "coldkeep_verify_problems{{kind=\"{}\"}} {n}", kind.as_str());
    }
    let _ = writeln!(
        out,
        "# HELP coldkeep_verify_artifacts Artifacts the last scheduled store verification checked.\n\
         # TYPE coldkeep_verify_artifacts gauge\ncoldkeep_verify_artifacts {}\n\
         # HELP coldkeep_verify_deep 1 if the last scheduled verification decrypted (verify_identity set).\n\
         # TYPE coldkeep_verify_deep gauge\ncoldkeep_verify_deep {}",
        v.artifacts,
        u8::from(v.deep)
    );
}

/// Signs and stores a hardware key's check (see `hardware_checks`), then rewrites the metrics
/// file so monitoring sees it at once (a metrics problem is logged). Returns the record id.
pub fn record_device_check(config: &Config, check: &crate::store::DeviceCheck) -> anyhow::Result<String> {
    let id = Store::new(&config.store).record_device_check(check)?;
    if let Err(e) = refresh_metrics(config) {
        tracing::error!("cannot rewrite the metrics file: {e:#}");
    }
    Ok(id)
}

/// Rewrites the metrics file (when configured) from the state and the store as they are now:
/// after something other than a run changed what it shows (a hardware key's check).
pub fn refresh_metrics(config: &Config) -> anyhow::Result<()> {
    let Some(path) = &config.metrics_file else {
        return Ok(());
    };
    // A state file that does not authenticate claims nothing in the metrics either.
    let state = RunState::load_checked(&Store::new(&config.store))?.unwrap_or_default();
    write_metrics(config, &state, path)
}

/// Writes the metrics file atomically (temp file + rename), readable by node_exporter (0644;
/// it holds no secret).
fn write_metrics(config: &Config, state: &RunState, path: &Path) -> anyhow::Result<()> {
    let artifacts = super::artifact::artifacts_with_master_keys(config)?;
    let mut text = metrics_text(config, state, &artifacts);
    let _ = writeln!(
        text,
        "# HELP coldkeep_untrusted_artifacts Artifacts in the store without a valid signature \
         (planted or edited; never used).\n# TYPE coldkeep_untrusted_artifacts gauge\n\
         coldkeep_untrusted_artifacts {}",
        super::artifact::untrusted_with_master_keys(config)?.len()
    );
    text.push_str(&super::hardware_checks::metrics_text(config)?);
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = dir.join(format!(
        ".{}.tmp-{:08x}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("metrics"),
        rand::random::<u32>()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)?;
        // node_exporter runs as another user; the umask (0077 under systemd) must not hide it.
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    Ok(result?)
}

/// Runs `on_success` / `on_failure` commands for each outcome, the outcome in `COLDKEEP_*`
/// variables (see [`super::hooks`] for the environment and timeout). A keystore backed up
/// without its identity checked runs `on_failure` (status `failure`, its artifact set, the
/// error saying it was backed up and why it was not checked): see [`KeystoreOutcome::problem`].
pub fn run_hooks(hooks: &Hooks, outcomes: &[KeystoreOutcome]) {
    for o in outcomes {
        let problem = o.problem();
        let commands = if problem.is_none() {
            &hooks.on_success
        } else {
            &hooks.on_failure
        };
        let env = [
            ("COLDKEEP_NODE", o.node.clone()),
            ("COLDKEEP_KEYSTORE", o.keystore.clone()),
            (
                "COLDKEEP_STATUS",
                OutcomeStatus::of(problem.is_none()).as_str().to_string(),
            ),
            ("COLDKEEP_ARTIFACT", o.id.clone().unwrap_or_default()),
            ("COLDKEEP_ERROR", problem.unwrap_or_default()),
        ];
        super::hooks::run_all(commands, &env, hooks.timeout);
    }
}

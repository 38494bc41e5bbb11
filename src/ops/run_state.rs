//! What follows every backup run (one-shot or daemon): the run state for `status`, the Prometheus
//! textfile, and the hooks.

use super::backup::{BackupReport, KeystoreOutcome};
use super::vocab::{OutcomeStatus, master_key};
use crate::config::{Config, Hooks};
use crate::store::{Artifact, RunState, Store};
use chrono::Utc;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Records the run's outcomes in the state file (under the store lock), rewrites the metrics file
/// and runs the hooks. Problems are logged; they never turn a good run into a failure.
pub fn record(config: &Config, report: &BackupReport, took: Duration) {
    let now = Utc::now();
    let root = &config.store.path;
    let store = Store::new(&config.store);
    let state = store.lock().and_then(|_lock| {
        let mut state = RunState::load(root)?;
        for o in &report.outcomes {
            let entry = state.entry(&o.node, &o.keystore);
            if o.ok {
                entry.last_success = Some(now);
                entry.last_artifact = o.id.clone();
                entry.last_size = o.size;
            } else {
                entry.last_failure = Some(now);
                entry.last_error = o.error.clone();
            }
        }
        state.last_run_seconds = Some(took.as_secs_f64());
        state.save(root)?;
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
    out
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

/// Runs `on_success` / `on_failure` commands for each outcome with `sh -c`, the outcome in
/// `COLDKEEP_*` variables, output to our stderr, each killed after the timeout.
pub fn run_hooks(hooks: &Hooks, outcomes: &[KeystoreOutcome]) {
    for o in outcomes {
        let commands = if o.ok {
            &hooks.on_success
        } else {
            &hooks.on_failure
        };
        for command in commands {
            if let Err(e) = run_hook(command, o, hooks.timeout) {
                tracing::warn!(node = %o.node, keystore = %o.keystore, hook = %command, "hook failed: {e}");
            }
        }
    }
}

fn run_hook(command: &str, o: &KeystoreOutcome, timeout: Duration) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        // Not coldkeep's environment: it holds secrets (passwords, master keys, the SSH agent).
        .env_clear()
        .envs(
            ["PATH", "HOME", "LANG", "LC_ALL", "TZ"]
                .iter()
                .filter_map(|k| std::env::var_os(k).map(|v| (*k, v))),
        )
        // Its own process group, so a timeout kills what it started too.
        .process_group(0)
        .env("COLDKEEP_NODE", &o.node)
        .env("COLDKEEP_KEYSTORE", &o.keystore)
        .env("COLDKEEP_STATUS", OutcomeStatus::of(o.ok).as_str())
        .env("COLDKEEP_ARTIFACT", o.id.as_deref().unwrap_or(""))
        .env("COLDKEEP_ERROR", o.error.as_deref().unwrap_or(""))
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .spawn()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "exited with {status}");
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("killed after {}s (hooks.timeout)", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

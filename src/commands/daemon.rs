//! `coldkeep daemon`: scheduled backups, retention after each run, scheduled store verification,
//! config reload, clean stop.
//!
//! One scheduler thread ([`Scheduler`]: fire times, runs in flight, reloads) starts a batch (the due nodes, in
//! parallel up to `jobs`) on a worker thread. A node is never in two runs at once: a fire time that
//! comes while the node's previous run is in flight is skipped. Events reach the scheduler over one
//! channel: a batch finished, the config file changed, SIGTERM/SIGINT.

use crate::cli::DaemonArgs;
use crate::config::{Config, NodeConfig};
use crate::error::Exit;
use crate::ops::Selection;
use crate::ops::backup::Options;
use crate::ops::scheduler::{Scheduler, SystemClock};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

enum Event {
    Stop(i32),
    ConfigChanged,
    BatchDone(Vec<String>),
    VerifyDone,
}

/// Runs the daemon until SIGTERM/SIGINT.
pub fn run(config: Config, path: &Path, args: &DaemonArgs, lock_wait: Duration) -> anyhow::Result<Exit> {
    let mut config = config;
    config.store.lock_wait = lock_wait;
    let (tx, rx) = mpsc::channel();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])?;
    let stop_tx = tx.clone();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            // SIGHUP reloads the config, as daemons do (it used to kill the process silently).
            let event = if sig == signal_hook::consts::SIGHUP {
                tracing::info!("SIGHUP: reloading the config");
                Event::ConfigChanged
            } else {
                Event::Stop(sig)
            };
            if stop_tx.send(event).is_err() {
                break;
            }
        }
    });
    let _watcher = watch_config(path, tx.clone())?;

    let mut config = Arc::new(config);
    let lock_wait = config.store.lock_wait;
    let select = Selection::from(&args.select);
    let mut scheduler = Scheduler::new(&config, &crate::ops::select_nodes(&config, &select)?, SystemClock)?;
    tracing::info!(config = %path.display(), nodes = scheduler.next_runs().len(), "daemon started");
    log_next(scheduler.next_runs());
    if let Some(t) = scheduler.next_verify() {
        tracing::info!(next_verify = %t.to_rfc3339(), deep = config.verify_identity.is_some(), "store verification scheduled");
    }
    let mut batches = 0usize;
    let stop = loop {
        let due = scheduler.due();
        for name in &due.skipped {
            tracing::warn!(node = %name, "scheduled run skipped: the previous run of this node is still going");
        }
        if !due.start.is_empty() {
            batches += 1;
            spawn_batch(config.clone(), due.start, tx.clone());
        }
        if due.verify_skipped {
            tracing::warn!("scheduled verify skipped: the previous one is still going");
        }
        if due.verify {
            batches += 1;
            spawn_verify(config.clone(), tx.clone());
        }
        match rx.recv_timeout(scheduler.wait()) {
            Ok(Event::Stop(sig)) => break sig,
            Ok(Event::ConfigChanged) => {
                match Config::load(path).map_err(anyhow::Error::from).and_then(|mut c| {
                    c.store.lock_wait = lock_wait;
                    // A node whose schedule did not change keeps its pending fire time (it may be due).
                    scheduler.reload(&c, &crate::ops::select_nodes(&c, &select)?)?;
                    Ok(c)
                }) {
                    Ok(c) => {
                        config = Arc::new(c);
                        tracing::info!(nodes = scheduler.next_runs().len(), "config reloaded");
                        log_next(scheduler.next_runs());
                    }
                    Err(e) => tracing::error!("config reload failed, keeping the previous config: {e:#}"),
                }
            }
            Ok(Event::BatchDone(nodes)) => {
                batches -= 1;
                scheduler.finished(&nodes);
                log_next(scheduler.next_runs());
            }
            Ok(Event::VerifyDone) => {
                batches -= 1;
                scheduler.verify_finished();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break 0,
        }
    };
    tracing::info!(
        signal = stop,
        in_flight = batches,
        "stopping: no new runs; waiting for runs in flight"
    );
    let deadline = Instant::now() + args.shutdown_timeout;
    while batches > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::BatchDone(_) | Event::VerifyDone) => batches -= 1,
            Ok(_) => {}
            Err(_) => {
                tracing::error!(
                    in_flight = batches,
                    "runs still in flight after --shutdown-timeout; exiting (artifacts are written atomically, \
                     so nothing partial is left in the store)"
                );
                return Ok(Exit::Failed);
            }
        }
    }
    tracing::info!("stopped");
    Ok(Exit::Ok)
}

fn log_next(next: &BTreeMap<String, DateTime<Utc>>) {
    for (node, t) in next {
        tracing::info!(node = %node, next_run = %t.to_rfc3339(), "next run");
    }
}

/// Backs up `names` on a worker thread (store lock held), then applies retention and records
/// the run; reports back with [`Event::BatchDone`].
fn spawn_batch(config: Arc<Config>, names: Vec<String>, tx: Sender<Event>) {
    std::thread::spawn(move || {
        crate::ops::scheduler::guard_batch(&config, &names, || run_batch(&config, &names));
        let _ = tx.send(Event::BatchDone(names));
    });
}

/// One batch: back up `names` with the run's hooks and record it (ops::run::backup_run), log
/// each outcome, apply retention.
fn run_batch(config: &Config, names: &[String]) {
    let nodes: Vec<&NodeConfig> = names.iter().filter_map(|n| config.node(n)).collect();
    // Store changes take the store lock themselves, briefly: SSH work never holds it.
    let report = crate::ops::run::backup_run(config, &nodes, Options::default());
    for o in &report.outcomes {
        if o.ok {
            tracing::info!(node = %o.node, keystore = %o.keystore, id = o.id.as_deref().unwrap_or("-"),
                unchanged = o.unchanged, "backup done");
        } else {
            tracing::error!(node = %o.node, keystore = %o.keystore,
                error = o.error.as_deref().unwrap_or(""), "backup failed");
        }
    }
    for node in &nodes {
        if let Err(e) = crate::ops::prune::prune(config, Some(&node.name), false) {
            tracing::error!(node = %node.name, "retention failed: {e:#}");
        }
    }
}

/// Runs the scheduled verification on a worker thread; reports back with [`Event::VerifyDone`]
/// even when it panics (guarded like a batch), so the next fire time can start it again.
fn spawn_verify(config: Arc<Config>, tx: Sender<Event>) {
    std::thread::spawn(move || {
        crate::ops::scheduler::guard_verify(|| verify(&config));
        let _ = tx.send(Event::VerifyDone);
    });
}

/// One scheduled verification: check and record (ops::run::scheduled_verify), log the result.
fn verify(config: &Config) {
    match crate::ops::run::scheduled_verify(config) {
        Ok(check) => {
            let problems: Vec<String> = check
                .problems_by_kind()
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{}={n}", k.as_str()))
                .collect();
            if problems.is_empty() {
                tracing::info!(artifacts = check.artifacts.len(), "verify done: no problems");
            } else {
                tracing::error!(artifacts = check.artifacts.len(), problems = %problems.join(","),
                    "verify done: PROBLEMS found (run `coldkeep verify` for details)");
            }
        }
        Err(e) => tracing::error!("scheduled verify failed: {e:#}"),
    }
}

/// Watches the config file's directory (editors replace files, so the file's own watch would
/// die with the old inode) and sends [`Event::ConfigChanged`] after changes settle.
fn watch_config(
    path: &Path,
    tx: Sender<Event>,
) -> anyhow::Result<
    notify_debouncer_full::Debouncer<notify::RecommendedWatcher, notify_debouncer_full::RecommendedCache>,
> {
    let absolute = std::path::absolute(path)?;
    let dir = absolute
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = absolute.file_name().map(|n| n.to_os_string());
    let mut debouncer = notify_debouncer_full::new_debouncer(
        Duration::from_millis(300),
        None,
        move |result: notify_debouncer_full::DebounceEventResult| {
            let Ok(events) = result else { return };
            let ours = events.iter().any(|e| {
                !e.kind.is_access()
                    && e.paths
                        .iter()
                        .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
            });
            if ours {
                let _ = tx.send(Event::ConfigChanged);
            }
        },
    )?;
    debouncer.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    Ok(debouncer)
}

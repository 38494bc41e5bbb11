//! Fleet operation through the real binary against real sshd nodes: unchanged material, the store
//! lock, retries, retention, shards, status, metrics and hooks, and the daemon.

use crate::support;

use serde_json::Value;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::daemon::{Daemon, Killed};
use support::fleet::{age_files, legacy_p12, p12_fleet as fleet, run_code_and_text as run, text};

#[test]
fn unchanged_material_is_recorded_not_duplicated_and_force_stores_anyway() {
    let f = fleet(&["n1"], "");
    assert_eq!(run(&f, &["backup"]).0, 0);
    let (code, out) = run(&f, &["backup", "--json"]);
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["outcomes"][0]["unchanged"], true, "{report}");
    assert_eq!(age_files(&f.store()).len(), 1);
    let (_, list) = f.run_json(&["list", "--json"]);
    assert!(list["artifacts"][0]["seen_unchanged_at"].is_string(), "{list}");
    // The replica's sidecar says the same, and verify still agrees.
    let (code, out) = run(&f, &["verify"]);
    assert_eq!(code, 0, "{out}");

    assert_eq!(run(&f, &["backup", "--force"]).0, 0);
    assert_eq!(age_files(&f.store()).len(), 2);
    // A damaged copy of the newest artifact is not reused: a fresh artifact replaces it. (The
    // newest by created_at: two artifacts made within one second sort by name in any order.)
    let (_, list) = f.run_json(&["list", "--json"]);
    let newest = list["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|a| {
            a["created_at"]
                .as_str()
                .unwrap()
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
        })
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let replica = age_files(&f.replica());
    let copy = replica
        .iter()
        .find(|p| p.to_string_lossy().contains(&newest))
        .unwrap();
    fs::write(copy, b"truncated").unwrap();
    let (code, out) = run(&f, &["backup", "--json"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("\"unchanged\": true"), "{out}");
    assert_eq!(age_files(&f.store()).len(), 3);
    // A changed file is a new artifact without --force.
    let path = f.node("n1").root.join("keys/n1.p12");
    f.put("n1", "keys/n1.p12", &legacy_p12("pw"), 0o400);
    assert!(path.exists());
    assert_eq!(run(&f, &["backup"]).0, 0);
    assert_eq!(age_files(&f.store()).len(), 4);
}

/// Holds the store lock from another process (`flock`, util-linux) until killed.
fn hold_lock(store: &Path) -> Killed {
    fs::create_dir_all(store).unwrap();
    // --no-fork: the shell (then `sleep`) is the flock process itself, so killing it frees the lock.
    let mut child = Command::new("flock")
        .arg("--no-fork")
        .arg(store.join(".coldkeep.lock"))
        .args(["-c", "echo locked; exec sleep 600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    Killed(child)
}

#[test]
fn a_second_writer_waits_then_fails_and_a_dead_holder_never_blocks() {
    let f = fleet(&["n1"], "");
    let holder = hold_lock(&f.store());
    let started = Instant::now();
    let (code, out) = run(&f, &["backup", "--lock-wait", "1s"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("locked by another coldkeep writer"), "{out}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it waited --lock-wait"
    );
    assert!(age_files(&f.store()).is_empty(), "nothing written");
    // Read-only commands do not take the lock.
    assert_eq!(run(&f, &["list"]).0, 0);

    // The holder dies (kill -9): its lock goes with it.
    drop(holder);
    let (code, out) = run(&f, &["backup", "--lock-wait", "1s"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(age_files(&f.store()).len(), 1);
}

#[test]
fn transient_failures_are_retried_and_host_key_errors_are_not() {
    let f = fleet(&["up", "down"], "retries: 2\nretry_wait: 50ms\n");
    // "down": a closed port (the listener was dropped, so connecting is refused).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = fs::read_to_string(&f.config).unwrap().replace(
        &format!("port: {}", f.node("down").port),
        &format!("port: {closed}"),
    );
    fs::write(&f.config, config).unwrap();
    let (code, json) = f.run_json(&["backup", "--json"]);
    assert_eq!(code, 1);
    let by = |n: &str| {
        json["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["node"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by("up")["ok"], true, "the other node is unaffected");
    let err = by("down")["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("gave up after 3 attempts") && err.contains("refused"),
        "{err}"
    );

    // A host-key mismatch is not retried.
    let config = fs::read_to_string(&f.config).unwrap().replace(
        &format!("port: {}\n    labels", f.node("up").port),
        &format!(
            "port: {}\n    host_key: SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n    labels",
            f.node("up").port
        ),
    );
    fs::write(&f.config, config).unwrap();
    let (_, json) = f.run_json(&["backup", "--json", "--node", "up"]);
    let err = json["outcomes"][0]["error"].as_str().unwrap();
    assert!(err.contains("HAS CHANGED") && !err.contains("attempts"), "{err}");
}

#[test]
fn prune_applies_retention_to_store_and_replicas() {
    let f = fleet(&["n1"], "retention: {keep_last: 2}\n");
    for _ in 0..4 {
        assert_eq!(run(&f, &["backup", "--force"]).0, 0);
    }
    // Ids are per second; distinct ciphertexts make them distinct even within one second.
    assert_eq!(age_files(&f.store()).len(), 4);
    let (code, json) = f.run_json(&["prune", "--dry-run", "--json"]);
    assert_eq!(code, 0);
    let removed: Vec<&Value> = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["keep"] == false)
        .collect();
    assert_eq!(removed.len(), 2, "{json}");
    assert_eq!(age_files(&f.store()).len(), 4, "a dry run removes nothing");

    // A keystore that cannot be listed (a file where a replica's directory should be): prune
    // removes nothing at all and fails; list still prints a whole document, names it, exits 1.
    fs::create_dir_all(f.store().join("zz/p12")).unwrap();
    fs::create_dir_all(f.replica().join("zz")).unwrap();
    fs::write(f.replica().join("zz/p12"), b"not a directory").unwrap();
    let (code, out) = run(&f, &["prune"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("zz/p12"), "{out}");
    assert_eq!(
        age_files(&f.store()).len(),
        4,
        "nothing removed when one keystore cannot be listed"
    );
    let (code, list) = f.run_json(&["list", "--json"]);
    assert_eq!(code, 1, "{list}");
    assert_eq!(list["artifacts"].as_array().unwrap().len(), 4, "{list}");
    assert!(list["problems"].to_string().contains("zz/p12"), "{list}");
    fs::remove_file(f.replica().join("zz/p12")).unwrap();

    let (code, out) = run(&f, &["prune"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("last 2") && out.contains("removed"), "{out}");
    assert_eq!(age_files(&f.store()).len(), 2);
    assert_eq!(
        age_files(&f.replica()).len(),
        2,
        "replicas are pruned the same way"
    );
    let (code, out) = run(&f, &["verify"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn shards_split_a_run_and_bad_shards_are_usage_errors() {
    let names = ["a1", "b2", "c3", "d4", "e5"];
    let f = fleet(&names, "");
    let mut seen = Vec::new();
    for shard in ["0/2", "1/2"] {
        let out = f.run(&["backup", "--dry-run", "--json", "--shard", shard]);
        // An empty shard (a fleet smaller than the shard count) is not an error.
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        for o in json["outcomes"].as_array().unwrap() {
            seen.push(o["node"].as_str().unwrap().to_string());
        }
    }
    seen.sort();
    assert_eq!(seen, names, "each node in exactly one shard");
    let (code, out) = run(&f, &["backup", "--shard", "2/2"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not a shard"), "{out}");
}

#[test]
fn status_metrics_and_hooks_follow_each_run() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("coldkeep.prom");
    let hook_log = dir.path().join("hooks.log");
    let top = format!(
        "metrics_file: {}\nhooks:\n  on_success: ['echo \"ok $COLDKEEP_NODE/$COLDKEEP_KEYSTORE $COLDKEEP_ARTIFACT [$P12_SECRET]\" >> {log}']\n  \
         on_failure: ['echo \"failed $COLDKEEP_NODE/$COLDKEEP_KEYSTORE: $COLDKEEP_ERROR\" >> {log}']\n  timeout: 5s\n\
         retries: 0\n",
        metrics.display(),
        log = hook_log.display()
    );
    let f = fleet(&["good", "bad"], &top);

    // Before any backup: nothing stored, status says so.
    let (code, out) = run(&f, &["status"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no backup in the store"), "{out}");

    // "bad" loses its key file.
    fs::remove_file(f.node("bad").root.join("keys/bad.p12")).unwrap();
    // A secret in coldkeep's environment is not passed to hooks.
    let out = f.run_with_env(&["backup"], &[("P12_SECRET", "hunter2")]);
    assert_eq!(out.status.code(), Some(1));

    let (code, json) = f.run_json(&["status", "--json"]);
    assert_eq!(code, 1);
    let by = |n: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|s| s["node"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by("good")["ok"], true, "{json}");
    assert!(
        by("bad")["problems"].to_string().contains("last attempt failed"),
        "{json}"
    );
    assert!(
        by("bad")["last_error"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{json}"
    );

    // Only "good" in the config now: fresh is OK, but not with a zero max age.
    let config = fs::read_to_string(&f.config).unwrap();
    let good_only = config[..config.find("  - name: bad").unwrap()].to_string();
    fs::write(&f.config, &good_only).unwrap();
    assert_eq!(run(&f, &["status", "--max-age", "1h"]).0, 0);
    let (code, out) = run(&f, &["status", "--max-age", "0s"]);
    assert!(code == 1 && out.contains("old (max 0s)"), "{out}");

    let prom = fs::read_to_string(&metrics).unwrap();
    for want in [
        "# TYPE coldkeep_last_success_timestamp_seconds gauge",
        "coldkeep_last_run_success{node=\"good\",keystore=\"p12\"} 1",
        "coldkeep_last_run_success{node=\"bad\",keystore=\"p12\"} 0",
        "coldkeep_artifacts{node=\"good\",keystore=\"p12\"} 1",
        "coldkeep_artifacts{node=\"bad\",keystore=\"p12\"} 0",
        "coldkeep_run_duration_seconds ",
    ] {
        assert!(prom.contains(want), "missing {want:?} in\n{prom}");
    }
    assert!(
        prom.contains("coldkeep_backup_bytes{node=\"good\",keystore=\"p12\"} "),
        "{prom}"
    );
    assert!(
        !prom.contains("coldkeep_last_success_timestamp_seconds{node=\"bad\""),
        "{prom}"
    );

    let log = fs::read_to_string(&hook_log).unwrap();
    let id = by("good")["newest_artifact"].as_str().unwrap().to_string();
    assert!(log.contains(&format!("ok good/p12 {id} []")), "{log}");
    assert!(!log.contains("hunter2"), "{log}");
    let mode = fs::metadata(&metrics).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "readable by node_exporter");
    assert!(
        log.contains("failed bad/p12: ") && log.contains("does not exist"),
        "{log}"
    );
}

#[test]
fn daemon_runs_due_backups_reloads_config_and_stops_cleanly() {
    let f = fleet(
        &["n1"],
        "schedule: \"*/1 * * * * *\"\ntimezone: UTC\nretention: {keep_last: 1}\n",
    );
    let daemon = Daemon::start(&f);
    daemon.expect("daemon started");
    daemon.expect("next run");
    daemon.expect("backup done");
    assert_eq!(age_files(&f.store()).len(), 1);
    // Later runs find the material unchanged.
    let line = daemon.expect("backup done");
    assert!(line.contains("unchanged=true"), "{line}");

    // An invalid edit (written the way editors do: temp file + rename) is refused...
    let good = fs::read_to_string(&f.config).unwrap();
    let temp = f.dir.join(".coldkeep.yaml.swp");
    fs::write(
        &temp,
        good.replace("schedule: \"*/1 * * * * *\"", "schedule: \"* * *\""),
    )
    .unwrap();
    fs::rename(&temp, &f.config).unwrap();
    let line = daemon.expect("config reload failed");
    assert!(line.contains("has 3 fields"), "{line}");
    // ...and the daemon keeps running on the old one.
    daemon.expect("backup done");

    // A valid edit takes effect: a schedule far away.
    fs::write(
        &temp,
        good.replace("schedule: \"*/1 * * * * *\"", "schedule: \"0 0 1 1 *\""),
    )
    .unwrap();
    fs::rename(&temp, &f.config).unwrap();
    daemon.expect("config reloaded");
    let line = daemon.expect("next run");
    assert!(line.contains("-01-01T00:00:00"), "{line}");

    assert_eq!(daemon.terminate(), 0, "SIGTERM: clean exit");
    assert_eq!(age_files(&f.store()).len(), 1);
    let (code, out) = run(&f, &["verify"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn daemon_reloads_on_sighup_and_keeps_running() {
    let f = fleet(&["n1"], "schedule: \"0 0 1 1 *\"\ntimezone: UTC\n");
    let mut daemon = Daemon::start(&f);
    daemon.expect("daemon started");
    let pid = daemon.child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    daemon.expect("SIGHUP: reloading the config");
    daemon.expect("config reloaded");
    assert!(
        daemon.child.0.try_wait().unwrap().is_none(),
        "still running after SIGHUP"
    );
    assert_eq!(daemon.terminate(), 0, "SIGTERM: clean exit");
}

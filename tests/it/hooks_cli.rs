//! Hooks around backup runs (before/before_node vetoes, start/finish/fail pings) and the daemon's
//! scheduled store verification, through the real binary against real sshd nodes.

use crate::support;

use serde_json::Value;
use std::fs;
use std::path::Path;
use support::daemon::Daemon;
use support::fleet::{age_files, p12_fleet as fleet, run_code_and_text as run, text};

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The outcome of `node`'s p12 keystore in a `backup --json` report.
fn outcome<'a>(report: &'a Value, node: &str) -> &'a Value {
    report["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["node"] == node)
        .unwrap_or_else(|| panic!("no outcome for {node}: {report}"))
}

#[test]
fn a_before_node_hook_skips_its_node_while_the_others_back_up() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hooks.log");
    // n2 is vetoed by the hook's exit status, n3 by a hook that hangs past the timeout.
    let top = format!(
        "hooks:\n  before_node:\n    - 'echo \"before $COLDKEEP_NODE\" >> {log}'\n    - 'test \"$COLDKEEP_NODE\" != n2'\n    \
         - 'if [ \"$COLDKEEP_NODE\" = n3 ]; then sleep 60; fi'\n  \
         on_failure: ['echo \"failed $COLDKEEP_NODE/$COLDKEEP_KEYSTORE\" >> {log}']\n  timeout: 2s\n",
        log = log.display()
    );
    let f = fleet(&["n1", "n2", "n3"], &top);
    let out = f.run(&["backup", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome(&report, "n1")["ok"], true, "{report}");
    let n2 = outcome(&report, "n2");
    assert_eq!(n2["ok"], false, "{report}");
    let cause = n2["error"].as_str().unwrap();
    assert!(
        cause.contains("skipped: the before_node hook `test \"$COLDKEEP_NODE\" != n2` failed")
            && cause.contains("exit status: 1"),
        "{cause}"
    );
    let cause = outcome(&report, "n3")["error"].as_str().unwrap();
    assert!(
        cause.contains("skipped: the before_node hook") && cause.contains("killed after 2s"),
        "{cause}"
    );

    // Only n1 was backed up; the skipped nodes left nothing in the store.
    let stored: Vec<_> = age_files(&f.store());
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].starts_with(f.store().join("n1")), "{stored:?}");

    // The skip is reported like any other failure of that node: hooks and status.
    let mut log = lines(&log);
    log.sort();
    assert_eq!(
        log,
        [
            "before n1",
            "before n2",
            "before n3",
            "failed n2/p12",
            "failed n3/p12"
        ],
    );
    let (code, status) = run(&f, &["status"]);
    assert_eq!(code, 1, "{status}");
    assert!(status.contains("skipped: the before_node hook"), "{status}");
}

#[test]
fn a_failing_before_hook_vetoes_the_whole_run() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hooks.log");
    let top = format!(
        "hooks:\n  on_start: ['echo \"start $COLDKEEP_NODES\" >> {log}']\n  \
         before: ['echo \"before $COLDKEEP_NODES\" >> {log}', 'exit 7', 'echo never >> {log}']\n  \
         before_node: ['echo \"node $COLDKEEP_NODE\" >> {log}']\n  \
         on_run_failure: ['echo \"fail $COLDKEEP_STATUS $COLDKEEP_FAILED\" >> {log}']\n",
        log = log.display()
    );
    let f = fleet(&["n1", "n2"], &top);
    let out = f.run(&["backup", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    for node in ["n1", "n2"] {
        let o = outcome(&report, node);
        assert_eq!(o["ok"], false, "{report}");
        let cause = o["error"].as_str().unwrap();
        assert!(
            cause.contains("run vetoed: the before hook `exit 7` failed") && cause.contains("exit status: 7"),
            "{cause}"
        );
    }
    assert!(age_files(&f.store()).is_empty(), "nothing fetched or stored");
    assert_eq!(
        lines(&log),
        ["start n1 n2", "before n1 n2", "fail failure 2"],
        "no node hook, no later before hook"
    );
}

#[test]
fn start_and_finish_hooks_run_in_order_with_the_run_status() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hooks.log");
    let top = format!(
        "hooks:\n  on_start: ['echo \"start $COLDKEEP_STATUS\" >> {log}']\n  \
         on_success: ['echo \"keystore $COLDKEEP_STATUS $COLDKEEP_NODE/$COLDKEEP_KEYSTORE\" >> {log}']\n  \
         on_failure: ['echo \"keystore $COLDKEEP_STATUS $COLDKEEP_NODE/$COLDKEEP_KEYSTORE\" >> {log}']\n  \
         on_run_success: ['echo \"finish $COLDKEEP_STATUS $COLDKEEP_KEYSTORES $COLDKEEP_FAILED\" >> {log}']\n  \
         on_run_failure: ['echo \"fail $COLDKEEP_STATUS $COLDKEEP_KEYSTORES $COLDKEEP_FAILED [$COLDKEEP_ERROR]\" >> {log}']\n",
        log = log.display()
    );
    let f = fleet(&["n1"], &top);
    assert_eq!(run(&f, &["backup"]).0, 0);
    assert_eq!(
        lines(&log),
        ["start start", "keystore success n1/p12", "finish success 1 0"]
    );

    // A dry run writes nothing and pings nothing.
    assert_eq!(run(&f, &["backup", "--dry-run"]).0, 0);
    assert_eq!(lines(&log).len(), 3);

    // The key file disappears: the run fails, the fail hook carries the cause.
    fs::remove_file(f.node("n1").root.join("keys/n1.p12")).unwrap();
    assert_eq!(run(&f, &["backup"]).0, 1);
    let log = lines(&log);
    assert_eq!(log.len(), 6, "{log:?}");
    assert_eq!(log[3..5], ["start start", "keystore failure n1/p12"]);
    assert!(
        log[5].starts_with("fail failure 1 1 [n1/p12: ") && log[5].contains("does not exist"),
        "{}",
        log[5]
    );
}

#[test]
fn hook_and_verify_settings_are_validated_with_their_position() {
    let base = "store:\n  path: /var/lib/coldkeep\nencryption:\n  recipients: \
                [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]\n";
    // After the lines under test, so the positions asserted stay theirs.
    let signing =
        "signing:\n  key: /etc/coldkeep/signing_key\n  allowed_signers: /etc/coldkeep/allowed_signers\n";
    let check = |top: &str, at: (usize, usize), want: &str| {
        let text = format!("{base}{top}{signing}");
        let e = coldkeep::config::Config::parse(&text, Path::new("/etc/coldkeep/coldkeep.yaml"))
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{text}"));
        assert_eq!((e.line, e.column), at, "{e}");
        assert!(e.to_string().contains(want), "want {want:?}: {e}");
    };
    check("hooks:\n  before_node: ['  ']\n", (6, 17), "empty hook command");
    check("hooks:\n  before: [x, '']\n", (6, 15), "empty hook command");
    check("hooks:\n  on_start: [x]\n  on_finish: [x]\n", (7, 3), "on_finish");
    check("verify_schedule: \"* *\"\n", (5, 18), "has 2 fields");
    check(
        "verify_identity: /etc/coldkeep/key.txt\n",
        (5, 18),
        "only used by `verify_schedule`",
    );
    // Both set: accepted, the identity resolved.
    let text = format!("{base}verify_schedule: \"0 5 * * 0\"\nverify_identity: /k.txt\n{signing}");
    let c = coldkeep::config::Config::parse(&text, Path::new("/etc/coldkeep/coldkeep.yaml")).unwrap();
    assert_eq!(c.verify_identity.as_deref(), Some(Path::new("/k.txt")));
    assert_eq!(c.verify_schedule.unwrap().as_str(), "0 5 * * 0");
}

fn metric(prom: &str, name: &str) -> Option<String> {
    prom.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .map(|l| l[name.len() + 1..].to_string())
}

#[test]
fn the_daemons_verify_schedule_reports_a_flipped_byte_in_the_metrics_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("coldkeep.prom");
    // Backups far away; verification every second.
    let top = format!(
        "timezone: UTC\nschedule: \"0 0 1 1 *\"\nmetrics_file: {}\nverify_schedule: \"*/1 * * * * *\"\n",
        metrics.display()
    );
    let f = fleet(&["n1"], &top);
    assert_eq!(run(&f, &["backup"]).0, 0);
    let daemon = Daemon::start(&f);
    daemon.expect("store verification scheduled");
    let line = daemon.expect("verify done");
    assert!(
        line.contains("no problems") && line.contains("artifacts=1"),
        "{line}"
    );
    let prom = fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        metric(&prom, "coldkeep_verify_problems{kind=\"hash\"}").as_deref(),
        Some("0"),
        "{prom}"
    );
    assert_eq!(
        metric(&prom, "coldkeep_verify_deep").as_deref(),
        Some("0"),
        "{prom}"
    );
    let first: i64 = metric(&prom, "coldkeep_verify_last_run_timestamp_seconds")
        .unwrap()
        .parse()
        .unwrap();

    // One byte of the primary's copy rots (the replica stays intact).
    let copy = age_files(&f.store()).pop().unwrap();
    let mut bytes = fs::read(&copy).unwrap();
    *bytes.last_mut().unwrap() ^= 0x01;
    fs::write(&copy, &bytes).unwrap();
    // A verification in flight during the write may still see the old bytes; the next one not.
    let mut seen = 0;
    let line = loop {
        let line = daemon.expect("verify done");
        if line.contains("PROBLEMS") {
            break line;
        }
        seen += 1;
        assert!(seen < 3, "the flipped byte was not found: {line}");
    };
    assert!(line.contains("hash=1"), "{line}");
    let prom = fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        metric(&prom, "coldkeep_verify_problems{kind=\"hash\"}").as_deref(),
        Some("1"),
        "{prom}"
    );
    // The sidecar (and so its signature) is intact: a flipped ciphertext byte is bit rot, not a forgery.
    for kind in ["missing", "header", "sidecar", "contents", "store", "signature"] {
        let name = format!("coldkeep_verify_problems{{kind=\"{kind}\"}}");
        assert_eq!(metric(&prom, &name).as_deref(), Some("0"), "{prom}");
    }
    let last: i64 = metric(&prom, "coldkeep_verify_last_run_timestamp_seconds")
        .unwrap()
        .parse()
        .unwrap();
    assert!(last >= first, "{prom}");
    // The backup metrics are still there beside the verification's.
    assert!(
        prom.contains("coldkeep_last_success_timestamp_seconds{node=\"n1\""),
        "{prom}"
    );

    let (code, status) = run(&f, &["status"]);
    assert_eq!(code, 1, "{status}");
    assert!(
        status.contains("the store verification at") && status.contains("does not match its sidecar"),
        "{status}"
    );
    assert!(status.contains("1 PROBLEMS"), "{status}");

    // With verify_identity (reloaded live) the verification decrypts: the intact replica copy opens.
    let config = fs::read_to_string(&f.config).unwrap();
    let temp = f.dir.join(".coldkeep.yaml.swp");
    fs::write(
        &temp,
        config.replace(
            "verify_schedule:",
            &format!("verify_identity: {}\nverify_schedule:", f.age_identity.display()),
        ),
    )
    .unwrap();
    fs::rename(&temp, &f.config).unwrap();
    daemon.expect("config reloaded");
    let mut seen = 0;
    loop {
        daemon.expect("verify done");
        let prom = fs::read_to_string(&metrics).unwrap();
        if metric(&prom, "coldkeep_verify_deep").as_deref() == Some("1") {
            assert_eq!(
                metric(&prom, "coldkeep_verify_problems{kind=\"hash\"}").as_deref(),
                Some("1"),
                "{prom}"
            );
            assert_eq!(
                metric(&prom, "coldkeep_verify_problems{kind=\"contents\"}").as_deref(),
                Some("0"),
                "{prom}"
            );
            break;
        }
        seen += 1;
        assert!(seen < 3, "the reload did not make verification deep: {prom}");
    }
    assert_eq!(daemon.terminate(), 0, "SIGTERM: clean exit");
}

/// Every sidecar (`.json`) of the artifacts under a store root.
fn sidecars(root: &Path) -> Vec<std::path::PathBuf> {
    age_files(root)
        .into_iter()
        .map(|p| p.with_extension("json"))
        .collect()
}

#[test]
fn the_daemons_verify_schedule_reports_a_forged_sidecar_in_a_replica_as_a_signature_problem() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("coldkeep.prom");
    let top = format!(
        "timezone: UTC\nschedule: \"0 0 1 1 *\"\nmetrics_file: {}\nverify_schedule: \"*/1 * * * * *\"\n",
        metrics.display()
    );
    let f = fleet(&["n1"], &top);
    assert_eq!(run(&f, &["backup"]).0, 0);

    // An attacker who can write the replica only edits its sidecar (the recorded host) and keeps
    // the old signature beside it; the ciphertext and its hash are untouched, so only the
    // signature (and the copies disagreeing) can tell.
    let [sidecar] = sidecars(&f.replica()).try_into().unwrap();
    let genuine = fs::read_to_string(&sidecar).unwrap();
    assert!(genuine.contains("127.0.0.1"), "{genuine}");
    fs::write(&sidecar, genuine.replace("127.0.0.1", "127.0.0.9")).unwrap();

    let daemon = Daemon::start(&f);
    daemon.expect("store verification scheduled");
    let line = daemon.expect("verify done");
    assert!(
        line.contains("PROBLEMS") && line.contains("signature=1"),
        "{line}"
    );
    let prom = fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        metric(&prom, "coldkeep_verify_problems{kind=\"signature\"}").as_deref(),
        Some("1"),
        "{prom}"
    );
    for kind in ["missing", "unreadable", "hash", "header", "contents", "store"] {
        let name = format!("coldkeep_verify_problems{{kind=\"{kind}\"}}");
        assert_eq!(metric(&prom, &name).as_deref(), Some("0"), "{prom}");
    }
    assert_eq!(daemon.terminate(), 0, "SIGTERM: clean exit");

    // `status` names the forged copy; `coldkeep verify`, the same check, fails on it too.
    let (code, status) = run(&f, &["status"]);
    assert_eq!(code, 1, "{status}");
    assert!(status.contains("the store verification at"), "{status}");
    let (code, out) = run(&f, &["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("BAD") && out.contains(&f.replica().display().to_string()),
        "{out}"
    );
}

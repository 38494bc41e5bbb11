//! End-to-end tests of `coldkeep backup`, `list` and `verify` through the real binary, against
//! real sshd nodes on loopback (see `coldkeep::testkit::sandbox`).

use crate::support;

use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use support::fleet::{FIXTURE, Fleet, age_files, legacy_p12, text};

#[test]
fn three_nodes_back_up_list_verify_and_recover_with_the_age_cli() {
    let fleet = Fleet::new(&["v1", "v2", "v3"]);
    let mut yaml = String::new();
    let mut originals = Vec::new();
    for name in ["v1", "v2", "v3"] {
        let bytes = legacy_p12("pw-0123456789");
        let path = fleet.put(
            name,
            &format!("home/nodeadmin/tessellation/{name}.p12"),
            &bytes,
            0o400,
        );
        yaml.push_str(&fleet.node_yaml(name, fleet.node(name).port, &path, ""));
        originals.push((name, bytes));
    }
    fleet.write_config(&yaml);

    let out = fleet.run(&["backup"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("3 of 3 keystores backed up"),
        "{}",
        text(&out.stdout)
    );

    let (code, list) = fleet.run_json(&["list", "--json"]);
    assert_eq!(code, 0);
    let artifacts = list["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 3);
    for a in artifacts {
        assert_eq!(
            a["copies"].as_array().unwrap().len(),
            2,
            "primary and replica: {a}"
        );
        assert_eq!(a["identity"]["kind"], "p12");
        assert_eq!(a["identity"]["pfx_version"], 3);
    }

    let out = fleet.run(&["verify", "--identity", fleet.age_identity.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("3 of 3 artifacts verified"));

    // Recovery without coldkeep: age -d | tar x gives the exact bytes under the original name.
    for (name, bytes) in &originals {
        let artifact = age_files(&fleet.store().join(name)).pop().unwrap();
        let dest = fleet.dir.join("recovered").join(name);
        fs::create_dir_all(&dest).unwrap();
        let cmd = format!(
            "age -d -i '{}' '{}' | tar x -C '{}'",
            fleet.age_identity.display(),
            artifact.display(),
            dest.display()
        );
        let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(&fs::read(dest.join(format!("{name}.p12"))).unwrap(), bytes);
        let manifest: Value = serde_json::from_slice(&fs::read(dest.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["node"], *name);
        assert_eq!(manifest["files"][0]["mode"], 0o400);
    }
}

#[test]
fn cl_keytool_fixture_is_identified_by_its_node_id() {
    let fleet = Fleet::new(&["validator-0"]);
    let bytes = fs::read(format!("{FIXTURE}/key.p12")).unwrap();
    let path = fleet.put(
        "validator-0",
        "home/nodeadmin/tessellation/key.p12",
        &bytes,
        0o400,
    );
    let pw = fleet.secret_file("p12-password", "password");
    let extra = format!("        password: {{file: {}}}\n", pw.display());
    fleet.write_config(&fleet.node_yaml("validator-0", fleet.node("validator-0").port, &path, &extra));

    let out = fleet.run(&["backup"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let (_, list) = fleet.run_json(&["list", "--json"]);
    let identity = &list["artifacts"][0]["identity"];
    let peer_id = fs::read_to_string(format!("{FIXTURE}/peer_id")).unwrap();
    assert_eq!(identity["node_id"], peer_id.trim());
    assert_eq!(identity["aliases"][0], "alias");
    let out = fleet.run(&["verify", "--identity", fleet.age_identity.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn each_failure_is_reported_and_the_other_nodes_still_succeed() {
    let names = [
        "good",
        "unknown-host",
        "changed-key",
        "wrong-client-key",
        "missing",
        "not-p12",
        "wrong-pw",
    ];
    let fleet = Fleet::new(&names);
    let p12 = legacy_p12("right-password");
    let pw = fleet.secret_file("pw", "right-password");
    let bad_pw = fleet.secret_file("bad-pw", "wrong-password");

    // unknown-host: drop its known_hosts line. changed-key: record another node's key for it.
    let kh = fs::read_to_string(&fleet.sandbox.known_hosts).unwrap();
    let port_of = |n: &str| fleet.node(n).port;
    let other_key = fs::read_to_string(format!("{}.pub", fleet.node("good").host_key.display())).unwrap();
    let mut new_kh: String = kh
        .lines()
        .filter(|l| {
            !l.starts_with(&format!("[127.0.0.1]:{} ", port_of("unknown-host")))
                && !l.starts_with(&format!("[127.0.0.1]:{} ", port_of("changed-key")))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let key_fields: Vec<&str> = other_key.split_whitespace().take(2).collect();
    new_kh.push_str(&format!(
        "[127.0.0.1]:{} {}\n",
        port_of("changed-key"),
        key_fields.join(" ")
    ));
    fs::write(&fleet.sandbox.known_hosts, new_kh).unwrap();

    // wrong-client-key: a key the node does not accept.
    let stranger = fleet.dir.join("stranger_key");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .unwrap();
    assert!(keygen.success());

    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };

    let mut yaml = String::new();
    for name in names {
        let rel = format!("home/nodeadmin/tessellation/{name}.p12");
        let path = match name {
            "missing" => fleet.node(name).root.join(&rel).display().to_string(),
            "not-p12" => fleet.put(name, &rel, b"-----BEGIN CERTIFICATE-----\nnot a key\n", 0o400),
            _ => fleet.put(name, &rel, &p12, 0o400),
        };
        let secret = if name == "wrong-pw" { &bad_pw } else { &pw };
        let mut entry = fleet.node_yaml(
            name,
            port_of(name),
            &path,
            &format!("        password: {{file: {}}}\n", secret.display()),
        );
        if name == "wrong-client-key" {
            entry = entry.replacen(
                "    labels:",
                &format!("    identity: {}\n    labels:", stranger.display()),
                1,
            );
        }
        yaml.push_str(&entry);
    }
    yaml.push_str(&fleet.node_yaml("port-closed", closed_port, "/nonexistent.p12", ""));
    fleet.write_config(&yaml);

    let out = fleet.run(&["backup", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcome = |node: &str| {
        report["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["node"] == node)
            .unwrap()
            .clone()
    };
    assert_eq!(outcome("good")["ok"], true);
    let error = |node: &str| {
        let o = outcome(node);
        assert_eq!(o["ok"], false, "{node} should fail: {o}");
        o["error"].as_str().unwrap().to_string()
    };
    let unknown = error("unknown-host");
    assert!(
        unknown.contains("unknown") && unknown.contains(&fleet.node("unknown-host").host_key_fingerprint),
        "{unknown}"
    );
    assert!(error("changed-key").contains("CHANGED"));
    assert!(error("wrong-client-key").contains("authentication"));
    assert!(error("missing").contains("does not exist"));
    // A check of the material that fails never skips the backup: stored, marked, and the run
    // exits 1 (above) so monitoring sees it.
    let unchecked = |node: &str| {
        let o = outcome(node);
        assert_eq!(o["ok"], true, "{node} is stored: {o}");
        assert!(o["id"].is_string(), "{o}");
        o["identity_unchecked"].as_str().unwrap().to_string()
    };
    assert!(
        unchecked("not-p12").contains("not a PKCS#12"),
        "{}",
        unchecked("not-p12")
    );
    assert!(
        unchecked("wrong-pw").contains("wrong password"),
        "{}",
        unchecked("wrong-pw")
    );
    assert!(
        error("port-closed").contains("cannot connect"),
        "{}",
        error("port-closed")
    );

    // The good node's artifact verifies; the two stored unchecked are the only others.
    assert_eq!(age_files(&fleet.store()).len(), 3);
    assert_eq!(age_files(&fleet.store().join("good")).len(), 1);
    let out = fleet.run(&[
        "verify",
        "--node",
        "good",
        "--identity",
        fleet.age_identity.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // The human summary names every failure.
    let out = fleet.run(&["backup", "--node", "missing", "--node", "not-p12"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("1 failed:") && stdout.contains("missing/p12:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok (identity NOT checked)")
            && stdout.contains("backed up without their identity checked")
            && stdout.contains("not-p12/p12:"),
        "{stdout}"
    );
}

#[test]
fn store_is_private_and_no_plaintext_key_reaches_local_disk() {
    let fleet = Fleet::new(&["n1"]);
    let p12 = legacy_p12("pw-0123456789");
    let path = fleet.put("n1", "keys/n1.p12", &p12, 0o400);
    let pw = fleet.secret_file("pw", "pw-0123456789");
    let extra = format!("        password: {{file: {}}}\n", pw.display());
    fleet.write_config(&fleet.node_yaml("n1", fleet.node("n1").port, &path, &extra));
    for args in [
        &["backup"][..],
        &["verify", "--identity", fleet.age_identity.to_str().unwrap()][..],
    ] {
        let out = fleet.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    for root in [fleet.store(), fleet.replica()] {
        let mut seen = 0;
        for entry in walkdir::WalkDir::new(&root) {
            let entry = entry.unwrap();
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            let want = if entry.file_type().is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode, want, "{}", entry.path().display());
            seen += 1;
        }
        assert!(
            seen >= 5,
            "root, node, keystore dirs, .age, .json in {}",
            root.display()
        );
    }

    fleet.assert_not_on_local_disk(&[&p12]);
}

#[test]
fn verify_finds_flipped_truncated_and_edited_artifacts() {
    let fleet = Fleet::new(&["n1"]);
    let path = fleet.put("n1", "keys/n1.p12", &legacy_p12("pw-0123456789"), 0o400);
    fleet.write_config(&fleet.node_yaml("n1", fleet.node("n1").port, &path, ""));
    for _ in 0..3 {
        assert_eq!(fleet.run(&["backup", "--force"]).status.code(), Some(0));
    }
    let mut artifacts = age_files(&fleet.store());
    artifacts.sort();
    assert_eq!(artifacts.len(), 3);
    let identity = fleet.age_identity.to_str().unwrap();
    assert_eq!(
        fleet.run(&["verify", "--identity", identity]).status.code(),
        Some(0)
    );

    // Flip one byte in the middle of the first, truncate the second's replica copy.
    let mut bytes = fs::read(&artifacts[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&artifacts[0], &bytes).unwrap();
    let replica_copy = fleet
        .replica()
        .join(artifacts[1].strip_prefix(fleet.store()).unwrap());
    let len = fs::metadata(&replica_copy).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&replica_copy)
        .unwrap()
        .set_len(len - 10)
        .unwrap();

    let (code, out) = fleet.run_json(&["verify", "--json"]);
    assert_eq!(code, 1);
    let checks = out["artifacts"].as_array().unwrap();
    let bad: Vec<&Value> = checks.iter().filter(|c| c["ok"] == false).collect();
    assert_eq!(bad.len(), 2, "{out}");
    let id_of = |p: &Path| p.file_stem().unwrap().to_str().unwrap().to_string();
    assert!(bad.iter().any(|c| c["id"] == id_of(&artifacts[0]).as_str()));
    assert!(
        bad.iter().any(
            |c| c["id"] == id_of(&artifacts[1]).as_str() && c["problems"].to_string().contains("replica")
        )
    );

    // Editing a sidecar's identity (and nothing else) breaks its signature (caught without a
    // key) and is caught by the deep check as well.
    let sidecar = artifacts[2].with_extension("json");
    let mut json: Value = serde_json::from_slice(&fs::read(&sidecar).unwrap()).unwrap();
    json["files"][0]["mode"] = Value::from(0o644);
    fs::write(&sidecar, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    let replica_sidecar = fleet.replica().join(sidecar.strip_prefix(fleet.store()).unwrap());
    fs::write(&replica_sidecar, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    let (_, shallow) = fleet.run_json(&["verify", "--json"]);
    let third = |v: &Value| {
        v["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id_of(&artifacts[2]).as_str())
            .unwrap()
            .clone()
    };
    assert_eq!(third(&shallow)["ok"], false);
    assert!(
        third(&shallow)["problems"].to_string().contains("bad signature"),
        "{shallow}"
    );
    let (code, deep) = fleet.run_json(&["verify", "--json", "--identity", identity]);
    assert_eq!(code, 1);
    assert!(
        third(&deep)["problems"]
            .to_string()
            .contains("sidecar was edited"),
        "{deep}"
    );
}

#[test]
fn verify_live_says_whether_the_node_still_uses_the_backed_up_key() {
    let fleet = Fleet::new(&["n1"]);
    let path = fleet.put("n1", "keys/n1.p12", &legacy_p12("pw-0123456789"), 0o400);
    let pw = fleet.secret_file("pw", "pw-0123456789");
    let extra = format!("        password: {{file: {}}}\n", pw.display());
    fleet.write_config(&fleet.node_yaml("n1", fleet.node("n1").port, &path, &extra));

    let out = fleet.run(&["verify", "--live", "--node", "n1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("no backup"), "{}", text(&out.stdout));

    assert_eq!(fleet.run(&["backup"]).status.code(), Some(0));
    let out = fleet.run(&["verify", "--live", "--node", "n1"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("matches"));

    // The node now uses another key.
    fleet.put("n1", "keys/n1.p12", &legacy_p12("pw-0123456789"), 0o400);
    let (code, json) = fleet.run_json(&["verify", "--live", "--node", "n1", "--json"]);
    assert_eq!(code, 1);
    assert_eq!(json[0]["matches"], false);
    assert!(
        json[0]["detail"].as_str().unwrap().contains("different key"),
        "{json}"
    );
}

#[test]
fn dry_run_checks_everything_and_writes_nothing() {
    let fleet = Fleet::new(&["n1"]);
    let path = fleet.put("n1", "keys/n1.p12", &legacy_p12("pw-0123456789"), 0o400);
    fleet.write_config(&fleet.node_yaml("n1", fleet.node("n1").port, &path, ""));
    let out = fleet.run(&["backup", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("dry run"));
    assert!(!fleet.store().exists() || age_files(&fleet.store()).is_empty());
}

#[test]
fn usage_and_config_errors_exit_2_and_do_nothing() {
    let fleet = Fleet::new(&[]);
    fleet.write_config("  - name: n1\n    host: 127.0.0.1\n    port: not-a-port\n    keystores: []\n");
    let out = fleet.run(&["backup"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:", fleet.config.display())),
        "{stderr}"
    );
    let line = fs::read_to_string(&fleet.config)
        .unwrap()
        .lines()
        .position(|l| l.contains("port: not-a-port"))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!(":{line}:11:")),
        "line and column of `port:` expected: {stderr}"
    );
    assert!(!fleet.store().exists());

    fleet.write_config(&fleet.node_yaml("n1", 22, "/keys/n1.p12", ""));
    let out = fleet.run(&["backup", "--node", "typo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no node named \"typo\""),
        "{}",
        text(&out.stderr)
    );
    assert!(!fleet.store().exists());
}

/// A P12 whose configured password is unset (env var missing) or stale (changed on the node by
/// `nodectl passwd12`): the backup is still taken, marked, and every reader shows the mark until
/// a backup whose check passes replaces it.
#[test]
fn a_p12_whose_password_is_unset_or_stale_is_still_backed_up_and_marked() {
    let fleet = Fleet::new(&["n1"]);
    let p12 = legacy_p12("current-password");
    let path = fleet.put("n1", "home/nodeadmin/tessellation/n1.p12", &p12, 0o400);
    let metrics = fleet.dir.join("metrics.prom");
    fleet.write_config_with(
        &format!("metrics_file: {}\n", metrics.display()),
        &fleet.node_yaml(
            "n1",
            fleet.node("n1").port,
            &path,
            "        password: {env: N1_P12_PASSWORD}\n",
        ),
    );
    let identity = fleet.age_identity.display().to_string();
    for (env, why) in [
        (None, "could not be read"),
        (Some("old-password"), "wrong password"),
    ] {
        for root in [fleet.store(), fleet.replica()] {
            let _ = fs::remove_dir_all(&root);
        }
        // A replica root exists as a mounted one would: coldkeep never creates it.
        fs::create_dir(fleet.replica()).unwrap();
        let env: Vec<(&str, &str)> = env.iter().map(|v| ("N1_P12_PASSWORD", *v)).collect();
        let out = fleet.run_with_env(&["backup", "--json"], &env);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let o = &report["outcomes"][0];
        assert_eq!(o["ok"], true, "{o}");
        assert!(o["identity_unchecked"].as_str().unwrap().contains(why), "{o}");
        assert_eq!(age_files(&fleet.store()).len(), 1, "stored");

        // list, status, metrics and verify show the mark.
        let (_, listed) = fleet.run_json(&["list", "--json"]);
        assert!(
            listed["artifacts"][0]["identity_unchecked"]
                .as_str()
                .unwrap()
                .contains(why),
            "{listed}"
        );
        let out = fleet.run(&["list"]);
        assert!(
            text(&out.stdout).contains("identity NOT checked"),
            "{}",
            text(&out.stdout)
        );
        let out = fleet.run(&["status"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
        assert!(
            text(&out.stdout).contains("without its identity checked"),
            "{}",
            text(&out.stdout)
        );
        let prom = fs::read_to_string(&metrics).unwrap();
        assert!(
            prom.contains("coldkeep_backup_identity_unchecked{node=\"n1\",keystore=\"p12\"} 1"),
            "{prom}"
        );
        let out = fleet.run_with_env(&["verify", "--identity", &identity], &env);
        assert!(
            text(&out.stdout).contains("identity not checked when stored"),
            "{}",
            text(&out.stdout)
        );
    }

    // The password fixed: a new artifact (the marked one is not reused for the same bytes),
    // and every reader is clear again.
    let env = [("N1_P12_PASSWORD", "current-password")];
    let out = fleet.run_with_env(&["backup", "--json"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["outcomes"][0]["identity_unchecked"].is_null(), "{report}");
    assert_eq!(report["outcomes"][0]["unchanged"], Value::Null, "{report}");
    assert_eq!(age_files(&fleet.store()).len(), 2);
    // Which of two artifacts of the same second is the newest is the store's business (1 s
    // created_at); the readers are checked on a store holding only the checked one.
    for root in [fleet.store(), fleet.replica()] {
        fs::remove_dir_all(&root).unwrap();
    }
    fs::create_dir(fleet.replica()).unwrap();
    let out = fleet.run_with_env(&["backup"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = fleet.run(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let prom = fs::read_to_string(&metrics).unwrap();
    assert!(
        prom.contains("coldkeep_backup_identity_unchecked{node=\"n1\",keystore=\"p12\"} 0"),
        "{prom}"
    );
    // Unchanged now: reused, still clear.
    let out = fleet.run_with_env(&["backup", "--json"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(age_files(&fleet.store()).len(), 1);
}

/// The real case behind the mark: the newest artifact was checked, then the P12 password's env
/// var goes missing while the P12 stays the same. The checked artifact is reused (the bytes are
/// the same), and the run's failed check still reaches status, the metrics and every hook.
#[test]
fn an_unchanged_p12_whose_password_went_missing_is_flagged_by_status_metrics_and_hooks() {
    let fleet = Fleet::new(&["n1"]);
    let path = fleet.put(
        "n1",
        "home/nodeadmin/tessellation/n1.p12",
        &legacy_p12("current-password"),
        0o400,
    );
    let metrics = fleet.dir.join("metrics.prom");
    let log = fleet.dir.join("hooks.log");
    let top = format!(
        "metrics_file: {metrics}\nhooks:\n  \
         on_success: ['echo \"success $COLDKEEP_STATUS $COLDKEEP_KEYSTORE $COLDKEEP_ARTIFACT\" >> {log}']\n  \
         on_failure: ['echo \"failure $COLDKEEP_STATUS $COLDKEEP_KEYSTORE $COLDKEEP_ARTIFACT $COLDKEEP_ERROR\" >> {log}']\n  \
         on_run_success: ['echo \"run-success $COLDKEEP_STATUS $COLDKEEP_FAILED\" >> {log}']\n  \
         on_run_failure: ['echo \"run-failure $COLDKEEP_STATUS $COLDKEEP_FAILED $COLDKEEP_ERROR\" >> {log}']\n",
        metrics = metrics.display(),
        log = log.display()
    );
    fleet.write_config_with(
        &top,
        &fleet.node_yaml(
            "n1",
            fleet.node("n1").port,
            &path,
            "        password: {env: N1_P12_PASSWORD}\n",
        ),
    );
    let gauge = "coldkeep_backup_identity_unchecked{node=\"n1\",keystore=\"p12\"}";
    let take_log = || {
        let text = fs::read_to_string(&log).unwrap_or_default();
        let _ = fs::remove_file(&log);
        text
    };

    // Checked: stored, every reader clear, the success hooks.
    let good = [("N1_P12_PASSWORD", "current-password")];
    let out = fleet.run_with_env(&["backup", "--json"], &good);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = report["outcomes"][0]["id"].as_str().unwrap().to_string();
    assert!(report["outcomes"][0]["identity_unchecked"].is_null(), "{report}");
    assert_eq!(fleet.run(&["status"]).status.code(), Some(0));
    assert!(
        fs::read_to_string(&metrics)
            .unwrap()
            .contains(&format!("{gauge} 0"))
    );
    let hooks = take_log();
    assert!(hooks.contains(&format!("success success p12 {id}")), "{hooks}");
    assert!(hooks.contains("run-success success 0"), "{hooks}");

    // The env var gone, the P12 the same: the checked artifact is reused, and the failed check
    // is what every reader reports.
    let out = fleet.run(&["backup", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let o = &report["outcomes"][0];
    assert_eq!(o["unchanged"], true, "{o}");
    assert_eq!(o["id"], id.as_str(), "the checked artifact is reused: {o}");
    assert!(
        o["identity_unchecked"]
            .as_str()
            .unwrap()
            .contains("could not be read"),
        "{o}"
    );
    assert_eq!(age_files(&fleet.store()).len(), 1);
    let out = fleet.run(&["status"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("the last backup was taken without its identity checked")
            && stdout.contains("could not be read"),
        "{stdout}"
    );
    let (code, statuses) = fleet.run_json(&["status", "--json"]);
    assert_eq!(code, 1);
    assert_eq!(statuses[0]["ok"], false, "{statuses}");
    let prom = fs::read_to_string(&metrics).unwrap();
    assert!(prom.contains(&format!("{gauge} 1")), "{prom}");
    let hooks = take_log();
    assert!(
        hooks.contains(&format!(
            "failure failure p12 {id} backed up ({id}) but its identity was not checked"
        )),
        "on_failure with the reused artifact: {hooks}"
    );
    assert!(!hooks.contains("success success"), "{hooks}");
    assert!(
        hooks.contains("run-failure failure 1 n1/p12: backed up"),
        "on_run_failure counts it: {hooks}"
    );

    // The password back: the checked artifact is reused again, and every reader is clear.
    let out = fleet.run_with_env(&["backup", "--json"], &good);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(age_files(&fleet.store()).len(), 1);
    assert_eq!(fleet.run(&["status"]).status.code(), Some(0));
    assert!(
        fs::read_to_string(&metrics)
            .unwrap()
            .contains(&format!("{gauge} 0"))
    );
    let hooks = take_log();
    assert!(hooks.contains("run-success success 0"), "{hooks}");
}

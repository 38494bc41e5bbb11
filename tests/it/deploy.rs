//! The deployment files: systemd units pass `systemd-analyze verify` and are hardened; the
//! Kubernetes manifests have the structure sharding relies on; the Dockerfile runs as non-root.

use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::Command;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
const UNITS: [&str; 3] = [
    "coldkeep.service",
    "coldkeep-backup.service",
    "coldkeep-backup.timer",
];

fn read(rel: &str) -> String {
    fs::read_to_string(Path::new(DEPLOY).join(rel)).unwrap()
}

#[test]
fn systemd_units_verify_cleanly() {
    // systemd-analyze checks that ExecStart exists: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    for unit in UNITS {
        let text = read(&format!("systemd/{unit}"))
            .replace("=coldkeep ", &format!("={} ", env!("CARGO_BIN_EXE_coldkeep")));
        fs::write(dir.path().join(unit), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(UNITS.iter().map(|u| format!("./{u}")))
        .current_dir(dir.path())
        .output()
        .expect("systemd-analyze (package systemd; .ci/run installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Warnings (unknown keys, bad values) do not fail the command: any output is a failure here.
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned:\n{stderr}"
    );
}

#[test]
fn systemd_services_are_hardened_and_the_timer_catches_up() {
    for unit in ["coldkeep.service", "coldkeep-backup.service"] {
        let text = read(&format!("systemd/{unit}"));
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for want in [
            "ProtectSystem=strict",
            "ReadWritePaths=/var/lib/coldkeep",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "UMask=0077",
            "LimitCORE=0",
            "CapabilityBoundingSet=",
            "User=coldkeep",
            "EnvironmentFile=-/etc/coldkeep/secrets.env",
        ] {
            assert!(lines.contains(&want), "{unit} lacks {want}");
        }
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("ExecStart=") && l.contains("--config /etc/coldkeep/coldkeep.yaml")),
            "{unit}: config in /etc/coldkeep"
        );
    }
    assert!(read("systemd/coldkeep.service").contains(" daemon"));
    let timer = read("systemd/coldkeep-backup.timer");
    assert!(timer.contains("Persistent=true") && timer.contains("RandomizedDelaySec="));
}

#[test]
fn kubernetes_cronjob_is_an_indexed_sharded_job() {
    let docs: Vec<Value> = serde_saphyr::from_multiple(&read("kubernetes/cronjob.yaml")).unwrap();
    let cron = docs.iter().find(|d| d["kind"] == "CronJob").expect("a CronJob");
    assert_eq!(cron["apiVersion"], "batch/v1");
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    let job = &cron["spec"]["jobTemplate"]["spec"];
    assert_eq!(job["completionMode"], "Indexed");
    let n = job["completions"].as_u64().unwrap();
    assert_eq!(job["parallelism"].as_u64(), Some(n));
    let pod = &job["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let shard = args.iter().position(|a| *a == "--shard").expect("--shard");
    assert_eq!(
        args[shard + 1],
        format!("$(JOB_COMPLETION_INDEX)/{n}"),
        "every index, N = completions"
    );
    assert!(args.contains(&"backup"));
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);

    // Config and SSH key from Secrets; the store on a persistent volume claim that exists.
    let volumes = pod["volumes"].as_array().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap().clone();
    let mounts = container["volumeMounts"].as_array().unwrap();
    for m in mounts {
        let v = volume(m["name"].as_str().unwrap());
        assert!(v.is_object(), "mount {m} has a volume");
    }
    assert!(volume("config")["secret"]["secretName"].is_string());
    assert!(volume("ssh")["secret"]["secretName"].is_string());
    let claim = volume("store")["persistentVolumeClaim"]["claimName"]
        .as_str()
        .unwrap()
        .to_string();
    let pvc = docs
        .iter()
        .find(|d| d["kind"] == "PersistentVolumeClaim" && d["metadata"]["name"] == claim.as_str())
        .expect("the store's claim is defined");
    assert!(
        pvc["spec"]["accessModes"].to_string().contains("ReadWriteMany"),
        "all shards write one store"
    );
}

#[test]
fn dockerfile_is_multi_stage_and_runs_as_non_root() {
    let text = read("Dockerfile");
    let froms = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "multi-stage");
    let last_stage = &text[text.rfind("\nFROM ").unwrap()..];
    let user = last_stage
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the final stage sets USER");
    assert!(!user.starts_with('0') && !user.starts_with("root"), "{user}");
    assert!(last_stage.contains("COPY --from=build"));
    assert!(last_stage.contains("ENTRYPOINT [\"/usr/local/bin/coldkeep\"]"));
}

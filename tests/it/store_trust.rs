//! Store trust, third round (issue 25), through the real binary and stock tools, each attack made
//! the way someone who can write a store (or one replica) would: file copies, hand edits, stock
//! `age` to the public recipients.

use crate::support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::acra::write_tree;
use support::fleet::{Fleet, age_files, run_code_and_text, text};

fn id_of(age: &Path) -> String {
    age.file_stem().unwrap().to_string_lossy().into_owned()
}

/// A new age identity made by `age-keygen` at `path`; its public key.
fn age_keygen(path: &Path) -> String {
    let out = Command::new("age-keygen").arg("-o").arg(path).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stderr)
        .trim()
        .strip_prefix("Public key: ")
        .unwrap()
        .to_string()
}

/// An Acra v2 keystore (sealed by the reference Themis) on node `gw`, its master key kept in a
/// master-key store of its own. The first backup runs before `master_key` is configured, so the
/// master-key artifact is the newer of the two.
struct AcraFleet {
    fleet: Fleet,
    master_store: PathBuf,
}

impl AcraFleet {
    fn new(top: &str) -> AcraFleet {
        let v2 = support::themis::v2_keystore(&["Alice"], &[]);
        let fleet = Fleet::new(&["gw"]);
        let keys = fleet.node("gw").root.join("opt/acra/.acrakeys");
        write_tree(&keys, &v2.files);
        let master_store = fleet.dir.join("master-keys");
        let master_recipient = age_keygen(&fleet.dir.join("master-identity.txt"));
        let secret = fleet.secret_file("acra-master", &v2.master_key);
        let node = |extra: &str| {
            format!(
                "  - name: gw\n    host: 127.0.0.1\n    port: {}\n    keystores:\n      - name: acra\n        kind: acra\n        \
                 path: {}\n{extra}",
                fleet.node("gw").port,
                keys.display()
            )
        };
        fleet.write_config_with(top, &node(""));
        let (code, out) = run_code_and_text(&fleet, &["backup"]);
        assert_eq!(code, 0, "{out}");
        fleet.write_config_with(
            top,
            &node(&format!("        master_key: {{file: {}}}\n", secret.display())),
        );
        let config = fs::read_to_string(&fleet.config)
            .unwrap()
            .replacen(
                "  replicas:",
                &format!("  master_key_store: {}\n  replicas:", master_store.display()),
                1,
            )
            .replacen(
                "ssh:\n",
                &format!("  master_key_recipients: [{master_recipient}]\nssh:\n"),
                1,
            );
        fs::write(&fleet.config, config).unwrap();
        let (code, out) = run_code_and_text(&fleet, &["backup"]);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("ok (unchanged)"),
            "the keystore is stored once: {out}"
        );
        AcraFleet { fleet, master_store }
    }
}

/// Issue 25, reproduction 1: a genuine master-key artifact (same node and keystore names, same
/// signing key) copied into one replica's keystore directory was listed as the keystore's latest
/// backup, `prune` with `keep_last: 1` deleted the real and only Acra backup from every root, and
/// the next backup "repaired" the plant into the primary.
#[test]
fn a_master_key_artifact_copied_into_the_keystore_store_is_never_listed_kept_repaired_or_restored() {
    let s = AcraFleet::new("retention:\n  keep_last: 1\n");
    let f = &s.fleet;
    let real = age_files(&f.store());
    assert_eq!(real.len(), 1);
    let real = id_of(&real[0]);
    let master = age_files(&s.master_store);
    assert_eq!(master.len(), 1);
    let planted = id_of(&master[0]);
    // The attacker can write the replica only: `cp` of the three files.
    let into = f.replica().join("gw/acra");
    for ext in [".age", ".json", ".json.sig"] {
        let name = format!("{planted}{ext}");
        fs::copy(master[0].parent().unwrap().join(&name), into.join(&name)).unwrap();
    }

    let (code, list) = f.run_json(&["list", "--json", "--node", "gw"]);
    assert_eq!(code, 0, "{list}");
    let mut listed: Vec<(&str, &str, &str)> = list["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let field = |k: &str| a[k].as_str().unwrap();
            (field("id"), field("kind"), field("keystore"))
        })
        .collect();
    listed.sort();
    let mut want = [
        (real.as_str(), "acra", "acra"),
        (planted.as_str(), "acra-master-key", "acra"),
    ];
    want.sort();
    assert_eq!(
        listed, want,
        "the keystore's backup, and the master key from its own store only: {list}"
    );
    let problems = list["problems"].to_string();
    assert!(
        problems.contains(&format!("replica/gw/acra/{planted}.json"))
            && problems.contains("master-key-backup"),
        "{list}"
    );
    // verify fails on it (a store problem), naming it.
    let (code, out) = run_code_and_text(f, &["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("{planted}.json")), "{out}");

    // Retention keeps the one real backup; the plant is neither counted nor removed.
    let (code, out) = run_code_and_text(f, &["prune"]);
    assert_eq!(code, 0, "{out}");
    for root in [f.store(), f.replica()] {
        assert!(root.join(format!("gw/acra/{real}.age")).is_file(), "{out}");
    }
    assert!(
        into.join(format!("{planted}.age")).is_file(),
        "left for a human: {out}"
    );

    // The next backup copies nothing into the primary.
    let (code, out) = run_code_and_text(f, &["backup"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        !f.store().join(format!("gw/acra/{planted}.age")).exists(),
        "{out}"
    );

    // Restore of latest picks the real backup (its sealed keys open with the master key).
    let identity = f.age_identity.to_str().unwrap();
    let (code, out) = run_code_and_text(
        f,
        &[
            "restore",
            "--node",
            "gw",
            "--identity",
            identity,
            "--dry-run",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&real) && !out.contains(&planted), "{out}");
}

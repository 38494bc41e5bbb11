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

/// The six words the attacker tries.
const DICTIONARY: [&str; 6] = [
    "hunter2",
    "letmein",
    "dragon",
    "Tr0ub4dor&3",
    "s3cr3t-p12-pass",
    "monkey",
];

/// Every guess the attacker would hash: each word, with and without a trailing newline.
fn guesses() -> Vec<(String, String)> {
    DICTIONARY
        .iter()
        .flat_map(|w| [w.to_string(), format!("{w}\n")])
        .map(|g| (coldkeep::digest::sha256_hex(g.as_bytes()), g))
        .collect()
}

/// The guesses whose SHA-256 (or its first 12 hex digits, as tables show it) appears in `text`.
fn confirmed(text: &str) -> Vec<String> {
    guesses()
        .into_iter()
        .filter(|(h, _)| text.contains(&h[..12]))
        .map(|(_, g)| g)
        .collect()
}

/// What an older coldkeep wrote (before keyed hashes), made with stock tools: `tar`, `age` to the
/// recipient, `ssh-keygen -Y sign` with the agent's key, into every root. Returns its id.
fn legacy_artifact(
    f: &Fleet,
    node: &str,
    keystore: &str,
    remote: &str,
    content: &[u8],
    age_days: i64,
) -> String {
    let name = remote.rsplit('/').next().unwrap();
    let sha = coldkeep::digest::sha256_hex(content);
    let created = chrono::Utc::now() - chrono::Duration::days(age_days);
    let manifest = serde_json::json!({
        "format": 1, "node": node, "keystore": keystore, "kind": "file", "purpose": "backup",
        "created_at": created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "coldkeep_version": "0.1.0", "host": "127.0.0.1:22", "host_key": "SHA256:old",
        "files": [{"path": name, "remote_path": remote, "size": content.len(), "mode": 0o600, "sha256": sha}],
        "identity": {"kind": "file", "size": content.len(), "sha256": sha},
        "recipients": [f.recipient],
    });
    let work = f.dir.join(format!("legacy-{keystore}"));
    fs::create_dir_all(&work).unwrap();
    fs::write(
        work.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    fs::write(work.join(name), content).unwrap();
    let tar = work.join("bundle.tar");
    let ok = Command::new("tar")
        .args(["--format=ustar", "--no-recursion", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(&work)
        .args(["manifest.json", name])
        .status()
        .unwrap();
    assert!(ok.success());
    let age = work.join("bundle.age");
    let ok = Command::new("age")
        .args(["-r", &f.recipient, "-o"])
        .arg(&age)
        .arg(&tar)
        .status()
        .unwrap();
    assert!(ok.success());
    let ciphertext = fs::read(&age).unwrap();
    let ct_sha = coldkeep::digest::sha256_hex(&ciphertext);
    let mut sidecar = manifest;
    sidecar["ciphertext_sha256"] = ct_sha.clone().into();
    sidecar["ciphertext_size"] = ciphertext.len().into();
    let id = format!("{}-{}", created.format("%Y%m%dT%H%M%SZ"), &ct_sha[..8]);
    let json = work.join(format!("{id}.json"));
    fs::write(&json, serde_json::to_vec_pretty(&sidecar).unwrap()).unwrap();
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", coldkeep::sign::NAMESPACE, "-f"])
        .arg(&f.signing_key)
        .arg(&json)
        .status()
        .unwrap();
    assert!(ok.success());
    for root in [f.store(), f.replica()] {
        let dir = root.join(node).join(keystore);
        fs::create_dir_all(&dir).unwrap();
        fs::copy(&age, dir.join(format!("{id}.age"))).unwrap();
        fs::copy(&json, dir.join(format!("{id}.json"))).unwrap();
        fs::copy(
            work.join(format!("{id}.json.sig")),
            dir.join(format!("{id}.json.sig")),
        )
        .unwrap();
    }
    fs::remove_dir_all(&work).unwrap();
    id
}

/// Issue 25, reproduction 3: every sidecar carried an unsalted SHA-256 of each file, and `list`,
/// `backup` and `verify` printed a prefix of it for `kind: file` keystores, so a passphrase
/// file's content was recovered from its sidecar with a six-word dictionary. Sidecars and output
/// now carry a keyed hash (the agent's key), which still says "unchanged"; older sidecars stay
/// readable and verifiable, and the next backup writes one the new way.
#[test]
fn sidecars_and_output_are_no_guessing_oracle_for_a_passphrase_file() {
    let f = Fleet::new(&["v1"]);
    let secret = b"s3cr3t-p12-pass\n";
    let remote = f.put("v1", "etc/p12-passphrase", secret, 0o600);
    let old = b"hunter2\n";
    f.write_config(&format!(
        "  - name: v1\n    host: 127.0.0.1\n    port: {}\n    keystores:\n      - name: pass\n        kind: file\n        path: {remote}\n",
        f.node("v1").port
    ));
    // A backup an older coldkeep made, of the previous passphrase.
    let legacy = legacy_artifact(&f, "v1", "pass", &remote, old, 2);
    let mut shown = String::new();
    let mut run = |args: &[&str]| {
        let (code, out) = run_code_and_text(&f, args);
        shown.push_str(&out);
        (code, out)
    };
    let (code, out) = run(&["backup"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("unchanged"),
        "a sidecar with plain hashes is never reused: {out}"
    );
    let (code, out) = run(&["backup", "--json"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("\"unchanged\": true"),
        "the keyed hash says unchanged: {out}"
    );
    let (code, out) = run(&["list"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("keyed hash") && out.contains(&legacy), "{out}");
    run(&["list", "--json"]);
    let identity = f.age_identity.to_str().unwrap();
    let (code, out) = run(&["verify", "--identity", identity]);
    assert_eq!(code, 0, "the older artifact verifies too: {out}");
    assert!(out.contains("2 of 2 artifacts verified"), "{out}");
    run(&["verify", "--json", "--identity", identity]);
    run(&["verify", "--live", "--node", "v1"]);
    run(&["status"]);

    // The attacker reads every sidecar the agent wrote, and everything it printed.
    let mut sidecars = String::new();
    for root in [f.store(), f.replica()] {
        for e in walkdir::WalkDir::new(&root).into_iter().filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            // (The index caches copy the sidecars they cache, the older one's too.)
            if name.ends_with(".json") && !name.starts_with('.') && !name.contains(&legacy) {
                sidecars.push_str(&fs::read_to_string(e.path()).unwrap());
            }
        }
    }
    assert!(sidecars.contains("\"hmac\""), "{sidecars}");
    assert_eq!(confirmed(&sidecars), Vec::<String>::new(), "{sidecars}");
    // The older sidecar still holds its plain hash (it is signed as it is), but nothing prints it.
    assert_eq!(confirmed(&shown), Vec::<String>::new(), "{shown}");
    let legacy_sidecar = fs::read_to_string(f.store().join(format!("v1/pass/{legacy}.json"))).unwrap();
    assert_eq!(
        confirmed(&legacy_sidecar),
        ["hunter2\n"],
        "the test's own check works"
    );
}

//! Store trust, third round (issue 25), through the real binary and stock tools, each attack made
//! the way someone who can write a store (or one replica) would: file copies, hand edits, stock
//! `age` to the public recipients.

use crate::support;

use serde_json::Value;
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

/// An artifact made with stock tools only: `manifest.json` and `files` in a `tar`, `age -r` to
/// the fleet's (public) recipient, the sidecar (the manifest plus the ciphertext's hash and size)
/// under the id coldkeep would give it, signed with `ssh-keygen -Y sign` when `sign_with` is a
/// key, copied into each of `roots`. Returns the id.
fn stock_artifact(
    f: &Fleet,
    manifest: &Value,
    files: &[(&str, &[u8])],
    sign_with: Option<&Path>,
    roots: &[PathBuf],
) -> String {
    let work = f.dir.join("stock-artifact");
    fs::create_dir_all(&work).unwrap();
    fs::write(
        work.join("manifest.json"),
        serde_json::to_vec_pretty(manifest).unwrap(),
    )
    .unwrap();
    for (name, content) in files {
        fs::write(work.join(name), content).unwrap();
    }
    let tar = work.join("bundle.tar");
    let ok = Command::new("tar")
        .args(["--format=ustar", "--no-recursion", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(&work)
        .arg("manifest.json")
        .args(files.iter().map(|(n, _)| n))
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
    assert!(ok.success(), "stock age encrypts to the public recipient");
    let ciphertext = fs::read(&age).unwrap();
    let ct_sha = coldkeep::digest::sha256_hex(&ciphertext);
    let mut sidecar = manifest.clone();
    sidecar["ciphertext_sha256"] = ct_sha.clone().into();
    sidecar["ciphertext_size"] = ciphertext.len().into();
    let created: chrono::DateTime<chrono::Utc> = manifest["created_at"].as_str().unwrap().parse().unwrap();
    let id = format!("{}-{}", created.format("%Y%m%dT%H%M%SZ"), &ct_sha[..8]);
    let json = work.join(format!("{id}.json"));
    fs::write(&json, serde_json::to_vec_pretty(&sidecar).unwrap()).unwrap();
    if let Some(key) = sign_with {
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-Y", "sign", "-n", coldkeep::sign::NAMESPACE, "-f"])
            .arg(key)
            .arg(&json)
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let (node, keystore) = (
        manifest["node"].as_str().unwrap(),
        manifest["keystore"].as_str().unwrap(),
    );
    for root in roots {
        let dir = root.join(node).join(keystore);
        fs::create_dir_all(&dir).unwrap();
        for ext in [".age", ".json", ".json.sig"] {
            let from = if ext == ".age" {
                age.clone()
            } else {
                work.join(format!("{id}{ext}"))
            };
            if from.exists() {
                fs::copy(&from, dir.join(format!("{id}{ext}"))).unwrap();
            }
        }
    }
    fs::remove_dir_all(&work).unwrap();
    id
}

/// What an older coldkeep wrote (before keyed hashes) for a `kind: file` keystore: made with
/// stock tools and signed with the agent's key, into the store and the replica.
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
    stock_artifact(
        f,
        &manifest,
        &[(name, content)],
        Some(&f.signing_key),
        &[f.store(), f.replica()],
    )
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

/// An attacker's P12 artifact for `v1/p12`: the genuine sidecar's fields (as a sidecar from
/// before keyed hashes, which the attacker cannot compute), their own P12, made at `created`,
/// signed with `sign_with` (a stolen key) or unsigned, into `roots`. Returns the id.
fn plant_p12(
    f: &Fleet,
    genuine: &Value,
    p12: &[u8],
    created: chrono::DateTime<chrono::Utc>,
    sign_with: Option<&Path>,
    roots: &[PathBuf],
) -> String {
    let mut m = genuine.clone();
    for field in [
        "ciphertext_sha256",
        "ciphertext_size",
        "seen_unchanged_at",
        "hash_key",
    ] {
        m.as_object_mut().unwrap().remove(field);
    }
    m["created_at"] = created
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        .into();
    let file = &mut m["files"][0];
    file.as_object_mut().unwrap().remove("hmac");
    file["sha256"] = coldkeep::digest::sha256_hex(p12).into();
    file["size"] = p12.len().into();
    let name = file["path"].as_str().unwrap().to_string();
    stock_artifact(f, &m, &[(&name, p12)], sign_with, roots)
}

/// `restore --dry-run --json` of node `node`'s latest backup: exit code and output.
fn restore_plan(f: &Fleet, node: &str) -> (i32, String) {
    let identity = f.age_identity.to_str().unwrap();
    run_code_and_text(
        f,
        &[
            "restore",
            "--node",
            node,
            "--identity",
            identity,
            "--dry-run",
            "--json",
        ],
    )
}

/// Issue 25, reproduction 2: `verify --identity --sign-unsigned` signed a forgery. The recipients
/// are public, so a store writer planted an unsigned P12 of their own encrypted to them; it
/// decrypted and its hashes matched, adoption signed it, it became the newest backup and
/// restore wrote the attacker's bytes onto the node. Adoption now takes only what predates a
/// cut-off (never what was made after signing began), shows it, and asks.
#[test]
fn adoption_never_signs_an_artifact_made_after_signing_began_and_asks_before_signing() {
    let f = support::fleet::p12_fleet(&["v1"], "");
    let (code, out) = run_code_and_text(&f, &["backup"]);
    assert_eq!(code, 0, "{out}");
    let genuine_json = files_named(&f.replica(), ".json")[0].clone();
    let genuine_id = genuine_json.file_stem().unwrap().to_string_lossy().into_owned();
    let genuine: Value = serde_json::from_slice(&fs::read(&genuine_json).unwrap()).unwrap();
    let evil = support::fleet::legacy_p12("attacker");
    let made: chrono::DateTime<chrono::Utc> = genuine["created_at"].as_str().unwrap().parse().unwrap();
    // Just after the genuine backup (the newest signed artifact), and three days before it.
    let replica = [f.replica()];
    let newer = plant_p12(
        &f,
        &genuine,
        &evil,
        made + chrono::Duration::milliseconds(1),
        None,
        &replica,
    );
    let older = plant_p12(
        &f,
        &genuine,
        &evil,
        made - chrono::Duration::days(3),
        None,
        &replica,
    );
    let now = chrono::Utc::now();
    let identity = f.age_identity.to_str().unwrap();
    // Deep verification alone cannot tell them from genuine backups.
    let (code, out) = run_code_and_text(&f, &["verify", "--identity", identity]);
    assert_eq!(code, 1, "{out}");
    for plant in [&newer, &older] {
        let line = out.lines().find(|l| l.contains(plant.as_str())).unwrap();
        assert!(
            line.contains("unsigned") && !line.contains("differs") && !line.contains("does not match"),
            "{out}"
        );
    }

    // A cut-off is required.
    let (code, out) = run_code_and_text(&f, &["verify", "--identity", identity, "--sign-unsigned"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--before"), "{out}");

    // Even with a cut-off past everything and --yes, the newer plant (made after the newest
    // signed artifact) is refused; the older one is proposed with its dates and identity.
    let adopt = |cutoff: chrono::DateTime<chrono::Utc>| {
        let cutoff = cutoff.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        ["verify", "--identity", identity, "--sign-unsigned", "--before"]
            .iter()
            .map(|a| a.to_string())
            .chain([cutoff])
            .collect::<Vec<String>>()
    };
    let args = adopt(now + chrono::Duration::seconds(60));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = run_code_and_text(&f, &args);
    assert_eq!(code, 2, "a cut-off in the future is refused: {out}");
    let args = adopt(now);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = run_code_and_text(&f, &args);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("not signed: v1/p12/{newer}")) && out.contains("newest signed artifact"),
        "{out}"
    );
    assert!(
        out.contains(&older) && out.contains("ON DISK SINCE") && out.contains("unopened"),
        "{out}"
    );
    assert!(out.contains("Nothing signed"), "no terminal, no --yes: {out}");
    let sigs = files_named(&f.replica(), ".json.sig");
    assert_eq!(sigs.len(), 1, "only the genuine artifact is signed: {sigs:?}");

    // With --yes the older one is signed (the operator looked at it); the newer one never.
    let mut with_yes = args.to_vec();
    with_yes.push("--yes");
    let (code, out) = run_code_and_text(&f, &with_yes);
    assert_eq!(code, 1, "the newer plant still fails verification: {out}");
    assert!(
        f.replica().join(format!("v1/p12/{older}.json.sig")).is_file(),
        "{out}"
    );
    assert!(
        !f.replica().join(format!("v1/p12/{newer}.json.sig")).exists(),
        "{out}"
    );
    // The newest trusted backup is still the genuine one: restore pushes nothing of theirs.
    let (code, out) = restore_plan(&f, "v1");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&genuine_id) && !out.contains(&newer), "{out}");
}

/// Every file under `dir` whose name ends with `suffix`, sorted.
fn files_named(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        // Artifacts only: not the index caches (dot files), nor the run state (`.coldkeep/`).
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(suffix) && !name.starts_with('.') && !p.to_string_lossy().contains("/.coldkeep/")
        })
        .collect();
    v.sort();
    v
}

/// Issue 25, reproduction 4: `state.json` was unauthenticated, so someone who can write the store
/// turned `status` from PROBLEM to OK while backups were failing.
#[test]
fn an_edited_run_state_never_turns_status_ok() {
    let f = support::fleet::p12_fleet(&["v1"], "");
    let (code, out) = run_code_and_text(&f, &["backup"]);
    assert_eq!(code, 0, "{out}");
    // The node's key goes missing: every backup fails from now on.
    fs::remove_file(f.node("v1").root.join("keys/v1.p12")).unwrap();
    let (code, out) = run_code_and_text(&f, &["backup"]);
    assert_eq!(code, 1, "{out}");
    let (code, out) = run_code_and_text(&f, &["status"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("last attempt failed"), "{out}");

    // The attacker rewrites the failure away: in place (MAC line kept), and as plain JSON.
    let path = f.store().join(".coldkeep/state.json");
    let text = fs::read_to_string(&path).unwrap();
    let (header, body) = match text.split_once('\n') {
        Some((h, b)) if h.starts_with("coldkeep-state") => (format!("{h}\n"), b.to_string()),
        _ => (String::new(), text.clone()),
    };
    let mut state: Value = serde_json::from_str(&body).unwrap();
    let entry = state["keystores"]["v1/p12"].as_object_mut().unwrap();
    entry.remove("last_failure");
    entry.remove("last_error");
    let forged = serde_json::to_string_pretty(&state).unwrap();
    for written in [format!("{header}{forged}\n"), format!("{forged}\n")] {
        fs::write(&path, written).unwrap();
        let (code, out) = run_code_and_text(&f, &["status"]);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("does not authenticate") && !out.contains("OK: all"),
            "{out}"
        );
        let (code, json) = f.run_json(&["status", "--json"]);
        assert_eq!(code, 1);
        assert_eq!(json[0]["ok"], false, "{json}");
    }
    // The next run writes an authenticated state again, with the truth in it.
    let (code, out) = run_code_and_text(&f, &["backup"]);
    assert_eq!(code, 1, "{out}");
    let (code, out) = run_code_and_text(&f, &["status"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("last attempt failed") && !out.contains("authenticate"),
        "{out}"
    );
}

/// Issue 25, reproduction 5: `init` run as root followed a symlink planted at `--store` by the
/// owner of the directory it sits in: it chmodded the link's target 0700 and gave the new
/// signing key to the link's owner.
#[test]
fn init_as_root_never_follows_a_symlink_planted_at_the_store_path() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
        println!("SKIPPED: needs root (init as root for a service user's store)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // /var/lib/coldkeep, owned by the service user (here uid 4242), who plants the link.
    let state = dir.join("var-lib-coldkeep");
    fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(4242), Some(4242)).unwrap();
    let victim = dir.join("victim");
    fs::create_dir(&victim).unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o755)).unwrap();
    let store = state.join("store");
    std::os::unix::fs::symlink(&victim, &store).unwrap();
    std::os::unix::fs::lchown(&store, Some(4242), Some(4242)).unwrap();
    let recipient = age_keygen(&dir.join("id.txt"));
    let config = dir.join("etc/coldkeep.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_coldkeep"))
        .arg("init")
        .arg("--config")
        .arg(&config)
        .arg("--store")
        .arg(&store)
        .args(["--recipient", &recipient])
        .env("HOME", dir)
        .env_remove("COLDKEEP_CONFIG")
        .output()
        .unwrap();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("symbolic link"), "{said}");
    let meta = fs::metadata(&victim).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o755,
        "the link's target was chmodded"
    );
    assert_eq!(meta.uid(), 0);
    assert!(
        !dir.join("etc/signing_key").exists(),
        "no signing key was made, so none handed over"
    );
    assert!(!config.exists());
}

/// Does stock `ssh-keygen -Y verify` accept `sidecar`'s signature, at the time the sidecar says
/// the artifact was made (`-Overify-time`, whole seconds)?
fn ssh_keygen_accepts(allowed: &Path, sidecar: &Path) -> bool {
    let json: Value = serde_json::from_slice(&fs::read(sidecar).unwrap()).unwrap();
    let made: chrono::DateTime<chrono::Utc> = json["created_at"].as_str().unwrap().parse().unwrap();
    let sig = PathBuf::from(format!("{}.sig", sidecar.display()));
    Command::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(allowed)
        .args(["-I", "coldkeep", "-n", coldkeep::sign::NAMESPACE, "-s"])
        .arg(&sig)
        .arg(format!("-Overify-time={}", made.format("%Y%m%d%H%M%SZ")))
        .stdin(fs::File::open(sidecar).unwrap())
        .output()
        .unwrap()
        .status
        .success()
}

/// Issue 25, reproduction 7: `valid-after`/`valid-before` were refused, so the rotation advice
/// (keep the old key listed) let a stolen old key sign new artifacts forever. They now bound
/// the key by the artifact's signed `created_at`, and stock `ssh-keygen -Y verify
/// -Overify-time=<created_at>` agrees with coldkeep on every artifact, forgeries included.
#[test]
fn a_rotated_out_key_signs_nothing_dated_after_the_rotation_and_ssh_keygen_agrees() {
    let f = support::fleet::p12_fleet(&["v1"], "");
    let (code, out) = run_code_and_text(&f, &["backup"]);
    assert_eq!(code, 0, "{out}");
    let old_key = f.signing_key.clone();
    let old_pub = fs::read_to_string(old_key.with_extension("pub")).unwrap();
    // The README's recipe: a new key; the old one trusted only for what it signed before now.
    let (new_key, _) = support::fleet::signing_key(&f.dir.join("secrets"), "new_signing_key");
    let new_pub = fs::read_to_string(new_key.with_extension("pub")).unwrap();
    let rotation = chrono::Utc::now();
    let until = rotation.format("%Y%m%d%H%M%SZ");
    fs::write(
        &f.allowed_signers,
        format!(
            "coldkeep namespaces=\"{ns}\",valid-before=\"{until}\" {old_pub}coldkeep namespaces=\"{ns}\" {new_pub}",
            ns = coldkeep::sign::NAMESPACE
        ),
    )
    .unwrap();
    let config = fs::read_to_string(&f.config).unwrap().replace(
        &format!("  key: {}\n", old_key.display()),
        &format!("  key: {}\n", new_key.display()),
    );
    fs::write(&f.config, config).unwrap();
    let (code, out) = run_code_and_text(&f, &["backup", "--force"]);
    assert_eq!(code, 0, "{out}");

    // The thief of the old key signs artifacts of their own: one dated after the rotation, one
    // dated a day before it.
    let genuine: Value =
        serde_json::from_slice(&fs::read(&files_named(&f.store(), ".json")[0]).unwrap()).unwrap();
    let evil = support::fleet::legacy_p12("attacker");
    let roots = [f.store(), f.replica()];
    let forged = |made| plant_p12(&f, &genuine, &evil, made, Some(&old_key), &roots);
    let after = forged(rotation + chrono::Duration::seconds(90));
    let before = forged(rotation - chrono::Duration::days(1));

    let (code, list) = f.run_json(&["list", "--json"]);
    assert_eq!(code, 0, "{list}");
    let verdicts: Vec<(String, String)> = list["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().into(),
                a["signature"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(verdicts.len(), 4, "{list}");
    let verdict = |id: &str| verdicts.iter().find(|(i, _)| i == id).unwrap().1.clone();
    assert_eq!(verdict(&after), "bad", "{list}");
    assert!(list.to_string().contains("trusts only until"), "{list}");
    // (The limit, said in the README: a stolen old key can still sign what claims to be older
    // than the rotation; such an artifact is never the newest backup.)
    assert_eq!(verdict(&before), "valid", "{list}");
    // ssh-keygen decides every one the same way, at each artifact's own created_at.
    for root in [f.store(), f.replica()] {
        for sidecar in files_named(&root, ".json") {
            let id = sidecar.file_stem().unwrap().to_string_lossy().into_owned();
            assert_eq!(
                ssh_keygen_accepts(&f.allowed_signers, &sidecar),
                verdict(&id) == "valid",
                "{id}: {list}"
            );
        }
    }
    // The newest trusted backup is the new key's, not the thief's.
    let (code, out) = restore_plan(&f, "v1");
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains(&after) && !out.contains(&before), "{out}");
}

/// Issue 25, reproduction 8: a kill -9 soak left `.ID.age.tmp-*`, `.ID.json.sig.tmp-*` and
/// `.state.json.tmp-*` files that later runs never reclaimed. Here they are left the way a killed
/// writer on this host leaves them (its PID in the name, the process gone), in the store, the
/// replica and the run state's directory: `verify` reports them, the next backup removes them.
#[test]
fn temp_files_of_killed_writers_are_reported_then_removed_by_the_next_backup() {
    let f = support::fleet::p12_fleet(&["v1"], "");
    let (code, out) = run_code_and_text(&f, &["backup"]);
    assert_eq!(code, 0, "{out}");
    let id = files_named(&f.store(), ".json")[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let killed = {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    // This host's owner tag, with the killed process's PID.
    let owner = coldkeep::store::temps::owner();
    let tag = &owner[..owner.find('p').unwrap()];
    let mut left = Vec::new();
    for root in [f.store(), f.replica()] {
        for (n, name) in [
            format!("{id}.age"),
            format!("{id}.json.sig"),
            format!("{id}.json"),
        ]
        .iter()
        .enumerate()
        {
            let path = root
                .join("v1/p12")
                .join(format!(".{name}.tmp-{tag}p{killed}-0000000{n}"));
            fs::write(&path, b"partial").unwrap();
            left.push(path);
        }
    }
    let state = f
        .store()
        .join(format!(".coldkeep/.state.json.tmp-{tag}p{killed}-00000009"));
    fs::write(&state, b"{").unwrap();
    left.push(state);

    let (code, out) = run_code_and_text(&f, &["verify"]);
    assert_eq!(code, 0, "harmless leftovers: {out}");
    assert_eq!(out.matches("writer is gone").count(), 6, "{out}");
    let (code, out) = run_code_and_text(&f, &["backup"]);
    assert_eq!(code, 0, "{out}");
    for p in &left {
        assert!(!p.exists(), "{} left", p.display());
    }
    let (code, out) = run_code_and_text(&f, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("temp file"), "{out}");
}

/// Issue 25, reproduction 9: `list` showed `2/2 ok` for an artifact whose replica sidecar was
/// edited, while `verify` said "bad signature". The copy count now agrees with `verify`.
#[test]
fn list_counts_only_validly_signed_copies_as_verify_does() {
    let f = support::fleet::p12_fleet(&["v1"], "");
    let (code, out) = run_code_and_text(&f, &["backup"]);
    assert_eq!(code, 0, "{out}");
    let edited = files_named(&f.replica(), ".json")[0].clone();
    let text = fs::read_to_string(&edited)
        .unwrap()
        .replace("127.0.0.1", "127.0.0.9");
    fs::write(&edited, text).unwrap();

    let (code, out) = run_code_and_text(&f, &["list"]);
    assert_eq!(code, 0, "{out}");
    let row = out.lines().find(|l| l.starts_with("v1")).unwrap();
    assert!(row.contains(" 1/2 ") && row.contains(" ok "), "{out}");
    assert!(
        out.contains(&format!("{}: bad signature", edited.display())),
        "{out}"
    );
    let (_, list) = f.run_json(&["list", "--json"]);
    let a = &list["artifacts"][0];
    assert_eq!(a["copies"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(
        a["bad_copies"][0]["sidecar"],
        edited.display().to_string(),
        "{list}"
    );
    let (code, checked) = f.run_json(&["verify", "--json"]);
    assert_eq!(code, 1);
    // verify's problems all concern that one copy: one good copy of two, as list says.
    let problems: Vec<&str> = checked["artifacts"][0]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let edited_name = edited.display().to_string();
    assert!(problems.iter().all(|p| p.starts_with(&edited_name)), "{checked}");
    assert!(problems.iter().any(|p| p.contains("bad signature")), "{checked}");
    // The next backup writes the copy again; then both agree on 2 of 2.
    let (code, out) = run_code_and_text(&f, &["backup"]);
    assert_eq!(code, 0, "{out}");
    let (_, list) = f.run_json(&["list", "--json"]);
    assert_eq!(
        list["artifacts"][0]["copies"].as_array().unwrap().len(),
        2,
        "{list}"
    );
    let (code, out) = run_code_and_text(&f, &["verify"]);
    assert_eq!(code, 0, "{out}");
}

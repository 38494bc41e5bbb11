//! Signed artifacts (issue 14) end to end through the real binary, real sshd nodes and stock
//! tools: forgeries planted in a replica the way an attacker with write access to it only would
//! (an edited sidecar; a whole artifact made with the stock `age` CLI and the public recipient)
//! are never trusted, and stock `ssh-keygen -Y verify` checks what coldkeep signs.

use crate::support;

use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::acra::{read_tree, v1_files, write_tree};
use support::fleet::{Fleet, legacy_p12, signing_key, text};

const P12: &str = "home/nodeadmin/tessellation/node.p12";
const PW: &str = "pw-0123456789";

fn run(f: &Fleet, args: &[&str]) -> (i32, String) {
    let out = f.run(args);
    (
        out.status.code().unwrap(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

fn sha256_hex(data: &[u8]) -> String {
    coldkeep::digest::sha256_hex(data)
}

/// Every sidecar (`.json`) under a store root (not the index caches: dot files).
fn sidecars(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p.to_string_lossy().contains("/.coldkeep/")
                && p.file_name()
                    .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .collect();
    v.sort();
    v
}

fn id_of(sidecar: &Path) -> String {
    sidecar.file_stem().unwrap().to_string_lossy().into_owned()
}

/// A one-node fleet with a P12 keystore (password known) and `top` config lines.
fn p12_fleet(top: &str) -> Fleet {
    p12_fleet_in(Fleet::new(&["v1"]), top)
}

fn p12_fleet_in(f: Fleet, top: &str) -> Fleet {
    let remote = f.put("v1", P12, &legacy_p12(PW), 0o600);
    let pw = f.secret_file("pw", PW);
    let extra = format!("        password: {{file: {}}}\n", pw.display());
    f.write_config_with(top, &f.node_yaml("v1", f.node("v1").port, &remote, &extra));
    f
}

/// The attacker's edit: a genuine sidecar with `changes` applied, the ciphertext hash and size of
/// `ciphertext`, written with `ciphertext` into `dir` under the id coldkeep would give it.
fn plant(dir: &Path, genuine: &Value, ciphertext: &[u8], change: impl Fn(&mut Value)) -> String {
    let mut forged = genuine.clone();
    change(&mut forged);
    let sha = sha256_hex(ciphertext);
    forged["ciphertext_sha256"] = Value::from(sha.clone());
    forged["ciphertext_size"] = Value::from(ciphertext.len());
    let created: chrono::DateTime<chrono::Utc> = forged["created_at"].as_str().unwrap().parse().unwrap();
    let id = format!("{}-{}", created.format("%Y%m%dT%H%M%SZ"), &sha[..8]);
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(format!("{id}.age")), ciphertext).unwrap();
    fs::write(
        dir.join(format!("{id}.json")),
        serde_json::to_vec_pretty(&forged).unwrap(),
    )
    .unwrap();
    id
}

#[test]
fn future_dated_forgery_in_a_replica_is_never_reused_repaired_kept_or_restored() {
    let f = Fleet::new(&["v1"]);
    let metrics = f.dir.join("coldkeep.prom");
    let f = p12_fleet_in(
        f,
        &format!(
            "retention:\n  keep_last: 1\nmetrics_file: {}\n",
            metrics.display()
        ),
    );
    let (code, out) = run(&f, &["backup"]);
    assert_eq!(code, 0, "{out}");
    let first = id_of(&sidecars(&f.store())[0]);

    // The node's key changes; the attacker, who can write the replica only, plants a sidecar
    // for the new file (the real hashes), dated a day ahead, with garbage ciphertext.
    let new_p12 = legacy_p12(PW);
    f.put("v1", P12, &new_p12, 0o600);
    let genuine: Value = serde_json::from_slice(&fs::read(&sidecars(&f.replica())[0]).unwrap()).unwrap();
    let forged_dir = f.replica().join("v1/p12");
    let forged = plant(&forged_dir, &genuine, b"garbage, not age", |s| {
        let future = chrono::Utc::now() + chrono::Duration::days(1);
        s["created_at"] = Value::from(future.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        s["files"][0]["sha256"] = Value::from(sha256_hex(&new_p12));
        s["files"][0]["size"] = Value::from(new_p12.len());
    });

    // The next backup stores a new genuine artifact (the forgery says "unchanged") and copies
    // nothing from the forgery into the primary.
    let (code, report) = f.run_json(&["backup", "--json"]);
    assert_eq!(code, 0, "{report}");
    let outcome = &report["outcomes"][0];
    assert!(outcome["unchanged"].is_null(), "{report}");
    let second = outcome["id"].as_str().unwrap().to_string();
    assert!(second != first && second != forged, "{report}");
    assert!(
        !f.store().join(format!("v1/p12/{forged}.json")).exists(),
        "no repair from a forgery"
    );
    assert!(!f.store().join(format!("v1/p12/{forged}.age")).exists());
    for root in [f.store(), f.replica()] {
        assert!(root.join(format!("v1/p12/{second}.json.sig")).is_file());
    }

    let prom = fs::read_to_string(&metrics).unwrap();
    assert!(prom.contains("coldkeep_untrusted_artifacts 1"), "{prom}");

    // list and verify name it.
    let (_, list) = f.run_json(&["list", "--json"]);
    let marks: Vec<(String, String)> = list["artifacts"]
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
    assert!(marks.contains(&(forged.clone(), "unsigned".into())), "{marks:?}");
    assert!(marks.contains(&(second.clone(), "valid".into())), "{marks:?}");
    let (code, out) = run(&f, &["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&forged) && out.contains("unsigned"), "{out}");

    // prune (keep_last: 1) keeps the newest genuine backup, leaves the forgery and reports it.
    let (code, pruned) = f.run_json(&["prune", "--json"]);
    assert_eq!(code, 0, "{pruned}");
    let action = |id: &str| {
        pruned
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .map(|r| (r["keep"].as_bool().unwrap(), r["reasons"].to_string()))
            .unwrap()
    };
    // (Both genuine backups may share a second; then the id decides which one is "newest".)
    let genuine_kept: Vec<&String> = [&first, &second].into_iter().filter(|id| action(id).0).collect();
    assert_eq!(genuine_kept.len(), 1, "{pruned}");
    let (kept, why) = action(&forged);
    assert!(kept && why.contains("not counted"), "{pruned}");
    for root in [f.store(), f.replica()] {
        assert!(root.join(format!("v1/p12/{}.age", genuine_kept[0])).is_file());
        assert!(
            root.join(format!("v1/p12/{}.json.sig", genuine_kept[0]))
                .is_file()
        );
    }
    assert!(
        forged_dir.join(format!("{forged}.json")).is_file(),
        "reported, not deleted"
    );

    // restore refuses the forgery by name; the node's file is untouched.
    let identity = f.age_identity.to_str().unwrap();
    let (code, out) = run(
        &f,
        &[
            "restore",
            "--node",
            "v1",
            "--backup",
            &forged,
            "--identity",
            identity,
            "--yes",
        ],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("refused") && out.contains("unsigned"), "{out}");
    assert_eq!(fs::read(f.node("v1").root.join(P12)).unwrap(), new_p12);

    // status raises it.
    let (code, out) = run(&f, &["status"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("without a valid signature"), "{out}");
}

#[test]
fn acra_artifact_made_with_stock_age_and_the_public_recipient_is_refused() {
    let f = Fleet::new(&["gw"]);
    let keys = f.node("gw").root.join("opt/acra/.acrakeys");
    write_tree(&keys, &v1_files("Alice"));
    let yaml = format!(
        "  - name: gw\n    host: 127.0.0.1\n    port: {}\n    keystores:\n      - name: acra\n        kind: acra\n        \
         path: {}\n",
        f.node("gw").port,
        keys.display()
    );
    f.write_config(&yaml);
    let (code, out) = run(&f, &["backup"]);
    assert_eq!(code, 0, "{out}");
    let files = || {
        let mut v = read_tree(&keys).0;
        v.sort();
        v
    };
    let before = files();

    // The attacker's keystore: the same layout with their own key bytes, a manifest copied from
    // the public sidecar (new hashes), a tar, and `age -r <recipient>` from the sidecar.
    let genuine: Value = serde_json::from_slice(&fs::read(&sidecars(&f.replica())[0]).unwrap()).unwrap();
    let work = f.dir.join("attacker");
    let mut manifest = genuine.clone();
    // Keyed hashes need the agent's key: the forgery says it predates them (plain SHA-256s).
    for field in [
        "ciphertext_sha256",
        "ciphertext_size",
        "seen_unchanged_at",
        "hash_key",
    ] {
        manifest.as_object_mut().unwrap().remove(field);
    }
    let when = chrono::Utc::now() + chrono::Duration::seconds(60);
    manifest["created_at"] = Value::from(when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let mut names = Vec::new();
    for file in manifest["files"].as_array_mut().unwrap() {
        let rel = file["path"].as_str().unwrap().to_string();
        let evil = format!("attacker's key material for {rel}").into_bytes();
        let path = work.join(&rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &evil).unwrap();
        fs::set_permissions(
            &path,
            fs::Permissions::from_mode(file["mode"].as_u64().unwrap() as u32),
        )
        .unwrap();
        file.as_object_mut().unwrap().remove("hmac");
        file["sha256"] = Value::from(sha256_hex(&evil));
        file["size"] = Value::from(evil.len());
        names.push(rel);
    }
    fs::write(
        work.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    let tar = f.dir.join("attacker.tar");
    let status = Command::new("tar")
        .arg("--format=ustar")
        .arg("--no-recursion")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&work)
        .arg("manifest.json")
        .args(&names)
        .status()
        .unwrap();
    assert!(status.success());
    let recipient = genuine["recipients"][0].as_str().unwrap();
    let age_out = f.dir.join("attacker.age");
    let status = Command::new("age")
        .args(["-r", recipient, "-o"])
        .arg(&age_out)
        .arg(&tar)
        .status()
        .unwrap();
    assert!(status.success(), "stock age encrypts to the public recipient");
    let ciphertext = fs::read(&age_out).unwrap();
    let forged = plant(&f.replica().join("gw/acra"), &manifest, &ciphertext, |_| {});

    // Apart from its signature the forgery is perfect: deep verification finds nothing else.
    let identity = f.age_identity.to_str().unwrap().to_string();
    let (code, checked) = f.run_json(&["verify", "--identity", &identity, "--json"]);
    assert_eq!(code, 1, "{checked}");
    let entry = checked["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == forged.as_str())
        .unwrap()
        .clone();
    let problems: Vec<String> = entry["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    // (The forgery is only in the replica, so the primary's copy is missing too.)
    let other: Vec<&String> = problems
        .iter()
        .filter(|p| !p.starts_with("copy missing"))
        .collect();
    assert!(other.len() == 1 && other[0].contains("unsigned"), "{problems:?}");

    // check uses the genuine (older) backup, never the newer forgery.
    let (code, checked) = f.run_json(&["check", "--node", "gw", "--identity", &identity, "--json"]);
    assert_eq!(code, 0, "{checked}");
    let used = checked[0]["backup_id"].as_str().unwrap().to_string();
    assert!(used != forged && used < forged, "{checked}");

    // restore of the forgery is refused, and `latest` is the genuine (older) artifact.
    let (code, out) = run(
        &f,
        &[
            "restore",
            "--node",
            "gw",
            "--backup",
            &forged,
            "--identity",
            &identity,
            "--replace",
            "--yes",
        ],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("refused"), "{out}");
    assert_eq!(files(), before, "nothing changed on the node");
    fs::remove_dir_all(&keys).unwrap();
    let (code, out) = run(&f, &["restore", "--node", "gw", "--identity", &identity]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(files(), before, "the genuine keystore came back");
    let (_, out) = run(&f, &["list"]);
    assert!(out.contains(&forged) && out.contains("UNSIGNED"), "{out}");
}

/// `ssh-keygen -Y verify` with the documented arguments on one artifact.
fn ssh_keygen_verify(allowed: &Path, sidecar: &Path, message: &[u8]) -> bool {
    use std::io::Write;
    let mut child = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(allowed)
        .args(["-I", "coldkeep", "-n", coldkeep::sign::NAMESPACE, "-s"])
        .arg(coldkeep::sign::sig_path(sidecar))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(message).unwrap();
    child.wait().unwrap().success()
}

#[test]
fn stock_ssh_keygen_verifies_foreign_keys_are_refused_and_rotation_keeps_old_artifacts() {
    let f = p12_fleet("");
    // config check shows the key by the fingerprint stock ssh-keygen gives it.
    let fp = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&f.signing_key)
        .output()
        .unwrap();
    let fp = text(&fp.stdout).split_whitespace().nth(1).unwrap().to_string();
    let (code, out) = run(&f, &["config", "check"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("({fp})")), "{fp}: {out}");
    let (code, out) = run(&f, &["backup"]);
    assert_eq!(code, 0, "{out}");
    let old = sidecars(&f.store())[0].clone();
    let bytes = fs::read(&old).unwrap();
    assert!(ssh_keygen_verify(&f.allowed_signers, &old, &bytes));
    let edited = String::from_utf8(bytes.clone())
        .unwrap()
        .replace("\"v1\"", "\"v2\"");
    assert!(!ssh_keygen_verify(&f.allowed_signers, &old, edited.as_bytes()));

    // A key that allowed_signers does not list: coldkeep refuses to run with it at all...
    let (intruder, _) = signing_key(&f.dir.join("secrets"), "intruder");
    let config = fs::read_to_string(&f.config).unwrap();
    let with_key = |key: &Path| {
        config.replace(
            &format!("key: {}\n", f.signing_key.display()),
            &format!("key: {}\n", key.display()),
        )
    };
    fs::write(&f.config, with_key(&intruder)).unwrap();
    let (code, out) = run(&f, &["backup"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("does not trust the signing key"), "{out}");
    // ...and what it signed elsewhere (trusted there) is foreign here.
    let other_allowed = f.dir.join("secrets/intruder.allowed");
    fs::write(
        &f.config,
        with_key(&intruder).replace(
            f.allowed_signers.to_str().unwrap(),
            other_allowed.to_str().unwrap(),
        ),
    )
    .unwrap();
    let (code, out) = run(&f, &["backup", "--force"]);
    assert_eq!(code, 0, "{out}");
    fs::write(&f.config, &config).unwrap();
    let (_, list) = f.run_json(&["list", "--json"]);
    let foreign: Vec<&Value> = list["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["signature"] == "foreign")
        .collect();
    assert_eq!(foreign.len(), 1, "{list}");
    let foreign_id = foreign[0]["id"].as_str().unwrap().to_string();
    let identity = f.age_identity.to_str().unwrap();
    let (code, out) = run(
        &f,
        &[
            "restore",
            "--node",
            "v1",
            "--backup",
            &foreign_id,
            "--identity",
            identity,
            "--yes",
        ],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("not in allowed_signers"), "{out}");

    // Rotation: a new key, added to allowed_signers beside the old one.
    let (new_key, new_allowed) = signing_key(&f.dir.join("secrets"), "rotated");
    let mut allowed = fs::read_to_string(&f.allowed_signers).unwrap();
    allowed.push_str(&fs::read_to_string(&new_allowed).unwrap());
    fs::write(&f.allowed_signers, &allowed).unwrap();
    fs::write(&f.config, with_key(&new_key)).unwrap();
    let (code, out) = run(&f, &["backup", "--force"]);
    assert_eq!(code, 0, "{out}");
    let (_, list) = f.run_json(&["list", "--json"]);
    let valid = list["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["signature"] == "valid")
        .count();
    assert_eq!(valid, 2, "old and new artifacts are both valid: {list}");
    assert!(
        ssh_keygen_verify(&f.allowed_signers, &old, &bytes),
        "stock tools agree"
    );

    // A restore over a different file saves it first as a pre-restore artifact: signed too.
    f.put("v1", P12, &legacy_p12(PW), 0o600);
    let (code, out) = run(&f, &["restore", "--node", "v1", "--identity", identity, "--yes"]);
    assert_eq!(code, 0, "{out}");
    let (_, list) = f.run_json(&["list", "--json"]);
    let pre: Vec<&Value> = list["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["purpose"] == "pre-restore")
        .collect();
    assert_eq!(pre.len(), 1, "{list}");
    assert_eq!(pre[0]["signature"], "valid", "{list}");
}

#[test]
fn signing_key_placement_permissions_and_passphrase_are_checked() {
    let f = p12_fleet("");
    let config = fs::read_to_string(&f.config).unwrap();

    // No signing section: a config error that says how to make a key.
    let start = config.find("signing:").unwrap();
    let end = config[start..].find("jobs:").unwrap() + start;
    fs::write(&f.config, format!("{}{}", &config[..start], &config[end..])).unwrap();
    let (code, out) = run(&f, &["list"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("ssh-keygen -t ed25519") && out.contains("allowed_signers"),
        "{out}"
    );

    // Readable by others.
    fs::write(&f.config, &config).unwrap();
    fs::set_permissions(&f.signing_key, fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out) = run(&f, &["list"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("readable by others"), "{out}");
    fs::set_permissions(&f.signing_key, fs::Permissions::from_mode(0o600)).unwrap();

    // Inside a store root (here the replica).
    fs::create_dir_all(f.replica()).unwrap();
    let inside = f.replica().join("signing_key");
    fs::copy(&f.signing_key, &inside).unwrap();
    fs::write(
        &f.config,
        config.replace(f.signing_key.to_str().unwrap(), inside.to_str().unwrap()),
    )
    .unwrap();
    let (code, out) = run(&f, &["list"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("inside a store root"), "{out}");

    // allowed_signers inside a store root, or writable by others.
    let inside = f.replica().join("allowed_signers");
    fs::copy(&f.allowed_signers, &inside).unwrap();
    let allowed_line = format!("allowed_signers: {}\n", f.allowed_signers.display());
    let moved = config.replace(&allowed_line, &format!("allowed_signers: {}\n", inside.display()));
    fs::write(&f.config, moved).unwrap();
    let (code, out) = run(&f, &["list"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("allowed_signers` lies inside a store root"), "{out}");
    fs::write(&f.config, &config).unwrap();
    fs::set_permissions(&f.allowed_signers, fs::Permissions::from_mode(0o666)).unwrap();
    let (code, out) = run(&f, &["list"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("writable by others"), "{out}");
    fs::set_permissions(&f.allowed_signers, fs::Permissions::from_mode(0o644)).unwrap();

    // A passphrase-protected key (stock ssh-keygen) with its passphrase from a file.
    let key = f.dir.join("secrets/protected");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "correct horse", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();
    fs::write(&f.allowed_signers, format!("coldkeep {public}")).unwrap();
    let pass = f.secret_file("signing-pass", "correct horse");
    let with_pass = config.replace(
        &format!("  key: {}\n", f.signing_key.display()),
        &format!(
            "  key: {}\n  passphrase: {{file: {}}}\n",
            key.display(),
            pass.display()
        ),
    );
    fs::write(&f.config, &with_pass).unwrap();
    let (code, out) = run(&f, &["backup"]);
    assert_eq!(code, 0, "{out}");
    let sidecar = &sidecars(&f.store())[0];
    assert!(ssh_keygen_verify(
        &f.allowed_signers,
        sidecar,
        &fs::read(sidecar).unwrap()
    ));
    let wrong = f.secret_file("signing-pass", "wrong");
    assert_eq!(wrong, pass);
    let (code, out) = run(&f, &["list"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("wrong passphrase") && !out.contains("correct horse"),
        "{out}"
    );
}

#[test]
fn adopting_an_old_store_signs_only_what_passes_deep_verification() {
    let f = p12_fleet("");
    let (code, out) = run(&f, &["backup"]);
    assert_eq!(code, 0, "{out}");
    f.put("v1", P12, &legacy_p12(PW), 0o600);
    let (code, out) = run(&f, &["backup"]);
    assert_eq!(code, 0, "{out}");
    // A store from before signing: no .sig anywhere. One artifact's sidecar was also edited
    // (its recorded host), which only decrypting shows.
    for root in [f.store(), f.replica()] {
        for s in sidecars(&root) {
            fs::remove_file(coldkeep::sign::sig_path(&s)).unwrap();
        }
    }
    let all = sidecars(&f.store());
    let (good, edited) = (id_of(&all[0]), id_of(&all[1]));
    for root in [f.store(), f.replica()] {
        let path = root.join(format!("v1/p12/{edited}.json"));
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("127.0.0.1", "127.0.0.2");
        fs::write(&path, text).unwrap();
    }
    let (code, out) = run(&f, &["verify"]);
    assert_eq!(code, 1, "{out}");

    let identity = f.age_identity.to_str().unwrap();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let (code, out) = run(
        &f,
        &[
            "verify",
            "--identity",
            identity,
            "--sign-unsigned",
            "--before",
            &now,
            "--yes",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("signed now"), "{out}");
    assert!(out.contains(&edited) && out.contains("not signed"), "{out}");
    for root in [f.store(), f.replica()] {
        assert!(root.join(format!("v1/p12/{good}.json.sig")).is_file());
        assert!(!root.join(format!("v1/p12/{edited}.json.sig")).exists());
    }
    let (_, list) = f.run_json(&["list", "--json"]);
    let mark = |id: &str| {
        list["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap()["signature"]
            .clone()
    };
    assert_eq!(
        (mark(&good), mark(&edited)),
        (Value::from("valid"), Value::from("unsigned"))
    );
}

//! The master key opens every sealed key of an Acra backup: keystores sealed by the reference
//! Themis (wasm-themis under Node.js), backed up over a real sshd node, then `verify --identity`,
//! `check --identity` and `restore` open every key offline with the master key at hand.

use crate::support;

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::acra::{read_tree, write_tree};
use support::fleet::{Fleet, text};
use support::themis::{other_v1_master_key, v1_keystore, v2_keystore};

const KEYS: &str = "opt/acra/.acrakeys";
const HISTORY: &str = "2020-05-21T16:01:58.656663";

/// A one-node fleet ("gw") with Acra keystore `acra` at `<root>/opt/acra/.acrakeys`, its master
/// key in a secret file, and master-key artifacts in their own store for another recipient (so
/// the operator identity used below has only the config's master key at hand).
struct Setup {
    fleet: Fleet,
    dir: PathBuf,
    secret: PathBuf,
}

fn setup(master: &str) -> Setup {
    setup_with(master, false)
}

/// With `operator_opens_master_keys`, the operator's identity file also holds the master-key
/// identity, so `--identity` also brings every stored (older) master key to hand.
fn setup_with(master: &str, operator_opens_master_keys: bool) -> Setup {
    let fleet = Fleet::new(&["gw"]);
    let dir = fleet.node("gw").root.join(KEYS);
    fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let secret = fleet.secret_file("acra-master", master);
    let s = Setup { fleet, dir, secret };
    let node = s.fleet.node("gw");
    s.fleet.write_config(&format!(
        "  - name: gw\n    host: 127.0.0.1\n    port: {}\n    keystores:\n      - name: acra\n        kind: acra\n        \
         path: {}\n        master_key: {{file: {}}}\n",
        node.port,
        s.dir.display(),
        s.secret.display()
    ));
    let keygen = Command::new("age-keygen")
        .arg("-o")
        .arg(s.fleet.dir.join("master-identity.txt"))
        .output()
        .unwrap();
    let master_recipient = text(&keygen.stderr)
        .trim()
        .strip_prefix("Public key: ")
        .unwrap()
        .to_string();
    if operator_opens_master_keys {
        // No recipient may open both a keystore and its master key (a config error), so the
        // operator holds the master-key identity too: one identity file with both keys.
        let master_identity = fs::read_to_string(s.fleet.dir.join("master-identity.txt")).unwrap();
        let mut operator = fs::OpenOptions::new()
            .append(true)
            .open(&s.fleet.age_identity)
            .unwrap();
        std::io::Write::write_all(&mut operator, master_identity.as_bytes()).unwrap();
    }
    let config = fs::read_to_string(&s.fleet.config)
        .unwrap()
        .replacen(
            "  replicas:",
            &format!(
                "  master_key_store: {}\n  replicas:",
                s.fleet.dir.join("master-keys").display()
            ),
            1,
        )
        .replacen(
            "ssh:\n",
            &format!("  master_key_recipients: [{master_recipient}]\nssh:\n"),
            1,
        );
    fs::write(&s.fleet.config, config).unwrap();
    s
}

impl Setup {
    fn run(&self, args: &[&str]) -> (i32, String) {
        let out = self.fleet.run(args);
        (
            out.status.code().unwrap(),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    }

    fn identity(&self) -> String {
        self.fleet.age_identity.to_str().unwrap().to_string()
    }

    fn backup_ok(&self) {
        let (code, out) = self.run(&["backup"]);
        assert_eq!(code, 0, "{out}");
    }

    /// `verify --json --identity`: exit code and the keystore artifact's check.
    fn verify(&self) -> (i32, Value) {
        let id = self.identity();
        let (code, json) = self.fleet.run_json(&["verify", "--json", "--identity", &id]);
        let check = json["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["keystore"] == "acra")
            .cloned()
            .unwrap_or_else(|| panic!("no acra artifact: {json}"));
        (code, check)
    }

    fn set_master_key(&self, value: &str) {
        fs::write(&self.secret, format!("{value}\n")).unwrap();
    }
}

fn failed_keys(check: &Value) -> Vec<String> {
    let mut keys: Vec<String> = check["sealed_keys"]["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

// Per client: storage, its rotated copy, storage_sym, hmac; then secure_log_key, the poison key
// pair and the poison symmetric key with its rotated copy.
const V1_SEALED: u64 = 2 * 4 + 4;

#[test]
fn v1_every_key_opens_with_its_master_key_and_none_with_another() {
    let master = "placeholder";
    let s = setup(master);
    let master = v1_keystore(&s.dir, &["Alice", "Bob"], &[]);
    s.set_master_key(&master);
    s.backup_ok();

    let (code, check) = s.verify();
    assert_eq!(code, 0, "{check}");
    assert_eq!(check["sealed_keys"]["total"], V1_SEALED, "{check}");
    assert_eq!(check["sealed_keys"]["opened"], V1_SEALED, "{check}");
    let id = s.identity();
    let (code, out) = s.run(&["verify", "--identity", &id]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "{V1_SEALED} of {V1_SEALED} sealed keys open with master key"
        )),
        "{out}"
    );
    let (code, out) = s.run(&["check", "--identity", &id]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{V1_SEALED} of {V1_SEALED} sealed keys open")),
        "{out}"
    );

    // Another master key (a typo, the wrong pair after a rotation) opens none, and says so.
    s.set_master_key(&other_v1_master_key());
    let (code, check) = s.verify();
    assert_eq!(code, 1, "{check}");
    assert_eq!(check["sealed_keys"]["opened"], 0, "{check}");
    let problems = check["problems"].to_string();
    assert!(
        problems.contains(&format!("0 of {V1_SEALED} sealed keys open")) && problems.contains("none opens"),
        "{problems}"
    );
    let failed = failed_keys(&check);
    assert_eq!(failed.len() as u64, V1_SEALED, "every key is named: {failed:?}");
    for key in [
        "Alice_hmac".to_string(),
        format!("Bob_storage.old/{HISTORY}"),
        ".poison_key/poison_key".into(),
        "secure_log_key".into(),
    ] {
        assert!(failed.contains(&key), "{key} not named: {failed:?}");
    }
    assert!(
        !failed.iter().any(|k| k.ends_with(".pub")),
        "public keys are not sealed"
    );
    let (code, out) = s.run(&["check", "--identity", &id]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("none opens"), "{out}");
}

#[test]
fn v1_a_key_sealed_with_the_wrong_context_and_a_damaged_key_are_named() {
    let s = setup("placeholder");
    let master = v1_keystore(&s.dir, &["Alice", "Bob"], &["Bob_hmac"]);
    s.set_master_key(&master);
    // One byte flipped inside a sealed key's ciphertext, and one in a history file.
    for rel in [
        "Alice_storage_sym".to_string(),
        format!("Alice_storage.old/{HISTORY}"),
    ] {
        let path = s.dir.join(&rel);
        let mut bytes = fs::read(&path).unwrap();
        let at = bytes.len() - 3;
        bytes[at] ^= 0x20;
        fs::write(&path, bytes).unwrap();
    }
    s.backup_ok();
    let (code, check) = s.verify();
    assert_eq!(code, 1, "{check}");
    assert_eq!(
        failed_keys(&check),
        vec![
            "Alice_storage.old/2020-05-21T16:01:58.656663".to_string(),
            "Alice_storage_sym".into(),
            "Bob_hmac".into()
        ],
        "{check}"
    );
    // The other history files (Bob's key pair, the poison symmetric key) opened with the context
    // of their directory's name.
    assert_eq!(check["sealed_keys"]["opened"], V1_SEALED - 3, "{check}");
    let problems = check["problems"].to_string();
    assert!(problems.contains("key Bob_hmac: does not open"), "{problems}");
    assert!(!problems.contains("none opens"), "{problems}");
}

#[test]
fn v2_every_key_of_every_ring_opens_and_a_wrong_context_is_named() {
    let v2 = v2_keystore(&["Alice"], &["client/Alice/hmac-sym"]);
    let s = setup(&v2.master_key);
    write_tree(&s.dir, &v2.files);
    s.backup_ok();
    let (code, check) = s.verify();
    assert_eq!(code, 1, "{check}");
    // audit-log, poison-record, poison-record-sym, storage (two key pairs), storage-sym, hmac-sym.
    assert_eq!(check["sealed_keys"]["total"], 7, "{check}");
    assert_eq!(check["sealed_keys"]["opened"], 6, "{check}");
    assert_eq!(
        failed_keys(&check),
        vec!["client/Alice/hmac-sym.keyring key 0 (symmetric)".to_string()]
    );
    // The ring's HMAC is fine: only the key inside is sealed wrongly.
    assert!(!check["problems"].to_string().contains("signature"), "{check}");

    let good = v2_keystore(&["Alice", "Bob"], &[]);
    let s = setup(&good.master_key);
    write_tree(&s.dir, &good.files);
    s.backup_ok();
    let (code, check) = s.verify();
    assert_eq!(code, 0, "{check}");
    assert_eq!(check["sealed_keys"]["opened"], 11, "{check}");
    assert!(good.signature_key.len() == 32);

    // A v1 master key cannot be a v2 keystore's: said once, plainly.
    s.set_master_key(&other_v1_master_key());
    let (code, check) = s.verify();
    assert_eq!(code, 1, "{check}");
    let problems: Vec<&Value> = check["problems"].as_array().unwrap().iter().collect();
    assert_eq!(problems.len(), 1, "{check}");
    assert!(
        problems[0]
            .as_str()
            .unwrap()
            .contains("is a v1 key; this keystore is v2"),
        "{check}"
    );
}

#[test]
fn restore_refuses_a_backup_whose_keys_do_not_open_and_changes_nothing() {
    let s = setup("placeholder");
    let master = v1_keystore(&s.dir, &["Alice"], &[]);
    s.set_master_key(&master);
    s.backup_ok();
    let (before, _) = read_tree(&s.dir);
    fs::remove_dir_all(&s.dir).unwrap();

    let id = s.identity();
    s.set_master_key(&other_v1_master_key());
    for extra in [&["--dry-run"][..], &[]] {
        let mut args = vec!["restore", "--node", "gw", "--identity", &id];
        args.extend_from_slice(extra);
        let (code, out) = s.run(&args);
        assert_ne!(code, 0, "{out}");
        assert!(out.contains("does not open with the master key at hand"), "{out}");
        assert!(
            out.contains("none opens") && out.contains("key Alice_hmac"),
            "{out}"
        );
        assert!(out.contains("nothing was changed"), "{out}");
        assert!(!s.dir.exists(), "nothing restored");
        assert!(no_temp_dirs(s.dir.parent().unwrap()), "no temp directory left");
    }

    // With the master key it was made with, the same backup restores byte for byte.
    s.set_master_key(&master);
    let (code, out) = s.run(&["restore", "--node", "gw", "--identity", &id]);
    assert_eq!(code, 0, "{out}");
    // (Rotated public keys come back 0600, stricter than Acra's 0644: compare names and bytes.)
    let names_and_bytes =
        |t: Vec<(String, u32, Vec<u8>)>| t.into_iter().map(|(n, _, b)| (n, b)).collect::<Vec<_>>();
    assert_eq!(names_and_bytes(read_tree(&s.dir).0), names_and_bytes(before));
}

fn no_temp_dirs(parent: &Path) -> bool {
    fs::read_dir(parent)
        .unwrap()
        .all(|e| !e.unwrap().file_name().to_string_lossy().contains("coldkeep"))
}

#[test]
fn after_a_master_key_rotation_each_backup_opens_with_its_own_stored_master_key() {
    let s = setup_with("placeholder", true);
    let old_master = v1_keystore(&s.dir, &["Alice"], &[]);
    s.set_master_key(&old_master);
    s.backup_ok();
    // Acra re-keyed with a new master key: a new keystore, a new key in the config.
    fs::remove_dir_all(&s.dir).unwrap();
    let new_master = v1_keystore(&s.dir, &["Alice"], &[]);
    s.set_master_key(&new_master);
    s.backup_ok();

    let id = s.identity();
    let (code, json) = s.fleet.run_json(&["verify", "--json", "--identity", &id]);
    assert_eq!(code, 0, "{json}");
    let mut key_ids: Vec<String> = json["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["keystore"] == "acra" && !a["sealed_keys"].is_null())
        .map(|a| {
            assert_eq!(a["sealed_keys"]["opened"], a["sealed_keys"]["total"], "{a}");
            a["sealed_keys"]["master_key_id"].as_str().unwrap().to_string()
        })
        .collect();
    key_ids.dedup();
    assert_eq!(
        key_ids.len(),
        2,
        "each backup opened with its own master key: {json}"
    );
}

/// A configured master key that is not one (a character lost in copying: the very typo this
/// check exists for) must not quietly turn the check off: restore refuses and names the source,
/// never the value.
#[test]
fn restore_refuses_when_the_configured_master_key_is_not_a_master_key() {
    let s = setup("placeholder");
    let master = v1_keystore(&s.dir, &["Alice"], &[]);
    s.set_master_key(&master);
    s.backup_ok();
    fs::remove_dir_all(&s.dir).unwrap();

    let id = s.identity();
    let typo = &master[..master.len() - 1];
    s.set_master_key(typo);
    let (code, out) = s.run(&["restore", "--node", "gw", "--identity", &id]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("master_key") && out.contains("not valid base64"),
        "{out}"
    );
    assert!(
        out.contains(&s.secret.display().to_string()),
        "names the source: {out}"
    );
    assert!(out.contains("nothing was changed"), "{out}");
    assert!(!out.contains(typo), "never the value: {out}");
    assert!(!s.dir.exists(), "nothing restored");
}

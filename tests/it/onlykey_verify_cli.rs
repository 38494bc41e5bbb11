//! `coldkeep onlykey verify` through the real binary, against the committed vectors of
//! `tests/fixtures/onlykey/gen_vectors.py` (an independent implementation of the firmware's
//! backup encryption): exit codes, messages, legacy texts through import, and that no decrypted
//! value (nor the passphrase or key) ever appears in any output.

use crate::support;

use serde_json::Value;
use std::fs;
use std::path::PathBuf;
use support::fleet::{Fleet, text};

const VECTORS: &str = include_str!("../fixtures/onlykey/vectors.json");

fn cases() -> Vec<Value> {
    let v: Value = serde_json::from_str(VECTORS).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn fleet() -> Fleet {
    let f = Fleet::new(&[]);
    f.write_config("");
    f
}

fn out(o: &std::process::Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

/// The key options for a case, with the key written under `secrets/`.
fn key_args(f: &Fleet, case: &Value) -> Vec<String> {
    let name = case["name"].as_str().unwrap();
    let write = |ext: &str, body: &str| -> String {
        let p: PathBuf = f.dir.join(format!("secrets/{name}.{ext}"));
        fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };
    if let Some(p) = case["passphrase"].as_str() {
        vec!["--passphrase-file".into(), write("pass", &format!("{p}\n"))]
    } else if let Some(h) = case["key_hex"].as_str() {
        vec!["--key-file".into(), write("hex", h)]
    } else {
        vec![
            "--rsa-key".into(),
            write("pem", case["rsa_pem"].as_str().unwrap()),
        ]
    }
}

/// Every value the vector's plaintext holds, the passphrase and the key, in the forms an output
/// could show them: text, lower and upper hex.
fn forbidden(case: &Value) -> Vec<String> {
    let mut all: Vec<String> = case["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    for k in ["passphrase", "key_hex"] {
        if let Some(s) = case[k].as_str() {
            all.push(s.to_string());
        }
    }
    let upper: Vec<String> = all.iter().map(|s| s.to_uppercase()).collect();
    all.extend(upper);
    all.retain(|s| s.len() >= 8);
    all
}

#[test]
fn every_vector_through_the_binary_with_no_value_in_any_output() {
    let f = fleet();
    let mut checked = 0;
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let file = f.dir.join(format!("secrets/{name}.txt"));
        fs::write(&file, case["text"].as_str().unwrap()).unwrap();
        let mut args: Vec<String> = vec!["onlykey".into(), "verify".into(), file.to_str().unwrap().into()];
        args.extend(key_args(&f, &case));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = f.run(&args);
        let all = out(&o);
        let expect = &case["expect"];
        match expect["error"].as_str() {
            None => {
                assert_eq!(o.status.code(), Some(0), "{name}: {all}");
                assert!(
                    text(&o.stdout).contains("every record is well-formed"),
                    "{name}: {all}"
                );
                let rks = expect["ok"]["resident_keys"].as_u64().unwrap();
                assert!(all.contains(&format!("resident keys: {rks}")), "{name}: {all}");
            }
            Some(kind) => {
                assert_eq!(o.status.code(), Some(1), "{name}: {all}");
                let want = match kind {
                    "wrong-key" => "does not open this backup",
                    "wrong-type" => "cannot open it",
                    "damaged" => "damaged",
                    "no-backup-key" => "Set a backup passphrase",
                    other => panic!("{other}"),
                };
                assert!(all.contains(want), "{name}: want {want:?} in {all}");
            }
        }
        if case["passphrase"].is_string() && expect["error"].is_string() && expect["error"] != "no-backup-key"
        {
            assert!(
                all.contains("the backup passphrase"),
                "says what was tried: {all}"
            );
        }
        for secret in forbidden(&case) {
            assert!(
                !all.contains(&secret),
                "{name}: output shows a secret value: {all}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 15);
}

#[test]
fn usage_errors_exit_2() {
    let f = fleet();
    let case = cases().into_iter().find(|c| c["name"] == "passphrase").unwrap();
    let file = f.dir.join("secrets/b.txt");
    fs::write(&file, case["text"].as_str().unwrap()).unwrap();
    let file = file.to_str().unwrap();
    // No key at all.
    let o = f.run(&["onlykey", "verify", file]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("--passphrase-file"), "{}", out(&o));
    // Two keys.
    let o = f.run(&[
        "onlykey",
        "verify",
        file,
        "--passphrase-env",
        "P",
        "--key-file",
        file,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    // A key file that is not 32 bytes of hex.
    let bad = f.dir.join("secrets/bad.hex");
    fs::write(&bad, "1234").unwrap();
    let o = f.run(&["onlykey", "verify", file, "--key-file", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("64 hex digits"), "{}", out(&o));
    // An unset variable.
    let o = f.run(&[
        "onlykey",
        "verify",
        file,
        "--passphrase-env",
        "COLDKEEP_TEST_UNSET",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    // The passphrase from the environment, and the text on stdin, work.
    let passphrase = case["passphrase"].as_str().unwrap();
    let mut c = f.command(&["onlykey", "verify", "-", "--passphrase-env", "OK_PASS"]);
    c.env("OK_PASS", passphrase);
    let o = {
        use std::io::Write;
        let mut child = c
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(case["text"].as_str().unwrap().as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(!out(&o).contains(passphrase));
}

#[test]
fn legacy_texts_are_imported_as_unverified_and_verified_from_the_store() {
    let f = fleet();
    let case = cases()
        .into_iter()
        .find(|c| c["name"] == "legacy_no_check_line")
        .unwrap();
    let o = f.run_with_stdin(
        &["onlykey", "import", "-", "--name", "old"],
        case["text"].as_str().unwrap().as_bytes(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains("no check line (unverified)"), "{}", out(&o));
    let o = f.run(&["list"]);
    assert!(out(&o).contains("no check line (unverified)"), "{}", out(&o));
    let (_, list) = f.run_json(&["list", "--json"]);
    assert_eq!(list["artifacts"][0]["identity"]["no_check_line"], true);

    let identity = f.age_identity.to_str().unwrap();
    let mut args: Vec<String> = ["onlykey", "verify", "--name", "old", "--identity", identity]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(key_args(&f, &case));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = f.run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains("integrity check"), "{}", out(&o));
    for secret in forbidden(&case) {
        assert!(!out(&o).contains(&secret), "{}", out(&o));
    }

    // A legacy artifact still restores: its canonical text matches its sidecar, and the attempt
    // gets as far as the (absent) device.
    let o = f.run(&[
        "onlykey",
        "restore",
        "--name",
        "old",
        "--identity",
        identity,
        "--device",
        "/dev/hidraw-none",
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("/dev/hidraw-none") && out(&o).contains("DUO"),
        "{}",
        out(&o)
    );

    // The "No Backup Key" text is refused by import with the advice, nothing stored.
    let nokey = cases()
        .into_iter()
        .find(|c| c["name"] == "no_backup_key")
        .unwrap();
    let o = f.run_with_stdin(
        &["onlykey", "import", "-", "--name", "nokey"],
        nokey["text"].as_str().unwrap().as_bytes(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("Set a backup passphrase"), "{}", out(&o));
    assert!(out(&o).contains("nothing was stored"), "{}", out(&o));
}

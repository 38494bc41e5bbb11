//! Acra keystores sealed by the reference Themis: `themis/acra_fixtures.js` under Node.js with the
//! npm package `wasm-themis` (`.ci/run` installs both; by hand: `npm install` in
//! tests/support/themis). coldkeep's own Secure Cell code never makes these.

use super::acra::{FixtureFile, der_key, seq, signed_ring, tlv};
use openssl::base64;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/themis")
}

fn run(spec: Value) -> Value {
    let dir = script_dir();
    assert!(
        dir.join("node_modules/wasm-themis").is_dir(),
        "wasm-themis is not installed: run .ci/run, or `npm install` in {}",
        dir.display()
    );
    let out = Command::new("node")
        .current_dir(&dir)
        .args(["--no-experimental-fetch", "acra_fixtures.js", &spec.to_string()])
        .output()
        .expect("node (Node.js) must be installed; .ci/run installs it");
    assert!(
        out.status.success(),
        "acra_fixtures.js failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Writes a v1 keys directory at `dir` for `clients` (key pairs, symmetric, HMAC, audit-log and
/// poison keys, rotated history), sealed under a fresh master key; keys named in
/// `wrong_context` are sealed with a context Acra would not use. Returns `ACRA_MASTER_KEY`.
pub fn v1_keystore(dir: &Path, clients: &[&str], wrong_context: &[&str]) -> String {
    let out = run(json!({
        "version": 1,
        "dir": dir,
        "clients": clients,
        "wrong_context": wrong_context,
    }));
    out["master_key"].as_str().unwrap().to_string()
}

/// A v2 keystore made by the reference Themis: its files, `ACRA_MASTER_KEY` and the signature key.
pub struct V2 {
    pub files: Vec<FixtureFile>,
    pub master_key: String,
    pub signature_key: Vec<u8>,
}

/// A v2 keystore for `clients` whose keys are sealed with Acra's v2 contexts (rings named in
/// `wrong_context`, without suffix, with the wrong seqnum in theirs), packed into signed rings.
pub fn v2_keystore(clients: &[&str], wrong_context: &[&str]) -> V2 {
    let out = run(json!({"version": 2, "clients": clients, "wrong_context": wrong_context}));
    let b64 = |v: &Value| base64::decode_block(v.as_str().unwrap()).unwrap();
    let signature_key = b64(&out["signature_key"]);
    let mut files = vec![
        ("version".to_string(), 0o644, b"Acra Keystore v2".to_vec()),
        (".lock".to_string(), 0o600, Vec::new()),
    ];
    for ring in out["rings"].as_array().unwrap() {
        let path = ring["path"].as_str().unwrap();
        let keys: Vec<Vec<u8>> = ring["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                let mut data = vec![tlv(0x0a, &[k["format"].as_u64().unwrap() as u8])];
                for (tag, field) in [(0x81, "public"), (0x82, "private"), (0x83, "symmetric")] {
                    if !k[field].is_null() {
                        data.push(tlv(tag, &b64(&k[field])));
                    }
                }
                der_key(k["seqnum"].as_u64().unwrap() as u8, &[seq(&data)])
            })
            .collect();
        files.push((
            format!("{path}.keyring"),
            0o600,
            signed_ring(path, &keys, &signature_key),
        ));
    }
    V2 {
        files,
        master_key: out["master_key"].as_str().unwrap().to_string(),
        signature_key,
    }
}

/// A v1 master key that is not the keystore's: 32 random bytes, base64.
pub fn other_v1_master_key() -> String {
    let mut b = [0u8; 32];
    openssl::rand::rand_bytes(&mut b).unwrap();
    base64::encode_block(&b)
}

//! Stable-Rust fuzzing of every parser that reads untrusted input (the same entry points as the
//! cargo-fuzz targets in `fuzz/`): seeds from real inputs, mutated by flips, inserts, deletions,
//! truncations, duplications and splices, with a fixed RNG seed so a run is reproducible.
//! `COLDKEEP_FUZZ_ITERS` (per target, default 20,000) runs longer by hand; inputs that once crashed
//! are kept in tests/fuzz_regressions/<target>/ and replayed first.

use crate::support;

use coldkeep::testkit::fuzzing;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;

fn iterations() -> usize {
    std::env::var("COLDKEEP_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..rng.gen_range(1..8) {
        let len = input.len();
        match rng.gen_range(0..7) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                input[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                input[i] = [0, 0xff, 0x7f, 0x80, b'\n', b'-', b'=', b':', b'{', b'"'][rng.gen_range(0..10)];
            }
            2 => {
                let i = rng.gen_range(0..=len);
                let n = rng.gen_range(1..16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
                input.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let a = rng.gen_range(0..len);
                let b = rng.gen_range(a..=len.min(a + 64));
                input.drain(a..b);
            }
            4 if len > 0 => input.truncate(rng.gen_range(0..len)),
            5 if len > 0 => {
                let a = rng.gen_range(0..len);
                let b = rng.gen_range(a..=len.min(a + 128));
                let chunk = input[a..b].to_vec();
                let at = rng.gen_range(0..=len);
                input.splice(at..at, chunk);
            }
            _ => {
                let other = &seeds[rng.gen_range(0..seeds.len())];
                if !other.is_empty() {
                    let cut = rng.gen_range(0..other.len());
                    let at = rng.gen_range(0..=len);
                    input.truncate(at);
                    input.extend_from_slice(&other[cut..]);
                }
            }
        }
    }
}

/// Replays saved regressions and the coverage-guided corpus (`fuzz/corpus/<name>/`, minimized by
/// `cargo fuzz cmin`), then mutates the seeds `iterations()` times through `target`.
/// `COLDKEEP_FUZZ_SEEDS_OUT=DIR` also writes the seeds to `DIR/<name>/`, to start a cargo-fuzz
/// corpus from the same real inputs.
fn fuzz(name: &str, seeds: Vec<Vec<u8>>, target: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/fuzz_regressions").join(name);
    for replay in [dir.clone(), root.join("fuzz/corpus").join(name)] {
        if let Ok(entries) = std::fs::read_dir(&replay) {
            for e in entries.flatten() {
                target(&std::fs::read(e.path()).unwrap());
            }
        }
    }
    if let Some(out) = std::env::var_os("COLDKEEP_FUZZ_SEEDS_OUT") {
        let out = Path::new(&out).join(name);
        std::fs::create_dir_all(&out).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(out.join(format!("seed-{i}")), s).unwrap();
        }
    }
    for s in &seeds {
        target(s);
    }
    let mut rng = StdRng::seed_from_u64(0x0000_c01d_4ee9 ^ name.len() as u64);
    let mut input = Vec::new();
    for i in 0..iterations() {
        if i % 16 == 0 || input.len() > 1 << 20 {
            input = seeds[rng.gen_range(0..seeds.len())].clone();
        }
        mutate(&mut rng, &seeds, &mut input);
        let result = std::panic::catch_unwind(|| target(&input));
        if result.is_err() {
            let path = std::env::temp_dir().join(format!("coldkeep-fuzz-{name}-{i}.bin"));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "{name}: input #{i} panicked; saved to {} (add it to {})",
                path.display(),
                dir.display()
            );
        }
    }
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

#[test]
fn config_parser() {
    let seeds = vec![
        read("config/coldkeep.yaml"),
        read("examples/tessellation-validators.yaml"),
        read("examples/acra-fleet.yaml"),
        read("examples/hardware-keys.yaml"),
    ];
    fuzz("config", seeds, fuzzing::config);
}

#[test]
fn sidecar_parser() {
    let sidecar = br#"{"format":1,"node":"v1","keystore":"p12","kind":"p12","purpose":"backup",
"created_at":"2026-11-20T03:00:00Z","coldkeep_version":"0.1.0","host":"10.0.0.1:22","host_key":"SHA256:x",
"files":[{"path":"v1.p12","remote_path":"/k/v1.p12","size":3,"mode":256,"sha256":"ab"}],
"identity":{"kind":"acra","version":2,"client_ids":["a"],"keys":[{"path":"x","sha256":"y"}]},
"recipients":["age1x"],"ciphertext_sha256":"cd","ciphertext_size":9,"seen_unchanged_at":"2026-11-21T00:00:00Z"}"#;
    let onlykey = br#"{"format":1,"node":"hardware","keystore":"ok","kind":"onlykey","created_at":"2026-11-20T03:00:00Z",
"coldkeep_version":"0.1.0","host":"onlykey","files":[],"identity":{"kind":"onlykey","payload_size":5,"check":"x",
"key_type":"ecc","key_detail":"d"},"recipients":[],"ciphertext_sha256":"cd","ciphertext_size":9}"#;
    fuzz(
        "sidecar",
        vec![sidecar.to_vec(), onlykey.to_vec()],
        fuzzing::sidecar,
    );
}

#[test]
fn onlykey_text_parser() {
    let payload: Vec<u8> = (0..300u32).map(|i| (i * 13) as u8).collect();
    let seeds = vec![
        coldkeep::material::onlykey::armor(&payload).into_bytes(),
        coldkeep::material::onlykey::armor(&payload[..114]).into_bytes(),
        coldkeep::material::onlykey::armor(&payload[..1]).into_bytes(),
    ];
    fuzz("onlykey", seeds, fuzzing::onlykey);
}

#[test]
fn onlykey_record_walk() {
    // A plaintext shaped like a backup: slot fields, a TOTP key, a Yubico OTP, an ECC key, the
    // FIDO2 state and one resident key; then the same ending in a legacy U2F record.
    let mut p = vec![0xff, 1, 1, b'l', b'a', b'b', 0xff, 2, 9, 3, 1, 2, 3, 0xff, 0, 10];
    p.extend([5u8; 30]);
    p.extend([0xfe, 101, 0x21]);
    p.extend([9u8; 32]);
    let mut with_u2f = p.clone();
    with_u2f.extend([0xfd]);
    with_u2f.extend([1u8; 34]);
    with_u2f.extend([0, 2, 0x30, 0]);
    p.extend([0xfe, 0]);
    p.extend([4u8; 208]);
    p.extend([0xfe, 200]);
    p.extend([3u8; 441]);
    use coldkeep::material::onlykey_backup::{Scheme, walk_records};
    assert_eq!(walk_records(&p, Scheme::X25519).unwrap().resident_keys, 1);
    assert!(walk_records(&with_u2f, Scheme::X25519).unwrap().legacy_u2f);
    fuzz("onlykey_records", vec![p, with_u2f], fuzzing::onlykey_records);
}

#[test]
fn bitbox02_backup_parser() {
    let file = coldkeep::material::bitbox02::encode(
        "My BitBox",
        1_601_281_809,
        &[7u8; 16],
        1_601_281_809,
        "v9.13.0",
    );
    let mut pair = file.clone();
    pair.extend_from_slice(&file);
    fuzz("bitbox02", vec![file, pair], fuzzing::bitbox02);
}

#[test]
fn bitbox02_device_answers() {
    use coldkeep::hid::bitbox02::framing;
    use prost::Message;
    // The firmware's answer to 'i' (`_api_info`): "v9.21.0", platform, edition, unlocked, initialized.
    let info = b"\x07v9.21.0\x00\x00\x01\x01".to_vec();
    let list = bitbox_api::pb::Response {
        response: Some(bitbox_api::pb::response::Response::ListBackups(
            bitbox_api::pb::ListBackupsResponse {
                info: (0..3)
                    .map(|i| bitbox_api::pb::BackupInfo {
                        id: format!("{i:064x}"),
                        timestamp: 1_601_281_809,
                        name: "My BitBox".into(),
                    })
                    .collect(),
            },
        )),
    }
    .encode_to_vec();
    let reports = |msg: &[u8]| -> Vec<u8> { framing::encode(framing::HWW_CMD, msg).unwrap().concat() };
    let record = serde_json::to_vec(&coldkeep::store::DeviceCheck::new(
        "treasury",
        "bitbox02",
        "usb /dev/hidraw3".into(),
        coldkeep::store::CheckResult::Found,
    ))
    .unwrap();
    fuzz(
        "bitbox02_device",
        vec![reports(&info), reports(&list), info, list, record],
        fuzzing::bitbox02_device,
    );
}

#[test]
fn nodectl_config_reader() {
    let seeds = vec![
        support::fleet::cn_config("/home/nodeadmin/tessellation/", "n.p12", None).into_bytes(),
        support::fleet::cn_config("global", "global", Some(("/x/", "y.p12"))).into_bytes(),
    ];
    fuzz("nodectl", seeds, fuzzing::nodectl);
}

#[test]
fn bundle_tar_reader() {
    let data = b"key bytes";
    let manifest = serde_json::json!({
        "format": 1, "node": "n1", "keystore": "p12", "kind": "p12", "purpose": "backup",
        "created_at": "2026-11-20T00:00:00Z", "coldkeep_version": "0.1.0", "host": "h:22",
        "host_key": "", "recipients": [],
        "files": [{"path": "n1.p12", "remote_path": "/n1.p12", "size": data.len(), "mode": 384,
                   "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data))}],
    });
    let json = serde_json::to_vec(&manifest).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in [("manifest.json", json.as_slice()), ("n1.p12", data.as_slice())] {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(body.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        b.append(&h, body).unwrap();
    }
    let tar = b.into_inner().unwrap();
    assert!(
        coldkeep::bundle::read_tar(&tar).is_ok(),
        "the seed is a valid bundle"
    );
    fuzz("bundle_tar", vec![tar], fuzzing::bundle_tar);
}

#[test]
fn der_walkers() {
    let p12 = std::fs::read(Path::new(support::fleet::FIXTURE).join("key.p12"))
        .or_else(|_| -> std::io::Result<Vec<u8>> { Ok(support::fleet::legacy_p12("pw")) })
        .unwrap();
    let ring = support::acra::key_ring("client/x/storage", &[0u8; 32]);
    fuzz("der", vec![p12, ring], fuzzing::der);
}

#[test]
fn known_hosts_reader() {
    let key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    let text = format!(
        "# comment\n[127.0.0.1]:2222,node.example ssh-ed25519 {key}\n@revoked * ssh-ed25519 {key}\n\
         @cert-authority *.example,!bad.example ssh-ed25519 {key}\n\
         |1|F1E1KeoE/eEWhi10WpGv4OdiO6Y=|3988QV0VE8wmZL7suNrYQLITLCg= ssh-ed25519 {key}\n"
    );
    fuzz(
        "known_hosts",
        vec![text.into_bytes(), b"a*b?c\naXXbYc".to_vec()],
        fuzzing::known_hosts,
    );
}

#[test]
fn signature_and_allowed_signers_parsers() {
    let seeds = fuzzing::signature_seeds();
    let text = std::str::from_utf8(&seeds[1]).unwrap();
    assert!(
        coldkeep::sign::AllowedSigners::parse(text).is_ok(),
        "the seeds are valid"
    );
    fuzz("signature", seeds, fuzzing::signature);
}

#[test]
fn acra_sealed_keys() {
    // Seeds from the reference Themis: a cell sealed under [7; 32] with context "ctx" (the key the
    // fuzz entry point opens with), an EC private key, and a Themis-sealed v2 key ring.
    let cell = hex::decode(
        "000101400c000000100000000b000000703ee7c3b99276fbce73a82253af3811953374d9c3a37a8e0da68f54\
         33520c7b3776c893220e2a",
    )
    .unwrap();
    let private = hex::decode(
        "524543320000002d2b2a7bf700a61e3a23eaa697ffcdb7557e98cda0dfe02ec9a4560d389b9be8a4b2249099b2",
    )
    .unwrap();
    let ring = support::themis::v2_keystore(&["x"], &[])
        .files
        .into_iter()
        .find(|f| f.0 == "client/x/storage.keyring")
        .unwrap()
        .2;
    fuzz("acra_keys", vec![cell, private, ring], fuzzing::acra_keys);
}

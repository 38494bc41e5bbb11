//! Against the committed vectors of `tests/fixtures/onlykey/gen_vectors.py`, an implementation
//! of the firmware description independent of this one (Python `cryptography`, PyNaCl).

use super::*;
use crate::material::onlykey;
use serde_json::Value;

const VECTORS: &str = include_str!("../../../tests/fixtures/onlykey/vectors.json");

fn cases() -> Vec<Value> {
    let v: Value = serde_json::from_str(VECTORS).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn key_of(case: &Value) -> BackupKey {
    if let Some(p) = case["passphrase"].as_str() {
        BackupKey::Passphrase(Zeroizing::new(p.to_string()))
    } else if let Some(h) = case["key_hex"].as_str() {
        BackupKey::ecc_from_hex(h).unwrap()
    } else {
        BackupKey::rsa_from_pem(case["rsa_pem"].as_str().unwrap().as_bytes()).unwrap()
    }
}

fn kind_of(e: &OpenError) -> &'static str {
    match e {
        OpenError::WrongType { .. } => "wrong-type",
        OpenError::WrongKey { .. } => "wrong-key",
        OpenError::Damaged { .. } => "damaged",
        OpenError::Malformed(_) => "malformed",
        OpenError::BadKey(_) => "bad-key",
    }
}

fn pairs(v: &Value) -> Vec<(u64, u64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap()))
        .collect()
}

#[test]
fn every_vector_gives_its_expected_outcome() {
    let all = cases();
    assert!(all.len() >= 15, "vectors: {}", all.len());
    for case in all {
        let name = case["name"].as_str().unwrap();
        let expect = &case["expect"];
        let parsed = onlykey::parse(case["text"].as_str().unwrap());
        if expect["error"] == "no-backup-key" {
            let e = parsed.unwrap_err();
            assert!(e.message.contains("no backup key"), "{name}: {e}");
            continue;
        }
        let backup = parsed.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(backup.legacy, expect["legacy"] == true, "{name}");
        let result = open(&backup.payload, &key_of(&case));
        if let Some(want) = expect["error"].as_str() {
            let e = result
                .err()
                .unwrap_or_else(|| panic!("{name}: opened, expected {want}"));
            assert_eq!(kind_of(&e), want, "{name}: {e}");
            continue;
        }
        let s = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        let ok = &expect["ok"];
        let slots: Vec<u64> = s.slots.iter().map(|&x| u64::from(x)).collect();
        let want_slots: Vec<u64> = ok["slots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(slots, want_slots, "{name}");
        assert_eq!(s.settings as u64, ok["settings"].as_u64().unwrap(), "{name}");
        let rsa: Vec<(u64, u64)> = s
            .rsa_keys
            .iter()
            .map(|k| (u64::from(k.slot), u64::from(k.kind) * 1024))
            .collect();
        assert_eq!(rsa, pairs(&ok["rsa_keys"]), "{name}");
        let ecc: Vec<(u64, u64)> = s
            .ecc_keys
            .iter()
            .map(|k| (u64::from(k.slot), u64::from(k.kind)))
            .collect();
        assert_eq!(ecc, pairs(&ok["ecc_keys"]), "{name}");
        assert_eq!(s.fido2_state, ok["fido2_state"] == true, "{name}");
        assert_eq!(
            s.resident_keys as u64,
            ok["resident_keys"].as_u64().unwrap(),
            "{name}"
        );
        let trailer = *backup.payload.last().unwrap();
        assert_eq!(u64::from(trailer), expect["key_type"].as_u64().unwrap(), "{name}");
    }
}

#[test]
fn the_multiple_of_57_vector_has_its_empty_line() {
    let case = cases()
        .into_iter()
        .find(|c| c["name"] == "multiple_of_57")
        .unwrap();
    let b = onlykey::parse(case["text"].as_str().unwrap()).unwrap();
    assert_eq!(b.payload.len() % 57, 0);
}

#[test]
fn random_keys_never_pass_the_walk() {
    use rand::RngCore;
    let mut rng = rand::thread_rng();
    let mut passed_first_byte = 0;
    for case in cases() {
        let expect = &case["expect"];
        if expect["ok"].is_null() || case["rsa_pem"].is_string() {
            continue;
        }
        let b = onlykey::parse(case["text"].as_str().unwrap()).unwrap();
        for _ in 0..300 {
            let mut k = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(k.as_mut_slice());
            let key = if case["passphrase"].is_string() {
                BackupKey::Passphrase(Zeroizing::new(hex::encode(k.as_slice())))
            } else {
                BackupKey::Ecc(k)
            };
            match open(&b.payload, &key) {
                Ok(_) => panic!("{}: a random key opened it", case["name"]),
                Err(OpenError::Damaged { .. }) => passed_first_byte += 1,
                Err(OpenError::WrongKey { why, .. }) if why.contains("record is not valid") => {
                    passed_first_byte += 1
                }
                Err(_) => {}
            }
        }
    }
    // About 3 in 256 get past the firmware's own test; the walk stops every one of them.
    assert!(
        passed_first_byte > 0,
        "the sample should include keys the firmware would accept"
    );
}

/// Backups are a few hundred bytes at least (the FIDO2 state alone is about 200).
#[test]
fn random_plaintexts_that_pass_the_first_byte_test_fail_the_walk() {
    use rand::RngCore;
    let mut rng = rand::thread_rng();
    for n in [300usize, 2000] {
        for _ in 0..3000 {
            let mut p = vec![0u8; n];
            rng.fill_bytes(&mut p);
            p[0] = 0xfd + (p[0] % 3);
            assert!(walk(&p, Scheme::X25519).is_err(), "{n}: {}", hex::encode(&p));
        }
    }
}

#[test]
fn keys_are_checked_before_use() {
    assert!(matches!(
        BackupKey::ecc_from_hex("abcd"),
        Err(OpenError::BadKey(_))
    ));
    assert!(matches!(
        BackupKey::rsa_from_pem(b"nope"),
        Err(OpenError::BadKey(_))
    ));
    let p256 = cases().into_iter().find(|c| c["name"] == "p256").unwrap();
    let b = onlykey::parse(p256["text"].as_str().unwrap()).unwrap();
    // Zero is no P-256 private key.
    let e = open(&b.payload, &BackupKey::Ecc(Zeroizing::new([0u8; 32]))).unwrap_err();
    assert!(matches!(e, OpenError::BadKey(_)), "{e}");
    // Unknown trailer bytes are refused before any decryption.
    let e = open(&[0xff, 0, 9], &BackupKey::Ecc(Zeroizing::new([1u8; 32]))).unwrap_err();
    assert!(matches!(e, OpenError::Malformed(_)), "{e}");
}

#[test]
fn messages_name_what_was_tried_and_never_a_value() {
    let case = cases()
        .into_iter()
        .find(|c| c["name"] == "passphrase_for_p256_backup")
        .unwrap();
    let b = onlykey::parse(case["text"].as_str().unwrap()).unwrap();
    let e = open(&b.payload, &key_of(&case)).unwrap_err().to_string();
    assert!(e.contains("P-256") && e.contains("the backup passphrase"), "{e}");
    assert!(!e.contains(case["passphrase"].as_str().unwrap()), "{e}");
}

/// An HMAC-SHA1 challenge-response key (KeePassXC) sits in ECC slot 130 or 129 with key type 9
/// (python-onlykey `setkey HMAC1 h`); `backup()` writes it like any ECC slot and `RESTORE()`
/// takes 32 bytes for every slot above 100 whatever its type. Such a backup is not damaged.
#[test]
fn a_backup_with_hmac_keys_walks_cleanly() {
    let mut p = vec![0xff, 1, 2];
    p.extend_from_slice(b"user");
    p.extend_from_slice(&[0xfe, 129, 9]);
    p.extend_from_slice(&[0x11; 32]);
    p.extend_from_slice(&[0xfe, 130, 9]);
    p.extend_from_slice(&[0x22; 32]);
    p.extend_from_slice(&[0xfe, 131, 0xa1]);
    p.extend_from_slice(&[0x33; 32]);
    p.extend_from_slice(&[0xfe, 0]);
    p.extend_from_slice(&[0x44; 208]);
    let s = walk_records(&p, Scheme::X25519).expect("a backup with HMAC keys is well-formed");
    let ecc: Vec<(u8, u8)> = s.ecc_keys.iter().map(|k| (k.slot, k.kind)).collect();
    assert_eq!(ecc, [(129, 9), (130, 9), (131, 1)]);
    assert!(s.fido2_state);
    let lines = s.lines().join("\n");
    assert!(lines.contains("slot 130 HMAC-SHA1"), "{lines}");
    // Type 9 is an HMAC key only in the two HMAC slots.
    let mut other = p.clone();
    other[3 + 4 + 1] = 101;
    assert!(walk_records(&other, Scheme::X25519).is_none());
}

/// The AES states that held a backup key are wiped when dropped: the first two AES-256 round
/// keys are the key itself, so an unwiped key schedule leaves it in freed memory. (Secure Cell's
/// AES-256-GCM holds the same `aes` type, wiped with it.) Fails to compile without the `zeroize`
/// features of `aes` and `ctr`.
#[test]
fn aes_states_are_wiped_on_drop() {
    fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    wiped_on_drop::<aes::Aes256>();
    wiped_on_drop::<Aes256Ctr>();
}

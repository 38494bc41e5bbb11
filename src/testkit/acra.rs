//! Acra keystore fixtures built to the documented layouts (acra-keystores.md §3, §4), with an
//! independent small DER encoder and HMAC signing, so the tests do not reuse the code they check.

use openssl::base64;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// One file of a fixture: relative path, mode, bytes.
pub type FixtureFile = (String, u32, Vec<u8>);

fn random(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    openssl::rand::rand_bytes(&mut b).unwrap();
    b
}

/// A Themis EC public key as Acra writes `.pub` files: `UEC2`, length 0x2d, CRC, 33-byte point.
fn themis_public() -> Vec<u8> {
    let mut b = b"UEC2\x00\x00\x00\x2d".to_vec();
    b.extend(random(4));
    b.push(0x02);
    b.extend(random(32));
    b
}

/// A v1 keystore: one client with storage keypair, symmetric and HMAC keys, the poison keys, the
/// audit-log key, and a rotated `*.old/` history entry. Modes as Acra writes them.
pub fn v1_files(client: &str) -> Vec<FixtureFile> {
    vec![
        (".poison_key/poison_key".into(), 0o600, random(80)),
        (".poison_key/poison_key.pub".into(), 0o644, themis_public()),
        (".poison_key/poison_key_sym".into(), 0o600, random(84)),
        (format!("{client}_storage"), 0o600, random(80)),
        (format!("{client}_storage.pub"), 0o644, themis_public()),
        (format!("{client}_storage_sym"), 0o600, random(84)),
        (format!("{client}_hmac"), 0o600, random(84)),
        ("secure_log_key".into(), 0o600, random(84)),
        (
            format!("{client}_storage.old/2020-05-21T16:01:58.656663"),
            0o600,
            random(80),
        ),
    ]
}

/// One DER TLV (definite length).
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A DER SEQUENCE of already encoded parts.
pub fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// A v2 master key as `acra-keymaker --keystore=v2` makes it, base64 (the env value), and its
/// signature half.
pub fn v2_master_key() -> (String, Vec<u8>) {
    let encryption = random(32);
    let signature = random(32);
    let json = format!(
        r#"{{"encryption":"{}","signature":"{}"}}"#,
        base64::encode_block(&encryption),
        base64::encode_block(&signature)
    );
    (base64::encode_block(json.as_bytes()), signature)
}

/// A signed key ring file (`SignedContainer` with a one-key `KeyRing`) for `path` (no suffix).
pub fn key_ring(path: &str, signature_key: &[u8]) -> Vec<u8> {
    let key_data = seq(&[tlv(0x0a, &[3]), tlv(0x83, &random(68))]);
    signed_ring(path, &[der_key(0, &[key_data])], signature_key)
}

/// A `Key` (seqnum, state active, validity, `SET OF KeyData`).
pub fn der_key(seqnum: u8, key_data: &[Vec<u8>]) -> Vec<u8> {
    let utc = |t: &str| tlv(0x17, t.as_bytes());
    seq(&[
        tlv(0x02, &[seqnum]),
        tlv(0x0a, &[2]),
        utc("200101000000Z"),
        // Go's encoding/asn1 writes years from 2050 as GeneralizedTime.
        tlv(0x18, b"20700101000000Z"),
        tlv(0x31, &key_data.concat()),
    ])
}

/// A `SignedContainer` holding a `KeyRing` of `keys` for `path` (no suffix), HMAC-signed the way
/// Acra signs rings.
pub fn signed_ring(path: &str, keys: &[Vec<u8>], signature_key: &[u8]) -> Vec<u8> {
    let utc = |t: &str| tlv(0x17, t.as_bytes());
    let current = [keys.len().saturating_sub(1) as u8];
    let ring = seq(&[tlv(0x04, path.as_bytes()), seq(keys), tlv(0x02, &current)]);
    // contentType as Acra's Go code writes it: an INTEGER (encoding/asn1 only writes ENUMERATED
    // for asn1.Enumerated itself, not for a type defined on it).
    let payload = seq(&[tlv(0x02, &[1]), tlv(0x02, &[2]), utc("240102030405Z"), ring]);
    let mut context = b"AKSv2 keystore: key ring signature: ".to_vec();
    context.extend_from_slice(path.as_bytes());
    let pkey = openssl::pkey::PKey::hmac(signature_key).unwrap();
    let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
    signer.update(&context).unwrap();
    signer.update(&payload).unwrap();
    let mac = signer.sign_to_vec().unwrap();
    let sha256_oid = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    let signature = seq(&[tlv(0x06, &sha256_oid), tlv(0x04, &mac)]);
    seq(&[payload, tlv(0x31, &signature)])
}

/// A v2 keystore with the given clients, signed with `signature_key`; includes `.lock`.
pub fn v2_files(clients: &[&str], signature_key: &[u8]) -> Vec<FixtureFile> {
    let mut files = vec![
        ("version".to_string(), 0o644, b"Acra Keystore v2".to_vec()),
        (".lock".to_string(), 0o600, Vec::new()),
    ];
    let mut rings = vec![
        "audit-log".to_string(),
        "poison-record".into(),
        "poison-record-sym".into(),
    ];
    for c in clients {
        for k in ["storage", "storage-sym", "hmac-sym"] {
            rings.push(format!("client/{c}/{k}"));
        }
    }
    for r in rings {
        let der = key_ring(&r, signature_key);
        files.push((format!("{r}.keyring"), 0o600, der));
    }
    files
}

/// Writes a fixture under `dir` (created 0700, subdirectories 0700).
pub fn write_tree(dir: &Path, files: &[FixtureFile]) {
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
    for (rel, mode, data) in files {
        let path = dir.join(rel);
        let parent = path.parent().unwrap();
        if !parent.exists() {
            fs::create_dir_all(parent).unwrap();
            let mut p = parent.to_path_buf();
            while p != dir {
                fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
                p = p.parent().unwrap().to_path_buf();
            }
        }
        fs::write(&path, data).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
    }
}

/// Every file under `dir`: (relative path, mode, bytes), sorted; plus every directory's mode.
/// (std only: the test kit sits in the library, whose dependencies stay what production needs.)
pub fn read_tree(dir: &Path) -> (Vec<FixtureFile>, Vec<(PathBuf, u32)>) {
    fn walk(root: &Path, at: &Path, files: &mut Vec<FixtureFile>, dirs: &mut Vec<(PathBuf, u32)>) {
        let meta = fs::symlink_metadata(at).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let rel = at.strip_prefix(root).unwrap().to_path_buf();
        if meta.is_dir() {
            dirs.push((rel, mode));
            let mut entries: Vec<PathBuf> = fs::read_dir(at).unwrap().map(|e| e.unwrap().path()).collect();
            entries.sort();
            for e in entries {
                walk(root, &e, files, dirs);
            }
        } else {
            files.push((rel.to_str().unwrap().to_string(), mode, fs::read(at).unwrap()));
        }
    }
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    walk(dir, dir, &mut files, &mut dirs);
    (files, dirs)
}

//! Entry points for fuzzing: each feeds arbitrary bytes to one parser that reads untrusted input.
//! Used by the cargo-fuzz targets in `fuzz/` (nightly, by hand) and by the stable mutation run in
//! `tests/it/fuzz.rs` (CI). A parser may reject anything; it must never panic or hang.

use std::path::Path;

/// The YAML config parser and validator.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Config::parse(text, Path::new("/fuzz/coldkeep.yaml"));
    }
}

/// Sidecars (and so manifests) as the store reads them.
pub fn sidecar(data: &[u8]) {
    if let Ok(s) = serde_json::from_slice::<crate::bundle::Sidecar>(data) {
        let _ = serde_json::to_vec(&s);
        let _ = s.manifest.identity.as_ref().map(|i| i.short());
    }
}

/// OnlyKey backup texts.
pub fn onlykey(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(b) = crate::material::onlykey::parse(text)
    {
        let _ = b.identity();
    }
}

/// OnlyKey backup payloads: the decryption's slicing by trailer, and the record walk on bytes
/// taken as a decrypted plaintext.
pub fn onlykey_records(data: &[u8]) {
    use crate::material::onlykey_backup::{self as b, BackupKey, Scheme};
    let _ = b::walk_records(data, Scheme::X25519);
    let _ = b::open(data, &BackupKey::Ecc(zeroize::Zeroizing::new([7u8; 32])));
}

/// BitBox02 backup files, alone and as a folder of copies.
pub fn bitbox02(data: &[u8]) {
    if let Ok(b) = crate::material::bitbox02::parse(data) {
        let _ = b.id();
    }
    let half = data.len() / 2;
    let files = [("a".to_string(), &data[..half]), ("b".to_string(), &data[half..])];
    let _ = crate::material::bitbox02::check_folder("00", &files);
}

/// What a BitBox02 (or something posing as one) answers: reports reassembled, the info answer,
/// protobuf responses; and device-check records as the store reads them.
pub fn bitbox02_device(data: &[u8]) {
    use crate::hid::bitbox02::{framing::Decoder, hww::Info};
    use prost::Message;
    let mut decoder = Decoder::default();
    for chunk in data.chunks(crate::hid::REPORT_SIZE) {
        let mut report = [0u8; crate::hid::REPORT_SIZE];
        report[..chunk.len()].copy_from_slice(chunk);
        if decoder.push(&report).is_err() {
            decoder = Decoder::default();
        }
    }
    let _ = Info::parse(data);
    let _ = bitbox_api::pb::Response::decode(data);
    let _ = serde_json::from_slice::<crate::store::DeviceCheck>(data);
}

/// nodectl's cn-config.yaml.
pub fn nodectl(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(config) = crate::material::nodectl::parse(text)
    {
        for p in &config.profiles {
            let _ = p.path();
        }
    }
}

/// The tar inside a decrypted bundle (what restore reads).
pub fn bundle_tar(data: &[u8]) {
    let _ = crate::bundle::read_tar(data);
}

/// PKCS#12 and Acra key ring structure checks (DER/BER walkers).
pub fn der(data: &[u8]) {
    let _ = crate::material::p12::inspect(data, None);
    // The cost walk reads deeper (bags, algorithm parameters) and decrypts what may hide the key.
    let _ = crate::material::p12_cost::check(data, "password");
    let _ = crate::material::acra::verify_ring("client/x/storage", data, &[0u8; 32]);
}

/// known_hosts files (markers, patterns, negations, hashed names), looked up for a few hosts.
pub fn known_hosts(data: &[u8]) {
    use crate::remote::known_hosts::{KnownHosts, wildcard_match};
    let text = String::from_utf8_lossy(data);
    let kh = KnownHosts::parse(&text);
    let blob = kh.entries.first().map(|e| e.blob.clone()).unwrap_or_default();
    for (host, port) in [("127.0.0.1", 22), ("node.example", 2222), ("", 0)] {
        let _ = kh.check(host, port, &blob);
        let _ = kh.cert_authorities(host, port);
    }
    // The pattern matcher on its own: first line as pattern, the rest as the name.
    if let Some((pattern, name)) = text.split_once('\n') {
        let _ = wildcard_match(pattern, name);
    }
}

/// One key for the signature target, made once per process.
fn fuzz_keys() -> &'static crate::sign::Keys {
    static KEYS: std::sync::OnceLock<crate::sign::Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let signer = crate::sign::Signer::generate();
        let allowed = crate::sign::AllowedSigners::parse(&format!("fuzz {}", signer.public_line()))
            .expect("own key parses");
        crate::sign::Keys { signer, allowed }
    })
}

/// The message [`signature_seed`] signs.
const FUZZ_MESSAGE: &[u8] = b"{\"format\":1}\n";

/// Valid inputs for the [`signature`] target to seed mutations from: a signature by the
/// allowed key, and an allowed_signers text.
pub fn signature_seeds() -> Vec<Vec<u8>> {
    let keys = fuzz_keys();
    vec![
        keys.signer.sign(FUZZ_MESSAGE),
        format!(
            "# ops\ncoldkeep,\"ops@x\" namespaces=\"git,{}\" {} key\n",
            crate::sign::NAMESPACE,
            keys.signer.public_line()
        )
        .into_bytes(),
    ]
}

/// `.json.sig` files as the store reads them (SSHSIG armor), and allowed_signers text.
pub fn signature(data: &[u8]) {
    let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time");
    let _ = fuzz_keys().allowed.verify(FUZZ_MESSAGE, Some(data), at);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::sign::AllowedSigners::parse(text);
    }
}

/// Acra sealed keys: a Secure Cell opened with a fixed key, a Themis EC key container, and the
/// same bytes as a v2 key ring and a v1 key file opened with a master key of each version.
pub fn acra_keys(data: &[u8]) {
    use crate::material::acra::{Entry, MasterKey};
    use crate::material::{acra_open, secure_cell};
    use zeroize::Zeroizing;
    let _ = secure_cell::open_seal(&[7u8; 32], b"ctx", data);
    let _ = secure_cell::check_ec_key_pair(data, Some(data));
    let entries = [
        Entry {
            path: "keys/client/x/storage.keyring",
            mode: 0o600,
            data,
        },
        Entry {
            path: "keys/x_storage",
            mode: 0o600,
            data,
        },
        Entry {
            path: "keys/x_storage.pub",
            mode: 0o644,
            data,
        },
    ];
    let v2 = MasterKey::V2 {
        encryption: Zeroizing::new(vec![7u8; 32]),
        signature: Zeroizing::new(vec![8u8; 32]),
    };
    let _ = acra_open::open_all(&entries, 2, &v2).problems();
    let v1 = MasterKey::V1(Zeroizing::new(vec![7u8; 32]));
    let _ = acra_open::open_all(&entries, 1, &v1).problems();
}

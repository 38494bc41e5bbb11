//! Acra keystores, v1 (flat files sealed with Themis) and v2 (signed DER key rings).
//!
//! A backup is a raw copy of the keys directory (and of the public directory when it is
//! separate). Here we tell the version, check the layout and modes the way Acra does on start,
//! check each v2 key ring's DER structure, and, given the master key, each ring's HMAC signature.
//! Problems on the node are warnings: a backup of a damaged keystore beats none.

use super::asn1::{read_header, skip_element};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The v2 marker file in the keys directory.
pub const VERSION_FILE: &str = "version";
/// Exact content of the v2 marker file (no newline).
pub const VERSION_CONTENT: &[u8] = b"Acra Keystore v2";
/// Prefix of private-directory files in a bundle.
pub const KEYS_PREFIX: &str = "keys/";
/// Prefix of public-directory files in a bundle (when the public directory is separate).
pub const PUBLIC_PREFIX: &str = "public/";

/// What a read of a keystore skips: Acra's lock file and half-written key rings (`*.keyring.new`),
/// which come and go while Acra runs. One rule for the agent's reads and the node helper's.
pub fn skipped_when_read(rel: &str) -> bool {
    rel == ".lock" || rel.ends_with(".keyring.new")
}

/// The file name of a master key inside its artifact (its content is the base64 env value).
pub const MASTER_KEY_FILE: &str = "ACRA_MASTER_KEY";

/// OID 2.16.840.1.101.3.4.2.1 (sha256), content bytes: Acra's HMAC-SHA-256 signature algorithm.
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const TYPE_KEY_RING: u64 = 1;
const KEY_RING_VERSION: u64 = 2;

/// One file of a keystore tree, as named in the bundle (`keys/...` or `public/...`).
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Path in the bundle (`keys/...`, `public/...`).
    pub path: &'a str,
    /// Permission bits.
    pub mode: u32,
    /// Contents.
    pub data: &'a [u8],
}

/// A key file or key ring and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRef {
    /// Path in the bundle (`keys/...`, `public/...`).
    pub path: String,
    /// SHA-256 of the contents, hex.
    pub sha256: String,
}

/// The public identity of an Acra keystore backup. Never secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcraIdentity {
    /// 1 or 2.
    pub version: u8,
    /// Client ids found (v1: `<id>_storage` and friends; v2: `client/<id>/`).
    pub client_ids: Vec<String>,
    /// v2: the key rings; v1: every key file.
    pub keys: Vec<KeyRef>,
    /// What was wrong on the node when the backup was taken.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl AcraIdentity {
    /// `acra v2, 3 clients, 9 key rings`.
    pub fn short(&self) -> String {
        let what = if self.version == 2 {
            "key rings"
        } else {
            "key files"
        };
        format!(
            "acra v{}, {} client{}, {} {what}",
            self.version,
            self.client_ids.len(),
            if self.client_ids.len() == 1 { "" } else { "s" },
            self.keys.len()
        )
    }
}

/// Why material is not a usable Acra keystore.
#[derive(Debug, thiserror::Error)]
pub enum AcraError {
    #[error("the keystore directory is empty")]
    /// The keystore directory is empty.
    Empty,
    #[error("{0}")]
    /// The master key is not usable.
    MasterKey(String),
}

/// Tells v1 from v2 the way Acra does: a `version` file with the exact marker means v2.
pub fn detect_version(entries: &[Entry]) -> u8 {
    let marker = format!("{KEYS_PREFIX}{VERSION_FILE}");
    if entries
        .iter()
        .any(|e| e.path == marker && e.data == VERSION_CONTENT)
    {
        2
    } else {
        1
    }
}

/// Checks a fetched keystore and returns its identity. `root_mode` is the keys directory's mode;
/// `configured` the version from the config, if any.
pub fn inspect(root_mode: u32, entries: &[Entry], configured: Option<u8>) -> Result<AcraIdentity, AcraError> {
    if !entries.iter().any(|e| e.path.starts_with(KEYS_PREFIX)) {
        return Err(AcraError::Empty);
    }
    let detected = detect_version(entries);
    let version = configured.unwrap_or(detected);
    let mut warnings = Vec::new();
    if configured.is_some_and(|c| c != detected) {
        warnings.push(format!(
            "the config says version {version} but the directory looks like v{detected} \
             (a `version` file saying `Acra Keystore v2` marks v2)"
        ));
    }
    if root_mode & 0o777 != 0o700 {
        warnings.push(format!(
            "the keys directory has mode {:04o}; Acra refuses to start unless it is 0700",
            root_mode & 0o777
        ));
    }
    let mut identity = if version == 2 {
        inspect_v2(entries, &mut warnings)
    } else {
        inspect_v1(entries, &mut warnings)
    };
    // They name files from the node: control characters escaped before anyone prints them.
    identity.warnings = warnings.iter().map(|w| crate::text::escape_control(w)).collect();
    Ok(identity)
}

fn sha(data: &[u8]) -> String {
    crate::digest::sha256_hex(data)
}

fn inspect_v2(entries: &[Entry], warnings: &mut Vec<String>) -> AcraIdentity {
    let marker = format!("{KEYS_PREFIX}{VERSION_FILE}");
    match entries.iter().find(|e| e.path == marker) {
        None => warnings.push("no `version` file: Acra will not open this as a v2 keystore".into()),
        Some(v) if v.data != VERSION_CONTENT => warnings.push(format!(
            "the `version` file is {:?}, not exactly `Acra Keystore v2`{}",
            String::from_utf8_lossy(&v.data[..v.data.len().min(40)]),
            if v.data.strip_suffix(b"\n") == Some(VERSION_CONTENT) {
                " (a trailing newline makes Acra refuse it)"
            } else {
                ""
            }
        )),
        Some(_) => {}
    }
    let mut client_ids = Vec::new();
    let mut keys = Vec::new();
    for e in entries {
        let Some(rel) = e.path.strip_prefix(KEYS_PREFIX) else {
            continue;
        };
        if !rel.ends_with(".keyring") {
            continue;
        }
        if let Err(problem) = parse_ring(e.data) {
            warnings.push(format!("key ring {rel} is damaged: {problem}"));
        }
        if let Some(id) = rel.strip_prefix("client/").and_then(|r| r.split('/').next())
            && !client_ids.iter().any(|c| c == id)
        {
            client_ids.push(id.to_string());
        }
        keys.push(KeyRef {
            path: rel.to_string(),
            sha256: sha(e.data),
        });
    }
    client_ids.sort();
    AcraIdentity {
        version: 2,
        client_ids,
        keys,
        warnings: Vec::new(),
    }
}

/// v1 client key suffixes: `<id>_storage`, `<id>_storage.pub`, `<id>_storage_sym`, `<id>_hmac`.
const V1_CLIENT_SUFFIXES: &[&str] = &["_storage.pub", "_storage_sym", "_storage", "_hmac"];

fn inspect_v1(entries: &[Entry], warnings: &mut Vec<String>) -> AcraIdentity {
    let mut client_ids = Vec::new();
    let mut keys = Vec::new();
    for e in entries {
        let rel = e
            .path
            .strip_prefix(KEYS_PREFIX)
            .or_else(|| e.path.strip_prefix(PUBLIC_PREFIX))
            .unwrap_or(e.path);
        let private_dir = e.path.starts_with(KEYS_PREFIX);
        let history = rel.split('/').any(|c| c.ends_with(".old"));
        if rel.ends_with(".pub") && !history && !e.data.starts_with(b"UEC2") {
            warnings.push(format!("{rel} is not a Themis EC public key (no UEC2 header)"));
        }
        if private_dir && is_keypair_private(rel) && !history && e.mode & 0o777 > 0o600 {
            warnings.push(format!(
                "private key file {rel} has mode {:04o}: Acra refuses keypair private keys more open than 0600",
                e.mode & 0o777
            ));
        }
        if !rel.contains('/') {
            for suffix in V1_CLIENT_SUFFIXES {
                if let Some(id) = rel.strip_suffix(suffix)
                    && !id.is_empty()
                {
                    if !client_ids.iter().any(|c| c == id) {
                        client_ids.push(id.to_string());
                    }
                    break;
                }
            }
        }
        keys.push(KeyRef {
            path: e.path.to_string(),
            sha256: sha(e.data),
        });
    }
    client_ids.sort();
    AcraIdentity {
        version: 1,
        client_ids,
        keys,
        warnings: Vec::new(),
    }
}

/// Whether a v1 file is a keypair's private key, the only files whose mode Acra checks (symmetric,
/// HMAC and audit-log keys are read without a mode check).
pub(crate) fn is_keypair_private(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    !(name.ends_with(".pub")
        || name.ends_with("_sym")
        || name.ends_with("_hmac")
        || name == "secure_log_key"
        || name == "auth_key")
}

/// Client ids as they appear in a list of paths relative to the keys directory (for comparing a
/// node's keystore with a backup without reading any key).
pub fn client_ids_of(version: u8, rel_paths: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for rel in rel_paths {
        let id = if version == 2 {
            rel.strip_prefix("client/")
                .filter(|r| r.contains('/'))
                .and_then(|r| r.split('/').next())
        } else if rel.contains('/') {
            None
        } else {
            V1_CLIENT_SUFFIXES
                .iter()
                .find_map(|s| rel.strip_suffix(s))
                .filter(|id| !id.is_empty())
        };
        if let Some(id) = id
            && !ids.iter().any(|x| x == id)
        {
            ids.push(id.to_string());
        }
    }
    ids.sort();
    ids
}

/// A parsed `SignedContainer`: where its payload is, and its signatures.
struct Ring<'a> {
    payload: &'a [u8],
    /// Content of the `KeyRing` SEQUENCE (`purpose`, `keys`, `current`).
    data: &'a [u8],
    signatures: Vec<(&'a [u8], &'a [u8])>,
}

fn small_uint(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 8 || bytes[0] & 0x80 != 0 {
        return None;
    }
    Some(bytes.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b)))
}

/// Parses a v2 key ring file: DER `SignedContainer { payload { contentType, version,
/// lastModified, data }, signatures SET OF { algorithm, signature } }` with a key ring inside.
fn parse_ring(der: &[u8]) -> Result<Ring<'_>, String> {
    let outer = read_header(der, 0)?;
    if outer.tag != 0x30 || outer.len.is_none() {
        return Err("not a DER SEQUENCE".into());
    }
    if skip_element(der, 0)? != der.len() {
        return Err("trailing bytes after the container".into());
    }
    let end = outer.content + outer.len.unwrap_or(0);
    let payload_hdr = read_header(der, outer.content)?;
    let payload_end = skip_element(der, outer.content)?;
    if payload_hdr.tag != 0x30 {
        return Err("payload is not a SEQUENCE".into());
    }
    let field = |pos: usize, tag: u8, what: &str| -> Result<(usize, &[u8]), String> {
        let h = read_header(der, pos).map_err(|e| format!("{what}: {e}"))?;
        if h.tag != tag {
            return Err(format!("{what} has tag 0x{:02x}, expected 0x{tag:02x}", h.tag));
        }
        let next = skip_element(der, pos)?;
        Ok((next, &der[h.content..h.content + h.len.unwrap_or(0)]))
    };
    // Acra's Go code declares ContentType on asn1.Enumerated, which encoding/asn1 writes as an
    // INTEGER; accept the ENUMERATED tag the ASN.1 module names as well.
    let ct = read_header(der, payload_hdr.content)?;
    let tag = if ct.tag == 0x0a { 0x0a } else { 0x02 };
    let (pos, content_type) = field(payload_hdr.content, tag, "contentType")?;
    let (pos, version) = field(pos, 0x02, "version")?;
    let (pos, _) = field(pos, 0x17, "lastModified")?;
    let (pos, data) = field(pos, 0x30, "key ring data")?;
    if pos != payload_end {
        return Err("unexpected fields in the payload".into());
    }
    if small_uint(content_type) != Some(TYPE_KEY_RING) {
        return Err("content type is not a key ring".into());
    }
    if small_uint(version) != Some(KEY_RING_VERSION) {
        return Err("key ring version is not 2".into());
    }
    let set = read_header(der, payload_end)?;
    if set.tag != 0x31 {
        return Err("signatures are not a SET".into());
    }
    let mut signatures = Vec::new();
    let mut pos = set.content;
    let set_end = set.content + set.len.unwrap_or(0);
    while pos < set_end {
        let sig = read_header(der, pos)?;
        if sig.tag != 0x30 {
            return Err("a signature is not a SEQUENCE".into());
        }
        let next = skip_element(der, pos)?;
        let (after, oid) = field(sig.content, 0x06, "signature algorithm")?;
        let (after, value) = field(after, 0x04, "signature value")?;
        if after != next {
            return Err("unexpected fields in a signature".into());
        }
        signatures.push((oid, value));
        pos = next;
    }
    if set_end != end {
        return Err("unexpected fields after the signatures".into());
    }
    if !signatures.iter().any(|(oid, _)| *oid == OID_SHA256) {
        return Err("no HMAC-SHA-256 signature".into());
    }
    Ok(Ring {
        payload: &der[outer.content..payload_end],
        data,
        signatures,
    })
}

/// The content of a key ring file's `KeyRing` SEQUENCE, after checking the container structure.
pub(crate) fn ring_data(der: &[u8]) -> Result<&[u8], String> {
    parse_ring(der).map(|r| r.data)
}

/// Checks a key ring's HMAC-SHA-256 signature with the v2 signature master key. `ring_path` is
/// the path relative to the keys directory, with or without `.keyring`.
pub fn verify_ring(ring_path: &str, der: &[u8], signature_key: &[u8]) -> Result<(), String> {
    let ring = parse_ring(der)?;
    let path = ring_path.strip_suffix(".keyring").unwrap_or(ring_path);
    let mut context = b"AKSv2 keystore: key ring signature: ".to_vec();
    context.extend_from_slice(path.as_bytes());
    let expected = hmac_sha256(signature_key, &[&context, ring.payload]).map_err(|e| e.to_string())?;
    for (oid, value) in &ring.signatures {
        if *oid == OID_SHA256 && !(value.len() == expected.len() && openssl::memcmp::eq(value, &expected)) {
            return Err("signature does not match (corrupt ring, moved file, or another master key)".into());
        }
    }
    Ok(())
}

/// HMAC-SHA-256 over the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let key = openssl::pkey::PKey::hmac(key)?;
    let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key)?;
    for p in parts {
        signer.update(p)?;
    }
    signer.sign_to_vec()
}

/// A decoded `ACRA_MASTER_KEY`.
pub enum MasterKey {
    /// 32 or more raw bytes.
    V1(Zeroizing<Vec<u8>>),
    /// Separate encryption and signature keys, each at least 32 bytes.
    V2 {
        /// The encryption key.
        encryption: Zeroizing<Vec<u8>>,
        /// The signature key.
        signature: Zeroizing<Vec<u8>>,
    },
}

/// The public identity of a master-key artifact: its version and a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterKeyIdentity {
    /// Acra keystore version (1 or 2).
    pub version: u8,
    /// First 16 hex digits of SHA-256 over a fixed label and the decoded key.
    pub key_id: String,
}

#[derive(Deserialize)]
struct V2Json {
    encryption: String,
    signature: String,
}

fn b64(text: &str) -> Result<Zeroizing<Vec<u8>>, AcraError> {
    // `base64` wraps long values (a v2 key is longer than 76 characters); Go's decoder, and so
    // Acra, skips the line breaks.
    let compact: Zeroizing<String> =
        Zeroizing::new(text.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    openssl::base64::decode_block(&compact)
        .map(Zeroizing::new)
        .map_err(|_| AcraError::MasterKey("the master key is not valid base64".into()))
}

impl MasterKey {
    /// Decodes the base64 value of `ACRA_MASTER_KEY` (as made by `acra-keymaker`).
    pub fn parse(text: &str) -> Result<MasterKey, AcraError> {
        let raw = b64(text)?;
        // A v2 key is JSON; a v1 key is random bytes (which may happen to start with `{`).
        if let Ok(parsed) = serde_json::from_slice::<V2Json>(&raw) {
            let encryption = b64(&Zeroizing::new(parsed.encryption))?;
            let signature = b64(&Zeroizing::new(parsed.signature))?;
            if encryption.len() < 32 || signature.len() < 32 {
                return Err(AcraError::MasterKey(
                    "a v2 master key needs encryption and signature keys of at least 32 bytes".into(),
                ));
            }
            if encryption == signature {
                return Err(AcraError::MasterKey(
                    "the v2 master key's encryption and signature keys are equal (Acra refuses this)".into(),
                ));
            }
            return Ok(MasterKey::V2 {
                encryption,
                signature,
            });
        }
        if raw.len() < 32 {
            return Err(AcraError::MasterKey(format!(
                "the master key decodes to {} bytes; Acra needs at least 32",
                raw.len()
            )));
        }
        Ok(MasterKey::V1(raw))
    }

    /// 1 or 2.
    pub fn version(&self) -> u8 {
        match self {
            MasterKey::V1(_) => 1,
            MasterKey::V2 { .. } => 2,
        }
    }

    /// The key that signs v2 key rings.
    pub fn signature_key(&self) -> Option<&[u8]> {
        match self {
            MasterKey::V1(_) => None,
            MasterKey::V2 { signature, .. } => Some(signature),
        }
    }

    /// Version and fingerprint, for sidecars and `list`.
    pub fn identity(&self) -> MasterKeyIdentity {
        let mut material: Zeroizing<Vec<u8>> = Zeroizing::new(b"coldkeep acra master key id\0".to_vec());
        match self {
            MasterKey::V1(k) => material.extend_from_slice(k),
            MasterKey::V2 {
                encryption,
                signature,
            } => {
                material.extend_from_slice(encryption);
                material.extend_from_slice(signature);
            }
        }
        MasterKeyIdentity {
            version: self.version(),
            key_id: sha(&material)[..16].to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        openssl::base64::encode_block(bytes)
    }

    #[test]
    fn master_keys_of_both_versions() {
        let v1 = MasterKey::parse(&b64(&[7u8; 32])).unwrap();
        assert_eq!(v1.version(), 1);
        assert!(v1.signature_key().is_none());
        let json = format!(
            r#"{{"encryption":"{}","signature":"{}"}}"#,
            b64(&[1u8; 32]),
            b64(&[2u8; 32])
        );
        let v2 = MasterKey::parse(&format!("{}\n", b64(json.as_bytes()))).unwrap();
        assert_eq!(v2.version(), 2);
        assert_eq!(v2.signature_key(), Some(&[2u8; 32][..]));
        assert_ne!(v1.identity().key_id, v2.identity().key_id);
        assert_eq!(v2.identity().key_id.len(), 16);

        let bad = |text: &str| {
            MasterKey::parse(text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(bad("not base64!").contains("not valid base64"));
        assert!(bad(&b64(&[7u8; 31])).contains("31 bytes"));
        let equal = format!(r#"{{"encryption":"{0}","signature":"{0}"}}"#, b64(&[1u8; 32]));
        assert!(bad(&b64(equal.as_bytes())).contains("are equal"));
        let short = format!(
            r#"{{"encryption":"{}","signature":"{}"}}"#,
            b64(&[1u8; 32]),
            b64(&[2u8; 8])
        );
        assert!(bad(&b64(short.as_bytes())).contains("at least 32 bytes"));
        // Random v1 bytes that happen to start with `{` are a v1 key; wrapped base64 is fine.
        let mut brace = vec![b'{'];
        brace.extend([9u8; 31]);
        assert_eq!(MasterKey::parse(&b64(&brace)).unwrap().version(), 1);
        let wrapped = b64(json.as_bytes())
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(MasterKey::parse(&wrapped).unwrap().version(), 2);
    }

    #[test]
    fn client_ids_from_paths() {
        let v1 = [
            "Alice_storage",
            "Alice_storage.pub",
            "Bob_hmac",
            "secure_log_key",
            ".poison_key/poison_key",
        ];
        assert_eq!(client_ids_of(1, &v1), vec!["Alice", "Bob"]);
        let v2 = [
            "version",
            "client/Alice/storage.keyring",
            "client/Bob/hmac-sym.keyring",
            "audit-log.keyring",
        ];
        assert_eq!(client_ids_of(2, &v2), vec!["Alice", "Bob"]);
    }

    #[test]
    fn version_detection_and_warnings() {
        let e = |path, mode, data| Entry { path, mode, data };
        let marker = e("keys/version", 0o644, VERSION_CONTENT);
        let ring = e(
            "keys/client/A/storage.keyring",
            0o600,
            b"\x30\x03\x02\x01\x00junk",
        );
        assert_eq!(detect_version(&[marker, ring]), 2);
        let id = inspect(0o700, &[marker, ring], None).unwrap();
        assert_eq!((id.version, id.client_ids.clone()), (2, vec!["A".to_string()]));
        assert_eq!(id.warnings.len(), 1, "{:?}", id.warnings);
        assert!(id.warnings[0].contains("key ring client/A/storage.keyring is damaged"));
        assert!(verify_ring("client/A/storage", ring.data, &[0u8; 32]).is_err());

        // A newline after the marker makes it v1 to Acra; with `version: 2` configured, say why.
        let newline = e("keys/version", 0o644, b"Acra Keystore v2\n");
        assert_eq!(detect_version(&[newline]), 1);
        let id = inspect(0o700, &[newline], Some(2)).unwrap();
        assert!(
            id.warnings.iter().any(|w| w.contains("trailing newline")),
            "{:?}",
            id.warnings
        );

        assert!(matches!(inspect(0o700, &[], None), Err(AcraError::Empty)));
        let public_only = e("public/A_storage.pub", 0o644, b"UEC2");
        assert!(matches!(
            inspect(0o700, &[public_only], None),
            Err(AcraError::Empty)
        ));
    }
}

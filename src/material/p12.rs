//! PKCS#12 files, including BouncyCastle/cl-keytool ones (BER, 3DES, RC2-40).
//!
//! Without a password we only check the outer structure (PFX version 3). With one we open it via
//! OpenSSL (legacy provider loaded) and record aliases, the certificate fingerprint and subject,
//! and for a secp256k1 key the Tessellation node id. The bytes are never re-encoded.

use std::sync::OnceLock;

use super::asn1::{read_header, skip_element};

use openssl::bn::{BigNum, BigNumContext, MsbOption};
use openssl::ec::{EcGroup, EcKey, PointConversionForm};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{Id, PKey, Public};
use openssl::provider::Provider;
use openssl::x509::{X509, X509NameBuilder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// What a P12 file tells about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct P12Identity {
    /// PFX version from the outer structure (3 for every valid file).
    pub pfx_version: u32,
    /// Whether it was opened with a password (the fields below are then filled where available).
    pub opened: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    /// Friendly names of the key entries.
    pub aliases: Vec<String>,
    /// SHA-256 of the leaf certificate's DER, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_sha256: Option<String>,
    /// Leaf certificate subject, e.g. `CN=constellationnetwork.io, O=Constellation Labs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Key algorithm, e.g. `secp256k1`, `P-256`, `RSA-2048`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    /// Tessellation node id: hex of X||Y of the secp256k1 public key (128 hex chars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Tessellation DAG address derived from the public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dag_address: Option<String>,
}

impl P12Identity {
    /// Alias and short node id (or cert fingerprint) for tables, e.g. `alias · 1b4b9f…bf18`.
    pub fn short(&self) -> String {
        if !self.opened {
            return format!("unopened (PKCS#12 v{})", self.pfx_version);
        }
        let alias = self
            .aliases
            .first()
            .map(|a| truncate_chars(a, 20))
            .unwrap_or_else(|| "(no alias)".to_string());
        if let Some(id) = self
            .node_id
            .as_deref()
            .filter(|id| id.len() >= 10 && id.is_ascii())
        {
            format!("{alias} · {}…{}", &id[..6], &id[id.len() - 4..])
        } else if let Some(fp) = self
            .cert_sha256
            .as_deref()
            .filter(|f| f.len() >= 8 && f.is_ascii())
        {
            format!("{alias} · cert {}", &fp[..8])
        } else {
            alias
        }
    }
}

fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

/// Why a P12 could not be checked or opened. Never contains secret material.
#[derive(Debug, thiserror::Error)]
pub enum P12Error {
    #[error("not a PKCS#12 file: {0}")]
    /// The bytes are not a PKCS#12 file.
    NotPkcs12(String),
    #[error("wrong password for this PKCS#12 file (MAC check failed)")]
    /// The password does not open it.
    WrongPassword,
    #[error("PKCS#12 file could not be read: {0}")]
    /// It opens but cannot be read.
    Unreadable(String),
    #[error("PKCS#12 file not opened: {0}")]
    /// Opening it would cost more than a check may, or a cost that cannot be bounded
    /// ([`super::p12_cost`]): OpenSSL never saw it.
    TooCostly(String),
}

/// Checks and identifies a P12. `password = None` checks structure only.
///
/// The structure check walks the whole outer BER/DER tree (definite and indefinite lengths),
/// so truncated or corrupted files are reported without a password.
pub fn inspect(bytes: &[u8], password: Option<&str>) -> Result<P12Identity, P12Error> {
    let pfx_version = check_structure(bytes).map_err(P12Error::NotPkcs12)?;
    let mut id = P12Identity {
        pfx_version,
        opened: false,
        aliases: Vec::new(),
        cert_sha256: None,
        subject: None,
        key_type: None,
        node_id: None,
        dag_address: None,
    };
    let Some(password) = password else {
        return Ok(id);
    };
    if password.contains('\0') {
        // OpenSSL takes C strings; such a password can never have been used for this file.
        return Err(P12Error::WrongPassword);
    }
    ensure_providers();
    // The file names its own iteration counts, and OpenSSL honours any up to 2^31-1: bounded
    // first, so a node's file cannot hold a check for minutes per try.
    super::p12_cost::check(bytes, password).map_err(|r| match r {
        super::p12_cost::Refusal::Cost(why) => P12Error::TooCostly(why),
        super::p12_cost::Refusal::Malformed(why) => P12Error::Unreadable(why),
        super::p12_cost::Refusal::WrongPassword => P12Error::WrongPassword,
    })?;
    let pkcs12 = Pkcs12::from_der(bytes).map_err(|e| P12Error::Unreadable(ssl_reason(&e)))?;
    let parsed = pkcs12.parse2(password).map_err(map_parse_error)?;
    id.opened = true;

    if let Some(cert) = parsed.cert.as_ref() {
        if let Some(alias) = cert.alias() {
            // Printed in tables and messages: escaped once, here, where it enters.
            id.aliases
                .push(crate::text::escape_control(&String::from_utf8_lossy(alias)));
        }
        let der = cert.to_der().map_err(|e| P12Error::Unreadable(ssl_reason(&e)))?;
        id.cert_sha256 = Some(crate::digest::sha256_hex(&der));
        id.subject = Some(crate::text::escape_control(&subject_string(cert)));
    }

    // Public key: from the private key if present (that is what the node uses), else the cert.
    let spki = match (parsed.pkey.as_ref(), parsed.cert.as_ref()) {
        (Some(pkey), _) => Some(pkey.public_key_to_der()),
        (None, Some(cert)) => Some(cert.public_key().and_then(|k| k.public_key_to_der())),
        (None, None) => None,
    };
    drop(parsed);
    if let Some(spki) = spki {
        let spki = spki.map_err(|e| P12Error::Unreadable(ssl_reason(&e)))?;
        let public = PKey::public_key_from_der(&spki).map_err(|e| P12Error::Unreadable(ssl_reason(&e)))?;
        describe_public_key(&public, &mut id)?;
    }
    Ok(id)
}

fn describe_public_key(public: &PKey<Public>, id: &mut P12Identity) -> Result<(), P12Error> {
    let key_type = match public.id() {
        Id::EC => {
            let ec = public
                .ec_key()
                .map_err(|e| P12Error::Unreadable(ssl_reason(&e)))?;
            match ec.group().curve_name() {
                Some(Nid::SECP256K1) => {
                    let mut ctx = BigNumContext::new().map_err(|e| P12Error::Unreadable(ssl_reason(&e)))?;
                    let point = ec
                        .public_key()
                        .to_bytes(ec.group(), PointConversionForm::UNCOMPRESSED, &mut ctx)
                        .map_err(|e| P12Error::Unreadable(ssl_reason(&e)))?;
                    if point.len() == 65 && point[0] == 0x04 {
                        id.node_id = Some(hex::encode(&point[1..]));
                        id.dag_address = Some(dag_address(&point[1..]));
                    }
                    "secp256k1".to_string()
                }
                Some(Nid::X9_62_PRIME256V1) => "P-256".to_string(),
                Some(Nid::SECP384R1) => "P-384".to_string(),
                Some(Nid::SECP521R1) => "P-521".to_string(),
                Some(nid) => format!("EC-{}", nid.short_name().unwrap_or("unknown")),
                None => "EC".to_string(),
            }
        }
        Id::RSA => format!("RSA-{}", public.bits()),
        Id::ED25519 => "Ed25519".to_string(),
        Id::ED448 => "Ed448".to_string(),
        Id::DSA => format!("DSA-{}", public.bits()),
        other => format!("other ({})", other.as_raw()),
    };
    id.key_type = Some(key_type);
    Ok(())
}

/// `CN=..., O=...` in the certificate's order.
fn subject_string(cert: &X509) -> String {
    cert.subject_name()
        .entries()
        .map(|entry| {
            let name = entry
                .object()
                .nid()
                .short_name()
                .map(str::to_string)
                .unwrap_or_else(|_| entry.object().to_string());
            let value = entry.data().to_string().unwrap_or_else(|_| "?".to_string());
            format!("{name}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// SPKI DER prefix for a secp256k1 uncompressed public key (reference §4).
const SECP256K1_SPKI_PREFIX: &str = "3056301006072a8648ce3d020106052b8104000a03420004";

/// Tessellation DAG address of a secp256k1 public key given as X||Y (64 bytes).
fn dag_address(xy: &[u8]) -> String {
    let mut spki = hex::decode(SECP256K1_SPKI_PREFIX).expect("constant hex");
    spki.extend_from_slice(xy);
    let digest = Sha256::digest(&spki);
    let encoded = base58(&digest);
    let start = encoded.len().saturating_sub(36);
    let last36 = &encoded[start..];
    let par: u32 = last36.chars().filter_map(|c| c.to_digit(10)).sum::<u32>() % 9;
    format!("DAG{par}{last36}")
}

/// Base58 with the Bitcoin alphabet.
fn base58(input: &[u8]) -> String {
    const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    // Little-endian base-58 digits.
    let mut digits: Vec<u8> = Vec::with_capacity(input.len() * 138 / 100 + 1);
    for &byte in input {
        let mut carry = u32::from(byte);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let zeros = input.iter().take_while(|&&b| b == 0).count();
    let mut out = String::with_capacity(zeros + digits.len());
    out.extend(std::iter::repeat_n('1', zeros));
    out.extend(digits.iter().rev().map(|&d| ALPHABET[d as usize] as char));
    out
}

/// Loads OpenSSL's "legacy" (RC2-40, 3DES PBE) and "default" providers once for the process.
///
/// Loading a provider explicitly disables the implicit default, so both are loaded. If the legacy
/// module is missing we keep going; opening a legacy file then fails with OpenSSL's own reason.
fn ensure_providers() {
    static PROVIDERS: OnceLock<Vec<Provider>> = OnceLock::new();
    PROVIDERS.get_or_init(|| {
        let mut loaded = Vec::new();
        for name in ["legacy", "default"] {
            match Provider::try_load(None, name, true) {
                Ok(p) => loaded.push(p),
                Err(e) => tracing::warn!(provider = name, error = %ssl_reason(&e), "could not load OpenSSL provider"),
            }
        }
        loaded
    });
}

/// Maps a `PKCS12_parse` failure: OpenSSL reports a wrong password as "mac verify failure".
/// A file without MAC data also ends in that reason (after "mac absent"); that is not a
/// password problem, so it stays [`P12Error::Unreadable`].
fn map_parse_error(e: openssl::error::ErrorStack) -> P12Error {
    let has_reason = |needle: &str| {
        e.errors()
            .iter()
            .any(|err| err.reason().is_some_and(|r| r.eq_ignore_ascii_case(needle)))
    };
    if has_reason("mac absent") {
        return P12Error::Unreadable(ssl_reason(&e));
    }
    let is_mac_failure = e.errors().iter().any(|err| {
        err.reason()
            .map(|r| {
                let r = r.to_ascii_lowercase();
                r.contains("mac verify failure") || r.contains("mac verify error")
            })
            .unwrap_or(false)
    });
    if is_mac_failure {
        P12Error::WrongPassword
    } else {
        P12Error::Unreadable(ssl_reason(&e))
    }
}

/// Short, secret-free description of an OpenSSL error stack (reasons only).
fn ssl_reason(e: &openssl::error::ErrorStack) -> String {
    let mut reasons: Vec<String> = Vec::new();
    for err in e.errors() {
        let r = err
            .reason()
            .map(str::to_string)
            .unwrap_or_else(|| format!("error code {:#x}", err.code()));
        if !reasons.contains(&r) {
            reasons.push(r);
        }
    }
    if reasons.is_empty() {
        "unknown OpenSSL error".to_string()
    } else {
        reasons.join("; ")
    }
}

// ---------------------------------------------------------------------------------------------
// Structure check of the outer PFX.

/// OID 1.2.840.113549.1.7.1 (pkcs7-data), content bytes.
const OID_PKCS7_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];

/// Checks the outer PFX structure; returns the PFX version (always 3 on success).
fn check_structure(bytes: &[u8]) -> Result<u32, String> {
    if bytes.is_empty() {
        return Err("empty file".to_string());
    }
    if bytes[0] != 0x30 {
        return Err("does not start with an ASN.1 SEQUENCE".to_string());
    }
    let outer = read_header(bytes, 0)?;
    let outer_end = skip_element(bytes, 0)?;
    // Content end (before end-of-contents octets for an indefinite outer SEQUENCE).
    let content_end = match outer.len {
        Some(len) => outer.content + len,
        None => outer_end - 2,
    };

    // version INTEGER
    let v = read_header(bytes, outer.content).map_err(|e| format!("PFX version missing: {e}"))?;
    if v.tag != 0x02 {
        return Err("PFX does not start with an INTEGER version".to_string());
    }
    let vlen = v.len.unwrap_or(0);
    let vbytes = &bytes[v.content..v.content + vlen];
    if vlen == 0 || vlen > 4 || vbytes[0] & 0x80 != 0 {
        return Err("PFX version is not a small non-negative integer".to_string());
    }
    let version = vbytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    if version != 3 {
        return Err(format!("PFX version is {version}, expected 3"));
    }

    // authSafe ContentInfo SEQUENCE { contentType OID, ... }
    let ci_pos = v.content + vlen;
    if ci_pos >= content_end {
        return Err("PFX has no authSafe ContentInfo".to_string());
    }
    let ci = read_header(bytes, ci_pos)?;
    if ci.tag != 0x30 {
        return Err("PFX authSafe is not a ContentInfo SEQUENCE".to_string());
    }
    let oid = read_header(bytes, ci.content)?;
    if oid.tag != 0x06 {
        return Err("ContentInfo does not start with an OID".to_string());
    }
    let oid_bytes = &bytes[oid.content..oid.content + oid.len.unwrap_or(0)];
    if oid_bytes != OID_PKCS7_DATA {
        return Err("authSafe content type is not pkcs7-data (1.2.840.113549.1.7.1)".to_string());
    }
    Ok(version)
}

// ---------------------------------------------------------------------------------------------
// Generation

/// How [`generate`] writes the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerateStyle {
    /// Like cl-keytool/BouncyCastle: 3DES key bag, RC2-40 cert bag, HMAC-SHA1 MAC
    /// (needs `openssl pkcs12 -legacy` to open with OpenSSL 3).
    Legacy,
    /// OpenSSL 3 defaults: AES-256-CBC with PBKDF2, HMAC-SHA256 MAC.
    Modern,
}

/// Key-bag/cert-bag PBE iterations for [`GenerateStyle::Legacy`] (cl-keytool uses 51,200; lower
/// here to keep test and demo generation fast).
const LEGACY_KEY_ITER: u32 = 2048;
/// MAC iterations for [`GenerateStyle::Legacy`] (cl-keytool uses 102,400).
const LEGACY_MAC_ITER: u32 = 2048;
/// Certificate validity (cl-keytool uses 365,000 days).
const VALIDITY_DAYS: u32 = 365_000;

/// Generates a cl-keytool-like P12: a new secp256k1 key with a self-signed certificate
/// `CN=constellationnetwork.io, O=Constellation Labs` (ECDSA-SHA512), friendlyName = `alias`.
pub fn generate(password: &str, alias: &str, style: GenerateStyle) -> Result<Zeroizing<Vec<u8>>, P12Error> {
    if password.contains('\0') || alias.contains('\0') {
        return Err(P12Error::Unreadable(
            "password and alias must not contain NUL characters".to_string(),
        ));
    }
    ensure_providers();
    let err = |e: openssl::error::ErrorStack| P12Error::Unreadable(ssl_reason(&e));

    let group = EcGroup::from_curve_name(Nid::SECP256K1).map_err(err)?;
    let ec = EcKey::generate(&group).map_err(err)?;
    let pkey = PKey::from_ec_key(ec).map_err(err)?;

    let mut name = X509NameBuilder::new().map_err(err)?;
    name.append_entry_by_nid(Nid::COMMONNAME, "constellationnetwork.io")
        .map_err(err)?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "Constellation Labs")
        .map_err(err)?;
    let name = name.build();

    let mut serial = BigNum::new().map_err(err)?;
    serial.rand(63, MsbOption::MAYBE_ZERO, false).map_err(err)?;
    let serial = serial.to_asn1_integer().map_err(err)?;
    let not_before = openssl::asn1::Asn1Time::days_from_now(0).map_err(err)?;
    let not_after = openssl::asn1::Asn1Time::days_from_now(VALIDITY_DAYS).map_err(err)?;

    let mut builder = X509::builder().map_err(err)?;
    builder.set_version(2).map_err(err)?;
    builder.set_serial_number(&serial).map_err(err)?;
    builder.set_subject_name(&name).map_err(err)?;
    builder.set_issuer_name(&name).map_err(err)?;
    builder.set_not_before(&not_before).map_err(err)?;
    builder.set_not_after(&not_after).map_err(err)?;
    builder.set_pubkey(&pkey).map_err(err)?;
    builder.sign(&pkey, MessageDigest::sha512()).map_err(err)?;
    let cert = builder.build();

    let mut p12 = Pkcs12::builder();
    p12.name(alias).pkey(&pkey).cert(&cert);
    match style {
        GenerateStyle::Legacy => {
            p12.key_algorithm(Nid::PBE_WITHSHA1AND3_KEY_TRIPLEDES_CBC)
                .cert_algorithm(Nid::PBE_WITHSHA1AND40BITRC2_CBC)
                .mac_md(MessageDigest::sha1())
                .key_iter(LEGACY_KEY_ITER)
                .mac_iter(LEGACY_MAC_ITER);
        }
        GenerateStyle::Modern => {
            p12.mac_md(MessageDigest::sha256());
        }
    }
    let built = p12.build2(password).map_err(err)?;
    let der = Zeroizing::new(built.to_der().map_err(err)?);
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::Instant;

    const FIXTURE_DIR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tessellation-local-test-key-0"
    );

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURE_DIR}/{name}")).expect("fixture present")
    }

    fn fixture_text(name: &str) -> String {
        String::from_utf8(fixture(name)).unwrap().trim().to_string()
    }

    #[test]
    fn fixture_opens_with_password() {
        let id = inspect(&fixture("key.p12"), Some("password")).unwrap();
        assert!(id.opened);
        assert_eq!(id.pfx_version, 3);
        assert_eq!(id.aliases, vec!["alias".to_string()]);
        assert_eq!(id.key_type.as_deref(), Some("secp256k1"));
        assert_eq!(id.node_id.as_deref(), Some(fixture_text("peer_id").as_str()));
        assert_eq!(id.dag_address.as_deref(), Some(fixture_text("address").as_str()));
        assert_eq!(
            id.subject.as_deref(),
            Some("CN=constellationnetwork.io, O=Constellation Labs")
        );
        let fp = id.cert_sha256.as_deref().unwrap();
        assert_eq!(fp.len(), 64);
        let short = id.short();
        assert_eq!(short, "alias · 1b4b9f…bf18");
        assert!(short.chars().count() < 40);
    }

    #[test]
    fn fixture_wrong_password() {
        let bytes = fixture("key.p12");
        for pw in ["wrong", "", "Password", "password ", "pass\0word"] {
            match inspect(&bytes, Some(pw)) {
                Err(P12Error::WrongPassword) => {}
                other => panic!("password {pw:?}: expected WrongPassword, got {other:?}"),
            }
        }
    }

    #[test]
    fn fixture_structure_only() {
        let id = inspect(&fixture("key.p12"), None).unwrap();
        assert!(!id.opened);
        assert_eq!(id.pfx_version, 3);
        assert!(id.aliases.is_empty() && id.node_id.is_none() && id.cert_sha256.is_none());
        assert_eq!(id.short(), "unopened (PKCS#12 v3)");
        // The fixture is BER with indefinite lengths.
        assert_eq!(&fixture("key.p12")[..2], &[0x30, 0x80]);
    }

    #[test]
    fn dag_address_from_node_id() {
        let xy = hex::decode(fixture_text("peer_id")).unwrap();
        assert_eq!(dag_address(&xy), fixture_text("address"));
    }

    #[test]
    fn base58_known_values() {
        assert_eq!(base58(b""), "");
        assert_eq!(base58(&[0]), "1");
        assert_eq!(base58(&[0, 0, 1]), "112");
        assert_eq!(base58(b"hello world"), "StV1DL6CwTryKyV");
    }

    fn expect_rejected(bytes: &[u8], password: Option<&str>) -> P12Error {
        match inspect(bytes, password) {
            Err(e @ (P12Error::NotPkcs12(_) | P12Error::Unreadable(_))) => e,
            other => panic!("expected rejection, got {other:?}"),
        }
    }

    #[test]
    fn not_pkcs12_inputs() {
        let e = expect_rejected(b"", None);
        assert_eq!(e.to_string(), "not a PKCS#12 file: empty file");
        let e = expect_rejected(b"-----BEGIN CERTIFICATE-----\nMIIB\n", None);
        assert!(e.to_string().contains("does not start with an ASN.1 SEQUENCE"));
        expect_rejected(b"hello, this is a text file\n", Some("password"));
        // DER PFX with version 2.
        let v2 = [
            0x30, 0x10, 0x02, 0x01, 0x02, 0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
            0x07, 0x01,
        ];
        let e = expect_rejected(&v2, None);
        assert_eq!(e.to_string(), "not a PKCS#12 file: PFX version is 2, expected 3");
        expect_rejected(&v2, Some("password"));
        // Same with version 3 passes the structure check but OpenSSL cannot read it.
        let mut v3 = v2;
        v3[4] = 3;
        assert!(inspect(&v3, None).is_ok());
        expect_rejected(&v3, Some("password"));
        // Wrong content type (signedData).
        let mut signed = v3;
        signed[17] = 0x02;
        expect_rejected(&signed, None);
        // A bare SEQUENCE of nothing / huge lengths / deep nesting.
        expect_rejected(&[0x30, 0x00], None);
        expect_rejected(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], None);
        expect_rejected(&[0x30, 0x88, 1, 2, 3, 4, 5, 6, 7, 8], None);
        let deep: Vec<u8> = std::iter::repeat_n([0x30u8, 0x80], 100_000).flatten().collect();
        expect_rejected(&deep, None);
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        for i in 0..5000 {
            let len = rng.gen_range(0..200);
            let mut buf: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
            if i % 2 == 0 && !buf.is_empty() {
                buf[0] = 0x30; // get past the first check more often
            }
            let _ = inspect(&buf, None);
        }
        let random: Vec<u8> = (0..512).map(|_| rng.r#gen()).collect();
        expect_rejected(&random, Some("password"));
    }

    #[test]
    fn truncated_fixture_every_length() {
        let bytes = fixture("key.p12");
        for len in 0..bytes.len() {
            expect_rejected(&bytes[..len], None);
        }
        for len in [
            0,
            1,
            2,
            10,
            100,
            bytes.len() / 2,
            bytes.len() - 2,
            bytes.len() - 1,
        ] {
            expect_rejected(&bytes[..len], Some("password"));
        }
    }

    #[test]
    fn corrupted_fixture_with_password() {
        let mut bytes = fixture("key.p12");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        // Either the structure walk or the MAC catches it; never a success.
        assert!(inspect(&bytes, Some("password")).is_err());
    }

    fn round_trip(style: GenerateStyle) -> Vec<u8> {
        let start = Instant::now();
        let bytes = generate("correct horse battery", "nodeadmin-alias", style).unwrap();
        eprintln!("generate({style:?}) took {:?}", start.elapsed());
        let id = inspect(&bytes, Some("correct horse battery")).unwrap();
        assert!(id.opened);
        assert_eq!(id.aliases, vec!["nodeadmin-alias".to_string()]);
        assert_eq!(id.key_type.as_deref(), Some("secp256k1"));
        let node_id = id.node_id.as_deref().unwrap();
        assert_eq!(node_id.len(), 128);
        assert!(
            node_id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let dag = id.dag_address.as_deref().unwrap();
        assert!(dag.starts_with("DAG") && dag.len() == 40, "{dag}");
        assert_eq!(
            id.subject.as_deref(),
            Some("CN=constellationnetwork.io, O=Constellation Labs")
        );
        assert!(matches!(
            inspect(&bytes, Some("wrong")),
            Err(P12Error::WrongPassword)
        ));
        let structure = inspect(&bytes, None).unwrap();
        assert!(!structure.opened);
        bytes.to_vec()
    }

    #[test]
    fn generate_legacy_round_trip() {
        round_trip(GenerateStyle::Legacy);
    }

    #[test]
    fn generate_modern_round_trip() {
        round_trip(GenerateStyle::Modern);
    }

    #[test]
    fn generate_twice_gives_different_keys() {
        let a = inspect(&generate("pw", "a", GenerateStyle::Modern).unwrap(), Some("pw")).unwrap();
        let b = inspect(&generate("pw", "a", GenerateStyle::Modern).unwrap(), Some("pw")).unwrap();
        assert_ne!(a.node_id, b.node_id);
    }

    #[test]
    fn generate_rejects_nul() {
        assert!(generate("a\0b", "alias", GenerateStyle::Legacy).is_err());
        assert!(generate("pw", "al\0ias", GenerateStyle::Legacy).is_err());
    }

    fn openssl_info(bytes: &[u8], extra: &[&str], password: &str) -> Option<(bool, String)> {
        let mut child = match Command::new("openssl")
            .arg("pkcs12")
            .args(extra)
            .args(["-info", "-nokeys", "-passin"])
            .arg(format!("pass:{password}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("note: openssl CLI not available ({e}); skipping CLI check");
                return None;
            }
        };
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Some((out.status.success(), text))
    }

    #[test]
    fn generated_legacy_opens_with_openssl_cli() {
        let bytes = generate("cli-pass-123", "cli-alias", GenerateStyle::Legacy).unwrap();
        let Some((ok, text)) = openssl_info(&bytes, &["-legacy"], "cli-pass-123") else {
            return;
        };
        assert!(ok, "openssl failed: {text}");
        assert!(text.contains("MAC: sha1"), "{text}");
        assert!(
            text.contains("pbeWithSHA1And40BitRC2-CBC"),
            "cert bag not RC2-40: {text}"
        );
        assert!(
            text.contains("pbeWithSHA1And3-KeyTripleDES-CBC"),
            "key bag not 3DES: {text}"
        );
        assert!(text.contains("friendlyName: cli-alias"), "{text}");
        assert!(
            text.contains("CN = constellationnetwork.io, O = Constellation Labs")
                || text.contains("CN=constellationnetwork.io"),
            "{text}"
        );
        // Wrong password is refused by the CLI too.
        let (ok, _) = openssl_info(&bytes, &["-legacy"], "nope").unwrap();
        assert!(!ok);
    }

    #[test]
    fn generated_modern_opens_with_openssl_cli() {
        let bytes = generate("cli-pass-123", "cli-alias", GenerateStyle::Modern).unwrap();
        let Some((ok, text)) = openssl_info(&bytes, &[], "cli-pass-123") else {
            return;
        };
        assert!(ok, "openssl failed: {text}");
        assert!(text.contains("MAC: sha256"), "{text}");
        assert!(text.contains("AES-256-CBC"), "{text}");
    }

    #[test]
    fn fixture_matches_openssl_cli() {
        let bytes = fixture("key.p12");
        let Some((ok, text)) = openssl_info(&bytes, &["-legacy"], "password") else {
            return;
        };
        assert!(ok, "{text}");
        assert!(text.contains("MAC: sha1, Iteration 102400"), "{text}");
    }

    #[test]
    fn short_variants() {
        let mut id = P12Identity {
            pfx_version: 3,
            opened: true,
            aliases: vec![],
            cert_sha256: Some("1a2b3c4d5e6f".repeat(6)),
            subject: None,
            key_type: Some("RSA-2048".into()),
            node_id: None,
            dag_address: None,
        };
        assert_eq!(id.short(), "(no alias) · cert 1a2b3c4d");
        id.aliases = vec!["a-very-long-alias-name-that-goes-on-and-on".into()];
        assert!(id.short().chars().count() <= 40, "{}", id.short());
        id.cert_sha256 = None;
        assert!(id.short().starts_with("a-very-long"));
    }
}

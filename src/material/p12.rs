//! PKCS#12 files, including BouncyCastle/cl-keytool ones (BER, 3DES, RC2-40).
//!
//! Without a password we only check the outer structure (PFX version 3). With one we open it via
//! OpenSSL (legacy provider loaded) and record aliases, the certificate fingerprint and subject,
//! and for a secp256k1 key the Tessellation node id. The bytes are never re-encoded.

use serde::{Deserialize, Serialize};

/// What a P12 file tells about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct P12Identity {
    /// PFX version from the outer structure (3 for every valid file).
    pub pfx_version: u32,
    /// Whether it was opened with a password (the fields below are then filled where available).
    pub opened: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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
    /// Alias and short node id (or cert fingerprint) for tables.
    pub fn short(&self) -> String {
        todo!()
    }
}

/// Why a P12 could not be checked or opened. Never contains secret material.
#[derive(Debug, thiserror::Error)]
pub enum P12Error {
    #[error("not a PKCS#12 file: {0}")]
    NotPkcs12(String),
    #[error("wrong password for this PKCS#12 file (MAC check failed)")]
    WrongPassword,
    #[error("PKCS#12 file could not be read: {0}")]
    Unreadable(String),
}

/// Checks and identifies a P12. `password = None` checks structure only.
pub fn inspect(bytes: &[u8], password: Option<&str>) -> Result<P12Identity, P12Error> {
    let _ = (bytes, password);
    todo!()
}

/// How [`generate`] writes the file. (temporary stub; replaced by the p12 module's version)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerateStyle {
    Legacy,
    Modern,
}

/// Generates a cl-keytool-like P12 (stub).
pub fn generate(
    password: &str,
    alias: &str,
    style: GenerateStyle,
) -> Result<zeroize::Zeroizing<Vec<u8>>, P12Error> {
    let _ = (password, alias, style);
    todo!()
}

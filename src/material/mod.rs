//! Key material: recognise, validate and identify what was fetched.

pub mod acra;
pub mod acra_open;
mod asn1;
pub mod bitbox02;
pub mod nodectl;
pub mod onlykey;
pub mod onlykey_backup;
pub mod p12;
pub mod p12_cost;
pub mod secure_cell;

use serde::{Deserialize, Serialize};

/// The public identity of backed-up material, recorded in the sidecar. Never secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Identity {
    /// A PKCS#12 keystore.
    P12(p12::P12Identity),
    /// An Acra keystore.
    Acra(acra::AcraIdentity),
    /// An Acra master key, stored apart from its keystore.
    AcraMasterKey(acra::MasterKeyIdentity),
    #[serde(rename = "onlykey")]
    /// An OnlyKey backup.
    OnlyKey(onlykey::OnlyKeyIdentity),
    #[serde(rename = "bitbox02")]
    /// A BitBox02 backup.
    BitBox02(bitbox02::BitBox02Identity),
    /// A plain file (`kind: file`): only its size and digest say what it is.
    File(FileIdentity),
}

/// What identifies a plain file: its size and SHA-256 (no secret: a digest of a high-entropy
/// or already-known file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileIdentity {
    /// Bytes.
    pub size: u64,
    /// Lowercase hex SHA-256.
    pub sha256: String,
}

impl Identity {
    /// A short human label for tables: alias + short node id, or a fingerprint.
    pub fn short(&self) -> String {
        match self {
            Identity::P12(p) => p.short(),
            Identity::Acra(a) => a.short(),
            Identity::AcraMasterKey(m) => format!("acra v{} master key {}", m.version, m.key_id),
            Identity::OnlyKey(o) => o.short(),
            Identity::BitBox02(b) => b.short(),
            Identity::File(f) => format!(
                "file, {} bytes, sha256 {}…",
                f.size,
                &f.sha256[..12.min(f.sha256.len())]
            ),
        }
    }
}

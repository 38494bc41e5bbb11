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

/// What identifies a plain file: its size, and its keyed hash (never a plain SHA-256 outside
/// the ciphertext: a passphrase file or a template-plus-secret config is guessable offline).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileIdentity {
    /// Bytes.
    pub size: u64,
    /// Lowercase hex SHA-256: only in artifacts from before keyed hashes (read, never shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Keyed hash (see [`crate::digest::Keyed`]), set when the artifact is sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac: Option<String>,
}

impl FileIdentity {
    /// The identity as output may show it: the plain SHA-256 of an older artifact left out.
    pub fn shown(&self) -> FileIdentity {
        FileIdentity {
            sha256: None,
            ..self.clone()
        }
    }
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
            Identity::File(f) => match &f.hmac {
                Some(h) => format!("file, {} bytes, keyed hash {}…", f.size, &h[..12.min(h.len())]),
                None => format!("file, {} bytes", f.size),
            },
        }
    }
}

//! Key material: recognise, validate and identify what was fetched.

pub mod nodectl;
pub mod p12;

use serde::{Deserialize, Serialize};

/// The public identity of backed-up material, recorded in the sidecar. Never secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Identity {
    P12(p12::P12Identity),
}

impl Identity {
    /// A short human label for tables: alias + short node id, or a fingerprint.
    pub fn short(&self) -> String {
        match self {
            Identity::P12(p) => p.short(),
        }
    }
}

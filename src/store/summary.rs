//! What a listing holds per artifact. [`Store::list`](super::Store::list) gives whole
//! [`Sidecar`]s (for anything that acts on an artifact); `list` and `status` only show a few
//! fields, and building a whole sidecar per artifact (host keys, recipients, every file's
//! remote path and digest) was most of the time and memory of listing 100,000 artifacts from
//! the index. [`Summary`] is that lighter view: parsed straight from the index's cached JSON,
//! skipping what it does not hold.

use crate::bundle::{Purpose, Sidecar};
use crate::material::Identity;
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A type a listing can hold per artifact: built from an index entry's cached JSON (the
/// sidecar with its manifest nested) or from a sidecar read from disk.
pub trait Listed: Sized + Send {
    /// From the cached JSON of an index entry; `None` if it does not parse (read from disk).
    fn from_cache(json: &str) -> Option<Self>;
    /// From a sidecar read from disk.
    fn from_sidecar(sidecar: Sidecar) -> Self;
    /// The node the sidecar names.
    fn node(&self) -> &str;
    /// The keystore the sidecar names.
    fn keystore(&self) -> &str;
    /// When the material was fetched (a future date makes a valid signature bad).
    fn created_at(&self) -> DateTime<Utc>;
    /// Backup or pre-restore (only backups count as the newest).
    fn purpose(&self) -> Purpose;
}

/// A sidecar as `list` and `status` show it.
#[derive(Debug, Clone, Deserialize)]
pub struct Summary {
    /// The manifest's shown fields.
    pub manifest: SummaryManifest,
    /// Ciphertext size in bytes.
    pub ciphertext_size: u64,
    /// The last time a backup found the same material.
    pub seen_unchanged_at: Option<DateTime<Utc>>,
}

/// The fields of a [`crate::bundle::Manifest`] that listings show.
#[derive(Debug, Clone, Deserialize)]
pub struct SummaryManifest {
    /// The node.
    pub node: String,
    /// The keystore.
    pub keystore: String,
    /// The artifact kind.
    pub kind: String,
    /// Backup or pre-restore.
    pub purpose: Purpose,
    /// When the material was fetched.
    pub created_at: DateTime<Utc>,
    /// The files inside (their names only).
    pub files: Vec<FileName>,
    /// The public identity.
    pub identity: Option<Identity>,
}

/// A bundle file's name (the rest of its entry is not listed).
#[derive(Debug, Clone, Deserialize)]
pub struct FileName {
    /// Relative name inside the bundle.
    pub path: String,
}

impl Listed for Summary {
    fn from_cache(json: &str) -> Option<Summary> {
        serde_json::from_str(json).ok()
    }

    fn from_sidecar(s: Sidecar) -> Summary {
        let m = s.manifest;
        Summary {
            manifest: SummaryManifest {
                node: m.node,
                keystore: m.keystore,
                kind: m.kind,
                purpose: m.purpose,
                created_at: m.created_at,
                files: m.files.into_iter().map(|f| FileName { path: f.path }).collect(),
                identity: m.identity,
            },
            ciphertext_size: s.ciphertext_size,
            seen_unchanged_at: s.seen_unchanged_at,
        }
    }

    fn node(&self) -> &str {
        &self.manifest.node
    }

    fn keystore(&self) -> &str {
        &self.manifest.keystore
    }

    fn created_at(&self) -> DateTime<Utc> {
        self.manifest.created_at
    }

    fn purpose(&self) -> Purpose {
        self.manifest.purpose
    }
}

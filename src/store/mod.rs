//! The cold-storage layout: `<root>/<node>/<keystore>/<UTC stamp>-<short id>.age` + `.json`.
//!
//! Every artifact goes to the primary store and to each replica. Directories are 0700, files
//! 0600, and writes are atomic (temp file, fsync, rename, fsync directory): a crash leaves either
//! nothing or a whole artifact.

use crate::bundle::Sidecar;
use crate::config::StoreConfig;
use std::path::PathBuf;

/// Why a store operation failed; always names the path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// The primary store and its replicas.
#[derive(Debug, Clone)]
pub struct Store {
    pub primary: PathBuf,
    pub replicas: Vec<PathBuf>,
}

/// One stored copy (primary or replica) of an artifact.
#[derive(Debug, Clone)]
pub struct Copy {
    /// The store root holding it.
    pub root: PathBuf,
    pub age_path: PathBuf,
    pub sidecar_path: PathBuf,
    /// Both files exist.
    pub present: bool,
}

/// An artifact as listed: its sidecar and where its copies are.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub node: String,
    pub keystore: String,
    /// `<UTC stamp>-<short id>`, e.g. `20261122T031500Z-3f9a1c2b`.
    pub id: String,
    pub sidecar: Sidecar,
    /// Primary first, then replicas in config order.
    pub copies: Vec<Copy>,
}

/// Something found in the store that is not a whole, readable artifact.
#[derive(Debug, Clone)]
pub struct Problem {
    pub path: PathBuf,
    pub message: String,
}

/// Result of [`Store::list`]: artifacts oldest first per keystore, plus problems found.
#[derive(Debug, Default)]
pub struct Listing {
    pub artifacts: Vec<Artifact>,
    pub problems: Vec<Problem>,
}

impl Store {
    /// The store described by the config (nothing is created yet).
    pub fn new(cfg: &StoreConfig) -> Store {
        Store {
            primary: cfg.path.clone(),
            replicas: cfg.replicas.clone(),
        }
    }

    /// Writes the artifact to the primary and every replica; returns its id. The id is the
    /// sidecar's `created_at` stamp plus the first 8 hex digits of the ciphertext hash.
    pub fn write(&self, sidecar: &Sidecar, ciphertext: &[u8]) -> Result<String, StoreError> {
        let _ = (sidecar, ciphertext);
        todo!()
    }

    /// Lists artifacts (all, or one node's), merging copies across primary and replicas.
    pub fn list(&self, node: Option<&str>) -> Result<Listing, StoreError> {
        let _ = node;
        todo!()
    }

    /// Reads one copy's ciphertext and sidecar.
    pub fn read(&self, copy: &Copy) -> Result<(Vec<u8>, Sidecar), StoreError> {
        let _ = copy;
        todo!()
    }
}

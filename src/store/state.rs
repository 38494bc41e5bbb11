//! What the last runs did, per node and keystore: `<store>/.coldkeep/state.json`, for `status`
//! and the metrics file. Written atomically, under the store lock.

use super::{StoreError, create_private_dirs, write_atomic};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Directory of the state file in the primary store.
pub const STATE_DIR: &str = ".coldkeep";

/// The last success and the last failure of one keystore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeystoreState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The last successful backup.
    pub last_success: Option<DateTime<Utc>>,
    /// The artifact the last success wrote (or found unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_artifact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Size of the artifact of the last success.
    pub last_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The last failed attempt.
    pub last_failure: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Why it failed.
    pub last_error: Option<String>,
    /// Why the last success was taken without its identity checked (a configured P12 password
    /// unset or stale); None when it was checked. Recorded from the run: an unchanged P12
    /// reuses a checked artifact even when the check fails now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_unchecked: Option<String>,
}

impl KeystoreState {
    /// Whether the most recent attempt failed.
    pub fn failing(&self) -> bool {
        match (self.last_failure, self.last_success) {
            (Some(f), Some(s)) => f > s,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// The whole state file: `"node/keystore"` -> state, plus the last run's duration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    #[serde(default)]
    /// Per `node/keystore`.
    pub keystores: BTreeMap<String, KeystoreState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Duration of the last run.
    pub last_run_seconds: Option<f64>,
    /// The last scheduled verification of the whole store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyState>,
}

/// What the daemon's last scheduled verification found, for `status` and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifyState {
    /// When it finished.
    pub at: DateTime<Utc>,
    /// Whether it decrypted (an identity was configured).
    pub deep: bool,
    /// How many artifacts it checked.
    pub artifacts: u64,
    /// How long it took.
    pub seconds: f64,
    /// Problems found, by kind (`hash`, `missing`, ...).
    pub problems: BTreeMap<String, u64>,
    /// `"node/keystore"` -> what is wrong with its artifacts (so `status` flags the keystore).
    #[serde(default)]
    pub bad: BTreeMap<String, Vec<String>>,
    /// Problems not tied to one keystore (files in the store that are not artifacts).
    #[serde(default)]
    pub store_problems: Vec<String>,
}

impl RunState {
    fn path(root: &Path) -> PathBuf {
        root.join(STATE_DIR).join("state.json")
    }

    /// Reads the state (empty when there is none yet).
    pub fn load(root: &Path) -> Result<RunState, StoreError> {
        let path = Self::path(root);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Invalid {
                path,
                message: format!("not a valid state file: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RunState::default()),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Writes the state atomically (hold the store lock).
    pub fn save(&self, root: &Path) -> Result<(), StoreError> {
        let dir = root.join(STATE_DIR);
        create_private_dirs(root, &dir)?;
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| StoreError::Invalid {
            path: dir.clone(),
            message: e.to_string(),
        })?;
        json.push(b'\n');
        write_atomic(&dir, &Self::path(root), &json)
    }

    /// The entry of one keystore, created empty when missing.
    pub fn entry(&mut self, node: &str, keystore: &str) -> &mut KeystoreState {
        self.keystores.entry(format!("{node}/{keystore}")).or_default()
    }

    /// The entry of one keystore, if any.
    pub fn get(&self, node: &str, keystore: &str) -> Option<&KeystoreState> {
        self.keystores.get(&format!("{node}/{keystore}"))
    }
}

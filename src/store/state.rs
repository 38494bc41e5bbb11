//! What the last runs did, per node and keystore: `<store>/.coldkeep/state.json`, for `status`
//! and the metrics file. Written atomically, under the store lock.
//!
//! The file lies in the store, which whoever can write the store can edit: turning `status`
//! from PROBLEM to OK while backups fail was one edit. So it is authenticated like the index
//! (`index.rs`): its first line is `coldkeep-state-v1 <HMAC-SHA256>` over its path and the JSON
//! body that follows, keyed from the signing key. A file that does not authenticate (edited,
//! copied from another store, written under another key or by a version from before) is never
//! read as state: `status` reports it as a problem, and the next writer starts a new one.
//! What the MAC cannot stop is an older authentic file put back (a replay): it hides failures
//! only since that file was written, and `status --max-age` still sees the newest backup's age
//! from the signed sidecars.

use super::{Store, StoreError, create_private_dirs, write_atomic};
use chrono::{DateTime, Utc};
use hmac::Mac;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Directory of the state file in the primary store.
pub const STATE_DIR: &str = ".coldkeep";

/// What `status` says of a state file that does not authenticate.
pub const NOT_AUTHENTIC: &str = "the run state does not authenticate: edited or replaced by someone who can write \
     the store, copied from another store (or the store was moved), or written by an older coldkeep or under \
     another signing key; it is not trusted (the next backup run writes a new one)";

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

/// The first word of an authenticated state file.
const MAGIC: &str = "coldkeep-state-v1";

/// The HMAC of a state file's body, bound to the file's path (a state file copied from another
/// store does not authenticate).
fn mac(key: &[u8; 32], path: &Path, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    use std::os::unix::ffi::OsStrExt;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    let path = path.as_os_str().as_bytes();
    mac.update(&(path.len() as u64).to_le_bytes());
    mac.update(path);
    mac.update(body);
    mac
}

/// The key that authenticates a store's state file.
fn key(store: &Store) -> Result<zeroize::Zeroizing<[u8; 32]>, StoreError> {
    match &store.keys {
        Some(keys) => Ok(keys.signer.derive_key(b"coldkeep run state v1\0")),
        None => Err(StoreError::Invalid {
            path: RunState::path(&store.primary),
            message: "no signing key loaded: the run state cannot be authenticated".into(),
        }),
    }
}

impl RunState {
    fn path(root: &Path) -> PathBuf {
        root.join(STATE_DIR).join("state.json")
    }

    /// Reads the primary store's state (empty when there is none yet); `Ok(None)` when the
    /// file is there but does not authenticate (see the module doc).
    pub fn load_checked(store: &Store) -> Result<Option<RunState>, StoreError> {
        let path = Self::path(&store.primary);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(RunState::default())),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let key = key(store)?;
        let Some(newline) = bytes.iter().position(|b| *b == b'\n') else {
            return Ok(None);
        };
        let tag = std::str::from_utf8(&bytes[..newline])
            .ok()
            .and_then(|h| h.strip_prefix(MAGIC)?.strip_prefix(' '))
            .and_then(|t| hex::decode(t).ok());
        let body = &bytes[newline + 1..];
        match tag {
            Some(tag) if mac(&key, &path, body).verify_slice(&tag).is_ok() => {}
            _ => return Ok(None),
        }
        serde_json::from_slice(body)
            .map(Some)
            .map_err(|e| StoreError::Invalid {
                path,
                message: format!("not a valid state file: {e}"),
            })
    }

    /// Reads the state for `status`: a file that does not authenticate is an error that says so.
    pub fn load(store: &Store) -> Result<RunState, StoreError> {
        Self::load_checked(store)?.ok_or_else(|| StoreError::Invalid {
            path: Self::path(&store.primary),
            message: NOT_AUTHENTIC.into(),
        })
    }

    /// Reads the state before recording a run: one that does not authenticate is not carried
    /// over (logged; the new file holds this run's results).
    pub fn load_for_update(store: &Store) -> Result<RunState, StoreError> {
        Ok(Self::load_checked(store)?.unwrap_or_else(|| {
            tracing::warn!(
                path = %Self::path(&store.primary).display(),
                "the run state file does not authenticate (edited, copied, or from an older version): starting a new one"
            );
            RunState::default()
        }))
    }

    /// Writes the state atomically, authenticated (hold the store lock).
    pub fn save(&self, store: &Store) -> Result<(), StoreError> {
        let root = &store.primary;
        let dir = root.join(STATE_DIR);
        let path = Self::path(root);
        let key = key(store)?;
        create_private_dirs(root, &dir)?;
        let mut body = serde_json::to_vec_pretty(self).map_err(|e| StoreError::Invalid {
            path: dir.clone(),
            message: e.to_string(),
        })?;
        body.push(b'\n');
        let tag = hex::encode(mac(&key, &path, &body).finalize().into_bytes());
        let mut bytes = format!("{MAGIC} {tag}\n").into_bytes();
        bytes.extend_from_slice(&body);
        // Temp files of writers killed while saving (listings never read this directory).
        super::temps::remove_stale_in(&dir, super::temps::stale_after(store.lock_wait));
        write_atomic(&dir, &path, &bytes)
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

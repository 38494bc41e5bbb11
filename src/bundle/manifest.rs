//! The manifest (inside the ciphertext) and the sidecar (beside it, plaintext, no secret).

use crate::material::Identity;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the manifest/sidecar format.
pub const FORMAT_VERSION: u32 = 1;

/// Why the artifact was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// A regular backup.
    #[default]
    Backup,
    /// The file a restore was about to overwrite.
    PreRestore,
}

/// One file in the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative name inside the tar.
    pub path: String,
    /// Where it came from on the node.
    pub remote_path: String,
    /// Size in bytes.
    pub size: u64,
    /// Unix permission bits on the node.
    pub mode: u32,
    /// Lowercase hex SHA-256 of the plaintext: in the manifest inside the ciphertext (deep
    /// checks), and in sidecars from before keyed hashes; empty (not written) in a sidecar whose
    /// entry has `hmac`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// Keyed hash of the plaintext (HMAC-SHA256, key id in the manifest's `hash_key`): what the
    /// sidecar says about the file instead of its SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac: Option<String>,
    /// Owner and group on the node, so a restore that creates the file can give it back its
    /// owner (absent in artifacts from before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<FileOwner>,
}

/// A directory of a tree keystore (Acra): not in the tar, recorded so a restore can know who
/// owned it and how it was protected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// Relative name as files have it (`keys/`, `keys/.poison_key/`).
    pub path: String,
    /// Where it was on the node.
    pub remote_path: String,
    /// Unix permission bits on the node.
    pub mode: u32,
    /// Owner and group on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<FileOwner>,
}

/// Who owned a file on the node: ids, and names when the node knew them (names are what a
/// restore matches on another host, where ids may differ).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOwner {
    /// Numeric user id on the node it came from.
    pub uid: u32,
    /// Numeric group id on the node it came from.
    pub gid: u32,
    /// User name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Group name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// What a bundle holds; stored as `manifest.json` inside it and repeated in the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Bundle format version (readers refuse newer ones).
    pub format: u32,
    /// The node the material came from.
    pub node: String,
    /// The keystore's name in the config.
    pub keystore: String,
    /// `p12`, ...
    pub kind: String,
    #[serde(default)]
    /// A regular backup, or what a restore replaced.
    pub purpose: Purpose,
    /// What the artifact is for (absent in artifacts from before it was recorded: see
    /// [`Manifest::role`]); listings check it against where the artifact lies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<super::Role>,
    /// When the material was fetched (UTC, to the microsecond; whole seconds in artifacts from
    /// before: see [`created_now`]).
    pub created_at: DateTime<Utc>,
    /// The coldkeep version that wrote it.
    pub coldkeep_version: String,
    /// `host:port` the material was fetched from.
    pub host: String,
    /// SHA256 fingerprint of the node's host key at fetch time.
    #[serde(default)]
    pub host_key: String,
    /// Every file, with hash and mode.
    pub files: Vec<FileEntry>,
    /// Directories of a tree keystore, root first (absent in older artifacts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<DirEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The material's public identity, for listing without decrypting.
    pub identity: Option<Identity>,
    /// The recipients it was encrypted to.
    pub recipients: Vec<String>,
    /// Id of the key the `hmac` fields were made with (see [`crate::digest::Keyed`]); absent in
    /// artifacts from before keyed hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<String>,
    /// Set when the material was stored although a check of it failed (a P12 whose configured
    /// password is unset or stale, one that is not a PKCS#12 file): why its identity was not
    /// checked. A backup is never skipped because a check failed; it is marked, and `list`,
    /// `verify`, `status` and the metrics show the mark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_unchecked: Option<String>,
}

/// The plaintext `.json` beside each `.age`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    #[serde(flatten)]
    /// A copy of the manifest inside, readable without a key.
    pub manifest: Manifest,
    /// Lowercase hex SHA-256 of the `.age` file.
    pub ciphertext_sha256: String,
    /// Size of the `.age` file in bytes.
    pub ciphertext_size: u64,
    /// The last time a backup found the same material and therefore stored nothing new. Not part
    /// of the manifest: it is the only field that changes after the artifact was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_unchanged_at: Option<DateTime<Utc>>,
}

/// The `created_at` of an artifact made now. To the microsecond, not the second: artifacts are
/// ordered by it (the newest backup is the one restored, reused and kept), and two backups of one
/// keystore within the same second were ordered by their ids' hash digits, so the older could
/// come out as the newest. The artifact id keeps whole seconds.
pub fn created_now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

impl Manifest {
    /// The manifest as the sidecar carries it: without the plaintext SHA-256 of a file (or of a
    /// `kind: file` identity) that has its keyed hash. An unkeyed hash of a guessable file in a
    /// plaintext sidecar is an offline guessing oracle; the manifest inside the ciphertext keeps
    /// them for deep checks. A manifest from before keyed hashes is unchanged.
    pub fn public(&self) -> Manifest {
        let mut m = self.clone();
        for f in m.files.iter_mut().filter(|f| f.hmac.is_some()) {
            f.sha256.clear();
        }
        if let Some(crate::material::Identity::File(f)) = &mut m.identity
            && f.hmac.is_some()
        {
            f.sha256 = None;
        }
        m
    }

    /// Puts the keyed hash of each file (and of a `kind: file` identity) beside its SHA-256, and
    /// the key's id in `hash_key`. `data` are the files' bytes, in the order of `files`.
    pub fn add_keyed_hashes(&mut self, data: &[&[u8]], keyed: &crate::digest::Keyed) {
        for (f, bytes) in self.files.iter_mut().zip(data) {
            f.hmac = Some(keyed.hex(bytes));
        }
        if let (Some(crate::material::Identity::File(f)), [one]) = (&mut self.identity, data) {
            f.hmac = Some(keyed.hex(one));
        }
        self.hash_key = Some(keyed.id().to_string());
    }
}

impl Sidecar {
    /// Whether `inner`, the manifest found inside the ciphertext, is the one this sidecar
    /// describes (the sidecar carries its [`Manifest::public`] form).
    pub fn describes_inner(&self, inner: &Manifest) -> bool {
        inner.public() == self.manifest
    }

    /// Whether two sidecars describe the same artifact (ignoring `seen_unchanged_at`).
    pub fn same_artifact(&self, other: &Sidecar) -> bool {
        self.manifest == other.manifest
            && self.ciphertext_sha256 == other.ciphertext_sha256
            && self.ciphertext_size == other.ciphertext_size
    }
}

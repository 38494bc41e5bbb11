//! What a listing holds per artifact. [`Store::list`](super::Store::list) gives whole
//! [`Sidecar`]s (for anything that acts on an artifact); `list` and `status` only show a few
//! fields, and building a whole sidecar per artifact (host keys, recipients, every file's
//! remote path and digest) was most of the time and memory of listing 100,000 artifacts from
//! the index. [`Summary`] is that lighter view: parsed straight from the index's cached JSON,
//! skipping what it does not hold.

use crate::bundle::{Purpose, Role, Sidecar};
use crate::material::Identity;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// File name of the index of [`Summary`]s (what `list` and `status` show) in each keystore
/// directory: its own file, half the size of the index of whole sidecars, so showing a large
/// store never reads or authenticates whole sidecars.
pub const SUMMARY_INDEX_FILE: &str = ".coldkeep-summaries.json";

/// A type a listing can hold per artifact: built from an index entry's cached JSON (the
/// sidecar with its manifest nested) or from a sidecar read from disk.
pub trait Listed: Sized + Send {
    /// The index file that caches this view in each keystore directory (see `index.rs`).
    const INDEX: &'static str;
    /// From the cached JSON of an index entry; `None` if it does not parse (read from disk).
    fn from_cache(json: &str) -> Option<Self>;
    /// This view of a sidecar read from disk, as its index caches it.
    fn to_cache(sidecar: &Sidecar) -> Option<Box<RawValue>>;
    /// From a sidecar read from disk.
    fn from_sidecar(sidecar: Sidecar) -> Self;
    /// The node the sidecar names.
    fn node(&self) -> &str;
    /// The keystore the sidecar names.
    fn keystore(&self) -> &str;
    /// When the material was fetched (a future date makes a valid signature bad).
    fn created_at(&self) -> DateTime<Utc>;
    /// SHA-256 of the ciphertext (hex): with `created_at`, what the artifact's id is made of.
    fn ciphertext_sha256(&self) -> &str;
    /// Backup or pre-restore (only backups count as the newest).
    fn purpose(&self) -> Purpose;
    /// The artifact kind (`p12`, `acra-master-key`, ...).
    fn kind(&self) -> &str;
    /// The role the sidecar records (`None` in artifacts from before roles were recorded).
    fn role(&self) -> Option<Role>;
    /// Whether this listed view still describes `on_disk`, a sidecar read again before a
    /// change (removal, the intact check of retention): the index may be stale or wrong.
    fn describes(&self, on_disk: &Sidecar) -> bool;
}

/// A sidecar as `list` and `status` show it and retention plans with it.
#[derive(Debug, Clone, Deserialize)]
pub struct Summary {
    /// The manifest's shown fields.
    pub manifest: SummaryManifest,
    /// SHA-256 of the ciphertext (hex): with the fields above, what identifies the artifact
    /// when retention removes it.
    pub ciphertext_sha256: String,
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
    /// What the artifact is for, when recorded.
    #[serde(default)]
    pub role: Option<Role>,
    /// When the material was fetched.
    pub created_at: DateTime<Utc>,
    /// The files inside (their names only).
    pub files: Vec<FileName>,
    /// The public identity as JSON, parsed only where it is shown as text (see
    /// [`SummaryManifest::identity`]): the enum is internally tagged, which serde parses through
    /// a buffer, and `list --json` prints it as it is.
    pub identity: Option<Box<RawValue>>,
    /// Why the material's identity was not checked when it was stored (see
    /// [`crate::bundle::Manifest::identity_unchecked`]).
    #[serde(default)]
    pub identity_unchecked: Option<String>,
}

impl SummaryManifest {
    /// The public identity, parsed.
    pub fn identity(&self) -> Option<Identity> {
        serde_json::from_str(self.identity.as_deref()?.get()).ok()
    }
}

/// A bundle file's name (the rest of its entry is not listed).
#[derive(Debug, Clone, Deserialize)]
pub struct FileName {
    /// Relative name inside the bundle.
    pub path: String,
}

/// [`Summary`] borrowed from a [`Sidecar`], for its index.
#[derive(Serialize)]
struct SummaryRef<'a> {
    manifest: SummaryManifestRef<'a>,
    ciphertext_sha256: &'a str,
    ciphertext_size: u64,
    seen_unchanged_at: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct SummaryManifestRef<'a> {
    node: &'a str,
    keystore: &'a str,
    kind: &'a str,
    purpose: Purpose,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    created_at: DateTime<Utc>,
    files: Vec<FileNameRef<'a>>,
    identity: &'a Option<Identity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity_unchecked: &'a Option<String>,
}

#[derive(Serialize)]
struct FileNameRef<'a> {
    path: &'a str,
}

impl Listed for Summary {
    const INDEX: &'static str = SUMMARY_INDEX_FILE;

    fn from_cache(json: &str) -> Option<Summary> {
        serde_json::from_str(json).ok()
    }

    fn to_cache(sidecar: &Sidecar) -> Option<Box<RawValue>> {
        let m = &sidecar.manifest;
        serde_json::value::to_raw_value(&SummaryRef {
            manifest: SummaryManifestRef {
                node: &m.node,
                keystore: &m.keystore,
                kind: &m.kind,
                purpose: m.purpose,
                role: m.role,
                created_at: m.created_at,
                files: m.files.iter().map(|f| FileNameRef { path: &f.path }).collect(),
                identity: &m.identity,
                identity_unchecked: &m.identity_unchecked,
            },
            ciphertext_sha256: &sidecar.ciphertext_sha256,
            ciphertext_size: sidecar.ciphertext_size,
            seen_unchanged_at: sidecar.seen_unchanged_at,
        })
        .ok()
    }

    fn from_sidecar(s: Sidecar) -> Summary {
        let m = s.manifest;
        Summary {
            manifest: SummaryManifest {
                node: m.node,
                keystore: m.keystore,
                kind: m.kind,
                purpose: m.purpose,
                role: m.role,
                created_at: m.created_at,
                files: m.files.into_iter().map(|f| FileName { path: f.path }).collect(),
                identity: m
                    .identity
                    .as_ref()
                    .and_then(|i| serde_json::value::to_raw_value(i).ok()),
                identity_unchecked: m.identity_unchecked,
            },
            ciphertext_sha256: s.ciphertext_sha256,
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

    fn ciphertext_sha256(&self) -> &str {
        &self.ciphertext_sha256
    }

    fn purpose(&self) -> Purpose {
        self.manifest.purpose
    }

    fn kind(&self) -> &str {
        &self.manifest.kind
    }

    fn role(&self) -> Option<Role> {
        self.manifest.role
    }

    /// The ciphertext hash (signed with the rest, and covering the bundle inside) with the
    /// names, kind, purpose, time and size.
    fn describes(&self, on_disk: &Sidecar) -> bool {
        let (m, d) = (&self.manifest, &on_disk.manifest);
        self.ciphertext_sha256 == on_disk.ciphertext_sha256
            && self.ciphertext_size == on_disk.ciphertext_size
            && (&m.node, &m.keystore, &m.kind, m.purpose, m.role, m.created_at)
                == (&d.node, &d.keystore, &d.kind, d.purpose, d.role, d.created_at)
    }
}

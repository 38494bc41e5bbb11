//! Bundles: a tar (manifest.json first, then the files) encrypted with age.
//!
//! The plaintext tar exists only in memory. [`open`] checks the whole bundle: tar structure and
//! safe names, manifest first, every file present once with the manifest's size and hash.

mod manifest;

pub use manifest::{FORMAT_VERSION, FileEntry, Manifest, Purpose, Sidecar};

use crate::config::Recipient;
use std::path::Path;
use zeroize::Zeroizing;

/// Why a bundle could not be made or opened.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not an age file or its header is damaged: {0}")]
    BadHeader(String),
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    #[error("bundle content is invalid: {0}")]
    Invalid(String),
    #[error("file {path} in the bundle does not match the manifest: {detail}")]
    Mismatch { path: String, detail: String },
    #[error("cannot load identity {path}: {detail}")]
    Identity { path: String, detail: String },
    #[error("encryption failed: {0}")]
    Encrypt(String),
}

/// One file's plaintext with its manifest entry. Wiped on drop.
pub struct PlainFile {
    pub entry: FileEntry,
    pub data: Zeroizing<Vec<u8>>,
}

/// The result of [`seal`].
pub struct Sealed {
    pub ciphertext: Vec<u8>,
    /// Lowercase hex SHA-256 of `ciphertext`.
    pub sha256: String,
}

/// A decrypted, checked bundle.
pub struct Opened {
    pub manifest: Manifest,
    pub files: Vec<PlainFile>,
}

/// Decryption keys: age identity files (`AGE-SECRET-KEY-1...`) or SSH private keys.
pub struct Identities {
    keys: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl Identities {
    /// Loads an age identity file or an OpenSSH private key (ed25519 / rsa). An encrypted SSH key
    /// takes its passphrase from env `COLDKEEP_IDENTITY_PASSPHRASE`.
    pub fn from_file(path: &Path) -> Result<Identities, BundleError> {
        let _ = path;
        todo!()
    }

    /// Builds identities from already-constructed keys (tests, demo).
    pub fn from_keys(keys: Vec<Box<dyn age::Identity + Send + Sync>>) -> Identities {
        Identities { keys }
    }

    fn as_dyn(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.keys.iter().map(|k| k.as_ref() as &dyn age::Identity)
    }
}

/// Makes the [`FileEntry`] for bytes about to be bundled.
pub fn file_entry(path: &str, remote_path: &str, data: &[u8], mode: u32) -> FileEntry {
    FileEntry {
        path: path.to_string(),
        remote_path: remote_path.to_string(),
        size: data.len() as u64,
        mode,
        sha256: crate::digest::sha256_hex(data),
    }
}

/// Tars the manifest and files in memory and encrypts to every recipient.
/// `manifest.files` must describe `files` exactly (checked).
pub fn seal(
    manifest: &Manifest,
    files: &[PlainFile],
    recipients: &[Recipient],
) -> Result<Sealed, BundleError> {
    let _ = (manifest, files, recipients);
    todo!()
}

/// Decrypts in memory and checks the bundle (see module docs).
pub fn open(ciphertext: &[u8], identities: &Identities) -> Result<Opened, BundleError> {
    let _ = (ciphertext, identities.as_dyn());
    todo!()
}

/// Shallow check without keys: the age header parses. Returns the number of recipient stanzas
/// when the format exposes it, else 0.
pub fn check_header(ciphertext: &[u8]) -> Result<(), BundleError> {
    let _ = ciphertext;
    todo!()
}

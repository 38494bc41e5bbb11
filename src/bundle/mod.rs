//! Bundles: a tar (manifest.json first, then the files) encrypted with age.
//!
//! The plaintext tar exists only in memory. [`open`] checks the whole bundle: tar structure and
//! safe names, manifest first, every file present once with the manifest's size and hash.

mod manifest;
pub mod role;

pub use manifest::{DirEntry, FORMAT_VERSION, FileEntry, FileOwner, Manifest, Purpose, Sidecar, created_now};
pub use role::{ArtifactKind, Role};

use crate::config::Recipient;
use std::io::{Read, Write};
use std::path::Path;
use zeroize::Zeroizing;

/// Name of the manifest, the first entry of every bundle.
pub const MANIFEST_NAME: &str = "manifest.json";

/// Env var holding the passphrase of an encrypted SSH identity.
pub const IDENTITY_PASSPHRASE_ENV: &str = "COLDKEEP_IDENTITY_PASSPHRASE";

/// Why a bundle could not be made or opened.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not an age file or its header is damaged: {0}")]
    /// The data is not an age file.
    BadHeader(String),
    #[error("cannot decrypt: {0}")]
    /// age could not decrypt it.
    Decrypt(String),
    #[error("cannot decrypt: none of the given identities can decrypt it (wrong identity file?)")]
    /// None of the given identities is a recipient of the artifact.
    NotARecipient,
    #[error("bundle content is invalid: {0}")]
    /// The decrypted bundle is malformed.
    Invalid(String),
    #[error("file {path} in the bundle does not match the manifest: {detail}")]
    /// A file does not match its manifest entry.
    Mismatch {
        /// The path concerned.
        path: String,
        /// What went wrong, as the library reported it.
        detail: String,
    },
    #[error("cannot load identity {path}: {detail}")]
    /// An identity file cannot be read or parsed.
    Identity {
        /// The path concerned.
        path: String,
        /// What went wrong, as the library reported it.
        detail: String,
    },
    #[error("encryption failed: {0}")]
    /// Encryption failed.
    Encrypt(String),
}

/// One file's plaintext with its manifest entry. Wiped on drop.
pub struct PlainFile {
    /// What the manifest records about the file.
    pub entry: FileEntry,
    /// The plaintext bytes (wiped on drop).
    pub data: Zeroizing<Vec<u8>>,
}

/// The result of [`seal`].
pub struct Sealed {
    /// The age ciphertext to write to the store.
    pub ciphertext: Vec<u8>,
    /// Lowercase hex SHA-256 of `ciphertext`.
    pub sha256: String,
    /// The manifest as sealed inside (with the keyed hashes); the sidecar carries its
    /// [`Manifest::public`] form.
    pub manifest: Manifest,
}

/// A decrypted, checked bundle.
pub struct Opened {
    /// The manifest inside the bundle.
    pub manifest: Manifest,
    /// The files, checked against the manifest.
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
        let err = |detail: String| BundleError::Identity {
            path: path.display().to_string(),
            detail,
        };
        // The key that opens every backup: nobody else may read or replace it.
        crate::config::perms::check_file(path, crate::config::perms::FileKind::Identity).map_err(&err)?;
        let text = Zeroizing::new(std::fs::read(path).map_err(|e| err(e.to_string()))?);
        if text.windows(15).any(|w| w == b"AGE-SECRET-KEY-") {
            let file = age::IdentityFile::from_buffer(&text[..])
                .map_err(|e| err(format!("not a valid age identity file: {e}")))?;
            let keys = file.into_identities().map_err(|e| err(e.to_string()))?;
            if keys.is_empty() {
                return Err(err("no identities in the file".into()));
            }
            return Ok(Identities { keys });
        }
        if text.starts_with(b"-----BEGIN") {
            let name = Some(path.display().to_string());
            let key = age::ssh::Identity::from_buffer(&text[..], name)
                .map_err(|e| err(format!("not a readable SSH private key: {e}")))?;
            let key = match key {
                age::ssh::Identity::Unencrypted(_) => key,
                age::ssh::Identity::Encrypted(enc) => {
                    let pass = std::env::var(IDENTITY_PASSPHRASE_ENV).map_err(|_| {
                        err(format!(
                            "the SSH key is passphrase-protected: set {IDENTITY_PASSPHRASE_ENV}"
                        ))
                    })?;
                    let key = enc
                        .decrypt(age::secrecy::SecretString::from(pass))
                        .map_err(|_| err(format!("wrong passphrase in {IDENTITY_PASSPHRASE_ENV}")))?;
                    age::ssh::Identity::Unencrypted(key)
                }
                age::ssh::Identity::Unsupported(k) => {
                    return Err(err(format!(
                        "SSH key type not supported by age ({k:?}); use an ed25519 or rsa key"
                    )));
                }
            };
            return Ok(Identities {
                keys: vec![Box::new(key)],
            });
        }
        Err(err(
            "neither an age identity file (AGE-SECRET-KEY-1...) nor an OpenSSH private key".into(),
        ))
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
        hmac: None,
        owner: None,
    }
}

/// Tars the manifest and files in memory and encrypts to every recipient.
/// `manifest.files` must describe `files` exactly (checked). With `keyed`, the manifest gets
/// every file's keyed hash first (what its sidecar shows instead of the SHA-256).
pub fn seal(
    manifest: &Manifest,
    files: &[PlainFile],
    recipients: &[Recipient],
    keyed: Option<&crate::digest::Keyed>,
) -> Result<Sealed, BundleError> {
    if recipients.is_empty() {
        return Err(BundleError::Encrypt("no recipients".into()));
    }
    let described: Vec<&FileEntry> = files.iter().map(|f| &f.entry).collect();
    if manifest.files.iter().collect::<Vec<_>>() != described {
        return Err(BundleError::Invalid(
            "manifest does not describe the files exactly".into(),
        ));
    }
    for f in files {
        if f.data.len() as u64 != f.entry.size || crate::digest::sha256_hex(&f.data) != f.entry.sha256 {
            return Err(BundleError::Mismatch {
                path: f.entry.path.clone(),
                detail: "data differs from its entry".into(),
            });
        }
        check_name(&f.entry.path)?;
    }
    let mut manifest = manifest.clone();
    if let Some(keyed) = keyed {
        let data: Vec<&[u8]> = files.iter().map(|f| &f.data[..]).collect();
        manifest.add_keyed_hashes(&data, keyed);
    }
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| BundleError::Invalid(e.to_string()))?;
    // Reserve the whole tar up front so no reallocation leaves plaintext behind unwiped.
    let block = |n: usize| 512 + n.div_ceil(512) * 512;
    let capacity = block(json.len()) + files.iter().map(|f| block(f.data.len())).sum::<usize>() + 1024;
    let mut tar = Zeroizing::new(Vec::with_capacity(capacity));
    {
        let mtime = manifest.created_at.timestamp().max(0) as u64;
        let mut builder = tar::Builder::new(&mut *tar);
        append(&mut builder, MANIFEST_NAME, &json, 0o600, mtime)?;
        for f in files {
            append(&mut builder, &f.entry.path, &f.data, f.entry.mode & 0o7777, mtime)?;
        }
        builder
            .finish()
            .map_err(|e| BundleError::Invalid(e.to_string()))?;
    }
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r.as_age()))
        .map_err(|e| BundleError::Encrypt(e.to_string()))?;
    let mut ciphertext = Vec::with_capacity(tar.len() + 1024);
    let mut writer = encryptor
        .wrap_output(&mut ciphertext)
        .map_err(|e| BundleError::Encrypt(e.to_string()))?;
    writer
        .write_all(&tar)
        .map_err(|e| BundleError::Encrypt(e.to_string()))?;
    writer.finish().map_err(|e| BundleError::Encrypt(e.to_string()))?;
    let sha256 = crate::digest::sha256_hex(&ciphertext);
    Ok(Sealed {
        ciphertext,
        sha256,
        manifest,
    })
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
    mode: u32,
    mtime: u64,
) -> Result<(), BundleError> {
    let mut header = tar::Header::new_ustar();
    header
        .set_path(name)
        .map_err(|e| BundleError::Invalid(format!("cannot store name {name}: {e}")))?;
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    builder
        .append(&header, data)
        .map_err(|e| BundleError::Invalid(e.to_string()))
}

/// A name inside a bundle: relative, no `..`, `.` or empty components, no backslashes.
fn check_name(name: &str) -> Result<(), BundleError> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || name.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(BundleError::Invalid(format!(
            "unsafe file name {name:?} in bundle"
        )));
    }
    Ok(())
}

/// Decrypts in memory and checks the bundle (see module docs).
pub fn open(ciphertext: &[u8], identities: &Identities) -> Result<Opened, BundleError> {
    let decryptor = decryptor(ciphertext)?;
    let mut reader = decryptor.decrypt(identities.as_dyn()).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => BundleError::NotARecipient,
        other => BundleError::Decrypt(other.to_string()),
    })?;
    // The plaintext is never larger than the ciphertext.
    let mut tar = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
    // Plaintext: kept out of swap where RLIMIT_MEMLOCK allows (read_to_end may still grow it).
    crate::harden::lock_in_memory(&tar);
    reader
        .read_to_end(&mut tar)
        .map_err(|e| BundleError::Decrypt(format!("ciphertext is damaged: {e}")))?;
    read_tar(&tar)
}

/// Reads and checks a decrypted bundle's tar (what [`open`] does after decryption): public so the
/// fuzz targets can reach it without age.
pub fn read_tar(tar: &[u8]) -> Result<Opened, BundleError> {
    let invalid = |m: String| BundleError::Invalid(m);
    let mut archive = tar::Archive::new(tar);
    let entries = archive.entries().map_err(|e| invalid(e.to_string()))?;
    let mut manifest: Option<Manifest> = None;
    let mut files: Vec<PlainFile> = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| invalid(format!("damaged tar: {e}")))?;
        let name = {
            let path = entry.path_bytes();
            String::from_utf8(path.to_vec()).map_err(|_| invalid("non-UTF-8 name in bundle".into()))?
        };
        let kind = entry.header().entry_type();
        if !matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous) {
            return Err(invalid(format!(
                "{name:?} is not a regular file ({kind:?}); refusing"
            )));
        }
        check_name(&name)?;
        let size = entry.header().size().map_err(|e| invalid(e.to_string()))?;
        if size > tar.len() as u64 {
            return Err(invalid(format!(
                "{name:?} claims {size} bytes, more than the bundle holds"
            )));
        }
        let mut data = Zeroizing::new(Vec::with_capacity(size as usize));
        crate::harden::lock_in_memory(&data);
        entry
            .read_to_end(&mut data)
            .map_err(|e| invalid(format!("cannot read {name:?}: {e}")))?;
        match &manifest {
            None => {
                if name != MANIFEST_NAME {
                    return Err(invalid(format!(
                        "first entry is {name:?}, expected {MANIFEST_NAME}"
                    )));
                }
                let m: Manifest = serde_json::from_slice(&data)
                    .map_err(|e| invalid(format!("{MANIFEST_NAME} is not a valid manifest: {e}")))?;
                if m.format > FORMAT_VERSION {
                    return Err(invalid(format!(
                        "format {} is newer than this coldkeep understands ({FORMAT_VERSION}); upgrade coldkeep",
                        m.format
                    )));
                }
                manifest = Some(m);
            }
            Some(m) => {
                let Some(entry) = m.files.iter().find(|f| f.path == name) else {
                    return Err(invalid(format!(
                        "{name:?} is in the bundle but not in the manifest"
                    )));
                };
                if files.iter().any(|f| f.entry.path == name) {
                    return Err(invalid(format!("{name:?} appears twice in the bundle")));
                }
                if data.len() as u64 != entry.size {
                    return Err(BundleError::Mismatch {
                        path: name,
                        detail: format!("{} bytes, manifest says {}", data.len(), entry.size),
                    });
                }
                let sha = crate::digest::sha256_hex(&data);
                if sha != entry.sha256 {
                    return Err(BundleError::Mismatch {
                        path: name,
                        detail: format!("sha256 {sha}, manifest says {}", entry.sha256),
                    });
                }
                files.push(PlainFile {
                    entry: entry.clone(),
                    data,
                });
            }
        }
    }
    let manifest = manifest.ok_or_else(|| invalid("the bundle is empty (no manifest)".into()))?;
    if let Some(missing) = manifest
        .files
        .iter()
        .find(|f| !files.iter().any(|p| p.entry.path == f.path))
    {
        return Err(invalid(format!(
            "{:?} is in the manifest but missing from the bundle",
            missing.path
        )));
    }
    // Keep the manifest's order.
    files.sort_by_key(|f| manifest.files.iter().position(|e| e.path == f.entry.path));
    Ok(Opened { manifest, files })
}

type Decryptor<'a> = age::Decryptor<age::armor::ArmoredReader<std::io::BufReader<&'a [u8]>>>;

fn decryptor(ciphertext: &[u8]) -> Result<Decryptor<'_>, BundleError> {
    age::Decryptor::new_buffered(age::armor::ArmoredReader::new(ciphertext)).map_err(|e| {
        BundleError::BadHeader(match e {
            age::DecryptError::UnknownFormat => "unknown age format version".into(),
            age::DecryptError::InvalidHeader => "the age header is invalid".into(),
            other => other.to_string(),
        })
    })
}

/// Shallow check without keys: the age header parses.
pub fn check_header(ciphertext: &[u8]) -> Result<(), BundleError> {
    decryptor(ciphertext).map(|_| ())
}

#[cfg(test)]
mod tests;

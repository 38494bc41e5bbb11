//! Hardware keys in the store (`<store>/hardware/<name>/`): naming, storing, picking, opening.

use super::keystore;
use crate::bundle::{Identities, Manifest, Opened, PlainFile, Purpose};
use crate::config::{Config, HARDWARE_NODE};
use crate::error::UsageError;
use crate::material::Identity;
use crate::store::{Artifact, Store};
use anyhow::{Context, bail};

/// Checks a hardware key's name (it becomes a store directory).
pub fn check_name(name: &str) -> Result<(), UsageError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(UsageError(format!(
            "invalid name {name:?}: use 1-64 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
        )))
    }
}

/// Encrypts a hardware key's backup to the config's recipients into `<store>/hardware/<name>/`.
pub fn store_backup(
    config: &Config,
    name: &str,
    kind: &str,
    source: &str,
    files: &[PlainFile],
    identity: Identity,
) -> anyhow::Result<(String, u64)> {
    let manifest = Manifest {
        format: crate::bundle::FORMAT_VERSION,
        node: HARDWARE_NODE.to_string(),
        keystore: name.to_string(),
        kind: kind.to_string(),
        purpose: Purpose::Backup,
        role: crate::bundle::ArtifactKind::parse(kind)
            .and_then(|k| crate::bundle::Role::of(k, Purpose::Backup)),
        created_at: crate::bundle::created_now(),
        coldkeep_version: env!("CARGO_PKG_VERSION").to_string(),
        host: source.to_string(),
        host_key: String::new(),
        files: files.iter().map(|f| f.entry.clone()).collect(),
        dirs: Vec::new(),
        identity: Some(identity),
        recipients: Vec::new(),
        hash_key: None,
        identity_unchecked: None,
    };
    let store = Store::new(&config.store);
    // Copies a killed import left missing are written again first, its temp files removed.
    let listing = store.list(Some(HARDWARE_NODE))?;
    if let Err(e) = store.remove_stale_temps(&listing.problems) {
        tracing::warn!("cannot remove stale temp files: {e}");
    }
    for a in listing.artifacts.iter().filter(|a| a.keystore == name) {
        if let Err(e) = store.repair_missing(a) {
            tracing::warn!(artifact = %a.id, "cannot write a missing copy: {e}");
        }
    }
    let stored = keystore::seal_and_store(
        &store,
        &config.encryption.recipients,
        manifest,
        files,
        keystore::Write::Now,
    )?;
    Ok((stored.id.unwrap_or_default(), stored.size))
}

/// Picks a hardware key's artifact of `kind`: `latest` of `name`, or an id (prefix).
pub fn pick(
    config: &Config,
    kind: &str,
    name: Option<&str>,
    wanted: &str,
) -> anyhow::Result<(Store, Artifact)> {
    let store = Store::new(&config.store);
    let listing = store.list(Some(HARDWARE_NODE))?;
    let of_kind = |a: &&Artifact| a.sidecar.manifest.kind == kind && name.is_none_or(|n| a.keystore == n);
    let artifact = if wanted == "latest" {
        let Some(name) = name else {
            return Err(
                UsageError("give --name NAME with `--backup latest`, or an artifact id".into()).into(),
            );
        };
        super::artifact::latest(&listing.artifacts, HARDWARE_NODE, name)
            .filter(|a| a.sidecar.manifest.kind == kind)
            .cloned()
            .with_context(|| format!("no {kind} backup named {name} in {}", store.primary.display()))?
    } else {
        let matches: Vec<&Artifact> = listing
            .artifacts
            .iter()
            .filter(of_kind)
            .filter(|a| a.id.starts_with(wanted))
            .collect();
        match matches.as_slice() {
            [one] => (*one).clone(),
            [] => bail!("no {kind} artifact {wanted} (see `coldkeep list --node {HARDWARE_NODE}`)"),
            many => bail!("{wanted} matches {} artifacts; give more of the id", many.len()),
        }
    };
    Ok((store, artifact))
}

/// Decrypts and checks an artifact (hashes, manifest = sidecar).
pub fn open(store: &Store, artifact: &Artifact, identity: &std::path::Path) -> anyhow::Result<Opened> {
    let ids = Identities::from_file(identity)?;
    super::artifact::open_verified(store, artifact, &ids)
}

/// Checks a decrypted BitBox02 artifact (its files are `<id>/<file>`) like a card folder.
pub fn check_bitbox02(opened: &crate::bundle::Opened) -> crate::material::bitbox02::FolderCheck {
    let files: Vec<(String, &[u8])> = opened
        .files
        .iter()
        .map(|f| {
            let name = f.entry.path.rsplit('/').next().unwrap_or_default();
            (name.to_string(), f.data.as_slice())
        })
        .collect();
    let folder = opened
        .files
        .first()
        .and_then(|f| f.entry.path.split('/').next())
        .unwrap_or_default();
    crate::material::bitbox02::check_folder(folder, &files)
}

/// OnlyKey backup texts: the artifact's kind and file name, and reading a text safely.
pub mod onlykey_text {
    use anyhow::{Context, bail};
    use std::io::Read;
    use zeroize::Zeroizing;

    /// The artifact kind and the file name inside it.
    pub const KIND: &str = crate::ops::vocab::ArtifactKind::Onlykey.as_str();
    /// The file name an OnlyKey backup has inside its artifact.
    pub const FILE: &str = "onlykey-backup.txt";
    /// Largest text accepted (an 18,000-byte payload is about 24 KiB of text).
    pub const MAX_TEXT: u64 = 256 * 1024;

    /// Reads the text into one pre-sized, wiped buffer (no reallocation leaves copies behind).
    pub fn read_text(file: &str) -> anyhow::Result<Zeroizing<String>> {
        let mut buf = Zeroizing::new(Vec::with_capacity(MAX_TEXT as usize + 1));
        let reader: Box<dyn Read> = if file == "-" {
            Box::new(std::io::stdin())
        } else {
            Box::new(std::fs::File::open(file).with_context(|| format!("reading {file}"))?)
        };
        reader.take(MAX_TEXT + 1).read_to_end(&mut buf)?;
        if buf.len() as u64 > MAX_TEXT {
            bail!("the input is larger than {MAX_TEXT} bytes: not an OnlyKey backup");
        }
        let text = std::str::from_utf8(&buf).context("the backup text is not UTF-8")?;
        Ok(Zeroizing::new(text.to_string()))
    }
}

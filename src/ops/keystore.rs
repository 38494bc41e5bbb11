//! What commands do with one keystore's material: fetch it, identify it, bundle it (fetch and seal).

use super::vocab::ArtifactKind;
use crate::bundle::{self, FORMAT_VERSION, Manifest, PlainFile, Purpose, Sidecar};
use crate::config::{Config, KeystoreConfig, KeystoreKind, NodeConfig, Recipient};
use crate::digest::Keyed;
use crate::material::{Identity, acra, p12};
use crate::remote::{FetchedTree, Node, RemoteFile, TreeLimits};
use crate::store::Store;
use crate::store::batch::{Batch, Ticket};
use anyhow::{Context, bail};
use zeroize::Zeroizing;

/// Material fetched from a node, in memory only.
pub struct Fetched {
    /// The files as they go into the bundle (P12: one; Acra: the tree).
    pub files: Vec<PlainFile>,
    /// The directories of a tree (Acra), root first, with owners; empty for a single file.
    pub dirs: Vec<bundle::DirEntry>,
    /// The material's public identity (checked on fetch); for a P12 whose check failed, what
    /// its structure tells without the password, if anything.
    pub identity: Option<Identity>,
    /// Why the material's identity could not be checked (a P12 whose configured password is
    /// unset or stale, or that is not a PKCS#12 file). The material is backed up all the same:
    /// the artifact is marked with this instead of being skipped.
    pub unchecked: Option<String>,
}

/// The keystore's password, read now from its env var or file (None when not configured).
pub fn password(ks: &KeystoreConfig) -> anyhow::Result<Option<Zeroizing<String>>> {
    ks.password
        .as_ref()
        .map(|s| {
            s.resolve()
                .with_context(|| format!("password of keystore {}", ks.name))
        })
        .transpose()
}

/// Checks what a P12 file's bytes are and returns their public identity. With a password the file
/// is opened, so a wrong password or a corrupt file fails here.
pub fn identify(ks: &KeystoreConfig, bytes: &[u8]) -> anyhow::Result<Identity> {
    match ks.kind {
        KeystoreKind::P12 => {}
        KeystoreKind::File => {
            // The keyed hash is added when the artifact is sealed (it needs the store's key).
            return Ok(Identity::File(crate::material::FileIdentity {
                size: bytes.len() as u64,
                sha256: None,
                hmac: None,
            }));
        }
        KeystoreKind::Acra => bail!("keystore {} is not a single file", ks.name),
    }
    let password = password(ks)?;
    let id = p12::inspect(bytes, password.as_ref().map(|p| p.as_str()))
        .with_context(|| format!("{} is not a usable PKCS#12 file", ks.path))?;
    Ok(Identity::P12(id))
}

/// A single file's identity, or why it could not be checked (and what its structure tells).
fn check_file(ks: &KeystoreConfig, bytes: &[u8]) -> (Option<Identity>, Option<String>) {
    if ks.kind != KeystoreKind::P12 {
        return (identify(ks, bytes).ok(), None);
    }
    let unopened = || p12::inspect(bytes, None).ok().map(Identity::P12);
    let password = match password(ks) {
        Ok(p) => p,
        Err(e) => {
            return (
                unopened(),
                Some(format!("its configured password could not be read: {e:#}")),
            );
        }
    };
    match p12::inspect(bytes, password.as_ref().map(|p| p.as_str())) {
        Ok(id) => (Some(Identity::P12(id)), None),
        Err(p12::P12Error::WrongPassword) => (
            unopened(),
            Some(
                "wrong password: it does not open with the configured password (changed on the node, \
                 e.g. by `nodectl passwd12`? update the configured one)"
                    .into(),
            ),
        ),
        Err(e) => (
            unopened(),
            Some(format!("{} is not a usable PKCS#12 file: {e}", ks.path)),
        ),
    }
}

/// Identifies Acra files as named in a bundle (`keys/...`, `public/...`).
pub fn identify_acra(ks: &KeystoreConfig, root_mode: u32, files: &[PlainFile]) -> anyhow::Result<Identity> {
    let entries: Vec<acra::Entry> = files
        .iter()
        .map(|f| acra::Entry {
            path: &f.entry.path,
            mode: f.entry.mode,
            data: &f.data,
        })
        .collect();
    let id = acra::inspect(root_mode, &entries, ks.acra_version)
        .with_context(|| format!("Acra keystore {}", ks.path))?;
    Ok(Identity::Acra(id))
}

/// What a tree fetch skips: Acra's lock file and half-written key rings.
pub fn acra_skip(rel: &str) -> bool {
    acra::skipped_when_read(rel)
}

/// Fetches a keystore's material over the node's session and identifies it.
pub fn fetch(session: &dyn Node, ks: &KeystoreConfig) -> anyhow::Result<Fetched> {
    match ks.kind {
        KeystoreKind::P12 | KeystoreKind::File => {
            let file = session.fetch(&ks.path, ks.max_size)?;
            let (identity, unchecked) = check_file(ks, &file.bytes);
            Ok(Fetched {
                files: vec![p12_file(ks, file)],
                dirs: Vec::new(),
                identity,
                unchecked,
            })
        }
        KeystoreKind::Acra => {
            let (root_mode, files, dirs) = fetch_acra(session, ks)?
                .with_context(|| format!("the keystore directory {} does not exist on the node", ks.path))?;
            let identity = identify_acra(ks, root_mode, &files)?;
            Ok(Fetched {
                files,
                dirs,
                identity: Some(identity),
                unchecked: None,
            })
        }
    }
}

/// An Acra keystore as fetched: root mode, files, directories (root first).
pub type AcraFetch = (u32, Vec<PlainFile>, Vec<bundle::DirEntry>);

/// Fetches an Acra keystore's tree(s); `None` when the keys directory does not exist.
pub fn fetch_acra(session: &dyn Node, ks: &KeystoreConfig) -> anyhow::Result<Option<AcraFetch>> {
    let mut limits = TreeLimits {
        max_files: ks.max_files,
        max_size: ks.max_size,
    };
    let Some(keys) = session.fetch_tree(&ks.path, limits, &acra_skip)? else {
        return Ok(None);
    };
    let root_mode = keys.root_mode;
    let mut dirs = tree_dirs(acra::KEYS_PREFIX, &ks.path, &keys);
    let mut files = tree_files(acra::KEYS_PREFIX, &ks.path, keys);
    if let Some(public) = &ks.public_path {
        limits.max_files -= (files.len() as u64).min(limits.max_files);
        limits.max_size -= files
            .iter()
            .map(|f| f.entry.size)
            .sum::<u64>()
            .min(limits.max_size);
        let tree = session
            .fetch_tree(public, limits, &acra_skip)?
            .with_context(|| format!("the public keys directory {public} does not exist on the node"))?;
        dirs.extend(tree_dirs(acra::PUBLIC_PREFIX, public, &tree));
        files.extend(tree_files(acra::PUBLIC_PREFIX, public, tree));
    }
    Ok(Some((root_mode, files, dirs)))
}

/// A tree's directories as the manifest records them (`keys/`, `keys/sub/`).
fn tree_dirs(prefix: &str, root: &str, tree: &FetchedTree) -> Vec<bundle::DirEntry> {
    tree.dirs
        .iter()
        .map(|d| {
            let (path, remote_path) = if d.rel.is_empty() {
                (prefix.to_string(), root.to_string())
            } else {
                (
                    format!("{prefix}{}/", d.rel),
                    format!("{}/{}", root.trim_end_matches('/'), d.rel),
                )
            };
            bundle::DirEntry {
                path,
                remote_path,
                mode: d.mode,
                owner: d.owner.clone().map(owner_of),
            }
        })
        .collect()
}

fn tree_files(prefix: &str, root: &str, tree: FetchedTree) -> Vec<PlainFile> {
    tree.files
        .into_iter()
        .map(|(entry, data)| PlainFile {
            entry: bundle::FileEntry {
                owner: entry.owner.map(owner_of),
                ..bundle::file_entry(
                    &format!("{prefix}{}", entry.rel),
                    &format!("{}/{}", root.trim_end_matches('/'), entry.rel),
                    &data,
                    entry.mode,
                )
            },
            data,
        })
        .collect()
}

/// A P12 file as it goes into a bundle: under its own file name.
pub fn p12_file(ks: &KeystoreConfig, file: RemoteFile) -> PlainFile {
    PlainFile {
        entry: bundle::FileEntry {
            owner: file.owner.map(owner_of),
            ..bundle::file_entry(bundle_name(&ks.path), &ks.path, &file.bytes, file.mode)
        },
        data: file.bytes,
    }
}

/// The manifest's record of a remote owner.
fn owner_of(o: crate::remote::Owner) -> bundle::FileOwner {
    bundle::FileOwner {
        uid: o.uid,
        gid: o.gid,
        user: o.user,
        group: o.group,
    }
}

/// The file name a keystore's file has in the bundle: the last component of its remote path.
pub fn bundle_name(remote_path: &str) -> &str {
    remote_path.rsplit('/').next().unwrap_or(remote_path)
}

/// Builds the manifest for fetched files.
pub fn manifest(
    node: &NodeConfig,
    keystore: &str,
    kind: ArtifactKind,
    session_host_key: &str,
    files: &[PlainFile],
    identity: Option<Identity>,
    purpose: Purpose,
) -> Manifest {
    Manifest {
        format: FORMAT_VERSION,
        node: node.name.clone(),
        keystore: keystore.to_string(),
        kind: kind.as_str().to_string(),
        purpose,
        role: bundle::Role::of(kind, purpose),
        created_at: crate::bundle::created_now(),
        coldkeep_version: env!("CARGO_PKG_VERSION").to_string(),
        host: format!("{}:{}", node.host, node.port),
        host_key: session_host_key.to_string(),
        files: files.iter().map(|f| f.entry.clone()).collect(),
        dirs: Vec::new(),
        identity,
        recipients: Vec::new(),
        hash_key: None,
        identity_unchecked: None,
    }
}

/// How [`seal_and_store`] writes the artifact.
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    /// Not at all (a dry run: the size is still measured).
    DryRun,
    /// Durably before returning (a pre-restore copy, an import: what follows relies on it).
    Now,
    /// Through a backup run's group commit: durable once the batch says so.
    Batched(&'a Batch),
}

/// What [`seal_and_store`] stored.
#[derive(Debug)]
pub struct Stored {
    /// The artifact id (none on a dry run).
    pub id: Option<String>,
    /// Ciphertext size in bytes.
    pub size: u64,
    /// With [`Write::Batched`]: what to ask the batch's result about.
    pub ticket: Option<Ticket>,
}

/// Encrypts files to `recipients` (recorded in the manifest) and writes the artifact into
/// `store` as `write` says.
pub fn seal_and_store(
    store: &Store,
    recipients: &[Recipient],
    mut manifest: Manifest,
    files: &[PlainFile],
    write: Write<'_>,
) -> anyhow::Result<Stored> {
    manifest.recipients = recipients.iter().map(|r| r.as_str().to_string()).collect();
    let keyed = store.keyed_hash();
    let sealed = bundle::seal(&manifest, files, recipients, keyed.as_ref())?;
    let size = sealed.ciphertext.len() as u64;
    let sidecar = Sidecar {
        manifest: sealed.manifest.public(),
        ciphertext_sha256: sealed.sha256,
        ciphertext_size: size,
        seen_unchanged_at: None,
    };
    let (id, ticket) = match write {
        Write::DryRun => (None, None),
        Write::Now => (Some(store.write(&sidecar, &sealed.ciphertext)?), None),
        Write::Batched(batch) => {
            let (id, ticket) = store.write_batched(batch, &sidecar, sealed.ciphertext)?;
            (Some(id), Some(ticket))
        }
    };
    Ok(Stored { id, size, ticket })
}

/// Stores what a restore is about to replace as a `pre-restore` artifact; returns its id.
pub fn save_pre_restore(
    config: &Config,
    store: &Store,
    node: &NodeConfig,
    ks: &KeystoreConfig,
    session: &dyn Node,
    files: &[PlainFile],
    identity: Option<Identity>,
) -> anyhow::Result<String> {
    let manifest = manifest(
        node,
        &ks.name,
        ArtifactKind::of_keystore(ks.kind),
        session.host_key_fingerprint(),
        files,
        identity,
        Purpose::PreRestore,
    );
    let stored = seal_and_store(store, &config.encryption.recipients, manifest, files, Write::Now)
        .context("saving what is on the node before replacing it (nothing was changed on the node)")?;
    Ok(stored.id.unwrap_or_default())
}

/// How fetched files compare with what a stored manifest records: by keyed hash when the
/// sidecar has them, by SHA-256 in one from before keyed hashes (a live check may still compare
/// those; a backup never reuses one, see [`crate::ops::backup`]).
pub struct Digests<'a> {
    keyed: &'a Keyed,
    by_hmac: bool,
}

impl<'a> Digests<'a> {
    /// The comparison for `manifest`; `None` when its keyed hashes were made with another key
    /// (the signing key was rotated): they cannot be compared.
    pub fn of(manifest: &Manifest, keyed: &'a Keyed) -> Option<Digests<'a>> {
        match manifest.hash_key.as_deref() {
            Some(id) if id != keyed.id() => None,
            recorded => Some(Digests {
                keyed,
                by_hmac: recorded.is_some(),
            }),
        }
    }

    /// A fetched file's digest, comparable with [`Digests::stored`].
    pub fn live(&self, f: &PlainFile) -> String {
        if self.by_hmac {
            self.keyed.hex(&f.data)
        } else {
            f.entry.sha256.clone()
        }
    }

    /// A stored entry's digest.
    pub fn stored<'e>(&self, e: &'e bundle::FileEntry) -> &'e str {
        if self.by_hmac {
            e.hmac.as_deref().unwrap_or_default()
        } else {
            &e.sha256
        }
    }
}

/// Whether fetched files are exactly the ones a manifest lists (names, contents and modes);
/// `None` when the manifest's keyed hashes were made with another key.
pub fn same_files(files: &[PlainFile], manifest: &Manifest, keyed: &Keyed) -> Option<bool> {
    let digests = Digests::of(manifest, keyed)?;
    let mut live: Vec<(&str, String, u32)> = files
        .iter()
        .map(|f| (f.entry.path.as_str(), digests.live(f), f.entry.mode))
        .collect();
    let mut stored: Vec<(&str, String, u32)> = manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), digests.stored(f).to_string(), f.mode))
        .collect();
    live.sort();
    stored.sort();
    Some(live == stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_name_is_last_component() {
        assert_eq!(bundle_name("/home/nodeadmin/tessellation/v3.p12"), "v3.p12");
        assert_eq!(bundle_name("v3.p12"), "v3.p12");
    }
}

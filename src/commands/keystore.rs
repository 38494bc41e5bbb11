//! What commands do with one keystore's material: fetch it, identify it, bundle it.

use crate::bundle::{self, FORMAT_VERSION, Manifest, PlainFile, Purpose};
use crate::config::{KeystoreConfig, KeystoreKind, NodeConfig};
use crate::material::{Identity, p12};
use crate::remote::{RemoteFile, Session};
use anyhow::Context;
use chrono::{SubsecRound, Utc};
use zeroize::Zeroizing;

/// Material fetched from a node, in memory only.
pub struct Fetched {
    pub file: RemoteFile,
    pub identity: Identity,
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

/// Checks what the bytes are and returns their public identity. With a password the material is
/// opened, so a wrong password or a corrupt file fails here.
pub fn identify(ks: &KeystoreConfig, bytes: &[u8]) -> anyhow::Result<Identity> {
    let password = password(ks)?;
    match ks.kind {
        KeystoreKind::P12 => {
            let id = p12::inspect(bytes, password.as_ref().map(|p| p.as_str()))
                .with_context(|| format!("{} is not a usable PKCS#12 file", ks.path))?;
            Ok(Identity::P12(id))
        }
    }
}

/// Fetches a keystore's file over the node's session and identifies it.
pub fn fetch(session: &Session, ks: &KeystoreConfig) -> anyhow::Result<Fetched> {
    let file = session.fetch(&ks.path, ks.max_size)?;
    let identity = identify(ks, &file.bytes)?;
    Ok(Fetched { file, identity })
}

/// The file name a keystore's file has in the bundle: the last component of its remote path.
pub fn bundle_name(remote_path: &str) -> &str {
    remote_path.rsplit('/').next().unwrap_or(remote_path)
}

/// Builds the manifest and plaintext file list for fetched material.
pub fn bundle_parts(
    node: &NodeConfig,
    ks: &KeystoreConfig,
    session_host_key: &str,
    file: RemoteFile,
    identity: Option<Identity>,
    purpose: Purpose,
    recipients: Vec<String>,
) -> (Manifest, Vec<PlainFile>) {
    let entry = bundle::file_entry(bundle_name(&ks.path), &ks.path, &file.bytes, file.mode);
    let manifest = Manifest {
        format: FORMAT_VERSION,
        node: node.name.clone(),
        keystore: ks.name.clone(),
        kind: ks.kind.as_str().to_string(),
        purpose,
        created_at: Utc::now().trunc_subsecs(0),
        coldkeep_version: env!("CARGO_PKG_VERSION").to_string(),
        host: format!("{}:{}", node.host, node.port),
        host_key: session_host_key.to_string(),
        files: vec![entry.clone()],
        identity,
        recipients,
    };
    (
        manifest,
        vec![PlainFile {
            entry,
            data: file.bytes,
        }],
    )
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

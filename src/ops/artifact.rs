//! Listing both stores, picking a stored artifact and opening it with every check, for commands
//! that use contents.

use super::vocab::master_key;
use crate::bundle::{self, Identities, Opened, Purpose};
use crate::config::Config;
use crate::digest::sha256_hex;
use crate::store::{Artifact, Listing, Store, StoreError};
use anyhow::{Context, bail};

/// The newest regular backup of a keystore, if any.
pub fn latest<'a>(artifacts: &'a [Artifact], node: &str, keystore: &str) -> Option<&'a Artifact> {
    artifacts
        .iter()
        .filter(|a| a.node == node && a.keystore == keystore && a.sidecar.manifest.purpose == Purpose::Backup)
        .max_by(|x, y| (x.sidecar.manifest.created_at, &x.id).cmp(&(y.sidecar.manifest.created_at, &y.id)))
}

/// The artifact `wanted` names: `latest`, an exact id, or a unique id prefix.
pub fn pick(store: &Store, node: &str, keystore: &str, wanted: &str) -> anyhow::Result<Artifact> {
    let listing = store.list(Some(node))?;
    if wanted == "latest" {
        return latest(&listing.artifacts, node, keystore)
            .cloned()
            .with_context(|| format!("no backup of {node}/{keystore} in {}", store.primary.display()));
    }
    let matches: Vec<&Artifact> = listing
        .artifacts
        .iter()
        .filter(|a| a.keystore == keystore && a.id.starts_with(wanted))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!("no artifact {wanted} of {node}/{keystore} (see `coldkeep list --node {node}`)"),
        many => bail!(
            "{wanted} matches {} artifacts of {node}/{keystore}; give more of the id",
            many.len()
        ),
    }
}

/// Decrypts the first intact copy (ciphertext hash = sidecar, sidecar = the listed one) and checks
/// that the manifest inside equals the sidecar. A tampered or undecryptable artifact is refused.
pub fn open_verified(store: &Store, artifact: &Artifact, ids: &Identities) -> anyhow::Result<Opened> {
    let mut damage = Vec::new();
    for copy in artifact.copies.iter().filter(|c| c.present) {
        let (ciphertext, sidecar) = match store.read(copy) {
            Ok(x) => x,
            Err(e) => {
                damage.push(e.to_string());
                continue;
            }
        };
        if sha256_hex(&ciphertext) != sidecar.ciphertext_sha256 || !sidecar.same_artifact(&artifact.sidecar) {
            damage.push(format!("{}: does not match its sidecar", copy.age_path.display()));
            continue;
        }
        let opened = bundle::open(&ciphertext, ids)
            .with_context(|| format!("artifact {} ({})", artifact.id, copy.age_path.display()))?;
        if opened.manifest != artifact.sidecar.manifest {
            bail!(
                "artifact {}: the manifest inside differs from the sidecar {} (edited?); refusing it",
                artifact.id,
                copy.sidecar_path.display()
            );
        }
        if !damage.is_empty() {
            tracing::warn!(artifact = %artifact.id, damaged = %damage.join("; "), "used an intact replica");
        }
        return Ok(opened);
    }
    bail!("artifact {}: no intact copy ({})", artifact.id, damage.join("; "))
}

/// The listing of the store and of the master-key store together (master keys under their own
/// keystore names and kind): the one place both stores are listed, optionally for one node.
pub fn list_both(config: &Config, node: Option<&str>) -> Result<Listing, StoreError> {
    let mut listing = Store::new(&config.store).list(node)?;
    if let Some(master) = Store::master_keys(&config.store) {
        let keys = master.list(node)?;
        listing.artifacts.extend(keys.artifacts);
        listing.problems.extend(keys.problems);
    }
    Ok(listing)
}

/// Every artifact of both stores, master keys under `<keystore>:master-key` (the names runs,
/// `status` and the metrics report them under).
pub fn artifacts_with_master_keys(config: &Config) -> Result<Vec<Artifact>, StoreError> {
    let mut artifacts = Store::new(&config.store).list(None)?.artifacts;
    if let Some(master) = Store::master_keys(&config.store) {
        artifacts.extend(master.list(None)?.artifacts.into_iter().map(|mut a| {
            a.keystore = master_key::report_name(&a.keystore);
            a
        }));
    }
    Ok(artifacts)
}

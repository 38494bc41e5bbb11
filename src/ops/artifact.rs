//! Listing both stores, picking a stored artifact and opening it with every check, for commands
//! that use contents.

use super::vocab::{ArtifactKind, master_key};
use crate::bundle::{self, Identities, Opened, Purpose};
use crate::config::Config;
use crate::digest::sha256_hex;
use crate::store::{Artifact, Listed, Listing, Store, StoreError, Summary};
use anyhow::{Context, bail};
use std::collections::BTreeMap;

/// The newest regular backup of a keystore, if any.
pub fn latest<'a, S: Listed>(
    artifacts: &'a [Artifact<S>],
    node: &str,
    keystore: &str,
) -> Option<&'a Artifact<S>> {
    artifacts
        .iter()
        .filter(|a| a.node == node && a.keystore == keystore && a.sidecar.purpose() == Purpose::Backup)
        .max_by(|x, y| (x.sidecar.created_at(), &x.id).cmp(&(y.sidecar.created_at(), &y.id)))
}

/// The artifact `wanted` names: `latest`, an exact id, or a unique id prefix.
pub fn pick(store: &Store, node: &str, keystore: &str, wanted: &str) -> anyhow::Result<Artifact> {
    let listing = store.list(Some(node))?;
    if wanted == "latest" {
        return latest(&listing.artifacts, node, keystore)
            .cloned()
            .with_context(|| {
                // Say why when there are artifacts, just none that may be trusted.
                let refused: Vec<String> = listing
                    .untrusted
                    .iter()
                    .filter(|a| a.keystore == keystore)
                    .map(|a| format!("{} ({})", a.id, a.signature))
                    .collect();
                let why = match refused.is_empty() {
                    true => String::new(),
                    false => format!("; refused, not validly signed: {}", refused.join(", ")),
                };
                format!(
                    "no backup of {node}/{keystore} in {}{why}",
                    store.primary.display()
                )
            });
    }
    let matches: Vec<&Artifact> = listing
        .artifacts
        .iter()
        .filter(|a| a.keystore == keystore && a.id.starts_with(wanted))
        .collect();
    // Named explicitly but not validly signed: say why it is refused, not "not found".
    if matches.is_empty()
        && let Some(bad) = listing
            .untrusted
            .iter()
            .find(|a| a.keystore == keystore && a.id.starts_with(wanted))
    {
        bail!(
            "artifact {} of {node}/{keystore} is refused: {} (only artifacts signed by a key in \
             signing.allowed_signers are used)",
            bad.id,
            bad.signature
        );
    }
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
    if !artifact.signature.is_valid() {
        bail!("artifact {} is refused: {}", artifact.id, artifact.signature);
    }
    let mut damage = Vec::new();
    for copy in artifact
        .copies
        .iter()
        .filter(|c| c.present && c.signature.is_valid())
    {
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
        if !artifact.sidecar.describes_inner(&opened.manifest) {
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
    both(config, node, Store::list)
}

/// Every (node, keystore) name in either store (the master-key store's under the keystore's
/// own name), sorted; only `node`'s when given.
pub fn keystores_both(config: &Config, node: Option<&str>) -> Result<Vec<(String, String)>, StoreError> {
    let mut keystores: std::collections::BTreeSet<(String, String)> =
        Store::new(&config.store).keystores(node)?.into_iter().collect();
    if let Some(master) = Store::master_keys(&config.store) {
        keystores.extend(master.keystores(node)?);
    }
    Ok(keystores.into_iter().collect())
}

/// Both stores listed a keystore at a time on every core, for showing a large store without
/// holding it (`list`): `f` turns one (node, keystore)'s listing (both stores' artifacts under
/// that name, or the error reading it) into what the caller keeps, on the worker threads;
/// `sink` gets the results in the order of `keystores` (see [`keystores_both`]).
pub fn each_keystore_summary<T: Send>(
    config: &Config,
    keystores: &[(String, String)],
    f: impl Fn(Result<Listing<Summary>, StoreError>) -> T + Sync,
    sink: impl FnMut(T),
) {
    let store = Store::new(&config.store);
    let master = Store::master_keys(&config.store);
    let one = |(n, ks): &(String, String)| -> Result<Listing<Summary>, StoreError> {
        let mut listing = store.list_keystore::<Summary>(n, ks)?;
        if let Some(master) = &master {
            listing.append(master.list_keystore(n, ks)?);
        }
        Ok(listing)
    };
    crate::par::map_ordered(keystores, 64, |k| f(one(k)), sink);
}

fn both(
    config: &Config,
    node: Option<&str>,
    list: impl Fn(&Store, Option<&str>) -> Result<Listing, StoreError>,
) -> Result<Listing, StoreError> {
    let mut listing = list(&Store::new(&config.store), node)?;
    if let Some(master) = Store::master_keys(&config.store) {
        listing.append(list(&master, node)?);
    }
    Ok(listing)
}

/// What `status` needs of one keystore's artifacts (master keys under `<keystore>:master-key`).
#[derive(Debug, Default)]
pub struct KeystoreSeen {
    /// The newest validly signed regular backup.
    pub newest: Option<Artifact<Summary>>,
    /// Validly signed artifacts of any purpose.
    pub trusted: usize,
    /// Artifacts without a valid signature.
    pub untrusted: usize,
}

/// Both stores reduced to a [`KeystoreSeen`] per (node, keystore), listed a keystore at a time
/// on every core (a store of 100,000 artifacts is never held).
pub fn seen_per_keystore(config: &Config) -> Result<BTreeMap<(String, String), KeystoreSeen>, StoreError> {
    let keystores = keystores_both(config, None)?;
    let name = |a: &Artifact<Summary>| {
        let keystore = if ArtifactKind::AcraMasterKey.is(&a.sidecar.manifest.kind) {
            master_key::report_name(&a.keystore)
        } else {
            a.keystore.clone()
        };
        (a.node.clone(), keystore)
    };
    let mut seen: BTreeMap<(String, String), KeystoreSeen> = BTreeMap::new();
    let mut first_error = None;
    each_keystore_summary(
        config,
        &keystores,
        |listing| -> Result<BTreeMap<(String, String), KeystoreSeen>, StoreError> {
            let listing = listing?;
            let mut one: BTreeMap<(String, String), KeystoreSeen> = BTreeMap::new();
            for a in &listing.untrusted {
                one.entry(name(a)).or_default().untrusted += 1;
            }
            for a in listing.artifacts {
                let entry = one.entry(name(&a)).or_default();
                entry.trusted += 1;
                let newer = entry
                    .newest
                    .as_ref()
                    .is_none_or(|n| (a.sidecar.created_at(), &a.id) > (n.sidecar.created_at(), &n.id));
                if a.sidecar.purpose() == Purpose::Backup && newer {
                    entry.newest = Some(a);
                }
            }
            Ok(one)
        },
        |one| match one {
            // Keys of different keystores only meet when a keystore is itself named
            // `<other>:master-key`: merged, never overwritten.
            Ok(one) => {
                for (key, more) in one {
                    let entry = seen.entry(key).or_default();
                    entry.trusted += more.trusted;
                    entry.untrusted += more.untrusted;
                    if let Some(a) = more.newest
                        && entry
                            .newest
                            .as_ref()
                            .is_none_or(|n| (a.sidecar.created_at(), &a.id) > (n.sidecar.created_at(), &n.id))
                    {
                        entry.newest = Some(a);
                    }
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        },
    );
    match first_error {
        Some(e) => Err(e),
        None => Ok(seen),
    }
}

/// Every artifact of both stores, master keys under `<keystore>:master-key` (the names runs,
/// `status` and the metrics report them under).
pub fn artifacts_with_master_keys(config: &Config) -> Result<Vec<Artifact>, StoreError> {
    listed_with_master_keys(config, |l| l.artifacts)
}

/// Like [`artifacts_with_master_keys`], for the artifacts without a valid signature (never
/// used; `status` and the metrics raise them).
pub fn untrusted_with_master_keys(config: &Config) -> Result<Vec<Artifact>, StoreError> {
    listed_with_master_keys(config, |l| l.untrusted)
}

fn listed_with_master_keys(
    config: &Config,
    part: impl Fn(Listing) -> Vec<Artifact>,
) -> Result<Vec<Artifact>, StoreError> {
    let mut artifacts = part(Store::new(&config.store).list(None)?);
    if let Some(master) = Store::master_keys(&config.store) {
        artifacts.extend(part(master.list(None)?).into_iter().map(|mut a| {
            a.keystore = master_key::report_name(&a.keystore);
            a
        }));
    }
    Ok(artifacts)
}

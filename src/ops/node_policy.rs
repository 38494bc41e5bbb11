//! What `coldkeep config node-policy` needs from the store: whose each keystore's files were
//! when last backed up, so a printed restore policy names the owner the node already uses.

use super::artifact;
use crate::config::{Config, KeystoreKind, NodeConfig};
use crate::store::Store;
use std::collections::BTreeMap;

/// `user:group` each keystore of `node` had in its latest (signed) backup, by keystore name: the
/// file's owner (p12, file) or the keys directory's (acra). Keystores without a backup, or whose
/// backup recorded no names, are left out.
pub fn recorded_owners(config: &Config, node: &NodeConfig) -> anyhow::Result<BTreeMap<String, String>> {
    let listing = Store::new(&config.store).list(Some(&node.name))?;
    let mut out = BTreeMap::new();
    for ks in &node.keystores {
        let Some(a) = artifact::latest(&listing.artifacts, &node.name, &ks.name) else {
            continue;
        };
        let m = &a.sidecar.manifest;
        let owner = match ks.kind {
            KeystoreKind::Acra => m.dirs.first().and_then(|d| d.owner.clone()),
            _ => m.files.first().and_then(|f| f.owner.clone()),
        };
        // Names recorded from a node are printed into the policy: only plain ones.
        let plain = crate::nodehelper::proto::valid_account_name;
        if let Some((Some(user), Some(group))) = owner.map(|o| (o.user, o.group))
            && plain(&user)
            && plain(&group)
        {
            out.insert(ks.name.clone(), format!("{user}:{group}"));
        }
    }
    Ok(out)
}

//! Restore of an Acra keystore: the whole tree, names exactly as backed up.
//!
//! Into a missing or empty keystore directory it just goes in; over a non-empty one only with
//! `--replace`, after the current content was saved as a `pre-restore` artifact. Either way the
//! tree is uploaded into a temp directory beside the target, read back and compared, and then
//! swapped in by directory renames: a failure at any point leaves the old keystore in place.

use super::keystore;
use super::restore_plan::{
    Prepared, RestorePlan, Root, Source, Step, Target, new_tree_owner, node_rule, split_path,
};
use super::vocab::{ArtifactKind, RestoreAction};
use crate::bundle::{Opened, PlainFile};
use crate::config::{Config, KeystoreConfig, NodeConfig};
use crate::material::{Identity, acra};
use crate::remote::{Node, RemoteError, RemoteTree, TreeLimits, TreeUpload, UploadFile};
use crate::store::{Artifact, Store};
use anyhow::{Context, bail};
use std::collections::BTreeSet;

fn copy(f: &PlainFile) -> PlainFile {
    PlainFile {
        entry: f.entry.clone(),
        data: f.data.clone(),
    }
}

/// Splits an opened Acra backup into the directories it restores (keys, and public when
/// configured), checking its shape against the config. Needs no node.
pub fn roots(
    node: &NodeConfig,
    ks: &KeystoreConfig,
    picked: &Artifact,
    opened: &Opened,
) -> anyhow::Result<Vec<Root>> {
    let m = &opened.manifest;
    if m.kind != ArtifactKind::of_keystore(ks.kind).as_str() {
        bail!(
            "artifact {} holds a {} backup, but keystore {} is of kind acra",
            picked.id,
            m.kind,
            ks.name
        );
    }
    let version = match &m.identity {
        Some(Identity::Acra(id)) => id.version,
        _ => acra::detect_version(&entries(&opened.files)),
    };
    // The `version` marker is added only to a tree that is v2 by its content (key rings).
    let has_rings = opened
        .files
        .iter()
        .any(|f| f.entry.path.starts_with(acra::KEYS_PREFIX) && f.entry.path.ends_with(".keyring"));
    let version_file = (version == 2 && has_rings).then(|| version_marker(&ks.path));
    let mut roots = vec![Root {
        prefix: acra::KEYS_PREFIX,
        path: ks.path.clone(),
        files: Vec::new(),
        target: Target::Missing,
        owner: None,
    }];
    if let Some(public) = &ks.public_path {
        roots.push(Root {
            prefix: acra::PUBLIC_PREFIX,
            path: public.clone(),
            files: Vec::new(),
            target: Target::Missing,
            owner: None,
        });
    }
    for f in &opened.files {
        match roots.iter_mut().find(|r| f.entry.path.starts_with(r.prefix)) {
            Some(root) => root.files.push(copy(f)),
            None if f.entry.path.starts_with(acra::PUBLIC_PREFIX) => bail!(
                "the backup has a separate public keys directory ({}); set `public_path` for {}/{} first",
                split_remote_dir(&f.entry.remote_path),
                node.name,
                ks.name
            ),
            None => bail!("unexpected file {} in an Acra backup", f.entry.path),
        }
    }

    if let Some(public) = roots.get(1)
        && public.files.is_empty()
    {
        bail!(
            "`public_path` is set for {}/{} but backup {} holds no separate public keys directory; \
             refusing rather than emptying {}",
            node.name,
            ks.name,
            picked.id,
            public.path
        );
    }
    if let Some(marker) = version_file
        && !roots[0].files.iter().any(|f| f.entry.path == marker.entry.path)
    {
        roots[0].files.push(marker);
    }
    Ok(roots)
}

/// Reads the node and classifies each directory; changes nothing.
pub fn plan(src: &Source, session: &dyn Node, replace: bool) -> anyhow::Result<RestorePlan> {
    let (node, ks) = (src.node, src.ks);
    let mut roots = roots(node, ks, &src.picked, &src.opened)?;
    let limits = TreeLimits {
        max_files: ks.max_files,
        max_size: ks.max_size,
    };
    for root in &mut roots {
        let (parent, _) = split_path(&root.path);
        match session.stat(parent)? {
            Some(s) if s.is_dir => {}
            _ => bail!(
                "directory {parent} (where {} goes) does not exist on {}; create it (or install Acra) first",
                root.path,
                node.name
            ),
        }
        if session.is_symlink(&root.path)? {
            bail!(
                "{} on {} is a symbolic link; set `path` to the directory it points to and restore there",
                root.path,
                node.name
            );
        }
        refuse_interrupted_swap(session, &root.path)?;
        let tree = session.list_tree(&root.path, limits, &keystore::acra_skip)?;
        let files: Vec<&PlainFile> = root.files.iter().collect();
        root.target = classify(tree.as_ref(), &files, root.prefix, session, &root.path)?;
    }
    // What the node's policy says about writing there (with `become: sudo`), and whose a tree
    // that does not exist yet will be (a replaced one keeps its owner).
    let mut owners = Vec::new();
    let mut max_mode = 0o777;
    for root in roots.iter_mut().filter(|r| r.target != Target::Identical) {
        let rule = node_rule(session, &root.path)?;
        if let Some(r) = &rule {
            max_mode &= r.max_mode;
        }
        if root.target != Target::Missing {
            continue;
        }
        let (owner, said) = match rule.and_then(|r| r.owner) {
            Some(o) => (None, format!("{o} (the node's policy)")),
            None => new_tree_owner(session, &root.files)?,
        };
        root.owner = owner;
        owners.push(format!("{}: {said}", root.path));
    }

    let path = roots
        .iter()
        .map(|r| r.path.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut plan = RestorePlan::new(src, path, "0700".into());
    plan.owner = (!owners.is_empty()).then(|| owners.join("; "));
    if roots.iter().all(|r| r.target == Target::Identical) {
        return Ok(plan);
    }
    let occupied = roots.iter().any(|r| r.target == Target::Different);
    if occupied && !replace {
        bail!(
            "the keystore at {} on {} is not empty and differs from the backup; restoring over it needs \
             --replace (its current content is saved as a pre-restore artifact first). Nothing was changed.",
            plan.path,
            node.name
        );
    }
    if occupied {
        plan.steps.push(Step::SavePreRestore {
            paths: roots.iter().map(|r| r.path.clone()).collect(),
        });
    }
    for r in roots.iter().filter(|r| r.target != Target::Identical) {
        plan.steps.push(Step::SwapTree {
            path: r.path.clone(),
            files: r
                .files
                .iter()
                .map(|f| {
                    let rel = f.entry.path.strip_prefix(r.prefix).unwrap_or(&f.entry.path);
                    (
                        rel.to_string(),
                        format!("{:04o}", restored_mode(rel, f.entry.mode) & max_mode),
                    )
                })
                .collect(),
            keep_owner: r.target != Target::Missing,
            owner: r.owner.clone(),
            replaces: r.target != Target::Missing,
        });
    }
    plan.action = if occupied {
        RestoreAction::Replaced
    } else {
        RestoreAction::Created
    };
    Ok(plan.with_acra(Prepared { roots, occupied }))
}

/// Executes the Acra part of a plan; returns the pre-restore artifact's id when one was saved.
pub fn apply(
    config: &Config,
    src: &Source,
    session: &dyn Node,
    plan: &RestorePlan,
    prepared: Prepared,
) -> anyhow::Result<Option<String>> {
    let (node, ks) = (src.node, src.ks);
    for root in &prepared.roots {
        session.remove_stale_temps(&root.path)?;
    }
    let saved = if prepared.occupied {
        Some(save_pre_restore(config, &src.store, node, ks, session)?)
    } else {
        None
    };
    let uploads: Vec<TreeUpload> = prepared
        .roots
        .iter()
        .filter(|r| r.target != Target::Identical)
        .map(|r| TreeUpload {
            path: r.path.clone(),
            files: r
                .files
                .iter()
                .map(|f| {
                    let rel = f.entry.path.strip_prefix(r.prefix).unwrap_or(&f.entry.path);
                    UploadFile {
                        rel: rel.to_string(),
                        mode: restored_mode(rel, f.entry.mode),
                        data: &f.data,
                    }
                })
                .collect(),
            replace: r.target != Target::Missing,
            owner: r.owner.clone(),
        })
        .collect();
    session
        .restore_trees(&uploads)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("restoring {} on {}", plan.path, node.name))?;
    Ok(saved)
}

fn entries(files: &[PlainFile]) -> Vec<acra::Entry<'_>> {
    files
        .iter()
        .map(|f| acra::Entry {
            path: &f.entry.path,
            mode: f.entry.mode,
            data: &f.data,
        })
        .collect()
}

fn split_remote_dir(path: &str) -> &str {
    split_path(path).0
}

/// Compares what is on the node with the backup's files for that directory.
fn classify(
    tree: Option<&RemoteTree>,
    files: &[&PlainFile],
    prefix: &str,
    session: &dyn Node,
    root: &str,
) -> anyhow::Result<Target> {
    let Some(tree) = tree else {
        return Ok(Target::Missing);
    };
    let only_marker = tree.files.iter().all(|f| f.rel == acra::VERSION_FILE);
    if tree.files.is_empty() || only_marker && tree.files.len() == 1 && marker_is_exact(session, root)? {
        return Ok(Target::Empty);
    }
    let node_names: BTreeSet<&str> = tree.files.iter().map(|f| f.rel.as_str()).collect();
    let backup_names: BTreeSet<&str> = files
        .iter()
        .map(|f| f.entry.path.strip_prefix(prefix).unwrap_or(&f.entry.path))
        .collect();
    if node_names != backup_names {
        return Ok(Target::Different);
    }
    // Same names: compare contents.
    Ok(
        if tree_matches(session, root, files, prefix, &keystore::acra_skip)? {
            Target::Identical
        } else {
            Target::Different
        },
    )
}

/// Whether the tree at `dir` on the node holds exactly `files` (names under `prefix`, hashes).
fn tree_matches(
    session: &dyn Node,
    dir: &str,
    files: &[&PlainFile],
    prefix: &str,
    skip: &dyn Fn(&str) -> bool,
) -> anyhow::Result<bool> {
    let limits = TreeLimits {
        // Directories count toward max_files; each holds at least one of the files.
        max_files: files.len() as u64 * 2 + 1,
        max_size: files.iter().map(|f| f.entry.size).sum::<u64>() + 1,
    };
    let live = match session.fetch_tree(dir, limits, skip) {
        Ok(Some(tree)) => tree,
        Ok(None) | Err(RemoteError::TreeTooLarge { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let live: BTreeSet<(String, String)> = live
        .files
        .iter()
        .map(|(e, data)| (e.rel.clone(), crate::digest::sha256_hex(data)))
        .collect();
    let wanted: BTreeSet<(String, String)> = files
        .iter()
        .map(|f| {
            let rel = f.entry.path.strip_prefix(prefix).unwrap_or(&f.entry.path);
            (rel.to_string(), f.entry.sha256.clone())
        })
        .collect();
    Ok(live == wanted)
}

/// A swap cut off between its two renames leaves the previous keystore under a
/// `.NAME.coldkeep-old-*` name: never touch it, tell the operator.
fn refuse_interrupted_swap(session: &dyn Node, root: &str) -> anyhow::Result<()> {
    let found = session.beside(root, "coldkeep-old-")?.join(", ");
    if !found.is_empty() {
        bail!(
            "an earlier restore was interrupted and left the previous keystore at {found} on the node; \
             check it, then move it back to {root} or remove it, and run the restore again"
        );
    }
    Ok(())
}

fn marker_is_exact(session: &dyn Node, root: &str) -> anyhow::Result<bool> {
    let file = session.fetch(&format!("{root}/{}", acra::VERSION_FILE), 64)?;
    Ok(file.bytes.as_slice() == acra::VERSION_CONTENT)
}

/// A v2 `version` file to add when the backup lacks one.
fn version_marker(root: &str) -> PlainFile {
    let data = zeroize::Zeroizing::new(acra::VERSION_CONTENT.to_vec());
    PlainFile {
        entry: crate::bundle::file_entry(
            &format!("{}{}", acra::KEYS_PREFIX, acra::VERSION_FILE),
            &format!("{root}/{}", acra::VERSION_FILE),
            &data,
            0o644,
        ),
        data,
    }
}

/// The mode a restored file gets: the backed-up one when it is no more open than Acra's rule
/// (public keys and the version marker 0644, everything else 0600), else the rule.
pub fn restored_mode(rel: &str, backed_up: u32) -> u32 {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let rule = if name.ends_with(".pub") || rel == acra::VERSION_FILE {
        0o644
    } else {
        0o600
    };
    let mode = backed_up & 0o777;
    if mode & !rule == 0 && mode & 0o400 != 0 {
        mode
    } else {
        rule
    }
}

/// Saves the keystore about to be replaced (both directories) as a `pre-restore` artifact.
fn save_pre_restore(
    config: &Config,
    store: &Store,
    node: &NodeConfig,
    ks: &KeystoreConfig,
    session: &dyn Node,
) -> anyhow::Result<String> {
    let (root_mode, files, _) = keystore::fetch_acra(session, ks)?
        .context("the keystore directory disappeared while restoring; nothing was changed")?;
    let identity = keystore::identify_acra(ks, root_mode, &files).ok();
    keystore::save_pre_restore(config, store, node, ks, session, &files, identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_follow_acra_rules_and_keep_stricter_ones() {
        assert_eq!(restored_mode("Alice_storage", 0o600), 0o600);
        assert_eq!(restored_mode("Alice_storage", 0o400), 0o400);
        assert_eq!(restored_mode("Alice_storage", 0o644), 0o600);
        assert_eq!(restored_mode("Alice_storage.pub", 0o644), 0o644);
        assert_eq!(restored_mode("Alice_storage.pub", 0o666), 0o644);
        assert_eq!(restored_mode("version", 0o644), 0o644);
        assert_eq!(restored_mode("client/Alice/storage.keyring", 0o600), 0o600);
        assert_eq!(restored_mode(".poison_key/poison_key", 0o000), 0o600);
    }
}

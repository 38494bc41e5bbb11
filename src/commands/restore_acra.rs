//! `coldkeep restore` of an Acra keystore: the whole tree, names exactly as backed up.
//!
//! Into a missing or empty keystore directory it just goes in; over a non-empty one only with
//! `--replace`, after the current content was saved as a `pre-restore` artifact. Either way the
//! tree is uploaded into a temp directory beside the target, read back and compared, and then
//! swapped in by directory renames: a failure at any point leaves the old keystore in place.

use super::keystore;
use super::restore::{RestoreOutcome, finish};
use crate::bundle::{Opened, PlainFile};
use crate::cli::RestoreArgs;
use crate::config::{Config, KeystoreConfig, NodeConfig};
use crate::error::Exit;
use crate::material::{Identity, acra};
use crate::remote::{RemoteError, RemoteTree, Session, TreeLimits};
use crate::store::{Artifact, Store};
use anyhow::{Context, bail};
use std::collections::BTreeSet;

/// What is at one target directory now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Missing,
    /// No files, or only a v2 `version` marker (an empty keystore).
    Empty,
    Identical,
    Different,
}

/// One directory to restore: the keys directory, or the separate public one.
struct Root<'a> {
    /// `keys/` or `public/`.
    prefix: &'static str,
    path: &'a str,
    files: Vec<&'a PlainFile>,
    target: Target,
}

/// Restores an already opened and verified Acra artifact (step 1 was done by the caller).
pub fn run(
    config: &Config,
    args: &RestoreArgs,
    node: &NodeConfig,
    ks: &KeystoreConfig,
    store: &Store,
    picked: &Artifact,
    opened: &Opened,
) -> anyhow::Result<Exit> {
    let m = &opened.manifest;
    if m.kind != ks.kind.as_str() {
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
    let mut roots = vec![Root {
        prefix: acra::KEYS_PREFIX,
        path: &ks.path,
        files: Vec::new(),
        target: Target::Missing,
    }];
    if let Some(public) = &ks.public_path {
        roots.push(Root {
            prefix: acra::PUBLIC_PREFIX,
            path: public,
            files: Vec::new(),
            target: Target::Missing,
        });
    }
    for f in &opened.files {
        match roots.iter_mut().find(|r| f.entry.path.starts_with(r.prefix)) {
            Some(root) => root.files.push(f),
            None if f.entry.path.starts_with(acra::PUBLIC_PREFIX) => bail!(
                "the backup has a separate public keys directory ({}); set `public_path` for {}/{} first",
                split_remote_dir(&f.entry.remote_path),
                node.name,
                ks.name
            ),
            None => bail!("unexpected file {} in an Acra backup", f.entry.path),
        }
    }

    let session = Session::connect(node)?;
    let limits = TreeLimits {
        max_files: ks.max_files,
        max_size: ks.max_size,
    };
    for root in &mut roots {
        let (parent, _) = super::restore::split_path(root.path);
        match session.stat(parent)? {
            Some(s) if s.is_dir => {}
            _ => bail!(
                "directory {parent} (where {} goes) does not exist on {}; create it (or install Acra) first",
                root.path,
                node.name
            ),
        }
        refuse_interrupted_swap(&session, root.path)?;
        session.remove_stale_temps(root.path)?;
        let tree = session.list_tree(root.path, limits, &keystore::acra_skip)?;
        root.target = classify(tree.as_ref(), &root.files, root.prefix, &session, root.path)?;
    }

    let mut outcome = RestoreOutcome {
        node: node.name.clone(),
        keystore: ks.name.clone(),
        artifact: picked.id.clone(),
        from_node: m.node.clone(),
        path: roots.iter().map(|r| r.path).collect::<Vec<_>>().join(", "),
        action: String::new(),
        mode: "0700".into(),
        identity: m.identity.clone(),
        previous_saved_as: None,
    };
    if roots.iter().all(|r| r.target == Target::Identical) {
        outcome.action = "already-in-place".into();
        session.close();
        return finish(&outcome, args.json);
    }
    let occupied = roots.iter().any(|r| r.target == Target::Different);
    if occupied && !args.replace {
        bail!(
            "the keystore at {} on {} is not empty and differs from the backup; restoring over it needs \
             --replace (its current content is saved as a pre-restore artifact first). Nothing was changed.",
            outcome.path,
            node.name
        );
    }
    if args.dry_run {
        outcome.action = if occupied { "would-replace" } else { "would-create" }.into();
        session.close();
        return finish(&outcome, args.json);
    }
    if occupied {
        outcome.previous_saved_as = Some(save_pre_restore(config, store, node, ks, &session)?);
    }
    for root in roots.iter().filter(|r| r.target != Target::Identical) {
        let mut files = root.files.clone();
        let version_file;
        if root.prefix == acra::KEYS_PREFIX && version == 2 {
            let marker = format!("{}{}", acra::KEYS_PREFIX, acra::VERSION_FILE);
            if !files.iter().any(|f| f.entry.path == marker) {
                version_file = version_marker(root.path);
                files.push(&version_file);
            }
        }
        swap_in(&session, root, &files).with_context(|| {
            format!(
                "restoring {} on {} (the old keystore, if any, is unchanged)",
                root.path, node.name
            )
        })?;
    }
    session.close();
    outcome.action = if occupied { "replaced" } else { "created" }.into();
    finish(&outcome, args.json)
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
    super::restore::split_path(path).0
}

/// Compares what is on the node with the backup's files for that directory.
fn classify(
    tree: Option<&RemoteTree>,
    files: &[&PlainFile],
    prefix: &str,
    session: &Session,
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
    session: &Session,
    dir: &str,
    files: &[&PlainFile],
    prefix: &str,
    skip: &dyn Fn(&str) -> bool,
) -> anyhow::Result<bool> {
    let limits = TreeLimits {
        max_files: files.len() as u64 + 1,
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
fn refuse_interrupted_swap(session: &Session, root: &str) -> anyhow::Result<()> {
    let (parent, name) = super::restore::split_path(root);
    let pattern = format!(
        "{}/{}*",
        crate::remote::shell_quote(parent.trim_end_matches('/')),
        crate::remote::shell_quote(&format!(".{name}.coldkeep-old-"))
    );
    let out = session.exec(&format!(
        "for d in {pattern}; do [ -e \"$d\" ] && echo \"$d\"; done; true"
    ))?;
    let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !found.is_empty() {
        bail!(
            "an earlier restore was interrupted and left the previous keystore at {found} on the node; \
             check it, then move it back to {root} or remove it, and run the restore again"
        );
    }
    Ok(())
}

fn marker_is_exact(session: &Session, root: &str) -> anyhow::Result<bool> {
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

/// Uploads `files` into a temp directory beside the root, reads them back, then swaps the
/// directories by rename. The previous directory (if any) is removed only after the swap.
fn swap_in(session: &Session, root: &Root, files: &[&PlainFile]) -> anyhow::Result<()> {
    let (parent, name) = super::restore::split_path(root.path);
    let join = |n: &str| {
        if parent == "/" {
            format!("/{n}")
        } else {
            format!("{parent}/{n}")
        }
    };
    let tag = format!("{:08x}", rand::random::<u32>());
    let temp = join(&format!(".{name}.coldkeep-tmp-{tag}"));
    let old = join(&format!(".{name}.coldkeep-old-{tag}"));
    let result = (|| -> anyhow::Result<()> {
        session.make_dir(&temp, 0o700)?;
        let mut dirs = BTreeSet::new();
        for f in files {
            let rel = f.entry.path.strip_prefix(root.prefix).unwrap_or(&f.entry.path);
            let mut at = 0;
            while let Some(i) = rel[at..].find('/') {
                dirs.insert(&rel[..at + i]);
                at += i + 1;
            }
        }
        for dir in &dirs {
            session.make_dir(&format!("{temp}/{dir}"), 0o700)?;
        }
        for f in files {
            let rel = f.entry.path.strip_prefix(root.prefix).unwrap_or(&f.entry.path);
            session.write_new_file(
                &format!("{temp}/{rel}"),
                &f.data,
                restored_mode(rel, f.entry.mode),
            )?;
        }
        // Read back before anything is swapped.
        if !tree_matches(session, &temp, files, root.prefix, &|_| false)? {
            bail!("read back of the uploaded keystore does not match the backup");
        }
        match root.target {
            Target::Missing => session.rename_dir(&temp, root.path)?,
            _ => {
                session.rename_dir(root.path, &old)?;
                if let Err(e) = session.rename_dir(&temp, root.path) {
                    let _ = session.rename_dir(&old, root.path);
                    return Err(e.into());
                }
                session.remove_tree(&old)?;
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = session.remove_tree(&temp);
    }
    result
}

/// Saves the keystore about to be replaced (both directories) as a `pre-restore` artifact.
fn save_pre_restore(
    config: &Config,
    store: &Store,
    node: &NodeConfig,
    ks: &KeystoreConfig,
    session: &Session,
) -> anyhow::Result<String> {
    let (root_mode, files) = keystore::fetch_acra(session, ks)?
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

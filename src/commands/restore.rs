//! `coldkeep restore`: push a backup back to its node, only after every check passes.
//!
//! Order (see `coldkeep restore --help`): decrypt and verify the artifact; name checks against
//! the config and nodectl's cn-config.yaml; the target directory exists; an identical file is
//! left alone, a different one is saved as a `pre-restore` artifact and replaced only when
//! confirmed; then an atomic upload with read-back. Nothing changes on the node before step 5.

use super::artifact;
use super::keystore;
use super::report::{Table, print_json};
use crate::bundle::Identities;
use crate::cli::RestoreArgs;
use crate::config::{Config, KeystoreConfig, KeystoreKind, NodeConfig};
use crate::digest::sha256_hex;
use crate::error::{Exit, UsageError};
use crate::material::{Identity, nodectl, p12};
use crate::remote::{RemoteError, Session};
use crate::store::Store;
use anyhow::{Context, bail};
use serde::Serialize;
use std::io::IsTerminal;

/// Mode of a restored P12 when there is no existing file to take it from (nodectl's).
pub const DEFAULT_MODE: u32 = 0o400;

/// What a restore did (or, with `--dry-run`, would do).
#[derive(Debug, Serialize)]
pub struct RestoreOutcome {
    pub node: String,
    pub keystore: String,
    pub artifact: String,
    /// The node the backup was taken from.
    pub from_node: String,
    pub path: String,
    /// `already-in-place`, `created`, `replaced`, or with --dry-run `would-create`/`would-replace`.
    pub action: String,
    pub mode: String,
    /// Whose the file will be: kept from the replaced file, the backup's recorded owner, or
    /// why neither.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// Id of the pre-restore artifact holding the file that was replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_saved_as: Option<String>,
}

/// One row of the name-check table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRow {
    pub source: String,
    pub directory: String,
    pub name: String,
    pub ok: bool,
}

/// Runs `coldkeep restore`.
pub fn run(config: &Config, args: &RestoreArgs) -> anyhow::Result<Exit> {
    let mut names = vec![args.node.clone()];
    names.extend(args.from_node.clone());
    super::check_node_names(config, &names)?;
    let node = config.node(&args.node).expect("checked");
    let ks = pick_keystore(node, args.keystore.as_deref())?;
    let from = args.from_node.as_deref().unwrap_or(&node.name);
    let ids = Identities::from_file(&args.identity)?;
    let store = Store::new(&config.store);

    // 1. The artifact, decrypted in memory and fully checked.
    let picked = artifact::pick(&store, from, &ks.name, &args.backup)?;
    let opened = artifact::open_verified(&store, &picked, &ids)?;
    if ks.kind == KeystoreKind::Acra {
        return super::restore_acra::run(config, args, node, ks, &store, &picked, &opened);
    }
    let [file] = opened.files.as_slice() else {
        bail!(
            "artifact {} holds {} files; a P12 backup holds one",
            picked.id,
            opened.files.len()
        );
    };

    // 2a. Names the backup and the config give, and the password.
    let (want_dir, want_name) = split_path(&ks.path);
    let mut rows = vec![
        NameRow {
            source: format!("backup {} ({from})", picked.id),
            directory: split_path(&file.entry.remote_path).0.to_string(),
            name: file.entry.path.clone(),
            ok: file.entry.path == want_name,
        },
        NameRow {
            source: format!("config {}/{}", node.name, ks.name),
            directory: want_dir.to_string(),
            name: want_name.to_string(),
            ok: true,
        },
    ];
    let identity =
        match ks.password {
            Some(_) => Some(keystore::identify(ks, &file.data).with_context(|| {
                format!("the backup does not open with {}'s configured password", ks.name)
            })?),
            None => opened.manifest.identity.clone(),
        };

    let session = Session::connect(node)?;

    // 2b. nodectl's view, read from the node.
    if let Some(cn_config) = &ks.nodectl_config {
        let text = match session.fetch(cn_config, nodectl::MAX_SIZE) {
            Ok(f) => String::from_utf8_lossy(&f.bytes).into_owned(),
            Err(RemoteError::NotFound { .. }) => bail!(
                "nodectl config {cn_config} does not exist on {}: install the node with nodectl first, \
                 using the same P12 file name ({want_name}), then restore",
                node.name
            ),
            Err(e) => return Err(e).context("reading nodectl's config"),
        };
        let locations =
            nodectl::p12_locations(&text).with_context(|| format!("{cn_config} on {}", node.name))?;
        rows.extend(nodectl_rows(&locations, want_dir, want_name));
    }
    if rows.iter().any(|r| !r.ok) {
        bail!(
            "refusing to restore: the P12 names do not match (the node reads the file nodectl's config names, \
             so it must have the same name and directory):\n{}",
            name_table(&rows)
        );
    }

    // 3. The target directory must exist.
    match session.stat(want_dir)? {
        Some(s) if s.is_dir => {}
        _ => bail!(
            "directory {want_dir} does not exist on {}: install the node with nodectl first, using the same \
             P12 file name ({want_name}), then restore",
            node.name
        ),
    }

    // 4. What is there now.
    let mut outcome = RestoreOutcome {
        node: node.name.clone(),
        keystore: ks.name.clone(),
        artifact: picked.id.clone(),
        from_node: from.to_string(),
        path: ks.path.clone(),
        action: String::new(),
        mode: format!("{DEFAULT_MODE:04o}"),
        owner: None,
        identity,
        previous_saved_as: None,
    };
    let existing = match session.stat(&ks.path)? {
        Some(s) if s.is_file => Some(session.fetch(&ks.path, ks.max_size.max(file.data.len() as u64))?),
        Some(_) => bail!(
            "{} on {} exists and is not a regular file; refusing",
            ks.path,
            node.name
        ),
        None => None,
    };
    let new_owner = match &existing {
        Some(_) => {
            outcome.owner = Some("kept from the replaced file".into());
            None
        }
        None => {
            let (owner, said) = super::restore_owner::pick(&session, file.entry.owner.as_ref())?;
            outcome.owner = Some(said);
            owner
        }
    };
    if let Some(current) = &existing {
        outcome.mode = format!("{:04o}", current.mode);
        if sha256_hex(&current.bytes) == file.entry.sha256 {
            outcome.action = "already-in-place".into();
            session.close();
            return finish(&outcome, args.json);
        }
    }
    if args.dry_run {
        outcome.action = if existing.is_some() {
            "would-replace"
        } else {
            "would-create"
        }
        .into();
        session.close();
        return finish(&outcome, args.json);
    }
    if let Some(current) = existing {
        confirm(args.yes, &node.name, &ks.path)?;
        let mode = current.mode;
        outcome.previous_saved_as = Some(save_pre_restore(config, &store, node, ks, &session, current)?);
        outcome.action = "replaced".into();
        push(&session, ks, &file.data, mode)?;
    } else {
        outcome.action = "created".into();
        session.remove_stale_temps(&ks.path)?;
        session
            .push_owned(&ks.path, &file.data, DEFAULT_MODE, new_owner.as_deref())
            .with_context(|| format!("uploading to {}", ks.path))?;
    }
    session.close();
    finish(&outcome, args.json)
}

/// The keystore to restore: the named one, or the node's only one.
fn pick_keystore<'n>(node: &'n NodeConfig, name: Option<&str>) -> Result<&'n KeystoreConfig, UsageError> {
    let ks = match name {
        Some(name) => node.keystores.iter().find(|k| k.name == name),
        None if node.keystores.len() == 1 => node.keystores.first(),
        None => {
            return Err(UsageError(format!(
                "node {} has {} keystores; name one with --keystore ({})",
                node.name,
                node.keystores.len(),
                node.keystores
                    .iter()
                    .map(|k| k.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    ks.ok_or_else(|| {
        UsageError(format!(
            "node {} has no keystore {:?}",
            node.name,
            name.unwrap_or_default()
        ))
    })
}

/// `/a/b/c.p12` -> (`/a/b`, `c.p12`).
pub fn split_path(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((dir, name)) => (dir, name),
        None => (".", path),
    }
}

/// One row per nodectl profile, checked against the configured directory and name.
pub fn nodectl_rows(locations: &[nodectl::P12Location], want_dir: &str, want_name: &str) -> Vec<NameRow> {
    locations
        .iter()
        .map(|l| {
            let source = if l.from_global {
                format!("nodectl {} (global_p12)", l.profile)
            } else {
                format!("nodectl {}", l.profile)
            };
            NameRow {
                source,
                directory: l.directory.clone().unwrap_or_else(|| "(not set)".into()),
                name: l.name.clone().unwrap_or_else(|| "(not set)".into()),
                ok: l.directory.as_deref() == Some(want_dir) && l.name.as_deref() == Some(want_name),
            }
        })
        .collect()
}

/// The name-check rows as a table.
pub fn name_table(rows: &[NameRow]) -> String {
    let mut table = Table::new(&["SOURCE", "DIRECTORY", "NAME", ""]);
    for r in rows {
        let mark = if r.ok { "ok" } else { "MISMATCH" };
        table.row(vec![
            r.source.clone(),
            r.directory.clone(),
            r.name.clone(),
            mark.into(),
        ]);
    }
    table.render()
}

/// Replacing needs `--yes`, or a yes typed on a terminal.
fn confirm(yes: bool, node: &str, path: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "{path} on {node} holds a different file; refusing to replace it without --yes \
             (no terminal to ask on). Nothing was changed."
        );
    }
    if super::report::ask_yes(&format!(
        "{path} on {node} holds a different file. It will be saved to the store first. Replace it?"
    ))? {
        Ok(())
    } else {
        bail!("not confirmed; nothing was changed")
    }
}

/// Stores the file about to be replaced as a `pre-restore` artifact; returns its id.
fn save_pre_restore(
    config: &Config,
    store: &Store,
    node: &NodeConfig,
    ks: &KeystoreConfig,
    session: &Session,
    current: crate::remote::RemoteFile,
) -> anyhow::Result<String> {
    // The file being replaced may be nodectl's temporary P12 with another password: record what
    // can be known about it, and keep it whatever it is.
    let identity = keystore::identify(ks, &current.bytes)
        .or_else(|_| p12::inspect(&current.bytes, None).map(Identity::P12))
        .ok();
    let files = [keystore::p12_file(ks, current)];
    keystore::save_pre_restore(config, store, node, ks, session, &files, identity)
}

/// Uploads atomically, after removing temp files an interrupted earlier restore left behind.
fn push(session: &Session, ks: &KeystoreConfig, data: &[u8], mode: u32) -> anyhow::Result<()> {
    session.remove_stale_temps(&ks.path)?;
    session.push(&ks.path, data, mode).with_context(|| {
        format!(
            "uploading to {} (the previous file, if any, is still in place)",
            ks.path
        )
    })
}

pub(super) fn finish(outcome: &RestoreOutcome, json: bool) -> anyhow::Result<Exit> {
    if json {
        print_json(outcome)?;
        return Ok(Exit::Ok);
    }
    let what = match outcome.action.as_str() {
        "already-in-place" => {
            "already in place: the node has the identical file; nothing changed".to_string()
        }
        "created" => format!(
            "restored: created {} (mode {}, owner {})",
            outcome.path,
            outcome.mode,
            outcome.owner.as_deref().unwrap_or("unchanged")
        ),
        "replaced" => format!("restored: replaced {} (mode {})", outcome.path, outcome.mode),
        "would-create" => format!(
            "dry run: would create {} (mode {}, owner {})",
            outcome.path,
            outcome.mode,
            outcome.owner.as_deref().unwrap_or("unchanged")
        ),
        "would-replace" => format!(
            "dry run: would save the current {} as a pre-restore artifact, then replace it (mode {} kept)",
            outcome.path, outcome.mode
        ),
        other => other.to_string(),
    };
    println!("{}/{}: {what}", outcome.node, outcome.keystore);
    println!(
        "  artifact: {} (backup of {})",
        outcome.artifact, outcome.from_node
    );
    if let Some(identity) = &outcome.identity {
        println!("  identity: {}", identity.short());
    }
    if let Some(saved) = &outcome.previous_saved_as {
        println!(
            "  previous file saved as pre-restore artifact {saved} (see `coldkeep list --node {}`)",
            outcome.node
        );
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_paths() {
        assert_eq!(
            split_path("/home/nodeadmin/tessellation/a.p12"),
            ("/home/nodeadmin/tessellation", "a.p12")
        );
        assert_eq!(split_path("/a.p12"), ("/", "a.p12"));
    }

    #[test]
    fn nodectl_rows_flag_mismatches() {
        let locs = vec![
            nodectl::P12Location {
                profile: "dag-l0".into(),
                directory: Some("/home/nodeadmin/tessellation".into()),
                name: Some("a.p12".into()),
                from_global: true,
            },
            nodectl::P12Location {
                profile: "dag-l1".into(),
                directory: None,
                name: None,
                from_global: false,
            },
        ];
        let rows = nodectl_rows(&locs, "/home/nodeadmin/tessellation", "a.p12");
        assert!(rows[0].ok && !rows[1].ok);
        let table = name_table(&rows);
        assert!(
            table.contains("nodectl dag-l0 (global_p12)") && table.contains("MISMATCH"),
            "{table}"
        );
    }
}

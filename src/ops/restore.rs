//! Restore as plan, then apply.
//!
//! [`Source::open`] picks the artifact and checks everything that needs no node (decryption,
//! hashes, the password, the backup's shape). [`plan`] then reads the node (never changes it) and
//! returns a [`RestorePlan`]: every check result, what will be saved, uploaded and renamed, with
//! modes and owners. `--dry-run` prints exactly that plan; [`apply`] executes exactly that plan.
//!
//! Order for a P12 (see `coldkeep restore --help`): decrypt and verify the artifact; name checks
//! against the config and nodectl's cn-config.yaml; the target directory exists; an identical
//! file is left alone, a different one is saved as a `pre-restore` artifact and replaced only
//! when confirmed; then an atomic upload with read-back. Nothing changes on the node before apply.

use super::artifact;
use super::keystore;
use super::restore_acra;
pub use super::restore_plan::{
    NameRow, RestoreOutcome, RestorePlan, RestoreRequest, Source, Step, split_path,
};
use super::restore_plan::{Work, new_file_owner, node_rule};
use super::vocab::RestoreAction;
use super::{nodectl_names, passphrase};
use crate::bundle::{Identities, Opened, PlainFile};
use crate::config::{Config, KeystoreConfig, KeystoreKind, NodeConfig};
use crate::digest::sha256_hex;
use crate::error::UsageError;
use crate::material::{Identity, nodectl, p12};
use crate::output::Table;
use crate::remote::{Node, RemoteError, RemoteFile};
use crate::store::{Artifact, Store};
use anyhow::{Context, bail};

/// Mode of a restored P12 when there is no existing file to take it from (nodectl's).
pub const DEFAULT_MODE: u32 = 0o400;

impl<'c> Source<'c> {
    /// Resolves the request against the config, picks the artifact and opens it with every
    /// check; for a P12 checks the password, for Acra the backup's shape.
    pub fn open(config: &'c Config, req: &RestoreRequest) -> anyhow::Result<Source<'c>> {
        let mut names = vec![req.node.clone()];
        names.extend(req.from_node.clone());
        super::check_node_names(config, &names)?;
        let node = config.node(&req.node).expect("checked");
        let ks = pick_keystore(node, req.keystore.as_deref())?;
        let from = req.from_node.clone().unwrap_or_else(|| node.name.clone());
        let ids = Identities::from_file(&req.identity)?;
        let store = Store::new(&config.store);

        // 1. The artifact, decrypted in memory and fully checked.
        let picked = artifact::pick(&store, &from, &ks.name, &req.backup)?;
        // `latest` means "the backup that is known good" to an operator in a hurry: one stored
        // without its identity checked is restored only when named.
        if req.backup == "latest"
            && let Some(why) = &picked.sidecar.manifest.identity_unchecked
        {
            let checked = store.list(Some(&from)).ok().and_then(|l| {
                l.artifacts
                    .into_iter()
                    .filter(|a| {
                        a.keystore == ks.name
                            && a.sidecar.manifest.purpose == crate::bundle::Purpose::Backup
                            && a.sidecar.manifest.identity_unchecked.is_none()
                    })
                    .max_by(|x, y| {
                        (x.sidecar.manifest.created_at, &x.id).cmp(&(y.sidecar.manifest.created_at, &y.id))
                    })
            });
            bail!(
                "refusing to restore the latest backup of {from}/{} ({}) as `latest`: it was stored \
                 without its identity checked ({why}), so nobody has seen it open with the password the \
                 node needs. Name it to restore it anyway: --backup {}{}",
                ks.name,
                picked.id,
                picked.id,
                match checked {
                    Some(a) => format!(
                        ". The newest backup whose identity was checked is {} ({})",
                        a.id,
                        a.sidecar.manifest.created_at.format("%Y-%m-%d %H:%M:%S")
                    ),
                    None => ". No backup of this keystore had its identity checked".to_string(),
                }
            );
        }
        let opened = artifact::open_verified(&store, &picked, &ids)?;
        let identity = if ks.kind == KeystoreKind::Acra {
            restore_acra::roots(node, ks, &picked, &opened)?;
            super::acra_master::refuse_unless_keys_open(
                config,
                (&node.name, &ks.name),
                &picked,
                &opened,
                &ids,
            )?;
            opened.manifest.identity.clone()
        } else {
            let file = p12_file(&picked, &opened)?;
            match ks.password {
                Some(_) => Some(keystore::identify(ks, &file.data).with_context(|| {
                    format!("the backup does not open with {}'s configured password", ks.name)
                })?),
                None => opened.manifest.identity.clone(),
            }
        };
        Ok(Source {
            node,
            ks,
            from,
            store,
            picked,
            opened,
            identity,
            accept_passphrase_mismatch: req.accept_passphrase_mismatch,
        })
    }
}

/// `restore --interrupted`: finishes, through the node helper, an Acra restore cut off between
/// its swaps (forward: the restored keystore in; else the previous one back); returns what the
/// node says it did.
pub fn finish_interrupted(
    config: &Config,
    node: &str,
    keystore: Option<&str>,
    forward: bool,
) -> anyhow::Result<Vec<String>> {
    super::check_node_names(config, &[node.to_string()])?;
    let node = config.node(node).expect("checked");
    let ks = pick_keystore(node, keystore)?;
    if ks.kind != KeystoreKind::Acra {
        bail!(
            "keystore {} is a single file: its restores replace it in one rename, there is no swap to finish",
            ks.name
        );
    }
    let session = super::connect_with_retries_for(config, node, crate::remote::Access::Restore)?;
    let notes = session
        .finish_swap(&ks.path, forward)
        .with_context(|| format!("finishing the interrupted restore of {}/{}", node.name, ks.name))?;
    session.close();
    Ok(notes)
}

/// The one file of a P12 backup.
fn p12_file<'o>(picked: &Artifact, opened: &'o Opened) -> anyhow::Result<&'o PlainFile> {
    let [file] = opened.files.as_slice() else {
        bail!(
            "artifact {} holds {} files; a P12 backup holds one",
            picked.id,
            opened.files.len()
        );
    };
    Ok(file)
}

/// Reads the node and decides what the restore will do. Changes nothing.
pub fn plan(src: &Source, session: &dyn Node, replace: bool) -> anyhow::Result<RestorePlan> {
    if src.ks.kind == KeystoreKind::Acra {
        return restore_acra::plan(src, session, replace);
    }
    plan_p12(src, session)
}

/// Executes a plan; returns what was done.
pub fn apply(
    config: &Config,
    src: &Source,
    session: &dyn Node,
    mut plan: RestorePlan,
) -> anyhow::Result<RestoreOutcome> {
    let mut previous_saved_as = None;
    match std::mem::take(&mut plan.work) {
        Work::Nothing => {}
        Work::P12 {
            data,
            mode,
            current,
            owner,
        } => {
            if let Some(current) = current {
                previous_saved_as = Some(save_pre_restore(
                    config, &src.store, src.node, src.ks, session, current,
                )?);
            }
            push(session, src.ks, &data, mode, owner.as_deref())?;
        }
        Work::Acra(prepared) => {
            previous_saved_as = restore_acra::apply(config, src, session, &plan, prepared)?;
        }
    }
    Ok(RestoreOutcome {
        plan,
        previous_saved_as,
    })
}

/// The P12 part of [`plan`]: name checks, the target directory, what is there now.
fn plan_p12(src: &Source, session: &dyn Node) -> anyhow::Result<RestorePlan> {
    let (node, ks) = (src.node, src.ks);
    let file = p12_file(&src.picked, &src.opened)?;

    // 2a. Names the backup and the config give.
    let (want_dir, want_name) = split_path(&ks.path);
    let mut rows = vec![
        NameRow {
            source: format!("backup {} ({})", src.picked.id, src.from),
            directory: split_path(&file.entry.remote_path).0.to_string(),
            name: file.entry.path.clone(),
            ok: file.entry.path == want_name,
            note: None,
            warning: false,
        },
        NameRow {
            source: format!("config {}/{}", node.name, ks.name),
            directory: want_dir.to_string(),
            name: want_name.to_string(),
            ok: true,
            note: None,
            warning: false,
        },
    ];

    // 2b. nodectl's view, read from the node: the profiles that use this file, and the
    // passphrase each of them will open it with.
    let mut passphrases = Vec::new();
    let mut warnings = Vec::new();
    if let Some(cn_config) = &ks.nodectl_config {
        let text = match session.fetch(cn_config, nodectl::MAX_SIZE) {
            Ok(f) => nodectl::text_of(&f.bytes),
            Err(RemoteError::NotFound { .. }) => bail!(
                "nodectl config {cn_config} does not exist on {}: install the node with nodectl first, \
                 using the same P12 file name ({want_name}), then restore",
                node.name
            ),
            Err(e) => return Err(e).context("reading nodectl's config"),
        };
        let config = nodectl::parse(&text).with_context(|| format!("{cn_config} on {}", node.name))?;
        warnings.extend(config.warnings.iter().map(|w| format!("{cn_config}: {w}")));
        rows.extend(nodectl_names::name_rows(
            &config,
            &nodectl_names::p12_keystores(node),
            &ks.name,
        ));
        let aliases = match &src.identity {
            Some(Identity::P12(id)) if id.opened => Some(id.aliases.as_slice()),
            _ => None,
        };
        passphrases = passphrase::profile_checks(&config, &ks.path, &file.data, aliases);
    }
    if rows.iter().any(|r| !r.ok) {
        bail!(
            "refusing to restore: the P12 names do not match (the node reads the file nodectl's config names, \
             so it must have the same name and directory):\n{}",
            name_table(&rows)
        );
    }
    let refused: Vec<String> = passphrases
        .iter()
        .filter(|p| !p.ok)
        .map(|p| format!("  profile {}: {}", p.profile, p.result))
        .collect();
    if !refused.is_empty() && !src.accept_passphrase_mismatch {
        bail!(
            "refusing to restore: nodectl could not start these profiles with this P12 (the node's current \
             cn-config.yaml gives each profile the passphrase, and alias, it opens the file with):\n{}\n\
             Restore the cn-config.yaml that goes with this backup too, or set the passphrase with nodectl \
             afterwards; --accept-passphrase-mismatch restores anyway.",
            refused.join("\n")
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
    let default_mode = new_file_mode(ks, file);
    let mut plan = RestorePlan::new(src, ks.path.clone(), format!("{default_mode:04o}"));
    plan.checks = rows;
    plan.passphrases = passphrases;
    plan.warnings.extend(warnings);
    // lstat: a symlink at the target is refused, never followed (nor saved as the old file).
    let existing = match session.lstat(&ks.path)? {
        Some(s) if s.is_file => Some(session.fetch(&ks.path, ks.max_size.max(file.data.len() as u64))?),
        Some(_) => bail!(
            "{} on {} exists and is not a regular file; refusing",
            ks.path,
            node.name
        ),
        None => None,
    };
    if let Some(current) = existing
        .as_ref()
        .filter(|current| sha256_hex(&current.bytes) == file.entry.sha256)
    {
        plan.mode = format!("{:04o}", current.mode);
        return Ok(plan);
    }
    // What the node itself decides (with `become: sudo`: its policy's owner and loosest mode).
    let rule = node_rule(session, &ks.path)?;
    // A replaced file keeps its mode, narrowed to what the backup recorded: never looser
    // (Session::push narrows the same way), nor looser than the node's policy.
    let mode = existing
        .as_ref()
        .map_or(default_mode, |c| c.mode & file.entry.mode & 0o777)
        & rule.as_ref().map_or(0o777, |r| r.max_mode);
    plan.mode = format!("{mode:04o}");
    // 5. Whose it will be: the replaced file's owner, else the policy's or the backup's.
    let policy_owner = rule.and_then(|r| r.owner);
    let (owner, shown) = match (&existing, policy_owner) {
        (Some(_), Some(o)) => {
            plan.owner = Some(format!(
                "kept from the replaced file (the node's policy requires {o})"
            ));
            (None, None)
        }
        (Some(_), None) => {
            plan.owner = Some("kept from the replaced file".into());
            (None, None)
        }
        (None, Some(o)) => {
            plan.owner = Some(format!("{o} (the node's policy)"));
            (None, Some(o))
        }
        (None, None) => {
            let (owner, said) = new_file_owner(session, file.entry.owner.as_ref())?;
            plan.owner = Some(said);
            (owner.clone(), owner)
        }
    };
    if existing.is_some() {
        plan.action = RestoreAction::Replaced;
        plan.steps.push(Step::SavePreRestore {
            paths: vec![ks.path.clone()],
        });
    } else {
        plan.action = RestoreAction::Created;
    }
    plan.steps.push(Step::Upload {
        path: ks.path.clone(),
        mode: plan.mode.clone(),
        keep_owner: existing.is_some(),
        owner: shown,
    });
    plan.work = Work::P12 {
        data: file.data.clone(),
        mode,
        current: existing,
        owner,
    };
    Ok(plan)
}

/// The keystore to restore: the named one, or the node's only one.
pub fn pick_keystore<'n>(node: &'n NodeConfig, name: Option<&str>) -> Result<&'n KeystoreConfig, UsageError> {
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

/// The name-check rows as a table.
pub fn name_table(rows: &[NameRow]) -> String {
    let mut table = Table::new(&["SOURCE", "DIRECTORY", "NAME", ""]);
    for r in rows {
        let mark = match (r.ok, &r.note) {
            (true, Some(n)) if r.warning => format!("ok, WARNING: {n}"),
            (true, None) => "ok".to_string(),
            (true, Some(n)) => format!("ok: {n}"),
            (false, None) => "MISMATCH".to_string(),
            (false, Some(n)) => format!("MISMATCH: {n}"),
        };
        table.row(vec![r.source.clone(), r.directory.clone(), r.name.clone(), mark]);
    }
    table.render()
}

/// The mode a restore gives a file that is not on the node: a P12 nodectl's 0400; a `file`
/// keystore (cn-config.yaml, cnngsenc.conf) the mode its backup recorded, never looser than
/// 0600 (nodectl makes cn-config.yaml 0600, and must be able to rewrite it).
fn new_file_mode(ks: &KeystoreConfig, file: &PlainFile) -> u32 {
    match ks.kind {
        KeystoreKind::File => (file.entry.mode & 0o600) | 0o400,
        _ => DEFAULT_MODE,
    }
}

/// Stores the file about to be replaced as a `pre-restore` artifact; returns its id.
fn save_pre_restore(
    config: &Config,
    store: &Store,
    node: &NodeConfig,
    ks: &KeystoreConfig,
    session: &dyn Node,
    current: RemoteFile,
) -> anyhow::Result<String> {
    // The file being replaced may be nodectl's temporary P12 with another password: record what
    // can be known about it, and keep it whatever it is.
    let identity = keystore::identify(ks, &current.bytes)
        .or_else(|_| p12::inspect(&current.bytes, None).map(Identity::P12))
        .ok();
    let files = [keystore::p12_file(ks, current)];
    keystore::save_pre_restore(config, store, node, ks, session, &files, identity)
}

/// Uploads atomically, after removing temp files an interrupted earlier restore left behind; a
/// new file gets `owner` (`user:group`), a replaced one keeps its own.
fn push(
    session: &dyn Node,
    ks: &KeystoreConfig,
    data: &[u8],
    mode: u32,
    owner: Option<&str>,
) -> anyhow::Result<()> {
    session.remove_stale_temps(&ks.path)?;
    session.push_owned(&ks.path, data, mode, owner).with_context(|| {
        format!(
            "uploading to {} (the previous file, if any, is still in place)",
            ks.path
        )
    })
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
}

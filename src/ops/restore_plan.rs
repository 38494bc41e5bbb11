//! The restore plan as a value: what a restore will check and change, decided before anything
//! changes. Shared by the P12 ([`super::restore`]) and Acra ([`super::restore_acra`]) planners:
//! the plan's data, and the one decision both make the same way (which owner a file or tree
//! that does not exist yet gets), so neither imports the other's planning code.

use super::vocab::RestoreAction;
use crate::bundle::{FileOwner, Opened, PlainFile};
use crate::config::{KeystoreConfig, NodeConfig};
use crate::material::Identity;
use crate::remote::{Node, RemoteFile, WriteRule};
use crate::store::{Artifact, Store};
use serde::Serialize;
use std::path::PathBuf;

/// What the operator asked to restore (the command's flags, without clap).
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The node to restore to.
    pub node: String,
    /// The keystore (None: the node's only one).
    pub keystore: Option<String>,
    /// `latest`, an artifact id or a unique id prefix.
    pub backup: String,
    /// Take the backup from this node's artifacts (moving a key to a new machine).
    pub from_node: Option<String>,
    /// The age identity file that decrypts the artifact.
    pub identity: PathBuf,
    /// Restore an Acra keystore over a non-empty, different one.
    pub replace: bool,
    /// Restore a P12 even when a profile of the node's current cn-config.yaml could not open
    /// it with its passphrase (or alias): the operator will fix the passphrase with nodectl.
    pub accept_passphrase_mismatch: bool,
}

/// One row of the name-check table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameRow {
    /// Where the name comes from (backup, config, a nodectl profile).
    pub source: String,
    /// The directory it names.
    pub directory: String,
    /// The file name it names.
    pub name: String,
    /// Whether it agrees with the config (a row that is another keystore's business is ok).
    pub ok: bool,
    /// What the row means (`uses this file`, `uses keystore p12-2`, why it does not agree).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// An ok row that deserves a look (the file is a key only disabled profiles use).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub warning: bool,
}

/// One change apply will make on the node or in the store, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Save what is at `paths` now into the store as a `pre-restore` artifact.
    SavePreRestore {
        /// The node paths saved.
        paths: Vec<String>,
    },
    /// Upload one file atomically (temp file, rename, read back).
    Upload {
        /// The target path.
        path: String,
        /// Its mode, octal.
        mode: String,
        /// Whether the replaced file's owner and group are kept.
        keep_owner: bool,
        /// `user:group` a new file gets (the owner its backup recorded); none: the writer's.
        #[serde(skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
    /// Upload a tree into a temp directory beside `path`, read it back, then swap it in by renames.
    SwapTree {
        /// The target directory.
        path: String,
        /// The files with their modes, octal, relative to `path`.
        files: Vec<(String, String)>,
        /// Whether the replaced tree's owner and group are given to the new one.
        keep_owner: bool,
        /// `user:group` a new tree gets (its files' recorded owner); none: the writer's.
        #[serde(skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        /// Whether a directory is there now (it is renamed aside, then removed).
        replaces: bool,
    },
}

/// Everything a restore will do, decided before anything changes. The fields mirror the report
/// a finished restore prints, so `--dry-run` and `--json` show exactly this.
#[derive(Serialize)]
pub struct RestorePlan {
    /// The target node.
    pub node: String,
    /// The target keystore.
    pub keystore: String,
    /// The artifact restored.
    pub artifact: String,
    /// The node the backup was taken from.
    pub from_node: String,
    /// The target path(s).
    pub path: String,
    /// What apply does: `already-in-place`, `created` or `replaced`.
    pub action: RestoreAction,
    /// Mode of the restored file (P12) or directory (Acra), octal.
    pub mode: String,
    /// Whose the restored files will be: kept from the replaced file, the backup's recorded
    /// owner, or why neither (so an operator sees it before a key ends up with the wrong owner).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The backup's public identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// The name checks (P12), all passed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<NameRow>,
    /// Whether each nodectl profile that uses the file opens it with its passphrase.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub passphrases: Vec<super::passphrase::ProfileCheck>,
    /// What deserves a look but does not stop the restore (a duplicated key in cn-config.yaml,
    /// a backup whose identity was not checked when it was taken).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The changes, in order; empty when already in place.
    pub steps: Vec<Step>,
    /// What apply needs and a report does not show.
    #[serde(skip)]
    pub(super) work: Work,
}

/// The data behind the steps.
#[derive(Default)]
pub(super) enum Work {
    #[default]
    Nothing,
    P12 {
        data: zeroize::Zeroizing<Vec<u8>>,
        mode: u32,
        current: Option<RemoteFile>,
        /// `user:group` for a file that does not exist yet.
        owner: Option<String>,
    },
    Acra(Prepared),
}

impl RestorePlan {
    /// Whether apply replaces something that is there now (P12 restores ask first).
    pub fn replaces(&self) -> bool {
        self.action == RestoreAction::Replaced
    }
}

/// What a restore did (or, with `--dry-run`, would do).
#[derive(Debug, Serialize)]
pub struct RestoreOutcome {
    /// The plan that was (or would be) executed; `action` is what was done.
    #[serde(flatten)]
    pub plan: RestorePlan,
    /// Id of the pre-restore artifact holding what was replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_saved_as: Option<String>,
}

impl RestoreOutcome {
    /// The outcome `--dry-run` reports for a plan: the plan, with `would-*` actions.
    pub fn dry_run(mut plan: RestorePlan) -> RestoreOutcome {
        plan.action = plan.action.as_dry_run();
        RestoreOutcome {
            plan,
            previous_saved_as: None,
        }
    }
}

/// The backup to restore, opened and checked, with its target: everything that needs no node.
pub struct Source<'c> {
    /// The target node.
    pub node: &'c NodeConfig,
    /// The target keystore.
    pub ks: &'c KeystoreConfig,
    /// The node the backup was taken from.
    pub from: String,
    /// The store it came from.
    pub store: Store,
    /// The artifact.
    pub picked: Artifact,
    /// Its decrypted, verified contents.
    pub opened: Opened,
    /// The identity the restored file will have (checked with the password when configured).
    pub identity: Option<Identity>,
    /// From [`RestoreRequest::accept_passphrase_mismatch`].
    pub accept_passphrase_mismatch: bool,
}

impl RestorePlan {
    /// A plan with the target's fields filled in and no steps yet.
    pub(super) fn new(src: &Source, path: String, mode: String) -> RestorePlan {
        RestorePlan {
            node: src.node.name.clone(),
            keystore: src.ks.name.clone(),
            artifact: src.picked.id.clone(),
            from_node: src.from.clone(),
            path,
            action: RestoreAction::AlreadyInPlace,
            mode,
            owner: None,
            identity: src.identity.clone(),
            checks: Vec::new(),
            passphrases: Vec::new(),
            warnings: src
                .picked
                .sidecar
                .manifest
                .identity_unchecked
                .iter()
                .map(|why| format!("this backup was stored without its identity checked: {why}"))
                .collect(),
            steps: Vec::new(),
            work: Work::Nothing,
        }
    }

    /// Sets the Acra work behind the steps.
    pub(super) fn with_acra(mut self, prepared: Prepared) -> RestorePlan {
        self.work = Work::Acra(prepared);
        self
    }
}

/// `/a/b/c.p12` -> (`/a/b`, `c.p12`).
pub fn split_path(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((dir, name)) => (dir, name),
        None => (".", path),
    }
}

/// What is at one target directory now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Nothing there.
    Missing,
    /// No files, or only a v2 `version` marker (an empty keystore).
    Empty,
    /// Exactly the backup's files.
    Identical,
    /// Something else.
    Different,
}

/// One directory to restore: the keys directory, or the separate public one.
pub struct Root {
    /// `keys/` or `public/`.
    pub(super) prefix: &'static str,
    pub(super) path: String,
    pub(super) files: Vec<PlainFile>,
    pub(super) target: Target,
    /// For a missing directory: `user:group` to give the new tree (its files' recorded owner).
    pub(super) owner: Option<String>,
}

/// What apply needs: the directories to restore, classified.
pub struct Prepared {
    pub(super) roots: Vec<Root>,
    pub(super) occupied: bool,
}

/// What the node decides about writing `path` (with `become: sudo`: its policy's owner and
/// loosest mode); a refusal of the policy stops the plan before anything changes.
pub fn node_rule(session: &dyn Node, path: &str) -> anyhow::Result<Option<WriteRule>> {
    match session.write_rule(path) {
        Some(WriteRule {
            refused: Some(why), ..
        }) => anyhow::bail!("cannot restore {path}: {why}. Nothing was changed."),
        rule => Ok(rule),
    }
}

/// The owner a restore gives a file that does not exist on the node: `(user:group to chown to,
/// what the plan says)`. The one its backup recorded, when those names exist there (ids differ
/// between hosts, names are what nodectl and Acra set up); otherwise whoever writes it.
pub fn new_file_owner(
    session: &dyn Node,
    recorded: Option<&FileOwner>,
) -> anyhow::Result<(Option<String>, String)> {
    let Some(o) = recorded else {
        return Ok((None, "the writing user's (the backup recorded no owner)".into()));
    };
    let (Some(user), Some(group)) = (&o.user, &o.group) else {
        return Ok((
            None,
            format!(
                "the writing user's (the backup recorded uid {} gid {} without names)",
                o.uid, o.gid
            ),
        ));
    };
    if session.owner_exists(user, group)? {
        Ok((
            Some(format!("{user}:{group}")),
            format!("{user}:{group} (recorded in the backup)"),
        ))
    } else {
        Ok((
            None,
            format!("the writing user's ({user}:{group} from the backup does not exist on this node)"),
        ))
    }
}

/// [`new_file_owner`] for a whole tree (an Acra keystore that does not exist on the node): the
/// owner its files were recorded with, when they all had the same named one.
pub fn new_tree_owner(session: &dyn Node, files: &[PlainFile]) -> anyhow::Result<(Option<String>, String)> {
    let named = |f: &PlainFile| {
        f.entry
            .owner
            .as_ref()
            .and_then(|o| Some((o.user.clone()?, o.group.clone()?)))
    };
    let first = files.first().and_then(named);
    if first.is_none() || files.iter().any(|f| named(f) != first) {
        return Ok((
            None,
            "the writing user's (the backup recorded no single named owner for the files)".into(),
        ));
    }
    new_file_owner(session, files[0].entry.owner.as_ref())
}

impl std::fmt::Debug for RestorePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the work behind the steps: it holds key material.
        f.debug_struct("RestorePlan")
            .field("node", &self.node)
            .field("keystore", &self.keystore)
            .field("artifact", &self.artifact)
            .field("path", &self.path)
            .field("action", &self.action)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

//! `coldkeep list`: what is stored, from the sidecars alone (no private key needed).

use crate::bundle::Purpose;
use crate::cli::ListArgs;
use crate::config::Config;
use crate::error::Exit;
use crate::material::Identity;
use crate::ops::vocab::{ArtifactKind, master_key};
use crate::output::{Table, human_size, print_json};
use crate::store::Artifact;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// One artifact as `list --json` prints it.
#[derive(Debug, Serialize)]
pub struct ListedArtifact {
    /// The node.
    pub node: String,
    /// The keystore.
    pub keystore: String,
    /// The artifact id.
    pub id: String,
    /// The artifact kind (`p12`, `acra`, ...).
    pub kind: String,
    /// Backup or pre-restore.
    pub purpose: Purpose,
    /// When the material was fetched.
    pub created_at: DateTime<Utc>,
    /// Ciphertext size in bytes.
    pub size: u64,
    /// The files inside.
    pub files: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The public identity.
    pub identity: Option<Identity>,
    /// Paths of the `.age` files that exist (primary first).
    pub copies: Vec<PathBuf>,
    /// How many store roots there are (primary + replicas).
    pub roots: usize,
    /// The last time a backup found the same material (and stored nothing new).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen_unchanged_at: Option<DateTime<Utc>>,
    /// `valid`, `unsigned`, `bad` or `foreign`: only `valid` artifacts are ever used.
    pub signature: &'static str,
    /// The signature verdict in words (signer, or what is wrong).
    pub signature_detail: String,
}

impl ListedArtifact {
    fn from(a: &Artifact) -> ListedArtifact {
        let m = &a.sidecar.manifest;
        ListedArtifact {
            node: a.node.clone(),
            keystore: a.keystore.clone(),
            id: a.id.clone(),
            kind: m.kind.clone(),
            purpose: m.purpose,
            created_at: m.created_at,
            size: a.sidecar.ciphertext_size,
            files: m.files.iter().map(|f| f.path.clone()).collect(),
            identity: m.identity.clone(),
            copies: a
                .copies
                .iter()
                .filter(|c| c.present)
                .map(|c| c.age_path.clone())
                .collect(),
            roots: a.copies.len(),
            seen_unchanged_at: a.sidecar.seen_unchanged_at,
            signature: a.signature.word(),
            signature_detail: a.signature.to_string(),
        }
    }
}

/// The `list --json` document.
#[derive(Debug, Serialize)]
struct ListOutput {
    artifacts: Vec<ListedArtifact>,
    problems: Vec<String>,
    warnings: Vec<String>,
}

/// Acra keystores and their master keys must both be backed up (apart): name those with one
/// and not the other.
fn master_key_warnings(artifacts: &[ListedArtifact], master_store: Option<&std::path::Path>) -> Vec<String> {
    let groups = |kind: &str| -> BTreeSet<(&str, &str)> {
        artifacts
            .iter()
            .filter(|a| a.kind == kind && a.purpose == Purpose::Backup && a.signature == "valid")
            .map(|a| (a.node.as_str(), a.keystore.as_str()))
            .collect()
    };
    let keystores = groups(ArtifactKind::Acra.as_str());
    let keys = groups(ArtifactKind::AcraMasterKey.as_str());
    let place = master_store
        .map(|p| format!("in {}", p.display()))
        .unwrap_or_else(|| "(no store.master_key_store configured)".into());
    let mut warnings: Vec<String> = keystores
        .difference(&keys)
        .map(|(n, k)| {
            format!(
                "{n}/{k}: Acra keystore backups but no master key backup {place}; they are useless without \
                 ACRA_MASTER_KEY, so keep it somewhere safe and apart (or set `master_key`)"
            )
        })
        .collect();
    warnings.extend(
        keys.difference(&keystores)
            .map(|(n, k)| format!("{n}/{k}: a master key backup but no backup of its keystore")),
    );
    warnings
}

/// Runs `coldkeep list`.
pub fn run(config: &Config, args: &ListArgs) -> anyhow::Result<Exit> {
    let mut listing = match crate::ops::selected_names(config, &(&args.select).into())? {
        None => crate::ops::artifact::list_both(config, None)?,
        Some(names) => {
            let mut all = crate::store::Listing::default();
            for name in &names {
                let one = crate::ops::artifact::list_both(config, Some(name))?;
                all.artifacts.extend(one.artifacts);
                all.untrusted.extend(one.untrusted);
                all.problems.extend(one.problems);
            }
            all
        }
    };
    listing.artifacts.append(&mut listing.untrusted);
    listing
        .artifacts
        .sort_by(|a, b| (&a.node, &a.keystore, &a.id).cmp(&(&b.node, &b.keystore, &b.id)));
    let artifacts: Vec<ListedArtifact> = listing.artifacts.iter().map(ListedArtifact::from).collect();
    let mut problems: Vec<String> = listing
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.path.display(), p.message))
        .collect();
    problems.extend(artifacts.iter().filter(|a| a.signature != "valid").map(|a| {
        format!(
            "{}/{}/{}: {} (never used: not restored, reused, repaired from or kept)",
            a.node, a.keystore, a.id, a.signature_detail
        )
    }));
    let warnings = master_key_warnings(&artifacts, config.store.master_key_store.as_deref());
    if args.json {
        print_json(&ListOutput {
            artifacts,
            problems,
            warnings,
        })?;
        return Ok(Exit::Ok);
    }
    if artifacts.is_empty() {
        println!("No artifacts in {}.", config.store.path.display());
    } else {
        let mut table = Table::new(&[
            "NODE",
            "KEYSTORE",
            "CREATED (UTC)",
            "SEEN UNCHANGED",
            "ID",
            "SIZE",
            "COPIES",
            "SIGNATURE",
            "IDENTITY",
        ]);
        for a in &artifacts {
            let mut identity = a.identity.as_ref().map(Identity::short).unwrap_or_default();
            if a.purpose == Purpose::PreRestore {
                identity = format!("[pre-restore] {identity}");
            }
            let keystore = if ArtifactKind::AcraMasterKey.is(&a.kind) {
                master_key::report_name(&a.keystore)
            } else {
                a.keystore.clone()
            };
            table.row(vec![
                a.node.clone(),
                keystore,
                a.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                a.seen_unchanged_at
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| "-".into()),
                a.id.clone(),
                human_size(a.size),
                format!("{}/{}", a.copies.len(), a.roots),
                if a.signature == "valid" {
                    "ok".into()
                } else {
                    a.signature.to_uppercase()
                },
                identity,
            ]);
        }
        print!("{}", table.render());
    }
    for p in problems.iter().chain(&warnings) {
        eprintln!("warning: {p}");
    }
    Ok(Exit::Ok)
}

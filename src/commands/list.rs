//! `coldkeep list`: what is stored, from the sidecars alone (no private key needed).

use super::report::{Table, human_size, print_json};
use crate::bundle::Purpose;
use crate::cli::ListArgs;
use crate::config::Config;
use crate::error::Exit;
use crate::material::Identity;
use crate::store::{Artifact, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::path::PathBuf;

/// One artifact as `list --json` prints it.
#[derive(Debug, Serialize)]
pub struct ListedArtifact {
    pub node: String,
    pub keystore: String,
    pub id: String,
    pub kind: String,
    pub purpose: Purpose,
    pub created_at: DateTime<Utc>,
    /// Ciphertext size in bytes.
    pub size: u64,
    pub files: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// Paths of the `.age` files that exist (primary first).
    pub copies: Vec<PathBuf>,
    /// How many store roots there are (primary + replicas).
    pub roots: usize,
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
        }
    }
}

/// The `list --json` document.
#[derive(Debug, Serialize)]
struct ListOutput {
    artifacts: Vec<ListedArtifact>,
    problems: Vec<String>,
}

/// Runs `coldkeep list`.
pub fn run(config: &Config, args: &ListArgs) -> anyhow::Result<Exit> {
    if let Some(node) = &args.node {
        super::check_node_names(config, std::slice::from_ref(node))?;
    }
    let listing = Store::new(&config.store).list(args.node.as_deref())?;
    let artifacts: Vec<ListedArtifact> = listing.artifacts.iter().map(ListedArtifact::from).collect();
    let problems: Vec<String> = listing
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.path.display(), p.message))
        .collect();
    if args.json {
        print_json(&ListOutput { artifacts, problems })?;
        return Ok(Exit::Ok);
    }
    if artifacts.is_empty() {
        println!("No artifacts in {}.", config.store.path.display());
    } else {
        let mut table = Table::new(&[
            "NODE",
            "KEYSTORE",
            "CREATED (UTC)",
            "ID",
            "SIZE",
            "COPIES",
            "IDENTITY",
        ]);
        for a in &artifacts {
            let mut identity = a.identity.as_ref().map(Identity::short).unwrap_or_default();
            if a.purpose == Purpose::PreRestore {
                identity = format!("[pre-restore] {identity}");
            }
            table.row(vec![
                a.node.clone(),
                a.keystore.clone(),
                a.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                a.id.clone(),
                human_size(a.size),
                format!("{}/{}", a.copies.len(), a.roots),
                identity,
            ]);
        }
        print!("{}", table.render());
    }
    for p in &problems {
        eprintln!("warning: {p}");
    }
    Ok(Exit::Ok)
}

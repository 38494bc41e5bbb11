//! `coldkeep list`: what is stored, from the sidecars alone (no private key needed).

use crate::bundle::Purpose;
use crate::cli::ListArgs;
use crate::config::Config;
use crate::error::Exit;
use crate::material::Identity;
use crate::ops::vocab::{ArtifactKind, master_key};
use crate::output::{JSON_SCHEMA, Table, human_size};
use crate::store::{Artifact, Listing, StoreError, Summary};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeSet;
use std::io::Write;
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
    /// The public identity (as the sidecar has it).
    pub identity: Option<Box<serde_json::value::RawValue>>,
    /// Paths of the copies that are there and validly signed (primary first): the copies
    /// `verify` counts as good, so the count agrees with it.
    pub copies: Vec<PathBuf>,
    /// Copies that are there but whose sidecar is not validly signed (edited, unsigned,
    /// foreign): never used; `verify` names the same.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bad_copies: Vec<BadCopy>,
    /// How many store roots there are (primary + replicas).
    pub roots: usize,
    /// The last time a backup found the same material (and stored nothing new).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen_unchanged_at: Option<DateTime<Utc>>,
    /// Stored although a check of it failed: why its identity was not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_unchecked: Option<String>,
    /// `valid`, `unsigned`, `bad` or `foreign`: only `valid` artifacts are ever used.
    pub signature: &'static str,
    /// The signature verdict in words (signer, or what is wrong).
    pub signature_detail: String,
}

impl ListedArtifact {
    /// Takes the artifact apart (only the paths of the copies that are there).
    fn from(a: Artifact<Summary>) -> ListedArtifact {
        let m = a.sidecar.manifest;
        ListedArtifact {
            node: a.node,
            keystore: a.keystore,
            id: a.id,
            kind: m.kind,
            purpose: m.purpose,
            created_at: m.created_at,
            size: a.sidecar.ciphertext_size,
            files: m.files.into_iter().map(|f| f.path).collect(),
            identity: shown_identity(m.identity),
            roots: a.copies.len(),
            bad_copies: a
                .copies
                .iter()
                .filter(|c| c.present && !c.signature.is_valid())
                .map(|c| BadCopy {
                    sidecar: c.sidecar_path.clone(),
                    signature: c.signature.to_string(),
                })
                .collect(),
            copies: a
                .copies
                .into_iter()
                .filter(|c| c.present && c.signature.is_valid())
                .map(|c| c.age_path)
                .collect(),
            seen_unchanged_at: a.sidecar.seen_unchanged_at,
            identity_unchecked: m.identity_unchecked,
            signature: a.signature.word(),
            signature_detail: a.signature.to_string(),
        }
    }
}

/// The identity as a sidecar has it, except the plain SHA-256 that sidecars of `kind: file`
/// artifacts from before keyed hashes carry (never printed: a guessing oracle).
fn shown_identity(raw: Option<Box<serde_json::value::RawValue>>) -> Option<Box<serde_json::value::RawValue>> {
    let raw = raw?;
    match serde_json::from_str::<Identity>(raw.get()) {
        Ok(Identity::File(f)) if f.sha256.is_some() => {
            serde_json::value::to_raw_value(&Identity::File(f.shown())).ok()
        }
        _ => Some(raw),
    }
}

/// A copy of a listed artifact that is there but not validly signed.
#[derive(Debug, Serialize)]
pub struct BadCopy {
    /// The copy's sidecar.
    pub sidecar: PathBuf,
    /// Its signature verdict in words.
    pub signature: String,
}

/// One keystore's share of the listing, built on a worker thread (see
/// [`crate::ops::artifact::each_keystore_summary`]) and written out in keystore order.
#[derive(Default)]
struct Part {
    /// `--json`: the artifacts as compact JSON objects, each `,\n`-terminated.
    json: Vec<u8>,
    /// Otherwise: the table rows.
    rows: Vec<Vec<String>>,
    /// Artifacts without a valid signature, named.
    untrusted: Vec<String>,
    /// What the store itself reports (unreadable files, leftovers).
    problems: Vec<String>,
    /// Whether it holds a valid Acra keystore backup, and a valid master-key backup.
    acra: Option<(String, String)>,
    master_key: Option<(String, String)>,
    /// The keystore could not be listed (the command then exits 1).
    failed: bool,
}

/// Acra keystores and their master keys must both be backed up (apart): name those with one
/// and not the other.
fn master_key_warnings(
    keystores: &BTreeSet<(String, String)>,
    keys: &BTreeSet<(String, String)>,
    master_store: Option<&std::path::Path>,
) -> Vec<String> {
    let place = master_store
        .map(|p| format!("in {}", p.display()))
        .unwrap_or_else(|| "(no store.master_key_store configured)".into());
    let mut warnings: Vec<String> = keystores
        .difference(keys)
        .map(|(n, k)| {
            format!(
                "{n}/{k}: Acra keystore backups but no master key backup {place}; they are useless without \
                 ACRA_MASTER_KEY, so keep it somewhere safe and apart (or set `master_key`)"
            )
        })
        .collect();
    warnings.extend(
        keys.difference(keystores)
            .map(|(n, k)| format!("{n}/{k}: a master key backup but no backup of its keystore")),
    );
    warnings
}

/// One table row.
fn row(a: &ListedArtifact) -> Vec<String> {
    let mut identity = a
        .identity
        .as_deref()
        .and_then(|raw| serde_json::from_str::<Identity>(raw.get()).ok())
        .as_ref()
        .map(Identity::short)
        .unwrap_or_default();
    if a.purpose == Purpose::PreRestore {
        identity = format!("[pre-restore] {identity}");
    }
    if let Some(why) = &a.identity_unchecked {
        identity = format!("[identity NOT checked: {why}] {identity}");
    }
    let keystore = if ArtifactKind::AcraMasterKey.is(&a.kind) {
        master_key::report_name(&a.keystore)
    } else {
        a.keystore.clone()
    };
    vec![
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
    ]
}

/// Builds one keystore's part: its artifacts (trusted or not) by id.
fn part(listing: Result<Listing<Summary>, StoreError>, json: bool) -> Part {
    let mut part = Part::default();
    let mut listing = match listing {
        Ok(l) => l,
        Err(e) => {
            part.problems.push(e.to_string());
            part.failed = true;
            return part;
        }
    };
    part.problems = listing
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.path.display(), p.message))
        .collect();
    listing.artifacts.append(&mut listing.untrusted);
    listing.artifacts.sort_by(|a, b| a.id.cmp(&b.id));
    for a in listing.artifacts.into_iter().map(ListedArtifact::from) {
        if a.signature != "valid" {
            part.untrusted.push(format!(
                "{}/{}/{}: {} (never used: not restored, reused, repaired from or kept)",
                a.node, a.keystore, a.id, a.signature_detail
            ));
        } else {
            // A trusted artifact's copy that is not (the next backup replaces it).
            part.problems.extend(a.bad_copies.iter().map(|c| {
                format!(
                    "{}: {} (this copy is not used; the next backup writes it again)",
                    c.sidecar.display(),
                    c.signature
                )
            }));
        }
        if a.signature == "valid" && a.purpose == Purpose::Backup {
            let place = Some((a.node.clone(), a.keystore.clone()));
            if ArtifactKind::Acra.is(&a.kind) {
                part.acra = place;
            } else if ArtifactKind::AcraMasterKey.is(&a.kind) {
                part.master_key = place;
            }
        }
        if json {
            // Serialising owned strings and numbers cannot fail.
            serde_json::to_writer(&mut part.json, &a).expect("an artifact serialises");
            part.json.extend_from_slice(b",\n");
        } else {
            part.rows.push(row(&a));
        }
    }
    part
}

/// Runs `coldkeep list`. The store is listed a keystore at a time on every core and written
/// out as it goes (`--json`: one compact object per line), so 100,000 artifacts are never
/// held at once.
pub fn run(config: &Config, args: &ListArgs) -> anyhow::Result<Exit> {
    let nodes: Vec<Option<String>> = match crate::ops::selected_names(config, &(&args.select).into())? {
        None => vec![None],
        Some(names) => names.into_iter().map(Some).collect(),
    };
    // Named before anything is printed: an unreadable store root is an error, not half a document.
    let mut keystores = Vec::new();
    for node in &nodes {
        keystores.extend(crate::ops::artifact::keystores_both(config, node.as_deref())?);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
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
    let (mut problems, mut untrusted) = (Vec::new(), Vec::new());
    let (mut acra, mut keys) = (BTreeSet::new(), BTreeSet::new());
    let mut failed = false;
    // Set when stdout is gone (`| head`): the remaining keystores are not listed.
    let stop = std::sync::atomic::AtomicBool::new(false);
    // A JSON array cannot end in a comma: each part's trailing `,\n` is written before the next.
    let mut pending_comma = false;
    let mut write_error = None;
    if args.json {
        write!(out, "{{\"schema\":{JSON_SCHEMA},\"artifacts\":[")?;
    }
    crate::ops::artifact::each_keystore_summary(
        config,
        &keystores,
        |listing| {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Part::default();
            }
            part(listing, args.json)
        },
        |p| {
            if write_error.is_some() {
                return;
            }
            failed |= p.failed;
            problems.extend(p.problems);
            untrusted.extend(p.untrusted);
            acra.extend(p.acra);
            keys.extend(p.master_key);
            table.rows_from(p.rows);
            if let Some(body) = p.json.strip_suffix(b",\n") {
                let sep: &[u8] = if pending_comma { b",\n" } else { b"\n" };
                if let Err(e) = out.write_all(sep).and_then(|()| out.write_all(body)) {
                    write_error = Some(e);
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                pending_comma = true;
            }
        },
    );
    if let Some(e) = write_error {
        return Err(e.into());
    }
    problems.append(&mut untrusted);
    let warnings = master_key_warnings(&acra, &keys, config.store.master_key_store.as_deref());
    let exit = if failed { Exit::Failed } else { Exit::Ok };
    if args.json {
        write!(out, "\n],\"problems\":")?;
        serde_json::to_writer(&mut out, &problems)?;
        write!(out, ",\"warnings\":")?;
        serde_json::to_writer(&mut out, &warnings)?;
        writeln!(out, "}}")?;
        out.flush()?;
        return Ok(exit);
    }
    if table.is_empty() {
        writeln!(out, "No artifacts in {}.", config.store.path.display())?;
    } else {
        out.write_all(table.render().as_bytes())?;
    }
    out.flush()?;
    for p in problems.iter().chain(&warnings) {
        eprintln!("warning: {p}");
    }
    Ok(exit)
}

//! `coldkeep verify`: prove what is stored.
//!
//! Without a key: every copy's ciphertext matches its sidecar's hash and size, the age header
//! parses, and replicas agree with the primary. With `--identity`: also decrypt in memory, check
//! every file's hash, that the inner manifest equals the sidecar, and (when the keystore's
//! password is configured) that the material opens and has the recorded identity.
//! With `--live --node N`: compare the latest backup with the file the node has right now.

use super::keystore;
use super::report::{Table, print_json};
use crate::bundle::{self, Identities, Purpose};
use crate::cli::VerifyArgs;
use crate::config::{Config, NodeConfig};
use crate::digest::sha256_hex;
use crate::error::Exit;
use crate::remote::Session;
use crate::store::{Artifact, Problem, Store};
use serde::Serialize;

/// The result of checking one artifact.
#[derive(Debug, Serialize)]
pub struct ArtifactCheck {
    pub node: String,
    pub keystore: String,
    pub id: String,
    /// Whether the contents were decrypted and checked.
    pub deep: bool,
    pub ok: bool,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
struct VerifyOutput {
    artifacts: Vec<ArtifactCheck>,
    store_problems: Vec<String>,
    store_warnings: Vec<String>,
}

/// Runs `coldkeep verify`.
pub fn run(config: &Config, args: &VerifyArgs) -> anyhow::Result<Exit> {
    if let Some(node) = &args.node {
        super::check_node_names(config, std::slice::from_ref(node))?;
    }
    if args.live {
        let node = config
            .node(args.node.as_deref().unwrap_or_default())
            .expect("checked above");
        return live(config, node, args.json);
    }
    let identities = args.identity.as_deref().map(Identities::from_file).transpose()?;
    let store = Store::new(&config.store);
    let listing = store.list(args.node.as_deref())?;
    let checks: Vec<ArtifactCheck> = listing
        .artifacts
        .iter()
        .map(|a| verify_artifact(config, &store, a, identities.as_ref()))
        .collect();
    let (warnings, problems): (Vec<&Problem>, Vec<&Problem>) =
        listing.problems.iter().partition(|p| is_leftover_temp(p));
    let describe = |p: &&Problem| format!("{}: {}", p.path.display(), p.message);
    let out = VerifyOutput {
        artifacts: checks,
        store_problems: problems.iter().map(describe).collect(),
        store_warnings: warnings.iter().map(describe).collect(),
    };
    let failed = out.artifacts.iter().filter(|c| !c.ok).count() + out.store_problems.len();
    if args.json {
        print_json(&out)?;
    } else {
        print_checks(&out, identities.is_some());
    }
    Ok(if failed == 0 { Exit::Ok } else { Exit::Failed })
}

/// A temp file left by an interrupted write: harmless, never listed as an artifact.
fn is_leftover_temp(p: &Problem) -> bool {
    p.path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.contains(".tmp-"))
}

/// Checks every copy of one artifact, and its contents when identities are given.
pub fn verify_artifact(
    config: &Config,
    store: &Store,
    a: &Artifact,
    ids: Option<&Identities>,
) -> ArtifactCheck {
    let mut problems = Vec::new();
    let mut good_ciphertext = None;
    for copy in &a.copies {
        let root = copy.root.display();
        if !copy.present {
            problems.push(format!("copy missing in {root}"));
            continue;
        }
        let (ciphertext, sidecar) = match store.read(copy) {
            Ok(x) => x,
            Err(e) => {
                problems.push(format!("cannot read copy: {e}"));
                continue;
            }
        };
        let mut copy_ok = true;
        let actual = sha256_hex(&ciphertext);
        if actual != sidecar.ciphertext_sha256 || ciphertext.len() as u64 != sidecar.ciphertext_size {
            problems.push(format!(
                "{}: ciphertext does not match its sidecar (sha256 {actual}, {} bytes; sidecar says {}, {} bytes): \
                 the file was modified or truncated",
                copy.age_path.display(),
                ciphertext.len(),
                sidecar.ciphertext_sha256,
                sidecar.ciphertext_size
            ));
            copy_ok = false;
        }
        if sidecar != a.sidecar {
            problems.push(format!(
                "{}: sidecar differs from the other copies'",
                copy.sidecar_path.display()
            ));
            copy_ok = false;
        }
        if let Err(e) = bundle::check_header(&ciphertext) {
            problems.push(format!("{}: {e}", copy.age_path.display()));
            copy_ok = false;
        }
        if copy_ok && good_ciphertext.is_none() {
            good_ciphertext = Some(ciphertext);
        }
    }
    let deep = ids.is_some();
    if let Some(ids) = ids {
        match &good_ciphertext {
            None => problems.push("no intact copy to decrypt".to_string()),
            Some(ciphertext) => problems.extend(check_contents(config, a, ciphertext, ids)),
        }
    }
    ArtifactCheck {
        node: a.node.clone(),
        keystore: a.keystore.clone(),
        id: a.id.clone(),
        deep,
        ok: problems.is_empty(),
        problems,
    }
}

/// Decrypts in memory and compares contents with the sidecar; returns the problems found.
fn check_contents(config: &Config, a: &Artifact, ciphertext: &[u8], ids: &Identities) -> Vec<String> {
    let opened = match bundle::open(ciphertext, ids) {
        Ok(o) => o,
        Err(e) => return vec![e.to_string()],
    };
    let mut problems = Vec::new();
    if opened.manifest != a.sidecar.manifest {
        problems
            .push("the manifest inside the artifact differs from the sidecar: the sidecar was edited".into());
    }
    let ks = config
        .node(&a.node)
        .and_then(|n| n.keystores.iter().find(|k| k.name == a.keystore));
    if let Some(ks) = ks.filter(|k| k.password.is_some() && k.kind.as_str() == opened.manifest.kind) {
        for file in &opened.files {
            match keystore::identify(ks, &file.data) {
                Ok(identity) if Some(&identity) != opened.manifest.identity.as_ref() => {
                    problems.push(format!(
                        "{} opens, but its identity ({}) differs from the recorded one",
                        file.entry.path,
                        identity.short()
                    ))
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("{}: {e:#}", file.entry.path)),
            }
        }
    }
    problems
}

fn print_checks(out: &VerifyOutput, deep: bool) {
    let mut table = Table::new(&["NODE", "KEYSTORE", "ID", "RESULT"]);
    for c in &out.artifacts {
        let result = if c.ok {
            if deep {
                "ok (decrypted, contents checked)".to_string()
            } else {
                "ok (hashes, header)".to_string()
            }
        } else {
            format!("BAD: {}", c.problems.join("; "))
        };
        table.row(vec![c.node.clone(), c.keystore.clone(), c.id.clone(), result]);
    }
    if table.is_empty() {
        println!("No artifacts to verify.");
    } else {
        print!("{}", table.render());
    }
    for p in &out.store_warnings {
        eprintln!("warning: {p}");
    }
    for p in &out.store_problems {
        println!("BAD: {p}");
    }
    let bad = out.artifacts.iter().filter(|c| !c.ok).count();
    println!(
        "\n{} of {} artifacts verified.",
        out.artifacts.len() - bad,
        out.artifacts.len()
    );
    if !deep && !out.artifacts.is_empty() {
        println!("(Without --identity only hashes and headers were checked; add --identity KEY to decrypt.)");
    }
}

/// The result of comparing one keystore's live file with its latest backup.
#[derive(Debug, Serialize)]
pub struct LiveCheck {
    pub node: String,
    pub keystore: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    pub matches: bool,
    /// What matched or what differs, in one sentence.
    pub detail: String,
}

fn live(config: &Config, node: &NodeConfig, json: bool) -> anyhow::Result<Exit> {
    let store = Store::new(&config.store);
    let listing = store.list(Some(&node.name))?;
    let session = Session::connect(node)?;
    let checks: Vec<LiveCheck> = node
        .keystores
        .iter()
        .map(|ks| {
            let latest = listing
                .artifacts
                .iter()
                .filter(|a| a.keystore == ks.name && a.sidecar.manifest.purpose == Purpose::Backup)
                .max_by(|x, y| (x.sidecar.manifest.created_at, &x.id).cmp(&(y.sidecar.manifest.created_at, &y.id)));
            let mut check = LiveCheck {
                node: node.name.clone(),
                keystore: ks.name.clone(),
                backup: latest.map(|a| a.id.clone()),
                matches: false,
                detail: String::new(),
            };
            check.detail = match (latest, keystore::fetch(&session, ks)) {
                (None, _) => "no backup of this keystore in the store".into(),
                (_, Err(e)) => format!("cannot read the live file: {e:#}"),
                (Some(a), Ok(live)) => {
                    let backup_file = a.sidecar.manifest.files.first();
                    let live_sha = sha256_hex(&live.file.bytes);
                    if backup_file.is_some_and(|f| f.sha256 == live_sha) {
                        check.matches = true;
                        format!("matches: the live file is byte-identical to backup {} (sha256 {live_sha})", a.id)
                    } else {
                        let backup_sha = backup_file.map(|f| f.sha256.as_str()).unwrap_or("-");
                        let same_key = a.sidecar.manifest.identity.as_ref() == Some(&live.identity)
                            && ks.password.is_some();
                        format!(
                            "DIFFERS: live sha256 {live_sha}, backup {} has {backup_sha}; {}",
                            a.id,
                            if same_key {
                                "the identity (alias, certificate, node id) is the same, so the file was rewritten \
                                 (new password?): take a new backup"
                                    .to_string()
                            } else if ks.password.is_some() {
                                format!(
                                    "the node uses a different key ({}) than the backup ({})",
                                    live.identity.short(),
                                    a.sidecar.manifest.identity.as_ref().map(|i| i.short()).unwrap_or_default()
                                )
                            } else {
                                "configure the keystore's password to compare identities".to_string()
                            }
                        )
                    }
                }
            };
            check
        })
        .collect();
    session.close();
    if json {
        print_json(&checks)?;
    } else {
        for c in &checks {
            println!("{}/{}: {}", c.node, c.keystore, c.detail);
        }
    }
    Ok(if checks.iter().all(|c| c.matches) {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

//! `coldkeep verify`: prove what is stored.
//!
//! Without a key: every copy's ciphertext matches its sidecar's hash and size, the age header
//! parses, and replicas agree with the primary. With `--identity`: also decrypt in memory, check
//! every file's hash, that the inner manifest equals the sidecar, and (when the keystore's
//! password is configured) that the material opens and has the recorded identity.
//! With `--live --node N`: compare the latest backup with the file the node has right now.

use crate::bundle::Identities;
use crate::cli::VerifyArgs;
use crate::config::{Config, NodeConfig};
use crate::error::{Exit, UsageError};
use crate::ops::verify::{ArtifactCheck, check_signed};
use crate::output::{Table, print_json, print_json_list};
use crate::store::{Problem, Store};
use serde::Serialize;

#[derive(Debug, Serialize)]
struct VerifyOutput {
    artifacts: Vec<ArtifactCheck>,
    /// With --identity: does each backed-up P12 open with the passphrase in cn-config.yaml?
    #[serde(skip_serializing_if = "Vec::is_empty")]
    passphrases: Vec<crate::ops::passphrase::PassphraseCheck>,
    store_problems: Vec<String>,
    store_warnings: Vec<String>,
}

/// Runs `coldkeep verify`.
pub fn run(config: &Config, args: &VerifyArgs) -> anyhow::Result<Exit> {
    let names = crate::ops::selected_names(config, &(&args.select).into())?;
    if args.live {
        let [name] = names.as_deref().unwrap_or_default() else {
            return Err(UsageError("--live compares one node: give exactly one --node".into()).into());
        };
        let node = config.node(name).expect("selected from the config");
        return live(config, node, args.json);
    }
    let identities = args.identity.as_deref().map(Identities::from_file).transpose()?;
    let store = Store::new(&config.store);
    let mut listing = crate::store::Listing::default();
    let mut checks: Vec<ArtifactCheck> = Vec::new();
    let mut backups = Vec::new();
    let stores = [Some(store), Store::master_keys(&config.store)];
    for (i, store) in stores
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((i, s.as_ref()?)))
    {
        let parts = match &names {
            None => vec![store.list(None)?],
            Some(names) => names
                .iter()
                .map(|n| store.list(Some(n)))
                .collect::<Result<Vec<_>, _>>()?,
        };
        for part in parts {
            checks.extend(
                part.artifacts
                    .iter()
                    .chain(&part.untrusted)
                    .map(|a| check_signed(config, store, a, identities.as_ref(), args.sign_unsigned)),
            );
            listing.problems.extend(part.problems);
            if i == 0 {
                backups.extend(part.artifacts);
            }
        }
    }
    let (warnings, problems): (Vec<&Problem>, Vec<&Problem>) =
        listing.problems.iter().partition(|p| p.interrupted);
    let describe = |p: &&Problem| format!("{}: {}", p.path.display(), p.message);
    let passphrases = identities
        .as_ref()
        .zip(stores[0].as_ref())
        .map(|(ids, store)| {
            let nodes: Vec<&NodeConfig> = config
                .nodes
                .iter()
                .filter(|n| names.as_ref().is_none_or(|names| names.contains(&n.name)))
                .collect();
            crate::ops::passphrase::check_all(&nodes, store, &backups, ids)
        })
        .unwrap_or_default();
    let out = VerifyOutput {
        artifacts: checks,
        passphrases,
        store_problems: problems.iter().map(describe).collect(),
        store_warnings: warnings.iter().map(describe).collect(),
    };
    let failed = out.artifacts.iter().filter(|c| !c.ok).count()
        + out.store_problems.len()
        + out.passphrases.iter().filter(|p| !p.ok).count();
    if args.json {
        print_json(&out)?;
    } else {
        print_checks(&out, identities.is_some());
    }
    Ok(if failed == 0 { Exit::Ok } else { Exit::Failed })
}

fn print_checks(out: &VerifyOutput, deep: bool) {
    for p in &out.passphrases {
        println!("{}", p.line());
    }
    let mut table = Table::new(&["NODE", "KEYSTORE", "ID", "RESULT"]);
    for c in &out.artifacts {
        let result = if c.ok {
            let signed = if c.signed_now { ", signed now" } else { "" };
            if let Some(r) = c.sealed_keys.as_ref().filter(|_| c.deep) {
                format!("ok (decrypted, contents checked; {}{signed})", r.summary())
            } else if c.deep {
                format!("ok (decrypted, contents checked{signed})")
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

fn live(config: &Config, node: &NodeConfig, json: bool) -> anyhow::Result<Exit> {
    let store = Store::new(&config.store);
    let listing = store.list(Some(&node.name))?;
    let session = crate::ops::connect_with_retries(config, node)?;
    let checks = crate::ops::verify::live_checks(node, &session, &listing.artifacts);
    session.close();
    if json {
        print_json_list(&checks)?;
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

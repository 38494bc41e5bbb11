//! `coldkeep check`: the pre-install check that backed-up P12 names match the node configs
//! (and, for Acra keystores, that the latest backup has the node's client ids).
//!
//! For each node and P12 keystore: the configured path, the latest backup's file name, and the
//! nodectl profiles that use it (read from the node, or from a local file for nodes not
//! installed yet); every enabled profile must use a keystore that has a backup. With
//! `--identity`, also whether the backup opens with the configured password (alias / node id)
//! and with the passphrase of every profile that uses it.

use crate::bundle::Identities;
use crate::cli::CheckArgs;
use crate::config::{Config, NodeConfig};
use crate::error::Exit;
use crate::ops::check::{KeystoreCheck, NodeCheck, check_node, read_local_nodectl};
use crate::ops::fleet::run_parallel;
use crate::ops::nodectl_names::NotCovered;
use crate::output::{Table, print_json_list};
use crate::store::Store;
use serde::Serialize;

/// One element of `check --json`: a keystore's check, or a nodectl profile no keystore covers.
#[derive(Serialize)]
#[serde(untagged)]
enum Entry<'a> {
    Keystore(&'a KeystoreCheck),
    NotCovered(&'a NotCovered),
}

/// Runs `coldkeep check`.
pub fn run(config: &Config, args: &CheckArgs) -> anyhow::Result<Exit> {
    let nodes: Vec<&NodeConfig> = match crate::ops::selected_names(config, &(&args.select).into())? {
        None => config.nodes.iter().collect(),
        Some(names) => config.nodes.iter().filter(|n| names.contains(&n.name)).collect(),
    };
    let local_nodectl = match &args.nodectl_config {
        Some(path) => Some(read_local_nodectl(path)?),
        None => None,
    };
    let ids = args.identity.as_deref().map(Identities::from_file).transpose()?;
    let store = Store::new(&config.store);
    let listing = store.list(None)?;
    let per_node: Vec<NodeCheck> = run_parallel(&nodes, config.jobs, |node| {
        check_node(
            config,
            node,
            &store,
            &listing.artifacts,
            local_nodectl.as_ref(),
            ids.as_ref(),
        )
    });
    let checks: Vec<&KeystoreCheck> = per_node.iter().flat_map(|n| &n.keystores).collect();
    let not_covered: Vec<&NotCovered> = per_node.iter().flat_map(|n| &n.not_covered).collect();
    if args.json {
        let entries: Vec<Entry> = checks
            .iter()
            .map(|c| Entry::Keystore(c))
            .chain(not_covered.iter().map(|n| Entry::NotCovered(n)))
            .collect();
        print_json_list(&entries)?;
    } else {
        print_human(&checks, &not_covered);
    }
    Ok(if checks.iter().all(|c| c.ok) && not_covered.is_empty() {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

fn print_human(checks: &[&KeystoreCheck], not_covered: &[&NotCovered]) {
    let mut table = Table::new(&["NODE", "KEYSTORE", "CONFIGURED", "BACKUP", "NODECTL", "RESULT"]);
    for c in checks {
        // The profiles that use this keystore's file (all of them when none does).
        let users: Vec<String> = c
            .nodectl
            .iter()
            .filter(|l| l.path().as_deref() == Some(c.configured_path.as_str()))
            .map(|l| l.profile.clone())
            .collect();
        let nodectl = match (&c.node_clients, c.nodectl.is_empty(), users.is_empty()) {
            (Some(clients), _, _) => format!("on node: clients {}", clients.join(",")),
            (None, true, _) => "-".to_string(),
            (None, false, false) => format!("used by {}", users.join(", ")),
            (None, false, true) => c
                .nodectl
                .iter()
                .map(|l| {
                    format!(
                        "{}: {}",
                        l.profile,
                        l.path().unwrap_or_else(|| "(not set)".into())
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        };
        let backup = match (&c.backup_id, &c.backup_name, &c.backup_clients) {
            (Some(id), Some(name), _) => format!("{name} ({id})"),
            (Some(id), None, Some(clients)) => format!("clients {} ({id})", clients.join(",")),
            _ => "-".into(),
        };
        let result = if c.ok {
            c.identity
                .clone()
                .map(|i| format!("ok: {i}"))
                .unwrap_or_else(|| "ok".into())
        } else {
            format!("MISMATCH: {}", c.problems.join("; "))
        };
        table.row(vec![
            c.node.clone(),
            c.keystore.clone(),
            c.configured_path.clone(),
            backup,
            nodectl,
            result,
        ]);
    }
    if table.is_empty() && not_covered.is_empty() {
        println!("No keystores to check.");
        return;
    }
    print!("{}", table.render());
    for c in checks {
        for p in &c.passphrases {
            println!(
                "passphrase of {}/{} ({}) for profile {}: {}",
                c.node,
                c.keystore,
                c.backup_id.as_deref().unwrap_or("-"),
                p.profile,
                p.result
            );
        }
    }
    let mut warned: Vec<&String> = Vec::new();
    for w in checks.iter().flat_map(|c| &c.warnings) {
        if !warned.contains(&w) {
            // Escaped here too: whatever built it, the text came from a node's file.
            eprintln!("warning: cn-config.yaml: {}", crate::text::escape_control(w));
            warned.push(w);
        }
    }
    for n in not_covered {
        println!("NOT COVERED: {}", n.line());
    }
    let bad = checks.iter().filter(|c| !c.ok).count();
    if bad == 0 && not_covered.is_empty() {
        println!(
            "\nAll {} keystores agree: backups, configs, nodectl and the nodes name the same keys.",
            checks.len()
        );
    } else {
        println!("\n{bad} of {} keystores need attention.", checks.len());
        if !not_covered.is_empty() {
            println!(
                "{} nodectl profile(s) use a P12 that no keystore backs up (or that has no backup yet).",
                not_covered.len()
            );
        }
    }
}

//! `coldkeep check`: the pre-install check that backed-up P12 names match the node configs
//! (and, for Acra keystores, that the latest backup has the node's client ids).
//!
//! For each node and P12 keystore: the configured path, the latest backup's file name, and the
//! P12 location/name nodectl's cn-config.yaml gives per profile (read from the node, or from a
//! local file for nodes not installed yet). With `--identity`, also whether the backup opens with
//! the configured password, and its alias / node id.

use crate::bundle::Identities;
use crate::cli::CheckArgs;
use crate::config::{Config, NodeConfig};
use crate::error::Exit;
use crate::ops::check::{KeystoreCheck, check_node, read_local_nodectl};
use crate::ops::fleet::run_parallel;
use crate::output::{Table, print_json_list};
use crate::store::Store;

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
    let checks: Vec<KeystoreCheck> = run_parallel(&nodes, config.jobs, |node| {
        check_node(
            config,
            node,
            &store,
            &listing.artifacts,
            local_nodectl.as_deref(),
            ids.as_ref(),
        )
    })
    .into_iter()
    .flatten()
    .collect();
    let passphrases = ids
        .as_ref()
        .map(|ids| crate::ops::passphrase::check_all(&nodes, &store, &listing.artifacts, ids))
        .unwrap_or_default();
    if args.json {
        print_json_list(&checks)?;
    } else {
        print_human(&checks);
        for p in &passphrases {
            println!("{}", p.line());
        }
    }
    Ok(
        if checks.iter().all(|c| c.ok) && passphrases.iter().all(|p| p.ok) {
            Exit::Ok
        } else {
            Exit::Failed
        },
    )
}

fn print_human(checks: &[KeystoreCheck]) {
    let mut table = Table::new(&["NODE", "KEYSTORE", "CONFIGURED", "BACKUP", "NODECTL", "RESULT"]);
    for c in checks {
        let nodectl = if c.nodectl.is_empty() {
            "-".to_string()
        } else {
            c.nodectl
                .iter()
                .map(|l| {
                    format!(
                        "{}: {}",
                        l.profile,
                        l.path().unwrap_or_else(|| "(not set)".into())
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let backup = match (&c.backup_id, &c.backup_name, &c.backup_clients) {
            (Some(id), Some(name), _) => format!("{name} ({id})"),
            (Some(id), None, Some(clients)) => format!("clients {} ({id})", clients.join(",")),
            _ => "-".into(),
        };
        let nodectl = match &c.node_clients {
            Some(clients) => format!("on node: clients {}", clients.join(",")),
            None => nodectl,
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
    if table.is_empty() {
        println!("No keystores to check.");
        return;
    }
    print!("{}", table.render());
    let bad = checks.iter().filter(|c| !c.ok).count();
    if bad == 0 {
        println!(
            "\nAll {} keystores agree: backups, configs, nodectl and the nodes name the same keys.",
            checks.len()
        );
    } else {
        println!("\n{bad} of {} keystores need attention.", checks.len());
    }
}

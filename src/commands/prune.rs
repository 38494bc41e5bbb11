//! `coldkeep prune`: apply each keystore's retention policy to the store and its replicas.

use crate::cli::PruneArgs;
use crate::config::Config;
use crate::error::Exit;
use crate::ops::prune::{Pruned, prune};
use crate::output::{Table, print_json_list};

/// Runs `coldkeep prune`.
pub fn run(config: &Config, args: &PruneArgs) -> anyhow::Result<Exit> {
    let results = match crate::ops::selected_names(config, &(&args.select).into())? {
        None => prune(config, None, args.dry_run)?,
        Some(names) => {
            let mut results = Vec::new();
            for name in &names {
                results.extend(prune(config, Some(name), args.dry_run)?);
            }
            results
        }
    };
    if args.json {
        print_json_list(&results)?;
    } else {
        print_human(&results, args.dry_run);
    }
    Ok(if results.iter().any(|r| r.error.is_some()) {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

fn print_human(results: &[Pruned], dry_run: bool) {
    let mut table = Table::new(&["NODE", "KEYSTORE", "CREATED (UTC)", "ID", "ACTION", "WHY"]);
    for r in results {
        let action = match (r.keep, dry_run, &r.error) {
            (true, _, _) => "keep",
            (false, true, _) => "would remove",
            (false, false, None) => "removed",
            (false, false, Some(_)) => "REMOVE FAILED",
        };
        table.row(vec![
            r.node.clone(),
            r.keystore.clone(),
            r.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            r.id.clone(),
            action.into(),
            r.error.clone().unwrap_or_else(|| r.reasons.join(", ")),
        ]);
    }
    if table.is_empty() {
        println!("No artifacts.");
        return;
    }
    print!("{}", table.render());
    let gone = results.iter().filter(|r| !r.keep).count();
    println!(
        "\n{} kept, {gone} {}.",
        results.len() - gone,
        if dry_run {
            "would be removed (dry run)"
        } else {
            "removed"
        }
    );
}

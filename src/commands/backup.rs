//! `coldkeep backup`: fetch every selected node's keystores and store them encrypted.
//!
//! The work is [`crate::ops::backup`]; this file turns the flags into options, records the run
//! and prints the report.

use crate::cli::BackupArgs;
use crate::config::Config;
use crate::error::Exit;
use crate::ops::backup::{BackupReport, KeystoreOutcome, Options};
use crate::output::{Table, human_size, print_json};
use std::io::IsTerminal;

/// Runs `coldkeep backup`.
pub fn run(config: &Config, args: &BackupArgs) -> anyhow::Result<Exit> {
    let nodes = crate::ops::select_nodes(config, &(&args.select).into())?;
    let options = Options {
        dry_run: args.dry_run,
        force: args.force,
        progress: !args.json && std::io::stderr().is_terminal() && nodes.len() > 1,
    };
    // Hooks and the record of the run (state, metrics) come with it; a dry run has neither.
    let report = crate::ops::run::backup_run(config, &nodes, options);
    if args.json {
        print_json(&report)?;
    } else {
        print_human(&report);
    }
    // Stored without its identity checked is done, but not well: monitoring must see it.
    Ok(
        if report.failures().next().is_none() && report.unchecked().next().is_none() {
            Exit::Ok
        } else {
            Exit::Failed
        },
    )
}

fn print_human(report: &BackupReport) {
    let mut table = Table::new(&["NODE", "KEYSTORE", "STATUS", "ARTIFACT", "SIZE", "IDENTITY"]);
    for o in &report.outcomes {
        let status = match (o.ok, report.dry_run, o.unchanged) {
            _ if o.ok && o.identity_unchecked.is_some() => "ok (identity NOT checked)",
            (true, _, true) => "ok (unchanged)",
            (true, true, false) => "ok (dry run)",
            (true, false, false) => "ok",
            (false, _, _) => "FAILED",
        };
        table.row(vec![
            o.node.clone(),
            o.keystore.clone(),
            status.to_string(),
            o.id.clone().unwrap_or_else(|| "-".into()),
            o.size.map(human_size).unwrap_or_else(|| "-".into()),
            o.identity.clone().unwrap_or_default(),
        ]);
    }
    print!("{}", table.render());
    for o in &report.outcomes {
        for w in &o.warnings {
            println!("warning: {}/{}: {w}", o.node, o.keystore);
        }
    }
    let unchecked: Vec<&KeystoreOutcome> = report.unchecked().collect();
    if !unchecked.is_empty() {
        println!(
            "\n{} backed up without their identity checked (stored and marked; fix the cause, the next \
             backup clears the mark):",
            unchecked.len()
        );
        for o in unchecked {
            println!(
                "  {}/{}: {}",
                o.node,
                o.keystore,
                o.identity_unchecked.as_deref().unwrap_or_default()
            );
        }
    }
    let failed: Vec<&KeystoreOutcome> = report.failures().collect();
    let done = report.outcomes.len() - failed.len();
    let verb = if report.dry_run {
        "checked (dry run, nothing written)"
    } else {
        "backed up"
    };
    println!("\n{done} of {} keystores {verb}.", report.outcomes.len());
    if !failed.is_empty() {
        println!("{} failed:", failed.len());
        for o in failed {
            println!(
                "  {}/{}: {}",
                o.node,
                o.keystore,
                o.error.as_deref().unwrap_or("unknown error")
            );
        }
    }
}

//! `coldkeep restore`: push a backup back to its node, only after every check passes.
//!
//! The work is [`crate::ops::restore`], as plan then apply: `--dry-run` prints the plan, a real
//! run confirms a replacement (P12), applies the plan and prints what was done.

use crate::cli::RestoreArgs;
use crate::config::Config;
use crate::error::Exit;
use crate::ops::restore::{self, RestoreOutcome, RestoreRequest, Source, Step};
use crate::ops::vocab::RestoreAction;
use crate::output::print_json;
use anyhow::bail;
use std::io::IsTerminal;

/// Runs `coldkeep restore`.
pub fn run(config: &Config, args: &RestoreArgs) -> anyhow::Result<Exit> {
    if let Some(way) = args.interrupted {
        let forward = way == crate::cli::Finish::Forward;
        for note in restore::finish_interrupted(config, &args.node, args.keystore.as_deref(), forward)? {
            println!("{note}");
        }
        return Ok(Exit::Ok);
    }
    let request = RestoreRequest {
        node: args.node.clone(),
        keystore: args.keystore.clone(),
        backup: args.backup.clone(),
        from_node: args.from_node.clone(),
        identity: args.identity.clone(),
        replace: args.replace,
        accept_passphrase_mismatch: args.accept_passphrase_mismatch,
    };
    let src = Source::open(config, &request)?;
    // A dry run only reads: the node helper's read rule is enough for it.
    let access = if args.dry_run {
        crate::remote::Access::Read
    } else {
        crate::remote::Access::Restore
    };
    let session = crate::ops::connect_with_retries_for(config, src.node, access)?;
    let plan = restore::plan(&src, &session, request.replace)?;
    if args.dry_run || plan.action == RestoreAction::AlreadyInPlace {
        session.close();
        return finish(&RestoreOutcome::dry_run(plan), args.json);
    }
    if plan.replaces() && src.ks.kind != crate::config::KeystoreKind::Acra {
        confirm(args.yes, &src.node.name, &src.ks.path)?;
    }
    let outcome = restore::apply(config, &src, &session, plan)?;
    session.close();
    finish(&outcome, args.json)
}

/// One plan step as a line for humans.
fn describe(step: &Step) -> String {
    match step {
        Step::SavePreRestore { paths } => {
            format!("save {} to the store as a pre-restore artifact", paths.join(", "))
        }
        Step::Upload {
            path,
            mode,
            keep_owner,
            owner,
        } => format!(
            "upload {path} (mode {mode}{}) atomically and read it back",
            owner_note(*keep_owner, owner.as_deref())
                .map(|n| format!(", {n}"))
                .unwrap_or_default()
        ),
        Step::SwapTree {
            path,
            files,
            keep_owner,
            owner,
            replaces,
        } => format!(
            "upload {} files beside {path}{}, read them back, then {} by renames",
            files.len(),
            owner_note(*keep_owner, owner.as_deref())
                .map(|n| format!(" ({n})"))
                .unwrap_or_default(),
            if *replaces {
                "swap them in"
            } else {
                "rename them into place"
            }
        ),
    }
}

/// What a step does about owners, for [`describe`].
fn owner_note(keep: bool, owner: Option<&str>) -> Option<String> {
    match (keep, owner) {
        (true, _) => Some("owner kept".into()),
        (false, Some(o)) => Some(format!("owner {o}")),
        (false, None) => None,
    }
}

/// Replacing needs `--yes`, or a yes typed on a terminal.
fn confirm(yes: bool, node: &str, path: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "{path} on {node} holds a different file; refusing to replace it without --yes \
             (no terminal to ask on). Nothing was changed."
        );
    }
    if crate::output::ask_yes(&format!(
        "{path} on {node} holds a different file. It will be saved to the store first. Replace it?"
    ))? {
        Ok(())
    } else {
        bail!("not confirmed; nothing was changed")
    }
}

fn finish(outcome: &RestoreOutcome, json: bool) -> anyhow::Result<Exit> {
    if json {
        print_json(outcome)?;
        return Ok(Exit::Ok);
    }
    let plan = &outcome.plan;
    let what = match plan.action {
        RestoreAction::AlreadyInPlace => {
            "already in place: the node has the identical file; nothing changed".to_string()
        }
        RestoreAction::Created => format!(
            "restored: created {} (mode {}, owner {})",
            plan.path,
            plan.mode,
            plan.owner.as_deref().unwrap_or("unchanged")
        ),
        RestoreAction::Replaced => format!("restored: replaced {} (mode {})", plan.path, plan.mode),
        RestoreAction::WouldCreate => format!(
            "dry run: would create {} (mode {}, owner {})",
            plan.path,
            plan.mode,
            plan.owner.as_deref().unwrap_or("unchanged")
        ),
        RestoreAction::WouldReplace => format!(
            "dry run: would save the current {} as a pre-restore artifact, then replace it (mode {} kept)",
            plan.path, plan.mode
        ),
    };
    println!("{}/{}: {what}", plan.node, plan.keystore);
    println!("  artifact: {} (backup of {})", plan.artifact, plan.from_node);
    if let Some(identity) = &plan.identity {
        println!("  identity: {}", identity.short());
    }
    for w in &plan.warnings {
        // Escaped here too: whatever built it, the text came from a node or an artifact.
        println!("  warning: {}", crate::text::escape_control(w));
    }
    if !plan.checks.is_empty() {
        println!("  name checks:");
        for line in restore::name_table(&plan.checks).lines() {
            println!("    {line}");
        }
    }
    for p in &plan.passphrases {
        println!("  passphrase for nodectl profile {}: {}", p.profile, p.result);
    }
    if matches!(
        plan.action,
        RestoreAction::WouldCreate | RestoreAction::WouldReplace
    ) {
        for step in &plan.steps {
            println!("  plan: {}", describe(step));
        }
    }
    if let Some(saved) = &outcome.previous_saved_as {
        println!(
            "  previous file saved as pre-restore artifact {saved} (see `coldkeep list --node {}`)",
            plan.node
        );
    }
    Ok(Exit::Ok)
}

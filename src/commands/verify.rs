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
use crate::ops::adopt::Adoption;
use crate::ops::verify::StoreCheck;
use crate::output::{Table, print_json, print_json_list};
use crate::store::Store;
use std::io::IsTerminal;

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
    let (out, adoption) = match (&identities, args.before) {
        (Some(ids), Some(before)) if args.sign_unsigned => {
            let (check, adoption) = adopt(config, names.as_deref(), ids, before, args)?;
            (check, Some(adoption))
        }
        _ => (
            crate::ops::verify::verify_store(config, names.as_deref(), identities.as_ref())?,
            None,
        ),
    };
    let failed = out.failed();
    if args.json {
        print_json(&Report {
            check: &out,
            adoption: adoption.as_ref(),
        })?;
    } else {
        print_checks(&out, identities.is_some());
    }
    Ok(if failed == 0 { Exit::Ok } else { Exit::Failed })
}

/// `verify --json`: the check, and with `--sign-unsigned` what adoption proposed and signed.
#[derive(serde::Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    check: &'a StoreCheck,
    #[serde(skip_serializing_if = "Option::is_none")]
    adoption: Option<&'a Adoption>,
}

/// `--sign-unsigned`: verifies, shows the unsigned artifacts that may be adopted (dates, when
/// they appeared on disk, their contents' identity) and why others are not, and signs the
/// candidates only once confirmed (`--yes`, or a yes typed on a terminal).
fn adopt(
    config: &Config,
    names: Option<&[String]>,
    ids: &Identities,
    before: chrono::DateTime<chrono::Utc>,
    args: &VerifyArgs,
) -> anyhow::Result<(StoreCheck, Adoption)> {
    if before > chrono::Utc::now() {
        return Err(UsageError(format!("--before {before} lies in the future")).into());
    }
    let (mut check, mut adoption) = crate::ops::adopt::plan(config, names, ids, before)?;
    let say = |line: String| {
        // With --json stdout is the document: the proposal goes to stderr.
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    for r in &adoption.refused {
        say(format!(
            "not signed: {}/{}/{}: {}",
            r.node, r.keystore, r.id, r.reason
        ));
    }
    if adoption.candidates.is_empty() {
        say("No unsigned artifact to adopt.".into());
    } else {
        let mut table = Table::new(&[
            "NODE",
            "KEYSTORE",
            "ID",
            "CREATED (UTC)",
            "ON DISK SINCE",
            "CONTENTS",
        ]);
        for c in &adoption.candidates {
            table.row(vec![
                c.node.clone(),
                c.keystore.clone(),
                c.id.clone(),
                c.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                c.on_disk_since
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| "-".into()),
                c.identity.clone(),
            ]);
        }
        say(format!(
            "Unsigned artifacts made before {before} that pass deep verification (signing makes them \
             trusted: check that each is a backup you made):\n{}",
            table.render().trim_end()
        ));
        let confirmed = args.yes
            || (!args.json
                && std::io::stdin().is_terminal()
                && crate::output::ask_yes(&format!(
                    "Sign these {} artifact(s)?",
                    adoption.candidates.len()
                ))?);
        if confirmed {
            crate::ops::adopt::apply(config, &mut adoption, &mut check);
        } else {
            say("Nothing signed (confirm on a terminal, or give --yes).".into());
        }
    }
    Ok((check, adoption))
}

fn print_checks(out: &StoreCheck, deep: bool) {
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
        let result = match &c.identity_unchecked {
            Some(why) => format!("{result} [identity not checked when stored: {why}]"),
            None => result,
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
    let bad_passphrases = out.passphrases.iter().filter(|p| !p.ok).count();
    let mut failed = Vec::new();
    if bad_passphrases > 0 {
        failed.push(format!(
            "{bad_passphrases} passphrase check(s) failed: a backed-up P12 does not open with the passphrase its \
             backed-up cn-config.yaml gives (see above)"
        ));
    }
    if !out.store_problems.is_empty() {
        failed.push(format!(
            "{} problem(s) in the store itself",
            out.store_problems.len()
        ));
    }
    println!(
        "\n{} of {} artifacts verified{}",
        out.artifacts.len() - bad,
        out.artifacts.len(),
        if failed.is_empty() {
            ".".to_string()
        } else {
            format!("; but {}.", failed.join("; "))
        }
    );
    if !deep && !out.artifacts.is_empty() {
        println!("(Without --identity only hashes and headers were checked; add --identity KEY to decrypt.)");
    }
}

fn live(config: &Config, node: &NodeConfig, json: bool) -> anyhow::Result<Exit> {
    let store = Store::new(&config.store);
    let listing = store.list(Some(&node.name))?;
    let session = crate::ops::connect_with_retries(config, node)?;
    let keyed = store
        .keyed_hash()
        .ok_or_else(|| anyhow::anyhow!("no signing key loaded: cannot compare keyed hashes"))?;
    let checks = crate::ops::verify::live_checks(node, &session, &listing.artifacts, &keyed);
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

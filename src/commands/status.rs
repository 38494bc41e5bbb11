//! `coldkeep status`: a monitoring check (Nagios/cron friendly) from the run state and the store.

use crate::cli::StatusArgs;
use crate::config::Config;
use crate::error::Exit;
use crate::ops::hardware_checks::{self, HardwareStatus};
use crate::output::{Table, print_json_list};
use crate::store::{RunState, Store, VerifyState};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One keystore's status.
#[derive(Debug, Serialize)]
pub struct KeystoreStatus {
    /// The node.
    pub node: String,
    /// The keystore (master keys as `<keystore>:master-key`).
    pub keystore: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The last successful backup.
    pub last_success: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The last failed attempt.
    pub last_failure: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The newest artifact id.
    pub newest_artifact: Option<String>,
    /// Age of the newest backup (its creation, or the last time it was seen unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_age_seconds: Option<i64>,
    /// False when failing or older than `--max-age`.
    pub ok: bool,
    /// Why not ok.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// A hardware key's last check (BitBox02 on the device, OnlyKey offline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware: Option<HardwareStatus>,
}

/// Runs `coldkeep status`.
pub fn run(config: &Config, args: &StatusArgs) -> anyhow::Result<Exit> {
    let statuses = status(config, args.max_age, Utc::now())?;
    // An unauthenticated state file already made every keystore a problem (above).
    let verify = RunState::load_checked(&Store::new(&config.store))?.and_then(|s| s.verify);
    if args.json {
        print_json_list(&statuses)?;
    } else {
        print_human(&statuses);
        if let Some(v) = &verify {
            print_verify(v);
        }
    }
    let store_bad = verify.is_some_and(|v| !v.store_problems.is_empty());
    if store_bad {
        return Ok(Exit::Failed);
    }
    Ok(if statuses.iter().all(|s| s.ok) {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

/// The status of every configured keystore at `now`.
pub fn status(
    config: &Config,
    max_age: Option<std::time::Duration>,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<KeystoreStatus>> {
    // A state file that does not authenticate is never read as state, and never OK.
    let checked = RunState::load_checked(&Store::new(&config.store))?;
    let state = checked.clone().unwrap_or_default();
    // The store reduced per keystore (status shows a few fields; it acts on nothing).
    let seen = crate::ops::artifact::seen_per_keystore(config)?;
    let mut out = Vec::new();
    // Configured keystores (and master keys), then every hardware key in the store.
    let mut names = crate::ops::run_state::keystore_names(config);
    for (key, s) in &seen {
        if key.0 == crate::config::HARDWARE_NODE && s.trusted > 0 && !names.contains(key) {
            names.push(key.clone());
        }
    }
    // Hardware keys configured or checked: judged by their last check, not their artifact's age.
    let (hardware, _) = hardware_checks::statuses(config, max_age, now)?;
    for h in &hardware {
        let key = (crate::config::HARDWARE_NODE.to_string(), h.name.clone());
        if !names.contains(&key) {
            names.push(key);
        }
    }
    for (node, keystore) in names {
        {
            let st = state.get(&node, &keystore).cloned().unwrap_or_default();
            let here = seen.get(&(node.clone(), keystore.clone()));
            let newest = here.and_then(|s| s.newest.as_ref());
            // An unchanged keystore is current as of the last time a backup saw it.
            let fresh_at = newest.map(|a| {
                a.sidecar
                    .seen_unchanged_at
                    .unwrap_or(a.sidecar.manifest.created_at)
                    .max(a.sidecar.manifest.created_at)
            });
            let age_ms = fresh_at.map(|t| (now - t).num_milliseconds());
            let age = age_ms.map(|ms| ms / 1000);
            let mut problems = Vec::new();
            if checked.is_none() {
                problems.push(crate::store::NOT_AUTHENTIC.to_string());
            }
            if newest.is_none() {
                problems.push("no backup in the store".to_string());
            }
            // The last run's own check first (an unchanged P12 whose password went missing
            // reuses a checked artifact); else the newest artifact's mark.
            if let Some(why) = st.last_unchecked.as_ref().filter(|_| !st.failing()) {
                problems.push(format!(
                    "the last backup was taken without its identity checked: {why}"
                ));
            } else if let Some(why) = newest.and_then(|a| a.sidecar.manifest.identity_unchecked.as_ref()) {
                problems.push(format!(
                    "the newest backup was stored without its identity checked: {why}"
                ));
            }
            let forged = here.map_or(0, |s| s.untrusted);
            if forged > 0 {
                problems.push(format!(
                    "{forged} artifact(s) without a valid signature in the store (see `coldkeep verify`)"
                ));
            }
            if st.failing() {
                problems.push(format!(
                    "last attempt failed: {}",
                    st.last_error.as_deref().unwrap_or("unknown error")
                ));
            }
            // The daemon's last scheduled verification found this keystore's artifacts damaged.
            if let Some(v) = &state.verify
                && let Some(bad) = v.bad.get(&format!("{node}/{keystore}"))
            {
                problems.push(format!(
                    "the store verification at {} found: {}",
                    v.at.format("%Y-%m-%d %H:%M:%S"),
                    bad.join("; ")
                ));
            }
            let device = hardware
                .iter()
                .find(|h| node == crate::config::HARDWARE_NODE && h.name == keystore)
                .cloned();
            if let (Some(max), Some(ms)) = (max_age, age_ms)
                && ms > max.as_millis() as i64
                && device.is_none()
            {
                problems.push(format!(
                    "newest backup is {} old (max {})",
                    human_age(ms / 1000),
                    human_age(max.as_secs() as i64)
                ));
            }
            if let Some(h) = &device {
                // A BitBox02's backup is its card, checked by the device: no artifact needed.
                if h.model == crate::config::HardwareModel::Bitbox02.as_str() {
                    problems.retain(|p| p != "no backup in the store");
                }
                problems.extend(h.problems.iter().cloned());
            }
            out.push(KeystoreStatus {
                node: node.clone(),
                keystore: keystore.clone(),
                last_success: st.last_success,
                last_failure: st.last_failure,
                last_error: st.last_error.clone(),
                newest_artifact: newest.map(|a| a.id.clone()),
                newest_age_seconds: age,
                ok: problems.is_empty(),
                problems,
                hardware: device,
            });
        }
    }
    Ok(out)
}

/// The daemon's last scheduled verification, one line (and the store problems not tied to a
/// keystore, which the table cannot show).
fn print_verify(v: &VerifyState) {
    let found: u64 = v.problems.values().sum();
    let how = if v.deep { "decrypted" } else { "hashes, headers" };
    println!(
        "Store verified at {} ({how}): {} artifacts, {}.",
        v.at.format("%Y-%m-%d %H:%M:%S"),
        v.artifacts,
        if found == 0 {
            "no problems".to_string()
        } else {
            format!("{found} PROBLEMS (run `coldkeep verify`)")
        }
    );
    for p in &v.store_problems {
        println!("PROBLEM: {p}");
    }
}

fn human_age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn print_human(statuses: &[KeystoreStatus]) {
    let mut table = Table::new(&["NODE", "KEYSTORE", "LAST SUCCESS", "NEWEST", "AGE", "STATUS"]);
    let when = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| "-".into())
    };
    for s in statuses {
        table.row(vec![
            s.node.clone(),
            s.keystore.clone(),
            when(s.last_success),
            s.newest_artifact.clone().unwrap_or_else(|| "-".into()),
            s.newest_age_seconds.map(human_age).unwrap_or_else(|| "-".into()),
            if s.ok {
                "OK".into()
            } else {
                format!("PROBLEM: {}", s.problems.join("; "))
            },
        ]);
    }
    print!("{}", table.render());
    let devices: Vec<&HardwareStatus> = statuses.iter().filter_map(|s| s.hardware.as_ref()).collect();
    if !devices.is_empty() {
        println!("\nHardware keys:");
        for h in devices {
            println!("  {}", h.line());
        }
    }
    let bad = statuses.iter().filter(|s| !s.ok).count();
    if bad == 0 {
        println!("\nOK: all {} keystores backed up.", statuses.len());
    } else {
        println!("\nPROBLEM: {bad} of {} keystores need attention.", statuses.len());
    }
}

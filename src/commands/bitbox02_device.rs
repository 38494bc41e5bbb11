//! `coldkeep bitbox02 backups list | check | create` and `bitbox02 unpair`: the BitBox02's
//! microSD backups through the device (see `ops::bitbox02_device`).

use crate::cli::{BackupsCommand, DeviceArgs};
use crate::config::Config;
use crate::error::Exit;
use crate::hid::bitbox02::session::Notice;
use crate::ops::bitbox02_device::{self as device, CardEntry, Checked, DeviceRequest, DeviceSummary, Target};
use crate::ops::hardware::check_name;
use crate::output::{Table, print_json};
use crate::store::CheckResult;
use std::path::PathBuf;

fn request(a: &DeviceArgs, new_device: bool) -> anyhow::Result<DeviceRequest> {
    check_name(&a.name)?;
    Ok(DeviceRequest {
        name: a.name.clone(),
        // An explicit --device wins over a simulator named in the environment.
        target: match (&a.device, &a.simulator) {
            (None, Some(addr)) => Target::Simulator(addr.clone()),
            (device, _) => Target::Usb(device.clone()),
        },
        timeout: a.timeout,
        pairing_file: a.pairing_file.clone(),
        new_device,
    })
}

/// What the user must do on the device, on stderr as it comes (stdout stays the report).
fn notice(n: Notice) {
    match n {
        Notice::EnterPassword => eprintln!("Enter the password on the BitBox02."),
        Notice::PairingCode { code, first, device } => {
            let why = if first {
                format!("Pairing with a new BitBox02 (device key {device}).")
            } else {
                format!("The BitBox02 (device key {device}) does not know this computer yet.")
            };
            eprintln!(
                "{why} Confirm on the device only if it shows the same code:\n\n    {}\n",
                code.replace('\n', "\n    ")
            );
        }
        Notice::ConfirmOnDevice(what) => eprintln!("On the BitBox02: {what}."),
    }
}

/// `bitbox02 backups list` (needs no config: it records nothing).
pub fn list(a: &DeviceArgs) -> anyhow::Result<Exit> {
    let listing = device::list(&request(a, false)?, &mut notice)?;
    if a.json {
        print_json(&listing)?;
        return Ok(Exit::Ok);
    }
    println!("{}", about(&listing.device));
    if listing.backups.is_empty() {
        println!("No backups on the card.");
        return Ok(Exit::Ok);
    }
    let mut table = Table::new(&["ID", "NAME", "CREATED (UTC)"]);
    for b in &listing.backups {
        table.row(vec![b.id.clone(), b.name.clone(), when(b)]);
    }
    print!("{}", table.render());
    Ok(Exit::Ok)
}

/// `bitbox02 backups check` / `create`.
pub fn run(config: &Config, cmd: &BackupsCommand) -> anyhow::Result<Exit> {
    let (a, checked) = match cmd {
        BackupsCommand::Check {
            device: a,
            confirm_on_device,
            new_device,
        } => (
            a,
            device::check(config, &request(a, *new_device)?, *confirm_on_device, &mut notice)?,
        ),
        BackupsCommand::Create {
            device: a,
            new_device,
        } => (a, device::create(config, &request(a, *new_device)?, &mut notice)?),
        BackupsCommand::List(_) => unreachable!("dispatched before the config is read"),
    };
    if a.json {
        print_json(&checked)?;
    } else {
        print_checked(&checked, matches!(cmd, BackupsCommand::Create { .. }));
    }
    Ok(
        if checked.result == CheckResult::Found && checked.record_error.is_none() {
            Exit::Ok
        } else {
            Exit::Failed
        },
    )
}

fn print_checked(c: &Checked, created: bool) {
    let d = &c.device;
    println!("{}", about(d));
    match (&c.found, c.result) {
        (Some(b), _) => {
            println!(
                "{}: the card holds a backup of this device's wallet:\n  id {}\n  name {:?}, created {} UTC",
                if created { "CREATED" } else { "OK" },
                b.id,
                b.name,
                when(b)
            );
            if let Some(s) = &c.stored {
                if s.same_wallet {
                    println!(
                        "  the same wallet as the backup stored as '{}' (artifact {})",
                        d.name, s.artifact
                    );
                } else {
                    println!(
                        "  WARNING: the backup stored as '{}' (artifact {}) is another wallet (id {}…)",
                        d.name,
                        s.artifact,
                        crate::text::escape_control(&s.backup_id.chars().take(8).collect::<String>())
                    );
                }
            }
            if created {
                println!(
                    "The card holds the wallet seed in PLAINTEXT: keep it like the seed itself, or store \
                     it encrypted (`coldkeep bitbox02 import <card>/{} --name {}`) and wipe it.",
                    b.id, d.name
                );
            }
        }
        (None, CheckResult::NoCard) => println!(
            "PROBLEM: the BitBox02 has no microSD card inserted (it says so): insert the card and check again."
        ),
        (None, _) => println!(
            "PROBLEM: the card holds no backup of this device's wallet ({} other backup(s) on it). \
             Make one: coldkeep bitbox02 backups create --name {}",
            c.card_backups, d.name
        ),
    }
    match (&c.record, &c.record_error) {
        (Some(id), _) => println!("Recorded as check {id} (see `coldkeep status`)."),
        (None, Some(e)) => eprintln!("error: the check could not be recorded in the store: {e}"),
        (None, None) => {}
    }
}

fn about(d: &DeviceSummary) -> String {
    format!(
        "BitBox02 '{}': {} firmware {}, {}, device key {}{}",
        d.name,
        d.product,
        d.firmware,
        d.source,
        d.device_key,
        if d.paired_now { " (paired now)" } else { "" }
    )
}

fn when(b: &CardEntry) -> String {
    b.created
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

/// `bitbox02 unpair --name NAME`.
pub fn unpair(name: &str, pairing_file: Option<PathBuf>) -> anyhow::Result<Exit> {
    check_name(name)?;
    if device::unpair(name, pairing_file)? {
        println!(
            "Forgot the pairing of BitBox02 '{name}'; the next use pairs it again (with a code to compare)."
        );
        Ok(Exit::Ok)
    } else {
        println!("No BitBox02 is paired as '{name}'.");
        Ok(Exit::Failed)
    }
}

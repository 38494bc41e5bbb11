//! `coldkeep onlykey import | capture | restore`.

use crate::bundle::{self, PlainFile};
use crate::cli::OnlyKeyCommand;
use crate::config::Config;
use crate::error::{Exit, UsageError};
use crate::hid::{self, HardwareKey, onlykey as device};
use crate::material::{Identity, onlykey};
use crate::ops::hardware::{
    self,
    onlykey_text::{FILE, KIND, MAX_TEXT, read_text},
};
use anyhow::{Context, bail};
use std::io::{IsTerminal, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;
use zeroize::Zeroizing;

/// Runs an `onlykey` subcommand.
pub fn run(config: &Config, cmd: &OnlyKeyCommand) -> anyhow::Result<Exit> {
    match cmd {
        OnlyKeyCommand::Import { file, name } => {
            hardware::check_name(name)?;
            let text = read_text(file)?;
            store(config, name, &text, if file == "-" { "stdin" } else { "file" })
        }
        OnlyKeyCommand::Capture { name } => {
            hardware::check_name(name)?;
            let text = capture()?;
            store(config, name, &text, "typed")
        }
        OnlyKeyCommand::Restore {
            backup,
            name,
            identity,
            device,
            yes,
        } => restore(config, backup, name.as_deref(), identity, device.as_deref(), *yes),
        OnlyKeyCommand::Verify { .. } => unreachable!("dispatched to onlykey_verify"),
    }
}

/// Verifies and stores; nothing is stored when the text does not verify.
fn store(config: &Config, name: &str, text: &str, source: &str) -> anyhow::Result<Exit> {
    let backup = onlykey::parse(text).context("not a valid OnlyKey backup; nothing was stored")?;
    let identity = backup.identity();
    let data = Zeroizing::new(backup.text.as_bytes().to_vec());
    let files = [PlainFile {
        entry: bundle::file_entry(FILE, &format!("({source})"), &data, 0o600),
        data,
    }];
    let (id, size) = hardware::store_backup(
        config,
        name,
        KIND,
        "onlykey",
        &files,
        Identity::OnlyKey(identity.clone()),
    )?;
    println!("stored OnlyKey backup {name} as {id} ({size} bytes encrypted)");
    println!("  {}", identity.short());
    if identity.no_check_line {
        println!(
            "  no check line (firmware 2.1.1 or older): unverified; `coldkeep onlykey verify` with the \
             backup passphrase or key is its integrity check"
        );
    } else {
        println!("  check value: {}", identity.check);
    }
    Ok(Exit::Ok)
}

/// How long typing may pause after BEGIN before the capture ends.
const IDLE: Duration = Duration::from_secs(20);
/// How long to wait for the operator to start the backup.
const BEFORE_BEGIN: Duration = Duration::from_secs(600);

/// The terminal with echo and line editing off (so a line without Enter, as the device types
/// when it has no backup key, still arrives); restores the saved settings when dropped.
struct RawTerminal(String);

impl RawTerminal {
    fn new() -> anyhow::Result<RawTerminal> {
        let saved = Command::new("stty")
            .arg("-g")
            .stdin(Stdio::inherit())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        let ok = saved.is_some()
            && Command::new("stty")
                .args(["-echo", "-icanon", "min", "1", "time", "0"])
                .stdin(Stdio::inherit())
                .status()
                .is_ok_and(|s| s.success());
        anyhow::ensure!(
            ok,
            "cannot turn terminal echo off (stty failed); refusing to show the backup"
        );
        Ok(RawTerminal(saved.unwrap_or_default()))
    }

    fn restore(saved: &str) {
        let _ = Command::new("stty").arg(saved).stdin(Stdio::inherit()).status();
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        RawTerminal::restore(&self.0);
    }
}

/// Stops the capture's signal thread when the capture ends.
struct UnregisterOnDrop(signal_hook::iterator::Handle);

impl Drop for UnregisterOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Reads the typed text from the terminal with echo off, from BEGIN to the END line.
fn capture() -> anyhow::Result<Zeroizing<String>> {
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(
            "capture reads what the OnlyKey types into this terminal; without a terminal use \
             `coldkeep onlykey import - --name NAME` and pipe the text in"
                .into(),
        )
        .into());
    }
    // Echo goes off before the prompt: nothing typed after the prompt can be shown.
    let terminal = RawTerminal::new()?;
    // Ctrl-C or a kill must not leave the terminal without echo.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])?;
    let _unregister = UnregisterOnDrop(signals.handle());
    let saved = terminal.0.clone();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            RawTerminal::restore(&saved);
            eprintln!("\ninterrupted: nothing was stored");
            std::process::exit(128 + sig);
        }
    });
    eprintln!(
        "1. Unlock the OnlyKey (enter its PIN).\n\
         2. Keep this terminal focused: the OnlyKey types into it. Echo is off, nothing is shown.\n\
         3. Hold button 1 for 5 seconds. Typing a large backup takes a while; wait for it to finish.\n\
         (Ctrl-D to give up.)"
    );
    std::io::stderr().flush()?;
    // Reads go straight into a wiped buffer: one larger than stdin's own, so it is bypassed.
    let (tx, rx) = std::sync::mpsc::channel::<Zeroizing<Vec<u8>>>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = Zeroizing::new(vec![0u8; 16 * 1024]);
        while let Ok(n @ 1..) = stdin.read(&mut buf) {
            if tx.send(Zeroizing::new(buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    let text = onlykey::TypedCapture::new(MAX_TEXT as usize)
        .collect(&rx, IDLE, BEFORE_BEGIN, |lines| {
            if lines.is_multiple_of(20) {
                eprint!("\r{lines} lines received");
            }
        })
        .map_err(|e| {
            // Let the device finish typing (a hint line, a partial backup) while echo is still
            // off, so none of it lands in the shell after we exit.
            let until = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < until && rx.recv_timeout(Duration::from_secs(2)).is_ok() {}
            anyhow::anyhow!("{e}: nothing was stored")
        })?;
    let lines = text.lines().count();
    eprintln!("\r{lines} lines received.");
    Ok(text)
}

fn restore(
    config: &Config,
    backup: &str,
    name: Option<&str>,
    identity: &std::path::Path,
    device: Option<&str>,
    yes: bool,
) -> anyhow::Result<Exit> {
    if let Some(n) = name {
        hardware::check_name(n)?;
    }
    let (store, artifact) = hardware::pick(config, KIND, name, backup)?;
    let opened = hardware::open(&store, &artifact, identity)?;
    let file = opened
        .files
        .iter()
        .find(|f| f.entry.path == FILE)
        .context("the artifact holds no OnlyKey backup text")?;
    let text = std::str::from_utf8(&file.data).context("the stored text is not UTF-8")?;
    let parsed = onlykey::parse(text).context("the stored backup no longer verifies; refusing to send it")?;
    if Some(Identity::OnlyKey(parsed.identity())) != opened.manifest.identity {
        bail!("the stored backup differs from what its sidecar records; refusing to send it");
    }
    let path = match device {
        Some(p) => p.to_string(),
        None => {
            let all = hid::enumerate()?;
            let mine: Vec<hid::DeviceInfo> = all
                .into_iter()
                .filter(|d| device::IDS.contains(&(d.vendor_id, d.product_id)))
                .collect();
            let chosen = device::OnlyKey.select(&mine).context(
                "no OnlyKey found (USB 1d50:60fc): plug it in; `coldkeep hid list` shows what is seen",
            )?;
            // Current firmware reports the same serial on every device: never guess between two.
            let alike = mine
                .iter()
                .filter(|d| d.interface == chosen.interface && d.usage_page == chosen.usage_page)
                .count();
            if alike > 1 {
                bail!(
                    "{alike} OnlyKeys are attached: pass --device PATH (`coldkeep hid list` shows the paths)"
                );
            }
            chosen.path.clone()
        }
    };
    eprintln!(
        "Restoring {} ({}) to the OnlyKey at {path}.\n\
         Before you go on, on the device:\n\
         - the same backup passphrase or backup key must be set that this backup was made with;\n\
         - it must be unlocked (PIN entered);\n\
         - it must be in config mode: {}.\n\
         The restore replaces the device's slots and keys with the backup's.",
        artifact.id,
        parsed.identity().short(),
        device::CONFIG_MODE
    );
    confirm(yes)?;
    let mut transport = hid::open(&path)?;
    let done = device::restore(transport.as_mut(), &parsed.payload, device::Pacing::default())?;
    println!("OnlyKey restore: {done}");
    Ok(Exit::Ok)
}

fn confirm(yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("refusing to restore without --yes (no terminal to ask on)");
    }
    if crate::output::ask_yes("Restore now?")? {
        Ok(())
    } else {
        bail!("not confirmed; nothing was sent")
    }
}

//! `coldkeep onlykey import | capture | restore`.

use crate::bundle::{self, PlainFile};
use crate::cli::OnlyKeyCommand;
use crate::config::Config;
use crate::error::{Exit, UsageError};
use crate::hid::{self, HardwareKey, onlykey as device};
use crate::material::{Identity, onlykey};
use crate::ops::hardware;
use anyhow::{Context, bail};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::{Command, Stdio};
use zeroize::Zeroizing;

/// The artifact kind and the file name inside it.
pub const KIND: &str = crate::ops::vocab::ArtifactKind::Onlykey.as_str();
/// The file name an OnlyKey backup has inside its artifact.
pub const FILE: &str = "onlykey-backup.txt";
/// Largest text accepted (an 18,000-byte payload is about 24 KiB of text).
const MAX_TEXT: u64 = 256 * 1024;

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
    }
}

/// Reads the text into one pre-sized, wiped buffer (no reallocation leaves copies behind).
fn read_text(file: &str) -> anyhow::Result<Zeroizing<String>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_TEXT as usize + 1));
    let reader: Box<dyn Read> = if file == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(file).with_context(|| format!("reading {file}"))?)
    };
    reader.take(MAX_TEXT + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_TEXT {
        bail!("the input is larger than {MAX_TEXT} bytes: not an OnlyKey backup");
    }
    let text = std::str::from_utf8(&buf).context("the backup text is not UTF-8")?;
    Ok(Zeroizing::new(text.to_string()))
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
    println!("  check value: {}", identity.check);
    Ok(Exit::Ok)
}

/// Restores echo on the terminal when dropped.
struct EchoOff;

impl EchoOff {
    fn new() -> anyhow::Result<EchoOff> {
        let ok = Command::new("stty")
            .arg("-echo")
            .stdin(Stdio::inherit())
            .status()
            .is_ok_and(|s| s.success());
        anyhow::ensure!(
            ok,
            "cannot turn terminal echo off (stty -echo failed); refusing to show the backup"
        );
        Ok(EchoOff)
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = Command::new("stty").arg("echo").stdin(Stdio::inherit()).status();
    }
}

/// Stops the capture's signal thread when the capture ends.
struct UnregisterOnDrop(signal_hook::iterator::Handle);

impl Drop for UnregisterOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Reads the typed text from the terminal with echo off, until the END line.
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
    let _echo = EchoOff::new()?;
    // Ctrl-C or a kill must not leave the terminal without echo.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])?;
    let _unregister = UnregisterOnDrop(signals.handle());
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let _ = Command::new("stty").arg("echo").stdin(Stdio::inherit()).status();
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
    let mut text = Zeroizing::new(String::with_capacity(MAX_TEXT as usize + 1024));
    let mut line = Zeroizing::new(String::with_capacity(1024));
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    let mut lines = 0usize;
    loop {
        line.clear();
        if lock.read_line(&mut line)? == 0 {
            bail!("input ended before {}: nothing was stored", onlykey::END);
        }
        if text.len() + line.len() > MAX_TEXT as usize {
            bail!("more than {MAX_TEXT} bytes typed without an END line: nothing was stored");
        }
        text.push_str(&line);
        lines += 1;
        if lines.is_multiple_of(20) {
            eprint!("\r{lines} lines received");
        }
        if line.trim() == onlykey::END {
            eprintln!("\r{lines} lines received.");
            return Ok(text);
        }
    }
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
         - it must be in config mode: hold button 6 for 5 seconds, then re-enter the PIN.\n\
         The restore replaces the device's slots and keys with the backup's.",
        artifact.id,
        parsed.identity().short()
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

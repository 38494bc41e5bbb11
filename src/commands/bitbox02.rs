//! `coldkeep bitbox02 import | list-card | check-card`: BitBox02 microSD card backups.

use crate::bundle::{self, PlainFile};
use crate::cli::BitBox02Command;
use crate::config::Config;
use crate::error::Exit;
use crate::material::Identity;
use crate::material::bitbox02::{self, BitBox02Identity, FolderCheck};
use crate::ops::hardware;
use crate::output::{Table, print_json_list};
use anyhow::{Context, bail};
use serde::Serialize;
use std::io::Read;
use std::path::Path;
use zeroize::Zeroizing;

/// The artifact kind.
pub const KIND: &str = crate::ops::vocab::ArtifactKind::Bitbox02.as_str();
/// Largest backup file accepted (real ones are a few hundred bytes).
const MAX_FILE: u64 = 64 * 1024;

const SEED_WARNING: &str = "WARNING: the microSD card holds the wallet seed in PLAINTEXT. Now that it is \
                            stored encrypted, wipe the card or lock it away as you would the seed itself.";

/// Runs a `bitbox02` subcommand.
pub fn run(config: &Config, cmd: &BitBox02Command) -> anyhow::Result<Exit> {
    match cmd {
        BitBox02Command::Import { dir, name } => import(config, dir, name),
        BitBox02Command::ListCard { dir, json } => list_card(dir, *json),
        BitBox02Command::CheckCard { dir, name, identity } => check_card(config, dir, name, identity),
        BitBox02Command::Backups(_) | BitBox02Command::Unpair { .. } => {
            unreachable!("dispatched to bitbox02_device")
        }
    }
}

/// The regular files of a backup folder, each read into a wiped buffer.
fn read_folder(dir: &Path) -> anyhow::Result<Vec<(String, Zeroizing<Vec<u8>>)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type()?;
        if !kind.is_file() {
            bail!(
                "{}: not a regular file; a backup folder holds only its three copies",
                entry.path().display()
            );
        }
        let mut buf = Zeroizing::new(Vec::with_capacity(MAX_FILE as usize + 1));
        std::fs::File::open(entry.path())?
            .take(MAX_FILE + 1)
            .read_to_end(&mut buf)?;
        if buf.len() as u64 > MAX_FILE {
            bail!("{}: too large for a BitBox02 backup file", entry.path().display());
        }
        files.push((name, buf));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

fn check(dir: &Path, files: &[(String, Zeroizing<Vec<u8>>)]) -> FolderCheck {
    let folder = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let refs: Vec<(String, &[u8])> = files.iter().map(|(n, b)| (n.clone(), b.as_slice())).collect();
    bitbox02::check_folder(&folder, &refs)
}

fn import(config: &Config, dir: &Path, name: &str) -> anyhow::Result<Exit> {
    hardware::check_name(name)?;
    let files = read_folder(dir)?;
    let checked = check(dir, &files);
    let Some(identity) = checked.identity.clone() else {
        bail!(
            "no valid backup copy in {}: {}; nothing was stored",
            dir.display(),
            checked.problems.join("; ")
        );
    };
    // A renamed folder or disagreeing copies mean the card is not what it seems: refuse. Some bad
    // copies beside good ones are stored with a warning (the card should be re-created).
    if let Some(p) = checked
        .problems
        .iter()
        .find(|p| p.contains("renamed") || p.contains("different backups"))
    {
        bail!("{p}; nothing was stored");
    }
    let plain: Vec<PlainFile> = files
        .into_iter()
        .map(|(file, data)| PlainFile {
            entry: bundle::file_entry(
                &format!("{}/{file}", identity.id),
                &dir.join(&file).display().to_string(),
                &data,
                0o600,
            ),
            data,
        })
        .collect();
    let (id, size) = hardware::store_backup(
        config,
        name,
        KIND,
        "microSD card",
        &plain,
        Identity::BitBox02(identity.clone()),
    )?;
    println!("stored BitBox02 backup {name} as {id} ({size} bytes encrypted)");
    println!(
        "  {}, {} of 3 copies intact",
        identity.short(),
        identity.copies_ok
    );
    for p in &checked.problems {
        println!("  warning: {p} (re-create the backup on the device)");
    }
    eprintln!("{SEED_WARNING}");
    Ok(Exit::Ok)
}

/// One backup found on a card.
#[derive(Debug, Serialize)]
struct CardBackup {
    folder: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<BitBox02Identity>,
    ok: bool,
    problems: Vec<String>,
}

fn scan_card(dir: &Path) -> anyhow::Result<Vec<CardBackup>> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the card at {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        // Backup folders are named by a 64-hex-digit id.
        if !e.file_type()?.is_dir() || name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let (identity, problems) = match read_folder(&e.path()) {
            Ok(files) => {
                let c = check(&e.path(), &files);
                (c.identity, c.problems)
            }
            Err(err) => (None, vec![format!("{err:#}")]),
        };
        out.push(CardBackup {
            folder: name,
            ok: problems.is_empty() && identity.is_some(),
            identity,
            problems,
        });
    }
    Ok(out)
}

fn list_card(dir: &Path, json: bool) -> anyhow::Result<Exit> {
    let backups = scan_card(dir)?;
    if json {
        print_json_list(&backups)?;
    } else if backups.is_empty() {
        println!("No BitBox02 backups on {}.", dir.display());
    } else {
        let mut table = Table::new(&["ID", "NAME", "CREATED (UTC)", "COPIES", "PROBLEMS"]);
        for b in &backups {
            let when = b
                .identity
                .as_ref()
                .and_then(|i| chrono::DateTime::from_timestamp(i64::from(i.timestamp), 0))
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "-".into());
            table.row(vec![
                b.folder[..16].to_string(),
                b.identity
                    .as_ref()
                    .map(|i| i.name.clone())
                    .unwrap_or_else(|| "-".into()),
                when,
                format!("{}/3", b.identity.as_ref().map_or(0, |i| i.copies_ok)),
                if b.problems.is_empty() {
                    "-".into()
                } else {
                    b.problems.join("; ")
                },
            ]);
        }
        print!("{}", table.render());
    }
    Ok(if backups.iter().all(|b| b.ok) {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

fn check_card(config: &Config, dir: &Path, name: &str, identity: &Path) -> anyhow::Result<Exit> {
    hardware::check_name(name)?;
    let (store, artifact) = hardware::pick(config, KIND, Some(name), "latest")?;
    let opened = hardware::open(&store, &artifact, identity)?;
    let stored = hardware::check_bitbox02(&opened)
        .identity
        .context("the stored backup has no valid copy")?;
    let card = scan_card(dir)?;
    match card.iter().find(|b| b.folder == stored.id) {
        Some(b) if b.ok => {
            println!(
                "OK: the card holds the same wallet as {name} in cold storage ({}), all 3 copies intact.",
                stored.short()
            );
            Ok(Exit::Ok)
        }
        Some(b) => {
            println!(
                "PROBLEM: the card holds this wallet ({}) but: {}",
                stored.short(),
                b.problems.join("; ")
            );
            Ok(Exit::Failed)
        }
        None => {
            let others: Vec<String> = card
                .iter()
                .map(|b| {
                    format!(
                        "{}… {}",
                        &b.folder[..8],
                        b.identity.as_ref().map(|i| i.name.as_str()).unwrap_or("?")
                    )
                })
                .collect();
            println!(
                "PROBLEM: the card has no backup of {name}'s wallet ({}); it holds: {}",
                stored.short(),
                if others.is_empty() {
                    "nothing".to_string()
                } else {
                    others.join(", ")
                }
            );
            Ok(Exit::Failed)
        }
    }
}

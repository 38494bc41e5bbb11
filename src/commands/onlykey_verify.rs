//! `coldkeep onlykey verify`: decrypt a backup offline and walk its records (counts only).

use crate::cli::OnlyKeyCommand;
use crate::config::Config;
use crate::error::{Exit, UsageError};
use crate::material::onlykey as text;
use crate::material::onlykey_backup::{self as backup, BackupKey, OpenError};
use crate::ops::hardware::{self, onlykey_text as onlykey};
use anyhow::Context;
use std::path::Path;
use zeroize::Zeroizing;

/// Runs `onlykey verify`; `config` is needed only for a stored artifact (`--name`).
pub fn run(config: Option<&Config>, cmd: &OnlyKeyCommand) -> anyhow::Result<Exit> {
    let OnlyKeyCommand::Verify {
        file,
        name,
        identity,
        backup: wanted,
        passphrase_file,
        passphrase_env,
        key_file,
        rsa_key,
    } = cmd
    else {
        unreachable!("dispatched on Verify");
    };
    let key = backup_key(
        passphrase_file.as_deref(),
        passphrase_env.as_deref(),
        key_file.as_deref(),
        rsa_key.as_deref(),
    )?;
    // A stored backup's verification is recorded for `status` (name, artifact id).
    let mut recorded: Option<(&Config, &str, String)> = None;
    let (source, stored) = match (name, file) {
        (Some(name), _) => {
            hardware::check_name(name)?;
            let config = config.context("a stored backup needs the configuration")?;
            let identity = identity.as_deref().context("--name needs --identity")?;
            let (store, artifact) = hardware::pick(config, onlykey::KIND, Some(name), wanted)?;
            let opened = hardware::open(&store, &artifact, identity)?;
            let file = opened
                .files
                .iter()
                .find(|f| f.entry.path == onlykey::FILE)
                .context("the artifact holds no OnlyKey backup text")?;
            let t = std::str::from_utf8(&file.data).context("the stored text is not UTF-8")?;
            recorded = Some((config, name.as_str(), artifact.id.clone()));
            (format!("{name} ({})", artifact.id), Zeroizing::new(t.to_string()))
        }
        (None, Some(file)) => (file.clone(), onlykey::read_text(file)?),
        (None, None) => {
            return Err(
                UsageError("give the backup text (FILE or -) or --name NAME --identity FILE".into()).into(),
            );
        }
    };
    let parsed = text::parse(&stored).context("not a valid OnlyKey backup")?;
    let identity = parsed.identity();
    println!("{source}: {}", identity.short());
    let opened = backup::open(&parsed.payload, &key);
    // The result first, then its record: a record that cannot be written must not hide it.
    let detail = match &opened {
        Ok(summary) => {
            println!("  opens with {}", key.describe());
            for line in summary.lines() {
                println!("  {line}");
            }
            if parsed.legacy {
                println!("  no check line (firmware 2.1.1 or older): this decryption is its integrity check");
            }
            None
        }
        // Nothing is recorded for a key that does not fit the backup (a usage error).
        Err(OpenError::BadKey(why)) => return Err(UsageError(why.clone()).into()),
        Err(e) => {
            eprintln!("error: {e}");
            Some(e.to_string())
        }
    };
    let mut exit = if detail.is_none() { Exit::Ok } else { Exit::Failed };
    if let Some((config, name, artifact)) = recorded {
        let check = crate::ops::hardware_checks::onlykey_check(name, &artifact, detail);
        match crate::ops::run_state::record_device_check(config, &check) {
            Ok(id) => eprintln!("Recorded as check {id} (see `coldkeep status`)."),
            Err(e) => {
                eprintln!("error: the verification could not be recorded in the store: {e:#}");
                exit = Exit::Failed;
            }
        }
    }
    Ok(exit)
}

/// Exactly one of the key options (clap's group ensures at most one).
fn backup_key(
    passphrase_file: Option<&Path>,
    passphrase_env: Option<&str>,
    key_file: Option<&Path>,
    rsa_key: Option<&Path>,
) -> anyhow::Result<BackupKey> {
    let read = |p: &Path| -> anyhow::Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(std::fs::read(p).map_err(|e| {
            UsageError(format!("cannot read {}: {e}", p.display()))
        })?))
    };
    let utf8 = |b: &[u8], what: &str| -> anyhow::Result<Zeroizing<String>> {
        let s = std::str::from_utf8(b).map_err(|_| UsageError(format!("{what} is not UTF-8")))?;
        Ok(Zeroizing::new(s.to_string()))
    };
    let passphrase = |p: Zeroizing<String>| -> anyhow::Result<BackupKey> {
        let first = p.lines().next().unwrap_or("");
        if first.is_empty() {
            return Err(UsageError("the backup passphrase is empty".into()).into());
        }
        Ok(BackupKey::Passphrase(Zeroizing::new(first.to_string())))
    };
    let key = if let Some(p) = passphrase_file {
        passphrase(utf8(&read(p)?, "the passphrase file")?)?
    } else if let Some(var) = passphrase_env {
        let value = std::env::var(var)
            .map_err(|_| UsageError(format!("environment variable {var} is not set (or not UTF-8)")))?;
        passphrase(Zeroizing::new(value))?
    } else if let Some(p) = key_file {
        BackupKey::ecc_from_hex(&utf8(&read(p)?, "the key file")?).map_err(|e| UsageError(e.to_string()))?
    } else if let Some(p) = rsa_key {
        BackupKey::rsa_from_pem(&read(p)?).map_err(|e| UsageError(e.to_string()))?
    } else {
        return Err(UsageError(
            "give the backup passphrase (--passphrase-file F or --passphrase-env VAR) or the backup key \
             (--key-file F with the ECC key in hex, or --rsa-key F in PEM)"
                .into(),
        )
        .into());
    };
    Ok(key)
}

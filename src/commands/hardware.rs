//! Hardware keys in the store (`<store>/hardware/<name>/`), and `coldkeep hid list`.

use super::keystore;
use super::report::{Table, print_json};
use crate::bundle::{Identities, Manifest, Opened, PlainFile, Purpose};
use crate::config::{Config, HARDWARE_NODE};
use crate::error::{Exit, UsageError};
use crate::hid;
use crate::material::Identity;
use crate::store::{Artifact, Store};
use anyhow::{Context, bail};
use chrono::{SubsecRound, Utc};

/// Checks a hardware key's name (it becomes a store directory).
pub fn check_name(name: &str) -> Result<(), UsageError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(UsageError(format!(
            "invalid name {name:?}: use 1-64 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
        )))
    }
}

/// Encrypts a hardware key's backup to the config's recipients into `<store>/hardware/<name>/`.
pub fn store_backup(
    config: &Config,
    name: &str,
    kind: &str,
    source: &str,
    files: &[PlainFile],
    identity: Identity,
) -> anyhow::Result<(String, u64)> {
    let manifest = Manifest {
        format: crate::bundle::FORMAT_VERSION,
        node: HARDWARE_NODE.to_string(),
        keystore: name.to_string(),
        kind: kind.to_string(),
        purpose: Purpose::Backup,
        created_at: Utc::now().trunc_subsecs(0),
        coldkeep_version: env!("CARGO_PKG_VERSION").to_string(),
        host: source.to_string(),
        host_key: String::new(),
        files: files.iter().map(|f| f.entry.clone()).collect(),
        dirs: Vec::new(),
        identity: Some(identity),
        recipients: Vec::new(),
    };
    let store = Store::new(&config.store);
    // Copies a killed import left missing are written again first.
    for a in store
        .list(Some(HARDWARE_NODE))?
        .artifacts
        .iter()
        .filter(|a| a.keystore == name)
    {
        if let Err(e) = store.repair_missing(a) {
            tracing::warn!(artifact = %a.id, "cannot write a missing copy: {e}");
        }
    }
    let (id, size) = keystore::seal_and_store(&store, &config.encryption.recipients, manifest, files, false)?;
    Ok((id.unwrap_or_default(), size))
}

/// Picks a hardware key's artifact of `kind`: `latest` of `name`, or an id (prefix).
pub fn pick(
    config: &Config,
    kind: &str,
    name: Option<&str>,
    wanted: &str,
) -> anyhow::Result<(Store, Artifact)> {
    let store = Store::new(&config.store);
    let listing = store.list(Some(HARDWARE_NODE))?;
    let of_kind = |a: &&Artifact| a.sidecar.manifest.kind == kind && name.is_none_or(|n| a.keystore == n);
    let artifact = if wanted == "latest" {
        let Some(name) = name else {
            return Err(
                UsageError("give --name NAME with `--backup latest`, or an artifact id".into()).into(),
            );
        };
        super::artifact::latest(&listing.artifacts, HARDWARE_NODE, name)
            .filter(|a| a.sidecar.manifest.kind == kind)
            .cloned()
            .with_context(|| format!("no {kind} backup named {name} in {}", store.primary.display()))?
    } else {
        let matches: Vec<&Artifact> = listing
            .artifacts
            .iter()
            .filter(of_kind)
            .filter(|a| a.id.starts_with(wanted))
            .collect();
        match matches.as_slice() {
            [one] => (*one).clone(),
            [] => bail!("no {kind} artifact {wanted} (see `coldkeep list --node {HARDWARE_NODE}`)"),
            many => bail!("{wanted} matches {} artifacts; give more of the id", many.len()),
        }
    };
    Ok((store, artifact))
}

/// Decrypts and checks an artifact (hashes, manifest = sidecar).
pub fn open(store: &Store, artifact: &Artifact, identity: &std::path::Path) -> anyhow::Result<Opened> {
    let ids = Identities::from_file(identity)?;
    super::artifact::open_verified(store, artifact, &ids)
}

/// Runs `coldkeep hid list`.
pub fn list(json: bool) -> anyhow::Result<Exit> {
    let all = hid::enumerate()?;
    let found = hid::known(&all);
    if json {
        print_json(&found)?;
    } else if found.is_empty() {
        println!(
            "No known hardware key found ({}). If one is plugged in: check the cable and, for access, \
             the udev rules in the README.",
            hid::DEVICES
                .iter()
                .map(|d| {
                    let ids: Vec<String> = d.ids().iter().map(|(v, p)| format!("{v:04x}:{p:04x}")).collect();
                    format!("{} {}", d.model(), ids.join("/"))
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        let mut table = Table::new(&["MODEL", "PATH", "SERIAL", "INTERFACE", "USAGE PAGE", "ACCESS"]);
        for f in &found {
            table.row(vec![
                f.model.to_string(),
                f.device.path.clone(),
                f.device.serial.clone().unwrap_or_else(|| "-".into()),
                f.device.interface.to_string(),
                format!("0x{:04x}", f.device.usage_page),
                if f.accessible {
                    "ok".into()
                } else {
                    "NO PERMISSION (udev rules, see README)".into()
                },
            ]);
        }
        print!("{}", table.render());
        for f in &found {
            println!(
                "{}: backup: {}; restore: {}",
                f.model, f.capabilities.backup, f.capabilities.restore
            );
        }
    }
    Ok(Exit::Ok)
}

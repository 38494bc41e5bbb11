//! `coldkeep init`: write a first config, create the store, make the signing key, optionally make
//! an age identity
//! (the work is in [`crate::init`]; this prints what was done and what is still missing).

use crate::cli::InitArgs;
use crate::error::{Exit, UsageError};
use crate::init::{InitOptions, init};
use std::path::Path;

/// Runs `coldkeep init`; `config` is the global `--config` (default `./coldkeep.yaml`).
pub fn run(config: Option<&Path>, args: &InitArgs) -> anyhow::Result<Exit> {
    let opts = InitOptions {
        config: config
            .unwrap_or(Path::new(crate::config::DEFAULT_PATHS[0]))
            .to_path_buf(),
        store: args.store.clone(),
        recipients: args.recipients.clone(),
        identity_out: args.identity_out.clone(),
    };
    let done = init(&opts).map_err(|e| match e.is_usage() {
        true => anyhow::Error::new(UsageError(e.to_string())),
        false => anyhow::Error::new(e),
    })?;
    let config = done.config.display();
    println!("wrote {config}");
    let verb = if done.store_created {
        "created"
    } else {
        "using empty"
    };
    println!("{verb} store {} (0700)", done.store.display());
    println!("recipients: {}", done.recipients.len());
    for r in &done.recipients {
        println!("  {r}");
    }
    if let Some((path, public)) = &done.identity {
        println!(
            "\nwrote a new age identity to {} (0600); its public key {public} is a recipient.\n\
             IT DECRYPTS EVERY BACKUP: move it off this machine now (an offline medium, a password\n\
             manager; keep two copies) and delete it here. Backing up never needs it; verify\n\
             --identity and restore do, wherever you bring it back.",
            path.display()
        );
    }
    println!(
        "\nwrote the signing key {} (0600, {}) and {} trusting it: every artifact is signed\n\
         with it. Keep a copy with the identity; to rotate, add the new key's line to allowed_signers\n\
         and keep the old one.",
        done.signing_key.display(),
        done.signing_fingerprint,
        done.allowed_signers.display()
    );
    println!(
        "\nStill missing before the first backup:\n  \
         1. nodes: add them at the end of {config} (commented examples are there)\n  \
         2. host keys: each node's key in known_hosts (`ssh-keyscan -p PORT HOST >> ~/.ssh/known_hosts`,\n     \
            then compare the fingerprint), or `host_key:` pinned on the node\n  \
         3. coldkeep --config {config} config check\n  \
         4. coldkeep --config {config} backup --dry-run   (connects and checks, writes nothing)"
    );
    Ok(Exit::Ok)
}

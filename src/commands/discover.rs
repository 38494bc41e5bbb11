//! `coldkeep discover`: connect to one node (configured, or not yet: `--host --user`) and print
//! a complete node entry to paste under `nodes:`. The looking is [`crate::ops::discover`]; this
//! prints it. It writes nothing, on the node or here.

use crate::cli::DiscoverArgs;
use crate::config::{Become, Config};
use crate::error::{Exit, UsageError};
use crate::material::nodectl::CNNGSENC_CONF;
use crate::ops::discover::{ACRA_DIRS, NODECTL_CONFIG, Places, Target, discover, entry_yaml, target};
use crate::text::escape_control;

/// `coldkeep discover`.
pub fn run(config: &Config, args: &DiscoverArgs) -> anyhow::Result<Exit> {
    let become_ = match args.become_.as_deref() {
        None => None,
        Some("sudo") => Some(Become::Sudo { user: "root".into() }),
        Some("none") => Some(Become::None),
        Some(other) => {
            return Err(UsageError(format!("--become {other}: expected `sudo` or `none`")).into());
        }
    };
    let node = target(
        config,
        &Target {
            node: args.node.clone(),
            host: args.host.clone(),
            port: args.port,
            user: args.user.clone(),
            become_,
            name: args.name.clone(),
        },
    )?;
    let session = crate::ops::connect_with_retries(config, &node)?;
    let places = Places {
        cn_config: args
            .nodectl_config
            .clone()
            .unwrap_or_else(|| NODECTL_CONFIG.into()),
        cnngsenc: args.cnngsenc_conf.clone().unwrap_or_else(|| CNNGSENC_CONF.into()),
        acra_dirs: if args.acra_dir.is_empty() {
            ACRA_DIRS.iter().map(|s| s.to_string()).collect()
        } else {
            args.acra_dir.clone()
        },
        login_user: node.user.clone(),
    };
    let found = discover(&session, &places);
    session.close();
    println!(
        "# discovered on {}:{} as {} (paste under `nodes:`)",
        node.host, node.port, node.user
    );
    // Comment lines carry text from the node: escaped, so no newline in it can start a line
    // of YAML in what the operator pastes.
    for note in &found.notes {
        println!("# could not use: {}", escape_control(note));
    }
    for w in &found.warnings {
        println!("# warning: {}", escape_control(w));
    }
    if found.keystores.is_empty() {
        println!("# no keystores found");
        return Ok(Exit::Failed);
    }
    print!("{}", entry_yaml(&node, &found));
    if found.incomplete {
        println!("# INCOMPLETE: see `could not use` above");
        return Ok(Exit::Failed);
    }
    Ok(Exit::Ok)
}

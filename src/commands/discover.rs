//! `coldkeep discover`: connect to one node and print the `keystores:` YAML to paste for it.
//! The looking is [`crate::ops::discover`]; this prints it. It writes nothing.

use crate::cli::DiscoverArgs;
use crate::config::Config;
use crate::error::Exit;
use crate::ops::discover::{ACRA_DIRS, NODECTL_CONFIG, Target, discover, target};

/// `coldkeep discover`.
pub fn run(config: &Config, args: &DiscoverArgs) -> anyhow::Result<Exit> {
    let node = target(
        config,
        &Target {
            node: args.node.clone(),
            host: args.host.clone(),
            port: args.port,
            user: args.user.clone(),
        },
    )?;
    let session = crate::ops::connect_with_retries(config, &node)?;
    let acra_dirs: Vec<String> = if args.acra_dir.is_empty() {
        ACRA_DIRS.iter().map(|s| s.to_string()).collect()
    } else {
        args.acra_dir.clone()
    };
    let found = discover(
        &session,
        args.nodectl_config.as_deref().unwrap_or(NODECTL_CONFIG),
        &acra_dirs,
    );
    session.close();
    println!(
        "# discovered on {}:{} as {} (paste under `nodes:`)",
        node.host, node.port, node.user
    );
    for note in &found.notes {
        println!("# could not use: {note}");
    }
    if found.keystores.is_empty() {
        println!("# no keystores found");
        return Ok(Exit::Failed);
    }
    println!(
        "  - name: {}\n    host: {}\n    port: {}",
        node.name, node.host, node.port
    );
    if let crate::config::Become::Sudo { user } = &node.become_ {
        println!("    become: sudo\n    become_user: {user}");
        // The helper and policy the session used (pinned in the node's sudoers rule).
        if node.helper != crate::config::HelperConfig::default() {
            println!(
                "    node_helper: {}\n    node_policy: {}",
                node.helper.program, node.helper.policy
            );
        }
    }
    println!("    keystores:");
    for k in &found.keystores {
        print!("{k}");
    }
    Ok(Exit::Ok)
}

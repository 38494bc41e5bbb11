//! The commands: thin orchestration over config, remote, material, bundle and store.

mod after_run;
pub mod artifact;
pub mod backup;
pub mod bitbox02;
pub mod check;
pub mod config_check;
pub mod daemon;
pub mod demo;
pub mod discover;
pub mod fleet;
pub mod hardware;
pub mod keystore;
pub mod list;
pub mod onlykey;
mod passphrase;
pub mod prune;
pub mod report;
pub mod restore;
mod restore_acra;
mod restore_owner;
pub mod status;
pub mod verify;

use crate::cli::{Cli, Command, ConfigCommand, NodeSelector};
use crate::config::{Config, NodeConfig};
use crate::error::{Exit, UsageError};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    match &cli.command {
        Command::Demo(args) => return demo::run(args),
        Command::Hid(crate::cli::HidCommand::List { json }) => return hardware::list(*json),
        _ => {}
    }
    let path = crate::config::resolve_path(cli.config.as_deref())?;
    let mut config = Config::load(&path)?;
    config.store.lock_wait = cli.lock_wait;
    match &cli.command {
        Command::Backup(args) => backup::run(&config, args),
        Command::Prune(args) => prune::run(&config, args),
        Command::Status(args) => status::run(&config, args),
        Command::Daemon(args) => daemon::run(config, &path, args, cli.lock_wait),
        Command::List(args) => list::run(&config, args),
        Command::Verify(args) => verify::run(&config, args),
        Command::Restore(args) => restore::run(&config, args),
        Command::Check(args) => check::run(&config, args),
        Command::Config(ConfigCommand::Check { json }) => config_check::run(&config, *json),
        Command::Config(ConfigCommand::Sudoers { nodes, restore }) => {
            check_node_names(&config, nodes)?;
            let picked: Vec<&NodeConfig> = config
                .nodes
                .iter()
                .filter(|n| nodes.is_empty() || nodes.contains(&n.name))
                .collect();
            print!("{}", crate::remote::sudoers_text(&picked, *restore));
            Ok(Exit::Ok)
        }
        Command::Discover(args) => discover::run(&config, args),
        Command::Onlykey(cmd) => onlykey::run(&config, cmd),
        Command::Bitbox02(cmd) => bitbox02::run(&config, cmd),
        Command::Demo(_) | Command::Hid(_) => unreachable!("handled above"),
    }
}

/// The nodes a selector picks, in config order. No selector means every node. Naming a node
/// that is not in the config is a usage error, so a typo never silently backs up nothing.
pub fn select_nodes<'c>(
    config: &'c Config,
    select: &NodeSelector,
) -> Result<Vec<&'c NodeConfig>, UsageError> {
    if config.nodes.is_empty() {
        return Err(UsageError(format!("{} lists no nodes", config.source.display())));
    }
    check_node_names(config, &select.nodes)?;
    let picked: Vec<&NodeConfig> = config
        .nodes
        .iter()
        .filter(|n| select.nodes.is_empty() || select.nodes.contains(&n.name))
        .filter(|n| select.labels.is_empty() || n.labels.iter().any(|l| select.labels.contains(l)))
        .filter(|n| {
            select
                .shard
                .is_none_or(|s| fleet::shard_of(&n.name, s.count) == s.index)
        })
        .collect();
    if picked.is_empty() && select.shard.is_some() && select.nodes.is_empty() && select.labels.is_empty() {
        // A fleet smaller than the shard count leaves some shards empty: nothing to do.
        tracing::info!("this shard holds no node");
        return Ok(picked);
    }
    if picked.is_empty() {
        return Err(UsageError(format!(
            "no node matches the selection (labels: {}; shard: {})",
            select.labels.join(", "),
            select
                .shard
                .map(|s| format!("{}/{}", s.index, s.count))
                .unwrap_or_else(|| "-".into())
        )));
    }
    Ok(picked)
}

/// Errors unless every name is a configured node.
pub fn check_node_names(config: &Config, names: &[String]) -> Result<(), UsageError> {
    for name in names {
        if config.node(name).is_none() {
            let known: Vec<&str> = config.nodes.iter().map(|n| n.name.as_str()).collect();
            return Err(UsageError(format!(
                "no node named {name:?} in {} (nodes: {})",
                config.source.display(),
                known.join(", ")
            )));
        }
    }
    Ok(())
}

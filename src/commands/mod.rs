//! The commands: one file per subcommand, each parsing its arguments into a request for
//! [`crate::ops`], calling it, and printing the result (human or `--json`).

pub mod backup;
pub mod bitbox02;
pub mod bitbox02_device;
pub mod check;
pub mod config_check;
pub mod config_node_policy;
pub mod config_sudoers;
pub mod daemon;
pub mod demo;
pub mod discover;
pub mod docs;
pub mod hid;
pub mod init;
pub mod list;
pub mod onlykey;
pub mod onlykey_verify;
pub mod prune;
pub mod restore;
pub mod status;
pub mod verify;

use crate::cli::{
    BackupsCommand, BitBox02Command, Cli, Command, ConfigCommand, NodeSelector, OnlyKeyCommand,
};
use crate::config::Config;
use crate::error::Exit;
use crate::ops::Selection;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    match &cli.command {
        Command::Demo(args) => return demo::run(args),
        Command::Hid(crate::cli::HidCommand::List { json }) => return hid::list(*json),
        Command::Init(args) => return init::run(cli.config.as_deref(), args),
        Command::Completions(args) => return docs::completions(args.shell),
        Command::Man(args) => return docs::man(args.dir.as_deref()),
        // A backup file is verified without a configuration.
        Command::Onlykey(cmd @ OnlyKeyCommand::Verify { name: None, .. }) => {
            return onlykey_verify::run(None, cmd);
        }
        // Listing a card and forgetting a pairing record nothing in the store.
        Command::Bitbox02(BitBox02Command::Backups(BackupsCommand::List(args))) => {
            return bitbox02_device::list(args);
        }
        Command::Bitbox02(BitBox02Command::Unpair { name, pairing_file }) => {
            return bitbox02_device::unpair(name, pairing_file.clone());
        }
        _ => {}
    }
    let path = crate::config::resolve_path(cli.config.as_deref())?;
    let mut config = Config::load(&path)?;
    config.store.lock_wait = cli.lock_wait;
    // Store listings run `jobs` wide (see `par::set_width`).
    crate::par::set_width(config.jobs);
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
            config_sudoers::run(&config, nodes, *restore)
        }
        Command::Config(ConfigCommand::NodePolicy {
            node,
            restore,
            discover,
            nodectl_config,
            acra_dir,
        }) => {
            let cn = nodectl_config
                .as_deref()
                .unwrap_or(crate::ops::discover::NODECTL_CONFIG);
            let bootstrap = discover.then_some((cn, acra_dir.as_slice()));
            config_node_policy::run(&config, node.as_deref(), *restore, bootstrap)
        }
        Command::Discover(args) => discover::run(&config, args),
        Command::Onlykey(cmd @ OnlyKeyCommand::Verify { .. }) => onlykey_verify::run(Some(&config), cmd),
        Command::Onlykey(cmd) => onlykey::run(&config, cmd),
        Command::Bitbox02(BitBox02Command::Backups(cmd)) => bitbox02_device::run(&config, cmd),
        Command::Bitbox02(cmd) => bitbox02::run(&config, cmd),
        Command::Demo(_) | Command::Hid(_) | Command::Init(_) | Command::Completions(_) | Command::Man(_) => {
            unreachable!("handled above")
        }
    }
}

/// `--node`/`--label`/`--shard` as the selection the ops layer takes.
impl From<&NodeSelector> for Selection {
    fn from(s: &NodeSelector) -> Selection {
        Selection {
            nodes: s.nodes.clone(),
            labels: s.labels.clone(),
            shard: s.shard.map(|s| (s.index, s.count)),
        }
    }
}

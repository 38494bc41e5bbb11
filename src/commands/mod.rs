//! The commands: thin orchestration over config, remote, material, bundle and store.

pub mod backup;
pub mod config_check;
pub mod demo;
pub mod list;
pub mod report;
pub mod verify;

use crate::cli::{Cli, Command, ConfigCommand};
use crate::config::Config;
use crate::error::Exit;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Demo(args) => demo::run(&args),
        command => {
            let path = crate::config::resolve_path(cli.config.as_deref())?;
            let config = Config::load(&path)?;
            match command {
                Command::Backup(args) => backup::run(&config, &args),
                Command::List(args) => list::run(&config, &args),
                Command::Verify(args) => verify::run(&config, &args),
                Command::Config(ConfigCommand::Check { json }) => config_check::run(&config, json),
                Command::Demo(_) => unreachable!(),
            }
        }
    }
}

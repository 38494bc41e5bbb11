//! `coldkeep config check`.
use crate::config::Config;
use crate::error::Exit;

/// Prints a config summary.
pub fn run(config: &Config, json: bool) -> anyhow::Result<Exit> {
    let _ = (config, json);
    todo!()
}

//! `coldkeep list`.
use crate::cli::ListArgs;
use crate::config::Config;
use crate::error::Exit;

/// Lists artifacts.
pub fn run(config: &Config, args: &ListArgs) -> anyhow::Result<Exit> {
    let _ = (config, args);
    todo!()
}

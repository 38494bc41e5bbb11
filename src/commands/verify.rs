//! `coldkeep verify`.
use crate::cli::VerifyArgs;
use crate::config::Config;
use crate::error::Exit;

/// Verifies artifacts.
pub fn run(config: &Config, args: &VerifyArgs) -> anyhow::Result<Exit> {
    let _ = (config, args);
    todo!()
}

//! `coldkeep backup`.
use crate::cli::BackupArgs;
use crate::config::Config;
use crate::error::Exit;

/// Runs a backup.
pub fn run(config: &Config, args: &BackupArgs) -> anyhow::Result<Exit> {
    let _ = (config, args);
    todo!()
}

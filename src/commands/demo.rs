//! `coldkeep demo`.
use crate::cli::DemoArgs;
use crate::error::Exit;

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<Exit> {
    let _ = args;
    todo!()
}

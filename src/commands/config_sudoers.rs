//! `coldkeep config sudoers`: prints least-privilege sudoers lines for the nodes reached with
//! `become: sudo`, built by the remote layer from the exact commands the session runs.

use crate::config::{Config, NodeConfig};
use crate::error::Exit;

/// Prints the rules for `nodes` (every node when empty); `restore` adds the writes.
pub fn run(config: &Config, nodes: &[String], restore: bool) -> anyhow::Result<Exit> {
    crate::ops::check_node_names(config, nodes)?;
    let picked: Vec<&NodeConfig> = config
        .nodes
        .iter()
        .filter(|n| nodes.is_empty() || nodes.contains(&n.name))
        .collect();
    print!("{}", crate::remote::sudoers_text(&picked, restore));
    Ok(Exit::Ok)
}

//! `coldkeep config node-policy`: prints the node's policy file for the node helper, from the
//! config (and, with `--restore`, the owners the latest backups recorded).

use crate::config::Config;
use crate::error::Exit;
use std::collections::BTreeMap;

/// Prints the policy for `node`, or with `discover` a read-only bootstrap policy.
pub fn run(
    config: &Config,
    node: Option<&str>,
    restore: bool,
    discover: Option<(&str, &[String])>,
) -> anyhow::Result<Exit> {
    if let Some((nodectl_config, acra_dirs)) = discover {
        print!(
            "{}",
            crate::remote::bootstrap_policy_text(nodectl_config, acra_dirs)
        );
        return Ok(Exit::Ok);
    }
    let name = node.unwrap_or_default().to_string();
    crate::ops::check_node_names(config, std::slice::from_ref(&name))?;
    let node = config.node(&name).expect("checked above");
    let owners = if restore {
        crate::ops::node_policy::recorded_owners(config, node).unwrap_or_else(|e| {
            tracing::warn!("cannot read the store for the owners its backups recorded: {e:#}");
            BTreeMap::new()
        })
    } else {
        BTreeMap::new()
    };
    print!("{}", crate::remote::node_policy_text(node, restore, &owners));
    Ok(Exit::Ok)
}

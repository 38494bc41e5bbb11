//! The shared layer under the commands: everything a command does that is not parsing its
//! arguments or printing.
//!
//! Rules, so commands stay thin and this layer stays testable: nothing here prints (results are
//! values; progress and problems go to `tracing`), nothing here takes a clap type (commands turn
//! their arguments into the option structs and requests defined here), and every operation on a
//! node goes through [`crate::remote::Node`], so the decisions run against the in-memory fake
//! node in unit tests as well as against a real sshd in the integration tests.

pub mod acra_master;
pub mod adopt;
pub mod artifact;
pub mod backup;
pub mod bitbox02_device;
pub mod check;
pub mod discover;
#[cfg(test)]
pub(crate) mod fake_node;
pub mod fleet;
pub mod hardware;
pub mod hardware_checks;
pub mod hooks;
pub mod keystore;
pub mod node_policy;
pub mod nodectl_names;
pub mod passphrase;
pub mod prune;
pub mod restore;
pub mod restore_acra;
pub mod restore_plan;
pub mod run;
pub mod run_state;
pub mod scheduler;
pub mod signatures;
#[cfg(test)]
mod tests;
pub mod verify;
pub mod vocab;

use crate::config::{Config, NodeConfig};
use crate::error::UsageError;
use crate::remote::Session;

/// Which nodes to act on: the one selection shape every command that takes nodes uses.
///
/// Commands fill it from their flags (`--node` repeatable, `--label`, `--shard`); the empty
/// selection means every configured node. Plain data, so this layer never sees clap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only these nodes (empty: no restriction).
    pub nodes: Vec<String>,
    /// Only nodes with any of these labels (empty: no restriction).
    pub labels: Vec<String>,
    /// Only shard `index` of `count`, by [`fleet::shard_of`].
    pub shard: Option<(u32, u32)>,
}

/// The nodes a selection picks, in config order. No selector means every node. Naming a node
/// that is not in the config is a usage error, so a typo never silently backs up nothing.
pub fn select_nodes<'c>(config: &'c Config, select: &Selection) -> Result<Vec<&'c NodeConfig>, UsageError> {
    if config.nodes.is_empty() {
        return Err(UsageError(format!(
            "{} lists no nodes: add them under `nodes:` (`coldkeep init` leaves commented examples there)",
            config.source.display()
        )));
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
                .is_none_or(|(index, count)| fleet::shard_of(&n.name, count) == index)
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
                .map(|(index, count)| format!("{index}/{count}"))
                .unwrap_or_else(|| "-".into())
        )));
    }
    Ok(picked)
}

/// The node names a selection restricts a store-wide command (list, verify, prune) to; `None`
/// for the empty selection, which means the whole store (also nodes no longer configured, and
/// hardware keys).
pub fn selected_names(config: &Config, select: &Selection) -> Result<Option<Vec<String>>, UsageError> {
    if *select == Selection::default() {
        return Ok(None);
    }
    Ok(Some(
        select_nodes(config, select)?
            .into_iter()
            .map(|n| n.name.clone())
            .collect(),
    ))
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

/// Connects to a node: the one connection path every command uses, with the retry policy.
///
/// Transient failures (refused, timed out) are retried `retries` times with doubling waits;
/// host-key, authentication and other errors are not retried.
pub fn connect_with_retries(config: &Config, node: &NodeConfig) -> anyhow::Result<Session> {
    connect_with_retries_for(config, node, crate::remote::Access::Read)
}

/// [`connect_with_retries`] for `access`: a restore starts the node helper (`become: sudo`)
/// under the restore rule.
pub fn connect_with_retries_for(
    config: &Config,
    node: &NodeConfig,
    access: crate::remote::Access,
) -> anyhow::Result<Session> {
    let mut wait = config.retry_wait;
    let mut attempt = 1;
    loop {
        match Session::connect_for(node, access) {
            Ok(s) => return Ok(s),
            Err(e) if e.is_transient() && attempt <= config.retries => {
                tracing::info!(
                    attempt,
                    wait_s = wait.as_secs_f64(),
                    "transient failure, retrying: {e}"
                );
                std::thread::sleep(wait);
                wait = wait.saturating_mul(2);
                attempt += 1;
            }
            Err(e) if attempt > 1 => {
                return Err(anyhow::Error::from(e).context(format!("gave up after {attempt} attempts")));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

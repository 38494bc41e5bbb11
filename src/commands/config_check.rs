//! `coldkeep config check`: validate the config and show what it covers.

use crate::config::{Config, HostKeyPolicy, NodeConfig};
use crate::error::Exit;
use crate::output::{Table, print_json};
use serde::Serialize;

#[derive(Debug, Serialize)]
struct Summary {
    config: String,
    store: String,
    replicas: Vec<String>,
    recipients: Vec<String>,
    /// The signing key, its fingerprint, and the allowed_signers file.
    signing: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    master_key_store: Option<String>,
    master_key_recipients: Vec<String>,
    jobs: usize,
    nodes: Vec<NodeSummary>,
    /// Secrets named in the config that cannot be read right now (env unset, file missing).
    unreadable_secrets: Vec<String>,
}

#[derive(Debug, Serialize)]
struct NodeSummary {
    name: String,
    address: String,
    user: String,
    host_key_check: String,
    /// `become: sudo`: the user sudo runs as.
    #[serde(skip_serializing_if = "Option::is_none")]
    become_user: Option<String>,
    labels: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule: Option<String>,
    keystores: Vec<String>,
}

/// How a node's host key is checked, in words.
fn host_key_check(node: &NodeConfig) -> String {
    match (&node.host_key, node.host_key_policy) {
        (Some(pin), _) => format!("pinned {pin}"),
        (None, HostKeyPolicy::Strict) => format!("known_hosts {}", node.known_hosts.display()),
        (None, HostKeyPolicy::AcceptNew) => {
            format!("known_hosts {} (accept-new)", node.known_hosts.display())
        }
    }
}

/// Runs `coldkeep config check` (the config was already loaded and validated by the caller).
pub fn run(config: &Config, json: bool) -> anyhow::Result<Exit> {
    let mut unreadable = Vec::new();
    for node in &config.nodes {
        let secrets = node
            .identity_passphrase
            .iter()
            .map(|s| (format!("{} identity_passphrase", node.name), s))
            .chain(node.keystores.iter().filter_map(|k| {
                k.password
                    .as_ref()
                    .map(|s| (format!("{}/{} password", node.name, k.name), s))
            }))
            .chain(node.keystores.iter().filter_map(|k| {
                k.master_key
                    .as_ref()
                    .map(|s| (format!("{}/{} master_key", node.name, k.name), s))
            }));
        for (what, secret) in secrets {
            if let Err(e) = secret.resolve() {
                unreadable.push(format!("{what}: {e}"));
            }
        }
    }
    let summary = Summary {
        config: config.source.display().to_string(),
        store: config.store.path.display().to_string(),
        replicas: config
            .store
            .replicas
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        recipients: config
            .encryption
            .recipients
            .iter()
            .map(|r| r.as_str().to_string())
            .collect(),
        signing: format!(
            "{} ({}), allowed_signers {}",
            config.signing.key.display(),
            config
                .store
                .keys
                .as_ref()
                .map_or_else(|| "not opened".into(), |k| k.signer.fingerprint()),
            config.signing.allowed_signers.display()
        ),
        master_key_store: config
            .store
            .master_key_store
            .as_ref()
            .map(|p| p.display().to_string()),
        master_key_recipients: config
            .encryption
            .master_key_recipients
            .iter()
            .map(|r| r.as_str().to_string())
            .collect(),
        jobs: config.jobs,
        nodes: config
            .nodes
            .iter()
            .map(|n| NodeSummary {
                name: n.name.clone(),
                address: format!("{}@{}:{}", n.user, n.host, n.port),
                user: n.user.clone(),
                host_key_check: host_key_check(n),
                become_user: match &n.become_ {
                    crate::config::Become::Sudo { user } => Some(user.clone()),
                    crate::config::Become::None => None,
                },
                labels: n.labels.clone(),
                schedule: n.schedule.as_ref().map(|s| s.as_str().to_string()),
                keystores: n
                    .keystores
                    .iter()
                    .map(|k| format!("{} ({}) {}", k.name, k.kind.as_str(), k.path))
                    .collect(),
            })
            .collect(),
        unreadable_secrets: unreadable,
    };
    if json {
        print_json(&summary)?;
    } else {
        println!("{}: valid", summary.config);
        println!("store:      {}", summary.store);
        for r in &summary.replicas {
            println!("replica:    {r}");
        }
        println!("signing:    {}", summary.signing);
        println!("recipients: {}", summary.recipients.len());
        for r in &summary.recipients {
            println!("  {r}");
        }
        if let Some(m) = &summary.master_key_store {
            println!(
                "master keys: {m} ({} recipients of their own)",
                summary.master_key_recipients.len()
            );
        }
        println!("jobs:       {}", summary.jobs);
        let keystores: usize = config.nodes.iter().map(|n| n.keystores.len()).sum();
        println!("nodes:      {} ({keystores} keystores)\n", summary.nodes.len());
        let mut table = Table::new(&["NODE", "ADDRESS", "HOST KEY", "LABELS", "SCHEDULE", "KEYSTORES"]);
        for n in &summary.nodes {
            table.row(vec![
                n.name.clone(),
                match &n.become_user {
                    Some(u) => format!("{} (sudo -u {u})", n.address),
                    None => n.address.clone(),
                },
                n.host_key_check.clone(),
                n.labels.join(","),
                n.schedule.clone().unwrap_or_else(|| "-".into()),
                n.keystores.join("; "),
            ]);
        }
        print!("{}", table.render());
        for u in &summary.unreadable_secrets {
            eprintln!("warning: secret not readable now: {u}");
        }
        if let Some(w) = memory_warning(config) {
            eprintln!("warning: {w}");
        }
    }
    Ok(Exit::Ok)
}

/// Warns when `jobs` keystores at their `max_size` could need more memory than the process may
/// use (its cgroup limit, e.g. the Kubernetes manifest's `resources.limits.memory`).
fn memory_warning(config: &Config) -> Option<String> {
    let limit = crate::memory::limit()?;
    let max_size = config
        .nodes
        .iter()
        .flat_map(|n| &n.keystores)
        .map(|k| k.max_size)
        .max()?;
    let jobs = config
        .jobs
        .min(config.nodes.iter().map(|n| n.keystores.len()).sum());
    let worst = crate::memory::worst_case(jobs, max_size);
    (worst > limit).then(|| {
        format!(
            "{jobs} jobs x {max_size}-byte max_size x {} (peak per byte) = {} MiB may be held at once, over \
             the {} MiB memory limit; backups will wait for each other past {} MiB in flight. Lower \
             `jobs` or `max_size`, or raise the limit",
            crate::memory::PEAK_FACTOR,
            worst >> 20,
            limit >> 20,
            limit >> 21
        )
    })
}

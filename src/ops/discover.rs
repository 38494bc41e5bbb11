//! What `coldkeep discover` finds on one node: the `keystores:` YAML to paste for it.
//!
//! It reads nodectl's cn-config.yaml (every distinct P12 location becomes a `p12` keystore with
//! `nodectl_config`, the file itself a `file` keystore, since a P12 without its passphrase is
//! not a usable backup) and looks for Acra keys directories at their usual places. What it
//! cannot read comes back as notes with the reason. It reads only, through [`Node`], so the
//! node's rights (`become` included) apply; it writes nothing.

use crate::config::{Config, NodeConfig};
use crate::error::UsageError;
use crate::material::nodectl;
use crate::remote::{Node, RemoteError};

/// nodectl's config, where nodectl puts it.
pub const NODECTL_CONFIG: &str = "/var/tessellation/nodectl/cn-config.yaml";
/// Where Acra keys directories usually are (Acra's default is `.acrakeys` in the service's
/// working directory; packaged and container setups use these).
pub const ACRA_DIRS: &[&str] = &[
    "/var/lib/acra/.acrakeys",
    "/opt/acra/.acrakeys",
    "/etc/acra/.acrakeys",
    "/keys",
];

/// What was found: YAML lines for the keystores, and comments for what could not be read.
#[derive(Debug, Default)]
pub struct Found {
    /// `keystores:` entries, already indented for a node entry.
    pub keystores: Vec<String>,
    /// What could not be read, and why.
    pub notes: Vec<String>,
}

/// Runs discovery on `node` (the session's rights, `become` included).
pub fn discover(session: &dyn Node, cn_config: &str, acra_dirs: &[String]) -> Found {
    let mut found = Found::default();
    match session.fetch(cn_config, nodectl::MAX_SIZE) {
        Ok(file) => {
            let text = nodectl::text_of(&file.bytes);
            match nodectl::p12_locations(&text) {
                Ok(locations) => {
                    let mut paths: Vec<String> = Vec::new();
                    for l in &locations {
                        match l.path() {
                            Some(p) if !paths.contains(&p) => paths.push(p),
                            Some(_) => {}
                            None => found.notes.push(format!(
                                "profile {}: no P12 location set in {cn_config}",
                                l.profile
                            )),
                        }
                    }
                    for (i, p) in paths.iter().enumerate() {
                        let name = if i == 0 {
                            "p12".to_string()
                        } else {
                            format!("p12-{}", i + 1)
                        };
                        match session.stat(p) {
                            Ok(Some(st)) if st.is_file => {}
                            Ok(_) => found
                                .notes
                                .push(format!("{p} (named in {cn_config}) does not exist")),
                            Err(e) => found.notes.push(format!("{p}: {e}")),
                        }
                        found.keystores.push(format!(
                            "      - name: {name}\n        kind: p12\n        path: {p}\n        nodectl_config: {cn_config}\n"
                        ));
                    }
                    found.keystores.push(format!(
                        "      - name: cn-config\n        kind: file\n        path: {cn_config}\n"
                    ));
                }
                Err(e) => found.notes.push(format!("{cn_config}: {e}")),
            }
        }
        Err(RemoteError::NotFound { .. }) => found.notes.push(format!("no nodectl config at {cn_config}")),
        Err(e) => found.notes.push(format!("{cn_config}: {e}")),
    }
    let mut acra = 0;
    for dir in acra_dirs {
        match session.stat(dir) {
            Ok(Some(st)) if st.is_dir => {
                acra += 1;
                let name = if acra == 1 {
                    "acra".to_string()
                } else {
                    format!("acra-{acra}")
                };
                found.keystores.push(format!(
                    "      - name: {name}\n        kind: acra\n        path: {dir}\n"
                ));
            }
            Ok(_) => {}
            Err(e) => found.notes.push(format!("{dir}: {e}")),
        }
    }
    found
}

/// Which node to look at (the command's flags, without clap).
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// A configured node.
    pub node: Option<String>,
    /// Or a node not in the config yet: its host, port and SSH user.
    pub host: Option<String>,
    /// SSH port with `host`.
    pub port: u16,
    /// SSH user with `host`.
    pub user: Option<String>,
}

/// The node to connect to: a configured one, or one given by host, port and user (with the
/// connection settings of the first configured node: identity, known_hosts, timeouts, become).
pub fn target(config: &Config, t: &Target) -> anyhow::Result<NodeConfig> {
    if let Some(name) = &t.node {
        super::check_node_names(config, std::slice::from_ref(name))?;
        return Ok(config.node(name).expect("checked above").clone());
    }
    let (Some(host), Some(user)) = (&t.host, &t.user) else {
        return Err(UsageError("give --node NAME, or --host HOST --user USER".into()).into());
    };
    let template = config.nodes.first().ok_or_else(|| {
        UsageError("the config lists no node to take connection settings (identity, known_hosts) from".into())
    })?;
    Ok(NodeConfig {
        name: host.clone(),
        host: host.clone(),
        port: t.port,
        user: user.clone(),
        host_key: None,
        keystores: Vec::new(),
        labels: Vec::new(),
        schedule: None,
        ..template.clone()
    })
}

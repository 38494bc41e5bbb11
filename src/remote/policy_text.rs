//! The node's policy file as `coldkeep config node-policy` prints it, from the agent's config.
//!
//! Why printed by the agent: the config already names every keystore's path and kind, so the
//! operator copies one file to the node instead of typing paths twice. The node still decides:
//! the file is root's on the node, and the helper reads nothing else.

use crate::config::{Become, KeystoreConfig, KeystoreKind, NodeConfig};
use crate::text::yaml_quote;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The loosest mode a restore may give files of a keystore of this kind: nodectl's 0400 for a
/// P12, 0600 for any other file, and for Acra 0644 (its `.pub` files and `version`; private keys
/// are written 0600 whatever this allows).
fn default_mode(kind: KeystoreKind) -> &'static str {
    match kind {
        KeystoreKind::P12 => "0400",
        KeystoreKind::File => "0600",
        KeystoreKind::Acra => "0644",
    }
}

fn header(out: &mut String, what: &str) {
    let _ = writeln!(
        out,
        "# coldkeep node policy ({what}): what the node helper may touch on this node, and nothing else.\n\
         # Install as root:root 0644 where the sudoers rule's --policy points (default /etc/coldkeep/node.yaml);\n\
         # it and every directory above it must be root's and not writable by group or others.\n\
         # Requests name these keystores; the paths come from here.\n\
         version: {}",
        crate::nodehelper::policy::POLICY_VERSION
    );
}

/// The policy for `node`. With `restore`, each keystore gets `restore: true` with its owner
/// (`owners`: the owner its latest backup recorded, by keystore name) and loosest mode.
pub fn node_policy_text(node: &NodeConfig, restore: bool, owners: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    header(&mut out, &format!("node {}", node.name));
    out.push_str("keystores:\n");
    for ks in &node.keystores {
        keystore(&mut out, node, ks, restore, owners.get(&ks.name));
    }
    out
}

fn keystore(out: &mut String, node: &NodeConfig, ks: &KeystoreConfig, restore: bool, owner: Option<&String>) {
    // Paths quoted: a `#` or `: ` in one must not change what the policy says.
    let _ = writeln!(
        out,
        "  - name: {}\n    kind: {}\n    path: {}",
        ks.name,
        ks.kind.as_str(),
        yaml_quote(&ks.path)
    );
    if let Some(p) = &ks.public_path {
        let _ = writeln!(out, "    public_path: {}", yaml_quote(p));
    }
    if let Some(c) = &ks.nodectl_config {
        let _ = writeln!(out, "    nodectl_config: {}   # read only", yaml_quote(c));
    }
    if !restore {
        out.push_str("    restore: false\n");
        return;
    }
    let (owner, why) = match (owner, &node.become_) {
        (Some(o), _) => (o.clone(), "recorded in its latest backup".to_string()),
        (None, Become::Sudo { user }) if user != "root" && ks.kind == KeystoreKind::Acra => (
            format!("{user}:{user}"),
            "the become_user; CHECK: the user Acra runs as".to_string(),
        ),
        (None, _) if ks.kind == KeystoreKind::Acra => (
            "root:root".to_string(),
            "no backup yet; CHECK: Acra's keys belong to the user it runs as".to_string(),
        ),
        (None, _) => (
            "root:root".to_string(),
            "no backup yet: nodectl's migrated P12s are root's; CHECK a generated one (the node admin's)"
                .to_string(),
        ),
    };
    let _ = writeln!(
        out,
        "    restore: true\n    owner: \"{owner}\"   # {why}\n    mode: \"{}\"   # the loosest a restored file gets",
        default_mode(ks.kind)
    );
}

/// A policy for `coldkeep discover` on a node not set up yet: nodectl's config readable (as a
/// `file` keystore), and the Acra directories given, read only.
pub fn bootstrap_policy_text(nodectl_config: &str, acra_dirs: &[String]) -> String {
    let mut out = String::new();
    header(&mut out, "bootstrap for `coldkeep discover`: read only");
    let _ = writeln!(
        out,
        "keystores:\n  - name: cn-config\n    kind: file\n    path: {}\n    restore: false",
        yaml_quote(nodectl_config)
    );
    for (i, dir) in acra_dirs.iter().enumerate() {
        let name = if i == 0 {
            "acra".to_string()
        } else {
            format!("acra-{}", i + 1)
        };
        let _ = writeln!(
            out,
            "  - name: {name}\n    kind: acra\n    path: {}\n    restore: false",
            yaml_quote(dir)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    const CONFIG: &str = "store:\n  path: /var/lib/coldkeep\nencryption:\n  recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]\n\
        signing:\n  key: /etc/coldkeep/signing_key\n  allowed_signers: /etc/coldkeep/allowed_signers\n\
        nodes:\n  - name: v1\n    host: 10.0.0.1\n    become: sudo\n    become_user: acra\n    keystores:\n\
        \x20     - name: p12\n        kind: p12\n        path: /home/nodeadmin/tessellation/v1.p12\n\
        \x20       nodectl_config: /var/tessellation/nodectl/cn-config.yaml\n\
        \x20     - name: acra\n        kind: acra\n        path: /var/lib/acra/.acrakeys\n        public_path: /var/lib/acra/public\n";

    #[test]
    fn the_printed_policy_is_one_the_helper_reads() {
        let c = Config::parse(CONFIG, Path::new("/etc/coldkeep/c.yaml")).unwrap();
        let node = &c.nodes[0];
        let read = node_policy_text(node, false, &BTreeMap::new());
        let p = crate::nodehelper::policy::parse(&read).unwrap();
        assert!(p.keystores.iter().all(|k| !k.restore));
        assert_eq!(
            p.keystore("p12").unwrap().nodectl_config.as_deref(),
            Some("/var/tessellation/nodectl/cn-config.yaml")
        );
        assert_eq!(
            p.keystore("acra").unwrap().public_path.as_deref(),
            Some("/var/lib/acra/public")
        );
        let owners = BTreeMap::from([("acra".to_string(), "root:root".to_string())]);
        let restore = node_policy_text(node, true, &owners);
        let p = crate::nodehelper::policy::parse(&restore).unwrap();
        assert_eq!(p.keystore("p12").unwrap().mode, 0o400);
        assert!(
            restore.contains("owner: \"root:root\"   # recorded in its latest backup"),
            "{restore}"
        );
        assert!(p.keystores.iter().all(|k| k.restore));
        let boot = bootstrap_policy_text(
            "/var/tessellation/nodectl/cn-config.yaml",
            &["/opt/acra/.acrakeys".into()],
        );
        let p = crate::nodehelper::policy::parse(&boot).unwrap();
        assert_eq!(p.keystores.len(), 2);
        assert!(p.keystores.iter().all(|k| !k.restore));
    }
}

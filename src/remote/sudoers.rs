//! Least-privilege sudoers lines for `become: sudo` (`coldkeep config sudoers`).
//!
//! Every line allows one exact command with every argument pinned, built from the same
//! [`Op`]s the session runs, so the rules and the code cannot drift apart. A rule with free
//! arguments (or `*`, which also matches spaces) would let the SSH user read or write anything.

use super::sudo::{self, Op};
use crate::config::{Become, KeystoreConfig, KeystoreKind, NodeConfig};

/// The mode a restore gives a P12 that did not exist (nodectl's own).
pub const NEW_FILE_MODE: u32 = 0o400;

/// The operations one keystore needs: reads for backup, `verify --live` and `check`, plus the
/// writes of a restore when `restore` is set. Returns notes for what cannot be pinned.
fn keystore_ops(ks: &KeystoreConfig, restore: bool, ops: &mut Vec<Op>, notes: &mut Vec<String>) {
    match ks.kind {
        KeystoreKind::Acra => {
            ops.push(sudo::stat_op(&ks.path));
            ops.push(sudo::tar_op(&ks.path));
            if restore {
                ops.push(sudo::beside_op(&ks.path, "coldkeep-old-"));
                notes.push(format!(
                    "restoring the Acra keystore {} writes under fresh temp names beside it, which no \
                     pinned rule can name: run that restore with broader sudo rights, or as the service user",
                    ks.path
                ));
            }
        }
        _ => {
            ops.push(sudo::stat_op(&ks.path));
            ops.push(sudo::read_op(&ks.path));
            if let Some(cn) = &ks.nodectl_config {
                ops.push(sudo::stat_op(cn));
                ops.push(sudo::read_op(cn));
            }
            if restore {
                let (dir, _) = super::split_remote(&ks.path);
                ops.push(sudo::stat_op(&dir));
                ops.push(sudo::stale_temps_op(&ks.path));
                ops.extend(sudo::write_ops(&ks.path, NEW_FILE_MODE));
            }
        }
    }
}

/// The sudoers text for `nodes`: a comment before every rule, rules deduplicated, valid for
/// `visudo -c`. Nodes without `become: sudo` get rules for `root`, the default `become_user`.
pub fn sudoers_text(nodes: &[&NodeConfig], restore: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# coldkeep: least-privilege sudo rules ({}).\n\
         # Every rule pins the exact command and path; install with `visudo -f /etc/sudoers.d/coldkeep`.\n",
        if restore {
            "reads for backup, verify --live and check, and the writes of restore"
        } else {
            "reads for backup, verify --live and check; add --restore for the writes of restore"
        }
    ));
    let mut seen = std::collections::HashSet::new();
    for node in nodes {
        let user = match &node.become_ {
            Become::Sudo { user } => user.clone(),
            Become::None => "root".to_string(),
        };
        out.push_str(&format!(
            "\n# node {} (SSH user {}, become_user {user}){}\n",
            node.name,
            node.user,
            if node.become_ == Become::None {
                "; set `become: sudo` for this node to use these rules"
            } else {
                ""
            }
        ));
        let mut ops = Vec::new();
        let mut notes = Vec::new();
        for ks in &node.keystores {
            keystore_ops(ks, restore, &mut ops, &mut notes);
        }
        for op in ops {
            let rule = sudo::sudoers_rule(&node.user, &user, &op);
            if seen.insert(rule.clone()) {
                out.push_str(&format!("# {}\n{rule}\n", op.purpose.replace('\n', " ")));
            }
        }
        for note in notes {
            out.push_str(&format!("# NOTE: {note}\n"));
        }
    }
    out
}

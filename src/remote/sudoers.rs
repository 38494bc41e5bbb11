//! The sudoers drop-in for `become: sudo` (`coldkeep config sudoers`).
//!
//! One rule per SSH user, target user (`become_user`), helper and policy: the node helper with
//! fixed single-word arguments and nothing else. Why no other commands: sudo matches a rule's
//! arguments as one string joined by spaces, so any rule for a program taking an option with a
//! separate value (`tar -C DIR`, `dd if=...`) or a path in a directory someone else can write is
//! a way to root. The helper's words contain no space, so they cannot be regrouped; the helper
//! also refuses any other argv itself, and takes its authority from the node's policy.
//!
//! Tags: `NOPASSWD` (coldkeep never types a password; `sudo -n` fails at once without it),
//! `NOSETENV` (the caller cannot pass environment variables), `NOEXEC` (the helper executes
//! nothing, and sudo's seccomp filter makes sure), `NOLOG_INPUT`/`NOLOG_OUTPUT` (an I/O log
//! would copy key bytes to disk). The runas list is the one target user, never `ALL`.

use crate::config::{Become, HelperConfig, NodeConfig};

/// The tags of every rule.
pub const TAGS: &str = "NOPASSWD:NOSETENV:NOEXEC:NOLOG_INPUT:NOLOG_OUTPUT:";

/// Escapes one word for a sudoers command specification (`\`, `,`, `:`, `=`, space and sudoers
/// or glob syntax; the helper's words are already restricted to `[A-Za-z0-9._/=-]`).
fn word(w: &str) -> String {
    let mut out = String::with_capacity(w.len());
    for c in w.chars() {
        if matches!(
            c,
            '\\' | ',' | ':' | '=' | ' ' | '"' | '#' | '(' | ')' | '!' | '*' | '?' | '[' | ']'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The rule that lets `ssh_user` run the helper as `runas`, reads only or (`restore`) with the
/// writes of a restore.
pub fn rule(ssh_user: &str, runas: &str, helper: &HelperConfig, restore: bool) -> String {
    let mut words = vec![word(&helper.program)];
    words.extend(
        crate::nodehelper::argv(&helper.policy, restore)
            .iter()
            .map(|w| word(w)),
    );
    format!(
        "{} ALL=({}) {TAGS} {}",
        word(ssh_user),
        word(runas),
        words.join(" ")
    )
}

/// The drop-in for `nodes`: a comment before every rule, rules deduplicated, valid for
/// `visudo -cf`. Nodes without `become: sudo` get rules for `root`, the default `become_user`.
pub fn sudoers_text(nodes: &[&NodeConfig], restore: bool) -> String {
    let mut out = format!(
        "# coldkeep: sudo rules for the node helper (`become: sudo`), {}.\n\
         # Each rule allows one program with fixed words, nothing else: sudo matches them exactly and\n\
         # the helper refuses any other argument; what it may touch is in the node's policy file\n\
         # (`coldkeep config node-policy`). Install (the name must not contain a dot):\n\
         #   visudo -cf coldkeep.sudoers && install -m 0440 -o root -g root coldkeep.sudoers /etc/sudoers.d/coldkeep\n",
        if restore {
            "reads (backup, verify --live, check, discover) and restores"
        } else {
            "reads only (backup, verify --live, check, discover); add --restore for restores"
        }
    );
    let mut seen = std::collections::HashSet::new();
    for node in nodes {
        let runas = match &node.become_ {
            Become::Sudo { user } => user.clone(),
            Become::None => "root".to_string(),
        };
        out.push_str(&format!(
            "\n# node {} (SSH user {}, runs as {runas}, policy {}){}\n",
            node.name,
            node.user,
            node.helper.policy,
            if node.become_ == Become::None {
                "; set `become: sudo` for this node to use these rules"
            } else {
                ""
            }
        ));
        let mut kinds = vec![(false, "reads")];
        if restore {
            kinds.push((
                true,
                "restores (writes only what the policy marks `restore: true`)",
            ));
        }
        for (restore, what) in kinds {
            let line = rule(&node.user, &runas, &node.helper, restore);
            if seen.insert(line.clone()) {
                out.push_str(&format!("# {what}\n{line}\n"));
            } else {
                out.push_str(&format!(
                    "# {what}: the rule above (another node's) already allows it\n"
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_is_the_helper_with_fixed_words_and_every_tag() {
        let h = HelperConfig::default();
        assert_eq!(
            rule("nodeadmin", "root", &h, false),
            "nodeadmin ALL=(root) NOPASSWD:NOSETENV:NOEXEC:NOLOG_INPUT:NOLOG_OUTPUT: /usr/bin/coldkeep node-helper"
        );
        let t = HelperConfig {
            program: "/usr/local/lib/ck/coldkeep".into(),
            policy: "/etc/coldkeep/t-1/node.yaml".into(),
        };
        assert_eq!(
            rule("n", "acra", &t, true),
            r"n ALL=(acra) NOPASSWD:NOSETENV:NOEXEC:NOLOG_INPUT:NOLOG_OUTPUT: /usr/local/lib/ck/coldkeep node-helper --policy\=/etc/coldkeep/t-1/node.yaml --restore"
        );
    }
}

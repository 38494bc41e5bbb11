//! What `coldkeep discover` finds on one node: a complete node entry to paste under `nodes:`.
//!
//! It reads nodectl's cn-config.yaml as nodectl does ([`crate::material::nodectl`]): every
//! distinct P12 the enabled profiles use becomes a `p12` keystore with `nodectl_config`; the file
//! itself a `file` keystore (a P12 without its passphrase is not a usable backup), and with
//! `encryption: True` nodectl's passphrase key `/etc/security/cnngsenc.conf` too (without it the
//! tokens in cn-config.yaml give nothing back). It looks for Acra keys directories at their
//! usual places. Files only root can read (nodectl's migrated P12 is root:root 0400, its
//! cn-config.yaml root 0600) make the entry say `become: sudo`, with the reason.
//!
//! Every path from the node is written as a double-quoted YAML string with escapes, so a `#`,
//! a `: `, a quote or a control character in it cannot change what the pasted YAML means: the
//! config reads back exactly the path the node has. It reads only, through [`Node`], so the
//! node's rights (`become` included) apply; it writes nothing.

use crate::config::{Become, Config, NodeConfig};
use crate::error::UsageError;
use crate::material::nodectl;
use crate::remote::{Node, RemoteError, RemoteStat};
use crate::text::yaml_quote;
use std::fmt::Write as _;

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

/// Where to look on the node.
#[derive(Debug, Clone)]
pub struct Places {
    /// nodectl's cn-config.yaml.
    pub cn_config: String,
    /// nodectl's passphrase key, proposed when cn-config.yaml says `encryption: True`.
    pub cnngsenc: String,
    /// Acra keys directories to look for.
    pub acra_dirs: Vec<String>,
    /// The SSH login user (what it cannot read without sudo is what only others can read).
    pub login_user: String,
}

/// One keystore to propose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposed {
    /// Its name in the entry.
    pub name: String,
    /// `p12`, `file` or `acra`.
    pub kind: &'static str,
    /// The path on the node, as the node has it.
    pub path: String,
    /// nodectl's config, for a P12.
    pub nodectl_config: Option<String>,
    /// A comment line for the entry (what it is, who uses it).
    pub comment: Option<String>,
}

/// What was found.
#[derive(Debug, Default)]
pub struct Found {
    /// The keystores to propose, in order.
    pub keystores: Vec<Proposed>,
    /// What could not be read or used, and why.
    pub notes: Vec<String>,
    /// What was read but deserves a look (a duplicated key in cn-config.yaml).
    pub warnings: Vec<String>,
    /// Why the node needs `become: sudo` (files only root can read), one reason each.
    pub needs_become: Vec<String>,
    /// Something that decides the entry could not be read (cn-config.yaml): it is incomplete.
    pub incomplete: bool,
    /// P12 paths cn-config.yaml names that are not proposed (not a file nodectl gives a P12),
    /// with who names them: the entry shows each commented out, for a second look.
    pub not_proposed: Vec<(String, String)>,
}

/// Whether the login user cannot read a file or enter a directory without sudo, as `stat`
/// reports it: it belongs to someone else and its group and others have no read bit (a group
/// the login user is in is not known here; the owner's name decides, else uid 0).
fn needs_sudo(st: &RemoteStat, login_user: &str) -> bool {
    let others_read = if st.is_dir { 0o055 } else { 0o044 };
    let someone_else = st.owner.as_ref().is_some_and(|o| match &o.user {
        Some(name) => name != login_user,
        None => o.uid == 0,
    });
    someone_else && st.mode & others_read == 0 && login_user != "root"
}

/// `owner mode` as `ls -l` people read it (`root:root 0400`).
fn ownership(st: &RemoteStat) -> String {
    let who = st
        .owner
        .as_ref()
        .map(|o| {
            format!(
                "{}:{}",
                o.user.clone().unwrap_or_else(|| o.uid.to_string()),
                o.group.clone().unwrap_or_else(|| o.gid.to_string())
            )
        })
        .unwrap_or_else(|| "?".into());
    format!("{} {:04o}", crate::text::escape_control(&who), st.mode & 0o7777)
}

/// Stats a proposed file: a note when it is missing, a `become` reason when the login user
/// cannot read it; whether it is missing.
fn look_at(session: &dyn Node, places: &Places, path: &str, what: &str, found: &mut Found) -> bool {
    let shown = crate::text::escape_control(path);
    match session.stat(path) {
        Ok(Some(st)) if st.is_file => {
            if needs_sudo(&st, &places.login_user) {
                found
                    .needs_become
                    .push(format!("{what} {shown} is {}", ownership(&st)));
            }
        }
        Ok(Some(_)) => found.notes.push(format!("{what} {shown} is not a regular file")),
        Ok(None) => {
            found.notes.push(format!("{what} {shown} does not exist"));
            return true;
        }
        Err(e) => found.notes.push(format!("{what} {shown}: {e}")),
    }
    false
}

/// Runs discovery on a node (the session's rights, `become` included).
pub fn discover(session: &dyn Node, places: &Places) -> Found {
    let mut found = Found::default();
    let cn = &places.cn_config;
    let cn_shown = crate::text::escape_control(cn);
    match session.fetch(cn, nodectl::MAX_SIZE) {
        Ok(file) => match nodectl::parse(&nodectl::text_of(&file.bytes)) {
            Ok(config) => nodectl_keystores(session, places, &config, &mut found),
            Err(e) => {
                found.notes.push(format!("{cn_shown}: {e}"));
                found.incomplete = true;
            }
        },
        Err(RemoteError::NotFound { .. }) => found.notes.push(format!("no nodectl config at {cn_shown}")),
        Err(e @ RemoteError::PermissionDenied { .. }) => {
            found.notes.push(format!("{cn_shown}: {e}"));
            found.needs_become.push(format!(
                "{cn_shown} cannot be read as this user (nodectl makes it root 0600): run discover again \
                 with --become sudo to see the P12s it names"
            ));
            found.incomplete = true;
        }
        Err(e) => {
            found.notes.push(format!("{cn_shown}: {e}"));
            found.incomplete = true;
        }
    }
    let mut acra = 0;
    for dir in &places.acra_dirs {
        match session.stat(dir) {
            Ok(Some(st)) if st.is_dir => {
                acra += 1;
                let name = if acra == 1 {
                    "acra".to_string()
                } else {
                    format!("acra-{acra}")
                };
                if needs_sudo(&st, &places.login_user) {
                    // Acra's service user owns its keys (0700): another login user needs sudo.
                    found.needs_become.push(format!(
                        "the Acra keys directory {} is {} (read as the service user or root)",
                        crate::text::escape_control(dir),
                        ownership(&st)
                    ));
                }
                found.keystores.push(Proposed {
                    name,
                    kind: "acra",
                    path: dir.clone(),
                    nodectl_config: None,
                    comment: None,
                });
            }
            Ok(_) => {}
            Err(e) => found
                .notes
                .push(format!("{}: {e}", crate::text::escape_control(dir))),
        }
    }
    found
}

/// The keystores cn-config.yaml implies: one per distinct P12 of the enabled profiles, the file
/// itself, and cnngsenc.conf when its passphrases are encrypted.
fn nodectl_keystores(
    session: &dyn Node,
    places: &Places,
    config: &nodectl::NodectlConfig,
    found: &mut Found,
) {
    let cn = &places.cn_config;
    let cn_shown = crate::text::escape_control(cn);
    found
        .warnings
        .extend(config.warnings.iter().map(|w| format!("{cn_shown}: {w}")));
    if config.nested {
        found.notes.push(format!(
            "{cn_shown} is in the pre-2.0 nested format: read as nodectl 2.0 did; nodectl migrates it on its \
             next upgrade (run discover again then)"
        ));
    }
    // Distinct P12s in order of first use, with the profiles that use each.
    let mut p12s: Vec<(String, Vec<String>)> = Vec::new();
    for p in &config.profiles {
        let name = crate::text::escape_control(&p.name);
        // nodectl refuses the whole file for a disabled profile's bad settings too.
        if let (false, Some(problem)) = (p.enabled, &p.problem) {
            found.notes.push(format!(
                "profile {name} (disabled): {problem} (disabled profiles included)"
            ));
        }
        if !p.enabled {
            found.notes.push(format!(
                "profile {name} is disabled: its P12 ({}) is not proposed",
                p.path()
                    .map(|x| crate::text::escape_control(&x))
                    .unwrap_or_else(|| "not set".into())
            ));
            continue;
        }
        if let Some(problem) = &p.problem {
            found.notes.push(format!("profile {name}: {problem}"));
        }
        match p.path() {
            None => found
                .notes
                .push(format!("profile {name}: no P12 location set in {cn_shown}")),
            // The node's file names what a backup with sudo will read: only what can be a P12
            // nodectl made is proposed (whoever controls a node must not get /etc/shadow into
            // an entry an operator pastes without a second look).
            Some(path) if !plausible_p12(&path) => {
                match found.not_proposed.iter_mut().find(|(x, _)| *x == path) {
                    Some((_, users)) => users.push_str(&format!(", {name}")),
                    None => found.not_proposed.push((path, name)),
                }
            }
            Some(path) => match p12s.iter_mut().find(|(x, _)| *x == path) {
                Some((_, users)) => users.push(name),
                None => p12s.push((path, vec![name])),
            },
        }
    }
    for (i, (path, users)) in p12s.into_iter().enumerate() {
        let _ = look_at(session, places, &path, "the P12", found);
        found.keystores.push(Proposed {
            name: if i == 0 {
                "p12".to_string()
            } else {
                format!("p12-{}", i + 1)
            },
            kind: "p12",
            path,
            nodectl_config: Some(cn.clone()),
            comment: Some(format!("used by nodectl profile(s) {}", users.join(", "))),
        });
    }
    let _ = look_at(session, places, cn, "nodectl's config", found);
    found.keystores.push(Proposed {
        name: "cn-config".into(),
        kind: "file",
        path: cn.clone(),
        nodectl_config: None,
        comment: Some(
            "nodectl's config: the P12 locations and passphrase (a P12 without it is no usable backup)"
                .into(),
        ),
    });
    if config.encryption {
        // Missing (not merely unreadable here): the tokens give nothing back without it.
        if look_at(
            session,
            places,
            &places.cnngsenc,
            "nodectl's passphrase key",
            found,
        ) {
            found.notes.push(format!(
                "{cn_shown} says `encryption: True`: without nodectl's passphrase key the passphrase cannot be \
                 recovered from a backup of it; keep the passphrase elsewhere too"
            ));
        }
        found.keystores.push(Proposed {
            name: "cnngsenc".into(),
            kind: "file",
            path: places.cnngsenc.clone(),
            nodectl_config: None,
            comment: Some(
                "encryption: True: the key of the passphrase tokens in cn-config.yaml; with it, the two give the \
                 passphrase back"
                    .into(),
            ),
        });
    }
}

/// Whether `path` can be a P12 nodectl set up: absolute, no `.` or `..` component, and a file
/// name nodectl accepts for a P12: its pattern (`modules/p12.py`:
/// `^[a-zA-Z0-9](?:[a-zA-Z0-9 ._-]*[a-zA-Z0-9])?\.[a-zA-Z0-9_-]+$`) with the `.p12` extension
/// its config validation and installer require (`modules/config/config.py`: "missing .p12
/// extension"; `modules/install.py`: "p12 file must end with the '.p12' extension"), in any
/// case, or `.pfx`, the other name of the format. The pattern alone let a node's cn-config.yaml
/// propose `/etc/krb5.keytab` or a TLS `privkey.pem` for an operator to paste.
fn plausible_p12(path: &str) -> bool {
    let Some((dir, name)) = path.rsplit_once('/') else {
        return false;
    };
    let dir_ok = path.starts_with('/') && dir.split('/').all(|c| c != "." && c != "..");
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let stem_ok = edge(stem.chars().next())
        && edge(stem.chars().last())
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-'));
    let ext_ok = ext.eq_ignore_ascii_case("p12") || ext.eq_ignore_ascii_case("pfx");
    dir_ok && stem_ok && ext_ok
}

/// The node entry to paste under `nodes:`, as YAML text (two-space list indent).
pub fn entry_yaml(node: &NodeConfig, found: &Found) -> String {
    let mut y = String::new();
    let _ = writeln!(y, "  - name: {}", yaml_quote(&node.name));
    let _ = writeln!(y, "    host: {}", yaml_quote(&node.host));
    let _ = writeln!(y, "    port: {}", node.port);
    let _ = writeln!(y, "    user: {}", yaml_quote(&node.user));
    let become_user = match &node.become_ {
        Become::Sudo { user } if user != "root" => Some(user.as_str()),
        _ => None,
    };
    if !found.needs_become.is_empty() {
        let _ = writeln!(
            y,
            "    # The SSH user cannot read what this node keeps (nodectl's layout), so reads go through sudo:"
        );
        for reason in &found.needs_become {
            let _ = writeln!(y, "    #   {}", crate::text::escape_control(reason));
        }
        let _ = writeln!(y, "    become: sudo");
    } else if matches!(node.become_, Become::Sudo { .. }) {
        let _ = writeln!(y, "    become: sudo");
    }
    if let Some(user) = become_user {
        let _ = writeln!(y, "    become_user: {}", yaml_quote(user));
    }
    // The helper and policy this session used, when not the defaults (pinned in the node's
    // sudoers rule).
    if matches!(node.become_, Become::Sudo { .. }) && node.helper != crate::config::HelperConfig::default() {
        let _ = writeln!(y, "    node_helper: {}", yaml_quote(&node.helper.program));
        let _ = writeln!(y, "    node_policy: {}", yaml_quote(&node.helper.policy));
    }
    let _ = writeln!(y, "    keystores:");
    let env = node
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect::<String>();
    // Commented out: a node's file named them, but they are no file nodectl gives a P12.
    for (path, users) in &found.not_proposed {
        let _ = writeln!(
            y,
            "      # NOT proposed: path: {} (nodectl profile {}): not a .p12/.pfx file nodectl gives a P12; \
             add it by hand only if it really is the key",
            yaml_quote(path),
            crate::text::escape_control(users)
        );
    }
    for k in &found.keystores {
        let _ = writeln!(y, "      - name: {}", yaml_quote(&k.name));
        let _ = writeln!(y, "        kind: {}", k.kind);
        if let Some(c) = &k.comment {
            let _ = writeln!(y, "        # {}", crate::text::escape_control(c));
        }
        let _ = writeln!(y, "        path: {}", yaml_quote(&k.path));
        if let Some(cn) = &k.nodectl_config {
            let _ = writeln!(y, "        nodectl_config: {}", yaml_quote(cn));
            let _ = writeln!(
                y,
                "        # password: {{env: {env}_{}_PASSPHRASE}}   # optional: opens the P12 to record its alias and node id",
                k.name.to_ascii_uppercase().replace('-', "_")
            );
        }
    }
    y
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
    /// `--become sudo` / `--become none`: overrides the node's or the defaults' setting.
    pub become_: Option<Become>,
    /// The name the entry gets (default: the configured name, or one made from the host).
    pub name: Option<String>,
}

/// A node name from a host (`203.0.113.7`, `node-1.example.net`): letters, digits, `.`, `_`, `-`.
fn name_from_host(host: &str) -> String {
    let name: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name
    } else {
        format!("node{}", &name[..name.len().min(60)])
    }
}

/// The node to connect to: a configured one, or one given by host, port and user with the
/// config's `ssh:` defaults (identity, known_hosts, timeouts, become): no node needs to be in the
/// config yet.
pub fn target(config: &Config, t: &Target) -> anyhow::Result<NodeConfig> {
    let mut node = if let Some(name) = &t.node {
        super::check_node_names(config, std::slice::from_ref(name))?;
        config.node(name).expect("checked above").clone()
    } else {
        let (Some(host), Some(user)) = (&t.host, &t.user) else {
            return Err(UsageError("give --node NAME, or --host HOST --user USER".into()).into());
        };
        let defaults = config.node_defaults.clone().map_err(|e| {
            UsageError(format!(
                "the config's `ssh:` settings do not resolve on their own: {e}"
            ))
        })?;
        NodeConfig {
            name: name_from_host(host),
            host: host.clone(),
            port: t.port,
            user: user.clone(),
            ..defaults
        }
    };
    if let Some(b) = &t.become_ {
        node.become_ = b.clone();
    }
    if let Some(name) = &t.name {
        node.name = name.clone();
    }
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_quote_round_trips_any_path_through_the_config_reader() {
        let nasty = [
            "/home/nodeadmin/tessellation/plain.p12",
            "/a #b/c.p12",
            "/a: b/c.p12",
            "/'single'/\"double\"/c.p12",
            "/back\\slash/c.p12",
            "/- dash/&anchor/*alias/!tag/%pct/@at/`tick`/{x}/[y]/c.p12",
            "/tab\there/new\nline/c.p12",
            "/bidi\u{202e}gnp/c.p12",
            "/zürich/ключ/c.p12",
            "/trailing space /c.p12 ",
            "/${NOT_EXPANDED}/~/c.p12",
            "/true/null/~/0777/c.p12",
        ];
        for path in nasty {
            let text = format!(
                "store:\n  path: /tmp/coldkeep-quote-test\nencryption:\n  recipients: \
                 [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]\n\
                 signing:\n  key: /tmp/k\n  allowed_signers: /tmp/a\nssh:\n  known_hosts: /tmp/kh\n\
                 nodes:\n  - name: n\n    host: h\n    keystores:\n      - name: p12\n        kind: p12\n        path: {}\n        nodectl_config: {}\n",
                yaml_quote(path),
                yaml_quote(&format!("{path}.yaml")),
            );
            let config = Config::parse(&text, std::path::Path::new("/tmp/c.yaml"))
                .unwrap_or_else(|e| panic!("{path:?}: {e}\n{text}"));
            let ks = &config.nodes[0].keystores[0];
            assert_eq!(ks.path, path, "{text}");
            assert_eq!(
                ks.nodectl_config.as_deref(),
                Some(format!("{path}.yaml").as_str())
            );
            assert!(!yaml_quote(path).contains('\n'), "one line: {}", yaml_quote(path));
        }
    }

    #[test]
    fn only_what_can_be_a_nodectl_p12_is_proposed() {
        for good in [
            "/home/nodeadmin/tessellation/nodeadmin-node.p12",
            "/root/my key.p12",
            "/a/b.c.p12",
            "/x.p12",
            "/home/tess #1: keys/n.p12",
        ] {
            assert!(plausible_p12(good), "{good}");
        }
        for bad in [
            "/etc/shadow",
            "relative/n.p12",
            "/home/nodeadmin/../../etc/x.p12",
            "/home/./x.p12",
            "/home/-x.p12",
            "/home/x.",
            "/home/.hidden.p12",
            "/home/x.p12\n",
            // What a node's cn-config.yaml could name to get a pasted entry to read it.
            "/etc/ssl/private/server.key",
            "/etc/krb5.keytab",
            "/etc/letsencrypt/live/node.example/privkey.pem",
            "/home/x.p12.bak",
        ] {
            assert!(!plausible_p12(bad), "{bad:?}");
        }
        for good in ["/home/a/KEY.P12", "/home/a/key.pfx", "/home/a/key.Pfx"] {
            assert!(plausible_p12(good), "{good}");
        }
    }

    #[test]
    fn what_is_not_proposed_is_printed_commented_out() {
        let head = "store:\n  path: /tmp/coldkeep-quote-test\nencryption:\n  recipients: \
                    [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]\n\
                    signing:\n  key: /tmp/k\n  allowed_signers: /tmp/a\nssh:\n  known_hosts: /tmp/kh\n\
                    nodes:\n";
        let config = Config::parse(
            &format!(
                "{head}  - name: n1\n    host: h\n    keystores:\n      - name: x\n        kind: file\n        path: /x\n"
            ),
            std::path::Path::new("/tmp/c.yaml"),
        )
        .unwrap();
        let node = config.node("n1").unwrap().clone();
        let found = Found {
            keystores: vec![Proposed {
                name: "p12".into(),
                kind: "p12",
                path: "/home/nodeadmin/tessellation/n.p12".into(),
                nodectl_config: None,
                comment: None,
            }],
            not_proposed: vec![("/etc/krb5.keytab".into(), "dag-l1\n- name: x".into())],
            ..Found::default()
        };
        let yaml = entry_yaml(&node, &found);
        let line = yaml
            .lines()
            .find(|l| l.contains("NOT proposed"))
            .unwrap_or_else(|| panic!("{yaml}"));
        assert!(
            line.trim_start().starts_with(
                "# NOT proposed: path: \"/etc/krb5.keytab\" (nodectl profile dag-l1\\n- name: x)"
            ),
            "{line}"
        );
        // Read back, only the proposed keystore is there.
        let config = Config::parse(&format!("{head}{yaml}"), std::path::Path::new("/tmp/c.yaml")).unwrap();
        let keystores = &config.node("n1").unwrap().keystores;
        assert_eq!(keystores.len(), 1, "{yaml}");
        assert_eq!(keystores[0].path, "/home/nodeadmin/tessellation/n.p12");
    }

    #[test]
    fn what_needs_sudo_is_judged_against_the_login_user() {
        let st = |uid: u32, user: &str, mode: u32, is_dir: bool| RemoteStat {
            is_dir,
            is_file: !is_dir,
            size: 1,
            mode,
            owner: Some(crate::remote::Owner {
                uid,
                gid: uid,
                user: Some(user.into()),
                group: Some(user.into()),
            }),
        };
        // nodectl's migrated P12 and cn-config.yaml.
        assert!(needs_sudo(&st(0, "root", 0o400, false), "nodeadmin"));
        assert!(needs_sudo(&st(0, "root", 0o600, false), "nodeadmin"));
        // A P12 nodectl generated belongs to the node admin.
        assert!(!needs_sudo(&st(1000, "nodeadmin", 0o400, false), "nodeadmin"));
        // Readable by others; or the login user is root.
        assert!(!needs_sudo(&st(0, "root", 0o644, false), "nodeadmin"));
        assert!(!needs_sudo(&st(0, "root", 0o400, false), "root"));
        // Acra's service user's keys directory.
        assert!(needs_sudo(&st(999, "acra", 0o700, true), "nodeadmin"));
        assert!(!needs_sudo(&st(999, "acra", 0o755, true), "nodeadmin"));
    }

    #[test]
    fn names_made_from_hosts_are_valid_node_names() {
        assert_eq!(name_from_host("203.0.113.7"), "203.0.113.7");
        assert_eq!(name_from_host("node-1.example.net"), "node-1.example.net");
        assert_eq!(name_from_host("::1"), "node--1");
    }
}

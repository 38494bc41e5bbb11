//! The node's policy file (`/etc/coldkeep/node.yaml`): what the helper may touch.
//!
//! Why a file on the node: the helper's authority must come from the node, not from whoever
//! holds the backup user's SSH key. The file lists each keystore by name with its path(s), kind,
//! whether it may be restored, and the owner and loosest mode of what a restore writes. Requests
//! name keystores; every path the helper touches comes from here. `coldkeep config node-policy`
//! prints it from the agent's config. The file is only trusted after [`super::trust`] checked it
//! and every directory above it (root-owned, not group- or world-writable).

use super::proto::{Listed, valid_name};
use serde::Deserialize;

/// The policy format this helper reads.
pub const POLICY_VERSION: u32 = 1;
/// Default location (the sudoers rule pins the one it uses).
pub use super::proto::DEFAULT_NODE_POLICY as DEFAULT_POLICY;
/// Largest policy file read.
pub const MAX_POLICY_SIZE: u64 = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: u32,
    #[serde(default)]
    keystores: Vec<RawKeystore>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeystore {
    name: String,
    kind: String,
    path: String,
    #[serde(default)]
    public_path: Option<String>,
    #[serde(default)]
    nodectl_config: Option<String>,
    #[serde(default)]
    restore: bool,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    mode: Option<String>,
}

/// What a keystore is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A PKCS#12 file.
    P12,
    /// An Acra keys directory (and maybe a public one).
    Acra,
    /// Any single file.
    File,
}

impl Kind {
    /// The name used in the policy and the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::P12 => "p12",
            Kind::Acra => "acra",
            Kind::File => "file",
        }
    }
}

/// An owner from the policy, resolved on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// As written: `user:group`.
    pub text: String,
    /// The user's uid here.
    pub uid: u32,
    /// The group's gid here.
    pub gid: u32,
}

/// One keystore the policy allows.
#[derive(Debug, Clone)]
pub struct KeystorePolicy {
    /// Its name.
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// The file, or the keys directory.
    pub path: String,
    /// Acra: the public keys directory, when apart.
    pub public_path: Option<String>,
    /// nodectl's config, readable through this keystore.
    pub nodectl_config: Option<String>,
    /// Whether a restore may write it.
    pub restore: bool,
    /// Owner of everything a restore writes (required with `restore`).
    pub owner: Option<Owner>,
    /// Loosest mode of the files a restore writes (directories are always 0700).
    pub mode: u32,
}

/// The parsed, checked policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The keystores, in file order.
    pub keystores: Vec<KeystorePolicy>,
}

impl Policy {
    /// The keystore named `name`.
    pub fn keystore(&self, name: &str) -> Option<&KeystorePolicy> {
        self.keystores.iter().find(|k| k.name == name)
    }

    /// What the hello tells the agent.
    pub fn listing(&self) -> Vec<Listed> {
        self.keystores
            .iter()
            .map(|k| Listed {
                name: k.name.clone(),
                kind: k.kind.as_str().to_string(),
                path: k.path.clone(),
                public_path: k.public_path.clone(),
                nodectl_config: k.nodectl_config.clone(),
                restore: k.restore,
                owner: k.owner.as_ref().map(|o| o.text.clone()),
                mode: k.restore.then_some(k.mode),
            })
            .collect()
    }
}

/// An absolute node path the helper may resolve: no empty, `.` or `..` component, no control
/// character, at most 4096 bytes.
pub fn valid_node_path(path: &str) -> bool {
    path.len() <= 4096
        && path.starts_with('/')
        && path.len() > 1
        && path[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.chars().any(char::is_control))
}

/// Parses `user:group` and resolves both on this node.
pub fn resolve_owner(text: &str) -> Result<Owner, String> {
    let Some((user, group)) = text.split_once(':') else {
        return Err(format!("owner `{text}` must be `user:group`"));
    };
    let uid = super::users::uid_of(user)
        .ok_or_else(|| format!("user `{user}` (owner `{text}`) does not exist on this node"))?;
    let gid = super::users::gid_of(group)
        .ok_or_else(|| format!("group `{group}` (owner `{text}`) does not exist on this node"))?;
    Ok(Owner {
        text: text.to_string(),
        uid,
        gid,
    })
}

/// Parses and checks policy text; errors say where (line and column) and what to change.
pub fn parse(text: &str) -> Result<Policy, String> {
    let raw: RawPolicy = serde_saphyr::from_str(text).map_err(|e| {
        let bare = e.without_snippet().to_string();
        match e.location() {
            Some(l) if !bare.contains(" at line ") => {
                format!("{bare} at line {}, column {}", l.line(), l.column())
            }
            _ => bare,
        }
    })?;
    if raw.version != POLICY_VERSION {
        return Err(format!(
            "policy version {} is not one this helper reads (version {POLICY_VERSION}): upgrade coldkeep on \
             the node, or print the policy again with this agent's `coldkeep config node-policy`",
            raw.version
        ));
    }
    if raw.keystores.len() > 256 {
        return Err("more than 256 keystores".into());
    }
    let mut keystores: Vec<KeystorePolicy> = Vec::new();
    for k in raw.keystores {
        let at = format!("keystore `{}`", k.name);
        if !valid_name(&k.name) || k.name.contains(['@', ':', '+', '=']) {
            return Err(format!("{at}: a name is [A-Za-z0-9._-], not `.` or `..`"));
        }
        if keystores.iter().any(|o| o.name == k.name) {
            return Err(format!("{at} is listed twice"));
        }
        let kind = match k.kind.as_str() {
            "p12" => Kind::P12,
            "acra" => Kind::Acra,
            "file" => Kind::File,
            other => return Err(format!("{at}: unknown kind `{other}` (p12, acra or file)")),
        };
        for (key, p) in [
            ("path", Some(&k.path)),
            ("public_path", k.public_path.as_ref()),
            ("nodectl_config", k.nodectl_config.as_ref()),
        ] {
            if let Some(p) = p
                && !valid_node_path(p)
            {
                return Err(format!(
                    "{at}: `{key}` must be an absolute path without `.`, `..` or empty components"
                ));
            }
        }
        if k.public_path.is_some() && kind != Kind::Acra {
            return Err(format!("{at}: `public_path` is for kind acra"));
        }
        if k.nodectl_config.is_some() && kind != Kind::P12 {
            return Err(format!("{at}: `nodectl_config` is for kind p12"));
        }
        let mode = match &k.mode {
            None => 0o600,
            Some(m) => {
                let v = u32::from_str_radix(m.trim_start_matches("0o"), 8)
                    .map_err(|_| format!("{at}: mode `{m}` is not octal (like \"0400\")"))?;
                if v & !0o777 != 0 {
                    return Err(format!(
                        "{at}: mode {v:04o} has set-id or sticky bits; a restore never sets them"
                    ));
                }
                v
            }
        };
        let owner = match &k.owner {
            Some(o) => Some(resolve_owner(o).map_err(|e| format!("{at}: {e}"))?),
            None => None,
        };
        if k.restore && (owner.is_none() || k.mode.is_none()) {
            return Err(format!(
                "{at}: `restore: true` needs `owner: user:group` and `mode` (whose the written files are, and \
                 their loosest mode)"
            ));
        }
        keystores.push(KeystorePolicy {
            name: k.name,
            kind,
            path: k.path,
            public_path: k.public_path,
            nodectl_config: k.nodectl_config,
            restore: k.restore,
            owner,
            mode,
        });
    }
    Ok(Policy { keystores })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "version: 1\nkeystores:\n  - name: p12\n    kind: p12\n    path: /home/n/t/node.p12\n    \
                        nodectl_config: /var/tessellation/nodectl/cn-config.yaml\n    restore: true\n    \
                        owner: root:root\n    mode: \"0400\"\n  - name: acra\n    kind: acra\n    path: /var/lib/acra/.acrakeys\n";

    #[test]
    fn a_printed_policy_parses_and_lists_what_it_allows() {
        let p = parse(GOOD).unwrap();
        let k = p.keystore("p12").unwrap();
        assert_eq!((k.kind, k.restore, k.mode), (Kind::P12, true, 0o400));
        assert_eq!(k.owner.as_ref().map(|o| (o.uid, o.gid)), Some((0, 0)));
        let acra = p.keystore("acra").unwrap();
        assert!(!acra.restore && acra.owner.is_none());
        let listed = p.listing();
        assert_eq!(listed[0].mode, Some(0o400));
        assert_eq!(listed[1].mode, None);
        assert!(p.keystore("other").is_none());
    }

    #[test]
    fn every_mistake_is_refused_with_what_to_change() {
        let bad = |text: &str, want: &str| {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{want:?} in {e:?}");
        };
        bad("version: 2\n", "upgrade coldkeep on the node");
        bad("version: 1\nextra: 1\n", "unknown field");
        bad(
            &GOOD.replace("path: /home/n/t/node.p12", "path: /home/n/../node.p12"),
            "absolute path",
        );
        bad(
            &GOOD.replace("path: /home/n/t/node.p12", "path: home/node.p12"),
            "absolute path",
        );
        bad(&GOOD.replace("kind: p12", "kind: tar"), "unknown kind");
        bad(&GOOD.replace("mode: \"0400\"", "mode: \"4755\""), "set-id");
        bad(
            &GOOD.replace("owner: root:root", "owner: coldkeep-nobody:root"),
            "does not exist",
        );
        bad(&GOOD.replace("    owner: root:root\n", ""), "needs `owner");
        bad(&GOOD.replace("name: acra", "name: p12"), "listed twice");
        bad(&GOOD.replace("name: acra", "name: ../x"), "a name is");
        bad(&format!("{GOOD}    nodectl_config: /x\n"), "for kind p12");
        bad(
            &GOOD.replace("    restore: true\n", "    restore: true\n    path2: /x\n"),
            "unknown field",
        );
    }
}

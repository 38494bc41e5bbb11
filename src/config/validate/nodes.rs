//! Nodes: how each is reached (over the `ssh:` defaults), its helper, `become`, and its keystores.

use super::super::raw::{RawDuration, RawKeystore, RawNode, RawSsh, S};
use super::super::{
    ConfigError, DEFAULT_ACRA_MAX_FILES, DEFAULT_ACRA_MAX_SIZE, DEFAULT_P12_MAX_SIZE, HostKeyPolicy,
    KeystoreConfig, KeystoreKind, NodeConfig,
};
use super::{Shared, Validator, home};
use serde_saphyr::Location;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(60);

impl Validator<'_> {
    /// How a node is reached: its own settings over the `ssh:` defaults (no labels, schedule or
    /// keystores yet).
    pub(super) fn connection(&self, node: &RawNode, defaults: &RawSsh) -> Result<NodeConfig, ConfigError> {
        let pick = |own: &Option<S<String>>, def: &Option<S<String>>| own.clone().or_else(|| def.clone());
        if node.host.value.trim().is_empty() {
            return Err(self.err(&node.host.referenced, "`host` is empty"));
        }
        let port = match &node.port {
            Some(p) if p.value == 0 => return Err(self.err(&p.referenced, "`port` must be 1-65535")),
            Some(p) => p.value,
            None => 22,
        };
        let user = match pick(&node.user, &defaults.user) {
            Some(u) => self.expand(&u)?,
            None => std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| "root".to_string()),
        };
        let identity = match pick(&node.identity, &defaults.identity) {
            Some(p) => Some(self.path(&p)?),
            None => default_identity(),
        };
        let identity_passphrase = match node
            .identity_passphrase
            .as_ref()
            .or(defaults.identity_passphrase.as_ref())
        {
            Some(s) => Some(self.secret(s, "identity_passphrase")?),
            None => None,
        };
        let known_hosts = match pick(&node.known_hosts, &defaults.known_hosts) {
            Some(p) => self.path(&p)?,
            None => home().map(|h| h.join(".ssh/known_hosts")).ok_or_else(|| {
                self.err(
                    &node.name.referenced,
                    "HOME is not set: give `ssh.known_hosts` explicitly",
                )
            })?,
        };
        let host_key = match &node.host_key {
            Some(k) => {
                if !valid_fingerprint(&k.value) {
                    return Err(self.err(
                        &k.referenced,
                        "`host_key` must be a SHA256 fingerprint like `SHA256:` followed by 43 base64 \
                         characters (as `ssh-keygen -lf` prints)",
                    ));
                }
                Some(k.value.clone())
            }
            None => None,
        };
        let host_key_policy = match pick(&node.host_key_policy, &defaults.host_key_policy) {
            None => HostKeyPolicy::Strict,
            Some(p) => match p.value.as_str() {
                "strict" => HostKeyPolicy::Strict,
                "accept-new" => HostKeyPolicy::AcceptNew,
                other => {
                    return Err(self.err(
                        &p.referenced,
                        format!("unknown host_key_policy `{other}`: expected `strict` or `accept-new`"),
                    ));
                }
            },
        };
        let duration =
            |own: &Option<S<RawDuration>>, def: &Option<S<RawDuration>>, fallback: Duration| match own
                .as_ref()
                .or(def.as_ref())
            {
                Some(d) if d.value.0.is_zero() => Err(self.err(&d.referenced, "a timeout cannot be zero")),
                Some(d) => Ok(d.value.0),
                None => Ok(fallback),
            };
        let connect_timeout = duration(
            &node.connect_timeout,
            &defaults.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        )?;
        let io_timeout = duration(&node.io_timeout, &defaults.io_timeout, DEFAULT_IO_TIMEOUT)?;
        let file_transfer = match pick(&node.file_transfer, &defaults.file_transfer) {
            None => super::super::FileTransfer::default(),
            Some(t) => match t.value.as_str() {
                "scp" => super::super::FileTransfer::Scp,
                "sftp" => super::super::FileTransfer::Sftp,
                other => {
                    return Err(self.err(
                        &t.referenced,
                        format!("unknown file_transfer `{other}`: expected `scp` or `sftp`"),
                    ));
                }
            },
        };
        let become_ = self.become_(node, defaults)?;
        let helper = self.helper(node, defaults)?;
        Ok(NodeConfig {
            name: node.name.value.clone(),
            host: node.host.value.clone(),
            port,
            user,
            identity,
            identity_passphrase,
            known_hosts,
            host_key,
            host_key_policy,
            connect_timeout,
            io_timeout,
            file_transfer,
            become_,
            helper,
            labels: Vec::new(),
            schedule: None,
            keystores: Vec::new(),
        })
    }

    /// The `ssh:` section resolved as a node of its own (no name, host or keystores): what a
    /// node not in the config yet connects with (`discover --host`).
    pub(super) fn node_defaults(&self, defaults: &RawSsh) -> Result<NodeConfig, ConfigError> {
        let text = |v: &str| S::new(v.to_string(), Location::UNKNOWN, Location::UNKNOWN);
        let template = RawNode {
            name: text(""),
            host: text("-"),
            port: None,
            host_key: None,
            labels: Vec::new(),
            keystores: None,
            schedule: None,
            user: None,
            identity: None,
            identity_passphrase: None,
            known_hosts: None,
            host_key_policy: None,
            connect_timeout: None,
            io_timeout: None,
            file_transfer: None,
            become_: None,
            become_user: None,
            node_helper: None,
            node_policy: None,
        };
        self.connection(&template, defaults)
    }

    pub(super) fn node(
        &self,
        node: RawNode,
        defaults: &RawSsh,
        shared: &Shared,
    ) -> Result<NodeConfig, ConfigError> {
        let connection = self.connection(&node, defaults)?;
        let mut labels = Vec::new();
        for l in &node.labels {
            self.name(l, "label")?;
            labels.push(l.value.clone());
        }
        let Some(keystores_raw) = node.keystores else {
            return Err(self.err(
                &node.name.referenced,
                format!(
                    "node `{}` has no `keystores`: list what to back up",
                    node.name.value
                ),
            ));
        };
        if keystores_raw.value.is_empty() {
            return Err(self.err(&keystores_raw.referenced, "`keystores` is empty"));
        }
        let mut keystores: Vec<KeystoreConfig> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for ks in keystores_raw.value {
            self.name(&ks.name, "keystore")?;
            if let Some(first) = seen.insert(ks.name.value.clone(), ks.name.referenced.line() as usize) {
                return Err(self.err(
                    &ks.name.referenced,
                    format!(
                        "duplicate keystore name `{}` on node `{}` (first at line {first})",
                        ks.name.value, node.name.value
                    ),
                ));
            }
            keystores.push(self.keystore(ks, shared)?);
        }
        let schedule = match &node.schedule {
            Some(s) => Some(self.schedule(s)?),
            None => labels
                .iter()
                .find_map(|l| shared.label_schedules.get(l).cloned())
                .or_else(|| shared.schedule.clone()),
        };
        Ok(NodeConfig {
            labels,
            schedule,
            keystores,
            ..connection
        })
    }

    /// `node_helper` and `node_policy`, node values over `ssh:` defaults: absolute paths of
    /// `[A-Za-z0-9._/-]`, since both go word for word into a sudoers rule and a command line.
    pub(super) fn helper(
        &self,
        node: &RawNode,
        defaults: &RawSsh,
    ) -> Result<super::super::HelperConfig, ConfigError> {
        let mut out = super::super::HelperConfig::default();
        for (own, def, key, slot) in [
            (
                &node.node_helper,
                &defaults.node_helper,
                "node_helper",
                &mut out.program,
            ),
            (
                &node.node_policy,
                &defaults.node_policy,
                "node_policy",
                &mut out.policy,
            ),
        ] {
            if let Some(v) = own.as_ref().or(def.as_ref()) {
                if !crate::nodehelper::proto::valid_fixed_path(&v.value) {
                    return Err(self.err(
                        &v.referenced,
                        format!(
                            "`{key}` must be an absolute path of letters, digits and `._-/` (it is pinned in a sudoers \
                             rule), without `.`, `..` or `//`"
                        ),
                    ));
                }
                *slot = v.value.clone();
            }
        }
        Ok(out)
    }

    /// `become` and `become_user`, node values over `ssh:` defaults.
    pub(super) fn become_(
        &self,
        node: &RawNode,
        defaults: &RawSsh,
    ) -> Result<super::super::Become, ConfigError> {
        let pick = |own: &Option<S<String>>, def: &Option<S<String>>| own.clone().or_else(|| def.clone());
        let user = pick(&node.become_user, &defaults.become_user);
        if let Some(u) = &user
            && !valid_user_name(&u.value)
        {
            return Err(self.err(
                &u.referenced,
                format!("`become_user` `{}` is not a valid user name", u.value),
            ));
        }
        match pick(&node.become_, &defaults.become_) {
            None => {
                if let Some(u) = user {
                    return Err(self.err(&u.referenced, "`become_user` needs `become: sudo`"));
                }
                Ok(super::super::Become::None)
            }
            Some(b) => match b.value.as_str() {
                "none" => Ok(super::super::Become::None),
                "sudo" => Ok(super::super::Become::Sudo {
                    user: user.map(|u| u.value).unwrap_or_else(|| "root".to_string()),
                }),
                other => Err(self.err(
                    &b.referenced,
                    format!("unknown become `{other}`: expected `sudo` or `none`"),
                )),
            },
        }
    }

    pub(super) fn keystore(&self, ks: RawKeystore, shared: &Shared) -> Result<KeystoreConfig, ConfigError> {
        let kind = match ks.kind.value.as_str() {
            "p12" => KeystoreKind::P12,
            "acra" => KeystoreKind::Acra,
            "file" => KeystoreKind::File,
            other => {
                return Err(self.err(
                    &ks.kind.referenced,
                    format!("unknown keystore kind `{other}`: supported kinds are `p12`, `acra` and `file`"),
                ));
            }
        };
        let what = if kind != KeystoreKind::Acra {
            "a file"
        } else {
            "a directory"
        };
        let remote = |p: &S<String>, key: &str, what: &str| -> Result<String, ConfigError> {
            let trimmed = p.value.trim_end_matches('/');
            if !p.value.starts_with('/') || trimmed.is_empty() || (what == "a file" && p.value.ends_with('/'))
            {
                return Err(self.err(
                    &p.referenced,
                    format!(
                        "{key} must be an absolute path to {what} on the node, got `{}`",
                        p.value
                    ),
                ));
            }
            Ok(trimmed.to_string())
        };
        let path = remote(&ks.path, "`path`", what)?;
        // Keys that belong to the other kind are mistakes, not silently ignored settings.
        let only = |present: bool, at: Option<&Location>, key: &str, kind_name: &str| match (present, at) {
            (true, Some(at)) => Err(self.err(
                at,
                format!("`{key}` applies only to keystores of kind `{kind_name}`"),
            )),
            _ => Ok(()),
        };
        let acra = kind == KeystoreKind::Acra;
        only(
            kind != KeystoreKind::P12,
            ks.password.as_ref().map(|x| &x.referenced),
            "password",
            "p12",
        )?;
        only(
            kind != KeystoreKind::P12,
            ks.nodectl_config.as_ref().map(|x| &x.referenced),
            "nodectl_config",
            "p12",
        )?;
        only(
            !acra,
            ks.public_path.as_ref().map(|x| &x.referenced),
            "public_path",
            "acra",
        )?;
        only(
            !acra,
            ks.version.as_ref().map(|x| &x.referenced),
            "version",
            "acra",
        )?;
        only(
            !acra,
            ks.max_files.as_ref().map(|x| &x.referenced),
            "max_files",
            "acra",
        )?;
        only(
            !acra,
            ks.master_key.as_ref().map(|x| &x.referenced),
            "master_key",
            "acra",
        )?;
        let nodectl_config = ks
            .nodectl_config
            .as_ref()
            .map(|p| remote(p, "`nodectl_config`", "a file"))
            .transpose()?;
        let public_path = ks
            .public_path
            .as_ref()
            .map(|p| remote(p, "`public_path`", "a directory"))
            .transpose()?
            .filter(|p| *p != path);
        let password = ks
            .password
            .as_ref()
            .map(|s| self.secret(s, "password"))
            .transpose()?;
        let acra_version = match &ks.version {
            Some(v) if !matches!(v.value, 1 | 2) => {
                return Err(self.err(
                    &v.referenced,
                    "`version` must be 1 or 2 (or left out to detect it)",
                ));
            }
            Some(v) => Some(v.value),
            None => None,
        };
        let master_key = match &ks.master_key {
            Some(m) if !shared.master_ready => {
                return Err(self.err(
                    &m.referenced,
                    "`master_key` needs `store.master_key_store` and `encryption.master_key_recipients`: \
                     the master key is stored apart from the keystore, to its own recipients",
                ));
            }
            Some(m) => Some(self.secret(m, "master_key")?),
            None => None,
        };
        let positive = |v: &Option<S<u64>>, key: &str, default: u64| match v {
            Some(m) if m.value == 0 => Err(self.err(&m.referenced, format!("`{key}` must be positive"))),
            Some(m) => Ok(m.value),
            None => Ok(default),
        };
        let default_size = if acra {
            DEFAULT_ACRA_MAX_SIZE
        } else {
            DEFAULT_P12_MAX_SIZE
        };
        let max_size = positive(&ks.max_size, "max_size", default_size)?;
        let max_files = positive(&ks.max_files, "max_files", DEFAULT_ACRA_MAX_FILES)?;
        Ok(KeystoreConfig {
            name: ks.name.value,
            kind,
            path,
            password,
            nodectl_config,
            max_size,
            public_path,
            acra_version,
            max_files,
            master_key,
            retention: match &ks.retention {
                Some(r) => self.retention(r)?,
                None => shared.retention.clone(),
            },
        })
    }
}

/// Like OpenSSH: the first of the usual key files that exists, else ssh-agent only.
fn default_identity() -> Option<PathBuf> {
    let ssh = home()?.join(".ssh");
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|n| ssh.join(n))
        .find(|p| p.is_file())
}

/// `SHA256:` + 43 characters of unpadded base64.
fn valid_fingerprint(s: &str) -> bool {
    s.strip_prefix("SHA256:").is_some_and(|b| {
        b.len() == 43
            && b.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
    })
}

/// A POSIX-portable user name (what `useradd` accepts by default): it goes into sudo's command
/// line and the printed sudoers lines, so nothing that a shell or sudoers would interpret.
fn valid_user_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'))
}

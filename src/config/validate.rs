//! Turns the raw config into the validated [`Config`]: defaults, path expansion, secrets,
//! recipients, names; every problem located at `file:line:column`.

use super::raw::{
    RawConfig, RawDuration, RawHooks, RawKeystore, RawNode, RawRetention, RawSecret, RawSigning, RawSsh, S,
};
use super::{
    Config, ConfigError, DEFAULT_ACRA_MAX_FILES, DEFAULT_ACRA_MAX_SIZE, DEFAULT_P12_MAX_SIZE,
    EncryptionConfig, Hooks, HostKeyPolicy, KeystoreConfig, KeystoreKind, NodeConfig, Recipient, Retention,
    Secret, SigningConfig, StoreConfig,
};
use crate::schedule::{Schedule, Zone};
use serde_saphyr::Location;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEFAULT_JOBS: usize = 8;
const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_RETRY_WAIT: Duration = Duration::from_secs(10);
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings every node and keystore inherits.
struct Shared {
    master_ready: bool,
    schedule: Option<Schedule>,
    label_schedules: BTreeMap<String, Schedule>,
    retention: Retention,
}
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Parses YAML text into the raw structs, mapping parser errors to located [`ConfigError`]s.
pub(super) fn parse(text: &str, source: &Path) -> Result<Config, ConfigError> {
    // Comments are not kept: with them the parser buffers at most 32 comment lines while it
    // looks ahead, and a config whose example nodes are commented out (as `init` writes it)
    // failed with "too many buffered comments".
    let options = serde_saphyr::options! { emit_comments: false };
    let raw: RawConfig =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| yaml_error(&e, text, source))?;
    Validator { text, source }.config(raw)
}

fn yaml_error(e: &serde_saphyr::Error, text: &str, source: &Path) -> ConfigError {
    let bare = e.without_snippet().to_string();
    // The library appends its own position; we print ours in front instead.
    let message = match bare.rfind(" at line ") {
        Some(i) => bare[..i].to_string(),
        None => bare,
    };
    let (line, column) = e
        .location()
        .map(|l| (l.line() as usize, l.column() as usize))
        .unwrap_or((0, 0));
    // Type errors on a secret line must not echo the value: show no snippet when unsure.
    let snippet = (line > 0).then(|| snippet(text, line, column, looks_secret(text, line)));
    ConfigError {
        file: source.to_path_buf(),
        line,
        column,
        message,
        snippet,
    }
}

fn looks_secret(text: &str, line: usize) -> bool {
    text.lines().nth(line - 1).is_some_and(|l| {
        let key = l.trim_start().trim_start_matches("- ");
        key.starts_with("password") || key.starts_with("identity_passphrase") || key.starts_with("passphrase")
    })
}

/// The source line with a caret under `column`; `redact` hides everything from the column on.
pub(super) fn snippet(text: &str, line: usize, column: usize, redact: bool) -> String {
    let Some(src) = text.lines().nth(line.saturating_sub(1)) else {
        return String::new();
    };
    let col = column.max(1);
    let shown = if redact {
        let cut = src
            .char_indices()
            .nth(col - 1)
            .map(|(i, _)| i)
            .unwrap_or(src.len());
        format!("{}<redacted>", &src[..cut])
    } else {
        super::redact::redact_line(text, line)
    };
    let gutter = line.to_string().len();
    format!(
        "{:>gutter$} | {shown}\n{:>gutter$} | {}^",
        line,
        "",
        " ".repeat(col - 1)
    )
}

struct Validator<'a> {
    text: &'a str,
    source: &'a Path,
}

impl Validator<'_> {
    fn err(&self, at: &Location, message: impl Into<String>) -> ConfigError {
        self.located(at, message, false)
    }

    fn located(&self, at: &Location, message: impl Into<String>, redact: bool) -> ConfigError {
        let (line, column) = (at.line() as usize, at.column() as usize);
        ConfigError {
            file: self.source.to_path_buf(),
            line,
            column,
            message: message.into(),
            snippet: (line > 0).then(|| snippet(self.text, line, column, redact)),
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let store = self.store(&raw)?;
        let encryption = self.encryption(&raw)?;
        let jobs = match &raw.jobs {
            Some(j) if j.value == 0 => return Err(self.err(&j.referenced, "`jobs` must be at least 1")),
            Some(j) => j.value,
            None => DEFAULT_JOBS,
        };
        let master_ready = store.master_key_store.is_some() && !encryption.master_key_recipients.is_empty();
        let timezone = match &raw.timezone {
            Some(z) => Zone::parse(&z.value).map_err(|m| self.err(&z.referenced, m))?,
            None => Zone::Local,
        };
        let mut label_schedules = BTreeMap::new();
        for (label, expr) in &raw.label_schedules {
            label_schedules.insert(label.clone(), self.schedule(expr)?);
        }
        let shared = Shared {
            master_ready,
            schedule: raw.schedule.as_ref().map(|s| self.schedule(s)).transpose()?,
            label_schedules,
            retention: raw
                .retention
                .as_ref()
                .map(|r| self.retention(r))
                .transpose()?
                .unwrap_or_default(),
        };
        let retries = raw.retries.as_ref().map(|r| r.value).unwrap_or(DEFAULT_RETRIES);
        let retry_wait = match &raw.retry_wait {
            Some(d) => d.value.0,
            None => DEFAULT_RETRY_WAIT,
        };
        let metrics_file = raw.metrics_file.as_ref().map(|p| self.path(p)).transpose()?;
        let hooks = match &raw.hooks {
            Some(h) => self.hooks(&h.value)?,
            None => Hooks {
                timeout: DEFAULT_HOOK_TIMEOUT,
                ..Hooks::default()
            },
        };
        let verify_schedule = raw
            .verify_schedule
            .as_ref()
            .map(|s| self.schedule(s))
            .transpose()?;
        let verify_identity = match &raw.verify_identity {
            Some(p) if verify_schedule.is_none() => {
                return Err(self.err(
                    &p.referenced,
                    "`verify_identity` is only used by `verify_schedule`, which is not set",
                ));
            }
            Some(p) => Some(self.path(p)?),
            None => None,
        };
        let signing = self.signing(&raw, &store)?;
        let defaults = raw.ssh.unwrap_or_default();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut nodes = Vec::new();
        for node in raw.nodes.unwrap_or_default() {
            self.name(&node.name, "node")?;
            if node.name.value == super::HARDWARE_NODE {
                return Err(self.err(
                    &node.name.referenced,
                    "`hardware` is reserved (the store keeps hardware-key backups under it); rename the node",
                ));
            }
            if let Some(first) = seen.insert(node.name.value.clone(), node.name.referenced.line() as usize) {
                return Err(self.err(
                    &node.name.referenced,
                    format!(
                        "duplicate node name `{}` (first at line {first})",
                        node.name.value
                    ),
                ));
            }
            nodes.push(self.node(node, &defaults, &shared)?);
        }
        // Kept as a result: a config whose nodes all set what the defaults lack (HOME unset, no
        // `ssh.known_hosts`) is valid; only `discover --host` needs the defaults alone.
        let node_defaults = self.node_defaults(&defaults).map_err(|e| e.to_string());
        Ok(Config {
            source: self.source.to_path_buf(),
            store,
            encryption,
            signing,
            jobs,
            timezone,
            retries,
            retry_wait,
            metrics_file,
            hooks,
            verify_schedule,
            verify_identity,
            retention: shared.retention.clone(),
            nodes,
            node_defaults,
        })
    }

    fn schedule(&self, s: &S<String>) -> Result<Schedule, ConfigError> {
        Schedule::parse(&s.value).map_err(|m| self.err(&s.referenced, m))
    }

    fn retention(&self, r: &S<RawRetention>) -> Result<Retention, ConfigError> {
        let v = &r.value;
        let retention = Retention {
            keep_last: v.keep_last,
            keep_hourly: v.keep_hourly,
            keep_daily: v.keep_daily,
            keep_weekly: v.keep_weekly,
            keep_monthly: v.keep_monthly,
            keep_yearly: v.keep_yearly,
            keep_pre_restore: v.keep_pre_restore,
        };
        let rules = [
            ("keep_last", v.keep_last),
            ("keep_hourly", v.keep_hourly),
            ("keep_daily", v.keep_daily),
            ("keep_weekly", v.keep_weekly),
            ("keep_monthly", v.keep_monthly),
            ("keep_yearly", v.keep_yearly),
        ];
        if let Some((name, _)) = rules.iter().find(|(_, n)| *n == Some(0)) {
            return Err(self.err(
                &r.referenced,
                format!("`{name}: 0` keeps nothing by that rule; leave it out, or keep at least 1"),
            ));
        }
        Ok(retention)
    }

    fn hooks(&self, h: &RawHooks) -> Result<Hooks, ConfigError> {
        let commands = |list: &[S<String>]| -> Result<Vec<String>, ConfigError> {
            list.iter()
                .map(|c| {
                    if c.value.trim().is_empty() {
                        Err(self.err(&c.referenced, "empty hook command"))
                    } else {
                        Ok(c.value.clone())
                    }
                })
                .collect()
        };
        let timeout = match &h.timeout {
            Some(t) if t.value.0.is_zero() => return Err(self.err(&t.referenced, "a timeout cannot be zero")),
            Some(t) => t.value.0,
            None => DEFAULT_HOOK_TIMEOUT,
        };
        Ok(Hooks {
            before: commands(&h.before)?,
            before_node: commands(&h.before_node)?,
            on_start: commands(&h.on_start)?,
            on_run_success: commands(&h.on_run_success)?,
            on_run_failure: commands(&h.on_run_failure)?,
            on_success: commands(&h.on_success)?,
            on_failure: commands(&h.on_failure)?,
            timeout,
        })
    }

    fn store(&self, raw: &RawConfig) -> Result<StoreConfig, ConfigError> {
        let store = &raw.store.value;
        let absolute = |p: &S<String>, what: &str| -> Result<PathBuf, ConfigError> {
            let path = PathBuf::from(self.expand(p)?);
            if !path.is_absolute() {
                return Err(self.err(
                    &p.referenced,
                    format!("{what} must be an absolute path, got `{}`", p.value),
                ));
            }
            Ok(path)
        };
        let path = absolute(&store.path, "`store.path`")?;
        let mut replicas = Vec::new();
        for r in &store.replicas {
            let replica = absolute(r, "a store replica")?;
            if replica == path || replicas.contains(&replica) {
                return Err(self.err(&r.referenced, format!("replica `{}` is listed twice", r.value)));
            }
            replicas.push(replica);
        }
        // The keystore backups and their master key must never share a place.
        let apart = |m: &S<String>, what: &str| -> Result<PathBuf, ConfigError> {
            let master = absolute(m, what)?;
            let resolved = resolve(&master);
            if std::iter::once(&path)
                .chain(&replicas)
                .map(|p| resolve(p))
                .any(|p| p.starts_with(&resolved) || resolved.starts_with(&p))
            {
                return Err(self.err(
                    &m.referenced,
                    format!(
                        "{what} must be apart from `store.path` and every replica \
                         (not the same, not inside, not containing): a keystore and its master key \
                         must not be stored together"
                    ),
                ));
            }
            Ok(master)
        };
        let master_key_store = match &store.master_key_store {
            Some(m) => Some(apart(m, "`master_key_store`")?),
            None => None,
        };
        let mut master_key_replicas: Vec<PathBuf> = Vec::new();
        for r in &store.master_key_replicas {
            let Some(master) = &master_key_store else {
                return Err(self.err(
                    &r.referenced,
                    "`master_key_replicas` needs `store.master_key_store` (the primary copy)",
                ));
            };
            let replica = apart(r, "a `master_key_replicas` entry")?;
            if &replica == master || master_key_replicas.contains(&replica) {
                return Err(self.err(
                    &r.referenced,
                    format!("master-key replica `{}` is listed twice", r.value),
                ));
            }
            master_key_replicas.push(replica);
        }
        Ok(StoreConfig {
            path,
            replicas,
            master_key_store,
            master_key_replicas,
            lock_wait: Duration::from_secs(60),
            keys: None,
        })
    }

    /// `signing:` is required (every artifact is signed); the key must lie outside every store
    /// root (a replica's writer must not be able to read it) and be private when it exists.
    fn signing(&self, raw: &RawConfig, store: &StoreConfig) -> Result<SigningConfig, ConfigError> {
        let Some(signing) = &raw.signing else {
            return Err(self.err(
                &raw.store.referenced,
                format!(
                    "no `signing:` section: every artifact is signed, so nothing written to a store can \
                     be forged. Make a key and trust it:\n  ssh-keygen -t ed25519 -N '' -C coldkeep -f \
                     /etc/coldkeep/signing_key\n  echo \"coldkeep namespaces=\\\"{ns}\\\" $(cat \
                     /etc/coldkeep/signing_key.pub)\" > /etc/coldkeep/allowed_signers\nthen add:\n  \
                     signing:\n    key: /etc/coldkeep/signing_key\n    allowed_signers: \
                     /etc/coldkeep/allowed_signers",
                    ns = crate::sign::NAMESPACE
                ),
            ));
        };
        let RawSigning {
            key,
            passphrase,
            allowed_signers,
        } = &signing.value;
        let key_path = self.path(key)?;
        let allowed_path = self.path(allowed_signers)?;
        let in_store = |p: &Path| {
            let resolved = resolve(p);
            std::iter::once(&store.path)
                .chain(&store.replicas)
                .chain(&store.master_key_store)
                .chain(&store.master_key_replicas)
                .any(|root| resolved.starts_with(resolve(root)))
        };
        if in_store(&key_path) {
            return Err(self.err(
                &key.referenced,
                "`signing.key` lies inside a store root: whoever can write a store could read the key \
                 and sign forgeries; keep it apart (e.g. /etc/coldkeep/signing_key)",
            ));
        }
        if in_store(&allowed_path) {
            return Err(self.err(
                &allowed_signers.referenced,
                "`signing.allowed_signers` lies inside a store root: whoever can write a store could \
                 trust their own key; keep it apart (e.g. /etc/coldkeep/allowed_signers)",
            ));
        }
        if key_path.exists() {
            super::check_key_file(&key_path).map_err(|m| self.err(&key.referenced, m))?;
        }
        Ok(SigningConfig {
            key: key_path,
            passphrase: passphrase
                .as_ref()
                .map(|p| self.secret(p, "signing.passphrase"))
                .transpose()?,
            allowed_signers: allowed_path,
        })
    }

    fn encryption(&self, raw: &RawConfig) -> Result<EncryptionConfig, ConfigError> {
        let enc = &raw.encryption.value;
        let mut recipients: Vec<Recipient> = Vec::new();
        // Where each keystore recipient was given, to name it when a master-key one repeats it.
        let mut origins: Vec<(String, String)> = Vec::new();
        let mut add = |r: Recipient, origin: String| {
            if !recipients.iter().any(|x| x.as_str() == r.as_str()) {
                origins.push((r.as_str().to_string(), origin));
                recipients.push(r);
            }
        };
        for r in &enc.recipients {
            let parsed = Recipient::parse(&r.value).map_err(|m| self.err(&r.referenced, m))?;
            add(
                parsed,
                format!(
                    "{}:{} (encryption.recipients)",
                    self.source.display(),
                    r.referenced.line()
                ),
            );
        }
        if let Some(file) = &enc.recipients_file {
            let path = self.path(file)?;
            let text = std::fs::read_to_string(&path).map_err(|e| {
                self.err(
                    &file.referenced,
                    format!("cannot read recipients_file {}: {e}", path.display()),
                )
            })?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let parsed = Recipient::parse(line).map_err(|m| ConfigError {
                    file: path.clone(),
                    line: i + 1,
                    column: 1,
                    message: m,
                    snippet: Some(snippet(&text, i + 1, 1, false)),
                })?;
                add(parsed, format!("{}:{} (recipients_file)", path.display(), i + 1));
            }
        }
        if recipients.is_empty() {
            return Err(self.err(
                &raw.encryption.referenced,
                "no recipients: give `encryption.recipients` or a non-empty `recipients_file`",
            ));
        }
        let mut master_key_recipients: Vec<Recipient> = Vec::new();
        for r in &enc.master_key_recipients {
            let parsed = Recipient::parse(&r.value).map_err(|m| self.err(&r.referenced, m))?;
            if let Some((_, origin)) = origins.iter().find(|(k, _)| k == parsed.as_str()) {
                return Err(self.err(
                    &r.referenced,
                    format!(
                        "this master-key recipient is also a keystore recipient, at {origin}: no \
                         single identity may open both a keystore and its master key; give the \
                         master key its own recipient"
                    ),
                ));
            }
            if !master_key_recipients
                .iter()
                .any(|x| x.as_str() == parsed.as_str())
            {
                master_key_recipients.push(parsed);
            }
        }
        Ok(EncryptionConfig {
            recipients,
            master_key_recipients,
        })
    }

    /// How a node is reached: its own settings over the `ssh:` defaults (no labels, schedule or
    /// keystores yet).
    fn connection(&self, node: &RawNode, defaults: &RawSsh) -> Result<NodeConfig, ConfigError> {
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
            None => super::FileTransfer::default(),
            Some(t) => match t.value.as_str() {
                "scp" => super::FileTransfer::Scp,
                "sftp" => super::FileTransfer::Sftp,
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
    fn node_defaults(&self, defaults: &RawSsh) -> Result<NodeConfig, ConfigError> {
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

    fn node(&self, node: RawNode, defaults: &RawSsh, shared: &Shared) -> Result<NodeConfig, ConfigError> {
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
    fn helper(&self, node: &RawNode, defaults: &RawSsh) -> Result<super::HelperConfig, ConfigError> {
        let mut out = super::HelperConfig::default();
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
    fn become_(&self, node: &RawNode, defaults: &RawSsh) -> Result<super::Become, ConfigError> {
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
                Ok(super::Become::None)
            }
            Some(b) => match b.value.as_str() {
                "none" => Ok(super::Become::None),
                "sudo" => Ok(super::Become::Sudo {
                    user: user.map(|u| u.value).unwrap_or_else(|| "root".to_string()),
                }),
                other => Err(self.err(
                    &b.referenced,
                    format!("unknown become `{other}`: expected `sudo` or `none`"),
                )),
            },
        }
    }

    fn keystore(&self, ks: RawKeystore, shared: &Shared) -> Result<KeystoreConfig, ConfigError> {
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

    fn secret(&self, s: &S<RawSecret>, key: &str) -> Result<Secret, ConfigError> {
        match &s.value {
            RawSecret::Inline => Err(self.located(
                &s.referenced,
                format!(
                    "`{key}` must not be written inline (secrets do not belong in config files): \
                     use `{{env: NAME}}` or `{{file: PATH}}`"
                ),
                true,
            )),
            RawSecret::Env(name) if name.is_empty() => Err(self.err(&s.referenced, "empty `env` name")),
            RawSecret::Env(name) => Ok(Secret::Env(name.clone())),
            RawSecret::File(path) => {
                let spanned = S::new(path.clone(), s.referenced, s.defined);
                Ok(Secret::File(self.path(&spanned)?))
            }
        }
    }

    /// Checks a name against `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`.
    fn name(&self, n: &S<String>, what: &str) -> Result<(), ConfigError> {
        let v = &n.value;
        let ok = !v.is_empty()
            && v.len() <= 64
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(())
        } else {
            Err(self.err(
                &n.referenced,
                format!(
                    "invalid {what} name `{v}`: use 1-64 letters, digits, `.`, `_` or `-`, \
                     starting with a letter or digit"
                ),
            ))
        }
    }

    /// Expands `~` and `${VAR}` in a string.
    fn expand(&self, s: &S<String>) -> Result<String, ConfigError> {
        let mut text = s.value.clone();
        if text == "~" || text.starts_with("~/") {
            let Some(h) = home() else {
                return Err(self.err(&s.referenced, "`~` used but HOME is not set"));
            };
            text = format!("{}{}", h.display(), &text[1..]);
        }
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(len) = rest[start..].find('}') else {
                return Err(self.err(&s.referenced, "unterminated `${` in value"));
            };
            let var = &rest[start + 2..start + len];
            let value = std::env::var(var)
                .map_err(|_| self.err(&s.referenced, format!("environment variable `{var}` is not set")))?;
            out.push_str(&value);
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// An expanded local path; relative ones are taken from the config file's directory.
    fn path(&self, s: &S<String>) -> Result<PathBuf, ConfigError> {
        let p = PathBuf::from(self.expand(s)?);
        if p.is_absolute() {
            return Ok(p);
        }
        let base = self
            .source
            .parent()
            .filter(|b| !b.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Ok(std::path::absolute(base.join(p)).unwrap_or_else(|_| base.join(&s.value)))
    }
}

/// A path with `.` and `..` resolved, and symlinks too where it exists (to compare locations).
fn resolve(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
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

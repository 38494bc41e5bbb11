//! The declarative YAML config: parsing, validation, secrets and defaults.
//!
//! Every error names `file:line:column` with a snippet ([`ConfigError`]). The public structs
//! below are the *validated* config: defaults applied, node settings merged with `ssh:`.

mod hardware;
pub mod perms;
mod raw;
mod redact;
mod secret;
mod validate;

pub use hardware::{HardwareConfig, HardwareModel};
pub use raw::parse_duration;
pub use secret::{Secret, SecretError};

use crate::schedule::{Schedule, Zone};

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default config locations, in order, when neither `--config` nor `COLDKEEP_CONFIG` is given.
pub const DEFAULT_PATHS: &[&str] = &["./coldkeep.yaml", "/etc/coldkeep/coldkeep.yaml"];

/// The store directory of hardware-key artifacts (`<store>/hardware/<name>/`): not a node name.
pub const HARDWARE_NODE: &str = "hardware";

/// Default cap on the size of one fetched P12 file.
pub const DEFAULT_P12_MAX_SIZE: u64 = 1024 * 1024;

/// Default cap on the total size of one fetched Acra keystore tree.
pub const DEFAULT_ACRA_MAX_SIZE: u64 = 64 * 1024 * 1024;

/// Default cap on the number of files in one Acra keystore tree.
pub const DEFAULT_ACRA_MAX_FILES: u64 = 10_000;

/// A config error located in the source file.
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line (0 when the error has no location, e.g. the file cannot be read).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong, in one sentence.
    pub message: String,
    /// The offending source line(s) with a caret, when available.
    pub snippet: Option<String>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )?;
        }
        if let Some(snippet) = &self.snippet {
            write!(f, "\n{snippet}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error about the whole file (no position).
    fn whole(file: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: message.into(),
            snippet: None,
        }
    }
}

/// The validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    /// Where artifacts go.
    pub store: StoreConfig,
    /// Who can decrypt them.
    pub encryption: EncryptionConfig,
    /// `signing:`: who signs artifacts and whose signatures are trusted.
    pub signing: SigningConfig,
    /// Nodes processed in parallel.
    pub jobs: usize,
    /// Zone schedules and retention buckets are read in.
    pub timezone: Zone,
    /// Attempts after a transient failure (connection refused, timeout).
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub retry_wait: Duration,
    /// Prometheus textfile written after each run.
    pub metrics_file: Option<PathBuf>,
    /// Commands run around each backup run, node and keystore.
    pub hooks: Hooks,
    /// When the daemon verifies the whole store and its replicas (`verify_schedule`).
    pub verify_schedule: Option<Schedule>,
    /// An age identity that makes the scheduled verification deep (decrypts in memory). It puts a
    /// decryption key on the agent host: see the README before setting it.
    pub verify_identity: Option<PathBuf>,
    /// The top-level `retention:` (hardware keys follow it; keystores may override it).
    pub retention: Retention,
    /// `hardware:`: hardware keys and how often each must be checked.
    pub hardware: Vec<HardwareConfig>,
    /// The nodes, in config order.
    pub nodes: Vec<NodeConfig>,
    /// The `ssh:` section resolved as a node without name, host or keystores: how a node not in
    /// the config yet is reached (`discover --host`); the error when the defaults alone do not
    /// resolve (HOME unset and no `ssh.known_hosts`).
    pub node_defaults: Result<NodeConfig, String>,
}

/// `hooks:`: shell commands run around a backup run, in a clean environment with `COLDKEEP_*`
/// variables, each killed after `timeout`.
///
/// Per run: `on_start`, then `before` (a failure vetoes the run), then for each node
/// `before_node` (a failure skips that node), then per keystore `on_success` / `on_failure`,
/// then once `on_run_success` / `on_run_failure`: the start/finish/fail pings of a dead-man's
/// switch such as Healthchecks.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// Run once before a run; one failing vetoes the whole run (every keystore fails).
    pub before: Vec<String>,
    /// Run before each node's backup, `COLDKEEP_NODE` set; one failing skips that node.
    pub before_node: Vec<String>,
    /// Run once when a run starts (a start ping, so the monitor measures duration and catches
    /// runs that never end).
    pub on_start: Vec<String>,
    /// Run once after a run in which every keystore was backed up.
    pub on_run_success: Vec<String>,
    /// Run once after a run in which any keystore failed (or that was vetoed).
    pub on_run_failure: Vec<String>,
    /// Run for each keystore backed up.
    pub on_success: Vec<String>,
    /// Run for each keystore that failed.
    pub on_failure: Vec<String>,
    /// Each command is killed after this long.
    pub timeout: Duration,
}

/// How many artifacts of a keystore to keep (restic `forget` semantics); `None` = no limit of
/// that kind. With no `keep_*` set at all, nothing is removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep the N newest.
    pub keep_last: Option<u32>,
    /// Keep the newest of each of the N latest hours.
    pub keep_hourly: Option<u32>,
    /// Keep the newest of each of the N latest days.
    pub keep_daily: Option<u32>,
    /// Keep the newest of each of the N latest weeks.
    pub keep_weekly: Option<u32>,
    /// Keep the newest of each of the N latest months.
    pub keep_monthly: Option<u32>,
    /// Keep the newest of each of the N latest years.
    pub keep_yearly: Option<u32>,
    /// `pre-restore` artifacts to keep (default: all).
    pub keep_pre_restore: Option<u32>,
}

impl Retention {
    /// Whether any regular-backup rule is set (else prune keeps every backup).
    pub fn is_set(&self) -> bool {
        [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ]
        .iter()
        .any(Option::is_some)
    }
}

/// `store:`: where artifacts go.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Absolute path of the primary store.
    pub path: PathBuf,
    /// Absolute paths of replicas; every artifact is written to each.
    pub replicas: Vec<PathBuf>,
    /// Where Acra master-key artifacts go: apart from the keystore backups.
    pub master_key_store: Option<PathBuf>,
    /// Replicas of the master-key store (the one unrecoverable secret must not live in one
    /// place); same rules as `replicas`: apart from the keystore backups, never created.
    pub master_key_replicas: Vec<PathBuf>,
    /// How long a write waits for another writer's lock (`--lock-wait`).
    pub lock_wait: Duration,
    /// The signing key and allowed signers, once [`Config::load`] opened them (`None` after a bare
    /// [`Config::parse`]): a store signs what it writes and trusts only what verifies.
    pub keys: Option<std::sync::Arc<crate::sign::Keys>>,
}

/// `signing:`: artifact signatures (SSHSIG, Ed25519), see [`crate::sign`].
#[derive(Debug, Clone)]
pub struct SigningConfig {
    /// OpenSSH private key file: outside every store root, mode 0600 (checked at parse when it
    /// exists, and again when opened).
    pub key: PathBuf,
    /// Passphrase of an encrypted key.
    pub passphrase: Option<Secret>,
    /// OpenSSH allowed_signers file: the keys whose signatures are trusted.
    pub allowed_signers: PathBuf,
}

impl SigningConfig {
    /// Reads the key (decrypting it in memory) and allowed_signers. Errors are config errors: a
    /// run that cannot sign or verify does nothing.
    pub fn open(&self, source: &Path) -> Result<crate::sign::Keys, ConfigError> {
        check_key_file(&self.key).map_err(|m| ConfigError::whole(source, m))?;
        let pass = self
            .passphrase
            .as_ref()
            .map(|s| s.resolve())
            .transpose()
            .map_err(|e| ConfigError::whole(source, format!("`signing.passphrase`: {e}")))?;
        let signer = crate::sign::Signer::load(&self.key, pass.as_ref().map(|p| p.as_str()))
            .map_err(|e| ConfigError::whole(source, format!("`signing.key`: {e}")))?;
        check_allowed_signers_file(&self.allowed_signers).map_err(|m| ConfigError::whole(source, m))?;
        let allowed = crate::sign::AllowedSigners::load(&self.allowed_signers)
            .map_err(|e| ConfigError::whole(source, format!("`signing.allowed_signers`: {e}")))?;
        if !allowed.trusts(&signer) {
            return Err(ConfigError::whole(
                source,
                format!(
                    "`signing.allowed_signers` ({}) does not trust the signing key, so nothing written \
                     would verify: add the line `coldkeep namespaces=\"{}\" {}`",
                    self.allowed_signers.display(),
                    crate::sign::NAMESPACE,
                    signer.public_line()
                ),
            ));
        }
        Ok(crate::sign::Keys { signer, allowed })
    }
}

/// allowed_signers decides what is trusted: nobody but its owner may change it.
fn check_allowed_signers_file(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("`signing.allowed_signers` {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "`signing.allowed_signers` {} is writable by others (mode {mode:o}): `chmod go-w {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// The signing key must be readable by its owner only (like ssh refuses a private key others
/// can read). `Err` says how to fix it.
pub(crate) fn check_key_file(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("`signing.key` {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "`signing.key` {} is readable by others (mode {mode:o}): `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// `encryption:`: who can decrypt artifacts.
#[derive(Debug, Clone)]
pub struct EncryptionConfig {
    /// From `recipients` and `recipients_file`, deduplicated, never empty.
    pub recipients: Vec<Recipient>,
    /// Who can decrypt Acra master-key artifacts (a separate list).
    pub master_key_recipients: Vec<Recipient>,
}

/// One age recipient: X25519 (`age1...`) or SSH (`ssh-ed25519 ...`, `ssh-rsa ...`).
#[derive(Clone)]
pub struct Recipient {
    text: String,
    key: RecipientKey,
}

#[derive(Clone)]
enum RecipientKey {
    X25519(age::x25519::Recipient),
    Ssh(age::ssh::Recipient),
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Recipient {
    /// Parses one recipient line; the error says what was expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with("age1") {
            let key = text
                .parse::<age::x25519::Recipient>()
                .map_err(|e| format!("not a valid age X25519 recipient: {e}"))?;
            return Ok(Recipient {
                text: text.to_string(),
                key: RecipientKey::X25519(key),
            });
        }
        if text.starts_with("ssh-") || text.starts_with("ecdsa-") {
            let key = text.parse::<age::ssh::Recipient>().map_err(|e| match e {
                age::ssh::ParseRecipientKeyError::Unsupported(t) => {
                    format!("SSH key type {t} is not supported by age (use ssh-ed25519 or ssh-rsa)")
                }
                _ => "not a valid SSH public key".to_string(),
            })?;
            return Ok(Recipient {
                text: text.to_string(),
                key: RecipientKey::Ssh(key),
            });
        }
        Err("expected an age recipient (age1...) or an SSH public key (ssh-ed25519 / ssh-rsa)".into())
    }

    /// The recipient as written (trimmed); an SSH key keeps its comment.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The recipient for the age encryptor.
    pub fn as_age(&self) -> &dyn age::Recipient {
        match &self.key {
            RecipientKey::X25519(k) => k,
            RecipientKey::Ssh(k) => k,
        }
    }
}

/// What to do with a host whose key is not in known_hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// Refuse unknown hosts (default).
    #[default]
    Strict,
    /// Record an unknown host's key in known_hosts and continue; a changed key is still refused.
    AcceptNew,
}

/// How a single file is fetched (`ssh.file_transfer`). Trees always use SFTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileTransfer {
    /// SCP: one channel and a remote `scp` process per file (about 90 ms each on the bench's
    /// nodes); SFTP when `scp` is missing. Kept for nodes where SCP is preferred.
    Scp,
    /// SFTP on the session's SFTP channel (default): no remote process per file, measured about
    /// 3x faster per fleet. A node without an SFTP subsystem is read over SCP automatically.
    #[default]
    Sftp,
}

/// How coldkeep gains the rights to read and write a node's keys (`become:`), decided per node
/// because privilege is a property of how a node is reached, not of each command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Become {
    /// Read and write as the SSH user (default).
    #[default]
    None,
    /// Run every remote read and write through the node helper, started once per session as
    /// `user` with `sudo -n` (never a password prompt), for nodes whose keys belong to root or a
    /// service user and that refuse root logins.
    Sudo {
        /// `become_user` (default `root`).
        user: String,
    },
}

/// Where the node helper is on a node and which policy it obeys (`node_helper:`, `node_policy:`
/// in `ssh:` or per node). Both are pinned word for word in the sudoers rule, so the agent must
/// run exactly these; tests and unusual installs change them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperConfig {
    /// The coldkeep binary on the node (`/usr/bin/coldkeep`, where the .deb puts it).
    pub program: String,
    /// Its policy file (`/etc/coldkeep/node.yaml`).
    pub policy: String,
}

/// The helper's default location (the .deb's binary).
pub const DEFAULT_NODE_HELPER: &str = "/usr/bin/coldkeep";
/// The helper's default policy file (defined with the protocol both sides share).
pub use crate::nodehelper::proto::DEFAULT_NODE_POLICY;

impl Default for HelperConfig {
    fn default() -> HelperConfig {
        HelperConfig {
            program: DEFAULT_NODE_HELPER.to_string(),
            policy: DEFAULT_NODE_POLICY.to_string(),
        }
    }
}

/// One node, with `ssh:` defaults already merged in.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Its unique name.
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// SSH user.
    pub user: String,
    /// Private key file for auth; `None` = ssh-agent only.
    pub identity: Option<PathBuf>,
    /// Passphrase of the SSH key, if it has one.
    pub identity_passphrase: Option<Secret>,
    /// known_hosts file (expanded, absolute).
    pub known_hosts: PathBuf,
    /// `SHA256:<base64>` pin; when set it is checked instead of known_hosts.
    pub host_key: Option<String>,
    /// What to do with an unknown host key.
    pub host_key_policy: HostKeyPolicy,
    /// How long to wait for the TCP connection and handshake.
    pub connect_timeout: Duration,
    /// Timeout for each blocking SSH operation after connect.
    pub io_timeout: Duration,
    /// How single files (P12) are fetched.
    pub file_transfer: FileTransfer,
    /// `become:` / `become_user:`: sudo for every read and write, or none.
    pub become_: Become,
    /// With `become: sudo`: the node helper sudo runs, and its policy.
    pub helper: HelperConfig,
    /// Labels for `--label` and `label_schedules`.
    pub labels: Vec<String>,
    /// When the daemon backs this node up (node, else label, else top-level `schedule`).
    pub schedule: Option<Schedule>,
    /// What to back up on this node.
    pub keystores: Vec<KeystoreConfig>,
}

/// Kind of key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeystoreKind {
    /// One PKCS#12 file.
    P12,
    /// An Acra keystore directory.
    Acra,
    /// Any single file kept byte for byte (nodectl's `cn-config.yaml`, Tessellation's
    /// `id_ecdsa.hex`, ...): what a key needs beside it to be usable, restored like a P12.
    File,
}

impl KeystoreKind {
    /// The name used in config and sidecars.
    pub fn as_str(self) -> &'static str {
        match self {
            KeystoreKind::P12 => "p12",
            KeystoreKind::Acra => "acra",
            KeystoreKind::File => "file",
        }
    }
}

/// One keystore on a node.
#[derive(Debug, Clone)]
pub struct KeystoreConfig {
    /// Its unique name.
    pub name: String,
    /// What it is.
    pub kind: KeystoreKind,
    /// Absolute remote path: the P12 file, or the Acra keys directory.
    pub path: String,
    /// P12 only.
    pub password: Option<Secret>,
    /// Remote path of nodectl's cn-config.yaml (P12 only).
    pub nodectl_config: Option<String>,
    /// Size cap for fetching: the file (P12) or the whole tree (Acra).
    pub max_size: u64,
    /// Acra: the public keys directory, when it is not `path`.
    pub public_path: Option<String>,
    /// Acra: keystore version given in the config (else detected).
    pub acra_version: Option<u8>,
    /// Acra: cap on the number of files in the tree.
    pub max_files: u64,
    /// Acra: the master key (`ACRA_MASTER_KEY`, base64), read on the agent, never from the node.
    pub master_key: Option<Secret>,
    /// What `prune` keeps (the keystore's own, else the top-level one).
    pub retention: Retention,
}

impl Config {
    /// Reads and validates a config file, and opens the signing key and allowed_signers.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        // Its hooks are shell commands (and the daemon re-reads it): nobody else may write it.
        perms::check_file(path, perms::FileKind::Config).map_err(|m| ConfigError::whole(path, m))?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::whole(path, format!("cannot read config file: {e}")))?;
        let mut config = Config::parse(&text, path)?;
        config.store.keys = Some(std::sync::Arc::new(config.signing.open(path)?));
        Ok(config)
    }

    /// Validates config text; `source` is used in error messages and to resolve relative paths.
    /// Reads no key: `store.keys` stays `None` (see [`Config::load`]).
    pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigError> {
        validate::parse(text, source)
    }

    /// The node with this name.
    pub fn node(&self, name: &str) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// Picks the config file: the explicit one (flag or env), else the first default that exists.
pub fn resolve_path(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    DEFAULT_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            ConfigError::whole(
                Path::new(DEFAULT_PATHS[0]),
                format!(
                    "no config file: pass --config FILE or set COLDKEEP_CONFIG (looked for {})",
                    DEFAULT_PATHS.join(", ")
                ),
            )
        })
}

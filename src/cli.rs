//! Command-line interface (clap derive). Only argument shapes live here.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

fn duration(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration(text)
}

/// `--shard I/N`: this run takes the nodes whose stable name hash falls in shard I of N (I from 0,
/// as Kubernetes' `JOB_COMPLETION_INDEX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, from 0.
    pub index: u32,
    /// How many shards.
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("`{s}` is not a shard: expected I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// coldkeep keeps server key material safe: it fetches PKCS#12 keys from your nodes over SSH
/// (strict host-key checking), encrypts them with age to your public keys, and keeps them in a
/// cold-storage directory and its replicas. Backing up never needs a private key.
#[derive(Debug, Parser)]
#[command(name = "coldkeep", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Config file [default: ./coldkeep.yaml, then /etc/coldkeep/coldkeep.yaml]
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "COLDKEEP_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More log output (-v info, -vv debug); RUST_LOG overrides
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// How long a writing command waits for another writer's store lock (e.g. 30s, 5m)
    #[arg(long, global = true, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub lock_wait: Duration,

    #[command(subcommand)]
    /// The subcommand.
    pub command: Command,
}

const AFTER_HELP: &str = "\
Typical use:
  coldkeep config check                 validate the config and show what it covers
  coldkeep backup                       back up every node (exit 1 if any failed)
  coldkeep list                         what is stored (no private key needed)
  coldkeep verify --identity key.txt    decrypt in memory and check every file hash
  coldkeep verify --live --node NAME    is the latest backup the key the node uses now?
  coldkeep check                        do backup names match configs and nodectl's cn-config.yaml?
  coldkeep restore --node NAME -i KEY   put the latest backup back (asks before replacing)
  coldkeep prune --dry-run              what retention would remove, and why the rest stays
  coldkeep status --max-age 36h         monitoring check: exit 1 when a backup is old or failing
  coldkeep daemon                       scheduled backups, retention, metrics, config reload
  coldkeep demo                         a throwaway node on loopback, end to end

Exit codes: 0 all done, 1 some node/keystore/artifact failed, 2 usage or config error.";

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
// Variant docs would become per-value help in `--help`; the value names say it all.
#[allow(missing_docs)]
pub enum LogFormat {
    Text,
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch key material from nodes and store it encrypted
    Backup(BackupArgs),
    /// Show stored artifacts (works without any private key)
    List(ListArgs),
    /// Check stored artifacts (hashes and headers; with --identity, decrypt and check contents)
    Verify(VerifyArgs),
    /// Push a backup back to its node, after name checks, keeping a copy of what it replaces
    Restore(RestoreArgs),
    /// Pre-install check: do backed-up P12 names match the node configs and nodectl?
    Check(CheckArgs),
    /// Remove artifacts the retention policy no longer keeps
    Prune(PruneArgs),
    /// Per node/keystore: last success, last failure, age of the newest backup
    Status(StatusArgs),
    /// Run scheduled backups and retention until SIGTERM/SIGINT
    Daemon(DaemonArgs),
    /// USB hardware keys: which known devices are attached
    #[command(subcommand)]
    Hid(HidCommand),
    /// OnlyKey: store its typed backup, restore it to a device
    #[command(subcommand)]
    Onlykey(OnlyKeyCommand),
    /// BitBox02: list, check and create its microSD backups through the device; store and
    /// check a card's backups
    #[command(subcommand)]
    Bitbox02(BitBox02Command),
    /// Config file commands
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Connect to a node and print the `keystores:` YAML to paste for it (writes nothing)
    Discover(DiscoverArgs),
    /// Run backup -> list -> verify against a throwaway sshd node on loopback
    Demo(DemoArgs),
    /// Start here: write a commented config, create the store, optionally make an age identity
    Init(InitArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one page per command into a directory
    Man(ManArgs),
}

/// Which nodes to act on.
#[derive(Debug, Args, Clone, Default)]
pub struct NodeSelector {
    /// Only this node (repeatable)
    #[arg(long = "node", value_name = "NAME")]
    pub nodes: Vec<String>,
    /// Only nodes with this label (repeatable; a node needs any of them)
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
    /// Only shard I of N (0-based), by a stable hash of the node name
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
}

#[derive(Debug, Args)]
/// Arguments of `coldkeep backup`.
pub struct BackupArgs {
    #[command(flatten)]
    /// Which nodes.
    pub select: NodeSelector,
    /// Connect and fetch, check the material, but write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Store a new artifact even when the material is unchanged since the latest one
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Policy per keystore (`retention:` in the config, top level or per keystore), as restic's forget:
keep_last N, keep_hourly/daily/weekly/monthly/yearly N (the newest artifact of each of the N most
recent periods that have one). Never removed: a keystore's newest backup and its newest intact
one. pre-restore artifacts are kept unless keep_pre_restore N is set. Without any keep_* rule
nothing is removed.")]
/// Arguments of `coldkeep prune`.
pub struct PruneArgs {
    /// Which nodes.
    #[command(flatten)]
    pub select: NodeSelector,
    /// Print what would be kept and removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
/// Arguments of `coldkeep status`.
pub struct StatusArgs {
    /// Exit 1 when a keystore's newest backup is older than this (e.g. 36h), or a hardware key's
    /// last check (unless its `check_every` says otherwise)
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub max_age: Option<Duration>,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Each node is backed up on its schedule (`schedule:` on the node, else the first of its labels in
`label_schedules:`, else the top-level `schedule:`; crontab syntax), never two runs of one node at
once; retention follows each run. The config file is watched: a valid edit takes effect, an
invalid one is logged and the old config stays. SIGTERM/SIGINT: no new runs, in-flight ones
finish (up to --shutdown-timeout), exit 0.")]
/// Arguments of `coldkeep daemon`.
pub struct DaemonArgs {
    #[command(flatten)]
    /// Which nodes.
    pub select: NodeSelector,
    /// How long to wait for in-flight backups on SIGTERM/SIGINT
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration)]
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Args)]
/// Arguments of `coldkeep list`.
pub struct ListArgs {
    /// Which nodes.
    #[command(flatten)]
    pub select: NodeSelector,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
/// Arguments of `coldkeep verify`.
pub struct VerifyArgs {
    /// Which nodes.
    #[command(flatten)]
    pub select: NodeSelector,
    /// age identity file or SSH private key: decrypt in memory and check every file
    #[arg(long, short = 'i', value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Compare the latest backup with the file the node has now (needs one --node)
    #[arg(long, requires = "nodes")]
    pub live: bool,
    /// Adopt a store that predates signing: sign each unsigned artifact made before --before
    /// that passes deep verification with --identity (never one with a bad or foreign signature,
    /// nor one made after signing began); the candidates are shown first and confirmed
    #[arg(long, requires_all = ["identity", "before"], conflicts_with = "live")]
    pub sign_unsigned: bool,
    /// With --sign-unsigned: only artifacts made before this time (RFC 3339, or a date
    /// YYYY-MM-DD meaning its start in UTC), e.g. when you started signing
    #[arg(long, value_name = "TIME", requires = "sign_unsigned", value_parser = parse_time)]
    pub before: Option<chrono::DateTime<chrono::Utc>>,
    /// With --sign-unsigned: sign the candidates without asking (for scripts)
    #[arg(long, requires = "sign_unsigned")]
    pub yes: bool,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
/// `coldkeep hid ...`.
pub enum HidCommand {
    /// The known hardware keys present (model, path, serial, interface)
    List {
        /// Print JSON on stdout
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
/// `coldkeep onlykey ...`.
pub enum OnlyKeyCommand {
    /// Store a saved or piped backup text (what the OnlyKey types when button 1 is held)
    #[command(after_help = "\
The text is checked (armor, base64 lines, the chained SHA-256 check line) before anything is
stored, encrypted, under <store>/hardware/NAME/. It is read into memory only: pipe it
(`coldkeep onlykey import - --name ok1 < /dev/stdin`) rather than saving it in a file if you can,
and delete any file you saved it in.")]
    Import {
        /// The backup text file, or `-` for standard input
        #[arg(value_name = "FILE|-", default_value = "-")]
        file: String,
        /// Name of this hardware key in the store
        #[arg(long, value_name = "NAME")]
        name: String,
    },
    /// Capture the backup as the OnlyKey types it into this terminal (echo off)
    Capture {
        /// Name of this hardware key in the store
        #[arg(long, value_name = "NAME")]
        name: String,
    },
    /// Prove a backup opens: decrypt it offline and walk its records (counts only, no values)
    #[command(after_help = "\
Decrypts in memory with the backup passphrase (--passphrase-file/--passphrase-env), the 32-byte
ECC backup key in hex (--key-file) or the RSA backup key in PEM (--rsa-key), and walks the records
as the firmware's restore does. It proves the passphrase or key opens this backup; it cannot prove
a device will accept it (the device must hold the same passphrase or key). Exit 0: opens and every
record is well-formed; 1: wrong passphrase or key, or damaged; 2: usage.")]
    Verify {
        /// The backup text file, or `-` for standard input (not with --name)
        #[arg(value_name = "FILE|-", conflicts_with = "name")]
        file: Option<String>,
        /// A stored OnlyKey backup's name (with --identity)
        #[arg(long, value_name = "NAME", requires = "identity")]
        name: Option<String>,
        /// age identity file or SSH private key that decrypts the stored artifact
        #[arg(long, short = 'i', value_name = "FILE")]
        identity: Option<PathBuf>,
        /// Artifact id (or a unique prefix), or `latest`
        #[arg(long, value_name = "ID", default_value = "latest")]
        backup: String,
        /// File holding the backup passphrase (first line)
        #[arg(long, value_name = "FILE", group = "backup_key")]
        passphrase_file: Option<PathBuf>,
        /// Environment variable holding the backup passphrase
        #[arg(long, value_name = "VAR", group = "backup_key")]
        passphrase_env: Option<String>,
        /// File holding the 32-byte ECC backup key in hex
        #[arg(long, value_name = "FILE", group = "backup_key")]
        key_file: Option<PathBuf>,
        /// File holding the RSA backup key in PEM
        #[arg(long, value_name = "FILE", group = "backup_key")]
        rsa_key: Option<PathBuf>,
    },
    /// Restore a stored backup to an OnlyKey over USB (OKRESTORE)
    #[command(after_help = "\
Before restoring: set the same backup passphrase (or backup key) on the device that the backup
was made with, unlock it, and put it in config mode (OnlyKey: hold button 6 for 5 seconds;
OnlyKey DUO: hold button 1; then re-enter the PIN). The backup is decrypted in memory, its check line verified again, then sent in 57-byte
reports, 100 ms apart; the device answers when it has loaded it.")]
    Restore {
        /// Artifact id (or a unique prefix), or `latest` with --name
        #[arg(long, value_name = "ID", default_value = "latest")]
        backup: String,
        /// The hardware key's name in the store (needed with `latest`)
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// age identity file or SSH private key that decrypts the artifact
        #[arg(long, short = 'i', value_name = "FILE")]
        identity: PathBuf,
        /// The hidraw device to use [default: the OnlyKey found]
        #[arg(long, value_name = "PATH")]
        device: Option<String>,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
/// `coldkeep bitbox02 ...`.
pub enum BitBox02Command {
    /// Through the device: the backups on its microSD card (list, check, create)
    #[command(subcommand)]
    Backups(BackupsCommand),
    /// Forget a device's pairing (a reset or replaced BitBox02 is then paired anew)
    Unpair {
        /// The device's name
        #[arg(long, value_name = "NAME")]
        name: String,
        /// The pairing file [default: ~/.config/coldkeep/bitbox02-pairing.json]
        #[arg(long, value_name = "FILE", env = "COLDKEEP_BITBOX02_PAIRING")]
        pairing_file: Option<PathBuf>,
    },
    /// Store a backup folder from the card (named by the backup id, three copies inside)
    Import {
        /// The backup folder on the mounted card
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Name of this hardware key in the store
        #[arg(long, value_name = "NAME")]
        name: String,
    },
    /// The backups on a mounted card: id, name, time, copies intact
    ListCard {
        /// The card's mount point
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Print JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Is the card's backup the same wallet as the one in cold storage, with intact copies?
    CheckCard {
        /// The card's mount point
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The hardware key's name in the store
        #[arg(long, value_name = "NAME")]
        name: String,
        /// age identity file or SSH private key that decrypts the stored backup
        #[arg(long, short = 'i', value_name = "FILE")]
        identity: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
#[command(after_help = "\
The first time a name is used, coldkeep and the device show a pairing code: confirm on the device
only if both show the same code. The pairing is remembered (0600, under ~/.config/coldkeep/); a
device that later answers under this name with another key is refused, as ssh refuses a changed
host key. Every check is recorded, signed, in the store, for `coldkeep status`; a device whose key
is not the one the name's checks were made with is refused unless --new-device says it was reset
or replaced.")]
/// `coldkeep bitbox02 backups ...`.
pub enum BackupsCommand {
    /// The backups on the card: id, name, date
    List(DeviceArgs),
    /// Is there a backup of this device's wallet on its card? (exit 1 when not)
    Check {
        /// The device.
        #[command(flatten)]
        device: DeviceArgs,
        /// Show the backup's name and id on the device for you to confirm (default: silent)
        #[arg(long)]
        confirm_on_device: bool,
        /// This name's device was reset or replaced: record its checks though its key is not
        /// the one of the name's last check
        #[arg(long)]
        new_device: bool,
    },
    /// Write a new backup to the card (confirm the date and "Create backup?" on the device)
    Create {
        /// The device.
        #[command(flatten)]
        device: DeviceArgs,
        /// This name's device was reset or replaced: record its checks though its key is not
        /// the one of the name's last check
        #[arg(long)]
        new_device: bool,
    },
}

#[derive(Debug, Args)]
/// Which BitBox02, and how long to wait for its user.
pub struct DeviceArgs {
    /// The device's name: its pairing, its check records, its backups in the store
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// The hidraw device [default: the one BitBox02 attached]; wins over a simulator
    #[arg(long, value_name = "PATH")]
    pub device: Option<String>,
    /// A BitBox02 simulator (raw reports over TCP, e.g. 127.0.0.1:15423) instead of USB
    #[arg(long, value_name = "HOST:PORT", env = "COLDKEEP_BITBOX02_SIMULATOR")]
    pub simulator: Option<String>,
    /// How long to wait for you on the device (password, pairing code, confirmations)
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration)]
    pub timeout: Duration,
    /// The pairing file [default: ~/.config/coldkeep/bitbox02-pairing.json]
    #[arg(long, value_name = "FILE", env = "COLDKEEP_BITBOX02_PAIRING")]
    pub pairing_file: Option<PathBuf>,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
/// `coldkeep config ...`.
pub enum ConfigCommand {
    /// Validate the config and print a summary (nodes, keystores, recipients)
    Check {
        /// Print JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Print the sudoers rules for `become: sudo`: the node helper with fixed words, nothing else
    Sudoers {
        /// Only these nodes [default: every node]
        #[arg(long = "node", value_name = "NAME")]
        nodes: Vec<String>,
        /// Add the restore rule (default: the read rule only, for backup, verify, check, discover)
        #[arg(long)]
        restore: bool,
    },
    /// Print a node's policy file for the node helper: the keystores it may touch, and how
    NodePolicy {
        /// The node
        #[arg(
            long,
            value_name = "NAME",
            required_unless_present = "discover",
            conflicts_with = "discover"
        )]
        node: Option<String>,
        /// Allow restores: `restore: true` with the owner (from the latest backup) and loosest mode
        #[arg(long, conflicts_with = "discover")]
        restore: bool,
        /// A read-only policy for `coldkeep discover` on a node not set up yet
        #[arg(long)]
        discover: bool,
        /// With --discover: nodectl's config [default: /var/tessellation/nodectl/cn-config.yaml]
        #[arg(long, value_name = "PATH", requires = "discover")]
        nodectl_config: Option<String>,
        /// With --discover: an Acra keys directory discover may read (repeatable)
        #[arg(long, value_name = "PATH", requires = "discover")]
        acra_dir: Vec<String>,
    },
}

#[derive(Debug, Args)]
/// Arguments of `coldkeep discover`.
pub struct DiscoverArgs {
    /// A configured node
    #[arg(long, value_name = "NAME", conflicts_with = "host")]
    pub node: Option<String>,
    /// A node not in the config yet (reached with the config's `ssh:` settings; no node needs
    /// to be configured)
    #[arg(long, value_name = "HOST", requires = "user")]
    pub host: Option<String>,
    /// SSH port with --host
    #[arg(long, default_value_t = 22)]
    pub port: u16,
    /// SSH user with --host
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Read through sudo (`sudo`) or not (`none`), whatever the config says: nodectl's
    /// cn-config.yaml is root 0600 and a migrated P12 root:root 0400
    #[arg(long = "become", value_name = "sudo|none")]
    pub become_: Option<String>,
    /// The name the printed entry gets [default: the configured name, or the host]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// nodectl's config on the node [default: /var/tessellation/nodectl/cn-config.yaml]
    #[arg(long, value_name = "PATH")]
    pub nodectl_config: Option<String>,
    /// nodectl's passphrase key on the node, proposed when cn-config.yaml says `encryption:
    /// True` [default: /etc/security/cnngsenc.conf]
    #[arg(long, value_name = "PATH")]
    pub cnngsenc_conf: Option<String>,
    /// Acra keys directory to look for (repeatable) [default: the usual places]
    #[arg(long, value_name = "PATH")]
    pub acra_dir: Vec<String>,
}

#[derive(Debug, Args)]
/// Arguments of `coldkeep demo`.
pub struct DemoArgs {
    /// Directory for the demo (keys, node tree, store, config) [default: a new temp directory]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Writes the config given by --config (default ./coldkeep.yaml) from the documented template, with
the recipients filled in and the example nodes commented out, and creates the store (0700).
Nothing that exists is overwritten, and a refused or failed init leaves nothing behind.

--identity-out makes a new age identity (0600) whose public key becomes a recipient: it is the
key that decrypts every backup, so move it off this machine; backing up never needs it.

Then add your nodes to the config and run `coldkeep config check` and `coldkeep backup --dry-run`.")]
/// `coldkeep init`: what to create (the config path is the global `--config`).
pub struct InitArgs {
    /// The store directory to create (absolute; an existing one must be empty)
    #[arg(long, value_name = "DIR", default_value = crate::init::DEFAULT_STORE)]
    pub store: PathBuf,
    /// Who can decrypt backups: an age recipient (age1...) or SSH public key (repeatable)
    #[arg(long = "recipient", short = 'r', value_name = "R")]
    pub recipients: Vec<String>,
    /// Generate a new age identity into this file (0600) and add its public key as a recipient
    #[arg(long, value_name = "PATH")]
    pub identity_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = "\
bash:  coldkeep completions bash > /etc/bash_completion.d/coldkeep
       (this shell only: source <(coldkeep completions bash))
zsh:   coldkeep completions zsh > \"${fpath[1]}/_coldkeep\"
fish:  coldkeep completions fish > ~/.config/fish/completions/coldkeep.fish")]
/// `coldkeep completions`: which shell's script to print.
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `coldkeep man`: stdout, or a directory of pages.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write coldkeep.1 and one page per subcommand (coldkeep-backup.1, ...) into this directory
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Steps, stopping at the first failure with nothing changed on the node:
  1. pick the artifact (`latest` refuses one stored without its identity checked: name it with
     --backup ID), decrypt it in memory and verify every hash and the manifest
  2. name checks: backup file name = configured path's name; with nodectl_config, the node's
     current cn-config.yaml (`global` resolved key by key, as nodectl does): each enabled
     profile whose P12 is in this directory names this file or another configured keystore,
     and some profile uses this file; the P12 opens with the configured password
  3. passphrase checks (nodectl_config): the P12 opens with the passphrase of every profile that
     uses it in the node's current cn-config.yaml, and carries its p12_key_alias where the file
     names one (v2.0.0/v2.1.0); else refused naming the profile, unless
     --accept-passphrase-mismatch (an encrypted or unstored passphrase: `not checked`, and why)
  4. the target directory exists (install the node with nodectl first, same P12 file name)
  5. identical file on the node: nothing to do; a different file is saved to the store as a
     pre-restore artifact, and replaced only with --yes or an interactive yes
  6. upload to a temp name beside the target with the final mode, mv -f over it, read back
--dry-run prints the plan: the name-check table, the passphrase checks and every change.

Acra keystores: the whole tree, names kept exactly. A missing or empty keys directory is
filled; a non-empty one that differs only with --replace, after it was saved as a pre-restore
artifact. The tree is uploaded into a temp directory beside the target, read back, then swapped
in by directory renames, so a failure leaves the old keystore in place.")]
/// Arguments of `coldkeep restore`.
pub struct RestoreArgs {
    /// The node to restore to
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// The keystore (needed when the node has more than one)
    #[arg(long, value_name = "NAME")]
    pub keystore: Option<String>,
    /// Artifact id (or a unique prefix), or `latest`
    #[arg(long, value_name = "ID", default_value = "latest")]
    pub backup: String,
    /// Take the backup from another node's artifacts (disaster recovery onto a replacement host)
    #[arg(long, value_name = "NODE")]
    pub from_node: Option<String>,
    /// age identity file or SSH private key that decrypts the artifact
    #[arg(long, short = 'i', value_name = "FILE")]
    pub identity: PathBuf,
    /// Replace a different existing file without asking
    #[arg(long)]
    pub yes: bool,
    /// Acra: restore over a non-empty keystore (its current content is saved as a pre-restore
    /// artifact first, then the directories are swapped by rename)
    #[arg(long)]
    pub replace: bool,
    /// P12: restore even when a profile in the node's current cn-config.yaml cannot open the
    /// backup with its passphrase (or alias); set the passphrase with nodectl afterwards
    #[arg(long)]
    pub accept_passphrase_mismatch: bool,
    /// Run the checks and print the plan; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Acra through the node helper: finish a restore that was cut off between its swaps, putting
    /// the previous keystore back whole (`back`) or the restored one in (`forward`); nothing else
    /// is done (no backup is read)
    #[arg(long, value_name = "WAY", conflicts_with_all = ["dry_run", "replace"])]
    pub interrupted: Option<Finish>,
}

/// Which way `restore --interrupted` finishes a swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[allow(missing_docs)]
pub enum Finish {
    Back,
    Forward,
}

#[derive(Debug, Args)]
/// Arguments of `coldkeep check`.
pub struct CheckArgs {
    /// Which nodes.
    #[command(flatten)]
    pub select: NodeSelector,
    /// Read nodectl's config from this local file instead of from the nodes (provisioning)
    #[arg(long, value_name = "FILE")]
    pub nodectl_config: Option<PathBuf>,
    /// Also decrypt the latest backups: does the P12 open with the configured password?
    #[arg(long, short = 'i', value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// `--before`: RFC 3339 (`2026-01-31T12:00:00Z`), or a date (`2026-01-31`, its start in UTC).
fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        .map_err(|_| format!("{text:?} is not a time (2026-01-31T12:00:00Z) or a date (2026-01-31)"))
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// `restore --help` lists the steps a restore takes now (the passphrase step, the `latest`
    /// rule), not the older "nodectl's key_name for every profile".
    #[test]
    fn restore_help_says_what_a_restore_checks() {
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("restore")
            .expect("restore exists")
            .render_long_help()
            .to_string();
        for step in [
            "passphrase of every profile",
            "--accept-passphrase-mismatch",
            "`latest` refuses one stored without its identity checked",
            "--dry-run prints the plan",
        ] {
            assert!(help.contains(step), "{step:?} in\n{help}");
        }
        assert!(!help.contains("for every profile (when"), "{help}");
    }
}

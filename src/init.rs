//! `coldkeep init`: a first config from the documented template (`config/coldkeep.yaml`), an age
//! identity when the operator asks for one, the Ed25519 signing key and allowed_signers file
//! beside the config (every artifact is signed), and an empty store directory.
//!
//! Never prints and never overwrites: every path is checked before anything is written, files are
//! created with `create_new`, and whatever this run created is removed again when a later step
//! fails, so a refused or failed init leaves the machine as it was. The config is written last and
//! validated with the same parser `config check` uses before it is written.

use crate::config::{Config, ConfigError, Recipient};
use age::secrecy::ExposeSecret;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The documented config template, compiled in so `init` writes exactly what the README shows.
pub const TEMPLATE: &str = include_str!("../config/coldkeep.yaml");

/// Where the store goes when `--store` is not given (the template's and the package's path).
pub const DEFAULT_STORE: &str = "/var/lib/coldkeep/store";

/// What to create.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The config file to write (must not exist).
    pub config: PathBuf,
    /// The store directory: created 0700; an existing one must be an empty directory.
    pub store: PathBuf,
    /// Public keys that can decrypt backups, as given on the command line.
    pub recipients: Vec<String>,
    /// Where to write a new age identity (0600, must not exist); its public key is added to the
    /// recipients.
    pub identity_out: Option<PathBuf>,
}

/// What `init` created, for the command to report.
#[derive(Debug, Clone)]
pub struct InitOutcome {
    /// The config file written.
    pub config: PathBuf,
    /// The store directory (absolute).
    pub store: PathBuf,
    /// Whether the store directory was created (false: it existed, empty).
    pub store_created: bool,
    /// Every recipient in the config, in order.
    pub recipients: Vec<String>,
    /// The identity file written and its public key (age1...), when one was asked for.
    pub identity: Option<(PathBuf, String)>,
    /// The signing key written (0600, beside the config, never in the store).
    pub signing_key: PathBuf,
    /// Its fingerprint (`SHA256:...`, as `ssh-keygen -lf` prints it), to compare on other hosts.
    pub signing_fingerprint: String,
    /// The allowed_signers file written, trusting the new key.
    pub allowed_signers: PathBuf,
}

/// Why `init` refused or failed. The refusals ([`InitError::is_usage`]) change nothing.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A file init would write is already there.
    #[error("{} already exists: init never overwrites anything; move it away or choose another path", .0.display())]
    Exists(PathBuf),
    /// Nothing could decrypt the backups.
    #[error(
        "no recipient: give --recipient (an age1... key or an SSH public key, repeatable) or \
         --identity-out FILE to make a new age identity"
    )]
    NoRecipient,
    /// A `--recipient` that is not a public key coldkeep can encrypt to.
    #[error("--recipient {text:?}: {reason}")]
    BadRecipient {
        /// The value as given.
        text: String,
        /// What was expected.
        reason: String,
    },
    /// The store path holds something already.
    #[error(
        "store {} is not an empty directory: init only creates a new store (to use an existing \
         one, write its path into the config by hand)",
        .0.display()
    )]
    StoreNotEmpty(PathBuf),
    /// The folder `--identity-out` names does not exist (or is not a folder).
    #[error(
        "--identity-out {}: the folder {} {why}; create it (or mount the medium the key goes to) and run \
         init again. Nothing was written.",
        .identity.display(),
        .folder.display()
    )]
    IdentityFolder {
        /// The identity path.
        identity: PathBuf,
        /// Its folder.
        folder: PathBuf,
        /// `does not exist`, `is not a folder`.
        why: &'static str,
    },
    /// The identity would sit beside the backups it opens.
    #[error(
        "the identity {} would be inside the store {}: keep the key that decrypts the backups apart \
         from them",
        .identity.display(),
        .store.display()
    )]
    IdentityInStore {
        /// The identity path.
        identity: PathBuf,
        /// The store path.
        store: PathBuf,
    },
    /// The signing key or allowed_signers would sit inside the store they protect.
    #[error(
        "{} would be inside the store {}: whoever can write the store must not reach the signing \
         key or allowed_signers; put the config (they go beside it) outside the store",
        .path.display(),
        .store.display()
    )]
    SigningInStore {
        /// The signing key or allowed_signers path.
        path: PathBuf,
        /// The store path.
        store: PathBuf,
    },
    /// A path that cannot be written into a YAML config as text.
    #[error("{0:?} is not valid UTF-8, or contains `${{`; choose a plainer path")]
    UnusablePath(PathBuf),
    /// The compiled-in template lost a line init fills in (a bug caught by the unit tests).
    #[error("the config template has no {0} line; init cannot fill it in")]
    Template(&'static str),
    /// The generated config does not validate (a bug: nothing was written).
    #[error("the generated config does not validate (nothing was written): {0}")]
    Invalid(#[source] ConfigError),
    /// A filesystem operation failed (what this run had created was removed again). The OS
    /// error is the source, printed once after this by the error chain.
    #[error("{what} {}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl InitError {
    /// Whether this is a refusal about the request itself (exit 2) rather than a failure.
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            InitError::Io { .. } | InitError::Template(_) | InitError::Invalid(_)
        )
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InitError {
    let path = path.to_path_buf();
    move |source| InitError::Io { what, path, source }
}

/// One file init writes, in order; the config comes last.
struct NewFile {
    path: PathBuf,
    contents: Zeroizing<Vec<u8>>,
    mode: u32,
    /// Read by the service that writes the store (the signing key): owned like the store.
    store_owned: bool,
}

/// Checks everything, then writes the identity (if asked), creates the store and writes the
/// config. On any error after the first write, what this run created is removed again.
pub fn init(opts: &InitOptions) -> Result<InitOutcome, InitError> {
    let absolute = |p: &Path| std::path::absolute(p).map_err(io("resolving", p));
    let config_path = absolute(&opts.config)?;
    let store = absolute(&opts.store)?;
    let identity_path = opts.identity_out.as_deref().map(absolute).transpose()?;
    // Beside the config (the template's /etc/coldkeep/ layout), which the operator protects.
    let config_dir = config_path.parent().unwrap_or(Path::new("/"));
    let signing_key = config_dir.join("signing_key");
    let allowed_signers = config_dir.join("allowed_signers");

    let mut recipients = Vec::new();
    for text in &opts.recipients {
        let parsed = Recipient::parse(text).map_err(|reason| InitError::BadRecipient {
            text: text.clone(),
            reason,
        })?;
        if !recipients.contains(&parsed.as_str().to_string()) {
            recipients.push(parsed.as_str().to_string());
        }
    }
    if recipients.is_empty() && identity_path.is_none() {
        return Err(InitError::NoRecipient);
    }
    for path in [&config_path, &signing_key, &allowed_signers]
        .into_iter()
        .chain(identity_path.as_ref())
    {
        if path.symlink_metadata().is_ok() {
            return Err(InitError::Exists(path.clone()));
        }
    }
    // Followed if a symlink: pointing the store at another disk this way is common.
    let store_created = match fs::metadata(&store) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(io("checking", &store)(e)),
        Ok(meta) if meta.is_dir() && is_empty_dir(&store)? => false,
        Ok(_) => return Err(InitError::StoreNotEmpty(store)),
    };
    if let Some(identity) = &identity_path
        && inside(identity, &store)
    {
        return Err(InitError::IdentityInStore {
            identity: identity.clone(),
            store,
        });
    }
    if let Some(identity) = &identity_path {
        let folder = identity.parent().unwrap_or(Path::new("/")).to_path_buf();
        let why = match fs::metadata(&folder) {
            Ok(meta) if meta.is_dir() => None,
            Ok(_) => Some("is not a folder"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("does not exist"),
            Err(e) => return Err(io("checking", &folder)(e)),
        };
        if let Some(why) = why {
            return Err(InitError::IdentityFolder {
                identity: identity.clone(),
                folder,
                why,
            });
        }
    }
    for path in [&signing_key, &allowed_signers] {
        if inside(path, &store) {
            return Err(InitError::SigningInStore {
                path: path.clone(),
                store,
            });
        }
    }

    let mut files = Vec::new();
    let mut identity = None;
    if let Some(path) = &identity_path {
        let key = age::x25519::Identity::generate();
        let public = key.to_public().to_string();
        let text = format!(
            "# created: {}\n# public key: {public}\n{}\n",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            key.to_string().expose_secret()
        );
        files.push(NewFile {
            path: path.clone(),
            contents: Zeroizing::new(text.into_bytes()),
            mode: 0o600,
            store_owned: false,
        });
        if !recipients.contains(&public) {
            recipients.push(public.clone());
        }
        identity = Some((path.clone(), public));
    }

    // Every artifact is signed: the key (0600, readable by the service that writes the store)
    // and the allowed_signers file trusting it, for coldkeep and for `ssh-keygen -Y verify`.
    let signer = crate::sign::Signer::generate();
    let signing_fingerprint = signer.fingerprint();
    files.push(NewFile {
        path: signing_key.clone(),
        contents: Zeroizing::new(signer.to_openssh().as_bytes().to_vec()),
        mode: 0o600,
        store_owned: true,
    });
    let allowed = format!(
        "coldkeep namespaces=\"{}\" {}\n",
        crate::sign::NAMESPACE,
        signer.public_line()
    );
    files.push(NewFile {
        path: allowed_signers.clone(),
        contents: Zeroizing::new(allowed.into_bytes()),
        mode: 0o644,
        store_owned: false,
    });

    let text = render_config(TEMPLATE, &store, &recipients, (&signing_key, &allowed_signers))?;
    Config::parse(&text, &config_path).map_err(InitError::Invalid)?;
    files.push(NewFile {
        path: config_path.clone(),
        contents: Zeroizing::new(text.into_bytes()),
        mode: 0o644,
        store_owned: false,
    });

    let mut created = Created::default();
    let result = write_all(&files, &store, store_created, &mut created);
    if let Err(e) = result {
        created.undo();
        return Err(e);
    }
    Ok(InitOutcome {
        config: config_path,
        store,
        store_created,
        recipients,
        identity,
        signing_key,
        signing_fingerprint,
        allowed_signers,
    })
}

/// Whether `file` would be written inside `dir`: by the paths as given, and by the directories
/// they really name (a store reached through a symlink or a `..` is the same directory).
fn inside(file: &Path, dir: &Path) -> bool {
    if file.starts_with(dir) {
        return true;
    }
    let (Some(parent), Some(name)) = (file.parent(), file.file_name()) else {
        return false;
    };
    // A store that does not exist yet cannot hold an existing parent; a parent that does not
    // exist cannot be written into, so the identity write fails there anyway.
    match (fs::canonicalize(parent), fs::canonicalize(dir)) {
        (Ok(parent), Ok(dir)) => parent.join(name).starts_with(dir),
        _ => false,
    }
}

fn is_empty_dir(dir: &Path) -> Result<bool, InitError> {
    Ok(fs::read_dir(dir).map_err(io("reading", dir))?.next().is_none())
}

/// What this run created, removed again on failure (newest first).
#[derive(Default)]
struct Created {
    files: Vec<PathBuf>,
    store: Option<PathBuf>,
}

impl Created {
    fn undo(&self) {
        for f in self.files.iter().rev() {
            let _ = fs::remove_file(f);
        }
        if let Some(store) = &self.store {
            // Only the empty directory this run made: never anything with content.
            let _ = fs::remove_dir(store);
        }
    }
}

fn write_all(
    files: &[NewFile],
    store: &Path,
    store_created: bool,
    created: &mut Created,
) -> Result<(), InitError> {
    let (config, others) = files.split_last().expect("the config is always planned");
    // The signing key and allowed_signers go beside the config: its directory comes first.
    if let Some(parent) = config.path.parent() {
        fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    for file in others {
        write_new(file, created)?;
    }
    if store_created {
        fs::create_dir_all(store.parent().unwrap_or(Path::new("/"))).map_err(io("creating", store))?;
        // 0700 from the start: no chmod by path afterwards, which would follow a symlink
        // swapped in by whoever owns the parent (see `adopt_parent_owner`).
        fs::DirBuilder::new()
            .mode(0o700)
            .create(store)
            .map_err(io("creating", store))?;
        created.store = Some(store.to_path_buf());
        adopt_parent_owner(store)?;
    } else {
        fs::set_permissions(store, fs::Permissions::from_mode(0o700)).map_err(io("chmod 0700", store))?;
    }
    for file in others.iter().filter(|f| f.store_owned) {
        share_owner(store, &file.path)?;
    }
    write_new(config, created)
}

/// Run as root to set up a service user's store (the package's `/var/lib/coldkeep` belongs to the
/// `coldkeep` user), a new store takes the owner of its parent directory, so the service can
/// write it; otherwise it would be root's and every backup would fail. The parent's owner can
/// swap the new directory for a symlink before the chown, so nothing here follows a symlink: a
/// swapped-in link only has its own owner changed.
fn adopt_parent_owner(dir: &Path) -> Result<(), InitError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    let own = fs::symlink_metadata(dir).map_err(io("reading", dir))?;
    let above = fs::metadata(parent).map_err(io("reading", parent))?;
    if own.uid() == 0 && above.uid() != 0 {
        std::os::unix::fs::lchown(dir, Some(above.uid()), Some(above.gid())).map_err(io("chown", dir))?;
    }
    Ok(())
}

/// Run as root for a service user's store, the signing key takes the store's owner (still 0600):
/// the service signs every artifact it writes, so it must be able to read the key.
/// The chown goes through a handle opened without following links, on the file this run
/// created (root's, one link): if whoever can write the config's directory swapped in a symlink
/// or another file, root hands nothing over.
fn share_owner(store: &Path, file: &Path) -> Result<(), InitError> {
    use std::os::unix::fs::OpenOptionsExt;
    let owner = fs::symlink_metadata(store).map_err(io("reading", store))?;
    let handle = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(file)
        .map_err(io("opening", file))?;
    let own = handle.metadata().map_err(io("reading", file))?;
    if !own.is_file() || own.nlink() != 1 {
        return Err(io("chown", file)(std::io::Error::other(
            "not the file this run created (replaced while init ran?)",
        )));
    }
    if own.uid() == 0 && owner.uid() != 0 {
        std::os::unix::fs::fchown(&handle, Some(owner.uid()), Some(owner.gid()))
            .map_err(io("chown", file))?;
    }
    Ok(())
}

/// Creates a file that must not exist, with its final mode from the start, and syncs it.
fn write_new(file: &NewFile, created: &mut Created) -> Result<(), InitError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(file.mode)
        .open(&file.path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => InitError::Exists(file.path.clone()),
            _ => io("creating", &file.path)(e),
        })?;
    created.files.push(file.path.clone());
    f.write_all(&file.contents)
        .and_then(|()| f.sync_all())
        .map_err(io("writing", &file.path))
}

/// A double-quoted YAML scalar (JSON strings are valid YAML); `${` would be expanded as a
/// variable by the config loader, so such paths are refused.
fn quoted_path(path: &Path) -> Result<String, InitError> {
    match path.to_str() {
        Some(s) if !s.contains("${") => Ok(serde_json::to_string(s).expect("a string serialises")),
        _ => Err(InitError::UnusablePath(path.to_path_buf())),
    }
}

/// Fills the template: the store path, the recipients, the signing key and allowed_signers paths
/// (`signing`: key, allowed_signers), and `nodes:` with the examples commented out (so the file is
/// valid before any node is added, and adding one is uncommenting).
pub fn render_config(
    template: &str,
    store: &Path,
    recipients: &[String],
    signing: (&Path, &Path),
) -> Result<String, InitError> {
    let mut out = format!(
        "# Written by `coldkeep init` on {} from the documented template. Add your nodes at the\n\
         # end, then run `coldkeep config check` and `coldkeep backup --dry-run`.\n#\n",
        chrono::Utc::now().format("%Y-%m-%d")
    );
    let mut lines = template.lines().peekable();
    let (mut store_done, mut recipients_done, mut nodes_done) = (false, false, false);
    let (mut key_done, mut allowed_done) = (false, false);
    let mut section = "";
    while let Some(line) = lines.next() {
        if !line.starts_with([' ', '#']) && !line.is_empty() {
            section = line.split(':').next().unwrap_or("");
        }
        if section == "store" && !store_done && line.trim_start().starts_with("path:") {
            out.push_str(&format!("  path: {}\n", quoted_path(store)?));
            store_done = true;
        } else if section == "signing" && !key_done && line.starts_with("  key:") {
            out.push_str(&format!("  key: {}\n", quoted_path(signing.0)?));
            key_done = true;
        } else if section == "signing" && !allowed_done && line.starts_with("  allowed_signers:") {
            out.push_str(&format!("  allowed_signers: {}\n", quoted_path(signing.1)?));
            allowed_done = true;
        } else if section == "encryption" && !recipients_done && line == "  recipients:" {
            out.push_str("  recipients:\n");
            while lines.peek().is_some_and(|l| l.starts_with("    - ")) {
                lines.next();
            }
            for r in recipients {
                let quoted = serde_json::to_string(r).expect("a string serialises");
                out.push_str(&format!("    - {quoted}\n"));
            }
            recipients_done = true;
        } else if line == "nodes:" {
            out.push_str(
                "# Nodes to back up. Examples (remove the leading `#` and edit); a node overrides any\n\
                 # `ssh:` setting above, and its host key must be in known_hosts (or pinned with\n\
                 # `host_key:`) before the first backup.\nnodes:\n",
            );
            for rest in lines.by_ref() {
                out.push_str(&format!("#{rest}\n"));
            }
            nodes_done = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    for (done, what) in [
        (store_done, "`store.path`"),
        (recipients_done, "`encryption.recipients`"),
        (key_done, "`signing.key`"),
        (allowed_done, "`signing.allowed_signers`"),
        (nodes_done, "`nodes:`"),
    ] {
        if !done {
            return Err(InitError::Template(what));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    const SSH: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJS7gvA1ffFRf/ARWSkf2pd1jYeBYSLML3c8AsZLX/r op@laptop";

    fn signing() -> (&'static Path, &'static Path) {
        (Path::new("/k"), Path::new("/a"))
    }

    fn opts(dir: &Path) -> InitOptions {
        InitOptions {
            config: dir.join("etc/coldkeep.yaml"),
            store: dir.join("store"),
            recipients: vec![KEY.to_string()],
            identity_out: None,
        }
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_template_renders_to_a_valid_config_with_our_store_and_recipients() {
        let text = render_config(
            TEMPLATE,
            Path::new("/srv/cold \"keep\""),
            &[KEY.into(), SSH.into()],
            (Path::new("/etc/ck/sk"), Path::new("/etc/ck/allowed")),
        )
        .unwrap();
        let config = Config::parse(&text, Path::new("/etc/coldkeep/coldkeep.yaml")).unwrap();
        assert_eq!(config.store.path, Path::new("/srv/cold \"keep\""));
        let got: Vec<&str> = config.encryption.recipients.iter().map(|r| r.as_str()).collect();
        assert_eq!(got, [KEY, SSH]);
        assert_eq!(config.signing.key, Path::new("/etc/ck/sk"));
        assert_eq!(config.signing.allowed_signers, Path::new("/etc/ck/allowed"));
        assert!(config.nodes.is_empty(), "the examples are commented out");
        // The documentation stays: every comment line of the template is still there.
        for line in TEMPLATE.lines().filter(|l| l.trim_start().starts_with('#')) {
            assert!(text.contains(line), "lost: {line}");
        }
        // Uncommenting the examples gives the template's nodes back.
        let uncommented: String = text
            .lines()
            .skip_while(|l| *l != "nodes:")
            .skip(1)
            .map(|l| format!("{}\n", l.strip_prefix('#').unwrap()))
            .collect();
        assert!(TEMPLATE.ends_with(&uncommented));
    }

    #[test]
    fn a_template_without_the_lines_init_fills_is_an_error_not_a_wrong_config() {
        let broken = TEMPLATE.replace("\nnodes:\n", "\nhosts:\n");
        assert!(matches!(
            render_config(&broken, Path::new("/s"), &[KEY.into()], signing()),
            Err(InitError::Template("`nodes:`"))
        ));
        assert!(matches!(
            render_config(TEMPLATE, Path::new("/a/${HOME}"), &[KEY.into()], signing()),
            Err(InitError::UnusablePath(_))
        ));
        let no_signing = TEMPLATE.replace("\n  allowed_signers:", "\n  # allowed_signers:");
        assert!(matches!(
            render_config(&no_signing, Path::new("/s"), &[KEY.into()], signing()),
            Err(InitError::Template("`signing.allowed_signers`"))
        ));
    }

    #[test]
    fn init_writes_config_store_and_identity_with_tight_modes() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.identity_out = Some(dir.path().join("offline-key.txt"));
        let out = init(&o).unwrap();
        assert!(out.store_created);
        assert_eq!(mode(&out.store), 0o700);
        let (id_path, public) = out.identity.clone().unwrap();
        assert_eq!(mode(&id_path), 0o600);
        let id_text = fs::read_to_string(&id_path).unwrap();
        let secret = id_text
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
            .unwrap();
        let parsed: age::x25519::Identity = secret.parse().unwrap();
        assert_eq!(parsed.to_public().to_string(), public);
        let config = Config::load(&out.config).unwrap();
        let got: Vec<&str> = config.encryption.recipients.iter().map(|r| r.as_str()).collect();
        assert_eq!(got, [KEY, public.as_str()]);
        assert_eq!(config.store.path, out.store);
        // The signing key: private, beside the config, trusted by the allowed_signers written.
        assert_eq!(mode(&out.signing_key), 0o600);
        assert_eq!(out.signing_key, dir.path().join("etc/signing_key"));
        assert_eq!(config.signing.key, out.signing_key);
        assert_eq!(config.signing.allowed_signers, out.allowed_signers);
        let keys = config.store.keys.expect("load opened the signing keys");
        assert_eq!(keys.signer.fingerprint(), out.signing_fingerprint);
        assert!(keys.allowed.trusts(&keys.signer));
        let allowed = fs::read_to_string(&out.allowed_signers).unwrap();
        assert!(allowed.contains(&format!("namespaces=\"{}\"", crate::sign::NAMESPACE)));
    }

    #[test]
    fn init_refuses_to_overwrite_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path());
        fs::create_dir_all(o.config.parent().unwrap()).unwrap();
        fs::write(&o.config, "mine").unwrap();
        assert!(matches!(init(&o), Err(InitError::Exists(_))));
        assert_eq!(fs::read_to_string(&o.config).unwrap(), "mine");
        assert!(!o.store.exists(), "nothing created after a refusal");

        // An existing identity file: refused before the config or the store are made.
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        let id = dir.path().join("key.txt");
        fs::write(&id, "old key").unwrap();
        o.identity_out = Some(id.clone());
        assert!(matches!(init(&o), Err(InitError::Exists(p)) if p == id));
        assert_eq!(fs::read_to_string(&id).unwrap(), "old key");
        assert!(!o.config.exists() && !o.store.exists());

        // An existing signing key or allowed_signers: never replaced (artifacts it signed would
        // stop verifying).
        for name in ["signing_key", "allowed_signers"] {
            let dir = tempfile::tempdir().unwrap();
            let o = opts(dir.path());
            let existing = dir.path().join("etc").join(name);
            fs::create_dir_all(existing.parent().unwrap()).unwrap();
            fs::write(&existing, "old").unwrap();
            assert!(matches!(init(&o), Err(InitError::Exists(p)) if p == existing));
            assert_eq!(fs::read_to_string(&existing).unwrap(), "old");
            assert!(!o.config.exists() && !o.store.exists());
            assert_eq!(fs::read_dir(dir.path().join("etc")).unwrap().count(), 1);
        }

        // A store with something in it.
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path());
        fs::create_dir_all(o.store.join("v1")).unwrap();
        assert!(matches!(init(&o), Err(InitError::StoreNotEmpty(_))));
        assert!(!o.config.exists());
    }

    #[test]
    fn as_root_a_new_store_belongs_to_the_owner_of_its_parent() {
        let dir = tempfile::tempdir().unwrap();
        if fs::metadata(dir.path()).unwrap().uid() != 0 {
            println!("not root: chown cannot be tried here (CI runs as root)");
            return;
        }
        // Like the package's /var/lib/coldkeep, owned by the service user (here: nobody).
        let state = dir.path().join("state");
        fs::create_dir(&state).unwrap();
        std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
        let mut o = opts(dir.path());
        o.store = state.join("store");
        let out = init(&o).unwrap();
        let meta = fs::metadata(&out.store).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
        // The service that writes the store signs with the key: it must be able to read it.
        let key = fs::metadata(&out.signing_key).unwrap();
        assert_eq!((key.uid(), mode(&out.signing_key)), (65534, 0o600));
        assert_eq!(mode(&out.store), 0o700);
        // A store whose parent is root's stays root's.
        let plain = dir.path().join("plain-store");
        let mut o = opts(dir.path());
        o.config = dir.path().join("second.yaml");
        o.store = plain.clone();
        init(&o).unwrap();
        assert_eq!(fs::metadata(&plain).unwrap().uid(), 0);
    }

    #[test]
    fn an_existing_empty_store_or_a_symlink_to_one_is_used_and_made_0700() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path());
        let disk = dir.path().join("other-disk");
        fs::create_dir(&disk).unwrap();
        fs::set_permissions(&disk, fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(&disk, &o.store).unwrap();
        let out = init(&o).unwrap();
        assert!(!out.store_created);
        assert_eq!(mode(&disk), 0o700);
    }

    #[test]
    fn refusals_without_a_usable_recipient_or_with_the_key_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.recipients.clear();
        assert!(matches!(init(&o), Err(InitError::NoRecipient)));
        o.recipients = vec!["age1notakey".into()];
        let err = init(&o).unwrap_err();
        assert!(err.is_usage() && err.to_string().contains("age1notakey"), "{err}");
        o.recipients.clear();
        o.identity_out = Some(o.store.join("key.txt"));
        assert!(matches!(init(&o), Err(InitError::IdentityInStore { .. })));
        assert!(!dir.path().join("etc").exists() && !o.store.exists());
        // The config (and so the signing key beside it) inside the store.
        o.identity_out = None;
        o.recipients = vec![KEY.into()];
        o.config = o.store.join("etc/coldkeep.yaml");
        assert!(matches!(init(&o), Err(InitError::SigningInStore { .. })));
        assert!(!o.store.exists());
    }

    /// The store given through a symlink (the common way to put it on another disk) or with a
    /// `..` in its path is still the same directory: the identity must not land inside it.
    #[test]
    fn the_key_is_refused_inside_the_store_however_the_store_path_is_spelled() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk");
        fs::create_dir(&disk).unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        let link = dir.path().join("store-link");
        std::os::unix::fs::symlink(&disk, &link).unwrap();
        for store in [link.clone(), dir.path().join("sub/../disk")] {
            let mut o = opts(dir.path());
            o.store = store.clone();
            o.identity_out = Some(disk.join("key.txt"));
            let r = init(&o);
            assert!(
                matches!(r, Err(InitError::IdentityInStore { .. })),
                "{store:?}: {:?}",
                r.map(|_| ())
            );
            assert!(!disk.join("key.txt").exists(), "{store:?}");
            assert!(!o.config.exists(), "{store:?}");
        }
    }

    /// Run as root for the package's store, init hands the new store to the owner of its parent
    /// (the service user). That user can rename entries in its own directory, so between mkdir
    /// and chown it can swap the new store for a symlink to any file: the chown must not follow
    /// it (root would hand over /etc/shadow).
    #[test]
    fn handing_the_new_store_over_never_follows_a_swapped_in_symlink() {
        if !nix_is_root() {
            println!("SKIPPED: needs root (chown)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let service = dir.path().join("var-lib-coldkeep");
        fs::create_dir(&service).unwrap();
        std::os::unix::fs::chown(&service, Some(4242), Some(4242)).unwrap();
        let victim = dir.path().join("shadow");
        fs::write(&victim, "root:secret").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o640)).unwrap();
        // The state right after the swap: the store path is now the service user's symlink.
        let store = service.join("store");
        std::os::unix::fs::symlink(&victim, &store).unwrap();
        let _ = adopt_parent_owner(&store);
        let meta = fs::metadata(&victim).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, 0),
            "the symlink's target was chowned"
        );
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    }

    /// The signing key is handed to the store's owner when root runs init for a service user;
    /// a symlink swapped in at the key's path (by whoever can write the config's directory)
    /// must not make root hand over the link's target.
    #[test]
    fn handing_the_signing_key_over_never_follows_a_swapped_in_symlink() {
        if !nix_is_root() {
            println!("SKIPPED: needs root (chown)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        fs::create_dir(&store).unwrap();
        std::os::unix::fs::chown(&store, Some(4242), Some(4242)).unwrap();
        let victim = dir.path().join("shadow");
        fs::write(&victim, "root:secret").unwrap();
        let key = dir.path().join("signing_key");
        std::os::unix::fs::symlink(&victim, &key).unwrap();
        assert!(share_owner(&store, &key).is_err());
        let meta = fs::metadata(&victim).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, 0),
            "the symlink's target was chowned"
        );
        // The real file is handed over.
        fs::remove_file(&key).unwrap();
        fs::write(&key, "key").unwrap();
        share_owner(&store, &key).unwrap();
        assert_eq!(fs::metadata(&key).unwrap().uid(), 4242);
    }

    /// The config (and so the signing key beside it) reached through a symlink into the store.
    #[test]
    fn the_signing_key_is_refused_inside_the_store_however_the_path_is_spelled() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk");
        fs::create_dir(&disk).unwrap();
        // The config's directory is a link to the (empty) store itself.
        let link = dir.path().join("etc-link");
        std::os::unix::fs::symlink(&disk, &link).unwrap();
        let mut o = opts(dir.path());
        o.store = disk.clone();
        o.identity_out = None;
        o.recipients = vec![KEY.into()];
        o.config = link.join("coldkeep.yaml");
        let r = init(&o);
        assert!(
            matches!(r, Err(InitError::SigningInStore { .. })),
            "{:?}",
            r.map(|_| ())
        );
        assert!(
            fs::read_dir(&disk).unwrap().next().is_none(),
            "nothing written into the store"
        );
    }

    fn nix_is_root() -> bool {
        fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }

    #[test]
    fn an_identity_into_a_missing_folder_is_one_clear_refusal_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.identity_out = Some(dir.path().join("usb/coldkeep-key.txt"));
        let err = init(&o).unwrap_err();
        assert!(err.is_usage(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("the folder") && text.contains("usb") && text.contains("does not exist"),
            "{text}"
        );
        assert!(!o.store.exists() && !o.config.exists());
        assert!(!dir.path().join("etc/signing_key").exists());
        // A file where the folder should be.
        fs::write(dir.path().join("usb"), "x").unwrap();
        assert!(init(&o).unwrap_err().to_string().contains("is not a folder"));
    }

    #[test]
    fn a_failure_after_the_first_write_removes_what_this_run_created() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.identity_out = Some(dir.path().join("key.txt"));
        // The config's parent is a file: creating the config fails after identity and store.
        fs::write(dir.path().join("etc"), "a file").unwrap();
        let err = init(&o).unwrap_err();
        assert!(matches!(err, InitError::Io { .. }), "{err}");
        assert!(!dir.path().join("key.txt").exists(), "identity removed again");
        assert!(!dir.path().join("etc/signing_key").exists());
        assert!(!o.store.exists(), "store removed again");
        assert_eq!(fs::read_to_string(dir.path().join("etc")).unwrap(), "a file");
    }
}

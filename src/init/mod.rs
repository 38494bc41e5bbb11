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

mod template;

pub use template::{TEMPLATE, render_config};

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
    /// The store path is a symbolic link: init never follows one there.
    #[error(
        "store {} is a symbolic link: init never follows a link at the store path (whoever owns the \
         link could make root change its target's mode and get the signing key); give the directory it \
         points to",
        .0.display()
    )]
    StoreIsSymlink(PathBuf),
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
    // Never followed: a link planted at the store path would make root chmod its target and
    // hand the signing key to the link's owner. An existing store is checked again on the
    // handle opened without following links (`open_store`).
    let store_created = match fs::symlink_metadata(&store) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(io("checking", &store)(e)),
        Ok(meta) if meta.file_type().is_symlink() => return Err(InitError::StoreIsSymlink(store)),
        Ok(meta) if meta.is_dir() && is_empty_dir(&open_store(&store)?)? => false,
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

/// Opens the store directory without following a link at its path: everything init does to
/// the store (emptiness check, mode, owner) then works on this handle, never on the path again.
fn open_store(store: &Path) -> Result<StoreDir, InitError> {
    let handle = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(store)
        .map_err(|e| {
            // A link gives ELOOP, or ENOTDIR when it names no directory.
            let link = fs::symlink_metadata(store).is_ok_and(|m| m.file_type().is_symlink());
            match e.raw_os_error() {
                Some(libc::ELOOP) => InitError::StoreIsSymlink(store.to_path_buf()),
                Some(libc::ENOTDIR) if link => InitError::StoreIsSymlink(store.to_path_buf()),
                Some(libc::ENOTDIR) => InitError::StoreNotEmpty(store.to_path_buf()),
                _ => io("opening", store)(e),
            }
        })?;
    Ok(StoreDir {
        path: store.to_path_buf(),
        handle,
    })
}

/// The store directory as opened by [`open_store`].
struct StoreDir {
    path: PathBuf,
    handle: fs::File,
}

impl StoreDir {
    /// Owner and group of what was opened (not of whatever the path names now).
    fn owner(&self) -> Result<(u32, u32), InitError> {
        let meta = self.handle.metadata().map_err(io("reading", &self.path))?;
        Ok((meta.uid(), meta.gid()))
    }
}

/// Whether the opened directory is empty (listed through its handle, via /proc/self/fd).
fn is_empty_dir(dir: &StoreDir) -> Result<bool, InitError> {
    use std::os::fd::AsRawFd;
    let through = PathBuf::from(format!("/proc/self/fd/{}", dir.handle.as_raw_fd()));
    Ok(fs::read_dir(&through)
        .map_err(io("reading", &dir.path))?
        .next()
        .is_none())
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
    let dir = if store_created {
        fs::create_dir_all(store.parent().unwrap_or(Path::new("/"))).map_err(io("creating", store))?;
        // 0700 from the start: no chmod by path afterwards, which would follow a symlink
        // swapped in by whoever owns the parent (see `adopt_parent_owner`).
        fs::DirBuilder::new()
            .mode(0o700)
            .create(store)
            .map_err(io("creating", store))?;
        created.store = Some(store.to_path_buf());
        let dir = open_store(store)?;
        adopt_parent_owner(&dir)?;
        dir
    } else {
        let dir = open_store(store)?;
        dir.handle
            .set_permissions(fs::Permissions::from_mode(0o700))
            .map_err(io("chmod 0700", store))?;
        dir
    };
    let owner = dir.owner()?;
    for file in others.iter().filter(|f| f.store_owned) {
        share_owner(owner, &file.path)?;
    }
    write_new(config, created)
}

/// Run as root to set up a service user's store (the package's `/var/lib/coldkeep` belongs to the
/// `coldkeep` user), a new store takes the owner of its parent directory, so the service can
/// write it; otherwise it would be root's and every backup would fail. The parent's owner can
/// swap the new directory for a symlink before it is opened: [`open_store`] refuses one, and the
/// chown goes through the handle of the directory this run made.
fn adopt_parent_owner(dir: &StoreDir) -> Result<(), InitError> {
    let Some(parent) = dir.path.parent() else {
        return Ok(());
    };
    let (uid, _) = dir.owner()?;
    let above = fs::metadata(parent).map_err(io("reading", parent))?;
    if uid == 0 && above.uid() != 0 {
        std::os::unix::fs::fchown(&dir.handle, Some(above.uid()), Some(above.gid()))
            .map_err(io("chown", &dir.path))?;
    }
    Ok(())
}

/// Run as root for a service user's store, the signing key takes the store's owner (still 0600):
/// the service signs every artifact it writes, so it must be able to read the key. The owner is
/// the one of the store as opened (never of a link at its path), and the chown goes through a
/// handle opened without following links, on the file this run created (root's, one link): if
/// whoever can write the config's directory swapped in a symlink or another file, root hands
/// nothing over.
fn share_owner((uid, gid): (u32, u32), file: &Path) -> Result<(), InitError> {
    use std::os::unix::fs::OpenOptionsExt;
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
    if own.uid() == 0 && uid != 0 {
        std::os::unix::fs::fchown(&handle, Some(uid), Some(gid)).map_err(io("chown", file))?;
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

#[cfg(test)]
mod tests;

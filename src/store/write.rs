//! Writing artifacts: temp files beside their targets, renamed into place in an order that
//! never lets a listed (signed) sidecar name a ciphertext that is not durable.

use super::batch::{Batch, Ticket};
use super::{Store, StoreError, artifact_id, io, temps};
use crate::bundle::Sidecar;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

impl Store {
    /// Writes the artifact to the primary and every replica, durably before it returns; returns
    /// its id. The id is the sidecar's `created_at` stamp plus the first 8 hex digits of the
    /// ciphertext hash. Every root is attempted; the first failure is returned after trying
    /// the rest. For a lone write (a pre-restore copy, an import); a backup run writes through
    /// [`Store::write_batched`].
    pub fn write(&self, sidecar: &Sidecar, ciphertext: &[u8]) -> Result<String, StoreError> {
        self.write_with(sidecar, ciphertext, None).map(|(id, _)| id)
    }

    /// Writes the artifact into every root as [`Store::write`] does, except that it is not
    /// durable, nor listed, until `batch` has committed it (see [`super::batch`]): the `.age` and
    /// `.json.sig` are in place (the id claimed) and the sidecar is handed to the batch. Returns
    /// the id and the ticket to ask [`super::batch::Committed`] about; an error means a root
    /// could not be written (the others are still handed in).
    pub fn write_batched(
        &self,
        batch: &Batch,
        sidecar: &Sidecar,
        ciphertext: &[u8],
    ) -> Result<(String, Ticket), StoreError> {
        let (id, ticket) = self.write_with(sidecar, ciphertext, Some(batch))?;
        Ok((id, ticket.expect("a batched write has a ticket")))
    }

    fn write_with(
        &self,
        sidecar: &Sidecar,
        ciphertext: &[u8],
        batch: Option<&Batch>,
    ) -> Result<(String, Option<Ticket>), StoreError> {
        let m = &sidecar.manifest;
        for (what, name) in [("node", &m.node), ("keystore", &m.keystore)] {
            if !safe_component(name) {
                return Err(StoreError::Invalid {
                    path: self.primary.clone(),
                    message: format!("{what} name {name:?} cannot be a directory name"),
                });
            }
        }
        let id = artifact_id(m.created_at, &sidecar.ciphertext_sha256);
        let mut json = serde_json::to_vec_pretty(sidecar).map_err(|e| StoreError::Invalid {
            path: self.primary.clone(),
            message: format!("cannot serialise sidecar: {e}"),
        })?;
        json.push(b'\n');
        let signature = self.sign(&json)?;
        let ticket = batch.map(Batch::ticket);
        let mut first_error = None;
        for root in self.roots() {
            if root != &self.primary && !root.is_dir() {
                // Never created: an unmounted replica must not fill the disk underneath it. The
                // copy is listed as missing, and the next run writes it once the root is back.
                tracing::warn!(
                    root = %root.display(),
                    "replica root missing (not mounted?); copy not written, the next run repairs it"
                );
                continue;
            }
            let dir = root.join(&m.node).join(&m.keystore);
            let result = (|| {
                create_private_dirs(root, &dir)?;
                let age_path = dir.join(format!("{id}.age"));
                let json_path = dir.join(format!("{id}.json"));
                // Written (and, for a lone write, synced) under temp names before the lock:
                // parallel workers never wait for each other's disk.
                let sync = batch.is_none();
                let [age, sig, sidecar] = [
                    stage(&dir, &age_path, ciphertext, sync)?,
                    stage(&dir, &crate::sign::sig_path(&json_path), &signature, sync)?,
                    stage(&dir, &json_path, &json, sync)?,
                ];
                {
                    // The id is claimed under the lock: the .age and .sig are put in place; any
                    // other writer of the same id then finds the .age and refuses.
                    let _lock = self.lock()?;
                    if age_path.exists() || json_path.exists() {
                        return Err(StoreError::Invalid {
                            path: age_path,
                            message: "an artifact with this id already exists; not overwriting".into(),
                        });
                    }
                    age.commit()?;
                    sig.commit()?;
                }
                // The sidecar goes in only once the ciphertext and signature are durable, so a
                // crash can never leave a listed (signed) artifact without its ciphertext: by
                // the batch's round, or here, reported done after the second directory sync.
                match (batch, ticket) {
                    (Some(batch), Some(ticket)) => {
                        batch.submit(ticket, dir.clone(), sidecar);
                        Ok(())
                    }
                    _ => {
                        sync_dir(&dir)?;
                        sidecar.commit()?;
                        sync_dir(&dir)
                    }
                }
            })();
            if let Err(e) = result {
                tracing::error!(root = %root.display(), "store write failed: {e}");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => {
                if let (Some(batch), Some(ticket)) = (batch, ticket) {
                    batch.fail(ticket, clone_for_batch(&e));
                }
                Err(e)
            }
            None => Ok((id, ticket)),
        }
    }
}

/// The same error for the batch's record (the caller gets the original).
fn clone_for_batch(e: &StoreError) -> StoreError {
    StoreError::Invalid {
        path: match e {
            StoreError::Io { path, .. } | StoreError::Invalid { path, .. } => path.clone(),
        },
        message: e.to_string(),
    }
}

fn safe_component(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

/// Creates `dir` and its missing parents below (and including) `root` with mode 0700.
pub(crate) fn create_private_dirs(root: &Path, dir: &Path) -> Result<(), StoreError> {
    crate::config::perms::check_store_root(root).map_err(|message| StoreError::Invalid {
        path: root.to_path_buf(),
        message,
    })?;
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) if cur != root => cur = p,
            _ => break,
        }
    }
    if !root.exists() && !missing.iter().any(|m| m == root) {
        missing.push(root.to_path_buf());
    }
    for d in missing.iter().rev() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(d)
            .map_err(io(d))?;
        fs::set_permissions(d, fs::Permissions::from_mode(0o700)).map_err(io(d))?;
    }
    Ok(())
}

/// Temp file (0600) in the same directory, fsync, rename, fsync the directory.
pub(crate) fn write_atomic(dir: &Path, target: &Path, data: &[u8]) -> Result<(), StoreError> {
    stage(dir, target, data, true)?.commit()?;
    sync_dir(dir)
}

/// A file written (and synced, unless a batch syncs it) under a temp name beside its target,
/// not yet in place; removed when dropped uncommitted.
pub(super) struct Staged {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

/// Writes `data` to a new 0600 temp file in `dir` (named after `target` and this process, see
/// [`temps`]) and, with `sync`, syncs it (a batch syncs its whole file system at once instead).
fn stage(dir: &Path, target: &Path, data: &[u8], sync: bool) -> Result<Staged, StoreError> {
    let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("artifact");
    let temp = dir.join(temps::name_for(name));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(io(&temp))?;
    // Only a file this call created is removed on failure.
    let staged = Staged {
        temp,
        target: target.to_path_buf(),
        committed: false,
    };
    f.write_all(data).map_err(io(&staged.temp))?;
    if sync {
        f.sync_all().map_err(io(&staged.temp))?;
    }
    Ok(staged)
}

impl Staged {
    /// Renames the file into place (the caller syncs the directory).
    pub(super) fn commit(mut self) -> Result<(), StoreError> {
        fs::rename(&self.temp, &self.target).map_err(io(&self.target))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Syncs a directory, so renames in it survive a crash.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

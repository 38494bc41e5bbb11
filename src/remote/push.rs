//! Writing one file without `become`: the SSH user's own rights, over SFTP and a few commands.
//!
//! Why apart from the session: it is the plain-login half of [`Session::push`] (with `become:
//! sudo` the node helper writes through fds instead); kept here so the session file stays about
//! connecting, reading and running commands.

use super::{
    FX_PERMISSION_DENIED, RemoteError, RemoteStat, Session, join_remote, mode_only, shell_quote, split_remote,
};

impl Session {
    pub(super) fn push_plain(
        &self,
        path: &str,
        bytes: &[u8],
        mode: u32,
        owner: Option<&str>,
    ) -> Result<(), RemoteError> {
        let (dir, name) = split_remote(path);
        let temp = join_remote(
            &dir,
            &format!(".{name}.coldkeep-tmp-{:032x}", rand::random::<u128>()),
        );
        let mode = mode & 0o777;
        let result = self.push_via(path, &temp, bytes, mode, owner);
        if result.is_err() {
            // Best effort: the temp file may or may not exist; the target is untouched unless
            // `mv` already ran (then the temp name is gone anyway).
            let _ = self.exec(&format!("rm -f -- {}", shell_quote(&temp)));
        }
        result
    }

    fn push_via(
        &self,
        path: &str,
        temp: &str,
        bytes: &[u8],
        mode: u32,
        owner: Option<&str>,
    ) -> Result<(), RemoteError> {
        use std::io::Write;
        let sftp = self.sftp()?;
        let existing = self.lstat_with(sftp, path)?;
        let mode = match &existing {
            Some(st) if !st.is_file => {
                return Err(RemoteError::UnsafeEntry {
                    path: path.to_string(),
                    detail:
                        "not a regular file (a symlink, directory or device is never replaced or followed)"
                            .into(),
                });
            }
            Some(st) => st.mode & mode,
            None => mode,
        };
        let during = format!("uploading {temp}");
        {
            let mut file = sftp
                .open_mode(
                    std::path::Path::new(temp),
                    ssh2::OpenFlags::WRITE | ssh2::OpenFlags::CREATE | ssh2::OpenFlags::EXCLUSIVE,
                    0o600,
                    ssh2::OpenType::File,
                )
                .map_err(|e| match e.code() {
                    ssh2::ErrorCode::SFTP(FX_PERMISSION_DENIED) => RemoteError::PermissionDenied {
                        path: temp.to_string(),
                    },
                    _ => self.err(e, &during),
                })?;
            for chunk in bytes.chunks(30_000) {
                file.write_all(chunk).map_err(|e| self.io_err(e, &during))?;
            }
            file.flush().map_err(|e| self.io_err(e, &during))?;
            // fsync@openssh.com; not every server has it.
            let _ = file.fsync();
            // The mode goes on the open handle (fsetstat): never on whatever the name points to.
            file.setstat(mode_only(mode)).map_err(|e| self.err(e, &during))?;
            file.close().map_err(|e| self.err(e, &during))?;
        }
        let qtemp = shell_quote(temp);
        let qpath = shell_quote(path);
        if let Some(target) = &existing {
            // Keep the owner and group of the file being replaced; when the SSH user may not,
            // stop before the rename instead of leaving the key owned by the wrong user.
            let _ = self.exec(&format!("chown --reference={qpath} -- {qtemp}"));
            let ids = |st: Option<&RemoteStat>| st.and_then(|s| s.owner.as_ref()).map(|o| (o.uid, o.gid));
            let want = ids(Some(target));
            if want.is_some() && ids(self.lstat_with(sftp, temp)?.as_ref()) != want {
                return Err(RemoteError::OwnerNotKept {
                    path: path.to_string(),
                });
            }
        } else if let Some(owner) = owner {
            // A new file gets the owner its backup recorded, before it appears under its name.
            self.exec_ok(&format!("chown -h {} -- {qtemp}", shell_quote(owner)))?;
        }
        self.exec_ok(&format!("mv -f -T -- {qtemp} {qpath}"))?;
        match self.lstat_with(sftp, path)? {
            Some(st) if st.is_file => {}
            _ => {
                return Err(RemoteError::UnsafeEntry {
                    path: path.to_string(),
                    detail: "after the rename the target is not a regular file".into(),
                });
            }
        }
        let back = self.fetch(path, bytes.len() as u64 + 1024 * 1024)?;
        let expected = crate::digest::sha256_hex(bytes);
        let got = crate::digest::sha256_hex(&back.bytes);
        if expected != got {
            return Err(RemoteError::ReadBackMismatch {
                path: path.to_string(),
                expected,
                got,
            });
        }
        Ok(())
    }
}

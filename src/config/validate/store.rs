//! The store, signing and encryption sections of the config.

use super::super::raw::{RawConfig, RawSigning, S};
use super::super::{ConfigError, EncryptionConfig, Recipient, SigningConfig, StoreConfig};
use super::{Validator, resolve};
use std::path::{Path, PathBuf};
use std::time::Duration;

impl Validator<'_> {
    pub(super) fn store(&self, raw: &RawConfig) -> Result<StoreConfig, ConfigError> {
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
    pub(super) fn signing(&self, raw: &RawConfig, store: &StoreConfig) -> Result<SigningConfig, ConfigError> {
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
            super::super::check_key_file(&key_path).map_err(|m| self.err(&key.referenced, m))?;
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

    pub(super) fn encryption(&self, raw: &RawConfig) -> Result<EncryptionConfig, ConfigError> {
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
                    snippet: Some(crate::config::redact::snippet(&text, i + 1, 1, false)),
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
}

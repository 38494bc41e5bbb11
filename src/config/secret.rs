//! Secrets: `{env: NAME}` or `{file: PATH}`, never inline.

use std::path::PathBuf;
use zeroize::Zeroizing;

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// An environment variable's value.
    Env(String),
    /// A file's content, with one trailing newline removed.
    File(PathBuf),
}

/// A secret could not be read; never contains the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    /// The environment variable is not set.
    EnvMissing(String),
    #[error("cannot read secret file {}: {source}", path.display())]
    /// The file cannot be read.
    File {
        /// The path concerned.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file or its directory is unsafe (others may write or read it): the message names the chmod.
    #[error("{0}")]
    Unsafe(String),
}

impl Secret {
    /// Reads the secret now.
    pub fn resolve(&self) -> Result<Zeroizing<String>, SecretError> {
        let mut value = match self {
            Secret::Env(name) => {
                Zeroizing::new(std::env::var(name).map_err(|_| SecretError::EnvMissing(name.clone()))?)
            }
            Secret::File(path) => {
                super::perms::check_file(path, super::perms::FileKind::Secret)
                    .map_err(SecretError::Unsafe)?;
                Zeroizing::new(std::fs::read_to_string(path).map_err(|source| SecretError::File {
                    path: path.clone(),
                    source,
                })?)
            }
        };
        if value.ends_with('\n') {
            value.pop();
            if value.ends_with('\r') {
                value.pop();
            }
        }
        Ok(value)
    }

    /// Where it comes from, for messages (`env COLDKEEP_X`, `file /path`).
    pub fn describe(&self) -> String {
        match self {
            Secret::Env(n) => format!("env {n}"),
            Secret::File(p) => format!("file {}", p.display()),
        }
    }
}

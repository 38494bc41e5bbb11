//! Exit codes and the top-level error classification, and the error policy every layer follows.
//!
//! # Error policy
//!
//! - **Typed errors per lower layer.** `config`, `remote`, `bundle`, `store`, `material` and `hid`
//!   return their own `thiserror` enums ([`crate::config::ConfigError`],
//!   [`crate::remote::RemoteError`], [`crate::bundle::BundleError`], ...), so a caller can decide
//!   by kind: retry a transient [`crate::remote::RemoteError`], treat a missing remote file as
//!   "missing", skip a damaged copy. Messages name the path or node and never contain secret
//!   material (key bytes, passwords, passphrases).
//! - **anyhow with context above them.** `ops` and `commands` return `anyhow::Result` and add
//!   context saying what was being done (`"restoring /etc/acra/keys on node-1"`), and, where an
//!   operator worries, what state things are in (`"nothing was changed on the node"`). `ops` never
//!   prints an error; per-node and per-keystore failures become values in reports
//!   (`KeystoreOutcome::error`) so one node failing never stops the others.
//! - **A request that is wrong is a [`UsageError`]** (or a `ConfigError`): bad arguments, unknown
//!   node names, no schedule. Nothing was done, and the exit code says so.
//! - **Exit codes are decided in one place**: a command returns `Ok(Exit)` for what it did
//!   ([`Exit::Failed`] when some node or keystore failed but the rest were done), and `main` maps
//!   an `Err` through [`exit_for`]: usage and config errors exit 2, everything else 1.

/// Process exit codes, as documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done.
    Ok = 0,
    /// Some node, keystore or artifact failed; the rest were still done.
    Failed = 1,
    /// Usage or configuration error; nothing was done.
    Usage = 2,
}

/// An error that means "the request itself is wrong" (exit 2): bad config, bad arguments.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Maps an error returned by a command to its exit code.
pub fn exit_for(err: &anyhow::Error) -> Exit {
    if err.downcast_ref::<crate::config::ConfigError>().is_some()
        || err.downcast_ref::<UsageError>().is_some()
    {
        Exit::Usage
    } else {
        Exit::Failed
    }
}

//! Exit codes and the top-level error classification.

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

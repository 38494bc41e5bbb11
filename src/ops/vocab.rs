//! The words commands and reports share, as types: artifact kinds (re-exported from their place
//! beside the roles, `crate::bundle::role`), restore actions, outcome statuses, and the one place
//! that names master-key artifacts.
//!
//! Why types: these strings were glued together and compared in many files; a typo there was a
//! silent mismatch. The serialized strings are exactly the ones stored in sidecars and printed in
//! `--json` before, so old sidecars and scripts keep working.

use serde::Serialize;

/// What an artifact holds: defined beside the roles it may have (see [`crate::bundle::role`]),
/// which the store checks every listed artifact against.
pub use crate::bundle::ArtifactKind;

/// Master-key artifacts are stored under their keystore's name in the master-key store; runs,
/// `status`, metrics and `list` report them as `<keystore>:master-key`. This is the one place
/// that spelling lives.
pub mod master_key {
    /// Suffix of the name a keystore's master key is reported under.
    pub const SUFFIX: &str = ":master-key";

    /// The name runs report a keystore's master key under.
    pub fn report_name(keystore: &str) -> String {
        format!("{keystore}{SUFFIX}")
    }
}

/// What a restore did or, in a plan, will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreAction {
    /// The node already holds exactly the backup: nothing to do.
    AlreadyInPlace,
    /// Nothing was there; the backup was put in place.
    Created,
    /// Something else was there; it was saved as a pre-restore artifact, then replaced.
    Replaced,
    /// Dry run of [`RestoreAction::Created`].
    WouldCreate,
    /// Dry run of [`RestoreAction::Replaced`].
    WouldReplace,
}

impl RestoreAction {
    /// The string `--json` reports (unchanged).
    pub const fn as_str(self) -> &'static str {
        match self {
            RestoreAction::AlreadyInPlace => "already-in-place",
            RestoreAction::Created => "created",
            RestoreAction::Replaced => "replaced",
            RestoreAction::WouldCreate => "would-create",
            RestoreAction::WouldReplace => "would-replace",
        }
    }

    /// The dry-run form of an action (what `--dry-run` reports for a planned change).
    pub const fn as_dry_run(self) -> RestoreAction {
        match self {
            RestoreAction::Created => RestoreAction::WouldCreate,
            RestoreAction::Replaced => RestoreAction::WouldReplace,
            other => other,
        }
    }
}

/// How one keystore's part of a run ended, as hooks (`COLDKEEP_STATUS`) and reports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeStatus {
    /// Done.
    Success,
    /// Failed; the cause is in the outcome's `error`.
    Failure,
}

impl OutcomeStatus {
    /// The status for an outcome's `ok` flag.
    pub const fn of(ok: bool) -> OutcomeStatus {
        if ok {
            OutcomeStatus::Success
        } else {
            OutcomeStatus::Failure
        }
    }

    /// The string hooks see in `COLDKEEP_STATUS` (unchanged).
    pub const fn as_str(self) -> &'static str {
        match self {
            OutcomeStatus::Success => "success",
            OutcomeStatus::Failure => "failure",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_serialize_as_before() {
        assert_eq!(
            serde_json::to_value(RestoreAction::AlreadyInPlace).unwrap(),
            "already-in-place"
        );
        assert_eq!(
            serde_json::to_value(RestoreAction::WouldReplace).unwrap(),
            "would-replace"
        );
        assert_eq!(RestoreAction::Replaced.as_dry_run(), RestoreAction::WouldReplace);
        assert_eq!(master_key::report_name("acra"), "acra:master-key");
    }
}

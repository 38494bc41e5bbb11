//! What an artifact is for (its [`Role`]), what it holds (its [`ArtifactKind`]), and where in the
//! stores each role lies ([`Place`]): the one vocabulary every listing checks artifacts against.
//!
//! Why: a signature proves who wrote an artifact, not where it belongs. A genuine master-key
//! backup copied into the keystore store (same node and keystore names, same signing key) would
//! otherwise list as that keystore's newest backup, count for its retention (pruning the real
//! one) and be "repaired" into the primary. So the sidecar says what the artifact is (role, kind
//! and purpose, all signed), the store says what the directory holds, and a listing keeps only
//! artifacts whose role belongs where they lie ([`check_placement`]). A new role is one more
//! variant here (its kinds, purpose and place); the listing logic does not change.

use super::Purpose;
use crate::config::KeystoreKind;
use serde::{Deserialize, Serialize};

/// What an artifact holds, as stored in the manifest's `kind` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    /// A PKCS#12 keystore file.
    P12,
    /// An Acra keystore tree.
    Acra,
    /// An Acra master key (kept in the separate master-key store).
    AcraMasterKey,
    /// An OnlyKey backup.
    Onlykey,
    /// A BitBox02 backup.
    Bitbox02,
    /// Any single file (`kind: file`: nodectl's cn-config.yaml, ...).
    File,
}

impl ArtifactKind {
    /// Every kind, for parsing and listing.
    pub const ALL: [ArtifactKind; 6] = [
        ArtifactKind::P12,
        ArtifactKind::Acra,
        ArtifactKind::AcraMasterKey,
        ArtifactKind::Onlykey,
        ArtifactKind::Bitbox02,
        ArtifactKind::File,
    ];

    /// The string stored in manifests (unchanged since format 1).
    pub const fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::P12 => "p12",
            ArtifactKind::Acra => "acra",
            ArtifactKind::AcraMasterKey => "acra-master-key",
            ArtifactKind::Onlykey => "onlykey",
            ArtifactKind::Bitbox02 => "bitbox02",
            ArtifactKind::File => "file",
        }
    }

    /// The kind a manifest's `kind` string names; `None` for a kind this version does not know.
    pub fn parse(text: &str) -> Option<ArtifactKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The kind a configured keystore's backups have.
    pub fn of_keystore(kind: KeystoreKind) -> ArtifactKind {
        match kind {
            KeystoreKind::P12 => ArtifactKind::P12,
            KeystoreKind::Acra => ArtifactKind::Acra,
            KeystoreKind::File => ArtifactKind::File,
        }
    }

    /// Whether a manifest's `kind` string is this kind.
    pub fn is(self, text: &str) -> bool {
        self.as_str() == text
    }
}

impl std::fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an artifact is for. Recorded in the manifest (inside the ciphertext and in the signed
/// sidecar); artifacts from before it was recorded get the role their kind and purpose imply
/// ([`Role::of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A configured keystore's regular backup.
    KeystoreBackup,
    /// What a restore was about to overwrite, saved first.
    PreRestore,
    /// An Acra keystore's master key, in the master-key store.
    MasterKeyBackup,
    /// A hardware key's backup (OnlyKey, BitBox02), under `<store>/hardware/`.
    HardwareKeyBackup,
}

/// Where a store directory lies: which store, and which part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// `<store>/<node>/<keystore>/` (and the replicas'): a configured keystore's artifacts.
    Keystore,
    /// `<store>/hardware/<name>/`: a hardware key's backups.
    HardwareKey,
    /// `<master_key_store>/<node>/<keystore>/` (and its replicas'): an Acra master key.
    MasterKey,
}

/// What a whole store (primary and replicas) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Holds {
    /// The keystore store (`store.path`, `store.replicas`): keystores, and hardware keys under
    /// [`crate::config::HARDWARE_NODE`].
    #[default]
    Keystores,
    /// The master-key store (`store.master_key_store`, `store.master_key_replicas`).
    MasterKeys,
}

impl Holds {
    /// The place of node `node`'s directories in a store that holds this.
    pub fn place(self, node: &str) -> Place {
        match self {
            Holds::MasterKeys => Place::MasterKey,
            Holds::Keystores if node == crate::config::HARDWARE_NODE => Place::HardwareKey,
            Holds::Keystores => Place::Keystore,
        }
    }
}

impl Place {
    /// Words for messages.
    pub const fn describe(self) -> &'static str {
        match self {
            Place::Keystore => "a keystore's directory in the keystore store",
            Place::HardwareKey => "the hardware keys' directory",
            Place::MasterKey => "the master-key store",
        }
    }
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [
        Role::KeystoreBackup,
        Role::PreRestore,
        Role::MasterKeyBackup,
        Role::HardwareKeyBackup,
    ];

    /// The string stored in manifests.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::KeystoreBackup => "keystore-backup",
            Role::PreRestore => "pre-restore",
            Role::MasterKeyBackup => "master-key-backup",
            Role::HardwareKeyBackup => "hardware-key-backup",
        }
    }

    /// Where artifacts of this role lie.
    pub const fn place(self) -> Place {
        match self {
            Role::KeystoreBackup | Role::PreRestore => Place::Keystore,
            Role::MasterKeyBackup => Place::MasterKey,
            Role::HardwareKeyBackup => Place::HardwareKey,
        }
    }

    /// The kinds an artifact of this role may hold.
    pub const fn kinds(self) -> &'static [ArtifactKind] {
        match self {
            Role::KeystoreBackup | Role::PreRestore => {
                &[ArtifactKind::P12, ArtifactKind::Acra, ArtifactKind::File]
            }
            Role::MasterKeyBackup => &[ArtifactKind::AcraMasterKey],
            Role::HardwareKeyBackup => &[ArtifactKind::Onlykey, ArtifactKind::Bitbox02],
        }
    }

    /// The manifest's `purpose` of an artifact of this role.
    pub const fn purpose(self) -> Purpose {
        match self {
            Role::PreRestore => Purpose::PreRestore,
            _ => Purpose::Backup,
        }
    }

    /// The role of an artifact holding `kind` with `purpose` (what a new artifact records, and
    /// what an artifact from before roles were recorded is taken to be).
    pub fn of(kind: ArtifactKind, purpose: Purpose) -> Option<Role> {
        Self::ALL
            .into_iter()
            .find(|r| r.purpose() == purpose && r.kinds().contains(&kind))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks what a sidecar says an artifact is (its `kind`, `purpose` and recorded `role`, if
/// any) against the place it lies in: its role, or why it does not belong there (never listed,
/// counted for retention, repaired or restored).
pub fn check_placement(
    place: Place,
    kind: &str,
    purpose: Purpose,
    role: Option<Role>,
) -> Result<Role, String> {
    let Some(parsed) = ArtifactKind::parse(kind) else {
        return Err(format!("kind {kind:?} is unknown to this version of coldkeep"));
    };
    let role = match role {
        Some(r) if r.kinds().contains(&parsed) && r.purpose() == purpose => r,
        Some(r) => {
            return Err(format!(
                "its role {r} does not fit its kind {kind} and purpose {}",
                purpose_str(purpose)
            ));
        }
        None => Role::of(parsed, purpose)
            .ok_or_else(|| format!("kind {kind} has no role with purpose {}", purpose_str(purpose)))?,
    };
    if role.place() != place {
        return Err(format!(
            "it is a {role} (kind {kind}), which does not belong in {} (copied here?)",
            place.describe()
        ));
    }
    Ok(role)
}

fn purpose_str(p: Purpose) -> &'static str {
    match p {
        Purpose::Backup => "backup",
        Purpose::PreRestore => "pre-restore",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_keep_their_stored_strings() {
        let strings: Vec<&str> = ArtifactKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            strings,
            ["p12", "acra", "acra-master-key", "onlykey", "bitbox02", "file"]
        );
        for k in ArtifactKind::ALL {
            assert_eq!(ArtifactKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        assert_eq!(ArtifactKind::parse("p13"), None);
    }

    #[test]
    fn every_kind_and_purpose_pair_coldkeep_writes_has_exactly_one_role() {
        for kind in ArtifactKind::ALL {
            let roles: Vec<Role> = Role::ALL
                .into_iter()
                .filter(|r| r.kinds().contains(&kind) && r.purpose() == Purpose::Backup)
                .collect();
            assert_eq!(roles.len(), 1, "{kind}: {roles:?}");
            assert_eq!(Role::of(kind, Purpose::Backup), Some(roles[0]));
        }
        assert_eq!(
            Role::of(ArtifactKind::P12, Purpose::PreRestore),
            Some(Role::PreRestore)
        );
        assert_eq!(Role::of(ArtifactKind::AcraMasterKey, Purpose::PreRestore), None);
        for r in Role::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }

    #[test]
    fn placement_refuses_a_role_outside_its_place_and_roles_that_contradict_the_kind() {
        let ok = |place, kind, purpose, role| check_placement(place, kind, purpose, role);
        assert_eq!(
            ok(Place::Keystore, "acra", Purpose::Backup, None),
            Ok(Role::KeystoreBackup)
        );
        assert_eq!(
            ok(Place::MasterKey, "acra-master-key", Purpose::Backup, None),
            Ok(Role::MasterKeyBackup)
        );
        // The reproduction: a genuine master-key artifact in a keystore's directory.
        let e = ok(Place::Keystore, "acra-master-key", Purpose::Backup, None).unwrap_err();
        assert!(
            e.contains("master-key-backup") && e.contains("keystore store"),
            "{e}"
        );
        assert!(
            ok(
                Place::MasterKey,
                "acra",
                Purpose::Backup,
                Some(Role::KeystoreBackup)
            )
            .is_err()
        );
        assert!(ok(Place::Keystore, "onlykey", Purpose::Backup, None).is_err());
        assert!(ok(Place::HardwareKey, "p12", Purpose::Backup, None).is_err());
        // A recorded role must agree with the kind and purpose it was signed with.
        assert!(ok(Place::Keystore, "p12", Purpose::Backup, Some(Role::PreRestore)).is_err());
        assert!(
            ok(
                Place::Keystore,
                "p12",
                Purpose::Backup,
                Some(Role::MasterKeyBackup)
            )
            .is_err()
        );
        assert!(ok(Place::Keystore, "p13", Purpose::Backup, None).is_err());
        assert_eq!(
            ok(
                Place::Keystore,
                "p12",
                Purpose::PreRestore,
                Some(Role::PreRestore)
            ),
            Ok(Role::PreRestore)
        );
        assert_eq!(Holds::Keystores.place("hardware"), Place::HardwareKey);
        assert_eq!(Holds::Keystores.place("v1"), Place::Keystore);
        assert_eq!(Holds::MasterKeys.place("hardware"), Place::MasterKey);
    }
}

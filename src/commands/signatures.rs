//! Signatures in `verify`: every copy without a valid signature is named, and
//! `verify --sign-unsigned` adopts a store that predates signing, artifact by artifact.

use super::verify::{ArtifactCheck, verify_artifact};
use crate::bundle::Identities;
use crate::config::Config;
use crate::sign::Verdict;
use crate::store::{Artifact, Store};

/// Verifies one artifact and its copies' signatures; with `sign_unsigned`, first signs the
/// unsigned copies of an artifact that passed deep verification (and has no bad or foreign
/// signature anywhere).
pub fn check(
    config: &Config,
    store: &Store,
    a: &Artifact,
    ids: Option<&Identities>,
    sign_unsigned: bool,
) -> ArtifactCheck {
    let mut check = verify_artifact(config, store, a, ids);
    let present: Vec<_> = a.copies.iter().filter(|c| c.present).collect();
    let adoptable = check.ok
        && check.deep
        && present.iter().any(|c| c.signature == Verdict::Unsigned)
        && present
            .iter()
            .all(|c| matches!(c.signature, Verdict::Unsigned | Verdict::Valid { .. }));
    let mut signed = Vec::new();
    if sign_unsigned && adoptable {
        for copy in present.iter().filter(|c| c.signature == Verdict::Unsigned) {
            match store.sign_unsigned(a, copy) {
                Ok(()) => {
                    tracing::info!(artifact = %a.id, root = %copy.root.display(), "signed (adopted)");
                    signed.push(copy.sidecar_path.clone());
                }
                Err(e) => check.problems.push(format!("not signed: {e}")),
            }
        }
        check.signed_now = !signed.is_empty();
    } else if sign_unsigned && !a.signature.is_valid() && !check.deep {
        check
            .problems
            .push("not signed: could not be verified deeply with this identity".into());
    }
    check.problems.extend(
        present
            .iter()
            .filter(|c| !c.signature.is_valid() && !signed.contains(&c.sidecar_path))
            .map(|c| format!("{}: {}", c.sidecar_path.display(), c.signature)),
    );
    check.ok = check.problems.is_empty();
    check
}

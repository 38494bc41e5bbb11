//! What the per-command trust rules say about signatures (prints nothing): every copy without a
//! valid signature is named for `verify`, `prune` says why it leaves one alone, and
//! `verify --sign-unsigned` adopts a store that predates signing, artifact by artifact.

use crate::sign::Verdict;
use crate::store::{Artifact, Store};

/// What the signatures of one artifact's copies add to a verify result.
#[derive(Debug, Default)]
pub struct SignatureReport {
    /// One line per present copy without a valid signature (after any adoption).
    pub problems: Vec<String>,
    /// Copies signed now by `--sign-unsigned`.
    pub signed: usize,
}

/// Checks one artifact's copies' signatures. With `sign_unsigned`, first signs the unsigned
/// copies of an artifact that `deep_ok` says passed deep verification, unless any copy carries a
/// bad or foreign signature (evidence of tampering, never papered over).
pub fn report(store: &Store, a: &Artifact, deep_ok: bool, sign_unsigned: bool) -> SignatureReport {
    let mut out = SignatureReport::default();
    let present: Vec<_> = a.copies.iter().filter(|c| c.present).collect();
    let any_unsigned = present.iter().any(|c| c.signature == Verdict::Unsigned);
    let adoptable = present
        .iter()
        .all(|c| matches!(c.signature, Verdict::Unsigned | Verdict::Valid { .. }));
    let mut signed = Vec::new();
    if sign_unsigned && any_unsigned {
        if !deep_ok {
            out.problems
                .push("not signed: it did not pass deep verification with this identity".into());
        } else if !adoptable {
            out.problems
                .push("not signed: another copy has a bad or foreign signature".into());
        } else {
            for copy in present.iter().filter(|c| c.signature == Verdict::Unsigned) {
                match store.sign_unsigned(a, copy) {
                    Ok(()) => {
                        tracing::info!(artifact = %a.id, root = %copy.root.display(), "signed (adopted)");
                        signed.push(copy.sidecar_path.clone());
                    }
                    Err(e) => out.problems.push(format!("not signed: {e}")),
                }
            }
        }
    }
    out.signed = signed.len();
    out.problems.extend(
        present
            .iter()
            .filter(|c| !c.signature.is_valid() && !signed.contains(&c.sidecar_path))
            .map(|c| format!("{}: {}", c.sidecar_path.display(), c.signature)),
    );
    out
}

/// Why prune leaves an untrusted artifact alone (it never counts toward a keep rule either).
pub fn untrusted_reason<S>(a: &Artifact<S>) -> String {
    format!(
        "{}: not counted, not deleted (check it, then remove it by hand)",
        a.signature
    )
}

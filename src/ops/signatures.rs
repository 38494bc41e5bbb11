//! What the per-command trust rules say about signatures (prints nothing): every copy without a
//! valid signature is named for `verify`, and `prune` says why it leaves one alone. Adopting a
//! store that predates signing is [`super::adopt`].

use crate::store::Artifact;

/// One line per present copy of `a` without a valid signature (what `verify` reports).
pub fn report(a: &Artifact) -> Vec<String> {
    a.copies
        .iter()
        .filter(|c| c.present && !c.signature.is_valid())
        .map(|c| format!("{}: {}", c.sidecar_path.display(), c.signature))
        .collect()
}

/// Why prune leaves an untrusted artifact alone (it never counts toward a keep rule either).
pub fn untrusted_reason<S>(a: &Artifact<S>) -> String {
    format!(
        "{}: not counted, not deleted (check it, then remove it by hand)",
        a.signature
    )
}

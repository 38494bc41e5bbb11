//! Checking stored artifacts (copies, headers, contents) and comparing a node's live material with
//! its newest backup. Used by `coldkeep verify`; never prints.

use super::keystore;
use super::vocab::ArtifactKind;
use crate::bundle::{self, Identities, Manifest, Opened, PlainFile};
use crate::config::{Config, KeystoreKind, NodeConfig};
use crate::digest::{Keyed, sha256_hex};
use crate::material::{Identity, acra};
use crate::remote::Node;
use crate::sign::Verdict;
use crate::store::{Artifact, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// What kind of problem a verification found: the label of `coldkeep_verify_problems{kind=...}`,
/// so alerts can tell bit rot (hash) from a lost copy (missing) or a tampered sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// A copy is missing from one of the roots (primary or a replica).
    Missing,
    /// A copy cannot be read.
    Unreadable,
    /// A copy's ciphertext does not match its sidecar's hash or size.
    Hash,
    /// A copy's sidecar differs from the other copies'.
    Sidecar,
    /// A copy's age header does not parse.
    Header,
    /// Deep verification: the decrypted contents are wrong (or cannot be decrypted).
    Contents,
    /// The store itself: a file that is not a valid artifact or sidecar.
    Store,
    /// A copy's signature is missing, forged, by a key not in `allowed_signers`, or does not
    /// cover this sidecar (an edited or unsigned artifact): the attack signing exists to catch.
    Signature,
    /// Deep verification: a backed-up P12 does not open with the passphrase its backed-up
    /// cn-config.yaml holds (the backup could not be used as it is).
    Passphrase,
}

impl ProblemKind {
    /// Every kind, so metrics show a zero for each kind not found.
    pub const ALL: [ProblemKind; 9] = [
        ProblemKind::Missing,
        ProblemKind::Unreadable,
        ProblemKind::Hash,
        ProblemKind::Sidecar,
        ProblemKind::Header,
        ProblemKind::Contents,
        ProblemKind::Store,
        ProblemKind::Signature,
        ProblemKind::Passphrase,
    ];

    /// The metric label and state-file key.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Unreadable => "unreadable",
            ProblemKind::Hash => "hash",
            ProblemKind::Sidecar => "sidecar",
            ProblemKind::Header => "header",
            ProblemKind::Contents => "contents",
            ProblemKind::Store => "store",
            ProblemKind::Signature => "signature",
            ProblemKind::Passphrase => "passphrase",
        }
    }
}

/// The result of checking the whole store (or the selected nodes' part of it), replicas and
/// master-key store included: what `coldkeep verify` prints and the daemon's scheduled
/// verification records. The one place that decides what "verified" means (hashes, headers,
/// signatures, contents), so the command and the daemon can never disagree.
#[derive(Debug, Serialize)]
pub struct StoreCheck {
    /// One check per artifact.
    pub artifacts: Vec<ArtifactCheck>,
    /// Deep only: does each backed-up P12 open with the passphrase in its backed-up
    /// cn-config.yaml?
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub passphrases: Vec<super::passphrase::PassphraseCheck>,
    /// Files in the store that are not valid artifacts.
    pub store_problems: Vec<String>,
    /// Leftovers of interrupted writes (not problems).
    pub store_warnings: Vec<String>,
}

impl StoreCheck {
    /// Bad artifacts plus store problems: zero means all verified.
    pub fn failed(&self) -> usize {
        self.artifacts.iter().filter(|c| !c.ok).count()
            + self.store_problems.len()
            + self.passphrases.iter().filter(|p| !p.ok).count()
    }

    /// How many problems of each kind were found (every kind present, zero when none).
    pub fn problems_by_kind(&self) -> std::collections::BTreeMap<ProblemKind, u64> {
        let mut counts: std::collections::BTreeMap<ProblemKind, u64> =
            ProblemKind::ALL.iter().map(|k| (*k, 0)).collect();
        for kind in self.artifacts.iter().flat_map(|c| &c.kinds) {
            *counts.entry(*kind).or_default() += 1;
        }
        *counts.entry(ProblemKind::Store).or_default() += self.store_problems.len() as u64;
        *counts.entry(ProblemKind::Passphrase).or_default() +=
            self.passphrases.iter().filter(|p| !p.ok).count() as u64;
        counts
    }
}

/// Checks every artifact of the store, its replicas and the master-key store (only the named
/// nodes' when `names` is given), signatures included, and when deep the P12 passphrases
/// ([`check_signed`]: untrusted artifacts are checked too, so a forgery is reported rather than
/// skipped); deep (decrypting in memory) when identities are given. Never signs anything
/// (adopting a store that predates signing is [`super::adopt`]).
pub fn verify_store(
    config: &Config,
    names: Option<&[String]>,
    ids: Option<&Identities>,
) -> anyhow::Result<StoreCheck> {
    Ok(check_store(config, names, ids)?.0)
}

/// What [`check_store`] saw besides the check, for adoption ([`super::adopt`]).
pub(crate) struct Seen {
    /// The keystore store and the master-key store (when configured), as listed.
    pub stores: [Option<Store>; 2],
    /// Artifacts with at least one unsigned copy: which store, the artifact, and whether it
    /// passed deep verification (everything but its signatures).
    pub unsigned: Vec<(usize, Artifact, bool)>,
    /// Per (store, node, keystore): when its oldest validly signed artifact was made.
    pub oldest_signed: BTreeMap<(usize, String, String), DateTime<Utc>>,
    /// When the newest validly signed artifact of either store was made.
    pub newest_signed: Option<DateTime<Utc>>,
}

/// [`verify_store`], and what adoption needs to know about the store.
pub(crate) fn check_store(
    config: &Config,
    names: Option<&[String]>,
    ids: Option<&Identities>,
) -> anyhow::Result<(StoreCheck, Seen)> {
    let mut problems = Vec::new();
    let mut artifacts = Vec::new();
    // The primary store's trusted artifacts: the passphrase check reads the newest of them.
    let mut backups = Vec::new();
    let mut seen = Seen {
        stores: [Some(Store::new(&config.store)), Store::master_keys(&config.store)],
        unsigned: Vec::new(),
        oldest_signed: BTreeMap::new(),
        newest_signed: None,
    };
    for (i, store) in seen
        .stores
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((i, s.as_ref()?)))
    {
        let parts = match names {
            None => vec![store.list(None)?],
            Some(names) => names
                .iter()
                .map(|n| store.list(Some(n)))
                .collect::<Result<Vec<_>, _>>()?,
        };
        for part in parts {
            for a in &part.artifacts {
                let at = a.sidecar.manifest.created_at;
                let oldest = seen
                    .oldest_signed
                    .entry((i, a.node.clone(), a.keystore.clone()))
                    .or_insert(at);
                *oldest = (*oldest).min(at);
                seen.newest_signed = seen.newest_signed.max(Some(at));
            }
            for a in part.artifacts.iter().chain(&part.untrusted) {
                let (check, deep_ok) = check_signed(config, store, a, ids);
                artifacts.push(check);
                if a.copies
                    .iter()
                    .any(|c| c.present && c.signature == Verdict::Unsigned)
                {
                    seen.unsigned.push((i, a.clone(), deep_ok));
                }
            }
            problems.extend(part.problems);
            if i == 0 {
                backups.extend(part.artifacts);
            }
        }
    }
    let passphrases = ids
        .zip(seen.stores[0].as_ref())
        .map(|(ids, store)| {
            let nodes: Vec<&NodeConfig> = config
                .nodes
                .iter()
                .filter(|n| names.is_none_or(|names| names.contains(&n.name)))
                .collect();
            super::passphrase::check_all(&nodes, store, &backups, ids)
        })
        .unwrap_or_default();
    let (warnings, problems): (Vec<_>, Vec<_>) = problems.into_iter().partition(|p| p.interrupted);
    let describe = |p: crate::store::Problem| format!("{}: {}", p.path.display(), p.message);
    let check = StoreCheck {
        artifacts,
        passphrases,
        store_problems: problems.into_iter().map(describe).collect(),
        store_warnings: warnings.into_iter().map(describe).collect(),
    };
    Ok((check, seen))
}

/// The result of checking one artifact.
#[derive(Debug, Serialize)]
pub struct ArtifactCheck {
    /// The node.
    pub node: String,
    /// The keystore.
    pub keystore: String,
    /// The artifact id.
    pub id: String,
    /// Whether the contents were decrypted and checked.
    pub deep: bool,
    /// True when no problem was found.
    pub ok: bool,
    /// What is wrong, one line each.
    pub problems: Vec<String>,
    /// The kind of each problem, in the same order (for the metrics).
    #[serde(skip)]
    pub kinds: Vec<ProblemKind>,
    /// Acra: how many sealed keys the master key at hand opens (when one is at hand).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed_keys: Option<crate::material::acra_open::OpenReport>,
    /// `--sign-unsigned` signed this (deep-verified, unsigned) artifact now.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub signed_now: bool,
    /// The artifact was stored although a check of it failed: why its identity was not checked
    /// then (a deep verify checks it now, with the configured password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_unchecked: Option<String>,
}

/// [`verify_artifact`], then the copies' signatures: an artifact without a valid signature on
/// every present copy fails, each copy named. Also says whether everything but the signatures
/// passed deep verification (what adoption requires, see [`super::adopt`]).
pub fn check_signed(
    config: &Config,
    store: &Store,
    a: &Artifact,
    ids: Option<&Identities>,
) -> (ArtifactCheck, bool) {
    let mut check = verify_artifact(config, store, a, ids);
    // A copy missing from a root (an offline replica) says nothing against the contents.
    let deep_ok = check.deep && check.kinds.iter().all(|k| *k == ProblemKind::Missing);
    let signatures = super::signatures::report(a);
    check
        .kinds
        .extend(signatures.iter().map(|_| ProblemKind::Signature));
    check.problems.extend(signatures);
    check.ok = check.problems.is_empty();
    (check, deep_ok)
}

/// Checks every copy of one artifact, and its contents when identities are given.
pub fn verify_artifact(
    config: &Config,
    store: &Store,
    a: &Artifact,
    ids: Option<&Identities>,
) -> ArtifactCheck {
    let mut problems = Vec::new();
    let mut kinds = Vec::new();
    let mut found = |kind: ProblemKind, problem: String| {
        problems.push(problem);
        kinds.push(kind);
    };
    let mut good_ciphertext = None;
    for copy in &a.copies {
        let root = copy.root.display();
        if !copy.present {
            found(ProblemKind::Missing, format!("copy missing in {root}"));
            continue;
        }
        let (ciphertext, sidecar) = match store.read(copy) {
            Ok(x) => x,
            Err(e) => {
                found(ProblemKind::Unreadable, format!("cannot read copy: {e}"));
                continue;
            }
        };
        let mut copy_ok = true;
        let actual = sha256_hex(&ciphertext);
        if actual != sidecar.ciphertext_sha256 || ciphertext.len() as u64 != sidecar.ciphertext_size {
            found(
                ProblemKind::Hash,
                format!(
                    "{}: ciphertext does not match its sidecar (sha256 {actual}, {} bytes; sidecar says {}, {} bytes): \
                 the file was modified or truncated",
                    copy.age_path.display(),
                    ciphertext.len(),
                    sidecar.ciphertext_sha256,
                    sidecar.ciphertext_size
                ),
            );
            copy_ok = false;
        }
        if !sidecar.same_artifact(&a.sidecar) {
            found(
                ProblemKind::Sidecar,
                format!(
                    "{}: sidecar differs from the other copies'",
                    copy.sidecar_path.display()
                ),
            );
            copy_ok = false;
        }
        if let Err(e) = bundle::check_header(&ciphertext) {
            found(ProblemKind::Header, format!("{}: {e}", copy.age_path.display()));
            copy_ok = false;
        }
        if copy_ok && good_ciphertext.is_none() {
            good_ciphertext = Some(ciphertext);
        }
    }
    let mut deep = ids.is_some();
    let mut sealed_keys = None;
    if let Some(ids) = ids {
        match &good_ciphertext {
            None => found(ProblemKind::Contents, "no intact copy to decrypt".to_string()),
            Some(ciphertext) => match bundle::open(ciphertext, ids) {
                // Master keys have their own recipients: an operator identity that is not one of
                // them checks these artifacts shallowly, without calling them bad.
                Err(bundle::BundleError::NotARecipient)
                    if ArtifactKind::AcraMasterKey.is(&a.sidecar.manifest.kind) =>
                {
                    deep = false;
                }
                Err(e) => found(ProblemKind::Contents, e.to_string()),
                Ok(opened) => {
                    sealed_keys = super::acra_master::open_keys(config, &a.node, &a.keystore, &opened, ids);
                    for p in sealed_keys.iter().flat_map(|r| r.problems()) {
                        found(ProblemKind::Contents, p);
                    }
                    for p in check_contents(config, a, opened, ids) {
                        found(ProblemKind::Contents, p);
                    }
                }
            },
        }
    }
    ArtifactCheck {
        node: a.node.clone(),
        keystore: a.keystore.clone(),
        id: a.id.clone(),
        deep,
        ok: problems.is_empty(),
        problems,
        kinds,
        sealed_keys,
        signed_now: false,
        identity_unchecked: a.sidecar.manifest.identity_unchecked.clone(),
    }
}

/// Decrypts in memory and compares contents with the sidecar; returns the problems found.
fn check_contents(config: &Config, a: &Artifact, opened: Opened, ids: &Identities) -> Vec<String> {
    let mut problems = Vec::new();
    if !a.sidecar.describes_inner(&opened.manifest) {
        problems
            .push("the manifest inside the artifact differs from the sidecar: the sidecar was edited".into());
    }
    problems.extend(keyed_hash_problems(config, &opened));
    let ks = config
        .node(&a.node)
        .and_then(|n| n.keystores.iter().find(|k| k.name == a.keystore));
    match ArtifactKind::parse(&opened.manifest.kind) {
        Some(ArtifactKind::AcraMasterKey) => {
            for file in &opened.files {
                let text = String::from_utf8_lossy(&file.data);
                match acra::MasterKey::parse(&text) {
                    Ok(key) if Some(Identity::AcraMasterKey(key.identity())) != opened.manifest.identity => {
                        problems.push("the master key differs from the recorded key id".into())
                    }
                    Ok(_) => {}
                    Err(e) => problems.push(format!("{}: {e}", file.entry.path)),
                }
            }
            return problems;
        }
        Some(ArtifactKind::Acra) => {
            problems.extend(check_acra_rings(config, a, &opened, ids));
            return problems;
        }
        Some(ArtifactKind::Onlykey) => {
            let recorded = opened.manifest.identity.clone();
            let parsed = opened
                .files
                .first()
                .map(|f| crate::material::onlykey::parse(&String::from_utf8_lossy(&f.data)));
            match parsed {
                Some(Ok(b)) if Some(Identity::OnlyKey(b.identity())) == recorded => {}
                Some(Ok(_)) => problems.push("the OnlyKey backup differs from its recorded identity".into()),
                Some(Err(e)) => problems.push(format!("the OnlyKey backup text does not verify: {e}")),
                None => problems.push("the artifact holds no file".into()),
            }
            return problems;
        }
        Some(ArtifactKind::Bitbox02) => {
            let checked = crate::ops::hardware::check_bitbox02(&opened);
            match checked.identity {
                Some(id) if Some(Identity::BitBox02(id.clone())) == opened.manifest.identity => {}
                Some(_) => problems.push("the BitBox02 backup differs from its recorded identity".into()),
                None => problems.push(format!("no valid BitBox02 copy: {}", checked.problems.join("; "))),
            }
            return problems;
        }
        // A plain file's bytes were checked against their hashes when it was opened.
        Some(ArtifactKind::P12 | ArtifactKind::File) | None => {}
    }
    // Stored without its identity checked: what was recorded is what the structure told, so
    // only whether it opens now is checked.
    let recorded_checked = opened.manifest.identity_unchecked.is_none();
    if let Some(ks) = ks.filter(|k| k.password.is_some() && k.kind.as_str() == opened.manifest.kind) {
        for file in &opened.files {
            match keystore::identify(ks, &file.data) {
                Ok(identity) if recorded_checked && Some(&identity) != opened.manifest.identity.as_ref() => {
                    problems.push(format!(
                        "{} opens, but its identity ({}) differs from the recorded one",
                        file.entry.path,
                        identity.short()
                    ))
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("{}: {e:#}", file.entry.path)),
            }
        }
    }
    problems
}

/// The keyed hashes the artifact records, recomputed from its decrypted files when they were
/// made with this agent's key (another key's, after a rotation, cannot be checked here; the
/// files' SHA-256s inside were checked when the bundle was opened).
fn keyed_hash_problems(config: &Config, opened: &Opened) -> Vec<String> {
    let Some(keyed) = config.store.keys.as_ref().map(|k| k.keyed_hash()) else {
        return Vec::new();
    };
    let m = &opened.manifest;
    if m.hash_key.as_deref() != Some(keyed.id()) {
        return Vec::new();
    }
    let mut problems: Vec<String> = opened
        .files
        .iter()
        .filter(|f| f.entry.hmac.as_deref() != Some(keyed.hex(&f.data).as_str()))
        .map(|f| {
            format!(
                "{}: its recorded keyed hash does not match its contents",
                f.entry.path
            )
        })
        .collect();
    if let (Some(Identity::File(id)), [one]) = (&m.identity, &opened.files[..])
        && id.hmac.as_deref() != Some(keyed.hex(&one.data).as_str())
    {
        problems.push("the identity's keyed hash does not match the file".into());
    }
    problems
}

/// With the v2 master key at hand (from the config, or the newest master-key artifact that these
/// identities open), recomputes every key ring's HMAC signature.
fn check_acra_rings(config: &Config, a: &Artifact, opened: &Opened, ids: &Identities) -> Vec<String> {
    let is_v2 = matches!(&opened.manifest.identity, Some(Identity::Acra(id)) if id.version == 2);
    if !is_v2 {
        return Vec::new();
    }
    let keys = super::acra_master::master_keys_for(config, &a.node, &a.keystore, ids);
    let signature_keys: Vec<&[u8]> = keys.iter().filter_map(|k| k.signature_key()).collect();
    if signature_keys.is_empty() {
        if !keys.is_empty() {
            // A v1 key for a v2 keystore is reported once, by the sealed-key check.
            return Vec::new();
        }
        tracing::info!(node = %a.node, keystore = %a.keystore, "no master key at hand: key ring signatures not checked");
        return Vec::new();
    }
    // After a key rotation older backups match an older key: the backup is good when one of the
    // keys at hand verifies every ring.
    let mut best: Option<Vec<String>> = None;
    for key in signature_keys {
        let mut problems = Vec::new();
        for f in &opened.files {
            let Some(rel) = f.entry.path.strip_prefix(acra::KEYS_PREFIX) else {
                continue;
            };
            if rel.ends_with(".keyring")
                && let Err(e) = acra::verify_ring(rel, &f.data, key)
            {
                problems.push(format!("key ring {rel}: {e}"));
            }
        }
        if problems.is_empty() {
            return problems;
        }
        if best.as_ref().is_none_or(|b| problems.len() < b.len()) {
            best = Some(problems);
        }
    }
    best.unwrap_or_default()
}

/// The result of comparing one keystore's live file with its latest backup.
#[derive(Debug, Serialize)]
pub struct LiveCheck {
    /// The node.
    pub node: String,
    /// The keystore.
    pub keystore: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The newest backup compared with, if any.
    pub backup: Option<String>,
    /// Whether the node holds exactly that backup.
    pub matches: bool,
    /// What matched or what differs, in one sentence.
    pub detail: String,
}

/// `keyed hash <12 hex>…` for one file, `<n> files` for a tree: never a plain SHA-256 of
/// plaintext (see [`crate::digest::Keyed`]).
fn file_summary(files: &[PlainFile], keyed: &Keyed) -> String {
    match files {
        [one] => {
            let h = keyed.hex(&one.data);
            format!("keyed hash {}…", &h[..12])
        }
        many => format!("{} files", many.len()),
    }
}

/// Which files of a tree changed, appeared or disappeared since the backup.
fn tree_difference(files: &[PlainFile], m: &Manifest, digests: &keystore::Digests) -> String {
    let stored: std::collections::HashMap<&str, &str> = m
        .files
        .iter()
        .map(|f| (f.path.as_str(), digests.stored(f)))
        .collect();
    let live: std::collections::HashMap<&str, String> = files
        .iter()
        .map(|f| (f.entry.path.as_str(), digests.live(f)))
        .collect();
    let mut parts = Vec::new();
    let mut list = |what: &str, mut names: Vec<&str>| {
        if !names.is_empty() {
            names.sort();
            let shown: Vec<&str> = names.iter().take(5).copied().collect();
            let more = if names.len() > 5 {
                format!(" and {} more", names.len() - 5)
            } else {
                String::new()
            };
            parts.push(format!("{what}: {}{more}", shown.join(", ")));
        }
    };
    list(
        "changed",
        live.iter()
            .filter(|(p, h)| stored.get(*p).is_some_and(|s| s != h))
            .map(|(p, _)| *p)
            .collect(),
    );
    list(
        "new on the node",
        live.keys()
            .filter(|p| !stored.contains_key(*p))
            .copied()
            .collect(),
    );
    list(
        "gone from the node",
        stored
            .keys()
            .filter(|p| !live.contains_key(*p))
            .copied()
            .collect(),
    );
    parts.join("; ")
}

/// Compares each of a node's keystores as the node has it now with its newest backup in
/// `artifacts` (the node's listing); `keyed` is the store's keyed hash (what sidecars record).
pub fn live_checks(
    node: &NodeConfig,
    session: &dyn Node,
    artifacts: &[Artifact],
    keyed: &Keyed,
) -> Vec<LiveCheck> {
    node.keystores
        .iter()
        .map(|ks| {
            let latest = super::artifact::latest(artifacts, &node.name, &ks.name);
            let mut check = LiveCheck {
                node: node.name.clone(),
                keystore: ks.name.clone(),
                backup: latest.map(|a| a.id.clone()),
                matches: false,
                detail: String::new(),
            };
            check.detail = match (latest, keystore::fetch(session, ks)) {
                (None, _) => "no backup of this keystore in the store".into(),
                (_, Err(e)) => format!("cannot read the live file: {e:#}"),
                (Some(a), Ok(live)) => {
                    let m = &a.sidecar.manifest;
                    match keystore::Digests::of(m, keyed) {
                        None => format!(
                            "cannot compare: backup {} records keyed hashes made with another signing key \
                             (rotated?); take a new backup",
                            a.id
                        ),
                        Some(digests) => {
                            let same = keystore::same_files(&live.files, m, keyed) == Some(true);
                            check.matches = same;
                            live_detail(ks, a, &live, &digests, same, keyed)
                        }
                    }
                }
            };
            check
        })
        .collect()
}

/// What a live check says about one keystore's fetched material and its newest backup `a`.
fn live_detail(
    ks: &crate::config::KeystoreConfig,
    a: &Artifact,
    live: &keystore::Fetched,
    digests: &keystore::Digests,
    same: bool,
    keyed: &Keyed,
) -> String {
    let m = &a.sidecar.manifest;
    if same {
        return format!(
            "matches: the live {} byte-identical to backup {} ({})",
            if ks.kind != KeystoreKind::Acra {
                "file is"
            } else {
                "keystore is"
            },
            a.id,
            file_summary(&live.files, keyed)
        );
    }
    if ks.kind == KeystoreKind::Acra {
        return format!(
            "DIFFERS from backup {}: {}; take a new backup",
            a.id,
            tree_difference(&live.files, m, digests)
        );
    }
    let same_key = live.unchecked.is_none()
        && live.identity.is_some()
        && m.identity == live.identity
        && ks.password.is_some();
    format!(
        "DIFFERS: the live file ({}) is not backup {}; {}",
        file_summary(&live.files, keyed),
        a.id,
        if same_key {
            "the identity (alias, certificate, node id) is the same, so the file was rewritten \
             (new password?): take a new backup"
                .to_string()
        } else if let Some(why) = &live.unchecked {
            format!("the live file's identity could not be checked: {why}")
        } else if ks.password.is_some() {
            format!(
                "the node uses a different key ({}) than the backup ({})",
                live.identity.as_ref().map(|i| i.short()).unwrap_or_default(),
                m.identity.as_ref().map(|i| i.short()).unwrap_or_default()
            )
        } else {
            "configure the keystore's password to compare identities".to_string()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::passphrase::PassphraseCheck;

    fn passphrase(ok: bool) -> PassphraseCheck {
        PassphraseCheck {
            node: "n1".into(),
            keystore: "p12".into(),
            artifact: "a".into(),
            profile: "dag-l0".into(),
            result: if ok { "opens" } else { "does not open" }.into(),
            ok,
        }
    }

    #[test]
    fn signature_and_passphrase_problems_count_under_their_kinds_and_fail_the_check() {
        let check = StoreCheck {
            artifacts: vec![ArtifactCheck {
                node: "n1".into(),
                keystore: "p12".into(),
                id: "a".into(),
                deep: true,
                ok: false,
                problems: vec!["sidecar differs".into(), "bad signature".into()],
                kinds: vec![ProblemKind::Sidecar, ProblemKind::Signature],
                sealed_keys: None,
                signed_now: false,
                identity_unchecked: None,
            }],
            passphrases: vec![passphrase(true), passphrase(false)],
            store_problems: Vec::new(),
            store_warnings: Vec::new(),
        };
        let counts = check.problems_by_kind();
        assert_eq!(counts.len(), ProblemKind::ALL.len(), "every kind has a count");
        assert_eq!(counts[&ProblemKind::Signature], 1);
        assert_eq!(counts[&ProblemKind::Sidecar], 1);
        assert_eq!(
            counts[&ProblemKind::Passphrase],
            1,
            "only the one that does not open"
        );
        assert_eq!(counts[&ProblemKind::Hash], 0);
        assert_eq!(
            check.failed(),
            2,
            "one bad artifact, one passphrase that does not open"
        );
    }
}

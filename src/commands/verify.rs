//! `coldkeep verify`: prove what is stored.
//!
//! Without a key: every copy's ciphertext matches its sidecar's hash and size, the age header
//! parses, and replicas agree with the primary. With `--identity`: also decrypt in memory, check
//! every file's hash, that the inner manifest equals the sidecar, and (when the keystore's
//! password is configured) that the material opens and has the recorded identity.
//! With `--live --node N`: compare the latest backup with the file the node has right now.

use super::backup::MASTER_KEY_KIND;
use super::keystore;
use super::report::{Table, print_json};
use crate::bundle::{self, Identities, Manifest, Opened, PlainFile, Purpose};
use crate::cli::VerifyArgs;
use crate::config::{Config, KeystoreKind, NodeConfig};
use crate::digest::sha256_hex;
use crate::error::Exit;
use crate::material::{Identity, acra};
use crate::remote::Session;
use crate::store::{Artifact, Problem, Store};
use serde::Serialize;

/// The result of checking one artifact.
#[derive(Debug, Serialize)]
pub struct ArtifactCheck {
    pub node: String,
    pub keystore: String,
    pub id: String,
    /// Whether the contents were decrypted and checked.
    pub deep: bool,
    pub ok: bool,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
struct VerifyOutput {
    artifacts: Vec<ArtifactCheck>,
    /// With --identity: does each backed-up P12 open with the passphrase in cn-config.yaml?
    #[serde(skip_serializing_if = "Vec::is_empty")]
    passphrases: Vec<super::passphrase::PassphraseCheck>,
    store_problems: Vec<String>,
    store_warnings: Vec<String>,
}

/// Runs `coldkeep verify`.
pub fn run(config: &Config, args: &VerifyArgs) -> anyhow::Result<Exit> {
    if let Some(node) = &args.node {
        super::check_node_names(config, std::slice::from_ref(node))?;
    }
    if args.live {
        let node = config
            .node(args.node.as_deref().unwrap_or_default())
            .expect("checked above");
        return live(config, node, args.json);
    }
    let identities = args.identity.as_deref().map(Identities::from_file).transpose()?;
    let store = Store::new(&config.store);
    let mut listing = store.list(args.node.as_deref())?;
    let mut checks: Vec<ArtifactCheck> = listing
        .artifacts
        .iter()
        .map(|a| verify_artifact(config, &store, a, identities.as_ref()))
        .collect();
    if let Some(master) = Store::master_keys(&config.store) {
        let keys = master.list(args.node.as_deref())?;
        checks.extend(
            keys.artifacts
                .iter()
                .map(|a| verify_artifact(config, &master, a, identities.as_ref())),
        );
        listing.problems.extend(keys.problems);
    }
    let (warnings, problems): (Vec<&Problem>, Vec<&Problem>) =
        listing.problems.iter().partition(|p| p.interrupted);
    let describe = |p: &&Problem| format!("{}: {}", p.path.display(), p.message);
    let passphrases = identities
        .as_ref()
        .map(|ids| {
            let nodes: Vec<&NodeConfig> = config
                .nodes
                .iter()
                .filter(|n| args.node.as_ref().is_none_or(|x| *x == n.name))
                .collect();
            super::passphrase::check_all(&nodes, &store, &listing.artifacts, ids)
        })
        .unwrap_or_default();
    let out = VerifyOutput {
        artifacts: checks,
        passphrases,
        store_problems: problems.iter().map(describe).collect(),
        store_warnings: warnings.iter().map(describe).collect(),
    };
    let failed = out.artifacts.iter().filter(|c| !c.ok).count()
        + out.store_problems.len()
        + out.passphrases.iter().filter(|p| !p.ok).count();
    if args.json {
        print_json(&out)?;
    } else {
        print_checks(&out, identities.is_some());
    }
    Ok(if failed == 0 { Exit::Ok } else { Exit::Failed })
}

/// Checks every copy of one artifact, and its contents when identities are given.
pub fn verify_artifact(
    config: &Config,
    store: &Store,
    a: &Artifact,
    ids: Option<&Identities>,
) -> ArtifactCheck {
    let mut problems = Vec::new();
    let mut good_ciphertext = None;
    for copy in &a.copies {
        let root = copy.root.display();
        if !copy.present {
            problems.push(format!("copy missing in {root}"));
            continue;
        }
        let (ciphertext, sidecar) = match store.read(copy) {
            Ok(x) => x,
            Err(e) => {
                problems.push(format!("cannot read copy: {e}"));
                continue;
            }
        };
        let mut copy_ok = true;
        let actual = sha256_hex(&ciphertext);
        if actual != sidecar.ciphertext_sha256 || ciphertext.len() as u64 != sidecar.ciphertext_size {
            problems.push(format!(
                "{}: ciphertext does not match its sidecar (sha256 {actual}, {} bytes; sidecar says {}, {} bytes): \
                 the file was modified or truncated",
                copy.age_path.display(),
                ciphertext.len(),
                sidecar.ciphertext_sha256,
                sidecar.ciphertext_size
            ));
            copy_ok = false;
        }
        if !sidecar.same_artifact(&a.sidecar) {
            problems.push(format!(
                "{}: sidecar differs from the other copies'",
                copy.sidecar_path.display()
            ));
            copy_ok = false;
        }
        if let Err(e) = bundle::check_header(&ciphertext) {
            problems.push(format!("{}: {e}", copy.age_path.display()));
            copy_ok = false;
        }
        if copy_ok && good_ciphertext.is_none() {
            good_ciphertext = Some(ciphertext);
        }
    }
    let mut deep = ids.is_some();
    if let Some(ids) = ids {
        match &good_ciphertext {
            None => problems.push("no intact copy to decrypt".to_string()),
            Some(ciphertext) => match bundle::open(ciphertext, ids) {
                // Master keys have their own recipients: an operator identity that is not one of
                // them checks these artifacts shallowly, without calling them bad.
                Err(bundle::BundleError::NotARecipient) if a.sidecar.manifest.kind == MASTER_KEY_KIND => {
                    deep = false;
                }
                Err(e) => problems.push(e.to_string()),
                Ok(opened) => problems.extend(check_contents(config, a, opened, ids)),
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
    }
}

/// Decrypts in memory and compares contents with the sidecar; returns the problems found.
fn check_contents(config: &Config, a: &Artifact, opened: Opened, ids: &Identities) -> Vec<String> {
    let mut problems = Vec::new();
    if opened.manifest != a.sidecar.manifest {
        problems
            .push("the manifest inside the artifact differs from the sidecar: the sidecar was edited".into());
    }
    let ks = config
        .node(&a.node)
        .and_then(|n| n.keystores.iter().find(|k| k.name == a.keystore));
    match opened.manifest.kind.as_str() {
        MASTER_KEY_KIND => {
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
        "acra" => {
            problems.extend(check_acra_rings(config, a, &opened, ids));
            return problems;
        }
        super::onlykey::KIND => {
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
        super::bitbox02::KIND => {
            let checked = super::bitbox02::check_stored(&opened);
            match checked.identity {
                Some(id) if Some(Identity::BitBox02(id.clone())) == opened.manifest.identity => {}
                Some(_) => problems.push("the BitBox02 backup differs from its recorded identity".into()),
                None => problems.push(format!("no valid BitBox02 copy: {}", checked.problems.join("; "))),
            }
            return problems;
        }
        _ => {}
    }
    if let Some(ks) = ks.filter(|k| k.password.is_some() && k.kind.as_str() == opened.manifest.kind) {
        for file in &opened.files {
            match keystore::identify(ks, &file.data) {
                Ok(identity) if Some(&identity) != opened.manifest.identity.as_ref() => {
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

/// With the v2 master key at hand (from the config, or the newest master-key artifact that these
/// identities open), recomputes every key ring's HMAC signature.
fn check_acra_rings(config: &Config, a: &Artifact, opened: &Opened, ids: &Identities) -> Vec<String> {
    let is_v2 = matches!(&opened.manifest.identity, Some(Identity::Acra(id)) if id.version == 2);
    if !is_v2 {
        return Vec::new();
    }
    let keys = master_keys_for(config, &a.node, &a.keystore, ids);
    let signature_keys: Vec<&[u8]> = keys.iter().filter_map(|k| k.signature_key()).collect();
    if signature_keys.is_empty() {
        if !keys.is_empty() {
            return vec!["the master keys at hand are v1 keys; a v2 keystore needs a v2 master key".into()];
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

/// Every master key at hand for a keystore: the config's `master_key`, then each master-key
/// artifact (newest first) that these identities open.
fn master_keys_for(config: &Config, node: &str, keystore: &str, ids: &Identities) -> Vec<acra::MasterKey> {
    let mut keys = Vec::new();
    let ks = config
        .node(node)
        .and_then(|n| n.keystores.iter().find(|k| k.name == keystore));
    if let Some(value) = ks
        .and_then(|k| k.master_key.as_ref())
        .and_then(|s| s.resolve().ok())
        && let Ok(key) = acra::MasterKey::parse(&value)
    {
        keys.push(key);
    }
    let Some(store) = Store::master_keys(&config.store) else {
        return keys;
    };
    let Ok(listing) = store.list(Some(node)) else {
        return keys;
    };
    let mut artifacts: Vec<&Artifact> = listing
        .artifacts
        .iter()
        .filter(|a| a.keystore == keystore)
        .collect();
    artifacts.sort_by_key(|a| std::cmp::Reverse(a.sidecar.manifest.created_at));
    for artifact in artifacts {
        let Ok(opened) = super::artifact::open_verified(&store, artifact, ids) else {
            continue;
        };
        if let Some(key) = opened
            .files
            .first()
            .and_then(|f| acra::MasterKey::parse(&String::from_utf8_lossy(&f.data)).ok())
        {
            keys.push(key);
        }
    }
    keys
}

fn print_checks(out: &VerifyOutput, deep: bool) {
    super::passphrase::print(&out.passphrases);
    let mut table = Table::new(&["NODE", "KEYSTORE", "ID", "RESULT"]);
    for c in &out.artifacts {
        let result = if c.ok {
            if c.deep {
                "ok (decrypted, contents checked)".to_string()
            } else {
                "ok (hashes, header)".to_string()
            }
        } else {
            format!("BAD: {}", c.problems.join("; "))
        };
        table.row(vec![c.node.clone(), c.keystore.clone(), c.id.clone(), result]);
    }
    if table.is_empty() {
        println!("No artifacts to verify.");
    } else {
        print!("{}", table.render());
    }
    for p in &out.store_warnings {
        eprintln!("warning: {p}");
    }
    for p in &out.store_problems {
        println!("BAD: {p}");
    }
    let bad = out.artifacts.iter().filter(|c| !c.ok).count();
    println!(
        "\n{} of {} artifacts verified.",
        out.artifacts.len() - bad,
        out.artifacts.len()
    );
    if !deep && !out.artifacts.is_empty() {
        println!("(Without --identity only hashes and headers were checked; add --identity KEY to decrypt.)");
    }
}

/// The result of comparing one keystore's live file with its latest backup.
#[derive(Debug, Serialize)]
pub struct LiveCheck {
    pub node: String,
    pub keystore: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    pub matches: bool,
    /// What matched or what differs, in one sentence.
    pub detail: String,
}

fn live(config: &Config, node: &NodeConfig, json: bool) -> anyhow::Result<Exit> {
    let store = Store::new(&config.store);
    let listing = store.list(Some(&node.name))?;
    let session = Session::connect(node)?;
    let checks: Vec<LiveCheck> = node
        .keystores
        .iter()
        .map(|ks| {
            let latest = listing
                .artifacts
                .iter()
                .filter(|a| a.keystore == ks.name && a.sidecar.manifest.purpose == Purpose::Backup)
                .max_by(|x, y| (x.sidecar.manifest.created_at, &x.id).cmp(&(y.sidecar.manifest.created_at, &y.id)));
            let mut check = LiveCheck {
                node: node.name.clone(),
                keystore: ks.name.clone(),
                backup: latest.map(|a| a.id.clone()),
                matches: false,
                detail: String::new(),
            };
            check.detail = match (latest, keystore::fetch(&session, ks)) {
                (None, _) => "no backup of this keystore in the store".into(),
                (_, Err(e)) => format!("cannot read the live file: {e:#}"),
                (Some(a), Ok(live)) => {
                    let m = &a.sidecar.manifest;
                    if keystore::same_files(&live.files, m) {
                        check.matches = true;
                        format!(
                            "matches: the live {} byte-identical to backup {} ({})",
                            if ks.kind != KeystoreKind::Acra { "file is" } else { "keystore is" },
                            a.id,
                            file_summary(&live.files)
                        )
                    } else if ks.kind == KeystoreKind::Acra {
                        format!(
                            "DIFFERS from backup {}: {}; take a new backup",
                            a.id,
                            tree_difference(&live.files, m)
                        )
                    } else {
                        let live_sha = file_summary(&live.files);
                        let backup_sha = m.files.first().map(|f| f.sha256.as_str()).unwrap_or("-");
                        let same_key = m.identity.as_ref() == Some(&live.identity) && ks.password.is_some();
                        format!(
                            "DIFFERS: live {live_sha}, backup {} has {backup_sha}; {}",
                            a.id,
                            if same_key {
                                "the identity (alias, certificate, node id) is the same, so the file was rewritten \
                                 (new password?): take a new backup"
                                    .to_string()
                            } else if ks.password.is_some() {
                                format!(
                                    "the node uses a different key ({}) than the backup ({})",
                                    live.identity.short(),
                                    m.identity.as_ref().map(|i| i.short()).unwrap_or_default()
                                )
                            } else {
                                "configure the keystore's password to compare identities".to_string()
                            }
                        )
                    }
                }
            };
            check
        })
        .collect();
    session.close();
    if json {
        print_json(&checks)?;
    } else {
        for c in &checks {
            println!("{}/{}: {}", c.node, c.keystore, c.detail);
        }
    }
    Ok(if checks.iter().all(|c| c.matches) {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

/// `sha256 <hex>` for one file, `<n> files` for a tree.
fn file_summary(files: &[PlainFile]) -> String {
    match files {
        [one] => format!("sha256 {}", one.entry.sha256),
        many => format!("{} files", many.len()),
    }
}

/// Which files of a tree changed, appeared or disappeared since the backup.
fn tree_difference(files: &[PlainFile], m: &Manifest) -> String {
    let stored: std::collections::HashMap<&str, &str> = m
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.sha256.as_str()))
        .collect();
    let live: std::collections::HashMap<&str, &str> = files
        .iter()
        .map(|f| (f.entry.path.as_str(), f.entry.sha256.as_str()))
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
            .filter(|(p, h)| stored.get(*p).is_some_and(|s| s != *h))
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

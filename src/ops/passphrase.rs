//! Does the backed-up P12 open with the passphrase nodectl's cn-config.yaml holds? A P12 without
//! its passphrase is not a usable backup, so `verify --identity` answers per profile from the
//! newest backups of both (the P12 keystore, and the node's `file` keystore holding the
//! cn-config.yaml its `nodectl_config` names). The passphrase is never printed or logged.

use super::artifact::latest as newest;
use crate::bundle::{Identities, Opened};
use crate::config::{KeystoreKind, NodeConfig};
use crate::material::{nodectl, p12};
use crate::store::{Artifact, Store};
use serde::Serialize;

/// One profile's answer.
#[derive(Debug, Serialize)]
pub struct PassphraseCheck {
    /// Node name.
    pub node: String,
    /// The P12 keystore.
    pub keystore: String,
    /// The P12 artifact checked (the newest backup).
    pub artifact: String,
    /// nodectl profile (`dag-l0`, ...).
    pub profile: String,
    /// `opens`, `does not open`, `encrypted, not checked`, `not stored in cn-config.yaml`.
    pub result: String,
    /// False only when the passphrase is there and does not open the P12.
    pub ok: bool,
}

/// Decrypts an artifact with every check a restore makes (signature, hashes); `None` when it
/// does not open, so a damaged or forged artifact is never judged by its contents.
fn open(store: &Store, a: &Artifact, ids: &Identities) -> Option<Opened> {
    super::artifact::open_verified(store, a, ids).ok()
}

impl PassphraseCheck {
    /// The answer as one line for people (no passphrase in it).
    pub fn line(&self) -> String {
        format!(
            "passphrase of {}/{} ({}) for profile {}: {}",
            self.node, self.keystore, self.artifact, self.profile, self.result
        )
    }
}

/// Checks every P12 keystore whose cn-config.yaml is also backed up as a `file` keystore.
pub fn check_all(
    nodes: &[&NodeConfig],
    store: &Store,
    artifacts: &[Artifact],
    ids: &Identities,
) -> Vec<PassphraseCheck> {
    let mut out = Vec::new();
    for node in nodes {
        for ks in node.keystores.iter().filter(|k| k.kind == KeystoreKind::P12) {
            let Some(cn_path) = &ks.nodectl_config else {
                continue;
            };
            let Some(cn_ks) = node
                .keystores
                .iter()
                .find(|k| k.kind == KeystoreKind::File && &k.path == cn_path)
            else {
                continue;
            };
            let (Some(p12_art), Some(cn_art)) = (
                newest(artifacts, &node.name, &ks.name),
                newest(artifacts, &node.name, &cn_ks.name),
            ) else {
                continue;
            };
            let (Some(p12_opened), Some(cn_opened)) = (open(store, p12_art, ids), open(store, cn_art, ids))
            else {
                continue;
            };
            let (Some(p12_file), Some(cn_file)) = (p12_opened.files.first(), cn_opened.files.first()) else {
                continue;
            };
            let text = nodectl::text_of(&cn_file.data);
            let Ok(profiles) = nodectl::passphrases(&text) else {
                continue;
            };
            for p in profiles
                .into_iter()
                .filter(|p| p.path.as_deref() == Some(ks.path.as_str()))
            {
                let (result, ok) = match &p.passphrase {
                    nodectl::Passphrase::Plain(pass) => {
                        match p12::inspect(&p12_file.data, Some(pass.as_str())) {
                            Ok(_) => ("opens", true),
                            Err(_) => ("does not open", false),
                        }
                    }
                    nodectl::Passphrase::Encrypted => ("encrypted, not checked", true),
                    nodectl::Passphrase::NotStored => ("not stored in cn-config.yaml, not checked", true),
                };
                out.push(PassphraseCheck {
                    node: node.name.clone(),
                    keystore: ks.name.clone(),
                    artifact: p12_art.id.clone(),
                    profile: p.profile,
                    result: result.into(),
                    ok,
                });
            }
        }
    }
    out
}

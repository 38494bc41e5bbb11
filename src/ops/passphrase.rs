//! Does a P12 open with the passphrase nodectl's cn-config.yaml gives each profile that uses it
//! (and, in formats that store one, carry the alias nodectl exports)? nodectl can only start a
//! profile whose `p12_passphrase` opens its P12 under its `CL_KEYALIAS`, so a P12 without its
//! passphrase is not a usable backup and a restored P12 the current passphrase cannot open
//! leaves the node down.
//!
//! [`profile_checks`] is the rule; `restore` and `check --identity` apply it against the node's
//! current cn-config.yaml, `verify --identity` ([`check_all`]) against the newest backups of both
//! (the P12 keystore, and the node's `file` keystore holding the cn-config.yaml its
//! `nodectl_config` names). The passphrase is never printed or logged.

use super::artifact::latest as newest;
use crate::bundle::{Identities, Opened};
use crate::config::{KeystoreKind, NodeConfig};
use crate::material::nodectl::{self, NodectlConfig, Passphrase};
use crate::material::p12::{self, P12Error};
use crate::store::{Artifact, Store};
use serde::Serialize;

/// One profile's answer for one P12.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileCheck {
    /// nodectl profile (`dag-l0`, ...).
    pub profile: String,
    /// `opens`, `does not open ...`, `not checked: ...` (with the reason).
    pub result: String,
    /// Whether the passphrase was tried (false: encrypted or not stored).
    pub checked: bool,
    /// False when the passphrase is there and does not open the P12, or the alias differs.
    pub ok: bool,
}

/// At most this many distinct passphrases are tried on one P12.
const MAX_TRIED: usize = 16;

/// Why a passphrase could not be tried, per kind.
const ENCRYPTED: &str = "not checked: the passphrase is encrypted (global_p12.encryption: True); its key is in \
                         /etc/security/cnngsenc.conf on the node, and coldkeep does not decrypt nodectl's tokens";
const NOT_STORED: &str =
    "not checked: cn-config.yaml does not store the passphrase (nodectl asks for it when the service starts)";

/// The rule, for every enabled profile of `config` whose P12 is `path`: `p12` must open with
/// the profile's passphrase and carry the profile's alias (when the file names one).
/// `known_aliases` are the P12's aliases when known some other way (opened with the configured
/// password), to check the alias where the passphrase cannot be tried.
pub fn profile_checks(
    config: &NodectlConfig,
    path: &str,
    p12: &[u8],
    known_aliases: Option<&[String]>,
) -> Vec<ProfileCheck> {
    let mut out = Vec::new();
    // Each distinct passphrase is tried once (opening a P12 costs its key-derivation iterations),
    // and at most MAX_TRIED of them. What bounds a try is p12::inspect, which refuses a file
    // whose counts exceed p12_cost's caps before OpenSSL sees it (a node's P12 may ask for
    // 2^31-1 iterations, minutes per try); a wrong passphrase costs only the MAC's derivation,
    // so the tries together stay within seconds.
    let mut tried: Vec<(zeroize::Zeroizing<String>, Result<p12::P12Identity, String>)> = Vec::new();
    for p in config.enabled().filter(|p| p.path().as_deref() == Some(path)) {
        let alias_problem = |aliases: &[String]| -> Option<String> {
            let want = p.alias.as_deref()?;
            // BouncyCastle's PKCS12 store looks aliases up ignoring case.
            (!aliases.iter().any(|a| a.eq_ignore_ascii_case(want))).then(|| {
                format!(
                    "its alias is {} but nodectl exports CL_KEYALIAS={} for this profile",
                    aliases
                        .first()
                        .map(|a| crate::text::escape_control(a))
                        .unwrap_or_else(|| "(none)".into()),
                    crate::text::escape_control(want)
                )
            })
        };
        let (result, checked, ok) = match &p.passphrase {
            Passphrase::Plain(pass) => {
                let opened = match tried.iter().find(|(t, _)| t.as_str() == pass.as_str()) {
                    Some((_, r)) => Some(r.clone()),
                    None if tried.len() < MAX_TRIED => {
                        let r = match p12::inspect(p12, Some(pass.as_str())) {
                            Ok(id) => Ok(id),
                            Err(P12Error::WrongPassword) => {
                                Err("does not open with this profile's passphrase in cn-config.yaml"
                                    .to_string())
                            }
                            Err(e) => Err(format!("does not open: {e}")),
                        };
                        tried.push((pass.clone(), r.clone()));
                        Some(r)
                    }
                    None => None,
                };
                match opened {
                    Some(Ok(id)) => match alias_problem(&id.aliases) {
                        None => ("opens".to_string(), true, true),
                        Some(problem) => (format!("opens, but {problem}"), true, false),
                    },
                    Some(Err(why)) => (why, true, false),
                    None => (
                        format!(
                            "not checked: more than {MAX_TRIED} different passphrases in cn-config.yaml name this \
                             P12 (a failure: nodectl cannot use them all)"
                        ),
                        false,
                        false,
                    ),
                }
            }
            other => {
                let why = match other {
                    Passphrase::Encrypted => ENCRYPTED.to_string(),
                    // nodectl's own check cannot use it, the service file would get Python's
                    // str() of it: which one the operator meant is a guess (see nodectl/mod.rs).
                    Passphrase::NotText(kind) => format!(
                        "not checked: nodectl reads this passphrase as {kind} (unquoted in cn-config.yaml), \
                         which its own passphrase check cannot use; quote it in cn-config.yaml"
                    ),
                    _ => NOT_STORED.to_string(),
                };
                match (p.alias.as_deref(), known_aliases) {
                    (None, _) => (why.to_string(), false, true),
                    (Some(_), Some(aliases)) if !aliases.is_empty() => match alias_problem(aliases) {
                        None => (format!("{why}; alias ok"), false, true),
                        Some(problem) => (format!("{why}; but {problem}"), false, false),
                    },
                    (Some(_), _) => (
                        format!("{why}; its alias is not checked either (the P12 was not opened)"),
                        false,
                        true,
                    ),
                }
            }
        };
        out.push(ProfileCheck {
            profile: crate::text::escape_control(&p.name),
            result,
            checked,
            ok,
        });
    }
    out
}

/// One profile's answer in `verify --identity`.
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
    /// `opens`, `does not open ...`, `not checked: ...`.
    pub result: String,
    /// False only when the passphrase is there and does not open the P12 (or the alias differs).
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
            let Ok(config) = nodectl::parse(&nodectl::text_of(&cn_file.data)) else {
                continue;
            };
            for p in profile_checks(&config, &ks.path, &p12_file.data, None) {
                out.push(PassphraseCheck {
                    node: node.name.clone(),
                    keystore: ks.name.clone(),
                    artifact: p12_art.id.clone(),
                    profile: p.profile,
                    result: p.result,
                    ok: p.ok,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::material::nodectl::parse;
    use crate::material::p12::{GenerateStyle, generate};
    use crate::testkit::nodectl::{Install, MAINNET, V1211_DOR, install, reference, set_profile_key};

    const PATH: &str = "/home/nodeadmin/tessellation/nodeadmin-node.p12";

    fn config(passphrase: &str, l1_passphrase: Option<&str>) -> NodectlConfig {
        let mut text = install(
            &reference(MAINNET),
            &Install {
                nodeadmin: "nodeadmin",
                key_location: "/home/nodeadmin/tessellation",
                key_name: "nodeadmin-node.p12",
                passphrase,
            },
        );
        if let Some(pw) = l1_passphrase {
            text = set_profile_key(&text, "dag-l1", "p12_key_name", "nodeadmin-node.p12");
            text = set_profile_key(&text, "dag-l1", "p12_passphrase", &format!("\"{pw}\""));
        }
        parse(&text).unwrap()
    }

    #[test]
    fn every_profile_naming_the_p12_must_open_it() {
        let p12 = generate("right-passphrase", "nodeadmin-alias", GenerateStyle::Legacy).unwrap();
        let ok = profile_checks(&config("right-passphrase", None), PATH, &p12, None);
        assert_eq!(ok.len(), 2);
        assert!(
            ok.iter().all(|c| c.ok && c.checked && c.result == "opens"),
            "{ok:?}"
        );
        // dag-l1 names the same file with its own (stale) passphrase: only it fails.
        let mixed = profile_checks(&config("right-passphrase", Some("stale")), PATH, &p12, None);
        assert_eq!(
            mixed
                .iter()
                .map(|c| (c.profile.as_str(), c.ok))
                .collect::<Vec<_>>(),
            [("dag-l0", true), ("dag-l1", false)]
        );
        assert!(mixed[1].result.starts_with("does not open"), "{mixed:?}");
        assert!(!format!("{mixed:?}").contains("stale"), "never the passphrase");
        // Another file: no profile uses it, nothing to say.
        assert!(profile_checks(&config("x", None), "/other.p12", &p12, None).is_empty());
    }

    #[test]
    fn encrypted_and_unstored_passphrases_say_not_checked_and_why() {
        let p12 = generate("right-passphrase", "nodeadmin-alias", GenerateStyle::Legacy).unwrap();
        let mut text = install(
            &reference(MAINNET),
            &Install {
                nodeadmin: "nodeadmin",
                key_location: "/home/nodeadmin/tessellation",
                key_name: "nodeadmin-node.p12",
                passphrase: "gAAAAABtoken",
            },
        );
        text = text.replace("encryption: False", "encryption: True");
        let checks = profile_checks(&parse(&text).unwrap(), PATH, &p12, None);
        assert!(checks.iter().all(|c| c.ok && !c.checked), "{checks:?}");
        assert!(checks[0].result.contains("encrypted") && checks[0].result.contains("cnngsenc.conf"));
        let none = text.replace("'gAAAAABtoken'", "None");
        let checks = profile_checks(&parse(&none).unwrap(), PATH, &p12, None);
        assert!(checks[0].result.contains("does not store"), "{checks:?}");
    }

    #[test]
    fn a_flood_of_profiles_tries_each_passphrase_once_and_at_most_a_few() {
        let p12 = generate("right-passphrase", "nodeadmin-alias", GenerateStyle::Legacy).unwrap();
        let mut text = install(
            &reference(MAINNET),
            &Install {
                nodeadmin: "nodeadmin",
                key_location: "/home/nodeadmin/tessellation",
                key_name: "nodeadmin-node.p12",
                passphrase: "right-passphrase",
            },
        );
        // 200 more profiles naming the same P12, each with its own wrong passphrase.
        for i in 0..200 {
            text = crate::testkit::nodectl::copy_profile(&text, "dag-l1", &format!("x{i}"));
            text = set_profile_key(&text, &format!("x{i}"), "p12_key_name", "nodeadmin-node.p12");
            text = set_profile_key(&text, &format!("x{i}"), "p12_passphrase", &format!("'wrong-{i}'"));
        }
        let checks = profile_checks(&parse(&text).unwrap(), PATH, &p12, None);
        assert_eq!(checks.len(), 202);
        let tried = checks.iter().filter(|c| c.checked).count();
        // dag-l0 and dag-l1 share one passphrase: tried once, both answered.
        assert_eq!(tried, 2 + (MAX_TRIED - 1), "{:?}", &checks[..3]);
        assert!(
            checks
                .iter()
                .filter(|c| !c.checked)
                .all(|c| !c.ok && c.result.contains("more than"))
        );
    }

    #[test]
    fn a_passphrase_nodectl_reads_as_a_number_is_not_checked() {
        let text = install(
            &reference(MAINNET),
            &Install {
                nodeadmin: "nodeadmin",
                key_location: "/home/nodeadmin/tessellation",
                key_name: "nodeadmin-node.p12",
                passphrase: "x",
            },
        )
        .replace("passphrase: 'x'", "passphrase: 1234567.890");
        let p12 = generate("1234567.89", "alias", GenerateStyle::Legacy).unwrap();
        let path = "/home/nodeadmin/tessellation/nodeadmin-node.p12";
        let checks = profile_checks(&parse(&text).unwrap(), path, &p12, None);
        assert_eq!(checks.len(), 2);
        for c in &checks {
            assert!(!c.checked && c.ok, "{c:?}");
            assert!(
                c.result
                    .starts_with("not checked: nodectl reads this passphrase as a float"),
                "{c:?}"
            );
        }
    }

    #[test]
    fn the_alias_of_v2_0_formats_is_compared() {
        // The alias nodectl 2.9-2.12 exports, set in global_p12 (a profile's own alias beside a
        // `global` name would make nodectl refuse the file).
        let dor = |alias: &str| {
            let text = reference(V1211_DOR)
                .replace("    passphrase: blank\n", "    passphrase: 'dor-passphrase'\n")
                .replace(
                    "    key_alias: nodeadmin-alias\n",
                    &format!("    key_alias: {alias}\n"),
                );
            parse(&text).unwrap()
        };
        let path = "/home/nodeadmin/tessellation/nodeadmin.p12";
        let p12 = generate("dor-passphrase", "nodeadmin-alias", GenerateStyle::Legacy).unwrap();
        let good = profile_checks(&dor("nodeadmin-alias"), path, &p12, None);
        assert!(good[0].ok, "{good:?}");
        let good = profile_checks(&dor("NodeAdmin-Alias"), path, &p12, None);
        assert!(
            good[0].ok,
            "case is ignored, as BouncyCastle's store does: {good:?}"
        );
        let bad = profile_checks(&dor("other-alias"), path, &p12, None);
        assert!(
            !bad[0].ok && bad[0].result.contains("CL_KEYALIAS=other-alias"),
            "{bad:?}"
        );
        // Passphrase not stored: the alias from elsewhere is still compared.
        let text =
            reference(V1211_DOR).replace("    key_alias: nodeadmin-alias\n", "    key_alias: other-alias\n");
        let unstored = parse(&text).unwrap();
        let known = ["nodeadmin-alias".to_string()];
        let bad = profile_checks(&unstored, path, &p12, Some(&known));
        assert!(!bad[0].ok && !bad[0].checked, "{bad:?}");
        let unknown = profile_checks(&unstored, path, &p12, None);
        assert!(
            unknown[0].ok && unknown[0].result.contains("alias is not checked"),
            "{unknown:?}"
        );
    }
}

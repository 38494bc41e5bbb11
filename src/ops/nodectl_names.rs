//! nodectl's view of a node's P12 keystores, as `check`, `check --nodectl-config` and `restore`
//! judge it (and `discover` proposes it). Never prints.
//!
//! A node may run several profiles on several P12s (dag-l0 on the global one, dag-l1 on its
//! own), each a keystore of its own in the config. So a keystore is judged against the profiles
//! that use it, not against every profile:
//! - an enabled profile whose P12 is this keystore's file: ok;
//! - one whose P12 is another configured P12 keystore of the node: that keystore's business;
//! - one that names another file in this keystore's directory, which no keystore backs up: a
//!   mismatch (the classic case: nodectl was reinstalled under a new file name, and the backup
//!   would land beside the file the node reads);
//! - one whose settings nodectl refuses, or that sets no location: a mismatch for every keystore
//!   (nothing can be said to be right);
//! - one elsewhere that no keystore backs up: not this keystore's mismatch, but the profile is
//!   not covered ([`not_covered`]), which `check` fails on.
//!
//! A keystore that no enabled profile uses is a mismatch too: nodectl would never read the file
//! a restore writes. (The issue's rule, "every enabled profile whose P12 is in the keystore's
//! directory names it", is vacuously true then; a careful operator wants to hear it.) Unless a
//! disabled profile names it: that is a key nodectl uses again when the profile is enabled, so
//! backing it up and restoring it is right; it passes, with one warning row that says so.

use super::restore_plan::{NameRow, split_path};
use crate::material::nodectl::{NodectlConfig, Profile};
use crate::text::escape_control;
use serde::Serialize;

/// A node's P12 keystores as (keystore name, configured path).
pub type P12Keystores<'a> = [(&'a str, &'a str)];

/// The node's P12 keystores, in config order.
pub fn p12_keystores(node: &crate::config::NodeConfig) -> Vec<(&str, &str)> {
    node.keystores
        .iter()
        .filter(|k| k.kind == crate::config::KeystoreKind::P12)
        .map(|k| (k.name.as_str(), k.path.as_str()))
        .collect()
}

/// How a profile row's source is named: `nodectl dag-l0 (global_p12)`, `(location from
/// global_p12)`, ...
fn source(p: &Profile) -> String {
    let g = p.from_global;
    let from = match (g.location, g.name) {
        (true, true) => " (global_p12)",
        (true, false) => " (location from global_p12)",
        (false, true) => " (name from global_p12)",
        (false, false) => "",
    };
    format!("nodectl {}{from}", escape_control(&p.name))
}

fn row(p: &Profile, ok: bool, note: String) -> NameRow {
    let shown = |v: &Option<String>| {
        v.as_deref()
            .map(escape_control)
            .unwrap_or_else(|| "(not set)".into())
    };
    NameRow {
        source: source(p),
        directory: shown(&p.directory),
        name: shown(&p.key_name),
        ok,
        note: Some(note),
        warning: false,
    }
}

/// The nodectl rows for keystore `this` (a name in `keystores`).
pub fn name_rows(config: &NodectlConfig, keystores: &P12Keystores, this: &str) -> Vec<NameRow> {
    let Some(&(_, path)) = keystores.iter().find(|(name, _)| *name == this) else {
        return Vec::new();
    };
    let (dir, _) = split_path(path);
    let mut rows = Vec::new();
    let mut used = false;
    // Disabled profiles naming this file: said once, after the enabled ones are judged.
    let mut disabled: Vec<&Profile> = Vec::new();
    for p in &config.profiles {
        let effective = p.path();
        // nodectl checks the settings before it drops disabled profiles (implement_config:
        // finalize_config_tests, then remove_disabled_profiles): a disabled profile it refuses
        // makes it refuse the whole file.
        if let Some(problem) = &p.problem {
            let problem = match p.enabled {
                true => problem.clone(),
                false => format!("{problem} (disabled profiles included)"),
            };
            rows.push(row(p, false, problem));
            continue;
        }
        if !p.enabled {
            if effective.as_deref() == Some(path) {
                disabled.push(p);
            }
            continue;
        }
        let Some(effective) = effective else {
            rows.push(row(
                p,
                false,
                "no P12 location set for this profile (is the node installed?)".into(),
            ));
            continue;
        };
        if effective == path {
            used = true;
            rows.push(row(p, true, "uses this file".into()));
        } else if let Some((other, _)) = keystores.iter().find(|(_, k)| *k == effective) {
            rows.push(row(p, true, format!("uses keystore {other}")));
        } else if split_path(&effective).0 == dir {
            rows.push(row(
                p,
                false,
                "expects another file in this directory, which no keystore backs up".into(),
            ));
        } else {
            rows.push(row(p, true, "not covered: no keystore backs up its P12".into()));
        }
    }
    let names = || {
        disabled
            .iter()
            .map(|p| escape_control(&p.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !disabled.is_empty() {
        rows.push(NameRow {
            source: format!("nodectl {} (disabled)", names()),
            directory: escape_control(dir),
            name: escape_control(split_path(path).1),
            ok: true,
            note: Some(if used {
                "disabled: uses this file too when enabled again".into()
            } else {
                "no enabled profile uses this file, only disabled ones: a key nodectl uses again when one \
                 is enabled, so it is backed up and restored as it is"
                    .into()
            }),
            warning: !used,
        });
        used = true;
    }
    if !used {
        rows.push(NameRow {
            source: "nodectl".into(),
            directory: escape_control(dir),
            name: escape_control(split_path(path).1),
            ok: false,
            note: Some(
                "no enabled profile uses this file: nodectl would never read what a restore writes".into(),
            ),
            warning: false,
        });
    }
    rows
}

/// An enabled profile whose P12 no keystore backs up (or whose keystore has no backup yet).
#[derive(Debug, Clone, Serialize)]
pub struct NotCovered {
    /// The node.
    pub node: String,
    /// The nodectl profile.
    pub profile: String,
    /// Its P12 (`directory/name`), when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p12: Option<String>,
    /// Why it is not covered.
    pub why: String,
    /// Always false: a profile not covered fails `check`.
    pub ok: bool,
}

impl NotCovered {
    /// One line for people.
    pub fn line(&self) -> String {
        format!(
            "not covered: {} nodectl profile {} ({}): {}",
            self.node,
            self.profile,
            self.p12.as_deref().unwrap_or("no P12 set"),
            self.why
        )
    }
}

/// The enabled profiles of `config` whose P12 is no keystore in `keystores`, or one for which
/// `has_backup` says there is no backup.
pub fn not_covered(
    node: &str,
    config: &NodectlConfig,
    keystores: &P12Keystores,
    has_backup: &dyn Fn(&str) -> bool,
) -> Vec<NotCovered> {
    let mut out = Vec::new();
    for p in config.enabled() {
        let path = p.path();
        let why = match &path {
            None if p.problem.is_some() => continue,
            None => "cn-config.yaml sets no P12 location for it".to_string(),
            Some(path) => match keystores.iter().find(|(_, k)| k == path) {
                None => format!(
                    "no keystore backs up this file: add a `kind: p12` keystore with this path (and \
                     `nodectl_config`), or run `coldkeep discover --node {node}`"
                ),
                Some((name, _)) if !has_backup(name) => {
                    format!("keystore {name} has no backup in the store yet")
                }
                Some(_) => continue,
            },
        };
        out.push(NotCovered {
            node: node.to_string(),
            profile: escape_control(&p.name),
            p12: path.as_deref().map(escape_control),
            why,
            ok: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::material::nodectl::parse;
    use crate::testkit::nodectl::{Install, MAINNET, install, reference, set_profile_key};

    const DIR: &str = "/home/nodeadmin/tessellation";

    fn two_p12s(l1_location: &str, l1_name: &str) -> NodectlConfig {
        let text = install(
            &reference(MAINNET),
            &Install {
                nodeadmin: "nodeadmin",
                key_location: DIR,
                key_name: "nodeadmin-node.p12",
                passphrase: "pw-0123456789",
            },
        );
        let text = set_profile_key(&text, "dag-l1", "p12_key_location", l1_location);
        let text = set_profile_key(&text, "dag-l1", "p12_key_name", l1_name);
        let text = set_profile_key(&text, "dag-l1", "p12_passphrase", "'l1-passphrase'");
        parse(&text).unwrap()
    }

    const L0: &str = "/home/nodeadmin/tessellation/nodeadmin-node.p12";
    const L1: &str = "/home/nodeadmin/tessellation/dag-l1.p12";

    #[test]
    fn two_p12s_in_one_directory_each_pass_against_the_profiles_that_use_them() {
        let config = two_p12s("global", "dag-l1.p12");
        let keystores = [("p12", L0), ("p12-2", L1)];
        for this in ["p12", "p12-2"] {
            let rows = name_rows(&config, &keystores, this);
            assert!(rows.iter().all(|r| r.ok), "{this}: {rows:?}");
            assert_eq!(rows.len(), 2, "{rows:?}");
        }
        let rows = name_rows(&config, &keystores, "p12");
        assert_eq!(rows[1].note.as_deref(), Some("uses keystore p12-2"));
        assert!(rows[1].source.contains("(location from global_p12)"), "{rows:?}");
        assert!(not_covered("a", &config, &keystores, &|_| true).is_empty());
        // Without a backup of p12-2, dag-l1 is not covered.
        let missing = not_covered("a", &config, &keystores, &|k| k == "p12");
        assert_eq!(missing.len(), 1);
        assert!(missing[0].why.contains("p12-2 has no backup"), "{missing:?}");
    }

    #[test]
    fn a_profile_naming_another_file_in_the_keystores_directory_is_a_mismatch() {
        // Only the global P12 is configured; dag-l1 names another file beside it.
        let config = two_p12s("global", "dag-l1.p12");
        let keystores = [("p12", L0)];
        let rows = name_rows(&config, &keystores, "p12");
        let bad: Vec<&NameRow> = rows.iter().filter(|r| !r.ok).collect();
        assert_eq!(bad.len(), 1, "{rows:?}");
        assert!(bad[0].source.starts_with("nodectl dag-l1") && bad[0].name == "dag-l1.p12");
        let missing = not_covered("a", &config, &keystores, &|_| true);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].p12.as_deref(), Some(L1));
    }

    #[test]
    fn a_profile_elsewhere_is_not_this_keystores_mismatch_but_is_not_covered() {
        let config = two_p12s("/root/l1/", "l1.p12");
        let keystores = [("p12", L0)];
        let rows = name_rows(&config, &keystores, "p12");
        assert!(rows.iter().all(|r| r.ok), "{rows:?}");
        assert_eq!(not_covered("a", &config, &keystores, &|_| true).len(), 1);
    }

    #[test]
    fn a_keystore_no_profile_uses_fails() {
        let config = two_p12s("global", "dag-l1.p12");
        let keystores = [("p12", L0), ("p12-2", L1), ("old", "/home/nodeadmin/old/old.p12")];
        let rows = name_rows(&config, &keystores, "old");
        let bad: Vec<&NameRow> = rows.iter().filter(|r| !r.ok).collect();
        assert_eq!(bad.len(), 1, "{rows:?}");
        assert!(
            bad[0]
                .note
                .as_deref()
                .unwrap()
                .contains("no enabled profile uses this file")
        );
    }

    #[test]
    fn a_disabled_profile_neither_fails_nor_needs_covering() {
        let text_disabled = {
            let text = install(
                &reference(MAINNET),
                &Install {
                    nodeadmin: "nodeadmin",
                    key_location: DIR,
                    key_name: "nodeadmin-node.p12",
                    passphrase: "pw-0123456789",
                },
            );
            set_profile_key(&text, "dag-l1", "profile_enable", "False")
        };
        let disabled = parse(&text_disabled).unwrap();
        assert!(not_covered("a", &disabled, &[("p12", L0)], &|_| true).is_empty());
        assert!(name_rows(&disabled, &[("p12", L0)], "p12").iter().all(|r| r.ok));
    }

    #[test]
    fn a_file_only_disabled_profiles_use_passes_with_one_warning_row() {
        let text = {
            let text = install(
                &reference(MAINNET),
                &Install {
                    nodeadmin: "nodeadmin",
                    key_location: DIR,
                    key_name: "nodeadmin-node.p12",
                    passphrase: "pw-0123456789",
                },
            );
            let text = set_profile_key(&text, "dag-l1", "p12_key_name", "dag-l1.p12");
            let text = set_profile_key(&text, "dag-l1", "p12_passphrase", "'l1-passphrase'");
            set_profile_key(&text, "dag-l1", "profile_enable", "False")
        };
        let config = parse(&text).unwrap();
        let keystores = [("p12", L0), ("p12-2", L1)];
        let rows = name_rows(&config, &keystores, "p12-2");
        assert!(rows.iter().all(|r| r.ok), "passes: {rows:?}");
        let warnings: Vec<&NameRow> = rows.iter().filter(|r| r.warning).collect();
        assert_eq!(warnings.len(), 1, "{rows:?}");
        assert!(warnings[0].source.contains("dag-l1 (disabled)"), "{rows:?}");
        assert!(
            warnings[0]
                .note
                .as_deref()
                .unwrap()
                .contains("a key nodectl uses again when one is enabled"),
            "{rows:?}"
        );
        // Nothing says the opposite beside it.
        assert!(
            !rows
                .iter()
                .any(|r| r.note.as_deref().is_some_and(|n| n.contains("would never read"))),
            "{rows:?}"
        );
        let table = super::super::restore::name_table(&rows);
        assert!(
            table.contains("ok, WARNING: no enabled profile uses this file"),
            "{table}"
        );
        // The global P12 that dag-l0 uses: dag-l1 is no concern of it.
        assert!(
            name_rows(&config, &keystores, "p12")
                .iter()
                .all(|r| r.ok && !r.warning)
        );
        // A disabled profile is not "not covered".
        assert!(not_covered("a", &config, &keystores, &|_| true).is_empty());
    }

    /// nodectl refuses the whole file for a disabled profile's bad pairing (it checks before it
    /// drops disabled profiles): every keystore of the node says so.
    #[test]
    fn a_disabled_profile_nodectl_refuses_fails_every_keystore() {
        let text = install(
            &reference(MAINNET),
            &Install {
                nodeadmin: "nodeadmin",
                key_location: DIR,
                key_name: "nodeadmin-node.p12",
                passphrase: "pw-0123456789",
            },
        );
        let text = set_profile_key(&text, "dag-l1", "p12_key_name", "own.p12");
        let text = set_profile_key(&text, "dag-l1", "profile_enable", "False");
        let config = parse(&text).unwrap();
        let rows = name_rows(&config, &[("p12", L0)], "p12");
        let bad: Vec<&NameRow> = rows.iter().filter(|r| !r.ok).collect();
        assert_eq!(bad.len(), 1, "{rows:?}");
        let note = bad[0].note.as_deref().unwrap();
        assert!(
            bad[0].source.starts_with("nodectl dag-l1")
                && note.contains("must all be `global`")
                && note.contains("disabled profiles included"),
            "{rows:?}"
        );
    }

    #[test]
    fn an_uninstalled_node_fails_every_keystore() {
        let config = parse(&reference(MAINNET)).unwrap();
        let rows = name_rows(&config, &[("p12", L0)], "p12");
        assert!(rows.iter().filter(|r| !r.ok).count() >= 2, "{rows:?}");
        let missing = not_covered("a", &config, &[("p12", L0)], &|_| true);
        assert_eq!(missing.len(), 2);
        assert!(missing[0].why.contains("no P12 location"));
    }
}

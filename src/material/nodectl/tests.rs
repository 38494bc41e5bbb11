//! The resolution rules, on nodectl's own files (read from ../shared/reference/nodectl/) edited
//! the way nodectl's installer and configurator edit them.

use super::*;
use crate::testkit::nodectl::{
    Install, MAINNET, NestedProfile, V1211_DOR, copy_profile, insert_after, install, nested, reference,
    set_profile_key,
};

const DIR: &str = "/home/nodeadmin/tessellation";

fn installed(location: &str, passphrase: &str) -> String {
    install(
        &reference(MAINNET),
        &Install {
            nodeadmin: "nodeadmin",
            key_location: location,
            key_name: "nodeadmin-node.p12",
            passphrase,
        },
    )
}

fn plain(p: &Profile) -> &str {
    match &p.passphrase {
        Passphrase::Plain(s) => s.as_str(),
        other => panic!("{} has {other:?}", p.name),
    }
}

fn profile<'c>(c: &'c NodectlConfig, name: &str) -> &'c Profile {
    c.profiles.iter().find(|p| p.name == name).unwrap()
}

#[test]
fn nodectls_shipped_mainnet_file_has_two_profiles_and_nothing_set() {
    let c = parse(&reference(MAINNET)).unwrap();
    assert_eq!(c.yaml_version.as_deref(), Some("v2.1.1"));
    assert!(!c.nested && !c.encryption && c.warnings.is_empty());
    let names: Vec<&str> = c.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["dag-l0", "dag-l1"], "global_* sections are not profiles");
    for p in &c.profiles {
        assert!(p.enabled && p.problem.is_none());
        assert_eq!(
            (p.directory.as_deref(), p.key_name.as_deref(), p.alias.as_deref()),
            (None, None, None)
        );
        assert!(
            matches!(p.passphrase, Passphrase::NotStored),
            "`blank` is not a passphrase"
        );
        assert_eq!(
            p.from_global,
            FromGlobal {
                location: true,
                name: true,
                passphrase: true,
                alias: false
            }
        );
    }
}

#[test]
fn the_installers_substitution_gives_every_profile_the_global_p12() {
    for location in [DIR.to_string(), format!("{DIR}/")] {
        // Single quotes, as the installer writes them: `#` and `: ` inside stay text.
        let c = parse(&installed(&location, "p@ss #1: w\"rd")).unwrap();
        for p in &c.profiles {
            assert_eq!(
                p.path().as_deref(),
                Some("/home/nodeadmin/tessellation/nodeadmin-node.p12")
            );
            assert_eq!(plain(p), "p@ss #1: w\"rd");
        }
    }
}

#[test]
fn global_is_resolved_key_by_key() {
    // The configurator's mix: location from global_p12, the profile's own name and passphrase.
    let text = set_profile_key(
        &installed(DIR, "first-passphrase"),
        "dag-l1",
        "p12_key_name",
        "dag-l1.p12",
    );
    let text = set_profile_key(&text, "dag-l1", "p12_passphrase", "\"second passphrase\"");
    let c = parse(&text).unwrap();
    let l1 = profile(&c, "dag-l1");
    assert_eq!(
        l1.path().as_deref(),
        Some("/home/nodeadmin/tessellation/dag-l1.p12")
    );
    assert_eq!(plain(l1), "second passphrase");
    assert_eq!(
        (
            l1.from_global.location,
            l1.from_global.name,
            l1.from_global.passphrase
        ),
        (true, false, false)
    );
    assert!(l1.problem.is_none());
    let l0 = profile(&c, "dag-l0");
    assert_eq!(
        l0.path().as_deref(),
        Some("/home/nodeadmin/tessellation/nodeadmin-node.p12")
    );
    assert_eq!(plain(l0), "first-passphrase");

    // Its own location (the configurator's trailing slash) with the global name and passphrase
    // is not valid for nodectl? It is: only name and passphrase are tied.
    let text = set_profile_key(
        &installed(DIR, "pw-0123456789"),
        "dag-l1",
        "p12_key_location",
        "/root/keys/",
    );
    let l1 = parse(&text).unwrap();
    let l1 = profile(&l1, "dag-l1");
    assert_eq!(l1.path().as_deref(), Some("/root/keys/nodeadmin-node.p12"));
    assert!(l1.problem.is_none() && l1.from_global.name && !l1.from_global.location);
}

#[test]
fn name_and_passphrase_must_both_be_global_or_both_set() {
    let text = set_profile_key(
        &installed(DIR, "pw-0123456789"),
        "dag-l1",
        "p12_key_name",
        "own.p12",
    );
    let c = parse(&text).unwrap();
    let problem = profile(&c, "dag-l1").problem.clone().unwrap();
    assert!(problem.contains("p12_key_name and p12_passphrase"), "{problem}");
    assert!(profile(&c, "dag-l0").problem.is_none());
}

#[test]
fn global_is_a_substring_test_as_in_nodectl() {
    // nodectl: `if "global" in p12_value`: any value containing it is replaced.
    let text = set_profile_key(
        &installed(DIR, "pw-0123456789"),
        "dag-l1",
        "p12_key_location",
        "/home/global/keys/",
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        profile(&c, "dag-l1").path().as_deref(),
        Some("/home/nodeadmin/tessellation/nodeadmin-node.p12")
    );
}

#[test]
fn a_disabled_profile_is_kept_but_marked() {
    let text = set_profile_key(
        &installed(DIR, "pw-0123456789"),
        "dag-l1",
        "profile_enable",
        "False",
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.enabled().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["dag-l0"]
    );
    assert!(!profile(&c, "dag-l1").enabled);
}

#[test]
fn three_profiles_three_p12s() {
    let text = copy_profile(&installed(DIR, "pw-0123456789"), "dag-l1", "dor-dl1");
    let mut text = text;
    for (p, name) in [("dag-l1", "l1.p12"), ("dor-dl1", "dor.p12")] {
        text = set_profile_key(&text, p, "p12_key_name", name);
        text = set_profile_key(&text, p, "p12_passphrase", "'another-passphrase'");
    }
    let c = parse(&text).unwrap();
    let paths: Vec<String> = c.enabled().filter_map(Profile::path).collect();
    assert_eq!(
        paths,
        [
            format!("{DIR}/nodeadmin-node.p12"),
            format!("{DIR}/l1.p12"),
            format!("{DIR}/dor.p12")
        ]
    );
}

#[test]
fn encryption_on_means_every_stored_passphrase_is_a_token() {
    let text = installed(DIR, "gAAAAABlScrambledToken==").replace("encryption: False", "encryption: True");
    let c = parse(&text).unwrap();
    assert!(c.encryption);
    for p in &c.profiles {
        assert!(matches!(p.passphrase, Passphrase::Encrypted), "{p:?}");
    }
    // None stays "not stored" with encryption on.
    let c = parse(
        &installed(DIR, "x")
            .replace("passphrase: 'x'", "passphrase: None")
            .replace("encryption: False", "encryption: True"),
    )
    .unwrap();
    assert!(matches!(c.profiles[0].passphrase, Passphrase::NotStored));
}

#[test]
fn v2_1_0_files_carry_the_alias() {
    let text = reference(V1211_DOR).replace("    passphrase: blank\n", "    passphrase: 'dor-passphrase'\n");
    let c = parse(&text).unwrap();
    assert_eq!(c.yaml_version.as_deref(), Some("v2.1.0"));
    let dor = profile(&c, "dor-dl1");
    assert_eq!(
        dor.path().as_deref(),
        Some("/home/nodeadmin/tessellation/nodeadmin.p12")
    );
    assert_eq!(dor.alias.as_deref(), Some("nodeadmin-alias"));
    assert!(dor.from_global.alias);
    assert_eq!(plain(dor), "dor-passphrase");
    // A profile's own alias wins over the global one, key by key; but nodectl 2.9-2.12 tie the
    // alias to name and passphrase (validate_global_setting: key_name, passphrase, key_alias),
    // so with those `global` nodectl refuses the file.
    let own = set_profile_key(&text, "dor-dl1", "p12_key_alias", "dor-alias");
    let own = parse(&own).unwrap();
    let dor = profile(&own, "dor-dl1");
    assert_eq!(dor.alias.as_deref(), Some("dor-alias"));
    let problem = dor.problem.as_deref().unwrap();
    assert!(
        problem.contains("p12_key_name, p12_passphrase and p12_key_alias must all be `global`"),
        "{problem}"
    );
}

/// nodectl 2.13+ (v2.1.1 files) overwrites a stored `p12_key_alias` with the alias it reads from
/// the P12 (config.py `setup_config_vars`, then `setup_p12_aliases`): it is not compared, and not
/// tied to name and passphrase (2.13's validate_global_setting ties those two only).
#[test]
fn a_v2_1_1_files_stored_alias_is_what_nodectl_ignores() {
    let text = insert_after(
        &installed(DIR, "pw-0123456789"),
        "dag-l0",
        "p12_key_name",
        "p12_key_alias: some-alias",
    );
    let c = parse(&text).unwrap();
    let l0 = profile(&c, "dag-l0");
    assert_eq!((l0.alias.as_deref(), l0.from_global.alias), (None, false));
    assert!(l0.problem.is_none(), "{:?}", l0.problem);
    // The v2.1.0 file's alias (nodectl 2.9-2.12 export it) is.
    let dor = reference(V1211_DOR).replace("    passphrase: blank\n", "    passphrase: 'x'\n");
    assert!(profile(&parse(&dor).unwrap(), "dor-dl1").alias.is_some());
    let as_v2_1_1 = dor.replace("nodectl_yaml: v2.1.0", "nodectl_yaml: v2.1.1");
    assert_eq!(profile(&parse(&as_v2_1_1).unwrap(), "dor-dl1").alias, None);
}

/// nodectl checks the pairing before it drops disabled profiles (`implement_config`:
/// `finalize_config_tests` -> `validate_global_setting`, then `remove_disabled_profiles`).
#[test]
fn a_disabled_profiles_bad_pairing_is_still_a_problem() {
    let text = set_profile_key(
        &installed(DIR, "pw-0123456789"),
        "dag-l1",
        "p12_key_name",
        "own.p12",
    );
    let text = set_profile_key(&text, "dag-l1", "profile_enable", "False");
    let c = parse(&text).unwrap();
    let l1 = profile(&c, "dag-l1");
    assert!(!l1.enabled);
    assert!(l1.problem.as_deref().unwrap().contains("must all be `global`"));
}

/// nodectl 2.8's validate_global_setting ties `p12_name` and `passphrase` of every profile of
/// the pre-2.0 form; a missing one is its cfg-705 error.
#[test]
fn the_pre_2_0_form_ties_p12_name_and_passphrase() {
    let global = [
        "nodeadmin",
        "/home/nodeadmin/tessellation/",
        "nodeadmin.p12",
        "nodeadmin-alias",
        "old passphrase",
    ];
    let one = |p12: [&'static str; 4]| {
        let text = nested(
            &[NestedProfile {
                name: "dag-l0",
                enable: false,
                p12,
            }],
            global,
        );
        parse(&text).unwrap().profiles.remove(0)
    };
    let bad = one(["global", "l1.p12", "global", "global"]);
    assert!(
        bad.problem
            .as_deref()
            .unwrap()
            .contains("p12_name and passphrase must all be `global`"),
        "{:?}",
        bad.problem
    );
    assert!(one(["global", "global", "own-alias", "global"]).problem.is_none());
    assert!(one(["/x/", "l1.p12", "a", "'pw'"]).problem.is_none());
    let missing = parse(
        &nested(
            &[NestedProfile {
                name: "dag-l0",
                enable: true,
                p12: ["global", "global", "global", "global"],
            }],
            global,
        )
        .replace("        passphrase: global\n", ""),
    )
    .unwrap();
    assert!(
        missing.profiles[0]
            .problem
            .as_deref()
            .unwrap()
            .contains("no passphrase in this profile"),
        "{:?}",
        missing.profiles[0].problem
    );
}

/// nodectl's create_path_variable, then (2.13+) `cleaner(path, "double_slash")`, which is
/// `re.sub('//', '/', path)`.
#[test]
fn paths_are_built_as_nodectl_builds_them() {
    for (location, want) in [
        (
            "/home//nodeadmin/tessellation/",
            "/home/nodeadmin/tessellation/nodeadmin-node.p12",
        ),
        (
            "/home/nodeadmin/tessellation//",
            "/home/nodeadmin/tessellation/nodeadmin-node.p12",
        ),
        // Left to right, not repeated: `///` leaves `//`, as Python's re.sub does.
        ("/home///nodeadmin", "/home//nodeadmin/nodeadmin-node.p12"),
        ("/", "/nodeadmin-node.p12"),
    ] {
        let c = parse(&installed(location, "pw-0123456789")).unwrap();
        assert_eq!(c.profiles[0].path().as_deref(), Some(want), "{location}");
    }
    // nodectl 2.9-2.12 (a v2.1.0 file) did not collapse.
    let dor = reference(V1211_DOR).replace(
        "    key_location: /home/nodeadmin/tessellation/\n",
        "    key_location: /home//nodeadmin/tessellation/\n",
    );
    assert_eq!(
        profile(&parse(&dor).unwrap(), "dor-dl1").path().as_deref(),
        Some("/home//nodeadmin/tessellation/nodeadmin.p12")
    );
}

/// An unquoted number as the passphrase: nodectl's own check cannot use it (p12.py writes it
/// with `f.write`), the service would get Python's `str()`: not checked, and said why. In a
/// profile, any `p12_*` value that is not text stops nodectl (`"global" in value`).
#[test]
fn a_passphrase_that_is_not_text_is_not_checked() {
    for (value, kind) in [
        ("1234567.890", "a float"),
        ("1e+16", ""),
        ("12345678", "an int"),
        ("True", "a boolean"),
    ] {
        let text = installed(DIR, "x").replace("passphrase: 'x'", &format!("passphrase: {value}"));
        let c = parse(&text).unwrap();
        match (&c.profiles[0].passphrase, kind) {
            // No dot: YAML 1.1 makes `1e+16` a string.
            (Passphrase::Plain(s), "") => assert_eq!(s.as_str(), value),
            (Passphrase::NotText(k), _) => assert_eq!(*k, kind, "{value}"),
            (other, _) => panic!("{value}: {other:?}"),
        }
        assert!(c.profiles[0].problem.is_none(), "{value}");
    }
    let text = set_profile_key(&installed(DIR, "x"), "dag-l1", "p12_key_name", "own.p12");
    let text = set_profile_key(&text, "dag-l1", "p12_passphrase", "12345678");
    let c = parse(&text).unwrap();
    let l1 = profile(&c, "dag-l1");
    assert!(matches!(l1.passphrase, Passphrase::NotText("an int")));
    let problem = l1.problem.as_deref().unwrap();
    assert!(
        problem.contains("`p12_passphrase` is an int, not text"),
        "{problem}"
    );
}

#[test]
fn a_duplicated_key_keeps_the_last_value_with_a_warning() {
    let text = insert_after(
        &installed(DIR, "pw-0123456789"),
        "dag-l0",
        "p12_key_name",
        "p12_key_name: dup.p12",
    );
    let c = parse(&text).unwrap();
    assert_eq!(profile(&c, "dag-l0").key_name.as_deref(), Some("dup.p12"));
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    let line = text
        .lines()
        .position(|l| l == "    p12_key_name: dup.p12")
        .unwrap()
        + 1;
    assert!(
        c.warnings[0].contains("`p12_key_name`") && c.warnings[0].contains(&format!("at line {line}")),
        "{}",
        c.warnings[0]
    );
}

#[test]
fn the_pre_2_0_nested_form_is_read_key_by_key() {
    let text = nested(
        &[
            NestedProfile {
                name: "dag-l0",
                enable: true,
                p12: ["global", "global", "global", "global"],
            },
            NestedProfile {
                name: "dag-l1",
                enable: true,
                p12: ["global", "l1.p12", "l1-alias", "\"l1 passphrase\""],
            },
            NestedProfile {
                name: "old",
                enable: false,
                p12: ["/x/", "y.p12", "a", "b"],
            },
        ],
        [
            "nodeadmin",
            "/home/nodeadmin/tessellation/",
            "nodeadmin.p12",
            "nodeadmin-alias",
            "old passphrase",
        ],
    );
    let c = parse(&text).unwrap();
    assert!(c.nested, "{}", c.format());
    let names: Vec<&str> = c.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["dag-l0", "dag-l1", "old"],
        "`auto_restart` and `global_p12` are not profiles"
    );
    let l0 = profile(&c, "dag-l0");
    assert_eq!(
        l0.path().as_deref(),
        Some("/home/nodeadmin/tessellation/nodeadmin.p12")
    );
    assert_eq!(
        (l0.alias.as_deref(), plain(l0)),
        (Some("nodeadmin-alias"), "old passphrase")
    );
    let l1 = profile(&c, "dag-l1");
    assert_eq!(l1.path().as_deref(), Some("/home/nodeadmin/tessellation/l1.p12"));
    assert_eq!(
        (l1.alias.as_deref(), plain(l1)),
        (Some("l1-alias"), "l1 passphrase")
    );
    assert!(!profile(&c, "old").enabled);
}

#[test]
fn not_a_nodectl_config() {
    assert!(parse("foo: bar\n").unwrap_err().to_string().contains("nodectl"));
    assert!(
        parse("nodectl:\n  global_p12:\n    key_name: a\n")
            .unwrap_err()
            .to_string()
            .contains("no profile")
    );
    let err = parse("nodectl:\n  p12:\n    passphrase: @Str0ngPass\n")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("Str0ng") && err.contains("line 3"), "{err}");
}

#[test]
fn a_profile_without_a_global_p12_section_has_nothing_set() {
    let text = installed(DIR, "pw-0123456789");
    let cut = text.find("  global_p12:").unwrap();
    let end = text.find("  global_elements:").unwrap();
    let c = parse(&format!("{}{}", &text[..cut], &text[end..])).unwrap();
    assert_eq!(c.profiles[0].path(), None);
}

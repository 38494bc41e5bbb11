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
    // A profile's own alias wins over the global one, key by key.
    let own = set_profile_key(&text, "dor-dl1", "p12_key_alias", "dor-alias");
    assert_eq!(
        profile(&parse(&own).unwrap(), "dor-dl1").alias.as_deref(),
        Some("dor-alias")
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

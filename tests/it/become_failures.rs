//! A node whose helper set-up is missing or wrong fails alone, with an error that names the fix:
//! no helper binary, no policy, a keystore the policy does not list, a sudo that wants a
//! password, a policy or a binary the SSH user could write, a helper of another protocol version.
//! Each test runs two nodes: `a` broken, `b` set up right and backed up in the same run.
use super::become_cli::{ACRA_REL, P12_REL, need_root};
use crate::support;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use support::fleet::{FIXTURE, Fleet, text};
use support::sudo::{DropIn, Installed, LOGIN_USER, NodeHelper, helper, install};

struct Two {
    fleet: Fleet,
    a: NodeHelper,
    b: NodeHelper,
    p12_a: PathBuf,
}

/// Nodes `a` and `b` with a root-only P12 each, logged into as the login user.
fn two() -> Two {
    need_root();
    let mut fleet = Fleet::new(&["a", "b"]);
    fleet.sandbox.login_as(LOGIN_USER).unwrap();
    let bytes = fs::read(format!("{FIXTURE}/key.p12")).unwrap();
    let mut p12_a = PathBuf::new();
    for n in ["a", "b"] {
        let p = PathBuf::from(fleet.put(n, P12_REL, &bytes, 0o400));
        let root = fleet.node(n).root.clone();
        for d in p
            .parent()
            .unwrap()
            .ancestors()
            .take_while(|d| d.starts_with(&root) && **d != *root)
        {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        if n == "a" {
            p12_a = p;
        }
    }
    Two {
        fleet,
        a: helper(),
        b: helper(),
        p12_a,
    }
}

impl Two {
    /// `a_extra` replaces a's helper lines when given; `a_acra` adds an Acra keystore to a.
    fn config(&self, a_helper: &str, a_acra: bool) {
        let mut yaml = String::new();
        for (n, h) in [("a", a_helper.to_string()), ("b", self.b.yaml())] {
            let node = self.fleet.node(n);
            yaml.push_str(&format!(
                "  - name: {n}\n    host: 127.0.0.1\n    port: {}\n{h}    keystores:\n\
                 \x20     - name: p12\n        kind: p12\n        path: {}\n",
                node.port,
                node.root.join(P12_REL).display(),
            ));
            if n == "a" && a_acra {
                yaml.push_str(&format!(
                    "      - name: acra\n        kind: acra\n        path: {}\n",
                    node.root.join(ACRA_REL).display()
                ));
            }
        }
        self.fleet.write_config(&yaml);
    }

    fn install_b(&self) -> Installed {
        install(&self.fleet, &self.b, "b", false)
    }

    /// Backs up both; returns a's errors (b must have succeeded).
    fn backup_a_fails(&self) -> String {
        let out = self.fleet.run(&["backup", "--json"]);
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
        let mut errors = String::new();
        for o in report["outcomes"].as_array().unwrap() {
            if o["node"] == "b" {
                assert_eq!(o["ok"], true, "node b must not suffer: {o}");
            } else {
                assert_eq!(o["ok"], false, "{o}");
                errors.push_str(o["error"].as_str().unwrap());
                errors.push('\n');
            }
        }
        assert!(!errors.is_empty(), "{report}");
        errors
    }
}

#[test]
fn a_node_without_the_helper_binary_fails_alone_naming_the_package() {
    let t = two();
    let missing = format!(
        "/usr/local/lib/coldkeep-test-{}-missing/coldkeep",
        std::process::id()
    );
    let a_yaml = format!(
        "    become: sudo\n    node_helper: {missing}\n    node_policy: {}\n",
        t.a.policy
    );
    t.config(&a_yaml, false);
    let _b = t.install_b();
    // The rule for the configured path is installed (as an operator would), the binary is not.
    let sudoers = text(&t.fleet.run(&["config", "sudoers", "--node", "a"]).stdout);
    let policy = text(&t.fleet.run(&["config", "node-policy", "--node", "a"]).stdout);
    let _a = t.a.install(&sudoers, &policy);
    let e = t.backup_a_fails();
    assert!(e.contains(&format!("the node helper {missing} is not on")), "{e}");
    assert!(e.contains("install the coldkeep package on the node"), "{e}");
}

#[test]
fn a_node_without_a_policy_fails_alone_naming_how_to_print_and_install_it() {
    let t = two();
    t.config(&t.a.yaml(), false);
    let _b = t.install_b();
    let sudoers = text(&t.fleet.run(&["config", "sudoers", "--node", "a"]).stdout);
    let _rule = DropIn::install(&sudoers);
    let e = t.backup_a_fails();
    assert!(
        e.contains(&format!("{} (the node policy) does not exist", t.a.policy)),
        "{e}"
    );
    assert!(e.contains("coldkeep config node-policy --node"), "{e}");
}

#[test]
fn a_keystore_the_policy_does_not_list_fails_alone_and_the_others_are_backed_up() {
    let t = two();
    let acra = t.fleet.node("a").root.join(ACRA_REL);
    support::acra::write_tree(&acra, &support::acra::v1_files("client"));
    // The policy was printed before the Acra keystore was added to the config.
    t.config(&t.a.yaml(), false);
    let _a = install(&t.fleet, &t.a, "a", false);
    let _b = t.install_b();
    t.config(&t.a.yaml(), true);
    let out = t.fleet.run(&["backup", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcomes = report["outcomes"].as_array().unwrap();
    for o in outcomes {
        let failed = o["node"] == "a" && o["keystore"] == "acra";
        assert_eq!(o["ok"], !failed, "{o}");
        if failed {
            let e = o["error"].as_str().unwrap();
            assert!(
                e.contains("is not in the node's policy") && e.contains("config node-policy --node a"),
                "{e}"
            );
        }
    }
    assert_eq!(outcomes.len(), 3, "{report}");
}

#[test]
fn a_sudo_that_wants_a_password_fails_at_once_with_the_rule_and_changes_nothing() {
    let t = two();
    t.config(&t.a.yaml(), false);
    let _b = t.install_b();
    // The rule without NOPASSWD (the login user has no password at all).
    let rule = format!(
        "{LOGIN_USER} ALL=(root) {} node-helper --policy\\={}\n",
        t.a.program, t.a.policy
    );
    let policy = text(&t.fleet.run(&["config", "node-policy", "--node", "a"]).stdout);
    let _a = t.a.install("# no rule\n", &policy);
    let _password = DropIn::install(&rule);
    let before = fs::read(&t.p12_a).unwrap();
    let e = t.backup_a_fails();
    assert!(e.contains("a password is required"), "{e}");
    assert!(e.contains("coldkeep config sudoers --node a`"), "{e}");
    assert!(
        e.contains("NOPASSWD:NOSETENV:NOEXEC:NOLOG_INPUT:NOLOG_OUTPUT:"),
        "names the exact rule: {e}"
    );
    assert_eq!(fs::read(&t.p12_a).unwrap(), before);
}

#[test]
fn a_policy_the_ssh_user_could_write_is_refused_naming_the_fix() {
    let t = two();
    t.config(&t.a.yaml(), false);
    let _a = install(&t.fleet, &t.a, "a", false);
    let _b = t.install_b();
    let policy = PathBuf::from(&t.a.policy);
    let uid = text(
        &std::process::Command::new("id")
            .args(["-u", LOGIN_USER])
            .output()
            .unwrap()
            .stdout,
    );
    // Owned by the SSH user.
    support::sudo::chown(&policy, LOGIN_USER);
    let e = t.backup_a_fails();
    assert!(
        e.contains(&format!("owned by uid {}, not root", uid.trim())),
        "{e}"
    );
    assert!(
        e.contains(&format!("Fix: chown root:root {}", policy.display())),
        "{e}"
    );
    // Root's, but group-writable; then its directory world-writable.
    std::os::unix::fs::chown(&policy, Some(0), Some(0)).unwrap();
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o664)).unwrap();
    let e = t.backup_a_fails();
    assert!(
        e.contains("writable by group or others (mode 0664)") && e.contains("chmod go-w"),
        "{e}"
    );
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o644)).unwrap();
    let dir = policy.parent().unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
    let e = t.backup_a_fails();
    assert!(e.contains(&format!("chmod go-w {}", dir.display())), "{e}");
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    // Set right again, the same node backs up.
    let out = t.fleet.run(&["backup"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_helper_binary_the_ssh_user_could_write_refuses_to_run() {
    let t = two();
    // The operator copied the binary into a directory the SSH user owns.
    let dir = PathBuf::from(format!(
        "/usr/local/lib/coldkeep-test-{}-userdir",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).unwrap();
    let program = dir.join("coldkeep");
    fs::copy(env!("CARGO_BIN_EXE_coldkeep"), &program).unwrap();
    fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
    support::sudo::chown(&dir, LOGIN_USER);
    std::os::unix::fs::chown(&program, Some(0), Some(0)).unwrap();
    let a_yaml = format!(
        "    become: sudo\n    node_helper: {}\n    node_policy: {}\n",
        program.display(),
        t.a.policy
    );
    t.config(&a_yaml, false);
    let _b = t.install_b();
    let sudoers = text(&t.fleet.run(&["config", "sudoers", "--node", "a"]).stdout);
    let policy = text(&t.fleet.run(&["config", "node-policy", "--node", "a"]).stdout);
    let _a = t.a.install(&sudoers, &policy);
    let e = t.backup_a_fails();
    assert!(
        e.contains(&format!("{} (a directory above the node helper", dir.display())),
        "{e}"
    );
    assert!(
        e.contains("not root") && e.contains(&format!("chown root:root {}", dir.display())),
        "{e}"
    );
    // The binary itself group-writable, in a root-owned directory.
    std::os::unix::fs::chown(&dir, Some(0), Some(0)).unwrap();
    fs::set_permissions(&program, fs::Permissions::from_mode(0o775)).unwrap();
    let e = t.backup_a_fails();
    assert!(
        e.contains("(the node helper) is writable by group or others"),
        "{e}"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_helper_of_another_protocol_version_is_refused_naming_which_side_to_upgrade() {
    let t = two();
    let dir = PathBuf::from(format!(
        "/usr/local/lib/coldkeep-test-{}-versions",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    t.config(&t.a.yaml(), false);
    let _b = t.install_b();
    for (version, side) in [
        (99u32, "upgrade coldkeep on the agent"),
        (0, "upgrade coldkeep on the node"),
    ] {
        // A program that says the hello of another version (a frame: length, kind 'J', JSON).
        let hello =
            format!(r#"{{"proto":"coldkeep-node-helper","version":{version},"build":"0.0.{version}"}}"#);
        let mut frame = ((hello.len() + 1) as u32).to_be_bytes().to_vec();
        frame.push(b'J');
        frame.extend_from_slice(hello.as_bytes());
        let escaped: String = frame.iter().map(|b| format!("\\{b:03o}")).collect();
        let program = dir.join(format!("helper-v{version}"));
        fs::write(&program, format!("#!/bin/sh\nprintf '{escaped}'\n")).unwrap();
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        let a_yaml = format!(
            "    become: sudo\n    node_helper: {}\n    node_policy: {}\n",
            program.display(),
            t.a.policy
        );
        t.config(&a_yaml, false);
        let sudoers = text(&t.fleet.run(&["config", "sudoers", "--node", "a"]).stdout);
        let _a = t.a.install(&sudoers, "version: 1\nkeystores: []\n");
        let e = t.backup_a_fails();
        assert!(
            e.contains(&format!("speaks protocol version {version}")) && e.contains(side),
            "{e}"
        );
    }
    let _ = fs::remove_dir_all(&dir);
}

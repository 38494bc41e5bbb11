//! nodectl as it really is, end to end: nodectl's own cn-config.yaml (read from
//! ../shared/reference/nodectl/, edited the way nodectl's installer and configurator edit it, see
//! `coldkeep::testkit::nodectl`) on a real sshd node laid out as nodectl lays it out (the P12s
//! root:root 0400 in a directory the SSH user owns, cn-config.yaml root 0600, root logins off:
//! an unprivileged login user with `become: sudo` through the node helper), each through
//! discover (with no node in the config) -> backup -> check -> restore.
//!
//! They need root (users, the helper's sudoers rule and policy), as `.ci/run` runs them. The
//! helper is installed as an operator installs it (issue 23's `tests/support/sudo.rs`): the
//! read rule with the bootstrap policy `config node-policy --discover` prints for discover, then
//! the node's own policy from the printed config, with `--restore` for restores.
use crate::support;
use coldkeep::material::p12::{self, GenerateStyle};
use coldkeep::testkit::nodectl::{
    Install, MAINNET, NestedProfile, V1211_DOR, copy_profile, insert_after, install, nested, reference,
    set_profile_key,
};
use std::cell::RefCell;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use support::fleet::{Fleet, text};
use support::sudo::{Installed, LOGIN_USER, NodeHelper, chown, helper, owner_of};

/// One nodectl node.
struct Node {
    fleet: Fleet,
    root: PathBuf,
    /// `/home/nodeadmin/tessellation` under the node's root (owned by the SSH user).
    key_dir: PathBuf,
    /// `/var/tessellation/nodectl/cn-config.yaml` under the node's root.
    cn: PathBuf,
    /// `/etc/security/cnngsenc.conf` under the node's root.
    enc: PathBuf,
    /// The node helper (its program and this node's policy path).
    h: NodeHelper,
    /// Its sudoers rule and policy, as installed now.
    installed: RefCell<Option<Installed>>,
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Creates `dir` and its missing parents under `root`, 0755 as on a node.
fn make_dirs(root: &Path, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    for d in dir.ancestors().take_while(|d| d.starts_with(root) && *d != root) {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

impl Node {
    fn new() -> Node {
        let uid = std::process::Command::new("id").arg("-u").output().unwrap();
        assert_eq!(
            text(&uid.stdout).trim(),
            "0",
            "these tests need root: they create local users and sudoers drop-ins (as .ci/run does)"
        );
        let mut fleet = Fleet::new(&["v"]);
        fleet.sandbox.login_as(LOGIN_USER).unwrap();
        let root = fleet.node("v").root.clone();
        let key_dir = root.join("home/nodeadmin/tessellation");
        make_dirs(&root, &key_dir);
        // nodectl chowns the directory to the node admin, who is the SSH user.
        chown(&key_dir, LOGIN_USER);
        let cn = root.join("var/tessellation/nodectl/cn-config.yaml");
        make_dirs(&root, cn.parent().unwrap());
        let enc = root.join("etc/security/cnngsenc.conf");
        make_dirs(&root, enc.parent().unwrap());
        let n = Node {
            fleet,
            root,
            key_dir,
            cn,
            enc,
            h: helper(),
            installed: RefCell::new(None),
        };
        // No node yet: `discover --host` needs only the ssh: settings.
        n.write_config("");
        n
    }

    /// The config with `nodes` (YAML under `nodes:`); the `ssh:` settings name this node's
    /// helper and policy, as an operator's would for a fleet using one.
    fn write_config(&self, nodes: &str) {
        self.fleet.write_config(nodes);
        let text = fs::read_to_string(&self.fleet.config).unwrap();
        let text = text.replacen(
            "\nssh:\n",
            &format!(
                "\nssh:\n  node_helper: {}\n  node_policy: {}\n",
                self.h.program, self.h.policy
            ),
            1,
        );
        fs::write(&self.fleet.config, text).unwrap();
    }

    /// Installs the helper's read rule and the bootstrap policy discover needs on a node that
    /// is not set up yet (cn-config.yaml, cnngsenc.conf, read only), as the README says.
    fn bootstrap(&self) {
        *self.installed.borrow_mut() = None;
        // The rule is printed for a configured node: a placeholder entry of this node.
        let port = self.fleet.node("v").port;
        self.write_config(&format!(
            "  - name: v\n    host: 127.0.0.1\n    port: {port}\n{}    keystores:\n\
             \x20     - name: cn-config\n        kind: file\n        path: {}\n",
            self.h.yaml(),
            self.cn.display()
        ));
        let sudoers = self.fleet.run(&["config", "sudoers", "--node", "v"]);
        assert!(sudoers.status.success(), "{}", text(&sudoers.stderr));
        let cn = self.cn.display().to_string();
        let policy = self.fleet.run(&[
            "config",
            "node-policy",
            "--discover",
            "--nodectl-config",
            &cn,
            "--acra-dir",
            "/nonexistent-acra",
        ]);
        assert!(policy.status.success(), "{}", text(&policy.stderr));
        *self.installed.borrow_mut() = Some(self.h.install(&text(&sudoers.stdout), &text(&policy.stdout)));
        self.write_config("");
    }

    /// Installs the rule and the node's own policy from the config (`restore`: the restore rule
    /// and the owners and modes of the latest backups too).
    fn policy(&self, restore: bool) {
        *self.installed.borrow_mut() = None;
        *self.installed.borrow_mut() = Some(support::sudo::install(&self.fleet, &self.h, "v", restore));
    }

    /// A root-only file (the tests run as root: root:root).
    fn put_root(&self, path: &Path, bytes: &[u8], mode: u32) {
        make_dirs(&self.root, path.parent().unwrap());
        if path.exists() {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        fs::write(path, bytes).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A cl-keytool-style P12, root:root 0400 as nodectl migrates it.
    fn put_p12(&self, path: &Path, passphrase: &str, alias: &str) -> Vec<u8> {
        let bytes = p12::generate(passphrase, alias, GenerateStyle::Legacy)
            .unwrap()
            .to_vec();
        self.put_root(path, &bytes, 0o400);
        bytes
    }

    fn put_cn(&self, text: &str) {
        self.put_root(&self.cn, text.as_bytes(), 0o600);
    }

    /// The installed mainnet.yaml with the global P12 in the key directory.
    fn mainnet(&self, location: &str, passphrase: &str) -> String {
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

    fn dir(&self) -> String {
        self.key_dir.display().to_string()
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.fleet.run(args);
        (out.status.code().unwrap(), text(&out.stdout), text(&out.stderr))
    }

    /// `discover` of a node that is not in the config, through sudo (the bootstrap policy).
    fn discover(&self) -> String {
        self.bootstrap();
        let port = self.fleet.node("v").port.to_string();
        let (cn, enc) = (self.cn.display().to_string(), self.enc.display().to_string());
        let (code, out, err) = self.run(&[
            "discover",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--user",
            LOGIN_USER,
            "--become",
            "sudo",
            "--name",
            "v",
            "--nodectl-config",
            &cn,
            "--cnngsenc-conf",
            &enc,
            "--acra-dir",
            "/nonexistent-acra",
        ]);
        assert_eq!(code, 0, "{out}{err}");
        out
    }

    /// The printed entry as the node's whole config, with the node's own (read) policy.
    fn use_entry(&self, entry: &str) {
        self.write_config(entry);
        self.policy(false);
    }

    fn identity(&self) -> String {
        self.fleet.age_identity.display().to_string()
    }

    /// discover -> the printed entry as the config -> backup -> check --identity -> restore of
    /// every P12 keystore over a different file. Returns the printed entry.
    fn round_trip(&self, p12s: &[(&str, &[u8])], expect: &[&str]) -> String {
        let entry = self.discover();
        assert!(entry.contains("    become: sudo\n"), "{entry}");
        assert!(
            entry.contains(&format!("    node_policy: \"{}\"", self.h.policy)),
            "the helper it used: {entry}"
        );
        assert_eq!(
            entry.matches("kind: p12").count(),
            p12s.len(),
            "one keystore per distinct P12: {entry}"
        );
        for (name, _) in p12s {
            assert!(entry.contains(&format!("path: \"{name}\"")), "{name} in {entry}");
        }
        self.use_entry(&entry);
        let (code, out, err) = self.run(&["config", "check"]);
        assert_eq!(code, 0, "{out}{err}");

        let (code, out, err) = self.run(&["backup"]);
        assert_eq!(code, 0, "{out}{err}");
        let identity = self.identity();
        let (code, out, err) = self.run(&["check", "--identity", &identity]);
        assert_eq!(code, 0, "{out}{err}");
        for line in expect {
            assert!(out.contains(line), "{line:?} in\n{out}");
        }

        // A reinstalled node holds other P12s under the same names: each one restored.
        self.policy(true);
        for (i, (path, bytes)) in p12s.iter().enumerate() {
            let keystore = if i == 0 {
                "p12".to_string()
            } else {
                format!("p12-{}", i + 1)
            };
            let path = Path::new(path);
            self.put_root(path, b"nodectl's temporary key", 0o400);
            let (code, out, err) = self.run(&[
                "restore",
                "--node",
                "v",
                "--keystore",
                &keystore,
                "--identity",
                &identity,
                "--yes",
            ]);
            assert_eq!(code, 0, "{keystore}: {out}{err}");
            assert_eq!(&fs::read(path).unwrap(), bytes, "{keystore}");
            assert_eq!(
                (owner_of(path), mode(path)),
                ("root:root".to_string(), 0o400),
                "{keystore}"
            );
        }
        entry
    }
}

#[test]
fn installer_substitution_one_p12_for_both_profiles() {
    let n = Node::new();
    let p12 = n.key_dir.join("nodeadmin-node.p12");
    // os.path.split: no trailing slash; single-quoted passphrase with YAML's special characters.
    let bytes = n.put_p12(&p12, "p@ss #1: w\"rd", "nodeadmin-alias");
    n.put_cn(&n.mainnet(&n.dir(), "p@ss #1: w\"rd"));
    let entry = n.round_trip(
        &[(&p12.display().to_string(), &bytes)],
        &["for profile dag-l0: opens", "for profile dag-l1: opens"],
    );
    assert!(
        entry.contains("used by nodectl profile(s) dag-l0, dag-l1"),
        "{entry}"
    );
    assert!(!entry.contains("p@ss"), "never the passphrase: {entry}");
}

#[test]
fn per_key_global_two_profiles_two_p12s_in_one_directory() {
    let n = Node::new();
    let l0 = n.key_dir.join("nodeadmin-node.p12");
    let l1 = n.key_dir.join("dag-l1.p12");
    let l0_bytes = n.put_p12(&l0, "first-passphrase", "nodeadmin-alias");
    let l1_bytes = n.put_p12(&l1, "second passphrase", "l1-alias");
    // The configurator's mix: location global (trailing slash), own name and passphrase
    // (double quotes).
    let text = n.mainnet(&format!("{}/", n.dir()), "first-passphrase");
    let text = set_profile_key(&text, "dag-l1", "p12_key_name", "dag-l1.p12");
    let text = set_profile_key(&text, "dag-l1", "p12_passphrase", "\"second passphrase\"");
    n.put_cn(&text);
    n.round_trip(
        &[
            (&l0.display().to_string(), &l0_bytes),
            (&l1.display().to_string(), &l1_bytes),
        ],
        &[
            "for profile dag-l0: opens",
            "for profile dag-l1: opens",
            "All 2 keystores agree",
        ],
    );
}

#[test]
fn three_profiles_three_p12s_one_elsewhere() {
    let n = Node::new();
    let other = n.root.join("root/metagraph");
    let paths = [
        n.key_dir.join("nodeadmin-node.p12"),
        n.key_dir.join("l1.p12"),
        other.join("dor.p12"),
    ];
    let bytes: Vec<Vec<u8>> = paths
        .iter()
        .zip(["pw-global-0", "pw-l1-00000", "pw-dor-0000"])
        .map(|(p, pw)| n.put_p12(p, pw, "alias"))
        .collect();
    let mut text = copy_profile(&n.mainnet(&n.dir(), "pw-global-0"), "dag-l1", "dor-dl1");
    text = set_profile_key(&text, "dag-l1", "p12_key_name", "l1.p12");
    text = set_profile_key(&text, "dag-l1", "p12_passphrase", "pw-l1-00000");
    text = set_profile_key(
        &text,
        "dor-dl1",
        "p12_key_location",
        &format!("{}/", other.display()),
    );
    text = set_profile_key(&text, "dor-dl1", "p12_key_name", "dor.p12");
    text = set_profile_key(&text, "dor-dl1", "p12_passphrase", "'pw-dor-0000'");
    n.put_cn(&text);
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    n.round_trip(
        &[
            (&names[0], &bytes[0]),
            (&names[1], &bytes[1]),
            (&names[2], &bytes[2]),
        ],
        &["for profile dor-dl1: opens", "All 3 keystores agree"],
    );
}

#[test]
fn a_disabled_profile_proposes_no_keystore_and_fails_nothing() {
    let n = Node::new();
    let p12 = n.key_dir.join("nodeadmin-node.p12");
    let bytes = n.put_p12(&p12, "pw-0123456789", "nodeadmin-alias");
    let text = set_profile_key(
        &n.mainnet(&n.dir(), "pw-0123456789"),
        "dag-l1",
        "profile_enable",
        "False",
    );
    let text = set_profile_key(&text, "dag-l1", "p12_key_name", "gone.p12");
    let text = set_profile_key(&text, "dag-l1", "p12_passphrase", "'old'");
    n.put_cn(&text);
    let entry = n.round_trip(
        &[(&p12.display().to_string(), &bytes)],
        &["for profile dag-l0: opens"],
    );
    assert!(entry.contains("profile dag-l1 is disabled"), "{entry}");
}

#[test]
fn encryption_on_proposes_cnngsenc_and_says_why_the_passphrase_is_not_checked() {
    let n = Node::new();
    let p12 = n.key_dir.join("nodeadmin-node.p12");
    let bytes = n.put_p12(&p12, "pw-0123456789", "nodeadmin-alias");
    n.put_cn(
        &n.mainnet(&n.dir(), "gAAAAABnScrambledFernetToken==")
            .replace("encryption: False", "encryption: True"),
    );
    n.put_root(&n.enc, b"global:5f4dcc3b5aa765d61d8327deb882cf99\n", 0o600);
    let entry = n.round_trip(
        &[(&p12.display().to_string(), &bytes)],
        &["for profile dag-l0: not checked: the passphrase is encrypted"],
    );
    assert!(
        entry.contains(&format!("path: \"{}\"", n.enc.display())),
        "cnngsenc.conf proposed: {entry}"
    );
    // It was backed up with the rest.
    let (_, listed) = n.fleet.run_json(&["list", "--json"]);
    assert!(listed.to_string().contains("\"cnngsenc\""), "{listed}");
}

#[test]
fn v2_1_0_key_alias_is_compared_on_check_and_restore() {
    let n = Node::new();
    let p12 = n.key_dir.join("nodeadmin.p12");
    let bytes = n.put_p12(&p12, "dor-passphrase", "nodeadmin-alias");
    let text = reference(V1211_DOR)
        .replace("/home/nodeadmin/tessellation/", &format!("{}/", n.dir()))
        .replace("    passphrase: blank\n", "    passphrase: 'dor-passphrase'\n");
    n.put_cn(&text);
    n.round_trip(
        &[(&p12.display().to_string(), &bytes)],
        &["for profile dor-dl1: opens"],
    );
    // nodectl now exports another alias: the backup would not start the node. (In global_p12:
    // a profile's own alias beside its `global` name and passphrase would make nodectl 2.9-2.12
    // refuse the file.)
    n.put_cn(&text.replace(
        "    key_alias: nodeadmin-alias\n",
        "    key_alias: renamed-alias\n",
    ));
    let (code, out, err) = n.run(&["check", "--identity", &n.identity()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("CL_KEYALIAS=renamed-alias"), "{out}");
    n.put_root(&p12, b"other", 0o400);
    let (code, out, err) = n.run(&[
        "restore",
        "--node",
        "v",
        "--keystore",
        "p12",
        "--identity",
        &n.identity(),
        "--yes",
    ]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("profile dor-dl1") && err.contains("CL_KEYALIAS=renamed-alias"),
        "{err}"
    );
    assert_eq!(fs::read(&p12).unwrap(), b"other", "nothing changed");
}

#[test]
fn a_duplicated_key_is_read_as_pyyaml_does_with_a_warning() {
    let n = Node::new();
    let p12 = n.key_dir.join("nodeadmin-node.p12");
    let bytes = n.put_p12(&p12, "pw-0123456789", "nodeadmin-alias");
    // A hand edit left two p12_key_name lines in dag-l0; the last names the real file.
    let text = set_profile_key(
        &n.mainnet(&n.dir(), "pw-0123456789"),
        "dag-l0",
        "p12_key_name",
        "old-name.p12",
    );
    let text = insert_after(&text, "dag-l0", "p12_key_name", "p12_key_name: global");
    n.put_cn(&text);
    let line = text
        .lines()
        .position(|l| l == "    p12_key_name: global")
        .unwrap()
        + 1;
    let entry = n.round_trip(
        &[(&p12.display().to_string(), &bytes)],
        &["for profile dag-l0: opens"],
    );
    assert!(
        entry.contains("# warning:")
            && entry.contains("duplicate key `p12_key_name`")
            && entry.contains(&format!("line {line}")),
        "{entry}"
    );
}

#[test]
fn the_pre_2_0_nested_form_is_read() {
    let n = Node::new();
    let p12 = n.key_dir.join("nodeadmin.p12");
    let bytes = n.put_p12(&p12, "old passphrase", "nodeadmin-alias");
    let dir = format!("{}/", n.dir());
    n.put_cn(&nested(
        &[
            NestedProfile {
                name: "dag-l0",
                enable: true,
                p12: ["global", "global", "global", "global"],
            },
            NestedProfile {
                name: "dag-l1",
                enable: true,
                p12: ["global", "global", "global", "global"],
            },
        ],
        [
            "nodeadmin",
            &dir,
            "nodeadmin.p12",
            "nodeadmin-alias",
            "old passphrase",
        ],
    ));
    let entry = n.round_trip(
        &[(&p12.display().to_string(), &bytes)],
        &["for profile dag-l0: opens", "for profile dag-l1: opens"],
    );
    assert!(entry.contains("pre-2.0 nested format"), "{entry}");
}

#[test]
fn a_directory_with_yaml_syntax_in_its_name_round_trips() {
    let n = Node::new();
    let dir = n.root.join("home/nodeadmin/tess #1: keys, 'quoted' & *more*");
    let p12 = dir.join("nodeadmin-node.p12");
    let bytes = n.put_p12(&p12, "pw-0123456789", "nodeadmin-alias");
    n.put_cn(&n.mainnet(&format!("\"{}/\"", dir.display()), "pw-0123456789"));
    n.round_trip(
        &[(&p12.display().to_string(), &bytes)],
        &["for profile dag-l0: opens"],
    );
}

/// A node with dag-l0 on the global P12 and dag-l1 on its own beside it, backed up with both.
fn two_p12_node() -> (Node, PathBuf, PathBuf, String) {
    let n = Node::new();
    let l0 = n.key_dir.join("nodeadmin-node.p12");
    let l1 = n.key_dir.join("dag-l1.p12");
    n.put_p12(&l0, "first-passphrase", "nodeadmin-alias");
    n.put_p12(&l1, "second passphrase", "l1-alias");
    let text = n.mainnet(&n.dir(), "first-passphrase");
    let text = set_profile_key(&text, "dag-l1", "p12_key_name", "dag-l1.p12");
    let text = set_profile_key(&text, "dag-l1", "p12_passphrase", "'second passphrase'");
    n.put_cn(&text);
    (n, l0, l1, text)
}

#[test]
fn a_profile_whose_p12_no_keystore_backs_up_is_not_covered() {
    let (n, _, l1, _) = two_p12_node();
    let entry = n.discover();
    // The operator keeps only the global P12 (the entry as an older discover printed it).
    let start = entry.find("      - name: \"p12-2\"").unwrap();
    let end = entry.find("      - name: \"cn-config\"").unwrap();
    let only_global = format!("{}{}", &entry[..start], &entry[end..]);
    n.use_entry(&only_global);
    let (code, out, err) = n.run(&["backup"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = n.run(&["check"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("NOT COVERED") && out.contains("dag-l1") && out.contains(&l1.display().to_string()),
        "{out}"
    );
    // And the keystore itself: dag-l1 names another file in its directory.
    assert!(out.contains("expects another file in this directory"), "{out}");
    let (_, json) = n.fleet.run_json(&["check", "--json"]);
    let uncovered: Vec<&serde_json::Value> = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["profile"] == "dag-l1")
        .collect();
    assert_eq!(uncovered.len(), 1, "{json}");
    assert_eq!(uncovered[0]["ok"], false);

    // With both keystores but no backup of the second: still not covered.
    n.use_entry(&entry);
    let (code, out, _) = n.run(&["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("keystore p12-2 has no backup"), "{out}");
    let (code, out, err) = n.run(&["backup"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = n.run(&["check", "--nodectl-config", &n.cn.display().to_string()]);
    assert_eq!(code, 0, "the local copy gives the same answer: {out}{err}");
}

#[test]
fn restore_refuses_a_p12_the_nodes_current_passphrase_cannot_open_unless_told() {
    let (n, l0, _, text) = two_p12_node();
    n.use_entry(&n.discover());
    let (code, out, err) = n.run(&["backup"]);
    assert_eq!(code, 0, "{out}{err}");
    n.policy(true);
    let backed_up = fs::read(&l0).unwrap();
    // The node was reinstalled with a new passphrase (and a new key).
    n.put_p12(&l0, "new-passphrase", "nodeadmin-alias");
    let reinstalled = fs::read(&l0).unwrap();
    n.put_cn(&text.replace("'first-passphrase'", "'new-passphrase'"));
    let id = n.identity();
    let restore = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            "--node",
            "v",
            "--keystore",
            "p12",
            "--identity",
            &id,
            "--yes",
        ];
        args.extend_from_slice(extra);
        n.run(&args)
    };
    // The dry run shows the name checks, and refuses too.
    let (code, out, err) = restore(&["--dry-run"]);
    assert_ne!(code, 0, "{out}{err}");
    let (code, out, err) = restore(&[]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("profile dag-l0")
            && err.contains("does not open")
            && err.contains("--accept-passphrase-mismatch"),
        "{err}"
    );
    assert!(!err.contains("dag-l1:"), "dag-l1 does not use this file: {err}");
    assert!(
        !err.contains("new-passphrase") && !err.contains("first-passphrase"),
        "{err}"
    );
    assert_eq!(fs::read(&l0).unwrap(), reinstalled, "nothing changed");
    // Told so: restored, and the plan says what will not start.
    let (code, out, err) = restore(&["--accept-passphrase-mismatch"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("passphrase for nodectl profile dag-l0: does not open"),
        "{out}"
    );
    assert_eq!(fs::read(&l0).unwrap(), backed_up);
}

#[test]
fn restore_dry_run_prints_the_name_check_table() {
    let (n, l0, l1, _) = two_p12_node();
    n.use_entry(&n.discover());
    let (code, out, err) = n.run(&["backup"]);
    assert_eq!(code, 0, "{out}{err}");
    n.policy(true);
    n.put_root(&l1, b"nodectl's temporary key", 0o400);
    let (code, out, err) = n.run(&[
        "restore",
        "--node",
        "v",
        "--keystore",
        "p12-2",
        "--identity",
        &n.identity(),
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("name checks:") && out.contains("SOURCE"), "{out}");
    assert!(
        out.contains("nodectl dag-l1 (location from global_p12)") && out.contains("ok: uses this file"),
        "{out}"
    );
    assert!(
        out.contains("nodectl dag-l0 (global_p12)") && out.contains("ok: uses keystore p12"),
        "{out}"
    );
    assert!(
        out.contains("passphrase for nodectl profile dag-l1: opens"),
        "{out}"
    );
    assert_eq!(fs::read(&l1).unwrap(), b"nodectl's temporary key");
    drop(l0);
}

#[test]
fn a_missing_cn_config_is_restored_0600() {
    let (n, _, _, text) = two_p12_node();
    n.use_entry(&n.discover());
    let (code, out, err) = n.run(&["backup"]);
    assert_eq!(code, 0, "{out}{err}");
    n.policy(true);
    fs::remove_file(&n.cn).unwrap();
    let (code, out, err) = n.run(&[
        "restore",
        "--node",
        "v",
        "--keystore",
        "cn-config",
        "--identity",
        &n.identity(),
        "--yes",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(fs::read_to_string(&n.cn).unwrap(), text);
    assert_eq!((owner_of(&n.cn), mode(&n.cn)), ("root:root".to_string(), 0o600));
}

//! `become: sudo` end to end: real sshd nodes logged into as an unprivileged user (as on a
//! nodectl node with root logins off), real sudo with drop-ins in /etc/sudoers.d, keys owned by
//! root (`root:root 0400`) and by an Acra service user (0700 directory).
//!
//! Tests that depend on which sudo rules exist hold [`sudo_lock`]. They need root (to create the
//! users and the drop-ins), as `.ci/run` runs them.
use crate::support;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use support::acra::{read_tree, v1_files, write_tree};
use support::fleet::{FIXTURE, Fleet, text};
use support::sudo::{DropIn, LOGIN_USER, SERVICE_USER, chown, owner_of, sudo_as, sudo_lock};

const P12_REL: &str = "home/nodeadmin/tessellation/nodeadmin-node.p12";
const ACRA_REL: &str = "srv/acra/.acrakeys";
/// A rule giving the login user everything without a password (the "become works" cases).
fn allow_all() -> String {
    format!("# coldkeep tests: full sudo\n{LOGIN_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n")
}

struct Setup {
    fleet: Fleet,
    p12: PathBuf,
    acra: PathBuf,
    p12_bytes: Vec<u8>,
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Nodes `a` (and `b` when `two`), each with a root-owned 0400 P12 in a root-owned directory and
/// an Acra v1 tree owned by the service user (0700).
fn setup(two: bool) -> Setup {
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        text(&uid.stdout).trim(),
        "0",
        "these tests need root: they create local users and sudoers drop-ins (as .ci/run does)"
    );
    let names: &[&str] = if two { &["a", "b"] } else { &["a"] };
    let mut fleet = Fleet::new(names);
    fleet.sandbox.login_as(LOGIN_USER).unwrap();
    coldkeep::testkit::sandbox::ensure_user(SERVICE_USER).unwrap();
    let p12_bytes = fs::read(format!("{FIXTURE}/key.p12")).unwrap();
    let mut p12 = PathBuf::new();
    let mut acra = PathBuf::new();
    for n in names {
        p12 = PathBuf::from(fleet.put(n, P12_REL, &p12_bytes, 0o400));
        acra = fleet.node(n).root.join(ACRA_REL);
        write_tree(&acra, &v1_files("client"));
        chown(&acra, SERVICE_USER);
        fs::set_permissions(&acra, fs::Permissions::from_mode(0o700)).unwrap();
        // The directories on the way are 0755 as on a node (the harness runs under umask 077).
        let root = fleet.node(n).root.clone();
        for dir in [p12.parent().unwrap(), acra.parent().unwrap()] {
            for d in dir.ancestors().take_while(|d| d.starts_with(&root) && *d != root) {
                fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
    }
    Setup {
        fleet,
        p12,
        acra,
        p12_bytes,
    }
}

impl Setup {
    /// Config for the nodes; `a_extra`/`b_extra` are added to each node's entry.
    fn config(&self, a_extra: &str, b_extra: &str) {
        let mut yaml = String::new();
        for (n, extra) in [("a", a_extra), ("b", b_extra)] {
            if !self.fleet.nodes.iter().any(|x| x.name == n) {
                continue;
            }
            let node = self.fleet.node(n);
            yaml.push_str(&format!(
                "  - name: {n}\n    host: 127.0.0.1\n    port: {}\n{extra}    keystores:\n\
                 \x20     - name: p12\n        kind: p12\n        path: {}\n        password: {{env: P12_PASSWORD}}\n\
                 \x20     - name: acra\n        kind: acra\n        path: {}\n",
                node.port,
                node.root.join(P12_REL).display(),
                node.root.join(ACRA_REL).display(),
            ));
        }
        self.fleet.write_config(&yaml);
    }

    fn run(&self, args: &[&str]) -> (i32, String) {
        let out = self.fleet.run_with_env(args, &[("P12_PASSWORD", "password")]);
        (
            out.status.code().unwrap(),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    }

    fn restore(&self, node: &str, keystore: &str, extra: &[&str]) -> (i32, String) {
        let identity = self.fleet.age_identity.to_str().unwrap().to_string();
        let mut args = vec![
            "restore",
            "--node",
            node,
            "--keystore",
            keystore,
            "--identity",
            &identity,
            "--yes",
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

#[test]
fn become_reads_root_owned_p12_and_service_user_acra_tree_and_without_it_only_that_node_fails() {
    let _lock = sudo_lock();
    let s = setup(true);
    // The premise: the SSH user cannot read either.
    for path in [&s.p12, &s.acra.join("client_hmac")] {
        let read = std::process::Command::new("su")
            .args([
                LOGIN_USER,
                "-s",
                "/bin/sh",
                "-c",
                &format!("cat {}", path.display()),
            ])
            .output()
            .unwrap();
        assert!(
            !read.status.success(),
            "{} is readable by the SSH user",
            path.display()
        );
    }
    let _rules = DropIn::install(&allow_all());
    s.config("    become: sudo\n", "");
    let out = s
        .fleet
        .run_with_env(&["backup", "--json"], &[("P12_PASSWORD", "password")]);
    assert_ne!(out.status.code(), Some(0), "node b has no become and must fail");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcomes = report["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 4, "{report}");
    for o in outcomes {
        if o["node"] == "a" {
            assert_eq!(o["ok"], true, "{o}");
        } else {
            assert_eq!(o["ok"], false, "{o}");
            let error = o["error"].as_str().unwrap();
            assert!(
                error.contains("permission denied") && error.contains("set `become: sudo`"),
                "{error}"
            );
        }
    }
    assert!(
        outcomes[0]["identity"].as_str().unwrap().contains("1b4b9f"),
        "the P12 read through sudo opens: {report}"
    );

    // Verify the backup of a holds the exact bytes: restore-side check via verify.
    let identity = s.fleet.age_identity.to_str().unwrap().to_string();
    let (code, out) = s.run(&["verify", "--node", "a", "--identity", &identity]);
    assert_eq!(code, 0, "{out}");
    // The manifest (repeated in the plaintext sidecar) records owners of files and directories.
    let sidecar_of = |keystore: &str| -> serde_json::Value {
        let dir = s.fleet.store().join("a").join(keystore);
        let json = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            // Not the listing's index cache (a dot file).
            .find(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p.file_name().unwrap().to_string_lossy().starts_with('.')
            })
            .unwrap();
        serde_json::from_slice(&fs::read(json).unwrap()).unwrap()
    };
    let p12_side = sidecar_of("p12");
    let owner = &p12_side["files"][0]["owner"];
    assert_eq!(
        (owner["uid"].as_u64(), owner["user"].as_str()),
        (Some(0), Some("root")),
        "{p12_side}"
    );
    let acra_side = sidecar_of("acra");
    let dirs = acra_side["dirs"].as_array().unwrap();
    assert_eq!(dirs[0]["path"], "keys/", "{acra_side}");
    assert_eq!(dirs[0]["mode"], 0o700);
    assert!(
        dirs.iter().any(|d| d["path"] == "keys/.poison_key/"),
        "{acra_side}"
    );
    for d in dirs {
        assert_eq!(d["owner"]["user"], SERVICE_USER, "{d}");
    }
    for f in acra_side["files"].as_array().unwrap() {
        assert_eq!(f["owner"]["group"], SERVICE_USER, "{f}");
    }

    // The live check reads through sudo too.
    let (code, out) = s.run(&["verify", "--live", "--node", "a"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("matches"), "{out}");
    // Nothing on local disk in plaintext.
    s.fleet.assert_not_on_local_disk(&[&s.p12_bytes]);
}

#[test]
fn sudo_wanting_a_password_fails_fast_with_the_rule_and_changes_nothing() {
    let _lock = sudo_lock();
    let s = setup(false);
    // A rule that needs a password (the login user has no password at all).
    let _rules = DropIn::install(&format!("{LOGIN_USER} ALL=(ALL:ALL) ALL\n"));
    s.config("    become: sudo\n", "");
    let before = fs::read(&s.p12).unwrap();
    let (code, out) = s.run(&["backup"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("a password is required"), "{out}");
    assert!(out.contains("coldkeep config sudoers --node a"), "{out}");
    assert!(
        out.contains("NOPASSWD: /usr/bin/stat"),
        "names the exact rule: {out}"
    );
    assert_eq!(fs::read(&s.p12).unwrap(), before);
    assert_eq!((owner_of(&s.p12), mode(&s.p12)), ("root:root".to_string(), 0o400));
    drop(_rules);

    // A restore under the same rule: refused before any change on the node.
    let allowed = DropIn::install(&allow_all());
    let (code, out) = s.run(&["backup"]);
    assert_eq!(code, 0, "{out}");
    drop(allowed);
    let _password = DropIn::install(&format!("{LOGIN_USER} ALL=(ALL:ALL) ALL\n"));
    fs::set_permissions(&s.p12, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&s.p12, b"the node's current file").unwrap();
    fs::set_permissions(&s.p12, fs::Permissions::from_mode(0o400)).unwrap();
    let (code, out) = s.restore("a", "p12", &[]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("a password is required") && out.contains("config sudoers"),
        "{out}"
    );
    assert_eq!(fs::read(&s.p12).unwrap(), b"the node's current file");
    let names: Vec<String> = fs::read_dir(s.p12.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["nodeadmin-node.p12".to_string()]);
}

#[test]
fn through_sudo_a_symlinked_key_or_a_link_inside_the_acra_tree_is_refused() {
    let _lock = sudo_lock();
    let s = setup(false);
    let _rules = DropIn::install(&allow_all());
    s.config("    become: sudo\n", "");
    // Whoever controls the node's files points the key path at another root-only file.
    let secret = b"root-only secret, not a keystore ".repeat(3);
    let other = s.fleet.put("a", "etc/shadow-like", &secret, 0o400);
    fs::remove_file(&s.p12).unwrap();
    std::os::unix::fs::symlink(&other, &s.p12).unwrap();
    std::os::unix::fs::symlink(&other, s.acra.join("client_link")).unwrap();
    let out = s
        .fleet
        .run_with_env(&["backup", "--json"], &[("P12_PASSWORD", "password")]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for o in report["outcomes"].as_array().unwrap() {
        assert_eq!(o["ok"], false, "{o}");
        let error = o["error"].as_str().unwrap();
        assert!(error.contains("symbolic link"), "{error}");
    }
    s.fleet.assert_not_on_local_disk(&[&secret]);
}

#[test]
fn a_missing_become_user_is_named() {
    let _lock = sudo_lock();
    let s = setup(false);
    let _rules = DropIn::install(&allow_all());
    s.config("    become: sudo\n    become_user: coldkeep-nobody\n", "");
    let (code, out) = s.run(&["backup"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("become_user `coldkeep-nobody` does not exist"),
        "{out}"
    );
}

#[test]
fn restore_through_sudo_keeps_root_owner_and_mode_and_the_acra_owners() {
    let _lock = sudo_lock();
    let s = setup(false);
    let _rules = DropIn::install(&allow_all());
    s.config("    become: sudo\n", "");
    let (code, out) = s.run(&["backup"]);
    assert_eq!(code, 0, "{out}");

    // The node's P12 is replaced by something else, still root:root 0400.
    fs::set_permissions(&s.p12, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&s.p12, b"something else").unwrap();
    fs::set_permissions(&s.p12, fs::Permissions::from_mode(0o400)).unwrap();
    let (code, out) = s.restore("a", "p12", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(fs::read(&s.p12).unwrap(), s.p12_bytes);
    assert_eq!((owner_of(&s.p12), mode(&s.p12)), ("root:root".to_string(), 0o400));
    let dir = s.p12.parent().unwrap();
    let leftovers: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("coldkeep"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The Acra tree loses a file; the restore brings it back, owned by the service user.
    let (before, _) = read_tree(&s.acra);
    fs::remove_file(s.acra.join("client_hmac")).unwrap();
    let (code, out) = s.restore("a", "acra", &["--replace"]);
    assert_eq!(code, 0, "{out}");
    let (after, _) = read_tree(&s.acra);
    assert_eq!(after, before);
    assert_eq!(owner_of(&s.acra), format!("{SERVICE_USER}:{SERVICE_USER}"));
    assert_eq!(mode(&s.acra), 0o700);
    // Listed through sudo, the restored tree is identical to the backup: nothing to do.
    let (code, out) = s.restore("a", "acra", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("already in place"), "{out}");
    for (rel, _, _) in &after {
        assert_eq!(
            owner_of(&s.acra.join(rel)),
            format!("{SERVICE_USER}:{SERVICE_USER}"),
            "{rel}"
        );
    }
}

#[test]
fn only_the_printed_sudoers_rules_allow_backup_and_restore_and_nothing_else() {
    let _lock = sudo_lock();
    let s = setup(false);
    s.config("    become: sudo\n", "");
    let out = s.fleet.run(&["config", "sudoers", "--node", "a", "--restore"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rules = text(&out.stdout);
    for line in rules.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        assert!(
            line.starts_with(&format!("{LOGIN_USER} ALL=(root) NOPASSWD: /usr/bin/")),
            "{line}"
        );
        let unescaped = line.replace("\\*", "").replace("\\?", "");
        assert!(!unescaped.contains(['*', '?']), "no wildcards: {line}");
    }
    // Every rule has its comment.
    let lines: Vec<&str> = rules.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if !line.is_empty() && !line.starts_with('#') {
            assert!(lines[i - 1].starts_with("# "), "{line}");
        }
    }
    let _installed = DropIn::install(&rules);

    let (code, out) = s.run(&["backup"]);
    assert_eq!(code, 0, "{out}");
    fs::set_permissions(&s.p12, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&s.p12, b"replaced").unwrap();
    fs::set_permissions(&s.p12, fs::Permissions::from_mode(0o400)).unwrap();
    // What an interrupted earlier restore left beside it goes (through the pinned `find`).
    let stale = s
        .p12
        .parent()
        .unwrap()
        .join(".nodeadmin-node.p12.coldkeep-tmp-0badcafe");
    fs::create_dir_all(stale.join("sub")).unwrap();
    let (code, out) = s.restore("a", "p12", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!stale.exists());
    assert_eq!(fs::read(&s.p12).unwrap(), s.p12_bytes);
    assert_eq!((owner_of(&s.p12), mode(&s.p12)), ("root:root".to_string(), 0o400));

    // The same programs on any other path, or with an extra argument, are refused.
    let secret = s.fleet.put("a", "etc/other-secret", b"not yours", 0o400);
    let acra = s.acra.display().to_string();
    for args in [
        format!("/usr/bin/dd if={secret} iflag=nofollow status=none"),
        format!("/usr/bin/stat -c %f/%u/%g/%U/%G/%s -- {secret}"),
        format!("/usr/bin/tar --hard-dereference -C {acra} -cf - . {secret}"),
        "/usr/bin/tar --hard-dereference -C / -cf - .".to_string(),
        format!(
            "/usr/bin/dd if={} iflag=nofollow status=none of=/tmp/x",
            s.p12.display()
        ),
        format!("/usr/bin/rm -f -- {secret}"),
        format!(
            "/usr/bin/find {} -mindepth 1 -maxdepth 1 -name '*' -exec /usr/bin/rm -rf -- '{{}}' +",
            s.p12.parent().unwrap().display()
        ),
    ] {
        let out = sudo_as(LOGIN_USER, &args);
        assert!(!out.status.success(), "allowed: {args}");
        assert!(!text(&out.stdout).contains("not yours"), "{args}");
    }
    // ...while the pinned read itself works (the rules are really in force).
    let ok = sudo_as(
        LOGIN_USER,
        &format!("/usr/bin/dd if={} iflag=nofollow status=none", s.p12.display()),
    );
    assert!(ok.status.success(), "{}", text(&ok.stderr));
}

#[test]
fn a_restore_that_creates_the_file_gives_it_the_owner_recorded_in_the_backup() {
    let _lock = sudo_lock();
    let s = setup(false);
    // nodectl's generated P12s belong to the node admin: here another unprivileged user.
    chown(&s.p12, SERVICE_USER);
    let _rules = DropIn::install(&allow_all());
    s.config("    become: sudo\n", "");
    let (code, out) = s.run(&["backup"]);
    assert_eq!(code, 0, "{out}");
    fs::remove_file(&s.p12).unwrap();
    let identity = s.fleet.age_identity.to_str().unwrap().to_string();
    let plan = s.fleet.run_with_env(
        &[
            "restore",
            "--node",
            "a",
            "--keystore",
            "p12",
            "--identity",
            &identity,
            "--dry-run",
            "--json",
        ],
        &[("P12_PASSWORD", "password")],
    );
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(
        plan["owner"],
        format!("{SERVICE_USER}:{SERVICE_USER} (recorded in the backup)"),
        "{plan}"
    );
    let (code, out) = s.restore("a", "p12", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(fs::read(&s.p12).unwrap(), s.p12_bytes);
    assert_eq!(
        (owner_of(&s.p12), mode(&s.p12)),
        (format!("{SERVICE_USER}:{SERVICE_USER}"), 0o400)
    );
}

#[test]
fn a_file_keystore_round_trips_through_sudo_like_a_p12() {
    let _lock = sudo_lock();
    let s = setup(false);
    let _rules = DropIn::install(&allow_all());
    let original = support::fleet::cn_config("/home/nodeadmin/tessellation/", "nodeadmin-node.p12", None);
    let cn = PathBuf::from(s.fleet.put(
        "a",
        "var/tessellation/nodectl/cn-config.yaml",
        original.as_bytes(),
        0o600,
    ));
    let node = s.fleet.node("a");
    s.fleet.write_config(&format!(
        "  - name: a\n    host: 127.0.0.1\n    port: {}\n    become: sudo\n    keystores:\n\
         \x20     - name: cn-config\n        kind: file\n        path: {}\n        max_size: 65536\n",
        node.port,
        cn.display()
    ));
    let (code, out) = s.run(&["config", "check"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("(sudo -u root)"),
        "config check shows how the node is reached: {out}"
    );
    let (code, out) = s.run(&["backup"]);
    assert_eq!(code, 0, "{out}");
    let identity = s.fleet.age_identity.to_str().unwrap().to_string();
    let (code, out) = s.run(&["verify", "--identity", &identity]);
    assert_eq!(code, 0, "{out}");

    // Identical: left alone.
    let (code, out) = s.restore("a", "cn-config", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("already in place"), "{out}");
    // Different: saved as pre-restore, replaced, owner and mode kept.
    fs::write(&cn, b"nodectl:\n  changed: True\n").unwrap();
    let (code, out) = s.restore("a", "cn-config", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(fs::read_to_string(&cn).unwrap(), original);
    assert_eq!((owner_of(&cn), mode(&cn)), ("root:root".to_string(), 0o600));
    let (_, listed) = s.fleet.run_json(&["list", "--json"]);
    assert!(listed.to_string().contains("pre-restore"), "{listed}");

    // Over the size cap: refused, nothing stored.
    fs::write(&cn, vec![b'x'; 70_000]).unwrap();
    let (code, out) = s.run(&["backup"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("over the 65536-byte cap"), "{out}");
}

#[test]
fn discover_on_a_nodectl_node_prints_a_config_that_checks_and_backs_up() {
    let _lock = sudo_lock();
    let s = setup(false);
    let _rules = DropIn::install(&allow_all());
    let root = s.fleet.node("a").root.clone();
    let key_dir = format!("{}/", s.p12.parent().unwrap().display());
    let cn_text = support::fleet::cn_config(&key_dir, "nodeadmin-node.p12", None);
    let cn = s.fleet.put(
        "a",
        "var/tessellation/nodectl/cn-config.yaml",
        cn_text.as_bytes(),
        0o600,
    );
    s.config("    become: sudo\n", "");
    let acra = s.acra.display().to_string();
    let missing = root.join("opt/acra/.acrakeys").display().to_string();
    let out = s.fleet.run(&[
        "discover",
        "--node",
        "a",
        "--nodectl-config",
        &cn,
        "--acra-dir",
        &acra,
        "--acra-dir",
        &missing,
    ]);
    let printed = text(&out.stdout);
    assert!(out.status.success(), "{printed}{}", text(&out.stderr));
    // Paths are double-quoted YAML strings: they read back exactly, whatever they contain.
    assert!(
        printed.contains(&format!("path: \"{}\"", s.p12.display())),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("nodectl_config: \"{cn}\"")),
        "{printed}"
    );
    assert!(
        printed.contains("kind: file") && printed.contains(&format!("path: \"{acra}\"")),
        "{printed}"
    );
    assert!(
        !printed.contains(&missing),
        "only directories that exist: {printed}"
    );
    // Nothing was written on the node.
    assert_eq!(fs::read(&s.p12).unwrap(), s.p12_bytes);

    // The printed entry is the node's whole config.
    s.fleet.write_config(&printed);
    let (code, out) = s.run(&["config", "check"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = s.run(&["backup"]);
    assert_eq!(code, 0, "{out}");
    let (_, listed) = s.fleet.run_json(&["list", "--json"]);
    let listed = listed.to_string();
    for ks in ["\"p12\"", "\"cn-config\"", "\"acra\""] {
        assert!(listed.contains(ks), "{ks} in {listed}");
    }

    // A node not in the config yet, by host, port and user (the ssh: settings, not another
    // node's: sudo asked for on the command line).
    let port = s.fleet.node("a").port.to_string();
    let out = s.fleet.run(&[
        "discover",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--user",
        LOGIN_USER,
        "--become",
        "sudo",
        "--nodectl-config",
        &cn,
        "--acra-dir",
        &acra,
    ]);
    let by_host = text(&out.stdout);
    assert!(out.status.success(), "{by_host}{}", text(&out.stderr));
    assert!(
        by_host.contains(&format!("path: \"{}\"", s.p12.display())),
        "{by_host}"
    );

    // Without become the same node says what it could not read, and why.
    s.config("", "");
    let out = s.fleet.run(&[
        "discover",
        "--node",
        "a",
        "--nodectl-config",
        &cn,
        "--acra-dir",
        &acra,
    ]);
    let printed = text(&out.stdout);
    assert!(
        printed.contains("# could not use:") && printed.contains("become: sudo"),
        "{printed}"
    );
}

#[test]
fn verify_checks_the_p12_against_the_passphrase_in_cn_config_without_printing_it() {
    let _lock = sudo_lock();
    let s = setup(false);
    let _rules = DropIn::install(&allow_all());
    let key_dir = format!("{}/", s.p12.parent().unwrap().display());
    let base = support::fleet::cn_config(&key_dir, "nodeadmin-node.p12", None);
    let secret = "password";
    let cases = [
        (
            base.replace("passphrase: None", &format!("passphrase: {secret}")),
            "opens",
            true,
        ),
        (
            base.replace("passphrase: None", "passphrase: not-the-passphrase"),
            "does not open",
            false,
        ),
        (
            base.replace("passphrase: None", "passphrase: gAAAAABscrambledtoken")
                .replace("encryption: False", "encryption: True"),
            "not checked: the passphrase is encrypted",
            true,
        ),
    ];
    let identity = s.fleet.age_identity.to_str().unwrap().to_string();
    for (text_yaml, expected, ok) in cases {
        let cn = s.fleet.put(
            "a",
            "var/tessellation/nodectl/cn-config.yaml",
            text_yaml.as_bytes(),
            0o600,
        );
        let node = s.fleet.node("a");
        s.fleet.write_config(&format!(
            "  - name: a\n    host: 127.0.0.1\n    port: {}\n    become: sudo\n    keystores:\n\
             \x20     - name: p12\n        kind: p12\n        path: {}\n        nodectl_config: {cn}\n\
             \x20     - name: cn-config\n        kind: file\n        path: {cn}\n",
            node.port,
            s.p12.display(),
        ));
        // A fresh store per case: backups within one second are not ordered by time.
        let _ = fs::remove_dir_all(s.fleet.store());
        let _ = fs::remove_dir_all(s.fleet.replica());
        // A replica root exists as a mounted one would: coldkeep never creates it.
        fs::create_dir(s.fleet.replica()).unwrap();
        let (code, out) = s.run(&["backup"]);
        assert_eq!(code, 0, "{out}");
        let (code, out) = s.run(&["verify", "--identity", &identity]);
        assert_eq!(code == 0, ok, "{out}");
        // Two profiles (dag-l0, dag-l1) use the global P12.
        let answers = out
            .lines()
            .filter(|l| l.starts_with("passphrase of a/p12") && l.contains(&format!(": {expected}")))
            .count();
        assert_eq!(answers, 2, "{out}");
        // The summary line says so when a passphrase check failed (it used to say only
        // "2 of 2 artifacts verified." and exit 1).
        let summary = out.lines().find(|l| l.contains("artifacts verified")).unwrap();
        assert_eq!(summary.contains("2 passphrase check(s) failed"), !ok, "{summary}");
        assert!(
            !out.contains("not-the-passphrase") && !out.contains("scrambledtoken"),
            "{out}"
        );
        // `check` answers the same.
        let (code, out) = s.run(&["check", "--identity", &identity]);
        assert_eq!(code == 0, ok, "{out}");
        assert!(out.contains(&format!("for profile dag-l0: {expected}")), "{out}");
        assert!(!out.contains("not-the-passphrase"), "{out}");
    }
}

#[test]
fn without_become_a_restore_that_cannot_keep_the_owner_stops_before_replacing() {
    let s = setup(false);
    // nodectl's key directory belongs to the SSH user; the key (readable) to someone else.
    let dir = s.p12.parent().unwrap();
    fs::remove_file(&s.p12).unwrap();
    chown(dir, LOGIN_USER);
    s.config("", "");
    fs::write(&s.p12, &s.p12_bytes).unwrap();
    chown(&s.p12, SERVICE_USER);
    fs::set_permissions(&s.p12, fs::Permissions::from_mode(0o444)).unwrap();
    let out = s
        .fleet
        .run_with_env(&["backup", "--json"], &[("P12_PASSWORD", "password")]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcomes"][0]["keystore"], "p12", "{report}");
    assert_eq!(report["outcomes"][0]["ok"], true, "{report}");
    fs::set_permissions(&s.p12, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&s.p12, b"current").unwrap();
    fs::set_permissions(&s.p12, fs::Permissions::from_mode(0o444)).unwrap();
    let (code, out) = s.restore("a", "p12", &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("set `become: sudo`"), "{out}");
    assert_eq!(fs::read(&s.p12).unwrap(), b"current");
    assert_eq!(owner_of(&s.p12), format!("{SERVICE_USER}:{SERVICE_USER}"));
    let names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["nodeadmin-node.p12".to_string()], "temp removed");
}

#[test]
fn an_interrupted_acra_swap_is_found_through_sudo_in_a_root_only_parent() {
    let _lock = sudo_lock();
    let s = setup(false);
    let _rules = DropIn::install(&allow_all());
    s.config("    become: sudo\n", "");
    let (code, out) = s.run(&["backup"]);
    assert_eq!(code, 0, "{out}");
    let parent = s.acra.parent().unwrap();
    fs::set_permissions(parent, fs::Permissions::from_mode(0o700)).unwrap();
    let old = parent.join("..acrakeys.coldkeep-old-0badcafe");
    fs::create_dir(&old).unwrap();
    fs::remove_file(s.acra.join("client_hmac")).unwrap();
    let (code, out) = s.restore("a", "acra", &["--replace"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("interrupted") && out.contains("..acrakeys.coldkeep-old-0badcafe"),
        "{out}"
    );
    assert!(
        old.exists() && !s.acra.join("client_hmac").exists(),
        "nothing changed"
    );
}

#[test]
fn an_acra_keystore_restored_where_none_exists_gets_its_recorded_service_owner() {
    let _lock = sudo_lock();
    let s = setup(false);
    let _rules = DropIn::install(&allow_all());
    s.config("    become: sudo\n", "");
    let (code, out) = s.run(&["backup"]);
    assert_eq!(code, 0, "{out}");
    let (before, _) = read_tree(&s.acra);
    fs::remove_dir_all(&s.acra).unwrap();
    let (code, out) = s.restore("a", "acra", &["--dry-run", "--json"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{SERVICE_USER}:{SERVICE_USER} (recorded in the backup)")),
        "the plan says which owner: {out}"
    );
    let (code, out) = s.restore("a", "acra", &[]);
    assert_eq!(code, 0, "{out}");
    let (after, _) = read_tree(&s.acra);
    assert_eq!(after, before);
    let service = format!("{SERVICE_USER}:{SERVICE_USER}");
    assert_eq!(owner_of(&s.acra), service);
    for (rel, _, _) in &after {
        assert_eq!(owner_of(&s.acra.join(rel)), service, "{rel}");
    }
}

#[test]
fn a_planted_temp_at_the_fixed_sudo_name_is_replaced_never_followed() {
    let _lock = sudo_lock();
    let s = setup(false);
    let _rules = DropIn::install(&allow_all());
    s.config("    become: sudo\n", "");
    let config = coldkeep::config::Config::load(&s.fleet.config).unwrap();
    let node = config.node("a").unwrap();
    let session = coldkeep::remote::Session::connect(node).unwrap();
    let temp = PathBuf::from(coldkeep::remote::temp_of(&s.p12.display().to_string()));
    // Someone who may write in the directory plants a link at the predictable temp name,
    // pointing at a file they want root to overwrite (or chmod).
    let victim = s.fleet.put("a", "etc/victim", b"do not touch", 0o644);
    std::os::unix::fs::symlink(&victim, &temp).unwrap();
    session
        .push_owned(&s.p12.display().to_string(), b"new key bytes", 0o400, None)
        .unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"do not touch");
    assert_eq!(
        mode(Path::new(&victim)),
        0o644,
        "the link was not followed by chmod"
    );
    assert_eq!(fs::read(&s.p12).unwrap(), b"new key bytes");
    assert_eq!((owner_of(&s.p12), mode(&s.p12)), ("root:root".to_string(), 0o400));
    assert!(fs::symlink_metadata(&temp).is_err(), "no temp left");

    // A planted directory there cannot be cleaned by `rm -f`: the write stops, nothing renamed.
    fs::create_dir(&temp).unwrap();
    let err = session
        .push_owned(&s.p12.display().to_string(), b"other bytes", 0o400, None)
        .unwrap_err();
    assert!(err.to_string().contains("rm"), "{err}");
    assert_eq!(fs::read(&s.p12).unwrap(), b"new key bytes");
    session.close();
}

#[test]
fn with_become_reads_go_through_sudo_whatever_file_transfer_says_even_on_a_node_without_sftp() {
    let _lock = sudo_lock();
    // A node whose sshd serves no SFTP, and a root-owned 0400 P12 on it.
    let mut fleet = Fleet::new(&[]);
    let no_sftp = coldkeep::testkit::sandbox::NodeOptions {
        sftp: false,
        ..Default::default()
    };
    let bare = fleet.sandbox.start_node_with("bare", true, &no_sftp).unwrap();
    fleet.nodes.push(bare);
    fleet.sandbox.login_as(LOGIN_USER).unwrap();
    let p12_bytes = fs::read(format!("{FIXTURE}/key.p12")).unwrap();
    let p12 = PathBuf::from(fleet.put("bare", P12_REL, &p12_bytes, 0o400));
    let root = fleet.node("bare").root.clone();
    for d in p12
        .parent()
        .unwrap()
        .ancestors()
        .take_while(|d| d.starts_with(&root) && **d != *root)
    {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let _rules = DropIn::install(&allow_all());
    let port = fleet.node("bare").port;
    for transfer in ["", "    file_transfer: sftp\n", "    file_transfer: scp\n"] {
        fleet.write_config(&format!(
            "  - name: bare\n    host: 127.0.0.1\n    port: {port}\n    become: sudo\n{transfer}    keystores:\n\
             \x20     - name: p12\n        kind: p12\n        path: {}\n        password: {{env: P12_PASSWORD}}\n",
            p12.display()
        ));
        let out = fleet.run_with_env(&["backup", "--force"], &[("P12_PASSWORD", "password")]);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{transfer:?}: {all}");
        // Neither SFTP nor its SCP fallback was tried: sudo reads come first.
        assert!(!all.contains("no SFTP"), "{transfer:?}: {all}");
    }
    let identity = fleet.age_identity.to_str().unwrap().to_string();
    let out = fleet.run_with_env(
        &["verify", "--node", "bare", "--identity", &identity],
        &[("P12_PASSWORD", "password")],
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
}

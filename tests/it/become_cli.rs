//! `become: sudo` end to end through the node helper: real sshd nodes logged into as an
//! unprivileged user (as on a nodectl node with root logins off), real sudo with the rule and the
//! policy installed the way an operator installs them (`coldkeep config sudoers` and `coldkeep
//! config node-policy`, `visudo -cf`), keys owned by root (`root:root 0400`) and by an Acra
//! service user (0700 directory). Backup, `verify --live`, `check`, `discover`, P12 and `file`
//! restores (replace and create), Acra restores (into an empty keystore, with `--replace`, and
//! the rollback when a swap fails), all through the helper.
//!
//! Every test has its own policy path, pinned in its own sudoers rule, so they run in parallel.
//! They need root (users, drop-ins, policies), as `.ci/run` runs them.
use crate::support;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use support::acra::{read_tree, v1_files, v2_files, v2_master_key, write_tree};
use support::fleet::{FIXTURE, Fleet, text};
use support::sudo::{
    Installed, LOGIN_USER, NodeHelper, SERVICE_USER, chown, helper, install, mode, owner_of,
};

pub const P12_REL: &str = "home/nodeadmin/tessellation/nodeadmin-node.p12";
pub const ACRA_REL: &str = "srv/acra/.acrakeys";

pub struct Setup {
    pub fleet: Fleet,
    pub p12: PathBuf,
    pub acra: PathBuf,
    pub p12_bytes: Vec<u8>,
    pub h: NodeHelper,
}

/// Needs root: creates users, sudoers drop-ins and policies.
pub fn need_root() {
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        text(&uid.stdout).trim(),
        "0",
        "these tests need root: they create local users, sudoers drop-ins and node policies (as .ci/run does)"
    );
}

/// Nodes `a` (and `b` when `two`), each with a root-owned 0400 P12 in a root-owned directory and
/// an Acra v1 tree owned by the service user (0700). The nodes log in as [`LOGIN_USER`].
pub fn setup(two: bool) -> Setup {
    need_root();
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
        h: helper(),
    }
}

impl Setup {
    /// Config for the nodes; `a_extra`/`b_extra` are added to each node's entry.
    pub fn config(&self, a_extra: &str, b_extra: &str) {
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

    /// Node `a` through the helper, `b` (if any) without become.
    pub fn config_helper(&self) {
        self.config(&self.h.yaml(), "");
    }

    pub fn run(&self, args: &[&str]) -> (i32, String) {
        let out = self.fleet.run_with_env(args, &[("P12_PASSWORD", "password")]);
        (
            out.status.code().unwrap(),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    }

    pub fn backup_json(&self) -> serde_json::Value {
        let out = self
            .fleet
            .run_with_env(&["backup", "--json"], &[("P12_PASSWORD", "password")]);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)))
    }

    pub fn restore(&self, node: &str, keystore: &str, extra: &[&str]) -> (i32, String) {
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

    /// Backs node `a` up under the read rule, then installs the restore rule and the restore
    /// policy printed after that backup (so it names the owners the backup recorded).
    pub fn backup_then_allow_restore(&self) -> Installed {
        let read = install(&self.fleet, &self.h, "a", false);
        let (code, out) = self.run(&["backup"]);
        assert_eq!(code, 0, "{out}");
        drop(read);
        install(&self.fleet, &self.h, "a", true)
    }

    pub fn replace_p12_with(&self, bytes: &[u8]) {
        fs::set_permissions(&self.p12, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&self.p12, bytes).unwrap();
        fs::set_permissions(&self.p12, fs::Permissions::from_mode(0o400)).unwrap();
    }
}

pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn backup_verify_live_and_check_read_through_the_helper_and_a_node_without_become_fails_alone() {
    let s = setup(true);
    // The premise: the SSH user cannot read either.
    for path in [&s.p12, &s.acra.join("client_hmac")] {
        let read = support::sudo::as_user(LOGIN_USER, &format!("cat {}", path.display()));
        assert!(
            !read.status.success(),
            "{} is readable by the SSH user",
            path.display()
        );
    }
    s.config_helper();
    let _rules = install(&s.fleet, &s.h, "a", false);
    let report = s.backup_json();
    let outcomes = report["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 4, "{report}");
    for o in outcomes {
        if o["node"] == "a" {
            assert_eq!(o["ok"], true, "{o}");
        } else {
            let error = o["error"].as_str().unwrap();
            assert!(
                error.contains("permission denied") && error.contains("become: sudo"),
                "{error}"
            );
        }
    }
    assert!(
        outcomes[0]["identity"].as_str().unwrap().contains("1b4b9f"),
        "the P12 read through the helper opens: {report}"
    );
    let identity = s.fleet.age_identity.to_str().unwrap().to_string();
    let (code, out) = s.run(&["verify", "--node", "a", "--identity", &identity]);
    assert_eq!(code, 0, "{out}");
    // The manifest records owners of files and directories, as the helper saw them on its fds.
    let sidecar_of = |keystore: &str| -> serde_json::Value {
        let dir = s.fleet.store().join("a").join(keystore);
        let json = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
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
    assert_eq!(p12_side["files"][0]["mode"], 0o400);
    let acra_side = sidecar_of("acra");
    let dirs = acra_side["dirs"].as_array().unwrap();
    assert_eq!(
        (dirs[0]["path"].as_str(), dirs[0]["mode"].as_u64()),
        (Some("keys/"), Some(0o700)),
        "{acra_side}"
    );
    assert!(
        dirs.iter().any(|d| d["path"] == "keys/.poison_key/"),
        "{acra_side}"
    );
    for d in dirs {
        assert_eq!(d["owner"]["user"], SERVICE_USER, "{d}");
    }
    // The live check and `check` read through the helper too.
    let (code, out) = s.run(&["verify", "--live", "--node", "a"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("matches"), "{out}");
    let (code, out) = s.run(&["check", "--node", "a", "--identity", &identity]);
    assert_eq!(code, 0, "{out}");
    s.fleet.assert_not_on_local_disk(&[&s.p12_bytes]);
    // Unchanged material is reused, through one helper per node per run.
    let again = s.backup_json();
    assert!(again.to_string().contains("unchanged"), "{again}");
}

#[test]
fn a_p12_is_replaced_and_created_through_the_helper_keeping_its_owner() {
    let s = setup(false);
    s.config_helper();
    let read = install(&s.fleet, &s.h, "a", false);
    let (code, out) = s.run(&["backup"]);
    assert_eq!(code, 0, "{out}");
    // A restore needs the restore rule: under the read rule alone it is refused at once.
    s.replace_p12_with(b"something else");
    let (code, out) = s.restore("a", "p12", &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("config sudoers --node a --restore"), "{out}");
    assert_eq!(fs::read(&s.p12).unwrap(), b"something else");
    drop(read);
    let _rules = install(&s.fleet, &s.h, "a", true);

    // Replace: the root:root 0400 file gets the backup's bytes, owner and mode kept.
    let (code, out) = s.restore("a", "p12", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(fs::read(&s.p12).unwrap(), s.p12_bytes);
    assert_eq!((owner_of(&s.p12), mode(&s.p12)), ("root:root".to_string(), 0o400));
    assert_eq!(
        names_in(s.p12.parent().unwrap()),
        ["nodeadmin-node.p12"],
        "no temp left"
    );
    let (_, listed) = s.fleet.run_json(&["list", "--json"]);
    assert!(
        listed.to_string().contains("pre-restore"),
        "the replaced file was saved first: {listed}"
    );

    // Create: the file is gone; it comes back with the policy's owner and nodectl's mode.
    fs::remove_file(&s.p12).unwrap();
    let identity = s.fleet.age_identity.to_str().unwrap().to_string();
    let (code, out) = s.run(&[
        "restore",
        "--node",
        "a",
        "--keystore",
        "p12",
        "--identity",
        &identity,
        "--dry-run",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("root:root (the node's policy)"),
        "the plan says whose: {out}"
    );
    let (code, out) = s.restore("a", "p12", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(fs::read(&s.p12).unwrap(), s.p12_bytes);
    assert_eq!((owner_of(&s.p12), mode(&s.p12)), ("root:root".to_string(), 0o400));
    // Identical now: left alone.
    let (code, out) = s.restore("a", "p12", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("already in place"), "{out}");
}

#[test]
fn a_generated_p12_of_the_node_admin_is_recreated_with_the_owner_its_backup_recorded() {
    let s = setup(false);
    // nodectl's generated P12s belong to the node admin: here another unprivileged user.
    chown(&s.p12, SERVICE_USER);
    s.config_helper();
    let read = install(&s.fleet, &s.h, "a", false);
    let (code, out) = s.run(&["backup"]);
    assert_eq!(code, 0, "{out}");
    drop(read);
    // The restore policy, printed after the backup, names the owner it recorded.
    let out = s
        .fleet
        .run(&["config", "node-policy", "--node", "a", "--restore"]);
    let policy = text(&out.stdout);
    assert!(
        policy.contains(&format!("owner: \"{SERVICE_USER}:{SERVICE_USER}\"   # recorded")),
        "{policy}"
    );
    let _rules = install(&s.fleet, &s.h, "a", true);
    fs::remove_file(&s.p12).unwrap();
    let (code, out) = s.restore("a", "p12", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(fs::read(&s.p12).unwrap(), s.p12_bytes);
    assert_eq!(
        (owner_of(&s.p12), mode(&s.p12)),
        (format!("{SERVICE_USER}:{SERVICE_USER}"), 0o400)
    );
}

#[test]
fn a_file_keystore_round_trips_through_the_helper_like_a_p12() {
    let s = setup(false);
    let original = support::fleet::cn_config("/home/nodeadmin/tessellation/", "nodeadmin-node.p12", None);
    let cn = PathBuf::from(s.fleet.put(
        "a",
        "var/tessellation/nodectl/cn-config.yaml",
        original.as_bytes(),
        0o600,
    ));
    let node = s.fleet.node("a");
    s.fleet.write_config(&format!(
        "  - name: a\n    host: 127.0.0.1\n    port: {}\n{}    keystores:\n\
         \x20     - name: cn-config\n        kind: file\n        path: {}\n        max_size: 65536\n",
        node.port,
        s.h.yaml(),
        cn.display()
    ));
    let (code, out) = s.run(&["config", "check"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("(sudo -u root)"),
        "config check shows how the node is reached: {out}"
    );
    let _rules = install(&s.fleet, &s.h, "a", true);
    let (code, out) = s.run(&["backup"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = s.restore("a", "cn-config", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("already in place"), "{out}");
    // Different: saved as pre-restore, replaced, owner and mode kept (the policy's mode is 0600).
    fs::write(&cn, b"nodectl:\n  changed: True\n").unwrap();
    let (code, out) = s.restore("a", "cn-config", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(fs::read_to_string(&cn).unwrap(), original);
    assert_eq!((owner_of(&cn), mode(&cn)), ("root:root".to_string(), 0o600));
    // Over the size cap: refused by the helper, nothing stored.
    fs::write(&cn, vec![b'x'; 70_000]).unwrap();
    let (code, out) = s.run(&["backup"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("over the 65536-byte cap"), "{out}");
}

/// An Acra tree restored through the helper: into an empty keystore (v2, the `version` marker
/// only), then over a different one with `--replace` (swapped in with RENAME_EXCHANGE), owners
/// the service user's, modes Acra's, no leftovers.
#[test]
fn acra_v1_and_v2_restore_into_an_empty_keystore_and_with_replace_through_the_helper() {
    let s = setup(false);
    s.config_helper();
    // v1: back up, then the tree loses a file, and --replace brings it back.
    let _rules = s.backup_then_allow_restore();
    let (before, _) = read_tree(&s.acra);
    fs::remove_file(s.acra.join("client_hmac")).unwrap();
    let (code, out) = s.restore("a", "acra", &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("needs --replace"), "{out}");
    let (code, out) = s.restore("a", "acra", &["--replace"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(read_tree(&s.acra).0, before);
    let service = format!("{SERVICE_USER}:{SERVICE_USER}");
    assert_eq!((owner_of(&s.acra), mode(&s.acra)), (service.clone(), 0o700));
    for (rel, _, _) in &before {
        assert_eq!(owner_of(&s.acra.join(rel)), service, "{rel}");
    }
    assert_eq!(
        names_in(s.acra.parent().unwrap()),
        [".acrakeys"],
        "no temp or old tree left"
    );
    let (code, out) = s.restore("a", "acra", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("already in place"), "{out}");

    // v2: a new keystore, backed up, emptied down to its version marker, restored without
    // --replace (an empty keystore is filled).
    let (_, signature) = v2_master_key();
    fs::remove_dir_all(&s.acra).unwrap();
    // Acra's lock file is never backed up.
    let files: Vec<_> = v2_files(&["Alice", "Bob"], &signature)
        .into_iter()
        .filter(|f| f.0 != ".lock")
        .collect();
    write_tree(&s.acra, &files);
    chown(&s.acra, SERVICE_USER);
    // A fresh store: two backups within one second are not ordered by time.
    let _ = fs::remove_dir_all(s.fleet.store());
    let _ = fs::remove_dir_all(s.fleet.replica());
    fs::create_dir(s.fleet.replica()).unwrap();
    let (code, out) = s.run(&["backup"]);
    assert_eq!(code, 0, "{out}");
    let (v2, _) = read_tree(&s.acra);
    fs::remove_dir_all(&s.acra).unwrap();
    write_tree(
        &s.acra,
        &[("version".into(), 0o644, b"Acra Keystore v2".to_vec())],
    );
    chown(&s.acra, SERVICE_USER);
    let (code, out) = s.restore("a", "acra", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(read_tree(&s.acra).0, v2);
    assert_eq!(owner_of(&s.acra.join("client/Alice/storage.keyring")), service);
    assert_eq!(mode(&s.acra.join("version")), 0o644);
    // And where none exists at all, it is created with the policy's owner.
    fs::remove_dir_all(&s.acra).unwrap();
    let (code, out) = s.restore("a", "acra", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(read_tree(&s.acra).0, v2);
    assert_eq!(owner_of(&s.acra), service);
}

/// A v2 keystore of an ordinary large deployment (500 clients: 1,500 key rings in 501
/// directories, over 2,000 entries) goes through the helper with the default caps both ways:
/// backed up (its listing is far over one 64 KiB message), and restored with `--replace` (the
/// upload likewise), every file and owner back as it was.
#[test]
fn a_large_acra_keystore_is_backed_up_and_restored_through_the_helper() {
    let s = setup(false);
    s.config_helper();
    let (_, signature) = v2_master_key();
    let clients: Vec<String> = (0..500).map(|i| format!("client{i:04}")).collect();
    let names: Vec<&str> = clients.iter().map(String::as_str).collect();
    let files: Vec<_> = v2_files(&names, &signature)
        .into_iter()
        .filter(|f| f.0 != ".lock")
        .collect();
    assert!(files.len() > 1_500, "{}", files.len());
    fs::remove_dir_all(&s.acra).unwrap();
    write_tree(&s.acra, &files);
    chown(&s.acra, SERVICE_USER);
    let _rules = s.backup_then_allow_restore();
    let report = s.backup_json();
    for o in report["outcomes"].as_array().unwrap() {
        assert_eq!(o["ok"], true, "{o}");
    }
    let (before, dirs_before) = read_tree(&s.acra);
    // Lose a client's rings and damage another's: --replace brings the whole tree back.
    fs::remove_dir_all(s.acra.join("client/client0007")).unwrap();
    fs::write(s.acra.join("client/client0400/storage.keyring"), b"damaged").unwrap();
    let (code, out) = s.restore("a", "acra", &["--replace"]);
    assert_eq!(code, 0, "{out}");
    let (after, dirs_after) = read_tree(&s.acra);
    assert_eq!(after, before);
    assert_eq!(dirs_after, dirs_before);
    let service = format!("{SERVICE_USER}:{SERVICE_USER}");
    assert_eq!(
        owner_of(&s.acra.join("client/client0007/storage.keyring")),
        service
    );
    assert_eq!(
        names_in(s.acra.parent().unwrap()),
        [".acrakeys"],
        "no temp or old tree left"
    );
}

/// Two directories (keys and a separate public one): the public one is made immutable, so the
/// kernel refuses its swap (the second rename) after the keys directory was swapped; the helper
/// swaps the keys back. Nothing of the new trees stays, the old ones are exactly as before.
#[test]
fn the_acra_swap_is_rolled_back_when_the_second_rename_fails() {
    let s = setup(false);
    let public = s.acra.parent().unwrap().join("public");
    write_tree(
        &public,
        &[("client_storage.pub".into(), 0o644, b"public key".to_vec())],
    );
    chown(&public, SERVICE_USER);
    let node = s.fleet.node("a");
    s.fleet.write_config(&format!(
        "  - name: a\n    host: 127.0.0.1\n    port: {}\n{}    keystores:\n\
         \x20     - name: acra\n        kind: acra\n        path: {}\n        public_path: {}\n",
        node.port,
        s.h.yaml(),
        s.acra.display(),
        public.display()
    ));
    let _rules = s.backup_then_allow_restore();
    fs::remove_file(s.acra.join("client_hmac")).unwrap();
    fs::write(public.join("client_storage.pub"), b"changed").unwrap();
    let (keys_before, _) = read_tree(&s.acra);
    let (public_before, _) = read_tree(&public);
    let chattr = |flag: &str| {
        let out = std::process::Command::new("chattr")
            .arg(flag)
            .arg(&public)
            .output()
            .unwrap();
        assert!(out.status.success(), "chattr {flag}: {}", text(&out.stderr));
    };
    chattr("+i");
    let (code, out) = s.restore("a", "acra", &["--replace"]);
    chattr("-i");
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("the previous keystore is back in place"), "{out}");
    assert_eq!(read_tree(&s.acra).0, keys_before, "the keys swap was undone");
    assert_eq!(read_tree(&public).0, public_before);
    assert_eq!(
        names_in(s.acra.parent().unwrap()),
        [".acrakeys", "public"],
        "no temp left"
    );
    // Once the directory is writable again the same restore goes through.
    let (code, out) = s.restore("a", "acra", &["--replace"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        fs::read(public.join("client_storage.pub")).unwrap(),
        b"public key"
    );
}

#[test]
fn an_interrupted_acra_swap_is_found_through_the_helper_in_a_root_only_parent() {
    let s = setup(false);
    s.config_helper();
    let _rules = s.backup_then_allow_restore();
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
fn discover_reads_through_a_bootstrap_policy_and_prints_a_config_that_backs_up() {
    let s = setup(false);
    let key_dir = format!("{}/", s.p12.parent().unwrap().display());
    let cn_text = support::fleet::cn_config(&key_dir, "nodeadmin-node.p12", None);
    let cn = s.fleet.put(
        "a",
        "var/tessellation/nodectl/cn-config.yaml",
        cn_text.as_bytes(),
        0o600,
    );
    let acra = s.acra.display().to_string();
    // The node is not set up yet: the operator installs the read rule and a bootstrap policy
    // that allows reading nodectl's config and the Acra directory.
    s.config_helper();
    let out = s.fleet.run(&[
        "config",
        "node-policy",
        "--discover",
        "--nodectl-config",
        &cn,
        "--acra-dir",
        &acra,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sudoers = text(&s.fleet.run(&["config", "sudoers", "--node", "a"]).stdout);
    let boot = s.h.install(&sudoers, &text(&out.stdout));
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
    // The P12 named in cn-config is not in the bootstrap policy: said, not read.
    assert!(
        printed.contains("# could not use:") && printed.contains("not in the node's policy"),
        "{printed}"
    );
    assert_eq!(fs::read(&s.p12).unwrap(), s.p12_bytes);
    drop(boot);

    // The printed entry is the node's whole config; its own policy then allows the backup.
    s.fleet.write_config(&printed);
    let (code, out) = s.run(&["config", "check"]);
    assert_eq!(code, 0, "{out}");
    let _rules = install(&s.fleet, &s.h, "a", false);
    let (code, out) = s.run(&["backup"]);
    assert_eq!(code, 0, "{out}");
    let (_, listed) = s.fleet.run_json(&["list", "--json"]);
    for ks in ["\"p12\"", "\"cn-config\"", "\"acra\""] {
        assert!(listed.to_string().contains(ks), "{ks} in {listed}");
    }
    // Discover by --node now sees everything the node's policy lists.
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
        out.status.success() && !printed.contains("not in the node's policy"),
        "{printed}"
    );
}

#[test]
fn verify_checks_the_p12_against_the_passphrase_in_cn_config_without_printing_it() {
    let s = setup(false);
    let key_dir = format!("{}/", s.p12.parent().unwrap().display());
    let base = support::fleet::cn_config(&key_dir, "nodeadmin-node.p12", None);
    let cases = [
        (
            base.replace("passphrase: None", "passphrase: password"),
            "opens",
            true,
        ),
        (
            base.replace("passphrase: None", "passphrase: not-the-passphrase"),
            "does not open",
            false,
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
            "  - name: a\n    host: 127.0.0.1\n    port: {}\n{}    keystores:\n\
             \x20     - name: p12\n        kind: p12\n        path: {}\n        nodectl_config: {cn}\n\
             \x20     - name: cn-config\n        kind: file\n        path: {cn}\n",
            node.port,
            s.h.yaml(),
            s.p12.display(),
        ));
        let _rules = install(&s.fleet, &s.h, "a", false);
        let _ = fs::remove_dir_all(s.fleet.store());
        let _ = fs::remove_dir_all(s.fleet.replica());
        fs::create_dir(s.fleet.replica()).unwrap();
        let (code, out) = s.run(&["backup"]);
        assert_eq!(code, 0, "{out}");
        let (code, out) = s.run(&["verify", "--identity", &identity]);
        assert_eq!(code == 0, ok, "{out}");
        let answers = out
            .lines()
            .filter(|l| l.starts_with("passphrase of a/p12") && l.contains(&format!(": {expected}")))
            .count();
        assert_eq!(answers, 2, "{out}");
        // The summary line says so when a passphrase check failed (it used to say only
        // "2 of 2 artifacts verified." and exit 1).
        let summary = out.lines().find(|l| l.contains("artifacts verified")).unwrap();
        assert_eq!(summary.contains("2 passphrase check(s) failed"), !ok, "{summary}");
        assert!(!out.contains("not-the-passphrase"), "{out}");
        let (code, out) = s.run(&["check", "--identity", &identity]);
        assert_eq!(code == 0, ok, "{out}");
        assert!(out.contains(&format!("for profile dag-l0: {expected}")), "{out}");
    }
}

#[test]
fn with_become_reads_go_through_the_helper_even_on_a_node_without_sftp() {
    need_root();
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
    let h = helper();
    let port = fleet.node("bare").port;
    for transfer in ["", "    file_transfer: scp\n"] {
        fleet.write_config(&format!(
            "  - name: bare\n    host: 127.0.0.1\n    port: {port}\n{}{transfer}    keystores:\n\
             \x20     - name: p12\n        kind: p12\n        path: {}\n        password: {{env: P12_PASSWORD}}\n",
            h.yaml(),
            p12.display()
        ));
        let _rules = install(&fleet, &h, "bare", false);
        let out = fleet.run_with_env(&["backup", "--force"], &[("P12_PASSWORD", "password")]);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{transfer:?}: {all}");
        assert!(!all.contains("no SFTP"), "{transfer:?}: {all}");
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
    let report = s.backup_json();
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
    assert_eq!(names_in(dir), ["nodeadmin-node.p12"], "temp removed");
}

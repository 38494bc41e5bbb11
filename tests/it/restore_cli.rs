//! End-to-end tests of `coldkeep restore` and `coldkeep check` through the real binary, against
//! real sshd nodes on loopback.

use crate::support;

use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use support::cutter::Cutter;
use support::fleet::{Fleet, age_files, cn_config, legacy_p12, text};

const DIR: &str = "home/nodeadmin/tessellation";
const PW: &str = "pw-0123456789";

/// A one-node fleet with a backed-up P12 at `<root>/home/nodeadmin/tessellation/<name>`.
struct Setup {
    fleet: Fleet,
    original: Vec<u8>,
    path: PathBuf,
}

fn setup(nodes: &[&str], name: &str, nodectl: Option<&str>) -> Setup {
    let fleet = Fleet::new(nodes);
    let original = legacy_p12(PW);
    let remote = fleet.put(nodes[0], &format!("{DIR}/{name}"), &original, 0o400);
    let pw = fleet.secret_file("pw", PW);
    let mut yaml = String::new();
    for node in nodes {
        let remote = remote.replace(
            fleet.node(nodes[0]).root.to_str().unwrap(),
            fleet.node(node).root.to_str().unwrap(),
        );
        let mut extra = format!("        password: {{file: {}}}\n", pw.display());
        if let Some(cn) = nodectl {
            let cn_path = fleet
                .node(node)
                .root
                .join("var/tessellation/nodectl/cn-config.yaml");
            extra.push_str(&format!("        nodectl_config: {}\n", cn_path.display()));
            let dir = fleet.node(node).root.join(DIR);
            fleet.put(
                node,
                "var/tessellation/nodectl/cn-config.yaml",
                cn.replace("@DIR@", dir.to_str().unwrap()).as_bytes(),
                0o644,
            );
        }
        yaml.push_str(&fleet.node_yaml(node, fleet.node(node).port, &remote, &extra));
    }
    fleet.write_config(&yaml);
    let out = fleet.run(&["backup", "--node", nodes[0]]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let path = fleet.node(nodes[0]).root.join(DIR).join(name);
    Setup {
        fleet,
        original,
        path,
    }
}

impl Setup {
    fn restore(&self, extra: &[&str]) -> (i32, String) {
        let identity = self.fleet.age_identity.to_str().unwrap().to_string();
        let mut args = vec!["restore", "--identity", &identity];
        args.extend_from_slice(extra);
        let out = self.fleet.run(&args);
        (
            out.status.code().unwrap(),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    }

    fn mode(&self) -> u32 {
        fs::metadata(&self.path).unwrap().permissions().mode() & 0o7777
    }

    fn artifact_count(&self) -> usize {
        age_files(&self.fleet.store()).len()
    }

    /// Replaces the node's file with other bytes and mode.
    fn replace_on_node(&self, bytes: &[u8], mode: u32) {
        fs::set_permissions(&self.path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&self.path, bytes).unwrap();
        fs::set_permissions(&self.path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn files_in_dir(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

#[test]
fn restore_creates_the_file_with_the_default_mode_and_exact_bytes() {
    let s = setup(&["v1"], "nodeadmin-node.p12", None);
    fs::remove_file(&s.path).unwrap();
    let (code, out) = s.restore(&["--node", "v1"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("created"), "{out}");
    assert_eq!(fs::read(&s.path).unwrap(), s.original);
    assert_eq!(s.mode(), 0o400);
    assert_eq!(s.files_in_dir(), vec!["nodeadmin-node.p12"], "no temp file left");
}

#[test]
fn identical_file_is_left_alone() {
    let s = setup(&["v1"], "nodeadmin-node.p12", None);
    let before = fs::metadata(&s.path).unwrap().modified().unwrap();
    let (code, out) = s.restore(&["--node", "v1", "--json"]);
    assert_eq!(code, 0, "{out}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["action"], "already-in-place");
    assert_eq!(fs::metadata(&s.path).unwrap().modified().unwrap(), before);
    assert_eq!(
        s.artifact_count(),
        1,
        "no pre-restore artifact for an identical file"
    );
}

#[test]
fn a_different_file_is_saved_then_replaced_only_with_yes() {
    let s = setup(&["v1"], "nodeadmin-node.p12", None);
    let temporary = legacy_p12("another-password");
    s.replace_on_node(&temporary, 0o440);

    // No terminal and no --yes: refused, nothing changed, nothing saved.
    let (code, out) = s.restore(&["--node", "v1"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("without --yes"), "{out}");
    assert_eq!(fs::read(&s.path).unwrap(), temporary);
    assert_eq!(s.artifact_count(), 1);

    // The dry run tells the plan and changes nothing.
    let (code, out) = s.restore(&["--node", "v1", "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("would save"), "{out}");
    assert_eq!(fs::read(&s.path).unwrap(), temporary);

    let (code, out) = s.restore(&["--node", "v1", "--yes", "--json"]);
    assert_eq!(code, 0, "{out}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["action"], "replaced");
    assert_eq!(fs::read(&s.path).unwrap(), s.original);
    // The existing file's 0440 narrowed to the 0400 the backup recorded: never looser.
    assert_eq!(
        s.mode(),
        0o400,
        "the existing file's mode, never looser than recorded"
    );
    assert_eq!(json["mode"], "0400");
    assert_eq!(s.files_in_dir(), vec!["nodeadmin-node.p12"]);

    // The replaced file is in the store as a pre-restore artifact, and decrypts to its bytes.
    let saved = json["previous_saved_as"].as_str().unwrap().to_string();
    let (_, list) = s.fleet.run_json(&["list", "--json"]);
    let pre = list["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == saved.as_str())
        .unwrap();
    assert_eq!(pre["purpose"], "pre-restore");
    let age = s.fleet.store().join("v1/p12").join(format!("{saved}.age"));
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "age -d -i '{}' '{}' | tar xO nodeadmin-node.p12",
            s.fleet.age_identity.display(),
            age.display()
        ))
        .output()
        .unwrap();
    assert_eq!(out.stdout, temporary);
}

#[test]
fn name_mismatch_with_the_config_is_refused_with_a_table() {
    let s = setup(&["v1"], "nodeadmin-node.p12", None);
    // The operator reinstalled with another file name; the config now says so.
    let config = fs::read_to_string(&s.fleet.config)
        .unwrap()
        .replace("nodeadmin-node.p12", "other-name.p12");
    fs::write(&s.fleet.config, config).unwrap();
    let before = s.files_in_dir();
    let (code, out) = s.restore(&["--node", "v1", "--yes"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("MISMATCH") && out.contains("SOURCE") && out.contains("other-name.p12"),
        "{out}"
    );
    assert_eq!(s.files_in_dir(), before);
}

#[test]
fn nodectl_names_are_checked_for_every_profile() {
    // global_p12 names another file: refused.
    let s = setup(
        &["v1"],
        "nodeadmin-node.p12",
        Some(&cn_config("@DIR@/", "temp-node.p12", None)),
    );
    fs::remove_file(&s.path).unwrap();
    let (code, out) = s.restore(&["--node", "v1", "--yes"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("nodectl dag-l0 (global_p12)") && out.contains("temp-node.p12"),
        "{out}"
    );
    assert!(!s.path.exists(), "nothing written on refusal");

    // global_p12 right, but dag-l1 overrides with another directory: refused.
    let cn_path = s
        .fleet
        .node("v1")
        .root
        .join("var/tessellation/nodectl/cn-config.yaml");
    let dir = s.fleet.node("v1").root.join(DIR);
    let l1 = cn_config(
        &format!("{}/", dir.display()),
        "nodeadmin-node.p12",
        Some(("/home/other/", "nodeadmin-node.p12")),
    );
    fs::write(&cn_path, l1).unwrap();
    let (code, out) = s.restore(&["--node", "v1", "--yes"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("nodectl dag-l1") && out.contains("/home/other"),
        "{out}"
    );
    assert!(!s.path.exists());

    // Everything agrees: restored.
    fs::write(
        &cn_path,
        cn_config(&format!("{}/", dir.display()), "nodeadmin-node.p12", None),
    )
    .unwrap();
    let (code, out) = s.restore(&["--node", "v1", "--yes"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(fs::read(&s.path).unwrap(), s.original);
}

#[test]
fn a_missing_target_directory_means_install_with_nodectl_first() {
    let s = setup(&["v1"], "nodeadmin-node.p12", None);
    fs::remove_dir_all(s.path.parent().unwrap()).unwrap();
    let (code, out) = s.restore(&["--node", "v1", "--yes"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("does not exist") && out.contains("install the node with nodectl first"),
        "{out}"
    );
    assert!(!s.path.parent().unwrap().exists());
}

#[test]
fn tampered_artifacts_and_wrong_identities_are_refused_before_any_remote_change() {
    let s = setup(&["v1"], "nodeadmin-node.p12", None);
    let temporary = legacy_p12("another-password");
    s.replace_on_node(&temporary, 0o400);

    // A wrong identity.
    let other = s.fleet.dir.join("other-identity.txt");
    assert!(
        std::process::Command::new("age-keygen")
            .arg("-o")
            .arg(&other)
            .output()
            .unwrap()
            .status
            .success()
    );
    let out = s.fleet.run(&[
        "restore",
        "--node",
        "v1",
        "--yes",
        "--identity",
        other.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("decrypt"), "{}", text(&out.stderr));

    // A flipped byte in every copy.
    for root in [s.fleet.store(), s.fleet.replica()] {
        for f in age_files(&root) {
            let mut bytes = fs::read(&f).unwrap();
            let at = bytes.len() - 20;
            bytes[at] ^= 0x80;
            fs::write(&f, bytes).unwrap();
        }
    }
    let (code, out) = s.restore(&["--node", "v1", "--yes"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no intact copy"), "{out}");

    assert_eq!(
        fs::read(&s.path).unwrap(),
        temporary,
        "the node's file is untouched"
    );
    assert_eq!(s.artifact_count(), 1, "no pre-restore artifact was taken");
}

#[test]
fn a_damaged_primary_copy_falls_back_to_an_intact_replica() {
    let s = setup(&["v1"], "nodeadmin-node.p12", None);
    for f in age_files(&s.fleet.store()) {
        let len = fs::metadata(&f).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
    }
    fs::remove_file(&s.path).unwrap();
    let (code, out) = s.restore(&["--node", "v1"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(fs::read(&s.path).unwrap(), s.original);
}

#[test]
fn temp_files_of_an_interrupted_upload_are_removed_by_the_next_run() {
    let s = setup(&["v1"], "nodeadmin-node.p12", None);
    // What a connection cut during upload leaves behind: a partial temp file beside the target.
    let dir = s.path.parent().unwrap();
    fs::write(
        dir.join(".nodeadmin-node.p12.coldkeep-tmp-0123abcd"),
        &s.original[..100],
    )
    .unwrap();
    s.replace_on_node(&legacy_p12("another-password"), 0o400);
    let (code, out) = s.restore(&["--node", "v1", "--yes"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(s.files_in_dir(), vec!["nodeadmin-node.p12"]);
    assert_eq!(fs::read(&s.path).unwrap(), s.original);
}

#[test]
fn from_node_restores_onto_a_replacement_host() {
    let s = setup(&["old", "new"], "nodeadmin-node.p12", None);
    let target = s.fleet.node("new").root.join(DIR).join("nodeadmin-node.p12");
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    // Without --from-node there is no backup of "new".
    let (code, out) = s.restore(&["--node", "new"]);
    assert_eq!(code, 1);
    assert!(out.contains("no backup of new/p12"), "{out}");
    let (code, out) = s.restore(&["--node", "new", "--from-node", "old"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(fs::read(&target).unwrap(), s.original);
}

#[test]
fn check_passes_when_names_agree_and_fails_on_each_disagreement() {
    let s = setup(
        &["v1", "v2"],
        "nodeadmin-node.p12",
        Some(&cn_config("@DIR@/", "nodeadmin-node.p12", None)),
    );
    let identity = s.fleet.age_identity.to_str().unwrap();

    // v1 agrees everywhere; v2 has no backup yet.
    let (code, json) = s.fleet.run_json(&["check", "--json", "--identity", identity]);
    assert_eq!(code, 1);
    let by_node = |j: &Value, n: &str| {
        j.as_array()
            .unwrap()
            .iter()
            .find(|c| c["node"] == n)
            .unwrap()
            .clone()
    };
    let v1 = by_node(&json, "v1");
    assert_eq!(v1["ok"], true, "{v1}");
    assert_eq!(v1["nodectl"].as_array().unwrap().len(), 2);
    assert!(
        v1["identity"].as_str().unwrap().contains("nodeadmin-alias"),
        "{v1}"
    );
    assert!(by_node(&json, "v2")["problems"].to_string().contains("no backup"));

    let out = s.fleet.run(&["check", "--node", "v1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("agree"));

    // nodectl on the node now names another file for dag-l1.
    let cn_path = s
        .fleet
        .node("v1")
        .root
        .join("var/tessellation/nodectl/cn-config.yaml");
    let dir = format!("{}/", s.fleet.node("v1").root.join(DIR).display());
    fs::write(
        &cn_path,
        cn_config(&dir, "nodeadmin-node.p12", Some((&dir, "temp.p12"))),
    )
    .unwrap();
    let out = s.fleet.run(&["check", "--node", "v1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("MISMATCH") && text(&out.stdout).contains("temp.p12"),
        "{}",
        text(&out.stdout)
    );

    // Offline, for a node not installed yet: a local cn-config.yaml; the node is not contacted.
    let local = s.fleet.dir.join("cn-config.yaml");
    fs::write(&local, cn_config(&dir, "nodeadmin-node.p12", None)).unwrap();
    let mut killed = s.fleet;
    killed.nodes.iter_mut().for_each(|n| n.kill());
    let out = killed.run(&[
        "check",
        "--node",
        "v1",
        "--nodectl-config",
        local.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // Without the local file, the killed node is reported as unreachable.
    let (code, json) = killed.run_json(&["check", "--json"]);
    assert_eq!(code, 1);
    assert!(
        by_node(&json, "v1")["problems"]
            .to_string()
            .contains("unreachable"),
        "{json}"
    );
}

#[test]
fn a_connection_cut_during_upload_leaves_the_original_and_the_next_run_cleans_up() {
    let fleet = Fleet::new(&["v1"]);
    // A P12 with trailing bytes, large enough that the upload takes many SFTP writes.
    let mut original = legacy_p12(PW);
    original.extend(std::iter::repeat_n(0x5a, 600 * 1024));
    let remote = fleet.put("v1", &format!("{DIR}/big.p12"), &original, 0o400);
    let path = PathBuf::from(&remote);
    let pw = fleet.secret_file("pw", PW);
    let keystore = format!("        password: {{file: {}}}\n", pw.display());
    let direct = fleet.node_yaml("v1", fleet.node("v1").port, &remote, &keystore);
    fleet.write_config(&direct);
    let out = fleet.run(&["backup"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let current = legacy_p12("another-password");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&path, &current).unwrap();

    // Through a proxy that cuts the connection once 300 KiB of the upload went through. The proxy's
    // port is not in known_hosts, so the node's key is pinned by fingerprint.
    let cutter = Cutter::start(fleet.node("v1").port, 300 * 1024);
    let pin = format!(
        "    labels: [test]\n    host_key: {}\n",
        fleet.node("v1").host_key_fingerprint
    );
    let proxied = fleet
        .node_yaml("v1", cutter.port(), &remote, &keystore)
        .replace("    labels: [test]\n", &pin);
    fleet.write_config(&proxied);
    let identity = fleet.age_identity.to_str().unwrap();
    let out = fleet.run(&["restore", "--node", "v1", "--yes", "--identity", identity]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(cutter.was_cut(), "the proxy cut the upload");
    assert_eq!(fs::read(&path).unwrap(), current, "the node's file is unchanged");
    assert_eq!(
        age_files(&fleet.store()).len(),
        2,
        "the file that was about to be replaced was saved first"
    );

    // The next run, over a working connection, removes the partial temp file and restores.
    fleet.write_config(&direct);
    let out = fleet.run(&["restore", "--node", "v1", "--yes", "--identity", identity]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(fs::read(&path).unwrap(), original);
    let names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["big.p12"], "no temp file is left");
}

#[test]
fn a_symlink_at_the_target_is_refused_and_what_it_points_to_is_not_saved() {
    let s = setup(&["v1"], "nodeadmin-node.p12", None);
    let victim = s.path.with_file_name("victim");
    fs::write(&victim, b"not the keystore").unwrap();
    fs::remove_file(&s.path).unwrap();
    std::os::unix::fs::symlink(&victim, &s.path).unwrap();
    let (code, out) = s.restore(&["--node", "v1", "--yes"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not a regular file"), "{out}");
    assert_eq!(fs::read(&victim).unwrap(), b"not the keystore");
    assert!(fs::symlink_metadata(&s.path).unwrap().file_type().is_symlink());
    assert_eq!(s.artifact_count(), 1, "nothing saved as a pre-restore copy");
}

/// A node's cn-config.yaml whose duplicated key sits under a key with a terminal escape and a
/// newline: `check` and `restore` print the warning with both escaped, whole keys of the path
/// included (the duplicated key alone was escaped, its path was not).
#[test]
fn a_duplicate_key_warning_cannot_write_to_the_terminal() {
    let forged = |under: &str| {
        cn_config("@DIR@/", "nodeadmin-node.p12", None).replacen(
            "nodectl:\n",
            &format!("nodectl:\n  \"{under}\\e[31m\\nFORGED LINE\":\n    p12_key_name: a.p12\n    p12_key_name: b.p12\n"),
            1,
        )
    };
    let clean = |what: &str, out: &str| {
        assert!(
            !out.contains('\u{1b}'),
            "{what}: an escape reached the terminal: {out:?}"
        );
        assert!(
            !out.lines().any(|l| l.starts_with("FORGED LINE")),
            "{what}: a forged line: {out}"
        );
        assert!(out.contains("\\u{1b}[31m\\nFORGED LINE"), "{what}: {out}");
    };
    // The exact file of the review: a profile named with an escape (which nodectl refuses for
    // its missing passphrase, so check fails; its warning is printed all the same).
    let s = setup(&["v1"], "nodeadmin-node.p12", Some(&forged("dag")));
    let out = s.fleet.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    clean("check", &format!("{}{}", text(&out.stdout), text(&out.stderr)));
    // The same under a key nodectl does not take for a profile: the restore plan's warning.
    let cn = s
        .fleet
        .node("v1")
        .root
        .join("var/tessellation/nodectl/cn-config.yaml");
    let dir = s.fleet.node("v1").root.join(DIR);
    fs::write(&cn, forged("global_x").replace("@DIR@", dir.to_str().unwrap())).unwrap();
    let (code, out) = s.restore(&["--node", "v1", "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warning:"), "{out}");
    clean("restore", &out);
}

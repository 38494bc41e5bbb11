//! `file_transfer: sftp` is the default; a node whose sshd has no SFTP subsystem is read over
//! SCP instead, logged once per node. Against real sshd nodes with the `Subsystem` line removed.

use crate::support::fleet::{Fleet, legacy_p12, text};
use coldkeep::config::{FileTransfer, NodeConfig};
use coldkeep::remote::{RemoteError, Session, TreeLimits};
use coldkeep::testkit::sandbox::{NodeOptions, SandboxNode};

fn no_sftp() -> NodeOptions {
    NodeOptions {
        sftp: false,
        ..NodeOptions::default()
    }
}

/// A fleet with an ordinary node `ok` and a node `bare` whose sshd serves no SFTP.
fn fleet() -> Fleet {
    let mut fleet = Fleet::new(&["ok"]);
    let bare = fleet.sandbox.start_node_with("bare", true, &no_sftp()).unwrap();
    fleet.nodes.push(bare);
    fleet
}

#[test]
fn default_config_backs_up_a_node_without_sftp_over_scp_and_logs_it_once() {
    let fleet = fleet();
    let mut yaml = String::new();
    let mut originals = Vec::new();
    for name in ["ok", "bare"] {
        let a = legacy_p12("pw-0123456789");
        let b = legacy_p12("pw-0123456789");
        let pa = fleet.put(name, "home/nodeadmin/a.p12", &a, 0o400);
        let pb = fleet.put(name, "home/nodeadmin/b.p12", &b, 0o400);
        let extra = format!("      - name: second\n        kind: p12\n        path: {pb}\n");
        yaml.push_str(&fleet.node_yaml(name, fleet.node(name).port, &pa, &extra));
        originals.push(a);
        originals.push(b);
    }
    // No `file_transfer` in the config: the default (sftp) applies.
    fleet.write_config(&yaml);

    let out = fleet.run(&["backup"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("4 of 4 keystores backed up"), "{stdout}");
    let bare_port = format!(":{}", fleet.node("bare").port);
    let notes: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("no SFTP on this node"))
        .collect();
    assert_eq!(
        notes.len(),
        1,
        "one note for the node, not one per file: {stderr}"
    );
    assert!(notes[0].contains(&bare_port), "{}", notes[0]);

    // The bytes stored are the bytes on the nodes: decrypt with the stock age CLI via verify.
    let out = fleet.run(&["verify", "--identity", fleet.age_identity.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let (_, list) = fleet.run_json(&["list", "--json"]);
    let artifacts = list["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 4, "{list}");
    for age in crate::support::fleet::age_files(&fleet.store()) {
        let plain = std::process::Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&fleet.age_identity)
            .arg(&age)
            .output()
            .unwrap();
        assert!(plain.status.success());
        let found = originals
            .iter()
            .any(|o| plain.stdout.windows(o.len()).any(|w| w == o.as_slice()));
        assert!(found, "{} holds none of the original P12s", age.display());
    }
}

fn node_config(fleet: &Fleet, node: &SandboxNode, transfer: FileTransfer) -> NodeConfig {
    NodeConfig {
        file_transfer: transfer,
        ..fleet.sandbox.node_config(node)
    }
}

#[test]
fn session_on_a_node_without_sftp_reads_files_with_the_same_errors_either_setting() {
    let fleet = fleet();
    let bytes = legacy_p12("pw");
    let path = fleet.put("bare", "keys/node.p12", &bytes, 0o440);
    std::fs::create_dir_all(fleet.node("bare").root.join("keys/dir")).unwrap();
    let root = fleet.node("bare").root.display().to_string();
    for transfer in [FileTransfer::Sftp, FileTransfer::Scp] {
        let s = Session::connect(&node_config(&fleet, fleet.node("bare"), transfer)).unwrap();
        let file = s.fetch(&path, 1 << 20).unwrap();
        assert_eq!(&file.bytes[..], &bytes[..]);
        assert_eq!(file.mode, 0o440);
        // Twice on one session: the second read does not ask for SFTP again and still works.
        assert_eq!(&s.fetch(&path, 1 << 20).unwrap().bytes[..], &bytes[..]);
        let missing = s.fetch(&format!("{root}/keys/none.p12"), 1 << 20);
        assert!(
            matches!(missing, Err(RemoteError::NotFound { .. })),
            "{:?}",
            missing.err()
        );
        let dir = s.fetch(&format!("{root}/keys/dir"), 1 << 20);
        assert!(
            matches!(dir, Err(RemoteError::IsDirectory { .. })),
            "{:?}",
            dir.err()
        );
        let small = s.fetch(&path, 10);
        assert!(
            matches!(small, Err(RemoteError::TooLarge { .. })),
            "{:?}",
            small.err()
        );
        // Trees need SFTP: the error says what the node lacks.
        let tree = s.fetch_tree(
            &format!("{root}/keys"),
            TreeLimits {
                max_files: 100,
                max_size: 1 << 20,
            },
            &|_| false,
        );
        let message = tree.err().expect("no SFTP, no tree").to_string();
        assert!(message.contains("Subsystem sftp"), "{message}");
    }
}

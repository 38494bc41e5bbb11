//! Fault injection. Each case checks that the failure is reported precisely, the store holds only
//! whole artifacts, the nodes' files are unchanged unless a restore completed, and no plaintext
//! key bytes reached local disk. (Cut uploads during restore: tests/it/restore_cli.rs;
//! lock contention and a holder killed with -9: tests/it/operations_cli.rs; flipped, truncated and
//! edited artifacts in verify: tests/it/backup_cli.rs.)

use crate::support;

use serde_json::Value;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::cutter::{Action, Cutter, Direction};
use support::fleet::{Fleet, age_files, legacy_p12, text};

/// A P12 padded to `kib` KiB (the structure check allows trailing bytes): transfers take many
/// packets, so faults land in the middle.
fn big_p12(kib: usize) -> Vec<u8> {
    let mut p = legacy_p12("pw");
    p.extend((0..kib * 1024).map(|i| (i % 251) as u8));
    p
}

struct Setup {
    fleet: Fleet,
    /// Node name -> (remote path, bytes).
    files: Vec<(String, String, Vec<u8>)>,
}

/// Nodes with big P12s; `via` maps a node to the port (and pinned host key) to use instead of
/// its own; `top` goes into the config.
fn setup(names: &[&str], top: &str) -> Setup {
    let fleet = Fleet::new(names);
    let mut files = Vec::new();
    for n in names {
        let bytes = big_p12(600);
        let path = fleet.put(n, &format!("keys/{n}.p12"), &bytes, 0o400);
        files.push((n.to_string(), path, bytes));
    }
    let s = Setup { fleet, files };
    s.config(top, &[]);
    s
}

impl Setup {
    /// Writes the config; nodes in `via` are reached through another port, their key pinned.
    fn config(&self, top: &str, via: &[(&str, u16)]) {
        let mut yaml = String::new();
        for (n, path, _) in &self.files {
            let node = self.fleet.node(n);
            let mut entry = self.fleet.node_yaml(n, node.port, path, "");
            if let Some((_, port)) = via.iter().find(|(name, _)| name == n) {
                entry = entry
                    .replace(&format!("port: {}\n", node.port), &format!("port: {port}\n"))
                    .replace(
                        "    labels: [test]\n",
                        &format!(
                            "    labels: [test]\n    host_key: {}\n",
                            node.host_key_fingerprint
                        ),
                    );
            }
            yaml.push_str(&entry);
        }
        self.fleet.write_config_with(top, &yaml);
    }

    fn backup_json(&self) -> (i32, Value) {
        self.fleet.run_json(&["backup", "--json"])
    }

    /// The store holds only whole artifacts that verify; no temp files, no orphans.
    fn assert_store_whole(&self) {
        for root in [self.fleet.store(), self.fleet.replica()] {
            for e in walkdir::WalkDir::new(&root).into_iter().filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(
                    !name.contains(".tmp-"),
                    "leftover temp file {}",
                    e.path().display()
                );
                if let Some(id) = name.strip_suffix(".age") {
                    assert!(
                        e.path().with_file_name(format!("{id}.json")).exists(),
                        "orphan {name}"
                    );
                }
            }
        }
        let out = self
            .fleet
            .run(&["verify", "--identity", self.fleet.age_identity.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    fn assert_nodes_unchanged(&self) {
        for (_, path, bytes) in &self.files {
            assert_eq!(&fs::read(path).unwrap(), bytes, "{path} changed");
        }
    }

    fn assert_no_plaintext(&self) {
        let secrets: Vec<&[u8]> = self.files.iter().map(|(_, _, b)| &b[..4096]).collect();
        self.fleet.assert_not_on_local_disk(&secrets);
    }
}

fn outcome<'a>(report: &'a Value, node: &str) -> &'a Value {
    report["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["node"] == node)
        .unwrap()
}

#[test]
fn a_connection_cut_mid_download_fails_that_node_only() {
    let s = setup(&["good", "cut"], "");
    let cutter = Cutter::with(s.fleet.node("cut").port, Direction::Down, 200 * 1024, Action::Cut);
    s.config("", &[("cut", cutter.port())]);
    let (code, report) = s.backup_json();
    assert_eq!(code, 1);
    assert!(cutter.was_cut());
    assert_eq!(outcome(&report, "good")["ok"], true);
    let err = outcome(&report, "cut")["error"].as_str().unwrap();
    assert!(
        err.contains("cut.p12") || err.contains("SSH"),
        "names what broke: {err}"
    );
    assert_eq!(
        age_files(&s.fleet.store()).len(),
        1,
        "only the good node's artifact"
    );
    s.assert_store_whole();
    s.assert_nodes_unchanged();
    s.assert_no_plaintext();
}

#[test]
fn a_transfer_that_stalls_times_out() {
    let s = setup(&["good", "stalled"], "");
    let cutter = Cutter::with(
        s.fleet.node("stalled").port,
        Direction::Down,
        100 * 1024,
        Action::Stall,
    );
    let top = "";
    s.config(top, &[("stalled", cutter.port())]);
    let config = fs::read_to_string(&s.fleet.config)
        .unwrap()
        .replace("io_timeout: 20s", "io_timeout: 2s");
    fs::write(&s.fleet.config, config).unwrap();
    let started = Instant::now();
    let (code, report) = s.backup_json();
    assert_eq!(code, 1);
    assert!(cutter.was_cut());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded by io_timeout"
    );
    assert_eq!(outcome(&report, "good")["ok"], true);
    let err = outcome(&report, "stalled")["error"].as_str().unwrap();
    assert!(err.contains("timed out"), "{err}");
    assert_eq!(age_files(&s.fleet.store()).len(), 1);
    s.assert_store_whole();
}

#[test]
fn a_node_that_never_speaks_ssh_times_out_alone() {
    let s = setup(&["good", "silent"], "");
    // Accepts TCP, then says nothing (the connections are held until the test ends).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming() {
            held.push(c);
        }
    });
    s.config("", &[("silent", port)]);
    let config = fs::read_to_string(&s.fleet.config)
        .unwrap()
        .replace("connect_timeout: 5s", "connect_timeout: 2s")
        .replace("io_timeout: 20s", "io_timeout: 2s");
    fs::write(&s.fleet.config, config).unwrap();
    let started = Instant::now();
    let (code, report) = s.backup_json();
    assert_eq!(code, 1);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(outcome(&report, "good")["ok"], true);
    let err = outcome(&report, "silent")["error"].as_str().unwrap();
    assert!(err.contains("timed out") || err.contains("handshake"), "{err}");
    s.assert_store_whole();
}

#[test]
fn a_full_filesystem_is_named_and_leaves_nothing_partial() {
    let s = setup(&["n1"], "");
    // A file-size limit (RLIMIT_FSIZE, 512-byte blocks) with SIGXFSZ ignored: writes past it fail
    // with EFBIG, as on a full disk. The P12 is 600 KiB; the limit is 100 KiB.
    let out = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 200; exec \"$@\"")
        .arg("sh")
        .args(s.fleet.command(&["backup"]).get_program().to_str())
        .args(["--config", s.fleet.config.to_str().unwrap(), "backup"])
        .env("HOME", s.fleet.dir.join("home"))
        .env("TMPDIR", s.fleet.dir.join("tmp"))
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(s.fleet.store().to_str().unwrap()),
        "names the store path: {all}"
    );
    assert!(
        all.contains("too large") || all.contains("File too large"),
        "{all}"
    );
    s.assert_store_whole();
    // Without the limit the next run succeeds.
    let out = s.fleet.run(&["backup"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(age_files(&s.fleet.store()).len(), 1);
    s.assert_store_whole();
}

/// Makes `dir` read-only for this process: a read-only tmpfs when running as root (root ignores
/// permission bits), else mode 0500. Returns whether a mount needs undoing.
fn make_read_only(dir: &Path) -> bool {
    fs::create_dir_all(dir).unwrap();
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    if root {
        let ok = Command::new("mount")
            // mode=0700: coldkeep refuses a world-writable store root (tmpfs defaults to 1777).
            .args(["-t", "tmpfs", "-o", "ro,size=64k,mode=0700", "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a read-only tmpfs (root without mount rights?)");
        true
    } else {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o500)).unwrap();
        false
    }
}

#[test]
fn a_read_only_store_is_named_and_nothing_is_half_written() {
    let s = setup(&["n1"], "");
    let store = s.fleet.store();
    let mounted = make_read_only(&store);
    let out = s.fleet.run(&["backup"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    if mounted {
        assert!(Command::new("umount").arg(&store).status().unwrap().success());
    } else {
        fs::set_permissions(&store, fs::Permissions::from_mode(0o700)).unwrap();
    }
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains(store.to_str().unwrap()), "names the path: {all}");
    assert!(
        all.contains("Read-only") || all.contains("ermission denied"),
        "{all}"
    );
    // The replica may hold the artifact (it was writable): still only whole ones.
    s.assert_store_whole();
}

#[test]
fn kill_9_during_writes_leaves_a_store_that_verifies_and_a_next_run_that_works() {
    let s = setup(&["a", "b", "c", "d"], "");
    // Kill at different moments; whatever was in flight, what is listed is whole.
    for delay_ms in [20u64, 60, 120, 250, 500] {
        let mut child = s
            .fleet
            .command(&["backup", "--force"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        s.assert_store_whole_allowing_leftovers();
    }
    // The next run succeeds and writes any copy a killed run left missing: then all verifies.
    let out = s.fleet.run(&["backup", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // ...and removes the temp files the killed runs left (their writers are gone).
    let left: Vec<std::path::PathBuf> = [s.fleet.store(), s.fleet.replica()]
        .iter()
        .flat_map(|root| walkdir::WalkDir::new(root).into_iter().filter_map(Result::ok))
        .filter(|e| coldkeep::store::temps::is_temp(&e.file_name().to_string_lossy()))
        .map(|e| e.into_path())
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
    let out = s
        .fleet
        .run(&["verify", "--identity", s.fleet.age_identity.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    s.assert_nodes_unchanged();
    s.assert_no_plaintext();
}

impl Setup {
    /// After a crash: temp files and ciphertexts without a sidecar may be left (never listed,
    /// reported as harmless), and a run killed between roots leaves an artifact without its
    /// replica copy; every listed artifact has an intact copy that decrypts and checks out.
    fn assert_store_whole_allowing_leftovers(&self) {
        let (_, json) = self.fleet.run_json(&[
            "verify",
            "--json",
            "--identity",
            self.fleet.age_identity.to_str().unwrap(),
        ]);
        assert!(json["store_problems"].as_array().unwrap().is_empty(), "{json}");
        for a in json["artifacts"].as_array().unwrap() {
            for p in a["problems"].as_array().unwrap() {
                assert!(p.as_str().unwrap().starts_with("copy missing in"), "{json}");
            }
        }
    }
}

#[test]
fn a_sidecar_edited_in_every_copy_is_refused_by_restore_before_any_change() {
    let s = setup(&["n1"], "");
    assert_eq!(s.fleet.run(&["backup"]).status.code(), Some(0));
    for root in [s.fleet.store(), s.fleet.replica()] {
        for f in walkdir::WalkDir::new(root).into_iter().filter_map(Result::ok) {
            if f.path().extension().is_some_and(|e| e == "json") {
                let edited = fs::read_to_string(f.path())
                    .unwrap()
                    .replace("\"host\": \"127.0.0.1:", "\"host\": \"10.6.6.6:");
                fs::write(f.path(), edited).unwrap();
            }
        }
    }
    let (_, path, _) = &s.files[0];
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(path, legacy_p12("another")).unwrap();
    let before = fs::read(path).unwrap();
    let out = s.fleet.run(&[
        "restore",
        "--node",
        "n1",
        "--yes",
        "--identity",
        s.fleet.age_identity.to_str().unwrap(),
    ]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    // The edit breaks the sidecar's signature, so the artifact is refused before decryption.
    assert!(all.contains("refused") && all.contains("bad signature"), "{all}");
    assert_eq!(fs::read(path).unwrap(), before, "the node's file is untouched");
    let out = s
        .fleet
        .run(&["verify", "--identity", s.fleet.age_identity.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("sidecar was edited"),
        "{}",
        text(&out.stdout)
    );
}

/// A tar with one hostile entry (raw name and type), after a manifest naming it.
fn hostile_tar(name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>) -> (Vec<u8>, Value) {
    let entry = serde_json::json!({
        "path": name, "remote_path": "/x", "size": data.len(), "mode": 0o600,
        "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data)),
    });
    let manifest = serde_json::json!({
        "format": 1, "node": "n1", "keystore": "p12", "kind": "p12", "purpose": "backup",
        "created_at": "2026-11-20T00:00:00Z", "coldkeep_version": "0.1.0", "host": "127.0.0.1:22",
        "host_key": "", "files": [entry], "recipients": [],
    });
    let json = serde_json::to_vec_pretty(&manifest).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (n, d, k, l) in [
        ("manifest.json", json.as_slice(), tar::EntryType::Regular, None),
        (name, data, kind, link),
    ] {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..n.len()].copy_from_slice(n.as_bytes());
        if let Some(l) = l {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_size(d.len() as u64);
        h.set_mode(0o600);
        h.set_entry_type(k);
        h.set_cksum();
        b.append(&h, d).unwrap();
    }
    (b.into_inner().unwrap(), manifest)
}

#[test]
fn hostile_tars_inside_valid_age_files_are_refused_without_writing_anything() {
    let s = setup(&["n1"], "");
    let dir: PathBuf = s.fleet.store().join("n1/p12");
    fs::create_dir_all(&dir).unwrap();
    let node_root = s.fleet.node("n1").root.clone();
    let cases: Vec<(&str, tar::EntryType, Option<&str>)> = vec![
        ("../../../escape.p12", tar::EntryType::Regular, None),
        ("/tmp/coldkeep-absolute.p12", tar::EntryType::Regular, None),
        ("n1.p12", tar::EntryType::Symlink, Some("/etc/shadow")),
    ];
    for (i, (name, kind, link)) in cases.into_iter().enumerate() {
        let data: &[u8] = if kind == tar::EntryType::Symlink {
            b""
        } else {
            b"hostile"
        };
        let (tar, mut manifest) = hostile_tar(name, kind, data, link);
        // Encrypt with the real age CLI to the fleet's recipient: a valid age file.
        let mut age = Command::new("age")
            .args(["-r", &s.fleet.recipient])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(age.stdin.as_mut().unwrap(), &tar).unwrap();
        drop(age.stdin.take());
        let ciphertext = age.wait_with_output().unwrap().stdout;
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&ciphertext));
        manifest["created_at"] = Value::from(format!("2026-11-2{i}T00:00:00Z"));
        let mut sidecar = manifest.clone();
        sidecar["ciphertext_sha256"] = Value::from(sha.clone());
        sidecar["ciphertext_size"] = Value::from(ciphertext.len());
        let id = format!("2026112{i}T000000Z-{}", &sha[..8]);
        fs::write(dir.join(format!("{id}.age")), &ciphertext).unwrap();
        fs::write(
            dir.join(format!("{id}.json")),
            serde_json::to_vec_pretty(&sidecar).unwrap(),
        )
        .unwrap();

        let out = s.fleet.run(&[
            "restore",
            "--node",
            "n1",
            "--backup",
            &id,
            "--yes",
            "--identity",
            s.fleet.age_identity.to_str().unwrap(),
        ]);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{name}: {all}");
        assert!(
            all.contains("bundle content is invalid") || all.contains("refus"),
            "{name}: {all}"
        );
        let verify = s
            .fleet
            .run(&["verify", "--identity", s.fleet.age_identity.to_str().unwrap()]);
        assert_eq!(verify.status.code(), Some(1), "{name}: verify names it");
    }
    assert!(!node_root.join("../../escape.p12").exists() && !s.fleet.dir.join("escape.p12").exists());
    assert!(!Path::new("/tmp/coldkeep-absolute.p12").exists());
    s.assert_nodes_unchanged();
}

#[test]
fn a_replica_copy_lost_between_runs_is_written_again_by_the_next_run() {
    let s = setup(&["n1"], "");
    assert_eq!(s.fleet.run(&["backup"]).status.code(), Some(0));
    let lost = age_files(&s.fleet.replica());
    assert_eq!(lost.len(), 1);
    fs::remove_file(&lost[0]).unwrap();
    fs::remove_file(lost[0].with_extension("json")).unwrap();
    let out = s.fleet.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "a missing copy is reported");
    assert!(
        text(&out.stdout).contains("copy missing"),
        "{}",
        text(&out.stdout)
    );

    let out = s.fleet.run(&["backup"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        age_files(&s.fleet.replica()),
        lost,
        "the same artifact, written again"
    );
    s.assert_store_whole();
}

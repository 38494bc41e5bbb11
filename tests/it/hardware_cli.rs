//! Hardware keys through the real binary: OnlyKey backup texts and BitBox02 card backups into the
//! store, checked, listed and verified; no plaintext on local disk. The OKRESTORE protocol itself
//! is tested against a scripted fake device in `src/hid/onlykey.rs`.

use crate::support;

use coldkeep::material::{bitbox02, onlykey};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use support::fleet::{Fleet, age_files, text};

/// A fleet whose config has one (never contacted) node; hardware keys need only the store.
fn fleet() -> Fleet {
    let f = Fleet::new(&[]);
    f.write_config(&f.node_yaml("n1", 22, "/keys/n1.p12", ""));
    f
}

fn payload(n: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..n).map(|i| (i * 31 + 7) as u8).collect();
    *p.last_mut().unwrap() = 101; // an ECC (passphrase) trailer
    p
}

fn out(o: &std::process::Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

#[test]
fn onlykey_texts_are_checked_then_stored_encrypted() {
    let f = fleet();
    let p = payload(2000);
    let armored = onlykey::armor(&p);

    // Piped, with CRLF line ends (a Windows editor): accepted.
    let o = f.run_with_stdin(
        &["onlykey", "import", "-", "--name", "ok1"],
        armored.replace('\n', "\r\n").as_bytes(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(
        text(&o.stdout).contains("2000 bytes") && text(&o.stdout).contains("passphrase"),
        "{}",
        out(&o)
    );
    let (_, list) = f.run_json(&["list", "--json"]);
    let a = &list["artifacts"][0];
    assert_eq!(a["node"], "hardware");
    assert_eq!(a["keystore"], "ok1");
    assert_eq!(a["kind"], "onlykey");
    assert_eq!(a["identity"]["payload_size"], 2000);
    assert_eq!(a["identity"]["key_type"], "ecc");
    let identity = f.age_identity.to_str().unwrap();
    let o = f.run(&["verify", "--identity", identity]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));

    // From a file, a multiple of 57 bytes (the empty-line case).
    let file = f.dir.join("secrets/backup.txt");
    fs::write(&file, onlykey::armor(&payload(57 * 10))).unwrap();
    let o = f.run(&["onlykey", "import", file.to_str().unwrap(), "--name", "ok2"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));

    // Damaged texts: the error names the line; nothing is stored.
    let lines: Vec<&str> = armored.lines().collect();
    let mut broken = lines.clone();
    let short = &lines[3][..75];
    broken[3] = short;
    let bad_check = armored.replace(
        lines[lines.len() - 2],
        "--AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    );
    let cases: Vec<(String, &str)> = vec![
        (broken.join("\n"), "line 4: not valid base64"),
        (bad_check, "does not match the data"),
        (
            lines[..lines.len() - 1].join("\n"),
            "no -----END ONLYKEY BACKUP----- line",
        ),
        (
            onlykey::armor(&payload(18_001)),
            "over the OnlyKey's 18000-byte restore limit",
        ),
        ("hello".into(), "expected -----BEGIN ONLYKEY BACKUP-----"),
    ];
    for (input, want) in cases {
        let o = f.run_with_stdin(&["onlykey", "import", "--name", "bad"], input.as_bytes());
        assert_eq!(o.status.code(), Some(1), "{want}: {}", out(&o));
        assert!(out(&o).contains(want), "want {want:?}: {}", out(&o));
        assert!(out(&o).contains("nothing was stored"), "{}", out(&o));
    }
    assert_eq!(age_files(&f.store()).len(), 2);

    // capture needs a terminal; a bad name is a usage error.
    let o = f.run_with_stdin(&["onlykey", "capture", "--name", "ok3"], b"");
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("without a terminal"), "{}", out(&o));
    let o = f.run_with_stdin(&["onlykey", "import", "--name", "../x"], armored.as_bytes());
    assert_eq!(o.status.code(), Some(2));

    // Restore decrypts and re-verifies before looking for a device.
    let other = f.dir.join("other.txt");
    assert!(
        std::process::Command::new("age-keygen")
            .arg("-o")
            .arg(&other)
            .output()
            .unwrap()
            .status
            .success()
    );
    let o = f.run(&[
        "onlykey",
        "restore",
        "--name",
        "ok1",
        "--identity",
        other.to_str().unwrap(),
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("decrypt"), "{}", out(&o));
    let o = f.run(&[
        "onlykey",
        "restore",
        "--name",
        "ok1",
        "--identity",
        identity,
        "--device",
        "/dev/hidraw-none",
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("config mode") && out(&o).contains("/dev/hidraw-none"),
        "{}",
        out(&o)
    );

    // The text never reached local disk outside the file we wrote ourselves.
    let lines: Vec<&[u8]> = armored
        .lines()
        .filter(|l| l.len() == 76)
        .map(str::as_bytes)
        .collect();
    f.assert_not_on_local_disk(&lines);
}

/// Writes a card folder `<card>/<id>/` with three copies; returns the folder.
fn card_backup(card: &Path, seed: &[u8], name: &str) -> (PathBuf, Vec<u8>) {
    let file = bitbox02::encode(name, 1_700_000_000, seed, 1_600_000_000, "v9.20.0");
    let id = bitbox02::parse(&file).unwrap().id();
    let dir = card.join(&id);
    fs::create_dir_all(&dir).unwrap();
    for i in 0..3 {
        fs::write(
            dir.join(format!("backup_Tue_2023-11-14T22-13-20Z_{i}.bin")),
            &file,
        )
        .unwrap();
    }
    (dir, file)
}

#[test]
fn bitbox02_card_backups_are_checked_stored_and_compared() {
    let f = fleet();
    let card = f.dir.join("secrets/card");
    let seed = [0x42u8; 32];
    let (folder, file) = card_backup(&card, &seed, "Main wallet");

    let o = f.run(&["bitbox02", "list-card", card.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let listed: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed[0]["identity"]["name"], "Main wallet");
    assert_eq!(listed[0]["identity"]["copies_ok"], 3);

    let o = f.run(&["bitbox02", "import", folder.to_str().unwrap(), "--name", "bb1"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(
        text(&o.stderr).contains("PLAINTEXT"),
        "the seed warning: {}",
        out(&o)
    );
    let identity = f.age_identity.to_str().unwrap();
    let o = f.run(&[
        "bitbox02",
        "check-card",
        card.to_str().unwrap(),
        "--name",
        "bb1",
        "--identity",
        identity,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(text(&o.stdout).contains("same wallet"), "{}", out(&o));
    let o = f.run(&["verify", "--identity", identity]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let (_, status) = f.run_json(&["status", "--json"]);
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["node"] == "hardware" && s["keystore"] == "bb1" && s["ok"] == true),
        "{status}"
    );

    // One damaged copy: imported with a warning; list-card flags it.
    let copy = fs::read_dir(&folder).unwrap().next().unwrap().unwrap().path();
    let mut damaged = file.clone();
    let at = damaged.len() - 40;
    damaged[at] ^= 1;
    fs::write(&copy, &damaged).unwrap();
    let o = f.run(&["bitbox02", "import", folder.to_str().unwrap(), "--name", "bb1"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(
        out(&o).contains("2 of 3 copies intact") && out(&o).contains("checksum"),
        "{}",
        out(&o)
    );
    let o = f.run(&["bitbox02", "list-card", card.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("2/3"), "{}", out(&o));

    // Disagreeing copies and a renamed folder are refused.
    let other = bitbox02::encode("Other", 1_700_000_000, &[0x43u8; 32], 1_600_000_000, "v9.20.0");
    fs::write(&copy, &other).unwrap();
    let o = f.run(&["bitbox02", "import", folder.to_str().unwrap(), "--name", "bb2"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("hold different backups"), "{}", out(&o));
    fs::write(&copy, &file).unwrap();
    let renamed = card.join("0".repeat(64));
    fs::rename(&folder, &renamed).unwrap();
    let o = f.run(&["bitbox02", "import", renamed.to_str().unwrap(), "--name", "bb2"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("renamed or mixed up"), "{}", out(&o));

    // A card with another wallet: check-card says so.
    let other_card = f.dir.join("secrets/card2");
    card_backup(&other_card, &[0x44u8; 32], "Spare");
    let o = f.run(&[
        "bitbox02",
        "check-card",
        other_card.to_str().unwrap(),
        "--name",
        "bb1",
        "--identity",
        identity,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("no backup of bb1's wallet") && out(&o).contains("Spare"),
        "{}",
        out(&o)
    );

    // The seed never reached local disk outside the card.
    f.assert_not_on_local_disk_except(&[&seed, &file], &[&card]);
}

#[test]
fn hid_list_names_the_known_devices_it_looks_for() {
    let f = fleet();
    let o = f.run(&["hid", "list"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let stdout = text(&o.stdout);
    // CI machines have no hardware key: the message says what was looked for and what to check.
    if stdout.starts_with("No known hardware key") {
        assert!(
            stdout.contains("OnlyKey 1d50:60fc") && stdout.contains("BitBox02 03eb:2403"),
            "{stdout}"
        );
        assert!(stdout.contains("udev"), "{stdout}");
    }
    let o = f.run(&["hid", "list", "--json"]);
    assert!(serde_json::from_slice::<Value>(&o.stdout).unwrap().is_array());
}

#[test]
fn a_store_for_hardware_keys_needs_no_nodes() {
    let f = Fleet::new(&[]);
    f.write_config("");
    let o = f.run_with_stdin(
        &["onlykey", "import", "--name", "ok1"],
        onlykey::armor(&payload(100)).as_bytes(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let o = f.run(&["backup"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("lists no nodes"), "{}", out(&o));
}

#[test]
fn capture_reads_the_typed_text_on_a_terminal_with_echo_off() {
    use std::io::{Read, Write};
    use std::process::Stdio;
    let f = fleet();
    let armored = onlykey::armor(&payload(300));
    // `script` gives coldkeep a pseudo-terminal (util-linux); we type once the prompt is shown.
    let inner = format!(
        "{} --config {} onlykey capture --name typed",
        env!("CARGO_BIN_EXE_coldkeep"),
        f.config.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("HOME", f.dir.join("home"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (util-linux)");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let wait_for = |want: &str, seen: &mut Vec<u8>| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !String::from_utf8_lossy(seen).contains(want) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(chunk) => seen.extend(chunk),
                Err(_) => panic!("no {want:?} in {:?}", String::from_utf8_lossy(seen)),
            }
        }
    };
    wait_for("Ctrl-D to give up", &mut seen);
    let prompt_len = seen.len();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(armored.as_bytes()).unwrap();
    wait_for("stored OnlyKey backup typed", &mut seen);
    // The report's last line, before our end of the terminal closes (closing it early can cut
    // the lines after "stored" off under load).
    wait_for("check value:", &mut seen);
    drop(stdin);
    let _ = child.wait();
    // The rest of the output (the reader ends when the terminal closes).
    while let Ok(chunk) = rx.recv_timeout(std::time::Duration::from_secs(10)) {
        seen.extend(chunk);
    }
    let after = String::from_utf8_lossy(&seen[prompt_len..]).into_owned();
    // Echo was off: none of the typed lines came back on the terminal.
    for line in armored.lines().filter(|l| l.len() > 20) {
        assert!(!after.contains(line), "echoed: {line}\n{after}");
    }
    assert!(
        after.contains("lines received") && after.contains("300 bytes"),
        "{after}"
    );
    let (_, list) = f.run_json(&["list", "--json"]);
    assert_eq!(list["artifacts"][0]["keystore"], "typed");
}

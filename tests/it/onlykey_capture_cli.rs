//! `coldkeep onlykey capture` on a real pseudo-terminal (`script`, util-linux): what a device
//! types before BEGIN (a short press types slot 1's credentials) is dropped and never shown or
//! stored, and the one-line "No Backup Key" text ends the capture with advice instead of a hang.

use crate::support;

use coldkeep::material::onlykey;
use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use support::fleet::Fleet;

fn fleet() -> Fleet {
    let f = Fleet::new(&[]);
    f.write_config("");
    f
}

/// Starts `coldkeep onlykey capture` under `script`; returns the child and its output stream.
fn start(f: &Fleet, name: &str) -> (Child, Receiver<Vec<u8>>) {
    let inner = format!(
        "{} --config {} onlykey capture --name {name}",
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
    (child, rx)
}

fn wait_for(rx: &Receiver<Vec<u8>>, want: &str, seen: &mut Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !String::from_utf8_lossy(seen).contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.extend(chunk),
            Err(_) => panic!("no {want:?} in {:?}", String::from_utf8_lossy(seen)),
        }
    }
}

#[test]
fn what_is_typed_before_begin_is_dropped_unseen() {
    let f = fleet();
    let mut p: Vec<u8> = (0..400).map(|i| (i * 13 + 5) as u8).collect();
    *p.last_mut().unwrap() = 101;
    let armored = onlykey::armor(&p);
    // A too-short press: slot 1's username, Tab, password, Enter; then the real backup.
    let creds = "alice@example.invalid\tslot-one-password-0123456789abcdef";
    let (mut child, rx) = start(&f, "typed");
    let mut seen = Vec::new();
    wait_for(&rx, "Ctrl-D to give up", &mut seen);
    let prompt_len = seen.len();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{creds}\n").as_bytes()).unwrap();
    stdin.write_all(armored.as_bytes()).unwrap();
    wait_for(&rx, "stored OnlyKey backup typed", &mut seen);
    drop(stdin);
    let _ = child.wait();
    // The rest of the output (the reader ends when the terminal closes).
    while let Ok(chunk) = rx.recv_timeout(std::time::Duration::from_secs(10)) {
        seen.extend(chunk);
    }
    let after = String::from_utf8_lossy(&seen[prompt_len..]).into_owned();
    assert!(
        !after.contains("slot-one-password") && !after.contains("alice@"),
        "{after}"
    );
    assert!(after.contains("400 bytes"), "{after}");
    let (_, list) = f.run_json(&["list", "--json"]);
    assert_eq!(list["artifacts"][0]["keystore"], "typed");
    f.assert_not_on_local_disk(&[b"slot-one-password-0123456789abcdef"]);
}

#[test]
fn the_no_backup_key_line_ends_the_capture_with_advice() {
    let f = fleet();
    let (mut child, rx) = start(&f, "nokey");
    let mut seen = Vec::new();
    wait_for(&rx, "Ctrl-D to give up", &mut seen);
    let mut stdin = child.stdin.take().unwrap();
    // One line, no Enter, no END: exactly what the firmware types without a backup key.
    stdin
        .write_all(
            b"-----BEGIN ONLYKEY BACKUP-----No Backup Key - Follow instructions here \
              https://docs.crp.to/usersguide.html#secure-encrypted-backup-anywhere",
        )
        .unwrap();
    wait_for(&rx, "nothing was stored", &mut seen);
    let all = String::from_utf8_lossy(&seen).into_owned();
    assert!(all.contains("Set a backup passphrase"), "{all}");
    let status = child.wait().unwrap();
    assert!(!status.success());
    let (_, list) = f.run_json(&["list", "--json"]);
    assert_eq!(list["artifacts"].as_array().map_or(0, Vec::len), 0);
}

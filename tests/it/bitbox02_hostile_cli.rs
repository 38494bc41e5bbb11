//! `coldkeep bitbox02 backups ...` and `status` against what an attacker controls: a hostile
//! device (forged answers, escapes in its words), another device under a known name, links
//! planted in a replica, and signed records with odd content.

use crate::bitbox02_device_cli::{device, other_wallet, out, rig, row, status, this_wallet};
use crate::support;

use coldkeep::config::Config;
use coldkeep::store::{CheckResult, DeviceCheck};

/// Record files of `name` in the primary.
fn records(f: &support::fleet::Fleet, name: &str) -> usize {
    let dir = f.store().join(".coldkeep/device-checks").join(name);
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".check.json"))
            })
            .count()
        })
        .unwrap_or(0)
}

/// A device that answers a check with an id that is no backup id, or with a well-formed id its
/// card listing does not hold: refused, nothing recorded, and `status` keeps working.
#[test]
fn a_forged_check_answer_is_refused_and_not_recorded() {
    let (f, server) = rig("hardware:\n  - {name: treasury, model: bitbox02}\n");
    let mine = this_wallet(&server);
    server.set(|d| d.card = Some(vec![mine, other_wallet()]));
    assert_eq!(records(&f, "treasury"), 0);

    for forged in ["é".repeat(9), "ab".repeat(32)] {
        server.set(|d| d.forged_check_id = Some(forged.clone()));
        let o = device(&f, &server, "check", "treasury", &[]);
        assert_eq!(o.status.code(), Some(1), "{forged}: {}", out(&o));
        assert!(
            out(&o).contains("unexpected answer from the BitBox02"),
            "{}",
            out(&o)
        );
        assert_eq!(records(&f, "treasury"), 0, "nothing recorded for {forged}");
    }
    let (code, human, _) = status(&f, &[]);
    assert_eq!(code, 1, "{human}");
    assert!(human.contains("'treasury': backup never checked"), "{human}");

    // The device's true answer is recorded as before.
    server.set(|d| d.forged_check_id = None);
    let o = device(&f, &server, "check", "treasury", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert_eq!(records(&f, "treasury"), 1);
}

/// A validly signed record whose content is odd (multibyte id, escapes in the name, the model
/// and the detail): `status` and the metrics print it on one line each, without escapes, and do
/// not panic.
#[test]
fn status_survives_a_signed_record_with_odd_content() {
    let (f, _server) = rig("metrics_file: {METRICS}\n");
    let cfg = std::fs::read_to_string(&f.config).unwrap();
    let metrics_path = f.dir.join("metrics.prom");
    std::fs::write(
        &f.config,
        cfg.replace("{METRICS}", metrics_path.to_str().unwrap()),
    )
    .unwrap();
    let config = Config::load(&f.config).unwrap();
    let mut c = DeviceCheck::new(
        "treasury",
        "bitbox02\x1b[31m\"",
        "simulator\n127.0.0.1:9".into(),
        CheckResult::Found,
    );
    c.backup_id = Some("é".repeat(9));
    c.backup_name = Some("\x1b]0;owned\x07\u{202e}".into());
    coldkeep::ops::run_state::record_device_check(&config, &c).unwrap();
    let mut c = DeviceCheck::new("spare", "onlykey", "x".into(), CheckResult::DoesNotOpen);
    c.detail = Some("bad\n\x1b[2Jerror: forged".into());
    c.backup_id = Some("\x1b[H".into());
    coldkeep::ops::run_state::record_device_check(&config, &c).unwrap();

    let (code, human, rows) = status(&f, &[]);
    assert_eq!(code, 1, "{human}");
    assert!(!human.contains('\x1b') && !human.contains('\u{202e}'), "{human}");
    assert!(!human.lines().any(|l| l.starts_with("error: forged")), "{human}");
    assert!(
        human.contains(&format!("on the card: {}…", "é".repeat(8))),
        "{human}"
    );
    assert_eq!(
        row(&rows, "treasury")["hardware"]["last_check"]["backup_id"],
        "é".repeat(9)
    );
    let metrics = std::fs::read_to_string(&metrics_path).unwrap();
    assert!(!metrics.contains('\x1b'), "{metrics}");
    assert!(
        metrics.contains("coldkeep_hardware_last_check_ok{device=\"treasury\",model=\"bitbox02[31m\\\"\"} 1"),
        "{metrics}"
    );
}

/// A hostile device's error text (a cancel, a refusal in the wrong state) with escapes, a forged
/// line and a bidi override: printed escaped, on the lines coldkeep writes.
#[test]
fn a_devices_error_text_reaches_the_terminal_escaped() {
    let (f, server) = rig("");
    let blank = coldkeep::testkit::bitbox02_server::FakeServer::start(
        coldkeep::testkit::bitbox02_fake::DeviceState::new(None),
    );
    let forged = "\x1b[2J\x1b[H\nerror: forged line\u{202e}";
    let mine = this_wallet(&server);
    for s in [&server, &blank] {
        s.set(|d| {
            d.card = Some(vec![mine.clone()]);
            d.error_message = Some(forged.into());
        });
    }
    let runs = [
        (&server, "t", "check", &["--confirm-on-device"][..]),
        (&server, "t", "create", &[][..]),
        (&blank, "b", "create", &[][..]),
    ];
    for (s, name, what, more) in runs {
        // Paired first (the cancel is meant for the request, not the pairing code).
        let o = device(&f, s, "list", name, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", out(&o));
        s.set(|d| d.abort_next = true);
        let o = device(&f, s, what, name, more);
        assert_eq!(o.status.code(), Some(1), "{}", out(&o));
        let all = out(&o);
        assert!(
            all.contains("\\u{1b}[2J\\u{1b}[H\\nerror: forged line\\u{202e}"),
            "{what}: {all}"
        );
        assert!(!all.contains('\x1b') && !all.contains('\u{202e}'), "{all}");
        assert!(!all.lines().any(|l| l.starts_with("error: forged")), "{all}");
    }
}

/// Another device under a known name, through a second pairing file: `check` and `create`
/// refuse it before asking it anything (nothing recorded) unless `--new-device` says so, and a
/// record of another key that got in all the same makes `status` say the key changed.
#[test]
fn another_device_under_a_known_name_is_refused_and_flagged() {
    let (f, a) = rig("");
    let b = coldkeep::testkit::bitbox02_server::FakeServer::start(
        coldkeep::testkit::bitbox02_fake::DeviceState::new(Some([0x77; 32])),
    );
    let (wallet_a, wallet_b) = (this_wallet(&a), this_wallet(&b));
    a.set(|d| d.card = Some(vec![wallet_a]));
    b.set(|d| d.card = Some(vec![wallet_b]));
    let o = device(&f, &a, "check", "treasury", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert_eq!(records(&f, "treasury"), 1);

    // Device B paired as 'treasury' in a second pairing file.
    let other = f.dir.join("other-pairing.json");
    let other = other.to_str().unwrap();
    let json = |o: &std::process::Output| serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap();
    let o = device(&f, &b, "list", "treasury", &["--pairing-file", other, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let key_b = json(&o)["device"]["device_key"].as_str().unwrap().to_string();
    for what in ["check", "create"] {
        b.set(|d| d.seen.clear());
        let o = device(&f, &b, what, "treasury", &["--pairing-file", other]);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", out(&o));
        assert!(
            out(&o).contains("is not the device whose checks are recorded under that name"),
            "{}",
            out(&o)
        );
        assert!(out(&o).contains("--new-device"), "{}", out(&o));
        assert_eq!(b.device().seen, ["info", "unlock", "handshake"], "asked nothing");
        assert_eq!(records(&f, "treasury"), 1, "nothing recorded");
    }
    let (code, human, _) = status(&f, &[]);
    assert_eq!(code, 0, "{human}");

    // A record of B's key under 'treasury' that got in without the declaration (an older
    // coldkeep, a hand-made record signed with the agent's key): status flags the change.
    let config = Config::load(&f.config).unwrap();
    let mut c = DeviceCheck::new(
        "treasury",
        "bitbox02",
        "usb /dev/hidraw9".into(),
        CheckResult::Found,
    );
    c.device_key = Some(key_b.clone());
    c.backup_id = Some("ab".repeat(32));
    coldkeep::ops::run_state::record_device_check(&config, &c).unwrap();
    let (code, human, rows) = status(&f, &[]);
    assert_eq!(code, 1, "{human}");
    assert!(human.contains("device key changed since "), "{human}");
    let t = row(&rows, "treasury");
    assert_eq!(t["ok"], false);
    assert_eq!(t["hardware"]["key_change"]["now"], key_b.as_str());
    // ... and the next check of A is refused too: the name's last check is of B.
    let o = device(&f, &a, "check", "treasury", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));

    // The operator declares B the new 'treasury': recorded, and status is content.
    let o = device(
        &f,
        &b,
        "check",
        "treasury",
        &["--pairing-file", other, "--new-device"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert_eq!(records(&f, "treasury"), 3);
    let (code, human, rows) = status(&f, &[]);
    assert_eq!(code, 0, "{human}");
    assert!(row(&rows, "treasury")["hardware"].get("key_change").is_none());
}

/// Someone who can write the replica links the device's records directory to a directory of
/// theirs: the check is printed, its record goes to the primary only (exit 1, the link named),
/// nothing is written through the link, and `status` flags the link under that device.
#[test]
fn a_link_planted_in_a_replica_is_reported_not_followed() {
    let (f, server) = rig("hardware:\n  - {name: treasury, model: bitbox02}\n");
    let mine = this_wallet(&server);
    server.set(|d| d.card = Some(vec![mine]));
    let theirs = tempfile::tempdir().unwrap();
    let link = f.replica().join(".coldkeep/device-checks/treasury");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(theirs.path(), &link).unwrap();

    let o = device(&f, &server, "check", "treasury", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("OK: the card holds a backup"), "{}", out(&o));
    assert!(
        out(&o).contains("could not be recorded") && out(&o).contains("not followed"),
        "{}",
        out(&o)
    );
    assert_eq!(std::fs::read_dir(theirs.path()).unwrap().count(), 0);
    assert_eq!(records(&f, "treasury"), 1, "in the primary");

    let (code, human, rows) = status(&f, &[]);
    assert_eq!(code, 1, "{human}");
    let problems = row(&rows, "treasury")["problems"].to_string();
    assert!(
        problems.contains("a symbolic link where a device's directory belongs"),
        "{problems}"
    );
}

/// `onlykey verify --name` whose record cannot be written (a replica's writer planted a link):
/// the result is printed all the same, then the recording error, exit 1.
#[test]
fn an_onlykey_result_is_printed_when_its_record_cannot_be_written() {
    let (f, _server) = rig("");
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/onlykey/vectors.json")).unwrap();
    let good = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "passphrase")
        .unwrap()
        .clone();
    let o = f.run_with_stdin(
        &["onlykey", "import", "-", "--name", "ok1"],
        good["text"].as_str().unwrap().as_bytes(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let pass = f.dir.join("secrets/ok1.pass");
    std::fs::write(&pass, format!("{}\n", good["passphrase"].as_str().unwrap())).unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let link = f.replica().join(".coldkeep/device-checks/ok1");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(theirs.path(), &link).unwrap();

    let o = f.run(&[
        "onlykey",
        "verify",
        "--name",
        "ok1",
        "--identity",
        f.age_identity.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("  opens with "), "{}", out(&o));
    assert!(
        out(&o).contains("error: the verification could not be recorded in the store"),
        "{}",
        out(&o)
    );
    assert_eq!(std::fs::read_dir(theirs.path()).unwrap().count(), 0);
}

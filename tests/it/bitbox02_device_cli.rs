//! `coldkeep bitbox02 backups list | check | create` through the real binary, against the test
//! kit's fake BitBox02 served over TCP the way the firmware simulator is (`--simulator
//! 127.0.0.1:PORT`): pairing (new, remembered, a changed device key refused, declined), what the
//! device answers (found, not found, no card, aborted, locked, busy, not set up), and the signed
//! check records in `status` and the metrics, beside the OnlyKey's offline verifications.

use crate::support;

use coldkeep::config::Config;
use coldkeep::store::{CheckResult, DeviceCheck, Store};
use coldkeep::testkit::bitbox02_fake::{CardBackup, DeviceState};
use coldkeep::testkit::bitbox02_server::FakeServer;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;
use support::fleet::{Fleet, text};

pub(crate) const SEED: [u8; 32] = [0x42; 32];

pub(crate) fn out(o: &Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

/// A store-only fleet with `top` config keys, and a fake BitBox02 (set up, locked, no card).
pub(crate) fn rig(top: &str) -> (Fleet, FakeServer) {
    let f = Fleet::new(&[]);
    f.write_config_with(top, "");
    (f, FakeServer::start(DeviceState::new(Some(SEED))))
}

/// Runs `coldkeep bitbox02 backups <what> --name NAME --simulator ADDR [more]`.
pub(crate) fn device(f: &Fleet, server: &FakeServer, what: &str, name: &str, more: &[&str]) -> Output {
    let mut args = vec![
        "bitbox02",
        "backups",
        what,
        "--name",
        name,
        "--simulator",
        &server.addr,
    ];
    args.extend_from_slice(more);
    f.command(&args)
        .env_remove("COLDKEEP_BITBOX02_SIMULATOR")
        .env_remove("COLDKEEP_BITBOX02_PAIRING")
        .output()
        .unwrap()
}

pub(crate) fn this_wallet(server: &FakeServer) -> CardBackup {
    CardBackup {
        id: server.device().backup_id().unwrap(),
        name: "My BitBox".into(),
        timestamp: 1_601_281_809,
        intact: true,
    }
}

pub(crate) fn other_wallet() -> CardBackup {
    CardBackup {
        id: "cd".repeat(32),
        name: "Old wallet".into(),
        timestamp: 1_500_000_000,
        intact: true,
    }
}

pub(crate) fn pairing_file(f: &Fleet) -> PathBuf {
    f.dir.join("home/.config/coldkeep/bitbox02-pairing.json")
}

#[test]
fn pairing_is_confirmed_once_remembered_and_a_changed_device_key_is_refused() {
    let (f, server) = rig("");
    let mine = this_wallet(&server);
    server.set(|d| d.card = Some(vec![mine]));

    // New: the code is printed for comparison, the device asks for the password first.
    let o = device(&f, &server, "check", "treasury", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let err = text(&o.stderr);
    assert!(err.contains("Enter the password on the BitBox02."), "{err}");
    assert!(err.contains("Pairing with a new BitBox02"), "{err}");
    let code: Vec<&str> = err
        .lines()
        .map(str::trim)
        .filter(|l| l.len() == 11 && l.as_bytes()[5] == b' ')
        .collect();
    assert_eq!(code.len(), 2, "two lines of XXXXX XXXXX: {err}");
    assert!(text(&o.stdout).contains("(paired now)"), "{}", out(&o));
    let mode = fs::metadata(pairing_file(&f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let seen = server.device().seen;
    assert_eq!(
        seen,
        [
            "info",
            "unlock",
            "handshake",
            "pairing",
            "check_sdcard",
            "check_backup silent=true",
            "list_backups"
        ]
    );

    // Remembered: no code, no pairing on the device.
    server.set(|d| d.seen.clear());
    let o = device(&f, &server, "check", "treasury", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(!text(&o.stderr).contains("Pairing"), "{}", out(&o));
    assert!(!server.device().seen.contains(&"pairing".to_string()));

    // The device under this name now has another key (reset, or another device): refused
    // before any request reaches it, like a changed SSH host key.
    server.set(|d| {
        d.new_noise_key();
        d.seen.clear();
    });
    let o = device(&f, &server, "check", "treasury", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("is not the BitBox02 paired under that name"),
        "{}",
        out(&o)
    );
    assert!(
        out(&o).contains("coldkeep bitbox02 unpair --name treasury"),
        "{}",
        out(&o)
    );
    assert_eq!(server.device().seen, ["info", "unlock", "handshake"]);

    // After unpair, it is paired anew (with a code); a declined code is not remembered, and
    // its checks go under this name once --new-device says it is the new 'treasury'.
    let o = f.run(&["bitbox02", "unpair", "--name", "treasury"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    server.set(|d| d.accept_pairing = false);
    let o = device(&f, &server, "check", "treasury", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("pairing was declined on the BitBox02"),
        "{}",
        out(&o)
    );
    server.set(|d| d.accept_pairing = true);
    let o = device(&f, &server, "check", "treasury", &["--new-device"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(
        text(&o.stderr).contains("Pairing with a new BitBox02"),
        "{}",
        out(&o)
    );

    // No private key material in any output; the pairing file holds it, 0600.
    let pairing: Value = serde_json::from_slice(&fs::read(pairing_file(&f)).unwrap()).unwrap();
    let host_key = pairing["host_key"].as_str().unwrap();
    assert_eq!(host_key.len(), 64);
    assert!(!out(&o).contains(host_key));
}

#[test]
fn list_check_and_create_through_the_device() {
    let (f, server) = rig("");
    let mut hostile = other_wallet();
    hostile.id = "ef".repeat(32);
    hostile.name = "evil\x1b]0;owned\x07\u{202e}gnp".into();
    server.set(|d| d.card = Some(vec![other_wallet(), hostile]));

    let o = device(&f, &server, "list", "treasury", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains(&"cd".repeat(32)) && stdout.contains("Old wallet"),
        "{stdout}"
    );
    assert!(
        stdout.contains("evil\\u{1b}]0;owned\\u{7}\\u{202e}gnp")
            && !stdout.contains('\x1b')
            && !stdout.contains('\u{202e}'),
        "no terminal escapes: {stdout}"
    );
    server.set(|d| d.card = Some(vec![other_wallet()]));
    assert!(stdout.contains("2017-07-14 02:40:00"), "the date, UTC: {stdout}");
    let o = device(&f, &server, "list", "treasury", &["--json"]);
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["backups"][0]["name"], "Old wallet");
    assert_eq!(doc["backups"][0]["created"], "2017-07-14T02:40:00Z");
    assert_eq!(doc["device"]["product"], "BitBox02 Multi");

    // Another wallet's backup is not this wallet's: exit 1, and how to make one.
    let o = device(&f, &server, "check", "treasury", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        text(&o.stdout).contains("holds no backup of this device's wallet (1 other"),
        "{}",
        out(&o)
    );
    assert!(
        text(&o.stdout).contains("bitbox02 backups create --name treasury"),
        "{}",
        out(&o)
    );

    // Create: the date goes to the device, which writes the backup; the check confirms it.
    let before = chrono::Utc::now().timestamp();
    let o = device(&f, &server, "create", "treasury", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(text(&o.stderr).contains("hold \"Create backup?\""), "{}", out(&o));
    assert!(text(&o.stdout).contains("CREATED"), "{}", out(&o));
    assert!(text(&o.stdout).contains("PLAINTEXT"), "{}", out(&o));
    let made = server
        .device()
        .card
        .unwrap()
        .into_iter()
        .find(|b| b.id == server.device().backup_id().unwrap())
        .unwrap();
    assert!(i64::from(made.timestamp) >= before, "{made:?}");

    let (code, doc) = {
        let o = device(&f, &server, "check", "treasury", &["--json"]);
        (
            o.status.code(),
            serde_json::from_slice::<Value>(&o.stdout).unwrap(),
        )
    };
    assert_eq!(code, Some(0));
    assert_eq!(doc["result"], "found");
    assert_eq!(doc["found"]["id"], server.device().backup_id().unwrap());
    assert_eq!(doc["found"]["name"], "My BitBox");
    assert_eq!(doc["card_backups"], 2);
    assert!(doc["record"].as_str().unwrap().len() > 16);

    // Shown on the device for the user to confirm, then cancelled there.
    server.set(|d| d.abort_next = true);
    let o = device(&f, &server, "check", "treasury", &["--confirm-on-device"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("cancelled on the BitBox02 (it answered \"aborted by the user\")"),
        "{}",
        out(&o)
    );
    server.set(|d| d.abort_next = true);
    let o = device(&f, &server, "create", "treasury", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("aborted by the user"), "{}", out(&o));
}

#[test]
fn the_errors_users_meet_each_with_its_fix() {
    let (f, server) = rig("");
    // No card: check answers it (exit 1), create refuses before asking the user anything.
    let o = device(&f, &server, "check", "t", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        text(&o.stdout).contains("no microSD card inserted (it says so): insert the card"),
        "{}",
        out(&o)
    );
    server.set(|d| d.seen.clear());
    let o = device(&f, &server, "create", "t", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("insert the card and run again"), "{}", out(&o));
    assert!(
        !server
            .device()
            .seen
            .iter()
            .any(|s| s.starts_with("create_backup"))
    );
    let o = device(&f, &server, "list", "t", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));

    // Locked (replugged): nobody enters the password within --timeout.
    server.set(|d| {
        d.card = Some(Vec::new());
        d.locked = true;
        d.password_polls = None;
    });
    let o = device(&f, &server, "check", "t", &["--timeout", "1s"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("the BitBox02 is locked: enter its password on the device"),
        "{}",
        out(&o)
    );

    // Busy: another program's request is outstanding (the firmware answers BUSY).
    server.set(|d| {
        d.password_polls = Some(0);
        d.busy_next = 100;
    });
    let o = device(&f, &server, "check", "t", &["--timeout", "2s"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("the BitBox02 is busy") && out(&o).contains("Close the BitBoxApp"),
        "{}",
        out(&o)
    );

    // Not set up: the device's own words.
    let blank = FakeServer::start(DeviceState::new(None));
    blank.set(|d| d.card = Some(Vec::new()));
    let o = device(&f, &blank, "create", "blank", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("\"can't call this endpoint: wrong state\""),
        "{}",
        out(&o)
    );
    assert!(
        out(&o).contains("set it up in the BitBoxApp first"),
        "{}",
        out(&o)
    );

    // Nothing listening; a usage error for a bad name; no device on USB.
    let o = f.run(&[
        "bitbox02",
        "backups",
        "list",
        "--name",
        "x",
        "--simulator",
        "127.0.0.1:1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("cannot connect to the BitBox02 simulator at 127.0.0.1:1"),
        "{}",
        out(&o)
    );
    let o = device(&f, &server, "list", "../x", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    // The environment variable names the simulator as the flag does.
    server.set(|d| d.busy_next = 0);
    let o = f
        .command(&["bitbox02", "backups", "list", "--name", "t"])
        .env("COLDKEEP_BITBOX02_SIMULATOR", &server.addr)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    // ... and an explicit --device wins over it.
    let o = f
        .command(&[
            "bitbox02",
            "backups",
            "list",
            "--name",
            "t",
            "--device",
            "/nonexistent/hidraw9",
        ])
        .env("COLDKEEP_BITBOX02_SIMULATOR", &server.addr)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("/nonexistent/hidraw9"), "{}", out(&o));
}

/// Records a check as if made `days` ago, signed with the fleet's key through the store.
pub(crate) fn old_check(f: &Fleet, name: &str, model: &str, result: CheckResult, days: i64) {
    let config = Config::load(&f.config).unwrap();
    let mut c = DeviceCheck::new(name, model, "simulator 127.0.0.1:9".into(), result);
    c.checked_at -= chrono::Duration::days(days);
    c.backup_id = Some("ab".repeat(32));
    Store::new(&config.store).record_device_check(&c).unwrap();
}

pub(crate) fn status(f: &Fleet, args: &[&str]) -> (i32, String, Vec<Value>) {
    let mut a = vec!["status"];
    a.extend_from_slice(args);
    let o = f.run(&a);
    let mut j = a.clone();
    j.push("--json");
    let doc: Value = serde_json::from_slice(&f.run(&j).stdout).unwrap();
    (
        o.status.code().unwrap(),
        text(&o.stdout),
        doc.as_array().unwrap().clone(),
    )
}

pub(crate) fn row<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["node"] == "hardware" && r["keystore"] == name)
        .unwrap_or_else(|| panic!("no row for {name}: {rows:?}"))
}

#[test]
fn status_and_metrics_show_hardware_checks_and_their_age() {
    let metrics = "metrics.prom";
    let (f, server) = rig(
        "metrics_file: {METRICS}\nhardware:\n  - {name: treasury, model: bitbox02, check_every: 30d}\n  \
         - {name: cold, model: bitbox02, check_every: 30d}\n  - {name: spare, model: bitbox02}\n",
    );
    let metrics = f.dir.join(metrics);
    let cfg = fs::read_to_string(&f.config)
        .unwrap()
        .replace("{METRICS}", metrics.to_str().unwrap());
    fs::write(&f.config, cfg).unwrap();

    // Never checked: configured keys are flagged, with the command to run.
    let (code, human, _) = status(&f, &[]);
    assert_eq!(code, 1);
    assert!(
        human.contains("never checked (`coldkeep bitbox02 backups check --name treasury`)"),
        "{human}"
    );

    let mine = this_wallet(&server);
    server.set(|d| d.card = Some(vec![mine]));
    let o = device(&f, &server, "check", "treasury", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    old_check(&f, "cold", "bitbox02", CheckResult::Found, 40);
    old_check(&f, "spare", "bitbox02", CheckResult::Found, 3);

    let (_, human, rows) = status(&f, &[]);
    assert!(human.contains("Hardware keys:"), "{human}");
    assert!(
        human.contains("BitBox02 'treasury': backup checked just now (on the card: "),
        "{human}"
    );
    assert!(
        human.contains("BitBox02 'spare': backup checked 3 days ago"),
        "{human}"
    );
    let t = row(&rows, "treasury");
    assert_eq!(t["ok"], true, "{t}");
    assert_eq!(t["hardware"]["last_check"]["result"], "found");
    assert_eq!(
        t["hardware"]["last_check"]["backup_id"],
        server.device().backup_id().unwrap()
    );
    assert_eq!(t["hardware"]["check_every_seconds"], 30 * 86_400);
    // check_every flags the one not checked in time; spare has none and no --max-age: fine.
    let c = row(&rows, "cold");
    assert_eq!(c["ok"], false);
    assert!(
        c["problems"][0]
            .as_str()
            .unwrap()
            .contains("last checked 40 days ago (must be checked every 30d)"),
        "{c}"
    );
    assert_eq!(row(&rows, "spare")["ok"], true);
    // --max-age judges those without check_every.
    let (code, _, rows) = status(&f, &["--max-age", "2d"]);
    assert_eq!(code, 1);
    assert_eq!(row(&rows, "spare")["ok"], false);
    assert_eq!(
        row(&rows, "treasury")["ok"],
        true,
        "check_every wins over --max-age"
    );

    // A check that finds nothing flags the key.
    server.set(|d| d.card = Some(vec![other_wallet()]));
    let o = device(&f, &server, "check", "treasury", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let (_, human, rows) = status(&f, &[]);
    assert!(
        human.contains("BitBox02 'treasury': backup checked just now (NOT on the card)"),
        "{human}"
    );
    assert!(
        row(&rows, "treasury")["problems"][0]
            .as_str()
            .unwrap()
            .contains("found: no backup of this wallet on the card"),
        "{rows:?}"
    );

    // The metrics file was rewritten by the check itself.
    let m = fs::read_to_string(&metrics).unwrap();
    assert!(
        m.contains("coldkeep_hardware_last_check_ok{device=\"treasury\",model=\"bitbox02\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("coldkeep_hardware_last_check_timestamp_seconds{device=\"cold\",model=\"bitbox02\"}"),
        "{m}"
    );
    assert!(m.contains("coldkeep_untrusted_device_checks 0"), "{m}");

    // Someone who can write the replica plants a "found" for cold: unsigned, never believed, and
    // status says so.
    let planted = f.replica().join(".coldkeep/device-checks/cold");
    let mut fake = DeviceCheck::new("cold", "bitbox02", "x".into(), CheckResult::Found);
    fake.backup_id = Some("ab".repeat(32));
    fs::write(
        planted.join(format!(
            "{}-00000000.check.json",
            fake.checked_at.format("%Y%m%dT%H%M%SZ")
        )),
        serde_json::to_vec_pretty(&fake).unwrap(),
    )
    .unwrap();
    let (_, _, rows) = status(&f, &[]);
    let c = row(&rows, "cold");
    let problems = c["problems"].to_string();
    assert!(problems.contains("last checked 40 days ago"), "{c}");
    assert!(
        problems.contains("without a valid signature, never believed"),
        "{c}"
    );
}

#[test]
fn onlykey_verifications_are_recorded_for_status() {
    let (f, _server) = rig("hardware:\n  - {name: ok1, model: onlykey, check_every: 90d}\n");
    let v: Value = serde_json::from_str(include_str!("../fixtures/onlykey/vectors.json")).unwrap();
    let case = |name: &str| {
        v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    let good = case("passphrase");
    let o = f.run_with_stdin(
        &["onlykey", "import", "-", "--name", "ok1"],
        good["text"].as_str().unwrap().as_bytes(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let pass = |c: &Value| {
        let p = f
            .dir
            .join(format!("secrets/{}.pass", c["name"].as_str().unwrap()));
        fs::write(&p, format!("{}\n", c["passphrase"].as_str().unwrap())).unwrap();
        p.to_str().unwrap().to_string()
    };
    let identity = f.age_identity.to_str().unwrap().to_string();
    let verify = |passfile: &str| {
        f.run(&[
            "onlykey",
            "verify",
            "--name",
            "ok1",
            "--identity",
            &identity,
            "--passphrase-file",
            passfile,
        ])
    };
    let (code, human, _) = status(&f, &[]);
    assert_eq!(code, 1, "never verified: {human}");
    assert!(
        human.contains("never checked (`coldkeep onlykey verify --name ok1 ...`)"),
        "{human}"
    );

    let o = verify(&pass(&good));
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(text(&o.stderr).contains("Recorded as check"), "{}", out(&o));
    let (code, human, rows) = status(&f, &[]);
    assert_eq!(code, 0, "{human}");
    assert!(
        human.contains("OnlyKey 'ok1': backup verified just now (opens: artifact "),
        "{human}"
    );
    assert_eq!(row(&rows, "ok1")["hardware"]["last_check"]["result"], "opens");

    let o = verify(&pass(&case("wrong_passphrase")));
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let (code, human, rows) = status(&f, &[]);
    assert_eq!(code, 1);
    assert!(
        human.contains("OnlyKey 'ok1': backup verified just now (DOES NOT OPEN)"),
        "{human}"
    );
    let p = row(&rows, "ok1")["problems"][0].as_str().unwrap().to_string();
    assert!(p.contains("the backup does not open ("), "{p}");
    assert!(!p.contains(good["passphrase"].as_str().unwrap()));
}

/// A hidraw node without the udev rule's access, opened by an unprivileged user (the real one the
/// tests use): the error says to install the rules and replug. A 0600 root file stands in for
/// `/dev/hidrawN`; the binary is copied where that user may run it.
#[test]
fn a_device_this_user_may_not_open_says_to_install_the_udev_rules() {
    let user = support::sudo::LOGIN_USER;
    coldkeep::testkit::sandbox::ensure_user(user).unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("coldkeep");
    fs::copy(env!("CARGO_BIN_EXE_coldkeep"), &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let hidraw = dir.path().join("hidraw7");
    fs::write(&hidraw, b"").unwrap();
    fs::set_permissions(&hidraw, fs::Permissions::from_mode(0o600)).unwrap();
    let o = std::process::Command::new("su")
        .args([user, "-s", "/bin/sh", "-c"])
        .arg(format!(
            "'{}' bitbox02 backups list --name t --device '{}'",
            bin.display(),
            hidraw.display()
        ))
        .env_remove("COLDKEEP_BITBOX02_SIMULATOR")
        .env_remove("COLDKEEP_BITBOX02_PAIRING")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let want = format!(
        "no permission to open {}: install the udev rules from the README (then unplug and replug",
        hidraw.display()
    );
    assert!(text(&o.stderr).contains(&want), "{}", out(&o));
}

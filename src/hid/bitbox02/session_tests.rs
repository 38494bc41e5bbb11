//! The host stack against the test kit's fake device, in process: golden first reports, pairing
//! (new, remembered, changed key refused, declined), the backup requests and the device's
//! refusals, BUSY and a password nobody enters.

use super::error::DeviceError;
use super::hww::Timing;
use super::pairing::Pairings;
use super::session::{self, Notice};
use crate::hid::{Report, Transport};
use crate::testkit::bitbox02_fake::{CardBackup, DeviceState, FakeBitBox02};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn timing() -> Timing {
    Timing {
        reply: Duration::from_millis(50),
        poll: Duration::from_millis(1),
        busy_wait: Duration::from_millis(1),
        busy_tries: 3,
        user: Duration::from_millis(200),
    }
}

const SEED: [u8; 32] = [7; 32];

/// A device, a pairing file in a temp dir, and what the session told the user.
struct Rig {
    device: Arc<Mutex<DeviceState>>,
    _dir: tempfile::TempDir,
    pairings: Pairings,
    notices: Vec<Notice>,
}

impl Rig {
    fn new(state: DeviceState) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let pairings = Pairings::load(&dir.path().join("pairing.json")).unwrap();
        Rig {
            device: Arc::new(Mutex::new(state)),
            _dir: dir,
            pairings,
            notices: Vec::new(),
        }
    }

    fn with<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut session::Session, &mut dyn FnMut(Notice)) -> Result<T, DeviceError>,
    ) -> Result<T, DeviceError> {
        let mut fake = FakeBitBox02::new(self.device.clone());
        let notices = &mut self.notices;
        let mut notice = |n: Notice| notices.push(n);
        let mut s = session::open(&mut fake, timing(), name, &mut self.pairings, &mut notice)?;
        f(&mut s, &mut notice)
    }

    fn device(&self) -> DeviceState {
        self.device.lock().unwrap().clone()
    }

    fn set(&self, f: impl FnOnce(&mut DeviceState)) {
        f(&mut self.device.lock().unwrap());
    }

    fn codes(&self) -> usize {
        self.notices
            .iter()
            .filter(|n| matches!(n, Notice::PairingCode { .. }))
            .count()
    }
}

fn card(state: &DeviceState) -> Vec<CardBackup> {
    vec![CardBackup {
        id: state.backup_id().unwrap(),
        name: "My BitBox".into(),
        timestamp: 1_601_281_809,
        intact: true,
    }]
}

#[test]
fn golden_first_reports() {
    // The host's first reports and the device's answers, byte for byte: `'i'` (no HWW status
    // byte), then `0x00 'u'` answered `0x00 0x00` (unlocked: ACK, success).
    let state = Arc::new(Mutex::new(DeviceState::new(Some(SEED))));
    state.lock().unwrap().locked = false;
    let mut fake = FakeBitBox02::new(state);
    let report = |bytes: &[u8]| -> Report {
        let mut r = [0u8; 64];
        r[..bytes.len()].copy_from_slice(bytes);
        r
    };
    fake.write(&report(&[0xff, 0, 0xff, 0, 0xc1, 0, 1, b'i']))
        .unwrap();
    let mut info = vec![0xff, 0, 0xff, 0, 0xc1, 0, 12, 7];
    info.extend_from_slice(b"v9.21.0");
    info.extend_from_slice(&[0, 0, 1, 1]);
    assert_eq!(fake.read(Duration::ZERO).unwrap(), Some(report(&info)));
    fake.write(&report(&[0xff, 0, 0xff, 0, 0xc1, 0, 2, 0x00, b'u']))
        .unwrap();
    assert_eq!(
        fake.read(Duration::ZERO).unwrap(),
        Some(report(&[0xff, 0, 0xff, 0, 0xc1, 0, 2, 0x00, 0x00]))
    );
    fake.write(&report(&[0xff, 0, 0xff, 0, 0xc1, 0, 2, 0x00, b'h']))
        .unwrap();
    assert_eq!(
        fake.read(Duration::ZERO).unwrap(),
        Some(report(&[0xff, 0, 0xff, 0, 0xc1, 0, 2, 0x00, 0x00]))
    );
    assert_eq!(fake.read(Duration::ZERO).unwrap(), None);
}

#[test]
fn pairing_new_then_remembered_then_a_changed_key_is_refused() {
    let mut rig = Rig::new(DeviceState::new(Some(SEED)));
    rig.set(|s| s.card = Some(card(s)));
    let id = rig
        .with("treasury", |s, n| {
            assert!(s.paired_now);
            s.check_backup(true, n)
        })
        .unwrap();
    assert_eq!(id, rig.device().backup_id());
    assert_eq!(rig.notices[0], Notice::EnterPassword);
    let Notice::PairingCode { code, first, .. } = &rig.notices[1] else {
        panic!("{:?}", rig.notices)
    };
    assert!(*first);
    assert_eq!(code.len(), 23, "XXXXX XXXXX / XXXXX XXXXX: {code}");
    assert!(rig.pairings.devices().contains_key("treasury"));

    // Remembered on both sides: no code the second time.
    rig.with("treasury", |s, _| {
        assert!(!s.paired_now);
        s.card_inserted()
    })
    .unwrap();
    assert_eq!(rig.codes(), 1);

    // The device forgot this host (but its key is the one remembered): the code again.
    rig.set(|s| s.paired_hosts.clear());
    rig.with("treasury", |s, _| s.card_inserted()).unwrap();
    assert_eq!(rig.codes(), 2);
    assert!(matches!(
        rig.notices.last(),
        Some(Notice::PairingCode { first: false, .. })
    ));

    // Another device under this name: refused before any request reaches it.
    rig.set(|s| {
        s.new_noise_key();
        s.seen.clear();
    });
    let e = rig.with("treasury", |s, _| s.card_inserted()).unwrap_err();
    assert!(matches!(e, DeviceError::KeyChanged { .. }), "{e}");
    let seen = rig.device().seen;
    assert_eq!(seen, ["info", "unlock", "handshake"], "no pairing, no request");
    // ... and that device under a new name is a new pairing.
    rig.with("spare", |s, _| s.card_inserted()).unwrap();
    let e = rig.with("treasury", |s, _| s.card_inserted()).unwrap_err();
    assert!(matches!(e, DeviceError::KeyChanged { .. }), "{e}");
}

#[test]
fn a_declined_pairing_is_not_remembered() {
    let mut rig = Rig::new(DeviceState::new(Some(SEED)));
    rig.set(|s| s.accept_pairing = false);
    let e = rig.with("treasury", |s, _| s.card_inserted()).unwrap_err();
    assert!(matches!(e, DeviceError::PairingRejected), "{e}");
    assert!(rig.pairings.devices().is_empty());
    assert!(!rig.device().seen.contains(&"check_sdcard".to_string()));
}

#[test]
fn backups_listed_checked_created() {
    let mut rig = Rig::new(DeviceState::new(Some(SEED)));
    let other = CardBackup {
        id: "ab".repeat(32),
        name: "Old wallet".into(),
        timestamp: 1_500_000_000,
        intact: true,
    };
    rig.set(|s| s.card = Some(vec![other.clone()]));
    let (listed, found) = rig
        .with("t", |s, n| Ok((s.list_backups()?, s.check_backup(true, n)?)))
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id.as_str(), listed[0].name.as_str()),
        (other.id.as_str(), "Old wallet")
    );
    assert_eq!(found, None, "another wallet's backup is not this one's");

    rig.with("t", |s, n| s.create_backup(1_700_000_000, 3600, n))
        .unwrap();
    let d = rig.device();
    let made = d
        .card
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.id == d.backup_id().unwrap())
        .unwrap();
    assert_eq!((made.timestamp, made.name.as_str()), (1_700_000_000, "My BitBox"));
    let found = rig.with("t", |s, n| s.check_backup(false, n)).unwrap();
    assert_eq!(found, d.backup_id());
    assert!(d.seen.contains(&"create_backup 1700000000".to_string()));
    assert!(
        rig.notices
            .iter()
            .any(|n| matches!(n, Notice::ConfirmOnDevice(_)))
    );

    // A damaged copy of this wallet's backup is not a backup.
    rig.set(|s| s.card.as_mut().unwrap().iter_mut().for_each(|c| c.intact = false));
    assert_eq!(rig.with("t", |s, n| s.check_backup(true, n)).unwrap(), None);
}

#[test]
fn refusals_in_the_devices_words() {
    let mut rig = Rig::new(DeviceState::new(Some(SEED)));
    // No card: check answers 101, which means exactly that.
    let e = rig.with("t", |s, n| s.check_backup(true, n)).unwrap_err();
    assert!(matches!(e, DeviceError::NoCard), "{e}");
    assert!(!rig.with("t", |s, _| s.card_inserted()).unwrap());

    // Cancelled on the device.
    rig.set(|s| {
        s.card = Some(Vec::new());
        s.abort_next = true;
    });
    let e = rig.with("t", |s, n| s.create_backup(1, 0, n)).unwrap_err();
    assert!(e.to_string().contains("\"aborted by the user\""), "{e}");
    assert!(rig.device().card.unwrap().is_empty());

    // Not set up: unlock says so, create is refused in the device's words.
    let mut blank = Rig::new(DeviceState::new(None));
    blank.set(|s| s.card = Some(Vec::new()));
    let e = blank
        .with("b", |s, n| {
            assert!(!s.set_up);
            s.create_backup(1, 0, n)
        })
        .unwrap_err();
    assert!(matches!(e, DeviceError::NotSetUp(_)), "{e}");
    assert!(
        e.to_string().contains("can't call this endpoint: wrong state"),
        "{e}"
    );
    assert!(!blank.notices.contains(&Notice::EnterPassword));
}

#[test]
fn locked_busy_and_old_firmware() {
    let mut rig = Rig::new(DeviceState::new(Some(SEED)));
    rig.set(|s| s.password_polls = None);
    let e = rig.with("t", |s, _| s.card_inserted()).unwrap_err();
    assert!(matches!(e, DeviceError::Locked(_)), "{e}");
    assert!(e.to_string().contains("enter its password on the device"), "{e}");

    let mut rig = Rig::new(DeviceState::new(Some(SEED)));
    rig.set(|s| s.busy_next = 2);
    rig.with("t", |s, _| s.card_inserted()).unwrap();
    rig.set(|s| s.busy_next = 10);
    let e = rig.with("t", |s, _| s.card_inserted()).unwrap_err();
    assert!(matches!(e, DeviceError::Busy), "{e}");
    assert!(e.to_string().contains("BitBoxApp"), "{e}");

    rig.set(|s| {
        s.busy_next = 0;
        s.firmware = "6.3.0".into();
    });
    let e = rig.with("t", |s, _| s.card_inserted()).unwrap_err();
    assert!(matches!(e, DeviceError::OldFirmware(_)), "{e}");
}

/// A hostile device answers a check with an id that is no backup id (multibyte, an escape): a
/// protocol error, never a "found" to print, record or slice.
#[test]
fn a_check_answer_that_is_not_a_backup_id_is_refused() {
    let mut rig = Rig::new(DeviceState::new(Some(SEED)));
    rig.set(|s| s.card = Some(card(s)));
    for forged in [
        "é".repeat(9),
        "\x1b[2J".into(),
        "AB".repeat(32),
        "ab".repeat(33),
        String::new(),
    ] {
        rig.set(|s| s.forged_check_id = Some(forged.clone()));
        let e = rig.with("t", |s, n| s.check_backup(true, n)).unwrap_err();
        assert!(matches!(e, DeviceError::Protocol(_)), "{forged:?}: {e}");
        assert!(!e.to_string().contains('\x1b'), "{e}");
    }
    rig.set(|s| s.forged_check_id = Some("ab".repeat(32)));
    let id = rig.with("t", |s, n| s.check_backup(true, n)).unwrap();
    assert_eq!(id, Some("ab".repeat(32)), "a well-formed id passes this layer");
}

/// Reports as they cross the wire: `true` for the host's.
struct Recorder<'a> {
    inner: &'a mut dyn Transport,
    log: Vec<(bool, Report)>,
}

impl Transport for Recorder<'_> {
    fn write(&mut self, report: &Report) -> Result<(), crate::hid::HidError> {
        self.log.push((true, *report));
        self.inner.write(report)
    }

    fn read(&mut self, timeout: Duration) -> Result<Option<Report>, crate::hid::HidError> {
        let r = self.inner.read(timeout)?;
        if let Some(r) = r {
            self.log.push((false, r));
        }
        Ok(r)
    }
}

/// The reports of the exchange whose host message starts with `0x00 op`: the host's, then the
/// device's answer.
fn exchange(log: &[(bool, Report)], op: u8, nth: usize) -> (Vec<Report>, Vec<Report>) {
    let start = log
        .iter()
        .enumerate()
        .filter(|(_, (host, r))| *host && r[4] == 0xc1 && r[7..9] == [0x00, op])
        .nth(nth)
        .unwrap_or_else(|| panic!("no exchange {nth} of {:?}", op as char))
        .0;
    let host: Vec<Report> = log[start..]
        .iter()
        .take_while(|(h, _)| *h)
        .map(|(_, r)| *r)
        .collect();
    let device = log[start + host.len()..]
        .iter()
        .take_while(|(h, _)| !*h)
        .map(|(_, r)| *r)
        .collect();
    (host, device)
}

/// The parts of a report that do not depend on keys: its first `head` bytes, and zeros after
/// `end`.
fn golden(r: &Report, head: &[u8], end: usize) {
    assert_eq!(&r[..head.len()], head, "{r:02x?}");
    assert!(
        r[end..].iter().all(|&b| b == 0),
        "zero-padded after {end}: {r:02x?}"
    );
    assert!(
        r[head.len()..end].iter().any(|&b| b != 0),
        "key or ciphertext bytes: {r:02x?}"
    );
}

/// The handshake's `'H'` exchanges and one `'n'` request, byte for byte where the bytes do not
/// depend on keys: the firmware's framing, HWW status, op status and Noise XX message sizes
/// (`e` 32; `e, ee, s, es` 32 + 48 + 16; `s, se` 48 + 16; a transport message plus its 16-byte
/// tag), and the answer to `ListBackupsRequest` on an empty card, which the firmware's own
/// `test_noise` (`hww.rs`) expects: `ListBackupsResponse { info: [] }`.
#[test]
fn golden_handshake_and_request_reports() {
    let state = Arc::new(Mutex::new(DeviceState::new(Some(SEED))));
    state.lock().unwrap().locked = false;
    state.lock().unwrap().card = Some(Vec::new());
    let mut fake = FakeBitBox02::new(state);
    let mut rec = Recorder {
        inner: &mut fake,
        log: Vec::new(),
    };
    let mut hww = super::hww::Hww::new(&mut rec, timing());
    let host_key = super::noise::new_host_key();
    let shake = super::noise::handshake(&mut hww, &host_key).unwrap();
    assert!(shake.device_wants_pairing);
    shake.confirm_pairing(&mut hww).unwrap();
    let mut channel = shake.into_channel();
    let listed = super::requests::list_backups(&mut channel, &mut hww).unwrap();
    assert!(listed.is_empty());
    let log = rec.log;
    const H: [u8; 4] = [0xff, 0x00, 0xff, 0x00];
    let cat = |a: &[u8], b: &[u8]| [a, b].concat();

    // Host: 0x00 'H' + e (34 bytes). Device: ACK, success, then e, s, payload tag (98 bytes).
    let (host, device) = exchange(&log, b'H', 0);
    assert_eq!((host.len(), device.len()), (1, 2));
    golden(&host[0], &cat(&H, &[0xc1, 0x00, 34, 0x00, b'H']), 7 + 34);
    golden(&device[0], &cat(&H, &[0xc1, 0x00, 98, 0x00, 0x00]), 64);
    golden(&device[1], &cat(&H, &[0x00]), 5 + 98 - 57);

    // Host: 0x00 'H' + s, payload tag (66 bytes). Device: ACK, success, 1 (confirm the code).
    let (host, device) = exchange(&log, b'H', 1);
    assert_eq!((host.len(), device.len()), (2, 1));
    golden(&host[0], &cat(&H, &[0xc1, 0x00, 66, 0x00, b'H']), 64);
    golden(&host[1], &cat(&H, &[0x00]), 5 + 66 - 57);
    let mut answer = [0u8; 64];
    answer[..10].copy_from_slice(&cat(&H, &[0xc1, 0x00, 3, 0x00, 0x00, 0x01]));
    assert_eq!(device[0], answer);

    // Host: 0x00 'n' + ListBackupsRequest (2 bytes) sealed (18). Device: ACK, success, the
    // response (2 bytes: 0x3a 0x00) sealed (18).
    let (host, device) = exchange(&log, b'n', 0);
    assert_eq!((host.len(), device.len()), (1, 1));
    golden(&host[0], &cat(&H, &[0xc1, 0x00, 20, 0x00, b'n']), 7 + 20);
    golden(&device[0], &cat(&H, &[0xc1, 0x00, 20, 0x00, 0x00]), 7 + 20);
    assert_ne!(host[0][9..11], [0x7a, 0x00], "sealed, not plain");
}

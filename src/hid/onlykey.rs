//! OnlyKey: device matching and the OKRESTORE protocol.
//!
//! Restore sends the backup payload in 57-byte chunks, one 64-byte report each:
//! `FF FF FF FF F1 <FF while more follow, else the last chunk's length> <57 data bytes> <pad>`,
//! paced (the firmware has no per-report acknowledgement and copies slowly), then waits for the
//! device's ASCII reply. Stale replies still queued from earlier commands are drained first, so
//! they are not taken for this restore's answer. The firmware keeps a partial transfer until it
//! restarts, so an interrupted restore must be followed by an unplug and replug.

use super::{Capabilities, DeviceInfo, HardwareKey, HidError, REPORT_SIZE, Report, Transport, report_text};
use crate::material::onlykey::LINE_BYTES;
use std::time::{Duration, Instant};

/// OnlyKey USB ids: current firmware, and firmware before Beta 7 (Teensy ids).
pub const IDS: [(u16, u16); 2] = [(0x1d50, 0x60fc), (0x16c0, 0x0486)];
/// The vendor interface on current firmware.
pub const USAGE_PAGE_VENDOR: u16 = 0xffab;
/// The FIDO interface, which carried the vendor protocol on old firmware.
pub const USAGE_PAGE_FIDO: u16 = 0xf1d0;
/// OKRESTORE message id.
pub const OKRESTORE: u8 = 0xf1;
/// How to enter config mode on each model.
pub const CONFIG_MODE: &str =
    "hold button 6 for 5 seconds (OnlyKey DUO: a long hold of button 1), then re-enter the PIN";
/// Reports drained at most before a restore (the firmware queues a few; more means a chatty device).
const MAX_STALE: usize = 32;

/// The OnlyKey model.
pub struct OnlyKey;

impl HardwareKey for OnlyKey {
    fn model(&self) -> &'static str {
        "OnlyKey"
    }

    fn ids(&self) -> &'static [(u16, u16)] {
        &IDS
    }

    fn matches(&self, d: &DeviceInfo) -> bool {
        IDS.contains(&(d.vendor_id, d.product_id))
            && (d.usage_page == USAGE_PAGE_VENDOR
                || d.interface == 2
                || d.usage_page == USAGE_PAGE_FIDO
                || d.interface == 1)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            backup: "the typed backup text (onlykey import / capture)",
            restore: "OKRESTORE over the vendor interface (onlykey restore)",
        }
    }

    /// python-onlykey's rule: serial `1000000000` (current firmware) talks on usage page 0xFFAB
    /// (interface 2), anything else on 0xF1D0 (interface 1). Falls back to whichever is present.
    fn select<'a>(&self, interfaces: &'a [DeviceInfo]) -> Option<&'a DeviceInfo> {
        let mine: Vec<&DeviceInfo> = interfaces
            .iter()
            .filter(|d| IDS.contains(&(d.vendor_id, d.product_id)))
            .collect();
        let vendor = mine
            .iter()
            .find(|d| d.usage_page == USAGE_PAGE_VENDOR || d.interface == 2);
        let fido = mine
            .iter()
            .find(|d| d.usage_page == USAGE_PAGE_FIDO || d.interface == 1);
        let current = mine.iter().any(|d| d.serial.as_deref() == Some("1000000000"));
        if current {
            vendor.or(fido).copied()
        } else {
            fido.or(vendor).copied()
        }
    }
}

/// The OKRESTORE reports for a payload, in order.
pub fn restore_frames(payload: &[u8]) -> Vec<Report> {
    let chunks: Vec<&[u8]> = payload.chunks(LINE_BYTES).collect();
    let last = chunks.len().saturating_sub(1);
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut r = [0u8; REPORT_SIZE];
            r[..4].copy_from_slice(&[0xff; 4]);
            r[4] = OKRESTORE;
            r[5] = if i == last { chunk.len() as u8 } else { 0xff };
            r[6..6 + chunk.len()].copy_from_slice(chunk);
            r
        })
        .collect()
}

/// What the device answered, with advice for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The backup was loaded.
    Loaded,
    /// No PIN is set on the device.
    NoPin,
    /// The device is not in config mode.
    NotConfigMode,
    /// The device is locked.
    Locked,
    /// The device has no backup key.
    NoBackupKey,
    /// The backup key has another type.
    KeyTypeMismatch,
    /// The backup was made with another backup key.
    WrongBackupKey,
    /// The device rejected the backup's format.
    BadFormat,
    /// The backup is too large for the device.
    TooLarge,
}

/// Reply strings the firmware sends, in match order.
const REPLIES: &[(&str, Reply)] = &[
    ("Successfully loaded backup", Reply::Loaded),
    ("No PIN set", Reply::NoPin),
    ("Error not in config mode", Reply::NotConfigMode),
    ("Error device locked", Reply::Locked),
    ("Error no backup key set", Reply::NoBackupKey),
    (
        "Error key type used for backup does not match",
        Reply::KeyTypeMismatch,
    ),
    ("Error incorrect backup key set", Reply::WrongBackupKey),
    (
        "Error key configuration backup file format incorrect",
        Reply::BadFormat,
    ),
    ("Error backup file too large", Reply::TooLarge),
];

impl Reply {
    /// Recognises a reply text.
    pub fn parse(text: &str) -> Option<Reply> {
        REPLIES
            .iter()
            .find(|(s, _)| text.contains(s))
            .map(|(_, r)| r.clone())
    }

    /// What happened and what to do, for the operator.
    pub fn advice(&self) -> &'static str {
        match self {
            Reply::Loaded => "the backup was loaded; remove and reinsert the OnlyKey to complete the restore",
            Reply::NoPin => "the OnlyKey has no PIN yet: set it up (PIN) first, then restore",
            Reply::NotConfigMode => {
                "the OnlyKey is not in config mode: unlock it, hold button 6 for 5 seconds (OnlyKey DUO: a \
                 long hold of button 1), re-enter the PIN, then restore again"
            }
            Reply::Locked => {
                "the OnlyKey is locked: enter the PIN, put it in config mode, then restore again"
            }
            Reply::NoBackupKey => {
                "no backup key or passphrase is set on the OnlyKey: set the same backup passphrase (or key) \
                 the backup was made with, then restore again"
            }
            Reply::KeyTypeMismatch => {
                "the backup was made with another kind of backup key (ECC/passphrase vs RSA) than the one set \
                 on the device: set the same kind"
            }
            Reply::WrongBackupKey => {
                "the backup key or passphrase on the device is not the one the backup was made with"
            }
            Reply::BadFormat => {
                "the device could not read the backup records (damaged or from another firmware)"
            }
            Reply::TooLarge => "the backup is larger than the device accepts (18,000 bytes)",
        }
    }
}

/// Why a restore did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The device answered with an error string.
    #[error("the device refused the restore ({text}): {advice}")]
    Refused {
        /// The device's reply.
        text: String,
        /// What to do.
        advice: &'static str,
    },
    /// No verdict after the last report.
    #[error(
        "the device did not answer within {secs}s after the last report: is it unlocked, in config mode \
         (hold button 6 for 5 s, OnlyKey DUO: a long hold of button 1; re-enter the PIN), and the right \
         interface? Unplug and replug it before retrying: it keeps a partial transfer until it restarts"
    )]
    NoReply {
        /// How long we waited.
        secs: u64,
    },
    /// Some reports reached the device, then I/O failed: its buffer now holds a partial backup.
    #[error(
        "the transfer was interrupted after {sent} of {total} reports ({source}): unplug and replug the \
         OnlyKey before retrying, it keeps the partial transfer until it restarts"
    )]
    Interrupted {
        /// Reports written.
        sent: usize,
        /// Reports in the whole transfer.
        total: usize,
        /// The I/O failure.
        source: HidError,
    },
    /// Stale reports never stopped coming.
    #[error("the device keeps sending reports ({MAX_STALE} drained): unplug and replug it, then retry")]
    Chatty,
    /// I/O failed before anything was sent.
    #[error(transparent)]
    Hid(#[from] HidError),
}

/// Timing of a restore.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Pause after every report (the OnlyKey App uses 100 ms).
    pub between_reports: Duration,
    /// How long to wait for the final reply.
    pub reply_timeout: Duration,
}

impl Default for Pacing {
    fn default() -> Pacing {
        Pacing {
            between_reports: Duration::from_millis(100),
            reply_timeout: Duration::from_secs(15),
        }
    }
}

/// Sends the payload as OKRESTORE reports and waits for the device's verdict. An error reply
/// that arrives while sending stops the transfer at once. Unknown replies are logged and skipped.
pub fn restore(t: &mut dyn Transport, payload: &[u8], pacing: Pacing) -> Result<&'static str, RestoreError> {
    let stale = drain(t)?;
    if stale > 0 {
        tracing::info!(stale, "discarded stale device replies before the restore");
    }
    let frames = restore_frames(payload);
    let total = frames.len();
    let interrupted = |sent: usize| {
        move |source: HidError| {
            if sent == 0 {
                RestoreError::Hid(source)
            } else {
                RestoreError::Interrupted { sent, total, source }
            }
        }
    };
    for (i, frame) in frames.iter().enumerate() {
        t.write(frame).map_err(interrupted(i))?;
        std::thread::sleep(pacing.between_reports);
        if i + 1 < total
            && let Some(reply) = t.read(Duration::ZERO).map_err(interrupted(i + 1))?
        {
            verdict(&report_text(&reply))?;
        }
    }
    let deadline = Instant::now() + pacing.reply_timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(reply) = t.read(left)? else {
            if left.is_zero() || pacing.reply_timeout.is_zero() {
                return Err(RestoreError::NoReply {
                    secs: pacing.reply_timeout.as_secs(),
                });
            }
            continue;
        };
        if let Some(done) = verdict(&report_text(&reply))? {
            return Ok(done);
        }
    }
}

/// Reads and discards replies already queued (answers to earlier commands); returns how many.
fn drain(t: &mut dyn Transport) -> Result<usize, RestoreError> {
    for n in 0..MAX_STALE {
        if t.read(Duration::ZERO)?.is_none() {
            return Ok(n);
        }
    }
    Err(RestoreError::Chatty)
}

/// `Ok(Some)` on success, `Err` on a known error reply, `Ok(None)` for anything else.
fn verdict(text: &str) -> Result<Option<&'static str>, RestoreError> {
    match Reply::parse(text) {
        Some(Reply::Loaded) => Ok(Some(Reply::Loaded.advice())),
        Some(other) => Err(RestoreError::Refused {
            text: text.to_string(),
            advice: other.advice(),
        }),
        None => {
            if !text.is_empty() {
                tracing::info!(reply = %text, "device message");
            }
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::hid_fake::{ScriptedTransport, Step};

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    /// A frame written out by hand: header, then `data`, zero padding.
    fn golden(header: u8, data: &[u8]) -> Report {
        let mut hex = String::from("fffffffff1");
        hex.push_str(&format!("{header:02x}"));
        hex.push_str(&hex::encode(data));
        while hex.len() < 128 {
            hex.push_str("00");
        }
        hex::decode(hex).unwrap().try_into().unwrap()
    }

    #[test]
    fn golden_frames() {
        let p = payload(114);
        assert_eq!(restore_frames(&p[..1]), vec![golden(0x01, &p[..1])]);
        assert_eq!(restore_frames(&p[..56]), vec![golden(0x38, &p[..56])]);
        assert_eq!(restore_frames(&p[..57]), vec![golden(0x39, &p[..57])]);
        assert_eq!(
            restore_frames(&p[..58]),
            vec![golden(0xff, &p[..57]), golden(0x01, &p[57..58])]
        );
        assert_eq!(
            restore_frames(&p[..114]),
            vec![golden(0xff, &p[..57]), golden(0x39, &p[57..114])]
        );
        // The first frame of a 1-byte payload, byte for byte.
        assert_eq!(
            hex::encode(restore_frames(&[0xab])[0]),
            format!("fffffffff101ab{}", "00".repeat(57))
        );
        let big = payload(18_000);
        let frames = restore_frames(&big);
        assert_eq!(frames.len(), 316);
        assert!(frames[..315].iter().all(|f| f[5] == 0xff && f[63] == 0));
        assert_eq!(frames[315], golden(45, &big[315 * 57..]));
        let joined: Vec<u8> = frames
            .iter()
            .flat_map(|f| {
                let n = if f[5] == 0xff { 57 } else { f[5] as usize };
                f[6..6 + n].to_vec()
            })
            .collect();
        assert_eq!(joined, big);
    }

    fn no_pause() -> Pacing {
        Pacing {
            between_reports: Duration::ZERO,
            reply_timeout: Duration::ZERO,
        }
    }

    #[test]
    fn a_restore_sends_every_frame_then_reads_the_verdict() {
        for n in [1, 56, 57, 58, 114, 18_000] {
            let p = payload(n);
            let mut steps: Vec<Step> = restore_frames(&p).into_iter().map(Step::Expect).collect();
            steps.push(Step::Reply(ScriptedTransport::text_reply(
                "Successfully loaded backup",
            )));
            let mut t = ScriptedTransport::new(steps);
            let done = restore(&mut t, &p, no_pause()).unwrap();
            assert!(done.contains("reinsert"), "{n}");
            assert_eq!(t.remaining(), 0, "{n}");
            assert!(t.mismatch.is_none());
        }
    }

    #[test]
    fn every_reply_maps_to_an_outcome() {
        for (text, reply) in REPLIES {
            assert_eq!(Reply::parse(text).as_ref(), Some(reply));
            let p = payload(10);
            let mut steps: Vec<Step> = restore_frames(&p).into_iter().map(Step::Expect).collect();
            steps.push(Step::Reply(ScriptedTransport::text_reply(text)));
            let result = restore(&mut ScriptedTransport::new(steps), &p, no_pause());
            match reply {
                Reply::Loaded => assert!(result.is_ok()),
                _ => {
                    let e = result.unwrap_err().to_string();
                    assert!(e.contains(text) && e.contains(reply.advice()), "{e}");
                }
            }
        }
        assert_eq!(Reply::parse("something else"), None);
    }

    #[test]
    fn an_early_error_stops_the_transfer() {
        let p = payload(200);
        let frames = restore_frames(&p);
        let steps = vec![
            Step::Expect(frames[0]),
            Step::Reply(ScriptedTransport::text_reply("Error not in config mode")),
        ];
        let mut t = ScriptedTransport::new(steps);
        let e = restore(&mut t, &p, no_pause()).unwrap_err();
        assert!(e.to_string().contains("hold button 6"), "{e}");
        assert_eq!(t.written(), 1, "no further frames after the refusal");
    }

    #[test]
    fn stale_replies_are_drained_before_the_first_frame() {
        let p = payload(130);
        let mut steps = vec![
            // Left over from earlier commands: without the drain, the first would stop the restore.
            Step::Reply(ScriptedTransport::text_reply("Error incorrect backup key set")),
            Step::Reply(ScriptedTransport::text_reply("INITIALIZED")),
        ];
        steps.extend(restore_frames(&p).into_iter().map(Step::Expect));
        steps.push(Step::Reply(ScriptedTransport::text_reply(
            "Successfully loaded backup",
        )));
        let mut t = ScriptedTransport::new(steps);
        assert!(restore(&mut t, &p, no_pause()).is_ok());
        assert_eq!(t.remaining(), 0);
        // A device that never stops talking is not waited on forever.
        let chatty = vec![Step::Reply(ScriptedTransport::text_reply("x")); MAX_STALE + 1];
        let e = restore(&mut ScriptedTransport::new(chatty), &p, no_pause()).unwrap_err();
        assert!(matches!(e, RestoreError::Chatty), "{e}");
    }

    #[test]
    fn an_interrupted_transfer_says_to_replug() {
        let p = payload(200);
        let frames = restore_frames(&p);
        let steps = vec![Step::Expect(frames[0]), Step::Expect(frames[1]), Step::WriteFails];
        let mut t = ScriptedTransport::new(steps);
        let e = restore(&mut t, &p, no_pause()).unwrap_err();
        assert!(
            matches!(
                e,
                RestoreError::Interrupted {
                    sent: 2,
                    total: 4,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("unplug and replug"), "{e}");
        // Failing on the very first report: nothing reached the device, no replug needed.
        let e = restore(
            &mut ScriptedTransport::new(vec![Step::WriteFails]),
            &p,
            no_pause(),
        )
        .unwrap_err();
        assert!(matches!(e, RestoreError::Hid(_)), "{e}");
        // No answer at all: the advice includes the replug and both models' config mode.
        let mut steps: Vec<Step> = frames.iter().copied().map(Step::Expect).collect();
        steps.push(Step::Reply(ScriptedTransport::text_reply("")));
        let e = restore(&mut ScriptedTransport::new(steps), &p, no_pause()).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("replug") && e.contains("DUO"), "{e}");
        assert!(Reply::NotConfigMode.advice().contains("DUO"));
    }

    #[test]
    fn a_silent_device_times_out_and_unknown_messages_are_skipped() {
        let p = payload(60);
        let mut steps: Vec<Step> = restore_frames(&p).into_iter().map(Step::Expect).collect();
        steps.push(Step::Reply(ScriptedTransport::text_reply("INITIALIZED")));
        let e = restore(&mut ScriptedTransport::new(steps), &p, no_pause()).unwrap_err();
        assert!(matches!(e, RestoreError::NoReply { .. }), "{e}");
    }

    #[test]
    fn interface_selection_follows_the_serial_rule() {
        let dev = |interface, usage_page, serial: &str| DeviceInfo {
            vendor_id: 0x1d50,
            product_id: 0x60fc,
            interface,
            usage_page,
            usage: 1,
            path: format!("/dev/hidraw{interface}"),
            serial: Some(serial.into()),
            product: Some("ONLYKEY".into()),
        };
        let current = [
            dev(0, 1, "1000000000"),
            dev(1, 0xf1d0, "1000000000"),
            dev(2, 0xffab, "1000000000"),
        ];
        assert_eq!(OnlyKey.select(&current).unwrap().interface, 2);
        let old = [dev(0, 1, "123"), dev(1, 0xf1d0, "123"), dev(2, 0xffab, "123")];
        assert_eq!(OnlyKey.select(&old).unwrap().interface, 1);
        let only_vendor = [dev(2, 0xffab, "123")];
        assert_eq!(OnlyKey.select(&only_vendor).unwrap().interface, 2);
        assert!(!OnlyKey.matches(&DeviceInfo {
            vendor_id: 0x03eb,
            ..dev(2, 0xffab, "1")
        }));
    }
}

//! U2F-HID framing: one message in 64-byte reports, both ways (host and the test kit's device).
//!
//! An initial report is `CID (4, BE) | CMD (1) | LEN (2, BE) | 57 data bytes`, each continuation
//! `CID (4) | SEQ (1, 0..=127) | 59 data bytes`, zero-padded. The CID is fixed at `ff00ff00` (no
//! channel allocation) and CMD is `0xc1`, the firmware's `HWW_CMD` (bitbox-api-rs
//! `src/u2fframing.rs`, firmware `src/usb/usb_frame.c`); the device answers a framing problem
//! with CMD `0xbf` (`FRAME_ERROR`) and one error byte (firmware `src/usb/usb_frame.h`).

use super::error::DeviceError;
use crate::hid::{REPORT_SIZE, Report, Transport};
use std::time::{Duration, Instant};

/// The channel id every BitBox02 client uses.
pub const CID: u32 = 0xff00_ff00;
/// The hardware-wallet command (`0x80 | 0x40 | 0x01`).
pub const HWW_CMD: u8 = 0xc1;
/// A framing error answer (`FRAME_ERROR`).
pub const ERROR_CMD: u8 = 0xbf;
/// `FRAME_ERR_CHANNEL_BUSY`: another client's message is being received.
pub const ERR_CHANNEL_BUSY: u8 = 0x06;
const INIT_DATA: usize = REPORT_SIZE - 7;
const CONT_DATA: usize = REPORT_SIZE - 5;
/// The largest message: an initial report and 128 continuations (7,609 bytes).
pub const MAX_MESSAGE: usize = INIT_DATA + 128 * CONT_DATA;

/// One message, reassembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `HWW_CMD`, or `ERROR_CMD` for a framing error.
    pub cmd: u8,
    /// The payload.
    pub data: Vec<u8>,
}

/// Cuts `msg` into reports.
pub fn encode(cmd: u8, msg: &[u8]) -> Result<Vec<Report>, DeviceError> {
    if msg.len() > MAX_MESSAGE {
        return Err(DeviceError::Framing(format!(
            "a message of {} bytes is over the {MAX_MESSAGE}-byte frame limit",
            msg.len()
        )));
    }
    let mut reports = Vec::new();
    let mut first = [0u8; REPORT_SIZE];
    first[..4].copy_from_slice(&CID.to_be_bytes());
    first[4] = cmd;
    first[5..7].copy_from_slice(&(msg.len() as u16).to_be_bytes());
    let n = msg.len().min(INIT_DATA);
    first[7..7 + n].copy_from_slice(&msg[..n]);
    reports.push(first);
    for (seq, chunk) in msg[n..].chunks(CONT_DATA).enumerate() {
        let mut r = [0u8; REPORT_SIZE];
        r[..4].copy_from_slice(&CID.to_be_bytes());
        r[4] = seq as u8;
        r[5..5 + chunk.len()].copy_from_slice(chunk);
        reports.push(r);
    }
    Ok(reports)
}

/// Reassembles one message from reports as they arrive.
#[derive(Debug, Default)]
pub struct Decoder {
    cmd: u8,
    want: usize,
    data: Vec<u8>,
    next_seq: u8,
    started: bool,
}

impl Decoder {
    /// Takes one report; `Some` once the message is complete.
    pub fn push(&mut self, report: &Report) -> Result<Option<Message>, DeviceError> {
        let cid = u32::from_be_bytes([report[0], report[1], report[2], report[3]]);
        if cid != CID {
            return Err(DeviceError::Framing(format!(
                "a report on channel {cid:08x}, expected {CID:08x}"
            )));
        }
        if report[4] & 0x80 != 0 {
            // An initial report starts a message; one in the middle of a message is an error (a
            // peer restarting the message forever would keep a read going forever).
            if self.started {
                return Err(DeviceError::Framing(
                    "a new message started before the last one was complete".into(),
                ));
            }
            self.cmd = report[4];
            self.want = usize::from(u16::from_be_bytes([report[5], report[6]]));
            if self.want > MAX_MESSAGE {
                return Err(DeviceError::Framing(format!(
                    "a message announced at {} bytes",
                    self.want
                )));
            }
            self.data = report[7..7 + self.want.min(INIT_DATA)].to_vec();
            self.next_seq = 0;
            self.started = true;
        } else {
            if !self.started {
                return Err(DeviceError::Framing(
                    "a continuation report without a start".into(),
                ));
            }
            if report[4] != self.next_seq {
                return Err(DeviceError::Framing(format!(
                    "continuation report {} where {} was due",
                    report[4], self.next_seq
                )));
            }
            let n = (self.want - self.data.len()).min(CONT_DATA);
            self.data.extend_from_slice(&report[5..5 + n]);
            self.next_seq += 1;
        }
        if self.data.len() < self.want {
            return Ok(None);
        }
        self.started = false;
        Ok(Some(Message {
            cmd: self.cmd,
            data: std::mem::take(&mut self.data),
        }))
    }
}

/// Writes one message as reports.
pub fn write_message(t: &mut dyn Transport, cmd: u8, msg: &[u8]) -> Result<(), DeviceError> {
    for report in encode(cmd, msg)? {
        t.write(&report)?;
    }
    Ok(())
}

/// Reads one message within `timeout`, all its reports: the device sends them back to back, so
/// a peer that drips them (or never ends a message) cannot keep a read going past it.
pub fn read_message(t: &mut dyn Transport, timeout: Duration) -> Result<Message, DeviceError> {
    let deadline = Instant::now() + timeout;
    let mut decoder = Decoder::default();
    let mut reports = 0;
    loop {
        // Past the deadline, only reports already there are taken (a message has at most 129).
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(report) = t.read(left)? else {
            return Err(if reports == 0 {
                DeviceError::NoAnswer(timeout)
            } else {
                DeviceError::Framing(format!(
                    "an answer still incomplete after {reports} reports and {}s",
                    timeout.as_secs_f32()
                ))
            });
        };
        reports += 1;
        if let Some(m) = decoder.push(&report)? {
            return Ok(m);
        }
    }
}

/// Sends `msg` and returns the HWW answer; a framing error answer is an error.
pub fn query(t: &mut dyn Transport, msg: &[u8], timeout: Duration) -> Result<Vec<u8>, DeviceError> {
    write_message(t, HWW_CMD, msg)?;
    let answer = read_message(t, timeout)?;
    match answer.cmd {
        HWW_CMD => Ok(answer.data),
        ERROR_CMD if answer.data.first() == Some(&ERR_CHANNEL_BUSY) => Err(DeviceError::Busy),
        ERROR_CMD => Err(DeviceError::Framing(format!(
            "framing error {:#04x}",
            answer.data.first().copied().unwrap_or(0)
        ))),
        other => Err(DeviceError::Framing(format!(
            "command {other:#04x} in the answer"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden reports, written out by hand from the layout above (and bitbox-api-rs's own framing
    /// tests, `src/u2fframing.rs`, which use the same layout with another CID).
    #[test]
    fn one_report_and_many() {
        let r = encode(HWW_CMD, b"i").unwrap();
        assert_eq!(r.len(), 1);
        let mut want = [0u8; 64];
        want[..8].copy_from_slice(&[0xff, 0x00, 0xff, 0x00, 0xc1, 0x00, 0x01, b'i']);
        assert_eq!(r[0], want);

        let payload: Vec<u8> = (0..=200u8).collect();
        let r = encode(HWW_CMD, &payload).unwrap();
        assert_eq!(r.len(), 4, "57 + 59 + 59 + 26");
        assert_eq!(&r[0][..7], &[0xff, 0x00, 0xff, 0x00, 0xc1, 0x00, 201]);
        assert_eq!(&r[0][7..], &payload[..57]);
        assert_eq!(&r[1][..5], &[0xff, 0x00, 0xff, 0x00, 0]);
        assert_eq!(&r[1][5..], &payload[57..116]);
        assert_eq!(&r[3][..5], &[0xff, 0x00, 0xff, 0x00, 2]);
        assert_eq!(&r[3][5..31], &payload[175..]);
        assert!(r[3][31..].iter().all(|&b| b == 0), "zero-padded");

        let mut d = Decoder::default();
        assert_eq!(d.push(&r[0]).unwrap(), None);
        assert_eq!(d.push(&r[1]).unwrap(), None);
        assert_eq!(d.push(&r[2]).unwrap(), None);
        let m = d.push(&r[3]).unwrap().unwrap();
        assert_eq!((m.cmd, m.data), (HWW_CMD, payload));
    }

    #[test]
    fn limits_and_bad_reports() {
        assert_eq!(encode(HWW_CMD, &vec![7; MAX_MESSAGE]).unwrap().len(), 129);
        assert!(encode(HWW_CMD, &vec![7; MAX_MESSAGE + 1]).is_err());
        let r = encode(HWW_CMD, &[1; 100]).unwrap();
        let mut d = Decoder::default();
        assert!(d.push(&r[1]).is_err(), "continuation first");
        let mut d = Decoder::default();
        d.push(&r[0]).unwrap();
        let mut skipped = r[1];
        skipped[4] = 1;
        assert!(d.push(&skipped).is_err(), "sequence gap");
        let mut other = r[0];
        other[0] = 0x12;
        assert!(Decoder::default().push(&other).is_err(), "foreign channel");
        let mut d = Decoder::default();
        d.push(&r[0]).unwrap();
        assert!(
            matches!(d.push(&r[0]), Err(DeviceError::Framing(_))),
            "an initial report in the middle of a message"
        );
    }

    /// A peer that plays back reports: each read takes `pace` (a slow or hostile device), and
    /// the reports run out after `reports` (so a read loop that never ends shows up as an I/O
    /// error, not a hung test).
    struct Peer {
        reports: std::vec::IntoIter<Report>,
        pace: Duration,
    }

    impl Transport for Peer {
        fn write(&mut self, _: &Report) -> Result<(), crate::hid::HidError> {
            Ok(())
        }

        fn read(&mut self, timeout: Duration) -> Result<Option<Report>, crate::hid::HidError> {
            // The peer's own pace, not synchronisation: it answers only if it is given the time.
            if timeout < self.pace {
                return Ok(None);
            }
            std::thread::sleep(self.pace);
            self.reports
                .next()
                .map(Some)
                .ok_or_else(|| crate::hid::HidError::Io("the peer ran out of reports".into()))
        }
    }

    /// A peer that restarts its message forever: a framing error at the second start, where it
    /// used to keep the read going as long as the peer liked.
    #[test]
    fn a_message_restarted_again_and_again_is_refused() {
        let first = encode(HWW_CMD, &[1; 100]).unwrap()[0];
        let mut peer = Peer {
            reports: vec![first; 1000].into_iter(),
            pace: Duration::ZERO,
        };
        let e = read_message(&mut peer, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, DeviceError::Framing(_)), "{e}");
        assert_eq!(peer.reports.len(), 998, "refused at the second report");
    }

    /// A peer that drips a full-size message, each report just inside the reply timeout: the
    /// whole message must come within it.
    #[test]
    fn a_dripped_message_runs_out_of_time() {
        let reports = encode(HWW_CMD, &vec![7; MAX_MESSAGE]).unwrap();
        let mut peer = Peer {
            reports: reports.into_iter(),
            pace: Duration::from_millis(20),
        };
        let e = read_message(&mut peer, Duration::from_millis(100)).unwrap_err();
        assert!(
            matches!(&e, DeviceError::Framing(m) if m.contains("still incomplete")),
            "{e}"
        );
        assert!(
            peer.reports.len() > 120,
            "stopped early: {} left",
            peer.reports.len()
        );
    }
}

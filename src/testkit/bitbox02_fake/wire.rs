//! The fake device's side of the wire, written from the firmware's sources and not from the
//! host's code (`hid::bitbox02`), so that a constant or a layout the host gets wrong fails
//! against it instead of being shared by both: U2F-HID framing, the HWW request and status
//! bytes, the ops and their status bytes, and the `'i'` answer.

use crate::hid::Report;

/// The channel every BitBox02 client uses (no U2F channel allocation; bitbox-api-rs
/// `src/u2fframing.rs`, `generate_cid`).
pub const CID: [u8; 4] = [0xff, 0x00, 0xff, 0x00];
/// `HWW_CMD`: `U2FHID_VENDOR_FIRST + 1` = `(0x80 | 0x40) + 1` (firmware `src/usb/usb_packet.h`,
/// `src/hww.c`).
pub const HWW_CMD: u8 = 0xc1;
/// `U2FHID_ERROR` (`0x80 | 0x3f`), the answer to a frame the device cannot take.
pub const FRAME_ERROR: u8 = 0xbf;
/// `U2FHID_ERR_INVALID_CMD`.
pub const ERR_INVALID_CMD: u8 = 0x01;

/// `hww_req_t` (firmware `src/hww.c`).
pub const HWW_REQ_NEW: u8 = 0x00;
/// Poll the outstanding request.
pub const HWW_REQ_RETRY: u8 = 0x01;
/// The info request, answered without a status byte.
pub const HWW_REQ_INFO: u8 = b'i';
/// `hww_rsp_t` (firmware `src/hww.c`).
pub const HWW_RSP_ACK: u8 = 0x00;
/// The device waits for its user.
pub const HWW_RSP_NOT_READY: u8 = 0x01;
/// Another request is outstanding.
pub const HWW_RSP_BUSY: u8 = 0x02;
/// Refused.
pub const HWW_RSP_NACK: u8 = 0x03;

/// `OP_UNLOCK` (firmware `src/rust/bitbox02-rust/src/hww.rs`).
pub const OP_UNLOCK: u8 = b'u';
/// `OP_I_CAN_HAS_HANDSHAEK` (firmware `hww/noise.rs`).
pub const OP_HANDSHAKE_START: u8 = b'h';
/// `OP_HER_COMEZ_TEH_HANDSHAEK`.
pub const OP_HANDSHAKE: u8 = b'H';
/// `OP_I_CAN_HAS_PAIRIN_VERIFICASHUN`.
pub const OP_PAIRING_VERIFY: u8 = b'v';
/// `OP_NOISE_MSG`.
pub const OP_NOISE_MSG: u8 = b'n';
/// `OP_STATUS_SUCCESS` (firmware `hww.rs`).
pub const OP_STATUS_SUCCESS: u8 = 0;
/// `OP_STATUS_FAILURE`.
pub const OP_STATUS_FAILURE: u8 = 1;
/// `OP_STATUS_FAILURE_UNINITIALIZED`: unlock of a device with no wallet.
pub const OP_STATUS_FAILURE_UNINITIALIZED: u8 = 2;

/// Data bytes of an initial report (after CID, CMD, BCNT) and of a continuation (after CID, SEQ).
const INIT_DATA: usize = 64 - 7;
const CONT_DATA: usize = 64 - 5;

/// `data` as the reports the device sends: `CID | CMD | BCNT (BE) | data`, then
/// `CID | SEQ | data`, zero-padded (firmware `src/usb/usb_frame.c`, `usb_frame_reply`).
pub fn frames(cmd: u8, data: &[u8]) -> Vec<Report> {
    let mut out = Vec::new();
    let mut first = [0u8; 64];
    first[..4].copy_from_slice(&CID);
    first[4] = cmd;
    first[5] = (data.len() >> 8) as u8;
    first[6] = data.len() as u8;
    let n = data.len().min(INIT_DATA);
    first[7..7 + n].copy_from_slice(&data[..n]);
    out.push(first);
    for (seq, chunk) in data[n..].chunks(CONT_DATA).enumerate() {
        let mut r = [0u8; 64];
        r[..4].copy_from_slice(&CID);
        r[4] = seq as u8;
        r[5..5 + chunk.len()].copy_from_slice(chunk);
        out.push(r);
    }
    out
}

/// A message being received from the host.
#[derive(Debug, Default)]
pub struct Incoming {
    cmd: u8,
    want: usize,
    data: Vec<u8>,
    seq: u8,
    open: bool,
}

impl Incoming {
    /// Takes one report from the host: the command and data once a message is complete. A new
    /// initial report starts over (as the firmware does for its own channel).
    pub fn push(&mut self, r: &Report) -> Result<Option<(u8, Vec<u8>)>, String> {
        if r[..4] != CID {
            return Err(format!("a report on channel {:02x?}", &r[..4]));
        }
        if r[4] & 0x80 != 0 {
            self.cmd = r[4];
            self.want = usize::from(r[5]) << 8 | usize::from(r[6]);
            self.data = r[7..7 + self.want.min(INIT_DATA)].to_vec();
            self.seq = 0;
            self.open = true;
        } else {
            if !self.open || r[4] != self.seq {
                return Err(format!("continuation {} out of turn", r[4]));
            }
            let n = (self.want - self.data.len()).min(CONT_DATA);
            self.data.extend_from_slice(&r[5..5 + n]);
            self.seq += 1;
        }
        if self.data.len() < self.want {
            return Ok(None);
        }
        self.open = false;
        Ok(Some((self.cmd, std::mem::take(&mut self.data))))
    }
}

/// The answer to `'i'` (firmware `src/hww.c`, `_api_info`): the version's length, `v` and the
/// version, platform, edition, unlocked, initialized (firmware 9.20.0 and later).
pub fn info(version: &str, unlocked: bool, initialized: bool) -> Vec<u8> {
    let mut out = vec![version.len() as u8 + 1, b'v'];
    out.extend_from_slice(version.as_bytes());
    // Platform 0 (BitBox02), edition 0 (multi).
    out.extend_from_slice(&[0, 0, u8::from(unlocked), u8::from(initialized)]);
    out
}

//! The HWW layer (firmware 7.0.0 and later): a request byte before every message, a status byte
//! before every answer, and how the host waits for the user.
//!
//! Requests: `0x00` new, `0x01` retry (poll), `'i'` info (answered without a status byte).
//! Answers: `0x00` ACK + payload, `0x01` NOT_READY (the device waits for the user: poll every
//! 200 ms), `0x02` BUSY (another client's request is outstanding: try again after 1 s), `0x03` NACK
//! (firmware `src/hww.c`; bitbox-api-rs `src/communication.rs`).

use super::error::DeviceError;
use super::framing;
use crate::hid::Transport;
use std::time::{Duration, Instant};

/// A new request.
pub const REQ_NEW: u8 = 0x00;
/// Poll the outstanding request.
pub const REQ_RETRY: u8 = 0x01;
/// The info request.
pub const REQ_INFO: u8 = b'i';
/// Done; the payload follows.
pub const RSP_ACK: u8 = 0x00;
/// Still waiting for the user.
pub const RSP_NOT_READY: u8 = 0x01;
/// Another request is outstanding.
pub const RSP_BUSY: u8 = 0x02;
/// Refused.
pub const RSP_NACK: u8 = 0x03;

/// How long to wait for what.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// For each answer report (the device answers every request at once, NOT_READY included).
    pub reply: Duration,
    /// Between polls of a request waiting for the user (the firmware's clients use 200 ms).
    pub poll: Duration,
    /// Before asking a busy device again (the clients use 1 s).
    pub busy_wait: Duration,
    /// How many BUSY answers in a row before giving up (sooner once `user` has passed).
    pub busy_tries: u32,
    /// How long one request may wait for the user (password, pairing code, confirmations).
    pub user: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            reply: Duration::from_secs(5),
            poll: Duration::from_millis(200),
            busy_wait: Duration::from_secs(1),
            busy_tries: 10,
            user: Duration::from_secs(300),
        }
    }
}

/// What the `'i'` request tells before any pairing (firmware `src/hww.c`, `_api_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Firmware version without the `v` (`9.21.0`).
    pub version: String,
    /// 0 BitBox02, 2 BitBox02 Nova.
    pub platform: u8,
    /// 0 multi, 1 Bitcoin-only.
    pub edition: u8,
    /// Whether the keystore is unlocked.
    pub unlocked: bool,
    /// Whether a backup was made (firmware 9.20.0 and later say so; `None` before).
    pub initialized: Option<bool>,
}

impl Info {
    /// `BitBox02 Multi`, `BitBox02 Nova Bitcoin-only`, ...
    pub fn product(&self) -> String {
        let platform = match self.platform {
            0 => "BitBox02",
            2 => "BitBox02 Nova",
            _ => "BitBox (unknown platform)",
        };
        let edition = if self.edition == 1 {
            "Bitcoin-only"
        } else {
            "Multi"
        };
        format!("{platform} {edition}")
    }

    /// Parses the answer to `'i'`: version length, version, platform, edition, unlocked,
    /// initialized (optional).
    pub fn parse(bytes: &[u8]) -> Result<Info, DeviceError> {
        let bad = || DeviceError::Protocol(format!("an info answer of {} bytes", bytes.len()));
        let (&n, rest) = bytes.split_first().ok_or_else(bad)?;
        let version = rest.get(..usize::from(n)).ok_or_else(bad)?;
        // Printed and recorded: only the characters of a version.
        let version = std::str::from_utf8(version)
            .ok()
            .and_then(|v| v.strip_prefix('v'))
            .filter(|v| {
                !v.is_empty()
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
            })
            .ok_or_else(bad)?
            .to_string();
        let rest = &rest[usize::from(n)..];
        let flag = |b: u8| match b {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(bad()),
        };
        Ok(Info {
            version,
            platform: *rest.first().ok_or_else(bad)?,
            edition: *rest.get(1).ok_or_else(bad)?,
            unlocked: flag(*rest.get(2).ok_or_else(bad)?)?,
            initialized: rest.get(3).map(|&b| flag(b)).transpose()?,
        })
    }

    /// Whether the HWW framing is there (7.0.0 and later).
    pub fn framed(&self) -> bool {
        self.version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            .is_some_and(|major| major >= 7)
    }
}

/// A device spoken to through the HWW layer.
pub struct Hww<'t> {
    transport: &'t mut dyn Transport,
    /// The waits in force.
    pub timing: Timing,
}

/// Why a request ran out of time waiting for the user, to say what was waited for.
#[derive(Debug, Clone, Copy)]
pub enum Waiting {
    /// The password (unlock).
    Password,
    /// The pairing code confirmation.
    Pairing,
    /// Confirmations of a request (create, a check shown on the device).
    Confirm(&'static str),
}

impl<'t> Hww<'t> {
    /// Wraps a transport.
    pub fn new(transport: &'t mut dyn Transport, timing: Timing) -> Hww<'t> {
        Hww { transport, timing }
    }

    /// The `'i'` request.
    pub fn info(&mut self) -> Result<Info, DeviceError> {
        let answer = framing::query(self.transport, &[REQ_INFO], self.timing.reply)?;
        Info::parse(&answer)
    }

    /// Sends a request and waits for its answer, polling while the device waits for the user
    /// and asking again while another client's request is outstanding.
    pub fn query(&mut self, msg: &[u8], waiting: Waiting) -> Result<Vec<u8>, DeviceError> {
        let mut framed = Vec::with_capacity(msg.len() + 1);
        framed.push(REQ_NEW);
        framed.extend_from_slice(msg);
        let mut busy = 0;
        let asked = Instant::now();
        let mut answer = loop {
            let answer = match framing::query(self.transport, &framed, self.timing.reply) {
                Err(DeviceError::Busy) => vec![RSP_BUSY],
                other => other?,
            };
            if answer.first() == Some(&RSP_BUSY) {
                busy += 1;
                if busy >= self.timing.busy_tries || asked.elapsed() >= self.timing.user {
                    return Err(DeviceError::Busy);
                }
                std::thread::sleep(self.timing.busy_wait);
                continue;
            }
            break answer;
        };
        let started = Instant::now();
        loop {
            match answer.first() {
                Some(&RSP_ACK) => {
                    answer.remove(0);
                    return Ok(answer);
                }
                Some(&RSP_NOT_READY) => {
                    if started.elapsed() >= self.timing.user {
                        let waited = self.timing.user;
                        return Err(match waiting {
                            Waiting::Password => DeviceError::Locked(waited),
                            Waiting::Pairing => DeviceError::NotConfirmed {
                                what: "the pairing code",
                                waited,
                            },
                            Waiting::Confirm(what) => DeviceError::NotConfirmed { what, waited },
                        });
                    }
                    // The protocol's own pacing: the device answers a poll at once, NOT_READY
                    // until the user is done.
                    std::thread::sleep(self.timing.poll);
                    answer = framing::query(self.transport, &[REQ_RETRY], self.timing.reply)?;
                }
                Some(&RSP_BUSY) => return Err(DeviceError::Busy),
                Some(&RSP_NACK) => return Err(DeviceError::Nack),
                other => {
                    return Err(DeviceError::Protocol(format!(
                        "HWW status {:?}",
                        other.map(|b| format!("{b:#04x}"))
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_round_trip_and_old_firmware() {
        let info = Info {
            version: "9.21.0".into(),
            platform: 0,
            edition: 1,
            unlocked: false,
            initialized: Some(true),
        };
        // Firmware `_api_info`: length-prefixed "v9.21.0", then four flag bytes.
        assert_eq!(Info::parse(b"\x07v9.21.0\x00\x01\x00\x01").unwrap(), info);
        assert_eq!(info.product(), "BitBox02 Bitcoin-only");
        assert!(info.framed());
        let older = Info::parse(b"\x06v6.3.0\x00\x00\x01").unwrap();
        assert_eq!(older.initialized, None);
        assert!(!older.framed());
        assert!(Info::parse(b"\x09v9").is_err());
        assert!(
            Info::parse(b"\x03v9.\x00\x00\x07").is_err(),
            "a flag byte other than 0/1"
        );
    }
}

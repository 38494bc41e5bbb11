//! What can go wrong talking to a BitBox02, each error with what the user should do about it.
//!
//! The device's own answers are kept in its own words: a protobuf `Error{code, message}` is shown
//! with the firmware's message (firmware `src/rust/bitbox02-rust/src/hww/api/error.rs`,
//! `make_error`), then coldkeep's advice.

use crate::hid::HidError;
use std::time::Duration;

/// Error codes of the firmware's `pb::Error` (`hww/api/error.rs`).
pub mod code {
    /// `invalid input` (also: a check without a microSD card).
    pub const INVALID_INPUT: i32 = 101;
    /// `memory`.
    pub const MEMORY: i32 = 102;
    /// `generic error` (a check that found no backup of this wallet; a failed create).
    pub const GENERIC: i32 = 103;
    /// `aborted by the user`.
    pub const USER_ABORT: i32 = 104;
    /// `can't call this endpoint: wrong state` (not set up, or locked).
    pub const INVALID_STATE: i32 = 105;
}

/// A BitBox02 conversation failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Opening or moving reports failed (udev permission, unplugged).
    #[error(transparent)]
    Hid(#[from] HidError),
    /// The simulator address did not answer.
    #[error(
        "cannot connect to the BitBox02 simulator at {addr}: {detail} (is it running? it listens \
         on 127.0.0.1:15423 by default)"
    )]
    Connect {
        /// The address tried.
        addr: String,
        /// Why.
        detail: String,
    },
    /// No answer within the reply timeout.
    #[error(
        "the BitBox02 did not answer within {}s: unplug and replug it (or restart the simulator), \
         then run again", .0.as_secs()
    )]
    NoAnswer(Duration),
    /// Reports that do not frame a message.
    #[error("the device sent a malformed answer ({0}); is it a BitBox02?")]
    Framing(String),
    /// Another program holds the device (HWW `BUSY`, or a U2F channel-busy frame).
    #[error(
        "the BitBox02 is busy: another program (the BitBoxApp?) is talking to it. Close the BitBoxApp \
         (or let it finish), then run again"
    )]
    Busy,
    /// The device refused the HWW request (`NACK`).
    #[error("the BitBox02 refused the request (NACK); unplug and replug it, then run again")]
    Nack,
    /// The device stayed locked while coldkeep waited for the password.
    #[error(
        "the BitBox02 is locked: enter its password on the device when coldkeep asks (waited {}s; \
         --timeout waits longer)", .0.as_secs()
    )]
    Locked(Duration),
    /// Nobody confirmed on the device in time.
    #[error(
        "nobody confirmed {what} on the BitBox02 within {}s (--timeout waits longer); nothing was \
         changed", .waited.as_secs()
    )]
    NotConfirmed {
        /// What was waiting for the user.
        what: &'static str,
        /// How long coldkeep waited.
        waited: Duration,
    },
    /// The user declined the pairing code on the device.
    #[error(
        "the pairing was declined on the BitBox02. If the codes matched, run again and confirm on \
         the device; if they differed, stop: something between this computer and the device is \
         not what it seems"
    )]
    PairingRejected,
    /// The device key is not the one paired under this name.
    #[error(
        "the device answering as '{name}' is not the BitBox02 paired under that name: its key is \
         {got}, the paired one {expected}. If you reset or replaced the device on purpose, run \
         `coldkeep bitbox02 unpair --name {name}` and pair again (with --new-device, so its checks \
         are recorded under this name); otherwise stop: another device is answering"
    )]
    KeyChanged {
        /// The device's name.
        name: String,
        /// The remembered key's fingerprint.
        expected: String,
        /// The presented key's fingerprint.
        got: String,
    },
    /// The device's key is not the one the store's checks of this name were made with (paired
    /// through another pairing file, say): its answers would be recorded as another device's.
    #[error(
        "the BitBox02 answering as '{name}' (key {got}) is not the device whose checks are \
         recorded under that name (key {recorded}, last checked {at}); nothing was asked or \
         recorded. If you reset or replaced the device on purpose, run again with --new-device; \
         otherwise stop: another device is answering under this name"
    )]
    NotTheRecordedDevice {
        /// The device's name.
        name: String,
        /// The presented key's fingerprint.
        got: String,
        /// The key of the last recorded check.
        recorded: String,
        /// When that check was made.
        at: String,
    },
    /// The device is already paired under another name.
    #[error(
        "this BitBox02 (key {key}) is already paired as '{other}': use --name {other} (one device, \
         one name, so its checks are not split)"
    )]
    PairedAsOther {
        /// The name it has.
        other: String,
        /// Its key's fingerprint.
        key: String,
    },
    /// The Noise handshake failed.
    #[error("the encrypted channel to the BitBox02 failed ({0}); unplug and replug it, then run again")]
    Noise(String),
    /// The device dropped the encrypted session (another program started its own).
    #[error(
        "the BitBox02 dropped the encrypted session (another program, such as the BitBoxApp, may \
         have connected to it): close it, then run again"
    )]
    SessionLost,
    /// The user pressed cancel on the device.
    #[error("cancelled on the BitBox02 (it answered \"{0}\"); nothing was changed")]
    Aborted(String),
    /// No microSD card in the device.
    #[error("the BitBox02 has no microSD card inserted (it says so): insert the card and run again")]
    NoCard,
    /// The device has no wallet yet, or no backup was ever made of it.
    #[error(
        "the BitBox02 answered \"{0}\": it holds no wallet yet (set it up in the BitBoxApp \
         first), or its wallet never had a backup made (make the first: `coldkeep bitbox02 backups \
         create`)"
    )]
    NotSetUp(String),
    /// Any other protobuf error from the device.
    #[error("the BitBox02 answered \"{message}\" (error {code})")]
    Device {
        /// `pb::Error.code`.
        code: i32,
        /// `pb::Error.message`.
        message: String,
    },
    /// An answer that does not fit the request.
    #[error("unexpected answer from the BitBox02: {0}")]
    Protocol(String),
    /// The firmware is older than the HWW framing (v7.0.0).
    #[error("the BitBox02 runs firmware {0}; coldkeep needs 7.0.0 or newer: upgrade it in the BitBoxApp")]
    OldFirmware(String),
    /// The pairing file cannot be read or written.
    #[error("{0}")]
    Pairing(String),
}

//! A paired, encrypted session with one BitBox02, in the order the BitBoxApp opens one: info,
//! unlock (the user enters the password on the device), Noise handshake, then the pairing code
//! when the device is new to this name (or new to this host), checked against the remembered
//! pairings before any request is sent.
//!
//! Nothing here prints: what the user must do on the device is handed to a callback.

use super::error::DeviceError;
use super::hww::{Hww, Info, Timing};
use super::noise::{self, Channel};
use super::pairing::{Known, Pairings, fingerprint};
use super::requests;
use crate::hid::Transport;
use bitbox_api::pb;

/// What the user has to do or compare, as the session gets there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The device asks for its password now.
    EnterPassword,
    /// Compare this code with the device's screen and confirm there. `first` when this name is
    /// paired for the first time (else the device forgot this host).
    PairingCode {
        /// `XXXXX XXXXX\nXXXXX XXXXX`.
        code: String,
        /// A new pairing (not a device that forgot this host).
        first: bool,
        /// The device key's fingerprint.
        device: String,
    },
    /// The device shows something to confirm (create: the date, then "Create backup?").
    ConfirmOnDevice(&'static str),
}

/// An open session.
pub struct Session<'t> {
    hww: Hww<'t>,
    channel: Channel,
    /// What the device said before pairing.
    pub info: Info,
    /// Whether it holds a wallet (it unlocked); `false` for one that is not set up.
    pub set_up: bool,
    /// The device's Noise static key.
    pub device_key: [u8; 32],
    /// Whether this run paired it (the pairing code was confirmed now).
    pub paired_now: bool,
}

/// Opens a session with the device answering as `name`.
pub fn open<'t>(
    transport: &'t mut dyn Transport,
    timing: Timing,
    name: &str,
    pairings: &mut Pairings,
    notice: &mut dyn FnMut(Notice),
) -> Result<Session<'t>, DeviceError> {
    let mut hww = Hww::new(transport, timing);
    let info = hww.info()?;
    if !info.framed() {
        return Err(DeviceError::OldFirmware(info.version.clone()));
    }
    if !info.unlocked && info.initialized != Some(false) {
        notice(Notice::EnterPassword);
    }
    let set_up = noise::unlock(&mut hww)?;
    let shake = noise::handshake(&mut hww, pairings.host_key())?;
    // Checked before any request: a device under the wrong key never sees one.
    let known = pairings.check(name, &shake.device_key)?;
    let mut paired_now = false;
    if known == Known::New || shake.device_wants_pairing {
        notice(Notice::PairingCode {
            code: noise::pairing_code(&shake.hash),
            first: known == Known::New,
            device: fingerprint(&shake.device_key),
        });
        shake.confirm_pairing(&mut hww)?;
        if known == Known::New {
            pairings.remember(name, &shake.device_key)?;
            paired_now = true;
        }
    }
    let device_key = shake.device_key;
    Ok(Session {
        hww,
        channel: shake.into_channel(),
        info,
        set_up,
        device_key,
        paired_now,
    })
}

impl Session<'_> {
    /// Whether a microSD card is inserted.
    pub fn card_inserted(&mut self) -> Result<bool, DeviceError> {
        requests::card_inserted(&mut self.channel, &mut self.hww)
    }

    /// The backups on the card.
    pub fn list_backups(&mut self) -> Result<Vec<pb::BackupInfo>, DeviceError> {
        requests::list_backups(&mut self.channel, &mut self.hww)
    }

    /// The id of this wallet's backup on the card, if there is one (`silent: false` shows it on
    /// the device for the user to confirm).
    pub fn check_backup(
        &mut self,
        silent: bool,
        notice: &mut dyn FnMut(Notice),
    ) -> Result<Option<String>, DeviceError> {
        if !silent {
            notice(Notice::ConfirmOnDevice("confirm the backup's name and id"));
        }
        requests::check_backup(&mut self.channel, &mut self.hww, silent)
    }

    /// Writes a new backup (the user confirms the date and "Create backup?" on the device).
    pub fn create_backup(
        &mut self,
        timestamp: u32,
        timezone_offset: i32,
        notice: &mut dyn FnMut(Notice),
    ) -> Result<(), DeviceError> {
        notice(Notice::ConfirmOnDevice(
            "confirm today's date, then hold \"Create backup?\"",
        ));
        requests::create_backup(&mut self.channel, &mut self.hww, timestamp, timezone_offset)
    }
}

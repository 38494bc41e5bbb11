//! Hardware keys over USB HID: a second source and sink beside `remote/`.
//!
//! [`Transport`] moves 64-byte reports (hidapi in production, a scripted fake from `testkit` in
//! tests). [`HardwareKey`] describes one device model: how to recognise it and what coldkeep can
//! back up and restore with it. Every model is one file here, registered in [`DEVICES`].

pub mod bitbox02;
#[cfg(all(feature = "hid", target_os = "linux"))]
mod hidapi_transport;
pub mod onlykey;
pub mod tcp_transport;

use serde::Serialize;
use std::time::Duration;

/// Size of every HID report these devices use, both ways.
pub const REPORT_SIZE: usize = 64;
/// One report.
pub type Report = [u8; REPORT_SIZE];

/// Why talking to a device failed.
#[derive(Debug, thiserror::Error)]
pub enum HidError {
    #[error("USB HID support is not built in (cargo feature `hid`)")]
    /// This build has no USB HID support.
    NotBuilt,
    #[error("cannot enumerate USB HID devices: {0}")]
    /// Listing devices failed.
    Enumerate(String),
    #[error(
        "no permission to open {path}: install the udev rules from the README (then unplug and \
         replug the device), or run as a user in the right group"
    )]
    /// No permission to open the device (udev rules).
    Permission {
        /// The path concerned.
        path: String,
    },
    #[error(
        "{path} is busy: another program (the vendor's app?) holds it; close that program, then \
         run again"
    )]
    /// Another program holds the device (`EBUSY` on open).
    Busy {
        /// The path concerned.
        path: String,
    },
    #[error("cannot open {path}: {detail}")]
    /// Opening the device failed.
    Open {
        /// The path concerned.
        path: String,
        /// What went wrong, as the library reported it.
        detail: String,
    },
    #[error("device I/O failed: {0}")]
    /// Reading or writing a report failed.
    Io(String),
}

/// A 64-byte report device.
pub trait Transport {
    /// Sends one report (the report id, if the backend needs one, is added by the backend).
    fn write(&mut self, report: &Report) -> Result<(), HidError>;
    /// Reads one report, waiting up to `timeout`; `None` when nothing came.
    fn read(&mut self, timeout: Duration) -> Result<Option<Report>, HidError>;
}

/// One HID interface of an attached device, as enumeration reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    /// USB vendor id.
    pub vendor_id: u16,
    /// USB product id.
    pub product_id: u16,
    /// USB interface number.
    pub interface: i32,
    /// HID usage page.
    pub usage_page: u16,
    /// HID usage.
    pub usage: u16,
    /// The hidraw path to open.
    pub path: String,
    /// Serial number, if readable.
    pub serial: Option<String>,
    /// Product string, if readable.
    pub product: Option<String>,
}

/// What coldkeep can do with a device model.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Capabilities {
    /// How coldkeep backs this model up.
    pub backup: &'static str,
    /// How coldkeep restores it.
    pub restore: &'static str,
}

/// A device model coldkeep knows.
pub trait HardwareKey: Sync {
    /// `OnlyKey`, `BitBox02`.
    fn model(&self) -> &'static str;
    /// The model's USB vendor/product ids.
    fn ids(&self) -> &'static [(u16, u16)];
    /// Whether this interface belongs to this model (VID/PID) and is the one coldkeep talks to.
    fn matches(&self, device: &DeviceInfo) -> bool;
    /// What coldkeep can back up and restore.
    fn capabilities(&self) -> Capabilities;
    /// Picks the interface to use among all interfaces of this model that are present.
    fn select<'a>(&self, interfaces: &'a [DeviceInfo]) -> Option<&'a DeviceInfo> {
        interfaces.iter().find(|d| self.matches(d))
    }
}

/// Every supported model. Adding a device is one file and one line here.
pub static DEVICES: &[&dyn HardwareKey] = &[&onlykey::OnlyKey, &bitbox02::BitBox02];

/// A known device found on the bus.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// The model name.
    pub model: &'static str,
    /// The device.
    pub device: DeviceInfo,
    /// What coldkeep can do with it.
    pub capabilities: Capabilities,
    /// Whether this user may open it (udev rules).
    pub accessible: bool,
}

/// Every HID interface on the system.
pub fn enumerate() -> Result<Vec<DeviceInfo>, HidError> {
    #[cfg(all(feature = "hid", target_os = "linux"))]
    {
        hidapi_transport::enumerate()
    }
    #[cfg(not(all(feature = "hid", target_os = "linux")))]
    {
        Err(HidError::NotBuilt)
    }
}

/// The known devices among `all`: for each model, the interface it selects.
pub fn known(all: &[DeviceInfo]) -> Vec<Found> {
    let mut found = Vec::new();
    for model in DEVICES {
        let mine: Vec<DeviceInfo> = all
            .iter()
            .filter(|d| model.ids().contains(&(d.vendor_id, d.product_id)))
            .cloned()
            .collect();
        // One entry per physical device (by serial, else by path prefix).
        let mut seen: Vec<Option<String>> = Vec::new();
        for d in &mine {
            let key = d.serial.clone();
            if key.is_some() && seen.contains(&key) {
                continue;
            }
            let same: Vec<DeviceInfo> = mine.iter().filter(|x| x.serial == d.serial).cloned().collect();
            if let Some(chosen) = model.select(&same) {
                found.push(Found {
                    model: model.model(),
                    device: chosen.clone(),
                    capabilities: model.capabilities(),
                    accessible: can_open(&chosen.path),
                });
            }
            seen.push(key);
        }
    }
    found
}

fn can_open(path: &str) -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .is_ok()
}

/// What a failed `open(2)` of a device node means for the user, by its errno rather than its
/// wording: no permission (the udev rules), busy (another program holds it), else the system's
/// own words.
pub fn open_error(path: &str, e: &std::io::Error) -> HidError {
    match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => HidError::Permission { path: path.into() },
        Some(libc::EBUSY) => HidError::Busy { path: path.into() },
        _ => HidError::Open {
            path: path.into(),
            detail: e.to_string(),
        },
    }
}

/// Opens a device for report I/O.
pub fn open(path: &str) -> Result<Box<dyn Transport>, HidError> {
    #[cfg(all(feature = "hid", target_os = "linux"))]
    {
        hidapi_transport::open(path)
    }
    #[cfg(not(all(feature = "hid", target_os = "linux")))]
    {
        let _ = path;
        Err(HidError::NotBuilt)
    }
}

/// The ASCII text of a reply report (NULs and trailing garbage stripped).
pub fn report_text(report: &Report) -> String {
    let end = report.iter().position(|&b| b == 0).unwrap_or(REPORT_SIZE);
    String::from_utf8_lossy(&report[..end]).trim().to_string()
}

#[cfg(test)]
mod open_error_tests {
    use super::{HidError, open_error};
    use std::io::Error;

    /// Classified by errno, whatever the text says.
    #[test]
    fn open_failures_are_classified_by_errno() {
        let p = "/dev/hidraw3";
        assert!(matches!(
            open_error(p, &Error::from_raw_os_error(libc::EBUSY)),
            HidError::Busy { .. }
        ));
        assert!(matches!(
            open_error(p, &Error::from_raw_os_error(libc::EACCES)),
            HidError::Permission { .. }
        ));
        assert!(matches!(
            open_error(p, &Error::from_raw_os_error(libc::EPERM)),
            HidError::Permission { .. }
        ));
        let e = open_error(p, &Error::from_raw_os_error(libc::ENOENT));
        assert!(matches!(e, HidError::Open { .. }), "{e}");
        assert!(e.to_string().contains("/dev/hidraw3"), "{e}");
        // A message that merely says "busy" is not a busy device.
        let e = open_error(p, &Error::other("a busy day"));
        assert!(matches!(e, HidError::Open { .. }), "{e}");
    }
}

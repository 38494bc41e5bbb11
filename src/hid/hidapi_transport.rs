//! [`Transport`] over hidapi's pure-Rust hidraw backend (`linux-native-basic-udev`).

use super::{DeviceInfo, HidError, Report, Transport};
use std::ffi::CString;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

pub fn enumerate() -> Result<Vec<DeviceInfo>, HidError> {
    let api = hidapi::HidApi::new().map_err(|e| HidError::Enumerate(e.to_string()))?;
    Ok(api
        .device_list()
        .map(|d| DeviceInfo {
            vendor_id: d.vendor_id(),
            product_id: d.product_id(),
            interface: d.interface_number(),
            usage_page: d.usage_page(),
            usage: d.usage(),
            path: d.path().to_string_lossy().into_owned(),
            serial: d.serial_number().map(str::to_string),
            product: d.product_string().map(str::to_string),
        })
        .collect())
}

struct Hid(hidapi::HidDevice);

pub fn open(path: &str) -> Result<Box<dyn Transport>, HidError> {
    // Opened first as hidapi opens it, for the errno: permission (udev rules) and busy are told
    // apart by it, not by the wording of hidapi's message.
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        return Err(super::open_error(path, &e));
    }
    let api = hidapi::HidApi::new().map_err(|e| HidError::Enumerate(e.to_string()))?;
    let c = CString::new(path).map_err(|_| HidError::Open {
        path: path.into(),
        detail: "path contains NUL".into(),
    })?;
    let dev = api.open_path(&c).map_err(|e| HidError::Open {
        path: path.into(),
        detail: e.to_string(),
    })?;
    Ok(Box::new(Hid(dev)))
}

impl Transport for Hid {
    fn write(&mut self, report: &Report) -> Result<(), HidError> {
        // hidapi wants the report id first; these devices use unnumbered reports (id 0).
        let mut buf = [0u8; 65];
        buf[1..].copy_from_slice(report);
        let n = self.0.write(&buf).map_err(|e| HidError::Io(e.to_string()))?;
        if n < 64 {
            return Err(HidError::Io(format!("short write ({n} of 65 bytes)")));
        }
        Ok(())
    }

    fn read(&mut self, timeout: Duration) -> Result<Option<Report>, HidError> {
        let mut buf = [0u8; 64];
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let n = self
            .0
            .read_timeout(&mut buf, ms)
            .map_err(|e| HidError::Io(e.to_string()))?;
        Ok((n > 0).then_some(buf))
    }
}

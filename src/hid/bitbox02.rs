//! BitBox02: device matching, and the backup calls through the device: U2F-HID framing
//! ([`framing`]), the HWW layer ([`hww`]), the Noise XX channel and pairing code ([`noise`]), the
//! remembered pairings ([`pairing`]), the protobuf requests ([`requests`]), and a paired session in
//! the BitBoxApp's order ([`session`]). Its card can also be read directly (`bitbox02 import /
//! list-card / check-card`, see `material::bitbox02`).

pub mod error;
pub mod framing;
pub mod hww;
pub mod noise;
pub mod pairing;
pub mod requests;
pub mod session;

use super::{Capabilities, DeviceInfo, HardwareKey};

/// BitBox02 USB ids.
pub const VENDOR_ID: u16 = 0x03eb;
/// USB product id of the BitBox02 (multi edition).
pub const PRODUCT_ID: u16 = 0x2403;
/// The HWW (hardware wallet) interface.
pub const USAGE_PAGE_HWW: u16 = 0xffff;

/// The BitBox02 model.
pub struct BitBox02;

impl HardwareKey for BitBox02 {
    fn model(&self) -> &'static str {
        "BitBox02"
    }

    fn ids(&self) -> &'static [(u16, u16)] {
        &[(VENDOR_ID, PRODUCT_ID)]
    }

    fn matches(&self, d: &DeviceInfo) -> bool {
        (d.vendor_id, d.product_id) == (VENDOR_ID, PRODUCT_ID)
            && (d.usage_page == USAGE_PAGE_HWW || d.interface == 0)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            backup: "microSD card backups: through the device (bitbox02 backups list / check / \
                     create), or the card itself (bitbox02 import / list-card / check-card)",
            restore: "on the device, from its microSD card (BitBox app)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_hww_interface_only() {
        let d = |interface, usage_page| DeviceInfo {
            vendor_id: VENDOR_ID,
            product_id: PRODUCT_ID,
            interface,
            usage_page,
            usage: 1,
            path: "/dev/hidraw3".into(),
            serial: None,
            product: Some("BitBox02".into()),
        };
        assert!(BitBox02.matches(&d(0, 0xffff)));
        assert!(!BitBox02.matches(&d(1, 0xf1d0)), "the U2F interface is not ours");
        assert_eq!(
            BitBox02.select(&[d(1, 0xf1d0), d(0, 0xffff)]).unwrap().interface,
            0
        );
    }
}

#[cfg(test)]
mod session_tests;

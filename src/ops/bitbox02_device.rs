//! `bitbox02 backups list | check | create` under the commands: find the device (USB, or a
//! simulator address), open a paired session, ask, and record every check in the store.
//!
//! Nothing here prints: what the user must do on the device goes to the caller's `notice`.

use crate::config::{Config, HARDWARE_NODE, HardwareModel};
use crate::hid::bitbox02::error::DeviceError;
use crate::hid::bitbox02::hww::Timing;
use crate::hid::bitbox02::pairing::{self, Pairings, fingerprint};
use crate::hid::bitbox02::session::{self, Notice, Session};
use crate::hid::{self, HardwareKey, HidError, Transport};
use crate::material::Identity;
use crate::store::{CheckResult, DeviceCheck, Store};
use crate::text::escape_control;
use bitbox_api::pb;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Where the device is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A USB device: this hidraw path, or the one BitBox02 attached.
    Usb(Option<String>),
    /// A firmware simulator (or the test kit's fake) at `HOST:PORT`.
    Simulator(String),
}

/// What every call needs.
#[derive(Debug, Clone)]
pub struct DeviceRequest {
    /// The device's name (pairing, records, the store).
    pub name: String,
    /// Where it is.
    pub target: Target,
    /// How long to wait for the user on the device.
    pub timeout: Duration,
    /// The pairing file (default: under the user's config dir).
    pub pairing_file: Option<PathBuf>,
    /// The user declares this a new device under the name (reset or replaced): its checks are
    /// recorded though the name's last check was of another device key.
    pub new_device: bool,
}

/// The device as this session saw it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceSummary {
    /// Its name.
    pub name: String,
    /// `BitBox02 Multi`, ...
    pub product: String,
    /// Its firmware version.
    pub firmware: String,
    /// `usb /dev/hidraw3`, `simulator 127.0.0.1:15423`.
    pub source: String,
    /// Its Noise key's fingerprint (its identity).
    pub device_key: String,
    /// Whether this run paired it.
    pub paired_now: bool,
    /// Whether it holds a wallet it could unlock.
    pub set_up: bool,
}

/// One backup on the card.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CardEntry {
    /// Its id (HMAC-SHA256 of the seed; the card folder's name).
    pub id: String,
    /// The wallet name stored in it.
    pub name: String,
    /// When it was made.
    pub created: Option<DateTime<Utc>>,
}

impl From<pb::BackupInfo> for CardEntry {
    /// The device's words are printed and recorded: control characters and bidi overrides (a
    /// terminal escape or reordered text from a doctored card or a hostile device) are escaped.
    fn from(b: pb::BackupInfo) -> CardEntry {
        CardEntry {
            created: DateTime::from_timestamp(i64::from(b.timestamp), 0),
            id: escape_control(&b.id),
            name: escape_control(&b.name),
        }
    }
}

/// `bitbox02 backups list`.
#[derive(Debug, Serialize)]
pub struct Listing {
    /// The device.
    pub device: DeviceSummary,
    /// The backups on its card.
    pub backups: Vec<CardEntry>,
}

/// `bitbox02 backups check` (and the check after `create`).
#[derive(Debug, Serialize)]
pub struct Checked {
    /// What the device answered: `found`, `not-found`, `no-card`.
    pub result: CheckResult,
    /// The device.
    pub device: DeviceSummary,
    /// This wallet's backup on the card; `None`: there is none.
    pub found: Option<CardEntry>,
    /// How many backups the card holds.
    pub card_backups: usize,
    /// The newest backup of this name in the store (imported from a card), and whether it is
    /// this device's wallet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored: Option<StoredMatch>,
    /// The signed record of this check.
    pub record: Option<String>,
    /// Why it could not be recorded (the answer stands; `status` will not see it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_error: Option<String>,
}

/// The store's newest card backup of this name against the device's wallet.
#[derive(Debug, Serialize)]
pub struct StoredMatch {
    /// The artifact.
    pub artifact: String,
    /// Its backup id.
    pub backup_id: String,
    /// Whether it is the wallet on the device.
    pub same_wallet: bool,
}

/// Opens the transport the target names; its description for records.
fn open_transport(target: &Target, timing: &Timing) -> Result<(Box<dyn Transport>, String), DeviceError> {
    match target {
        Target::Simulator(addr) => {
            let t = hid::tcp_transport::connect(addr, timing.reply).map_err(|e| DeviceError::Connect {
                addr: addr.clone(),
                detail: match e {
                    HidError::Open { detail, .. } => detail,
                    other => other.to_string(),
                },
            })?;
            Ok((Box::new(t), format!("simulator {addr}")))
        }
        Target::Usb(path) => {
            let path = match path {
                Some(p) => p.clone(),
                None => find_one()?,
            };
            let t = hid::open(&path).map_err(|e| match e {
                HidError::Busy { .. } => DeviceError::Busy,
                other => DeviceError::Hid(other),
            })?;
            Ok((t, format!("usb {path}")))
        }
    }
}

/// The hidraw path of the one BitBox02 attached.
fn find_one() -> Result<String, DeviceError> {
    let all = hid::enumerate()?;
    let found: Vec<hid::Found> = hid::known(&all)
        .into_iter()
        .filter(|f| f.model == hid::bitbox02::BitBox02.model())
        .collect();
    match found.as_slice() {
        [] => Err(DeviceError::Protocol(
            "no BitBox02 found: plug it in (`coldkeep hid list` shows what is attached), or give \
             --simulator HOST:PORT"
                .into(),
        )),
        [one] if !one.accessible => Err(DeviceError::Hid(HidError::Permission {
            path: one.device.path.clone(),
        })),
        [one] => Ok(one.device.path.clone()),
        many => Err(DeviceError::Protocol(format!(
            "{} BitBox02 found ({}): give --device PATH",
            many.len(),
            many.iter()
                .map(|f| f.device.path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Opens a paired session and runs `f` in it.
fn with_session<T>(
    req: &DeviceRequest,
    notice: &mut dyn FnMut(Notice),
    f: impl FnOnce(&mut Session, DeviceSummary, &mut dyn FnMut(Notice)) -> Result<T, DeviceError>,
) -> Result<T, DeviceError> {
    let timing = Timing {
        user: req.timeout,
        ..Timing::default()
    };
    let path = match &req.pairing_file {
        Some(p) => p.clone(),
        None => pairing::default_path()?,
    };
    let mut pairings = Pairings::load(&path)?;
    let (mut transport, source) = open_transport(&req.target, &timing)?;
    let mut s = session::open(transport.as_mut(), timing, &req.name, &mut pairings, notice)?;
    let summary = DeviceSummary {
        name: req.name.clone(),
        product: s.info.product(),
        firmware: s.info.version.clone(),
        source,
        device_key: fingerprint(&s.device_key),
        paired_now: s.paired_now,
        set_up: s.set_up,
    };
    f(&mut s, summary, notice)
}

/// The backups on the card.
pub fn list(req: &DeviceRequest, notice: &mut dyn FnMut(Notice)) -> Result<Listing, DeviceError> {
    with_session(req, notice, |s, device, _| {
        if !s.card_inserted()? {
            return Err(DeviceError::NoCard);
        }
        let backups = s.list_backups()?.into_iter().map(CardEntry::from).collect();
        Ok(Listing { device, backups })
    })
}

/// Is a backup of the wallet on the device on the card? Each answer (found, not found, no card)
/// is recorded in the store, signed.
pub fn check(
    config: &Config,
    req: &DeviceRequest,
    confirm_on_device: bool,
    notice: &mut dyn FnMut(Notice),
) -> anyhow::Result<Checked> {
    let recorded = recorded_key(config, &req.name);
    let (device, answer) = with_session(req, notice, |s, device, notice| {
        same_device(&recorded, &device, req)?;
        if !s.card_inserted()? {
            return Ok((device, None));
        }
        let id = s.check_backup(!confirm_on_device, notice)?;
        let backups = s.list_backups()?;
        Ok((device, Some((id, backups))))
    })?;
    let Some((id, backups)) = answer else {
        let (record, record_error) = record(
            config,
            &record_of(&device, CheckResult::NoCard, None, req.new_device),
        );
        return Ok(Checked {
            result: CheckResult::NoCard,
            device,
            found: None,
            card_backups: 0,
            stored: None,
            record,
            record_error,
        });
    };
    Ok(finish(config, device, id, backups, None, req.new_device)?)
}

/// Writes a new backup to the card (the device refuses without a wallet, in its own words;
/// coldkeep refuses without a card first), then checks it like `check`.
pub fn create(
    config: &Config,
    req: &DeviceRequest,
    notice: &mut dyn FnMut(Notice),
) -> anyhow::Result<Checked> {
    let recorded = recorded_key(config, &req.name);
    let (device, id, backups) = with_session(req, notice, |s, device, notice| {
        same_device(&recorded, &device, req)?;
        if !s.card_inserted()? {
            return Err(DeviceError::NoCard);
        }
        let now = Utc::now();
        let offset = chrono::Local::now().offset().local_minus_utc();
        s.create_backup(u32::try_from(now.timestamp()).unwrap_or(u32::MAX), offset, notice)?;
        let id = s.check_backup(true, notice)?;
        Ok((device, id, s.list_backups()?))
    })?;
    let checked = finish(
        config,
        device,
        id,
        backups,
        Some("after creating it"),
        req.new_device,
    )?;
    if checked.found.is_none() {
        anyhow::bail!(
            "the BitBox02 reported the backup created, but its check finds no backup of this wallet \
             on the card: re-create it, or use another card"
        );
    }
    Ok(checked)
}

/// The device key of the newest recorded check of `name` that has one, and when it was made.
fn recorded_key(config: &Config, name: &str) -> Option<(String, DateTime<Utc>)> {
    let checks = Store::new(&config.store).device_checks();
    checks
        .trusted
        .iter()
        .rev()
        .filter(|c| c.device == name)
        .find_map(|c| c.device_key.clone().map(|k| (k, c.checked_at)))
}

/// Refuses, before anything is asked, a device whose key is not the one the name's checks were
/// made with, unless the user declares a new device: else a second pairing file would let
/// another device's answers be recorded under a known name.
fn same_device(
    recorded: &Option<(String, DateTime<Utc>)>,
    device: &DeviceSummary,
    req: &DeviceRequest,
) -> Result<(), DeviceError> {
    match recorded {
        Some((key, at)) if *key != device.device_key && !req.new_device => {
            Err(DeviceError::NotTheRecordedDevice {
                name: device.name.clone(),
                got: device.device_key.clone(),
                recorded: key.clone(),
                at: at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            })
        }
        _ => Ok(()),
    }
}

/// Signs and stores a check record: its id, or why not.
fn record(config: &Config, check: &DeviceCheck) -> (Option<String>, Option<String>) {
    match super::run_state::record_device_check(config, check) {
        Ok(id) => (Some(id), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    }
}

/// Records the answer. A "found" must name a backup the card's listing holds: a device that
/// claims one the card does not show is not believed, and nothing is recorded.
fn finish(
    config: &Config,
    device: DeviceSummary,
    id: Option<String>,
    backups: Vec<pb::BackupInfo>,
    detail: Option<&str>,
    new_device: bool,
) -> Result<Checked, DeviceError> {
    let card_backups = backups.len();
    let found = match id {
        None => None,
        Some(id) => Some(
            backups
                .into_iter()
                .find(|b| b.id == id)
                .map(CardEntry::from)
                .ok_or_else(|| {
                    DeviceError::Protocol(format!(
                        "the device reports backup {id} as this wallet's, but its card listing \
                         does not hold it; nothing was recorded"
                    ))
                })?,
        ),
    };
    let result = if found.is_some() {
        CheckResult::Found
    } else {
        CheckResult::NotFound
    };
    let mut rec = record_of(&device, result, found.as_ref(), new_device);
    rec.detail = detail.map(str::to_string);
    let (record, record_error) = record(config, &rec);
    let stored = found
        .as_ref()
        .and_then(|f| stored_match(config, &device.name, &f.id));
    Ok(Checked {
        result,
        device,
        found,
        card_backups,
        stored,
        record,
        record_error,
    })
}

fn record_of(
    device: &DeviceSummary,
    result: CheckResult,
    found: Option<&CardEntry>,
    new_device: bool,
) -> DeviceCheck {
    let mut rec = DeviceCheck::new(
        &device.name,
        HardwareModel::Bitbox02.as_str(),
        device.source.clone(),
        result,
    );
    rec.device_key = Some(device.device_key.clone());
    rec.new_device = new_device;
    if let Some(f) = found {
        rec.backup_id = Some(f.id.clone());
        rec.backup_name = (!f.name.is_empty()).then(|| f.name.clone());
        rec.backup_created = f.created;
    }
    rec
}

/// The store's newest card backup of `name` (signed sidecar; no key needed) against `id`.
fn stored_match(config: &Config, name: &str, id: &str) -> Option<StoredMatch> {
    let listing = Store::new(&config.store)
        .list_keystore::<crate::bundle::Sidecar>(HARDWARE_NODE, name)
        .ok()?;
    let newest = super::artifact::latest(&listing.artifacts, HARDWARE_NODE, name)?;
    let Some(Identity::BitBox02(b)) = &newest.sidecar.manifest.identity else {
        return None;
    };
    Some(StoredMatch {
        artifact: newest.id.clone(),
        backup_id: b.id.clone(),
        same_wallet: b.id == id,
    })
}

/// Forgets the pairing of `name`; whether there was one.
pub fn unpair(name: &str, pairing_file: Option<PathBuf>) -> Result<bool, DeviceError> {
    let path = match pairing_file {
        Some(p) => p,
        None => pairing::default_path()?,
    };
    Pairings::load(&path)?.forget(name)
}

//! Signed records of hardware-key checks: a BitBox02 asked whether its card holds its wallet, an
//! OnlyKey backup decrypted offline. `status` and the metrics read them to show when each
//! hardware key's backup was last checked, beside the node keys' backups.
//!
//! Layout, out of the artifact listings' way (they skip dot directories):
//! `<root>/.coldkeep/device-checks/<device>/<UTC stamp>-<8 hex>.check.json` and its `.sig`, in
//! the primary and every replica. The record's `role` (`device-check`) is signed with it, so a
//! record never reads as a sidecar nor a sidecar as a record; its file name is derived from its
//! signed content and its directory must be its `device`, so a record copied elsewhere is
//! reported, not counted. Nothing unsigned, or signed by a key allowed_signers does not trust, is
//! believed; files are opened without following links.

mod nofollow;

use super::{Store, StoreError, create_private_dirs, signed::MAX_CLOCK_SKEW};
use crate::sign::{SIG_SUFFIX, Verdict};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The directory under `<root>/.coldkeep/`.
pub const CHECKS_DIR: &str = "device-checks";
/// What a record is, signed inside it.
pub const ROLE: &str = "device-check";
/// A record file's suffix (its signature adds `.sig`).
pub const SUFFIX: &str = ".check.json";
const FORMAT: u32 = 1;
const MAX_RECORD: u64 = 64 * 1024;

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckResult {
    /// BitBox02: the card holds a backup of the wallet on the device.
    Found,
    /// BitBox02: the card holds no (intact) backup of this wallet.
    NotFound,
    /// BitBox02: no card was inserted.
    NoCard,
    /// OnlyKey: the stored backup decrypts and every record is well-formed.
    Opens,
    /// OnlyKey: it does not open with the key given, or is damaged.
    DoesNotOpen,
}

impl CheckResult {
    /// Whether the backup was found intact.
    pub fn ok(self) -> bool {
        matches!(self, CheckResult::Found | CheckResult::Opens)
    }

    /// As written in records and `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckResult::Found => "found",
            CheckResult::NotFound => "not-found",
            CheckResult::NoCard => "no-card",
            CheckResult::Opens => "opens",
            CheckResult::DoesNotOpen => "does-not-open",
        }
    }
}

/// One check, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCheck {
    /// Always `ROLE`.
    pub role: String,
    /// Record format (1).
    pub format: u32,
    /// The hardware key's name.
    pub device: String,
    /// `bitbox02` or `onlykey`.
    pub model: String,
    /// The device's identity when it has one (BitBox02: its Noise key's fingerprint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_key: Option<String>,
    /// How it was reached (`usb /dev/hidraw3`, `simulator 127.0.0.1:15423`, `artifact ID`).
    pub source: String,
    /// When.
    pub checked_at: DateTime<Utc>,
    /// What it found.
    pub result: CheckResult,
    /// The backup concerned (BitBox02: its id on the card; OnlyKey: the artifact id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// The backup's name (BitBox02: the wallet name stored in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    /// When the backup was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_created: Option<DateTime<Utc>>,
    /// A word more (what did not open, what the device said).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The operator declared this device (its `device_key`) the one under this name from this
    /// check on (`--new-device`: a reset or replaced device), so `status` does not flag the
    /// change of key.
    #[serde(default, skip_serializing_if = "is_false")]
    pub new_device: bool,
    /// The coldkeep that checked.
    pub coldkeep_version: String,
}

impl DeviceCheck {
    /// A record of `result` for `device` now.
    pub fn new(device: &str, model: &str, source: String, result: CheckResult) -> DeviceCheck {
        DeviceCheck {
            role: ROLE.into(),
            format: FORMAT,
            device: device.into(),
            model: model.into(),
            device_key: None,
            source,
            // To the microsecond: two checks in one second still order.
            checked_at: chrono::SubsecRound::trunc_subsecs(Utc::now(), 6),
            result,
            backup_id: None,
            backup_name: None,
            backup_created: None,
            detail: None,
            new_device: false,
            coldkeep_version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A file (or directory entry) under the records that is not a trusted record.
#[derive(Debug, Clone)]
pub struct Untrusted {
    /// The device directory it lies in (or is: a link where a device's directory belongs).
    pub device: String,
    /// Where.
    pub path: PathBuf,
    /// Why it is not believed.
    pub why: String,
}

/// Every record in the store: the trusted ones (each once, oldest first) and what is wrong with
/// the others.
#[derive(Debug, Default)]
pub struct DeviceChecks {
    /// Validly signed records whose name and place agree with their content.
    pub trusted: Vec<DeviceCheck>,
    /// Entries that are not trusted records, and why.
    pub untrusted: Vec<Untrusted>,
    /// Record directories that could not be read (a file where a directory belongs, no access),
    /// so some checks may be missing.
    pub unreadable: Vec<String>,
}

/// The record's file id: its stamp and the start of its bytes' SHA-256.
fn record_id(checked_at: DateTime<Utc>, bytes: &[u8]) -> String {
    let digest = hex::encode(sha2::Sha256::digest(bytes));
    format!("{}-{}", checked_at.format("%Y%m%dT%H%M%SZ"), &digest[..8])
}

impl Store {
    /// Signs `check` and writes it to the primary and every replica (every root is tried; the
    /// first failure is returned). Returns the record's id.
    pub fn record_device_check(&self, check: &DeviceCheck) -> Result<String, StoreError> {
        if !super::write::safe_component(&check.device) || check.role != ROLE {
            return Err(StoreError::Invalid {
                path: self.primary.clone(),
                message: format!("not a device-check record for a valid name: {:?}", check.device),
            });
        }
        let mut json = serde_json::to_vec_pretty(check).map_err(|e| StoreError::Invalid {
            path: self.primary.clone(),
            message: e.to_string(),
        })?;
        json.push(b'\n');
        let signature = self.sign(&json)?;
        let id = record_id(check.checked_at, &json);
        let _lock = self.lock()?;
        let mut first_error = None;
        for root in self.roots() {
            if let Err(e) = write_record(root, &check.device, &id, &json, &signature) {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(id),
        }
    }

    /// Reads every record of every device in every root. A directory that cannot be read is
    /// noted, not fatal: whoever can write one replica must not blind `status` for the rest.
    /// A link or a file where a directory belongs is reported, never followed.
    pub fn device_checks(&self) -> DeviceChecks {
        let mut out = DeviceChecks::default();
        let mut seen = std::collections::BTreeSet::new();
        for root in self.roots() {
            let base = root.join(super::STATE_DIR).join(CHECKS_DIR);
            let devices = match device_dirs(root, &base, &mut out.untrusted) {
                Ok(d) => d,
                Err(e) => {
                    out.unreadable.push(e);
                    continue;
                }
            };
            for device in devices {
                let dir = base.join(&device);
                let entries = match super::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) => {
                        out.unreadable.push(e.to_string());
                        continue;
                    }
                };
                for (name, _) in entries {
                    let untrusted = |path: PathBuf, why: String| Untrusted {
                        device: device.clone(),
                        path,
                        why,
                    };
                    let Some(name) = name.to_str() else {
                        out.untrusted
                            .push(untrusted(dir.join(&name), "a file name that is not UTF-8".into()));
                        continue;
                    };
                    if name.ends_with(SIG_SUFFIX) || (name.starts_with('.') && name.contains(".tmp-")) {
                        continue;
                    }
                    let path = dir.join(name);
                    match self.read_record(&path, &device, name) {
                        Ok(check) => {
                            if seen.insert(name.to_string()) {
                                out.trusted.push(check);
                            }
                        }
                        Err(why) => out.untrusted.push(untrusted(path, why)),
                    }
                }
            }
        }
        out.trusted
            .sort_by(|a, b| (a.checked_at, &a.device).cmp(&(b.checked_at, &b.device)));
        out
    }

    /// One record, trusted or the reason it is not.
    fn read_record(&self, path: &Path, device: &str, name: &str) -> Result<DeviceCheck, String> {
        let id = name
            .strip_suffix(SUFFIX)
            .ok_or("not a device-check record (unexpected file)")?;
        let bytes = read_nofollow(path).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "a symbolic link (not followed)".to_string(),
            _ => e.to_string(),
        })?;
        let signature = match read_nofollow(&path.with_file_name(format!("{name}{SIG_SUFFIX}"))) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("its signature: {e}")),
        };
        // allowed_signers' key windows apply to the time the record says it was made (signed
        // with it); a record whose time cannot be read is judged at the present, and refused
        // below as no record.
        #[derive(Deserialize)]
        struct Made {
            checked_at: DateTime<Utc>,
        }
        let at = serde_json::from_slice::<Made>(&bytes).map_or_else(|_| Utc::now(), |m| m.checked_at);
        let verdict = match &self.keys {
            Some(keys) => keys.allowed.verify(&bytes, signature.as_deref(), at),
            None => Verdict::Bad("no allowed_signers loaded".into()),
        };
        if !verdict.is_valid() {
            return Err(format!("signature {verdict}"));
        }
        let check: DeviceCheck = serde_json::from_slice(&bytes)
            .map_err(|e| format!("signed, but not a device-check record: {e}"))?;
        if check.role != ROLE || check.format != FORMAT {
            return Err(format!("a signed `{}` record, not a device check", check.role));
        }
        if check.device != device {
            return Err(format!(
                "the record of `{}`, stored under {device:?}",
                check.device
            ));
        }
        if record_id(check.checked_at, &bytes) != id {
            return Err(format!(
                "record {} stored under another name (a copy?)",
                record_id(check.checked_at, &bytes)
            ));
        }
        if check.checked_at > Utc::now() + MAX_CLOCK_SKEW {
            return Err(format!("dated in the future ({})", check.checked_at));
        }
        Ok(check)
    }
}

/// Writes one record and its signature under `<root>/.coldkeep/device-checks/<device>/`, each
/// directory below the root created and opened without following links (a replica's writer may
/// have planted one to redirect the agent's writes).
fn write_record(
    root: &Path,
    device: &str,
    id: &str,
    json: &[u8],
    signature: &[u8],
) -> Result<(), StoreError> {
    // The root itself: checked (not writable by others) and created as before.
    create_private_dirs(root, root)?;
    let mut dir = nofollow::Dir::open_root(root).map_err(super::io(root))?;
    for name in [super::STATE_DIR, CHECKS_DIR, device] {
        dir = dir.sub(name).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) => StoreError::Invalid {
                path: dir.path().join(name),
                message: "not a directory (a symbolic link or a file; not followed)".into(),
            },
            _ => super::io(&dir.path().join(name))(e),
        })?;
    }
    // The signature first: a record is never there without it.
    for (name, bytes) in [
        (format!("{id}{SUFFIX}{SIG_SUFFIX}"), signature),
        (format!("{id}{SUFFIX}"), json),
    ] {
        dir.write_atomic(&name, bytes)
            .map_err(super::io(&dir.path().join(&name)))?;
    }
    dir.sync().map_err(super::io(dir.path()))
}

/// The device directories under `base` (sorted); a link or a file where a device's directory
/// belongs is reported as untrusted, and `base` or its parent being a link makes the root
/// unreadable. A missing `base` has none.
fn device_dirs(root: &Path, base: &Path, untrusted: &mut Vec<Untrusted>) -> Result<Vec<String>, String> {
    for dir in [root.join(super::STATE_DIR), base.to_path_buf()] {
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!("{}: a symbolic link (not followed)", dir.display()));
            }
            _ => {}
        }
    }
    let mut devices = Vec::new();
    for (name, entry) in super::read_dir(base).map_err(|e| e.to_string())? {
        let shown = name.to_string_lossy().into_owned();
        if shown.starts_with('.') {
            continue;
        }
        let kind = entry
            .file_type()
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        let why = match name.into_string() {
            Ok(n) if kind.is_dir() => {
                devices.push(n);
                continue;
            }
            Ok(_) if kind.is_symlink() => "a symbolic link where a device's directory belongs (not followed)",
            Ok(_) => "a file where a device's directory belongs",
            Err(_) => "a name that is not UTF-8",
        };
        untrusted.push(Untrusted {
            device: shown,
            path: entry.path(),
            why: why.into(),
        });
    }
    Ok(devices)
}

/// Reads a small regular file without following a link in its last component (a link is
/// refused, `ELOOP`), through the one handle it opened.
fn read_nofollow(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    f.by_ref().take(MAX_RECORD + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RECORD {
        return Err(std::io::Error::other("too large for a record"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{store, test_keys};
    use std::fs;

    fn device_dir(root: &Path, device: &str) -> PathBuf {
        root.join(crate::store::STATE_DIR).join(CHECKS_DIR).join(device)
    }

    fn check(device: &str, result: CheckResult) -> DeviceCheck {
        let mut c = DeviceCheck::new(device, "bitbox02", "simulator 127.0.0.1:1".into(), result);
        c.backup_id = Some("ab".repeat(32));
        c
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn written_to_every_root_signed_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let c = check("treasury", CheckResult::Found);
        let id = s.record_device_check(&c).unwrap();
        for root in [&s.primary, &s.replicas[0]] {
            let d = device_dir(root, "treasury");
            assert_eq!(files(&d), [format!("{id}{SUFFIX}"), format!("{id}{SUFFIX}.sig")]);
            use std::os::unix::fs::MetadataExt;
            assert_eq!(
                fs::metadata(d.join(format!("{id}{SUFFIX}"))).unwrap().mode() & 0o777,
                0o600
            );
            assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        }
        let read = s.device_checks();
        assert_eq!(read.trusted, [c], "once, though two roots hold it");
        assert!(read.untrusted.is_empty(), "{:?}", read.untrusted);
        // The store's artifact listing does not see them.
        assert!(s.list(None).unwrap().problems.is_empty());
    }

    /// Someone who can write a replica: unsigned, forged, moved, renamed, linked and
    /// future-dated records are reported, never believed.
    #[test]
    fn forged_moved_and_copied_records_are_not_believed() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let real = check("treasury", CheckResult::NotFound);
        let id = s.record_device_check(&real).unwrap();
        let d = device_dir(&s.replicas[0], "treasury");
        let json = fs::read(d.join(format!("{id}{SUFFIX}"))).unwrap();
        let sig = fs::read(d.join(format!("{id}{SUFFIX}.sig"))).unwrap();

        // A "found" with no signature, and one signed by a key allowed_signers does not trust.
        let mut fake = check("treasury", CheckResult::Found);
        fake.checked_at += chrono::Duration::seconds(60);
        let mut bytes = serde_json::to_vec_pretty(&fake).unwrap();
        bytes.push(b'\n');
        let fid = record_id(fake.checked_at, &bytes);
        fs::write(d.join(format!("{fid}{SUFFIX}")), &bytes).unwrap();
        let other = Store {
            keys: test_keys(),
            ..s.clone()
        };
        let mut foreign = check("treasury", CheckResult::Found);
        foreign.checked_at += chrono::Duration::seconds(120);
        let gid = other.record_device_check(&foreign).unwrap();
        // The real record under another device's name, and under another file name.
        let moved = device_dir(&s.replicas[0], "spare");
        fs::create_dir_all(&moved).unwrap();
        fs::write(moved.join(format!("{id}{SUFFIX}")), &json).unwrap();
        fs::write(moved.join(format!("{id}{SUFFIX}.sig")), &sig).unwrap();
        fs::write(d.join(format!("20300101T000000Z-00000000{SUFFIX}")), &json).unwrap();
        fs::write(d.join(format!("20300101T000000Z-00000000{SUFFIX}.sig")), &sig).unwrap();
        // A link to the real record.
        std::os::unix::fs::symlink(d.join(format!("{id}{SUFFIX}")), d.join(format!("x{SUFFIX}"))).unwrap();

        let read = s.device_checks();
        assert_eq!(read.trusted, [real], "only the agent's own record");
        let why: Vec<String> = read.untrusted.iter().map(|u| u.why.clone()).collect();
        let has = |w: &str| why.iter().any(|x| x.contains(w));
        assert!(has("signature unsigned"), "{why:?}");
        assert!(has("not in allowed_signers"), "{why:?}");
        assert!(has("stored under \"spare\""), "{why:?}");
        assert!(has("stored under another name"), "{why:?}");
        assert!(has("a symbolic link (not followed)"), "{why:?}");
        assert!(!why.iter().any(|w| w.contains(&gid)), "{why:?}");
        assert_eq!(
            read.untrusted.len(),
            5 + 1,
            "the foreign record in both roots: {why:?}"
        );
    }

    #[test]
    fn future_records_and_bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let mut c = check("treasury", CheckResult::Found);
        c.checked_at += chrono::Duration::hours(1);
        s.record_device_check(&c).unwrap();
        let read = s.device_checks();
        assert!(read.trusted.is_empty());
        assert!(
            read.untrusted[0].why.contains("in the future"),
            "{:?}",
            read.untrusted
        );
        assert!(s.record_device_check(&check("../x", CheckResult::Found)).is_err());
    }

    /// Someone who can write the replica plants a link where a directory of the records
    /// belongs, pointing at a directory the agent may write: the agent writes nothing through it
    /// (the primary still gets the record), and reading reports the link.
    #[test]
    fn links_planted_in_a_replica_are_not_written_through() {
        for planted in [
            ".coldkeep",
            ".coldkeep/device-checks",
            ".coldkeep/device-checks/treasury",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let s = store(dir.path());
            let target = tempfile::tempdir().unwrap();
            let link = s.replicas[0].join(planted);
            fs::create_dir_all(link.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target.path(), &link).unwrap();

            let e = s
                .record_device_check(&check("treasury", CheckResult::Found))
                .unwrap_err();
            assert!(e.to_string().contains("not followed"), "{planted}: {e}");
            assert_eq!(
                fs::read_dir(target.path()).unwrap().count(),
                0,
                "{planted}: nothing written through the link"
            );
            let read = s.device_checks();
            assert_eq!(read.trusted.len(), 1, "{planted}: the primary's record");
            let reported = read
                .untrusted
                .iter()
                .any(|u| u.device == "treasury" && u.why.contains("symbolic link") && u.path == link)
                || read
                    .unreadable
                    .iter()
                    .any(|u| u.contains("symbolic link (not followed)"));
            assert!(reported, "{planted}: {:?} {:?}", read.untrusted, read.unreadable);
        }
    }

    #[test]
    fn an_unreadable_records_directory_is_noted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.record_device_check(&check("treasury", CheckResult::Found))
            .unwrap();
        // A replica writer puts a file where the directory belongs.
        let base = s.replicas[0].join(crate::store::STATE_DIR).join(CHECKS_DIR);
        fs::remove_dir_all(&base).unwrap();
        fs::write(&base, b"x").unwrap();
        let read = s.device_checks();
        assert_eq!(read.trusted.len(), 1, "the primary's record still counts");
        assert_eq!(read.unreadable.len(), 1, "{:?}", read.unreadable);
        assert!(
            s.record_device_check(&check("treasury", CheckResult::Found))
                .is_err(),
            "reported"
        );
        assert_eq!(
            s.device_checks().trusted.len(),
            2,
            "written to the primary all the same"
        );
    }
}

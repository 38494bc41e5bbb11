//! Remembered pairings, like the BitBoxApp's: this host's Noise key and, per device name, the
//! device's static key. A name whose device shows another key is refused, as ssh refuses a
//! changed host key: a reset or swapped device, or something else answering in its place.
//!
//! One JSON file, 0600 in a 0700 directory under the user's config dir
//! (`$XDG_CONFIG_HOME/coldkeep/bitbox02-pairing.json`, else `~/.config/...`). It holds a private
//! key, so it is opened without following links and refused when others may read it or it is not
//! the user's; it is replaced atomically.

use super::error::DeviceError;
use super::noise::{HostKey, host_key_from, new_host_key};
use chrono::{DateTime, SubsecRound, Utc};
use noise_protocol::U8Array;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

/// The file's name in the config directory.
pub const FILE_NAME: &str = "bitbox02-pairing.json";
const FORMAT: u32 = 1;

/// The default pairing file: `$XDG_CONFIG_HOME/coldkeep/`, else `$HOME/.config/coldkeep/`.
pub fn default_path() -> Result<PathBuf, DeviceError> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        _ => match std::env::var_os("HOME").map(PathBuf::from) {
            Some(home) if home.is_absolute() => home.join(".config"),
            _ => {
                return Err(DeviceError::Pairing(
                    "no HOME to keep the BitBox02 pairing in: give --pairing-file PATH".into(),
                ));
            }
        },
    };
    Ok(base.join("coldkeep").join(FILE_NAME))
}

/// `SHA256:<base64>` of a device key, for messages (the style of ssh's host key fingerprints).
pub fn fingerprint(key: &[u8]) -> String {
    let digest = sha2::Sha256::digest(key);
    format!(
        "SHA256:{}",
        openssl::base64::encode_block(&digest).trim_end_matches('=')
    )
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileData {
    format: u32,
    /// This host's Noise private key, hex.
    host_key: String,
    #[serde(default)]
    devices: BTreeMap<String, Paired>,
}

/// One remembered device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Paired {
    /// The device's Noise static public key, hex.
    pub device_key: String,
    /// When the pairing code was confirmed.
    pub paired_at: DateTime<Utc>,
}

/// What the remembered pairings say about a device that answered as `name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Paired under this name before.
    Yes,
    /// Never seen: the pairing code must be confirmed on the device, then it is remembered.
    New,
}

/// The pairing file, loaded.
pub struct Pairings {
    path: PathBuf,
    host_key: HostKey,
    devices: BTreeMap<String, Paired>,
}

impl std::fmt::Debug for Pairings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pairings")
            .field("path", &self.path)
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

fn err(path: &Path, what: impl std::fmt::Display) -> DeviceError {
    DeviceError::Pairing(format!("BitBox02 pairing file {}: {what}", path.display()))
}

impl Pairings {
    /// Reads the file; a missing one is an empty memory with a new host key (written with the
    /// first confirmed pairing).
    pub fn load(path: &Path) -> Result<Pairings, DeviceError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path);
        let file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Pairings {
                    path: path.to_path_buf(),
                    host_key: new_host_key(),
                    devices: BTreeMap::new(),
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(err(path, "is a symbolic link; refusing (it holds a private key)"));
            }
            Err(e) => return Err(err(path, e)),
        };
        let meta = file.metadata().map_err(|e| err(path, e))?;
        check_owner_mode(path, meta.is_file(), meta.uid(), meta.mode())?;
        let mut bytes = Zeroizing::new(Vec::new());
        file.take(1024 * 1024)
            .read_to_end(&mut bytes)
            .map_err(|e| err(path, e))?;
        let mut data: FileData =
            serde_json::from_slice(&bytes).map_err(|e| err(path, format!("not a pairing file: {e}")))?;
        if data.format != FORMAT {
            return Err(err(
                path,
                format!("format {} (this coldkeep knows {FORMAT})", data.format),
            ));
        }
        let mut raw = Zeroizing::new([0u8; 32]);
        let decoded = hex::decode_to_slice(&data.host_key, raw.as_mut_slice());
        data.host_key.zeroize();
        decoded.map_err(|_| err(path, "`host_key` is not 32 bytes of hex"))?;
        for (name, p) in &data.devices {
            if hex::decode(&p.device_key).map(|k| k.len()) != Ok(32) {
                return Err(err(
                    path,
                    format!("device {name}: `device_key` is not 32 bytes of hex"),
                ));
            }
        }
        Ok(Pairings {
            path: path.to_path_buf(),
            host_key: host_key_from(&raw),
            devices: data.devices,
        })
    }

    /// This host's key.
    pub fn host_key(&self) -> &HostKey {
        &self.host_key
    }

    /// The remembered devices.
    pub fn devices(&self) -> &BTreeMap<String, Paired> {
        &self.devices
    }

    /// Whether `device_key` may answer as `name`: known, new, or refused (another key under
    /// this name; this key under another name).
    pub fn check(&self, name: &str, device_key: &[u8; 32]) -> Result<Known, DeviceError> {
        let key = hex::encode(device_key);
        if let Some(p) = self.devices.get(name) {
            if p.device_key == key {
                return Ok(Known::Yes);
            }
            let expected = hex::decode(&p.device_key).unwrap_or_default();
            return Err(DeviceError::KeyChanged {
                name: name.to_string(),
                expected: fingerprint(&expected),
                got: fingerprint(device_key),
            });
        }
        if let Some((other, _)) = self.devices.iter().find(|(_, p)| p.device_key == key) {
            return Err(DeviceError::PairedAsOther {
                other: other.clone(),
                key: fingerprint(device_key),
            });
        }
        Ok(Known::New)
    }

    /// Remembers a confirmed pairing and writes the file.
    pub fn remember(&mut self, name: &str, device_key: &[u8; 32]) -> Result<(), DeviceError> {
        self.devices.insert(
            name.to_string(),
            Paired {
                device_key: hex::encode(device_key),
                paired_at: Utc::now().trunc_subsecs(0),
            },
        );
        self.save()
    }

    /// Forgets `name`; whether it was there.
    pub fn forget(&mut self, name: &str) -> Result<bool, DeviceError> {
        let was = self.devices.remove(name).is_some();
        if was {
            self.save()?;
        }
        Ok(was)
    }

    fn save(&self) -> Result<(), DeviceError> {
        let path = &self.path;
        let dir = path.parent().ok_or_else(|| err(path, "has no directory"))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| err(path, e))?;
        let meta = std::fs::symlink_metadata(dir).map_err(|e| err(path, e))?;
        if !meta.is_dir() || meta.uid() != crate::config::perms::euid() || meta.mode() & 0o022 != 0 {
            return Err(err(
                path,
                format!(
                    "its directory {} must be a directory of yours that others cannot write (chmod 700)",
                    dir.display()
                ),
            ));
        }
        let data = FileData {
            format: FORMAT,
            host_key: hex::encode(self.host_key.as_slice()),
            devices: self.devices.clone(),
        };
        let mut json = Zeroizing::new(serde_json::to_vec_pretty(&data).map_err(|e| err(path, e))?);
        let mut key_hex = data.host_key;
        key_hex.zeroize();
        json.push(b'\n');
        let temp = dir.join(format!(".{FILE_NAME}.tmp-{:08x}", rand::random::<u32>()));
        let written = (|| -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&temp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&temp, path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(err(path, e));
        }
        Ok(())
    }
}

/// The file must be a regular file of this user that only they can read (it holds a private key).
fn check_owner_mode(path: &Path, regular: bool, uid: u32, mode: u32) -> Result<(), DeviceError> {
    if !regular {
        return Err(err(path, "is not a regular file"));
    }
    let me = crate::config::perms::euid();
    if uid != me {
        return Err(err(
            path,
            format!("belongs to uid {uid}, not to you (uid {me}); refusing"),
        ));
    }
    if mode & 0o077 != 0 {
        return Err(err(
            path,
            format!(
                "others may read or write it (mode {:04o}); it holds a private key. Fix: chmod 600 {}",
                mode & 0o7777,
                path.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn remembers_and_refuses_a_changed_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg/coldkeep").join(FILE_NAME);
        let mut p = Pairings::load(&path).unwrap();
        let a = [1u8; 32];
        let b = [2u8; 32];
        assert_eq!(p.check("treasury", &a).unwrap(), Known::New);
        p.remember("treasury", &a).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);

        let again = Pairings::load(&path).unwrap();
        assert_eq!(
            again.host_key().as_slice(),
            p.host_key().as_slice(),
            "the host key persists"
        );
        assert_eq!(again.check("treasury", &a).unwrap(), Known::Yes);
        let e = again.check("treasury", &b).unwrap_err().to_string();
        assert!(e.contains("not the BitBox02 paired under that name"), "{e}");
        assert!(
            e.contains(&fingerprint(&a)) && e.contains(&fingerprint(&b)),
            "{e}"
        );
        let e = again.check("cold", &a).unwrap_err().to_string();
        assert!(e.contains("already paired as 'treasury'"), "{e}");
        assert_eq!(again.check("cold", &b).unwrap(), Known::New);

        let mut again = again;
        assert!(again.forget("treasury").unwrap());
        assert_eq!(
            Pairings::load(&path).unwrap().check("treasury", &b).unwrap(),
            Known::New
        );
    }

    #[test]
    fn refuses_files_others_can_read_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut p = Pairings::load(&path).unwrap();
        p.remember("x", &[3; 32]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Pairings::load(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let e = Pairings::load(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        std::fs::write(&path, b"{\"format\":1,\"host_key\":\"zz\"}").unwrap();
        let e = Pairings::load(&path).unwrap_err().to_string();
        assert!(e.contains("not 32 bytes of hex"), "{e}");
        assert!(!e.contains("zz"), "the key text is not echoed: {e}");
    }
}

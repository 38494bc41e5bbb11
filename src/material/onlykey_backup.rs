//! Offline check of an OnlyKey backup: decrypt the payload with the backup passphrase or key and
//! walk its records the way the firmware's `RESTORE()` does (trustcrypto/libraries
//! `onlykey/okcore.cpp`), without a device.
//!
//! Why: the check line only proves the text arrived intact. Whether the operator's passphrase or
//! key will restore it is only known by decrypting, and the firmware's own wrong-key test (first
//! plaintext byte >= 0xFD) lets 3 wrong keys in 256 through. Walking every record to the exact
//! end of the plaintext rejects them.
//!
//! Payload layout (the last byte says how it is encrypted):
//! - ECC, trailer `100 + type`: `C || iv (12) || trailer`. The key's public key `pub` (type 1:
//!   Ed25519 public key of the 32-byte seed; types 2/3: the uECC point, X used; type 4: X25519 of
//!   the byte-reversed key) and `secret` = the key's shared secret with its own public key (type
//!   1: NaCl `crypto_box_beforenm(pub, key)`; 2/3: ECDH X; 4: X25519) give
//!   `K = SHA-256(secret || pub[..32] || iv)`, used as AES-256-GCM without a tag, which is
//!   AES-256-CTR from `iv || 00000002`.
//! - RSA, trailer 1-4: `C || PKCS#1 v1.5(aes key) (type x 128) || trailer`, IV `BACKUP12345\0`.
//!
//! Nothing here does I/O and nothing decrypted leaves this module: callers get counts and types.

use aes::cipher::{KeyIvInit, StreamCipher};
use curve25519_dalek::{EdwardsPoint, MontgomeryPoint};
use p256::elliptic_curve::point::AffineCoordinates;
use serde::Serialize;
use sha2::{Digest, Sha256, Sha512};
use std::collections::BTreeSet;
use zeroize::{Zeroize, Zeroizing};

type Aes256Ctr = ctr::Ctr32BE<aes::Aes256>;

/// How a backup is encrypted, from its trailer byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// Type 101: an X25519/NaCl key; the OnlyKey App's backup passphrase is one (SHA-256 of it).
    X25519,
    /// Type 102.
    P256,
    /// Type 103.
    Secp256k1,
    /// Type 104 (the reference notes only; no device backup has confirmed it).
    Curve25519,
    /// Types 1-4: RSA-1024 .. RSA-4096.
    Rsa {
        /// Modulus size.
        bits: u32,
    },
}

impl Scheme {
    /// Reads the trailer byte; `None` for a value no firmware writes.
    pub fn of(payload: &[u8]) -> Option<Scheme> {
        Some(match payload.last()? {
            101 => Scheme::X25519,
            102 => Scheme::P256,
            103 => Scheme::Secp256k1,
            104 => Scheme::Curve25519,
            t @ 1..=4 => Scheme::Rsa {
                bits: u32::from(*t) * 1024,
            },
            _ => return None,
        })
    }

    /// For messages: what kind of backup key made the backup.
    pub fn describe(&self) -> String {
        match self {
            Scheme::X25519 => "a backup passphrase or an X25519 backup key (type 101)".into(),
            Scheme::P256 => "a NIST P-256 backup key (type 102)".into(),
            Scheme::Secp256k1 => "a secp256k1 backup key (type 103)".into(),
            Scheme::Curve25519 => "a Curve25519 backup key (type 104)".into(),
            Scheme::Rsa { bits } => format!("an RSA-{bits} backup key"),
        }
    }
}

/// What the operator offers to open the backup with. Holds secrets; wiped on drop.
pub enum BackupKey {
    /// The backup passphrase; the OnlyKey App loads SHA-256 of it as a type-1 ECC key.
    Passphrase(Zeroizing<String>),
    /// A raw 32-byte ECC private key (the OnlyKey App's "backup key" for ECC).
    Ecc(Zeroizing<[u8; 32]>),
    /// An RSA private key.
    Rsa(openssl::pkey::PKey<openssl::pkey::Private>),
}

impl BackupKey {
    /// Parses a 32-byte ECC key written in hex (whitespace ignored).
    pub fn ecc_from_hex(text: &str) -> Result<BackupKey, OpenError> {
        let clean: Zeroizing<String> = Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(clean.as_str(), key.as_mut_slice())
            .map_err(|_| OpenError::BadKey("the ECC backup key must be 64 hex digits (32 bytes)".into()))?;
        Ok(BackupKey::Ecc(key))
    }

    /// Parses an RSA private key in PEM (PKCS#1 or PKCS#8, unencrypted).
    pub fn rsa_from_pem(pem: &[u8]) -> Result<BackupKey, OpenError> {
        let key = openssl::pkey::PKey::private_key_from_pem(pem)
            .map_err(|_| OpenError::BadKey("not an unencrypted RSA private key in PEM".into()))?;
        if key.rsa().is_err() {
            return Err(OpenError::BadKey("the PEM key is not an RSA key".into()));
        }
        Ok(BackupKey::Rsa(key))
    }

    /// For messages: what was tried.
    pub fn describe(&self) -> &'static str {
        match self {
            BackupKey::Passphrase(_) => "the backup passphrase",
            BackupKey::Ecc(_) => "the ECC backup key",
            BackupKey::Rsa(_) => "the RSA backup key",
        }
    }
}

/// Why a backup did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The key given cannot be of the kind that made the backup.
    #[error("this backup was made with {backup}; {tried} cannot open it")]
    WrongType {
        /// The backup's scheme, described.
        backup: String,
        /// What was tried.
        tried: &'static str,
    },
    /// The key is of the right kind but does not decrypt the backup.
    #[error("{tried} does not open this backup ({why})")]
    WrongKey {
        /// What was tried.
        tried: &'static str,
        /// Which test failed (never a value).
        why: String,
    },
    /// It decrypts, but the record stream breaks part-way.
    #[error(
        "the backup is damaged, or {tried} is not its key: the records decrypt but break at byte \
         {offset} of {len}, after {records} valid records"
    )]
    Damaged {
        /// What was tried.
        tried: &'static str,
        /// Where the walk stopped.
        offset: usize,
        /// Plaintext length.
        len: usize,
        /// Records read before.
        records: usize,
    },
    /// The payload's shape is wrong before any decryption (trailer, length).
    #[error("not an OnlyKey backup payload: {0}")]
    Malformed(String),
    /// The key given is unusable (format, out of range).
    #[error("{0}")]
    BadKey(String),
}

/// One private key found in the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRecord {
    /// The device slot (RSA 1-4, ECC 101-132).
    pub slot: u8,
    /// Key type (RSA: 1-4 = x1024 bits; ECC: 1 Ed25519/X25519, 2 P-256, 3 secp256k1, 4 Curve25519,
    /// 9 HMAC-SHA1 in slots 129 and 130).
    pub kind: u8,
}

/// What a backup holds, as counts and types only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The backup's encryption.
    pub scheme: Scheme,
    /// Decrypted record-stream size.
    pub plaintext_bytes: usize,
    /// Slots (1-132) with at least one stored field.
    pub slots: BTreeSet<u8>,
    /// Device-wide settings (slot 0 fields: timeouts, layout, Yubico OTP, ...).
    pub settings: usize,
    /// All slot and setting fields.
    pub fields: usize,
    /// RSA private keys.
    pub rsa_keys: Vec<KeyRecord>,
    /// ECC private keys.
    pub ecc_keys: Vec<KeyRecord>,
    /// The FIDO2 authenticator state is present.
    pub fido2_state: bool,
    /// FIDO2 resident keys (passkeys).
    pub resident_keys: usize,
    /// A legacy U2F record (old firmware; restore skips it).
    pub legacy_u2f: bool,
}

/// Decrypts `payload` with `key` and walks its records. The plaintext is wiped before returning.
pub fn open(payload: &[u8], key: &BackupKey) -> Result<Summary, OpenError> {
    let scheme = Scheme::of(payload).ok_or_else(|| {
        OpenError::Malformed(format!(
            "unknown backup key type (trailer byte {})",
            payload.last().copied().unwrap_or(0)
        ))
    })?;
    let tried = key.describe();
    let plain = decrypt(payload, scheme, key)?;
    walk(&plain, scheme).map_err(|stop| match stop {
        Stop::FirstByte => OpenError::WrongKey {
            tried,
            why: "the first decrypted byte is not a record".into(),
        },
        Stop::At { records: 0, .. } => OpenError::WrongKey {
            tried,
            why: "the first decrypted record is not valid".into(),
        },
        Stop::At { offset, records } => OpenError::Damaged {
            tried,
            offset,
            len: plain.len(),
            records,
        },
    })
}

fn decrypt(payload: &[u8], scheme: Scheme, key: &BackupKey) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let tried = key.describe();
    let wrong_type = || OpenError::WrongType {
        backup: scheme.describe(),
        tried,
    };
    let (body, aes_key, iv) = match scheme {
        Scheme::Rsa { bits } => {
            let BackupKey::Rsa(pkey) = key else {
                return Err(wrong_type());
            };
            let wrapped_len = (bits / 8) as usize;
            if payload.len() < wrapped_len + 2 {
                return Err(OpenError::Malformed(format!(
                    "{} bytes is too short for an RSA-{bits} backup",
                    payload.len()
                )));
            }
            let body = &payload[..payload.len() - 1 - wrapped_len];
            let wrapped = &payload[body.len()..payload.len() - 1];
            let rsa = pkey.rsa().map_err(|_| wrong_type())?;
            if rsa.size() as usize != wrapped_len {
                return Err(OpenError::WrongKey {
                    tried,
                    why: format!("it is an RSA-{} key, the backup needs RSA-{bits}", rsa.size() * 8),
                });
            }
            let mut out = Zeroizing::new(vec![0u8; wrapped_len]);
            let n = rsa
                .private_decrypt(wrapped, &mut out, openssl::rsa::Padding::PKCS1)
                .map_err(|_| OpenError::WrongKey {
                    tried,
                    why: "the wrapped AES key does not decrypt".into(),
                })?;
            if n != 32 {
                return Err(OpenError::WrongKey {
                    tried,
                    why: "the wrapped AES key does not decrypt".into(),
                });
            }
            let mut k = Zeroizing::new([0u8; 32]);
            k.copy_from_slice(&out[..32]);
            (body, k, *b"BACKUP12345\0")
        }
        ecc => {
            if payload.len() < 14 {
                return Err(OpenError::Malformed(format!(
                    "{} bytes is too short for an ECC backup",
                    payload.len()
                )));
            }
            let private = match (key, ecc) {
                (BackupKey::Passphrase(p), Scheme::X25519) => {
                    Zeroizing::new(<[u8; 32]>::from(Sha256::digest(p.as_bytes())))
                }
                (BackupKey::Ecc(k), _) => k.clone(),
                _ => return Err(wrong_type()),
            };
            let body = &payload[..payload.len() - 13];
            let mut iv = [0u8; 12];
            iv.copy_from_slice(&payload[body.len()..payload.len() - 1]);
            let (public, mut secret) = ecc_secret(ecc, &private).ok_or_else(|| {
                OpenError::BadKey(format!(
                    "{tried} is not a valid private key for {}",
                    ecc.describe()
                ))
            })?;
            let mut h = Sha256::new();
            h.update(secret.as_slice());
            h.update(public);
            h.update(iv);
            secret.zeroize();
            (body, Zeroizing::new(<[u8; 32]>::from(h.finalize())), iv)
        }
    };
    let mut counter = [0u8; 16];
    counter[..12].copy_from_slice(&iv);
    counter[15] = 2;
    let mut plain = Zeroizing::new(body.to_vec());
    Aes256Ctr::new((&*aes_key).into(), (&counter).into()).apply_keystream(&mut plain);
    Ok(plain)
}

/// The public key the firmware hashes (first 32 bytes) and the key's shared secret with it.
fn ecc_secret(scheme: Scheme, private: &[u8; 32]) -> Option<([u8; 32], Zeroizing<[u8; 32]>)> {
    match scheme {
        Scheme::X25519 => {
            // Ed25519 public key of the seed, then NaCl crypto_box_beforenm(pub, private):
            // HSalsa20(X25519(private, pub as a Montgomery u-coordinate), zero nonce).
            let mut h = Zeroizing::new(<[u8; 64]>::from(Sha512::digest(private)));
            let mut scalar = Zeroizing::new([0u8; 32]);
            scalar.copy_from_slice(&h[..32]);
            h.zeroize();
            let public = EdwardsPoint::mul_base_clamped(*scalar).compress().to_bytes();
            let shared = Zeroizing::new(MontgomeryPoint(public).mul_clamped(*private).to_bytes());
            let out = salsa20::hsalsa::<salsa20::cipher::consts::U10>((&*shared).into(), &Default::default());
            Some((public, Zeroizing::new(out.into())))
        }
        Scheme::Curve25519 => {
            let mut reversed = Zeroizing::new(*private);
            reversed.reverse();
            let public = MontgomeryPoint::mul_base_clamped(*reversed);
            Some((
                public.to_bytes(),
                Zeroizing::new(public.mul_clamped(*reversed).to_bytes()),
            ))
        }
        Scheme::P256 => {
            let secret = p256::SecretKey::from_slice(private).ok()?;
            let public = secret.public_key();
            let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), public.as_affine());
            let x = shared.raw_secret_bytes();
            Some((public.as_affine().x().into(), Zeroizing::new((*x).into())))
        }
        Scheme::Secp256k1 => {
            let secret = k256::SecretKey::from_slice(private).ok()?;
            let public = secret.public_key();
            let shared = k256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), public.as_affine());
            let x = shared.raw_secret_bytes();
            Some((public.as_affine().x().into(), Zeroizing::new((*x).into())))
        }
        Scheme::Rsa { .. } => None,
    }
}

/// Highest slot number a record may name (ECC key slots end at 132).
const MAX_SLOT: u8 = 132;
/// Highest field id a slot record may carry (the firmware's MessageField ids end below this).
const MAX_FIELD: u8 = 40;
/// Yubico OTP: public id (6), private id (6), AES key (16), then a 2-byte counter.
const YUBICO_LEN: usize = 6 + 6 + 16 + 2;
/// Longest value of a field that runs to the next record (EElen_username, _password, _url: 56).
const MAX_RUN: usize = 64;
/// Longest TOTP key (EElen_totpkey).
const MAX_TOTP: usize = 64;
/// Legacy U2F record: key (32), counter (2), certificate length (2), then the certificate.
const U2F_FIXED: usize = 32 + 2 + 2;
/// Sizes of a FIDO2 resident key record across firmware versions (beta 8, later).
const RK_SIZES: [usize; 2] = [441, 392];
/// Bounds for the FIDO2 authenticator state, whose size depends on the firmware build.
const STATE_MIN: usize = 64;
const STATE_MAX: usize = 1024;

/// The record walk alone, on a plaintext given as is: `None` where [`open`] would refuse it.
/// For fuzzing (the walk reads decrypted, so attacker-shaped, bytes) and tests.
pub fn walk_records(plaintext: &[u8], scheme: Scheme) -> Option<Summary> {
    walk(plaintext, scheme).ok()
}

/// Where the walk stopped.
enum Stop {
    FirstByte,
    At { offset: usize, records: usize },
}

/// Walks the record stream like `RESTORE()`, but strictly: every record must be well-formed and
/// the records must end exactly at the end of the plaintext.
fn walk(p: &[u8], scheme: Scheme) -> Result<Summary, Stop> {
    let mut s = Summary {
        scheme,
        plaintext_bytes: p.len(),
        slots: BTreeSet::new(),
        settings: 0,
        fields: 0,
        rsa_keys: Vec::new(),
        ecc_keys: Vec::new(),
        fido2_state: false,
        resident_keys: 0,
        legacy_u2f: false,
    };
    if p.first().is_none_or(|&b| b < 0xfd) {
        return Err(Stop::FirstByte);
    }
    let mut i = 0;
    let mut records = 0;
    while i < p.len() {
        let stop = Stop::At { offset: i, records };
        let next = match p[i] {
            0xff => slot_field(p, i, &mut s),
            // The FIDO2 state follows the keys, and every backup holds at least its own key.
            0xfe if p.get(i + 1) == Some(&0) && has_keys(&s) => fido2(p, i + 2, &mut s),
            0xfe => private_key(p, i, &mut s),
            0xfd => legacy_u2f(p, i, &mut s),
            _ => None,
        };
        i = next.ok_or(stop)?;
        records += 1;
    }
    // The backup key itself is always in the backup (its slot with features + 0x80).
    if !has_keys(&s) {
        return Err(Stop::At { offset: i, records });
    }
    Ok(s)
}

fn has_keys(s: &Summary) -> bool {
    !s.rsa_keys.is_empty() || !s.ecc_keys.is_empty()
}

/// `FF slot field value`; returns the offset after it.
fn slot_field(p: &[u8], i: usize, s: &mut Summary) -> Option<usize> {
    let (&slot, &field) = (p.get(i + 1)?, p.get(i + 2)?);
    if slot > MAX_SLOT || field == 0 || field > MAX_FIELD {
        return None;
    }
    let v = i + 3;
    let end = match field {
        10 => v + YUBICO_LEN,
        9 => {
            let n = usize::from(*p.get(v)?);
            if n == 0 || n > MAX_TOTP {
                return None;
            }
            v + 1 + n
        }
        11 => v + 1,
        // The firmware takes one value byte, then runs to the next delimiter. Stricter here: the
        // value is at most MAX_RUN bytes and ends where the next record starts (never at the end
        // of the plaintext: backups end with keys or the FIDO2 state).
        _ => {
            p.get(v)?;
            let n = p[v + 1..].iter().position(|&b| b >= 0xfc)?;
            if n + 1 > MAX_RUN || p[v + 1 + n] == 0xfc {
                return None;
            }
            v + 1 + n
        }
    };
    if end > p.len() {
        return None;
    }
    if slot == 0 {
        s.settings += 1;
    } else {
        s.slots.insert(slot);
    }
    s.fields += 1;
    Some(end)
}

/// HMAC-SHA1 key type (python-onlykey `setkey HMAC1 h`), held in the two HMAC slots.
const HMAC_KIND: u8 = 9;
/// `RESERVED_KEY_HMACSHA1_2` and `_1` (okcore.h).
const HMAC_SLOTS: [u8; 2] = [129, 130];

/// `FE slot features key`: RSA slots 1-4 ((features & 0x0F) x 128 bytes), ECC 101-132 (32; the
/// HMAC slots 129 and 130 hold type 9, which `RESTORE()` reads like any ECC slot).
fn private_key(p: &[u8], i: usize, s: &mut Summary) -> Option<usize> {
    let (&slot, &features) = (p.get(i + 1)?, p.get(i + 2)?);
    let kind = features & 0x0f;
    let ecc_kind = (1..=4).contains(&kind) || kind == HMAC_KIND && HMAC_SLOTS.contains(&slot);
    let (len, list) = match slot {
        1..=4 if (1..=4).contains(&kind) => (usize::from(kind) * 128, &mut s.rsa_keys),
        101..=132 if ecc_kind => (32, &mut s.ecc_keys),
        _ => return None,
    };
    let end = i + 3 + len;
    if end > p.len() {
        return None;
    }
    list.push(KeyRecord { slot, kind });
    Some(end)
}

/// `FE 00 state`, then `FE 200+i rk` to the end: finds the state size and resident-key size
/// that make the rest a chain of resident keys ending exactly at the end of the plaintext.
fn fido2(p: &[u8], start: usize, s: &mut Summary) -> Option<usize> {
    let rest = p.get(start..)?;
    let mut best: Option<usize> = None;
    for rk in RK_SIZES {
        let step = rk + 2;
        for count in (0..=rest.len() / step).rev() {
            let state = rest.len() - count * step;
            if !(STATE_MIN..=STATE_MAX).contains(&state) {
                continue;
            }
            let chained = (0..count).all(|j| {
                let at = state + j * step;
                rest[at] == 0xfe && rest[at + 1] >= 200 && (j == 0 || rest[at + 1] > rest[at + 1 - step])
            });
            if chained && best.is_none_or(|b| count > b) {
                best = Some(count);
            }
        }
    }
    s.resident_keys = best?;
    s.fido2_state = true;
    Some(p.len())
}

/// Legacy `FD` U2F record (skipped on restore).
fn legacy_u2f(p: &[u8], i: usize, s: &mut Summary) -> Option<usize> {
    let fixed = i + 1 + U2F_FIXED;
    let cert = usize::from(u16::from_be_bytes([*p.get(fixed - 2)?, *p.get(fixed - 1)?]));
    let end = fixed + cert;
    if end > p.len() {
        return None;
    }
    s.legacy_u2f = true;
    Some(end)
}

impl Summary {
    /// Human lines: counts and types only.
    pub fn lines(&self) -> Vec<String> {
        let kinds = |keys: &[KeyRecord], name: fn(u8) -> String| -> String {
            if keys.is_empty() {
                return "none".into();
            }
            keys.iter()
                .map(|k| format!("slot {} {}", k.slot, name(k.kind)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let slots = if self.slots.is_empty() {
            "none".to_string()
        } else {
            self.slots
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        vec![
            format!(
                "decrypted {} bytes of records; every record is well-formed",
                self.plaintext_bytes
            ),
            format!("slots with data: {} ({slots})", self.slots.len()),
            format!(
                "slot and setting fields: {} ({} device settings)",
                self.fields, self.settings
            ),
            format!(
                "RSA keys: {}",
                kinds(&self.rsa_keys, |k| format!("RSA-{}", u32::from(k) * 1024))
            ),
            format!("ECC keys: {}", kinds(&self.ecc_keys, |k| ecc_name(k).to_string())),
            format!(
                "FIDO2: {}, resident keys: {}",
                if self.fido2_state {
                    "state present"
                } else {
                    "no state"
                },
                self.resident_keys
            ),
        ]
        .into_iter()
        .chain(
            self.legacy_u2f
                .then(|| "a legacy U2F record (restore skips it)".to_string()),
        )
        .collect()
    }
}

fn ecc_name(kind: u8) -> &'static str {
    match kind {
        1 => "Ed25519/X25519",
        2 => "P-256",
        3 => "secp256k1",
        HMAC_KIND => "HMAC-SHA1",
        _ => "Curve25519",
    }
}

#[cfg(test)]
mod tests;

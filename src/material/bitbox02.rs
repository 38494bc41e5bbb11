//! BitBox02 microSD backups: a directory named by the backup id holding three identical
//! protobuf files `backup_<Weekday>_<YYYY-MM-DD>T<HH>-<MM>-<SS>Z_<0|1|2>.bin`.
//!
//! `Backup { BackupV1 backup_v1 = 1 }`, `BackupV1 { BackupContent content = 1 }`,
//! `BackupContent { bytes checksum = 1; BackupMetaData metadata = 2; uint32 length = 3; bytes data = 4 }`,
//! `BackupMetaData { uint32 timestamp = 1; string name = 2; BackupMode mode = 3 }`,
//! `BackupData { uint32 seed_length = 1; bytes seed = 2; uint32 birthdate = 3; string generator = 4 }`.
//! The seed is in **plaintext**: these bytes are only ever held in wiped buffers and encrypted.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Why a file is not a valid BitBox02 backup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BitBoxError(pub String);

fn bad(message: impl Into<String>) -> BitBoxError {
    BitBoxError(message.into())
}

/// One parsed backup file. The seed is wiped on drop.
pub struct BackupFile {
    /// The wallet name.
    pub name: String,
    /// When the backup was made (Unix time).
    pub timestamp: u32,
    /// Backup mode byte.
    pub mode: u32,
    /// Length of the backup data.
    pub length: u32,
    /// Seed length in bytes.
    pub seed_length: u32,
    seed: Zeroizing<Vec<u8>>,
    /// Wallet birthdate (Unix time).
    pub birthdate: u32,
    /// Firmware that wrote the backup.
    pub generator: String,
    checksum: Vec<u8>,
}

impl std::fmt::Debug for BackupFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BitBox02 backup {:?} (seed redacted)", self.name)
    }
}

/// The public identity of a BitBox02 backup (never the seed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BitBox02Identity {
    /// HMAC-SHA256("backup", seed) in hex: the wallet's backup id, also the card folder's name.
    pub id: String,
    /// The wallet name.
    pub name: String,
    /// Creation time of the backup (Unix seconds).
    pub timestamp: u32,
    /// Firmware that wrote it.
    pub generator: String,
    /// Copies that parsed with a valid checksum (of 3).
    pub copies_ok: usize,
}

impl BitBox02Identity {
    /// `bitbox02 "My BitBox" 577782fd…, 2020-09-28`.
    pub fn short(&self) -> String {
        let when = chrono::DateTime::from_timestamp(i64::from(self.timestamp), 0)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        format!(
            "bitbox02 {:?} {}…, {when}",
            self.name,
            &self.id[..self.id.len().min(8)]
        )
    }
}

/// A minimal protobuf reader: (field number, wire value) pairs of one message.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, BitBoxError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(bad("varint too long"))
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Value<'_>)>, BitBoxError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => out.push((field, Value::Varint(varint(buf, &mut pos)?))),
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(|_| bad("length overflow"))?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or_else(|| bad("truncated field"))?;
                out.push((field, Value::Bytes(&buf[pos..end])));
                pos = end;
            }
            1 => pos += 8,
            5 => pos += 4,
            w => return Err(bad(format!("unsupported protobuf wire type {w}"))),
        }
        if pos > buf.len() {
            return Err(bad("truncated field"));
        }
    }
    Ok(out)
}

fn bytes_field<'a>(fields: &[(u64, Value<'a>)], n: u64) -> Option<&'a [u8]> {
    fields.iter().rev().find_map(|(f, v)| match v {
        Value::Bytes(b) if *f == n => Some(*b),
        _ => None,
    })
}

fn u32_field(fields: &[(u64, Value<'_>)], n: u64) -> Result<u32, BitBoxError> {
    match fields.iter().rev().find(|(f, _)| *f == n) {
        None => Ok(0),
        Some((_, Value::Varint(v))) => u32::try_from(*v).map_err(|_| bad(format!("field {n} out of range"))),
        Some(_) => Err(bad(format!("field {n} has the wrong type"))),
    }
}

fn string_field(fields: &[(u64, Value<'_>)], n: u64) -> Result<String, BitBoxError> {
    let b = bytes_field(fields, n).unwrap_or_default();
    String::from_utf8(b.to_vec()).map_err(|_| bad(format!("field {n} is not UTF-8")))
}

/// Parses one backup file and checks its checksum.
pub fn parse(file: &[u8]) -> Result<BackupFile, BitBoxError> {
    let top = fields(file)?;
    let v1 = bytes_field(&top, 1).ok_or_else(|| bad("not a BitBox02 backup (no backup_v1)"))?;
    let v1 = fields(v1)?;
    let content = bytes_field(&v1, 1).ok_or_else(|| bad("backup_v1 has no content"))?;
    let content = fields(content)?;
    let checksum = bytes_field(&content, 1)
        .ok_or_else(|| bad("no checksum"))?
        .to_vec();
    let metadata = fields(bytes_field(&content, 2).ok_or_else(|| bad("no metadata"))?)?;
    let length = u32_field(&content, 3)?;
    let data = Zeroizing::new(
        bytes_field(&content, 4)
            .ok_or_else(|| bad("no backup data"))?
            .to_vec(),
    );
    let data_fields = fields(&data)?;
    let seed = Zeroizing::new(
        bytes_field(&data_fields, 2)
            .ok_or_else(|| bad("no seed"))?
            .to_vec(),
    );
    let backup = BackupFile {
        name: string_field(&metadata, 2)?,
        timestamp: u32_field(&metadata, 1)?,
        mode: u32_field(&metadata, 3)?,
        length,
        seed_length: u32_field(&data_fields, 1)?,
        seed,
        birthdate: u32_field(&data_fields, 3)?,
        generator: string_field(&data_fields, 4)?,
        checksum,
    };
    if backup.seed.len() > 32 || !(16..=32).contains(&backup.seed_length) {
        return Err(bad(format!(
            "seed length {} (field of {} bytes) is not a BIP39 seed length",
            backup.seed_length,
            backup.seed.len()
        )));
    }
    if backup.mode != 0 {
        return Err(bad(format!(
            "backup mode {} is unknown (only PLAINTEXT = 0 exists)",
            backup.mode
        )));
    }
    if backup.computed_checksum().as_slice() != backup.checksum.as_slice() {
        return Err(bad("checksum does not match the content (the file is damaged)"));
    }
    Ok(backup)
}

fn padded<const N: usize>(b: &[u8]) -> Zeroizing<[u8; N]> {
    let mut out = Zeroizing::new([0u8; N]);
    let n = b.len().min(N);
    out[..n].copy_from_slice(&b[..n]);
    out
}

impl BackupFile {
    /// SHA-256 over timestamp, mode, name (64), seed_length, seed (32), birthdate, generator (20),
    /// length, as the firmware computes it.
    fn computed_checksum(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.timestamp.to_le_bytes());
        h.update([self.mode as u8]);
        h.update(padded::<64>(self.name.as_bytes()).as_slice());
        h.update(self.seed_length.to_le_bytes());
        h.update(padded::<32>(&self.seed).as_slice());
        h.update(self.birthdate.to_le_bytes());
        h.update(padded::<20>(self.generator.as_bytes()).as_slice());
        h.update(self.length.to_le_bytes());
        h.finalize().into()
    }

    /// The backup id: lowercase hex of HMAC-SHA256(key `backup`, seed zero-padded to 32 bytes).
    pub fn id(&self) -> String {
        let seed = padded::<32>(&self.seed);
        crate::material::acra::hmac_sha256(b"backup", &[seed.as_slice()])
            .map(hex::encode)
            .unwrap_or_default()
    }

    /// Whether two copies hold the same wallet backup (same id, name, time, generator).
    pub fn same_as(&self, other: &BackupFile) -> bool {
        self.checksum == other.checksum
            && openssl::memcmp::eq(&padded::<32>(&self.seed)[..], &padded::<32>(&other.seed)[..])
    }
}

/// A backup folder's checks: each copy parsed, the copies agree, the id matches the folder.
pub struct FolderCheck {
    /// The first good copy's identity (with `copies_ok`), if any copy is good.
    pub identity: Option<BitBox02Identity>,
    /// Problems found (bad copies, disagreement, id mismatch, wrong file count).
    pub problems: Vec<String>,
}

/// Checks the files of one backup folder: `(file name, bytes)` in any order.
pub fn check_folder(folder_name: &str, files: &[(String, &[u8])]) -> FolderCheck {
    let mut problems = Vec::new();
    if files.len() != 3 {
        problems.push(format!("{} backup files, expected 3 copies", files.len()));
    }
    let mut good: Vec<(String, BackupFile)> = Vec::new();
    for (name, bytes) in files {
        match parse(bytes) {
            Ok(b) => good.push((name.clone(), b)),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    if let Some((first_name, first)) = good.first() {
        for (name, b) in &good[1..] {
            if !first.same_as(b) {
                problems.push(format!("{name} and {first_name} hold different backups"));
            }
        }
        let id = first.id();
        if id != folder_name {
            problems.push(format!(
                "the folder is named {folder_name} but the backup's id is {id} (renamed or mixed up)"
            ));
        }
    }
    FolderCheck {
        identity: good.first().map(|(_, b)| BitBox02Identity {
            id: b.id(),
            name: b.name.clone(),
            timestamp: b.timestamp,
            generator: b.generator.clone(),
            copies_ok: good.len(),
        }),
        problems,
    }
}

/// Encodes a backup file (tests and fixtures): the firmware's layout with a valid checksum.
pub fn encode(name: &str, timestamp: u32, seed: &[u8], birthdate: u32, generator: &str) -> Vec<u8> {
    fn key(field: u64, wire: u64, out: &mut Vec<u8>) {
        put_varint((field << 3) | wire, out);
    }
    fn put_varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn bytes(field: u64, b: &[u8], out: &mut Vec<u8>) {
        key(field, 2, out);
        put_varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }
    fn uint(field: u64, v: u64, out: &mut Vec<u8>) {
        if v != 0 {
            key(field, 0, out);
            put_varint(v, out);
        }
    }
    let file = BackupFile {
        name: name.into(),
        timestamp,
        mode: 0,
        length: 0,
        seed_length: seed.len() as u32,
        seed: Zeroizing::new(padded::<32>(seed).to_vec()),
        birthdate,
        generator: generator.into(),
        checksum: Vec::new(),
    };
    let mut data = Vec::new();
    uint(1, u64::from(file.seed_length), &mut data);
    bytes(2, &file.seed, &mut data);
    uint(3, u64::from(birthdate), &mut data);
    bytes(4, generator.as_bytes(), &mut data);
    let mut meta = Vec::new();
    uint(1, u64::from(timestamp), &mut meta);
    bytes(2, name.as_bytes(), &mut meta);
    let mut content = Vec::new();
    bytes(1, &file.computed_checksum(), &mut content);
    bytes(2, &meta, &mut content);
    bytes(4, &data, &mut content);
    let mut v1 = Vec::new();
    bytes(1, &content, &mut v1);
    let mut top = Vec::new();
    bytes(1, &v1, &mut top);
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The firmware's unit-test fixture (public test seed), from the reference.
    const FIXTURE: &str = "0a6c0a6a0a2017834e53e17370800c0bc49b49ef3f1309df104d7239db5bbd093c90eefc995112110891bec6fb0512094d7920426974426f782233081012208af64d31126a39b98f59708a3a463e5b000000000000000000000000000000001891bec6fb05220776392e31332e30";

    #[test]
    fn parses_the_firmware_fixture() {
        let b = parse(&hex::decode(FIXTURE).unwrap()).unwrap();
        assert_eq!(b.name, "My BitBox");
        assert_eq!(b.timestamp, 1_601_281_809);
        assert_eq!(b.seed_length, 16);
        assert_eq!(b.generator, "v9.13.0");
        assert_eq!(b.length, 0);
        assert_eq!(
            b.id(),
            "577782fdfffbe314b23acaeefc39ad5e8641fba7e7dbe418a35956a879a67dd2"
        );
    }

    #[test]
    fn id_test_vectors() {
        let one = parse(&encode("a", 1, &[1u8; 16], 1, "v9.20.0")).unwrap();
        assert_eq!(
            one.id(),
            "2ca3c18f988437806217db3bbee04913cbfaaa7152d4a9c00c80cf3802d0ef6f"
        );
        let three = parse(&encode("b", 1, &[3u8; 32], 1, "v9.20.0")).unwrap();
        assert_eq!(
            three.id(),
            "89910bac6d7f82e4e97ea2b6449e201dfd793adb75b342a90314d178866c89eb"
        );
    }

    #[test]
    fn encode_matches_the_fixture_layout() {
        let fixture = parse(&hex::decode(FIXTURE).unwrap()).unwrap();
        let seed = &fixture.seed[..16];
        let again = encode("My BitBox", 1_601_281_809, seed, fixture.birthdate, "v9.13.0");
        assert_eq!(hex::encode(again), FIXTURE);
    }

    #[test]
    fn damage_is_detected() {
        let mut file = hex::decode(FIXTURE).unwrap();
        let at = file.len() - 30; // inside the seed
        file[at] ^= 1;
        assert!(parse(&file).unwrap_err().0.contains("checksum"));
        assert!(parse(&file[..40]).is_err());
        assert!(parse(b"not protobuf at all").is_err());
        for n in 0..file.len() {
            let _ = parse(&file[..n]);
        }
    }

    #[test]
    fn folder_checks() {
        let good = encode("w", 1_700_000_000, &[7u8; 32], 1_700_000_000, "v9.20.0");
        let id = parse(&good).unwrap().id();
        let other = encode("w", 1_700_000_000, &[8u8; 32], 1_700_000_000, "v9.20.0");
        let files = |third: &[u8]| {
            vec![
                ("backup_0.bin".to_string(), good.clone()),
                ("backup_1.bin".to_string(), good.clone()),
                ("backup_2.bin".to_string(), third.to_vec()),
            ]
        };
        let run = |folder: &str, f: Vec<(String, Vec<u8>)>| {
            let refs: Vec<(String, &[u8])> = f.iter().map(|(n, b)| (n.clone(), b.as_slice())).collect();
            check_folder(folder, &refs)
        };
        let ok = run(&id, files(&good));
        assert!(ok.problems.is_empty(), "{:?}", ok.problems);
        assert_eq!(ok.identity.unwrap().copies_ok, 3);
        let disagree = run(&id, files(&other));
        assert!(
            disagree.problems[0].contains("hold different backups"),
            "{:?}",
            disagree.problems
        );
        let mut broken = good.clone();
        let at = broken.len() - 40;
        broken[at] ^= 1;
        let damaged = run(&id, files(&broken));
        assert!(
            damaged.problems[0].contains("backup_2.bin: checksum"),
            "{:?}",
            damaged.problems
        );
        assert_eq!(damaged.identity.unwrap().copies_ok, 2);
        let renamed = run(&"0".repeat(64), files(&good));
        assert!(
            renamed.problems[0].contains("renamed or mixed up"),
            "{:?}",
            renamed.problems
        );
    }
}

//! OnlyKey backups: the armored text the device types when button 1 is held.
//!
//! ```text
//! -----BEGIN ONLYKEY BACKUP-----
//! <76 base64 characters>      one line per 57 payload bytes
//! <last line>                 the rest (an empty line when the payload is a multiple of 57)
//! --<44 base64 characters>    chained SHA-256: H0 = 32 zero bytes, Hi = SHA-256(Hi-1 || line i)
//! -----END ONLYKEY BACKUP-----
//! ```
//!
//! The device never sees the check line, so it is verified here before anything is stored or
//! restored. Errors name the line and what was expected: typed text loses characters, or gets
//! `+`, `/`, `=` wrong when the keyboard layout does not match.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// First line of an OnlyKey backup text.
pub const BEGIN: &str = "-----BEGIN ONLYKEY BACKUP-----";
/// Last line of an OnlyKey backup text.
pub const END: &str = "-----END ONLYKEY BACKUP-----";
/// Payload bytes per text line (and per OKRESTORE report).
pub const LINE_BYTES: usize = 57;
/// The device's restore buffer.
pub const MAX_PAYLOAD: usize = 18_000;

/// Why a text is not a valid OnlyKey backup; `line` is 1-based (0: the text as a whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if *line > 0 { format!("line {line}: ") } else { String::new() })]
pub struct OnlyKeyError {
    /// The line (1-based).
    pub line: usize,
    /// What is wrong there.
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> OnlyKeyError {
    OnlyKeyError {
        line,
        message: message.into(),
    }
}

/// A verified backup: the payload and the canonical text (CRs, stray blank lines and surrounding
/// noise removed), both wiped on drop.
pub struct Backup {
    /// The decoded backup bytes.
    pub payload: Zeroizing<Vec<u8>>,
    /// The backup text as typed.
    pub text: Zeroizing<String>,
    /// The check value (base64, without `--`).
    pub check: String,
}

/// The public identity of an OnlyKey backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlyKeyIdentity {
    /// Size of the decoded backup in bytes.
    pub payload_size: usize,
    /// The chained SHA-256 check value (base64).
    pub check: String,
    /// `ecc` (a backup passphrase or an ECC backup key) or `rsa`.
    pub key_type: String,
    /// What the trailer byte says, e.g. `ECC X25519 (backup passphrase or X25519 key)`.
    pub key_detail: String,
}

impl OnlyKeyIdentity {
    /// `onlykey backup, 1234 bytes, ECC X25519 ...`.
    pub fn short(&self) -> String {
        format!("onlykey backup, {} bytes, {}", self.payload_size, self.key_detail)
    }
}

impl std::fmt::Debug for Backup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OnlyKey backup ({} bytes, redacted)", self.payload.len())
    }
}

fn b64_decode(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    openssl::base64::decode_block(text).ok().map(Zeroizing::new)
}

/// Parses and verifies typed or saved backup text.
pub fn parse(text: &str) -> Result<Backup, OnlyKeyError> {
    // Lines end in LF, CRLF or a lone CR (a raw terminal); blank lines carry no data.
    let normalized = Zeroizing::new(text.replace("\r\n", "\n").replace('\r', "\n"));
    let mut lines = normalized
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let Some((n, first)) = lines.next() else {
        return Err(err(0, format!("the text is empty; expected {BEGIN}")));
    };
    if first != BEGIN {
        return Err(err(n, format!("expected {BEGIN}")));
    }
    let mut chunks: Vec<(usize, Zeroizing<Vec<u8>>)> = Vec::new();
    let mut check = None;
    for (n, line) in lines.by_ref() {
        if line == END {
            return Err(err(
                n,
                "the check line (`--` and 44 base64 characters) is missing before the END line",
            ));
        }
        if let Some(value) = line.strip_prefix("--") {
            check = Some((n, value.to_string()));
            break;
        }
        let Some(chunk) = b64_decode(line) else {
            return Err(err(
                n,
                format!(
                    "not valid base64 ({} characters): a character was lost or mistyped (check that the \
                     OnlyKey's keyboard layout matches this computer's)",
                    line.len()
                ),
            ));
        };
        if let Some((prev, last)) = chunks.last()
            && last.len() != LINE_BYTES
        {
            return Err(err(
                *prev,
                format!(
                    "a data line before the last must hold {LINE_BYTES} bytes (76 characters); this one holds {}",
                    last.len()
                ),
            ));
        }
        if chunk.len() > LINE_BYTES {
            return Err(err(
                n,
                format!(
                    "a data line holds at most {LINE_BYTES} bytes; this one holds {}",
                    chunk.len()
                ),
            ));
        }
        chunks.push((n, chunk));
    }
    let Some((check_line, check_value)) = check else {
        return Err(err(
            0,
            format!("no check line and no {END}: the text is incomplete (typing stopped early?)"),
        ));
    };
    match lines.next() {
        Some((_, l)) if l == END => {}
        Some((n, _)) => return Err(err(n, format!("expected {END} after the check line"))),
        None => {
            return Err(err(
                0,
                format!("no {END} line: the text is incomplete (typing stopped early?)"),
            ));
        }
    }
    let Some(expected) = b64_decode(&check_value).filter(|h| h.len() == 32) else {
        return Err(err(
            check_line,
            format!(
                "the check line must be `--` and 44 base64 characters (a SHA-256), got {} characters",
                check_value.len()
            ),
        ));
    };
    // The firmware ends with an empty line (hashed as an empty chunk) when the payload fills its
    // last line exactly.
    let mut chain = [0u8; 32];
    let ends_full = chunks.last().is_none_or(|(_, c)| c.len() == LINE_BYTES);
    let empty = Zeroizing::new(Vec::new());
    for chunk in chunks.iter().map(|(_, c)| c).chain(ends_full.then_some(&empty)) {
        let mut h = Sha256::new();
        h.update(chain);
        h.update(chunk.as_slice());
        chain = h.finalize().into();
    }
    if !openssl::memcmp::eq(&chain, &expected) {
        return Err(err(
            check_line,
            "the check line does not match the data: the text was damaged in typing or editing \
             (a changed character that is still valid base64); capture it again",
        ));
    }
    let size: usize = chunks.iter().map(|(_, c)| c.len()).sum();
    if size == 0 {
        return Err(err(0, "the backup holds no data"));
    }
    if size > MAX_PAYLOAD {
        return Err(err(
            0,
            format!("the payload is {size} bytes, over the OnlyKey's {MAX_PAYLOAD}-byte restore limit"),
        ));
    }
    let mut payload = Zeroizing::new(Vec::with_capacity(size));
    let mut canonical = Zeroizing::new(String::with_capacity(normalized.len()));
    canonical.push_str(BEGIN);
    canonical.push('\n');
    for (_, c) in &chunks {
        payload.extend_from_slice(c);
        canonical.push_str(&Zeroizing::new(openssl::base64::encode_block(c)));
        canonical.push('\n');
    }
    if ends_full {
        canonical.push('\n');
    }
    canonical.push_str("--");
    canonical.push_str(&check_value);
    canonical.push('\n');
    canonical.push_str(END);
    canonical.push('\n');
    Ok(Backup {
        payload,
        text: canonical,
        check: check_value,
    })
}

impl Backup {
    /// Payload size, check value and the backup key type from the trailer byte.
    pub fn identity(&self) -> OnlyKeyIdentity {
        let last = self.payload.last().copied().unwrap_or(0);
        let (key_type, key_detail) = match last {
            101 => ("ecc", "ECC X25519 (backup passphrase or X25519 key)".to_string()),
            102 => ("ecc", "ECC NIST P-256 backup key".to_string()),
            103 => ("ecc", "ECC secp256k1 backup key".to_string()),
            1..=4 => ("rsa", format!("RSA-{} backup key", u32::from(last) * 1024)),
            other => (
                "unknown",
                format!("unknown backup key type (trailer byte {other})"),
            ),
        };
        OnlyKeyIdentity {
            payload_size: self.payload.len(),
            check: self.check.clone(),
            key_type: key_type.to_string(),
            key_detail,
        }
    }
}

/// Builds backup text for a payload the way the firmware types it (tests, fixtures).
pub fn armor(payload: &[u8]) -> String {
    let mut out = format!("{BEGIN}\n");
    let mut chain = [0u8; 32];
    let mut chunks: Vec<&[u8]> = payload.chunks(LINE_BYTES).collect();
    if payload.len().is_multiple_of(LINE_BYTES) {
        chunks.push(&[]);
    }
    for c in chunks {
        let mut h = Sha256::new();
        h.update(chain);
        h.update(c);
        chain = h.finalize().into();
        out.push_str(&openssl::base64::encode_block(c));
        out.push('\n');
    }
    out.push_str("--");
    out.push_str(&openssl::base64::encode_block(&chain));
    out.push('\n');
    out.push_str(END);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(n: usize, trailer: u8) -> Vec<u8> {
        let mut p: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
        if let Some(last) = p.last_mut() {
            *last = trailer;
        }
        p
    }

    #[test]
    fn round_trips_every_line_shape() {
        for n in [1, 56, 57, 58, 114, 1000, MAX_PAYLOAD] {
            let p = payload(n, 101);
            let text = armor(&p);
            let b = parse(&text).unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(b.payload.as_slice(), p.as_slice(), "{n}");
            assert_eq!(b.text.as_str(), text, "canonical text is the firmware's");
            assert_eq!(b.identity().payload_size, n);
        }
    }

    #[test]
    fn multiple_of_57_has_an_empty_line_that_is_hashed() {
        let text = armor(&payload(114, 101));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[3], "", "empty line before the check line");
        // The same data with a check computed without the empty chunk does not verify.
        let mut chain = [0u8; 32];
        for c in payload(114, 101).chunks(57) {
            let mut h = Sha256::new();
            h.update(chain);
            h.update(c);
            chain = h.finalize().into();
        }
        let wrong = text.replace(lines[4], &format!("--{}", openssl::base64::encode_block(&chain)));
        assert!(parse(&wrong).unwrap_err().message.contains("does not match"));
    }

    #[test]
    fn crlf_cr_and_stray_blank_lines_are_tolerated() {
        let text = armor(&payload(200, 101));
        assert!(parse(&text.replace('\n', "\r\n")).is_ok());
        assert!(parse(&text.replace('\n', "\r")).is_ok());
        assert!(parse(&format!("\n\n{}", text.replace('\n', "\n\n"))).is_ok());
        assert!(parse(&format!("  {}", text.replace('\n', " \n"))).is_ok());
    }

    #[test]
    fn damage_is_reported_with_its_line() {
        let text = armor(&payload(200, 101));
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let with = |i: usize, new: &str| {
            let mut l = lines.clone();
            l[i] = new.to_string();
            l.join("\n")
        };
        // A lost character: not base64 (length), on line 3.
        let e = parse(&with(2, &lines[2][1..])).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("not valid base64"), "{e}");
        // A layout-swapped character: '+' typed as '-' is not base64.
        let swapped = lines[1].replacen(|c: char| c.is_ascii_alphabetic(), "-", 1);
        assert_eq!(parse(&with(1, &swapped)).unwrap_err().line, 2);
        // A valid-base64 change: only the chain catches it.
        let changed: String = lines[2]
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i == 10 {
                    if c == 'A' { 'B' } else { 'A' }
                } else {
                    c
                }
            })
            .collect();
        let e = parse(&with(2, &changed)).unwrap_err();
        assert!(e.message.contains("does not match"), "{e}");
        assert_eq!(e.line, 6, "points at the check line");
        // A short line in the middle.
        let e = parse(&with(1, &lines[1][..72])).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("57 bytes"), "{e}");
        // Wrong check line, missing END, missing BEGIN.
        assert!(
            parse(&with(5, "--AAAA"))
                .unwrap_err()
                .message
                .contains("44 base64")
        );
        let e = parse(&lines[..6].join("\n")).unwrap_err();
        assert!(e.message.contains("no -----END"), "{e}");
        assert_eq!(parse(&lines[1..].join("\n")).unwrap_err().line, 1);
        assert!(parse("").unwrap_err().message.contains("empty"));
        let e = parse(&lines[..4].join("\n")).unwrap_err();
        assert!(e.message.contains("incomplete"), "{e}");
    }

    #[test]
    fn oversize_payloads_are_refused() {
        let e = parse(&armor(&payload(MAX_PAYLOAD + 1, 101))).unwrap_err();
        assert!(e.message.contains("18000-byte"), "{e}");
    }

    #[test]
    fn trailer_byte_tells_the_key_type() {
        let id = |t| parse(&armor(&payload(300, t))).unwrap().identity();
        assert_eq!(id(101).key_type, "ecc");
        assert!(id(101).key_detail.contains("passphrase"));
        assert_eq!(id(2).key_detail, "RSA-2048 backup key");
        assert_eq!(id(9).key_type, "unknown");
    }
}

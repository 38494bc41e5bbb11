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
//! restored. Firmware 2.1.1 and older typed no check line: such texts are accepted as `legacy`
//! (unverified); only decrypting them (`onlykey verify`) checks them. Errors name the line and what was expected: typed text loses characters, or gets
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
/// What a device with no backup key or passphrase types after BEGIN (one line, no END).
pub const NO_BACKUP_KEY: &str = "No Backup Key";
/// What to do when the device typed [`NO_BACKUP_KEY`].
pub const NO_BACKUP_KEY_ADVICE: &str = "the OnlyKey typed \"No Backup Key\": it has no backup key set, so \
     it made no backup. Set a backup passphrase first (OnlyKey App: Advanced > Backup passphrase; \
     or load an ECC/RSA key as the backup key), then capture again";

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
    /// The check value (base64, without `--`); empty for a legacy text.
    pub check: String,
    /// Typed by firmware 2.1.1 or older: no check line, so nothing proved the text intact.
    pub legacy: bool,
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
    /// No check line (firmware 2.1.1 or older): the text is unverified until decrypted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_check_line: bool,
}

impl OnlyKeyIdentity {
    /// `onlykey backup, 1234 bytes, ECC X25519 ...`.
    pub fn short(&self) -> String {
        let unverified = if self.no_check_line {
            ", no check line (unverified)"
        } else {
            ""
        };
        format!(
            "onlykey backup, {} bytes, {}{unverified}",
            self.payload_size, self.key_detail
        )
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
    if let Some(rest) = first.strip_prefix(BEGIN)
        && rest.contains(NO_BACKUP_KEY)
    {
        return Err(err(n, NO_BACKUP_KEY_ADVICE));
    }
    if first != BEGIN {
        return Err(err(n, format!("expected {BEGIN}")));
    }
    let mut chunks: Vec<(usize, Zeroizing<Vec<u8>>)> = Vec::new();
    let mut check = None;
    let mut legacy = false;
    for (n, line) in lines.by_ref() {
        if line == END {
            // Firmware 2.1.1 and older: no check line.
            if chunks.is_empty() {
                return Err(err(n, "no data lines between BEGIN and END"));
            }
            legacy = true;
            break;
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
    if legacy {
        return finish(&chunks, normalized.len(), None);
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
    finish(&chunks, normalized.len(), Some(check_value))
}

/// Size checks and the canonical text; `check` is `None` for a legacy text.
fn finish(
    chunks: &[(usize, Zeroizing<Vec<u8>>)],
    text_len: usize,
    check: Option<String>,
) -> Result<Backup, OnlyKeyError> {
    let ends_full = chunks.last().is_none_or(|(_, c)| c.len() == LINE_BYTES);
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
    let mut canonical = Zeroizing::new(String::with_capacity(text_len));
    canonical.push_str(BEGIN);
    canonical.push('\n');
    for (_, c) in chunks {
        payload.extend_from_slice(c);
        canonical.push_str(&Zeroizing::new(openssl::base64::encode_block(c)));
        canonical.push('\n');
    }
    if let Some(check) = &check {
        if ends_full {
            canonical.push('\n');
        }
        canonical.push_str("--");
        canonical.push_str(check);
        canonical.push('\n');
    }
    canonical.push_str(END);
    canonical.push('\n');
    Ok(Backup {
        payload,
        text: canonical,
        legacy: check.is_none(),
        check: check.unwrap_or_default(),
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
            104 => ("ecc", "ECC Curve25519 backup key".to_string()),
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
            no_check_line: self.legacy,
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

/// Collects what an OnlyKey types into a terminal, one read at a time, until the END line.
///
/// Anything typed before BEGIN is dropped and wiped at once: a press of button 1 that is too
/// short types slot 1's stored credentials instead of a backup, and those must never be kept,
/// echoed or logged. A device without a backup key types BEGIN and a one-line hint with no
/// Enter and no END, which is recognised as soon as it arrives (no wait for an END that never
/// comes). Callers add an idle timeout for typing that stops part-way.
pub struct TypedCapture {
    buf: Zeroizing<Vec<u8>>,
    started: bool,
    scanned: usize,
    lines: usize,
    limit: usize,
}

impl TypedCapture {
    /// A capture that gives up after `limit` bytes from BEGIN on.
    pub fn new(limit: usize) -> TypedCapture {
        TypedCapture {
            buf: Zeroizing::new(Vec::with_capacity(limit + 1024)),
            started: false,
            scanned: 0,
            lines: 0,
            limit,
        }
    }

    /// Whether BEGIN has been seen.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Lines received since BEGIN (for progress).
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Keeps `bytes[from..]` only, wiping what is dropped.
    fn drop_front(&mut self, from: usize) {
        let keep = self.buf.len() - from;
        self.buf.copy_within(from.., 0);
        zeroize::Zeroize::zeroize(&mut self.buf[keep..]);
        self.buf.truncate(keep);
    }

    /// Adds typed bytes; `Ok(true)` once the END line is complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<bool, OnlyKeyError> {
        if bytes.contains(&0x04) {
            return Err(err(0, "Ctrl-D: capture given up"));
        }
        self.buf.extend_from_slice(bytes);
        if !self.started {
            match find(&self.buf, BEGIN.as_bytes()) {
                Some(at) => {
                    self.drop_front(at);
                    self.started = true;
                }
                None => {
                    // Keep only what could be the start of a BEGIN split across reads.
                    let keep = (BEGIN.len() - 1).min(self.buf.len());
                    self.drop_front(self.buf.len() - keep);
                    return Ok(false);
                }
            }
        }
        let first_line_end = self.buf.iter().position(|&b| b == b'\n' || b == b'\r');
        if first_line_end.is_none_or(|e| e >= self.scanned)
            && find(
                &self.buf[..first_line_end.unwrap_or(self.buf.len())],
                NO_BACKUP_KEY.as_bytes(),
            )
            .is_some()
        {
            return Err(err(0, NO_BACKUP_KEY_ADVICE));
        }
        if self.buf.len() > self.limit {
            return Err(err(
                0,
                format!("more than {} bytes typed without an END line", self.limit),
            ));
        }
        let from = self.scanned.saturating_sub(END.len() + 2);
        self.lines += self.buf[self.scanned..].iter().filter(|&&b| b == b'\n').count();
        self.scanned = self.buf.len();
        // Done when a line holding END is followed by its line end.
        let tail = &self.buf[from..];
        Ok(find(tail, END.as_bytes())
            .is_some_and(|at| tail[at + END.len()..].iter().any(|&b| b == b'\n' || b == b'\r')))
    }

    /// Feeds chunks from `rx` until the END line. Before BEGIN it waits up to `before_begin`;
    /// after it, typing that pauses for `idle` ends the capture (a device without a backup key
    /// types no END). `progress` gets the line count as it grows.
    pub fn collect(
        mut self,
        rx: &std::sync::mpsc::Receiver<Zeroizing<Vec<u8>>>,
        idle: std::time::Duration,
        before_begin: std::time::Duration,
        mut progress: impl FnMut(usize),
    ) -> Result<Zeroizing<String>, OnlyKeyError> {
        use std::sync::mpsc::RecvTimeoutError;
        loop {
            let wait = if self.started { idle } else { before_begin };
            match rx.recv_timeout(wait) {
                Ok(chunk) => {
                    let before = self.lines;
                    if self.feed(&chunk)? {
                        progress(self.lines);
                        return self.into_text();
                    }
                    if self.lines != before {
                        progress(self.lines);
                    }
                }
                // END arrived but not its line end (pasted text): that is complete too.
                Err(RecvTimeoutError::Timeout)
                    if self.started && find(&self.buf, END.as_bytes()).is_some() =>
                {
                    return self.into_text();
                }
                Err(RecvTimeoutError::Timeout) if self.started => {
                    return Err(err(
                        0,
                        format!(
                            "the typing stopped: nothing for {} s and no END line (button released \
                             early, or the terminal lost focus?)",
                            idle.as_secs()
                        ),
                    ));
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(err(
                        0,
                        format!("no backup was typed within {} s", before_begin.as_secs()),
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(err(0, format!("input ended before {END}")));
                }
            }
        }
    }

    /// The text from BEGIN on.
    pub fn into_text(mut self) -> Result<Zeroizing<String>, OnlyKeyError> {
        match String::from_utf8(std::mem::take(&mut *self.buf)) {
            Ok(s) => Ok(Zeroizing::new(s)),
            Err(e) => {
                let _wiped = Zeroizing::new(e.into_bytes());
                Err(err(0, "the typed text is not UTF-8 (keyboard layout?)"))
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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

    #[test]
    fn legacy_texts_without_a_check_line_are_accepted_as_unverified() {
        let p = payload(200, 101);
        let text = armor(&p);
        let legacy: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("--") || l.starts_with("-----"))
            .collect();
        let b = parse(&legacy.join("\n")).unwrap();
        assert!(b.legacy);
        assert_eq!(b.payload.as_slice(), p.as_slice());
        assert!(b.identity().no_check_line);
        assert!(b.identity().short().contains("no check line (unverified)"));
        assert_eq!(
            parse(&b.text).unwrap().payload.as_slice(),
            p.as_slice(),
            "canonical text re-parses"
        );
        assert!(!parse(&text).unwrap().legacy);
        // BEGIN then END with nothing between is still refused.
        assert!(parse(&format!("{BEGIN}\n{END}\n")).is_err());
    }

    const NO_KEY: &str = "-----BEGIN ONLYKEY BACKUP-----No Backup Key - Follow instructions here \
                          https://docs.crp.to/usersguide.html#secure-encrypted-backup-anywhere";

    #[test]
    fn the_no_backup_key_text_is_named() {
        let e = parse(NO_KEY).unwrap_err();
        assert!(e.message.contains("no backup key set"), "{e}");
        // Typed one byte at a time with no Enter: recognised without waiting for an END.
        let mut c = TypedCapture::new(1 << 16);
        let mut result = Ok(false);
        for b in NO_KEY.as_bytes() {
            result = c.feed(&[*b]);
            if result.is_err() {
                break;
            }
        }
        assert!(result.unwrap_err().message.contains("Set a backup passphrase"));
    }

    #[test]
    fn capture_drops_what_came_before_begin_and_stops_at_end() {
        let text = armor(&payload(300, 101));
        let typed = format!("slot1user\tslot1password\n{text}");
        for step in [1, 7, 64, typed.len()] {
            let mut c = TypedCapture::new(1 << 16);
            let mut done = false;
            for chunk in typed.as_bytes().chunks(step) {
                assert!(!done, "nothing after END is needed");
                done = c.feed(chunk).unwrap();
                if !c.started() {
                    assert!(c.buf.len() < BEGIN.len(), "the pre-BEGIN bytes are not kept");
                }
            }
            assert!(done, "{step}");
            assert_eq!(c.lines(), text.lines().count(), "{step}");
            let got = c.into_text().unwrap();
            assert!(!got.contains("slot1password"));
            assert_eq!(got.as_str(), text, "{step}");
        }
        let mut c = TypedCapture::new(100);
        assert!(c.feed(&[0x04]).unwrap_err().message.contains("Ctrl-D"));
        let mut c = TypedCapture::new(100);
        c.feed(BEGIN.as_bytes()).unwrap();
        assert!(
            c.feed(&[b'A'; 200])
                .unwrap_err()
                .message
                .contains("without an END")
        );
    }

    #[test]
    fn collect_stops_on_an_idle_device_and_on_a_closed_input() {
        use std::sync::mpsc::channel;
        use std::time::Duration;
        let short = Duration::from_millis(50);
        let (tx, rx) = channel();
        tx.send(Zeroizing::new(format!("{BEGIN}\nAAAA\n").into_bytes()))
            .unwrap();
        let e = TypedCapture::new(1 << 16)
            .collect(&rx, short, Duration::from_secs(60), |_| {})
            .unwrap_err();
        assert!(e.message.contains("typing stopped"), "{e}");
        drop(tx);
        let e = TypedCapture::new(1 << 16)
            .collect(&rx, short, short, |_| {})
            .unwrap_err();
        assert!(e.message.contains("input ended"), "{e}");
        let (tx, rx) = channel();
        let text = armor(&payload(120, 101));
        tx.send(Zeroizing::new(text.trim_end().as_bytes().to_vec()))
            .unwrap();
        let got = TypedCapture::new(1 << 16)
            .collect(&rx, short, short, |_| {})
            .unwrap();
        assert_eq!(
            got.as_str(),
            text.trim_end(),
            "END without its line end, then silence"
        );
        let (tx, rx) = channel();
        tx.send(Zeroizing::new(b"pw-of-slot-1\n".to_vec())).unwrap();
        for line in text.split_inclusive('\n') {
            tx.send(Zeroizing::new(line.as_bytes().to_vec())).unwrap();
        }
        let mut seen = Vec::new();
        let got = TypedCapture::new(1 << 16)
            .collect(&rx, short, short, |n| seen.push(n))
            .unwrap();
        assert_eq!(got.as_str(), text);
        assert_eq!(seen.last(), Some(&text.lines().count()));
    }
}

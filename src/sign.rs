//! Artifact signatures: OpenSSH SSHSIG (Ed25519) over a sidecar's exact bytes, checked against an
//! OpenSSH `allowed_signers` file.
//!
//! age authenticates nothing about who wrote a file and the recipients are public, so anyone who
//! can write to a store root could plant an artifact. A detached signature by the agent's key
//! closes that: nothing unsigned is trusted. The format is stock OpenSSH's (via RustCrypto's
//! `ssh-key`), so `ssh-keygen -Y verify -n coldkeep-artifact` checks the same files.
//!
//! This module is the lowest layer: it knows files and bytes, not stores or configs.

use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The SSHSIG namespace of every coldkeep artifact signature (`ssh-keygen -Y ... -n`): a
/// signature made for anything else (git commits, files) cannot pass as an artifact's.
pub const NAMESPACE: &str = "coldkeep-artifact";

/// Suffix of the signature file beside a sidecar: `<stamp>-<id>.json.sig`.
pub const SIG_SUFFIX: &str = ".sig";

/// A signing-key or allowed_signers problem; names the file, never contains key material.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct SignError {
    /// The key or allowed_signers file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

fn sign_error(path: &Path, message: impl Into<String>) -> SignError {
    SignError {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The agent's signing key (decrypted in memory only), made to sign sidecars.
pub struct Signer {
    key: PrivateKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.fingerprint())
    }
}

impl Signer {
    /// Reads an OpenSSH private key file; an encrypted one needs `passphrase`. Only Ed25519 is
    /// accepted: one small, fast, deterministic algorithm that every OpenSSH verifies.
    pub fn load(path: &Path, passphrase: Option<&str>) -> Result<Signer, SignError> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| sign_error(path, format!("cannot read signing key: {e}")))?,
        );
        let key = PrivateKey::from_openssh(text.as_bytes())
            .map_err(|e| sign_error(path, format!("not an OpenSSH private key: {e}")))?;
        let key = if key.is_encrypted() {
            let Some(pass) = passphrase else {
                return Err(sign_error(
                    path,
                    "the signing key is passphrase-protected: set `signing.passphrase` ({env: NAME} or {file: PATH})",
                ));
            };
            key.decrypt(pass.as_bytes())
                .map_err(|_| sign_error(path, "cannot decrypt the signing key: wrong passphrase?"))?
        } else {
            key
        };
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(sign_error(
                path,
                format!("the signing key is {}, expected an Ed25519 key", key.algorithm()),
            ));
        }
        Ok(Signer { key })
    }

    /// Makes a fresh key (tests and the demo: coldkeep never needs to invent a production key).
    pub fn generate() -> Signer {
        let key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).expect("Ed25519 keygen");
        Signer { key }
    }

    /// The key in OpenSSH private-key format (unencrypted), for the demo and tests to write.
    pub fn to_openssh(&self) -> Zeroizing<String> {
        self.key.to_openssh(LineEnding::LF).expect("encodable key")
    }

    /// `ssh-ed25519 AAAA...`: the line to put in allowed_signers after a principal.
    pub fn public_line(&self) -> String {
        self.key.public_key().to_openssh().expect("encodable public key")
    }

    /// `SHA256:...` of the public key, for messages.
    pub fn fingerprint(&self) -> String {
        self.key.public_key().fingerprint(HashAlg::Sha256).to_string()
    }

    /// A 32-byte key for `label`, derived from the private key (HMAC-SHA256 keyed with the
    /// Ed25519 seed): lets the agent authenticate its own caches with a secret that whoever
    /// can write a store does not have, without a second key to manage.
    pub fn derive_key(&self, label: &[u8]) -> Zeroizing<[u8; 32]> {
        use hmac::Mac;
        let seed = Zeroizing::new(
            self.key
                .key_data()
                .ed25519()
                .expect("load and generate only accept Ed25519")
                .private
                .to_bytes(),
        );
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(seed.as_ref()).expect("any key length");
        mac.update(label);
        Zeroizing::new(mac.finalize().into_bytes().into())
    }

    /// The armored SSHSIG signature (`-----BEGIN SSH SIGNATURE-----`) of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key
            .sign(NAMESPACE, HashAlg::Sha512, message)
            .and_then(|s| s.to_pem(LineEnding::LF))
            .expect("Ed25519 signing cannot fail")
            .into_bytes()
    }
}

/// One `allowed_signers` line: who, which namespaces, which key, and when it may have signed.
#[derive(Debug, Clone)]
struct Entry {
    principals: String,
    /// `None` = every namespace (no `namespaces=` option).
    namespaces: Option<Vec<String>>,
    key: PublicKey,
    /// `valid-after=`: the key vouches for nothing dated before this (Unix seconds).
    valid_after: Option<i64>,
    /// `valid-before=`: nor for anything dated after this (Unix seconds, inclusive, as OpenSSH).
    valid_before: Option<i64>,
    /// An Ed25519 key, decoded once: checking a signature otherwise decodes (decompresses) the
    /// key again each time, a tenth of the first listing of a large store.
    ed25519: Option<ed25519_dalek::VerifyingKey>,
}

impl Entry {
    /// Whether this line trusts the key for something dated `at` (whole seconds, as OpenSSH's
    /// `-Overify-time`; both bounds inclusive).
    fn valid_at(&self, at: i64) -> bool {
        self.valid_after.is_none_or(|t| at >= t) && self.valid_before.is_none_or(|t| at <= t)
    }

    /// `from ... until ...` for messages.
    fn window(&self) -> String {
        let show = |t: Option<i64>| {
            t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        };
        match (show(self.valid_after), show(self.valid_before)) {
            (Some(a), Some(b)) => format!("from {a} until {b}"),
            (Some(a), None) => format!("from {a}"),
            (None, Some(b)) => format!("until {b}"),
            (None, None) => "always".into(),
        }
    }
}

/// An OpenSSH absolute time as `valid-after`/`valid-before` take it (`YYYYMMDD`,
/// `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`), in UTC: with a `Z` (or `UTC`) suffix only. Without one
/// OpenSSH reads local time, which would make the same file mean another time on another host.
fn parse_time(value: &str) -> Result<i64, String> {
    let digits = value
        .strip_suffix('Z')
        .or_else(|| value.strip_suffix('z'))
        .or_else(|| value.strip_suffix("UTC"))
        .ok_or_else(|| format!("time {value:?} must end in Z (UTC): without it OpenSSH reads local time"))?;
    let format = match digits.len() {
        8 => "%Y%m%d",
        12 => "%Y%m%d%H%M",
        14 => "%Y%m%d%H%M%S",
        _ => return Err(format!("time {value:?} is not YYYYMMDD[HHMM[SS]]Z")),
    };
    let parsed = if digits.len() == 8 {
        chrono::NaiveDate::parse_from_str(digits, format).map(|d| d.and_time(chrono::NaiveTime::MIN))
    } else {
        chrono::NaiveDateTime::parse_from_str(digits, format)
    };
    parsed
        .map(|t| t.and_utc().timestamp())
        .map_err(|_| format!("time {value:?} is not a valid YYYYMMDD[HHMM[SS]]Z"))
}

/// The keys whose signatures are trusted (OpenSSH `allowed_signers`). Several keys may be
/// listed, so a key can be rotated while the artifacts it signed stay valid.
#[derive(Debug, Clone)]
pub struct AllowedSigners {
    entries: Vec<Entry>,
}

/// What a signature says about an artifact. Serializable because the store index caches it
/// (authenticated, see [`Keys::index_key`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Verdict {
    /// Signed by an allowed key for the coldkeep namespace.
    Valid {
        /// The allowed_signers principals of the key.
        principal: String,
    },
    /// No signature file.
    Unsigned,
    /// A signature that does not check: edited sidecar, wrong namespace, garbage.
    Bad(String),
    /// A well-formed signature by a key that is not allowed (for this namespace).
    Foreign {
        /// `SHA256:...` of the signing key.
        fingerprint: String,
    },
}

impl Verdict {
    /// Whether the artifact may be trusted.
    pub fn is_valid(&self) -> bool {
        matches!(self, Verdict::Valid { .. })
    }

    /// A short word for tables and JSON: `valid`, `unsigned`, `bad`, `foreign`.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Valid { .. } => "valid",
            Verdict::Unsigned => "unsigned",
            Verdict::Bad(_) => "bad",
            Verdict::Foreign { .. } => "foreign",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Valid { principal } => write!(f, "signed by {principal}"),
            Verdict::Unsigned => f.write_str("unsigned (no .sig file)"),
            Verdict::Bad(why) => write!(f, "bad signature: {why}"),
            Verdict::Foreign { fingerprint } => {
                write!(f, "signed by a key not in allowed_signers ({fingerprint})")
            }
        }
    }
}

impl AllowedSigners {
    /// Reads an allowed_signers file.
    pub fn load(path: &Path) -> Result<AllowedSigners, SignError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| sign_error(path, format!("cannot read allowed_signers: {e}")))?;
        Self::parse(&text).map_err(|(line, m)| sign_error(path, format!("line {line}: {m}")))
    }

    /// Parses allowed_signers text; errors carry the 1-based line. Comments and blank lines are
    /// skipped. Options: `namespaces="..."`, and `valid-after="..."` / `valid-before="..."` (UTC
    /// times, applied to each artifact's signed `created_at`: a rotated-out key can be trusted
    /// for what it signed before the rotation only); `cert-authority` and anything else are
    /// refused rather than silently ignored.
    pub fn parse(text: &str) -> Result<AllowedSigners, (usize, String)> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |m: String| (i + 1, m);
            let (principals, rest) = split_field(line);
            let principals = principals.trim_matches('"').to_string();
            let rest = rest.trim_start();
            let first = split_field(rest).0;
            let (options, key_text) = if looks_like_key_type(first) {
                ("", rest)
            } else {
                let (o, r) = split_field(rest);
                (o, r.trim_start())
            };
            let mut namespaces = None;
            let (mut valid_after, mut valid_before) = (None, None);
            for opt in split_options(options) {
                let (name, value) = opt.split_once('=').unwrap_or((opt, ""));
                let name = name.to_ascii_lowercase();
                match name.as_str() {
                    "namespaces" => {
                        let v = value.trim_matches('"');
                        namespaces = Some(v.split(',').map(|s| s.trim().to_string()).collect());
                    }
                    "valid-after" | "valid-before" => {
                        // Quoted, as OpenSSH requires (it refuses the line otherwise).
                        let Some(v) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
                            return Err(fail(format!(
                                "`{name}` needs a quoted time, e.g. {name}=\"20260101Z\""
                            )));
                        };
                        let t = parse_time(v).map_err(|m| fail(format!("`{name}`: {m}")))?;
                        let slot = if name == "valid-after" {
                            &mut valid_after
                        } else {
                            &mut valid_before
                        };
                        if slot.replace(t).is_some() {
                            return Err(fail(format!("`{name}` given twice")));
                        }
                    }
                    other => {
                        return Err(fail(format!(
                            "option `{other}` is not supported by coldkeep (only `namespaces=`, \
                             `valid-after=` and `valid-before=`)"
                        )));
                    }
                }
            }
            let key = PublicKey::from_openssh(key_text)
                .map_err(|e| fail(format!("not a valid public key: {e}")))?;
            let ed25519 = key
                .key_data()
                .ed25519()
                .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k.0).ok());
            entries.push(Entry {
                principals,
                namespaces,
                key,
                valid_after,
                valid_before,
                ed25519,
            });
        }
        if entries.is_empty() {
            return Err((0, "no keys: add a line `coldkeep ssh-ed25519 AAAA...`".into()));
        }
        Ok(AllowedSigners { entries })
    }

    /// Whether this file trusts `signer` for the coldkeep namespace now (so what it signs now
    /// verifies).
    pub fn trusts(&self, signer: &Signer) -> bool {
        let data = signer.key.public_key().key_data();
        let now = chrono::Utc::now().timestamp();
        self.entries
            .iter()
            .any(|e| e.key.key_data() == data && allows_namespace(e) && e.valid_at(now))
    }

    /// Checks `signature` (armored SSHSIG, `None` when there is no .sig file) over `message`,
    /// which says it was made at `at` (an artifact's signed `created_at`): the key must be
    /// allowed for the coldkeep namespace by a line whose `valid-after`/`valid-before` window
    /// holds `at`, as `ssh-keygen -Y verify -Overify-time=<at>` decides.
    pub fn verify(
        &self,
        message: &[u8],
        signature: Option<&[u8]>,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Verdict {
        let Some(signature) = signature else {
            return Verdict::Unsigned;
        };
        let sig = match SshSig::from_pem(signature) {
            Ok(s) => s,
            Err(e) => return Verdict::Bad(format!("not an SSH signature ({e})")),
        };
        if sig.namespace() != NAMESPACE {
            return Verdict::Bad(format!("namespace {:?}, expected {NAMESPACE:?}", sig.namespace()));
        }
        let listed: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.key.key_data() == sig.public_key() && allows_namespace(e))
            .collect();
        let fingerprint = || sig.public_key().fingerprint(HashAlg::Sha256).to_string();
        let Some(first) = listed.first() else {
            return Verdict::Foreign {
                fingerprint: fingerprint(),
            };
        };
        let when = at.timestamp();
        let Some(entry) = listed.iter().find(|e| e.valid_at(when)) else {
            return Verdict::Bad(format!(
                "signed by {}, which allowed_signers trusts only {}; the artifact is dated {}",
                fingerprint(),
                first.window(),
                at.format("%Y-%m-%d %H:%M:%S UTC")
            ));
        };
        if entry_verifies(entry, message, &sig) {
            Verdict::Valid {
                principal: entry.principals.clone(),
            }
        } else {
            Verdict::Bad("signature does not match the sidecar (edited?)".into())
        }
    }
}

/// Whether `sig` (by `entry`'s key, for the coldkeep namespace: checked by the caller) is a
/// signature of `message`. An Ed25519 signature is checked with the key decoded once, over the
/// same signed data and with the same (non-strict) check as `ssh-key`'s own verification, which
/// every other case (an unusual reserved field, another algorithm) goes through.
fn entry_verifies(entry: &Entry, message: &[u8], sig: &SshSig) -> bool {
    if let Some(key) = &entry.ed25519
        && sig.algorithm() == Algorithm::Ed25519
        && sig.reserved().is_empty()
    {
        let Ok(data) = SshSig::signed_data(NAMESPACE, sig.hash_alg(), message) else {
            return false;
        };
        let Ok(signature) = ed25519_dalek::Signature::from_slice(sig.signature_bytes()) else {
            return false;
        };
        return ed25519_dalek::Verifier::verify(key, &data, &signature).is_ok();
    }
    entry.key.verify(NAMESPACE, message, sig).is_ok()
}

fn allows_namespace(e: &Entry) -> bool {
    e.namespaces
        .as_ref()
        .is_none_or(|ns| ns.iter().any(|n| pattern_match(n, NAMESPACE)))
}

/// OpenSSH-style `*` / `?` wildcard match (namespaces may be patterns).
fn pattern_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

fn looks_like_key_type(s: &str) -> bool {
    s.starts_with("ssh-") || s.starts_with("ecdsa-") || s.starts_with("sk-")
}

/// The first whitespace-separated field (double quotes group), and the rest.
fn split_field(s: &str) -> (&str, &str) {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return (&s[..i], &s[i..]),
            _ => {}
        }
    }
    (s, "")
}

/// Comma-separated options, commas inside double quotes kept.
fn split_options(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out.into_iter().filter(|o| !o.is_empty()).collect()
}

impl AllowedSigners {
    /// SHA-256 over every entry (principals, namespaces, key): changes whenever a key is added,
    /// removed or re-scoped, so anything cached under the old set is dropped.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for e in &self.entries {
            let key = e.key.to_openssh().unwrap_or_default();
            let namespaces = e.namespaces.as_ref().map(|n| n.join(","));
            let window = format!("{:?}..{:?}", e.valid_after, e.valid_before);
            for field in [
                e.principals.as_str(),
                namespaces.as_deref().unwrap_or("*"),
                &key,
                &window,
            ] {
                h.update((field.len() as u64).to_le_bytes());
                h.update(field.as_bytes());
            }
        }
        h.finalize().into()
    }
}

/// The signature file of a sidecar: `X.json` -> `X.json.sig`.
pub fn sig_path(sidecar: &Path) -> PathBuf {
    let mut p = sidecar.as_os_str().to_owned();
    p.push(SIG_SUFFIX);
    PathBuf::from(p)
}

/// Both halves of signing, loaded once per run: the key that signs what this run writes and
/// the keys whose signatures are trusted on read.
#[derive(Debug)]
pub struct Keys {
    /// Signs new and updated sidecars.
    pub signer: Signer,
    /// Checks every sidecar read.
    pub allowed: AllowedSigners,
}

impl Keys {
    /// The key that authenticates store index files (and the signature verdicts they cache):
    /// derived from the signing key, which someone who can write a store does not have, and
    /// bound to the allowed_signers set, so a verdict cached under a key that was since
    /// removed from allowed_signers no longer authenticates.
    pub fn index_key(&self) -> Zeroizing<[u8; 32]> {
        let mut label = b"coldkeep store index v1\0".to_vec();
        label.extend_from_slice(&self.allowed.digest());
        self.signer.derive_key(&label)
    }

    /// The keyed hash of plaintext that sidecars and output carry instead of a plain SHA-256
    /// (see [`crate::digest::Keyed`]): derived from the signing key alone (not bound to
    /// allowed_signers, so adding a key does not make every stored file look changed).
    pub fn keyed_hash(&self) -> crate::digest::Keyed {
        crate::digest::Keyed::new(self.signer.derive_key(b"coldkeep keyed plaintext hash v1\0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }

    fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
        text.parse().unwrap()
    }

    /// valid-after / valid-before bound the key in time, inclusive at both ends (as
    /// `ssh-keygen -Y verify -Overify-time` decides; the CLI test checks them against it).
    #[test]
    fn key_windows_apply_to_the_time_the_artifact_claims() {
        let (old, new) = (Signer::generate(), Signer::generate());
        let text = format!(
            "old valid-before=\"20260101000000Z\",namespaces=\"coldkeep-artifact\" {}\n\
             new valid-after=\"20260101Z\" {}\n",
            old.public_line(),
            new.public_line()
        );
        let allowed = AllowedSigners::parse(&text).unwrap();
        let by_old = old.sign(b"m");
        assert!(
            allowed
                .verify(b"m", Some(&by_old), at("2025-12-31T23:59:59Z"))
                .is_valid()
        );
        assert!(
            allowed
                .verify(b"m", Some(&by_old), at("2026-01-01T00:00:00Z"))
                .is_valid()
        );
        let late = allowed.verify(b"m", Some(&by_old), at("2026-01-01T00:00:01Z"));
        assert!(
            matches!(&late, Verdict::Bad(m) if m.contains("until 2026-01-01 00:00:00")),
            "{late:?}"
        );
        // Sub-second created_at counts by its whole second, as -Overify-time does.
        assert!(
            allowed
                .verify(b"m", Some(&by_old), at("2026-01-01T00:00:00.9Z"))
                .is_valid()
        );
        let by_new = new.sign(b"m");
        assert!(
            !allowed
                .verify(b"m", Some(&by_new), at("2025-12-31T23:59:59Z"))
                .is_valid()
        );
        assert!(
            allowed
                .verify(b"m", Some(&by_new), at("2026-01-01T00:00:00Z"))
                .is_valid()
        );
        // The window is part of what a cached verdict is bound to.
        let widened = AllowedSigners::parse(&text.replace("20260101000000Z", "20270101000000Z")).unwrap();
        assert_ne!(allowed.digest(), widened.digest());
        // Local times (no Z), unquoted values and repeats are refused.
        for bad in [
            "valid-before=\"20260101\"",
            "valid-before=20260101Z",
            "valid-after=\"2026-01-01\"",
            "valid-after=\"20260101Z\",valid-after=\"20260102Z\"",
        ] {
            let e = AllowedSigners::parse(&format!("p {bad} {}\n", old.public_line())).unwrap_err();
            assert!(e.1.contains("valid-"), "{bad}: {e:?}");
        }
    }

    /// The Ed25519 check with the key decoded once decides as ssh-key's own verification on
    /// genuine, edited and forged signatures.
    #[test]
    fn the_decoded_key_check_agrees_with_ssh_key() {
        let (s, other) = (Signer::generate(), Signer::generate());
        let allowed = allowed_for(&s, "");
        let entry = &allowed.entries[0];
        assert!(entry.ed25519.is_some());
        for i in 0..50u32 {
            let msg = format!("{{\"n\":{i}}}\n").into_bytes();
            let good = SshSig::from_pem(s.sign(&msg)).unwrap();
            let mut edited = msg.clone();
            edited[2] ^= 1;
            // Another key's signature presented with this key's public half.
            let forged_pem = other.sign(&msg);
            let forged = SshSig::from_pem(&forged_pem).unwrap();
            let forged = SshSig::new(
                s.key.public_key().key_data().clone(),
                NAMESPACE,
                forged.hash_alg(),
                forged.signature().clone(),
            )
            .unwrap();
            for (m, sig) in [(&msg, &good), (&edited, &good), (&msg, &forged)] {
                assert_eq!(
                    entry_verifies(entry, m, sig),
                    entry.key.verify(NAMESPACE, m, sig).is_ok(),
                    "{i}"
                );
            }
            assert!(entry_verifies(entry, &msg, &good));
            assert!(!entry_verifies(entry, &edited, &good));
            assert!(!entry_verifies(entry, &msg, &forged));
        }
    }

    fn allowed_for(s: &Signer, opts: &str) -> AllowedSigners {
        AllowedSigners::parse(&format!("# test\nops@example {opts}{}\n", s.public_line())).unwrap()
    }

    #[test]
    fn sign_and_verify_round_trip_and_edits_fail() {
        let s = Signer::generate();
        let allowed = allowed_for(&s, "");
        let sig = s.sign(b"{\"a\":1}\n");
        assert_eq!(
            allowed.verify(b"{\"a\":1}\n", Some(&sig), now()),
            Verdict::Valid {
                principal: "ops@example".into()
            }
        );
        assert!(matches!(
            allowed.verify(b"{\"a\":2}\n", Some(&sig), now()),
            Verdict::Bad(_)
        ));
        assert_eq!(allowed.verify(b"x", None, now()), Verdict::Unsigned);
        assert!(matches!(
            allowed.verify(b"x", Some(b"junk"), now()),
            Verdict::Bad(_)
        ));
    }

    #[test]
    fn foreign_keys_and_namespaces() {
        let s = Signer::generate();
        let other = Signer::generate();
        let sig = other.sign(b"m");
        assert!(matches!(
            allowed_for(&s, "").verify(b"m", Some(&sig), now()),
            Verdict::Foreign { .. }
        ));
        // The key is listed, but only for another namespace.
        let git_only = allowed_for(&s, "namespaces=\"git,file\" ");
        assert!(!git_only.trusts(&s));
        assert!(matches!(
            git_only.verify(b"m", Some(&s.sign(b"m")), now()),
            Verdict::Foreign { .. }
        ));
        let ours = allowed_for(&s, "namespaces=\"git,coldkeep-*\" ");
        assert!(ours.trusts(&s) && ours.verify(b"m", Some(&s.sign(b"m")), now()).is_valid());
    }

    #[test]
    fn rotation_keeps_old_signatures_valid() {
        let (old, new) = (Signer::generate(), Signer::generate());
        let both = AllowedSigners::parse(&format!("old {}\nnew {}\n", old.public_line(), new.public_line()))
            .unwrap();
        assert!(both.verify(b"m", Some(&old.sign(b"m")), now()).is_valid());
        assert!(both.verify(b"m", Some(&new.sign(b"m")), now()).is_valid());
    }

    #[test]
    fn unsupported_options_and_empty_files_are_errors() {
        let s = Signer::generate();
        let e = AllowedSigners::parse(&format!("ca cert-authority {}\n", s.public_line())).unwrap_err();
        assert!(e.1.contains("cert-authority"), "{e:?}");
        assert!(AllowedSigners::parse("# nothing\n").is_err());
        assert!(AllowedSigners::parse("p ssh-ed25519 notbase64\n").is_err());
    }
}

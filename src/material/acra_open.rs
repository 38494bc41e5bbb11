//! Proof that a master key opens every sealed key of an Acra keystore backup.
//!
//! Acra seals each stored key with Themis Secure Cell (seal mode) under the master key, with a
//! context derived from the key's name. Opening each one here, offline, shows the backup and the
//! master key kept apart belong together. Nothing opened is kept or shown: only counts and the
//! names of keys that did not open.
//!
//! Contexts, from cossacklabs/acra:
//! - v1 (`keystore/filesystem/server_keystore.go`, `filesystem_backup.go`
//!   `getContextFromFilename`): `<id>_storage`, `<id>_storage_sym`, `<id>_hmac` (and the legacy
//!   `<id>_server`, `<id>_translator`) use the client id; `.poison_key/poison_key` and
//!   `.poison_key/poison_key_sym` their path (the backup code strips `_sym`, so that is tried
//!   second); legacy zone keys `<zone>_zone(_sym)` the zone id; anything else, e.g.
//!   `secure_log_key` or a legacy `<id>`, its file name. A rotated file `<name>.old/<timestamp>`
//!   is the old file moved aside and keeps the context of `<name>`. The legacy `auth_key` is
//!   stored unsealed and skipped.
//! - v2 (`keystore/v2/keystore/filesystem/key.go`, `keyRing.go`, `keyStore.go`): each key of a
//!   ring `<path>.keyring` is sealed under the v2 encryption key with
//!   `AKSv2 keystore: key ring <path>: private key <seqnum>` or `... symmetric key <seqnum>`.
//!
//! A keypair's private key must also be a valid Themis EC private key whose public key is its
//! `.pub` (v1) or the public key stored beside it (v2).

use super::acra::{Entry, KEYS_PREFIX, MasterKey, PUBLIC_PREFIX, is_keypair_private, ring_data};
use super::asn1::{read_header, skip_element};
use super::secure_cell::{check_ec_key_pair, open_seal};
use serde::Serialize;

/// A sealed key that did not open, by name; never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyFailure {
    /// v1: the file relative to the keys directory; v2: `<ring>.keyring key <seqnum> (<kind>)`.
    pub key: String,
    /// Why, in words.
    pub problem: String,
}

/// How many failed keys [`OpenReport::problems`] names; a wrong master key fails them all, and a
/// keystore can hold hundreds.
pub const NAMED_IN_PROBLEMS: usize = 10;

/// How many sealed keys of a backup one master key opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenReport {
    /// The master key's public fingerprint (see [`MasterKey::identity`]).
    pub master_key_id: String,
    /// Sealed keys found.
    pub total: usize,
    /// Sealed keys that opened (and, for key pairs, matched their public key).
    pub opened: usize,
    /// Every key that did not.
    pub failed: Vec<KeyFailure>,
    /// Set when the master key cannot be this keystore's at all (v1 key for a v2 keystore...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<String>,
}

impl OpenReport {
    /// Whether every sealed key opened.
    pub fn ok(&self) -> bool {
        self.mismatch.is_none() && self.failed.is_empty()
    }

    /// `9 of 9 keys open with master key 0123abcd...`.
    pub fn summary(&self) -> String {
        format!(
            "{} of {} sealed keys open with master key {}",
            self.opened, self.total, self.master_key_id
        )
    }

    /// One line per problem, for reports: the mismatch, the summary when some failed (with a
    /// hint when none opened), then each failed key by name, the first [`NAMED_IN_PROBLEMS`]
    /// of them (`failed` has all).
    pub fn problems(&self) -> Vec<String> {
        if let Some(m) = &self.mismatch {
            return vec![m.clone()];
        }
        if self.failed.is_empty() {
            return Vec::new();
        }
        let mut out = vec![if self.opened == 0 {
            format!(
                "{}: none opens, so this is not the master key of this backup",
                self.summary()
            )
        } else {
            self.summary()
        }];
        out.extend(
            self.failed
                .iter()
                .take(NAMED_IN_PROBLEMS)
                // Names come from the node: escaped, so none can write to the terminal.
                .map(|f| format!("key {}: {}", f.key.escape_debug(), f.problem)),
        );
        if self.failed.len() > NAMED_IN_PROBLEMS {
            out.push(format!(
                "and {} more keys that do not open (all are listed in --json)",
                self.failed.len() - NAMED_IN_PROBLEMS
            ));
        }
        out
    }
}

/// Opens every sealed key in `entries` (bundle paths, `keys/...` and `public/...`) of a keystore
/// of `version` with `master`.
pub fn open_all(entries: &[Entry], version: u8, master: &MasterKey) -> OpenReport {
    let mut report = OpenReport {
        master_key_id: master.identity().key_id,
        total: 0,
        opened: 0,
        failed: Vec::new(),
        mismatch: None,
    };
    let results = match (version, master) {
        (2, MasterKey::V2 { encryption, .. }) => open_v2(entries, encryption),
        (1, MasterKey::V1(key)) => open_v1(entries, key),
        _ => {
            report.mismatch = Some(format!(
                "the master key at hand is a v{} key; this keystore is v{version}",
                master.version()
            ));
            return report;
        }
    };
    for (key, result) in results {
        report.total += 1;
        match result {
            Ok(()) => report.opened += 1,
            Err(problem) => report.failed.push(KeyFailure { key, problem }),
        }
    }
    report
}

/// Whether a v1 file (relative to its directory) is a public key, current or rotated.
fn is_public(rel: &str) -> bool {
    rel.ends_with(".pub") || rel.split('/').any(|c| c.ends_with(".pub.old"))
}

/// The key a file holds: itself, or for `<name>.old/<timestamp>` the rotated `<name>`.
fn history_base(rel: &str) -> (&str, Option<&str>) {
    if let Some((dir, stamp)) = rel.rsplit_once('/')
        && let Some(base) = dir.strip_suffix(".old")
    {
        return (base, Some(stamp));
    }
    (rel, None)
}

/// The Secure Cell contexts Acra may have sealed a v1 key with, most likely first.
fn v1_contexts(base: &str) -> Vec<String> {
    const POISON: &str = ".poison_key/poison_key";
    if base == POISON {
        return vec![POISON.into()];
    }
    if base == ".poison_key/poison_key_sym" {
        return vec![base.into(), POISON.into()];
    }
    let name = base.rsplit('/').next().unwrap_or(base);
    for suffix in ["_hmac", "_server", "_translator", "_storage", "_storage_sym"] {
        if let Some(id) = name.strip_suffix(suffix)
            && !id.is_empty()
        {
            return vec![id.into()];
        }
    }
    // Legacy zone keys: the zone id, else (as the backup code does) the file name.
    for suffix in ["_zone", "_zone_sym"] {
        if let Some(id) = name.strip_suffix(suffix)
            && !id.is_empty()
        {
            return vec![id.into(), name.into()];
        }
    }
    vec![name.into()]
}

/// The legacy AcraWebconfig basic-auth key: Acra writes it as raw random bytes, unsealed
/// (`GetAuthKey`, `generateKey` in server_keystore.go), so there is nothing to open.
const UNSEALED_AUTH_KEY: &str = "auth_key";

fn open_v1(entries: &[Entry], key: &[u8]) -> Vec<(String, Result<(), String>)> {
    let find = |rel: &str| {
        [KEYS_PREFIX, PUBLIC_PREFIX]
            .iter()
            .find_map(|p| entries.iter().find(|e| e.path.strip_prefix(p) == Some(rel)))
            .map(|e| e.data)
    };
    let mut results = Vec::new();
    for e in entries {
        let Some(rel) = e.path.strip_prefix(KEYS_PREFIX) else {
            continue;
        };
        if is_public(rel) {
            continue;
        }
        let (base, stamp) = history_base(rel);
        if base.rsplit('/').next() == Some(UNSEALED_AUTH_KEY) {
            continue;
        }
        let mut last = String::new();
        let mut opened = None;
        for context in v1_contexts(base) {
            match open_seal(key, context.as_bytes(), e.data) {
                Ok(plain) => {
                    opened = Some(plain);
                    break;
                }
                Err(err) => last = err.to_string(),
            }
        }
        let result = match opened {
            None => Err(last),
            Some(plain) if is_keypair_private(base) => {
                let public = match stamp {
                    Some(stamp) => find(&format!("{base}.pub.old/{stamp}")),
                    None => find(&format!("{base}.pub")),
                };
                check_ec_key_pair(&plain, public).map_err(|p| format!("opens, but {p}"))
            }
            Some(_) => Ok(()),
        };
        results.push((rel.to_string(), result));
    }
    results
}

/// The TLVs inside a constructed value's content: (tag, content).
fn children(content: &[u8]) -> Result<Vec<(u8, &[u8])>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < content.len() {
        let h = read_header(content, pos)?;
        let next = skip_element(content, pos)?;
        let len = h.len.ok_or("indefinite length")?;
        out.push((h.tag, &content[h.content..h.content + len]));
        pos = next;
    }
    Ok(out)
}

fn small_int(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 8 || bytes[0] & 0x80 != 0 {
        return None;
    }
    Some(bytes.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b)))
}

/// One sealed value inside a v2 ring: `private` or `symmetric`, its seqnum and bytes, and the
/// public key stored beside a private one.
struct Sealed<'a> {
    kind: &'static str,
    seqnum: u64,
    data: &'a [u8],
    public: Option<&'a [u8]>,
}

/// `KeyRing ::= SEQUENCE { purpose OCTET STRING, keys SEQUENCE OF Key, current INTEGER }`,
/// `Key ::= SEQUENCE { seqnum, state, validSince, validUntil, data SET OF KeyData }`,
/// `KeyData ::= SEQUENCE { format, [1] publicKey, [2] privateKey, [3] symmetricKey }`.
fn sealed_in_ring(ring: &[u8]) -> Result<Vec<Sealed<'_>>, String> {
    let fields = children(ring)?;
    let keys = match fields.as_slice() {
        [(0x04, _), (0x30, keys), (0x02, _)] => keys,
        _ => return Err("the key ring is not purpose, keys, current".into()),
    };
    let mut out = Vec::new();
    for (tag, key) in children(keys)? {
        if tag != 0x30 {
            return Err("a key is not a SEQUENCE".into());
        }
        let parts = children(key)?;
        let (seqnum, data) = match parts.as_slice() {
            [
                (0x02, seq),
                (0x0a, _),
                (0x17 | 0x18, _),
                (0x17 | 0x18, _),
                (0x31, data),
            ] => (seq, data),
            _ => return Err("a key is not seqnum, state, validity, data".into()),
        };
        let seqnum = small_int(seqnum).ok_or("a key's seqnum is not a small number")?;
        for (tag, key_data) in children(data)? {
            if tag != 0x30 {
                return Err("key data is not a SEQUENCE".into());
            }
            let items = children(key_data)?;
            let public = items.iter().find(|(t, _)| *t == 0x81).map(|(_, v)| *v);
            for (t, v) in &items {
                let kind = match t {
                    0x82 => "private",
                    0x83 => "symmetric",
                    _ => continue,
                };
                out.push(Sealed {
                    kind,
                    seqnum,
                    data: v,
                    public,
                });
            }
        }
    }
    Ok(out)
}

fn open_v2(entries: &[Entry], key: &[u8]) -> Vec<(String, Result<(), String>)> {
    let mut results = Vec::new();
    for e in entries {
        let Some(rel) = e.path.strip_prefix(KEYS_PREFIX) else {
            continue;
        };
        let Some(path) = rel.strip_suffix(".keyring") else {
            continue;
        };
        let sealed = ring_data(e.data).and_then(sealed_in_ring);
        let sealed = match sealed {
            Ok(s) => s,
            Err(problem) => {
                results.push((rel.to_string(), Err(format!("damaged key ring: {problem}"))));
                continue;
            }
        };
        for s in sealed {
            let context = format!("AKSv2 keystore: key ring {path}: {} key {}", s.kind, s.seqnum);
            let result = match open_seal(key, context.as_bytes(), s.data) {
                Err(err) => Err(err.to_string()),
                Ok(plain) if s.kind == "private" => {
                    check_ec_key_pair(&plain, s.public).map_err(|p| format!("opens, but {p}"))
                }
                Ok(_) => Ok(()),
            };
            results.push((format!("{rel} key {} ({})", s.seqnum, s.kind), result));
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_contexts_follow_acra() {
        assert_eq!(v1_contexts("Alice_storage"), ["Alice"]);
        assert_eq!(v1_contexts("Alice_storage_sym"), ["Alice"]);
        assert_eq!(v1_contexts("Alice_hmac"), ["Alice"]);
        assert_eq!(v1_contexts("Bob_translator"), ["Bob"]);
        assert_eq!(v1_contexts("secure_log_key"), ["secure_log_key"]);
        assert_eq!(v1_contexts("gw"), ["gw"]);
        assert_eq!(v1_contexts(".poison_key/poison_key"), [".poison_key/poison_key"]);
        assert_eq!(
            v1_contexts(".poison_key/poison_key_sym"),
            [".poison_key/poison_key_sym", ".poison_key/poison_key"]
        );
        assert_eq!(v1_contexts("Z1_zone"), ["Z1", "Z1_zone"]);
        assert_eq!(
            history_base("Alice_storage.old/2020-05-21T16:01:58.656663"),
            ("Alice_storage", Some("2020-05-21T16:01:58.656663"))
        );
        assert_eq!(
            history_base(".poison_key/poison_key_sym.old/t"),
            (".poison_key/poison_key_sym", Some("t"))
        );
        assert_eq!(
            history_base(".poison_key/poison_key"),
            (".poison_key/poison_key", None)
        );
        assert!(is_public("Alice_storage.pub") && is_public("Alice_storage.pub.old/t"));
        assert!(!is_public("Alice_storage.old/t"));
    }

    #[test]
    fn a_master_key_of_the_other_version_is_a_mismatch() {
        let v1 = MasterKey::V1(zeroize::Zeroizing::new(vec![1u8; 32]));
        let entries = [Entry {
            path: "keys/Alice_hmac",
            mode: 0o600,
            data: b"x",
        }];
        let r = open_all(&entries, 2, &v1);
        assert!(!r.ok());
        assert!(
            r.problems()[0].contains("v1 key; this keystore is v2"),
            "{:?}",
            r.problems()
        );
        let r = open_all(&entries, 1, &v1);
        assert_eq!((r.total, r.opened), (1, 0));
        let many: Vec<String> = (0..12).map(|i| format!("keys/c{i}_hmac")).collect();
        let many: Vec<Entry> = many
            .iter()
            .map(|p| Entry {
                path: p,
                mode: 0o600,
                data: b"x",
            })
            .collect();
        let problems = open_all(&many, 1, &v1).problems();
        assert_eq!(problems.len(), 1 + NAMED_IN_PROBLEMS + 1, "{problems:?}");
        assert!(
            problems.last().unwrap().starts_with("and 2 more keys"),
            "{problems:?}"
        );
        let auth = [Entry {
            path: "keys/auth_key",
            mode: 0o600,
            data: b"raw random bytes",
        }];
        assert_eq!(open_all(&auth, 1, &v1).total, 0, "auth_key is not sealed");
        assert!(r.problems()[0].contains("none opens"), "{:?}", r.problems());
        assert!(
            r.problems()[1].starts_with("key Alice_hmac: "),
            "{:?}",
            r.problems()
        );
    }

    /// Key names are file names from the node: a node under someone else's control can name a
    /// file with terminal escapes or a line break, which must not reach the operator's terminal
    /// as such (a fake "all keys open" line, a cleared screen).
    #[test]
    fn key_names_in_problem_lines_cannot_drive_the_terminal() {
        let v1 = MasterKey::V1(zeroize::Zeroizing::new(vec![1u8; 32]));
        let entries = [Entry {
            path: "keys/x\u{1b}[2J\n12 of 12 sealed keys open_hmac",
            mode: 0o600,
            data: b"x",
        }];
        let problems = open_all(&entries, 1, &v1).problems();
        let line = &problems[1];
        assert!(
            !line.chars().any(char::is_control),
            "a control character reaches the output: {line:?}"
        );
        assert!(line.contains("\\u{1b}[2J\\n12 of 12"), "{line}");
    }
}

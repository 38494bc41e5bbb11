//! How much work opening a P12 would make OpenSSL do, read from the file before OpenSSL sees it.
//!
//! A P12 names its own key-derivation iteration counts: the MAC's (`macData.iterations`) and each
//! encrypted part's (PKCS#12 PBE or PBES2/PBKDF2 parameters). OpenSSL honours whatever the file
//! says, up to 2^31-1: about six minutes of SHA-1 per derivation on this machine's cores, and a
//! check tries up to 16 passphrases per P12 (`ops::passphrase`). The files come from nodes, so a
//! node that is not ours could hold a check (a backup run, `check --identity`, a restore) for
//! hours. So every count OpenSSL would use is read here first, and the file is refused above:
//! - [`MAX_ITERATIONS`] per derivation: 2,000,000, twenty times what any P12 in this fleet uses
//!   (cl-keytool writes 102,400 for the MAC and 51,200 per encrypted part; OpenSSL 3 writes
//!   2,048; NIST SP 800-132's guidance is in the thousands to the low millions), a fraction of a
//!   second each;
//! - [`MAX_WORK`] in all (every derivation, each part counted as often as it is derived), so a
//!   file cannot multiply the allowed count by carrying many encrypted parts: a few seconds.
//!
//! What OpenSSL derives (`PKCS12_parse`, crypto/pkcs12/p12_kiss.c): the MAC key once (twice for
//! an empty password, which it tries as absent and as empty); every `encryptedData` part of the
//! authenticated safe, in order; and the first key bag it meets (later ones are skipped). That
//! first key bag may sit inside an encrypted part, where its count cannot be read without the
//! password: such parts (the ones before the first key bag in plain view) are decrypted here,
//! with the same password and within the same bounds, and walked too. OpenSSL 3 writes its
//! certificates' encrypted part before the key's, so this happens for its files; cl-keytool
//! (BouncyCastle) writes the key first.
//!
//! Algorithms that cannot be bounded this way (scrypt, unknown ciphers or KDFs) are refused: a
//! P12 a node made with them is stored all the same, marked "not checked" with the reason.

use super::asn1::{Tlv, children, octets, tlv, unsigned};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use openssl::symm::Cipher;
use std::borrow::Cow;
use zeroize::Zeroizing;

/// Most iterations accepted for one key derivation (see the module documentation).
pub const MAX_ITERATIONS: u64 = 2_000_000;

/// Most iterations accepted for opening one P12 with one password, all derivations together.
pub const MAX_WORK: u64 = 10_000_000;

/// Most levels of bags within bags (`safeContentsBag`) followed; OpenSSL recurses without one.
const MAX_BAG_DEPTH: usize = 8;

/// Why a P12 is not opened.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// It would cost too much, or cannot be bounded: the reason.
    Cost(String),
    /// Its structure is not a PKCS#12 file's (as far as the walk reads it): the reason.
    Malformed(String),
    /// Its MAC does not verify with this password (checked here only when an encrypted part
    /// did not decrypt).
    WrongPassword,
}

fn cost(why: impl Into<String>) -> Refusal {
    Refusal::Cost(why.into())
}

fn malformed(why: impl Into<String>) -> Refusal {
    Refusal::Malformed(why.into())
}

/// Object identifiers, DER content bytes.
mod oid {
    pub const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    pub const ENCRYPTED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x06];
    /// 1.2.840.113549.1.12.10.1.x: the bag types (1 keyBag, 2 pkcs8ShroudedKeyBag, 6 safeContentsBag).
    pub const BAG_PREFIX: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01];
    /// 1.2.840.113549.1.12.1.x: PKCS#12 PBE (SHA-1 and RC4 / 3DES / 2DES / RC2).
    pub const PKCS12_PBE_PREFIX: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01];
    /// 1.2.840.113549.1.5.x: PKCS#5 (1, 3, 4, 6, 10, 11 PBES1; 12 PBKDF2; 13 PBES2; 14 PBMAC1).
    pub const PKCS5_PREFIX: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05];
    /// 1.2.840.113549.2.x: hmacWithSHA1 (7), SHA224 (8), SHA256 (9), SHA384 (10), SHA512 (11).
    pub const HMAC_PREFIX: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02];
    pub const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
    /// 2.16.840.1.101.3.4.2.x: SHA-256 (1), SHA-384 (2), SHA-512 (3), SHA-224 (4).
    pub const SHA2_PREFIX: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02];
    /// 2.16.840.1.101.3.4.1.x: AES-128-CBC (2), AES-192-CBC (22), AES-256-CBC (42).
    pub const AES_PREFIX: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01];
    pub const DES_EDE3_CBC: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x03, 0x07];
}

/// `oid` is `prefix` and one more arc below 128; that arc.
fn arc(oid: &[u8], prefix: &[u8]) -> Option<u8> {
    match oid.strip_prefix(prefix)? {
        [last] if *last < 0x80 => Some(*last),
        _ => None,
    }
}

/// An element's children, `n` at least.
fn fields(bytes: &[u8], t: &Tlv, n: usize, what: &str) -> Result<Vec<Tlv>, Refusal> {
    let kids = children(bytes, t).map_err(|e| malformed(format!("{what}: {e}")))?;
    if kids.len() < n {
        return Err(malformed(format!("{what}: too few fields")));
    }
    Ok(kids)
}

fn oid_of<'b>(bytes: &'b [u8], t: &Tlv) -> Result<&'b [u8], Refusal> {
    if t.h.tag != 0x06 {
        return Err(malformed("an object identifier was expected"));
    }
    Ok(&bytes[t.h.content..t.content_end()])
}

fn octets_of<'b>(bytes: &'b [u8], t: &Tlv) -> Result<Cow<'b, [u8]>, Refusal> {
    octets(bytes, t).map_err(malformed)
}

fn count_of(bytes: &[u8], t: &Tlv, what: &str) -> Result<u64, Refusal> {
    unsigned(bytes, t).map_err(|e| malformed(format!("{what}: {e}")))
}

/// A password as the key derivations take it: the PKCS#12 KDF its UTF-16BE with a terminating
/// zero (OpenSSL 3's `OPENSSL_utf82uni`), PBKDF2 its UTF-8 bytes. OpenSSL tries an empty
/// password as absent first, then as empty.
struct Password<'p> {
    utf8: Option<&'p str>,
}

impl Password<'_> {
    fn bmp(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        if let Some(p) = self.utf8 {
            for unit in p.encode_utf16().chain([0]) {
                out.extend_from_slice(&unit.to_be_bytes());
            }
        }
        out
    }

    fn utf8(&self) -> &[u8] {
        self.utf8.map(str::as_bytes).unwrap_or_default()
    }
}

/// The walk's running total.
struct Walk<'p> {
    work: u64,
    key_seen: bool,
    passwords: Vec<Password<'p>>,
}

impl Walk<'_> {
    /// Adds one derivation of `iterations`, done `times` times.
    fn add(&mut self, what: &str, iterations: u64, times: u64) -> Result<(), Refusal> {
        if iterations > MAX_ITERATIONS {
            return Err(cost(format!(
                "its {what} asks for {iterations} key-derivation iterations; coldkeep opens P12 files \
                 with at most {MAX_ITERATIONS} (cl-keytool uses 102,400): a file from a node must not \
                 make a check run for minutes"
            )));
        }
        self.work = self.work.saturating_add(iterations.saturating_mul(times));
        if self.work > MAX_WORK {
            return Err(cost(format!(
                "opening it takes more than {MAX_WORK} key-derivation iterations in all (its MAC and \
                 encrypted parts together): a file from a node must not make a check run for minutes"
            )));
        }
        Ok(())
    }
}

/// Checks that opening `bytes` with `password` stays within the bounds; the structure was
/// checked already ([`super::p12`]'s `check_structure`).
pub fn check(bytes: &[u8], password: &str) -> Result<(), Refusal> {
    let passwords = if password.is_empty() {
        vec![Password { utf8: None }, Password { utf8: Some("") }]
    } else {
        vec![Password { utf8: Some(password) }]
    };
    let mut walk = Walk {
        work: 0,
        key_seen: false,
        passwords,
    };
    let pfx = tlv(bytes, 0).map_err(malformed)?;
    let top = fields(bytes, &pfx, 2, "PFX")?;
    let mac = top.get(2);
    if let Some(mac) = mac {
        let tries = walk.passwords.len() as u64;
        mac_cost(bytes, mac, tries, &mut walk)?;
    }
    let auth = data_content(bytes, &top[1], "authSafe")?;
    let safes = tlv(&auth, 0).map_err(malformed)?;
    for safe in fields(&auth, &safes, 0, "authenticated safe")? {
        let parts = fields(&auth, &safe, 1, "ContentInfo")?;
        let kind = oid_of(&auth, &parts[0])?;
        if kind == oid::DATA {
            let contents = data_content(&auth, &safe, "data part")?;
            bag_list(&contents, &mut walk)?;
        } else if kind == oid::ENCRYPTED_DATA {
            encrypted_part(&auth, &safe, bytes, mac, &mut walk)?;
        }
        // OpenSSL skips any other kind of part.
    }
    Ok(())
}

/// The OCTET STRING inside a `data` ContentInfo (`SEQUENCE { OID, [0] { OCTET STRING } }`).
fn data_content<'b>(bytes: &'b [u8], info: &Tlv, what: &str) -> Result<Cow<'b, [u8]>, Refusal> {
    let parts = fields(bytes, info, 2, what)?;
    let explicit = fields(bytes, &parts[1], 1, what)?;
    octets_of(bytes, &explicit[0])
}

/// The MAC: `SEQUENCE { DigestInfo, macSalt, iterations DEFAULT 1 }`, derived `tries` times.
fn mac_cost(bytes: &[u8], mac: &Tlv, tries: u64, walk: &mut Walk) -> Result<(), Refusal> {
    let parts = fields(bytes, mac, 2, "macData")?;
    let digest_info = fields(bytes, &parts[0], 1, "MAC DigestInfo")?;
    let algorithm = fields(bytes, &digest_info[0], 1, "MAC algorithm")?;
    // PBMAC1 (RFC 9579, OpenSSL 3.4+): PBKDF2 parameters inside.
    if arc(oid_of(bytes, &algorithm[0])?, oid::PKCS5_PREFIX) == Some(14) {
        let params = algorithm
            .get(1)
            .ok_or_else(|| malformed("PBMAC1 without parameters"))?;
        let inner = fields(bytes, params, 1, "PBMAC1 parameters")?;
        return kdf_cost(bytes, &inner[0], None, tries, "MAC", walk);
    }
    let iterations = match parts.get(2) {
        Some(t) => count_of(bytes, t, "MAC iterations")?,
        None => 1,
    };
    walk.add("MAC", iterations, tries)
}

/// A bag list (`SafeContents`) that is all of `contents`.
fn bag_list(contents: &[u8], walk: &mut Walk) -> Result<(), Refusal> {
    let list = tlv(contents, 0).map_err(malformed)?;
    bags(contents, &list, walk, 0)
}

/// A bag list (`SafeContents`): the first key bag's derivation, bags within bags.
fn bags(contents: &[u8], list: &Tlv, walk: &mut Walk, depth: usize) -> Result<(), Refusal> {
    if depth > MAX_BAG_DEPTH {
        return Err(malformed("bags nested too deep"));
    }
    for bag in fields(contents, list, 0, "SafeContents")? {
        let parts = fields(contents, &bag, 2, "SafeBag")?;
        let value = fields(contents, &parts[1], 1, "SafeBag value")?;
        match arc(oid_of(contents, &parts[0])?, oid::BAG_PREFIX) {
            Some(1) => walk.key_seen = true,
            // OpenSSL decrypts only the first key bag it meets.
            Some(2) if !walk.key_seen => {
                let info = fields(contents, &value[0], 2, "EncryptedPrivateKeyInfo")?;
                pbe_cost(contents, &info[0], 1, "key bag", walk)?;
                walk.key_seen = true;
            }
            Some(6) => bags(contents, &value[0], walk, depth + 1)?,
            _ => {}
        }
    }
    Ok(())
}

/// An `encryptedData` part: its derivation, and (before the first key bag) what it hides.
fn encrypted_part(
    auth: &[u8],
    info: &Tlv,
    p12: &[u8],
    mac: Option<&Tlv>,
    walk: &mut Walk,
) -> Result<(), Refusal> {
    let parts = fields(auth, info, 2, "encrypted part")?;
    let explicit = fields(auth, &parts[1], 1, "encrypted part")?;
    let encrypted = fields(auth, &explicit[0], 2, "EncryptedData")?;
    let content_info = fields(auth, &encrypted[1], 3, "EncryptedContentInfo")?;
    let algorithm = &content_info[1];
    // OpenSSL decrypts it once; to see a key bag inside, so do we.
    let times = if walk.key_seen { 1 } else { 2 };
    pbe_cost(auth, algorithm, times, "encrypted part", walk)?;
    if walk.key_seen {
        return Ok(());
    }
    let ciphertext = octets_of(auth, &content_info[2])?;
    let mut plain = None;
    for password in &walk.passwords {
        if let Ok(Some(p)) = decrypt(auth, algorithm, &ciphertext, password) {
            plain = Some(p);
            break;
        }
    }
    match plain {
        Some(plain) => bag_list(&plain, walk),
        // Not with this password: OpenSSL stops at the MAC if it has one (wrong password);
        // without one, it fails on this same part. Either way it derives nothing more.
        None => match mac {
            Some(mac) if !mac_verifies(p12, mac, walk)? => Err(Refusal::WrongPassword),
            Some(_) => Err(malformed(
                "an encrypted part does not decrypt with the password its MAC accepts (the file is damaged)",
            )),
            None => Err(malformed(
                "an encrypted part does not decrypt with this password (a wrong password or a damaged \
                 file: it has no MAC to tell which)",
            )),
        },
    }
}

/// The derivations an `AlgorithmIdentifier` of an encrypted part makes, done `times` times.
fn pbe_cost(bytes: &[u8], algorithm: &Tlv, times: u64, what: &str, walk: &mut Walk) -> Result<(), Refusal> {
    let parts = fields(bytes, algorithm, 1, what)?;
    let id = oid_of(bytes, &parts[0])?;
    let params = parts
        .get(1)
        .ok_or_else(|| malformed(format!("{what}: no parameters")));
    let pkcs5 = arc(id, oid::PKCS5_PREFIX);
    if arc(id, oid::PKCS12_PBE_PREFIX).is_some_and(|a| (1..=6).contains(&a))
        || pkcs5.is_some_and(|a| [1, 3, 4, 6, 10, 11].contains(&a))
    {
        // PBEParameter { salt, iterations }: the key and the IV are derived separately.
        let p = fields(bytes, params?, 2, what)?;
        let iterations = count_of(bytes, &p[1], what)?;
        return walk.add(what, iterations, times.saturating_mul(2));
    }
    if pkcs5 == Some(13) {
        // PBES2 { keyDerivationFunc, encryptionScheme }.
        let p = fields(bytes, params?, 2, what)?;
        let scheme = fields(bytes, &p[1], 1, what)?;
        let key_len = cipher_of(oid_of(bytes, &scheme[0])?).map(|(c, _)| c.key_len());
        return kdf_cost(bytes, &p[0], key_len, times, what, walk);
    }
    Err(cost(format!(
        "its {what} uses an encryption coldkeep does not know, so the work of opening it cannot be bounded"
    )))
}

/// PBKDF2's derivations (the only KDF accepted): its count, once per output block.
fn kdf_cost(
    bytes: &[u8],
    kdf: &Tlv,
    key_len: Option<usize>,
    times: u64,
    what: &str,
    walk: &mut Walk,
) -> Result<(), Refusal> {
    let params = pbkdf2_params(bytes, kdf, what)?;
    let key_len = params.key_len.or(key_len).unwrap_or(64);
    if key_len > 64 {
        return Err(cost(format!("its {what} asks for a {key_len}-byte key")));
    }
    let blocks = key_len.div_ceil(params.prf.size()) as u64;
    walk.add(what, params.iterations, times.saturating_mul(blocks))
}

struct Pbkdf2<'b> {
    salt: &'b [u8],
    iterations: u64,
    key_len: Option<usize>,
    prf: MessageDigest,
}

/// `AlgorithmIdentifier { PBKDF2, { salt, iterationCount, keyLength OPTIONAL, prf DEFAULT
/// hmacWithSHA1 } }`; scrypt and other KDFs are refused.
fn pbkdf2_params<'b>(bytes: &'b [u8], kdf: &Tlv, what: &str) -> Result<Pbkdf2<'b>, Refusal> {
    let parts = fields(bytes, kdf, 2, what)?;
    if arc(oid_of(bytes, &parts[0])?, oid::PKCS5_PREFIX) != Some(12) {
        return Err(cost(format!(
            "its {what} derives its key with something other than PBKDF2 (scrypt?), whose work \
             coldkeep does not bound"
        )));
    }
    let p = fields(bytes, &parts[1], 2, what)?;
    if p[0].h.tag != 0x04 {
        return Err(malformed(format!("{what}: PBKDF2 salt is not an OCTET STRING")));
    }
    let salt = &bytes[p[0].h.content..p[0].content_end()];
    let iterations = count_of(bytes, &p[1], what)?;
    let mut key_len = None;
    let mut prf = MessageDigest::sha1();
    for extra in &p[2..] {
        match extra.h.tag {
            0x02 => key_len = Some(usize::try_from(count_of(bytes, extra, what)?).unwrap_or(usize::MAX)),
            0x30 => {
                let alg = fields(bytes, extra, 1, what)?;
                prf = match arc(oid_of(bytes, &alg[0])?, oid::HMAC_PREFIX) {
                    Some(7) => MessageDigest::sha1(),
                    Some(8) => MessageDigest::sha224(),
                    Some(9) => MessageDigest::sha256(),
                    Some(10) => MessageDigest::sha384(),
                    Some(11) => MessageDigest::sha512(),
                    _ => {
                        return Err(cost(format!(
                            "its {what} uses a PBKDF2 hash coldkeep does not know"
                        )));
                    }
                };
            }
            _ => return Err(malformed(format!("{what}: unexpected PBKDF2 parameter"))),
        }
    }
    Ok(Pbkdf2 {
        salt,
        iterations,
        key_len,
        prf,
    })
}

/// A PBES2 encryption scheme: the cipher and its IV length.
fn cipher_of(oid: &[u8]) -> Option<(Cipher, usize)> {
    match arc(oid, oid::AES_PREFIX) {
        Some(2) => Some((Cipher::aes_128_cbc(), 16)),
        Some(22) => Some((Cipher::aes_192_cbc(), 16)),
        Some(42) => Some((Cipher::aes_256_cbc(), 16)),
        _ if oid == oid::DES_EDE3_CBC => Some((Cipher::des_ede3_cbc(), 8)),
        _ => None,
    }
}

/// A PKCS#12 PBE cipher (1.2.840.113549.1.12.1.x): the cipher, key and IV lengths.
fn pkcs12_cipher(arc: u8) -> Option<(Cipher, usize, usize)> {
    use openssl::nid::Nid;
    match arc {
        1 => Some((Cipher::rc4(), 16, 0)),
        2 => Some((Cipher::from_nid(Nid::RC4_40)?, 5, 0)),
        3 => Some((Cipher::des_ede3_cbc(), 24, 8)),
        4 => Some((Cipher::from_nid(Nid::DES_EDE_CBC)?, 16, 8)),
        5 => Some((Cipher::rc2_cbc(), 16, 8)),
        6 => Some((Cipher::rc2_40_cbc(), 5, 8)),
        _ => None,
    }
}

/// Decrypts an encrypted part as OpenSSL would; `Ok(None)` when it does not decrypt to a bag
/// list with this password.
fn decrypt(
    bytes: &[u8],
    algorithm: &Tlv,
    ciphertext: &[u8],
    password: &Password,
) -> Result<Option<Zeroizing<Vec<u8>>>, Refusal> {
    let parts = fields(bytes, algorithm, 2, "encrypted part")?;
    let id = oid_of(bytes, &parts[0])?;
    let p = fields(bytes, &parts[1], 2, "encrypted part")?;
    let unsupported = || {
        cost(
            "an encrypted part that may hold the key uses an encryption coldkeep cannot look inside, \
             so the work of opening the key cannot be bounded",
        )
    };
    let plain = if let Some(a) = arc(id, oid::PKCS12_PBE_PREFIX) {
        let (cipher, key_len, iv_len) = pkcs12_cipher(a).ok_or_else(unsupported)?;
        let salt = octets_of(bytes, &p[0])?;
        let iterations = count_of(bytes, &p[1], "encrypted part")?;
        let pass = password.bmp();
        let md = MessageDigest::sha1();
        let key = pkcs12_kdf(md, &pass, &salt, 1, iterations, key_len).map_err(|_| unsupported())?;
        let iv = pkcs12_kdf(md, &pass, &salt, 2, iterations, iv_len).map_err(|_| unsupported())?;
        let iv = (iv_len > 0).then_some(iv.as_slice());
        openssl::symm::decrypt(cipher, &key, iv, ciphertext)
    } else if arc(id, oid::PKCS5_PREFIX) == Some(13) {
        let kdf = pbkdf2_params(bytes, &p[0], "encrypted part")?;
        let scheme = fields(bytes, &p[1], 2, "encrypted part")?;
        let (cipher, iv_len) = cipher_of(oid_of(bytes, &scheme[0])?).ok_or_else(unsupported)?;
        let iv = octets_of(bytes, &scheme[1])?;
        if iv.len() != iv_len {
            return Ok(None);
        }
        let mut key = Zeroizing::new(vec![0u8; cipher.key_len()]);
        let iterations = usize::try_from(kdf.iterations).unwrap_or(usize::MAX);
        openssl::pkcs5::pbkdf2_hmac(password.utf8(), kdf.salt, iterations, kdf.prf, &mut key)
            .map_err(|_| unsupported())?;
        openssl::symm::decrypt(cipher, &key, Some(&iv), ciphertext)
    } else {
        return Err(unsupported());
    };
    // A wrong password: bad padding, or bytes that are no bag list.
    let Ok(plain) = plain.map(Zeroizing::new) else {
        return Ok(None);
    };
    let whole = tlv(&plain, 0).is_ok_and(|t| t.h.tag == 0x30 && t.end == plain.len());
    Ok(whole.then_some(plain))
}

/// Whether the MAC verifies with one of the walk's passwords (HMAC keyed by the PKCS#12 KDF, as
/// `PKCS12_verify_mac`); counted like OpenSSL's own check.
fn mac_verifies(p12: &[u8], mac: &Tlv, walk: &mut Walk) -> Result<bool, Refusal> {
    let parts = fields(p12, mac, 2, "macData")?;
    let digest_info = fields(p12, &parts[0], 2, "MAC DigestInfo")?;
    let algorithm = fields(p12, &digest_info[0], 1, "MAC algorithm")?;
    let id = oid_of(p12, &algorithm[0])?;
    let md = match arc(id, oid::SHA2_PREFIX) {
        _ if id == oid::SHA1 => MessageDigest::sha1(),
        Some(1) => MessageDigest::sha256(),
        Some(2) => MessageDigest::sha384(),
        Some(3) => MessageDigest::sha512(),
        Some(4) => MessageDigest::sha224(),
        _ => return Err(cost("its MAC uses a hash coldkeep does not check")),
    };
    let expected = octets_of(p12, &digest_info[1])?;
    let salt = octets_of(p12, &parts[1])?;
    let iterations = match parts.get(2) {
        Some(t) => count_of(p12, t, "MAC iterations")?,
        None => 1,
    };
    let tries = walk.passwords.len() as u64;
    walk.add("MAC", iterations, tries)?;
    let pfx = tlv(p12, 0).map_err(malformed)?;
    let top = fields(p12, &pfx, 2, "PFX")?;
    let data = data_content(p12, &top[1], "authSafe")?;
    for password in &walk.passwords {
        let Ok(key) = pkcs12_kdf(md, &password.bmp(), &salt, 3, iterations, md.size()) else {
            continue;
        };
        let signed = PKey::hmac(&key)
            .and_then(|k| {
                let mut s = Signer::new(md, &k)?;
                s.update(&data)?;
                s.sign_to_vec()
            })
            .map_err(|_| cost("the MAC could not be computed"))?;
        if signed.len() == expected.len() && openssl::memcmp::eq(&signed, &expected) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The PKCS#12 key derivation (RFC 7292 appendix B.2): `n` bytes for purpose `id` (1 key,
/// 2 IV, 3 MAC key), `iterations` as OpenSSL counts them (1 or less: one hash).
fn pkcs12_kdf(
    md: MessageDigest,
    password: &[u8],
    salt: &[u8],
    id: u8,
    iterations: u64,
    n: usize,
) -> Result<Zeroizing<Vec<u8>>, openssl::error::ErrorStack> {
    let u = md.size();
    let v = md.block_size();
    // I = S || P, each repeated to a multiple of v bytes (the password's copy wiped on drop).
    let mut i = Zeroizing::new(Vec::new());
    for s in [salt, password] {
        let len = v * s.len().div_ceil(v);
        i.extend(s.iter().copied().cycle().take(len));
    }
    let mut out = Zeroizing::new(Vec::with_capacity(n));
    while out.len() < n {
        let mut h = openssl::hash::Hasher::new(md)?;
        h.update(&vec![id; v])?;
        h.update(&i)?;
        let mut a = Zeroizing::new(h.finish()?.to_vec());
        for _ in 1..iterations {
            a = Zeroizing::new(openssl::hash::hash(md, &a)?.to_vec());
        }
        let take = (n - out.len()).min(u);
        out.extend_from_slice(&a[..take]);
        if out.len() >= n {
            break;
        }
        // I_j = (I_j + B + 1) mod 2^(8v), B = A repeated to v bytes.
        let b: Zeroizing<Vec<u8>> = Zeroizing::new(a.iter().copied().cycle().take(v).collect());
        for block in i.chunks_mut(v) {
            let mut carry = 1u16;
            for k in (0..v).rev() {
                let sum = u16::from(block[k]) + u16::from(b[k]) + carry;
                block[k] = sum as u8;
                carry = sum >> 8;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "p12_cost_tests.rs"]
mod tests;

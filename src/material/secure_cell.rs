//! Themis Secure Cell, seal mode with a master key: decryption only, in pure Rust.
//!
//! Acra seals every stored key this way, so checking that a master key opens a keystore backup
//! needs it; there is no Themis package for this machine's distribution, and the format is small.
//! The facts, from cossacklabs/themis:
//! - A sealed cell is an authentication token followed by the ciphertext
//!   (`secure_cell.c`, `themis_secure_cell_decrypt_seal`).
//! - The token is four little-endian u32 (algorithm, IV length, tag length, message length), then
//!   the IV and the GCM tag (`secure_cell_seal` token, `themis_read_scell_auth_token_key`).
//! - The AES key is the Soter KDF (`soter_kdf.c`, ZRTP style, RFC 6189 4.5.1) of the master key:
//!   HMAC-SHA-256(master, 00 00 00 01 || "Themis secure cell message key" || 00 || u32le(message
//!   length) || context), first 32 bytes (`sym_enc_message.c`,
//!   `themis_auth_sym_derive_encryption_key`).
//! - AES-256-GCM with the context as associated data. Themis 0.9.6 put a 64-bit length into the
//!   KDF; like Themis built with `SCELL_COMPAT`, we try that when the first key fails.
//!
//! Passphrase cells (PBKDF2) are not master-key cells and are refused as unsupported.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// AES-GCM (`SOTER_SYM_AES_GCM` 0x40010000), 256-bit key (0x100), Soter KDF (`SOTER_SYM_NOKDF`,
/// not PBKDF2): the algorithm id Themis writes for master-key cells (`THEMIS_AUTH_SYM_ALG`,
/// `soter_sym.h`), as a little-endian u32 at the start of the cell.
pub const ALG_AES_256_GCM: u32 = 0x4001_0100;
const TOKEN_HEADER: usize = 16;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KDF_LABEL: &[u8] = b"Themis secure cell message key";

/// Why a sealed cell did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CellError {
    /// The bytes are not a Secure Cell (truncated, inconsistent lengths).
    #[error("not a Themis Secure Cell: {0}")]
    Malformed(&'static str),
    /// A well-formed cell of a kind this reader does not open (passphrase, other cipher).
    #[error("a Secure Cell with algorithm 0x{0:08x}, not AES-256-GCM with a master key")]
    Unsupported(u32),
    /// The GCM tag does not verify: another master key, another context, or damaged bytes.
    #[error("does not open: another master key or context, or damaged")]
    Authentication,
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Opens a seal-mode cell made with `master_key` and `context` (empty for none); returns the
/// plaintext, wiped on drop.
pub fn open_seal(master_key: &[u8], context: &[u8], cell: &[u8]) -> Result<Zeroizing<Vec<u8>>, CellError> {
    if master_key.is_empty() {
        return Err(CellError::Malformed("empty master key"));
    }
    if cell.len() < TOKEN_HEADER {
        return Err(CellError::Malformed("shorter than its header"));
    }
    let (alg, iv_len, tag_len, message_len) = (le32(cell, 0), le32(cell, 4), le32(cell, 8), le32(cell, 12));
    if alg != ALG_AES_256_GCM {
        return Err(CellError::Unsupported(alg));
    }
    if iv_len as usize != IV_LEN || tag_len as usize != TAG_LEN {
        return Err(CellError::Malformed("unexpected IV or tag length"));
    }
    let token_len = TOKEN_HEADER + IV_LEN + TAG_LEN;
    if cell.len() < token_len || (cell.len() - token_len) as u64 != u64::from(message_len) {
        return Err(CellError::Malformed("length does not match its header"));
    }
    if message_len == 0 {
        return Err(CellError::Malformed("empty message"));
    }
    let iv = &cell[TOKEN_HEADER..TOKEN_HEADER + IV_LEN];
    let tag = &cell[TOKEN_HEADER + IV_LEN..token_len];
    let ciphertext = &cell[token_len..];
    let length_labels: [&[u8]; 2] = [&message_len.to_le_bytes(), &u64::from(message_len).to_le_bytes()];
    for length in length_labels {
        let key = kdf(master_key, length, context);
        let cipher = Aes256Gcm::new_from_slice(&key[..]).map_err(|_| CellError::Malformed("key length"))?;
        let mut plain = Zeroizing::new(ciphertext.to_vec());
        if cipher
            .decrypt_in_place_detached(Nonce::from_slice(iv), context, &mut plain, Tag::from_slice(tag))
            .is_ok()
        {
            return Ok(plain);
        }
    }
    Err(CellError::Authentication)
}

/// Soter KDF for the message key: HMAC-SHA-256 keyed with the master key over a counter, the label,
/// a zero byte, and the contexts (message length, then the user context).
fn kdf(master_key: &[u8], length: &[u8], context: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(master_key).expect("HMAC takes any key length");
    mac.update(&[0, 0, 0, 1]);
    mac.update(KDF_LABEL);
    mac.update(&[0]);
    mac.update(length);
    mac.update(context);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// A Themis EC key container: `REC2`/`UEC2`, big-endian total length 45, CRC-32C (stored little
/// endian, computed with the field zeroed), then 33 bytes: a zero and the P-256 scalar for a
/// private key, the compressed point for a public key (`soter_ec_key.c`, `soter_crc32.c`).
const EC_KEY_LEN: usize = 45;

/// Checks that `private` is a Themis P-256 private key and, when `public` is given, that its
/// public point is exactly that key. Errors never include key bytes.
pub fn check_ec_key_pair(private: &[u8], public: Option<&[u8]>) -> Result<(), String> {
    container(private, b"REC2").map_err(|e| format!("not a Themis EC private key: {e}"))?;
    if private[12] != 0 {
        return Err("not a Themis EC private key: bad scalar encoding".into());
    }
    let derived = public_point(&private[13..]).map_err(|e| format!("not a valid P-256 private key: {e}"))?;
    if let Some(public) = public {
        container(public, b"UEC2").map_err(|e| format!("the .pub is not a Themis EC public key: {e}"))?;
        if derived.as_slice() != &public[12..] {
            return Err("does not match its public key".into());
        }
    }
    Ok(())
}

fn container(key: &[u8], tag: &[u8; 4]) -> Result<(), &'static str> {
    if key.len() != EC_KEY_LEN || &key[..4] != tag {
        return Err("wrong header or size");
    }
    if u32::from_be_bytes([key[4], key[5], key[6], key[7]]) as usize != EC_KEY_LEN {
        return Err("wrong length field");
    }
    let mut zeroed = Zeroizing::new(key.to_vec());
    zeroed[8..12].fill(0);
    if crc32c(&zeroed).to_le_bytes() != key[8..12] {
        return Err("checksum mismatch");
    }
    Ok(())
}

/// The compressed P-256 point of a 32-byte scalar.
fn public_point(scalar: &[u8]) -> Result<Vec<u8>, String> {
    use openssl::bn::{BigNum, BigNumContext};
    use openssl::ec::{EcGroup, EcPoint, PointConversionForm};
    use openssl::nid::Nid;
    let err = |e: openssl::error::ErrorStack| e.to_string();
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(err)?;
    let mut ctx = BigNumContext::new_secure().map_err(err)?;
    // A secure bignum: OpenSSL wipes it when freed.
    let mut d = BigNum::new_secure().map_err(err)?;
    d.copy_from_slice(scalar).map_err(err)?;
    let mut order = BigNum::new().map_err(err)?;
    group.order(&mut order, &mut ctx).map_err(err)?;
    if d.num_bits() == 0 || d >= order {
        return Err("scalar out of range".into());
    }
    let mut point = EcPoint::new(&group).map_err(err)?;
    point.mul_generator2(&group, &d, &mut ctx).map_err(err)?;
    point
        .to_bytes(&group, PointConversionForm::COMPRESSED, &mut ctx)
        .map_err(err)
}

/// CRC-32C (Castagnoli), bitwise: the checksum Themis key containers carry.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82F6_3B78 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by the reference Themis (wasm-themis 0.15.0):
    // SecureCellSeal.withKey([7; 32]).encrypt("hello world", "ctx").
    const CELL: &str = "000101400c000000100000000b000000703ee7c3b99276fbce73a82253af3811953374d9c3a37a8e0da68f5433520c7b3776c893220e2a";
    // new KeyPair(): a Themis EC private key and its public key.
    const PRIVATE: &str =
        "524543320000002d2b2a7bf700a61e3a23eaa697ffcdb7557e98cda0dfe02ec9a4560d389b9be8a4b2249099b2";
    const PUBLIC: &str =
        "554543320000002daa02dd0a02534b08e4689289556f9e457009fe8046e7121ea4a03b31669f9bf32e08571560";

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn opens_a_cell_sealed_by_reference_themis() {
        let plain = open_seal(&[7u8; 32], b"ctx", &h(CELL)).unwrap();
        assert_eq!(plain.as_slice(), b"hello world");
    }

    #[test]
    fn wrong_key_context_or_bytes_do_not_open() {
        let cell = h(CELL);
        assert_eq!(
            open_seal(&[8u8; 32], b"ctx", &cell),
            Err(CellError::Authentication)
        );
        assert_eq!(
            open_seal(&[7u8; 32], b"ctX", &cell),
            Err(CellError::Authentication)
        );
        assert_eq!(open_seal(&[7u8; 32], b"", &cell), Err(CellError::Authentication));
        for at in [20, 35, cell.len() - 1] {
            let mut bad = cell.clone();
            bad[at] ^= 1;
            assert_eq!(
                open_seal(&[7u8; 32], b"ctx", &bad),
                Err(CellError::Authentication),
                "{at}"
            );
        }
        let mut alg = cell.clone();
        alg[3] = 0x41;
        assert_eq!(
            open_seal(&[7u8; 32], b"ctx", &alg),
            Err(CellError::Unsupported(0x4101_0100))
        );
        let mut len = cell.clone();
        len[12] = 12;
        assert!(matches!(
            open_seal(&[7u8; 32], b"ctx", &len),
            Err(CellError::Malformed(_))
        ));
        assert!(matches!(
            open_seal(&[7u8; 32], b"ctx", &cell[..30]),
            Err(CellError::Malformed(_))
        ));
        assert!(matches!(
            open_seal(&[7u8; 32], b"ctx", &cell[..cell.len() - 1]),
            Err(CellError::Malformed(_))
        ));
        assert!(matches!(
            open_seal(&[], b"ctx", &cell),
            Err(CellError::Malformed(_))
        ));
    }

    #[test]
    fn ec_key_pairs_from_reference_themis() {
        let (private, public) = (h(PRIVATE), h(PUBLIC));
        check_ec_key_pair(&private, Some(&public)).unwrap();
        check_ec_key_pair(&private, None).unwrap();
        // Another public key (a valid container, another point) does not match.
        let mut other = public.clone();
        other[12] ^= 1; // 02 <-> 03: the negated point
        other[8..12].fill(0);
        let crc = crc32c(&other).to_le_bytes();
        other[8..12].copy_from_slice(&crc);
        assert_eq!(
            check_ec_key_pair(&private, Some(&other)).unwrap_err(),
            "does not match its public key"
        );
        let mut damaged = private.clone();
        damaged[20] ^= 1;
        assert!(
            check_ec_key_pair(&damaged, Some(&public))
                .unwrap_err()
                .contains("checksum")
        );
        assert!(
            check_ec_key_pair(&public, None).is_err(),
            "a public key is not a private key"
        );
        assert!(
            check_ec_key_pair(&[0u8; 32], None).is_err(),
            "raw bytes are not a Themis key"
        );
    }
}

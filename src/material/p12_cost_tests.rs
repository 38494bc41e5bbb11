use super::*;
use crate::material::p12::{self, GenerateStyle, P12Error};
use openssl::nid::Nid;
use openssl::pkcs12::Pkcs12;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/tessellation-local-test-key-0/key.p12"
);

/// DER: `tag`, definite length, `content`.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend_from_slice(&[0x81, n as u8]),
        n => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    der(0x30, &parts.concat())
}

fn int(v: u64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut body: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    if body.first().is_none_or(|b| b & 0x80 != 0) {
        body.insert(0, 0);
    }
    der(0x02, &body)
}

fn oid(content: &[u8]) -> Vec<u8> {
    der(0x06, content)
}

/// pbeWithSHAAnd3-KeyTripleDES-CBC with its salt and count.
fn pbe_3des(salt: &[u8], iterations: u64) -> Vec<u8> {
    let id = [oid::PKCS12_PBE_PREFIX, &[3]].concat();
    seq(&[&oid(&id), &seq(&[&der(0x04, salt), &int(iterations)])])
}

fn bag(kind: u8, value: &[u8]) -> Vec<u8> {
    seq(&[&oid(&[oid::BAG_PREFIX, &[kind]].concat()), &der(0xa0, value)])
}

fn data_part(contents: &[u8]) -> Vec<u8> {
    seq(&[&oid(oid::DATA), &der(0xa0, &der(0x04, contents))])
}

/// An `encryptedData` part of `plain` (3DES PBE, `iterations`) under `password`.
fn encrypted_part(plain: &[u8], password: &str, iterations: u64) -> Vec<u8> {
    let salt = b"salt-123";
    let pass = Password { utf8: Some(password) }.bmp();
    let md = MessageDigest::sha1();
    let key = pkcs12_kdf(md, &pass, salt, 1, iterations, 24).unwrap();
    let iv = pkcs12_kdf(md, &pass, salt, 2, iterations, 8).unwrap();
    let ciphertext = openssl::symm::encrypt(Cipher::des_ede3_cbc(), &key, Some(&iv), plain).unwrap();
    let info = seq(&[
        &oid(oid::DATA),
        &pbe_3des(salt, iterations),
        &der(0x80, &ciphertext),
    ]);
    seq(&[&oid(oid::ENCRYPTED_DATA), &der(0xa0, &seq(&[&int(0), &info]))])
}

/// A PFX of `parts`, with an HMAC-SHA1 MAC under `password` (2,048 iterations) when given.
fn pfx(parts: &[Vec<u8>], password: Option<&str>) -> Vec<u8> {
    match password {
        Some(password) => pfx_with_mac(parts, password, 2048),
        None => pfx_of(parts, None),
    }
}

/// A PFX of `parts` with an HMAC-SHA1 MAC under `password`, `iterations` as its count.
fn pfx_with_mac(parts: &[Vec<u8>], password: &str, iterations: u64) -> Vec<u8> {
    pfx_of(parts, Some((password, iterations)))
}

fn pfx_of(parts: &[Vec<u8>], mac: Option<(&str, u64)>) -> Vec<u8> {
    let safes = seq(&parts.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let auth = data_part(&safes);
    let mut top = vec![int(3), auth];
    if let Some((password, iterations)) = mac {
        let salt = b"mac-salt";
        let pass = Password { utf8: Some(password) }.bmp();
        // The key is what a MAC of at most 2,048 iterations would use: only the count is read
        // before the MAC is verified.
        let key = pkcs12_kdf(MessageDigest::sha1(), &pass, salt, 3, iterations.min(2048), 20).unwrap();
        let pkey = PKey::hmac(&key).unwrap();
        let mut signer = Signer::new(MessageDigest::sha1(), &pkey).unwrap();
        signer.update(&safes).unwrap();
        let mac = signer.sign_to_vec().unwrap();
        let algorithm = seq(&[&oid(oid::SHA1), &[0x05, 0x00]]);
        top.push(seq(&[
            &seq(&[&algorithm, &der(0x04, &mac)]),
            &der(0x04, salt),
            &int(iterations),
        ]));
    }
    seq(&top.iter().map(Vec::as_slice).collect::<Vec<_>>())
}

/// A shrouded key bag whose (never decrypted) key asks for `iterations`.
fn shrouded_key(iterations: u64) -> Vec<u8> {
    bag(
        2,
        &seq(&[&pbe_3des(b"key-salt", iterations), &der(0x04, &[7u8; 48])]),
    )
}

fn refused(result: Result<(), Refusal>) -> String {
    match result {
        Err(Refusal::Cost(why)) => why,
        other => panic!("expected a refusal for cost, got {other:?}"),
    }
}

#[test]
fn the_files_this_fleet_uses_are_within_bounds_and_still_open() {
    let fixture = std::fs::read(FIXTURE).unwrap();
    check(&fixture, "password").unwrap();
    assert!(p12::inspect(&fixture, Some("password")).unwrap().opened);
    for style in [GenerateStyle::Legacy, GenerateStyle::Modern] {
        let bytes = p12::generate("pw-0123", "alias", style).unwrap();
        check(&bytes, "pw-0123").unwrap();
        assert!(p12::inspect(&bytes, Some("pw-0123")).unwrap().opened);
        // OpenSSL writes the certificates' encrypted part before the key: it is decrypted here
        // to look for a key bag, and with a wrong password it does not decrypt and the MAC,
        // checked here then, says so (as OpenSSL would).
        assert_eq!(check(&bytes, "wrong"), Err(Refusal::WrongPassword), "{style:?}");
        assert!(matches!(
            p12::inspect(&bytes, Some("wrong")),
            Err(P12Error::WrongPassword)
        ));
    }
}

/// A legacy P12 (3DES key bag, RC2-40 certificates, SHA-1 MAC) with every count 65,536, so
/// each is a 3-byte INTEGER `02 03 01 00 00` that can be patched in place.
fn legacy_with_counts() -> Vec<u8> {
    let bytes = p12::generate("pw-0123", "alias", GenerateStyle::Legacy).unwrap();
    let parsed = Pkcs12::from_der(&bytes).unwrap().parse2("pw-0123").unwrap();
    let mut builder = Pkcs12::builder();
    builder
        .name("alias")
        .pkey(parsed.pkey.as_ref().unwrap())
        .cert(parsed.cert.as_ref().unwrap())
        .key_algorithm(Nid::PBE_WITHSHA1AND3_KEY_TRIPLEDES_CBC)
        .cert_algorithm(Nid::PBE_WITHSHA1AND40BITRC2_CBC)
        .mac_md(MessageDigest::sha1())
        .key_iter(65_536)
        .mac_iter(65_536);
    builder.build2("pw-0123").unwrap().to_der().unwrap()
}

#[test]
fn a_patched_iteration_count_is_refused_before_openssl_sees_it() {
    let bytes = legacy_with_counts();
    assert!(
        p12::inspect(&bytes, Some("pw-0123")).unwrap().opened,
        "65,536 is fine"
    );
    let count = [0x02, 0x03, 0x01, 0x00, 0x00];
    let at: Vec<usize> = bytes
        .windows(count.len())
        .enumerate()
        .filter(|(_, w)| *w == count)
        .map(|(i, _)| i)
        .collect();
    // The certificates' part, the key bag, the MAC (last).
    assert_eq!(at.len(), 3, "{at:?}");
    assert_eq!(*at.last().unwrap(), bytes.len() - count.len());
    for (i, what) in at.iter().zip(["encrypted part", "key bag", "MAC"]) {
        let mut patched = bytes.clone();
        // 0x7fffff = 8,388,607 iterations.
        patched[i + 2..i + 5].copy_from_slice(&[0x7f, 0xff, 0xff]);
        let why = refused(check(&patched, "pw-0123"));
        assert!(
            why.contains(&format!("its {what} asks for 8388607")) && why.contains("at most 2000000"),
            "{why}"
        );
        match p12::inspect(&patched, Some("pw-0123")) {
            Err(P12Error::TooCostly(why)) => assert!(why.contains(what), "{why}"),
            other => panic!("{what}: {other:?}"),
        }
        // With a wrong password: counts in plain view are refused all the same; the key bag's
        // is never reached, as OpenSSL stops at the MAC (checked here, the certificates' part
        // not decrypting), so OpenSSL is not called either.
        let wrong = check(&patched, "any password");
        if what == "key bag" {
            assert_eq!(wrong, Err(Refusal::WrongPassword));
        } else {
            assert!(refused(wrong).contains(what));
        }
    }
    // 2^31-1 on the MAC, the largest OpenSSL takes (six minutes of SHA-1 per try here).
    let most = pfx_with_mac(&[data_part(&seq(&[&shrouded_key(2048)]))], "pw-0123", 0x7fff_ffff);
    assert!(refused(check(&most, "pw-0123")).contains("its MAC asks for 2147483647"));
}

#[test]
fn a_key_bag_hidden_in_an_encrypted_part_is_bounded_too() {
    let hidden = |iterations| {
        let contents = seq(&[&shrouded_key(iterations)]);
        pfx(&[encrypted_part(&contents, "pw-0123", 2048)], Some("pw-0123"))
    };
    let bytes = hidden(3_000_000);
    let why = refused(check(&bytes, "pw-0123"));
    assert!(why.contains("its key bag asks for 3000000"), "{why}");
    assert!(matches!(
        p12::inspect(&bytes, Some("pw-0123")),
        Err(P12Error::TooCostly(_))
    ));
    // A wrong password cannot look inside: the MAC says it is wrong, as OpenSSL would.
    assert_eq!(check(&bytes, "wrong"), Err(Refusal::WrongPassword));
    // Within bounds: passed on to OpenSSL, which agrees with the MAC computed here (it gets past
    // it) and then fails on the key, which is garbage.
    let ok = hidden(2048);
    check(&ok, "pw-0123").unwrap();
    match p12::inspect(&ok, Some("pw-0123")) {
        Err(P12Error::Unreadable(_)) => {}
        other => panic!("expected OpenSSL past the MAC, failing on the key: {other:?}"),
    }
    // Bags within bags are followed.
    let nested = seq(&[&bag(6, &seq(&[&bag(6, &seq(&[&shrouded_key(3_000_000)]))]))]);
    let bytes = pfx(&[encrypted_part(&nested, "pw-0123", 2048)], Some("pw-0123"));
    assert!(refused(check(&bytes, "pw-0123")).contains("key bag"));
    // Only the first key bag counts: OpenSSL skips the others.
    let plain_first = pfx(
        &[data_part(&seq(&[&shrouded_key(2048), &shrouded_key(3_000_000)]))],
        Some("pw-0123"),
    );
    check(&plain_first, "pw-0123").unwrap();
}

#[test]
fn many_encrypted_parts_cannot_add_up_past_the_total() {
    let key_first = data_part(&seq(&[&bag(1, &seq(&[&int(0)]))]));
    let part = encrypted_part(&seq(&[]), "pw-0123", 1_000_000);
    let mut parts = vec![key_first.clone()];
    parts.extend(std::iter::repeat_n(part.clone(), 4));
    // 4 parts x 1,000,000 x 2 derivations (key and IV) = 8,000,000: within.
    check(&pfx(&parts, None), "pw-0123").unwrap();
    parts.extend([part.clone(), part]);
    let why = refused(check(&pfx(&parts, None), "pw-0123"));
    assert!(why.contains(&format!("more than {MAX_WORK}")), "{why}");
}

#[test]
fn what_cannot_be_bounded_is_refused() {
    // scrypt in PBES2.
    let scrypt = [0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x04, 0x0b];
    let kdf = seq(&[
        &oid(&scrypt),
        &seq(&[&der(0x04, b"s"), &int(1 << 20), &int(8), &int(1)]),
    ]);
    let scheme = seq(&[&oid(&[oid::AES_PREFIX, &[42]].concat()), &der(0x04, &[0; 16])]);
    let pbes2 = seq(&[&oid(&[oid::PKCS5_PREFIX, &[13]].concat()), &seq(&[&kdf, &scheme])]);
    let key = bag(2, &seq(&[&pbes2, &der(0x04, &[0; 48])]));
    let why = refused(check(&pfx(&[data_part(&seq(&[&key]))], None), "pw"));
    assert!(why.contains("other than PBKDF2"), "{why}");
    // An unknown algorithm.
    let unknown = seq(&[&oid(&[0x2a, 0x03, 0x04]), &seq(&[])]);
    let key = bag(2, &seq(&[&unknown, &der(0x04, &[0; 48])]));
    let why = refused(check(&pfx(&[data_part(&seq(&[&key]))], None), "pw"));
    assert!(why.contains("does not know"), "{why}");
}

#[test]
fn the_pkcs12_kdf_follows_rfc_7292() {
    // One block, one iteration, no salt: H(D || P) with D = 64 bytes of the purpose id and P the
    // UTF-16BE password with its terminating zero, repeated to 64 bytes. (Longer derivations are
    // checked against OpenSSL by the round trips above: its MAC and encrypted parts.)
    let pass = Password { utf8: Some("ab") }.bmp();
    assert_eq!(pass.as_slice(), &[0, b'a', 0, b'b', 0, 0]);
    assert!(Password { utf8: None }.bmp().is_empty());
    let key = pkcs12_kdf(MessageDigest::sha1(), &pass, &[], 3, 1, 20).unwrap();
    let mut d = vec![3u8; 64];
    d.extend(pass.iter().copied().cycle().take(64));
    assert_eq!(
        key.as_slice(),
        openssl::hash::hash(MessageDigest::sha1(), &d).unwrap().as_ref()
    );
}

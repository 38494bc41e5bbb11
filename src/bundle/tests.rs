use super::*;
use crate::config::Recipient;
use age::secrecy::ExposeSecret;
use chrono::TimeZone;

fn manifest(files: &[PlainFile]) -> Manifest {
    Manifest {
        format: FORMAT_VERSION,
        node: "v1".into(),
        keystore: "p12".into(),
        kind: "p12".into(),
        purpose: Purpose::Backup,
        role: None,
        created_at: chrono::Utc.with_ymd_and_hms(2026, 11, 22, 3, 15, 0).unwrap(),
        coldkeep_version: "test".into(),
        host: "127.0.0.1:22".into(),
        host_key: "SHA256:x".into(),
        files: files.iter().map(|f| f.entry.clone()).collect(),
        dirs: Vec::new(),
        identity: None,
        recipients: vec![],
        hash_key: None,
        identity_unchecked: None,
    }
}

fn plain(path: &str, data: &[u8]) -> PlainFile {
    PlainFile {
        entry: file_entry(path, &format!("/remote/{path}"), data, 0o400),
        data: Zeroizing::new(data.to_vec()),
    }
}

fn keypair() -> (Identities, Recipient) {
    let id = age::x25519::Identity::generate();
    let r = Recipient::parse(&id.to_public().to_string()).unwrap();
    (Identities::from_keys(vec![Box::new(id)]), r)
}

/// Encrypts arbitrary bytes (a hand-made tar) as a bundle would be.
fn encrypt_raw(tar: &[u8], r: &Recipient) -> Vec<u8> {
    let enc = age::Encryptor::with_recipients(std::iter::once(r.as_age())).unwrap();
    let mut out = Vec::new();
    let mut w = enc.wrap_output(&mut out).unwrap();
    w.write_all(tar).unwrap();
    w.finish().unwrap();
    out
}

fn tar_of(entries: &[(&str, &[u8], tar::EntryType)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data, kind) in entries {
        let mut h = tar::Header::new_gnu();
        // Write the raw name so hostile paths reach the archive unchanged.
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_entry_type(*kind);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn seal_then_open_round_trips() {
    let (ids, r) = keypair();
    let files = vec![plain("v1.p12", b"\x30\x80key bytes")];
    let m = manifest(&files);
    let sealed = seal(&m, &files, &[r], None).unwrap();
    assert_eq!(sealed.sha256, crate::digest::sha256_hex(&sealed.ciphertext));
    assert!(
        !sealed.ciphertext.windows(9).any(|w| w == b"key bytes"),
        "plaintext visible"
    );
    check_header(&sealed.ciphertext).unwrap();
    let opened = open(&sealed.ciphertext, &ids).unwrap();
    assert_eq!(opened.manifest, m);
    assert_eq!(opened.files.len(), 1);
    assert_eq!(&opened.files[0].data[..], b"\x30\x80key bytes");
}

#[test]
fn wrong_identity_and_damage_are_refused() {
    let (_, r) = keypair();
    let (other, _) = keypair();
    let files = vec![plain("v1.p12", b"data")];
    let sealed = seal(&manifest(&files), &files, std::slice::from_ref(&r), None).unwrap();
    let e = open(&sealed.ciphertext, &other).err().unwrap().to_string();
    assert!(e.contains("none of the given identities"), "{e}");
    let (ids, r) = keypair();
    let sealed = seal(&manifest(&files), &files, &[r], None).unwrap();
    let mut flipped = sealed.ciphertext.clone();
    let last = flipped.len() - 5;
    flipped[last] ^= 1;
    assert!(matches!(open(&flipped, &ids), Err(BundleError::Decrypt(_))));
    let truncated = &sealed.ciphertext[..sealed.ciphertext.len() - 20];
    assert!(open(truncated, &ids).is_err());
    assert!(matches!(
        check_header(b"not age at all"),
        Err(BundleError::BadHeader(_))
    ));
}

#[test]
fn seal_refuses_manifest_that_does_not_match() {
    let (_, r) = keypair();
    let files = vec![plain("a.p12", b"a")];
    let mut m = manifest(&files);
    m.files[0].sha256 = "00".into();
    assert!(seal(&m, &files, &[r], None).is_err());
}

#[test]
fn hostile_tars_are_refused() {
    let (ids, r) = keypair();
    let files = vec![plain("v1.p12", b"data")];
    let json = serde_json::to_vec(&manifest(&files)).unwrap();
    let reg = tar::EntryType::Regular;
    type Entries<'a> = Vec<(&'a str, &'a [u8], tar::EntryType)>;
    let cases: Vec<(Entries, &str)> = vec![
        (
            vec![("v1.p12", b"data", reg), ("manifest.json", &json, reg)],
            "first entry",
        ),
        (
            vec![("manifest.json", &json, reg), ("../v1.p12", b"data", reg)],
            "unsafe",
        ),
        (
            vec![("manifest.json", &json, reg), ("/etc/v1.p12", b"data", reg)],
            "unsafe",
        ),
        (
            vec![
                ("manifest.json", &json, reg),
                ("v1.p12", b"", tar::EntryType::Symlink),
            ],
            "not a regular file",
        ),
        (
            vec![("manifest.json", &json, reg), ("v1.p12", b"evil", reg)],
            "does not match",
        ),
        (
            vec![
                ("manifest.json", &json, reg),
                ("v1.p12", b"data", reg),
                ("x", b"1", reg),
            ],
            "not in the manifest",
        ),
        (vec![("manifest.json", &json, reg)], "missing from the bundle"),
        (vec![("manifest.json", b"{}", reg)], "not a valid manifest"),
        (vec![], "no manifest"),
    ];
    for (entries, want) in cases {
        let ct = encrypt_raw(&tar_of(&entries), &r);
        let e = open(&ct, &ids).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains(want), "want {want:?}, got {e:?}");
    }
}

#[test]
fn identities_load_from_age_and_ssh_files() {
    let dir = tempfile::tempdir().unwrap();
    let id = age::x25519::Identity::generate();
    let age_file = dir.path().join("key.txt");
    std::fs::write(&age_file, format!("# test\n{}\n", id.to_string().expose_secret())).unwrap();
    // Readable by everyone: refused, naming the fix; 0600 is fine.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&age_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = Identities::from_file(&age_file).err().unwrap().to_string();
    assert!(e.contains("chmod o-rwx"), "{e}");
    std::fs::set_permissions(&age_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = Recipient::parse(&id.to_public().to_string()).unwrap();
    let files = vec![plain("v1.p12", b"data")];
    let sealed = seal(&manifest(&files), &files, &[r], None).unwrap();
    open(&sealed.ciphertext, &Identities::from_file(&age_file).unwrap()).unwrap();

    let ssh_key = dir.path().join("id_ed25519");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&ssh_key)
        .status();
    if status.is_ok_and(|s| s.success()) {
        let public = std::fs::read_to_string(ssh_key.with_extension("pub")).unwrap();
        let r = Recipient::parse(&public).unwrap();
        let sealed = seal(&manifest(&files), &files, &[r], None).unwrap();
        open(&sealed.ciphertext, &Identities::from_file(&ssh_key).unwrap()).unwrap();
    }
    let junk = dir.path().join("junk");
    std::fs::write(&junk, "hello").unwrap();
    std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = Identities::from_file(&junk).err().unwrap().to_string();
    assert!(e.contains("neither an age identity file"), "{e}");
    assert!(Identities::from_file(&dir.path().join("missing")).is_err());
}

/// What the sidecar carries of a manifest: keyed hashes, never a plaintext SHA-256 (kept inside
/// for deep checks); a manifest from before keyed hashes is carried as it is.
#[test]
fn sealing_adds_keyed_hashes_and_the_public_manifest_drops_plain_ones() {
    let files = vec![plain("pass.txt", b"hunter2\n")];
    let mut m = manifest(&files);
    m.identity = Some(crate::material::Identity::File(crate::material::FileIdentity {
        size: 8,
        sha256: None,
        hmac: None,
    }));
    let legacy = m.public();
    assert_eq!(legacy, m, "no keyed hash, nothing dropped");
    let keyed = crate::digest::Keyed::new(zeroize::Zeroizing::new([7u8; 32]));
    let (_, r) = keypair();
    let sealed = seal(&m, &files, &[r], Some(&keyed)).unwrap();
    let inner = &sealed.manifest;
    assert_eq!(inner.hash_key.as_deref(), Some(keyed.id()));
    assert_eq!(inner.files[0].sha256, crate::digest::sha256_hex(b"hunter2\n"));
    assert_eq!(
        inner.files[0].hmac.as_deref(),
        Some(keyed.hex(b"hunter2\n").as_str())
    );
    let public = inner.public();
    assert_eq!(public.files[0].sha256, "");
    let text = serde_json::to_string(&public).unwrap();
    assert!(!text.contains(&crate::digest::sha256_hex(b"hunter2\n")), "{text}");
    assert!(!text.contains("\"sha256\""), "{text}");
    let sidecar = Sidecar {
        manifest: public,
        ciphertext_sha256: sealed.sha256.clone(),
        ciphertext_size: sealed.ciphertext.len() as u64,
        seen_unchanged_at: None,
    };
    assert!(sidecar.describes_inner(inner));
    let mut edited = inner.clone();
    edited.files[0].hmac = Some(keyed.hex(b"other"));
    assert!(!sidecar.describes_inner(&edited));
    // Another key, another id: a reader can tell whose hashes these are.
    assert_ne!(
        crate::digest::Keyed::new(zeroize::Zeroizing::new([8u8; 32])).id(),
        keyed.id()
    );
}

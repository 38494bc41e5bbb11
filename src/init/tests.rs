//! `init` end to end on a temp directory: what it writes, with which modes and owners, what it
//! refuses, and that a failed run leaves nothing behind.

use super::*;

const KEY: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
fn opts(dir: &Path) -> InitOptions {
    InitOptions {
        config: dir.join("etc/coldkeep.yaml"),
        store: dir.join("store"),
        recipients: vec![KEY.to_string()],
        identity_out: None,
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_config_store_and_identity_with_tight_modes() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.identity_out = Some(dir.path().join("offline-key.txt"));
    let out = init(&o).unwrap();
    assert!(out.store_created);
    assert_eq!(mode(&out.store), 0o700);
    let (id_path, public) = out.identity.clone().unwrap();
    assert_eq!(mode(&id_path), 0o600);
    let id_text = fs::read_to_string(&id_path).unwrap();
    let secret = id_text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap();
    let parsed: age::x25519::Identity = secret.parse().unwrap();
    assert_eq!(parsed.to_public().to_string(), public);
    let config = Config::load(&out.config).unwrap();
    let got: Vec<&str> = config.encryption.recipients.iter().map(|r| r.as_str()).collect();
    assert_eq!(got, [KEY, public.as_str()]);
    assert_eq!(config.store.path, out.store);
    // The signing key: private, beside the config, trusted by the allowed_signers written.
    assert_eq!(mode(&out.signing_key), 0o600);
    assert_eq!(out.signing_key, dir.path().join("etc/signing_key"));
    assert_eq!(config.signing.key, out.signing_key);
    assert_eq!(config.signing.allowed_signers, out.allowed_signers);
    let keys = config.store.keys.expect("load opened the signing keys");
    assert_eq!(keys.signer.fingerprint(), out.signing_fingerprint);
    assert!(keys.allowed.trusts(&keys.signer));
    let allowed = fs::read_to_string(&out.allowed_signers).unwrap();
    assert!(allowed.contains(&format!("namespaces=\"{}\"", crate::sign::NAMESPACE)));
}

#[test]
fn init_refuses_to_overwrite_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    fs::create_dir_all(o.config.parent().unwrap()).unwrap();
    fs::write(&o.config, "mine").unwrap();
    assert!(matches!(init(&o), Err(InitError::Exists(_))));
    assert_eq!(fs::read_to_string(&o.config).unwrap(), "mine");
    assert!(!o.store.exists(), "nothing created after a refusal");

    // An existing identity file: refused before the config or the store are made.
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    let id = dir.path().join("key.txt");
    fs::write(&id, "old key").unwrap();
    o.identity_out = Some(id.clone());
    assert!(matches!(init(&o), Err(InitError::Exists(p)) if p == id));
    assert_eq!(fs::read_to_string(&id).unwrap(), "old key");
    assert!(!o.config.exists() && !o.store.exists());

    // An existing signing key or allowed_signers: never replaced (artifacts it signed would
    // stop verifying).
    for name in ["signing_key", "allowed_signers"] {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path());
        let existing = dir.path().join("etc").join(name);
        fs::create_dir_all(existing.parent().unwrap()).unwrap();
        fs::write(&existing, "old").unwrap();
        assert!(matches!(init(&o), Err(InitError::Exists(p)) if p == existing));
        assert_eq!(fs::read_to_string(&existing).unwrap(), "old");
        assert!(!o.config.exists() && !o.store.exists());
        assert_eq!(fs::read_dir(dir.path().join("etc")).unwrap().count(), 1);
    }

    // A store with something in it.
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    fs::create_dir_all(o.store.join("v1")).unwrap();
    assert!(matches!(init(&o), Err(InitError::StoreNotEmpty(_))));
    assert!(!o.config.exists());
}

#[test]
fn as_root_a_new_store_belongs_to_the_owner_of_its_parent() {
    let dir = tempfile::tempdir().unwrap();
    if fs::metadata(dir.path()).unwrap().uid() != 0 {
        println!("not root: chown cannot be tried here (CI runs as root)");
        return;
    }
    // Like the package's /var/lib/coldkeep, owned by the service user (here: nobody).
    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    let mut o = opts(dir.path());
    o.store = state.join("store");
    let out = init(&o).unwrap();
    let meta = fs::metadata(&out.store).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    // The service that writes the store signs with the key: it must be able to read it.
    let key = fs::metadata(&out.signing_key).unwrap();
    assert_eq!((key.uid(), mode(&out.signing_key)), (65534, 0o600));
    assert_eq!(mode(&out.store), 0o700);
    // A store whose parent is root's stays root's.
    let plain = dir.path().join("plain-store");
    let mut o = opts(dir.path());
    o.config = dir.path().join("second.yaml");
    o.store = plain.clone();
    init(&o).unwrap();
    assert_eq!(fs::metadata(&plain).unwrap().uid(), 0);
}

#[test]
fn an_existing_empty_store_is_used_and_made_0700_but_a_symlink_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    let disk = dir.path().join("other-disk");
    fs::create_dir(&disk).unwrap();
    fs::set_permissions(&disk, fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(&disk, &o.store).unwrap();
    assert!(matches!(init(&o), Err(InitError::StoreIsSymlink(_))));
    assert_eq!(mode(&disk), 0o755, "the link's target is not touched");
    assert!(!o.config.exists() && !dir.path().join("etc/signing_key").exists());
    fs::remove_file(&o.store).unwrap();
    fs::create_dir(&o.store).unwrap();
    fs::set_permissions(&o.store, fs::Permissions::from_mode(0o755)).unwrap();
    let out = init(&o).unwrap();
    assert!(!out.store_created);
    assert_eq!(mode(&o.store), 0o700);
}

#[test]
fn refusals_without_a_usable_recipient_or_with_the_key_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.recipients.clear();
    assert!(matches!(init(&o), Err(InitError::NoRecipient)));
    o.recipients = vec!["age1notakey".into()];
    let err = init(&o).unwrap_err();
    assert!(err.is_usage() && err.to_string().contains("age1notakey"), "{err}");
    o.recipients.clear();
    o.identity_out = Some(o.store.join("key.txt"));
    assert!(matches!(init(&o), Err(InitError::IdentityInStore { .. })));
    assert!(!dir.path().join("etc").exists() && !o.store.exists());
    // The config (and so the signing key beside it) inside the store.
    o.identity_out = None;
    o.recipients = vec![KEY.into()];
    o.config = o.store.join("etc/coldkeep.yaml");
    assert!(matches!(init(&o), Err(InitError::SigningInStore { .. })));
    assert!(!o.store.exists());
}

/// The store given through a symlink (the common way to put it on another disk) or with a
/// `..` in its path is still the same directory: the identity must not land inside it.
#[test]
fn the_key_is_refused_inside_the_store_however_the_store_path_is_spelled() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    fs::create_dir(&disk).unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    let link = dir.path().join("store-link");
    std::os::unix::fs::symlink(&disk, &link).unwrap();
    for store in [link.clone(), dir.path().join("sub/../disk")] {
        let mut o = opts(dir.path());
        o.store = store.clone();
        o.identity_out = Some(disk.join("key.txt"));
        let r = init(&o);
        assert!(
            // (A store path that is a link is refused before anything else.)
            matches!(
                r,
                Err(InitError::IdentityInStore { .. } | InitError::StoreIsSymlink(_))
            ),
            "{store:?}: {:?}",
            r.map(|_| ())
        );
        assert!(!disk.join("key.txt").exists(), "{store:?}");
        assert!(!o.config.exists(), "{store:?}");
    }
}

/// Run as root for the package's store, init hands the new store to the owner of its parent
/// (the service user). That user can rename entries in its own directory, so between mkdir
/// and chown it can swap the new store for a symlink to any file: the chown must not follow
/// it (root would hand over /etc/shadow).
#[test]
fn handing_the_new_store_over_never_follows_a_swapped_in_symlink() {
    if !nix_is_root() {
        println!("SKIPPED: needs root (chown)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path().join("var-lib-coldkeep");
    fs::create_dir(&service).unwrap();
    std::os::unix::fs::chown(&service, Some(4242), Some(4242)).unwrap();
    let victim = dir.path().join("shadow");
    fs::write(&victim, "root:secret").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o640)).unwrap();
    // The state right after the swap: the store path is now the service user's symlink.
    let store = service.join("store");
    std::os::unix::fs::symlink(&victim, &store).unwrap();
    assert!(matches!(open_store(&store), Err(InitError::StoreIsSymlink(_))));
    let meta = fs::metadata(&victim).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "the symlink's target was chowned"
    );
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
}

/// The signing key is handed to the store's owner when root runs init for a service user;
/// a symlink swapped in at the key's path (by whoever can write the config's directory)
/// must not make root hand over the link's target.
#[test]
fn handing_the_signing_key_over_never_follows_a_swapped_in_symlink() {
    if !nix_is_root() {
        println!("SKIPPED: needs root (chown)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    fs::create_dir(&store).unwrap();
    std::os::unix::fs::chown(&store, Some(4242), Some(4242)).unwrap();
    let victim = dir.path().join("shadow");
    fs::write(&victim, "root:secret").unwrap();
    let key = dir.path().join("signing_key");
    std::os::unix::fs::symlink(&victim, &key).unwrap();
    assert!(share_owner((4242, 4242), &key).is_err());
    let meta = fs::metadata(&victim).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "the symlink's target was chowned"
    );
    // The real file is handed over.
    fs::remove_file(&key).unwrap();
    fs::write(&key, "key").unwrap();
    share_owner((4242, 4242), &key).unwrap();
    assert_eq!(fs::metadata(&key).unwrap().uid(), 4242);
}

/// The config (and so the signing key beside it) reached through a symlink into the store.
#[test]
fn the_signing_key_is_refused_inside_the_store_however_the_path_is_spelled() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    fs::create_dir(&disk).unwrap();
    // The config's directory is a link to the (empty) store itself.
    let link = dir.path().join("etc-link");
    std::os::unix::fs::symlink(&disk, &link).unwrap();
    let mut o = opts(dir.path());
    o.store = disk.clone();
    o.identity_out = None;
    o.recipients = vec![KEY.into()];
    o.config = link.join("coldkeep.yaml");
    let r = init(&o);
    assert!(
        matches!(r, Err(InitError::SigningInStore { .. })),
        "{:?}",
        r.map(|_| ())
    );
    assert!(
        fs::read_dir(&disk).unwrap().next().is_none(),
        "nothing written into the store"
    );
}

fn nix_is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[test]
fn an_identity_into_a_missing_folder_is_one_clear_refusal_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.identity_out = Some(dir.path().join("usb/coldkeep-key.txt"));
    let err = init(&o).unwrap_err();
    assert!(err.is_usage(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("the folder") && text.contains("usb") && text.contains("does not exist"),
        "{text}"
    );
    assert!(!o.store.exists() && !o.config.exists());
    assert!(!dir.path().join("etc/signing_key").exists());
    // A file where the folder should be.
    fs::write(dir.path().join("usb"), "x").unwrap();
    assert!(init(&o).unwrap_err().to_string().contains("is not a folder"));
}

#[test]
fn a_failure_after_the_first_write_removes_what_this_run_created() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.identity_out = Some(dir.path().join("key.txt"));
    // The config's parent is a file: creating the config fails after identity and store.
    fs::write(dir.path().join("etc"), "a file").unwrap();
    let err = init(&o).unwrap_err();
    assert!(matches!(err, InitError::Io { .. }), "{err}");
    assert!(!dir.path().join("key.txt").exists(), "identity removed again");
    assert!(!dir.path().join("etc/signing_key").exists());
    assert!(!o.store.exists(), "store removed again");
    assert_eq!(fs::read_to_string(dir.path().join("etc")).unwrap(), "a file");
}

//! Acra keystores end to end through the real binary against real sshd nodes: backup, verify,
//! restore (into a missing, an empty and a non-empty keystore), check, and the master key kept
//! apart.

use crate::support;

use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::acra::{key_ring, read_tree, v1_files, v2_files, v2_master_key, write_tree};
use support::fleet::{Fleet, age_files, text};

const KEYS: &str = "opt/acra/.acrakeys";

/// A one-node fleet ("gw") whose keystore `acra` is at `<root>/opt/acra/.acrakeys`.
struct Setup {
    fleet: Fleet,
    dir: PathBuf,
}

fn setup(files: &[(String, u32, Vec<u8>)], extra: &str) -> Setup {
    let fleet = Fleet::new(&["gw"]);
    let dir = fleet.node("gw").root.join(KEYS);
    write_tree(&dir, files);
    let s = Setup { fleet, dir };
    s.config(extra);
    s
}

impl Setup {
    /// Writes the config; `extra` is added to the keystore's entry.
    fn config(&self, extra: &str) {
        let node = self.fleet.node("gw");
        let yaml = format!(
            "  - name: gw\n    host: 127.0.0.1\n    port: {}\n    keystores:\n      - name: acra\n        kind: acra\n        \
             path: {}\n{extra}",
            node.port,
            self.dir.display()
        );
        self.fleet.write_config(&yaml);
    }

    fn run(&self, args: &[&str]) -> (i32, String) {
        let out = self.fleet.run(args);
        (
            out.status.code().unwrap(),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    }

    fn restore(&self, extra: &[&str]) -> (i32, String) {
        let identity = self.fleet.age_identity.to_str().unwrap().to_string();
        let mut args = vec!["restore", "--node", "gw", "--identity", &identity];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn backup_ok(&self) -> String {
        let (code, out) = self.run(&["backup"]);
        assert_eq!(code, 0, "{out}");
        out
    }

    /// What is beside the keystore directory (temp or swapped-out directories must not stay).
    fn siblings(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The fixture as the node should have it after a restore (`.lock` is never backed up).
fn without_lock(files: &[(String, u32, Vec<u8>)]) -> Vec<(String, u32, Vec<u8>)> {
    let mut v: Vec<_> = files.iter().filter(|f| f.0 != ".lock").cloned().collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<(String, u32, Vec<u8>)>) -> Vec<(String, u32, Vec<u8>)> {
    v.sort();
    v
}

#[test]
fn v1_round_trip_is_byte_identical_with_modes_and_node_problems_are_warnings() {
    let files = v1_files("Alice");
    let s = setup(&files, "");
    let out = s.backup_ok();
    assert!(out.contains("acra v1, 1 client, 9 key files"), "{out}");
    assert!(!out.contains("warning"), "{out}");

    // The sidecar records the version, client ids and key files with hashes; never key bytes.
    let (_, list) = s.fleet.run_json(&["list", "--json"]);
    let a = &list["artifacts"][0];
    assert_eq!(a["identity"]["kind"], "acra");
    assert_eq!(a["identity"]["version"], 1);
    assert_eq!(a["identity"]["client_ids"], serde_json::json!(["Alice"]));
    assert!(
        a["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "keys/.poison_key/poison_key")
    );
    assert!(
        a["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "keys/Alice_storage.old/2020-05-21T16:01:58.656663")
    );

    // Restore into a missing directory: the whole tree comes back, names, bytes and modes.
    fs::remove_dir_all(&s.dir).unwrap();
    let (code, out) = s.restore(&[]);
    assert_eq!(code, 0, "{out}");
    let (restored, dirs) = read_tree(&s.dir);
    assert_eq!(sorted(restored), sorted(files.clone()));
    assert!(dirs.iter().all(|(_, m)| *m == 0o700), "{dirs:?}");
    assert_eq!(s.siblings(), vec![".acrakeys"], "no temp directory left");

    // The same again: nothing to do.
    let (code, out) = s.restore(&["--json"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("already-in-place"), "{out}");

    // A private key left world-readable and an open keys directory: backed up, with warnings.
    fs::set_permissions(s.dir.join("Alice_storage"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(&s.dir, fs::Permissions::from_mode(0o755)).unwrap();
    let out = s.backup_ok();
    assert!(
        out.contains("warning: gw/acra: private key file Alice_storage has mode 0644"),
        "{out}"
    );
    assert!(
        out.contains("mode 0755; Acra refuses to start unless it is 0700"),
        "{out}"
    );
}

#[test]
fn v2_restore_into_a_missing_directory_creates_a_valid_keystore() {
    let (_, signature) = v2_master_key();
    let files = v2_files(&["Alice", "Bob"], &signature);
    let s = setup(&files, "");
    let out = s.backup_ok();
    assert!(out.contains("acra v2, 2 clients, 9 key rings"), "{out}");
    let (_, list) = s.fleet.run_json(&["list", "--json"]);
    let listed: Vec<&str> = list["artifacts"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        !listed.contains(&"keys/.lock"),
        "the lock file is skipped: {listed:?}"
    );

    fs::remove_dir_all(&s.dir).unwrap();
    let (code, out) = s.restore(&["--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("would create"), "{out}");
    assert!(!s.dir.exists(), "a dry run changes nothing");

    let (code, out) = s.restore(&[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(mode(&s.dir), 0o700);
    assert_eq!(fs::read(s.dir.join("version")).unwrap(), b"Acra Keystore v2");
    assert_eq!(mode(&s.dir.join("version")), 0o644);
    let (restored, _) = read_tree(&s.dir);
    assert_eq!(sorted(restored), without_lock(&files));
    assert_eq!(s.siblings(), vec![".acrakeys"]);
}

#[test]
fn a_non_empty_keystore_is_replaced_only_with_replace_and_saved_first() {
    let (_, signature) = v2_master_key();
    let files = v2_files(&["Alice"], &signature);
    let s = setup(&files, "");
    s.backup_ok();

    // An empty v2 keystore (only the version marker) is filled without --replace.
    fs::remove_dir_all(&s.dir).unwrap();
    write_tree(&s.dir, &[("version".into(), 0o644, b"Acra Keystore v2".to_vec())]);
    let (code, out) = s.restore(&[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(sorted(read_tree(&s.dir).0), without_lock(&files));

    // The node's keystore moves on: a new client, a re-keyed ring.
    let changed_ring = key_ring("client/Alice/storage", &signature);
    write_tree(
        &s.dir,
        &[
            (
                "client/Carol/storage.keyring".into(),
                0o600,
                key_ring("client/Carol/storage", &signature),
            ),
            ("client/Alice/storage.keyring".into(), 0o600, changed_ring.clone()),
        ],
    );
    let before = read_tree(&s.dir).0;

    // `verify --live` names what moved on.
    let (code, out) = s.run(&["verify", "--live", "--node", "gw"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("changed: keys/client/Alice/storage.keyring")
            && out.contains("new on the node: keys/client/Carol/storage.keyring"),
        "{out}"
    );

    // `check` sees the new client.
    let (code, out) = s.run(&["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("only on the node [Carol]"), "{out}");

    let (code, out) = s.restore(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--replace"), "{out}");
    assert_eq!(read_tree(&s.dir).0, before, "refused: nothing changed");
    assert_eq!(age_files(&s.fleet.store()).len(), 1, "nothing saved on refusal");

    let (code, out) = s.restore(&["--replace", "--json"]);
    assert_eq!(code, 0, "{out}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["action"], "replaced");
    assert_eq!(sorted(read_tree(&s.dir).0), without_lock(&files));
    assert_eq!(
        s.siblings(),
        vec![".acrakeys"],
        "the old directory was swapped out and removed"
    );
    let (code, out) = s.run(&["check"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = s.run(&["verify", "--live", "--node", "gw"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("matches: the live keystore is byte-identical"),
        "{out}"
    );

    // The replaced keystore is in the store and decrypts (age CLI) to what the node had.
    let saved = json["previous_saved_as"].as_str().unwrap();
    let age = s.fleet.store().join("gw/acra").join(format!("{saved}.age"));
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "age -d -i '{}' '{}' | tar xO keys/client/Alice/storage.keyring",
            s.fleet.age_identity.display(),
            age.display()
        ))
        .output()
        .unwrap();
    assert_eq!(out.stdout, changed_ring);
}

#[test]
fn unsafe_or_oversized_trees_are_refused() {
    let files = v1_files("Alice");
    let s = setup(&files, "");
    std::os::unix::fs::symlink("/etc/passwd", s.dir.join("Bob_storage")).unwrap();
    let (code, out) = s.run(&["backup"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("Bob_storage") && out.contains("symbolic link"),
        "{out}"
    );
    fs::remove_file(s.dir.join("Bob_storage")).unwrap();

    let fifo = s.dir.join("pipe");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let (code, out) = s.run(&["backup"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not a regular file or directory"), "{out}");
    fs::remove_file(&fifo).unwrap();

    s.config("        max_files: 5\n");
    let (code, out) = s.run(&["backup"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("more than 5 files"), "{out}");
    s.config("        max_size: 300\n");
    let (code, out) = s.run(&["backup"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("more than 300 bytes"), "{out}");

    fs::remove_dir_all(&s.dir).unwrap();
    fs::create_dir(&s.dir).unwrap();
    s.config("");
    let (code, out) = s.run(&["backup"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("empty"), "{out}");
    assert!(age_files(&s.fleet.store()).is_empty(), "nothing stored");
}

/// Replaces the master-key store's artifacts with one of `master` made at `at`, written and
/// signed by coldkeep's own store code with the fleet's config and keys.
fn store_master_key_at(s: &Setup, master: &str, at: chrono::DateTime<chrono::Utc>) {
    use coldkeep::bundle::{PlainFile, Purpose, file_entry};
    use coldkeep::material::{Identity, acra};
    use coldkeep::ops::{keystore, vocab::ArtifactKind};
    let config = coldkeep::config::Config::load(&s.fleet.config).unwrap();
    let store = coldkeep::store::Store::master_keys(&config.store).unwrap();
    fs::remove_dir_all(&store.primary).unwrap();
    let key = acra::MasterKey::parse(master).unwrap();
    let data = zeroize::Zeroizing::new(master.as_bytes().to_vec());
    let files = [PlainFile {
        entry: file_entry(acra::MASTER_KEY_FILE, "(agent) test", &data, 0o600),
        data,
    }];
    let mut manifest = keystore::manifest(
        config.node("gw").unwrap(),
        "acra",
        ArtifactKind::AcraMasterKey,
        "SHA256:test",
        &files,
        Some(Identity::AcraMasterKey(key.identity())),
        Purpose::Backup,
    );
    manifest.created_at = chrono::SubsecRound::trunc_subsecs(at, 0);
    keystore::seal_and_store(
        &store,
        &config.encryption.master_key_recipients,
        manifest,
        &files,
        keystore::Write::Now,
    )
    .unwrap();
}

#[test]
fn master_key_is_stored_apart_and_checks_key_ring_signatures() {
    // Keys sealed by the reference Themis: deep verify opens them with the master key too.
    let support::themis::V2 {
        files,
        master_key: master,
        signature_key: signature,
    } = support::themis::v2_keystore(&["Alice"], &[]);
    let s = setup(&files, "");
    let fleet_dir = s.fleet.dir.clone();
    let master_store = fleet_dir.join("master-keys");
    let keygen = Command::new("age-keygen")
        .arg("-o")
        .arg(fleet_dir.join("master-identity.txt"))
        .output()
        .unwrap();
    let master_recipient = text(&keygen.stderr)
        .trim()
        .strip_prefix("Public key: ")
        .unwrap()
        .to_string();
    let secret = s.fleet.secret_file("acra-master", &master);
    let store_extra = format!("master_key_store: {}\n", master_store.display());
    s.config(&format!("        master_key: {{file: {}}}\n", secret.display()));
    let text_before = fs::read_to_string(&s.fleet.config).unwrap();
    let config = text_before
        .replacen("  replicas:", &format!("  {store_extra}  replicas:"), 1)
        .replacen(
            "ssh:\n",
            &format!("  master_key_recipients: [{master_recipient}]\nssh:\n"),
            1,
        );
    fs::write(&s.fleet.config, config).unwrap();

    let out = s.backup_ok();
    assert!(
        out.contains("acra:master-key") && out.contains("acra v2 master key"),
        "{out}"
    );
    let keys = age_files(&master_store);
    assert_eq!(keys.len(), 1, "one master-key artifact, in its own store");
    assert!(
        age_files(&s.fleet.store()).len() == 1 && age_files(&s.fleet.replica()).len() == 1,
        "the keystore store holds only the keystore"
    );
    // Only the master-key recipient can open it (real age CLI); it holds the env value.
    let dec = |identity: &Path| {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "age -d -i '{}' '{}' | tar xO ACRA_MASTER_KEY",
                identity.display(),
                keys[0].display()
            ))
            .output()
            .unwrap()
    };
    assert_eq!(text(&dec(&fleet_dir.join("master-identity.txt")).stdout), master);
    assert!(dec(&s.fleet.age_identity).stdout.is_empty());

    // Unchanged master key: not stored again, but marked seen (as unchanged keystores are), so
    // `status --max-age` counts it as backed up at this run instead of raising an alarm
    // max-age after the first one, forever.
    let sidecar = || -> Value {
        let json = walkdir::WalkDir::new(&master_store)
            .into_iter()
            .filter_map(Result::ok)
            .map(|e| e.into_path())
            .find(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p.file_name().unwrap().to_string_lossy().starts_with('.')
            })
            .unwrap();
        serde_json::from_slice(&fs::read(json).unwrap()).unwrap()
    };
    assert!(sidecar()["seen_unchanged_at"].is_null());
    let out = s.backup_ok();
    assert!(out.contains("ok (unchanged)"), "{out}");
    assert_eq!(age_files(&master_store).len(), 1);
    assert!(sidecar()["seen_unchanged_at"].is_string(), "{}", sidecar());
    // Genuinely old: the master key's artifact replaced by the same key stored two hours ago
    // (through the library's own writer, so it is signed as any artifact is). `status` flags it;
    // the next backup sees it unchanged, and `status` counts it as backed up now.
    store_master_key_at(&s, &master, chrono::Utc::now() - chrono::Duration::hours(2));
    let (code, out) = s.run(&["status", "--max-age", "1h"]);
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("acra:master-key"))
        .unwrap_or_default();
    assert!(line.contains("newest backup is 2h old (max 60m)"), "{out}");
    let out = s.backup_ok();
    assert!(out.contains("ok (unchanged)"), "{out}");
    assert_eq!(age_files(&master_store).len(), 1, "reused, not stored again");
    let (code, out) = s.run(&["status", "--max-age", "1h"]);
    assert_eq!(code, 0, "{out}");
    let (_, list) = s.fleet.run_json(&["list", "--json"]);
    assert_eq!(list["warnings"].as_array().unwrap().len(), 0, "{list}");

    // Deep verify checks every ring's signature with the master key.
    let identity = s.fleet.age_identity.to_str().unwrap();
    let (code, out) = s.run(&["verify", "--identity", identity]);
    assert_eq!(code, 0, "{out}");

    // A ring corrupted on the node (valid DER, one key byte flipped) is backed up, and flagged.
    let ring = s.dir.join("client/Alice/hmac-sym.keyring");
    let mut der = fs::read(&ring).unwrap();
    let at = der.len() - 60;
    der[at] ^= 0x01;
    fs::write(&ring, &der).unwrap();
    s.backup_ok();
    let (code, json) = s.fleet.run_json(&["verify", "--json", "--identity", identity]);
    assert_eq!(code, 1, "{json}");
    let bad: Vec<&Value> = json["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["ok"] == false)
        .collect();
    assert_eq!(bad.len(), 1, "only the new backup is bad: {json}");
    assert!(
        bad[0]["problems"]
            .to_string()
            .contains("key ring client/Alice/hmac-sym.keyring: signature does not match"),
        "{json}"
    );

    // No key ring, and not the master key, ever reached local disk in plaintext.
    let rings: Vec<&[u8]> = files
        .iter()
        .filter(|f| f.2.len() >= 32)
        .map(|f| f.2.as_slice())
        .collect();
    let mut secrets = rings;
    secrets.push(master.as_bytes());
    secrets.push(&signature);
    s.fleet.assert_not_on_local_disk(&secrets);

    // Without its master key artifact, list warns that the keystore backups stand alone.
    for f in fs::read_dir(keys[0].parent().unwrap()).unwrap() {
        fs::remove_file(f.unwrap().path()).unwrap();
    }
    let (code, out) = s.run(&["list"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("gw/acra: Acra keystore backups but no master key backup"),
        "{out}"
    );
}

#[test]
fn a_separate_public_directory_round_trips_and_a_symlinked_keys_directory_is_refused() {
    let files = v1_files("Alice");
    let (public, private): (Vec<_>, Vec<_>) = files.into_iter().partition(|f| f.0.ends_with(".pub"));
    let s = setup(&private, "");
    let public_dir = s.fleet.node("gw").root.join("opt/acra/.acrakeys-public");
    write_tree(&public_dir, &public);
    s.config(&format!("        public_path: {}\n", public_dir.display()));
    let out = s.backup_ok();
    assert!(out.contains("1 client"), "{out}");

    fs::remove_dir_all(&s.dir).unwrap();
    fs::remove_dir_all(&public_dir).unwrap();
    let (code, out) = s.restore(&[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(sorted(read_tree(&s.dir).0), sorted(private.clone()));
    assert_eq!(sorted(read_tree(&public_dir).0), sorted(public.clone()));

    // Without `public_path` the backup's public half has nowhere to go: refused.
    s.config("");
    let (code, out) = s.restore(&["--replace"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("set `public_path`"), "{out}");

    // A keys directory that is a symlink is not swapped away: refused, link and target intact.
    s.config(&format!("        public_path: {}\n", public_dir.display()));
    let real = s.fleet.node("gw").root.join("opt/acra/real-keys");
    fs::rename(&s.dir, &real).unwrap();
    std::os::unix::fs::symlink(&real, &s.dir).unwrap();
    fs::remove_file(real.join("Alice_hmac")).unwrap();
    let (code, out) = s.restore(&["--replace"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is a symbolic link"), "{out}");
    assert!(fs::symlink_metadata(&s.dir).unwrap().file_type().is_symlink());
    assert!(!real.join("Alice_hmac").exists());
}

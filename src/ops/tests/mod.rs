//! Unit tests of the decisions in `ops` against the in-memory [`FakeNode`]: backup's
//! "unchanged, reuse", every restore decision, and the Acra swap with its rollback. The same
//! paths run against a real sshd in `tests/`; these add the faults sshd cannot produce on cue.

use super::backup::{Options, backup_keystore};
use super::fake_node::{FakeNode, Op};
use super::keystore;
use super::restore::{self, RestoreRequest, Source, Step};
use super::vocab::{ArtifactKind, RestoreAction};
use crate::bundle::{self, PlainFile, Purpose};
use crate::config::Config;
use crate::material::p12::{self, GenerateStyle};
use crate::remote::Node;
use crate::store::Store;
use age::secrecy::ExposeSecret;
use std::path::PathBuf;

mod marked;

const P12: &str = "/home/nodeadmin/tessellation/key.p12";
const KEYS: &str = "/etc/acra/keys";
const PUBLIC: &str = "/etc/acra/public";

struct Fixture {
    _dir: tempfile::TempDir,
    config: Config,
    identity: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let identity = dir.path().join("identity.txt");
        std::fs::write(&identity, id.to_string().expose_secret()).unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "pw").unwrap();
        // Secrets and identities others may read are refused; a replica root is never created
        // (it stands for a mounted disk), so the fixture makes it.
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        for secret in [&identity, &pw] {
            std::fs::set_permissions(secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir.path().join("replica"))
            .unwrap();
        let text = format!(
            "store:\n  path: {store}\n  replicas: [{replica}]\nencryption:\n  recipients: [{recipient}]\n\
             ssh:\n  user: test\n  identity: {identity}\n  known_hosts: {known}\n\
             signing:\n  key: {signing_key}\n  allowed_signers: {allowed}\n\
             nodes:\n  - name: n1\n    host: 127.0.0.1\n    keystores:\n\
             \x20     - name: p12\n        kind: p12\n        path: {P12}\n        password: {{file: {pw}}}\n\
             \x20     - name: acra\n        kind: acra\n        path: {KEYS}\n        public_path: {PUBLIC}\n",
            store = dir.path().join("store").display(),
            replica = dir.path().join("replica").display(),
            recipient = id.to_public(),
            identity = identity.display(),
            known = dir.path().join("known_hosts").display(),
            pw = pw.display(),
            signing_key = dir.path().join("signing_key").display(),
            allowed = dir.path().join("allowed_signers").display(),
        );
        let mut config = Config::parse(&text, &dir.path().join("coldkeep.yaml")).unwrap();
        // A fresh signing key trusted by its own allowed_signers, held in memory: every artifact
        // these tests write is signed, and only signed ones are reused or restored.
        let signer = crate::sign::Signer::generate();
        let allowed = crate::sign::AllowedSigners::parse(&format!("coldkeep {}", signer.public_line()))
            .expect("own key parses");
        config.store.keys = Some(std::sync::Arc::new(crate::sign::Keys { signer, allowed }));
        Fixture {
            _dir: dir,
            config,
            identity,
        }
    }

    fn store(&self) -> Store {
        Store::new(&self.config.store)
    }

    fn request(&self, keystore: &str) -> RestoreRequest {
        RestoreRequest {
            node: "n1".into(),
            keystore: Some(keystore.into()),
            backup: "latest".into(),
            from_node: None,
            identity: self.identity.clone(),
            replace: false,
            accept_passphrase_mismatch: false,
        }
    }

    /// Backs up the P12 from `node` once; returns the outcome.
    fn backup_p12(&self, node: &FakeNode, options: Options) -> anyhow::Result<super::backup::Backed> {
        let store = self.store();
        let cfg = self.config.node("n1").unwrap();
        let ks = &cfg.keystores[0];
        let existing = store.list(Some("n1")).map(|l| l.artifacts).unwrap_or_default();
        backup_keystore(&self.config, &store, cfg, ks, node, &existing, options, None)
    }

    /// Stores an Acra backup with these files (`keys/...`, `public/...`).
    fn store_acra(&self, files: &[(&str, &[u8], u32)]) {
        self.store_acra_owned(files, None)
    }

    /// Like [`Fixture::store_acra`], every file recorded with `owner`.
    fn store_acra_owned(&self, files: &[(&str, &[u8], u32)], owner: Option<bundle::FileOwner>) {
        let cfg = self.config.node("n1").unwrap();
        let files: Vec<PlainFile> = files
            .iter()
            .map(|(path, data, mode)| {
                let data = zeroize::Zeroizing::new(data.to_vec());
                PlainFile {
                    entry: bundle::FileEntry {
                        owner: owner.clone(),
                        ..bundle::file_entry(path, &format!("/remote/{path}"), &data, *mode)
                    },
                    data,
                }
            })
            .collect();
        let manifest = keystore::manifest(
            cfg,
            "acra",
            ArtifactKind::Acra,
            "SHA256:fake",
            &files,
            None,
            Purpose::Backup,
        );
        keystore::seal_and_store(
            &self.store(),
            &self.config.encryption.recipients,
            manifest,
            &files,
            keystore::Write::Now,
        )
        .unwrap();
    }

    fn pre_restores(&self) -> usize {
        self.store()
            .list(Some("n1"))
            .unwrap()
            .artifacts
            .iter()
            .filter(|a| a.sidecar.manifest.purpose == Purpose::PreRestore)
            .count()
    }
}

fn p12_bytes() -> Vec<u8> {
    p12::generate("pw", "alias", GenerateStyle::Legacy)
        .unwrap()
        .to_vec()
}

fn node_with_p12(bytes: &[u8], mode: u32) -> FakeNode {
    let node = FakeNode::new();
    node.put(P12, bytes, mode);
    node
}

// ---- backup: unchanged / reuse ----

#[test]
fn backup_reuses_the_newest_artifact_only_for_the_same_files() {
    let fx = Fixture::new();
    let bytes = p12_bytes();
    let node = node_with_p12(&bytes, 0o400);
    let count = || fx.store().list(Some("n1")).unwrap().artifacts.len();

    let first = fx.backup_p12(&node, Options::default()).unwrap();
    assert!(!first.unchanged && first.id.is_some());
    assert_eq!(count(), 1);

    let again = fx.backup_p12(&node, Options::default()).unwrap();
    assert!(again.unchanged, "same bytes and mode: reuse");
    assert_eq!(again.id, first.id);
    assert_eq!(count(), 1);
    let seen = fx.store().list(Some("n1")).unwrap().artifacts[0]
        .sidecar
        .seen_unchanged_at;
    assert!(seen.is_some(), "a reuse is recorded on the artifact");

    node.put(P12, &bytes, 0o600);
    let mode_changed = fx.backup_p12(&node, Options::default()).unwrap();
    assert!(!mode_changed.unchanged, "a mode change is a change");
    assert_ne!(mode_changed.id, first.id);
    assert_eq!(count(), 2);

    let forced = fx
        .backup_p12(
            &node,
            Options {
                force: true,
                ..Options::default()
            },
        )
        .unwrap();
    assert!(!forced.unchanged);
    assert_eq!(count(), 3);
}

/// Sidecars carry keyed hashes (no plain SHA-256 of the plaintext), made with the signing key:
/// after the key is rotated they cannot be compared, so the next backup stores a new artifact
/// rather than trusting a hash it cannot check.
#[test]
fn backup_compares_keyed_hashes_and_a_rotated_signing_key_stores_anew() {
    let mut fx = Fixture::new();
    let bytes = p12_bytes();
    let node = node_with_p12(&bytes, 0o400);
    let first = fx.backup_p12(&node, Options::default()).unwrap();
    let listed = fx.store().list(Some("n1")).unwrap().artifacts;
    let m = &listed[0].sidecar.manifest;
    let keyed = fx.config.store.keys.as_ref().unwrap().keyed_hash();
    assert_eq!(m.hash_key.as_deref(), Some(keyed.id()));
    assert_eq!(m.files[0].sha256, "", "no plain hash in the sidecar");
    assert_eq!(m.files[0].hmac.as_deref(), Some(keyed.hex(&bytes).as_str()));
    let on_disk = std::fs::read_to_string(&listed[0].copies[0].sidecar_path).unwrap();
    assert!(!on_disk.contains(&crate::digest::sha256_hex(&bytes)), "{on_disk}");
    assert!(fx.backup_p12(&node, Options::default()).unwrap().unchanged);
    // A new signing key, the old one still trusted: old artifacts stay valid, but their keyed
    // hashes are another key's.
    let old = fx.config.store.keys.clone().unwrap();
    let signer = crate::sign::Signer::generate();
    let allowed = crate::sign::AllowedSigners::parse(&format!(
        "old {}\nnew {}",
        old.signer.public_line(),
        signer.public_line()
    ))
    .unwrap();
    fx.config.store.keys = Some(std::sync::Arc::new(crate::sign::Keys { signer, allowed }));
    assert_eq!(fx.store().list(Some("n1")).unwrap().artifacts.len(), 1);
    let next = fx.backup_p12(&node, Options::default()).unwrap();
    assert!(!next.unchanged && next.id != first.id);
    assert!(fx.backup_p12(&node, Options::default()).unwrap().unchanged);
}

/// Backups made within one second are ordered as they were made: `latest` (what restore, reuse
/// and retention take as the newest) is always the last one written.
#[test]
fn backups_within_one_second_order_oldest_first() {
    let fx = Fixture::new();
    let node = FakeNode::new();
    let mut written = Vec::new();
    for _ in 0..6 {
        node.put(P12, &p12_bytes(), 0o400);
        written.push(fx.backup_p12(&node, Options::default()).unwrap().id.unwrap());
        let listed = fx.store().list(Some("n1")).unwrap().artifacts;
        let latest = super::artifact::latest(&listed, "n1", "p12").unwrap();
        assert_eq!(Some(&latest.id), written.last(), "{written:?}");
    }
    let listed = fx.store().list(Some("n1")).unwrap().artifacts;
    let mut by_time: Vec<&crate::store::Artifact> = listed.iter().collect();
    by_time.sort_by_key(|a| a.sidecar.manifest.created_at);
    let order: Vec<&String> = by_time.iter().map(|a| &a.id).collect();
    assert_eq!(order, written.iter().collect::<Vec<_>>());
}

#[test]
fn backup_dry_run_decides_the_same_and_writes_nothing() {
    let fx = Fixture::new();
    let node = node_with_p12(&p12_bytes(), 0o400);
    let dry = Options {
        dry_run: true,
        ..Options::default()
    };
    let planned = fx.backup_p12(&node, dry).unwrap();
    assert!(!planned.unchanged && planned.id.is_none());
    assert!(fx.store().list(Some("n1")).unwrap().artifacts.is_empty());
    let stored = fx.backup_p12(&node, Options::default()).unwrap();
    let dry_again = fx.backup_p12(&node, dry).unwrap();
    assert!(dry_again.unchanged);
    assert_eq!(dry_again.id, stored.id);
    let a = &fx.store().list(Some("n1")).unwrap().artifacts[0];
    assert!(a.sidecar.seen_unchanged_at.is_none(), "a dry run marks nothing");
}

#[test]
fn backup_does_not_reuse_a_damaged_artifact() {
    let fx = Fixture::new();
    let node = node_with_p12(&p12_bytes(), 0o400);
    let first = fx.backup_p12(&node, Options::default()).unwrap();
    let listed = fx.store().list(Some("n1")).unwrap().artifacts;
    std::fs::write(&listed[0].copies[0].age_path, b"flipped").unwrap();
    let next = fx.backup_p12(&node, Options::default()).unwrap();
    assert!(!next.unchanged, "a damaged copy must not stand for the material");
    assert_ne!(next.id, first.id);
}

#[test]
fn backup_fails_on_a_read_cut_short_and_stores_nothing() {
    let fx = Fixture::new();
    let node = node_with_p12(&p12_bytes(), 0o400);
    node.cut_reads_short(P12);
    let err = fx.backup_p12(&node, Options::default()).unwrap_err();
    assert!(format!("{err:#}").contains("got"), "{err:#}");
    assert!(fx.store().list(Some("n1")).unwrap().artifacts.is_empty());
}

// ---- restore: P12 decisions ----

fn p12_source_with<'f>(fx: &'f Fixture, backed_up: &[u8]) -> Source<'f> {
    p12_source_moded(fx, backed_up, 0o400)
}

/// A source whose backup recorded the P12 with `mode`.
fn p12_source_moded<'f>(fx: &'f Fixture, backed_up: &[u8], mode: u32) -> Source<'f> {
    fx.backup_p12(&node_with_p12(backed_up, mode), Options::default())
        .unwrap();
    Source::open(&fx.config, &fx.request("p12")).unwrap()
}

#[test]
fn restore_p12_into_a_missing_file_creates_it_with_nodectl_mode() {
    let fx = Fixture::new();
    let bytes = p12_bytes();
    let src = p12_source_with(&fx, &bytes);
    let node = FakeNode::new();
    node.mkdirs("/home/nodeadmin/tessellation");
    let plan = restore::plan(&src, &node, false).unwrap();
    assert_eq!(plan.action, RestoreAction::Created);
    assert_eq!(
        plan.steps,
        [Step::Upload {
            path: P12.into(),
            mode: "0400".into(),
            keep_owner: false,
            owner: Some("app:app".into()),
        }]
    );
    assert_eq!(plan.owner.as_deref(), Some("app:app (recorded in the backup)"));
    assert!(node.log().is_empty(), "planning changes nothing");
    let done = restore::apply(&fx.config, &src, &node, plan).unwrap();
    assert!(done.previous_saved_as.is_none());
    let file = node.get(P12).unwrap();
    assert_eq!(
        (file.bytes, file.mode, file.owner.as_str()),
        (bytes, 0o400, "app")
    );
}

#[test]
fn restore_p12_identical_file_is_left_alone() {
    let fx = Fixture::new();
    let bytes = p12_bytes();
    let src = p12_source_with(&fx, &bytes);
    let node = node_with_p12(&bytes, 0o440);
    let plan = restore::plan(&src, &node, false).unwrap();
    assert_eq!(plan.action, RestoreAction::AlreadyInPlace);
    assert!(plan.steps.is_empty());
    assert_eq!(plan.mode, "0440");
    restore::apply(&fx.config, &src, &node, plan).unwrap();
    assert!(node.log().is_empty());
}

#[test]
fn restore_p12_different_file_is_saved_then_replaced_keeping_mode_and_owner() {
    let fx = Fixture::new();
    let bytes = p12_bytes();
    let src = p12_source_moded(&fx, &bytes, 0o640);
    let node = node_with_p12(b"nodectl's temporary key", 0o640);
    let plan = restore::plan(&src, &node, false).unwrap();
    assert_eq!(plan.action, RestoreAction::Replaced);
    assert!(plan.replaces());
    assert_eq!(
        plan.steps,
        [
            Step::SavePreRestore {
                paths: vec![P12.into()]
            },
            Step::Upload {
                path: P12.into(),
                mode: "0640".into(),
                keep_owner: true,
                owner: None,
            }
        ]
    );
    let json = serde_json::to_value(restore::RestoreOutcome::dry_run(
        restore::plan(&src, &node, false).unwrap(),
    ))
    .unwrap();
    assert_eq!(json["action"], "would-replace");
    assert_eq!(json["steps"][1]["step"], "upload");
    let done = restore::apply(&fx.config, &src, &node, plan).unwrap();
    assert!(done.previous_saved_as.is_some());
    assert_eq!(fx.pre_restores(), 1);
    let file = node.get(P12).unwrap();
    assert_eq!(
        (file.bytes, file.mode, file.owner.as_str()),
        (bytes, 0o640, "app")
    );
}

#[test]
fn restore_p12_mode_is_never_looser_than_the_backup_recorded() {
    let fx = Fixture::new();
    let bytes = p12_bytes();
    let src = p12_source_moded(&fx, &bytes, 0o400);
    // Someone loosened the node's file to 0644: the restored key gets 0644 & 0400.
    let node = node_with_p12(b"loosened", 0o644);
    let plan = restore::plan(&src, &node, false).unwrap();
    assert_eq!(plan.mode, "0400");
    restore::apply(&fx.config, &src, &node, plan).unwrap();
    assert_eq!(node.get(P12).unwrap().mode, 0o400);
}

#[test]
fn restore_p12_refuses_a_symlink_at_the_target_and_saves_nothing() {
    let fx = Fixture::new();
    let src = p12_source_with(&fx, &p12_bytes());
    let node = FakeNode::new();
    node.put("/etc/shadow", b"root:x:0:0", 0o640);
    node.symlink(P12, "/etc/shadow");
    let err = restore::plan(&src, &node, false).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert_eq!(fx.pre_restores(), 0, "the link's target is not saved");
    // push refuses it too, so a plan made before the link appeared cannot follow it.
    assert!(node.push(P12, b"key", 0o400).is_err());
    assert_eq!(node.get("/etc/shadow").unwrap().bytes, b"root:x:0:0");
    assert!(node.log().is_empty());
}

#[test]
fn restore_p12_refuses_a_missing_directory_and_a_non_file() {
    let fx = Fixture::new();
    let src = p12_source_with(&fx, &p12_bytes());
    let err = restore::plan(&src, &FakeNode::new(), false).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    let node = FakeNode::new();
    node.mkdirs(P12);
    let err = restore::plan(&src, &node, false).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn restore_p12_on_a_full_disk_keeps_the_old_file() {
    let fx = Fixture::new();
    let src = p12_source_with(&fx, &p12_bytes());
    let node = node_with_p12(b"old", 0o400);
    let plan = restore::plan(&src, &node, false).unwrap();
    node.disk_free(10);
    let err = restore::apply(&fx.config, &src, &node, plan).unwrap_err();
    assert!(
        format!("{err:#}").contains("previous file, if any, is still in place"),
        "{err:#}"
    );
    assert_eq!(node.get(P12).unwrap().bytes, b"old");
}

// ---- restore: Acra decisions ----

const BACKUP: &[(&str, &[u8], u32)] = &[
    ("keys/Alice_storage", b"private-1", 0o600),
    ("keys/Alice_storage.pub", b"public-1", 0o644),
    ("public/Alice_storage.pub", b"public-1", 0o644),
];

fn acra_node(keys: &[(&str, &[u8])], public: &[(&str, &[u8])]) -> FakeNode {
    let node = FakeNode::new();
    node.mkdirs(KEYS);
    node.mkdirs(PUBLIC);
    for (name, data) in keys {
        node.put(&format!("{KEYS}/{name}"), data, 0o600);
    }
    for (name, data) in public {
        node.put(&format!("{PUBLIC}/{name}"), data, 0o644);
    }
    node
}

fn acra_source(fx: &Fixture, replace: bool) -> (Source<'_>, bool) {
    fx.store_acra(BACKUP);
    (Source::open(&fx.config, &fx.request("acra")).unwrap(), replace)
}

fn backup_on(node: &FakeNode) -> bool {
    node.get(&format!("{KEYS}/Alice_storage")).map(|f| f.bytes) == Some(b"private-1".to_vec())
        && node.get(&format!("{PUBLIC}/Alice_storage.pub")).map(|f| f.bytes) == Some(b"public-1".to_vec())
}

#[test]
fn restore_acra_into_missing_directories_creates_them() {
    let fx = Fixture::new();
    let (src, _) = acra_source(&fx, false);
    let node = FakeNode::new();
    node.mkdirs("/etc/acra");
    let plan = restore::plan(&src, &node, false).unwrap();
    assert_eq!(plan.action, RestoreAction::Created);
    assert_eq!(plan.steps.len(), 2, "{:?}", plan.steps);
    assert!(
        matches!(&plan.steps[0], Step::SwapTree { path, replaces: false, keep_owner: false, owner: None, files } if path == KEYS
            && files.contains(&("Alice_storage".into(), "0600".into())))
    );
    restore::apply(&fx.config, &src, &node, plan).unwrap();
    assert!(backup_on(&node));
    assert_eq!(node.stat(KEYS).unwrap().unwrap().mode, 0o700);
    assert!(
        node.entries_with_prefix("/etc/acra", ".").unwrap().is_empty(),
        "no temp left"
    );
}

#[test]
fn restore_acra_identical_is_left_alone_and_empty_is_filled() {
    let fx = Fixture::new();
    let (src, _) = acra_source(&fx, false);
    let same = acra_node(
        &[
            ("Alice_storage", b"private-1"),
            ("Alice_storage.pub", b"public-1"),
        ],
        &[("Alice_storage.pub", b"public-1")],
    );
    let plan = restore::plan(&src, &same, false).unwrap();
    assert_eq!(plan.action, RestoreAction::AlreadyInPlace);
    assert!(plan.steps.is_empty());

    let empty = acra_node(&[], &[]);
    let plan = restore::plan(&src, &empty, false).unwrap();
    assert_eq!(
        plan.action,
        RestoreAction::Created,
        "an empty keystore needs no --replace"
    );
    assert!(
        plan.steps
            .iter()
            .all(|s| !matches!(s, Step::SavePreRestore { .. }))
    );
}

#[test]
fn restore_acra_over_a_different_keystore_needs_replace_and_saves_it_first() {
    let fx = Fixture::new();
    let (src, _) = acra_source(&fx, true);
    let node = acra_node(&[("Bob_storage", b"other")], &[("Bob_storage.pub", b"other-pub")]);
    let before = node.fs();
    let err = restore::plan(&src, &node, false).unwrap_err();
    assert!(err.to_string().contains("needs --replace"), "{err}");
    assert_eq!(node.fs(), before);

    let plan = restore::plan(&src, &node, true).unwrap();
    assert_eq!(plan.action, RestoreAction::Replaced);
    assert!(matches!(&plan.steps[0], Step::SavePreRestore { paths } if paths.len() == 2));
    restore::apply(&fx.config, &src, &node, plan).unwrap();
    assert!(backup_on(&node));
    assert!(node.get(&format!("{KEYS}/Bob_storage")).is_none());
    assert_eq!(
        node.fs().dirs[KEYS].1,
        "app",
        "the owner of the replaced keystore is kept"
    );
    assert_eq!(fx.pre_restores(), 1);
    assert!(
        node.entries_with_prefix("/etc/acra", ".").unwrap().is_empty(),
        "no temp or old dir left"
    );
}

#[test]
fn restore_acra_refuses_links_and_an_interrupted_swap() {
    let fx = Fixture::new();
    let (src, _) = acra_source(&fx, true);
    let node = FakeNode::new();
    node.mkdirs(PUBLIC);
    node.symlink(KEYS, "/srv/keys");
    let err = restore::plan(&src, &node, true).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");

    let node = acra_node(&[("Bob_storage", b"x")], &[]);
    node.put("/etc/acra/.keys.coldkeep-old-1234abcd/Alice_storage", b"y", 0o600);
    let err = restore::plan(&src, &node, true).unwrap_err();
    assert!(err.to_string().contains("interrupted"), "{err}");

    let node = FakeNode::new();
    let err = restore::plan(&src, &node, true).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

// ---- the Acra swap and its rollback ----

fn occupied() -> FakeNode {
    acra_node(
        &[("Bob_storage", b"other"), ("Bob_storage.pub", b"other-pub")],
        &[("Bob_storage.pub", b"other-pub")],
    )
}

/// Restores over [`occupied`] with the given renames (1-based, counted from apply) failing;
/// returns the node as it was before, the node, and the error.
fn apply_with_failing_renames(failing: &[usize]) -> (super::fake_node::Fs, FakeNode, String) {
    let fx = Fixture::new();
    let (src, _) = acra_source(&fx, true);
    let node = occupied();
    let before = node.fs();
    let plan = restore::plan(&src, &node, true).unwrap();
    for n in failing {
        node.fail_nth(Op::Rename, *n);
    }
    let err = restore::apply(&fx.config, &src, &node, plan).unwrap_err();
    (before, node, format!("{err:#}"))
}

#[test]
fn swap_rollback_when_the_second_rename_fails() {
    // keys: rename keys -> old (1st), temp -> keys (2nd, fails): the first is undone.
    let (before, node, err) = apply_with_failing_renames(&[2]);
    assert!(err.contains("previous keystore is back in place"), "{err}");
    assert_eq!(
        node.fs(),
        before,
        "the keystore is exactly as before, no temp left"
    );
    assert_eq!(node.calls(Op::Rename), 3, "two renames and one undo");
}

#[test]
fn swap_rollback_undoes_a_finished_swap_when_the_next_directory_fails() {
    // keys swapped (1, 2); public: public -> old (3), temp -> public (4, fails).
    let (before, node, err) = apply_with_failing_renames(&[4]);
    assert!(err.contains("previous keystore is back in place"), "{err}");
    assert_eq!(node.fs(), before);
}

#[test]
fn swap_failing_to_move_back_says_where_the_keystore_is() {
    let (_, node, err) = apply_with_failing_renames(&[2, 3]);
    assert!(
        err.contains("moving the previous keystore back also failed"),
        "{err}"
    );
    let old = node
        .entries_with_prefix("/etc/acra", ".keys.coldkeep-old-")
        .unwrap();
    assert_eq!(old.len(), 1, "{err}");
    assert!(err.contains(&old[0]), "the message names {}: {err}", old[0]);
    assert_eq!(
        node.get(&format!("{}/Bob_storage", old[0])).unwrap().bytes,
        b"other"
    );
}

#[test]
fn upload_failure_before_the_swap_changes_nothing() {
    let fx = Fixture::new();
    let (src, _) = acra_source(&fx, true);
    let node = occupied();
    let before = node.fs();
    let plan = restore::plan(&src, &node, true).unwrap();
    node.disk_free(12);
    let err = restore::apply(&fx.config, &src, &node, plan).unwrap_err();
    assert!(format!("{err:#}").contains("nothing was changed"), "{err:#}");
    assert_eq!(node.fs(), before);
    assert_eq!(node.calls(Op::Rename), 0);
}

// ---- owners: recorded on backup, given back on restore ----

#[test]
fn backup_records_owners_of_files_and_directories() {
    let fx = Fixture::new();
    let node = node_with_p12(&p12_bytes(), 0o400);
    node.add_user("nodeadmin");
    node.chown(P12, "root");
    fx.backup_p12(&node, Options::default()).unwrap();
    let a = &fx.store().list(Some("n1")).unwrap().artifacts[0];
    let owner = a.sidecar.manifest.files[0].owner.clone().unwrap();
    assert_eq!(
        (owner.uid, owner.user.as_deref(), owner.group.as_deref()),
        (0, Some("root"), Some("root"))
    );

    // An Acra tree: the root first, then each subdirectory, with modes and owners.
    let acra = acra_node(&[("Alice_storage", b"k")], &[]);
    acra.add_user("acra");
    acra.mkdirs(&format!("{KEYS}/.poison_key"));
    acra.chown(KEYS, "acra");
    acra.chown(&format!("{KEYS}/Alice_storage"), "acra:app");
    let ks = &fx.config.node("n1").unwrap().keystores[1];
    let (_, files, dirs) = keystore::fetch_acra(&acra, ks).unwrap().unwrap();
    let paths: Vec<&str> = dirs.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["keys/", "keys/.poison_key/", "public/"]);
    assert_eq!(dirs[0].remote_path, KEYS);
    assert_eq!(dirs[0].owner.as_ref().unwrap().user.as_deref(), Some("acra"));
    let key = files
        .iter()
        .find(|f| f.entry.path == "keys/Alice_storage")
        .unwrap();
    let o = key.entry.owner.as_ref().unwrap();
    assert_eq!(
        (o.user.as_deref(), o.group.as_deref()),
        (Some("acra"), Some("app"))
    );
}

#[test]
fn restore_p12_gives_a_new_file_the_recorded_owner_only_when_it_exists_on_the_node() {
    let fx = Fixture::new();
    let bytes = p12_bytes();
    let source_node = node_with_p12(&bytes, 0o400);
    source_node.add_user("nodeadmin");
    source_node.chown(P12, "nodeadmin");
    fx.backup_p12(&source_node, Options::default()).unwrap();
    let src = Source::open(&fx.config, &fx.request("p12")).unwrap();

    // A node without that user: the writer's owner, and the plan says why.
    let bare = FakeNode::new();
    bare.mkdirs("/home/nodeadmin/tessellation");
    let plan = restore::plan(&src, &bare, false).unwrap();
    assert!(
        matches!(&plan.steps[0], Step::Upload { owner: None, .. }),
        "{:?}",
        plan.steps
    );
    let said = plan.owner.clone().unwrap();
    assert!(
        said.contains("nodeadmin:nodeadmin from the backup does not exist"),
        "{said}"
    );
    restore::apply(&fx.config, &src, &bare, plan).unwrap();
    assert_eq!(bare.get(P12).unwrap().owner, "coldkeep");

    // A node that has it: the file gets it back.
    let node = FakeNode::new();
    node.add_user("nodeadmin");
    node.mkdirs("/home/nodeadmin/tessellation");
    let plan = restore::plan(&src, &node, false).unwrap();
    assert_eq!(
        plan.owner.as_deref(),
        Some("nodeadmin:nodeadmin (recorded in the backup)")
    );
    restore::apply(&fx.config, &src, &node, plan).unwrap();
    let file = node.get(P12).unwrap();
    assert_eq!(
        (file.bytes, file.mode, file.owner.as_str()),
        (bytes, 0o400, "nodeadmin")
    );
}

#[test]
fn restore_acra_into_missing_directories_gives_them_the_recorded_service_owner() {
    let fx = Fixture::new();
    let owner = bundle::FileOwner {
        uid: 999,
        gid: 999,
        user: Some("acra".into()),
        group: Some("acra".into()),
    };
    fx.store_acra_owned(BACKUP, Some(owner));
    let src = Source::open(&fx.config, &fx.request("acra")).unwrap();
    let node = FakeNode::new();
    node.add_user("acra");
    node.mkdirs("/etc/acra");
    let plan = restore::plan(&src, &node, false).unwrap();
    assert!(
        matches!(&plan.steps[0], Step::SwapTree { owner: Some(o), .. } if o == "acra:acra"),
        "{:?}",
        plan.steps
    );
    let said = plan.owner.clone().unwrap();
    assert!(
        said.contains(&format!("{KEYS}: acra:acra (recorded in the backup)")),
        "{said}"
    );
    restore::apply(&fx.config, &src, &node, plan).unwrap();
    assert!(backup_on(&node));
    let fs = node.fs();
    assert_eq!(fs.dirs[KEYS].1, "acra");
    assert_eq!(fs.files[&format!("{KEYS}/Alice_storage")].owner, "acra");
    assert_eq!(fs.files[&format!("{PUBLIC}/Alice_storage.pub")].owner, "acra");

    // Files recorded without owners: no single owner to give, and the plan says so.
    let fx = Fixture::new();
    fx.store_acra(BACKUP);
    let src = Source::open(&fx.config, &fx.request("acra")).unwrap();
    let node = FakeNode::new();
    node.mkdirs("/etc/acra");
    let plan = restore::plan(&src, &node, false).unwrap();
    assert!(plan.owner.unwrap().contains("no single named owner"));
}

// ---- a node that decides writes itself (the node helper's policy) ----

fn policy(owner: Option<&str>, max_mode: u32, refused: Option<&str>) -> crate::remote::WriteRule {
    crate::remote::WriteRule {
        owner: owner.map(str::to_string),
        max_mode,
        refused: refused.map(str::to_string),
    }
}

#[test]
fn a_node_policy_that_refuses_the_keystore_stops_the_plan_and_an_identical_file_needs_nothing() {
    let fx = Fixture::new();
    let bytes = p12_bytes();
    let src = p12_source_with(&fx, &bytes);
    let node = node_with_p12(b"other bytes", 0o400);
    node.set_write_rule(policy(
        None,
        0,
        Some("the node's policy does not allow restoring keystore `p12`"),
    ));
    let before = node.fs();
    let err = restore::plan(&src, &node, false).unwrap_err().to_string();
    assert!(
        err.contains("does not allow restoring") && err.contains("Nothing was changed"),
        "{err}"
    );
    assert_eq!(node.fs(), before);
    // Nothing to write: the refusal does not matter.
    let same = node_with_p12(&bytes, 0o400);
    same.set_write_rule(policy(None, 0, Some("refused")));
    let plan = restore::plan(&src, &same, false).unwrap();
    assert_eq!(plan.action, RestoreAction::AlreadyInPlace);
}

#[test]
fn a_node_policy_names_the_owner_of_a_new_file_and_caps_its_mode() {
    let fx = Fixture::new();
    let bytes = p12_bytes();
    let src = p12_source_moded(&fx, &bytes, 0o600);
    let node = FakeNode::new();
    node.mkdirs("/home/nodeadmin/tessellation");
    node.set_write_rule(policy(Some("root:root"), 0o400, None));
    let plan = restore::plan(&src, &node, false).unwrap();
    assert_eq!(plan.owner.as_deref(), Some("root:root (the node's policy)"));
    assert_eq!(
        plan.steps,
        [Step::Upload {
            path: P12.into(),
            mode: "0400".into(),
            keep_owner: false,
            owner: Some("root:root".into()),
        }]
    );
    // A replaced file: its owner is kept, and the plan says the policy requires it.
    let existing = node_with_p12(b"other bytes", 0o644);
    existing.set_write_rule(policy(Some("root:root"), 0o440, None));
    let plan = restore::plan(&src, &existing, false).unwrap();
    assert_eq!(plan.mode, "0400", "0644 & 0600 (backup) & 0440 (policy)");
    assert!(
        plan.owner.as_deref().unwrap().contains("requires root:root"),
        "{:?}",
        plan.owner
    );
}

#[test]
fn a_node_policy_caps_the_modes_of_a_restored_acra_tree() {
    let fx = Fixture::new();
    let (src, _) = acra_source(&fx, false);
    let node = FakeNode::new();
    node.mkdirs("/etc/acra");
    node.set_write_rule(policy(Some("acra:acra"), 0o600, None));
    let plan = restore::plan(&src, &node, false).unwrap();
    let Step::SwapTree { files, owner, .. } = &plan.steps[0] else {
        panic!("{:?}", plan.steps);
    };
    assert!(
        files.contains(&("Alice_storage.pub".into(), "0600".into())),
        "{files:?}"
    );
    assert_eq!(owner, &None, "the node's policy gives the owner");
    assert!(
        plan.owner
            .as_deref()
            .unwrap()
            .contains("acra:acra (the node's policy)"),
        "{:?}",
        plan.owner
    );
}

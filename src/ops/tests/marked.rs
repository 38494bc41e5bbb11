//! Backups stored without their identity checked (a P12 password gone stale): retention keeps
//! the newest checked one, and `restore latest` does not pick a marked one unless it is named.

use super::*;

impl Fixture {
    /// Stores a backup of `bytes` as the P12 keystore's, made at `at`, marked `unchecked`.
    fn store_p12_at(
        &self,
        bytes: &[u8],
        at: chrono::DateTime<chrono::Utc>,
        unchecked: Option<&str>,
    ) -> String {
        let cfg = self.config.node("n1").unwrap();
        let data = zeroize::Zeroizing::new(bytes.to_vec());
        let files = [PlainFile {
            entry: bundle::file_entry("key.p12", P12, &data, 0o400),
            data,
        }];
        let mut manifest = keystore::manifest(
            cfg,
            "p12",
            ArtifactKind::P12,
            "SHA256:fake",
            &files,
            None,
            Purpose::Backup,
        );
        manifest.created_at = at;
        manifest.identity_unchecked = unchecked.map(str::to_string);
        keystore::seal_and_store(
            &self.store(),
            &self.config.encryption.recipients,
            manifest,
            &files,
            keystore::Write::Now,
        )
        .unwrap()
        .id
        .unwrap()
    }
}

/// A checked backup, then two stored without their identity checked (the P12 password gone
/// stale on the node): ids oldest first.
fn checked_then_marked(fx: &Fixture) -> [String; 3] {
    let t = |h| chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 1, 2, h, 0, 0).unwrap();
    let bytes = p12_bytes();
    let why = "wrong password: it does not open with the configured password";
    [
        fx.store_p12_at(&bytes, t(1), None),
        fx.store_p12_at(&bytes, t(2), Some(why)),
        fx.store_p12_at(&bytes, t(3), Some(why)),
    ]
}

#[test]
fn retention_keeps_the_newest_backup_whose_identity_was_checked() {
    let mut fx = Fixture::new();
    let [checked, middle, newest] = checked_then_marked(&fx);
    fx.config.nodes[0].keystores[0].retention = crate::config::Retention {
        keep_last: Some(1),
        ..Default::default()
    };
    let pruned = crate::ops::prune::prune(&fx.config, Some("n1"), false).unwrap();
    let fate = |id: &str| pruned.iter().find(|p| p.id == id).unwrap();
    assert!(fate(&newest).keep, "{pruned:?}");
    assert!(!fate(&middle).keep, "{pruned:?}");
    assert!(
        fate(&checked).keep && fate(&checked).reasons == ["newest checked"],
        "{pruned:?}"
    );
    let left: Vec<String> = fx
        .store()
        .list(Some("n1"))
        .unwrap()
        .artifacts
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert!(left.contains(&checked) && !left.contains(&middle), "{left:?}");
}

#[test]
fn restore_latest_refuses_a_backup_stored_without_its_identity_checked_unless_named() {
    let fx = Fixture::new();
    let [checked, _, newest] = checked_then_marked(&fx);
    let err = match Source::open(&fx.config, &fx.request("p12")) {
        Err(e) => format!("{e:#}"),
        Ok(_) => panic!("latest was a marked backup"),
    };
    assert!(
        err.contains("without its identity checked (wrong password")
            && err.contains(&format!("--backup {newest}"))
            && err.contains(&format!("identity was checked is {checked}")),
        "{err}"
    );
    // Named: restored like any other (its warning says what it is).
    let named = RestoreRequest {
        backup: newest.clone(),
        ..fx.request("p12")
    };
    let src = Source::open(&fx.config, &named).unwrap();
    assert_eq!(src.picked.id, newest);
}

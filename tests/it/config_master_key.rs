//! The Acra master key: no recipient opens both a keystore and its master key; the master-key
//! store may have replicas, apart from the keystore backups.

use coldkeep::config::Config;
use std::path::Path;

const KEYSTORE: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
const MASTER: &str = "age1kec32r8z4pruze28j7mdjs983kkm7f027zdv8c5mvggemyl785vsgpd7uj";

fn config(store_extra: &str, master_recipients: &str) -> String {
    format!(
        "store:\n  path: /var/lib/coldkeep\n  replicas: [/mnt/offsite]\n  master_key_store: /srv/mk\n{store_extra}\
         encryption:\n  recipients:\n    - {KEYSTORE}\n  master_key_recipients: [{master_recipients}]\n\
         signing:\n  key: /etc/coldkeep/signing_key\n  allowed_signers: /etc/coldkeep/allowed_signers\nnodes: []\n"
    )
}

fn parse(text: &str) -> Result<Config, coldkeep::config::ConfigError> {
    Config::parse(text, Path::new("/etc/coldkeep/c.yaml"))
}

#[test]
fn a_master_key_recipient_that_opens_keystores_is_refused_naming_both_lines() {
    let e = parse(&config("", &format!("{MASTER}, {KEYSTORE}"))).unwrap_err();
    assert_eq!(e.line, 8, "the master_key_recipients line: {e}");
    let msg = e.to_string();
    assert!(
        msg.contains("/etc/coldkeep/c.yaml:7 (encryption.recipients)"),
        "{msg}"
    );
    assert!(msg.contains("no single identity"), "{msg}");
    // Its own recipient is fine.
    assert!(parse(&config("", MASTER)).is_ok());
}

#[test]
fn the_overlap_is_found_through_a_recipients_file_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("recipients.txt");
    std::fs::write(&file, format!("# operators\n{MASTER}\n")).unwrap();
    let text = config("", MASTER).replace(
        "encryption:\n",
        &format!("encryption:\n  recipients_file: {}\n", file.display()),
    );
    let msg = parse(&text).unwrap_err().to_string();
    assert!(
        msg.contains(&format!("{}:2 (recipients_file)", file.display())),
        "{msg}"
    );
}

#[test]
fn master_key_replicas_follow_the_replica_rules() {
    let c = parse(&config("  master_key_replicas: [/mnt/vault2/mk]\n", MASTER)).unwrap();
    assert_eq!(
        c.store.master_key_replicas,
        vec![Path::new("/mnt/vault2/mk").to_path_buf()]
    );
    // Never beside or inside the keystore backups, never twice, never without a primary.
    for bad in ["/var/lib/coldkeep/mk", "/mnt/offsite", "/srv/mk"] {
        let e = parse(&config(&format!("  master_key_replicas: [{bad}]\n"), MASTER));
        assert!(e.is_err(), "{bad} accepted");
    }
    let text =
        config("  master_key_replicas: [/mnt/v2]\n", MASTER).replace("  master_key_store: /srv/mk\n", "");
    let msg = parse(&text).unwrap_err().to_string();
    assert!(msg.contains("needs `store.master_key_store`"), "{msg}");
}

#[test]
fn the_signing_key_may_not_lie_in_a_master_key_replica() {
    // Whoever writes a master-key replica must not be able to read the key that signs artifacts.
    let text = config("  master_key_replicas: [/mnt/v2]\n", MASTER)
        .replace("key: /etc/coldkeep/signing_key", "key: /mnt/v2/signing_key");
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("`signing.key` lies inside a store root"), "{e}");
}

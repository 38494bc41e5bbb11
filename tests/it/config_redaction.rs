//! Config error snippets never show a secret: values under password / passphrase / master_key,
//! inline mappings included, and lines nested under such keys.

use coldkeep::config::Config;
use std::path::Path;

const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

fn error_text(text: &str) -> String {
    match Config::parse(text, Path::new("/etc/coldkeep/test.yaml")) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_error_on_an_inline_mapping_hides_its_secret_values() {
    // The unknown key `bogus` is the error; the same line carries a pasted password.
    let text = format!(
        "store:\n  path: /var/lib/coldkeep\nencryption:\n  recipients: [{RECIPIENT}]\nnodes:\n  - name: v1\n    host: h\n    keystores:\n      - {{name: p12, kind: p12, path: /k.p12, password: hunter2-pasted, bogus: 1}}\n"
    );
    let shown = error_text(&text);
    assert!(shown.contains("test.yaml:9"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("password: <redacted>"), "{shown}");
}

#[test]
fn an_error_inside_a_block_under_a_secret_key_hides_the_line() {
    let text = format!(
        "store:\n  path: /var/lib/coldkeep\nencryption:\n  recipients: [{RECIPIENT}]\nnodes:\n  - name: v1\n    host: h\n    keystores:\n      - name: p12\n        kind: p12\n        path: /k.p12\n        password:\n          env: X\n          hunter2-pasted: 1\n"
    );
    let shown = error_text(&text);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("<redacted>"),
        "a snippet is shown, redacted: {shown}"
    );
}

/// The config of issue 25's reproduction 6 with `secret` as the keystore's `password` entry.
fn with_password(secret: &str) -> String {
    format!(
        "store:\n  path: /var/lib/coldkeep\nencryption:\n  recipients: [{RECIPIENT}]\nnodes:\n  - name: v1\n    host: h\n    keystores:\n      - name: p12\n        kind: p12\n        path: /k.p12\n        password: {secret}\n"
    )
}

/// Issue 25, reproduction 6: on a secret line the snippet was cut at the error column, so
/// `password: {S3cr3tPassw0rd}` was printed up to it, and an unknown secret-source name (the
/// secret pasted as a mapping key) was echoed in the message. Now nothing past the key is shown,
/// no mapping key under a secret key is quoted, and the column does not tell the secret's length.
#[test]
fn a_secret_pasted_as_a_mapping_key_is_neither_shown_nor_quoted() {
    let cases = [
        "{S3cr3tPassw0rd}",
        "\n          S3cr3tPassw0rd: 1",
        "{env: A, S3cr3tPassw0rd: x}",
        "{S3cr3tPassw0rd: 1, S3cr3tPassw0rd: 2}",
        "\n          env: A\n          S3cr3tPassw0rd: 1\n          S3cr3tPassw0rd: 2",
        "{file: S3cr3tPassw0rd, x}",
        "{env: [S3cr3tPassw0rd]}",
    ];
    for case in cases {
        let shown = error_text(&with_password(case));
        assert!(!shown.contains("S3cr3t"), "{case:?}: {shown}");
        assert!(
            shown.contains("<redacted>"),
            "a redacted snippet is shown: {shown}"
        );
        // `password:` starts at column 9: an error may point at column 19 (the value) at most.
        let column: usize = shown
            .split(':')
            .nth(2)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{shown}"));
        assert!(column <= 19, "{case:?}: {shown}");
    }
}

/// The daemon logs a failed reload with the same text: no secret in the log either.
#[test]
fn a_failed_reload_logs_no_secret() {
    use crate::support::daemon::Daemon;
    let f = crate::support::fleet::p12_fleet(&["n1"], "schedule: \"0 0 1 1 *\"\ntimezone: UTC\n");
    let daemon = Daemon::start(&f);
    daemon.expect("daemon started");
    let good = std::fs::read_to_string(&f.config).unwrap();
    let temp = f.dir.join(".coldkeep.yaml.swp");
    for pasted in [
        "        password: {S3cr3tPassw0rd}\n",
        "        password:\n          S3cr3tPassw0rd: 1\n",
    ] {
        std::fs::write(&temp, format!("{good}{pasted}")).unwrap();
        std::fs::rename(&temp, &f.config).unwrap();
        let line = daemon.expect("config reload failed");
        assert!(!line.contains("S3cr3t") && line.contains("not shown"), "{line}");
    }
    assert_eq!(daemon.terminate(), 0);
}

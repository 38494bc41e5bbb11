//! Config validation: every bad input is an error naming file:line:column, and secrets are
//! never echoed.

use coldkeep::config::{Config, ConfigError, HostKeyPolicy, Secret};
use std::path::Path;
use std::time::Duration;

const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
const MASTER_RECIPIENT: &str = "age1kec32r8z4pruze28j7mdjs983kkm7f027zdv8c5mvggemyl785vsgpd7uj";

/// Paths only: `Config::parse` reads no key (`Config::load` does).
const SIGNING: &str =
    "signing:\n  key: /etc/coldkeep/signing_key\n  allowed_signers: /etc/coldkeep/allowed_signers\n";

fn base(nodes: &str) -> String {
    format!(
        "store:\n  path: /var/lib/coldkeep\nencryption:\n  recipients: [{RECIPIENT}]\nnodes:\n{nodes}{SIGNING}"
    )
}

const NODE: &str = "  - name: v1\n    host: 10.0.0.1\n    keystores:\n      - name: p12\n        kind: p12\n        path: /home/nodeadmin/tessellation/v1.p12\n";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/coldkeep/test.yaml"))
}

fn err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(&base(NODE)).unwrap();
    assert_eq!(c.jobs, 8);
    assert_eq!(c.store.path, Path::new("/var/lib/coldkeep"));
    let n = &c.nodes[0];
    assert_eq!(n.port, 22);
    assert_eq!(n.connect_timeout, Duration::from_secs(10));
    assert_eq!(n.io_timeout, Duration::from_secs(60));
    assert_eq!(n.host_key_policy, HostKeyPolicy::Strict);
    assert_eq!(n.keystores[0].max_size, coldkeep::config::DEFAULT_P12_MAX_SIZE);
    assert_eq!(c.encryption.recipients.len(), 1);
}

/// A long run of comments where the parser looks ahead (commented-out example nodes at the end,
/// as `init` writes the file) is not a parse error ("too many buffered comments" before).
#[test]
fn long_commented_blocks_parse() {
    let comments = "#   - name: example\n".repeat(200);
    let head =
        format!("store:\n  path: /var/lib/coldkeep\nencryption:\n  recipients: [{RECIPIENT}]\n{SIGNING}");
    // No node yet (init's output), and one added after the examples.
    let c = parse(&format!("{head}nodes:\n{comments}")).unwrap();
    assert!(c.nodes.is_empty());
    let c = parse(&format!("{head}nodes:\n{comments}{NODE}{comments}")).unwrap();
    assert_eq!(c.nodes.len(), 1);
}

#[test]
fn node_settings_override_ssh_defaults() {
    let text = format!(
        "store:\n  path: /s\nencryption:\n  recipients: [{RECIPIENT}, {RECIPIENT}]\nssh:\n  user: nodeadmin\n  \
         connect_timeout: 3s\n  io_timeout: 2m\n  identity_passphrase: {{env: PASS}}\n{SIGNING}jobs: 3\nnodes:\n\
         \x20 - name: v1\n    host: h\n    port: 2222\n    user: other\n    connect_timeout: 500ms\n    \
         host_key: SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s\n    keystores:\n      - name: p12\n        \
         kind: p12\n        path: /k.p12\n        password: {{file: /run/secrets/p12}}\n  - name: v2\n    host: h2\n    \
         keystores:\n      - {{name: p12, kind: p12, path: /k.p12}}\n"
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.jobs, 3);
    assert_eq!(c.encryption.recipients.len(), 1, "duplicates are merged");
    let (v1, v2) = (&c.nodes[0], &c.nodes[1]);
    assert_eq!((v1.user.as_str(), v1.port), ("other", 2222));
    assert_eq!(v1.connect_timeout, Duration::from_millis(500));
    assert_eq!(v2.connect_timeout, Duration::from_secs(3));
    assert_eq!(v2.io_timeout, Duration::from_secs(120));
    assert_eq!(v2.user, "nodeadmin");
    assert_eq!(v2.identity_passphrase, Some(Secret::Env("PASS".into())));
    assert_eq!(
        v1.keystores[0].password,
        Some(Secret::File("/run/secrets/p12".into()))
    );
    assert!(v1.host_key.is_some());
}

#[test]
fn unknown_key_is_located() {
    let e = err(&base(
        &NODE.replace("    host: 10.0.0.1\n", "    host: 10.0.0.1\n    hots: x\n"),
    ));
    assert_eq!(
        (e.line, e.file.as_path()),
        (8, Path::new("/etc/coldkeep/test.yaml"))
    );
    assert!(e.message.contains("hots"), "{e}");
    assert!(e.to_string().starts_with("/etc/coldkeep/test.yaml:8:"), "{e}");
}

#[test]
fn wrong_type_is_located() {
    let e = err(&base(
        &NODE.replace("    host: 10.0.0.1\n", "    host: 10.0.0.1\n    port: lots\n"),
    ));
    assert_eq!(e.line, 8, "{e}");
    assert!(e.snippet.as_deref().unwrap_or("").contains("port: lots"), "{e}");
}

#[test]
fn yaml_syntax_error_is_located() {
    let e = err("store:\n  path: /s\n  replicas: [a, b\nnodes: []\n");
    assert!(e.line >= 3, "{e}");
}

#[test]
fn duplicate_names_are_refused() {
    let e = err(&base(&format!("{NODE}{NODE}")));
    assert_eq!(e.line, 12, "{e}");
    assert!(
        e.message.contains("duplicate node name `v1` (first at line 6)"),
        "{e}"
    );
    let two_ks = NODE.to_string() + "      - name: p12\n        kind: p12\n        path: /x.p12\n";
    let e = err(&base(&two_ks));
    assert_eq!(e.line, 12, "{e}");
    assert!(e.message.contains("duplicate keystore name"), "{e}");
}

#[test]
fn recipients_are_checked() {
    let e = err(&base(NODE).replace(&format!("[{RECIPIENT}]"), "[]"));
    assert!(e.message.contains("no recipients"), "{e}");
    assert_eq!(e.line, 4, "{e}");
    let e = err(&base(NODE).replace(RECIPIENT, "age1notakey"));
    assert_eq!((e.line, e.column), (4, 16), "{e}");
    assert!(e.message.contains("not a valid age X25519 recipient"), "{e}");
    let e = err(&base(NODE).replace(RECIPIENT, "ssh-dss AAAAB3NzaC1kc3MAAACBAP"));
    assert_eq!(e.line, 4, "{e}");
}

#[test]
fn recipients_file_errors_name_that_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("recipients.txt");
    std::fs::write(&file, format!("# ops team\n{RECIPIENT}\n\nage1bad\n")).unwrap();
    let text = base(NODE).replace(
        &format!("  recipients: [{RECIPIENT}]\n"),
        &format!("  recipients_file: {}\n", file.display()),
    );
    let e = err(&text);
    assert_eq!((e.file.as_path(), e.line), (file.as_path(), 4), "{e}");
    std::fs::write(&file, format!("# ops team\n{RECIPIENT}\n")).unwrap();
    assert_eq!(parse(&text).unwrap().encryption.recipients.len(), 1);
}

#[test]
fn relative_store_path_is_refused() {
    let e = err(&base(NODE).replace("/var/lib/coldkeep", "backups"));
    assert_eq!(e.line, 2);
    assert!(e.message.contains("absolute"), "{e}");
}

#[test]
fn inline_secret_is_refused_and_not_echoed() {
    let text = base(&(NODE.to_string() + "        password: hunter2-very-secret\n"));
    let e = err(&text);
    assert_eq!(e.line, 12, "{e}");
    let shown = e.to_string();
    assert!(shown.contains("{env: NAME}"), "{shown}");
    assert!(!shown.contains("hunter2"), "secret echoed: {shown}");
    let text = base(NODE).replace("nodes:\n", "ssh:\n  identity_passphrase: 12345678901\nnodes:\n");
    let shown = err(&text).to_string();
    assert!(
        shown.contains("identity_passphrase") && !shown.contains("12345678901"),
        "{shown}"
    );
}

#[test]
fn semantic_errors_are_located() {
    let cases = [
        (
            "        kind: p12\n",
            "        kind: jks\n",
            "unknown keystore kind `jks`",
        ),
        (
            "    host: 10.0.0.1\n",
            "    host: 10.0.0.1\n    host_key: MD5:aa\n",
            "SHA256 fingerprint",
        ),
        ("  - name: v1\n", "  - name: ../v1\n", "invalid node name"),
        ("  - name: v1\n", "  - name: hardware\n", "`hardware` is reserved"),
        (
            "    host: 10.0.0.1\n",
            "    host: 10.0.0.1\n    file_transfer: rsync\n",
            "unknown file_transfer `rsync`",
        ),
        ("        path: /home", "        path: home", "absolute path"),
        (
            "    host: 10.0.0.1\n",
            "    host: 10.0.0.1\n    connect_timeout: 5 minutes\n",
            "not a duration",
        ),
        (
            "    host: 10.0.0.1\n",
            "    host: 10.0.0.1\n    host_key_policy: off\n",
            "host_key_policy",
        ),
    ];
    for (from, to, want) in cases {
        let e = err(&base(&NODE.replace(from, to)));
        assert!(e.line >= 6, "{want}: {e}");
        assert!(e.to_string().contains(want), "want {want:?} in {e}");
    }
    let e = err(&base("  - name: v1\n    host: h\n"));
    assert!(e.message.contains("no `keystores`"), "{e}");
}

#[test]
fn unreadable_file_has_no_position() {
    let e = Config::load(Path::new("/nonexistent/coldkeep.yaml")).unwrap_err();
    assert_eq!(e.line, 0);
    assert!(
        e.to_string()
            .starts_with("/nonexistent/coldkeep.yaml: cannot read"),
        "{e}"
    );
}

#[test]
fn shipped_configs_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "config/coldkeep.yaml",
        "examples/tessellation-validators.yaml",
        "examples/acra-fleet.yaml",
        "examples/hardware-keys.yaml",
    ] {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let c = Config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.nodes.is_empty() || file.contains("hardware"), "{file}");
    }
}

const ACRA: &str = "  - name: gw\n    host: 10.0.0.2\n    keystores:\n      - name: acra\n        kind: acra\n        path: /opt/acra/.acrakeys/\n";

#[test]
fn acra_keystores_and_master_key_placement() {
    let c = parse(&base(ACRA)).unwrap();
    let ks = &c.nodes[0].keystores[0];
    assert_eq!(ks.path, "/opt/acra/.acrakeys", "trailing slash dropped");
    assert_eq!(ks.max_size, coldkeep::config::DEFAULT_ACRA_MAX_SIZE);
    assert!(ks.acra_version.is_none() && ks.master_key.is_none());

    let with_key = ACRA.to_string() + "        master_key: {env: ACRA_MASTER_KEY}\n";
    // A master key needs its own store and recipients.
    let e = err(&base(&with_key));
    assert_eq!(e.line, 12, "{e}");
    assert!(e.message.contains("master_key_store"), "{e}");
    let apart = |store: &str| {
        base(&with_key)
            .replace(
                "  path: /var/lib/coldkeep\n",
                &format!("  path: /var/lib/coldkeep\n  master_key_store: {store}\n"),
            )
            .replace(
                "]\nnodes:",
                // Its own recipient: one that also opens keystores is refused.
                &format!("]\n  master_key_recipients: [{MASTER_RECIPIENT}]\nnodes:"),
            )
    };
    let c = parse(&apart("/srv/keys")).unwrap();
    assert_eq!(c.store.master_key_store.as_deref(), Some(Path::new("/srv/keys")));
    assert_eq!(c.encryption.master_key_recipients.len(), 1);
    assert!(matches!(c.nodes[0].keystores[0].master_key, Some(Secret::Env(_))));
    for inside in [
        "/var/lib/coldkeep",
        "/var/lib/coldkeep/keys",
        "/var/lib",
        "/srv/../var/lib/coldkeep/x",
    ] {
        let e = err(&apart(inside));
        assert!(e.message.contains("apart from `store.path`"), "{inside}: {e}");
        assert_eq!(e.line, 3, "{e}");
    }
    // Inline master keys are refused without echoing them.
    let e = err(&apart("/srv/keys").replace("{env: ACRA_MASTER_KEY}", "c2VjcmV0LWtleQ=="));
    assert!(!e.to_string().contains("c2VjcmV0LWtleQ"), "{e}");

    let cases = [
        (
            "        kind: acra\n",
            "        kind: acra\n        password: {env: X}\n",
            "applies only to keystores of kind `p12`",
        ),
        (
            "        kind: acra\n",
            "        kind: acra\n        version: 3\n",
            "`version` must be 1 or 2",
        ),
        (
            "        kind: acra\n",
            "        kind: acra\n        max_files: 0\n",
            "`max_files` must be positive",
        ),
    ];
    for (from, to, want) in cases {
        let e = err(&base(&ACRA.replace(from, to)));
        assert!(e.to_string().contains(want), "want {want:?} in {e}");
        assert!(e.line >= 10, "{e}");
    }
    let e = err(&base(&ACRA.replace(
        "kind: acra\n",
        "kind: acra\n        retention: {keep_daily: 0}\n",
    )));
    assert!(e.message.contains("`keep_daily: 0` keeps nothing"), "{e}");
    let e = err(&base(
        &NODE.replace("kind: p12\n", "kind: p12\n        public_path: /x\n"),
    ));
    assert!(
        e.message.contains("applies only to keystores of kind `acra`"),
        "{e}"
    );
}

//! `become:` / `become_user:` and `kind: file` in the config: defaults, per-node overrides, and
//! errors with line:column.

use coldkeep::config::{Become, Config, ConfigError, KeystoreKind};
use std::path::Path;

const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
/// Paths only: `Config::parse` reads no key (`Config::load` does).
const SIGNING: &str =
    "signing:\n  key: /etc/coldkeep/signing_key\n  allowed_signers: /etc/coldkeep/allowed_signers\n";

fn config(ssh: &str, node_extra: &str, keystore: &str) -> Result<Config, ConfigError> {
    let text = format!(
        "store:\n  path: /var/lib/coldkeep\nencryption:\n  recipients: [{RECIPIENT}]\nssh:\n  user: nodeadmin\n{ssh}\
         nodes:\n  - name: v1\n    host: 10.0.0.1\n{node_extra}    keystores:\n{keystore}\
         \x20 - name: v2\n    host: 10.0.0.2\n    keystores:\n{keystore}{SIGNING}"
    );
    Config::parse(&text, Path::new("/etc/coldkeep/test.yaml"))
}

const P12: &str = "      - name: p12\n        kind: p12\n        path: /home/nodeadmin/tessellation/v1.p12\n";

#[test]
fn become_defaults_to_none_and_is_overridable_per_node() {
    let c = config("", "", P12).unwrap();
    assert_eq!(c.nodes[0].become_, Become::None);
    let c = config("  become: sudo\n", "    become: none\n", P12).unwrap();
    assert_eq!(c.nodes[0].become_, Become::None);
    assert_eq!(c.nodes[1].become_, Become::Sudo { user: "root".into() });
    let c = config("", "    become: sudo\n    become_user: acra\n", P12).unwrap();
    assert_eq!(c.nodes[0].become_, Become::Sudo { user: "acra".into() });
    assert_eq!(c.nodes[1].become_, Become::None);
}

#[test]
fn bad_become_values_are_errors_with_line_and_column() {
    let e = config("  become: doas\n", "", P12).unwrap_err().to_string();
    assert!(
        e.contains("unknown become `doas`") && e.contains("test.yaml:7:"),
        "{e}"
    );
    let e = config("", "    become: sudo\n    become_user: \"root; id\"\n", P12)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not a valid user name") && e.contains("test.yaml:11:18"),
        "{e}"
    );
    let e = config("", "    become_user: root\n", P12)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`become_user` needs `become: sudo`"), "{e}");
}

#[test]
fn file_keystores_take_a_size_cap_and_refuse_p12_and_acra_keys() {
    let file = "      - name: cn\n        kind: file\n        path: /var/tessellation/nodectl/cn-config.yaml\n        max_size: 1000\n";
    let c = config("", "", file).unwrap();
    assert_eq!(c.nodes[0].keystores[0].kind, KeystoreKind::File);
    assert_eq!(c.nodes[0].keystores[0].max_size, 1000);
    let with_password = format!("{file}        password: {{env: X}}\n");
    let e = config("", "", &with_password).unwrap_err().to_string();
    assert!(
        e.contains("`password` applies only to keystores of kind `p12`"),
        "{e}"
    );
    let dir = "      - name: cn\n        kind: file\n        path: /var/tessellation/\n";
    let e = config("", "", dir).unwrap_err().to_string();
    assert!(e.contains("absolute path to a file"), "{e}");
}

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

//! Redaction of config lines shown in error snippets.
//!
//! A snippet shows the offending line of the operator's file. Values under `password`,
//! `passphrase` (any key containing either word) and `master_key` never appear in one, nor do
//! the lines of a block nested under such a key (a `{env: ..}` mapping written as a block, or a
//! `|` literal holding a pasted secret), nor the values of such keys inside inline `{...}`
//! mappings.
//!
//! The snippets and parser errors of config errors are made here, so every line shown passes
//! through the redaction.

use super::ConfigError;
use std::path::Path;

/// Whether a mapping key names a secret.
pub(super) fn is_secret_key(key: &str) -> bool {
    let k = key.trim().trim_matches(['"', '\'']).to_ascii_lowercase();
    k == "master_key" || k.contains("password") || k.contains("passphrase")
}

/// A parser error as a located [`ConfigError`], its snippet redacted (see [`snippet`]).
pub(super) fn yaml_error(e: &serde_saphyr::Error, text: &str, source: &Path) -> ConfigError {
    let bare = e.without_snippet().to_string();
    // The library appends its own position; we print ours in front instead.
    let message = match bare.rfind(" at line ") {
        Some(i) => bare[..i].to_string(),
        None => bare,
    };
    let (line, mut column) = e
        .location()
        .map(|l| (l.line() as usize, l.column() as usize))
        .unwrap_or((0, 0));
    let mut message = message;
    // On (or under) a secret key the parser's message may quote what is there (an unknown
    // mapping key, a duplicate key): only the messages coldkeep itself writes for secrets,
    // which quote nothing, are kept. The column is not past where the redaction starts.
    if let Some((_, at)) = secret_line(text, line) {
        if !super::raw::SECRET_MESSAGES.contains(&message.as_str()) {
            message = "not a valid secret: write `{env: NAME}` or `{file: PATH}` (details withheld: this \
                       line is under a secret key)"
                .to_string();
        }
        column = column.min(at);
    }
    let snippet = (line > 0).then(|| snippet(text, line, column, false));
    ConfigError {
        file: source.to_path_buf(),
        line,
        column,
        message,
        snippet,
    }
}

/// The source line with a caret under `column`. A line that holds or is nested under a secret
/// key shows nothing past the key; on other lines secret values in inline mappings are
/// redacted, and `redact` (the caller is unsure about the line) hides all of it.
pub(super) fn snippet(text: &str, line: usize, column: usize, redact: bool) -> String {
    let Some(src) = text.lines().nth(line.saturating_sub(1)) else {
        return String::new();
    };
    let mut col = column.max(1);
    let shown = match secret_line(text, line) {
        Some((shown, at)) => {
            col = col.min(at);
            shown
        }
        None if redact => {
            let indent = src.len() - src.trim_start().len();
            col = col.min(indent + 1);
            format!("{}<redacted>", &src[..indent])
        }
        None => redact_line(text, line),
    };
    let gutter = line.to_string().len();
    format!(
        "{:>gutter$} | {shown}\n{:>gutter$} | {}^",
        line,
        "",
        " ".repeat(col - 1)
    )
}

/// Line `line` (1-based) of `text` when it holds or is nested under a secret key: what may be
/// shown of it (the key and nothing past it, or only its indentation) and the 1-based column
/// an error on it may point at (where the redaction starts: a column further right would tell
/// the secret's length). `None` for other lines.
pub(super) fn secret_line(text: &str, line: usize) -> Option<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let src = lines.get(line.wrapping_sub(1))?;
    let indent = indent_of(src);
    if under_secret_key(&lines, line - 1) {
        return Some((format!("{}<redacted>", &src[..indent]), indent + 1));
    }
    let key = key_of(src).filter(|k| is_secret_key(k))?;
    // The text up to and including the key's colon, as written (`- ` and quotes kept).
    let upto = src.find(key).map(|at| at + key.len() + 1).unwrap_or(indent);
    let head = &src[..upto.min(src.len())];
    Some((format!("{head} <redacted>"), head.chars().count() + 2))
}

/// Line `line` (1-based) of `text`, safe to print.
pub(super) fn redact_line(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(src) = lines.get(line.wrapping_sub(1)) else {
        return String::new();
    };
    if under_secret_key(&lines, line - 1) {
        let indent = src.len() - src.trim_start().len();
        return format!("{}<redacted>", &src[..indent]);
    }
    redact_inline(src)
}

fn indent_of(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

/// The key of a `key: value` line (list dashes skipped).
fn key_of(l: &str) -> Option<&str> {
    let t = l.trim_start().trim_start_matches("- ").trim_start();
    let (key, _) = t.split_once(':')?;
    (!key.contains(['{', '[', ' '])).then_some(key)
}

/// Whether line `idx` is nested (by indentation) under a secret key.
fn under_secret_key(lines: &[&str], idx: usize) -> bool {
    let mut indent = indent_of(lines[idx]);
    if lines[idx].trim().is_empty() {
        return false;
    }
    for prev in lines[..idx].iter().rev() {
        if prev.trim().is_empty() || prev.trim_start().starts_with('#') {
            continue;
        }
        let i = indent_of(prev);
        if i < indent {
            if key_of(prev).is_some_and(is_secret_key) {
                return true;
            }
            indent = i;
            if i == 0 {
                break;
            }
        }
    }
    false
}

/// Replaces the value of every secret key in the line (block or inline `{...}` form).
fn redact_inline(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let chars: Vec<char> = src.chars().collect();
    let mut key_start = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        out.push(c);
        match c {
            '{' | ',' | '[' => key_start = out.len(),
            ':' if chars.get(i + 1).is_none_or(|n| n.is_whitespace()) => {
                let key: String = out[key_start..out.len() - 1]
                    .trim()
                    .trim_start_matches("- ")
                    .to_string();
                if is_secret_key(&key) {
                    // Skip the value: to the end of an inline `{...}` value, else to the next
                    // `,` / `}` of an enclosing inline mapping, else to the end of the line.
                    let mut j = i + 1;
                    while j < chars.len() && chars[j] == ' ' {
                        j += 1;
                    }
                    if j >= chars.len() || chars[j] == '#' {
                        // `password:` opening a block: nothing on this line to hide.
                        i += 1;
                        continue;
                    }
                    out.push_str(" <redacted>");
                    let mut depth = 0i32;
                    while j < chars.len() {
                        match chars[j] {
                            '{' | '[' => depth += 1,
                            '}' | ']' if depth > 0 => depth -= 1,
                            ',' | '}' | ']' if depth == 0 => break,
                            _ => {}
                        }
                        j += 1;
                    }
                    i = j;
                    key_start = out.len();
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_line_shows_nothing_past_its_key_and_points_no_further() {
        let text =
            "ks:\n  password: {S3cr3tPassw0rd}\n  - identity_passphrase:\n      hunter2: 1\n  host: h\n";
        assert_eq!(
            secret_line(text, 2),
            Some(("  password: <redacted>".to_string(), 13))
        );
        assert_eq!(
            secret_line(text, 3),
            Some(("  - identity_passphrase: <redacted>".to_string(), 26))
        );
        assert_eq!(secret_line(text, 4), Some(("      <redacted>".to_string(), 7)));
        assert_eq!(secret_line(text, 5), None);
        assert_eq!(secret_line(text, 9), None);
    }

    #[test]
    fn block_values_under_secret_keys_are_hidden() {
        assert_eq!(redact_line("password: hunter2", 1), "password: <redacted>");
        assert_eq!(
            redact_line("  - identity_passphrase: \"s3cr3t\"", 1),
            "  - identity_passphrase: <redacted>"
        );
        assert_eq!(redact_line("master_key: abc", 1), "master_key: <redacted>");
        // Not secrets: the master key's store and its public recipients.
        assert_eq!(redact_line("master_key_store: /x", 1), "master_key_store: /x");
        assert_eq!(redact_line("host: n1", 1), "host: n1");
    }

    #[test]
    fn inline_mappings_are_redacted_key_by_key() {
        assert_eq!(
            redact_line("ks: {name: a, password: hunter2, path: /p}", 1),
            "ks: {name: a, password: <redacted>, path: /p}"
        );
        assert_eq!(redact_line("password: {env: HUNTER2}", 1), "password: <redacted>");
        assert_eq!(
            redact_line("- {passphrase: {file: /s}, x: 1}", 1),
            "- {passphrase: <redacted>, x: 1}"
        );
    }

    #[test]
    fn lines_nested_under_a_secret_key_are_hidden() {
        let text = "nodes:\n  - name: n\n    password: |\n      hunter2\n    master_key:\n      env: X\n    host: h\n";
        assert_eq!(redact_line(text, 4), "      <redacted>");
        assert_eq!(redact_line(text, 6), "      <redacted>");
        assert_eq!(redact_line(text, 7), "    host: h");
        assert_eq!(redact_line(text, 3), "    password: <redacted>");
    }
}

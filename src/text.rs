//! Printing strings that come from a node or an artifact (file names, remote stderr, P12
//! aliases and subjects): one helper, so none of them can move the cursor, clear the screen,
//! forge a log line with a newline or reorder text with a bidi override on the operator's
//! terminal.

/// `s` with control characters (and Unicode bidi controls) escaped as `\n`, `\u{1b}`, ...;
/// everything else, other non-ASCII text included, unchanged.
pub fn escape_control(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || is_bidi_control(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` as a YAML double-quoted scalar that reads back as exactly `s`, for the YAML coldkeep
/// prints for an operator to keep (the entry `discover` prints, the node helper's policy): `\`
/// and `"` escaped, and every control, bidi, line or paragraph separator and BOM character
/// written as `\uXXXX`, so nothing in a node-supplied path can end the string, start a comment
/// or break the line.
pub fn yaml_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control()
                || is_bidi_control(c)
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') =>
            {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::escape_control;

    #[test]
    fn control_characters_are_escaped_and_text_is_kept() {
        assert_eq!(escape_control("key.p12"), "key.p12");
        assert_eq!(escape_control("zürich ключ"), "zürich ключ");
        assert_eq!(escape_control("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(escape_control("\x1b[2Jx"), "\\u{1b}[2Jx");
        assert_eq!(escape_control("evil\u{202e}gnp.p12"), "evil\\u{202e}gnp.p12");
    }
}

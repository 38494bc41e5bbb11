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

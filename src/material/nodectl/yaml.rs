//! cn-config.yaml read the way nodectl reads it: PyYAML `safe_load`, which is YAML 1.1.
//!
//! Two things differ from a YAML 1.2 reader, and both matter on real nodes:
//! - A duplicated key is not an error: the last value wins (PyYAML builds a dict). We keep the
//!   last value too, and say which key, where, and where it was first, so an operator sees that
//!   a hand edit left two `p12_key_name:` lines.
//! - Plain (unquoted) scalars are typed by YAML 1.1's rules, not YAML 1.2's: `True`/`yes`/`on`
//!   are booleans but `y` and `tRuE` are strings, `~`/`null`/empty are null but `None` is the
//!   string nodectl compares with, and `0123456789` is a string (no int pattern matches) where a
//!   1.2 reader makes it the number 123456789. serde-saphyr types scalars by its own rules, so
//!   each plain scalar's source text is read back through its span and typed here.
//!
//! A value nodectl then uses as text (a file name) is what Python's `str()` makes of it: `True`,
//! or an int in decimal. Floats keep their source text: Python's repr of a float is not
//! reproduced (a passphrase nodectl reads as a number is not checked, see [`super`]; a profile's
//! `p12_*` value that is not text stops nodectl; only a `global_p12` file name or location
//! written as a bare float, which no nodectl tool writes, could differ from nodectl's). Nothing
//! here ever prints a value: errors and warnings name keys and lines only, since the file holds
//! the P12 passphrase.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use zeroize::Zeroizing;

/// A YAML value after PyYAML's typing.
pub(super) enum Node {
    /// A mapping: entries in first-seen order, each key once (its last value).
    Map(Vec<Entry>),
    /// A sequence.
    Seq(Vec<Node>),
    /// Text (quoted, block, or a plain scalar no YAML 1.1 type matches). Wiped on drop: it may be
    /// the passphrase.
    Str(Zeroizing<String>),
    /// `True`, `no`, `On`, ... (YAML 1.1 booleans).
    Bool(bool),
    /// An int, as Python's `str()` writes it (decimal); wiped on drop (a passphrase may be
    /// digits only).
    Int(Zeroizing<String>),
    /// A float, as written (wiped on drop too).
    Float(Zeroizing<String>),
    /// `~`, `null`, empty.
    Null,
}

/// One key of a mapping.
pub(super) struct Entry {
    /// The key as text.
    pub key: String,
    /// The line of the key that won (1-based).
    pub line: u64,
    /// Its value.
    pub value: Node,
}

impl Node {
    /// A mapping's value for `key`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    /// A mapping's entries (empty for anything else).
    pub fn entries(&self) -> &[Entry] {
        match self {
            Node::Map(entries) => entries,
            _ => &[],
        }
    }

    /// The value as Python's `str()` would give it; `None` for null, mappings and sequences.
    pub fn text(&self) -> Option<Zeroizing<String>> {
        match self {
            Node::Str(s) => Some(s.clone()),
            Node::Bool(b) => Some(Zeroizing::new(if *b { "True" } else { "False" }.to_string())),
            Node::Int(s) | Node::Float(s) => Some(s.clone()),
            Node::Null | Node::Map(_) | Node::Seq(_) => None,
        }
    }

    /// Whether Python would call the value false (`if not value:`): False, None, 0, empty.
    pub fn is_falsy(&self) -> bool {
        match self {
            Node::Bool(b) => !b,
            Node::Null => true,
            Node::Str(s) => s.is_empty(),
            Node::Int(s) => s.as_str() == "0",
            Node::Float(s) => s.parse::<f64>().is_ok_and(|f| f == 0.0),
            Node::Map(m) => m.is_empty(),
            Node::Seq(s) => s.is_empty(),
        }
    }
}

/// Nesting refused beyond this depth (nodectl's files need 5).
const MAX_DEPTH: usize = 16;

/// Parses `text` as PyYAML would; `warnings` gets one line per duplicated key.
pub(super) fn load(text: &str, warnings: &mut Vec<String>) -> Result<Node, String> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::PassThrough,
        with_snippet: false,
        // nodectl's files open with ~50 comment lines; comments are not needed (and with them
        // the parser buffers at most 32 while looking ahead).
        emit_comments: false,
        // nodectl's deepest value is 5 levels down (pre-2.0: nodectl.profiles.<p>.p12.<key>); each
        // level of this reader costs stack, so deeper input is refused before it can overflow.
        budget: serde_saphyr::budget! { max_depth: MAX_DEPTH },
    };
    let raw: Spanned<Raw> =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| match e.location() {
            // Never the parser's message: it may quote the line, and the line may be the passphrase.
            Some(l) => format!(
                "YAML error at line {}, column {} (details withheld: the file holds the P12 passphrase)",
                l.line(),
                l.column()
            ),
            None => "YAML error (details withheld: the file holds the P12 passphrase)".to_string(),
        })?;
    Ok(resolve(raw, text, &mut Vec::new(), warnings))
}

/// What serde-saphyr hands over, before PyYAML's typing.
enum Raw {
    Map(Vec<(Spanned<String>, Spanned<Raw>)>),
    Seq(Vec<Spanned<Raw>>),
    /// A scalar the parser gave as text (plain text it could not type, or quoted).
    Text(Zeroizing<String>),
    /// A scalar it typed (a number, a boolean, null): its source text decides again.
    Typed,
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a YAML value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Raw, E> {
                Ok(Raw::Typed)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Raw, E> {
                Ok(Raw::Typed)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Raw, E> {
                Ok(Raw::Typed)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Raw, E> {
                Ok(Raw::Typed)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Raw, E> {
                Ok(Raw::Typed)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Raw, E> {
                Ok(Raw::Typed)
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Typed)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Typed)
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw::Text(Zeroizing::new(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Raw, E> {
                Ok(Raw::Text(Zeroizing::new(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Raw::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Raw::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// Types `raw` as PyYAML does; `path` names where it is, for warnings.
fn resolve(raw: Spanned<Raw>, text: &str, path: &mut Vec<String>, warnings: &mut Vec<String>) -> Node {
    let source = source_text(&raw, text);
    match raw.value {
        Raw::Map(pairs) => {
            let mut entries: Vec<Entry> = Vec::new();
            for (key, value) in pairs {
                path.push(key.value.clone());
                let value = resolve(value, text, path, warnings);
                path.pop();
                let line = key.referenced.line();
                match entries.iter_mut().find(|e| e.key == key.value) {
                    Some(first) => {
                        warnings.push(duplicate_warning(path, &key.value, first.line, line));
                        first.line = line;
                        first.value = value;
                    }
                    None => entries.push(Entry {
                        key: key.value,
                        line,
                        value,
                    }),
                }
            }
            Node::Map(entries)
        }
        Raw::Seq(items) => Node::Seq(
            items
                .into_iter()
                .map(|i| resolve(i, text, path, warnings))
                .collect(),
        ),
        Raw::Text(s) => match source {
            Source::Plain(_) => plain(&s),
            Source::Quoted | Source::Unknown => Node::Str(s),
        },
        Raw::Typed => match source {
            Source::Plain(raw) => plain(raw),
            // A typed value we cannot see the text of (should not happen): null.
            Source::Quoted | Source::Unknown => Node::Null,
        },
    }
}

/// The warning for a duplicated key: every part of it that comes from the file (the key and each
/// key of its path) escaped, since the file comes from a node and the warning is printed.
fn duplicate_warning(path: &[String], key: &str, first: u64, line: u64) -> String {
    use crate::text::escape_control;
    let place = if path.is_empty() {
        "at the top level".to_string()
    } else {
        let parts: Vec<String> = path.iter().map(|p| escape_control(p)).collect();
        format!("under `{}`", parts.join("."))
    };
    format!(
        "duplicate key `{}` {place} at line {line} (first at line {first}): nodectl (PyYAML) uses \
         the last one, and so does coldkeep",
        escape_control(key)
    )
}

/// How a scalar was written.
enum Source<'t> {
    /// Unquoted: its text (one line; a folded multi-line one comes from the parser).
    Plain(&'t str),
    /// Quoted or a block scalar: always a string.
    Quoted,
    /// No span (not a scalar, or a reader without byte offsets).
    Unknown,
}

/// Looks at the scalar's definition in the source: a quote or block indicator, or plain text.
fn source_text<'t>(raw: &Spanned<Raw>, text: &'t str) -> Source<'t> {
    let span = raw.defined.span();
    let (Some(start), Some(len)) = (span.byte_offset(), span.byte_len()) else {
        return Source::Unknown;
    };
    let (start, len) = (start as usize, len as usize);
    let Some(mut s) = text.get(start..start.saturating_add(len)) else {
        return Source::Unknown;
    };
    // Properties before the scalar: `&anchor`, `!tag` (a tag makes it a string for our use).
    loop {
        s = s.trim_start();
        if s.starts_with('!') {
            return Source::Quoted;
        }
        match s.strip_prefix('&') {
            Some(rest) => s = rest.split_once(char::is_whitespace).map_or("", |(_, r)| r),
            None => break,
        }
    }
    match s.chars().next() {
        Some('\'' | '"' | '|' | '>') => Source::Quoted,
        _ => Source::Plain(s.trim_end()),
    }
}

/// A plain scalar typed by PyYAML's implicit resolvers (YAML 1.1).
fn plain(s: &str) -> Node {
    if matches!(s, "" | "~" | "null" | "Null" | "NULL") {
        return Node::Null;
    }
    if let Some(b) = bool_11(s) {
        return Node::Bool(b);
    }
    if let Some(i) = int_11(s) {
        return Node::Int(Zeroizing::new(i.to_string()));
    }
    if float_11(s) {
        return Node::Float(Zeroizing::new(s.to_string()));
    }
    Node::Str(Zeroizing::new(s.to_string()))
}

fn bool_11(s: &str) -> Option<bool> {
    match s {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

/// PyYAML's int: `0b...`, `0x...`, octal `0[0-7_]+`, decimal without a leading zero, and
/// sexagesimal `1:30`; underscores ignored.
fn int_11(s: &str) -> Option<i128> {
    let (sign, body) = match s.as_bytes().first()? {
        b'-' => (-1, &s[1..]),
        b'+' => (1, &s[1..]),
        _ => (1, s),
    };
    let digits = |t: &str, radix: u32| -> Option<i128> {
        let t: String = t.chars().filter(|c| *c != '_').collect();
        if t.is_empty() {
            return None;
        }
        i128::from_str_radix(&t, radix).ok()
    };
    let value = if let Some(b) = body.strip_prefix("0b") {
        b.chars()
            .all(|c| matches!(c, '0' | '1' | '_'))
            .then(|| digits(b, 2))??
    } else if let Some(h) = body.strip_prefix("0x") {
        h.chars()
            .all(|c| c.is_ascii_hexdigit() || c == '_')
            .then(|| digits(h, 16))??
    } else if body == "0" {
        0
    } else if let Some(o) = body.strip_prefix('0') {
        o.chars()
            .all(|c| matches!(c, '0'..='7' | '_'))
            .then(|| digits(o, 8))??
    } else if body.contains(':') {
        let mut parts = body.split(':');
        let head = parts.next()?;
        if !head.starts_with(|c: char| matches!(c, '1'..='9'))
            || !head.chars().all(|c| c.is_ascii_digit() || c == '_')
        {
            return None;
        }
        let mut v = digits(head, 10)?;
        for p in parts {
            if p.is_empty()
                || p.len() > 2
                || !p.chars().all(|c| c.is_ascii_digit())
                || p.parse::<u8>().ok()? > 59
            {
                return None;
            }
            v = v.checked_mul(60)?.checked_add(p.parse::<i128>().ok()?)?;
        }
        v
    } else {
        if !body.starts_with(|c: char| matches!(c, '1'..='9'))
            || !body.chars().all(|c| c.is_ascii_digit() || c == '_')
        {
            return None;
        }
        digits(body, 10)?
    };
    Some(sign * value)
}

/// PyYAML's float: digits with a `.` (exponent optional, with a sign), `.inf`, `.nan`, and
/// sexagesimal with a fraction.
fn float_11(s: &str) -> bool {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    if matches!(body, ".inf" | ".Inf" | ".INF") || matches!(s, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    if let Some(e) = exponent {
        let Some(digits) = e.strip_prefix(['-', '+']) else {
            return false;
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    let Some((whole, fraction)) = mantissa.split_once('.') else {
        return false;
    };
    let whole_ok = whole.is_empty()
        || whole.starts_with(|c: char| c.is_ascii_digit())
            && whole
                .split(':')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '_'));
    whole_ok
        && fraction.chars().all(|c| c.is_ascii_digit() || c == '_')
        && !(whole.is_empty() && fraction.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(yaml: &str, key: &str) -> Node {
        let mut w = Vec::new();
        let Node::Map(entries) = load(yaml, &mut w).unwrap() else {
            panic!("not a map")
        };
        entries.into_iter().find(|e| e.key == key).unwrap().value
    }

    fn text_of(yaml: &str) -> Option<String> {
        value(yaml, "k").text().map(|s| s.to_string())
    }

    #[test]
    fn plain_scalars_are_typed_as_yaml_1_1() {
        assert!(matches!(value("k: True\n", "k"), Node::Bool(true)));
        assert!(matches!(value("k: off\n", "k"), Node::Bool(false)));
        // Not booleans in YAML 1.1 (serde-saphyr alone would say they are).
        assert_eq!(text_of("k: y\n").as_deref(), Some("y"));
        assert_eq!(text_of("k: tRuE\n").as_deref(), Some("tRuE"));
        // Not null in YAML 1.1: the string nodectl compares with.
        assert_eq!(text_of("k: None\n").as_deref(), Some("None"));
        assert!(matches!(value("k: ~\n", "k"), Node::Null));
        assert!(matches!(value("k:\n", "k"), Node::Null));
        // No int pattern matches a leading zero followed by 8 or 9: a string, digits kept.
        assert_eq!(text_of("k: 0123456789\n").as_deref(), Some("0123456789"));
        // Octal, hex, binary, sexagesimal and underscores, as Python's str() writes them.
        assert_eq!(text_of("k: 0777\n").as_deref(), Some("511"));
        assert_eq!(text_of("k: 0x1F\n").as_deref(), Some("31"));
        assert_eq!(text_of("k: 0b101\n").as_deref(), Some("5"));
        assert_eq!(text_of("k: 1:30\n").as_deref(), Some("90"));
        assert_eq!(text_of("k: 1_000\n").as_deref(), Some("1000"));
        assert_eq!(text_of("k: -12\n").as_deref(), Some("-12"));
        assert_eq!(text_of("k: True\n").as_deref(), Some("True"));
        // Floats keep their text; `1e3` has no dot, so YAML 1.1 makes it a string.
        assert!(matches!(value("k: 1.50\n", "k"), Node::Float(ref f) if f.as_str() == "1.50"));
        assert!(matches!(value("k: 1e3\n", "k"), Node::Str(_)));
        assert!(matches!(value("k: 1.5e+3\n", "k"), Node::Float(_)));
    }

    #[test]
    fn quoted_and_block_scalars_are_strings_whatever_they_say() {
        assert_eq!(text_of("k: 'True'\n").as_deref(), Some("True"));
        assert!(matches!(value("k: 'True'\n", "k"), Node::Str(_)));
        assert!(matches!(value("k: \"0777\"\n", "k"), Node::Str(ref s) if s.as_str() == "0777"));
        assert_eq!(text_of("k: 'it''s'\n").as_deref(), Some("it's"));
        assert_eq!(text_of("k: \"a\\tb\"\n").as_deref(), Some("a\tb"));
        assert_eq!(text_of("k: |\n  block\n").as_deref(), Some("block\n"));
        assert_eq!(text_of("k: !!str 12\n").as_deref(), Some("12"));
        assert_eq!(text_of("a: &x 0777\nk: *x\n").as_deref(), Some("511"));
        assert_eq!(text_of("a: &x '0777'\nk: *x\n").as_deref(), Some("0777"));
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_and_are_named_with_lines() {
        let mut w = Vec::new();
        let doc = load(
            "nodectl:\n  dag-l0:\n    p12_key_name: a.p12\n    layer: 0\n    p12_key_name: b.p12\n",
            &mut w,
        )
        .unwrap();
        let l0 = doc.get("nodectl").unwrap().get("dag-l0").unwrap();
        assert_eq!(l0.get("p12_key_name").unwrap().text().unwrap().as_str(), "b.p12");
        assert_eq!(l0.entries().len(), 2, "one entry per key");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("`p12_key_name`")
                && w[0].contains("under `nodectl.dag-l0`")
                && w[0].contains("line 5")
                && w[0].contains("first at line 3"),
            "{}",
            w[0]
        );
        assert!(!w[0].contains("b.p12"), "values are never repeated: {}", w[0]);
    }

    #[test]
    fn a_duplicate_warning_escapes_every_key_of_its_path() {
        let mut w = Vec::new();
        let yaml =
            "nodectl:\n  \"dag\\e[31m\\nFORGED LINE\":\n    p12_key_name: a.p12\n    p12_key_name: b.p12\n";
        load(yaml, &mut w).unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            !w[0].chars().any(char::is_control),
            "a control character reaches the terminal: {:?}",
            w[0]
        );
        assert!(
            w[0].contains("under `nodectl.dag\\u{1b}[31m\\nFORGED LINE`"),
            "{}",
            w[0]
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        for open in ["[", "{a: ", "- "] {
            let deep = open.repeat(5000);
            assert!(load(&deep, &mut Vec::new()).is_err(), "{open}");
        }
        let nested = "a:\n  b:\n    c:\n      d:\n        e: 1\n";
        assert!(load(nested, &mut Vec::new()).is_ok());
    }

    #[test]
    fn errors_never_repeat_the_file() {
        let err = load("nodectl:\n  p12:\n    passphrase: @Str0ngPass\n", &mut Vec::new())
            .err()
            .unwrap();
        assert!(!err.contains("Str0ng") && err.contains("line 3"), "{err}");
    }
}

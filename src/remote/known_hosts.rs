//! known_hosts read with OpenSSH's semantics (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT").
//!
//! libssh2's own reader silently drops `@revoked` and `@cert-authority` lines, wildcard patterns
//! and `!` negations, so a revoked key that is also listed normally would be accepted, and
//! `accept-new` would record a key for a host that a wildcard line already covers. This module
//! parses every line itself and answers the one question coldkeep asks: what does the file say
//! about this key for `host:port`?
//!
//! Semantics kept from OpenSSH:
//! - the name looked up is `host` on port 22 and `[host]:port` otherwise;
//! - a line's host field is a comma-separated pattern list (`*`, `?`, `!negation`), matched
//!   case-insensitively; a matching negated pattern makes the whole line not match;
//! - hashed names `|1|salt|hmac-sha1` match when HMAC-SHA1(salt, name) equals the hash;
//! - `@revoked` lines refuse their key; `@cert-authority` lines name a CA for host certificates.
//!
//! One deliberate difference: a key under `@revoked` is refused for every host, whatever the
//! line's host patterns say. A revoked key is one the operator believes compromised; OpenSSH
//! would accept it for a host whose own line lists it, coldkeep does not.

/// What a known_hosts line is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// A plain host key line.
    None,
    /// `@revoked`: the key must never be accepted.
    Revoked,
    /// `@cert-authority`: the key is a CA that signs host certificates.
    CertAuthority,
}

/// The host field of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hosts {
    /// `|1|salt|hash`: one hashed name.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    /// Comma-separated patterns; `true` marks a `!` negation.
    Patterns(Vec<(bool, String)>),
}

/// One parsed known_hosts line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number, for messages.
    pub line: usize,
    /// The line's marker.
    pub marker: Marker,
    hosts: Hosts,
    /// Key type as written (`ssh-ed25519`, ...).
    pub key_type: String,
    /// The raw public key blob.
    pub blob: Vec<u8>,
}

/// A parsed known_hosts file; lines that do not parse are skipped (as OpenSSH does) and counted.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    /// Every line that parsed.
    pub entries: Vec<Entry>,
    /// Line numbers of lines that did not parse (reported at debug level by the caller).
    pub skipped: Vec<usize>,
}

/// The file's verdict on a key presented by `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A plain line for this host lists this key.
    Match { line: usize },
    /// The key is under `@revoked` (line given): refuse it, whatever the policy.
    Revoked { line: usize },
    /// Lines for this host exist (plain or `@cert-authority`) but none lists this key.
    Mismatch { lines: Vec<usize> },
    /// No line matches this host.
    NotFound,
}

/// The name OpenSSH looks up: `host` on port 22, `[host]:port` otherwise.
pub fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

impl KnownHosts {
    /// Parses known_hosts text. Never fails: a line that does not parse is skipped.
    pub fn parse(text: &str) -> KnownHosts {
        let mut kh = KnownHosts::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line, i + 1) {
                Some(entry) => kh.entries.push(entry),
                None => kh.skipped.push(i + 1),
            }
        }
        kh
    }

    /// What the file says about `blob` presented by `host:port`.
    pub fn check(&self, host: &str, port: u16, blob: &[u8]) -> Verdict {
        if let Some(e) = self.revoked(blob) {
            return Verdict::Revoked { line: e.line };
        }
        let name = lookup_name(host, port);
        let mut lines = Vec::new();
        for e in &self.entries {
            if e.marker == Marker::Revoked || !e.matches_name(&name) {
                continue;
            }
            if e.marker == Marker::None && e.blob == blob {
                return Verdict::Match { line: e.line };
            }
            lines.push(e.line);
        }
        if lines.is_empty() {
            Verdict::NotFound
        } else {
            Verdict::Mismatch { lines }
        }
    }

    /// The `@revoked` line listing `blob`, if any (for any host: see the module docs).
    pub fn revoked(&self, blob: &[u8]) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.marker == Marker::Revoked && e.blob == blob)
    }

    /// `@cert-authority` lines that apply to `host:port`.
    pub fn cert_authorities(&self, host: &str, port: u16) -> Vec<&Entry> {
        let name = lookup_name(host, port);
        self.entries
            .iter()
            .filter(|e| e.marker == Marker::CertAuthority && e.matches_name(&name))
            .collect()
    }
}

impl Entry {
    /// Whether this line's host field matches the looked-up name (`host` or `[host]:port`).
    pub fn matches_name(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        match &self.hosts {
            Hosts::Hashed { salt, hash } => hmac_sha1(salt, name.as_bytes()).is_some_and(|h| &h == hash),
            Hosts::Patterns(patterns) => {
                let mut positive = false;
                for (negated, pattern) in patterns {
                    if wildcard_match(pattern, &name) {
                        if *negated {
                            return false;
                        }
                        positive = true;
                    }
                }
                positive
            }
        }
    }
}

fn parse_line(line: &str, number: usize) -> Option<Entry> {
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let marker = if first.starts_with('@') {
        let m = match first {
            "@revoked" => Marker::Revoked,
            "@cert-authority" => Marker::CertAuthority,
            _ => return None,
        };
        first = fields.next()?;
        m
    } else {
        Marker::None
    };
    let hosts = parse_hosts(first)?;
    let key_type = fields.next()?.to_string();
    let blob = base64_decode(fields.next()?)?;
    // The blob names its own type; a line whose type field disagrees is malformed.
    if super::blob_key_type(&blob) != Some(key_type.as_str()) {
        return None;
    }
    Some(Entry {
        line: number,
        marker,
        hosts,
        key_type,
        blob,
    })
}

fn parse_hosts(field: &str) -> Option<Hosts> {
    if let Some(rest) = field.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|')?;
        let salt = base64_decode(salt)?;
        let hash = base64_decode(hash)?;
        if hash.len() != 20 {
            return None;
        }
        return Some(Hosts::Hashed { salt, hash });
    }
    if field.starts_with('|') {
        return None;
    }
    let patterns: Vec<(bool, String)> = field
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.strip_prefix('!') {
            Some(rest) => (true, rest.to_ascii_lowercase()),
            None => (false, p.to_ascii_lowercase()),
        })
        .collect();
    if patterns.is_empty() {
        return None;
    }
    Some(Hosts::Patterns(patterns))
}

/// OpenSSH's `match_pattern`: `*` any run of characters, `?` exactly one.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    // Iterative matcher with backtracking to the last `*` (linear-ish, no recursion blow-up).
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let pkey = openssl::pkey::PKey::hmac(key).ok()?;
    let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha1(), &pkey).ok()?;
    signer.update(data).ok()?;
    signer.sign_to_vec().ok()
}

/// Standard base64 (padding optional); `None` on any other character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A syntactically valid ssh-ed25519 blob with a chosen last byte.
    fn blob(tag: u8) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&11u32.to_be_bytes());
        b.extend_from_slice(b"ssh-ed25519");
        b.extend_from_slice(&32u32.to_be_bytes());
        b.extend_from_slice(&[tag; 32]);
        b
    }

    fn line(prefix: &str, tag: u8) -> String {
        format!("{prefix} ssh-ed25519 {}", super::super::base64_encode(&blob(tag)))
    }

    #[test]
    fn base64_round_trips() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foobar", &blob(7)] {
            let enc = super::super::base64_encode(data);
            assert_eq!(base64_decode(&enc).unwrap(), data);
        }
        assert!(base64_decode("a b").is_none());
    }

    #[test]
    fn wildcards_follow_openssh() {
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("*.example.com", "a.example.com"));
        assert!(!wildcard_match("*.example.com", "example.com"));
        assert!(wildcard_match("h?st", "host"));
        assert!(!wildcard_match("h?st", "hoost"));
        assert!(wildcard_match("[10.0.0.*]:2222", "[10.0.0.5]:2222"));
        assert!(!wildcard_match("[10.0.0.*]:2222", "[10.0.0.5]:22"));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn plain_ported_and_mismatched_lines() {
        let kh = KnownHosts::parse(&format!(
            "# comment\n{}\n{}\n",
            line("node1,10.0.0.1", 1),
            line("[node2]:2222", 2)
        ));
        assert_eq!(kh.entries.len(), 2);
        assert_eq!(kh.check("node1", 22, &blob(1)), Verdict::Match { line: 2 });
        assert_eq!(kh.check("NODE1", 22, &blob(1)), Verdict::Match { line: 2 });
        assert_eq!(kh.check("10.0.0.1", 22, &blob(1)), Verdict::Match { line: 2 });
        assert_eq!(kh.check("node2", 2222, &blob(2)), Verdict::Match { line: 3 });
        // The port matters: node2 on 22 is not listed, node1 on 2222 neither.
        assert_eq!(kh.check("node2", 22, &blob(2)), Verdict::NotFound);
        assert_eq!(kh.check("node1", 2222, &blob(1)), Verdict::NotFound);
        assert_eq!(
            kh.check("node1", 22, &blob(9)),
            Verdict::Mismatch { lines: vec![2] }
        );
    }

    #[test]
    fn revoked_keys_are_refused_even_when_listed() {
        let kh = KnownHosts::parse(&format!("{}\n{}\n", line("node1", 1), line("@revoked *", 1)));
        assert_eq!(kh.check("node1", 22, &blob(1)), Verdict::Revoked { line: 2 });
        // Revocation applies to every host, even one the line's patterns do not name.
        let kh = KnownHosts::parse(&line("@revoked other", 3));
        assert_eq!(kh.check("node1", 22, &blob(3)), Verdict::Revoked { line: 1 });
        assert_eq!(kh.check("node1", 22, &blob(4)), Verdict::NotFound);
    }

    #[test]
    fn wildcard_and_negation() {
        let kh = KnownHosts::parse(&line("*.prod,!db.prod", 5));
        assert_eq!(kh.check("web.prod", 22, &blob(5)), Verdict::Match { line: 1 });
        assert_eq!(
            kh.check("web.prod", 22, &blob(6)),
            Verdict::Mismatch { lines: vec![1] }
        );
        // The negation removes db.prod from the line: an unknown host, not a listed one.
        assert_eq!(kh.check("db.prod", 22, &blob(5)), Verdict::NotFound);
    }

    #[test]
    fn hashed_names_match_ssh_keygen_output() {
        // The form `ssh-keygen -H` writes (tests/remote_session.rs checks a real one).
        let salt = b"0123456789abcdefghij";
        let hash = hmac_sha1(salt, b"node1").unwrap();
        let field = format!(
            "|1|{}|{}",
            super::super::base64_encode(salt),
            super::super::base64_encode(&hash)
        );
        let kh = KnownHosts::parse(&line(&field, 8));
        assert_eq!(kh.check("node1", 22, &blob(8)), Verdict::Match { line: 1 });
        assert_eq!(kh.check("node2", 22, &blob(8)), Verdict::NotFound);
    }

    #[test]
    fn cert_authority_lines_make_a_host_known() {
        let kh = KnownHosts::parse(&line("@cert-authority *.prod", 9));
        assert_eq!(kh.cert_authorities("a.prod", 22).len(), 1);
        assert!(kh.cert_authorities("a.test", 22).is_empty());
        // A plain key for a CA-covered host is not silently "new".
        assert_eq!(
            kh.check("a.prod", 22, &blob(1)),
            Verdict::Mismatch { lines: vec![1] }
        );
    }

    #[test]
    fn malformed_lines_are_skipped_not_fatal() {
        let text = format!(
            "garbage\n@unknown-marker h ssh-ed25519 AAAA\nh ssh-rsa {}\n|1|x|y ssh-ed25519 AAAA\n{}\n",
            super::super::base64_encode(&blob(1)),
            line("ok", 1)
        );
        let kh = KnownHosts::parse(&text);
        assert_eq!(kh.skipped, vec![1, 2, 3, 4]);
        assert_eq!(kh.check("ok", 22, &blob(1)), Verdict::Match { line: 5 });
    }
}

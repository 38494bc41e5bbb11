//! A small, bounds-checked, non-recursive BER/DER reader for structure checks.

/// Maximum nesting depth accepted by the structure walk.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub tag: u8,
    pub constructed: bool,
    /// `None` = indefinite length.
    pub len: Option<usize>,
    /// Offset of the first content byte.
    pub content: usize,
}

/// Reads one tag+length header at `pos`. Only single-byte tags are accepted (PKCS#12 and
/// Acra key rings use no high tag numbers).
pub(crate) fn read_header(bytes: &[u8], pos: usize) -> Result<Header, String> {
    let tag = *bytes.get(pos).ok_or("truncated (missing tag)")?;
    if tag & 0x1f == 0x1f {
        return Err(format!("unsupported multi-byte ASN.1 tag at offset {pos}"));
    }
    let first = *bytes.get(pos + 1).ok_or("truncated (missing length)")?;
    let constructed = tag & 0x20 != 0;
    let (len, content) = if first < 0x80 {
        (Some(first as usize), pos + 2)
    } else if first == 0x80 {
        if !constructed {
            return Err(format!("indefinite length on a primitive value at offset {pos}"));
        }
        (None, pos + 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n > 4 || first == 0xff {
            return Err(format!("unsupported ASN.1 length at offset {pos}"));
        }
        let len_bytes = bytes
            .get(pos + 2..pos + 2 + n)
            .ok_or("truncated (length bytes)")?;
        let len = len_bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (Some(len), pos + 2 + n)
    };
    if let Some(len) = len
        && content.checked_add(len).is_none_or(|end| end > bytes.len())
    {
        return Err(format!(
            "truncated (value at offset {pos} needs {len} bytes, file ends early)"
        ));
    }
    Ok(Header {
        tag,
        constructed,
        len,
        content,
    })
}

/// Walks the complete TLV tree starting at `pos` without recursion; returns the offset just past
/// it (past the end-of-contents octets for indefinite lengths).
pub(crate) fn skip_element(bytes: &[u8], pos: usize) -> Result<usize, String> {
    // Stack of open constructed values: Some(end) for definite, None for indefinite.
    let mut stack: Vec<Option<usize>> = Vec::new();
    let mut cur = pos;
    loop {
        // Close finished definite containers / detect end-of-contents for indefinite ones.
        match stack.last().copied() {
            Some(Some(end)) if cur == end => {
                stack.pop();
                if stack.is_empty() {
                    return Ok(cur);
                }
                continue;
            }
            Some(Some(end)) if cur > end => {
                return Err("ASN.1 value overruns its enclosing length".to_string());
            }
            Some(None) if bytes.get(cur..cur + 2) == Some(&[0u8, 0u8][..]) => {
                stack.pop();
                cur += 2;
                if stack.is_empty() {
                    return Ok(cur);
                }
                continue;
            }
            _ => {}
        }
        let h = read_header(bytes, cur)?;
        if h.tag == 0 {
            return Err(format!("unexpected end-of-contents at offset {cur}"));
        }
        if let Some(Some(end)) = stack.last().copied()
            && h.content + h.len.unwrap_or(0) > end
        {
            return Err("ASN.1 value overruns its enclosing length".to_string());
        }
        if h.constructed {
            if stack.len() >= MAX_DEPTH {
                return Err("ASN.1 nesting too deep".to_string());
            }
            match h.len {
                Some(len) => {
                    if len == 0 {
                        cur = h.content;
                        if stack.is_empty() {
                            return Ok(cur);
                        }
                        continue;
                    }
                    stack.push(Some(h.content + len));
                }
                None => stack.push(None),
            }
            cur = h.content;
        } else {
            // read_header checked the definite length fits in the file.
            cur = h.content + h.len.unwrap_or(0);
            if stack.is_empty() {
                return Ok(cur);
            }
        }
    }
}

/// One element: its header, where it starts and where it ends (past its end-of-contents octets
/// when its length is indefinite).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv {
    /// Tag and length.
    pub h: Header,
    /// Offset just past the element.
    pub end: usize,
}

impl Tlv {
    /// Offset just past the last content byte (before the end-of-contents octets).
    pub fn content_end(&self) -> usize {
        match self.h.len {
            Some(len) => self.h.content + len,
            None => self.end - 2,
        }
    }
}

/// The element at `pos`, walked to its end.
pub(crate) fn tlv(bytes: &[u8], pos: usize) -> Result<Tlv, String> {
    Ok(Tlv {
        h: read_header(bytes, pos)?,
        end: skip_element(bytes, pos)?,
    })
}

/// The elements inside a constructed one, in order.
pub(crate) fn children(bytes: &[u8], parent: &Tlv) -> Result<Vec<Tlv>, String> {
    if !parent.h.constructed {
        return Err(format!(
            "expected a constructed value, found tag {:#04x}",
            parent.h.tag
        ));
    }
    let mut out = Vec::new();
    let mut cur = parent.h.content;
    while cur < parent.content_end() {
        let child = tlv(bytes, cur)?;
        cur = child.end;
        out.push(child);
    }
    Ok(out)
}

/// The bytes of an OCTET STRING (or an implicitly tagged one): its content when primitive, its
/// chunks joined when constructed (BER, as BouncyCastle writes them).
pub(crate) fn octets<'b>(bytes: &'b [u8], t: &Tlv) -> Result<std::borrow::Cow<'b, [u8]>, String> {
    if !t.h.constructed {
        return Ok(std::borrow::Cow::Borrowed(&bytes[t.h.content..t.content_end()]));
    }
    // Chunks may be constructed again; a stack keeps this non-recursive.
    let mut out = Vec::new();
    let mut stack = vec![children(bytes, t)?.into_iter()];
    while let Some(top) = stack.last_mut() {
        match top.next() {
            None => {
                stack.pop();
            }
            Some(c) if c.h.constructed => {
                if stack.len() >= MAX_DEPTH {
                    return Err("OCTET STRING chunks nested too deep".to_string());
                }
                let inner = children(bytes, &c)?;
                stack.push(inner.into_iter());
            }
            Some(c) => out.extend_from_slice(&bytes[c.h.content..c.content_end()]),
        }
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// A non-negative INTEGER; one wider than 64 bits reads as `u64::MAX` (for counts, "too many").
pub(crate) fn unsigned(bytes: &[u8], t: &Tlv) -> Result<u64, String> {
    if t.h.tag != 0x02 {
        return Err(format!("expected an INTEGER, found tag {:#04x}", t.h.tag));
    }
    let value = &bytes[t.h.content..t.content_end()];
    match value.first() {
        None => Err("empty INTEGER".to_string()),
        Some(b) if b & 0x80 != 0 => Err("negative INTEGER".to_string()),
        Some(_) => {
            let significant = value.iter().skip_while(|b| **b == 0).count();
            if significant > 8 {
                return Ok(u64::MAX);
            }
            Ok(value.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_octets_and_integers_of_der_and_ber() {
        // SEQUENCE { INTEGER 2000000, OCTET STRING "ab" }
        let der = [0x30, 0x09, 0x02, 0x03, 0x1e, 0x84, 0x80, 0x04, 0x02, b'a', b'b'];
        let seq = tlv(&der, 0).unwrap();
        let kids = children(&der, &seq).unwrap();
        assert_eq!(kids.len(), 2);
        assert_eq!(unsigned(&der, &kids[0]).unwrap(), 2_000_000);
        assert_eq!(octets(&der, &kids[1]).unwrap().as_ref(), b"ab");
        // Indefinite SEQUENCE holding a constructed OCTET STRING of two chunks.
        let ber = [
            0x30, 0x80, 0x24, 0x80, 0x04, 0x01, b'x', 0x04, 0x02, b'y', b'z', 0x00, 0x00, 0x00, 0x00,
        ];
        let seq = tlv(&ber, 0).unwrap();
        assert_eq!(seq.end, ber.len());
        let kids = children(&ber, &seq).unwrap();
        assert_eq!(kids.len(), 1);
        assert_eq!(octets(&ber, &kids[0]).unwrap().as_ref(), b"xyz");
        // Negative, wide and empty integers.
        assert!(unsigned(&[0x02, 0x01, 0xff], &tlv(&[0x02, 0x01, 0xff], 0).unwrap()).is_err());
        let wide = [0x02, 0x09, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(unsigned(&wide, &tlv(&wide, 0).unwrap()).unwrap(), u64::MAX);
        let padded = [0x02, 0x09, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(unsigned(&padded, &tlv(&padded, 0).unwrap()).unwrap(), u64::MAX);
        assert!(unsigned(&[0x02, 0x00], &tlv(&[0x02, 0x00], 0).unwrap()).is_err());
    }
}

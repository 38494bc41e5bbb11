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

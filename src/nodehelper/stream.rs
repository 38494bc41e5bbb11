//! Trees on the wire, one entry per frame: a listing sent by the helper, an upload received.
//!
//! Why per entry: a whole tree in one control message hit the 64 KiB frame cap at a few hundred
//! entries, so Acra keystores of ordinary size could be neither backed up nor restored through
//! the helper. Each entry is now a frame of its own after a header with the counts, so a tree is
//! bounded by the entry and byte caps ([`proto::MAX_TREE_ENTRIES`], [`proto::MAX_TREE_BYTES`]),
//! not by the frame size. The helper reads and sends one file's bytes at a time; an upload is
//! checked entry by entry as it arrives (names, duplicates, a file that is also a directory,
//! per-file and total sizes), before the bytes of each file are read.

use super::proto::{self, Entry, ErrorKind, FrameError, Part, TreeItem, UploadFile, UploadRoot};
use super::read::{FileReader, Tree};
use super::resolve::stat_of;
use super::users::Names;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use zeroize::Zeroizing;

/// Sends a listed tree: [`proto::Reply::Tree`] with the counts, one [`TreeItem`] per directory,
/// then one per file, each file's bytes after its item when `contents`. A file that cannot be
/// read ends the listing with [`TreeItem::Failed`] (the stream stays in step).
pub fn send_tree(
    out: &mut dyn Write,
    tree: &Tree,
    path: &str,
    contents: bool,
    bytes_cap: u64,
    names: &mut Names,
) -> std::io::Result<()> {
    let header = proto::Reply::Tree {
        root: Some(stat_of(&tree.root, names)),
        dirs: tree.dirs.len() as u64,
        files: tree.files.len() as u64,
    };
    proto::write_json(out, &header)?;
    for d in &tree.dirs {
        let item = TreeItem::Entry(Entry {
            rel: d.rel.clone(),
            stat: stat_of(&d.stat, names),
            sha256: None,
        });
        proto::write_json(out, &item)?;
    }
    let mut reader = FileReader::new(tree, path);
    let mut total = 0u64;
    for f in &tree.files {
        if !contents {
            let item = TreeItem::Entry(Entry {
                rel: f.rel.clone(),
                stat: stat_of(&f.stat, names),
                sha256: None,
            });
            proto::write_json(out, &item)?;
            continue;
        }
        let cap = proto::MAX_ACRA_FILE.min(bytes_cap.saturating_sub(total));
        let (st, bytes) = match reader.read(&f.rel, cap) {
            Ok(read) => read,
            Err(e) => {
                let (kind, message) = match e.kind {
                    ErrorKind::TooLarge if cap < proto::MAX_ACRA_FILE => (
                        ErrorKind::TreeTooLarge,
                        format!("{path}: more than {bytes_cap} bytes in all (max_size)"),
                    ),
                    _ => (e.kind, e.message),
                };
                return proto::write_json(out, &TreeItem::Failed { kind, message });
            }
        };
        total += bytes.len() as u64;
        let mut stat = stat_of(&st, names);
        stat.size = bytes.len() as u64;
        let item = TreeItem::Entry(Entry {
            rel: f.rel.clone(),
            stat,
            sha256: Some(crate::digest::sha256_hex(&bytes)),
        });
        proto::write_json(out, &item)?;
        proto::write_data(out, &bytes)?;
    }
    Ok(())
}

/// The shape of a tree upload, from its header alone: one or two roots (the keys and the public
/// directory, once each) and no more files than the helper takes.
pub fn check_roots(roots: &[UploadRoot]) -> Result<(), String> {
    if roots.is_empty() || roots.len() > 2 {
        return Err("a tree restore has one or two roots".into());
    }
    if roots.iter().any(|r| !matches!(r.part, Part::Key | Part::Public))
        || (roots.len() == 2 && roots[0].part == roots[1].part)
    {
        return Err("the roots of a tree restore are the keys and the public directory, once each".into());
    }
    let count = roots.iter().try_fold(0u64, |n, r| n.checked_add(r.files));
    if count.is_none_or(|n| n > proto::MAX_TREE_ENTRIES) {
        return Err(format!(
            "a tree restore of more than {} files",
            proto::MAX_TREE_ENTRIES
        ));
    }
    Ok(())
}

/// One received file: relative name, mode, bytes.
pub type Received = (String, u32, Zeroizing<Vec<u8>>);

/// Checks of an upload as it arrives.
#[derive(Default)]
struct Seen {
    names: BTreeSet<String>,
    total: u64,
}

impl Seen {
    /// Checks one announced file before its bytes are read.
    fn admit(&mut self, f: &UploadFile) -> Result<(), String> {
        let shown = || format!("{:?}", crate::text::escape_control(&f.rel));
        if !proto::valid_rel(&f.rel) || self.names.contains(&f.rel) {
            return Err(format!(
                "a file name that is not allowed or listed twice: {}",
                shown()
            ));
        }
        if f.mode & !0o777 != 0 {
            return Err(format!("{}: set-id and sticky bits are never set", shown()));
        }
        // A file may not also be a directory of another ("a" and "a/b", in either order).
        let prefix = format!("{}/", f.rel);
        let below = self
            .names
            .range::<str, _>((
                std::ops::Bound::Included(prefix.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .next()
            .is_some_and(|n| n.starts_with(&prefix));
        let above = f
            .rel
            .match_indices('/')
            .any(|(i, _)| self.names.contains(&f.rel[..i]));
        if below || above {
            return Err(format!("{} is both a file and a directory", shown()));
        }
        if f.size > proto::MAX_ACRA_FILE {
            return Err(format!(
                "{} is over the {}-byte cap of a file in an Acra keystore",
                shown(),
                proto::MAX_ACRA_FILE
            ));
        }
        self.total = self
            .total
            .checked_add(f.size)
            .filter(|t| *t <= proto::MAX_TREE_BYTES)
            .ok_or_else(|| format!("the tree is over the helper's {}-byte cap", proto::MAX_TREE_BYTES))?;
        self.names.insert(f.rel.clone());
        Ok(())
    }
}

/// Receives the files of an upload whose header passed [`check_roots`]: for each root, its
/// announced number of [`UploadFile`] frames, each checked before its bytes are read.
pub fn receive_upload(input: &mut dyn Read, roots: &[UploadRoot]) -> Result<Vec<Vec<Received>>, FrameError> {
    let mut out = Vec::new();
    let mut seen = Seen::default();
    for root in roots {
        // Names are per directory; the byte total is the whole upload's.
        seen.names.clear();
        let mut files = Vec::new();
        for _ in 0..root.files {
            let f: UploadFile = proto::read_json(input)?;
            seen.admit(&f).map_err(FrameError::Malformed)?;
            let bytes = proto::read_bytes(input, f.size, &f.sha256)?;
            files.push((f.rel, f.mode, bytes));
        }
        out.push(files);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rel: &str, size: u64) -> UploadFile {
        UploadFile {
            rel: rel.into(),
            mode: 0o600,
            size,
            sha256: String::new(),
        }
    }

    #[test]
    fn an_upload_is_checked_entry_by_entry_before_its_bytes() {
        let mut seen = Seen::default();
        assert!(seen.admit(&file("client/A/storage.keyring", 10)).is_ok());
        assert!(seen.admit(&file("A_hmac", 10)).is_ok());
        for (rel, why) in [
            ("A_hmac", "listed twice"),
            ("../x", "not allowed"),
            ("/etc/x", "not allowed"),
            ("a//b", "not allowed"),
            ("client", "both a file and a directory"),
            ("client/A/storage.keyring/x", "both a file and a directory"),
        ] {
            let e = seen.admit(&file(rel, 1)).unwrap_err();
            assert!(e.contains(why), "{rel}: {e}");
        }
        let e = seen.admit(&file("big", proto::MAX_ACRA_FILE + 1)).unwrap_err();
        assert!(e.contains("cap"), "{e}");
        let mut setid = file("s", 1);
        setid.mode = 0o4600;
        assert!(seen.admit(&setid).unwrap_err().contains("set-id"));
        // Totals add up without wrapping: past the tree cap is refused.
        let mut seen = Seen::default();
        let mut n = 0;
        let e = loop {
            match seen.admit(&file(&format!("f{n}"), proto::MAX_ACRA_FILE)) {
                Ok(()) => n += 1,
                Err(e) => break e,
            }
        };
        assert!(e.contains("tree is over"), "{e}");
        assert_eq!(n as u64, proto::MAX_TREE_BYTES / proto::MAX_ACRA_FILE);
        // The header alone: counts that wrap or exceed the cap are refused.
        let root = |part, files| UploadRoot {
            part,
            replace: true,
            files,
        };
        assert!(check_roots(&[root(Part::Key, 3), root(Part::Public, 2)]).is_ok());
        assert!(check_roots(&[root(Part::Key, u64::MAX), root(Part::Public, 2)]).is_err());
        assert!(check_roots(&[root(Part::Key, proto::MAX_TREE_ENTRIES + 1)]).is_err());
        assert!(check_roots(&[root(Part::Key, 1), root(Part::Key, 1)]).is_err());
        assert!(check_roots(&[root(Part::KeyDir, 1)]).is_err());
        assert!(check_roots(&[]).is_err());
    }
}

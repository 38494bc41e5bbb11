//! The node helper's wire protocol, the one place both sides share: the helper on the node
//! (`crate::nodehelper`) and the agent's client (`crate::remote`). Neither side's other files
//! import each other; both import this.
//!
//! Why this shape: sudo runs the helper with fixed arguments, so everything the caller may ask
//! travels here, and this is the attack surface. Each frame is a 4-byte big-endian length, one
//! kind byte and a payload; the length is checked against a cap *before* anything is allocated.
//! Control frames are one JSON object each (unknown fields and unknown operations are errors);
//! file bytes travel in data frames after a control frame that declares their size and SHA-256,
//! both checked before the bytes are used. The helper speaks first, a versioned hello, so an
//! agent and a helper of different versions refuse each other with the exact fix. Requests name
//! keystores and parts of them, never paths: the paths come from the node's policy file.

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use zeroize::Zeroizing;

/// The policy file a helper reads when its sudoers rule pins no `--policy=` (the agent's config
/// names the same default, so both sides agree on it from here).
pub const DEFAULT_NODE_POLICY: &str = "/etc/coldkeep/node.yaml";
/// The protocol's name in the hello.
pub const PROTO: &str = "coldkeep-node-helper";
/// The protocol version both sides speak. A change that an older peer cannot read bumps it.
/// Version 2: tree listings and tree uploads travel one entry per frame (no whole tree in one
/// message), and interrupted tree swaps are reported and finished.
pub const VERSION: u32 = 2;
/// Largest control (JSON) frame, in bytes.
pub const MAX_CONTROL: u32 = 64 * 1024;
/// Largest data frame, in bytes.
pub const MAX_CHUNK: u32 = 128 * 1024;
/// Largest PKCS#12 file the helper reads or writes (nodectl's are a few KiB).
pub const MAX_P12: u64 = 1024 * 1024;
/// Largest `kind: file` keystore (companion files: a config, a hex key) or nodectl config.
pub const MAX_SMALL_FILE: u64 = 8 * 1024 * 1024;
/// Largest single file in an Acra keystore (keys and key rings are KiB).
pub const MAX_ACRA_FILE: u64 = 4 * 1024 * 1024;
/// Largest single file either side accepts at all (the largest of the per-kind caps): a
/// declared size over it ends the session before anything is allocated.
pub const MAX_FILE: u64 = MAX_SMALL_FILE;
/// Largest tree (all files together) the helper reads or writes.
pub const MAX_TREE_BYTES: u64 = 256 * 1024 * 1024;
/// Most entries (files and directories) in a tree the helper reads or writes.
pub const MAX_TREE_ENTRIES: u64 = 100_000;

const KIND_JSON: u8 = b'J';
const KIND_DATA: u8 = b'D';

/// What went wrong reading a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended cleanly before a frame began.
    #[error("the peer closed the stream")]
    Closed,
    /// Reading or writing failed (timeouts included).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A frame over its cap (refused before allocating).
    #[error("a frame of {len} bytes, over the {cap}-byte cap")]
    TooLarge {
        /// The announced length.
        len: u32,
        /// The cap for that kind of frame.
        cap: u32,
    },
    /// Not a frame this protocol knows, or not the one expected here.
    #[error("{0}")]
    Malformed(String),
}

/// One frame read from the peer.
pub enum Frame {
    /// A control message (JSON text).
    Json(Vec<u8>),
    /// File bytes, wiped when dropped.
    Data(Zeroizing<Vec<u8>>),
}

fn header(kind: u8, len: usize) -> [u8; 5] {
    let n = (len + 1) as u32;
    let b = n.to_be_bytes();
    [b[0], b[1], b[2], b[3], kind]
}

/// Writes one control message (does not flush).
pub fn write_json<W: Write + ?Sized, T: Serialize>(w: &mut W, msg: &T) -> std::io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    if body.len() + 1 > MAX_CONTROL as usize {
        return Err(std::io::Error::other("control message over the frame cap"));
    }
    w.write_all(&header(KIND_JSON, body.len()))?;
    w.write_all(&body)
}

/// Writes `bytes` as data frames of at most [`MAX_CHUNK`] bytes (does not flush). The bytes are
/// written straight from the caller's buffer: no copy of key material is made here.
pub fn write_data<W: Write + ?Sized>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    for chunk in bytes.chunks(MAX_CHUNK as usize - 1) {
        w.write_all(&header(KIND_DATA, chunk.len()))?;
        w.write_all(chunk)?;
    }
    Ok(())
}

/// Reads one frame, checking its length against the cap of its kind before allocating.
pub fn read_frame<R: Read + ?Sized>(r: &mut R) -> Result<Frame, FrameError> {
    let mut head = [0u8; 5];
    // A clean end of stream is only a clean end before the first byte of a frame.
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => {
                return Err(FrameError::Malformed(
                    "the stream ended inside a frame header".into(),
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let cap = match head[4] {
        KIND_JSON => MAX_CONTROL,
        KIND_DATA => MAX_CHUNK,
        other => return Err(FrameError::Malformed(format!("unknown frame kind 0x{other:02x}"))),
    };
    if len > cap {
        return Err(FrameError::TooLarge { len, cap });
    }
    if len < 2 {
        return Err(FrameError::Malformed("an empty frame".into()));
    }
    let mut body = Zeroizing::new(vec![0u8; len as usize - 1]);
    r.read_exact(&mut body).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Malformed("the stream ended inside a frame".into()),
        _ => FrameError::Io(e),
    })?;
    Ok(match head[4] {
        KIND_JSON => Frame::Json(std::mem::take(&mut *body)),
        _ => Frame::Data(body),
    })
}

/// Reads one control message of type `T` (unknown fields and variants refused by `T`).
pub fn read_json<R: Read + ?Sized, T: for<'de> Deserialize<'de>>(r: &mut R) -> Result<T, FrameError> {
    match read_frame(r)? {
        Frame::Json(body) => parse_json(&body),
        Frame::Data(_) => Err(FrameError::Malformed(
            "file bytes where a message was expected".into(),
        )),
    }
}

/// Parses one control message body.
pub fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(|e| FrameError::Malformed(format!("not a valid message: {e}")))
}

/// Reads exactly `size` bytes of data frames and checks their SHA-256. The buffer grows as
/// bytes arrive (a peer that declares a large size and sends a byte holds a byte, not the
/// declared size); each larger buffer is locked in memory and the smaller one wiped when it is
/// dropped, so no unwiped copy of key bytes stays behind. A size over [`MAX_FILE`] and an empty
/// data frame (a peer spinning the reader) are refused.
pub fn read_bytes<R: Read + ?Sized>(
    r: &mut R,
    size: u64,
    sha256: &str,
) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    if size > MAX_FILE {
        return Err(FrameError::Malformed(format!(
            "a file of {size} bytes, over the {MAX_FILE}-byte cap"
        )));
    }
    let size = size as usize;
    let mut out = Zeroizing::new(Vec::new());
    while out.len() < size {
        match read_frame(r)? {
            Frame::Data(chunk) if chunk.is_empty() => {
                return Err(FrameError::Malformed("an empty data frame".into()));
            }
            Frame::Data(chunk) if out.len() + chunk.len() <= size => {
                let need = out.len() + chunk.len();
                if need > out.capacity() {
                    let mut bigger =
                        Zeroizing::new(Vec::with_capacity(need.max(out.capacity() * 2).min(size)));
                    crate::harden::lock_in_memory(&bigger);
                    bigger.extend_from_slice(&out);
                    out = bigger;
                }
                out.extend_from_slice(&chunk);
            }
            Frame::Data(_) => {
                return Err(FrameError::Malformed(
                    "more file bytes than the declared size".into(),
                ));
            }
            Frame::Json(_) => {
                return Err(FrameError::Malformed(
                    "fewer file bytes than the declared size".into(),
                ));
            }
        }
    }
    if crate::digest::sha256_hex(&out) != sha256 {
        return Err(FrameError::Malformed(
            "the file bytes do not match their declared SHA-256".into(),
        ));
    }
    Ok(out)
}

/// The helper's first message. [`HelloHead`] is read first, so a peer of another version is
/// refused by its version, whatever the rest of its hello looks like.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Always [`PROTO`].
    pub proto: String,
    /// The helper's [`VERSION`].
    pub version: u32,
    /// The helper's coldkeep version (for messages).
    pub build: String,
    /// The policy file it was started with.
    pub policy: String,
    /// Whether it was started with `--restore` (the restore rule).
    pub restore: bool,
    /// Whether it is ready, with what the policy allows, or why not.
    pub ready: Ready,
}

/// The part of a hello every version keeps: protocol name and version.
#[derive(Debug, Clone, Deserialize)]
pub struct HelloHead {
    /// The protocol's name.
    pub proto: String,
    /// Its version.
    pub version: u32,
    /// The peer's coldkeep version, when it says.
    #[serde(default)]
    pub build: String,
}

/// Whether the helper can serve requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Ready {
    /// Ready; the policy's keystores (not secret: the policy file is world-readable).
    Ok {
        /// What the policy lists.
        keystores: Vec<Listed>,
    },
    /// Refused to start (its binary or policy is not trustworthy, or the policy is invalid).
    Refused {
        /// What is wrong.
        problem: String,
        /// The command or edit that fixes it.
        fix: String,
    },
}

/// One keystore as the node's policy lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Listed {
    /// Its name (what requests use).
    pub name: String,
    /// `p12`, `acra` or `file`.
    pub kind: String,
    /// The file (p12, file) or keys directory (acra).
    pub path: String,
    /// Acra: the public keys directory, when apart.
    #[serde(default)]
    pub public_path: Option<String>,
    /// nodectl's config, readable (never written) through this keystore.
    #[serde(default)]
    pub nodectl_config: Option<String>,
    /// Whether the policy allows restoring it.
    pub restore: bool,
    /// `user:group` every file it writes gets (and a replaced one must already have).
    #[serde(default)]
    pub owner: Option<String>,
    /// The loosest mode it writes files with.
    #[serde(default)]
    pub mode: Option<u32>,
}

/// Which path of a keystore a request means; the helper takes the path itself from its policy.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// The key file (p12, file) or the keys directory (acra).
    Key,
    /// The directory holding [`Part::Key`].
    KeyDir,
    /// Acra: the public keys directory.
    Public,
    /// The directory holding [`Part::Public`].
    PublicDir,
    /// nodectl's cn-config.yaml (read only).
    NodectlConfig,
    /// Acra v2: the `version` file in the keys directory.
    AcraVersion,
}

/// A request: the protocol version and one operation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The sender's [`VERSION`].
    pub v: u32,
    /// What to do.
    pub op: Op,
}

/// The operations. Each names a keystore of the policy; none carries a path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Stat without following a link: [`Reply::Stat`].
    Stat {
        /// The policy's keystore name.
        keystore: String,
        /// Which of its paths.
        part: Part,
    },
    /// Read a regular file: [`Reply::File`] then its bytes.
    ReadFile {
        /// The policy's keystore name.
        keystore: String,
        /// Which of its paths.
        part: Part,
        /// Refuse a file larger than this.
        max_size: u64,
    },
    /// List (and with `contents`, read) a tree: [`Reply::Tree`] (the counts), then one
    /// [`TreeItem`] per directory and per file, each file's bytes after its item (`contents`).
    ReadTree {
        /// The policy's keystore name.
        keystore: String,
        /// [`Part::Key`] or [`Part::Public`].
        part: Part,
        /// Most entries, directories included.
        max_files: u64,
        /// Most bytes in all.
        max_size: u64,
        /// Whether the files' bytes follow.
        contents: bool,
    },
    /// Names `.NAME.coldkeep-old-*` beside a keystore path (an interrupted swap of an older
    /// helper): [`Reply::Names`]; refused with [`ErrorKind::Interrupted`] while a swap of this
    /// keystore is unfinished.
    Leftovers {
        /// The policy's keystore name.
        keystore: String,
        /// [`Part::Key`] or [`Part::Public`].
        part: Part,
    },
    /// Remove `.NAME.coldkeep-tmp-*` beside a keystore path (an interrupted write): [`Reply::Done`].
    Sweep {
        /// The policy's keystore name.
        keystore: String,
        /// [`Part::Key`] or [`Part::Public`].
        part: Part,
    },
    /// Replace or create a file keystore atomically; its bytes follow: [`Reply::Written`].
    WriteFile {
        /// The policy's keystore name.
        keystore: String,
        /// Permission bits wanted (never set-id; never looser than the policy).
        mode: u32,
        /// Size of the bytes that follow.
        size: u64,
        /// Their SHA-256, hex.
        sha256: String,
    },
    /// Restore an Acra keystore's directories at once (swap with rollback). Then, root by
    /// root, one [`UploadFile`] frame per file, each followed by its bytes: [`Reply::Done`].
    RestoreTrees {
        /// The policy's keystore name.
        keystore: String,
        /// Keys directory, and the public one when apart.
        roots: Vec<UploadRoot>,
    },
    /// Finish a tree restore that was interrupted between its swaps (the helper's record of
    /// it names both trees of every directory): put the previous keystore back whole
    /// (`forward: false`) or the restored one in (`forward: true`): [`Reply::Done`].
    FinishSwap {
        /// The policy's keystore name.
        keystore: String,
        /// Which way.
        forward: bool,
    },
}

/// One directory of a tree restore.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UploadRoot {
    /// [`Part::Key`] or [`Part::Public`].
    pub part: Part,
    /// Whether a directory is there now and is replaced (else it must not exist).
    pub replace: bool,
    /// How many [`UploadFile`] frames follow for it (directories are implied by their names).
    pub files: u64,
}

/// One file of a tree restore, a frame of its own, its bytes after it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UploadFile {
    /// Relative name, `/`-separated components of [`valid_name`].
    pub rel: String,
    /// Permission bits.
    pub mode: u32,
    /// Size of its bytes.
    pub size: u64,
    /// Their SHA-256, hex.
    pub sha256: String,
}

/// What kind of thing a name is (never followed).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// A device, fifo or socket.
    Other,
}

/// What the helper saw on an fd.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Stat {
    /// Its type.
    pub kind: EntryKind,
    /// Permission bits (with set-id and sticky bits).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
    /// Owner name, when the node knows it.
    #[serde(default)]
    pub user: Option<String>,
    /// Group name, when the node knows it.
    #[serde(default)]
    pub group: Option<String>,
    /// Size in bytes.
    pub size: u64,
}

/// One entry of a tree listing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Relative name, `/`-separated.
    pub rel: String,
    /// What the helper saw.
    pub stat: Stat,
    /// SHA-256 of the bytes that follow (files, with `contents`).
    #[serde(default)]
    pub sha256: Option<String>,
}

/// One directory or file of a tree listing, a frame of its own after [`Reply::Tree`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TreeItem {
    /// The next entry (with `contents`, a file's bytes follow it).
    Entry(Entry),
    /// Reading the tree failed here; nothing more follows for this request.
    Failed {
        /// The class of failure.
        kind: ErrorKind,
        /// For the operator.
        message: String,
    },
}

/// How far a failed tree restore got.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SwapState {
    /// It failed before anything was swapped in.
    NothingChanged,
    /// A swap failed and every swap made was undone.
    BackInPlace,
    /// Undoing failed: a previous directory is under a `.NAME.coldkeep-old-*` or temp name.
    LeftAside,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Nothing at that path.
    NotFound,
    /// A directory where a file was expected.
    IsDirectory,
    /// Something else where a directory was expected.
    NotADirectory,
    /// A link, a hard link, a device, a mount crossing, a swapped name: refused.
    Unsafe,
    /// A file over its cap.
    TooLarge,
    /// A tree over its caps.
    TreeTooLarge,
    /// The policy (or the rule the helper runs under) does not allow it.
    NotAllowed,
    /// The kernel refused (permission, full disk, ...).
    Failed,
    /// What was read back differs from what was written.
    ReadBack,
    /// A tree restore of this keystore was interrupted between its swaps: it is refused until
    /// the swap is finished ([`Op::FinishSwap`]).
    Interrupted,
    /// The request itself is wrong (the helper stops after it).
    BadRequest,
}

/// The helper's answer to one request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// [`Op::Stat`]: `None` when nothing is there.
    Stat {
        /// What is there.
        stat: Option<Stat>,
    },
    /// [`Op::ReadFile`]: `stat.size` bytes follow.
    File {
        /// The file, from the fd that was read.
        stat: Stat,
        /// SHA-256 of the bytes that follow.
        sha256: String,
    },
    /// [`Op::ReadTree`]; `None` root: no such directory (and no items follow). Then `dirs`
    /// [`TreeItem`]s of subdirectories (sorted, parents first), then `files` of files (sorted).
    Tree {
        /// The root directory, or `None` when it does not exist.
        root: Option<Stat>,
        /// How many directory items follow.
        dirs: u64,
        /// How many file items follow them.
        files: u64,
    },
    /// [`Op::Leftovers`].
    Names {
        /// Entry names (not paths).
        names: Vec<String>,
    },
    /// A write that went through, read back and compared.
    Written {
        /// Its final mode.
        mode: u32,
        /// Its owner uid.
        uid: u32,
        /// Its group gid.
        gid: u32,
    },
    /// Done; notes for the operator (e.g. an old tree that could not be removed).
    Done {
        /// What to tell the operator.
        notes: Vec<String>,
    },
    /// Refused or failed; nothing else follows.
    Error {
        /// The class of failure.
        kind: ErrorKind,
        /// For the operator (paths and names only, never file contents).
        message: String,
        /// For a failed tree restore: how far it got.
        #[serde(default)]
        state: Option<SwapState>,
    },
}

/// A name the protocol carries: one path component of `[A-Za-z0-9._@:+=-]`, at most 255 bytes,
/// not `.` or `..` (so it can never name another directory).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@:+=-".contains(&b))
}

/// A user or group name as the node reports it, safe to record in a manifest and to print into
/// a policy's `owner:`: `[A-Za-z0-9._-]`, not starting with `-`, at most 32 bytes, an optional
/// trailing `$` (Samba machine accounts). A node that reports anything else (a newline, YAML or
/// shell syntax) has its name dropped; the numeric ids stay.
pub fn valid_account_name(name: &str) -> bool {
    let base = name.strip_suffix('$').unwrap_or(name);
    !base.is_empty()
        && name.len() <= 32
        && !base.starts_with('-')
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A relative name inside a tree: [`valid_name`] components joined by `/`, at most 32 deep.
pub fn valid_rel(rel: &str) -> bool {
    let mut n = 0;
    for c in rel.split('/') {
        n += 1;
        if !valid_name(c) || n > 32 {
            return false;
        }
    }
    true
}

/// A policy or program path that is safe in a sudoers rule and on a command line: absolute,
/// `[A-Za-z0-9._/-]` only (no spaces, no sudoers or shell syntax), no empty, `.` or `..`
/// component, at most 200 bytes.
pub fn valid_fixed_path(path: &str) -> bool {
    path.len() <= 200
        && path.len() > 1
        && path.starts_with('/')
        && path[1..].split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_caps_are_checked_before_allocating() {
        let mut buf = Vec::new();
        let req = Request {
            v: VERSION,
            op: Op::Stat {
                keystore: "p12".into(),
                part: Part::Key,
            },
        };
        write_json(&mut buf, &req).unwrap();
        write_data(&mut buf, &vec![7u8; MAX_CHUNK as usize * 2]).unwrap();
        let mut r = buf.as_slice();
        let back: Request = read_json(&mut r).unwrap();
        assert_eq!(back, req);
        let bytes = read_bytes(
            &mut r,
            MAX_CHUNK as u64 * 2,
            &crate::digest::sha256_hex(&vec![7u8; MAX_CHUNK as usize * 2]),
        )
        .unwrap();
        assert_eq!(bytes.len(), MAX_CHUNK as usize * 2);
        assert!(matches!(read_frame(&mut r), Err(FrameError::Closed)));

        // A length over the cap is refused from the header alone (4 GiB would not fit).
        let huge = [0xff, 0xff, 0xff, 0xff, b'J'];
        assert!(matches!(
            read_frame(&mut &huge[..]),
            Err(FrameError::TooLarge { .. })
        ));
        let data = [0x00, 0x10, 0x00, 0x00, b'D'];
        assert!(matches!(
            read_frame(&mut &data[..]),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            read_frame(&mut &[0, 0, 0, 2, b'X', 1][..]),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            read_frame(&mut &[0, 0, 0, 9, b'J', 1][..]),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            read_frame(&mut &[0, 0][..]),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_fields_and_operations_are_refused() {
        let parse = |s: &str| parse_json::<Request>(s.as_bytes());
        assert!(parse(r#"{"v":1,"op":{"stat":{"keystore":"p12","part":"key"}}}"#).is_ok());
        assert!(
            parse(r#"{"v":1,"op":{"stat":{"keystore":"p12","part":"key","path":"/etc/shadow"}}}"#).is_err()
        );
        assert!(parse(r#"{"v":1,"op":{"stat":{"keystore":"p12","part":"key"}},"x":1}"#).is_err());
        assert!(parse(r#"{"v":1,"op":{"exec":{"cmd":"id"}}}"#).is_err());
        assert!(parse(r#"{"v":1,"op":{"stat":{"keystore":"p12","part":"/etc"}}}"#).is_err());
    }

    #[test]
    fn declared_sizes_and_hashes_are_checked() {
        let mut buf = Vec::new();
        write_data(&mut buf, b"abc").unwrap();
        let sha = crate::digest::sha256_hex(b"abc");
        assert!(read_bytes(&mut buf.as_slice(), 3, &sha).is_ok());
        assert!(
            read_bytes(&mut buf.as_slice(), 2, &sha).is_err(),
            "more than declared"
        );
        assert!(read_bytes(&mut buf.as_slice(), 3, &crate::digest::sha256_hex(b"abd")).is_err());
        let mut short = buf.clone();
        write_json(&mut short, &Reply::Done { notes: vec![] }).unwrap();
        assert!(
            read_bytes(&mut short.as_slice(), 4, &sha).is_err(),
            "fewer than declared"
        );
    }

    #[test]
    fn names_and_fixed_paths_are_strict() {
        for ok in [
            "node.p12",
            ".poison_key",
            "client_storage.keyring",
            "a-b_c@d:e+f=g",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "a\n", "ü", &"x".repeat(256)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        for ok in ["root", "coldkeep-acra", "nodeadmin", "svc_1.x", "host$"] {
            assert!(valid_account_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "a b",
            "root\n  - name: x",
            "a:b",
            "\"q\"",
            "$",
            &"x".repeat(33),
            "ü",
        ] {
            assert!(!valid_account_name(bad), "{bad:?}");
        }
        assert!(valid_rel("client/Alice/storage.keyring"));
        assert!(!valid_rel("client/../x") && !valid_rel("/abs") && !valid_rel("a//b") && !valid_rel("a/"));
        assert!(valid_fixed_path("/etc/coldkeep/node.yaml"));
        for bad in [
            "etc/x",
            "/",
            "/etc/x y",
            "/etc/../x",
            "/etc//x",
            "/etc/x=y",
            "/etc/x*",
        ] {
            assert!(!valid_fixed_path(bad), "{bad}");
        }
    }
}

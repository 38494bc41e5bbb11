//! The agent's side of the node helper: start it once per session (`sudo -n <helper>
//! node-helper ...` on one exec channel, no pty), check its hello, and map the path-based calls
//! of `ops` to keystore-named requests.
//!
//! Why a map from paths to names: `ops` thinks in the config's paths, the helper only takes
//! names of its policy's keystores (its authority comes from the node). The hello lists what the
//! policy allows, so a path no listed keystore covers is refused here, before any request, and
//! would be refused again by the helper.

use crate::nodehelper::proto::{
    self, Entry, EntryKind, ErrorKind, Frame, FrameError, Hello, HelloHead, Listed, Op, Part, Ready, Reply,
    Stat, TreeItem, UploadFile, UploadRoot,
};
use std::io::{Read, Write};
use zeroize::Zeroizing;

/// A stream with a deadline checked before every read (each read is also bounded by the SSH
/// session's io timeout): a node that drips bytes cannot hold a run forever.
pub struct Timed<T> {
    inner: T,
    deadline: std::time::Instant,
}

impl<T> Timed<T> {
    /// Wraps `inner`; no deadline until [`Timed::set_deadline`].
    pub fn new(inner: T) -> Timed<T> {
        Timed {
            inner,
            deadline: std::time::Instant::now() + std::time::Duration::from_secs(365 * 24 * 3600),
        }
    }

    /// Reads after `deadline` fail with `TimedOut`.
    pub fn set_deadline(&mut self, deadline: std::time::Instant) {
        self.deadline = deadline;
    }

    /// The wrapped stream.
    pub fn inner(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: Read> Read for Timed<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if std::time::Instant::now() > self.deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the node helper was too slow in all",
            ));
        }
        self.inner.read(buf)
    }
}

impl<T: Write> Write for Timed<T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Why the helper did not start.
#[derive(Debug)]
pub enum StartError {
    /// The stream ended before a hello (sudo refused, or no helper there): look at stderr.
    Closed,
    /// Reading failed (a timeout, a broken channel).
    Frame(FrameError),
    /// Something answered that is not the helper.
    NotHelper(String),
    /// The helper speaks another protocol version.
    Version {
        /// Its version.
        version: u32,
        /// Its coldkeep version.
        build: String,
    },
    /// The helper refused to run, with the fix.
    Refused {
        /// What is wrong.
        problem: String,
        /// What fixes it.
        fix: String,
    },
}

/// A started helper.
pub struct Client<T> {
    io: T,
    hello: Hello,
    listing: Vec<Listed>,
}

impl<T: Read + Write> Client<T> {
    /// Reads and checks the helper's hello: the version first (whatever else a hello of another
    /// version holds), then whether it is ready. On failure the stream is given back (its
    /// stderr and exit status say why sudo refused).
    pub fn start(mut io: T) -> Result<Client<T>, (StartError, T)> {
        match Self::hello_from(&mut io) {
            Ok((hello, listing)) => Ok(Client { io, hello, listing }),
            Err(e) => Err((e, io)),
        }
    }

    fn hello_from(io: &mut T) -> Result<(Hello, Vec<Listed>), StartError> {
        let body = match proto::read_frame(io) {
            Ok(Frame::Json(b)) => b,
            Ok(Frame::Data(_)) => return Err(StartError::NotHelper("file bytes before a hello".into())),
            Err(FrameError::Closed) => return Err(StartError::Closed),
            Err(FrameError::Io(e)) => return Err(StartError::Frame(FrameError::Io(e))),
            Err(e) => return Err(StartError::NotHelper(e.to_string())),
        };
        let head: HelloHead = proto::parse_json(&body).map_err(|e| StartError::NotHelper(e.to_string()))?;
        if head.proto != proto::PROTO {
            return Err(StartError::NotHelper(format!(
                "it says it speaks {:?}",
                head.proto
            )));
        }
        if head.version != proto::VERSION {
            return Err(StartError::Version {
                version: head.version,
                build: head.build,
            });
        }
        let hello: Hello = proto::parse_json(&body).map_err(|e| StartError::NotHelper(e.to_string()))?;
        let listing = match &hello.ready {
            Ready::Ok { keystores } => keystores.clone(),
            Ready::Refused { problem, fix } => {
                return Err(StartError::Refused {
                    problem: problem.clone(),
                    fix: fix.clone(),
                });
            }
        };
        Ok((hello, listing))
    }

    /// The helper's hello.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// What the node's policy lists.
    pub fn listing(&self) -> &[Listed] {
        &self.listing
    }

    /// The stream (to set deadlines).
    pub fn io(&mut self) -> &mut T {
        &mut self.io
    }

    /// Sends one request (and `data`, the bytes it declares), returns the reply. A refusal the
    /// helper sent before reading the data (it then stops reading) is still returned when
    /// sending the data failed.
    pub fn request(&mut self, op: Op, data: &[&[u8]]) -> Result<Reply, FrameError> {
        let sent = self.send(op, data);
        match (sent, proto::read_json(&mut self.io)) {
            (_, Ok(reply @ Reply::Error { .. })) | (Ok(()), Ok(reply)) => Ok(reply),
            (Err(e), _) | (Ok(()), Err(e)) => Err(e),
        }
    }

    fn send(&mut self, op: Op, data: &[&[u8]]) -> Result<(), FrameError> {
        proto::write_json(
            &mut self.io,
            &proto::Request {
                v: proto::VERSION,
                op,
            },
        )?;
        for d in data {
            proto::write_data(&mut self.io, d)?;
        }
        self.io.flush()?;
        Ok(())
    }

    /// Reads `size` bytes that follow a reply, checked against `sha256`.
    pub fn read_bytes(&mut self, size: u64, sha256: &str) -> Result<Zeroizing<Vec<u8>>, FrameError> {
        proto::read_bytes(&mut self.io, size, sha256)
    }

    /// Asks for a tree (`op` is an [`Op::ReadTree`] with these caps) and reads the whole
    /// answer, trusting none of it: the counts must be within the caps asked for (nothing is
    /// allocated from them), every entry a valid relative name of the kind announced, sorted and
    /// never twice, every size within the per-file cap, their sum within `max_size` (added without
    /// wrapping), and every file's bytes (`contents`) as long as declared and of the declared
    /// SHA-256. Anything else is a [`FrameError::Malformed`]: the session cannot go on.
    pub fn read_tree(&mut self, op: Op, contents: bool) -> Result<TreeAnswer, FrameError> {
        let Op::ReadTree {
            max_files, max_size, ..
        } = op
        else {
            return Err(FrameError::Malformed("not a tree request".into()));
        };
        let bad = |m: &str| FrameError::Malformed(format!("the node helper's tree listing: {m}"));
        let (root, dirs, files) = match self.request(op, &[])? {
            Reply::Tree {
                root: None,
                dirs: 0,
                files: 0,
            } => return Ok(TreeAnswer::Missing),
            Reply::Tree {
                root: Some(r),
                dirs,
                files,
            } => (r, dirs, files),
            Reply::Error { kind, message, .. } => return Ok(TreeAnswer::Refused { kind, message }),
            _ => return Err(bad("an unexpected reply")),
        };
        let cap = max_files.min(proto::MAX_TREE_ENTRIES);
        if dirs.checked_add(files).is_none_or(|n| n > cap) {
            return Err(bad("more entries than asked for"));
        }
        let mut tree = TreeReply {
            root,
            dirs: Vec::new(),
            files: Vec::new(),
        };
        let mut last: Option<String> = None;
        let mut in_order = |rel: &str| {
            let ok = proto::valid_rel(rel) && last.as_deref().is_none_or(|l| l < rel);
            last = Some(rel.to_string());
            ok
        };
        for _ in 0..dirs {
            match proto::read_json(&mut self.io)? {
                TreeItem::Entry(e)
                    if e.stat.kind == EntryKind::Dir && e.sha256.is_none() && in_order(&e.rel) =>
                {
                    tree.dirs.push(e)
                }
                TreeItem::Entry(_) => {
                    return Err(bad("a directory entry out of order, repeated or malformed"));
                }
                TreeItem::Failed { kind, message } => return Ok(TreeAnswer::Refused { kind, message }),
            }
        }
        last = None;
        let mut in_order = |rel: &str| {
            let ok = proto::valid_rel(rel) && last.as_deref().is_none_or(|l| l < rel);
            last = Some(rel.to_string());
            ok
        };
        let mut total = 0u64;
        for _ in 0..files {
            let e = match proto::read_json(&mut self.io)? {
                TreeItem::Entry(e) if e.stat.kind == EntryKind::File && in_order(&e.rel) => e,
                TreeItem::Entry(_) => return Err(bad("a file entry out of order, repeated or malformed")),
                TreeItem::Failed { kind, message } => return Ok(TreeAnswer::Refused { kind, message }),
            };
            total = total
                .checked_add(e.stat.size)
                .filter(|t| *t <= max_size)
                .ok_or_else(|| bad("more bytes than asked for"))?;
            let bytes = match (&e.sha256, contents) {
                (Some(sha), true) => Some(self.read_bytes(e.stat.size, sha)?),
                (None, false) => None,
                _ => {
                    return Err(bad(
                        "file bytes where none were asked for, or none where they were",
                    ));
                }
            };
            tree.files.push((e, bytes));
        }
        Ok(TreeAnswer::Tree(tree))
    }

    /// Sends a tree restore: the header, then each file's [`UploadFile`] frame and bytes. The
    /// reply, or where it broke: [`UploadError::Sent`] when the request did not get through whole
    /// (the helper acts only on a whole upload: nothing changed), [`UploadError::Answer`] when
    /// the answer did not come (the node may or may not have changed).
    pub fn restore_trees(&mut self, keystore: &str, roots: &[UploadTree<'_>]) -> Result<Reply, UploadError> {
        let header = Op::RestoreTrees {
            keystore: keystore.to_string(),
            roots: roots
                .iter()
                .map(|r| UploadRoot {
                    part: r.part,
                    replace: r.replace,
                    files: r.files.len() as u64,
                })
                .collect(),
        };
        let sent = (|| {
            self.send(header, &[])?;
            for r in roots {
                for (rel, mode, data) in &r.files {
                    let f = UploadFile {
                        rel: rel.clone(),
                        mode: mode & 0o777,
                        size: data.len() as u64,
                        sha256: crate::digest::sha256_hex(data),
                    };
                    proto::write_json(&mut self.io, &f)?;
                    proto::write_data(&mut self.io, data)?;
                }
            }
            self.io.flush()?;
            Ok::<(), FrameError>(())
        })();
        match (sent, proto::read_json(&mut self.io)) {
            (_, Ok(reply @ Reply::Error { .. })) | (Ok(()), Ok(reply)) => Ok(reply),
            (Err(e), _) => Err(UploadError::Sent(e)),
            (Ok(()), Err(e)) => Err(UploadError::Answer(e)),
        }
    }

    /// The policy keystore and part a node path means, if the policy covers it.
    pub fn locate(&self, path: &str) -> Option<(&Listed, Part)> {
        locate(&self.listing, path)
    }
}

/// The answer to a tree request.
pub enum TreeAnswer {
    /// No directory there.
    Missing,
    /// The helper refused or failed (the stream is still in step).
    Refused {
        /// The class of failure.
        kind: ErrorKind,
        /// For the operator (the node's words).
        message: String,
    },
    /// The tree.
    Tree(TreeReply),
}

/// A tree as the helper sent it, every entry checked.
pub struct TreeReply {
    /// The root directory.
    pub root: Stat,
    /// Subdirectories, sorted.
    pub dirs: Vec<Entry>,
    /// Files, sorted, with their bytes when asked for.
    pub files: Vec<(Entry, Option<Zeroizing<Vec<u8>>>)>,
}

/// One directory of a tree restore: which part, whether it replaces one, its files (relative
/// name, mode, bytes).
pub struct UploadTree<'a> {
    /// Keys or public.
    pub part: Part,
    /// A directory is there now.
    pub replace: bool,
    /// The files.
    pub files: Vec<(String, u32, &'a [u8])>,
}

/// Where a tree restore broke.
#[derive(Debug)]
pub enum UploadError {
    /// Sending it (the helper never had the whole upload).
    Sent(FrameError),
    /// Reading the answer (after the whole upload was sent).
    Answer(FrameError),
}

fn parent(path: &str) -> Option<&str> {
    match path.rsplit_once('/') {
        Some(("", _)) => Some("/"),
        Some((dir, _)) => Some(dir),
        None => None,
    }
}

/// Maps a node path to the listed keystore and part that covers it. Exact paths first (the key,
/// the public directory, nodectl's config, Acra's version file), then the directories holding
/// them (a stat of where a key goes).
pub fn locate<'l>(listing: &'l [Listed], path: &str) -> Option<(&'l Listed, Part)> {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let exact = listing.iter().find_map(|k| {
        if k.path == path {
            Some((k, Part::Key))
        } else if k.public_path.as_deref() == Some(path) {
            Some((k, Part::Public))
        } else if k.kind == "acra" && path.strip_prefix(k.path.as_str()) == Some("/version") {
            Some((k, Part::AcraVersion))
        } else {
            None
        }
    });
    exact
        .or_else(|| {
            listing
                .iter()
                .find(|k| k.nodectl_config.as_deref() == Some(path))
                .map(|k| (k, Part::NodectlConfig))
        })
        .or_else(|| {
            listing.iter().find_map(|k| {
                if parent(&k.path) == Some(path) {
                    Some((k, Part::KeyDir))
                } else if k.public_path.as_deref().and_then(parent) == Some(path) {
                    Some((k, Part::PublicDir))
                } else {
                    None
                }
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, kind: &str, path: &str) -> Listed {
        Listed {
            name: name.into(),
            kind: kind.into(),
            path: path.into(),
            public_path: None,
            nodectl_config: None,
            restore: false,
            owner: None,
            mode: None,
        }
    }

    #[test]
    fn paths_map_to_policy_names_and_nothing_else_does() {
        let mut p12 = listed("p12", "p12", "/home/n/t/node.p12");
        p12.nodectl_config = Some("/var/tessellation/nodectl/cn-config.yaml".into());
        let mut acra = listed("acra", "acra", "/var/lib/acra/.acrakeys");
        acra.public_path = Some("/var/lib/acra/public".into());
        let cn = listed("cn-config", "file", "/var/tessellation/nodectl/cn-config.yaml");
        let l = vec![p12, acra, cn];
        let at = |p: &str| locate(&l, p).map(|(k, part)| (k.name.clone(), part));
        assert_eq!(at("/home/n/t/node.p12"), Some(("p12".into(), Part::Key)));
        assert_eq!(at("/home/n/t"), Some(("p12".into(), Part::KeyDir)));
        assert_eq!(
            at("/var/lib/acra/.acrakeys/version"),
            Some(("acra".into(), Part::AcraVersion))
        );
        assert_eq!(at("/var/lib/acra/public"), Some(("acra".into(), Part::Public)));
        assert_eq!(at("/var/lib/acra"), Some(("acra".into(), Part::KeyDir)));
        // A file keystore at nodectl's config wins over the read-only view through the p12.
        assert_eq!(
            at("/var/tessellation/nodectl/cn-config.yaml"),
            Some(("cn-config".into(), Part::Key))
        );
        for other in [
            "/etc/shadow",
            "/home/n/t/other.p12",
            "/home/n",
            "/var/lib/acra/.acrakeys/Alice",
            "/",
        ] {
            assert_eq!(at(other), None, "{other}");
        }
    }

    /// A helper that answers with canned bytes (what a lying node sends) and swallows requests.
    struct Canned {
        answer: std::io::Cursor<Vec<u8>>,
    }

    impl Read for Canned {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.answer.read(buf)
        }
    }

    impl Write for Canned {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn canned(frames: &[serde_json::Value], data: &[&[u8]]) -> Client<Canned> {
        let mut buf = Vec::new();
        for f in frames {
            proto::write_json(&mut buf, f).unwrap();
        }
        for d in data {
            proto::write_data(&mut buf, d).unwrap();
        }
        Client {
            io: Canned {
                answer: std::io::Cursor::new(buf),
            },
            hello: Hello {
                proto: proto::PROTO.into(),
                version: proto::VERSION,
                build: String::new(),
                policy: String::new(),
                restore: false,
                ready: Ready::Ok { keystores: vec![] },
            },
            listing: vec![],
        }
    }

    fn stat(kind: &str, size: u64) -> serde_json::Value {
        serde_json::json!({"kind": kind, "mode": 0o600, "uid": 0, "gid": 0, "size": size})
    }

    fn file(rel: &str, size: u64, sha: Option<&str>) -> serde_json::Value {
        serde_json::json!({"entry": {"rel": rel, "stat": stat("file", size), "sha256": sha}})
    }

    fn ask(max_files: u64, max_size: u64, contents: bool) -> Op {
        Op::ReadTree {
            keystore: "acra".into(),
            part: Part::Key,
            max_files,
            max_size,
            contents,
        }
    }

    fn header(dirs: u64, files: u64) -> serde_json::Value {
        serde_json::json!({"tree": {"root": stat("dir", 0), "dirs": dirs, "files": files}})
    }

    /// A lying helper: sizes that wrap when added, counts past what was asked, a size past any
    /// file cap, names out of order or repeated, bytes that do not match. Each is a malformed
    /// answer (the session is dropped), never an overflow, a huge allocation or an abort.
    #[test]
    fn a_hostile_tree_answer_is_refused_without_wrapping_or_allocating() {
        let malformed = |mut c: Client<Canned>, contents: bool| match c
            .read_tree(ask(10_000, 1 << 30, contents), contents)
        {
            Err(FrameError::Malformed(m)) => m,
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted"),
        };
        let half = u64::MAX / 2 + 1;
        let m = malformed(
            canned(&[header(0, 2), file("a", half, None), file("b", half, None)], &[]),
            false,
        );
        assert!(m.contains("more bytes than asked"), "{m}");
        let m = malformed(canned(&[header(u64::MAX, 2)], &[]), false);
        assert!(m.contains("more entries"), "{m}");
        let m = malformed(canned(&[header(0, 10_001)], &[]), false);
        assert!(m.contains("more entries"), "{m}");
        // A size past the file cap is refused before anything is allocated for it.
        let m = malformed(
            canned(
                &[
                    header(0, 1),
                    file("a", proto::MAX_FILE + 1, Some(&"0".repeat(64))),
                ],
                &[],
            ),
            true,
        );
        assert!(m.contains("cap") || m.contains("more bytes"), "{m}");
        let sha = crate::digest::sha256_hex(b"x");
        for frames in [
            vec![header(0, 2), file("b", 1, None), file("a", 1, None)],
            vec![header(0, 2), file("a", 1, None), file("a", 1, None)],
            vec![header(0, 1), file("../etc/shadow", 1, None)],
            vec![header(0, 1), file("a", 1, Some(&sha))],
        ] {
            malformed(canned(&frames, &[]), false);
        }
        // Bytes that are not what was declared.
        malformed(canned(&[header(0, 1), file("a", 1, Some(&sha))], &[b"y"]), true);
        // An honest answer is read whole.
        let mut c = canned(&[header(0, 1), file("a", 1, Some(&sha))], &[b"x"]);
        match c.read_tree(ask(10, 10, true), true).unwrap() {
            TreeAnswer::Tree(t) => assert_eq!(&t.files[0].1.as_ref().unwrap()[..], b"x"),
            _ => panic!("not a tree"),
        }
    }

    #[test]
    fn a_hello_of_another_version_is_refused_by_its_version_alone() {
        let mut buf = Vec::new();
        let future =
            serde_json::json!({"proto": proto::PROTO, "version": 99, "build": "9.9.9", "shape": "new"});
        proto::write_json(&mut buf, &future).unwrap();
        match Client::start(std::io::Cursor::new(buf)) {
            Err((StartError::Version { version: 99, build }, _)) => assert_eq!(build, "9.9.9"),
            Err((e, _)) => panic!("{e:?}"),
            Ok(_) => panic!("accepted"),
        }
        let mut buf = Vec::new();
        proto::write_json(&mut buf, &serde_json::json!({"hello": 1})).unwrap();
        assert!(matches!(
            Client::start(std::io::Cursor::new(buf)),
            Err((StartError::NotHelper(_), _))
        ));
        assert!(matches!(
            Client::start(std::io::Cursor::new(Vec::new())),
            Err((StartError::Closed, _))
        ));
    }
}

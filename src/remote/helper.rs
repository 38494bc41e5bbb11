//! The agent's side of the node helper: start it once per session (`sudo -n <helper>
//! node-helper ...` on one exec channel, no pty), check its hello, and map the path-based calls
//! of `ops` to keystore-named requests.
//!
//! Why a map from paths to names: `ops` thinks in the config's paths, the helper only takes
//! names of its policy's keystores (its authority comes from the node). The hello lists what the
//! policy allows, so a path no listed keystore covers is refused here, before any request, and
//! would be refused again by the helper.

use crate::nodehelper::proto::{self, Frame, FrameError, Hello, HelloHead, Listed, Op, Part, Ready, Reply};
use std::io::{Read, Write};

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

    /// Sends one request (and `data`, the bytes it declares), returns the reply.
    pub fn request(&mut self, op: Op, data: &[&[u8]]) -> Result<Reply, FrameError> {
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
        proto::read_json(&mut self.io)
    }

    /// Reads `size` bytes that follow a reply, checked against `sha256`.
    pub fn read_bytes(&mut self, size: u64, sha256: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, FrameError> {
        proto::read_bytes(&mut self.io, size, sha256)
    }

    /// The policy keystore and part a node path means, if the policy covers it.
    pub fn locate(&self, path: &str) -> Option<(&Listed, Part)> {
        locate(&self.listing, path)
    }
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

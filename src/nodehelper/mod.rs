//! `coldkeep node-helper`: the one program sudo runs on a node for `become: sudo`.
//!
//! Why it exists: pinning command lines in sudoers is not least privilege (sudo matches a
//! rule's arguments as one joined string, so `tar`, `dd` and `chmod` rules could be regrouped
//! into reading and writing anything as root). Instead the sudoers rule allows exactly this
//! helper with fixed single-word arguments, and the helper's authority comes from a root-owned
//! policy file on the node, not from the caller: requests name keystores, the policy gives their
//! paths and what may be done, and every file operation works on fds (see [`resolve`]).
//!
//! Start-up, in order: core dumps off, umask 077, the fixed argv parsed strictly (anything else
//! exits 2 before any I/O), the environment never read, a terminal on stdout refused (frames
//! must not pass a tty's line discipline), the helper's own binary and the policy checked to be
//! root's alone by an fd walk from `/`, the policy parsed. Then the versioned hello (ready, or
//! refused with the fix), then requests until stdin closes, each read under a poll deadline.
//! stdout carries frames only; diagnostics go to stderr.

pub mod policy;
pub mod proto;
pub mod read;
pub mod record;
pub mod resolve;
pub mod serve;
pub mod state;
pub mod stream;
pub mod sweep;
pub mod trees;
pub mod trust;
pub mod users;
pub mod write;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

/// How long the helper waits for the agent's next bytes (or for the agent to take its bytes)
/// before it gives up.
const IDLE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);
/// How long one helper may run in all: an agent session that dribbles a byte just inside the
/// idle deadline cannot keep a root process (and what it holds) alive for longer.
const SESSION_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The fixed arguments sudo runs the helper with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `--policy=PATH`, default [`policy::DEFAULT_POLICY`].
    pub policy: String,
    /// `--restore`: writes allowed (where the policy allows them).
    pub restore: bool,
}

/// The argv a sudoers rule pins: `node-helper [--policy=PATH] [--restore]`, in that order. Each
/// argument is one word, so sudo's space-joined matching cannot regroup them.
pub fn argv(policy: &str, restore: bool) -> Vec<String> {
    let mut v = vec!["node-helper".to_string()];
    if policy != policy::DEFAULT_POLICY {
        v.push(format!("--policy={policy}"));
    }
    if restore {
        v.push("--restore".to_string());
    }
    v
}

/// Parses the helper's argv strictly (`args[0]` is the program): exactly what [`argv`] makes.
pub fn parse_args(args: &[OsString]) -> Result<Args, String> {
    let words: Vec<&str> = args
        .iter()
        .skip(1)
        .map(|a| a.to_str().ok_or("an argument that is not UTF-8"))
        .collect::<Result<_, _>>()?;
    let usage =
        "usage: coldkeep node-helper [--policy=/ABSOLUTE/PATH] [--restore] (exactly these, in this order)";
    let mut rest = match words.split_first() {
        Some((&"node-helper", rest)) => rest,
        _ => return Err(usage.into()),
    };
    let mut out = Args {
        policy: policy::DEFAULT_POLICY.to_string(),
        restore: false,
    };
    if let Some(p) = rest.first().and_then(|w| w.strip_prefix("--policy=")) {
        if !proto::valid_fixed_path(p) {
            return Err(format!(
                "--policy must be an absolute path of [A-Za-z0-9._/-] without `.`, `..` or `//`; {usage}"
            ));
        }
        out.policy = p.to_string();
        rest = &rest[1..];
    }
    if rest.first() == Some(&"--restore") {
        out.restore = true;
        rest = &rest[1..];
    }
    if !rest.is_empty() {
        return Err(usage.into());
    }
    Ok(out)
}

/// stdin or stdout with deadlines (`poll` first): no read or write waits longer than the idle
/// deadline, and none goes past the end of the session. An agent that stops talking, or stops
/// reading, cannot keep a root process alive.
pub struct Deadlined {
    fd: i32,
    idle: std::time::Duration,
    end: std::time::Instant,
}

impl Deadlined {
    /// fd `fd` (0 or 1, open for the life of the process), each wait at most `idle`, none after `end`.
    pub fn new(fd: i32, idle: std::time::Duration, end: std::time::Instant) -> Deadlined {
        Deadlined { fd, idle, end }
    }

    fn wait(&self, flags: rustix::event::PollFlags) -> std::io::Result<()> {
        // SAFETY: the fd is open for the life of the process (sudo gives the helper stdio).
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        loop {
            let left = self.end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the session ran past its {}-second limit",
                        SESSION_DEADLINE.as_secs()
                    ),
                ));
            }
            let wait = left.min(self.idle);
            let timeout = rustix::event::Timespec {
                tv_sec: wait.as_secs() as i64,
                tv_nsec: wait.subsec_nanos() as i64,
            };
            let mut fds = [rustix::event::PollFd::new(&fd, flags)];
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) if wait == self.idle => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the agent was silent for {} seconds", self.idle.as_secs()),
                    ));
                }
                Ok(0) => continue,
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.wait(rustix::event::PollFlags::IN)?;
        // SAFETY: as in `wait`.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        loop {
            match rustix::io::read(fd.as_fd(), &mut *buf) {
                Err(rustix::io::Errno::INTR) => continue,
                r => return r.map_err(Into::into),
            }
        }
    }
}

/// Raw writes (std's stdout is line-buffered and shared with `print!`, which the helper never
/// uses), each after the fd is writable within the deadlines.
impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.wait(rustix::event::PollFlags::OUT)?;
        // SAFETY: as in `wait`.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        loop {
            match rustix::io::write(fd, buf) {
                Err(rustix::io::Errno::INTR) => continue,
                r => return r.map_err(Into::into),
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sets the limits the helper runs under itself, whatever the caller's were (sudo passes them
/// on): a caller's `ulimit -f 1` or `-t 1` would otherwise give them a signal that kills the
/// helper at a point they choose (the first write past a byte, the first CPU second). File size,
/// CPU time, data and address space unlimited, open files 4096 (a tree walk holds one per level),
/// stack 8 MiB; SIGXFSZ and SIGXCPU ignored, so a limit that could not be raised makes a write
/// fail (`EFBIG`, reported, nothing published) instead of ending the process. Core dumps stay
/// off ([`crate::harden::at_start`]).
fn own_limits() {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let unlimited = Rlimit {
        current: None,
        maximum: None,
    };
    let fixed = |n: u64| Rlimit {
        current: Some(n),
        maximum: Some(n),
    };
    for (resource, limit) in [
        (Resource::Fsize, unlimited),
        (Resource::Cpu, unlimited),
        (Resource::Data, unlimited),
        (Resource::As, unlimited),
        (Resource::Nofile, fixed(4096)),
        (Resource::Stack, fixed(8 << 20)),
    ] {
        let _ = setrlimit(resource, limit);
    }
    // SAFETY: setting the disposition of two signals to "ignore" before any thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        libc::signal(libc::SIGXCPU, libc::SIG_IGN);
    }
}

/// Checks the binary and the policy; the server, or why not with the fix.
fn prepare(args: &Args) -> Result<serve::Server, proto::Ready> {
    let refused = |problem: String, fix: String| proto::Ready::Refused { problem, fix };
    // SAFETY: fd 1 is open for the life of the process.
    if rustix::termios::isatty(unsafe { BorrowedFd::borrow_raw(1) }) {
        return Err(refused(
            "the node helper's stdout is a terminal".into(),
            "run it without a pty (ssh -T; coldkeep does)".into(),
        ));
    }
    trust::check_own_binary().map_err(|r| refused(r.problem, r.fix))?;
    let (_policy_fd, text) = trust::read_policy(&args.policy).map_err(|r| refused(r.problem, r.fix))?;
    let policy = policy::parse(&text).map_err(|e| {
        refused(
            format!("the node policy {} is not valid: {e}", args.policy),
            "print it again with `coldkeep config node-policy --node NODE` and install it".into(),
        )
    })?;
    let resolver = resolve::Resolver::new()
        .map_err(|e| refused(e.message, "check the node's root filesystem".into()))?;
    let state = state::State::open(&args.policy).map_err(|r| refused(r.problem, r.fix))?;
    Ok(serve::Server {
        policy,
        policy_path: args.policy.clone(),
        state,
        restore: args.restore,
        resolver,
        names: users::Names::default(),
    })
}

/// Runs the helper; returns the exit code. `args` is the whole argv (`args[1]` is `node-helper`).
pub fn main(args: &[OsString]) -> i32 {
    crate::harden::at_start();
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    own_limits();
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("coldkeep node-helper: {e}");
            return 2;
        }
    };
    let prepared = prepare(&args);
    let ready = match &prepared {
        Ok(server) => proto::Ready::Ok {
            keystores: server.policy.listing(),
        },
        Err(r) => r.clone(),
    };
    let hello = proto::Hello {
        proto: proto::PROTO.to_string(),
        version: proto::VERSION,
        build: env!("CARGO_PKG_VERSION").to_string(),
        policy: args.policy.clone(),
        restore: args.restore,
        ready,
    };
    let end = std::time::Instant::now() + SESSION_DEADLINE;
    let mut out = std::io::BufWriter::with_capacity(
        proto::MAX_CHUNK as usize + 16,
        Deadlined::new(1, IDLE_DEADLINE, end),
    );
    if proto::write_json(&mut out, &hello)
        .and_then(|()| out.flush())
        .is_err()
    {
        return 1;
    }
    let mut server = match prepared {
        Ok(s) => s,
        Err(proto::Ready::Refused { problem, fix }) => {
            eprintln!("coldkeep node-helper: refusing to run: {problem}; fix: {fix}");
            return 1;
        }
        Err(_) => return 1,
    };
    let code = server.serve(&mut Deadlined::new(0, IDLE_DEADLINE, end), &mut out);
    let _ = out.flush();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_agent_or_a_session_past_its_end_is_cut_off() {
        let (mut r, mut w) = std::io::pipe().unwrap();
        use std::os::fd::AsRawFd;
        let now = std::time::Instant::now();
        // Past the session's end: refused at once, whatever the idle deadline.
        let mut over = Deadlined::new(r.as_raw_fd(), IDLE_DEADLINE, now);
        let e = over.read(&mut [0u8; 4]).unwrap_err();
        assert!(e.to_string().contains("session ran past"), "{e}");
        // Nothing arrives within the idle deadline: timed out.
        let mut idle = Deadlined::new(
            r.as_raw_fd(),
            std::time::Duration::from_millis(1),
            now + SESSION_DEADLINE,
        );
        let e = idle.read(&mut [0u8; 4]).unwrap_err();
        assert!(e.to_string().contains("silent"), "{e}");
        // Bytes waiting: read.
        w.write_all(b"ok").unwrap();
        let _ = &mut r;
        let mut buf = [0u8; 4];
        assert_eq!(idle.read(&mut buf).unwrap(), 2);
        // The same deadlines on a write end nobody reads.
        let mut full = Deadlined::new(
            w.as_raw_fd(),
            std::time::Duration::from_millis(1),
            now + SESSION_DEADLINE,
        );
        let e = loop {
            if let Err(e) = full.write(&[0u8; 4096]) {
                break e;
            }
        };
        assert!(e.to_string().contains("silent"), "{e}");
    }

    fn parse(words: &[&str]) -> Result<Args, String> {
        let v: Vec<OsString> = std::iter::once("coldkeep")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect();
        parse_args(&v)
    }

    #[test]
    fn only_the_fixed_argv_is_accepted() {
        assert_eq!(
            parse(&["node-helper"]).unwrap(),
            Args {
                policy: policy::DEFAULT_POLICY.into(),
                restore: false
            }
        );
        let a = parse(&["node-helper", "--policy=/etc/coldkeep/t-1/node.yaml", "--restore"]).unwrap();
        assert_eq!(
            (a.policy.as_str(), a.restore),
            ("/etc/coldkeep/t-1/node.yaml", true)
        );
        assert!(parse(&["node-helper", "--restore"]).unwrap().restore);
        for bad in [
            &["node-helper", "--restore", "--policy=/etc/x"][..],
            &["node-helper", "--policy=/etc/x --restore"],
            &["node-helper --policy=/etc/x"],
            &["node-helper", "--policy", "/etc/x"],
            &["node-helper", "--policy=etc/x"],
            &["node-helper", "--policy=/etc/../x"],
            &["node-helper", "--restore", "--restore"],
            &["node-helper", ""],
            &["node-helper", "x"],
            &[],
            &["backup"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        // What the printed rules pin round-trips.
        for (p, r) in [
            (policy::DEFAULT_POLICY, false),
            ("/etc/coldkeep/a/node.yaml", true),
        ] {
            let mut v = vec!["coldkeep".to_string()];
            v.extend(argv(p, r));
            let v: Vec<OsString> = v.into_iter().map(OsString::from).collect();
            assert_eq!(
                parse_args(&v).unwrap(),
                Args {
                    policy: p.into(),
                    restore: r
                }
            );
        }
    }
}

//! The node helper's limits, as the SSH user would test them: what a request may make a root
//! process hold (nothing before the rule, the policy and the size allow it; then only the bytes
//! that arrived), how many helpers of a policy may run at once, and a lock no local user can
//! take from it.
use super::become_cli::{Setup, setup};
use crate::support;
use coldkeep::nodehelper::proto::{self, ErrorKind, Op, Ready, Reply, Request};
use std::fs;
use std::io::{BufRead, Write};
use support::sudo::{
    Helper, Installed, LOGIN_USER, as_user, helper_pid, status_kib, until_waiting_for_input,
};

fn armed() -> (Setup, Installed) {
    let s = setup(false);
    s.config_helper();
    let rules = s.backup_then_allow_restore();
    (s, rules)
}

fn hello(h: &mut Helper) -> proto::Hello {
    proto::read_json(h).unwrap()
}

/// Sends the header of a write of `size` bytes to the policy's `p12`, and no bytes.
fn write_header(h: &mut Helper, size: u64) {
    let op = Op::WriteFile {
        keystore: "p12".into(),
        mode: 0o400,
        size,
        sha256: "0".repeat(64),
    };
    proto::write_json(
        h,
        &Request {
            v: proto::VERSION,
            op,
        },
    )
    .unwrap();
    h.flush().unwrap();
}

fn refusal(r: &Reply) -> (ErrorKind, String) {
    match r {
        Reply::Error { kind, message, .. } => (*kind, message.clone()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A write's header alone decides: under the read rule, or larger than a P12 can be, it is
/// refused before a byte of it is read (none is sent here: a helper that waited for them would
/// never answer), and the session ends. A plausible size declared and one byte sent: the root
/// process holds about that byte, not the declared size (it used to lock the declared size in
/// memory, up to 64 MiB per sudo call, held as long as the sender dribbled).
#[test]
fn a_write_is_refused_from_its_header_and_buffered_only_as_its_bytes_arrive() {
    let (s, _rules) = armed();
    let mut h = Helper::start(&s.h, false);
    let _ = hello(&mut h);
    write_header(&mut h, 60 << 20);
    let (kind, message) = refusal(&proto::read_json(&mut h).unwrap());
    assert_eq!(kind, ErrorKind::NotAllowed, "{message}");
    assert!(message.contains("read-only sudo rule"), "{message}");
    assert_eq!(h.finish().0, Some(2), "the session ended");

    let mut h = Helper::start(&s.h, true);
    let _ = hello(&mut h);
    write_header(&mut h, proto::MAX_P12 + 1);
    let (kind, message) = refusal(&proto::read_json(&mut h).unwrap());
    assert_eq!(kind, ErrorKind::TooLarge, "{message}");
    assert_eq!(h.finish().0, Some(2));

    let mut h = Helper::start(&s.h, true);
    let _ = hello(&mut h);
    let pid = helper_pid(&s.h.policy).expect("the helper runs");
    let base = status_kib(pid, "VmLck");
    write_header(&mut h, proto::MAX_P12 - 1);
    proto::write_data(&mut h, &[7]).unwrap();
    h.flush().unwrap();
    until_waiting_for_input(&h, pid);
    let locked = status_kib(pid, "VmLck");
    assert!(
        locked <= base + 64,
        "{locked} KiB locked after one byte of a {} KiB file (was {base} KiB)",
        proto::MAX_P12 / 1024
    );
    drop(h);
    assert_eq!(fs::read(&s.p12).unwrap(), s.p12_bytes);
}

/// Eight helpers of one policy run at once; the ninth says so and stops, naming the fix; when
/// one ends, a new one starts.
#[test]
fn no_more_than_eight_helpers_of_one_policy_run_at_once() {
    let (s, _rules) = armed();
    let mut running: Vec<Helper> = (0..coldkeep::nodehelper::state::SLOTS)
        .map(|_| {
            let mut h = Helper::start(&s.h, false);
            assert!(matches!(hello(&mut h).ready, Ready::Ok { .. }));
            h
        })
        .collect();
    let mut ninth = Helper::start(&s.h, false);
    match hello(&mut ninth).ready {
        Ready::Refused { problem, fix } => {
            assert!(problem.contains("8 node helpers"), "{problem}");
            assert!(fix.contains("wait for the runs"), "{fix}");
        }
        other => panic!("a ninth helper ran: {other:?}"),
    }
    assert_eq!(ninth.finish().0, Some(1));
    running.pop().unwrap().finish();
    let mut again = Helper::start(&s.h, false);
    assert!(matches!(hello(&mut again).ready, Ready::Ok { .. }));
}

/// The login user (any local user: the policy file is world-readable) locks the policy file and
/// holds the lock: a restore goes through anyway (the helper's lock is a file in its root-only
/// state directory, which the user cannot even open).
#[test]
fn a_local_user_holding_a_lock_on_the_policy_file_blocks_no_restore() {
    let (s, _rules) = armed();
    let mut holder = std::process::Command::new("su")
        .args([
            LOGIN_USER,
            "-s",
            "/bin/sh",
            "-c",
            &format!("exec flock -x {} -c 'echo locked; read x; true'", s.h.policy),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked", "the user holds the lock");
    s.replace_p12_with(b"something else");
    let (code, out) = s.restore("a", "p12", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(fs::read(&s.p12).unwrap(), s.p12_bytes);
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    let state = s.h.state_dir();
    let out = as_user(LOGIN_USER, &format!("flock -n {state}/lock true"));
    assert!(!out.status.success(), "the user could open the helper's lock");
}

/// The caller's resource limits pass through sudo to the helper. `ulimit -f 1` used to give the
/// SSH user a signal (SIGXFSZ) that killed the helper at its first write past 512 bytes, a
/// point of their choosing. The helper now raises its limits where the kernel lets root (with
/// CAP_SYS_RESOURCE: the write goes through whole) and ignores SIGXFSZ, so where the limit
/// stays (a container without that capability, as here) the write fails cleanly: the old key
/// under its name, no temp beside it, and the helper alive to answer the next request.
#[test]
fn the_callers_file_size_limit_never_kills_the_helper_mid_write() {
    let (s, _rules) = armed();
    assert!(s.p12_bytes.len() > 512, "the key is larger than the limit");
    let words = coldkeep::nodehelper::argv(&s.h.policy, true).join(" ");
    let mut h = Helper::start_line(&format!("ulimit -f 1 && exec sudo -n {} {words}", s.h.program));
    assert!(matches!(hello(&mut h).ready, Ready::Ok { .. }));
    s.replace_p12_with(b"something else");
    let op = Op::WriteFile {
        keystore: "p12".into(),
        mode: 0o400,
        size: s.p12_bytes.len() as u64,
        sha256: coldkeep::digest::sha256_hex(&s.p12_bytes),
    };
    proto::write_json(
        &mut h,
        &Request {
            v: proto::VERSION,
            op,
        },
    )
    .unwrap();
    proto::write_data(&mut h, &s.p12_bytes).unwrap();
    h.flush().unwrap();
    let r: Reply = proto::read_json(&mut h).expect("the helper answered (it was not killed)");
    match r {
        Reply::Written { mode: 0o400, .. } => assert_eq!(fs::read(&s.p12).unwrap(), s.p12_bytes),
        Reply::Error {
            kind: ErrorKind::Failed,
            message,
            ..
        } if message.contains("File too large") => {
            assert_eq!(fs::read(&s.p12).unwrap(), b"something else");
        }
        other => panic!("{other:?}"),
    }
    let dir = s.p12.parent().unwrap();
    assert_eq!(
        super::become_cli::names_in(dir),
        ["nodeadmin-node.p12"],
        "no temp left"
    );
    let op = Op::Stat {
        keystore: "p12".into(),
        part: proto::Part::Key,
    };
    proto::write_json(
        &mut h,
        &Request {
            v: proto::VERSION,
            op,
        },
    )
    .unwrap();
    h.flush().unwrap();
    assert!(matches!(
        proto::read_json(&mut h).unwrap(),
        Reply::Stat { stat: Some(_) }
    ));
    assert_eq!(h.finish().0, Some(0));
}

//! The node helper as the attacker sees it: whoever holds the backup user's SSH key, on a node
//! laid out the way nodectl lays it out (the node admin, who is the SSH user, owns
//! `~/tessellation`, which holds the root-only P12). With the rules and policy installed as an
//! operator installs them:
//! - the three reproductions of the issue (tar, dd and chmod regrouped) get nothing: sudo
//!   refuses the programs, and the helper's own words regrouped are refused by the helper;
//! - requests with a path, for an unlisted keystore, oversized or malformed, are refused;
//! - the key's directory swapped for one holding `node.p12 -> /etc/shadow`, a hard link to a
//!   root file, a link at the key or temp name during a restore: refused, nothing read or
//!   written through them;
//! - a loop renaming the directory back and forth while a fixed number of backups and writes run:
//!   every backup holds the real key or fails, the victim is never written.
use super::become_cli::{Setup, names_in, setup};
use crate::support;
use coldkeep::nodehelper::proto::{self, ErrorKind, Op, Part, Reply, Request};
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use support::fleet::text;
use support::sudo::{
    Helper, Installed, LOGIN_USER, Pause, as_user, helper_pid, kill_helper, mode, owner_of, sudo_as,
    until_waiting_for_input,
};

/// nodectl's default layout: the login user owns its home and `tessellation`; the key is root's.
fn nodectl_layout(s: &Setup) -> PathBuf {
    let tess = s.p12.parent().unwrap().to_path_buf();
    let home = tess.parent().unwrap();
    std::os::unix::fs::chown(home, Some(uid(LOGIN_USER)), Some(uid(LOGIN_USER))).unwrap();
    std::os::unix::fs::chown(&tess, Some(uid(LOGIN_USER)), Some(uid(LOGIN_USER))).unwrap();
    tess
}

fn uid(user: &str) -> u32 {
    text(
        &std::process::Command::new("id")
            .args(["-u", user])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .parse()
    .unwrap()
}

/// Set up with the read and restore rules and the restore policy for node `a`.
fn armed() -> (Setup, Installed) {
    let s = setup(false);
    s.config_helper();
    let rules = s.backup_then_allow_restore();
    (s, rules)
}

fn ask(h: &mut Helper, op: Op) -> Reply {
    proto::write_json(
        h,
        &Request {
            v: proto::VERSION,
            op,
        },
    )
    .unwrap();
    h.flush().unwrap();
    proto::read_json(h).unwrap()
}

fn hello(h: &mut Helper) -> proto::Hello {
    proto::read_json(h).unwrap()
}

/// Sends a WriteFile request for the policy's `p12` with `bytes` (declared with `sha256`).
fn send_write(h: &mut Helper, mode: u32, bytes: &[u8], sha256: &str) {
    let op = Op::WriteFile {
        keystore: "p12".into(),
        mode,
        size: bytes.len() as u64,
        sha256: sha256.to_string(),
    };
    proto::write_json(
        h,
        &Request {
            v: proto::VERSION,
            op,
        },
    )
    .unwrap();
    proto::write_data(h, bytes).unwrap();
    h.flush().unwrap();
}

/// A write of `bytes` to the policy's `p12` (mode 0400), and the helper's reply.
fn write_key(h: &mut Helper, bytes: &[u8]) -> Reply {
    send_write(h, 0o400, bytes, &coldkeep::digest::sha256_hex(bytes));
    proto::read_json(h).unwrap()
}

fn refused(reply: &Reply, kind: ErrorKind) -> String {
    match reply {
        Reply::Error { kind: k, message, .. } if *k == kind => message.clone(),
        other => panic!("expected a {kind:?} refusal, got {other:?}"),
    }
}

#[test]
fn the_three_reproductions_typed_by_hand_get_nothing() {
    let (s, _rules) = armed();
    let tess = nodectl_layout(&s);
    let acra = s.acra.display().to_string();
    let key = s.p12.display().to_string();
    let shadow = fs::read("/etc/shadow").unwrap();
    // 1. tar with its words regrouped (the Acra keystore), run from a directory the user owns.
    let out = as_user(
        LOGIN_USER,
        &format!(
            "cd {} && sudo -n /usr/bin/tar --hard-dereference '-C {acra}' '-cf -' .",
            tess.display()
        ),
    );
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("a password is required"),
        "{}",
        text(&out.stderr)
    );
    // 2. dd through a name with a space that the user made a link to /etc/shadow; and of= into
    //    /etc/sudoers.d.
    let trick = tess.join("nodeadmin-node.p12 iflag=nofollow");
    std::os::unix::fs::symlink("/etc/shadow", &trick).unwrap();
    for args in [
        format!("/usr/bin/dd 'if={key} iflag=nofollow' status=none"),
        format!("/usr/bin/dd if=/dev/stdin 'of={key} oflag=nofollow' status=none"),
        "/usr/bin/dd if=/dev/stdin of=/etc/sudoers.d/pwned status=none".to_string(),
    ] {
        let out = sudo_as(LOGIN_USER, &args);
        assert!(!out.status.success() && out.stdout.is_empty(), "allowed: {args}");
        assert!(
            !out.stdout.windows(16).any(|w| shadow.windows(16).any(|x| x == w)),
            "{args}"
        );
    }
    assert!(!Path::new("/etc/sudoers.d/pwned").exists());
    // 3. chmod --reference on a copy of bash the user made beside the key.
    let bash = tess.join("bash");
    as_user(LOGIN_USER, &format!("cp /bin/bash {}", bash.display()));
    let out = sudo_as(
        LOGIN_USER,
        &format!("/usr/bin/chmod --reference=/usr/bin/sudo -- {}", bash.display()),
    );
    assert!(!out.status.success());
    let out = sudo_as(
        LOGIN_USER,
        &format!("/usr/bin/chown root:root -- {}", bash.display()),
    );
    assert!(!out.status.success());
    assert_eq!(mode(&bash) & 0o6000, 0, "no set-id bit");
    assert_ne!(owner_of(&bash), "root:root");
    // The helper's own words, regrouped into one argument or with an extra one: sudo either
    // refuses, or (the joined string matches) runs the helper, which refuses the argv itself.
    let words = coldkeep::nodehelper::argv(&s.h.policy, true);
    for args in [
        format!("{} '{}'", s.h.program, words.join(" ")),
        format!("{} {} /etc/shadow", s.h.program, words.join(" ")),
        format!("{} node-helper '--policy={} --restore'", s.h.program, s.h.policy),
        format!("{} node-helper --policy=/etc/shadow", s.h.program),
    ] {
        let out = sudo_as(LOGIN_USER, &args);
        assert!(
            !out.status.success() && out.stdout.is_empty(),
            "{args}: {}",
            text(&out.stdout)
        );
    }
    // The key, the victims and the Acra tree are as they were.
    assert_eq!(fs::read(&s.p12).unwrap(), s.p12_bytes);
    assert_eq!((owner_of(&s.p12), mode(&s.p12)), ("root:root".to_string(), 0o400));
    assert_eq!(fs::read("/etc/shadow").unwrap(), shadow);
    let left: Vec<String> = names_in(&tess)
        .into_iter()
        .filter(|n| n.contains("coldkeep"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn requests_with_paths_unlisted_keystores_and_malformed_or_oversized_frames_are_refused() {
    let (s, _rules) = armed();
    let shadow = fs::read("/etc/shadow").unwrap();
    // A path in a request (as a field, as the part, as the keystore): refused, nothing read.
    let raw = |json: &str| -> (Vec<u8>, Option<i32>) {
        let mut h = Helper::start(&s.h, true);
        let _ = hello(&mut h);
        let mut frame = ((json.len() + 1) as u32).to_be_bytes().to_vec();
        frame.push(b'J');
        frame.extend_from_slice(json.as_bytes());
        h.write_all(&frame).unwrap();
        h.flush().unwrap();
        let mut out = Vec::new();
        use std::io::Read;
        let _ = h.read_to_end(&mut out);
        let (code, _) = h.finish();
        (out, code)
    };
    for json in [
        r#"{"v":2,"op":{"read_file":{"keystore":"p12","part":"key","max_size":100000,"path":"/etc/shadow"}}}"#,
        r#"{"v":2,"op":{"read_file":{"keystore":"p12","part":"/etc/shadow","max_size":100000}}}"#,
        r#"{"v":2,"op":{"read_file":{"keystore":"p12","part":"../../etc/shadow","max_size":100000}}}"#,
        r#"{"v":2,"op":{"exec":{"argv":["/bin/sh","-c","id"]}}}"#,
        r#"{"v":1,"op":{"stat":{"keystore":"p12","part":"key"}}}"#,
        r#"not json at all"#,
    ] {
        let (out, code) = raw(json);
        assert_eq!(code, Some(2), "{json}");
        assert!(
            !out.windows(16).any(|w| shadow.windows(16).any(|x| x == w)),
            "{json}"
        );
        let mut r = out.as_slice();
        let reply: Reply = proto::read_json(&mut r).unwrap();
        refused(&reply, ErrorKind::BadRequest);
    }
    // A tree restore with a planted `..` (or an absolute name) in a file name: refused before a
    // byte of it is read, the helper stops.
    for rel in ["../../../etc/cron.d/x", "/etc/cron.d/x", "client/../../x", "a//b"] {
        let mut h = Helper::start(&s.h, true);
        let _ = hello(&mut h);
        let op = Op::RestoreTrees {
            keystore: "acra".into(),
            roots: vec![proto::UploadRoot {
                part: Part::Key,
                replace: true,
                files: 1,
            }],
        };
        proto::write_json(
            &mut h,
            &Request {
                v: proto::VERSION,
                op,
            },
        )
        .unwrap();
        let file = proto::UploadFile {
            rel: rel.into(),
            mode: 0o600,
            size: 1,
            sha256: coldkeep::digest::sha256_hex(b"x"),
        };
        proto::write_json(&mut h, &file).unwrap();
        h.flush().unwrap();
        let r: Reply = proto::read_json(&mut h).unwrap();
        assert!(
            refused(&r, ErrorKind::BadRequest).contains("not allowed"),
            "{rel}: {r:?}"
        );
        assert_eq!(h.finish().0, Some(2), "{rel}");
    }
    assert!(!Path::new("/etc/cron.d/x").exists());
    // A keystore the policy does not list, or a path as its name: refused, the session goes on.
    let mut h = Helper::start(&s.h, true);
    let _ = hello(&mut h);
    for name in ["other", "/etc/shadow", "p12/../../etc"] {
        let r = ask(
            &mut h,
            Op::ReadFile {
                keystore: name.into(),
                part: Part::Key,
                max_size: 1 << 20,
            },
        );
        assert!(
            refused(&r, ErrorKind::NotAllowed).contains("is not in the node's policy"),
            "{r:?}"
        );
    }
    // nodectl's config is not listed for this keystore: refused by name.
    let r = ask(
        &mut h,
        Op::ReadFile {
            keystore: "p12".into(),
            part: Part::NodectlConfig,
            max_size: 1 << 20,
        },
    );
    assert!(
        refused(&r, ErrorKind::NotAllowed).contains("lists no nodectl_config"),
        "{r:?}"
    );
    // The listed key is read (the session works), with its declared size and hash.
    match ask(
        &mut h,
        Op::ReadFile {
            keystore: "p12".into(),
            part: Part::Key,
            max_size: 1 << 20,
        },
    ) {
        Reply::File { stat, sha256 } => {
            let bytes = proto::read_bytes(&mut h, stat.size, &sha256).unwrap();
            assert_eq!(&bytes[..], &s.p12_bytes[..]);
        }
        other => panic!("{other:?}"),
    }
    // An oversized frame: refused from its header, the helper stops.
    h.write_all(&[0xff, 0xff, 0xff, 0xff, b'J']).unwrap();
    h.flush().unwrap();
    let r: Reply = proto::read_json(&mut h).unwrap();
    assert!(
        refused(&r, ErrorKind::BadRequest).contains("over the 65536-byte cap"),
        "{r:?}"
    );
    assert!(
        matches!(proto::read_frame(&mut h), Err(proto::FrameError::Closed)),
        "the helper stopped"
    );
    assert_eq!(h.finish().0, Some(2));

    // A write under the restore rule whose bytes do not match their declared hash: nothing written.
    let mut h = Helper::start(&s.h, true);
    let _ = hello(&mut h);
    send_write(&mut h, 0o400, b"evil", &"0".repeat(64));
    let r: Reply = proto::read_json(&mut h).unwrap();
    assert!(refused(&r, ErrorKind::BadRequest).contains("SHA-256"), "{r:?}");
    drop(h);
    // Set-id bits are never set; and under the read rule nothing is written at all.
    let mut h = Helper::start(&s.h, true);
    let _ = hello(&mut h);
    let sha = coldkeep::digest::sha256_hex(b"evil");
    send_write(&mut h, 0o4755, b"evil", &sha);
    let r: Reply = proto::read_json(&mut h).unwrap();
    assert!(refused(&r, ErrorKind::NotAllowed).contains("set-id"), "{r:?}");
    drop(h);
    let mut h = Helper::start(&s.h, false);
    let hello = hello(&mut h);
    assert!(!hello.restore);
    send_write(&mut h, 0o400, b"evil", &sha);
    let r: Reply = proto::read_json(&mut h).unwrap();
    assert!(
        refused(&r, ErrorKind::NotAllowed).contains("read-only sudo rule"),
        "{r:?}"
    );
    assert_eq!(fs::read(&s.p12).unwrap(), s.p12_bytes);
    // stdout carried frames only: the hello was a frame, every reply was one.
    let (_, stderr) = h.finish();
    assert!(!stderr.contains("evil"), "{stderr}");
}

/// The artifact files in a keystore directory (not the listing's index caches, dot files that a
/// listing may write).
fn artifact_files(dir: &std::path::Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'))
        .count()
}

#[test]
fn the_keys_directory_swapped_for_a_link_to_etc_shadow_or_a_hard_link_fails_that_keystore_alone() {
    let (s, _rules) = armed();
    let tess = nodectl_layout(&s);
    let store_p12 = s.fleet.store().join("a").join("p12");
    let before = artifact_files(&store_p12);
    // The SSH user swaps the directory for one of its own holding the key's name as a link.
    let out = as_user(
        LOGIN_USER,
        &format!(
            "cd {0}/.. && mv tessellation tessellation.real && mkdir tessellation && ln -s /etc/shadow tessellation/{1}",
            tess.display(),
            s.p12.file_name().unwrap().to_str().unwrap()
        ),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = s.backup_json();
    for o in report["outcomes"].as_array().unwrap() {
        let is_p12 = o["keystore"] == "p12";
        assert_eq!(o["ok"], !is_p12, "{o}");
        if is_p12 {
            assert!(o["error"].as_str().unwrap().contains("symbolic link"), "{o}");
        }
    }
    assert_eq!(
        artifact_files(&store_p12),
        before,
        "nothing stored for the keystore"
    );
    s.fleet
        .assert_not_on_local_disk(&[&fs::read("/etc/shadow").unwrap()]);
    // A hard link to a root-only file (as `protected_hardlinks=0` allows): refused by its link count.
    fs::remove_file(tess.join(s.p12.file_name().unwrap())).unwrap();
    let secret = PathBuf::from(
        s.fleet
            .put("a", "etc/root-secret", &b"root only ".repeat(8), 0o400),
    );
    fs::hard_link(&secret, &s.p12).unwrap();
    let report = s.backup_json();
    let p12 = report["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["keystore"] == "p12")
        .unwrap()
        .clone();
    assert!(
        p12["error"].as_str().unwrap().contains("2 names (a hard link"),
        "{p12}"
    );
    assert_eq!(artifact_files(&store_p12), before);
    s.fleet.assert_not_on_local_disk(&[&b"root only ".repeat(8)]);
    // A restore over the hard link is refused by the helper too: the root file is untouched.
    let mut h = Helper::start(&s.h, true);
    let _ = hello(&mut h);
    let r = write_key(&mut h, &s.p12_bytes);
    assert!(refused(&r, ErrorKind::Unsafe).contains("hard link"), "{r:?}");
    assert_eq!(fs::read(&secret).unwrap(), b"root only ".repeat(8));
    assert_eq!(fs::metadata(&secret).unwrap().nlink(), 2);
}

#[test]
fn a_link_at_the_key_or_temp_name_during_a_restore_is_never_written_through() {
    let (s, _rules) = armed();
    let tess = nodectl_layout(&s);
    let victim = PathBuf::from(s.fleet.put("a", "etc/victim", b"do not touch", 0o644));
    let name = s.p12.file_name().unwrap().to_str().unwrap().to_string();
    // The key's name is a link (the user replaced it between the plan and the write).
    fs::rename(&s.p12, tess.join("saved.p12")).unwrap();
    std::os::unix::fs::symlink(&victim, &s.p12).unwrap();
    let mut h = Helper::start(&s.h, true);
    let _ = hello(&mut h);
    let r = write_key(&mut h, b"new key bytes");
    assert!(
        refused(&r, ErrorKind::Unsafe).contains("not a regular file"),
        "{r:?}"
    );
    assert_eq!(fs::read(&victim).unwrap(), b"do not touch");
    assert_eq!(mode(&victim), 0o644);
    fs::remove_file(&s.p12).unwrap();
    fs::rename(tess.join("saved.p12"), &s.p12).unwrap();
    // Links at temp names (the old fixed one and any the user guesses) are never followed: the
    // helper's temp has 128 random bits and O_EXCL|O_NOFOLLOW; the guesses stay links.
    let mut planted = vec![format!(".{name}.coldkeep-tmp")];
    planted.extend((0..16).map(|i| format!(".{name}.coldkeep-tmp-{i:032x}")));
    for p in &planted {
        std::os::unix::fs::symlink(&victim, tess.join(p)).unwrap();
    }
    let r = write_key(&mut h, b"new key bytes");
    assert!(
        matches!(
            r,
            Reply::Written {
                mode: 0o400,
                uid: 0,
                gid: 0
            }
        ),
        "{r:?}"
    );
    assert_eq!(fs::read(&s.p12).unwrap(), b"new key bytes");
    assert_eq!((owner_of(&s.p12), mode(&s.p12)), ("root:root".to_string(), 0o400));
    assert_eq!(fs::read(&victim).unwrap(), b"do not touch");
    assert_eq!(mode(&victim), 0o644);
    // The leftovers at the temp prefix were swept (links unlinked, never followed); the old
    // fixed name is not the helper's and stays a link nobody followed.
    assert_eq!(names_in(&tess), [planted[0].as_str(), name.as_str()]);
    assert!(tess.join(&planted[0]).is_symlink());
    // A root-owned directory the user can rename (it sits in the user's directory beside the
    // key; across directories its `..` would need the user to write it) renamed to a temp name:
    // a sweep never empties a directory, so root's files in it survive.
    let rootdir = tess.join("root-owned");
    fs::create_dir(&rootdir).unwrap();
    fs::write(rootdir.join("root-file"), b"root's").unwrap();
    let moved = tess.join(format!(".{name}.coldkeep-tmp-{:032x}", 7));
    let out = as_user(
        LOGIN_USER,
        &format!("mv {} {}", rootdir.display(), moved.display()),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = write_key(&mut h, b"newer key bytes");
    assert!(matches!(r, Reply::Written { .. }), "{r:?}");
    assert_eq!(fs::read(moved.join("root-file")).unwrap(), b"root's");
    drop(h);
}

/// A loop run by the SSH user swaps the key's directory with one of its own (holding the key's
/// name as a link to a victim file) as fast as it can, while 3 backups (the CLI) and 15 writes
/// (one helper session) run. Every backup either holds the real key
/// or fails; every write either lands in the real directory or is refused; the victim is never
/// written; at the end the real key is a root:root 0400 file with the key's bytes.
#[test]
fn a_directory_swapped_in_a_loop_during_reads_and_writes_is_never_followed() {
    let (s, _rules) = armed();
    let tess = nodectl_layout(&s);
    let home = tess.parent().unwrap().to_path_buf();
    let victim = PathBuf::from(
        s.fleet
            .put("a", "etc/victim", b"victim bytes, never to be written", 0o644),
    );
    let victim_before = fs::read(&victim).unwrap();
    let name = s.p12.file_name().unwrap().to_str().unwrap().to_string();
    let script = format!(
        "cd {home} && mkdir evil && ln -s {victim} evil/{name} && \
         while [ ! -e STOP ]; do mv tessellation real; mv evil tessellation; mv tessellation evil; mv real tessellation; done",
        home = home.display(),
        victim = victim.display(),
    );
    let racer = Racer {
        child: std::process::Command::new("su")
            .args([LOGIN_USER, "-s", "/bin/sh", "-c", &script])
            .spawn()
            .unwrap(),
        stop: home.join("STOP"),
    };
    let mut writer = Helper::start(&s.h, true);
    let _ = hello(&mut writer);
    // A fixed number of rounds, however fast the machine: no speed target here.
    let (mut refused_reads, mut refused_writes) = (0, 0);
    for _ in 0..3 {
        let (code, _) = s.run(&["backup", "--force"]);
        refused_reads += usize::from(code != 0);
        for _ in 0..5 {
            match write_key(&mut writer, &s.p12_bytes) {
                Reply::Written {
                    mode: 0o400,
                    uid: 0,
                    gid: 0,
                } => {}
                Reply::Error {
                    kind: ErrorKind::Unsafe | ErrorKind::NotFound | ErrorKind::NotADirectory,
                    ..
                } => refused_writes += 1,
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(racer.stop().success(), "the racer ran");
    drop(writer);
    // The loop stops after a whole round: the real directory is back under its name.
    assert!(!tess.join(&name).is_symlink());
    eprintln!("race: 3 backups ({refused_reads} refused), 15 writes ({refused_writes} refused)");
    assert_eq!(
        fs::read(&victim).unwrap(),
        victim_before,
        "the victim was never written"
    );
    assert_eq!(mode(&victim), 0o644);
    assert!(!home.join("evil").join(&name).exists() || home.join("evil").join(&name).is_symlink());
    // Every stored P12 is the real key: verify opens each with the password.
    let identity = s.fleet.age_identity.to_str().unwrap().to_string();
    let (code, out) = s.run(&["verify", "--identity", &identity]);
    assert_eq!(code, 0, "{out}");
    s.fleet.assert_not_on_local_disk(&[&victim_before]);
    assert_eq!(fs::read(&s.p12).unwrap(), s.p12_bytes);
    assert_eq!((owner_of(&s.p12), mode(&s.p12)), ("root:root".to_string(), 0o400));
    let stray: Vec<String> = names_in(&tess).into_iter().filter(|n| *n != name).collect();
    assert!(stray.is_empty(), "{stray:?}");
}

/// The racing loop, stopped (by its STOP file, then by its pid) however the test ends.
struct Racer {
    child: std::process::Child,
    stop: PathBuf,
}

impl Racer {
    fn stop(mut self) -> std::process::ExitStatus {
        let _ = fs::write(&self.stop, b"");
        self.child.wait().unwrap()
    }
}

impl Drop for Racer {
    fn drop(&mut self) {
        let _ = fs::write(&self.stop, b"");
        if let Ok(None) = self.child.try_wait() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::time::Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::yield_now();
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// SIGKILL lands on the helper at each step of a write: while its bytes stream in (the helper
/// seen waiting for the rest), with its temp made, with the temp written and owned, and right
/// after the rename (the helper's pause points: the test opens a fifo exactly when the helper is
/// there, no timing). The key's name always holds the old file or the new one, whole, root:root
/// 0400 (the new one only once renamed); what a killed write left beside it is swept by the next.
#[test]
fn killing_the_helper_at_each_step_of_a_write_leaves_the_old_or_the_new_file() {
    let (s, _rules) = armed();
    let tess = s.p12.parent().unwrap().to_path_buf();
    let name = s.p12.file_name().unwrap().to_str().unwrap().to_string();
    // Another version of the key: the real one with a different tail (several data frames).
    let mut other = s.p12_bytes.clone();
    other.extend(std::iter::repeat_n(0x5a, 512 * 1024));
    for (step, lands) in [
        ("mid-payload", false),
        ("write-temp", false),
        ("write-ready", false),
        ("write-renamed", true),
    ] {
        let before = fs::read(&s.p12).unwrap();
        let bytes = if before == other { &s.p12_bytes } else { &other };
        let pause = (step != "mid-payload").then(|| Pause::at(&s.h, step));
        let mut h = Helper::start(&s.h, true);
        let _ = hello(&mut h);
        let pid = helper_pid(&s.h.policy).expect("the helper runs");
        let op = Op::WriteFile {
            keystore: "p12".into(),
            mode: 0o400,
            size: bytes.len() as u64,
            sha256: coldkeep::digest::sha256_hex(bytes),
        };
        proto::write_json(
            &mut h,
            &Request {
                v: proto::VERSION,
                op,
            },
        )
        .unwrap();
        let held = match &pause {
            None => {
                proto::write_data(&mut h, &bytes[..bytes.len() / 2]).unwrap();
                h.flush().unwrap();
                until_waiting_for_input(&h, pid);
                None
            }
            Some(p) => {
                proto::write_data(&mut h, bytes).unwrap();
                h.flush().unwrap();
                Some(p.reached())
            }
        };
        kill_helper(&s.h);
        drop(held);
        let _ = h.finish();
        let now = fs::read(&s.p12).unwrap();
        let expected = if lands { bytes } else { &before };
        assert!(
            now == *expected,
            "{step}: the key's name holds neither the old nor the new file as expected"
        );
        assert_eq!(
            (owner_of(&s.p12), mode(&s.p12)),
            ("root:root".to_string(), 0o400),
            "{step}"
        );
    }
    // One more write, not interrupted: it sweeps what the killed ones left.
    let mut h = Helper::start(&s.h, true);
    let _ = hello(&mut h);
    let r = write_key(&mut h, &s.p12_bytes);
    assert!(matches!(r, Reply::Written { .. }), "{r:?}");
    assert_eq!(names_in(&tess), [name]);
    assert_eq!(fs::read(&s.p12).unwrap(), s.p12_bytes);
}

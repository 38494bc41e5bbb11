//! The Debian package end to end: build it with `deploy/debian/build-deb`, install it with
//! `dpkg -i` (twice: the maintainer scripts must be idempotent), check what it installed
//! (`coldkeep --version`, the system user and its 0700 state directory, `systemd-analyze verify`
//! on the installed units, `man -l` on the page, completions bash can parse, the udev rules, the
//! conffile), then purge it and check the backups' directory survived.
//!
//! The package is made from the binary under test (`--no-build` with a profile directory of its
//! own in a temp dir) rather than a second, release build: the test is about what the package
//! lays down and what its scripts do, and a release build would add minutes to every CI run.
//!
//! Needs root and `cargo deb`. Without them, and only when CI is not set, the test prints why
//! and passes; under CI it fails instead (`.ci/run` installs cargo-deb and runs as root).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `Some(reason)` when this machine cannot run the test; under CI that is a failure.
fn missing_prerequisite() -> Option<String> {
    if !Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Some("`cargo deb` is not installed (cargo install --locked cargo-deb)".into());
    }
    if !run("id", &["-u"]).stdout.starts_with(b"0\n") {
        return Some("not root: dpkg -i needs root".into());
    }
    if run("dpkg-query", &["-W", "-f=${Status}", "coldkeep"])
        .stdout
        .starts_with(b"install")
    {
        return Some("a coldkeep package is installed on this machine: not replacing or purging it".into());
    }
    None
}

/// Purges the package however the test ends, so a failed assertion never leaves it installed.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "coldkeep"]);
    }
}

#[test]
fn the_deb_installs_binary_units_docs_user_and_purges_cleanly() {
    if let Some(reason) = missing_prerequisite() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(!ci, "the package test must run under CI, but {reason}");
        println!("SKIPPED the_deb_installs_binary_units_docs_user_and_purges_cleanly: {reason}");
        return;
    }
    let user_existed = run("getent", &["passwd", "coldkeep"]).status.success();
    let state_existed = Path::new("/var/lib/coldkeep").exists();

    // Build: the binary under test in a profile directory of its own, then the packaging script.
    let tmp = tempfile::tempdir().unwrap();
    let profile_dir = tmp.path().join("deb-test");
    fs::create_dir_all(&profile_dir).unwrap();
    fs::copy(env!("CARGO_BIN_EXE_coldkeep"), profile_dir.join("coldkeep")).unwrap();
    let out_dir = tmp.path().join("out");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/debian/build-deb");
    let build = Command::new(script)
        .args(["--no-build", "-o"])
        .arg(&out_dir)
        .args(["--strip", "--fast"])
        .env("CARGO_TARGET_DIR", tmp.path())
        .env("COLDKEEP_DEB_PROFILE", "deb-test")
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "build-deb: {}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let deb = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("a .deb");
    let deb = deb.to_str().unwrap();
    let fields = ok("dpkg-deb", &["-f", deb, "Package", "Depends"]);
    assert!(
        fields.contains("Package: coldkeep") && fields.contains("libssl3"),
        "{fields}"
    );

    let _installed = Installed;
    ok("dpkg", &["-i", deb]);
    // Reinstalling runs the maintainer scripts again: they must not fail or duplicate anything.
    ok("dpkg", &["-i", deb]);

    let version = ok("/usr/bin/coldkeep", &["--version"]);
    assert_eq!(version.trim(), format!("coldkeep {}", env!("CARGO_PKG_VERSION")));

    // The node helper in the installed binary: root's path, so it gets as far as the policy,
    // which is missing; it says so in its hello and on stderr, and exits 1.
    let helper = Command::new("/usr/bin/coldkeep")
        .arg("node-helper")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        helper.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&helper.stderr)
    );
    let stderr = String::from_utf8_lossy(&helper.stderr);
    assert!(
        stderr.contains("/etc/coldkeep/node.yaml (the node policy) does not exist"),
        "{stderr}"
    );
    let hello: coldkeep::nodehelper::proto::Hello =
        coldkeep::nodehelper::proto::read_json(&mut helper.stdout.as_slice()).unwrap();
    assert!(
        matches!(hello.ready, coldkeep::nodehelper::proto::Ready::Refused { .. }),
        "{hello:?}"
    );
    let example = fs::read_to_string("/usr/share/doc/coldkeep/examples/node.yaml").unwrap();
    coldkeep::nodehelper::policy::parse(&example).unwrap();

    let passwd = ok("getent", &["passwd", "coldkeep"]);
    assert_eq!(passwd.lines().count(), 1);
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    assert_eq!(fields[5], "/var/lib/coldkeep", "{passwd}");
    assert!(fields[6].ends_with("nologin"), "{passwd}");
    let uid: u32 = fields[2].parse().unwrap();
    let state = fs::metadata("/var/lib/coldkeep").unwrap();
    assert_eq!(state.permissions().mode() & 0o777, 0o700);
    assert_eq!(state.uid(), uid);

    let conffiles = ok("dpkg-query", &["-W", "-f=${Conffiles}", "coldkeep"]);
    assert!(conffiles.contains("/etc/coldkeep/coldkeep.yaml"), "{conffiles}");
    let shipped = fs::read_to_string("/etc/coldkeep/coldkeep.yaml").unwrap();
    assert_eq!(
        shipped,
        coldkeep::init::TEMPLATE,
        "the documented template is the conffile"
    );

    let units = [
        "/lib/systemd/system/coldkeep.service",
        "/lib/systemd/system/coldkeep-backup.service",
        "/lib/systemd/system/coldkeep-backup.timer",
    ];
    let verify = run("systemd-analyze", &[&["verify"], &units[..]].concat());
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned:\n{stderr}"
    );

    let page = Command::new("man")
        .args(["--warnings", "-l", "/usr/share/man/man1/coldkeep.1.gz"])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .output()
        .unwrap();
    assert!(page.status.success(), "{}", String::from_utf8_lossy(&page.stderr));
    assert!(String::from_utf8_lossy(&page.stderr).trim().is_empty());
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(
        page.contains("SYNOPSIS") && page.contains("coldkeep-init(1)"),
        "{page}"
    );
    assert!(Path::new("/usr/share/man/man1/coldkeep-backup.1.gz").is_file());

    ok("bash", &["-n", "/usr/share/bash-completion/completions/coldkeep"]);
    assert!(Path::new("/usr/share/zsh/vendor-completions/_coldkeep").is_file());
    assert!(Path::new("/usr/share/fish/vendor_completions.d/coldkeep.fish").is_file());
    let rules = fs::read_to_string("/lib/udev/rules.d/49-coldkeep-hw.rules").unwrap();
    assert!(rules.contains("idVendor}==\"1d50\"") && rules.contains("idVendor}==\"03eb\""));

    // Something in the state directory, as a store would be: purge must not touch it.
    fs::write("/var/lib/coldkeep/kept", b"a backup").unwrap();
    ok("dpkg", &["--purge", "coldkeep"]);
    assert!(!Path::new("/usr/bin/coldkeep").exists());
    assert!(
        !Path::new("/etc/coldkeep/coldkeep.yaml").exists(),
        "purge removes the conffile"
    );
    assert!(!Path::new("/lib/systemd/system/coldkeep.service").exists());
    assert_eq!(fs::read("/var/lib/coldkeep/kept").unwrap(), b"a backup");
    assert!(
        run("getent", &["passwd", "coldkeep"]).status.success(),
        "the user stays"
    );

    // Leave the machine as it was (only what this test made).
    fs::remove_file("/var/lib/coldkeep/kept").unwrap();
    if !state_existed {
        fs::remove_dir("/var/lib/coldkeep").unwrap();
    }
    if !user_existed {
        ok("userdel", &["coldkeep"]);
        let _ = run("groupdel", &["coldkeep"]);
    }
}

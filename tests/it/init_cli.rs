//! `coldkeep init` through the real binary: a config from the template that `config check`
//! accepts and that backs up a real sshd node once a node is added; refusals that change
//! nothing; completions bash can load and use; man pages that render.

use crate::support;

use coldkeep::testkit::sandbox::Sandbox;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use support::fleet::{age_files, legacy_p12, text};

/// The binary with a private HOME (so `~/.ssh` is never the real one) and no config from the
/// environment.
fn coldkeep(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coldkeep"))
        .args(args)
        .current_dir(dir)
        .env("HOME", dir.join("home"))
        .env_remove("COLDKEEP_CONFIG")
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn both(o: &Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_then_config_check_then_dry_run_explains_then_a_real_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::create_dir_all(dir.join("home")).unwrap();
    let config = dir.join("etc/coldkeep.yaml");
    let store = dir.join("store");
    let identity = dir.join("offline/key.txt");
    fs::create_dir_all(identity.parent().unwrap()).unwrap();
    let (c, s, i) = (
        config.to_str().unwrap(),
        store.to_str().unwrap(),
        identity.to_str().unwrap(),
    );

    let out = coldkeep(dir, &["--config", c, "init", "--store", s, "--identity-out", i]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert!(
        text(&out.stdout).contains("move it off this machine"),
        "{}",
        both(&out)
    );
    assert_eq!(mode(&store), 0o700);
    assert_eq!(mode(&identity), 0o600);
    assert_eq!(fs::read_dir(&store).unwrap().count(), 0);
    // The signing key and allowed_signers beside the config, never in the store.
    let signing_key = dir.join("etc/signing_key");
    let allowed_signers = dir.join("etc/allowed_signers");
    assert_eq!(mode(&signing_key), 0o600);
    assert!(
        text(&out.stdout).contains(&signing_key.display().to_string()),
        "{}",
        both(&out)
    );

    let out = coldkeep(dir, &["--config", c, "config", "check", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["store"], s);
    assert_eq!(summary["nodes"].as_array().unwrap().len(), 0);
    // The fingerprint config check shows is the one stock ssh-keygen computes for the key.
    let fingerprint = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&signing_key)
        .output()
        .unwrap();
    assert!(fingerprint.status.success(), "{}", text(&fingerprint.stderr));
    let fingerprint = text(&fingerprint.stdout);
    let fingerprint = fingerprint.split_whitespace().nth(1).unwrap();
    assert!(
        summary["signing"].as_str().unwrap().contains(fingerprint),
        "{summary}"
    );
    let public = summary["recipients"][0].as_str().unwrap().to_string();
    assert!(fs::read_to_string(&identity).unwrap().contains(&public));

    // No node yet: the dry run says what to add, and writes nothing.
    let out = coldkeep(dir, &["--config", c, "backup", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(
        both(&out).contains("lists no nodes: add them under `nodes:`"),
        "{}",
        both(&out)
    );

    // A real node, added as an operator would: only what the node needs, the template's `ssh:`
    // defaults for the rest (identity ~/.ssh/id_ed25519, known_hosts ~/.ssh/known_hosts, in the
    // test's own HOME). Its host key is not known yet: the dry run explains how to accept it.
    let sandbox = Sandbox::new(&dir.join("ssh")).unwrap();
    let node = sandbox.start_node("v1", false).unwrap();
    let p12 = legacy_p12("pw-0123456789");
    let p12_path = node.root.join("home/nodeadmin/v1.p12");
    fs::create_dir_all(p12_path.parent().unwrap()).unwrap();
    fs::write(&p12_path, &p12).unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(&config).unwrap();
    write!(
        f,
        "  - name: v1\n    host: 127.0.0.1\n    port: {}\n    user: {}\n\
         \x20   keystores:\n      - name: p12\n        kind: p12\n        path: {}\n",
        node.port,
        sandbox.user,
        p12_path.display()
    )
    .unwrap();
    drop(f);
    let ssh_dir = dir.join("home/.ssh");
    let out = coldkeep(dir, &["--config", c, "backup", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let known_hosts = ssh_dir.join("known_hosts");
    assert!(
        both(&out).contains("is unknown")
            && both(&out).contains(&format!(
                "ssh-keyscan -p {} 127.0.0.1 >> {}",
                node.port,
                known_hosts.display()
            )),
        "{}",
        both(&out)
    );

    // Trust the node the way the message says (its public host key into known_hosts): now the
    // missing SSH key is what the dry run names.
    fs::create_dir_all(&ssh_dir).unwrap();
    fs::set_permissions(&ssh_dir, fs::Permissions::from_mode(0o700)).unwrap();
    let host_pub = fs::read_to_string(format!("{}.pub", node.host_key.display())).unwrap();
    let mut fields = host_pub.split_whitespace();
    let line = format!(
        "[127.0.0.1]:{} {} {}\n",
        node.port,
        fields.next().unwrap(),
        fields.next().unwrap()
    );
    fs::write(&known_hosts, line).unwrap();
    let out = coldkeep(dir, &["--config", c, "backup", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let key = ssh_dir.join("id_ed25519");
    assert!(
        both(&out).contains(&format!("identity file {} does not exist", key.display())),
        "{}",
        both(&out)
    );

    // The SSH key in place: the dry run passes and writes nothing, the backup stores the P12.
    fs::copy(&sandbox.client_key, &key).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let out = coldkeep(dir, &["--config", c, "backup", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert!(age_files(&store).is_empty(), "a dry run writes nothing");
    let out = coldkeep(dir, &["--config", c, "backup"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));

    // The generated identity opens the artifact with the stock age CLI: the P12 is inside.
    let artifact = age_files(&store.join("v1")).pop().expect("an artifact");
    // First, as the README says: stock ssh-keygen accepts the signature with the generated
    // allowed_signers.
    let sidecar = artifact.with_extension("json");
    let verified = Command::new("ssh-keygen")
        .args([
            "-Y",
            "verify",
            "-I",
            "coldkeep",
            "-n",
            coldkeep::sign::NAMESPACE,
            "-f",
        ])
        .arg(&allowed_signers)
        .arg("-s")
        .arg(format!("{}.sig", sidecar.display()))
        .stdin(fs::File::open(&sidecar).unwrap())
        .output()
        .unwrap();
    assert!(verified.status.success(), "{}", both(&verified));
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&identity)
        .arg(&artifact)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tar = out.stdout;
    let found = tar.windows(p12.len()).any(|w| w == p12.as_slice());
    assert!(found, "the decrypted bundle holds the node's P12");
}

#[test]
fn init_refuses_to_overwrite_anything_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::create_dir_all(dir.join("home")).unwrap();
    let recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    let config = dir.join("coldkeep.yaml");
    fs::write(&config, "# the operator's own config\n").unwrap();

    // Default --config is ./coldkeep.yaml: it exists, so nothing happens.
    let out = coldkeep(
        dir,
        &[
            "init",
            "--store",
            dir.join("s1").to_str().unwrap(),
            "-r",
            recipient,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(both(&out).contains("already exists"), "{}", both(&out));
    assert_eq!(
        fs::read_to_string(&config).unwrap(),
        "# the operator's own config\n"
    );
    assert!(!dir.join("s1").exists());

    // An existing identity file is never replaced (it may be the only key to old backups).
    let key = dir.join("key.txt");
    fs::write(&key, "AGE-SECRET-KEY-1OLD\n").unwrap();
    let out = coldkeep(
        dir,
        &[
            "--config",
            "new.yaml",
            "init",
            "--store",
            dir.join("s2").to_str().unwrap(),
            "--identity-out",
            "key.txt",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert_eq!(fs::read_to_string(&key).unwrap(), "AGE-SECRET-KEY-1OLD\n");
    assert!(!dir.join("new.yaml").exists() && !dir.join("s2").exists());

    // A store that already holds something.
    fs::create_dir_all(dir.join("s3/v1")).unwrap();
    let out = coldkeep(
        dir,
        &[
            "--config",
            "new.yaml",
            "init",
            "--store",
            dir.join("s3").to_str().unwrap(),
            "-r",
            recipient,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(both(&out).contains("not an empty directory"), "{}", both(&out));
    assert!(!dir.join("new.yaml").exists());

    // No recipient at all.
    let out = coldkeep(
        dir,
        &[
            "--config",
            "new.yaml",
            "init",
            "--store",
            dir.join("s4").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(both(&out).contains("--identity-out"), "{}", both(&out));
    assert!(!dir.join("new.yaml").exists() && !dir.join("s4").exists());

    // An existing signing key is never replaced: artifacts it signed would stop verifying.
    fs::write(dir.join("signing_key"), "the operator's key\n").unwrap();
    let out = coldkeep(
        dir,
        &[
            "--config",
            "new.yaml",
            "init",
            "--store",
            dir.join("s5").to_str().unwrap(),
            "-r",
            recipient,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(
        both(&out).contains("signing_key already exists"),
        "{}",
        both(&out)
    );
    assert_eq!(
        fs::read_to_string(dir.join("signing_key")).unwrap(),
        "the operator's key\n"
    );
    assert!(!dir.join("new.yaml").exists() && !dir.join("s5").exists());
    assert!(!dir.join("allowed_signers").exists());
}

#[test]
fn bash_sources_the_completions_and_they_complete_subcommands_and_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let out = coldkeep(tmp.path(), &["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let script = tmp.path().join("coldkeep.bash");
    fs::write(&script, &out.stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", text(&check.stderr));
    // Source it and ask the completion function what it offers, as bash does on TAB.
    let ask = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let program = format!(
            "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{line}'\nCOMP_POINT=${{#COMP_LINE}}\n\
             _coldkeep coldkeep '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            script.display(),
            words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" "),
            words.len() - 1,
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let out = Command::new("bash").arg("-c").arg(program).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let subcommands = ask("coldkeep ");
    for want in ["init", "backup", "completions", "man", "verify"] {
        assert!(subcommands.lines().any(|l| l == want), "{want} in {subcommands}");
    }
    let flags = ask("coldkeep init --");
    for want in ["--store", "--recipient", "--identity-out"] {
        assert!(flags.lines().any(|l| l == want), "{want} in {flags}");
    }
    for shell in ["zsh", "fish"] {
        let out = coldkeep(tmp.path(), &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{}", both(&out));
        assert!(text(&out.stdout).contains("init"), "{shell}");
    }
}

#[test]
fn the_man_pages_render_without_warnings() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = coldkeep(dir, &["man"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    fs::write(dir.join("coldkeep.1"), &out.stdout).unwrap();
    let out = coldkeep(dir, &["man", "--dir", "pages"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert!(dir.join("pages/coldkeep-init.1").is_file());
    assert!(
        fs::read(dir.join("pages/coldkeep.1")).unwrap() == fs::read(dir.join("coldkeep.1")).unwrap(),
        "stdout and --dir give the same top page"
    );
    for page in ["coldkeep.1", "pages/coldkeep-init.1", "pages/coldkeep-backup.1"] {
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(dir.join(page))
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output()
            .expect("man (package man-db; .ci/run installs it)");
        let rendered = text(&out.stdout);
        assert!(out.status.success(), "{page}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).trim().is_empty(),
            "{page} warns: {}",
            text(&out.stderr)
        );
        assert!(
            rendered.contains("SYNOPSIS") && rendered.contains("coldkeep"),
            "{rendered}"
        );
    }
    let top = Command::new("man")
        .args(["-l"])
        .arg(dir.join("coldkeep.1"))
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .output()
        .unwrap();
    let top = text(&top.stdout);
    // Generated from the CLI: every subcommand is listed, the new ones too.
    for sub in ["backup", "init", "completions", "man", "daemon"] {
        assert!(top.contains(&format!("coldkeep-{sub}(1)")), "{sub} in {top}");
    }
}

#[test]
fn init_identity_out_into_a_missing_folder_is_one_clear_error_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::create_dir_all(dir.join("home")).unwrap();
    let out = coldkeep(
        dir,
        &[
            "--config",
            "coldkeep.yaml",
            "init",
            "--store",
            "store",
            "--identity-out",
            "/media/not-mounted-usb/coldkeep-key.txt",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("the folder /media/not-mounted-usb does not exist"),
        "{err}"
    );
    // One cause, said once (it used to print the OS error twice).
    assert_eq!(err.matches("does not exist").count(), 1, "{err}");
    assert!(!err.contains("os error"), "{err}");
    let left: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("home")], "nothing created");
}

/// The first node of a new config, found by `discover --host` before any node is configured:
/// init, then discover, then the printed entry pasted at the end of the file is a config that
/// checks and backs up.
#[test]
fn init_then_discover_bootstraps_the_first_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ssh_dir = dir.join("home/.ssh");
    fs::create_dir_all(&ssh_dir).unwrap();
    fs::set_permissions(&ssh_dir, fs::Permissions::from_mode(0o700)).unwrap();
    let config = dir.join("coldkeep.yaml");
    let c = config.to_str().unwrap();
    let out = coldkeep(
        dir,
        &[
            "--config",
            c,
            "init",
            "--store",
            dir.join("store").to_str().unwrap(),
            "--recipient",
            "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));

    // A node laid out by nodectl (here readable by the SSH user: no sudo in this test), its host
    // key and the SSH key where the template's ssh: defaults look (the test's own HOME).
    let sandbox = Sandbox::new(&dir.join("ssh")).unwrap();
    let node = sandbox.start_node("v1", false).unwrap();
    let key_dir = node.root.join("home/nodeadmin/tessellation");
    fs::create_dir_all(&key_dir).unwrap();
    fs::write(key_dir.join("nodeadmin-node.p12"), legacy_p12("pw-0123456789")).unwrap();
    let cn = node.root.join("var/tessellation/nodectl/cn-config.yaml");
    fs::create_dir_all(cn.parent().unwrap()).unwrap();
    let text_cn = coldkeep::testkit::nodectl::install(
        &coldkeep::testkit::nodectl::reference(coldkeep::testkit::nodectl::MAINNET),
        &coldkeep::testkit::nodectl::Install {
            nodeadmin: "nodeadmin",
            key_location: &key_dir.display().to_string(),
            key_name: "nodeadmin-node.p12",
            passphrase: "pw-0123456789",
        },
    );
    fs::write(&cn, text_cn).unwrap();
    let host_pub = fs::read_to_string(format!("{}.pub", node.host_key.display())).unwrap();
    let mut fields = host_pub.split_whitespace();
    fs::write(
        ssh_dir.join("known_hosts"),
        format!(
            "[127.0.0.1]:{} {} {}\n",
            node.port,
            fields.next().unwrap(),
            fields.next().unwrap()
        ),
    )
    .unwrap();
    let key = ssh_dir.join("id_ed25519");
    fs::copy(&sandbox.client_key, &key).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();

    let port = node.port.to_string();
    let out = coldkeep(
        dir,
        &[
            "--config",
            c,
            "discover",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--user",
            &sandbox.user,
            "--name",
            "validator-1",
            "--nodectl-config",
            cn.to_str().unwrap(),
            "--acra-dir",
            "/nonexistent",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let entry = text(&out.stdout);
    assert!(entry.contains("  - name: \"validator-1\""), "{entry}");
    let mut f = fs::OpenOptions::new().append(true).open(&config).unwrap();
    f.write_all(entry.as_bytes()).unwrap();
    drop(f);
    let out = coldkeep(dir, &["--config", c, "config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let out = coldkeep(dir, &["--config", c, "backup"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert_eq!(
        age_files(&dir.join("store")).len(),
        2,
        "the P12 and cn-config.yaml"
    );
}

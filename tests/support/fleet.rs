//! A test fleet for CLI tests: real sshd nodes, an age identity (made by the `age-keygen` CLI),
//! a store and a replica, all under one temp dir, and a way to run the real binary against them.

use coldkeep::material::p12::{self, GenerateStyle};
use coldkeep::testkit::sandbox::{Sandbox, SandboxNode};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/tessellation-local-test-key-0"
);

/// A test fleet: sshd nodes, an age identity, a store and a replica, all under one temp dir.
pub struct Fleet {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub sandbox: Sandbox,
    pub nodes: Vec<SandboxNode>,
    pub age_identity: PathBuf,
    pub recipient: String,
    pub config: PathBuf,
    /// The artifact signing key (made by stock `ssh-keygen`), outside the store roots.
    pub signing_key: PathBuf,
    /// allowed_signers trusting `signing_key` for the coldkeep namespace.
    pub allowed_signers: PathBuf,
}

impl Fleet {
    pub fn new(names: &[&str]) -> Fleet {
        // Secret files the tests write must not be world-readable (coldkeep refuses those), and
        // the replica root exists as a mounted one would (coldkeep never creates it).
        // SAFETY: umask has no preconditions.
        unsafe { libc::umask(0o077) };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        for sub in ["home", "tmp", "cwd", "secrets", "replica"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let sandbox = Sandbox::new(&dir.join("ssh")).unwrap();
        let nodes = names
            .iter()
            .map(|n| sandbox.start_node(n, true).unwrap())
            .collect();
        let age_identity = dir.join("age-identity.txt");
        let keygen = Command::new("age-keygen")
            .arg("-o")
            .arg(&age_identity)
            .output()
            .unwrap();
        assert!(
            keygen.status.success(),
            "age-keygen: {}",
            String::from_utf8_lossy(&keygen.stderr)
        );
        let recipient = String::from_utf8_lossy(&keygen.stderr)
            .trim()
            .strip_prefix("Public key: ")
            .expect("age-keygen prints the public key")
            .to_string();
        let config = dir.join("coldkeep.yaml");
        let (signing_key, allowed_signers) = signing_key(&dir.join("secrets"), "signing_key");
        Fleet {
            _tmp: tmp,
            dir,
            sandbox,
            nodes,
            age_identity,
            recipient,
            config,
            signing_key,
            allowed_signers,
        }
    }

    pub fn node(&self, name: &str) -> &SandboxNode {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    pub fn store(&self) -> PathBuf {
        self.dir.join("store")
    }

    pub fn replica(&self) -> PathBuf {
        self.dir.join("replica")
    }

    /// Puts a file into a node's tree and returns its absolute ("remote") path.
    pub fn put(&self, node: &str, rel: &str, bytes: &[u8], mode: u32) -> String {
        let path = self.node(node).root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        if path.exists() {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path.display().to_string()
    }

    pub fn secret_file(&self, name: &str, value: &str) -> PathBuf {
        let path = self.dir.join("secrets").join(name);
        fs::write(&path, format!("{value}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// Writes the config: `nodes_yaml` is the list under `nodes:`, indented by two spaces.
    pub fn write_config(&self, nodes_yaml: &str) {
        self.write_config_with("", nodes_yaml);
    }

    /// Like [`Fleet::write_config`], with `top` (top-level keys) added before `nodes:`.
    pub fn write_config_with(&self, top: &str, nodes_yaml: &str) {
        // No retries unless a test asks: a closed port should fail at once.
        let top = if top.contains("retries:") {
            top.to_string()
        } else {
            format!("retries: 0\n{top}")
        };
        let text = format!(
            "store:\n  path: {}\n  replicas: [{}]\nencryption:\n  recipients: [{}]\n\
             ssh:\n  user: {}\n  identity: {}\n  known_hosts: {}\n  connect_timeout: 5s\n  io_timeout: 20s\n\
             signing:\n  key: {}\n  allowed_signers: {}\n\
             jobs: 4\n{top}nodes:\n{nodes_yaml}",
            self.store().display(),
            self.replica().display(),
            self.recipient,
            self.sandbox.user,
            self.sandbox.client_key.display(),
            self.sandbox.known_hosts.display(),
            self.signing_key.display(),
            self.allowed_signers.display(),
        );
        fs::write(&self.config, text).unwrap();
    }

    /// A node entry for the config with one p12 keystore.
    pub fn node_yaml(&self, name: &str, port: u16, p12_path: &str, extra_keystore: &str) -> String {
        format!(
            "  - name: {name}\n    host: 127.0.0.1\n    port: {port}\n    labels: [test]\n    keystores:\n\
             \x20     - name: p12\n        kind: p12\n        path: {p12_path}\n{extra_keystore}"
        )
    }

    /// Runs the coldkeep binary with this fleet's config, a private HOME and TMPDIR, no agent.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_env(args, &[])
    }

    /// The coldkeep binary with this fleet's config, a private HOME and TMPDIR, no agent.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_coldkeep"));
        c.arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.dir.join("cwd"))
            .env("HOME", self.dir.join("home"))
            .env("TMPDIR", self.dir.join("tmp"))
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("COLDKEEP_CONFIG")
            .env_remove("RUST_LOG");
        c
    }

    /// Like [`Fleet::run`], with `input` on standard input.
    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A child may decide and exit before it has read all of its input (a refusal): that
        // is a broken pipe here, not a test failure; its exit code and output tell the story.
        match child.stdin.take().unwrap().write_all(input) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.unwrap(),
        }
        child.wait_with_output().unwrap()
    }

    /// Like [`Fleet::run`], with extra environment variables.
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args).envs(env.iter().copied()).output().unwrap()
    }

    pub fn run_json(&self, args: &[&str]) -> (i32, Value) {
        let out = self.run(args);
        let json = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: stdout {} stderr {}", text(&out.stdout), text(&out.stderr)));
        (out.status.code().unwrap(), json)
    }
}

impl Fleet {
    /// Scans everything the agent could have written (store, replica, HOME, TMPDIR, cwd, the
    /// sandbox's client side; not the nodes' trees nor `secrets/`) for any 32-byte window of each
    /// secret.
    pub fn assert_not_on_local_disk(&self, secrets: &[&[u8]]) {
        self.assert_not_on_local_disk_except(secrets, &[]);
    }

    /// Like [`Fleet::assert_not_on_local_disk`], also skipping `except` (where the secret came from).
    pub fn assert_not_on_local_disk_except(&self, secrets: &[&[u8]], except: &[&Path]) {
        let skip: Vec<PathBuf> = self
            .nodes
            .iter()
            .map(|n| n.root.clone())
            .chain([self.dir.join("secrets")])
            .chain(except.iter().map(|p| p.to_path_buf()))
            .collect();
        let windows: std::collections::HashSet<&[u8]> = secrets
            .iter()
            .flat_map(|s| s.chunks(32).filter(|c| c.len() == 32))
            .collect();
        assert!(!windows.is_empty(), "nothing to look for");
        for entry in walkdir::WalkDir::new(&self.dir)
            .into_iter()
            .filter_map(Result::ok)
        {
            if skip.iter().any(|s| entry.path().starts_with(s)) || !entry.file_type().is_file() {
                continue;
            }
            let data = fs::read(entry.path()).unwrap();
            // Every 32-byte window of the file, looked up in the set of the secrets' chunks: any
            // copy of a secret of 63+ bytes contains one of its aligned chunks.
            assert!(
                !data.windows(32).any(|w| windows.contains(w)),
                "plaintext key bytes found in {}",
                entry.path().display()
            );
        }
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn legacy_p12(password: &str) -> Vec<u8> {
    p12::generate(password, "nodeadmin-alias", GenerateStyle::Legacy)
        .unwrap()
        .to_vec()
}

/// Every `.age` file under a directory.
pub fn age_files(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "age"))
        .map(|e| e.into_path())
        .collect()
}

/// A nodectl cn-config.yaml shaped like nodectl's own (v2.2 mainnet template): profiles
/// `dag-l0` (uses `global`) and `dag-l1` (uses `global`, or `l1_override` = (location, name)).
pub fn cn_config(key_location: &str, key_name: &str, l1_override: Option<(&str, &str)>) -> String {
    let profile = |name: &str, layer: u32, p12: (&str, &str)| {
        format!(
            "  {name}:\n    profile_enable: True\n    environment: mainnet\n    description: Constellation Network layer{layer}\n\
             \x20   node_type: validator\n    meta_type: ml\n    layer: {layer}\n    collateral: default\n    service: default\n\
             \x20   edge_point: default\n    public_port: default\n    p2p_port: default\n    cli_port: default\n\
             \x20   directory_backups: default\n    directory_uploads: default\n    java_xms: default\n\
             \x20   p12_nodeadmin: global\n    p12_key_location: {}\n    p12_key_name: {}\n    p12_passphrase: global\n\
             \x20   seed_location: default\n    custom_args_enable: False\n    custom_env_vars_enable: False\n",
            p12.0, p12.1
        )
    };
    let l1 = l1_override.unwrap_or(("global", "global"));
    format!(
        "---\n# NODECTL CONFIGURATION FILE\n# =========================================================\nnodectl:\n{}{}\
         \x20 global_auto_restart:\n    auto_restart: False\n    auto_upgrade: False\n    on_boot: False\n    rapid_restart: False\n\
         \x20 global_p12:\n    nodeadmin: nodeadmin\n    key_location: {key_location}\n    key_name: {key_name}\n\
         \x20   passphrase: None\n    encryption: False\n\
         \x20 global_elements:\n    yaml_config_name: mainnet\n    metagraph_name: hypergraph\n    nodectl_yaml: v2.2.0\n\
         \x20   developer_mode: False\n    log_level: INFO\n",
        profile("dag-l0", 0, ("global", "global")),
        profile("dag-l1", 1, l1),
    )
}

/// Makes an Ed25519 signing key `dir/name` with stock `ssh-keygen` and an allowed_signers file
/// `dir/name.allowed` trusting it (principal `coldkeep`) for the coldkeep namespace.
pub fn signing_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    fs::create_dir_all(dir).unwrap();
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "coldkeep", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap();
    let allowed = dir.join(format!("{name}.allowed"));
    fs::write(
        &allowed,
        format!("coldkeep namespaces=\"{}\" {public}", coldkeep::sign::NAMESPACE),
    )
    .unwrap();
    // Whatever the umask: coldkeep refuses an allowed_signers that others can write.
    fs::set_permissions(&allowed, fs::Permissions::from_mode(0o644)).unwrap();
    (key, allowed)
}

/// A fleet whose nodes each hold one legacy P12 (`keys/<node>.p12`, password "pw"), configured
/// with `top` as the config's top-level YAML.
pub fn p12_fleet(names: &[&str], top: &str) -> Fleet {
    let fleet = Fleet::new(names);
    let mut yaml = String::new();
    for n in names {
        let path = fleet.put(n, &format!("keys/{n}.p12"), &legacy_p12("pw"), 0o400);
        yaml.push_str(&fleet.node_yaml(n, fleet.node(n).port, &path, ""));
    }
    fleet.write_config_with(top, &yaml);
    fleet
}

/// Runs coldkeep; its exit code and stdout + stderr as one text.
pub fn run_code_and_text(fleet: &Fleet, args: &[&str]) -> (i32, String) {
    let out = fleet.run(args);
    (
        out.status.code().unwrap(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

//! `coldkeep demo`: the whole job end to end on a throwaway node.
//!
//! Starts a real `sshd` on loopback serving a node tree with a fresh cl-keytool-style P12,
//! makes an age identity, writes an ordinary config file, then runs the same `backup`, `list`
//! and `verify` code a real deployment runs. Everything stays in one directory to look at.

use super::{backup, list, verify};
use crate::cli::{BackupArgs, DemoArgs, ListArgs, NodeSelector, VerifyArgs};
use crate::config::Config;
use crate::error::Exit;
use crate::material::p12::{self, GenerateStyle};
use crate::testkit::sandbox::Sandbox;
use age::secrecy::ExposeSecret;
use anyhow::Context;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const NODE: &str = "validator-1";
const P12_NAME: &str = "nodeadmin-node.p12";

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<Exit> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "coldkeep-demo-{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
            std::process::id()
        )),
    };
    let dir = std::path::absolute(&dir)?;
    if dir.exists() && fs::read_dir(&dir)?.next().is_some() {
        anyhow::bail!(
            "{} is not empty; give --dir a new or empty directory",
            dir.display()
        );
    }
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
    // The replica stands for a mounted disk: coldkeep never creates a replica root itself.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.join("replica"))?;
    println!("coldkeep demo in {}\n", dir.display());

    println!("== starting a throwaway node: real sshd on 127.0.0.1");
    let sandbox = Sandbox::new(&dir.join("ssh"))?;
    let node = sandbox.start_node(NODE, true)?;
    println!(
        "   {NODE} listens on 127.0.0.1:{} (host key {})",
        node.port, node.host_key_fingerprint
    );

    let p12_dir = node.root.join("home/nodeadmin/tessellation");
    fs::create_dir_all(&p12_dir)?;
    let password = "demo-passphrase";
    let p12_bytes = p12::generate(password, "nodeadmin-alias", GenerateStyle::Legacy)?;
    let p12_path = p12_dir.join(P12_NAME);
    write_file(&p12_path, &p12_bytes, 0o400)?;
    println!(
        "   wrote a cl-keytool-style P12 (3DES/RC2-40) on the node: {}",
        p12_path.display()
    );

    let secrets = dir.join("secrets");
    fs::DirBuilder::new().mode(0o700).create(&secrets)?;
    let password_file = secrets.join("p12-password");
    write_file(&password_file, password.as_bytes(), 0o600)?;

    println!("\n== making an age identity (the private key stays with you, not with coldkeep)");
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let identity_file = dir.join("age-identity.txt");
    let identity_text = format!(
        "# created by coldkeep demo\n# public key: {recipient}\n{}\n",
        identity.to_string().expose_secret()
    );
    write_file(&identity_file, identity_text.as_bytes(), 0o600)?;
    println!(
        "   identity: {}\n   recipient: {recipient}",
        identity_file.display()
    );

    println!("\n== making a signing key (every artifact is signed; allowed_signers says whose count)");
    let signer = crate::sign::Signer::generate();
    write_file(
        &secrets.join("signing_key"),
        signer.to_openssh().as_bytes(),
        0o600,
    )?;
    let allowed = format!(
        "coldkeep namespaces=\"{}\" {}\n",
        crate::sign::NAMESPACE,
        signer.public_line()
    );
    write_file(&dir.join("allowed_signers"), allowed.as_bytes(), 0o644)?;
    println!("   signing key: {}", secrets.join("signing_key").display());

    let config_path = dir.join("coldkeep.yaml");
    let config_text = demo_config(&dir, &sandbox, node.port, &recipient, &p12_path, &password_file);
    write_file(&config_path, config_text.as_bytes(), 0o600)?;
    println!("   config: {}", config_path.display());
    let config = Config::load(&config_path)?;

    println!("\n== coldkeep backup");
    let backed_up = backup::run(
        &config,
        &BackupArgs {
            select: Default::default(),
            dry_run: false,
            force: false,
            json: false,
        },
    )?;
    println!("\n== coldkeep list");
    list::run(
        &config,
        &ListArgs {
            select: Default::default(),
            json: false,
        },
    )?;
    println!("\n== coldkeep verify --identity {}", identity_file.display());
    let verified = verify::run(
        &config,
        &VerifyArgs {
            select: Default::default(),
            identity: Some(identity_file.clone()),
            live: false,
            sign_unsigned: false,
            before: None,
            yes: false,
            json: false,
        },
    )?;
    println!("\n== coldkeep verify --live --node {NODE}");
    let live = verify::run(
        &config,
        &VerifyArgs {
            select: NodeSelector {
                nodes: vec![NODE.into()],
                ..Default::default()
            },
            identity: None,
            live: true,
            sign_unsigned: false,
            before: None,
            yes: false,
            json: false,
        },
    )?;

    let store = config.store.path.display();
    println!(
        "\nWhere everything is:\n  store:     {store}\n  replica:   {}\n  config:    {}\n  identity:  {}\n  node tree: {}\n\
         \nRecover without coldkeep (check the signature first):\n  ssh-keygen -Y verify -f {allowed} -I coldkeep -n {ns} \\\n    -s {store}/{NODE}/p12/<ID>.json.sig < {store}/{NODE}/p12/<ID>.json\n\
         \x20 age -d -i {} {store}/{NODE}/p12/<ID>.age | tar xv\n\
         \nThe demo node has been stopped. Remove everything with: rm -rf {}",
        dir.join("replica").display(),
        config_path.display(),
        identity_file.display(),
        node.root.display(),
        identity_file.display(),
        dir.display(),
        allowed = dir.join("allowed_signers").display(),
        ns = crate::sign::NAMESPACE,
    );
    let all_ok = [backed_up, verified, live].iter().all(|e| *e == Exit::Ok);
    Ok(if all_ok { Exit::Ok } else { Exit::Failed })
}

/// The demo's config: an ordinary coldkeep.yaml.
fn demo_config(
    dir: &Path,
    sandbox: &Sandbox,
    port: u16,
    recipient: &str,
    p12: &Path,
    password: &Path,
) -> String {
    format!(
        "# Written by `coldkeep demo`: an ordinary config, see config/coldkeep.yaml for every key.\n\
         store:\n  path: {store}\n  replicas: [{replica}]\n\
         encryption:\n  recipients:\n    - {recipient}\n\
         ssh:\n  user: {user}\n  identity: {key}\n  known_hosts: {known_hosts}\n  connect_timeout: 5s\n\
         signing:\n  key: {signing_key}\n  allowed_signers: {allowed}\n\
         jobs: 4\n\
         nodes:\n  - name: {NODE}\n    host: 127.0.0.1\n    port: {port}\n    labels: [demo]\n    keystores:\n\
         \x20     - name: p12\n        kind: p12\n        path: {p12}\n        password: {{file: {password}}}\n",
        store = dir.join("store").display(),
        replica = dir.join("replica").display(),
        user = sandbox.user,
        key = sandbox.client_key.display(),
        known_hosts = sandbox.known_hosts.display(),
        p12 = p12.display(),
        password = password.display(),
        signing_key = dir.join("secrets/signing_key").display(),
        allowed = dir.join("allowed_signers").display(),
    )
}

fn write_file(path: &PathBuf, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

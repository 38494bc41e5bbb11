//! Fleet benchmark: coldkeep against the shell pipeline a sysadmin would write.
//!
//!   cargo bench --bench fleet -- [--nodes 32] [--rings 50] [--rounds 3] [--jobs 8]
//!                                [--big-store 100000] [--rss-nodes 256] [--out bench/results]
//!
//! Starts N real sshd nodes on loopback, each with a cl-keytool-style P12 and an Acra v2 keystore
//! of K key rings, then times, several rounds each (medians reported): `coldkeep backup` with
//! `jobs`; per node `scp` + `scp -r` + `tar c | age` sequentially; the same 8-way parallel
//! (`xargs -P 8`). Every command runs under GNU time for wall, CPU and peak RSS. Then: `list` and
//! shallow `verify` of a generated store of `--big-store` artifacts, deep `verify` throughput,
//! restore latency of one P12, and the peak RSS of a `--rss-nodes` run. Results go to
//! `<out>/fleet.md` and `<out>/fleet.json`.

use coldkeep::material::p12::{self, GenerateStyle};
use coldkeep::testkit::acra;
use coldkeep::testkit::sandbox::{Sandbox, SandboxNode};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_coldkeep");

struct Args {
    nodes: usize,
    rings: usize,
    rounds: usize,
    jobs: usize,
    big_store: usize,
    rss_nodes: usize,
    out: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        nodes: 32,
        rings: 50,
        rounds: 3,
        jobs: 8,
        big_store: 100_000,
        rss_nodes: 256,
        out: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/results")),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse::<usize>().ok()).expect("a number");
        match flag.as_str() {
            "--nodes" => a.nodes = num(),
            "--rings" => a.rings = num(),
            "--rounds" => a.rounds = num(),
            "--jobs" => a.jobs = num(),
            "--big-store" => a.big_store = num(),
            "--rss-nodes" => a.rss_nodes = num(),
            "--out" => a.out = PathBuf::from(it.next().expect("a path")),
            "--bench" => {} // added by `cargo bench`
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// One measured command: wall seconds, CPU seconds (user + system), peak RSS in KiB.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: f64,
    cpu: f64,
    rss_kib: u64,
}

/// Runs `sh -c script` under GNU time; panics when it fails.
fn measure(script: &str, dir: &Path) -> Sample {
    let report = dir.join("time.txt");
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%e %U %S %M")
        .arg("-o")
        .arg(&report)
        .args(["sh", "-c", script])
        .output()
        .expect("GNU time (/usr/bin/time, Debian package `time`)");
    assert!(
        out.status.success(),
        "{script}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&report).unwrap();
    let f: Vec<f64> = text
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    Sample {
        wall: f[0],
        cpu: f[1] + f[2],
        rss_kib: f[3] as u64,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

struct Fleet {
    dir: PathBuf,
    sandbox: Sandbox,
    nodes: Vec<SandboxNode>,
    recipient: String,
    identity: PathBuf,
    signing_key: PathBuf,
    allowed_signers: PathBuf,
}

const P12_REL: &str = "home/nodeadmin/tessellation/node.p12";
const ACRA_REL: &str = "opt/acra/keys";

fn start_fleet(dir: &Path, n: usize, rings: usize) -> Fleet {
    fs::create_dir_all(dir).unwrap();
    let sandbox = Sandbox::new(&dir.join("ssh")).unwrap();
    let (_, signature) = acra::v2_master_key();
    let clients: Vec<String> = (0..rings.saturating_sub(3).div_ceil(3))
        .map(|i| format!("client{i}"))
        .collect();
    let client_refs: Vec<&str> = clients.iter().map(String::as_str).collect();
    let mut nodes = Vec::new();
    for i in 0..n {
        let node = sandbox.start_node(&format!("n{i:03}"), true).unwrap();
        let p12 = p12::generate("bench-password", "nodeadmin", GenerateStyle::Legacy).unwrap();
        let path = node.root.join(P12_REL);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &p12[..]).unwrap();
        if rings > 0 {
            acra::write_tree(
                &node.root.join(ACRA_REL),
                &acra::v2_files(&client_refs, &signature),
            );
        }
        nodes.push(node);
    }
    let identity = dir.join("age-identity.txt");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&identity)
        .output()
        .unwrap();
    let recipient = String::from_utf8_lossy(&out.stderr)
        .trim()
        .strip_prefix("Public key: ")
        .unwrap()
        .to_string();
    // The artifact signing key (every config needs one) and the allowed_signers trusting it.
    let signer = coldkeep::sign::Signer::generate();
    let signing_key = dir.join("signing_key");
    fs::write(&signing_key, signer.to_openssh().as_bytes()).unwrap();
    fs::set_permissions(&signing_key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let allowed_signers = dir.join("allowed_signers");
    fs::write(&allowed_signers, format!("coldkeep {}\n", signer.public_line())).unwrap();
    fs::set_permissions(
        &allowed_signers,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    Fleet {
        signing_key,
        allowed_signers,
        dir: dir.to_path_buf(),
        sandbox,
        nodes,
        recipient,
        identity,
    }
}

impl Fleet {
    fn signing_yaml(&self) -> String {
        format!(
            "signing:\n  key: {}\n  allowed_signers: {}\n",
            self.signing_key.display(),
            self.allowed_signers.display()
        )
    }

    fn config(&self, store: &Path, jobs: usize, acra: bool, transfer: &str) -> PathBuf {
        let mut text = format!(
            "store:\n  path: {}\nencryption:\n  recipients: [{}]\nssh:\n  user: {}\n  identity: {}\n  known_hosts: {}\n\
             \x20 file_transfer: {transfer}\njobs: {jobs}\nretries: 0\n{}nodes:\n",
            store.display(),
            self.recipient,
            self.sandbox.user,
            self.sandbox.client_key.display(),
            self.sandbox.known_hosts.display(),
            self.signing_yaml()
        );
        for n in &self.nodes {
            let _ = write!(
                text,
                "  - name: {}\n    host: 127.0.0.1\n    port: {}\n    keystores:\n      - name: p12\n        kind: p12\n        path: {}\n",
                n.name,
                n.port,
                n.root.join(P12_REL).display()
            );
            if acra {
                let _ = write!(
                    text,
                    "      - name: acra\n        kind: acra\n        path: {}\n",
                    n.root.join(ACRA_REL).display()
                );
            }
        }
        let path = self.dir.join(format!("coldkeep-{jobs}-{transfer}.yaml"));
        fs::write(&path, text).unwrap();
        path
    }

    /// The baseline: one script per node (scp the P12, scp -r the keystore, tar | age).
    fn baseline_scripts(&self, store: &Path) -> (PathBuf, PathBuf) {
        let node_sh = self.dir.join("node.sh");
        let ssh_opts = format!(
            "-q -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes",
            self.sandbox.client_key.display(),
            self.sandbox.known_hosts.display()
        );
        fs::write(
            &node_sh,
            format!(
                "set -e\nname=$1; port=$2; root=$3\nt=$(mktemp -d)\n\
                 scp {ssh_opts} -P $port {user}@127.0.0.1:$root/{P12_REL} $t/\n\
                 scp {ssh_opts} -r -P $port {user}@127.0.0.1:$root/{ACRA_REL} $t/keys\n\
                 tar c -C $t . | age -r {r} > {store}/$name-$(date +%s%N).tar.age\nrm -rf $t\n",
                user = self.sandbox.user,
                r = self.recipient,
                store = store.display()
            ),
        )
        .unwrap();
        let list = self.dir.join("nodes.txt");
        let lines: String = self
            .nodes
            .iter()
            .map(|n| format!("{} {} {}\n", n.name, n.port, n.root.display()))
            .collect();
        fs::write(&list, lines).unwrap();
        (node_sh, list)
    }
}

fn artifact_bytes(store: &Path) -> (usize, u64) {
    let mut count = 0;
    let mut plain = 0;
    for e in walkdir::WalkDir::new(store).into_iter().filter_map(Result::ok) {
        if e.path().extension().is_some_and(|x| x == "json") && !e.path().starts_with(store.join(".coldkeep"))
        {
            let v: Value = serde_json::from_slice(&fs::read(e.path()).unwrap()).unwrap();
            count += 1;
            plain += v["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["size"].as_u64().unwrap())
                .sum::<u64>();
        }
    }
    (count, plain)
}

/// A store of `n` artifacts: copies of one real artifact under distinct ids and nodes.
fn generate_store(from: &Path, to: &Path, n: usize, signer: &coldkeep::sign::Signer) {
    let json = walkdir::WalkDir::new(from)
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| {
            e.path().extension().is_some_and(|x| x == "json") && e.path().to_string_lossy().contains("/p12/")
        })
        .unwrap()
        .into_path();
    let age = fs::read(json.with_extension("age")).unwrap();
    let mut sidecar: Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    let short = sidecar["ciphertext_sha256"].as_str().unwrap()[..8].to_string();
    let per_node = 100;
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
    for i in 0..n {
        let node = format!("g{:05}", i / per_node);
        let dir = to.join(&node).join("p12");
        if i % per_node == 0 {
            fs::create_dir_all(&dir).unwrap();
        }
        let t = base + chrono::Duration::hours(i as i64 % per_node as i64);
        sidecar["node"] = Value::from(node.clone());
        sidecar["created_at"] = Value::from(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let id = format!("{}-{short}", t.format("%Y%m%dT%H%M%SZ"));
        fs::write(dir.join(format!("{id}.age")), &age).unwrap();
        let bytes = serde_json::to_vec(&sidecar).unwrap();
        fs::write(dir.join(format!("{id}.json.sig")), signer.sign(&bytes)).unwrap();
        fs::write(dir.join(format!("{id}.json")), bytes).unwrap();
    }
}

fn main() {
    let a = args();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    eprintln!("starting {} sshd nodes ({} key rings each)...", a.nodes, a.rings);
    let fleet = start_fleet(&dir.join("fleet"), a.nodes, a.rings);
    let store = dir.join("store");
    let config = fleet.config(&store, a.jobs, true, "scp");
    let sftp_config = fleet.config(&dir.join("store-sftp"), a.jobs, true, "sftp");
    let base_store = dir.join("baseline-store");
    fs::create_dir_all(&base_store).unwrap();
    let (node_sh, list) = fleet.baseline_scripts(&base_store);

    let mut rows: Vec<(String, Vec<Sample>)> = Vec::new();
    let runs = [
        (
            format!("coldkeep backup (jobs {}, P12 over SCP, the default)", a.jobs),
            format!("{BIN} --config {} backup --force >/dev/null", config.display()),
        ),
        (
            format!("coldkeep backup (jobs {}, file_transfer: sftp)", a.jobs),
            format!(
                "{BIN} --config {} backup --force >/dev/null",
                sftp_config.display()
            ),
        ),
        (
            "shell pipeline, sequential".to_string(),
            format!(
                "while read n p r; do sh {} $n $p $r; done < {}",
                node_sh.display(),
                list.display()
            ),
        ),
        (
            "shell pipeline, xargs -P 8".to_string(),
            format!("xargs -P 8 -L 1 sh {} < {}", node_sh.display(), list.display()),
        ),
    ];
    for (name, script) in &runs {
        let mut samples = Vec::new();
        for round in 0..a.rounds {
            eprintln!("{name}: round {}", round + 1);
            samples.push(measure(script, dir));
        }
        rows.push((name.clone(), samples));
    }

    let (count, plain) = artifact_bytes(&store);
    let ids = fleet.identity.display().to_string();
    eprintln!("deep verify of {count} artifacts ({plain} bytes)...");
    let deep = measure(
        &format!(
            "{BIN} --config {} verify --identity {ids} >/dev/null",
            config.display()
        ),
        dir,
    );

    eprintln!("restore of one P12...");
    let target = fleet.nodes[0].root.join(P12_REL);
    fs::write(&target, b"replaced").unwrap();
    let restore = measure(
        &format!(
            "{BIN} --config {} restore --node {} --keystore p12 --yes --identity {ids} >/dev/null",
            config.display(),
            fleet.nodes[0].name
        ),
        dir,
    );

    eprintln!("generating a store of {} artifacts...", a.big_store);
    let big = dir.join("big-store");
    let signer = coldkeep::sign::Signer::load(&fleet.signing_key, None).unwrap();
    generate_store(&store, &big, a.big_store, &signer);
    let big_config = dir.join("big.yaml");
    fs::write(
        &big_config,
        format!(
            "store:\n  path: {}\nencryption:\n  recipients: [{}]\n{}",
            big.display(),
            fleet.recipient,
            fleet.signing_yaml()
        ),
    )
    .unwrap();
    let list_big = measure(
        &format!("{BIN} --config {} list --json >/dev/null", big_config.display()),
        dir,
    );
    let verify_big = measure(
        &format!("{BIN} --config {} verify >/dev/null", big_config.display()),
        dir,
    );
    drop(fleet);

    let rss_run = if a.rss_nodes > 0 {
        eprintln!("starting {} nodes for the memory run...", a.rss_nodes);
        let many = start_fleet(&dir.join("many"), a.rss_nodes, 0);
        let cfg = many.config(&dir.join("many-store"), a.jobs, false, "scp");
        Some(measure(
            &format!("{BIN} --config {} backup >/dev/null", cfg.display()),
            dir,
        ))
    } else {
        None
    };

    // Report.
    let med = |s: &[Sample], f: fn(&Sample) -> f64| median(s.iter().map(f).collect());
    let cold = &rows[0].1;
    let cold_wall = med(cold, |s| s.wall);
    let mut md = format!(
        "# Fleet benchmark\n\n{} nodes on loopback, each a cl-keytool-style P12 and an Acra v2 keystore of {} key rings; \
         {} rounds, medians. Machine: {} cores. coldkeep {}.\n\n\
         | run | wall s | CPU s | peak RSS MiB | wall vs coldkeep | nodes/s |\n|---|---|---|---|---|---|\n",
        a.nodes,
        a.rings,
        a.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        env!("CARGO_PKG_VERSION")
    );
    let mut json_rows = Vec::new();
    for (name, s) in &rows {
        let wall = med(s, |x| x.wall);
        let cpu = med(s, |x| x.cpu);
        let rss = med(s, |x| x.rss_kib as f64) / 1024.0;
        let _ = writeln!(
            md,
            "| {name} | {wall:.2} | {cpu:.2} | {rss:.1} | {:.2}x | {:.1} |",
            wall / cold_wall,
            a.nodes as f64 / wall
        );
        json_rows.push(json!({"run": name, "wall_s": wall, "cpu_s": cpu, "peak_rss_mib": rss, "nodes_per_s": a.nodes as f64 / wall}));
    }
    let parallel_wall = med(&rows[3].1, |x| x.wall);
    let ratio = cold_wall / parallel_wall;
    let ratio_sftp = med(&rows[1].1, |x| x.wall) / parallel_wall;
    let rss_mib = rss_run.map(|s| s.rss_kib as f64 / 1024.0);
    let _ = write!(
        md,
        "\n| measurement | result | target |\n|---|---|---|\n\
         | coldkeep / parallel pipeline wall time | {ratio:.2}x | at most 0.5x ({}) |\n\
         | the same with `file_transfer: sftp` | {ratio_sftp:.2}x | at most 0.5x ({}) |\n\
         | deep verify, {count} artifacts, {:.1} MB plaintext | {:.2} s, {:.1} MB/s | - |\n\
         | restore of one P12 (decrypt, checks, pre-restore copy, push, read-back) | {:.2} s | - |\n\
         | list --json, {} artifacts | {:.2} s, {:.0} MiB | under 1 s ({}) |\n\
         | shallow verify, {} artifacts | {:.2} s | - |\n",
        if ratio <= 0.5 { "met" } else { "missed" },
        if ratio_sftp <= 0.5 { "met" } else { "missed" },
        plain as f64 / 1e6,
        deep.wall,
        plain as f64 / 1e6 / deep.wall.max(1e-9),
        restore.wall,
        a.big_store,
        list_big.wall,
        list_big.rss_kib as f64 / 1024.0,
        if list_big.wall < 1.0 { "met" } else { "missed" },
        a.big_store,
        verify_big.wall,
    );
    if let Some(r) = rss_mib {
        let _ = writeln!(
            md,
            "| peak RSS, backup of {} nodes (jobs {}) | {r:.1} MiB | under 64 MiB ({}) |",
            a.rss_nodes,
            a.jobs,
            if r < 64.0 { "met" } else { "missed" }
        );
    }
    let report = json!({
        "nodes": a.nodes, "rings": a.rings, "rounds": a.rounds, "jobs": a.jobs,
        "runs": json_rows,
        "coldkeep_vs_parallel_pipeline": ratio,
        "coldkeep_sftp_vs_parallel_pipeline": ratio_sftp,
        "deep_verify": {"artifacts": count, "plaintext_bytes": plain, "wall_s": deep.wall},
        "restore_one_p12_s": restore.wall,
        "list_big_store": {"artifacts": a.big_store, "wall_s": list_big.wall, "peak_rss_mib": list_big.rss_kib as f64 / 1024.0},
        "shallow_verify_big_store_s": verify_big.wall,
        "peak_rss_mib_many_nodes": rss_mib.map(|r| json!({"nodes": a.rss_nodes, "mib": r})),
    });
    fs::create_dir_all(&a.out).unwrap();
    fs::write(a.out.join("fleet.md"), &md).unwrap();
    fs::write(
        a.out.join("fleet.json"),
        serde_json::to_vec_pretty(&report).unwrap(),
    )
    .unwrap();
    println!("{md}");
}

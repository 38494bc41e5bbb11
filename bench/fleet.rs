//! Fleet benchmark: coldkeep against the physical SSH limit and the shell pipeline a sysadmin
//! would write, a scaling curve, `list` of big stores and deep `verify` throughput.
//!
//!   cargo bench --bench fleet -- [--nodes 32] [--rings 50] [--rounds 3] [--jobs 8]
//!                                [--scale 8,32,128,256] [--lists 10000,100000,300000]
//!                                [--deep-min 1000] [--soak 30] [--out bench/results] [--quick]
//!
//! Starts real sshd nodes on loopback (as many as the largest of `--nodes` and `--scale`), each
//! with a cl-keytool-style P12 and an Acra v2 keystore of K key rings. On the first `--nodes`
//! nodes, several rounds each (medians reported):
//! - the SSH limit: a small ssh2 program (below) that, with `jobs` threads, does per node only
//!   connect + handshake + authenticate + open SFTP + read the P12 and the Acra tree;
//! - `coldkeep backup` with the default config (no `file_transfer` line) and with `scp`;
//! - as root: `coldkeep backup` with `become: sudo` through the node helper, logging in as an
//!   unprivileged user (one helper process per node per run; target: at most 1.5x the default);
//! - per node `scp` + `scp -r` + `tar c | age`, sequentially and 8-way parallel (`xargs -P 8`).
//!
//! Then the scaling curve (one default-config backup of the first N nodes for each `--scale`
//! value), deep `verify` of at least `--deep-min` real artifacts (artifacts/s), restore of one
//! P12, and `list --json` of generated stores of each `--lists` size (the first listing builds
//! the sidecar index; the median of three after it is reported). Every command runs under GNU
//! time for wall, CPU and peak RSS. Results: `<out>/fleet.md`, `fleet.json`, `scaling.csv` and
//! the plot `scaling.png`.

use coldkeep::material::p12::{self, GenerateStyle};
use coldkeep::testkit::acra;
use coldkeep::testkit::sandbox::{Sandbox, SandboxNode};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_coldkeep");

struct Args {
    nodes: usize,
    rings: usize,
    rounds: usize,
    jobs: usize,
    scale: Vec<usize>,
    lists: Vec<usize>,
    deep_min: usize,
    out: PathBuf,
    /// Keep the temp dir (stores, configs) for profiling by hand.
    keep: bool,
    /// Where the generated `list` stores go (default: the temp dir), e.g. a tmpfs when the
    /// disk is short of the ~1.6 GB that 300,000 sidecars and their indexes take.
    big_dir: Option<PathBuf>,
    /// Loops of the kill -9 soak (0: none).
    soak: usize,
    /// Only the SSH limit and the default-config backup in the rounds, then a profile of one
    /// more backup: a quick check of the backup's fraction of the limit while working on it
    /// (not the report).
    quick: bool,
}

fn args() -> Args {
    let mut a = Args {
        nodes: 32,
        rings: 50,
        rounds: 3,
        jobs: 8,
        scale: vec![8, 32, 128, 256],
        lists: vec![10_000, 100_000, 300_000],
        deep_min: 1000,
        keep: false,
        big_dir: None,
        quick: false,
        soak: 30,
        out: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/results")),
    };
    let mut it = std::env::args().skip(1);
    let list = |v: Option<String>| -> Vec<usize> {
        v.expect("a list")
            .split(',')
            .filter(|x| !x.is_empty())
            .map(|x| x.parse().expect("numbers"))
            .collect()
    };
    while let Some(flag) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse::<usize>().ok()).expect("a number");
        match flag.as_str() {
            "--nodes" => a.nodes = num(),
            "--rings" => a.rings = num(),
            "--rounds" => a.rounds = num(),
            "--jobs" => a.jobs = num(),
            "--deep-min" => a.deep_min = num(),
            "--soak" => a.soak = num(),
            "--scale" => a.scale = list(it.next()),
            "--lists" => a.lists = list(it.next()),
            "--out" => a.out = PathBuf::from(it.next().expect("a path")),
            "--keep" => a.keep = true,
            "--quick" => a.quick = true,
            "--big-dir" => a.big_dir = Some(PathBuf::from(it.next().expect("a path"))),
            "--bench" => {} // added by `cargo bench`
            other => panic!("unknown flag {other}"),
        }
    }
    a.lists.sort_unstable();
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

/// CPU seconds (user + system) this process has used so far.
fn own_cpu() -> f64 {
    // SAFETY: getrusage writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
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
    rings: usize,
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
        rings,
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

    /// A config for the first `n` nodes; `transfer` None leaves `file_transfer` at its default.
    fn config(&self, store: &Path, n: usize, jobs: usize, transfer: Option<&str>) -> PathBuf {
        self.config_as(store, n, jobs, transfer, &self.sandbox.user, "")
    }

    /// [`Fleet::config`] logging in as `user`, with `ssh_extra` (indented for `ssh:`) added.
    fn config_as(
        &self,
        store: &Path,
        n: usize,
        jobs: usize,
        transfer: Option<&str>,
        user: &str,
        ssh_extra: &str,
    ) -> PathBuf {
        let line = transfer
            .map(|t| format!("  file_transfer: {t}\n"))
            .unwrap_or_default();
        let mut text = format!(
            "store:\n  path: {}\nencryption:\n  recipients: [{}]\nssh:\n  user: {}\n  identity: {}\n  known_hosts: {}\n\
             {ssh_extra}{line}jobs: {jobs}\nretries: 0\n{}nodes:\n",
            store.display(),
            self.recipient,
            user,
            self.sandbox.client_key.display(),
            self.sandbox.known_hosts.display(),
            self.signing_yaml()
        );
        let acra = self.rings > 0;
        for n in &self.nodes[..n] {
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
        let name = format!(
            "coldkeep-{}-{n}-{jobs}-{}-{user}.yaml",
            store.file_name().unwrap().to_string_lossy(),
            transfer.unwrap_or("default")
        );
        let path = self.dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    /// The baseline: one script per node (scp the P12, scp -r the keystore, tar | age).
    fn baseline_scripts(&self, store: &Path, n: usize) -> (PathBuf, PathBuf) {
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
        let lines: String = self.nodes[..n]
            .iter()
            .map(|n| format!("{} {} {}\n", n.name, n.port, n.root.display()))
            .collect();
        fs::write(&list, lines).unwrap();
        (node_sh, list)
    }
}

/// An artifact's sidecar (not the dot-named sidecar index beside them).
fn is_sidecar(path: &Path) -> bool {
    path.extension().is_some_and(|x| x == "json")
        && !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

fn artifact_bytes(store: &Path) -> (usize, u64) {
    let mut count = 0;
    let mut plain = 0;
    for e in walkdir::WalkDir::new(store).into_iter().filter_map(Result::ok) {
        if is_sidecar(e.path()) && !e.path().starts_with(store.join(".coldkeep")) {
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

/// Grows a generated store to `n` artifacts (from `start`): copies of one real artifact under
/// distinct ids and nodes, 100 per keystore directory, each sidecar signed by `signer`.
fn generate_store(
    from: &Path,
    to: &Path,
    start: usize,
    n: usize,
    signer: &coldkeep::sign::Signer,
) -> std::io::Result<()> {
    let json = walkdir::WalkDir::new(from)
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| is_sidecar(e.path()) && e.path().to_string_lossy().contains("/p12/"))
        .unwrap()
        .into_path();
    let mut age_src = json.with_extension("age");
    let mut sidecar: Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    let short = sidecar["ciphertext_sha256"].as_str().unwrap()[..8].to_string();
    let per_node = 100;
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
    for i in start..n {
        let node = format!("g{:05}", i / per_node);
        let dir = to.join(&node).join("p12");
        if i % per_node == 0 {
            fs::create_dir_all(&dir)?;
        }
        let t = base + chrono::Duration::hours(i as i64 % per_node as i64);
        sidecar["node"] = Value::from(node.clone());
        sidecar["created_at"] = Value::from(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let id = format!("{}-{short}", t.format("%Y%m%dT%H%M%SZ"));
        // The same ciphertext for every copy: a hard link is one syscall instead of three (a
        // fresh file every 50,000, under ext4's 65,000 links per inode, and one in the target
        // file system).
        let age_path = dir.join(format!("{id}.age"));
        if i == start || i % 50_000 == 0 {
            fs::copy(&age_src, &age_path)?;
            age_src = age_path;
        } else {
            fs::hard_link(&age_src, &age_path)?;
        }
        let bytes = serde_json::to_vec(&sidecar).unwrap();
        fs::write(dir.join(format!("{id}.json.sig")), signer.sign(&bytes))?;
        fs::write(dir.join(format!("{id}.json")), bytes)?;
    }
    Ok(())
}

/// The physical limit of one node: connect + handshake + authenticate + open SFTP + read the
/// P12 and every file of the Acra tree, nothing else (no host-key file, no hashing, no
/// encryption, no store). Returns the bytes read.
fn ssh_read_node(node: &SandboxNode, user: &str, key: &Path) -> u64 {
    let tcp = std::net::TcpStream::connect(("127.0.0.1", node.port)).expect("connect");
    let _ = tcp.set_nodelay(true);
    let mut sess = ssh2::Session::new().unwrap();
    sess.set_tcp_stream(tcp);
    sess.handshake().expect("handshake");
    sess.userauth_pubkey_file(user, None, key, None).expect("auth");
    let sftp = sess.sftp().expect("sftp");
    let mut buf = vec![0u8; 32 * 1024];
    let mut read_file = |path: &Path| -> u64 {
        let mut f = sftp.open(path).expect("open");
        let mut n = 0;
        loop {
            match f.read(&mut buf).expect("read") {
                0 => return n,
                k => n += k as u64,
            }
        }
    };
    let mut total = read_file(&node.root.join(P12_REL));
    let mut dirs = vec![node.root.join(ACRA_REL)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = sftp.readdir(&dir) else { continue };
        for (path, stat) in entries {
            if stat.is_dir() {
                dirs.push(path);
            } else if stat.is_file() {
                total += read_file(&path);
            }
        }
    }
    total
}

/// Wall seconds for [`ssh_read_node`] over the first `n` nodes with `jobs` threads (the same
/// work queue shape as coldkeep's `jobs`).
fn ssh_limit(fleet: &Fleet, n: usize, jobs: usize) -> f64 {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..jobs.min(n) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(node) = fleet.nodes[..n].get(i) else {
                        break;
                    };
                    assert!(ssh_read_node(node, &fleet.sandbox.user, &fleet.sandbox.client_key) > 0);
                }
            });
        }
    });
    start.elapsed().as_secs_f64()
}

/// Where a command spends its time: `perf record` (software cpu-clock event: the VM has no
/// hardware counters; DWARF call graphs, since release builds keep no frame pointers) of one
/// more run of it, summarised by `perf report`: inclusive time per function (what each step
/// costs with what it calls), then self time per symbol. None without perf.
fn profile(command: &str, dir: &Path) -> Option<String> {
    profile_at(command, dir, "499")
}

/// [`profile`] at `freq` samples per second.
fn profile_at(command: &str, dir: &Path, freq: &str) -> Option<String> {
    let data = dir.join("perf.data");
    let record = Command::new("perf")
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            freq,
            "--call-graph",
            "dwarf,16384",
            "-o",
        ])
        .arg(&data)
        .args(["--", "sh", "-c", &format!("{command} >/dev/null")])
        .output()
        .ok()?;
    if !record.status.success() {
        eprintln!("perf record failed: {}", String::from_utf8_lossy(&record.stderr));
        return None;
    }
    let report = |args: &[&str]| -> Option<String> {
        let out = Command::new("perf")
            .args(["report", "--stdio", "-g", "none"])
            .args(args)
            .arg("-i")
            .arg(&data)
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let inclusive = report(&["--children", "--sort", "symbol", "--percent-limit", "3"])?;
    let own = report(&["--no-children", "--sort", "dso,symbol", "--percent-limit", "1"])?;
    let _ = fs::remove_file(&data);
    Some(format!(
        "# {command}\n\n## Inclusive (children) time per function, 3% and up\n{inclusive}\n\n## Self time per symbol, 1% and up\n{own}"
    ))
}

/// The median wall and CPU of three runs of `script` and their largest peak RSS.
fn settled(script: &str, dir: &Path) -> Sample {
    let runs: Vec<Sample> = (0..3).map(|_| measure(script, dir)).collect();
    Sample {
        wall: median(runs.iter().map(|s| s.wall).collect()),
        cpu: median(runs.iter().map(|s| s.cpu).collect()),
        rss_kib: runs.iter().map(|s| s.rss_kib).max().unwrap(),
    }
}

fn uptime() -> String {
    Command::new("uptime")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Fonts tried for the plot's text (plotters' ab_glyph backend needs a TTF file).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// The scaling curve as a 2x2 PNG: backup wall/CPU and peak RSS against nodes, list wall and
/// peak RSS against artifacts.
fn plot(
    path: &Path,
    backup: &[(usize, Sample)],
    list: &[(usize, Sample)],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let font = FONTS
        .iter()
        .find_map(|f| fs::read(f).ok())
        .ok_or("no DejaVuSans.ttf found (Debian: fonts-dejavu-core)")?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font).map_err(|_| "bad font")?;
    let root = BitMapBackend::new(path, (1400, 1000)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled("coldkeep scaling (this machine, 2 cores)", ("sans-serif", 30))?;
    let panels = root.split_evenly((2, 2));
    type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);
    let draw = |area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
                title: &str,
                x_desc: &str,
                y_desc: &str,
                series: Vec<Series>|
     -> Result<(), Box<dyn std::error::Error>> {
        let x_max = series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.0))
            .fold(1.0, f64::max)
            * 1.05;
        let y_max = series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1))
            .fold(0.0, f64::max)
            * 1.15
            + 1e-9;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style(("sans-serif", 16))
            .draw()?;
        for (name, color, points) in series {
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 5, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 16))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    };
    let pts = |v: &[(usize, Sample)], f: fn(&Sample) -> f64| -> Vec<(f64, f64)> {
        v.iter().map(|(n, s)| (*n as f64, f(s))).collect()
    };
    draw(
        &panels[0],
        "backup (default config, jobs 8): time",
        "nodes",
        "seconds",
        vec![
            ("wall", BLUE, pts(backup, |s| s.wall)),
            ("CPU (user+sys)", RED, pts(backup, |s| s.cpu)),
        ],
    )?;
    draw(
        &panels[1],
        "backup: peak RSS",
        "nodes",
        "MiB",
        vec![("peak RSS", GREEN, pts(backup, |s| s.rss_kib as f64 / 1024.0))],
    )?;
    let k = |v: &[(usize, Sample)], f: fn(&Sample) -> f64| -> Vec<(f64, f64)> {
        v.iter().map(|(n, s)| (*n as f64 / 1000.0, f(s))).collect()
    };
    draw(
        &panels[2],
        "list --json (index settled): time",
        "thousand artifacts",
        "seconds",
        vec![
            ("wall", BLUE, k(list, |s| s.wall)),
            ("CPU (user+sys)", RED, k(list, |s| s.cpu)),
        ],
    )?;
    draw(
        &panels[3],
        "list --json: peak RSS",
        "thousand artifacts",
        "MiB",
        vec![("peak RSS", GREEN, k(list, |s| s.rss_kib as f64 / 1024.0))],
    )?;
    root.present()?;
    Ok(())
}

/// What the kill -9 soak found.
struct Soak {
    loops: usize,
    nodes: usize,
    /// Artifacts listed afterwards, each deep-verified (decrypted, every file's hash).
    verified: usize,
    /// Listed artifacts or store files that did not verify: must be 0 (nothing lost).
    bad: usize,
    /// Temp files left after the run that follows the soak: must be 0.
    temp_files: usize,
    /// `.age`/`.sig` files without a sidecar (interrupted claims; never listed).
    orphans: usize,
}

/// The kill -9 soak: `coldkeep backup --force` of 8 nodes (P12 + Acra) into a store and a
/// replica, killed with SIGKILL at a different moment each loop; then one whole run, and a deep
/// verify of everything listed. Nothing listed may fail to verify, and the whole run must have
/// removed the killed runs' temp files.
fn soak(fleet: &Fleet, dir: &Path, loops: usize) -> Soak {
    let nodes = fleet.nodes.len().min(8);
    let store = dir.join("soak-store");
    let replica = dir.join("soak-replica");
    fs::create_dir_all(&replica).unwrap();
    let config = fleet.config(&store, nodes, 8, None);
    let text = fs::read_to_string(&config).unwrap().replacen(
        "\nencryption:",
        &format!("\n  replicas: [{}]\nencryption:", replica.display()),
        1,
    );
    fs::write(&config, text).unwrap();
    eprintln!("kill -9 soak: {loops} loops of {nodes} nodes...");
    for i in 0..loops {
        let mut child = Command::new(BIN)
            .args(["--config", &config.display().to_string(), "backup", "--force"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // A different moment each loop, across a whole run (about 0.3 s here).
        std::thread::sleep(std::time::Duration::from_millis(20 + (i as u64 * 37) % 400));
        let _ = child.kill();
        let _ = child.wait();
    }
    let whole = Command::new(BIN)
        .args(["--config", &config.display().to_string(), "backup"])
        .output()
        .unwrap();
    assert!(
        whole.status.success(),
        "{}",
        String::from_utf8_lossy(&whole.stderr)
    );
    let verify = Command::new(BIN)
        .args([
            "--config",
            &config.display().to_string(),
            "verify",
            "--json",
            "--identity",
            &fleet.identity.display().to_string(),
        ])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&verify.stdout).unwrap();
    let artifacts = report["artifacts"].as_array().unwrap();
    let bad = artifacts.iter().filter(|a| a["ok"] != true).count()
        + report["store_problems"].as_array().unwrap().len();
    let mut temp_files = 0;
    let mut orphans = 0;
    for root in [&store, &replica] {
        for e in walkdir::WalkDir::new(root).into_iter().filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if coldkeep::store::temps::is_temp(&name) {
                temp_files += 1;
            } else if let Some(id) = name.strip_suffix(".age")
                && !e.path().with_file_name(format!("{id}.json")).exists()
            {
                orphans += 1;
            }
        }
    }
    Soak {
        loops,
        nodes,
        verified: artifacts.len(),
        bad,
        temp_files,
        orphans,
    }
}

/// The SSH login user of the `become: sudo` run (unprivileged, created if missing).
const LOGIN_USER: &str = "coldkeep-node";

/// The `become: sudo` run through the node helper, installed as an operator would (one policy
/// listing every node's keystores, one sudoers rule), logging in as an unprivileged user. Needs
/// root (a user, a drop-in, a policy); `None` otherwise. The sandbox keeps logging in as before
/// for the other runs.
fn become_setup(
    fleet: &mut Fleet,
    store: &Path,
    n: usize,
    jobs: usize,
) -> Option<(PathBuf, coldkeep::testkit::node_helper::Installed)> {
    if !rustix::process::geteuid().is_root() {
        eprintln!(
            "not root: the `become: sudo` run is skipped (it needs a user, a sudoers drop-in, a policy)"
        );
        return None;
    }
    let user = fleet.sandbox.user.clone();
    fleet.sandbox.login_as(LOGIN_USER).unwrap();
    fleet.sandbox.user = user;
    let h = coldkeep::testkit::node_helper::NodeHelper::new(Path::new(BIN));
    let mut policy = String::from("version: 1\nkeystores:\n");
    for node in &fleet.nodes[..n] {
        let _ = write!(
            policy,
            "  - name: {0}-p12\n    kind: p12\n    path: {1}\n  - name: {0}-acra\n    kind: acra\n    path: {2}\n",
            node.name,
            node.root.join(P12_REL).display(),
            node.root.join(ACRA_REL).display()
        );
    }
    let extra = format!(
        "  become: sudo\n  node_helper: {}\n  node_policy: {}\n",
        h.program, h.policy
    );
    let config = fleet.config_as(store, n, jobs, None, LOGIN_USER, &extra);
    let sudoers = Command::new(BIN)
        .args([
            "--config",
            &config.display().to_string(),
            "config",
            "sudoers",
            "--node",
            &fleet.nodes[0].name,
        ])
        .output()
        .unwrap();
    assert!(
        sudoers.status.success(),
        "{}",
        String::from_utf8_lossy(&sudoers.stderr)
    );
    let installed = h.install(&String::from_utf8_lossy(&sudoers.stdout), &policy);
    Some((config, installed))
}

fn main() {
    let a = args();
    let load_before = uptime();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let max_nodes = a.scale.iter().copied().chain([a.nodes]).max().unwrap();
    eprintln!("starting {max_nodes} sshd nodes ({} key rings each)...", a.rings);
    let mut fleet = start_fleet(&dir.join("fleet"), max_nodes, a.rings);
    let default_config = fleet.config(&dir.join("store"), a.nodes, a.jobs, None);
    let scp_config = fleet.config(&dir.join("store-scp"), a.nodes, a.jobs, Some("scp"));
    let base_store = dir.join("baseline-store");
    fs::create_dir_all(&base_store).unwrap();
    let (node_sh, list) = fleet.baseline_scripts(&base_store, a.nodes);
    let become_run = become_setup(&mut fleet, &dir.join("store-become"), a.nodes, a.jobs);

    // Every run once per round, rounds interleaved: a change in the shared machine's load (it
    // moved the limit alone by 30% between rounds) then weighs on all of them alike.
    let mut limit = Vec::new();
    let mut limit_cpu = Vec::new();
    let mut runs = vec![
        (
            format!("coldkeep backup (jobs {}, default config: SFTP)", a.jobs),
            format!(
                "{BIN} --config {} backup --force >/dev/null",
                default_config.display()
            ),
        ),
        (
            format!("coldkeep backup (jobs {}, file_transfer: scp)", a.jobs),
            format!(
                "{BIN} --config {} backup --force >/dev/null",
                scp_config.display()
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
    if let Some((config, _)) = &become_run {
        runs.push((
            format!(
                "coldkeep backup (jobs {}, become: sudo through the node helper, as {LOGIN_USER})",
                a.jobs
            ),
            format!("{BIN} --config {} backup --force >/dev/null", config.display()),
        ));
    }
    // Quick: the default backup, and the same as a dry run (everything but the store writes).
    let quick = [
        runs[0].clone(),
        (
            "coldkeep backup --dry-run (the same without the store's writes)".to_string(),
            format!(
                "{BIN} --config {} backup --force --dry-run >/dev/null",
                default_config.display()
            ),
        ),
    ];
    let runs = if a.quick { &quick[..] } else { &runs[..] };
    let mut rows: Vec<(String, Vec<Sample>)> =
        runs.iter().map(|(name, _)| (name.clone(), Vec::new())).collect();
    // Warm-up, not measured: the freshly built binary paged in, every node's sshd answered once.
    measure(
        &format!(
            "{BIN} --config {} backup --dry-run >/dev/null",
            default_config.display()
        ),
        dir,
    );
    for round in 0..a.rounds {
        eprintln!("SSH limit (ssh2: connect, auth, SFTP, read): round {}", round + 1);
        let cpu_before = own_cpu();
        limit.push(ssh_limit(&fleet, a.nodes, a.jobs));
        limit_cpu.push(own_cpu() - cpu_before);
        for ((name, script), (_, samples)) in runs.iter().zip(&mut rows) {
            eprintln!("{name}: round {}", round + 1);
            samples.push(measure(script, dir));
        }
    }
    let limit_wall = median(limit.clone());
    if a.quick {
        println!("quick: SSH limit CPU (this process) {limit_cpu:.3?} s");
        for (name, samples) in &rows {
            let fractions: Vec<f64> = limit.iter().zip(samples).map(|(l, c)| l / c.wall).collect();
            println!(
                "quick: {name}: SSH limit {limit:.3?} s, coldkeep {:.3?} s (CPU {:.3?}), fractions {fractions:.3?}, median {:.3}",
                samples.iter().map(|s| s.wall).collect::<Vec<_>>(),
                samples.iter().map(|s| s.cpu).collect::<Vec<_>>(),
                median(fractions.clone())
            );
        }
        if let Some(p) = profile_at(
            &format!(
                "{BIN} --config {} backup --force $COLDKEEP_QUICK_PROFILE_ARGS",
                default_config.display()
            ),
            dir,
            "3999",
        ) {
            let to = std::env::temp_dir().join("coldkeep-quick-backup-profile.txt");
            fs::write(&to, p).unwrap();
            println!("profile of one more backup: {}", to.display());
        }
        if a.keep {
            eprintln!("kept {}", tmp.keep().display());
        }
        return;
    }

    // Scaling: one default-config backup of the first N nodes, all into one store that then
    // serves the deep verify.
    let deep_store = dir.join("deep-store");
    let mut scaling = Vec::new();
    for &n in &a.scale {
        eprintln!("scaling: backup of {n} nodes...");
        let cfg = fleet.config(&deep_store, n, a.jobs, None);
        let s = measure(
            &format!("{BIN} --config {} backup --force >/dev/null", cfg.display()),
            dir,
        );
        scaling.push((n, s));
    }
    let top_up = fleet.config(&deep_store, a.nodes, a.jobs, None);
    while artifact_bytes(&deep_store).0 < a.deep_min {
        eprintln!("more artifacts for the deep verify...");
        measure(
            &format!("{BIN} --config {} backup --force >/dev/null", top_up.display()),
            dir,
        );
    }
    let (count, plain) = artifact_bytes(&deep_store);
    let ids = fleet.identity.display().to_string();
    eprintln!("deep verify of {count} artifacts ({plain} bytes)...");
    // Every node that backed up, so verify knows them all.
    let verify_config = fleet.config(&deep_store, max_nodes, a.jobs, None);
    let deep = measure(
        &format!(
            "{BIN} --config {} verify --identity {ids} >/dev/null",
            verify_config.display()
        ),
        dir,
    );

    let verify_profile = profile(
        &format!(
            "{BIN} --config {} verify --identity {ids}",
            verify_config.display()
        ),
        dir,
    );
    // The backup's own CPU competes with the nodes' sshd for the same two cores: where it goes.
    let backup_profile = profile(
        &format!("{BIN} --config {} backup --force", default_config.display()),
        dir,
    );

    eprintln!("restore of one P12...");
    let target = fleet.nodes[0].root.join(P12_REL);
    fs::write(&target, b"replaced").unwrap();
    let restore = measure(
        &format!(
            "{BIN} --config {} restore --node {} --keystore p12 --yes --identity {ids} >/dev/null",
            default_config.display(),
            fleet.nodes[0].name
        ),
        dir,
    );
    let soak = (a.soak > 0).then(|| soak(&fleet, dir, a.soak));
    let recipient = fleet.recipient.clone();
    let signing_yaml = fleet.signing_yaml();
    let signer = coldkeep::sign::Signer::load(&fleet.signing_key, None).unwrap();
    drop(fleet);

    // `list` of generated stores, grown in place: the first listing of each size builds (or
    // updates) the sidecar index; the median of the three after it is what a user sees.
    let big_tmp = a.big_dir.as_ref().map(|d| tempfile::tempdir_in(d).unwrap());
    let big = big_tmp.as_ref().map_or(dir, |t| t.path()).join("big-store");
    let big_config = dir.join("big.yaml");
    fs::write(
        &big_config,
        format!(
            "store:\n  path: {}\nencryption:\n  recipients: [{recipient}]\n{signing_yaml}",
            big.display()
        ),
    )
    .unwrap();
    let list_cmd = format!("{BIN} --config {} list --json >/dev/null", big_config.display());
    let mut lists = Vec::new();
    let mut others = Vec::new();
    let mut grown = 0;
    for &n in &a.lists {
        eprintln!("generating a store of {n} artifacts...");
        // The machine's disk is shared: a full disk ends the curve, not the run.
        if let Err(e) = generate_store(&deep_store, &big, grown, n, &signer) {
            eprintln!("cannot grow the store to {n} artifacts ({e}); the list curve stops here");
            break;
        }
        grown = n;
        // A sidecar changed within 2 s of an index build is read again by every listing until
        // a later build (the racy window, see src/store/index.rs): the last files generated
        // would be re-read in each "settled" run. Wait that window out, as any store that is
        // not being written is.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let first = measure(&list_cmd, dir);
        let s = settled(&list_cmd, dir);
        eprintln!("list of {n}: first {:.2} s, then {:.2} s", first.wall, s.wall);
        lists.push((n, first, s));
        // The other readers of the same summaries (no retention policy: prune keeps all).
        let cmd = |what: &str| format!("{BIN} --config {} {what} >/dev/null", big_config.display());
        others.push((
            n,
            settled(&cmd("status"), dir),
            settled(&cmd("prune --dry-run"), dir),
        ));
    }
    let list_profile = lists.last().and_then(|_| profile(&list_cmd, dir));
    let load_after = uptime();
    // Freed now (a tmpfs holds it in memory), unless kept for profiling by hand.
    let big_tmp = big_tmp.filter(|_| a.keep);

    // Report.
    let med = |s: &[Sample], f: fn(&Sample) -> f64| median(s.iter().map(f).collect());
    let cold_wall = med(&rows[0].1, |s| s.wall);
    let mut md = format!(
        "# Fleet benchmark\n\n{} nodes on loopback, each a cl-keytool-style P12 and an Acra v2 keystore of {} key rings; \
         {} rounds, medians. Machine: {} cores, shared. coldkeep {}. Generated list stores in {}.\n\n\
         Load before: `{load_before}`  \nLoad after: `{load_after}`\n\n\
         | run | wall s | CPU s | peak RSS MiB | wall vs coldkeep | nodes/s |\n|---|---|---|---|---|---|\n",
        a.nodes,
        a.rings,
        a.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        env!("CARGO_PKG_VERSION"),
        a.big_dir
            .as_ref()
            .map_or("the temp dir".to_string(), |d| d.display().to_string()),
    );
    let _ = writeln!(
        md,
        "| SSH limit (ssh2: connect, handshake, auth, open SFTP, read the same files; jobs {}) | {limit_wall:.2} | - | - | {:.2}x | {:.1} |",
        a.jobs,
        limit_wall / cold_wall,
        a.nodes as f64 / limit_wall
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
        json_rows.push(json!({"run": name, "wall_s": wall, "cpu_s": cpu, "peak_rss_mib": rss, "nodes_per_s": a.nodes as f64 / wall, "rounds_wall_s": s.iter().map(|x| x.wall).collect::<Vec<_>>()}));
    }
    let parallel_wall = med(&rows[3].1, |x| x.wall);
    let ratio = cold_wall / parallel_wall;
    let ratio_scp = med(&rows[1].1, |x| x.wall) / parallel_wall;
    // Paired by round (the limit, then coldkeep right after it), the median of the ratios.
    let fractions: Vec<f64> = limit.iter().zip(&rows[0].1).map(|(l, c)| l / c.wall).collect();
    let fraction = median(fractions.clone());
    let rss_top = scaling.last().map(|(n, s)| (*n, s.rss_kib as f64 / 1024.0));
    let met = |ok: bool| if ok { "met" } else { "missed" };
    let _ = write!(
        md,
        "\n| measurement | result | goal |\n|---|---|---|\n\
         | coldkeep (default config) / parallel pipeline wall time | {ratio:.2}x | at most 0.5x ({}) |\n\
         | the same with `file_transfer: scp` | {ratio_scp:.2}x | - |\n\
         | coldkeep (default config) backup rate / SSH limit rate, on this disk (median of the {} rounds' paired ratios: {}) | {fraction:.2} | at least 0.95 ({}) |\n",
        met(ratio <= 0.5),
        fractions.len(),
        fractions
            .iter()
            .map(|f| format!("{f:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        met(fraction >= 0.95),
    );
    // The privileged path (issue 23's node helper) against the same limit, paired the same way.
    if let Some((_, samples)) = rows.get(4) {
        let become_fractions: Vec<f64> = limit.iter().zip(samples).map(|(l, c)| l / c.wall).collect();
        let _ = writeln!(
            md,
            "| the same with `become: sudo` through the node helper (median of the paired ratios: {}) | {:.2} | - |",
            become_fractions
                .iter()
                .map(|f| format!("{f:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            median(become_fractions.clone())
        );
    }
    // The listings' goals, at the sizes measured.
    let at = |n: usize| lists.iter().find(|(m, _, _)| *m == n);
    if let Some((n, first, s)) = at(100_000) {
        let _ = writeln!(
            md,
            "| first `list --json` of {n} artifacts (builds the index: every signature checked) | {:.2} s | under 1 s ({}) |\n\
             | settled `list --json`, {n} artifacts | {:.2} s, {:.0} MiB | under 0.5 s ({}) |",
            first.wall,
            met(first.wall < 1.0),
            s.wall,
            s.rss_kib as f64 / 1024.0,
            met(s.wall < 0.5)
        );
    }
    if let Some((n, first, _)) = at(300_000) {
        let _ = writeln!(
            md,
            "| first `list --json` of {n} artifacts | {:.2} s | under 3 s ({}) |",
            first.wall,
            met(first.wall < 3.0)
        );
    }
    if let Some((n, _, prune)) = others.iter().max_by_key(|(n, _, _)| *n) {
        let rss = prune.rss_kib as f64 / 1024.0;
        let _ = writeln!(
            md,
            "| peak RSS of `prune --dry-run`, {n} artifacts | {rss:.1} MiB | under 64 MiB ({}) |",
            met(rss < 64.0)
        );
    }
    if let Some((n, r)) = rss_top {
        let _ = writeln!(
            md,
            "| peak RSS, backup of {n} nodes (jobs {}) | {r:.1} MiB | under 64 MiB ({}) |",
            a.jobs,
            met(r < 64.0)
        );
    }
    let become_ratio = rows.get(4).map(|(_, s)| med(s, |x| x.wall) / cold_wall);
    match become_ratio {
        Some(r) => {
            let _ = writeln!(
                md,
                "| coldkeep `become: sudo` (one node helper per node) / default config wall time | {r:.2}x | at most 1.5x ({}) |",
                if r <= 1.5 { "met" } else { "missed" }
            );
        }
        None => {
            let _ = writeln!(
                md,
                "| coldkeep `become: sudo` / default config | not run (not root) | at most 1.5x |"
            );
        }
    }
    if let Some(k) = &soak {
        let _ = writeln!(
            md,
            "| kill -9 soak: {} runs of {} nodes (P12 + Acra, a replica) killed at different moments, then a whole run | {} artifacts deep-verified, {} bad, {} temp files left, {} `.age` without a sidecar | nothing lost, no temp file left ({}) |",
            k.loops,
            k.nodes,
            k.verified,
            k.bad,
            k.temp_files,
            k.orphans,
            met(k.bad == 0 && k.temp_files == 0)
        );
    }
    let _ = writeln!(
        md,
        "| deep verify, {count} artifacts, {:.1} MB plaintext | {:.2} s, {:.0} artifacts/s | - |\n\
         | restore of one P12 (decrypt, checks, pre-restore copy, push, read-back) | {:.2} s | - |",
        plain as f64 / 1e6,
        deep.wall,
        count as f64 / deep.wall.max(1e-9),
        restore.wall,
    );
    let _ = write!(
        md,
        "\n## Scaling\n\n![scaling](scaling.png)\n\n| backup, nodes | wall s | CPU s | peak RSS MiB | nodes/s |\n|---|---|---|---|---|\n"
    );
    let mut csv = String::from("what,size,wall_s,cpu_s,peak_rss_mib\n");
    for (n, s) in &scaling {
        let rss = s.rss_kib as f64 / 1024.0;
        let _ = writeln!(
            md,
            "| {n} | {:.2} | {:.2} | {rss:.1} | {:.1} |",
            s.wall,
            s.cpu,
            *n as f64 / s.wall
        );
        let _ = writeln!(csv, "backup_nodes,{n},{:.3},{:.3},{rss:.1}", s.wall, s.cpu);
    }
    let _ = write!(
        md,
        "\n| same summaries, artifacts | status s | status peak RSS MiB | prune --dry-run s | prune peak RSS MiB |\n|---|---|---|---|---|\n"
    );
    for (n, st, pr) in &others {
        let _ = writeln!(
            md,
            "| {n} | {:.2} | {:.1} | {:.2} | {:.1} |",
            st.wall,
            st.rss_kib as f64 / 1024.0,
            pr.wall,
            pr.rss_kib as f64 / 1024.0
        );
    }
    let _ = write!(
        md,
        "\n| list --json, artifacts | first (builds index) s | settled wall s | CPU s | peak RSS MiB | µs/artifact |\n|---|---|---|---|---|---|\n"
    );
    for (n, first, s) in &lists {
        let rss = s.rss_kib as f64 / 1024.0;
        let _ = writeln!(
            md,
            "| {n} | {:.2} | {:.2} | {:.2} | {rss:.1} | {:.1} |",
            first.wall,
            s.wall,
            s.cpu,
            s.wall * 1e6 / *n as f64
        );
        let _ = writeln!(csv, "list_artifacts,{n},{:.3},{:.3},{rss:.1}", s.wall, s.cpu);
        let _ = writeln!(
            csv,
            "list_first_artifacts,{n},{:.3},{:.3},{:.1}",
            first.wall,
            first.cpu,
            first.rss_kib as f64 / 1024.0
        );
    }
    let report = json!({
        "nodes": a.nodes, "rings": a.rings, "rounds": a.rounds, "jobs": a.jobs,
        "load_before": load_before, "load_after": load_after,
        "ssh_limit": {"wall_s": limit_wall, "rounds_wall_s": limit},
        "runs": json_rows,
        "coldkeep_vs_parallel_pipeline": ratio,
        "coldkeep_scp_vs_parallel_pipeline": ratio_scp,
        "coldkeep_become_vs_default": become_ratio,
        "fraction_of_ssh_limit": fraction,
        "fraction_of_ssh_limit_per_round": fractions,
        "deep_verify": {"artifacts": count, "plaintext_bytes": plain, "wall_s": deep.wall, "artifacts_per_s": count as f64 / deep.wall.max(1e-9)},
        "restore_one_p12_s": restore.wall,
        "soak": soak.as_ref().map(|k| json!({"loops": k.loops, "nodes": k.nodes, "verified": k.verified, "bad": k.bad, "temp_files": k.temp_files, "orphans": k.orphans})),
        "scaling_backup": scaling.iter().map(|(n, s)| json!({"nodes": n, "wall_s": s.wall, "cpu_s": s.cpu, "peak_rss_mib": s.rss_kib as f64 / 1024.0})).collect::<Vec<_>>(),
        "status_and_prune": others.iter().map(|(n, st, pr)| json!({"artifacts": n, "status_wall_s": st.wall, "status_peak_rss_mib": st.rss_kib as f64 / 1024.0, "prune_dry_run_wall_s": pr.wall, "prune_peak_rss_mib": pr.rss_kib as f64 / 1024.0})).collect::<Vec<_>>(),
        "scaling_list": lists.iter().map(|(n, f, s)| json!({"artifacts": n, "first_wall_s": f.wall, "wall_s": s.wall, "cpu_s": s.cpu, "peak_rss_mib": s.rss_kib as f64 / 1024.0})).collect::<Vec<_>>(),
    });
    fs::create_dir_all(&a.out).unwrap();
    let settled: Vec<(usize, Sample)> = lists.iter().map(|(n, _, s)| (*n, *s)).collect();
    if let Err(e) = plot(&a.out.join("scaling.png"), &scaling, &settled) {
        eprintln!("plot not drawn: {e}");
    }
    for (name, what, p) in [
        ("verify-profile.txt", "Deep verify", &verify_profile),
        ("backup-profile.txt", "Backup (default config)", &backup_profile),
        (
            "list-profile.txt",
            "`list --json` of the largest store",
            &list_profile,
        ),
    ] {
        if let Some(p) = p {
            fs::write(a.out.join(name), p).unwrap();
            let _ = writeln!(
                md,
                "\n{what} profile (`perf record -e cpu-clock -g`, self time per symbol): `{name}`."
            );
        }
    }
    fs::write(a.out.join("fleet.md"), &md).unwrap();
    fs::write(a.out.join("scaling.csv"), &csv).unwrap();
    fs::write(
        a.out.join("fleet.json"),
        serde_json::to_vec_pretty(&report).unwrap(),
    )
    .unwrap();
    println!("{md}");
    if a.keep {
        eprintln!("kept {}", tmp.keep().display());
        if let Some(big) = big_tmp {
            eprintln!("kept {}", big.keep().display());
        }
    }
}

//! Comparison harness: relstore against the hardware limits and against what users would pick
//! instead (cacache, SQLite, plain files), on workloads shaped like release artifacts.
//!
//! `cargo run --release -p relstore-compare -- --quick` (under 3 minutes on 2 cores) or without
//! `--quick` for the full run. Each contender runs in a child process (this binary re-executed
//! with `--child`), so its peak RSS and its files are its own; contenders alternate round by
//! round and the table shows medians, with ratios taken pair by pair within a round.

mod child;
mod data;
mod npm;
mod peers;
mod sled_cost;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use child::{Job, Measure};
use relstore::ChunkingParams;

/// Sizes of one mode.
#[derive(Clone, Debug, serde::Serialize)]
struct Config {
    mode: &'static str,
    w1_files: usize,
    small_rounds: u32,
    w2_file_bytes: u64,
    w2_rounds: u32,
    one_gib_file: bool,
    w5_files: usize,
    w6_files: usize,
    w6_rounds: u32,
    w8_versions: usize,
    w8_packages: Option<Vec<&'static str>>,
    /// Extra W8 runs with these chunking parameters, to compare measured stores.
    w8_variants: Vec<ChunkingParams>,
    /// W8 rounds (each round uploads every package once per store variant).
    w8_rounds: u32,
    /// `--chunking`: the parameter grid. W1, W2 and W2-1file run every relstore contender and
    /// the ingest limits once per entry; W8 runs one measured store per entry and round instead
    /// of the default run. The first entry is the baseline of the comparison table.
    chunking: Vec<ChunkingParams>,
    /// `--contenders`: W1, W2 and W2-1file run only these (base names, without `@…`).
    contenders: Option<Vec<String>>,
}

/// min = avg/4, max = 4×avg (KiB average), the shape of relstore's default parameters.
fn quartered(avg_kib: u32) -> ChunkingParams {
    ChunkingParams {
        min: (avg_kib << 10) / 4,
        avg: avg_kib << 10,
        max: (avg_kib << 10) * 4,
    }
}

impl Config {
    fn quick() -> Config {
        Config {
            mode: "quick",
            w1_files: 600,
            small_rounds: 2,
            w2_file_bytes: 16 << 20,
            w2_rounds: 2,
            one_gib_file: false,
            // Issue 6's sizes: 200,000 files in quick mode, 1,000,000 in full mode.
            w5_files: 200_000,
            w6_files: 200,
            w6_rounds: 1,
            w8_versions: 10,
            w8_packages: Some(vec!["@angular/core"]),
            w8_variants: vec![],
            w8_rounds: 1,
            chunking: vec![],
            contenders: None,
        }
    }
    fn full() -> Config {
        Config {
            mode: "full",
            w1_files: 10_000,
            small_rounds: 2,
            w2_file_bytes: 256 << 20,
            w2_rounds: 2,
            one_gib_file: true,
            w5_files: 1_000_000,
            w6_files: 1_000,
            w6_rounds: 1,
            w8_versions: 10,
            w8_packages: None,
            // 16, 8 and 4 KiB averages; the one equal to the default is the default run already.
            w8_variants: vec![quartered(16), quartered(8), quartered(4)],
            w8_rounds: 1,
            chunking: vec![],
            contenders: None,
        }
    }
}

const LIMITS: &[&str] = &["sha1-mem", "ingest-1core", "ingest-2core", "disk-floor"];

/// Seconds since the harness started, for progress lines.
fn stamp() -> f64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let job: Job = match args.get(1).map(|s| serde_json::from_str(s)) {
            Some(Ok(j)) => j,
            _ => {
                eprintln!("--child needs a job in JSON");
                std::process::exit(2);
            }
        };
        if let Err(e) = child::run(&job) {
            eprintln!("child {} {} failed: {e}", job.kind, job.contender);
            std::process::exit(1);
        }
        return;
    }
    if args.first().map(String::as_str) == Some("--sled-record-mode") {
        match (
            args.get(1),
            args.get(2).and_then(|s| s.parse().ok()),
            args.get(3),
        ) {
            (Some(mode), Some(n), Some(scratch)) => sled_cost::child(mode, n, Path::new(scratch)),
            _ => {
                eprintln!("--sled-record-mode MODE N DIR (run by --sled-records)");
                std::process::exit(2);
            }
        }
        return;
    }
    if args.first().map(String::as_str) == Some("--sled-records") {
        let n = match args.get(1).map(|s| s.parse::<usize>()) {
            None => 262_144,
            Some(Ok(n)) if n > 0 => n,
            Some(_) => {
                eprintln!("--sled-records takes a positive number of records");
                std::process::exit(2);
            }
        };
        let scratch =
            workspace_root().join(format!("target/bench-data/sled-{}", std::process::id()));
        sled_cost::run(n, &scratch);
        let _ = std::fs::remove_dir_all(&scratch);
        return;
    }
    let mut cfg = Config::full();
    let mut only: Option<Vec<String>> = None;
    let mut out: Option<PathBuf> = None;
    // Size options apply after the mode, whatever their order on the command line.
    let mut overrides: Vec<(String, String)> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => cfg = Config::quick(),
            "--full" => cfg = Config::full(),
            "--chunking" | "--contenders" | "--rounds" | "--w1-files" | "--w2-mib"
            | "--no-w2-1file" | "--w8-packages" => {
                let v = if a == "--no-w2-1file" {
                    String::new()
                } else {
                    match it.next() {
                        Some(v) => v.clone(),
                        None => {
                            eprintln!("{a} needs a value (try --help)");
                            std::process::exit(2);
                        }
                    }
                };
                overrides.push((a.clone(), v));
            }
            "--only" => {
                only = it
                    .next()
                    .map(|s| s.split(',').map(str::to_string).collect())
            }
            "--json" => out = it.next().map(PathBuf::from),
            "--w5-files" => {
                if let Some(n) = it.next().and_then(|s| s.parse().ok()) {
                    cfg.w5_files = n;
                }
            }
            "-h" | "--help" => {
                println!(
                    "usage: relstore-compare [--quick|--full] [--only W1,W2,W5,W6,W8] [--json PATH] [--w5-files N]\n\
                     \x20                       [--chunking MIN/AVG/MAX,...] [--contenders NAME,...] [--rounds N]\n\
                     \x20                       [--w1-files N] [--w2-mib N] [--no-w2-1file] [--w8-packages PKG,...]\n\
                     W1 also runs W3 and W4 (same stores); W5 also runs W7.\n\
                     --chunking   chunking grid, KiB (e.g. 4/16/64,1/4/16): W1, W2 and W2-1file run every\n\
                     \x20            relstore contender and ingest limit once per entry (named NAME@MIN/AVG/MAX);\n\
                     \x20            W8 uploads every package into one store per entry and round. The first\n\
                     \x20            entry is the baseline of the chunking table.\n\
                     --contenders W1/W2 contenders to run (base names), e.g. relstore-immediate,ingest-2core\n\
                     --rounds     rounds of W1, W2 and W8 (contenders rotate round by round)\n\
                     --w2-mib     size of each of W2's four files\n\
                     relstore-compare --sled-records [N]: sled's cost per record by how it is written\n\
                     \x20            (N records per mode, default 262144; docs/benchmarks.md, W2)"
                );
                return;
            }
            other => {
                eprintln!("unknown argument {other} (try --help)");
                std::process::exit(2);
            }
        }
    }
    for (k, v) in overrides {
        let num = |v: &str| -> u64 {
            v.parse().unwrap_or_else(|_| {
                eprintln!("{k}: not a number: {v}");
                std::process::exit(2);
            })
        };
        match k.as_str() {
            "--chunking" => {
                cfg.chunking = v
                    .split(',')
                    .map(|p| {
                        peers::parse_chunking(p).unwrap_or_else(|e| {
                            eprintln!("--chunking: {e}");
                            std::process::exit(2);
                        })
                    })
                    .collect();
            }
            "--contenders" => cfg.contenders = Some(v.split(',').map(str::to_string).collect()),
            "--rounds" => {
                let n = num(&v) as u32;
                (cfg.small_rounds, cfg.w2_rounds, cfg.w8_rounds) = (n, n, n);
            }
            "--w1-files" => cfg.w1_files = num(&v) as usize,
            "--w2-mib" => cfg.w2_file_bytes = num(&v) << 20,
            "--no-w2-1file" => cfg.one_gib_file = false,
            "--w8-packages" => {
                let known = ["echarts", "pdfjs-dist", "@angular/core"];
                cfg.w8_packages = Some(
                    v.split(',')
                        .map(|p| {
                            known.iter().copied().find(|k| *k == p).unwrap_or_else(|| {
                                eprintln!("--w8-packages: {p} is not one of {known:?}");
                                std::process::exit(2);
                            })
                        })
                        .collect(),
                );
            }
            _ => {}
        }
    }
    let want = |w: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == w));
    let root = workspace_root().join("target/bench-data");
    let run_dir = root.join(format!("run-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&run_dir);
    let out = out.unwrap_or_else(|| {
        workspace_root().join(format!("target/bench-results/compare-{}.json", cfg.mode))
    });
    let started = Instant::now();
    let mut h = Harness {
        run_dir: run_dir.clone(),
        measures: Vec::new(),
        notes: Vec::new(),
    };
    stamp();
    eprintln!(
        "relstore-compare: {} mode, data in {}",
        cfg.mode,
        run_dir.display()
    );
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    h.warm_up();
    if want("W1") {
        h.small(&cfg);
    }
    if want("W2") {
        h.large(&cfg);
    }
    if want("W6") {
        h.threads(&cfg);
    }
    if want("W5") {
        h.list(&cfg);
    }
    if want("W8") {
        h.npm(&cfg);
    }
    let _ = std::fs::remove_dir_all(&run_dir);
    let mut machine = machine();
    machine["loadavg_start"] = load_before.trim().into();
    machine["loadavg_end"] = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .into();
    let report = report::render(&cfg, &machine, &h.measures, &h.notes, started.elapsed());
    println!("{report}");
    let json = serde_json::json!({
        "config": cfg,
        "machine": machine,
        "elapsed_s": started.elapsed().as_secs_f64(),
        "measures": h.measures,
        "notes": h.notes,
        "markdown": report,
    });
    if let Some(d) = out.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    match std::fs::write(&out, serde_json::to_vec_pretty(&json).unwrap_or_default()) {
        Ok(()) => eprintln!("wrote {}", out.display()),
        Err(e) => eprintln!("could not write {}: {e}", out.display()),
    }
}

mod report;

struct Harness {
    run_dir: PathBuf,
    measures: Vec<Measure>,
    notes: Vec<String>,
}

impl Harness {
    fn job(&self, kind: &str, label: &str, contender: &str, round: u32) -> Job {
        Job {
            kind: kind.into(),
            label: label.into(),
            contender: contender.into(),
            dir: self.run_dir.join(format!(
                "{label}-r{round}-{}",
                contender.replace(['/', '@'], "-")
            )),
            round,
            n: 0,
            threads: 1,
            source: None,
            chunking: None,
        }
    }

    fn spawn(&mut self, job: &Job) {
        let exe = std::env::current_exe().expect("own executable");
        let spec = serde_json::to_string(job).expect("job serialises");
        eprintln!(
            "[{:6.1}s]  {} {} round {}",
            stamp(),
            job.label,
            job.contender,
            job.round
        );
        let child = Command::new(exe)
            .arg("--child")
            .arg(spec)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                self.notes
                    .push(format!("could not start {}: {e}", job.contender));
                return;
            }
        };
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(j) = line.strip_prefix("RESULT ") {
                    match serde_json::from_str::<Measure>(j) {
                        Ok(m) => self.measures.push(m),
                        Err(e) => eprintln!("bad result line: {e}"),
                    }
                }
            }
        }
        match child.wait() {
            Ok(s) if s.success() => {}
            Ok(s) => self.notes.push(format!(
                "{} {} round {} failed ({s})",
                job.label, job.contender, job.round
            )),
            Err(e) => self.notes.push(format!("{}: {e}", job.contender)),
        }
        // Write-back a contender left behind (cacache never syncs) must not slow the next one.
        let _ = Command::new("sync").status();
    }

    /// Deletes the stores of a finished workload, then lets the file system settle before the
    /// next timed run (ext4 is slow to create files right after mass deletes).
    fn settle(&self, prefix: &str) {
        if let Ok(rd) = std::fs::read_dir(&self.run_dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(prefix) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let _ = Command::new("sync").status();
        std::thread::sleep(Duration::from_secs(3));
    }

    fn warm_up(&mut self) {
        eprintln!("warming up");
        let mut job = self.job("small", "warmup", "relstore-immediate", 0);
        job.n = 300;
        for c in ["relstore-immediate", "sqlite", "sha1-mem"] {
            job.contender = c.into();
            job.dir = self.run_dir.join(format!("warmup-{c}"));
            let before = self.measures.len();
            self.spawn(&job);
            self.measures.truncate(before);
        }
        self.settle("warmup");
    }

    fn rotated<T: Clone>(list: &[T], round: u32) -> Vec<T> {
        let mut v = list.to_vec();
        if !v.is_empty() {
            let k = round as usize % v.len();
            v.rotate_left(k);
        }
        v
    }

    /// The contenders of a W1/W2 round: `list` filtered by `--contenders`, each relstore store
    /// and ingest limit once per `--chunking` entry.
    fn lineup(cfg: &Config, list: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for c in list {
            if cfg
                .contenders
                .as_ref()
                .is_some_and(|keep| !keep.iter().any(|k| k == c))
            {
                continue;
            }
            let varies = c.starts_with("relstore") || c.starts_with("ingest-");
            if varies && !cfg.chunking.is_empty() {
                for p in &cfg.chunking {
                    out.push(format!("{c}@{}", peers::chunking_label(p)));
                }
            } else {
                out.push(c.to_string());
            }
        }
        out
    }

    /// Records the load average at the start of a round (the machine is shared).
    fn note_load(&mut self, what: &str) {
        let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let l: Vec<&str> = l.split_whitespace().take(3).collect();
        self.notes.push(format!(
            "load average at the start of {what}: {}",
            l.join(" ")
        ));
    }

    fn small(&mut self, cfg: &Config) {
        eprintln!("W1/W3/W4: {} small files", cfg.w1_files);
        let mut all: Vec<&str> = peers::STORES.iter().chain(LIMITS).copied().collect();
        all.push("fsync-floor");
        let all = Self::lineup(cfg, &all);
        for r in 0..cfg.small_rounds {
            self.note_load(&format!("W1 round {r}"));
            for c in Self::rotated(&all, r) {
                let mut job = self.job("small", "W1", &c, r);
                job.n = cfg.w1_files;
                self.spawn(&job);
            }
        }
        self.settle("W1");
    }

    fn large(&mut self, cfg: &Config) {
        let src = self.run_dir.join("src-w2");
        let _ = std::fs::create_dir_all(&src);
        eprintln!(
            "W2: 4 files of {} MiB (writing sources)",
            cfg.w2_file_bytes >> 20
        );
        for i in 0..4u64 {
            if let Err(e) =
                data::write_source(&src.join(format!("f{i}")), cfg.w2_file_bytes, 100 + i)
            {
                self.notes
                    .push(format!("W2 skipped: cannot write sources: {e}"));
                return;
            }
        }
        let mut all: Vec<&str> = peers::STORES.iter().chain(LIMITS).copied().collect();
        all.extend(["sha1sum-cmd", "dd-fsync-cmd", "ingest+sled"]);
        let all = Self::lineup(cfg, &all);
        for r in 0..cfg.w2_rounds {
            self.note_load(&format!("W2 round {r}"));
            for c in Self::rotated(&all, r) {
                let mut job = self.job("large", "W2", &c, r);
                job.source = Some(src.clone());
                self.spawn(&job);
            }
        }
        self.settle("W2");
        let _ = std::fs::remove_dir_all(&src);
        if cfg.one_gib_file {
            let src = self.run_dir.join("src-1g");
            let _ = std::fs::create_dir_all(&src);
            eprintln!("W2-1file: one 1 GiB file (writing source)");
            if let Err(e) = data::write_source(&src.join("one"), 1 << 30, 7) {
                self.notes.push(format!("W2-1file skipped: {e}"));
                return;
            }
            let list = [
                "relstore-immediate",
                "relstore-batched",
                "sha1sum-cmd",
                "dd-fsync-cmd",
                "sha1-mem",
                "ingest-2core",
                "ingest+sled",
                "disk-floor",
            ];
            let list = Self::lineup(cfg, &list);
            for r in 0..1 {
                for c in Self::rotated(&list, r) {
                    let mut job = self.job("large", "W2-1file", &c, r);
                    job.source = Some(src.clone());
                    self.spawn(&job);
                }
            }
            self.settle("W2-1file");
            let _ = std::fs::remove_dir_all(&src);
        }
        let _ = Command::new("sync").status();
    }

    fn threads(&mut self, cfg: &Config) {
        eprintln!("W6: {} small files with 1, 2, 4, 8 threads", cfg.w6_files);
        for r in 0..cfg.w6_rounds {
            for t in [1usize, 2, 4, 8] {
                for c in Self::rotated(peers::STORES, r + t as u32) {
                    let mut job = self.job("threads", &format!("W6-t{t}"), c, r);
                    job.n = cfg.w6_files;
                    job.threads = t;
                    self.spawn(&job);
                }
            }
        }
        self.settle("W6");
    }

    fn list(&mut self, cfg: &Config) {
        eprintln!("W5/W7: a release of {} files", cfg.w5_files);
        for c in ["relstore", "sqlite"] {
            let mut job = self.job("list", "W5", c, 0);
            job.n = cfg.w5_files;
            self.spawn(&job);
        }
        self.settle("W5");
    }

    fn npm(&mut self, cfg: &Config) {
        let data = std::env::var_os("RELSTORE_NPM_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/npm-data"));
        let script = workspace_root().join("scripts/fetch-npm-releases.sh");
        let wanted: Vec<String> = match &cfg.w8_packages {
            Some(p) => p.iter().map(|s| s.to_string()).collect(),
            None => ["echarts", "pdfjs-dist", "@angular/core"]
                .map(String::from)
                .to_vec(),
        };
        let have = npm::packages(&data);
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|w| {
                !have
                    .iter()
                    .any(|(p, v)| p == *w && v.len() >= cfg.w8_versions)
            })
            .collect();
        if !missing.is_empty() {
            let npm_ok = Command::new("npm")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if npm_ok {
                eprintln!("W8: fetching {missing:?} with {}", script.display());
                let st = Command::new("bash")
                    .arg(&script)
                    .arg(cfg.w8_versions.to_string())
                    .args(missing.iter().map(|s| s.as_str()))
                    .env("RELSTORE_NPM_DATA", &data)
                    .status();
                if !st.is_ok_and(|s| s.success()) {
                    self.notes.push(format!(
                        "W8: fetching {missing:?} failed; using what is there"
                    ));
                }
            } else {
                self.notes.push(format!(
                    "W8: npm data for {missing:?} is missing and npm is not installed: run \
                     `scripts/fetch-npm-releases.sh {}` (needs npm) and rerun",
                    cfg.w8_versions
                ));
            }
        }
        // Only the wanted packages: a directory of their own for this run.
        let have = npm::packages(&data);
        if have.is_empty() {
            self.notes.push(format!(
                "W8 skipped: no npm data in {}; fetch it with `scripts/fetch-npm-releases.sh 10`",
                data.display()
            ));
            return;
        }
        let view = self.run_dir.join("npm-view");
        let _ = std::fs::create_dir_all(&view);
        let mut linked = 0;
        for (p, _) in &have {
            if wanted.contains(p) {
                let target = view.join(p);
                if let Some(parent) = target.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                if std::os::unix::fs::symlink(data.join(p), &target).is_ok() {
                    linked += 1;
                }
            }
        }
        if linked == 0 {
            self.notes
                .push("W8 skipped: none of the wanted packages is fetched".into());
            return;
        }
        eprintln!("W8: {linked} package(s), {} versions each", cfg.w8_versions);
        let mut job = self.job("npm", "W8", "relstore", 0);
        job.n = cfg.w8_versions;
        job.source = Some(view.clone());
        if cfg.chunking.is_empty() {
            self.spawn(&job);
            for p in cfg
                .w8_variants
                .iter()
                .filter(|p| **p != ChunkingParams::default())
            {
                job.chunking = Some(*p);
                job.dir = self
                    .run_dir
                    .join(format!("W8-{}", peers::chunking_label(p).replace('/', "-")));
                self.spawn(&job);
            }
        } else {
            // The grid, rotated round by round so no variant always runs first (or last).
            for r in 0..cfg.w8_rounds {
                self.note_load(&format!("W8 round {r}"));
                for p in Self::rotated(&cfg.chunking, r) {
                    job.round = r;
                    job.chunking = Some(p);
                    job.contender = format!("relstore@{}", peers::chunking_label(&p));
                    job.dir = self.run_dir.join(format!(
                        "W8-r{r}-{}",
                        peers::chunking_label(&p).replace('/', "-")
                    ));
                    self.spawn(&job);
                    // Each store is 0.4–0.6 GB: free the disk before the next one.
                    self.settle("W8-r");
                }
            }
        }
        self.settle("W8");
        let _ = std::fs::remove_dir_all(&view);
    }
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let sha_ni = flags.contains(" sha_ni");
    let avx512 = flags.contains(" avx512f");
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default();
    let cmd = |c: &str, a: &[&str]| {
        Command::new(c)
            .args(a)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let root = workspace_root();
    let disk = cmd("df", &["-hT", &root.to_string_lossy()]);
    let mut by = String::new();
    let _ = write!(
        by,
        "{}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    serde_json::json!({
        "nproc": by,
        "cpu": cpu,
        "sha_ni": sha_ni,
        "avx512": avx512,
        "memory": mem,
        "kernel": cmd("uname", &["-r"]),
        "disk": disk.lines().last().unwrap_or_default(),
    })
}

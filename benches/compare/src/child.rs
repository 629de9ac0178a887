//! One measurement run, in a child process of the harness so that each contender's peak memory
//! and file-system state are its own. The child prints `RESULT {json}` lines on stdout.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use relstore::{Durability, ListQuery, ReleaseScope, Store, StoreOptions};
use serde::{Deserialize, Serialize};
use sha1::Digest;

use crate::data::{self, Rng};
use crate::peers::{self, Rel, Sql, R};

/// What a child is asked to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    /// `small` (W1, W3, W4), `large` (W2), `threads` (W6), `list` (W5, W7), `npm` (W8).
    pub kind: String,
    /// Workload label used in results (for `large`: W2 or W2-1file).
    pub label: String,
    /// Contender or limit name.
    pub contender: String,
    /// A fresh directory for the contender's files.
    pub dir: PathBuf,
    /// Round number (for pairing contenders measured in the same round).
    pub round: u32,
    /// Number of files.
    pub n: usize,
    /// Writer threads.
    pub threads: usize,
    /// Input directory (W2 sources, npm data).
    pub source: Option<PathBuf>,
    /// W8: chunking parameters of the stores (none: relstore's default, and the computed sweep
    /// of other chunk sizes runs too).
    #[serde(default)]
    pub chunking: Option<relstore::ChunkingParams>,
}

/// One measurement.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Measure {
    /// Workload (W1…W8).
    pub workload: String,
    /// Contender or limit.
    pub contender: String,
    /// Round.
    pub round: u32,
    /// Operations done.
    pub ops: u64,
    /// Logical bytes processed.
    pub bytes: u64,
    /// Wall-clock seconds of the timed part.
    pub secs: f64,
    /// Median operation latency, µs.
    pub p50_us: Option<f64>,
    /// 99th percentile operation latency, µs.
    pub p99_us: Option<f64>,
    /// Peak resident set of the child during this phase (VmHWM), KiB.
    pub peak_rss_kib: Option<u64>,
    /// Bytes on disk (allocated blocks) after the phase.
    pub disk_bytes: Option<u64>,
    /// Further figures.
    pub extra: BTreeMap<String, f64>,
}

impl Measure {
    fn new(workload: &str, job: &Job) -> Measure {
        Measure {
            workload: workload.into(),
            contender: job.contender.clone(),
            round: job.round,
            ..Default::default()
        }
    }
    fn lat(mut self, mut l: Vec<f64>) -> Self {
        if !l.is_empty() {
            l.sort_by(f64::total_cmp);
            let at = |q: f64| l[((l.len() as f64 - 1.0) * q).round() as usize];
            self.p50_us = Some(at(0.5));
            self.p99_us = Some(at(0.99));
        }
        self
    }
    /// Prints the measurement for the parent, with the phase's peak RSS.
    pub fn emit(mut self) {
        self.peak_rss_kib = vm_hwm_kib();
        println!(
            "RESULT {}",
            serde_json::to_string(&self).expect("serialisable")
        );
    }
}

/// Resets the peak-RSS counter of this process (Linux `clear_refs` 5).
pub fn reset_hwm() {
    let _ = fs::write("/proc/self/clear_refs", "5");
}

/// VmHWM of this process, KiB.
pub fn vm_hwm_kib() -> Option<u64> {
    let s = fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Allocated bytes of everything under `dir`.
pub fn du(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            }
            total += m.blocks() * 512;
        }
    }
    total
}

fn us(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

/// Runs `job`, printing its results.
pub fn run(job: &Job) -> R<()> {
    match job.kind.as_str() {
        "small" => small(job),
        "large" => large(job),
        "threads" => threads(job),
        "list" => list(job),
        "npm" => crate::npm::run(job),
        other => Err(format!("unknown job kind {other}").into()),
    }
}

fn small(job: &Job) -> R<()> {
    let files = data::small_set(job.n, 1);
    let logical: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    let n = files.len() as u64;
    let c = job.contender.as_str();
    if peers::is_store(c) {
        let peer = peers::open(c, &job.dir)?;
        // W1: every file new.
        reset_hwm();
        let mut lat = Vec::with_capacity(files.len());
        let t = Instant::now();
        for (name, d) in &files {
            let o = Instant::now();
            peer.put(name, d)?;
            lat.push(us(o));
        }
        peer.finish()?;
        let secs = t.elapsed().as_secs_f64();
        peer.settle()?;
        let disk1 = du(&job.dir);
        let mut m = Measure::new("W1", job).lat(lat);
        (m.ops, m.bytes, m.secs, m.disk_bytes) = (n, logical, secs, Some(disk1));
        m.emit();
        // W3: the same contents under new names: all duplicates.
        reset_hwm();
        let mut lat = Vec::with_capacity(files.len());
        let t = Instant::now();
        for (name, d) in &files {
            let o = Instant::now();
            peer.put(&name.replace("~/static/", "~/again/"), d)?;
            lat.push(us(o));
        }
        peer.finish()?;
        let secs = t.elapsed().as_secs_f64();
        peer.settle()?;
        let disk2 = du(&job.dir);
        let mut m = Measure::new("W3", job).lat(lat);
        (m.ops, m.bytes, m.secs, m.disk_bytes) = (n, logical, secs, Some(disk2));
        m.extra.insert(
            "added_disk_bytes".into(),
            disk2.saturating_sub(disk1) as f64,
        );
        m.emit();
        // W4: random reads by key, each file once in a shuffled order, checked.
        let mut order: Vec<usize> = (0..files.len()).collect();
        let mut rng = Rng::new(42);
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        reset_hwm();
        let mut lat = Vec::with_capacity(files.len());
        let t = Instant::now();
        for &i in &order {
            let (name, d) = &files[i];
            let o = Instant::now();
            let got = peer.get(name)?;
            lat.push(us(o));
            if got.len() != d.len() || got[..16.min(d.len())] != d[..16.min(d.len())] {
                return Err(format!("{c}: wrong content read back for {name}").into());
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let mut m = Measure::new("W4", job).lat(lat);
        (m.ops, m.bytes, m.secs) = (n, logical, secs);
        m.emit();
        return Ok(());
    }
    // Limits: the same bytes, in memory; ingest limits take an `@MIN/AVG/MAX` variant too.
    let (c, p) = peers::split_variant(c)?;
    let p = p.unwrap_or_default();
    reset_hwm();
    let mut lat = Vec::new();
    let t = Instant::now();
    match c {
        "sha1-mem" => {
            for (_, d) in &files {
                let o = Instant::now();
                std::hint::black_box(sha1::Sha1::digest(d));
                lat.push(us(o));
            }
        }
        "ingest-1core" => {
            for (_, d) in &files {
                let o = Instant::now();
                data::ingest_one_core(d, p);
                lat.push(us(o));
            }
        }
        "ingest-2core" => {
            // Small files never reach relstore's second hashing thread: two cores means two
            // uploads at once.
            std::thread::scope(|s| {
                for part in 0..2 {
                    let files = &files;
                    s.spawn(move || {
                        for (_, d) in files.iter().skip(part).step_by(2) {
                            data::ingest_relstore(d, p);
                        }
                    });
                }
            });
        }
        "disk-floor" => {
            fs::create_dir_all(&job.dir)?;
            let mut f = File::create(job.dir.join("floor"))?;
            for (_, d) in &files {
                f.write_all(d)?;
            }
            f.sync_data()?;
        }
        "fsync-floor" => {
            // The least a durable small write costs: append it to one file and fdatasync.
            fs::create_dir_all(&job.dir)?;
            let mut f = File::create(job.dir.join("floor"))?;
            for (_, d) in &files {
                let o = Instant::now();
                f.write_all(d)?;
                f.sync_data()?;
                lat.push(us(o));
            }
        }
        other => return Err(format!("unknown contender {other}").into()),
    }
    let secs = t.elapsed().as_secs_f64();
    for w in ["W1", "W3"] {
        if w == "W3" && (c == "disk-floor" || c == "fsync-floor") {
            continue;
        }
        let mut m = Measure::new(w, job).lat(lat.clone());
        (m.ops, m.bytes, m.secs) = (n, logical, secs);
        m.emit();
    }
    Ok(())
}

fn sources(job: &Job) -> R<Vec<PathBuf>> {
    let dir = job
        .source
        .as_ref()
        .ok_or("large needs a source directory")?;
    let mut v: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

fn large(job: &Job) -> R<()> {
    let srcs = sources(job)?;
    let logical: u64 = srcs
        .iter()
        .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let c = job.contender.as_str();
    let mut m = Measure::new(&job.label, job);
    m.ops = srcs.len() as u64;
    m.bytes = logical;
    if peers::is_store(c) {
        let peer = peers::open(c, &job.dir)?;
        reset_hwm();
        let mut lat = Vec::new();
        let t = Instant::now();
        for (i, p) in srcs.iter().enumerate() {
            let o = Instant::now();
            let mut f = File::open(p)?;
            peer.put_stream(
                &format!("~/maps/big-{i}.js.map"),
                &mut f,
                fs::metadata(p)?.len(),
            )?;
            lat.push(us(o));
        }
        peer.finish()?;
        m.secs = t.elapsed().as_secs_f64();
        peer.settle()?;
        m.disk_bytes = Some(du(&job.dir));
        m = m.lat(lat);
        m.emit();
        return Ok(());
    }
    if c == "sha1sum-cmd" || c == "dd-fsync-cmd" {
        fs::create_dir_all(&job.dir)?;
        let t = Instant::now();
        for (i, p) in srcs.iter().enumerate() {
            let st = if c == "sha1sum-cmd" {
                std::process::Command::new("sha1sum")
                    .arg(p)
                    .stdout(std::process::Stdio::null())
                    .status()?
            } else {
                std::process::Command::new("dd")
                    .arg(format!("if={}", p.display()))
                    .arg(format!("of={}", job.dir.join(format!("out{i}")).display()))
                    .args(["bs=1M", "conv=fsync", "status=none"])
                    .status()?
            };
            if !st.success() {
                return Err(format!("{c} failed: {st}").into());
            }
        }
        m.secs = t.elapsed().as_secs_f64();
        m.emit();
        return Ok(());
    }
    let (c, p) = peers::split_variant(c)?;
    let p = p.unwrap_or_default();
    let bufs: Vec<Vec<u8>> = srcs.iter().map(fs::read).collect::<Result<_, _>>()?;
    reset_hwm();
    let t = Instant::now();
    match c {
        "sha1-mem" => {
            for b in &bufs {
                std::hint::black_box(sha1::Sha1::digest(b));
            }
        }
        "ingest-1core" => {
            for b in &bufs {
                data::ingest_one_core(b, p);
            }
        }
        "ingest-2core" => {
            for b in &bufs {
                data::ingest_relstore(b, p);
            }
        }
        "ingest+sled" => {
            data::ingest_with_sled_records(&bufs, p, &job.dir)?;
        }
        "disk-floor" => {
            fs::create_dir_all(&job.dir)?;
            let mut f = File::create(job.dir.join("floor"))?;
            for b in &bufs {
                f.write_all(b)?;
            }
            f.sync_data()?;
        }
        other => return Err(format!("unknown contender {other}").into()),
    }
    m.secs = t.elapsed().as_secs_f64();
    m.emit();
    Ok(())
}

fn threads(job: &Job) -> R<()> {
    let files = data::small_set(job.n, 1);
    let logical: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    let peer = peers::open(&job.contender, &job.dir)?;
    let peer = &*peer;
    let nt = job.threads.max(1);
    reset_hwm();
    let t = Instant::now();
    let lats: Vec<R<Vec<f64>>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..nt)
            .map(|k| {
                let files = &files;
                s.spawn(move || -> R<Vec<f64>> {
                    let mut lat = Vec::new();
                    for (name, d) in files.iter().skip(k).step_by(nt) {
                        let o = Instant::now();
                        peer.put(name, d)?;
                        lat.push(us(o));
                    }
                    Ok(lat)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("writer panicked".into())))
            .collect()
    });
    peer.finish()?;
    let secs = t.elapsed().as_secs_f64();
    peer.settle()?;
    let mut all = Vec::new();
    for l in lats {
        all.extend(l?);
    }
    let mut m = Measure::new(&format!("W6-t{nt}"), job).lat(all);
    (m.ops, m.bytes, m.secs) = (files.len() as u64, logical, secs);
    m.emit();
    Ok(())
}

fn list_name(i: usize) -> String {
    format!("~/static/js/f{i:08}.js")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn list(job: &Job) -> R<()> {
    const REPS: usize = 50;
    let n = job.n;
    let c = job.contender.as_str();
    let mut w5 = Measure::new("W5", job);
    let mut w7 = Measure::new("W7", job);
    w5.ops = n as u64;
    w7.ops = n as u64;
    let last_after = list_name(n - 101);
    let (first, last);
    if c == "relstore" {
        let open = || {
            Store::open(StoreOptions::new(&job.dir).durability(Durability::Batched {
                interval: std::time::Duration::from_secs(1),
            }))
        };
        let scope = ReleaseScope::project("bench", "web", "1.0.0");
        {
            let rel = Rel::open(
                &job.dir,
                Durability::Batched {
                    interval: std::time::Duration::from_secs(1),
                },
            )?;
            let t = Instant::now();
            let errs: Vec<R<()>> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..2)
                    .map(|k| {
                        let rel = &rel;
                        s.spawn(move || -> R<()> {
                            for i in (k..n).step_by(2) {
                                let body = format!("content of file {i}");
                                let key = rel.scope.file(&list_name(i), None);
                                rel.store.upload(&key, &[], &mut body.as_bytes(), false)?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err("panic".into())))
                    .collect()
            });
            for e in errs {
                e?;
            }
            rel.store.sync()?;
            w5.extra.insert(
                "populate_files_per_s".into(),
                n as f64 / t.elapsed().as_secs_f64(),
            );
            let page = |cursor: Option<String>| -> R<(f64, usize, bool)> {
                let o = Instant::now();
                let p = rel.store.list_files(
                    &scope,
                    &ListQuery {
                        cursor,
                        limit: 100,
                        ..Default::default()
                    },
                )?;
                Ok((us(o), p.items.len(), p.next.is_some()))
            };
            let cursor = relstore_testkit::hex(&scope.file(&last_after, None).encode());
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for _ in 0..REPS {
                let (t1, n1, more1) = page(None)?;
                let (t2, n2, more2) = page(Some(cursor.clone()))?;
                if n1 != 100 || !more1 || n2 != 100 || more2 {
                    return Err("relstore: wrong page shape".into());
                }
                a.push(t1);
                b.push(t2);
            }
            (first, last) = (median(a), median(b));
            w5.disk_bytes = Some(du(&job.dir));
        }
        let mut opens = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let store = open()?;
            let p = store.list_files(
                &scope,
                &ListQuery {
                    limit: 100,
                    ..Default::default()
                },
            )?;
            opens.push(t.elapsed().as_secs_f64());
            if p.items.len() != 100 {
                return Err("relstore: reopened store lost files".into());
            }
        }
        w7.secs = median(opens);
    } else if c == "sqlite" {
        {
            let sql = Sql::open(&job.dir)?;
            let t = Instant::now();
            sql.insert_rows((0..n).map(|i| {
                let sha: [u8; 20] = sha1::Sha1::digest(format!("content of file {i}")).into();
                (list_name(i), sha, 20)
            }))?;
            w5.extra.insert(
                "populate_files_per_s".into(),
                n as f64 / t.elapsed().as_secs_f64(),
            );
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for _ in 0..REPS {
                let o = Instant::now();
                let p1 = sql.page("", 101)?;
                a.push(us(o));
                let o = Instant::now();
                let p2 = sql.page(&last_after, 101)?;
                b.push(us(o));
                if p1.len() != 101 || p2.len() != 100 {
                    return Err("sqlite: wrong page shape".into());
                }
            }
            (first, last) = (median(a), median(b));
            w5.disk_bytes = Some(du(&job.dir));
        }
        let mut opens = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let sql = Sql::open(&job.dir)?;
            let p = sql.page("", 100)?;
            opens.push(t.elapsed().as_secs_f64());
            if p.len() != 100 {
                return Err("sqlite: reopened database lost rows".into());
            }
        }
        w7.secs = median(opens);
    } else {
        return Err(format!("list: unknown contender {c}").into());
    }
    w5.p50_us = Some(first);
    w5.extra.insert("first_page_us".into(), first);
    w5.extra.insert("last_page_us".into(), last);
    w5.extra.insert("last_over_first".into(), last / first);
    w5.secs = (first + last) / 1e6;
    w5.emit();
    w7.emit();
    Ok(())
}

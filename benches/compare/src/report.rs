//! The markdown report: one table per workload (medians over rounds) and the targets of issue 6
//! with ratios taken pair by pair within a round.

use std::fmt::Write as _;
use std::time::Duration;

use crate::child::Measure;
use crate::Config;

struct View<'a>(&'a [Measure]);

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn mbps(m: &Measure) -> Option<f64> {
    (m.secs > 0.0).then(|| m.bytes as f64 / m.secs / 1e6)
}

fn ops(m: &Measure) -> Option<f64> {
    (m.secs > 0.0).then(|| m.ops as f64 / m.secs)
}

impl View<'_> {
    fn of<'b>(&'b self, w: &'b str, c: &'b str) -> impl Iterator<Item = &'b Measure> + 'b {
        self.0
            .iter()
            .filter(move |m| m.workload == w && m.contender == c)
    }
    fn med(&self, w: &str, c: &str, f: impl Fn(&Measure) -> Option<f64>) -> Option<f64> {
        median(self.of(w, c).filter_map(f).collect())
    }
    fn max(&self, w: &str, c: &str, f: impl Fn(&Measure) -> Option<f64>) -> Option<f64> {
        self.of(w, c).filter_map(f).reduce(f64::max)
    }
    /// Median over rounds of `f(a) / f(b)`, both measured in the same round.
    fn ratio(&self, w: &str, a: &str, b: &str, f: impl Fn(&Measure) -> Option<f64>) -> Option<f64> {
        let mut v = Vec::new();
        for ma in self.of(w, a) {
            if let Some(mb) = self.of(w, b).find(|m| m.round == ma.round) {
                if let (Some(x), Some(y)) = (f(ma), f(mb)) {
                    if y > 0.0 {
                        v.push(x / y);
                    }
                }
            }
        }
        median(v)
    }
    fn contenders(&self, w: &str) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for m in self.0.iter().filter(|m| m.workload == w) {
            if !v.contains(&m.contender) {
                v.push(m.contender.clone());
            }
        }
        let rank = |c: &str| {
            [
                "relstore-immediate",
                "relstore-batched",
                "cacache",
                "sqlite",
                "plain-files",
                "sha1-mem",
                "sha1sum-cmd",
                "ingest-1core",
                "ingest-2core",
                "disk-floor",
                "dd-fsync-cmd",
            ]
            .iter()
            .position(|x| *x == c.split('@').next().unwrap_or(c))
            .unwrap_or(99)
        };
        v.sort_by_key(|c| rank(c));
        v
    }
    fn rounds(&self, w: &str, c: &str) -> usize {
        self.of(w, c).count()
    }
}

fn f(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "–".into(),
    }
}

fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| k as f64 / 1024.0)
}

fn disk_ratio(m: &Measure) -> Option<f64> {
    m.disk_bytes.map(|d| d as f64 / m.bytes.max(1) as f64)
}

/// `MIN/AVG/MAX` KiB of a W8 measurement.
fn variant_name(m: &Measure) -> String {
    let k = |x: &str, d: f64| m.extra.get(x).copied().unwrap_or(d);
    let avg = k("chunk_avg_kib", 16.0);
    format!(
        "{:.0}/{:.0}/{:.0}",
        k("chunk_min_kib", avg / 4.0),
        avg,
        k("chunk_max_kib", avg * 4.0)
    )
}

/// The measured W8 stores side by side, one row per chunking variant (KiB min/avg/max): bytes
/// kept per package and overall, the index's part, the chunk count and the upload rate, with
/// the rate's ratio to the baseline (the first `--chunking` entry, else the default run) taken
/// round by round.
fn w8_variants(s: &mut String, cfg: &Config, all: &[&Measure]) {
    if all.is_empty() {
        return;
    }
    let mut names: Vec<String> = Vec::new();
    for m in all {
        let n = variant_name(m);
        if !names.contains(&n) {
            names.push(n);
        }
    }
    if names.len() < 2 && cfg.chunking.is_empty() {
        return;
    }
    if let Some(first) = cfg.chunking.first() {
        let b = crate::peers::chunking_label(first);
        names.retain(|n| *n != b);
        names.insert(0, b);
    }
    let mut pkgs: Vec<String> = Vec::new();
    for m in all {
        if !pkgs.contains(&m.contender) {
            pkgs.push(m.contender.clone());
        }
    }
    pkgs.sort();
    let _ = writeln!(
        s,
        "\nMeasured stores by chunking parameters (KiB min/avg/max; the first row is the baseline). \
         On disk ÷ logical as the store reports it (segments + index); \"du\" counts allocated blocks \
         after close; \"index\" is the index directory's blocks; upload MB/s over all packages, \
         median over rounds, and its ratio to the baseline's in the same round (median, min–max):\n\n\
         | chunking | n | {} | all | all (du) | index ÷ logical | index ÷ du | chunks (k) | upload MB/s | ÷ baseline | range |\n\
         |---|--:|{}--:|--:|--:|--:|--:|--:|--:|--:|",
        pkgs.join(" | "),
        "--:|".repeat(pkgs.len())
    );
    // Per variant and round: (disk, du, index du, logical, secs, chunks).
    type Tot = (f64, f64, f64, f64, f64, f64);
    let per_round = |name: &str| -> std::collections::BTreeMap<u32, Tot> {
        let mut by = std::collections::BTreeMap::<u32, Tot>::new();
        for m in all.iter().filter(|m| variant_name(m) == name) {
            let e = |k: &str| m.extra.get(k).copied().unwrap_or(0.0);
            let t = by.entry(m.round).or_default();
            t.0 += e("relstore_disk_bytes");
            t.1 += e("index_du_bytes") + e("segments_du_bytes");
            t.2 += e("index_du_bytes");
            t.3 += m.bytes as f64;
            t.4 += m.secs;
            t.5 += e("relstore_chunks");
        }
        by
    };
    let base = per_round(&names[0]);
    for name in &names {
        let rounds = per_round(name);
        let mut line = format!("| {name} | {} |", rounds.len());
        for p in &pkgs {
            let r = median(
                all.iter()
                    .filter(|m| variant_name(m) == *name && m.contender == *p)
                    .filter_map(|m| {
                        m.extra
                            .get("relstore_disk_bytes")
                            .map(|d| d / m.bytes.max(1) as f64)
                    })
                    .collect(),
            );
            let _ = write!(line, " {} |", f(r, 3));
        }
        let col = |g: &dyn Fn(&Tot) -> Option<f64>| median(rounds.values().filter_map(g).collect());
        let du_ok = |t: &Tot| t.1 > 0.0;
        let ratios: Vec<f64> = rounds
            .iter()
            .filter_map(|(r, t)| {
                let b = base.get(r)?;
                (t.4 > 0.0 && b.4 > 0.0).then(|| (t.3 / t.4) / (b.3 / b.4))
            })
            .collect();
        let lo = ratios.iter().copied().reduce(f64::min);
        let hi = ratios.iter().copied().reduce(f64::max);
        let _ = writeln!(
            s,
            "{line} {} | {} | {} | {} | {:.1} | {} | {} | {}–{} |",
            f(col(&|t| Some(t.0 / t.3)), 3),
            f(col(&|t| du_ok(t).then(|| t.1 / t.3)), 3),
            f(col(&|t| du_ok(t).then(|| t.2 / t.3)), 3),
            f(col(&|t| du_ok(t).then(|| t.2 / t.1)), 3),
            col(&|t| Some(t.5)).unwrap_or(0.0) / 1e3,
            f(col(&|t| (t.4 > 0.0).then(|| t.3 / t.4 / 1e6)), 0),
            f(median(ratios), 2),
            f(lo, 2),
            f(hi, 2),
        );
    }
}

/// W1/W3/W4/W2 of the relstore contenders and ingest limits per `--chunking` entry, with each
/// variant's rate over the baseline's (the first entry) in the same round.
fn chunking_table(s: &mut String, cfg: &Config, v: &View) {
    let Some(first) = cfg.chunking.first() else {
        return;
    };
    let base = crate::peers::chunking_label(first);
    let _ = writeln!(
        s,
        "### relstore by chunking parameters (KiB min/avg/max), W1–W4 and W2\n\n\
         Rates are medians over rounds; \"÷ {base}\" is the ratio to the same contender with the baseline \
         parameters in the same round (median, min–max over rounds).\n\n\
         | workload | contender | chunking | n | MB/s | files/s | ÷ {base} | range | p50 ms | p99 ms | disk / logical |\n\
         |---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    for w in ["W1", "W3", "W4", "W2", "W2-1file"] {
        let rate = if matches!(w, "W1" | "W3" | "W4") {
            ops
        } else {
            mbps
        };
        let mut bases: Vec<String> = Vec::new();
        for c in v.contenders(w) {
            if let Some((b, _)) = c.split_once('@') {
                if !bases.iter().any(|x| x == b) {
                    bases.push(b.to_string());
                }
            }
        }
        for b in bases {
            let bc = format!("{b}@{base}");
            for p in &cfg.chunking {
                let label = crate::peers::chunking_label(p);
                let c = format!("{b}@{label}");
                if v.rounds(w, &c) == 0 {
                    continue;
                }
                let mut rs = Vec::new();
                for ma in v.of(w, &c) {
                    if let Some(mb) = v.of(w, &bc).find(|m| m.round == ma.round) {
                        if let (Some(x), Some(y)) = (rate(ma), rate(mb)) {
                            rs.push(x / y);
                        }
                    }
                }
                let lo = rs.iter().copied().reduce(f64::min);
                let hi = rs.iter().copied().reduce(f64::max);
                let _ = writeln!(
                    s,
                    "| {w} | {b} | {label} | {} | {} | {} | {} | {}–{} | {} | {} | {} |",
                    v.rounds(w, &c),
                    f(v.med(w, &c, mbps), 0),
                    f(v.med(w, &c, ops), 0),
                    f(median(rs), 2),
                    f(lo, 2),
                    f(hi, 2),
                    f(v.med(w, &c, |m| m.p50_us.map(|x| x / 1e3)), 3),
                    f(v.med(w, &c, |m| m.p99_us.map(|x| x / 1e3)), 3),
                    f(v.med(w, &c, disk_ratio), 3),
                );
            }
        }
    }
    s.push('\n');
}

/// Renders the whole report.
pub fn render(
    cfg: &Config,
    machine: &serde_json::Value,
    ms: &[Measure],
    notes: &[String],
    elapsed: Duration,
) -> String {
    let v = View(ms);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## relstore-compare, {} mode ({:.0} s)\n\nMachine: {} × {} (SHA-NI {}, AVX-512 {}), {}, disk {}, kernel {}.\n\
         Load average (1, 5, 15 min) at the start: {}; at the end: {} (other work on the machine).\n\
         MB = 10^6 bytes. Medians over rounds; `n` is the number of rounds. Latencies are per operation.\n",
        cfg.mode,
        elapsed.as_secs_f64(),
        machine["nproc"].as_str().unwrap_or("?"),
        machine["cpu"].as_str().unwrap_or("?"),
        machine["sha_ni"],
        machine["avx512"],
        machine["memory"].as_str().unwrap_or("?").split_whitespace().collect::<Vec<_>>().join(" "),
        machine["disk"].as_str().unwrap_or("?").split_whitespace().collect::<Vec<_>>().join(" "),
        machine["kernel"].as_str().unwrap_or("?"),
        machine["loadavg_start"].as_str().unwrap_or("?").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        machine["loadavg_end"].as_str().unwrap_or("?").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    );

    for (w, title, floor, col) in [
        (
            "W1",
            format!("W1: {} small files (1–200 KiB), all new", cfg.w1_files),
            "fsync-floor",
            "÷ fsync-floor (files/s)",
        ),
        (
            "W3",
            "W3: W1's contents again under new names (all duplicates)".into(),
            "ingest-1core",
            "÷ ingest-1core (MB/s)",
        ),
    ] {
        if v.contenders(w).is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "### {title}\n\n| contender | n | MB/s | files/s | {col} | p50 ms | p99 ms | peak RSS MiB | disk / logical |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|"
        );
        for c in v.contenders(w) {
            let ratio = if w == "W1" {
                v.ratio(w, &c, floor, ops)
            } else {
                v.ratio(w, &c, floor, mbps)
            };
            let _ = writeln!(
                s,
                "| {c} | {} | {} | {} | {} | {} | {} | {} | {} |",
                v.rounds(w, &c),
                f(v.med(w, &c, mbps), 0),
                f(v.med(w, &c, ops), 0),
                f(ratio, 2),
                f(v.med(w, &c, |m| m.p50_us.map(|x| x / 1e3)), 3),
                f(v.med(w, &c, |m| m.p99_us.map(|x| x / 1e3)), 3),
                f(v.max(w, &c, |m| mib(m.peak_rss_kib)), 0),
                if w == "W3" {
                    f(
                        v.med(w, &c, |m| {
                            m.extra
                                .get("added_disk_bytes")
                                .map(|a| a / m.bytes.max(1) as f64)
                        }),
                        3,
                    ) + " (added)"
                } else {
                    f(v.med(w, &c, disk_ratio), 3)
                },
            );
        }
        s.push('\n');
    }
    if !v.contenders("W4").is_empty() {
        let _ = writeln!(
            s,
            "### W4: random reads by key of W1's files (each once, shuffled, page cache warm)\n\n| contender | n | reads/s | MB/s | p50 ms | p99 ms | peak RSS MiB |\n|---|--:|--:|--:|--:|--:|--:|"
        );
        for c in v.contenders("W4") {
            let _ = writeln!(
                s,
                "| {c} | {} | {} | {} | {} | {} | {} |",
                v.rounds("W4", &c),
                f(v.med("W4", &c, ops), 0),
                f(v.med("W4", &c, mbps), 0),
                f(v.med("W4", &c, |m| m.p50_us.map(|x| x / 1e3)), 3),
                f(v.med("W4", &c, |m| m.p99_us.map(|x| x / 1e3)), 3),
                f(v.max("W4", &c, |m| mib(m.peak_rss_kib)), 0),
            );
        }
        s.push('\n');
    }
    for (w, title) in [
        (
            "W2",
            format!("W2: {} MiB in four files", 4 * (cfg.w2_file_bytes >> 20)),
        ),
        (
            "W2-1file",
            "W2-1file: one 1 GiB file (issue 2, item 9)".into(),
        ),
    ] {
        if v.contenders(w).is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "### {title}\n\n| contender | n | MB/s | ÷ ingest-2core | ÷ ingest+sled | ÷ disk-floor | ÷ sha1sum-cmd | ÷ dd-fsync-cmd | peak RSS MiB | disk / logical |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        );
        for c in v.contenders(w) {
            let _ = writeln!(
                s,
                "| {c} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                v.rounds(w, &c),
                f(v.med(w, &c, mbps), 0),
                f(v.ratio(w, &c, "ingest-2core", mbps), 2),
                f(v.ratio(w, &c, "ingest+sled", mbps), 2),
                f(v.ratio(w, &c, "disk-floor", mbps), 2),
                f(v.ratio(w, &c, "sha1sum-cmd", mbps), 2),
                f(v.ratio(w, &c, "dd-fsync-cmd", mbps), 2),
                f(v.max(w, &c, |m| mib(m.peak_rss_kib)), 0),
                f(v.med(w, &c, disk_ratio), 3),
            );
        }
        s.push('\n');
    }
    chunking_table(&mut s, cfg, &v);
    let w6: Vec<String> = v.contenders("W6-t1");
    if !w6.is_empty() {
        let _ = writeln!(
            s,
            "### W6: {} small files with 1, 2, 4, 8 uploading threads (files/s; p99 ms in brackets)\n\n| contender | 1 | 2 | 4 | 8 |\n|---|--:|--:|--:|--:|",
            cfg.w6_files
        );
        for c in w6 {
            let mut row = format!("| {c} |");
            for t in [1, 2, 4, 8] {
                let w = format!("W6-t{t}");
                let _ = write!(
                    row,
                    " {} ({}) |",
                    f(v.med(&w, &c, ops), 0),
                    f(v.med(&w, &c, |m| m.p99_us.map(|x| x / 1e3)), 1)
                );
            }
            let _ = writeln!(s, "{row}");
        }
        s.push('\n');
    }
    if !v.contenders("W5").is_empty() {
        let _ = writeln!(
            s,
            "### W5/W7: one page of 100 at the start and at the end of a release of {} files; reopen\n\n| contender | first page µs | last page µs | last ÷ first | populate files/s | W7 reopen + first page ms | disk MB |\n|---|--:|--:|--:|--:|--:|--:|",
            cfg.w5_files
        );
        for c in v.contenders("W5") {
            let x = |k: &str| v.med("W5", &c, |m| m.extra.get(k).copied());
            let _ = writeln!(
                s,
                "| {c} | {} | {} | {} | {} | {} | {} |",
                f(x("first_page_us"), 0),
                f(x("last_page_us"), 0),
                f(x("last_over_first"), 2),
                f(x("populate_files_per_s"), 0),
                f(v.med("W7", &c, |m| Some(m.secs * 1e3)), 1),
                f(v.med("W5", &c, |m| m.disk_bytes.map(|d| d as f64 / 1e6)), 1),
            );
        }
        s.push('\n');
    }
    let w8_all: Vec<&Measure> = ms.iter().filter(|m| m.workload == "W8").collect();
    // The default run (with the computed sweep); older results lack the flag.
    let w8: Vec<&Measure> = w8_all
        .iter()
        .copied()
        .filter(|m| {
            m.extra.get("default_run").map_or_else(
                || m.extra.get("chunk_avg_kib").copied().unwrap_or(16.0) == 16.0,
                |x| *x == 1.0,
            )
        })
        .collect();
    if !w8.is_empty() {
        let _ = writeln!(
            s,
            "### W8: consecutive npm releases uploaded release after release (bytes kept ÷ logical bytes)\n\n\
             Chunking of the measured store: {}.\n\n\
             | package | versions | files | logical MB | .map share | relstore on disk | relstore chunks | whole-file dedup | fixed 1 MiB | CDC 4K | CDC 8K | CDC 16K | CDC 32K | CDC 64K | upload MB/s |\n\
             |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
            variant_name(w8[0])
        );
        let mut tot = std::collections::BTreeMap::<String, f64>::new();
        let mut tot_logical = 0.0;
        for m in &w8 {
            let l = m.bytes.max(1) as f64;
            tot_logical += l;
            let e = |k: &str| m.extra.get(k).copied().unwrap_or(f64::NAN);
            for (k, val) in &m.extra {
                *tot.entry(k.clone()).or_default() += val;
            }
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} | {:.2} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} |",
                m.contender,
                e("versions"),
                m.ops,
                l / 1e6,
                e("map_bytes") / l,
                e("relstore_disk_bytes") / l,
                e("relstore_chunk_bytes") / l,
                e("whole_file_bytes") / l,
                e("fixed_1mib_bytes") / l,
                e("cdc_4k_bytes") / l,
                e("cdc_8k_bytes") / l,
                e("cdc_16k_bytes") / l,
                e("cdc_32k_bytes") / l,
                e("cdc_64k_bytes") / l,
                f(mbps(m), 0),
            );
        }
        if w8.len() > 1 {
            let t = |k: &str| tot.get(k).copied().unwrap_or(f64::NAN) / tot_logical;
            let _ = writeln!(
                s,
                "| **all** | | | {:.0} | {:.2} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | |",
                tot_logical / 1e6,
                t("map_bytes"),
                t("relstore_disk_bytes"),
                t("relstore_chunk_bytes"),
                t("whole_file_bytes"),
                t("fixed_1mib_bytes"),
                t("cdc_4k_bytes"),
                t("cdc_8k_bytes"),
                t("cdc_16k_bytes"),
                t("cdc_32k_bytes"),
                t("cdc_64k_bytes"),
            );
        }
    }
    w8_variants(&mut s, cfg, &w8_all);
    if !w8.is_empty() {
        let _ = writeln!(
            s,
            "\n\"relstore on disk\" is segments + index as the store reports them; \"relstore chunks\" the distinct chunk payloads; the CDC columns are distinct chunk payloads plus a 52-byte record header each, computed for other average sizes (min = avg/4, max = 4×avg).\n"
        );
    }

    // Targets.
    let mut t = String::new();
    let mut target = |name: &str, got: Option<f64>, ok: Option<bool>, how: String| {
        let verdict = match (ok, got) {
            (Some(true), _) => "met",
            (Some(false), _) => "**missed**",
            // Context rows carry a figure but no target.
            (None, Some(_)) => "–",
            (None, None) => "not measured",
        };
        let _ = writeln!(t, "| {name} | {} | {verdict} | {how} |", f(got, 2));
    };
    let r = v.ratio("W2", "relstore-batched", "ingest-2core", mbps);
    target(
        "W2 Batched ≥ 0.70 × ingest on two cores",
        r,
        r.map(|x| x >= 0.7),
        "MB/s ratio, same round".into(),
    );
    for (c, of) in [
        ("ingest+sled", "ingest-2core"),
        ("relstore-batched", "ingest+sled"),
    ] {
        target(
            &format!("(context) W2 {c} ÷ {of}"),
            v.ratio("W2", c, of, mbps),
            None,
            "MB/s ratio, same round; ingest+sled is the ceiling of one sled record per chunk"
                .into(),
        );
    }
    let r = v.ratio("W2", "relstore-immediate", "disk-floor", mbps);
    target(
        "W2 Immediate ≥ 0.80 × disk floor",
        r,
        r.map(|x| x >= 0.8),
        "MB/s ratio, same round".into(),
    );
    let r = v.ratio("W1", "relstore-immediate", "cacache", ops);
    target(
        "W1 Immediate ≥ 2 × cacache",
        r,
        r.map(|x| x >= 2.0),
        "files/s ratio".into(),
    );
    let r = v.ratio("W1", "relstore-immediate", "sqlite", ops);
    target(
        "W1 Immediate ≥ 3 × SQLite",
        r,
        r.map(|x| x >= 3.0),
        "files/s ratio".into(),
    );
    for t in [2, 4, 8] {
        let w = format!("W6-t{t}");
        for peer in ["sqlite", "cacache"] {
            let r = v.ratio(&w, "relstore-immediate", peer, ops);
            target(
                &format!("(context) W6 Immediate ÷ {peer}, {t} threads"),
                r,
                None,
                "files/s ratio, same round".into(),
            );
        }
    }
    let r = v.ratio("W1", "relstore-immediate", "fsync-floor", ops);
    target(
        "(context) W1 Immediate ÷ one fdatasync per file",
        r,
        None,
        "files/s ratio; 1.0 is the most a single durable writer can do".into(),
    );
    for c in ["relstore-immediate", "relstore-batched"] {
        let r = v.ratio("W3", c, "sha1-mem", mbps);
        target(
            &format!("W3 {c} close to the SHA-1 floor"),
            r,
            r.map(|x| x >= 0.5),
            "MB/s ÷ SHA-1 in memory (≥ 0.5 counted as close)".into(),
        );
        let r = v.ratio("W3", c, "ingest-1core", mbps);
        target(
            &format!("W3 {c} ÷ its own hashing pass"),
            r,
            r.map(|x| x >= 0.5),
            "MB/s ÷ ingest-1core (FastCDC+BLAKE3+CRC32+SHA-1)".into(),
        );
    }
    let r = v.ratio("W4", "relstore-immediate", "cacache", ops);
    target(
        "W4 reads ≥ 3 × cacache",
        r,
        r.map(|x| x >= 3.0),
        "reads/s ratio".into(),
    );
    let r = v.med("W5", "relstore", |m| {
        m.extra.get("last_over_first").copied()
    });
    target(
        "W5 last page within 2 × first page",
        r,
        r.map(|x| (0.5..=2.0).contains(&x)),
        "last ÷ first, median µs".into(),
    );
    let rss = v.max("W2", "relstore-batched", |m| mib(m.peak_rss_kib));
    let rss_i = v.max("W2", "relstore-immediate", |m| mib(m.peak_rss_kib));
    let worst = match (rss, rss_i) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    target(
        "W2 peak RSS < 100 MiB + 64 MiB cache",
        worst,
        worst.map(|x| x < 164.0),
        "MiB, worst round, includes the binary".into(),
    );
    let (mut d, mut l) = (0.0, 0.0);
    for m in &w8 {
        d += m.extra.get("relstore_disk_bytes").copied().unwrap_or(0.0);
        l += m.bytes as f64;
    }
    let r = (l > 0.0).then(|| d / l);
    target(
        "W8 bytes on disk ≤ 0.45 × logical",
        r,
        r.map(|x| x <= 0.45),
        "all packages, ten releases".into(),
    );
    let _ = writeln!(
        s,
        "### Targets (issue 6)\n\n| target | measured | verdict | how |\n|---|--:|---|---|\n{t}"
    );
    if !notes.is_empty() {
        let _ = writeln!(s, "Notes:\n");
        for n in notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

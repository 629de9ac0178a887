//! `--sled-records`: what one record costs in sled 0.34.7 on this machine, by the way it is
//! written. relstore keeps one record per chunk in its `chunks` tree, so this per-record cost,
//! times ~256 chunks per MiB at 4 KiB chunks, bounds its upload rate (docs/benchmarks.md, W2).
//!
//! Each mode writes the same `n` records (32-byte keys, 30-byte values) into a fresh database
//! and reports CPU-bound wall time per record (sled's background flusher is off; one `flush` at
//! the end is timed separately) and bytes on disk per record after that flush.

use std::path::Path;
use std::time::Instant;

use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

/// Records per batch or transaction, as relstore's chunk-reference transactions took them
/// before format 3 (which inserts chunk records with plain inserts instead).
const GROUP: usize = 1024;
const VALUE: [u8; 30] = [7u8; 30];

/// The modes, in the order printed.
const MODES: [(&str, &str); 6] = [
    ("get", "`Tree::get` of a present key (for scale)"),
    ("insert-ascending", "`Tree::insert`, keys in ascending order"),
    ("insert-random", "`Tree::insert`, random keys (chunk ids are)"),
    ("apply-batch", "`Tree::apply_batch` of 1,024 inserts, random keys"),
    (
        "tx-3-trees",
        "transaction over 3 trees per 1,024: get + insert per record, one 32 KiB record, one counter get + put (relstore's chunk-reference transactions before format 3)",
    ),
    ("tx-15-trees", "the same transaction spanning 15 trees"),
];

fn key(i: u64) -> [u8; 32] {
    *blake3::hash(&i.to_le_bytes()).as_bytes()
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Runs one mode; returns (µs per record, µs per record including the final flush, bytes on
/// disk per record).
fn one(mode: &str, n: usize, dir: &Path) -> sled::Result<(f64, f64, f64)> {
    let _ = std::fs::remove_dir_all(dir);
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(64 << 20)
        .flush_every_ms(None)
        .open()?;
    let trees: Vec<sled::Tree> = (0..15)
        .map(|i| db.open_tree(format!("t{i}")))
        .collect::<sled::Result<_>>()?;
    let keys: Vec<[u8; 32]> = (0..n as u64).map(key).collect();
    if mode == "get" {
        for k in &keys {
            trees[0].insert(k, &VALUE[..])?;
        }
    }
    let t = Instant::now();
    match mode {
        "get" => {
            for k in &keys {
                std::hint::black_box(trees[0].get(k)?);
            }
        }
        "insert-ascending" => {
            for i in 0..n as u64 {
                let mut k = [0u8; 32];
                k[..8].copy_from_slice(&i.to_be_bytes());
                trees[0].insert(k, &VALUE[..])?;
            }
        }
        "insert-random" => {
            for k in &keys {
                trees[0].insert(k, &VALUE[..])?;
            }
        }
        "apply-batch" => {
            for g in keys.chunks(GROUP) {
                let mut b = sled::Batch::default();
                for k in g {
                    b.insert(&k[..], &VALUE[..]);
                }
                trees[0].apply_batch(b)?;
            }
        }
        "tx-3-trees" | "tx-15-trees" => {
            let span: Vec<sled::Tree> = if mode == "tx-3-trees" {
                trees[..3].to_vec()
            } else {
                trees.clone()
            };
            for (seq, g) in keys.chunks(GROUP).enumerate() {
                span.as_slice()
                    .transaction(|t| {
                        for k in g {
                            std::hint::black_box(t[0].get(k)?);
                            t[0].insert(&k[..], &VALUE[..])?;
                        }
                        t[1].insert(&(seq as u64).to_be_bytes()[..], vec![0u8; 32 * g.len()])?;
                        std::hint::black_box(t[2].get(b"stats")?);
                        t[2].insert(&b"stats"[..], &VALUE[..])?;
                        Ok::<_, ConflictableTransactionError<()>>(())
                    })
                    .map_err(|e| match e {
                        sled::transaction::TransactionError::Storage(e) => e,
                        sled::transaction::TransactionError::Abort(()) => {
                            sled::Error::Unsupported("aborted".into())
                        }
                    })?;
            }
        }
        other => unreachable!("unknown mode {other}"),
    }
    let work = t.elapsed().as_secs_f64();
    db.flush()?;
    let total = t.elapsed().as_secs_f64();
    drop(trees);
    drop(db);
    let per = |s: f64| s * 1e6 / n as f64;
    Ok((per(work), per(total), dir_size(dir) as f64 / n as f64))
}

/// Child side: runs `mode` once and prints `µs-per-record µs-with-flush bytes-per-record`.
pub fn child(mode: &str, n: usize, scratch: &Path) {
    if !MODES.iter().any(|(m, _)| *m == mode) {
        eprintln!("unknown sled mode {mode}");
        std::process::exit(2);
    }
    let dir = scratch.join(mode);
    let r = one(mode, n, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    match r {
        Ok((w, t, b)) => println!("{w} {t} {b}"),
        Err(e) => {
            eprintln!("{mode}: {e}");
            std::process::exit(1);
        }
    }
}

/// Prints the table for `n` records per mode. Every mode runs in a process of its own (this
/// binary, re-executed), `ROUNDS` times in rotating order, and the table shows medians: within
/// one process a later mode runs up to a third faster on a heap the earlier ones warmed.
pub fn run(n: usize, scratch: &Path) {
    const ROUNDS: usize = 3;
    let exe = std::env::current_exe().expect("current exe");
    let mut got: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); MODES.len()];
    for round in 0..ROUNDS {
        for k in 0..MODES.len() {
            let i = (k + round) % MODES.len();
            let out = std::process::Command::new(&exe)
                .args(["--sled-record-mode", MODES[i].0, &n.to_string()])
                .arg(scratch)
                .output()
                .expect("run the sled child");
            let text = String::from_utf8_lossy(&out.stdout);
            let v: Vec<f64> = text
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if out.status.success() && v.len() == 3 {
                got[i].push((v[0], v[1], v[2]));
            } else {
                eprintln!(
                    "sled mode {} failed: {}",
                    MODES[i].0,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    println!(
        "### sled 0.34.7 per-record cost, {n} records per mode, median of {ROUNDS} processes\n\n\
         | mode | µs / record | with final flush | bytes on disk / record | what |\n|---|--:|--:|--:|---|"
    );
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (i, (mode, what)) in MODES.iter().enumerate() {
        if got[i].is_empty() {
            println!("| {mode} | failed | | | {what} |");
            continue;
        }
        let w = median(got[i].iter().map(|r| r.0).collect());
        let t = median(got[i].iter().map(|r| r.1).collect());
        let b = median(got[i].iter().map(|r| r.2).collect());
        println!("| {mode} | {w:.2} | {t:.2} | {b:.0} | {what} |");
    }
}

//! Process-kill test: acknowledged writes survive `SIGKILL` at random moments.
//!
//! `kill_cycles` re-executes this test binary as a child (`kill_child`, ignored unless run by
//! the parent) that uploads, overwrites and deletes from several threads and reports each step on
//! stdout: `BEGIN upload <name> <gen>` / `ACK upload <name> <sha1> <gen>` and `BEGIN delete
//! <name>` / `ACK delete <name>`, one flushed line each. `<gen>` names deterministic content, so
//! the parent can rebuild the exact bytes. Each name belongs to one child thread, so the steps of
//! one name are sequential: after a kill a name must hold its last acknowledged state, or the
//! result of the one step that had begun and not been acknowledged.
//!
//! The parent kills the child after a random number of acknowledgements (sometimes after a random
//! delay from start, so some kills land while the child recovers the store), reopens the store,
//! checks every name byte for byte, checks that every listed file reads back bytes matching its
//! SHA-1, closes the store and recounts every refcount and counter from the file records.
//! Kill instants come from a seed printed at the start: `RELSTORE_KILL_SEED=<seed>` replays the
//! same plan (thread interleavings differ from run to run, as they would in production).
//! `RELSTORE_KILL_CYCLES` changes the number of cycles (default 40). `kill_cycles_batched` runs
//! the same cycles with `Durability::Batched`, whose promise is weaker: a name may lose what was
//! acknowledged in the last interval (any state it held in the cycle is allowed), but nothing
//! else is relaxed. One child thread runs
//! `Store::gc` in a loop, so kills also land during compaction; every fifth reopen and the last
//! one also run `Store::verify`, which must find nothing.

// Shared with the main test binary; this one uses only part of it.
#[allow(dead_code)]
#[path = "it/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::{scope, small_chunk_options};
use relstore::{Durability, ListQuery, ReadMode, Store, StoreOptions};
use relstore_testkit::{sha1_hex, Rng};

const CHILD_DIR_ENV: &str = "RELSTORE_KILL_CHILD_DIR";
const CHILD_SEED_ENV: &str = "RELSTORE_KILL_CHILD_SEED";
const THREADS: usize = 4;
const NAMES: usize = 24;
/// Upper bound on the steps of one child thread, so a child whose parent vanished ends.
const MAX_STEPS_PER_THREAD: usize = 3000;
/// How long the parent waits for a child line before declaring the child stuck.
const LINE_TIMEOUT: Duration = Duration::from_secs(120);

fn name(i: usize) -> String {
    format!("~/static/f{i:02}.js")
}

/// The durability a child runs with, set by its parent in `RELSTORE_KILL_DURABILITY`.
const DURABILITY_ENV: &str = "RELSTORE_KILL_DURABILITY";

/// `Batched` flushes every second, so most kills land inside an interval.
fn durability(batched: bool) -> Durability {
    if batched {
        Durability::Batched {
            interval: Duration::from_secs(1),
        }
    } else {
        Durability::Immediate
    }
}

fn options(dir: &Path, read_mode: ReadMode, batched: bool) -> StoreOptions {
    // Small chunks and segments: many chunk records, shared chunks and segment rolls per
    // cycle, so kills land in every part of the write path.
    small_chunk_options(dir)
        .durability(durability(batched))
        .segment_max_bytes(256 << 10)
        .read_mode(read_mode)
}

/// Four fixed pseudo-random blobs that contents are cut from, so different contents share chunks.
fn bases() -> &'static [Vec<u8>] {
    static BASES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    BASES.get_or_init(|| {
        (0..4u64)
            .map(|b| {
                let mut r = Rng(0xB10B ^ b);
                (0..(160 << 10) / 8)
                    .flat_map(|_| r.next_u64().to_le_bytes())
                    .collect()
            })
            .collect()
    })
}

/// The content numbered `gen`: a prefix of one base blob with a few bytes changed; one in 32 is
/// instead 1.25–2 MiB of fresh bytes, so that kills also land while an upload's appends run on the
/// staging writer thread and its chunk records are inserted by the recorder thread while it streams.
fn content(gen: u64) -> Vec<u8> {
    let mut r = Rng(gen);
    if r.below(32) == 0 {
        let len = (5 << 18) + r.below(3 << 18);
        return relstore_testkit::random_bytes(r.next_u64(), len);
    }
    let base = &bases()[r.below(4)];
    let len = match r.below(8) {
        0 => r.below(64),
        _ => r.below(base.len()),
    };
    let mut bytes = base[..len].to_vec();
    if !bytes.is_empty() {
        for _ in 0..r.below(4) {
            let at = r.below(len);
            bytes[at] ^= (r.next_u64() as u8) | 1;
        }
    }
    bytes
}

fn say(line: &str) {
    let out = std::io::stdout();
    let mut out = out.lock();
    // A dead parent means nobody listens: stop quietly.
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

/// The child: mutates the store until killed. Only meaningful when started by `kill_cycles`.
#[test]
#[ignore = "child process of kill_cycles; run by it, not directly"]
fn kill_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        // Not a test of its own: `--include-ignored` runs it without a parent, and there is
        // nothing to do then. `kill_cycles` is the test.
        eprintln!("kill_child: only meaningful as the child of kill_cycles; nothing to do");
        return;
    };
    let seed: u64 = std::env::var(CHILD_SEED_ENV)
        .expect("seed")
        .parse()
        .expect("numeric seed");
    let batched = std::env::var(DURABILITY_ENV).as_deref() == Ok("batched");
    let store =
        Arc::new(Store::open(options(Path::new(&dir), ReadMode::Mmap, batched)).expect("open"));
    store
        .create_release("acme", "1.0", &["web"])
        .expect("create release");
    say("READY");
    let mut threads = Vec::new();
    for t in 0..THREADS {
        let store = store.clone();
        threads.push(std::thread::spawn(move || {
            let mut r = Rng(seed ^ (t as u64).wrapping_mul(0x1234_5678_9ABC_DEF1));
            let mine: Vec<usize> = (0..NAMES).filter(|i| i % THREADS == t).collect();
            for _ in 0..MAX_STEPS_PER_THREAD {
                let n = name(mine[r.below(mine.len())]);
                let key = scope().file(&n, None);
                let existing = store.file(&key).expect("look up file");
                let delete = existing.is_some() && r.below(10) < 3;
                if delete {
                    let file = existing.expect("checked");
                    say(&format!("BEGIN delete {n}"));
                    match store.delete_file(file.id) {
                        Ok(Some(_)) => say(&format!("ACK delete {n}")),
                        other => {
                            say(&format!("FAIL delete {n}: {other:?}"));
                            panic!("delete failed");
                        }
                    }
                } else {
                    // A small generation space makes whole-file duplicates common.
                    let gen = if r.below(3) == 0 {
                        r.below(6) as u64
                    } else {
                        r.next_u64()
                    };
                    let bytes = content(gen);
                    say(&format!("BEGIN upload {n} {gen}"));
                    match store.upload(&key, &[], &mut bytes.as_slice(), existing.is_some()) {
                        Ok(f) => {
                            say(&format!("ACK upload {n} {} {gen}", f.sha1_hex()));
                        }
                        Err(e) => {
                            say(&format!("FAIL upload {n}: {e}"));
                            panic!("upload failed: {e}");
                        }
                    }
                }
            }
        }));
    }
    // Compaction runs all the time, so kills also land inside it.
    let gc_store = store.clone();
    threads.push(std::thread::spawn(move || {
        for _ in 0..MAX_STEPS_PER_THREAD {
            match gc_store.gc(&mut |_| {}) {
                Ok(r) => say(&format!(
                    "GC compacted {} removed {} dead {}",
                    r.segments_compacted, r.segments_removed, r.dead_chunks
                )),
                Err(e) => {
                    say(&format!("FAIL gc: {e}"));
                    panic!("gc failed: {e}");
                }
            }
        }
    }));
    for t in threads {
        t.join().expect("child thread");
    }
}

/// Runs one child until the kill and returns every complete line it printed.
fn run_child(dir: &Path, child_seed: u64, plan: &mut Rng, batched: bool) -> (Vec<String>, String) {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args(["--exact", "kill_child", "--nocapture", "--ignored"])
        .env(CHILD_DIR_ENV, dir)
        .env(
            DURABILITY_ENV,
            if batched { "batched" } else { "immediate" },
        )
        .env(CHILD_SEED_ENV, child_seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                // A line without its newline was cut by the kill: its step is unacknowledged.
                Ok(_) if !line.ends_with('\n') => return,
                Ok(_) => {
                    if tx.send(line.trim_end().to_owned()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    let mut lines = Vec::new();
    let mode = plan.below(10);
    let wait_acks = plan.below(40) as u64;
    let extra = Duration::from_micros(plan.below(3000) as u64);
    let what = if mode == 0 {
        // Kill soon after start: often while the child opens (and recovers) the store.
        std::thread::sleep(Duration::from_micros(plan.below(400_000) as u64));
        "early".to_string()
    } else {
        let mut acks = 0;
        let mut ready = false;
        while !ready || acks < wait_acks {
            match rx.recv_timeout(LINE_TIMEOUT) {
                Ok(l) => {
                    ready |= l == "READY";
                    acks += u64::from(l.starts_with("ACK "));
                    lines.push(l);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    panic!("child printed nothing for {LINE_TIMEOUT:?}; lines so far: {lines:?}");
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        std::thread::sleep(extra);
        format!("after {acks} acks + {extra:?}")
    };
    let exited_early = child.try_wait().expect("poll child").is_some();
    // `Child::kill` is SIGKILL on Unix.
    let _ = child.kill();
    child.wait().expect("reap child");
    reader.join().expect("reader");
    lines.extend(rx.try_iter());
    let stderr = err_reader.join().expect("stderr reader");
    if let Some(f) = lines.iter().find(|l| l.starts_with("FAIL ")) {
        panic!("child reported a failed operation: {f}\nstderr:\n{stderr}");
    }
    assert!(
        !exited_early || mode == 0,
        "child exited by itself before the kill ({what}); stderr:\n{stderr}"
    );
    (lines, what)
}

/// For each name, the states it may hold after the kill: `None` (absent) or `Some(gen)`. With
/// `Immediate`, the last acknowledged state or the one step begun after it. With `Batched`, which
/// may lose what was acknowledged in the last interval, any state the name held in this cycle
/// (from the one found at its start) or the step begun last.
fn allowed_states(
    known: &HashMap<String, Option<u64>>,
    lines: &[String],
    batched: bool,
) -> HashMap<String, Vec<Option<u64>>> {
    let mut acked: HashMap<String, Option<u64>> = known.clone();
    let mut held: HashMap<String, Vec<Option<u64>>> =
        known.iter().map(|(n, s)| (n.clone(), vec![*s])).collect();
    let mut pending: HashMap<String, Option<u64>> = HashMap::new();
    for l in lines {
        let parts: Vec<&str> = l.split(' ').collect();
        match parts.as_slice() {
            ["BEGIN", "upload", n, gen] => {
                pending.insert(n.to_string(), Some(gen.parse().expect("gen")));
            }
            ["BEGIN", "delete", n] => {
                pending.insert(n.to_string(), None);
            }
            ["ACK", "upload", n, sha1, gen] => {
                let gen: u64 = gen.parse().expect("gen");
                assert_eq!(
                    *sha1,
                    sha1_hex(&content(gen)),
                    "acknowledged SHA-1 of {n} differs from its content"
                );
                assert_eq!(
                    pending.remove(*n),
                    Some(Some(gen)),
                    "ACK without BEGIN: {l}"
                );
                acked.insert(n.to_string(), Some(gen));
                held.entry(n.to_string()).or_default().push(Some(gen));
            }
            ["ACK", "delete", n] => {
                assert_eq!(pending.remove(*n), Some(None), "ACK without BEGIN: {l}");
                acked.insert(n.to_string(), None);
                held.entry(n.to_string()).or_default().push(None);
            }
            _ => {}
        }
    }
    acked
        .into_iter()
        .map(|(n, s)| {
            let mut v = match held.remove(&n) {
                Some(all) if batched => all,
                _ => vec![s],
            };
            if let Some(p) = pending.get(&n) {
                v.push(*p);
            }
            (n, v)
        })
        .collect()
}

/// Reopens the store and checks every name against `allowed`; returns the observed states.
fn check_after_kill(
    dir: &Path,
    read_mode: ReadMode,
    batched: bool,
    allowed: &HashMap<String, Vec<Option<u64>>>,
    context: &str,
    verify: bool,
) -> HashMap<String, Option<u64>> {
    let store = Store::open(options(dir, read_mode, batched)).expect("reopen after kill");
    let mut observed = HashMap::new();
    for i in 0..NAMES {
        let n = name(i);
        let ok = &allowed[&n];
        let key = scope().file(&n, None);
        let state = match store.file(&key).expect("look up file") {
            None => {
                assert!(
                    ok.contains(&None),
                    "{context}: {n} is gone, but its last acknowledged state is {ok:?}"
                );
                None
            }
            Some(file) => {
                let bytes = store
                    .read(&key)
                    .unwrap_or_else(|e| panic!("{context}: reading {n} failed: {e}"));
                assert_eq!(
                    sha1_hex(&bytes),
                    file.sha1_hex(),
                    "{context}: {n} returned bytes that differ from its SHA-1"
                );
                let gen = ok
                    .iter()
                    .flatten()
                    .copied()
                    .find(|g| content(*g) == bytes)
                    .unwrap_or_else(|| {
                        panic!(
                            "{context}: {n} holds {} bytes (sha1 {}) that match none of its \
                             allowed states {ok:?}",
                            bytes.len(),
                            file.sha1_hex()
                        )
                    });
                Some(gen)
            }
        };
        observed.insert(n, state);
    }
    // Everything listed must read back the bytes its SHA-1 names.
    let mut cursor = None;
    let mut listed = 0;
    loop {
        let page = store
            .list_files(
                &scope(),
                &ListQuery {
                    limit: 7,
                    cursor: cursor.clone(),
                    ..Default::default()
                },
            )
            .expect("list files");
        for f in &page.items {
            let bytes = store.open_file(f).and_then(|mut r| r.read_to_vec());
            let bytes = bytes.unwrap_or_else(|e| panic!("{context}: listed {} fails: {e}", f.key));
            assert_eq!(
                sha1_hex(&bytes),
                f.sha1_hex(),
                "{context}: listed file {} returned bytes that differ from its SHA-1",
                f.key
            );
            assert!(observed.contains_key(&f.key.name), "unknown file listed");
            listed += 1;
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(
        listed,
        observed.values().filter(|s| s.is_some()).count(),
        "{context}: listing and lookups disagree"
    );
    if verify {
        let report = store.verify(&mut |_| {}).expect("verify");
        assert!(
            report.is_clean(),
            "{context}: verify found faults:\n{report}"
        );
    }
    drop(store);
    common::faulty_io::assert_index_consistent(dir);
    observed
}

#[test]
fn kill_cycles() {
    cycles(false);
}

/// The same with `Durability::Batched`: a name may lose what was acknowledged in the last
/// interval, but it never holds anything it did not hold, and the store stays consistent.
#[test]
fn kill_cycles_batched() {
    cycles(true);
}

fn cycles(batched: bool) {
    let seed: u64 = match std::env::var("RELSTORE_KILL_SEED") {
        Ok(s) => s.parse().expect("RELSTORE_KILL_SEED is a u64"),
        Err(_) => {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).expect("OS randomness");
            u64::from_le_bytes(b)
        }
    };
    let cycles: u64 = std::env::var("RELSTORE_KILL_CYCLES")
        .ok()
        .map(|s| s.parse().expect("RELSTORE_KILL_CYCLES is a number"))
        .unwrap_or(40);
    eprintln!("kill test seed {seed} ({cycles} cycles); replay with RELSTORE_KILL_SEED={seed}");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let mut plan = Rng(seed);
    let mut known: HashMap<String, Option<u64>> = (0..NAMES).map(|i| (name(i), None)).collect();
    let (mut acks, mut uploads_seen, mut gcs, mut compactions) = (0usize, 0usize, 0usize, 0usize);
    for cycle in 0..cycles {
        let child_seed = plan.next_u64();
        let (lines, what) = run_child(&dir, child_seed, &mut plan, batched);
        acks += lines.iter().filter(|l| l.starts_with("ACK ")).count();
        gcs += lines.iter().filter(|l| l.starts_with("GC ")).count();
        compactions += lines
            .iter()
            .filter(|l| l.starts_with("GC compacted ") && !l.starts_with("GC compacted 0 "))
            .count();
        let allowed = allowed_states(&known, &lines, batched);
        let read_mode = if cycle % 2 == 0 {
            ReadMode::Mmap
        } else {
            ReadMode::Pread
        };
        let context = format!("seed {seed}, cycle {cycle}, killed {what}");
        let verify = cycle % 5 == 4 || cycle + 1 == cycles;
        known = check_after_kill(&dir, read_mode, batched, &allowed, &context, verify);
        uploads_seen += known.values().filter(|s| s.is_some()).count();
    }
    eprintln!(
        "kill test: {cycles} cycles, {acks} acknowledgements checked, {gcs} gc runs \
         ({compactions} compacted segments)"
    );
    assert!(
        compactions > 0,
        "gc never compacted a segment in a child, so no kill can have hit a compaction"
    );
    assert!(
        acks >= cycles as usize,
        "too few acknowledged operations ({acks}) for the test to mean anything"
    );
    assert!(uploads_seen > 0, "no file ever survived a cycle");
    // A final clean open and gc (which removes the chunk records of uploads killed before
    // their commit): the figures reported by the API equal the recount.
    let recount = common::faulty_io::assert_index_consistent(&dir);
    let store = Store::open(options(&dir, ReadMode::Mmap, batched)).expect("final open");
    store.gc(&mut |_| {}).expect("final gc");
    let stats = store.stats().expect("stats");
    assert_eq!(
        (stats.files, stats.contents, stats.chunks),
        (recount.files, recount.contents, recount.chunks)
    );
    assert_eq!(
        (stats.logical_bytes, stats.stored_bytes),
        (recount.logical_bytes, recount.stored_bytes)
    );
}

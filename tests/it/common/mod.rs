//! Helpers shared by the integration tests: deterministic content generators, store set-up and
//! the chunk arithmetic the tests use as their independent expectation.
//!
//! `faulty_io` holds the fault-injecting segment I/O and the independent index recount.

pub mod faulty_io;

use std::collections::HashMap;
use std::io::Read;

use relstore::{ChunkId, ChunkingParams, FileKey, FileRecord, ReleaseScope, Store, StoreOptions};

pub use relstore_testkit::Rng;

/// `len` bytes of minified-JavaScript-like text: many short statements drawn from a small
/// vocabulary with varying identifiers and numbers, the kind of content release pipelines upload.
/// The same `seed` always gives the same bytes, and a shorter `len` gives a prefix.
pub fn js_like(seed: u64, len: usize) -> Vec<u8> {
    const KW: &[&str] = &[
        "function", "var", "let", "const", "return", "if", "else", "for", "while", "new",
    ];
    const IDENT: &[&str] = &[
        "a",
        "b",
        "e",
        "t",
        "n",
        "r",
        "o",
        "i",
        "module",
        "exports",
        "require",
        "render",
        "props",
        "state",
        "value",
        "index",
        "length",
        "push",
        "map",
        "filter",
        "reduce",
        "console",
        "log",
        "window",
        "document",
        "createElement",
        "useState",
        "useEffect",
    ];
    const PUNCT: &[&str] = &[
        "(", ")", "{", "}", ";", ",", ".", "=", "=>", "+", "&&", "||", "?",
    ];
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut out = Vec::with_capacity(len + 256);
    while out.len() < len {
        match rng.below(10) {
            0 => {
                let n = rng.below(1 << 20);
                out.extend_from_slice(format!("/* module {n} */\n").as_bytes());
            }
            1 => {
                let (k, a, b) = (rng.pick(KW), rng.pick(IDENT), rng.next_u64() & 0xffff);
                out.extend_from_slice(
                    format!("{k} _{a}{b:x}=\"{:08x}\";", rng.next_u64()).as_bytes(),
                );
            }
            2 => {
                let n = rng.below(5000);
                out.extend_from_slice(
                    format!("{}.{}({n});", rng.pick(IDENT), rng.pick(IDENT)).as_bytes(),
                );
            }
            _ => {
                for _ in 0..rng.below(12) + 3 {
                    let w = match rng.below(3) {
                        0 => rng.pick(KW),
                        1 => rng.pick(IDENT),
                        _ => rng.pick(PUNCT),
                    };
                    out.extend_from_slice(w.as_bytes());
                    if rng.below(3) == 0 {
                        out.push(b' ');
                    }
                }
                if rng.below(4) == 0 {
                    out.push(b'\n');
                }
            }
        }
    }
    out.truncate(len);
    out
}

/// Options for a test store at `dir`: a small sled cache so many stores fit in memory at once.
pub fn options(dir: &std::path::Path) -> StoreOptions {
    StoreOptions::new(dir).cache_bytes(4 << 20)
}

/// [`options`] with small chunks (1, 4 and 16 KiB): many chunk records, and chunks shared
/// between contents, per megabyte written. The durability tests add their own segment sizes.
pub fn small_chunk_options(dir: &std::path::Path) -> StoreOptions {
    options(dir).chunking(ChunkingParams {
        min: 1024,
        avg: 4096,
        max: 16384,
    })
}

/// The one release scope most tests write to: project `web` of `acme`, release `1.0`.
pub fn scope() -> ReleaseScope {
    ReleaseScope::project("acme", "web", "1.0")
}

/// Lengths of the chunks FastCDC cuts `data` into with `params`: the tests' expectation of what
/// the store keeps, computed by the fastcdc crate's own in-memory chunker.
pub fn chunk_lengths(data: &[u8], params: ChunkingParams) -> Vec<usize> {
    fastcdc::v2020::FastCDC::new(data, params.min, params.avg, params.max)
        .map(|c| c.length)
        .collect()
}

/// Id → length of every distinct chunk of `data`.
pub fn chunk_set(data: &[u8], params: ChunkingParams) -> HashMap<ChunkId, u64> {
    let mut out = HashMap::new();
    let mut at = 0;
    for len in chunk_lengths(data, params) {
        out.insert(ChunkId::of(&data[at..at + len]), len as u64);
        at += len;
    }
    out
}

/// Sum of the sizes of the distinct chunks of all `contents` together.
pub fn distinct_chunk_bytes<'a>(
    contents: impl IntoIterator<Item = &'a [u8]>,
    params: ChunkingParams,
) -> u64 {
    let mut all = HashMap::new();
    for c in contents {
        all.extend(chunk_set(c, params));
    }
    all.values().sum()
}

/// SHA-1 of `data`.
pub fn sha1(data: &[u8]) -> relstore::Sha1 {
    relstore::Sha1::of(data)
}

/// Uploads `data` as `key` without headers, failing the test on error.
pub fn put(store: &Store, key: &FileKey, data: &[u8]) -> FileRecord {
    store
        .upload(key, &[], &mut &data[..], false)
        .unwrap_or_else(|e| panic!("upload {key}: {e}"))
}

/// Reads a whole file through its streaming reader.
pub fn read_all(store: &Store, file: &FileRecord) -> Vec<u8> {
    let mut r = store.open_file(file).expect("open file");
    let mut out = Vec::new();
    r.read_to_end(&mut out).expect("read file");
    out
}

/// The store's content refcounts equal a recount from its files, and every chunk a manifest
/// lists has its record (`ctx` names the moment in failures).
pub fn assert_refcounts_exact(store: &Store, ctx: &str) {
    let report = store.debug_refcounts().unwrap();
    assert_eq!(
        report.missing_chunks(),
        0,
        "{ctx}: live chunks without a record"
    );
    assert_eq!(
        report.contents, report.expected_contents,
        "{ctx}: content refcounts"
    );
}

/// Runs gc, then checks [`assert_refcounts_exact`] and that exactly the live chunks have
/// records: nothing an operation left behind survives a gc.
pub fn assert_collected(store: &Store, ctx: &str) {
    store
        .gc(&mut |_| {})
        .unwrap_or_else(|e| panic!("{ctx}: gc: {e}"));
    assert_refcounts_exact(store, ctx);
    let report = store.debug_refcounts().unwrap();
    assert_eq!(
        report.recorded(),
        report.live_chunks,
        "{ctx}: chunk records after gc"
    );
}

//! Streaming: a 512 MiB upload from a generating reader (never held in memory) keeps the
//! process's peak resident memory small, and reads back through the `Read + Seek` reader.
//!
//! Alone in its binary (one test) so that no other test's allocations disturb the measurement.

use std::io::{Read, Seek, SeekFrom};

use relstore::{ReleaseScope, Store, StoreOptions};
use relstore_testkit::{random_bytes_at, status_bytes};
use sha1::Digest;

const SIZE: u64 = 512 << 20;
const SEED: u64 = 0x5eed;
/// Largest accepted growth of the peak resident set while the upload streams (ingest, hashing,
/// segment appends): a few MiB of blocks and the chunk list (~32 K entries). Measured: ~7 MiB.
const STREAM_LIMIT: u64 = 96 << 20;
/// Largest accepted growth over the whole upload, index commit included, and over deleting the
/// file again. sled 0.34 holds ~4.5 KiB per write until its transaction ends, so one transaction
/// writing the ~32 K chunk records would add ~150 MiB (measured 124 MiB before chunk references
/// went through bounded transactions); with them, measured ~16 MiB.
const TOTAL_LIMIT: u64 = 64 << 20;

/// Produces `len` pseudo-random bytes on demand and hashes what it hands out.
struct Generator {
    pos: u64,
    len: u64,
    sha1: sha1::Sha1,
    blake3: blake3::Hasher,
    /// `VmHWM` when the stream ended.
    peak_at_end: Option<u64>,
}

impl Read for Generator {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min((self.len - self.pos) as usize);
        random_bytes_at(SEED, self.pos, &mut buf[..n]);
        self.sha1.update(&buf[..n]);
        self.blake3.update(&buf[..n]);
        self.pos += n as u64;
        if n == 0 && self.peak_at_end.is_none() {
            self.peak_at_end = Some(status_bytes("VmHWM:"));
        }
        Ok(n)
    }
}

#[test]
fn a_512_mib_upload_streams_in_bounded_memory_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(dir.path())).unwrap();
    store.create_release("acme", "1.0", &["web"]).unwrap();
    let scope = ReleaseScope::project("acme", "web", "1.0");
    // Warm up: the first multi-block upload starts the hashing thread and fills the allocator.
    let mut warm = Generator {
        pos: 0,
        len: 3 << 20,
        sha1: sha1::Sha1::new(),
        blake3: blake3::Hasher::new(),
        peak_at_end: None,
    };
    store
        .upload(&scope.file("warm.bin", None), &[], &mut warm, false)
        .unwrap();
    let warm_chunks = store.stats().unwrap().chunks;

    // Reset the high-water mark to the current RSS where the kernel allows it; either way the
    // growth is measured from the current RSS, an upper bound of what the upload added.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = status_bytes("VmRSS:");
    let mut gen = Generator {
        pos: 0,
        len: SIZE,
        sha1: sha1::Sha1::new(),
        blake3: blake3::Hasher::new(),
        peak_at_end: None,
    };
    let file = store
        .upload(&scope.file("huge.bin", None), &[], &mut gen, false)
        .unwrap();
    let peak = status_bytes("VmHWM:");
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let streamed = gen
        .peak_at_end
        .expect("the upload read to the end of the stream")
        .saturating_sub(rss_before);
    let total = peak.saturating_sub(rss_before);
    eprintln!(
        "{} MiB upload: peak RSS grew by {:.1} MiB while streaming, {:.1} MiB in all \
         (RSS before {:.1} MiB)",
        SIZE >> 20,
        mib(streamed),
        mib(total),
        mib(rss_before)
    );
    assert!(
        streamed < STREAM_LIMIT,
        "peak RSS grew by {streamed} bytes while the upload streamed, limit {STREAM_LIMIT}"
    );
    assert!(
        total < TOTAL_LIMIT,
        "peak RSS grew by {total} bytes during the upload, limit {TOTAL_LIMIT}"
    );
    assert_eq!(gen.pos, SIZE, "the whole stream was consumed");
    let sha1: [u8; 20] = gen.sha1.finalize().into();
    let blake3 = *gen.blake3.finalize().as_bytes();
    assert_eq!(file.size, SIZE);
    assert_eq!(*file.sha1.as_bytes(), sha1);
    assert_eq!(*file.content_id.as_bytes(), blake3);
    let s = store.stats().unwrap();
    assert!(
        s.stored_bytes >= SIZE,
        "random data does not dedup: stored {}",
        s.stored_bytes
    );

    // Stream it back and compare the hash.
    let mut r = store.open_file(&file).unwrap();
    assert_eq!(r.size(), SIZE);
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    assert_eq!(total, SIZE);
    assert_eq!(
        *h.finalize().as_bytes(),
        blake3,
        "streamed read-back differs"
    );

    // Random ranges, including ones that cross segment boundaries and the end.
    let mut rng = relstore_testkit::Rng(1);
    let mut offsets: Vec<u64> = (0..24).map(|_| rng.next_u64() % SIZE).collect();
    offsets.extend([0, SIZE - 1, SIZE - 100_000, (128 << 20) - 5000, 256 << 20]);
    for off in offsets {
        let len = (rng.below(300_000) as u64).min(SIZE - off) as usize;
        r.seek(SeekFrom::Start(off)).unwrap();
        let mut got = vec![0u8; len];
        r.read_exact(&mut got).unwrap();
        let mut want = vec![0u8; len];
        random_bytes_at(SEED, off, &mut want);
        assert!(got == want, "range {off}+{len} differs");
    }
    r.seek(SeekFrom::End(0)).unwrap();
    assert_eq!(r.read(&mut buf).unwrap(), 0);
    drop((r, buf));

    // Deleting removes the content and its 32 manifest pages in one transaction; the chunk
    // records stay for gc.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = status_bytes("VmRSS:");
    store.delete_file(file.id).unwrap();
    let grew = status_bytes("VmHWM:").saturating_sub(rss_before);
    eprintln!("deleting it: peak RSS grew by {:.1} MiB", mib(grew));
    assert!(
        grew < TOTAL_LIMIT,
        "peak RSS grew by {grew} bytes while deleting, limit {TOTAL_LIMIT}"
    );
    let report = store.debug_refcounts().unwrap();
    assert_eq!(report.live_chunks.len() as u64, warm_chunks);
    assert_eq!(report.missing_chunks(), 0);

    // gc marks ~32 K live chunk ids at most and sweeps the rest.
    let rss_before = status_bytes("VmRSS:");
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    store.gc(&mut |_| {}).unwrap();
    let grew = status_bytes("VmHWM:").saturating_sub(rss_before);
    eprintln!("gc after it: peak RSS grew by {:.1} MiB", mib(grew));
    assert!(
        grew < TOTAL_LIMIT,
        "peak RSS grew by {grew} bytes during gc, limit {TOTAL_LIMIT}"
    );
    let s = store.stats().unwrap();
    assert_eq!(
        (s.files, s.chunks),
        (1, warm_chunks),
        "only the warm-up file is left"
    );
}

//! Deterministic inputs and the limit computations (what the hardware allows for the same bytes).

use sha1::Digest;

/// xorshift64*: fast, deterministic, incompressible enough for a benchmark.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Fills `buf` with pseudo-random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let v = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&v[..n]);
    }
    /// A uniform float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The small-file set of W1: `n` files, sizes log-uniform between 1 KiB and 200 KiB (the bulk
/// of real release artifacts), distinct random contents, names like a web build's.
pub fn small_set(n: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    let (lo, hi) = ((1024f64).ln(), ((200 << 10) as f64).ln());
    (0..n)
        .map(|i| {
            let size = (lo + (hi - lo) * rng.unit()).exp() as usize;
            let mut data = vec![0u8; size];
            rng.fill(&mut data);
            let ext = if i % 3 == 0 { "js.map" } else { "js" };
            (format!("~/static/js/chunk-{i:06}.{ext}"), data)
        })
        .collect()
}

/// Writes `size` pseudo-random bytes to `path` (a W2 source file).
pub fn write_source(path: &std::path::Path, size: u64, seed: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut rng = Rng::new(seed);
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// The whole ingest computation on one thread: FastCDC cut points (parameters `p`), BLAKE3 and
/// CRC32 of every chunk, BLAKE3 and SHA-1 of the whole. Returns the number of chunks.
///
/// The whole-content hashes are fed 1 MiB blocks, as relstore feeds them: fed a chunk at a time,
/// BLAKE3 restarts inside its 1 KiB chunks and runs its one-lane path, which made this floor
/// slower than it need be.
pub fn ingest_one_core(data: &[u8], p: relstore::ChunkingParams) -> usize {
    let mut whole = blake3::Hasher::new();
    let mut sha = sha1::Sha1::new();
    let mut n = 0;
    for c in fastcdc::v2020::FastCDC::new(data, p.min, p.avg, p.max) {
        let chunk = &data[c.offset..c.offset + c.length];
        std::hint::black_box(blake3::hash(chunk));
        std::hint::black_box(crc32fast::hash(chunk));
        n += 1;
    }
    for block in data.chunks(1 << 20) {
        whole.update(block);
        sha.update(block);
    }
    std::hint::black_box(whole.finalize());
    std::hint::black_box(sha.finalize());
    n
}

/// relstore's own one-pass ingest (its SHA-1 runs on a second thread above 1 MiB).
pub fn ingest_relstore(data: &[u8], p: relstore::ChunkingParams) -> usize {
    let got = relstore::__private::ingest(&mut &data[..], p, u64::MAX, &mut |_, _| Ok(()))
        .expect("in-memory ingest cannot fail");
    got.chunks.len()
}

/// The ingest pass plus the least index work a store that keeps one sled record per chunk must
/// add: every chunk id inserted into a sled tree (a 30-byte value, no transaction, no reads),
/// on a second thread so that it overlaps hashing. The ceiling of relstore's design, in which
/// each new chunk gets a record in the `chunks` tree. Returns the number of chunks.
pub fn ingest_with_sled_records(
    bufs: &[Vec<u8>],
    p: relstore::ChunkingParams,
    dir: &std::path::Path,
) -> Result<usize, sled::Error> {
    let db = sled::Config::new()
        .path(dir.join("sled"))
        .cache_capacity(64 << 20)
        .flush_every_ms(None)
        .open()?;
    let tree = db.open_tree("chunks")?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<relstore::ChunkId>>(64);
    let n = std::thread::scope(|s| {
        let inserter = s.spawn(move || {
            let mut n = 0usize;
            for batch in rx {
                for id in batch {
                    tree.insert(id, &[0u8; 30][..])?;
                    n += 1;
                }
            }
            Ok::<_, sled::Error>(n)
        });
        for b in bufs {
            let mut batch = Vec::with_capacity(256);
            relstore::__private::ingest(&mut &b[..], p, u64::MAX, &mut |_, meta| {
                batch.push(meta.id);
                if batch.len() == 256 {
                    // A closed channel means the inserter failed; its join reports why.
                    let _ = tx.send(std::mem::take(&mut batch));
                }
                Ok(())
            })
            .expect("in-memory ingest cannot fail");
            let _ = tx.send(batch);
        }
        drop(tx);
        inserter.join().expect("inserter thread")
    })?;
    db.flush()?;
    Ok(n)
}

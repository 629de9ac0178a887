//! Object-store requests per GiB ingested, per 1,000 downloads and per GiB restored, for packs
//! against one object per chunk and one object per file, from one run against moto on loopback.
//!
//! ```sh
//! cargo run --release -p relstore-bucket --features test-support --example request_cost -- [MiB]
//! ```
//!
//! The workload is W1's shape (files of 1–200 KiB, all new, incompressible), chunked as a store
//! chunks by default (FastCDC 2020, 2/4/32 KiB) and framed as segment records (52-byte header and
//! payload) into 128 MiB segments, which are shipped through a `Primary` with the crate's default
//! limits (one PUT below 64 MiB, else 16 MiB parts). The request counts are exact counts of what
//! this crate sent (through the counting wrapper), not estimates; the alternatives are computed
//! from the same files and chunks. Prices are public S3 Standard list prices (us-east-1).

use std::path::Path;
use std::time::{Duration, Instant};

use relstore_bucket::testing::{FaultyStore, Moto, Op, RequestCounts};
use relstore_bucket::{Bucket, LeaseOptions};
use relstore_testkit::{random_bytes, Rng};

const SEGMENT_MAX: u64 = 128 << 20;
const RECORD_HEADER: usize = 52;
const DOWNLOADS: usize = 1000;
/// US$ per 1,000 PUT, COPY, POST or LIST requests (S3 Standard).
const PUT_PRICE: f64 = 0.005;
/// US$ per 1,000 GET or HEAD requests.
const GET_PRICE: f64 = 0.0004;
/// US$ per GB-month stored (first 50 TB; AWS bills a GB as 2^30 bytes).
const STORAGE_PRICE: f64 = 0.023;
const GIB: f64 = (1u64 << 30) as f64;

/// Where a file's chunk records lie: (segment, byte range) pieces, the chunks' BLAKE3s.
struct FileAt {
    pieces: Vec<(u64, std::ops::Range<u64>)>,
    chunks: Vec<[u8; 32]>,
}

/// Segment files being written.
struct Segments<'a> {
    dir: &'a Path,
    seq: u64,
    buf: Vec<u8>,
    sealed: Vec<(u64, std::path::PathBuf, u64)>,
}

impl Segments<'_> {
    /// Appends one chunk record; returns (segment, offset) of the record.
    fn append(&mut self, chunk: &[u8]) -> (u64, u64) {
        if (self.buf.len() + RECORD_HEADER + chunk.len()) as u64 > SEGMENT_MAX {
            self.seal();
        }
        let at = self.buf.len() as u64;
        let mut header = [0u8; RECORD_HEADER];
        header[..4].copy_from_slice(b"RSCK");
        header[8..12].copy_from_slice(&(chunk.len() as u32).to_le_bytes());
        header[16..48].copy_from_slice(blake3::hash(chunk).as_bytes());
        self.buf.extend_from_slice(&header);
        self.buf.extend_from_slice(chunk);
        (self.seq, at)
    }

    fn seal(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let path = self.dir.join(format!("{:08}.seg", self.seq));
        std::fs::write(&path, &self.buf).unwrap();
        self.sealed.push((self.seq, path, self.buf.len() as u64));
        self.buf.clear();
        self.seq += 1;
    }
}

/// Checks every chunk record in `bytes` against the chunk hashes expected, as the engine would.
fn check_records(
    bytes: &[u8],
    expected: &mut std::slice::Iter<'_, [u8; 32]>,
) -> Result<(), String> {
    let mut at = 0;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let payload = &bytes[at + RECORD_HEADER..at + RECORD_HEADER + len];
        let want = expected.next().ok_or("more records than chunks")?;
        if blake3::hash(payload).as_bytes() != want {
            return Err(format!("chunk record at {at} does not hash to its chunk"));
        }
        at += RECORD_HEADER + len;
    }
    Ok(())
}

fn dollars(requests: f64, price_per_1000: f64) -> f64 {
    requests / 1000.0 * price_per_1000
}

fn main() {
    let mib: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("the size in MiB"))
        .unwrap_or(512);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();

    // The workload: W1-shaped files until `mib` MiB, chunked and framed into segments.
    let mut rng = Rng(0x5eed);
    let mut segments = Segments {
        dir: dir.path(),
        seq: 1,
        buf: Vec::new(),
        sealed: Vec::new(),
    };
    let mut files = Vec::new();
    let (mut logical, mut chunk_count) = (0u64, 0u64);
    while logical < mib << 20 {
        let len = 1024 + rng.below(199 << 10);
        let data = random_bytes(rng.next_u64(), len);
        let mut at = FileAt {
            pieces: Vec::new(),
            chunks: Vec::new(),
        };
        for c in fastcdc::v2020::FastCDC::new(&data, 2 << 10, 4 << 10, 32 << 10) {
            let chunk = &data[c.offset..c.offset + c.length];
            let (seq, off) = segments.append(chunk);
            let end = off + (RECORD_HEADER + chunk.len()) as u64;
            match at.pieces.last_mut() {
                Some((s, r)) if *s == seq && r.end == off => r.end = end,
                _ => at.pieces.push((seq, off..end)),
            }
            at.chunks.push(*blake3::hash(chunk).as_bytes());
            chunk_count += 1;
        }
        logical += len as u64;
        files.push(at);
    }
    segments.seal();
    let stored: u64 = segments.sealed.iter().map(|(_, _, len)| len).sum();

    let moto = Moto::start();
    let config = moto.bucket("request-cost", "store");
    let (store, faults) = FaultyStore::wrap(config.build().unwrap());
    let bucket = Bucket::with_store(store, &config).unwrap();

    let generate_secs = started.elapsed().as_secs_f64();

    // Ingest: ship every segment. The lease's own requests (a read and a create or takeover at
    // start, a renewal every ttl/3, a release at the end) are per tenure and per unit of time,
    // not per GiB: a time to live longer than the run keeps renewals out of the count.
    let mut opts = LeaseOptions::new("request-cost");
    opts.start_seq = 1;
    opts.ttl = Duration::from_secs(3600);
    let primary = bucket.acquire(&opts).unwrap();
    faults.reset_counts();
    let shipping = Instant::now();
    for (seq, path, _) in &segments.sealed {
        primary.ship(*seq, path).unwrap();
    }
    let last = segments.sealed.last().unwrap().0;
    primary
        .wait_shipped(last, Duration::from_secs(3600))
        .unwrap();
    let ship_secs = shipping.elapsed().as_secs_f64();
    let ingest = faults.counts();
    primary.close(Duration::from_secs(60)).unwrap();

    // Downloads: 1,000 files picked at random, one ranged GET per piece, every record checked.
    faults.reset_counts();
    let downloading = Instant::now();
    let mut chunks_read = 0u64;
    for _ in 0..DOWNLOADS {
        let f = &files[rng.below(files.len())];
        let mut expected = f.chunks.iter();
        for (seq, range) in &f.pieces {
            bucket
                .read_range(*seq, range.clone(), |b| check_records(b, &mut expected))
                .unwrap();
        }
        chunks_read += f.chunks.len() as u64;
    }
    let downloads = faults.counts();
    let download_secs = downloading.elapsed().as_secs_f64();

    // Restore: list every slot, fetch every pack.
    faults.reset_counts();
    let restore_dir = tempfile::tempdir().unwrap();
    let restoring = Instant::now();
    let mut after = None;
    loop {
        let page = bucket.list_after(after, 1000).unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        for slot in page.iter().filter(|s| s.holds_data()) {
            bucket
                .fetch(
                    slot.seq,
                    &restore_dir.path().join(format!("{:08}.seg", slot.seq)),
                )
                .unwrap();
        }
    }
    let restore_secs = restoring.elapsed().as_secs_f64();
    let restore = faults.counts();

    report(&Report {
        mib: logical as f64 / (1 << 20) as f64,
        files: files.len() as u64,
        chunks: chunk_count,
        packs: segments.sealed.len() as u64,
        stored,
        logical,
        chunks_read,
        ingest,
        downloads,
        restore,
        secs: [
            generate_secs,
            ship_secs,
            download_secs,
            restore_secs,
            started.elapsed().as_secs_f64(),
        ],
    });
}

struct Report {
    mib: f64,
    files: u64,
    chunks: u64,
    packs: u64,
    stored: u64,
    logical: u64,
    chunks_read: u64,
    ingest: RequestCounts,
    downloads: RequestCounts,
    restore: RequestCounts,
    /// Generating, shipping, downloading, restoring, the whole run.
    secs: [f64; 5],
}

fn report(r: &Report) {
    let gib = r.logical as f64 / GIB;
    let per_gib = |n: u64| n as f64 / gib;
    let i = &r.ingest;
    println!(
        "workload: {:.0} MiB in {} files (1-200 KiB), {} chunks (avg {:.1} KiB), {} packs of up to 128 MiB ({:.0} MiB framed)",
        r.mib,
        r.files,
        r.chunks,
        r.logical as f64 / r.chunks as f64 / 1024.0,
        r.packs,
        r.stored as f64 / (1 << 20) as f64
    );
    println!(
        "ingest requests: PUT {} + create-multipart {} + part {} + complete {} + copy {} (x3) + LIST pages {} = {} PUT-class; GET {} + HEAD {}; DELETE {}",
        i.get(Op::Put),
        i.get(Op::CreateMultipart),
        i.get(Op::PutPart),
        i.get(Op::CompleteMultipart),
        i.get(Op::Copy),
        i.list_pages,
        i.put_class(),
        i.get(Op::Get),
        i.get(Op::Head),
        i.get(Op::Delete),
    );
    println!();
    println!("| per GiB ingested | PUT-class requests | GET-class | PUT cost (US$) | months of storage that buys |");
    println!("|---|--:|--:|--:|--:|");
    let storage_month = STORAGE_PRICE;
    let rows = [
        (
            "relstore packs (measured)",
            per_gib(i.put_class()),
            per_gib(i.get_class()),
        ),
        ("one object per chunk", per_gib(r.chunks), 0.0),
        ("one object per file", per_gib(r.files), 0.0),
    ];
    for (name, puts, gets) in rows {
        let cost = dollars(puts, PUT_PRICE) + dollars(gets, GET_PRICE);
        println!(
            "| {name} | {puts:.1} | {gets:.1} | {cost:.5} | {:.2} |",
            cost / storage_month
        );
    }
    println!();
    let d = &r.downloads;
    let per_k = |n: u64| n as f64 * 1000.0 / DOWNLOADS as f64;
    println!("| per 1,000 downloads | GET requests | GET cost (US$) |");
    println!("|---|--:|--:|");
    for (name, gets) in [
        (
            "relstore packs, ranged GETs (measured)",
            per_k(d.get_class()),
        ),
        ("one object per chunk", per_k(r.chunks_read)),
        ("one object per file", 1000.0),
    ] {
        println!("| {name} | {gets:.0} | {:.5} |", dollars(gets, GET_PRICE));
    }
    println!();
    let s = &r.restore;
    println!(
        "restore: {} LIST pages and {} GETs for {:.0} MiB ({:.1} GETs per GiB; one object per chunk: {:.0}, per file: {:.0})",
        s.list_pages,
        s.get_class(),
        r.stored as f64 / (1 << 20) as f64,
        per_gib(s.get_class()),
        per_gib(r.chunks),
        per_gib(r.files),
    );
    let [generate, ship, download, restore, total] = r.secs;
    println!(
        "time (moto on loopback serves one request at a time: not a throughput figure): \
         generate {generate:.1} s, ship {ship:.1} s, {DOWNLOADS} downloads {download:.1} s, \
         restore {restore:.1} s, whole run {total:.1} s"
    );
}

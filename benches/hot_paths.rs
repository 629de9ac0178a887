//! Criterion micro-benchmarks of relstore's hot paths: the one-pass hashing of an upload, a
//! segment append, an index transaction (a tiny upload with `Batched` durability), key encoding,
//! one list page, and reads through a memory map and through `pread`.
//!
//! Run with `cargo bench --bench hot_paths` (add `-- --quick` for a short run).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use relstore::__private::{encode_record, ingest, Segments};
use relstore::{
    ChunkId, ChunkingParams, Durability, ListQuery, ReadMode, ReleaseScope, StdIo, Store,
    StoreOptions,
};

fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn batched(dir: &std::path::Path) -> StoreOptions {
    StoreOptions::new(dir).durability(Durability::Batched {
        interval: Duration::from_secs(5),
    })
}

fn hashing(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest");
    for size in [64usize << 10, 4 << 20] {
        let data = random(size, 1);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, d| {
            b.iter(|| {
                ingest(
                    &mut &d[..],
                    ChunkingParams::default(),
                    u64::MAX,
                    &mut |_, _| Ok(()),
                )
                .expect("ingest")
            })
        });
    }
    g.finish();
}

fn segment_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let segs = Segments::open(
        &dir.path().join("segments"),
        Arc::new(StdIo),
        128 << 20,
        ReadMode::Mmap,
    )
    .expect("segments");
    let payload = random(16 << 10, 2);
    let mut batch = Vec::new();
    encode_record(
        &mut batch,
        &payload,
        crc32fast::hash(&payload),
        &ChunkId::of(&payload),
    );
    let mut g = c.benchmark_group("segment");
    g.throughput(Throughput::Bytes(batch.len() as u64));
    g.bench_function("append 16 KiB record (no sync)", |b| {
        b.iter(|| segs.append(&batch).expect("append"))
    });
    g.finish();
}

fn index_transaction(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(batched(dir.path())).expect("store");
    store
        .create_release("bench", "1.0.0", &["web"])
        .expect("release");
    let scope = ReleaseScope::project("bench", "web", "1.0.0");
    let mut i = 0u64;
    c.bench_function("index/upload of a 100-byte file (Batched)", |b| {
        b.iter_batched(
            || {
                i += 1;
                (
                    scope.file(&format!("~/f{i:010}.js"), None),
                    format!("{i:0100}"),
                )
            },
            |(key, body)| {
                store
                    .upload(&key, &[], &mut body.as_bytes(), false)
                    .expect("upload")
            },
            BatchSize::SmallInput,
        )
    });
}

fn key_encoding(c: &mut Criterion) {
    let key = ReleaseScope::project("acme", "web", "2024.11.27-1a2b3c")
        .file("~/static/js/main.3f9a1c.chunk.js.map", Some("prod"));
    let enc = key.encode();
    c.bench_function("key/encode", |b| {
        b.iter(|| std::hint::black_box(&key).encode())
    });
    c.bench_function("key/decode", |b| {
        b.iter(|| relstore::FileKey::decode(std::hint::black_box(&enc)).expect("decode"))
    });
}

fn list_page(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(batched(dir.path())).expect("store");
    store
        .create_release("bench", "1.0.0", &["web"])
        .expect("release");
    let scope = ReleaseScope::project("bench", "web", "1.0.0");
    for i in 0..10_000 {
        let body = format!("file {i}");
        store
            .upload(
                &scope.file(&format!("~/f{i:06}.js"), None),
                &[],
                &mut body.as_bytes(),
                false,
            )
            .expect("upload");
    }
    let q = ListQuery {
        limit: 100,
        ..Default::default()
    };
    c.bench_function("list/first page of 100 of 10,000", |b| {
        b.iter(|| store.list_files(&scope, &q).expect("list"))
    });
    let cursor = relstore_testkit::hex(&scope.file("~/f009899.js", None).encode());
    let q = ListQuery {
        limit: 100,
        cursor: Some(cursor),
        ..Default::default()
    };
    c.bench_function("list/last page of 100 of 10,000", |b| {
        b.iter(|| store.list_files(&scope, &q).expect("list"))
    });
}

fn reads(c: &mut Criterion) {
    let mut g = c.benchmark_group("read 64 KiB file");
    for mode in [ReadMode::Mmap, ReadMode::Pread] {
        let dir = tempfile::tempdir().expect("tempdir");
        // Small segments so the files live in sealed segments, which the read mode applies to.
        let store = Store::open(
            batched(dir.path())
                .segment_max_bytes(1 << 20)
                .read_mode(mode),
        )
        .expect("store");
        store
            .create_release("bench", "1.0.0", &["web"])
            .expect("release");
        let scope = ReleaseScope::project("bench", "web", "1.0.0");
        let mut keys = Vec::new();
        for i in 0..64 {
            let key = scope.file(&format!("~/f{i}.js"), None);
            let data = random(64 << 10, 100 + i);
            store
                .upload(&key, &[], &mut &data[..], false)
                .expect("upload");
            keys.push(key);
        }
        store.sync().expect("sync");
        g.throughput(Throughput::Bytes(64 << 10));
        let mut n = 0usize;
        g.bench_function(format!("{mode:?}"), |b| {
            b.iter(|| {
                n = (n + 1) % 32; // the first half: surely sealed
                store.read(&keys[n]).expect("read")
            })
        });
    }
    g.finish();
}

criterion_group!(
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = hashing, segment_append, index_transaction, key_encoding, list_page, reads
);
criterion_main!(benches);

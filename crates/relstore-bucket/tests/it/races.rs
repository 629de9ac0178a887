//! Create-if-absent under real concurrency: two shippers of one slot, four contenders for one
//! lease. moto serves one request at a time in this harness, which makes its conditional writes
//! atomic (see `testing::Moto`); without that these tests would see two winners.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use relstore_bucket::testing::{put_slot, RawClaim};
use relstore_bucket::{Bucket, Error, SlotKind};

use crate::{config, fetch_bytes, lease, pack_file};

/// Runs `f(i)` on `n` threads released together; returns the results in thread order.
fn together<T: Send + 'static>(n: usize, f: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(n));
    let f = Arc::new(f);
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let f = f.clone();
            std::thread::spawn(move || {
                barrier.wait();
                f(i)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn two_shippers_of_one_pack_create_its_slot_once() {
    let cfg = config("race-same");
    // Separate clients, as two processes would have.
    let buckets: Vec<Bucket> = (0..2).map(|_| Bucket::open(&cfg).unwrap()).collect();
    let dir = tempfile::tempdir().unwrap();
    // Small packs go up in one PUT, the last two through multipart + conditional copy.
    let sizes = [256 << 10; 12].into_iter().chain([7 << 20, 7 << 20]);
    for (i, len) in sizes.enumerate() {
        let seq = i as u64 + 1;
        let (path, bytes) = pack_file(dir.path(), seq, len, 3);
        let b = buckets.clone();
        let results = together(2, move |t| put_slot(&b[t], seq, 1, &path).unwrap());
        let mut sorted = results.clone();
        sorted.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            sorted,
            vec![RawClaim::Created, RawClaim::Same],
            "slot {seq}: exactly one creates it, the other finds its own pack there"
        );
        assert!(fetch_bytes(&buckets[0], seq).unwrap() == bytes);
    }
}

#[test]
fn two_writers_racing_for_one_slot_never_both_succeed() {
    let cfg = config("race-diff");
    let buckets: Vec<Bucket> = (0..2).map(|_| Bucket::open(&cfg).unwrap()).collect();
    let dir = tempfile::tempdir().unwrap();
    for seq in 1..=12u64 {
        let len = if seq > 10 { 7 << 20 } else { 512 << 10 };
        // Different bytes and epochs: what two primaries of a split brain would write.
        let files: Vec<_> = (0..2u64)
            .map(|w| {
                let sub = dir.path().join(format!("w{w}"));
                std::fs::create_dir_all(&sub).unwrap();
                pack_file(&sub, seq, len, 100 + w)
            })
            .collect();
        let b = buckets.clone();
        let paths: Vec<_> = files.iter().map(|(p, _)| p.clone()).collect();
        let results = together(2, move |t| {
            put_slot(&b[t], seq, t as u64 + 1, &paths[t]).unwrap()
        });
        let winners: Vec<usize> = (0..2)
            .filter(|&t| results[t] == RawClaim::Created)
            .collect();
        assert_eq!(winners.len(), 1, "slot {seq}: {results:?}");
        let w = winners[0];
        match &results[1 - w] {
            RawClaim::Taken(t) => {
                assert_eq!(
                    (t.kind, t.epoch, t.seq),
                    (SlotKind::Pack, w as u64 + 1, seq)
                );
            }
            other => panic!("slot {seq}: the loser saw {other:?}"),
        }
        assert!(
            fetch_bytes(&buckets[0], seq).unwrap() == files[w].1,
            "slot {seq} holds the winner's bytes"
        );
    }
}

#[test]
fn concurrent_acquisitions_elect_exactly_one_primary() {
    for round in 0..4 {
        let cfg = config(&format!("race-lease-{round}"));
        let buckets: Vec<Bucket> = (0..4).map(|_| Bucket::open(&cfg).unwrap()).collect();
        let results = together(4, move |t| {
            buckets[t]
                .acquire(&lease(&format!("node-{t}"), Duration::from_secs(30)))
                .map(|p| p.tenure().epoch)
        });
        let won: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(matches!(e, Error::LeaseHeld { epoch: 1, .. }), "{e}");
            }
        }
    }
}

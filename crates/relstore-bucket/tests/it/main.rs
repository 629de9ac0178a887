//! relstore-bucket against a real S3 server: moto on loopback, installed under `target/` when
//! missing and started once for this whole binary (every test gets a bucket of its own).

mod fencing;
mod integrity;
mod outage;
mod races;
mod ranges;
mod retire;
mod ship;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relstore_bucket::testing::{Faults, FaultyStore, Moto};
use relstore_bucket::{Bucket, BucketConfig, LeaseOptions};

/// A generous bound that separates "happens" from "hangs forever"; never a measurement.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A configuration for a new, empty bucket on the shared moto, with sizes small enough to make
/// multipart uploads cheap (5 MiB parts, multipart from 6 MiB) and a short retry backoff.
pub fn config(tag: &str) -> BucketConfig {
    let mut c = Moto::shared().bucket(tag, "store/a");
    c.limits.part_size = 5 << 20;
    c.limits.multipart_threshold = 6 << 20;
    c.limits.max_retry_backoff = Duration::from_millis(200);
    c
}

/// A bucket handle that goes through a fault-injecting, request-counting wrapper.
pub fn faulty(config: &BucketConfig) -> (Bucket, Arc<Faults>) {
    let (store, faults) = FaultyStore::wrap(config.build().unwrap());
    (Bucket::with_store(store, config).unwrap(), faults)
}

/// Lease options for `holder` with a short time to live, the log starting at slot 1.
pub fn lease(holder: &str, ttl: Duration) -> LeaseOptions {
    let mut o = LeaseOptions::new(holder);
    o.ttl = ttl;
    o.start_seq = 1;
    o
}

/// Writes a pack file of `len` reproducible bytes; returns its path and bytes.
pub fn pack_file(dir: &Path, seq: u64, len: usize, seed: u64) -> (PathBuf, Vec<u8>) {
    let bytes = relstore_testkit::random_bytes(seed ^ (seq << 32), len);
    let path = dir.join(format!("{seq:08}.seg"));
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

/// Polls `cond` until it holds; fails the test after [`PATIENCE`]. For states the crate reports
/// only through a snapshot (the shipper's failure count); everything else waits on the crate.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not after {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Downloads slot `seq` and returns its payload.
pub fn fetch_bytes(bucket: &Bucket, seq: u64) -> relstore_bucket::Result<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("pack");
    bucket.fetch(seq, &dest)?;
    Ok(std::fs::read(dest).unwrap())
}

/// Direct access to a bucket's objects, behind the crate's back (to inspect or damage them).
pub struct Raw {
    rt: tokio::runtime::Runtime,
    store: Arc<dyn object_store::ObjectStore>,
}

impl Raw {
    /// A client of its own for `config`'s bucket.
    pub fn new(config: &BucketConfig) -> Raw {
        Raw {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            store: config.build().unwrap(),
        }
    }

    /// The object at `key`.
    pub fn get(&self, key: &object_store::path::Path) -> Vec<u8> {
        use object_store::ObjectStoreExt;
        self.rt
            .block_on(async { self.store.get(key).await?.bytes().await })
            .unwrap()
            .to_vec()
    }

    /// Replaces the object at `key` by `bytes` (unconditionally).
    pub fn put(&self, key: &object_store::path::Path, bytes: Vec<u8>) {
        use object_store::ObjectStoreExt;
        self.rt.block_on(self.store.put(key, bytes.into())).unwrap();
    }

    /// The keys under `prefix`.
    pub fn list(&self, prefix: &object_store::path::Path) -> Vec<object_store::path::Path> {
        use futures::TryStreamExt;
        self.rt
            .block_on(self.store.list(Some(prefix)).try_collect::<Vec<_>>())
            .unwrap()
            .into_iter()
            .map(|m| m.location)
            .collect()
    }
}

//! How a store is opened: [`StoreOptions`] and the [`Durability`] it promises.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::chunking::ChunkingParams;
use crate::segment::io::{SegmentIo, StdIo};
use crate::segment::ReadMode;

/// When an acknowledged write is durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Every mutating call returns only after its bytes and its index entry are on stable storage
    /// (concurrent calls share the syncs).
    #[default]
    Immediate,
    /// Mutating calls return once the segment bytes are in the OS and the index transaction is
    /// committed in memory; a background thread syncs segments and then the index every
    /// `interval`. A process crash or a power loss may lose the writes acknowledged in the last
    /// interval (sled keeps committed transactions in memory until it is flushed); it never
    /// leaves an entry that points at missing bytes unnoticed (reads check CRCs).
    Batched {
        /// Time between background syncs.
        interval: Duration,
    },
}

/// How to open a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The store directory (created if missing).
    pub path: PathBuf,
    /// Durability of acknowledged writes.
    pub durability: Durability,
    /// Chunking parameters for a new store; an existing store keeps its own (see `FORMAT`).
    pub chunking: ChunkingParams,
    /// sled's page cache size in bytes.
    pub cache_bytes: u64,
    /// Size at which a segment is sealed and a new one started.
    pub segment_max_bytes: u64,
    /// Largest accepted upload in bytes.
    pub max_upload_bytes: u64,
    /// How sealed segments are read.
    pub read_mode: ReadMode,
    /// Segment file I/O (replace it to inject faults in tests).
    pub io: Arc<dyn SegmentIo>,
    /// How long gc keeps upload pieces and assembled bundle files that no file needs (24 h,
    /// as Sentry does).
    pub piece_grace: Duration,
}

impl StoreOptions {
    /// Defaults for a store at `path`: `Immediate`, 4 KiB average chunks, 64 MiB sled cache,
    /// 128 MiB segments, 1 GiB uploads, memory-mapped reads.
    pub fn new(path: impl Into<PathBuf>) -> StoreOptions {
        StoreOptions {
            path: path.into(),
            durability: Durability::Immediate,
            chunking: ChunkingParams::default(),
            cache_bytes: 64 << 20,
            segment_max_bytes: 128 << 20,
            max_upload_bytes: 1 << 30,
            read_mode: ReadMode::Mmap,
            io: Arc::new(StdIo),
            piece_grace: Duration::from_secs(24 * 3600),
        }
    }

    /// Sets the grace period of upload pieces.
    pub fn piece_grace(mut self, d: Duration) -> Self {
        self.piece_grace = d;
        self
    }

    /// Sets the durability.
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Sets the chunking parameters used if the store is new.
    pub fn chunking(mut self, c: ChunkingParams) -> Self {
        self.chunking = c;
        self
    }

    /// Sets the segment size.
    pub fn segment_max_bytes(mut self, n: u64) -> Self {
        self.segment_max_bytes = n;
        self
    }

    /// Sets the upload limit.
    pub fn max_upload_bytes(mut self, n: u64) -> Self {
        self.max_upload_bytes = n;
        self
    }

    /// Sets the read mode.
    pub fn read_mode(mut self, m: ReadMode) -> Self {
        self.read_mode = m;
        self
    }

    /// Sets sled's cache size.
    pub fn cache_bytes(mut self, n: u64) -> Self {
        self.cache_bytes = n;
        self
    }

    /// Sets the segment I/O backend.
    pub fn io(mut self, io: Arc<dyn SegmentIo>) -> Self {
        self.io = io;
        self
    }
}

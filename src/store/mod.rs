//! [`Store`]: the one entry type, and the public face of the library.
//!
//! The store's verbs live in files named for what they act on: `files.rs` (upload, read, list,
//! rename, delete), `releases.rs`, `bundles.rs` (chunk upload and assembly), `tokens.rs`,
//! `gc.rs` and `verify.rs`. Each checks its input, reads through the engine, and describes its
//! change as an index mutation that the engine commits (`engine/mod.rs` owns the order that
//! makes an acknowledgement durable). None of them touches the index's writer, the segments or
//! the sync points. The store has no async runtime and knows nothing of HTTP.

mod bundles;
mod files;
mod gc;
mod releases;
mod tokens;
pub(crate) mod types;
mod verify;

use std::path::Path;
use std::sync::Arc;

use crate::chunking::ChunkingParams;
use crate::engine::Engine;
use crate::error::Result;
use crate::options::StoreOptions;
use types::Stats;

pub use bundles::{
    AssembleOutcome, AssembleRequest, BundleEntry, Failure, PieceBatch, MAX_PIECE_BYTES,
};
pub use files::UploadTarget;
pub use gc::{GcReport, COMPACT_BELOW};
pub use tokens::{TokenInfo, ALL_SCOPES};
pub use verify::{Fault, VerifyReport};

/// The store. Cheap to clone; all clones share one open store. `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Store {
    engine: Arc<Engine>,
    /// Shared by the handles only (not by readers or the flush thread): the last handle to go
    /// stops the flush thread before releasing the engine. Otherwise the flush thread, holding a
    /// strong reference mid-sync, could be the one to drop the engine: it would join itself (a
    /// panic) and the store would stay locked after the caller dropped it.
    _handles: Arc<Handles>,
}

#[derive(Debug)]
struct Handles(Arc<Engine>);

impl Drop for Handles {
    fn drop(&mut self) {
        self.0.stop_flusher();
    }
}

impl Store {
    /// Opens the store described by `opts`, creating it if the directory holds none.
    ///
    /// Fails at once with [`crate::Error::Locked`] if another process holds it, and with
    /// [`crate::Error::UnsupportedVersion`] for a store of another format version.
    pub fn open(opts: StoreOptions) -> Result<Store> {
        let engine = Engine::open(opts)?;
        Ok(Store {
            _handles: Arc::new(Handles(engine.clone())),
            engine,
        })
    }

    /// Opens the store at `path` with default options.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Store> {
        Store::open(StoreOptions::new(path.as_ref()))
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        self.engine.path()
    }

    /// The chunking parameters this store was created with.
    pub fn chunking(&self) -> ChunkingParams {
        self.engine.chunking()
    }

    /// Store-wide counts and sizes. Files, contents and logical bytes are counters; the chunk
    /// figures come from a scan of the chunk records (docs/benchmarks.md has its speed).
    pub fn stats(&self) -> Result<Stats> {
        let index = self.engine.index();
        let c = index.counters()?;
        let (chunks, stored_bytes) = index.chunk_totals()?;
        Ok(Stats {
            files: c.files,
            contents: c.contents,
            chunks,
            logical_bytes: c.logical_bytes,
            stored_bytes,
            disk_bytes: self.disk_bytes(),
        })
    }

    /// Bytes on disk: segment files and the index.
    pub fn disk_bytes(&self) -> u64 {
        self.engine.disk_bytes()
    }

    /// Makes every acknowledged write durable now (useful with [`crate::Durability::Batched`]).
    pub fn sync(&self) -> Result<()> {
        self.engine.sync()
    }

    /// The engine, for the crate's test support.
    #[cfg(feature = "test-support")]
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
}

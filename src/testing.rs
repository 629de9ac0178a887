//! Test support: read-only views of the store's bookkeeping that the public API does not expose.
//!
//! The integration tests (notably the model test in `tests/model.rs`) compare the refcounts the
//! index actually stores with those recomputed from the file rows and with an independent model.
//! Nothing here mutates the store; it is hidden from the documentation and not a stable API.

use std::collections::HashMap;

use crate::error::Result;
use crate::store::Store;

/// Stored and recomputed refcounts of every content and chunk record (see
/// [`Store::debug_refcounts`]).
#[doc(hidden)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefcountReport {
    /// Refcount stored in each content record, by BLAKE3.
    pub contents: HashMap<[u8; 32], u64>,
    /// Refcount stored in each chunk record, by BLAKE3, including records at zero awaiting gc.
    pub chunks: HashMap<[u8; 32], u64>,
    /// Content refcounts recomputed from the file rows.
    pub expected_contents: HashMap<[u8; 32], u64>,
    /// Chunk refcounts recomputed from the manifests of the live contents (and pending records).
    pub expected_chunks: HashMap<[u8; 32], u64>,
    /// Pending chunk-reference records (0 whenever no operation is running).
    pub pending_records: usize,
}

impl Store {
    /// Reads every content and chunk record and recomputes the refcounts from the file rows.
    /// For tests only: it scans the whole index.
    #[doc(hidden)]
    pub fn debug_refcounts(&self) -> Result<RefcountReport> {
        let _m = self.inner.mutation_guard();
        let index = &self.inner.index;
        let mut contents = HashMap::new();
        for item in index.all_contents() {
            let (id, rec) = item?;
            contents.insert(id, rec.refcount);
        }
        let mut chunks = HashMap::new();
        for item in index.all_chunks() {
            let (id, rec) = item?;
            chunks.insert(id, rec.refcount);
        }
        let (expected_contents, expected_chunks) = index.expected_refcounts()?;
        Ok(RefcountReport {
            contents,
            chunks,
            expected_contents,
            expected_chunks,
            pending_records: index.pending_records(),
        })
    }
}

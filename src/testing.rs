//! Test support: read-only views of the store's bookkeeping that the public API does not expose.
//!
//! The integration tests (notably the model test in `tests/model.rs`) compare the content
//! refcounts the index actually stores with those recomputed from the file rows and with an
//! independent model, and the chunk records with the chunks the manifests list. Nothing here
//! mutates the store; it is hidden from the documentation and not a stable API.

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::store::Store;

/// Stored and recomputed content refcounts, and the chunk records against the chunks the
/// manifests list (see [`Store::debug_refcounts`]).
#[doc(hidden)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefcountReport {
    /// Refcount stored in each content record, by BLAKE3.
    pub contents: HashMap<[u8; 32], u64>,
    /// Content refcounts recomputed from the file rows, pieces and bundles.
    pub expected_contents: HashMap<[u8; 32], u64>,
    /// Every chunk record's payload length, by BLAKE3 (live, and dead ones awaiting gc).
    pub chunk_records: HashMap<[u8; 32], u32>,
    /// Every chunk some content's manifest lists (gc's mark set).
    pub live_chunks: HashSet<[u8; 32]>,
}

impl RefcountReport {
    /// The ids of the chunk records.
    pub fn recorded(&self) -> HashSet<[u8; 32]> {
        self.chunk_records.keys().copied().collect()
    }

    /// Live chunks without a record: each one is a file that cannot be read.
    pub fn missing_chunks(&self) -> usize {
        self.live_chunks
            .iter()
            .filter(|id| !self.chunk_records.contains_key(*id))
            .count()
    }

    /// Payload bytes of the chunk records no manifest lists (what the next gc removes).
    pub fn dead_bytes(&self) -> u64 {
        self.chunk_records
            .iter()
            .filter(|(id, _)| !self.live_chunks.contains(*id))
            .map(|(_, len)| u64::from(*len))
            .sum()
    }
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
        let mut chunk_records = HashMap::new();
        for item in index.all_chunks() {
            let (id, rec) = item?;
            chunk_records.insert(id, rec.len);
        }
        Ok(RefcountReport {
            contents,
            expected_contents: index.expected_content_refs()?,
            chunk_records,
            live_chunks: index.live_chunks()?,
        })
    }
}

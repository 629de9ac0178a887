//! Test support (feature `test-support`, hidden from the documentation, not a stable API): the
//! internals that the integration tests, fuzz targets and benches exercise directly, and
//! read-only views of the store's bookkeeping that the public API does not expose.
//!
//! The integration tests (notably the model test) compare the content refcounts the index
//! actually stores with those recomputed from the file rows and with an independent model, and
//! the chunk records with the chunks the manifests list. Nothing here mutates a store but
//! [`IndexWriter::damage_manifest_page`], which does what damage would.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::id::{ChunkId, ContentId};
use crate::index::codec::stored;
use crate::index::tables::{page_key, PAGES};
use crate::key::FileKey;
use crate::store::Store;

pub use crate::bundle::{parse_manifest, Bundle, BundleLimits};
pub use crate::chunking::{ingest, ChunkMeta, Ingested};
pub use crate::index::codec::{decode, encode, Stored, CODEC_VERSION};
pub use crate::index::records::*;
pub use crate::index::tables::ALL as TABLES;
pub use crate::index::{Index, IndexWriter};
pub use crate::key::{decode_parts, encode_parts};
pub use crate::segment::format::{
    check_record, decode_segment_header, encode_record, encode_segment_header, RecordHeader,
    HEADER_LEN, KIND_CHUNK, OFF_CRC, OFF_HASH, OFF_HEADER_CRC, OFF_KIND, OFF_LEN, OFF_RESERVED,
    OFF_VERSION, RECORD_MAGIC, RECORD_VERSION, SEGMENT_HEADER_LEN, SEGMENT_MAGIC, SEGMENT_VERSION,
    SEG_OFF_CRC, SEG_OFF_ID, SEG_OFF_RESERVED, SEG_OFF_VERSION,
};
pub use crate::segment::recover::{scan_slice, ScanOutcome, ScannedRecord};
pub use crate::segment::{Location, Segments};

/// A file key encoded as the index encodes it inside a file record (for the codec's fuzz target:
/// [`FileKey`] itself implements no encoding trait, being public).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFileKey {
    /// The key.
    pub key: FileKey,
}
stored!(StoredFileKey { key });

/// Stored and recomputed content refcounts, and the chunk records against the chunks the
/// manifests list (see [`debug_refcounts`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefcountReport {
    /// Refcount stored in each content record.
    pub contents: HashMap<ContentId, u64>,
    /// Content refcounts recomputed from the file rows, pieces and bundles.
    pub expected_contents: HashMap<ContentId, u64>,
    /// Every chunk record's payload length (live, and dead ones awaiting gc).
    pub chunk_records: HashMap<ChunkId, u32>,
    /// Every chunk some content's manifest lists (gc's mark set).
    pub live_chunks: HashSet<ChunkId>,
}

impl RefcountReport {
    /// The ids of the chunk records.
    pub fn recorded(&self) -> HashSet<ChunkId> {
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
    /// Reads every content and chunk record and recomputes the refcounts from the file rows,
    /// with gc held off. It scans the whole index.
    pub fn debug_refcounts(&self) -> Result<RefcountReport> {
        let engine = self.engine();
        engine.quiesced(|| {
            let index = engine.index();
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
        })
    }
}

impl IndexWriter {
    /// Removes manifest page `page` of content `id`, as damage would. For tests of what verify
    /// and gc do with a damaged index; never called by relstore. True if it existed.
    pub fn damage_manifest_page(&self, id: &ContentId, page: u32) -> Result<bool> {
        let gone = self
            .tree(PAGES)
            .remove(page_key(id, page))
            .map_err(|e| Error::index("damage manifest page", e))?;
        self.flush()?;
        Ok(gone.is_some())
    }
}

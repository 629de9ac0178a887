//! Chunk records in the index: `chunks` (chunk id → where its bytes are), and gc's two changes
//! to them (sweeping dead records, pointing moved chunks at their copies).
//!
//! Chunk records are the one exception to "one transaction per operation", and on purpose: a
//! large upload has hundreds of thousands of chunks, and sled 0.34 runs every transaction under a
//! process-wide write lock (`concurrency_control::write()`), so taking per-chunk references in
//! transactions serialised the whole index behind the upload. A chunk record says only "these
//! bytes are here"; it is true from the moment it is inserted, whether or not the upload that
//! wrote it ever commits, so it needs no transaction. It is inserted by the upload that appended
//! the chunk once the bytes are where its durability needs them ([`IndexWriter::insert_chunks`],
//! called only by the engine's commit protocol and its staging), and removed only by gc when no
//! manifest lists it. Contents keep their refcounts (files, pieces and bundles refer to them
//! inside the operation's transaction).

use super::records::ChunkRec;
use super::tables::CHUNKS;
use super::{Index, IndexWriter, Mutation};
use crate::error::{Error, Object, Result};
use crate::id::ChunkId;
use crate::segment::Location;

/// A chunk record ready to insert: the chunk and where its bytes are.
pub type ChunkEntry = (ChunkId, ChunkRec);

/// Chunk records changed per transaction by gc (keeps transactions small: sled holds a
/// transaction's writes in memory).
pub(crate) const GC_BATCH: usize = 8192;

impl Index {
    /// The chunk record of `id`, if any (live or awaiting gc).
    pub fn chunk(&self, id: &ChunkId) -> Result<Option<ChunkRec>> {
        CHUNKS.get(self.trees(), id)
    }

    /// Number and total payload bytes of the chunk records (live or awaiting gc). Scans the
    /// `chunks` table: chunk records are written outside transactions, so no counter could be
    /// kept exact through a crash.
    pub fn chunk_totals(&self) -> Result<(u64, u64)> {
        let mut n = 0u64;
        let mut bytes = 0u64;
        for item in CHUNKS.scan(self.trees(), []) {
            let (_, rec) = item?;
            n += 1;
            bytes += u64::from(rec.len);
        }
        Ok((n, bytes))
    }

    /// Chunk records, for gc and verify: (id, record) in id order.
    pub fn all_chunks(&self) -> impl Iterator<Item = Result<ChunkEntry>> + '_ {
        CHUNKS.scan(self.trees(), []).map(|item| {
            let (k, rec) = item?;
            let id = ChunkId::from_slice(&k)
                .ok_or_else(|| Error::corrupt(Object::Index(CHUNKS.what), "malformed key"))?;
            Ok((id, rec))
        })
    }
}

impl IndexWriter {
    /// Records chunks an upload appended, each with a plain insert that keeps an existing record
    /// (a concurrent upload that appended the same chunk first wins; both copies are valid, and
    /// the one no record points at is garbage for gc). Call only once the chunks' bytes are as
    /// durable as the store's durability promises: from then on any upload may use them.
    ///
    /// Plain inserts take sled's process-wide lock shared, so this runs beside other uploads'
    /// lookups and inserts; a transaction would exclude them all.
    pub(crate) fn insert_chunks(&self, entries: &[ChunkEntry]) -> Result<()> {
        let t = self.tree(CHUNKS);
        for (id, rec) in entries {
            t.compare_and_swap(id, None as Option<&[u8]>, Some(super::codec::encode(rec)))
                .map_err(|e| Error::index("record chunk", e))?
                // An existing record is kept: nothing to do.
                .ok();
        }
        Ok(())
    }
}

/// Removes the records of chunks no manifest lists (gc only: it holds the store's exclusive
/// lock, so no upload can be about to use one). Returns how many were removed.
#[derive(Debug)]
pub struct DropDeadChunks<'a>(pub &'a [ChunkId]);

impl Mutation for DropDeadChunks<'_> {
    type Output = u64;
    /// gc deletes segment files after its sweep: the index must not lag behind.
    const ALWAYS_DURABLE: bool = true;

    fn apply(&self, ix: &IndexWriter) -> Result<u64> {
        let t = ix.tree(CHUNKS);
        let mut n = 0;
        for id in self.0 {
            if t.remove(id)
                .map_err(|e| Error::index("drop dead chunk", e))?
                .is_some()
            {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Points moved chunks `(id, from, to)` at their new locations (compaction), if they still live
/// where the compaction found them, in transactions of [`GC_BATCH`] moves.
#[derive(Debug)]
pub struct RelocateChunks<'a>(pub &'a [(ChunkId, Location, Location)]);

impl Mutation for RelocateChunks<'_> {
    type Output = ();
    /// The old segment is deleted next: the index must point at the copies durably first.
    const ALWAYS_DURABLE: bool = true;

    fn apply(&self, ix: &IndexWriter) -> Result<()> {
        for batch in self.0.chunks(GC_BATCH) {
            ix.transact("relocate chunks", |t| {
                for (id, from, to) in batch {
                    if let Some(mut rec) = t.get(CHUNKS, id)? {
                        if rec.location == *from {
                            rec.location = *to;
                            t.put(CHUNKS, id, &rec)?;
                        }
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

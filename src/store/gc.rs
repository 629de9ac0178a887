//! `Store::gc`: reclaim the space of chunks no content uses any more.
//!
//! Chunk records carry no refcount (see `index/chunks.rs`): deleting a file lowers its content's
//! refcount and, at zero, removes the content and its manifest, but never touches a chunk
//! record. gc tells live chunks from dead ones by marking: a chunk some content's manifest lists
//! is live; any other chunk record is dead (chunks of deleted contents, and chunks an upload
//! recorded but never committed because it failed, was abandoned or its process died). Marking
//! holds one id per live chunk in memory.
//!
//! gc runs as the engine's exclusive write (uploads, deletes and renames wait; readers never
//! do), so no upload is between finding a chunk and committing the content that lists it. In
//! this order, each step a mutation that the engine makes durable before the next:
//! 1. mark the live chunks, remove every other chunk record, sync the index. A manifest that
//!    cannot be read stops gc here, before it removes anything: its chunks could not be told
//!    from garbage (`verify` names the damaged content and files);
//! 2. pick segments whose live fraction is below [`COMPACT_BELOW`] (sealing the active segment
//!    first if it qualifies); a segment with nothing live is simply deleted;
//! 3. copy each picked segment's live records, CRC-checked, to the active segment; sync it;
//! 4. point the moved chunks at their copies in one transaction; sync the index;
//! 5. delete the old segment file. Readers holding it keep their map or handle until done, and a
//!    reader that looked a chunk up before the move re-resolves it and reads the copy.
//!
//! A crash between any two steps leaves every live chunk reachable: before step 4 the index still
//! points at the old file, after it at the synced copy. Bytes that were written but never indexed
//! (an upload killed before its transaction) are dead from the start and go with their segment.

use std::collections::BTreeMap;
use std::fmt;

use super::types::Progress;
use super::Store;
use crate::clock::now_ms;
use crate::engine::Write;
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::index::chunks::{ChunkEntry, DropDeadChunks, RelocateChunks, GC_BATCH};
use crate::index::pieces::ExpirePieces;
use crate::index::records::ChunkRec;
use crate::segment::format::{check_record, HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::segment::Location;

/// A segment is compacted when less than this fraction of its record bytes is live.
pub const COMPACT_BELOW: f64 = 0.5;
/// Bytes of copied records per append.
const COPY_BATCH: usize = 1 << 20;

/// The live chunk records of each segment, by segment id.
type LiveBySegment = BTreeMap<u32, Vec<ChunkEntry>>;

/// What [`Store::gc`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Upload pieces past their grace period that were dropped.
    pub expired_pieces: u64,
    /// Assembled bundle files past their grace period that were dropped (entries stay).
    pub expired_bundles: u64,
    /// Chunk records no content listed that were removed.
    pub dead_chunks: u64,
    /// Segments whose live records were copied elsewhere before deletion.
    pub segments_compacted: u64,
    /// Segment files deleted (compacted or entirely dead).
    pub segments_removed: u64,
    /// Live bytes copied by compaction.
    pub bytes_copied: u64,
    /// Bytes on disk (segments and index) before.
    pub disk_before: u64,
    /// Bytes on disk (segments and index) after.
    pub disk_after: u64,
    /// Segments left alone because a live record in them failed its check (run `verify`).
    pub skipped_damaged: Vec<u32>,
}

impl GcReport {
    /// Bytes given back to the file system.
    pub fn reclaimed(&self) -> u64 {
        self.disk_before.saturating_sub(self.disk_after)
    }
}

impl fmt::Display for GcReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reclaimed {} bytes ({} -> {} on disk): {} dead chunks dropped, {} segments removed ({} compacted, {} live bytes copied)",
            self.reclaimed(),
            self.disk_before,
            self.disk_after,
            self.dead_chunks,
            self.segments_removed,
            self.segments_compacted,
            self.bytes_copied
        )?;
        if !self.skipped_damaged.is_empty() {
            write!(
                f,
                "; skipped damaged segments {:?} (run verify)",
                self.skipped_damaged
            )?;
        }
        Ok(())
    }
}

impl Store {
    /// Reclaims the space of unreferenced chunks (see the module docs). Uploads, deletes and
    /// renames wait while it runs; reads do not.
    pub fn gc(&self, progress: &mut dyn FnMut(Progress)) -> Result<GcReport> {
        let mut write = self.engine.exclusive()?;
        let mut report = GcReport {
            disk_before: self.disk_bytes(),
            ..GcReport::default()
        };
        // 0. Upload pieces and bundle files past their grace period release their contents.
        let grace = self.engine.options().piece_grace.as_millis() as i64;
        (report.expired_pieces, report.expired_bundles) = write.commit(&ExpirePieces {
            cutoff_ms: now_ms() - grace,
        })?;
        // 1. Mark, then sweep the chunk records.
        let mut live = self.sweep(&mut write, &mut report, progress)?;
        // 2. Pick segments.
        let picked = self.pick_segments(&write, &live)?;
        // 3-5. Copy, switch, delete, one segment at a time.
        let total = picked.len() as u64;
        for (i, seg) in picked.into_iter().enumerate() {
            progress(Progress {
                phase: "compact",
                done: i as u64,
                total,
            });
            let mut records = live.remove(&seg).unwrap_or_default();
            records.sort_by_key(|(_, r)| r.location.offset);
            self.compact(&mut write, seg, &records, &mut report)?;
        }
        progress(Progress {
            phase: "compact",
            done: total,
            total,
        });
        report.disk_after = self.disk_bytes();
        Ok(report)
    }

    /// Step 1: marks the chunks some manifest lists and removes every other chunk record.
    /// Returns the live records by segment.
    fn sweep(
        &self,
        write: &mut Write<'_>,
        report: &mut GcReport,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<LiveBySegment> {
        let index = self.engine.index();
        let marked = index.live_chunks()?;
        let mut dead: Vec<ChunkId> = Vec::new();
        let mut live = LiveBySegment::new();
        for item in index.all_chunks() {
            let (id, rec) = item?;
            if !marked.contains(&id) {
                dead.push(id);
            } else {
                live.entry(rec.location.segment)
                    .or_default()
                    .push((id, rec));
            }
        }
        drop(marked);
        let total = dead.len() as u64;
        for (i, batch) in dead.chunks(GC_BATCH).enumerate() {
            report.dead_chunks += write.commit(&DropDeadChunks(batch))?;
            progress(Progress {
                phase: "scan",
                done: ((i + 1) * GC_BATCH).min(dead.len()) as u64,
                total,
            });
        }
        Ok(live)
    }

    /// Step 2: the segments whose live fraction is below [`COMPACT_BELOW`], sealing the active
    /// segment first if it qualifies.
    fn pick_segments(&self, write: &Write<'_>, live: &LiveBySegment) -> Result<Vec<u32>> {
        let live_bytes = |id: u32| -> u64 {
            live.get(&id).map_or(0, |v| {
                v.iter()
                    .map(|(_, r)| (HEADER_LEN + r.len as usize) as u64)
                    .sum()
            })
        };
        let qualifies = |id: u32, len: u64| {
            let body = len.saturating_sub(SEGMENT_HEADER_LEN as u64);
            body > 0 && (live_bytes(id) as f64) < COMPACT_BELOW * body as f64
        };
        let ((active_id, active_len), _) = self.engine.segment_sizes();
        if qualifies(active_id, active_len) {
            write.seal_active()?;
        }
        let (_, sealed) = self.engine.segment_sizes();
        Ok(sealed
            .into_iter()
            .filter(|&(id, len)| qualifies(id, len))
            .map(|(id, _)| id)
            .collect())
    }

    /// Steps 3 to 5 for segment `seg`: copies its live `records`, points the index at the
    /// copies (the commit syncs the copies first and the index after), deletes the file. A
    /// segment whose live record fails its check is left alone for verify to report.
    fn compact(
        &self,
        write: &mut Write<'_>,
        seg: u32,
        records: &[ChunkEntry],
        report: &mut GcReport,
    ) -> Result<()> {
        match self.copy_records(write, records, report) {
            Ok(moves) => {
                if !moves.is_empty() {
                    write.commit(&RelocateChunks(&moves))?;
                    report.segments_compacted += 1;
                }
                write.remove_segment(seg)?;
                report.segments_removed += 1;
                Ok(())
            }
            Err(Error::Corrupt { .. }) => {
                report.skipped_damaged.push(seg);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Appends CRC-checked copies of `records` to the active segment. Returns the moves.
    fn copy_records(
        &self,
        write: &mut Write<'_>,
        records: &[ChunkEntry],
        report: &mut GcReport,
    ) -> Result<Vec<(ChunkId, Location, Location)>> {
        let mut moves = Vec::with_capacity(records.len());
        let mut batch: Vec<u8> = Vec::with_capacity(COPY_BATCH + (64 << 10));
        let mut pending: Vec<(ChunkId, Location, usize)> = Vec::new();
        let mut flush = |write: &mut Write<'_>,
                         batch: &mut Vec<u8>,
                         pending: &mut Vec<(ChunkId, Location, usize)>|
         -> Result<()> {
            if batch.is_empty() {
                return Ok(());
            }
            let at = write.append_copies(batch)?;
            for (id, from, off) in pending.drain(..) {
                moves.push((
                    id,
                    from,
                    Location {
                        segment: at.segment,
                        offset: at.offset + off as u64,
                    },
                ));
            }
            batch.clear();
            Ok(())
        };
        for (id, rec) in records {
            let rec: &ChunkRec = rec;
            let run = self
                .engine
                .read_run(rec.location, HEADER_LEN + rec.len as usize)?;
            // Never copy bytes that fail their check: a damaged chunk stays where verify finds it.
            check_record(run.as_slice(), rec.len, rec.crc32, id)?;
            pending.push((*id, rec.location, batch.len()));
            batch.extend_from_slice(run.as_slice());
            report.bytes_copied += u64::from(rec.len);
            if batch.len() >= COPY_BATCH {
                flush(write, &mut batch, &mut pending)?;
            }
        }
        flush(write, &mut batch, &mut pending)?;
        Ok(moves)
    }
}

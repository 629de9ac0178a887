//! Staging an upload: the one streaming pass over its bytes, with the chunks the index does not
//! hold yet appended to the active segment and recorded in the `chunks` table, before the
//! upload's index transaction.
//!
//! Appends run on a writer thread once an upload outgrows one batch, so that copying records into
//! the page cache (about as costly as SHA-1; docs/benchmarks.md, W2) overlaps with chunking and
//! hashing instead of following them on the caller's thread. A recorder thread inserts the
//! appended chunks' records while the upload streams (a sled insert costs about as much CPU as
//! hashing the chunk; same section); it runs steps 1 and 2 of the commit protocol (`mod.rs`)
//! ahead, for the bulk of a large upload: with `Immediate` durability it first makes the bytes
//! durable, every [`SYNC_AHEAD`] bytes, so that the disk writes back during hashing and no record
//! ever points at bytes a crash could lose. What is left when the stream ends the commit records
//! after its own sync ([`Staged::unrecorded`]). Small uploads, the common case, append their one
//! batch inline and start no thread.

use std::collections::HashMap;
use std::io::Read;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::thread::{Scope, ScopedJoinHandle};

use super::Engine;
use crate::chunking::{self, ChunkMeta, Ingested};
use crate::error::{Error, Result};
use crate::id::ContentId;
use crate::index::chunks::ChunkEntry;
use crate::index::contents::ChunkLocations;
use crate::index::records::ChunkRec;
use crate::options::Durability;
use crate::segment::format::encode_record;
use crate::segment::Location;

/// Size at which an upload's new chunks are appended to the segment as one write.
const APPEND_BATCH: usize = 1 << 20;
/// Batches queued for the writer thread (bounds memory: queued + writing + filling).
const QUEUED_BATCHES: usize = 2;
/// With `Immediate` durability, bytes appended between the syncs (and record insertions) that
/// run while an upload streams.
pub(crate) const SYNC_AHEAD: u64 = 16 << 20;

/// An upload streamed into the segments but not yet in the index.
pub(super) struct Staged {
    /// Hashes and chunk list.
    pub(super) ingested: Ingested,
    /// Where each distinct chunk is: appended by this upload or found in the index.
    pub(super) chunks: ChunkLocations,
    /// Records of appended chunks not inserted yet. The commit inserts them after making the
    /// bytes durable and before its index transaction.
    pub(super) unrecorded: Vec<ChunkEntry>,
    /// Sync ticket of the last append, if anything was appended.
    pub(super) ticket: Option<u64>,
}

/// A chunk framed into a batch, at `offset` in it.
struct Framed {
    id: crate::id::ChunkId,
    offset: u32,
    len: u32,
    crc32: u32,
}

/// A batch of framed chunks for the writer.
struct Batch {
    bytes: Vec<u8>,
    chunks: Vec<Framed>,
}

/// Where each batch an upload handed over was appended (batch `i` at `starts[i]`), the sync
/// ticket of the last append, and the records of appended chunks not handed to the recorder.
#[derive(Default)]
struct Appended {
    starts: Vec<Location>,
    ticket: Option<u64>,
    unrecorded: Vec<ChunkEntry>,
}

impl Appended {
    fn append(&mut self, engine: &Engine, batch: &mut Batch) -> Result<()> {
        if batch.bytes.is_empty() {
            return Ok(());
        }
        let (at, ticket) = engine.segments.append(&batch.bytes)?;
        self.starts.push(at);
        self.ticket = Some(ticket);
        self.unrecorded.extend(batch.chunks.drain(..).map(|c| {
            let rec = ChunkRec {
                location: Location {
                    segment: at.segment,
                    offset: at.offset + u64::from(c.offset),
                },
                len: c.len,
                crc32: c.crc32,
            };
            (c.id, rec)
        }));
        Ok(())
    }
}

/// Records for the recorder thread: insert them once the segment is durable up to `ticket`
/// (with `Immediate`).
struct Recording {
    ticket: u64,
    records: Vec<ChunkEntry>,
}

/// The writer thread's side: its queue, the emptied buffers it hands back, its result, and the
/// recorder thread it feeds.
struct Writer<'s> {
    queue: SyncSender<Batch>,
    returned: Receiver<Batch>,
    handle: ScopedJoinHandle<'s, Result<Appended>>,
    recorder: ScopedJoinHandle<'s, Result<()>>,
}

/// Frames new chunks into batches and appends them: inline until the first full batch, then
/// through a writer thread.
struct Appender<'s, 'e> {
    engine: &'e Engine,
    scope: &'s Scope<'s, 'e>,
    batch: Batch,
    /// Every chunk this upload framed, so that a chunk repeated within the upload is written
    /// once. Until the batches are appended, a value holds the chunk's batch number in `segment`
    /// and its offset in that batch in `offset`; [`Appender::finish`] turns them into the
    /// locations the batches got. One map serves both purposes (a 1 GiB upload frames ~260,000
    /// chunks).
    placed: ChunkLocations,
    /// Chunks of the upload found in the index, and where.
    found: ChunkLocations,
    /// Batches handed over so far: the number of the one being filled.
    handed: u32,
    writer: Option<Writer<'s>>,
}

impl<'s, 'e> Appender<'s, 'e> {
    /// Whether this upload framed chunk `id` already or found it in the index.
    fn holds(&self, id: &crate::id::ChunkId) -> bool {
        self.placed.contains_key(id) || self.found.contains_key(id)
    }

    fn push(&mut self, data: &[u8], meta: &ChunkMeta) -> Result<()> {
        let offset = self.batch.bytes.len();
        self.placed.insert(
            meta.id,
            Location {
                segment: self.handed,
                offset: offset as u64,
            },
        );
        self.batch.chunks.push(Framed {
            id: meta.id,
            offset: offset as u32,
            len: meta.len,
            crc32: meta.crc32,
        });
        encode_record(&mut self.batch.bytes, data, meta.crc32, &meta.id);
        if self.batch.bytes.len() >= APPEND_BATCH {
            self.send()?;
        }
        Ok(())
    }

    /// Hands the full batch to the writer thread (starting it on first use).
    fn send(&mut self) -> Result<()> {
        let engine = self.engine;
        let writer = self.writer.get_or_insert_with(|| {
            let (queue, jobs) = mpsc::sync_channel::<Batch>(QUEUED_BATCHES);
            let (give_back, returned) = mpsc::channel::<Batch>();
            // One recording in flight at most: the writer gathers records while it waits.
            let (hand, handed) = mpsc::sync_channel::<Recording>(1);
            let recorder = self.scope.spawn(move || record_ahead(engine, handed));
            let handle = self
                .scope
                .spawn(move || write_batches(engine, jobs, give_back, hand));
            Writer {
                queue,
                returned,
                handle,
                recorder,
            }
        });
        let fresh = writer.returned.try_recv().unwrap_or_else(|_| Batch {
            bytes: Vec::with_capacity(APPEND_BATCH + (64 << 10)),
            chunks: Vec::new(),
        });
        let batch = std::mem::replace(&mut self.batch, fresh);
        self.handed += 1;
        if writer.queue.send(batch).is_err() {
            // The writer stopped on an error: report it.
            return match self.writer.take().map(|w| w.handle.join()) {
                Some(Ok(Err(e))) => Err(e),
                _ => Err(writer_gone()),
            };
        }
        Ok(())
    }

    /// Appends what is left, waits for the writer and recorder threads, and returns where each
    /// chunk is, the records not inserted yet, and the sync ticket of the last append.
    fn finish(mut self) -> Result<(ChunkLocations, Vec<ChunkEntry>, Option<u64>)> {
        let done = match self.writer.take() {
            None => {
                let mut done = Appended::default();
                done.append(self.engine, &mut self.batch)?;
                done
            }
            Some(w) => {
                let last = std::mem::replace(
                    &mut self.batch,
                    Batch {
                        bytes: Vec::new(),
                        chunks: Vec::new(),
                    },
                );
                let sent = last.bytes.is_empty() || w.queue.send(last).is_ok();
                drop(w.queue);
                let done = w.handle.join().map_err(|_| writer_gone())?;
                // The writer has dropped its sender, so the recorder ends once it has inserted
                // what it was handed.
                let recorded = w.recorder.join().map_err(|_| writer_gone())?;
                let done = done?;
                recorded?;
                if !sent {
                    return Err(writer_gone());
                }
                done
            }
        };
        for at in self.placed.values_mut() {
            // Batches are appended in the order they were handed over, each one whole.
            let start = done
                .starts
                .get(at.segment as usize)
                .ok_or_else(writer_gone)?;
            *at = Location {
                segment: start.segment,
                offset: start.offset + at.offset,
            };
        }
        let mut chunks = self.placed;
        chunks.extend(self.found);
        Ok((chunks, done.unrecorded, done.ticket))
    }
}

fn writer_gone() -> Error {
    Error::Internal {
        what: "the segment writer thread stopped",
    }
}

/// The writer thread: appends each batch, and hands the records of what it appended to the
/// recorder (with `Immediate`, every [`SYNC_AHEAD`] bytes, so that each sync covers a good run).
/// Records the recorder cannot take yet (it is busy, or stopped on an error) stay in the result.
fn write_batches(
    engine: &Engine,
    jobs: Receiver<Batch>,
    give_back: Sender<Batch>,
    recorder: SyncSender<Recording>,
) -> Result<Appended> {
    let mut done = Appended::default();
    let mut unsynced = 0u64;
    let every = match engine.opts.durability {
        Durability::Immediate => SYNC_AHEAD,
        Durability::Batched { .. } => 0,
    };
    for mut batch in jobs {
        done.append(engine, &mut batch)?;
        unsynced += batch.bytes.len() as u64;
        if let Some(ticket) = done.ticket {
            if unsynced >= every && !done.unrecorded.is_empty() {
                let r = Recording {
                    ticket,
                    records: std::mem::take(&mut done.unrecorded),
                };
                match recorder.try_send(r) {
                    Ok(()) => unsynced = 0,
                    Err(TrySendError::Full(r) | TrySendError::Disconnected(r)) => {
                        done.unrecorded = r.records;
                    }
                }
            }
        }
        batch.bytes.clear();
        // The stager may have finished already; then the buffer is simply dropped.
        let _ = give_back.send(batch);
    }
    Ok(done)
}

/// The recorder thread: makes the segment durable up to each recording's ticket (`Immediate`),
/// then inserts its records. A failed sync poisons the store (see `group_commit.rs`); either
/// failure fails the upload.
fn record_ahead(engine: &Engine, handed: Receiver<Recording>) -> Result<()> {
    for r in handed {
        if let Durability::Immediate = engine.opts.durability {
            engine.segments.sync(r.ticket)?;
        }
        engine.index.insert_chunks(&r.records)?;
    }
    Ok(())
}

impl Engine {
    /// Streams `reader` once (see [`chunking::ingest_or_known`]) and appends its chunks that the
    /// index does not hold yet to the active segment, in batches, recording most of them (see
    /// the module docs). Called by [`super::Write::stage`], with the mutation lock held until the
    /// write commits or is dropped.
    pub(super) fn stage(&self, reader: &mut dyn Read, limit: u64) -> Result<Staged> {
        std::thread::scope(|scope| {
            let mut appender = Appender {
                engine: self,
                scope,
                batch: Batch {
                    bytes: Vec::new(),
                    chunks: Vec::new(),
                },
                placed: HashMap::new(),
                found: HashMap::new(),
                handed: 0,
                writer: None,
            };
            let ingested = chunking::ingest_or_known(
                reader,
                self.chunking,
                limit,
                &mut |id| self.stored_ingest(id),
                &mut |data, meta| {
                    if appender.holds(&meta.id) {
                        return Ok(());
                    }
                    if let Some(rec) = self.index.chunk(&meta.id)? {
                        appender.found.insert(meta.id, rec.location);
                        return Ok(());
                    }
                    appender.push(data, meta)
                },
            );
            // Always wait for the writer, also when the pass failed.
            let appended = appender.finish();
            let ingested = ingested?;
            let (chunks, unrecorded, ticket) = appended?;
            Ok(Staged {
                ingested,
                chunks,
                unrecorded,
                ticket,
            })
        })
    }

    /// What ingesting the stored content `id` again would produce, read from the index (the
    /// small-duplicate shortcut of [`chunking::ingest_or_known`]); `None` when it is not stored.
    fn stored_ingest(&self, id: &ContentId) -> Result<Option<Ingested>> {
        let Some(rec) = self.index.content(id)? else {
            return Ok(None);
        };
        let chunks = self
            .index
            .manifest(id, &rec)?
            .into_iter()
            .map(|r| ChunkMeta {
                id: r.id,
                crc32: r.crc32,
                len: r.len,
            })
            .collect();
        Ok(Some(Ingested {
            content_id: *id,
            sha1: rec.sha1,
            size: rec.size,
            chunks,
        }))
    }
}

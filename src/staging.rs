//! Staging an upload: the one streaming pass over its bytes, with the chunks the index does not
//! hold yet appended to the active segment, before the upload's index transaction.
//!
//! Appends run on a writer thread once an upload outgrows one batch, so that copying records into
//! the page cache (as costly as SHA-1 on this hardware, see docs/benchmarks.md, W2) overlaps with
//! chunking and hashing instead of following them on the caller's thread. With `Immediate`
//! durability a syncer thread also makes what was appended durable every [`SYNC_AHEAD`] bytes
//! while the upload streams, so that the disk writes back during hashing and the sync before
//! the commit finds little left. Small uploads, the common case, append their one batch inline
//! and start no thread.

use std::collections::HashMap;
use std::io::Read;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

use crate::content::ingest::{self, ChunkMeta, Ingested};
use crate::error::{Error, Result};
use crate::segment::record::encode_record;
use crate::segment::Location;
use crate::store::{Durability, Inner};

/// Size at which an upload's new chunks are appended to the segment as one write.
const APPEND_BATCH: usize = 1 << 20;
/// Batches queued for the writer thread (bounds memory: queued + writing + filling).
const QUEUED_BATCHES: usize = 2;
/// With `Immediate` durability, bytes appended between syncs started while an upload streams.
pub(crate) const SYNC_AHEAD: u64 = 16 << 20;

/// Where each chunk an upload appended went.
pub(crate) type Written = HashMap<[u8; 32], Location>;

/// An upload streamed into the segments but not yet in the index.
pub(crate) struct Staged {
    /// Hashes and chunk list.
    pub(crate) ingested: Ingested,
    /// Chunks this upload appended (absent from the index when it looked).
    pub(crate) written: Written,
    /// Sync ticket of the last append, if anything was appended.
    pub(crate) ticket: Option<u64>,
}

/// Where each batch an upload handed over was appended (batch `i` at `starts[i]`), and the sync
/// ticket of the last append.
#[derive(Default)]
struct Appended {
    starts: Vec<Location>,
    ticket: Option<u64>,
}

impl Appended {
    fn append(&mut self, inner: &Inner, batch: &[u8]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let (at, ticket) = inner.segments.append(batch)?;
        self.starts.push(at);
        self.ticket = Some(ticket);
        Ok(())
    }
}

/// The writer thread's side: its queue, the emptied buffers it hands back, and its result.
struct Writer<'s> {
    queue: SyncSender<Vec<u8>>,
    returned: Receiver<Vec<u8>>,
    handle: ScopedJoinHandle<'s, Result<Appended>>,
}

/// Frames new chunks into batches and appends them: inline until the first full batch, then
/// through a writer thread.
struct Appender<'s, 'e> {
    inner: &'e Inner,
    scope: &'s Scope<'s, 'e>,
    batch: Vec<u8>,
    /// Every chunk this upload framed, so that a chunk repeated within the upload is written
    /// once. Until the batches are appended, a value holds the chunk's batch number in `segment`
    /// and its offset in that batch in `offset`; [`Appender::finish`] turns them into the
    /// locations the batches got. One map serves both purposes (a 1 GiB upload frames ~260,000
    /// chunks).
    placed: Written,
    /// Batches handed over so far: the number of the one being filled.
    handed: u32,
    writer: Option<Writer<'s>>,
}

impl<'s, 'e> Appender<'s, 'e> {
    /// Whether this upload framed chunk `id` already.
    fn holds(&self, id: &[u8; 32]) -> bool {
        self.placed.contains_key(id)
    }

    fn push(&mut self, data: &[u8], meta: &ChunkMeta) -> Result<()> {
        let pending = Location {
            segment: self.handed,
            offset: self.batch.len() as u64,
        };
        self.placed.insert(meta.blake3, pending);
        encode_record(&mut self.batch, data, meta.crc32, &meta.blake3);
        if self.batch.len() >= APPEND_BATCH {
            self.send()?;
        }
        Ok(())
    }

    /// Hands the full batch to the writer thread (starting it on first use).
    fn send(&mut self) -> Result<()> {
        let inner = self.inner;
        let writer = self.writer.get_or_insert_with(|| {
            let (queue, jobs) = mpsc::sync_channel::<Vec<u8>>(QUEUED_BATCHES);
            let (give_back, returned) = mpsc::channel::<Vec<u8>>();
            let syncer = match inner.opts.durability {
                Durability::Immediate => {
                    // One request in flight at most: a later one covers what an earlier
                    // skipped one would have.
                    let (ask, asked) = mpsc::sync_channel::<u64>(1);
                    self.scope.spawn(move || sync_ahead(inner, asked));
                    Some(ask)
                }
                Durability::Batched { .. } => None,
            };
            let handle = self
                .scope
                .spawn(move || write_batches(inner, jobs, give_back, syncer));
            Writer {
                queue,
                returned,
                handle,
            }
        });
        let fresh = writer
            .returned
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(APPEND_BATCH + (64 << 10)));
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

    /// Appends what is left, waits for the writer thread, and returns where each framed chunk
    /// went, with the sync ticket of the last append.
    fn finish(mut self) -> Result<(Written, Option<u64>)> {
        let done = match self.writer.take() {
            None => {
                let mut done = Appended::default();
                done.append(self.inner, &self.batch)?;
                done
            }
            Some(w) => {
                let last = std::mem::take(&mut self.batch);
                let sent = last.is_empty() || w.queue.send(last).is_ok();
                drop(w.queue);
                let done = w.handle.join().map_err(|_| writer_gone())??;
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
        Ok((self.placed, done.ticket))
    }
}

fn writer_gone() -> Error {
    Error::Source(std::io::Error::other("segment writer thread stopped"))
}

fn write_batches(
    inner: &Inner,
    jobs: Receiver<Vec<u8>>,
    give_back: Sender<Vec<u8>>,
    syncer: Option<SyncSender<u64>>,
) -> Result<Appended> {
    let mut done = Appended::default();
    let mut unsynced = 0u64;
    for mut batch in jobs {
        done.append(inner, &batch)?;
        unsynced += batch.len() as u64;
        if let (Some(s), Some(t)) = (&syncer, done.ticket) {
            if unsynced >= SYNC_AHEAD && s.try_send(t).is_ok() {
                unsynced = 0;
            }
        }
        batch.clear();
        // The stager may have finished already; then the buffer is simply dropped.
        let _ = give_back.send(batch);
    }
    Ok(done)
}

/// The syncer thread: makes the segment durable up to each ticket it is handed. A failure
/// poisons the store (see `group_commit.rs`), so the upload's own sync before its commit fails
/// too; nothing to report here.
fn sync_ahead(inner: &Inner, asked: Receiver<u64>) {
    for t in asked {
        if inner.segments.sync(t).is_err() {
            return;
        }
    }
}

impl Inner {
    /// Streams `reader` once (see [`ingest::ingest_or_known`]) and appends its chunks that the
    /// index does not hold yet to the active segment, in batches. Call with the mutation guard
    /// held, and commit (or drop) the result before releasing it.
    pub(crate) fn stage(&self, reader: &mut dyn Read, limit: u64) -> Result<Staged> {
        std::thread::scope(|scope| {
            let mut appender = Appender {
                inner: self,
                scope,
                batch: Vec::new(),
                placed: HashMap::new(),
                handed: 0,
                writer: None,
            };
            let ingested = ingest::ingest_or_known(
                reader,
                self.chunking,
                limit,
                &mut |id| self.stored_ingest(id),
                &mut |data, meta| {
                    if appender.holds(&meta.blake3) || self.index.has_chunk(&meta.blake3)? {
                        return Ok(());
                    }
                    appender.push(data, meta)
                },
            );
            // Always wait for the writer, also when the pass failed.
            let appended = appender.finish();
            let ingested = ingested?;
            let (written, ticket) = appended?;
            Ok(Staged {
                ingested,
                written,
                ticket,
            })
        })
    }

    /// What ingesting the stored content `id` again would produce, read from the index (the
    /// small-duplicate shortcut of [`ingest::ingest_or_known`]); `None` when it is not stored.
    fn stored_ingest(&self, id: &[u8; 32]) -> Result<Option<Ingested>> {
        let Some(rec) = self.index.content(id)? else {
            return Ok(None);
        };
        let chunks = self
            .index
            .manifest(id, &rec)?
            .into_iter()
            .map(|r| ChunkMeta {
                blake3: r.blake3,
                crc32: r.crc32,
                len: r.len,
            })
            .collect();
        Ok(Some(Ingested {
            blake3: *id,
            sha1: rec.sha1,
            size: rec.size,
            chunks,
        }))
    }
}

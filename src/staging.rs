//! Staging an upload: the one streaming pass over its bytes, with the chunks the index does not
//! hold yet appended to the active segment, before the upload's index transaction.
//!
//! Appends run on a writer thread once an upload outgrows one batch, so that copying records into
//! the page cache (as costly as SHA-1 on this hardware, see docs/benchmarks.md, W2) overlaps with
//! chunking and hashing instead of following them on the caller's thread. Small uploads, the
//! common case, append their one batch inline and start no thread.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

use crate::content::ingest::{self, ChunkMeta, Ingested};
use crate::error::{Error, Result};
use crate::index::{Streamed, WrittenChunk};
use crate::segment::record::encode_record;
use crate::segment::Location;
use crate::store::{Durability, Inner};

/// Size at which an upload's new chunks are appended to the segment as one write.
const APPEND_BATCH: usize = 1 << 20;
/// Batches queued for the writer thread (bounds memory: queued + writing + filling).
const QUEUED_BATCHES: usize = 2;
/// Appended batches queued for the reference taker (chunk ids and locations only, ~12 KiB each).
const QUEUED_APPENDS: usize = 64;
/// With `Immediate` durability, pending records the reference taker writes per segment sync:
/// a chunk record may only be written once its bytes are durable, and one sync per few MiB
/// keeps the syncs few without holding back the records long.
const RECORDS_PER_SYNC: usize = 4;

/// When an upload takes the references to the chunks it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TakeRefs {
    /// While it streams, on a thread of its own, once it outgrows one batch; for uploads
    /// committed as one file ([`Inner::commit_staged`]).
    WhileStreaming,
    /// In the commit (uploads committed together with others: pieces, bundle entries).
    AtCommit,
}

/// An upload streamed into the segments but not yet in the index.
pub(crate) struct Staged {
    /// Hashes and chunk list.
    pub(crate) ingested: Ingested,
    /// Chunks this upload appended (absent from the index when it looked) and did not take
    /// references to while streaming.
    pub(crate) written: HashMap<[u8; 32], Location>,
    /// Sync ticket of the last append, if anything was appended.
    pub(crate) ticket: Option<u64>,
    /// References taken while streaming, under this operation nonce: adopt them in the commit
    /// or release them ([`Inner::discard_staged`]).
    pub(crate) streamed: Option<(u64, Streamed)>,
}

/// A chunk framed into a batch: its id, length and CRC32, and its offset in the batch.
#[derive(Clone, Copy)]
struct Framed {
    blake3: [u8; 32],
    len: u32,
    crc32: u32,
    offset: usize,
}

/// A batch of encoded records and the chunks in it.
type Batch = (Vec<u8>, Vec<Framed>);

/// Where appended chunks went, and the sync ticket of the last append.
#[derive(Default)]
struct Appended {
    written: HashMap<[u8; 32], Location>,
    ticket: Option<u64>,
}

impl Appended {
    /// Appends `batch`; its chunks go to the reference taker when there is one, else into
    /// `written` for the commit.
    fn append(
        &mut self,
        inner: &Inner,
        batch: &[u8],
        chunks: &[Framed],
        taker: Option<&SyncSender<(Vec<WrittenChunk>, u64)>>,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let (at, ticket) = inner.segments.append(batch)?;
        let located = chunks.iter().map(|c| WrittenChunk {
            blake3: c.blake3,
            len: c.len,
            crc32: c.crc32,
            at: Location {
                segment: at.segment,
                offset: at.offset + c.offset as u64,
            },
        });
        match taker {
            Some(taker) => {
                if taker.send((located.collect(), ticket)).is_err() {
                    return Err(stopped("reference taker"));
                }
            }
            None => self.written.extend(located.map(|c| (c.blake3, c.at))),
        }
        self.ticket = Some(ticket);
        Ok(())
    }
}

/// The writer thread's side: its queue, the emptied buffers it hands back, and its result;
/// and the reference taker's result when it runs.
struct Writer<'s> {
    queue: SyncSender<Batch>,
    returned: Receiver<Vec<u8>>,
    handle: ScopedJoinHandle<'s, Result<Appended>>,
    taker: Option<(u64, ScopedJoinHandle<'s, Result<Streamed>>)>,
}

/// Frames new chunks into batches and appends them: inline until the first full batch, then
/// through a writer thread (and, with [`TakeRefs::WhileStreaming`], a reference taker).
struct Appender<'s, 'e> {
    inner: &'e Inner,
    scope: &'s Scope<'s, 'e>,
    refs: TakeRefs,
    batch: Vec<u8>,
    chunks: Vec<Framed>,
    writer: Option<Writer<'s>>,
    /// The operation nonce of references taken while streaming, once the taker started.
    nonce: Option<u64>,
}

impl<'s, 'e> Appender<'s, 'e> {
    fn push(&mut self, data: &[u8], meta: &ChunkMeta) -> Result<()> {
        self.chunks.push(Framed {
            blake3: meta.blake3,
            len: meta.len,
            crc32: meta.crc32,
            offset: self.batch.len(),
        });
        encode_record(&mut self.batch, data, meta.crc32, &meta.blake3);
        if self.batch.len() >= APPEND_BATCH {
            self.send()?;
        }
        Ok(())
    }

    /// Starts the writer thread, and the reference taker when references are taken while
    /// streaming.
    fn start(&mut self) -> Result<Writer<'s>> {
        let inner = self.inner;
        let (taker_tx, taker) = match self.refs {
            TakeRefs::AtCommit => (None, None),
            TakeRefs::WhileStreaming => {
                let nonce = inner.index.nonce()?;
                self.nonce = Some(nonce);
                let (tx, jobs) = mpsc::sync_channel(QUEUED_APPENDS);
                let handle = self.scope.spawn(move || take_refs(inner, nonce, jobs));
                (Some(tx), Some((nonce, handle)))
            }
        };
        let (queue, jobs) = mpsc::sync_channel::<Batch>(QUEUED_BATCHES);
        let (give_back, returned) = mpsc::channel::<Vec<u8>>();
        let handle = self
            .scope
            .spawn(move || write_batches(inner, jobs, give_back, taker_tx));
        Ok(Writer {
            queue,
            returned,
            handle,
            taker,
        })
    }

    /// Hands the full batch to the writer thread (starting it on first use).
    fn send(&mut self) -> Result<()> {
        if self.writer.is_none() {
            self.writer = Some(self.start()?);
        }
        let writer = self.writer.as_mut().expect("started above");
        let fresh = writer
            .returned
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(APPEND_BATCH + (64 << 10)));
        let batch = std::mem::replace(&mut self.batch, fresh);
        let chunks = std::mem::take(&mut self.chunks);
        if writer.queue.send((batch, chunks)).is_err() {
            // The writer stopped on an error: report it.
            return match self.finish() {
                Err(e) => Err(e),
                Ok(_) => Err(stopped("segment writer")),
            };
        }
        Ok(())
    }

    /// Appends what is left and waits for the writer thread and the reference taker. Their
    /// errors take precedence: a thread that stopped explains why the others did.
    fn finish(&mut self) -> Result<(Appended, Option<(u64, Streamed)>)> {
        let Some(w) = self.writer.take() else {
            let mut done = Appended::default();
            done.append(self.inner, &self.batch, &self.chunks, None)?;
            return Ok((done, None));
        };
        let last = (
            std::mem::take(&mut self.batch),
            std::mem::take(&mut self.chunks),
        );
        let sent = last.0.is_empty() || w.queue.send(last).is_ok();
        drop(w.queue);
        let appended = w.handle.join().map_err(|_| stopped("segment writer"));
        let streamed = w.taker.map(|(nonce, h)| match h.join() {
            Ok(r) => r.map(|s| (nonce, s)),
            Err(_) => Err(stopped("reference taker")),
        });
        let streamed = streamed.transpose()?;
        let appended = appended??;
        if !sent {
            return Err(stopped("segment writer"));
        }
        Ok((appended, streamed))
    }
}

fn stopped(what: &str) -> Error {
    Error::Source(std::io::Error::other(format!("{what} thread stopped")))
}

fn write_batches(
    inner: &Inner,
    jobs: Receiver<Batch>,
    give_back: Sender<Vec<u8>>,
    taker: Option<SyncSender<(Vec<WrittenChunk>, u64)>>,
) -> Result<Appended> {
    let mut done = Appended::default();
    for (mut batch, chunks) in jobs {
        done.append(inner, &batch, &chunks, taker.as_ref())?;
        batch.clear();
        // The stager may have finished already; then the buffer is simply dropped.
        let _ = give_back.send(batch);
    }
    Ok(done)
}

/// The reference taker: takes one reference to each chunk the writer appended, a pending
/// record at a time ([`crate::index::Index::take_written`]), so that this index work overlaps
/// hashing instead of following it in the commit. With `Immediate` durability it first syncs
/// the segment up to the chunks it records: a chunk record never points at bytes a crash could
/// lose.
fn take_refs(
    inner: &Inner,
    nonce: u64,
    jobs: Receiver<(Vec<WrittenChunk>, u64)>,
) -> Result<Streamed> {
    let per_record = inner.index.per_record();
    let per_sync = match inner.opts.durability {
        Durability::Immediate => per_record * RECORDS_PER_SYNC,
        Durability::Batched { .. } => per_record,
    };
    let mut streamed = Streamed::default();
    let mut todo: Vec<WrittenChunk> = Vec::new();
    let mut ticket = None;
    let mut open = true;
    while open {
        match jobs.recv() {
            Ok((chunks, t)) => {
                todo.extend(chunks);
                ticket = Some(t);
            }
            Err(_) => open = false,
        }
        if todo.len() < per_sync && (open || todo.is_empty()) {
            continue;
        }
        if let (Some(t), Durability::Immediate) = (ticket, inner.opts.durability) {
            inner.segments.sync(t)?;
        }
        // Whole records only while streaming; the remainder waits for more chunks or the end.
        let take = if open {
            todo.len() - todo.len() % per_record
        } else {
            todo.len()
        };
        for group in todo[..take].chunks(per_record) {
            let at = inner.index.take_written(nonce, streamed.records, group)?;
            streamed.locations.extend(at);
            streamed.records += 1;
        }
        todo.drain(..take);
    }
    streamed.locations.sort_unstable_by_key(|e| e.0);
    streamed.locations.dedup_by(|a, b| a.0 == b.0);
    Ok(streamed)
}

impl Inner {
    /// Streams `reader` once (see [`ingest::ingest_or_known`]) and appends its chunks that the
    /// index does not hold yet to the active segment, in batches. Call with the mutation guard
    /// held, and commit or discard ([`Inner::discard_staged`]) the result before releasing it.
    pub(crate) fn stage(
        &self,
        reader: &mut dyn Read,
        limit: u64,
        refs: TakeRefs,
    ) -> Result<Staged> {
        let mut nonce = None;
        let staged = std::thread::scope(|scope| {
            let mut appender = Appender {
                inner: self,
                scope,
                refs,
                batch: Vec::new(),
                chunks: Vec::new(),
                writer: None,
                nonce: None,
            };
            // Chunks this upload appended or queued: a chunk repeated within one upload is
            // written once.
            let mut mine: HashSet<[u8; 32]> = HashSet::new();
            let ingested = ingest::ingest_or_known(
                reader,
                self.chunking,
                limit,
                &mut |id| self.stored_ingest(id),
                &mut |data, meta| {
                    if mine.contains(&meta.blake3) || self.index.has_chunk(&meta.blake3)? {
                        return Ok(());
                    }
                    mine.insert(meta.blake3);
                    appender.push(data, meta)
                },
            );
            // Always wait for the threads, also when the pass failed.
            let appended = appender.finish();
            nonce = appender.nonce;
            let ingested = ingested?;
            let (Appended { written, ticket }, streamed) = appended?;
            Ok(Staged {
                ingested,
                written,
                ticket,
                streamed,
            })
        });
        if let (Err(_), Some(n)) = (&staged, nonce) {
            // Failing to release leaves the records for the next open, which releases them.
            let _ = self.index.release_pending(Some(n));
        }
        staged
    }

    /// Gives up a staged upload: releases the references it took while streaming. Its bytes
    /// stay in the segment as garbage for gc.
    pub(crate) fn discard_staged(&self, staged: Staged) {
        if let Some((nonce, _)) = staged.streamed {
            // Failing leaves the records for the next open, which releases them.
            let _ = self.index.release_pending(Some(nonce));
        }
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

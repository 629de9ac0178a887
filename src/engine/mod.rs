//! The engine: one open store's index, segments, options and locks, and the **one commit
//! protocol** every change goes through.
//!
//! A change is a [`Write`]: it holds the mutation lock (shared; gc takes it exclusively) from its
//! first staged byte to its acknowledgement, streams uploads into the segments
//! ([`Write::stage`], `staging.rs`), and commits [`Mutation`]s, values that describe one logical
//! index change each (an upload, a delete, a release edit, a token, a gc step). [`Engine::commit`]
//! is the only code that knows the order that makes an acknowledgement durable:
//!
//! 1. make the segment bytes the write appended durable (`fdatasync`, shared by concurrent writes;
//!    with `Durability::Immediate`, or always for a mutation that must be durable);
//! 2. record the chunks those bytes hold (`chunks` table), now that they are where the
//!    durability promises;
//! 3. apply the mutation: one index transaction;
//! 4. make the index durable (flush sled, `fdatasync` its log, shared), with `Immediate` or for a
//!    mutation that must be durable; with `Batched` the flush thread does it every interval;
//! 5. return, which acknowledges.
//!
//! A crash at any point leaves the old state or the new one. Nothing above this module touches
//! the index's writer, the segments' appends or the sync points: the store's verbs describe what
//! to change and call [`Engine::write`].

mod dir;
pub(crate) mod reader;
mod staging;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use crate::chunking::{ChunkingParams, Ingested};
use crate::error::{Error, Result};
use crate::group_commit::GroupCommit;
use crate::index::chunks::ChunkEntry;
use crate::index::contents::ChunkLocations;
use crate::index::{Index, IndexWriter, Mutation};
use crate::lock::{lock, read, write};
use crate::options::{Durability, StoreOptions};
use crate::segment::{Location, RunBytes, Segments};
pub(crate) use dir::FORMAT_VERSION;

/// One open store (see the module docs).
#[derive(Debug)]
pub(crate) struct Engine {
    path: PathBuf,
    opts: StoreOptions,
    chunking: ChunkingParams,
    index: IndexWriter,
    segments: Segments,
    /// Shared by every write; taken exclusively by gc so that chunk records it removes cannot be
    /// referenced by an upload that looked them up earlier.
    mutation: RwLock<()>,
    index_sync: GroupCommit,
    index_log: File,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    _lock: File,
}

/// What a write appended that its next commit must make durable and record.
#[derive(Debug, Default)]
struct Pending {
    /// Records of appended chunks not inserted yet (staging inserts most of them as it goes).
    unrecorded: Vec<ChunkEntry>,
    /// Sync ticket of the last append, if anything was appended.
    ticket: Option<u64>,
}

impl Pending {
    fn add(&mut self, unrecorded: Vec<ChunkEntry>, ticket: Option<u64>) {
        self.unrecorded.extend(unrecorded);
        self.ticket = self.ticket.max(ticket);
    }
}

#[derive(Debug)]
enum Guard<'e> {
    Shared(#[allow(dead_code)] RwLockReadGuard<'e, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'e, ()>),
}

/// A write in progress (see the module docs). Dropping it without a commit indexes nothing: the
/// bytes it appended are garbage for gc.
#[derive(Debug)]
pub(crate) struct Write<'e> {
    engine: &'e Engine,
    _guard: Guard<'e>,
    pending: Pending,
}

impl Engine {
    /// Opens the store described by `opts` (see `Store::open`).
    pub(crate) fn open(opts: StoreOptions) -> Result<Arc<Engine>> {
        let path = opts.path.clone();
        let lock = dir::lock(&path)?;
        let chunking = dir::read_or_create_format(&path, opts.chunking)?;
        let index = Index::open(&path.join("index"), opts.cache_bytes)?;
        let log_path = path.join("index").join("db");
        let index_log =
            File::open(&log_path).map_err(|e| Error::io("open index log", &log_path, e))?;
        let segments = Segments::open(
            &path.join("segments"),
            opts.io.clone(),
            opts.segment_max_bytes,
            opts.read_mode,
        )?;
        let engine = Arc::new(Engine {
            path,
            chunking,
            index,
            segments,
            mutation: RwLock::new(()),
            index_sync: GroupCommit::default(),
            index_log,
            flusher: Mutex::new(None),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            _lock: lock,
            opts,
        });
        if let Durability::Batched { interval } = engine.opts.durability {
            Engine::spawn_flusher(&engine, interval)?;
        }
        Ok(engine)
    }

    /// Starts the thread that makes `Batched` writes durable every `interval`. It holds only a
    /// weak reference, so dropping the store's handles ends it ([`Engine::stop_flusher`]).
    fn spawn_flusher(engine: &Arc<Engine>, interval: Duration) -> Result<()> {
        let weak = Arc::downgrade(engine);
        let stop = engine.stop.clone();
        let handle = std::thread::Builder::new()
            .name("relstore-flush".into())
            .spawn(move || loop {
                {
                    let (m, cv) = &*stop;
                    let g = lock(m);
                    let (g, _) = cv
                        .wait_timeout_while(g, interval, |s| !*s)
                        .unwrap_or_else(|p| p.into_inner());
                    if *g {
                        return;
                    }
                }
                let Some(engine) = weak.upgrade() else { return };
                // Errors poison the sync points; the next write reports them.
                let _ = engine.sync();
            })
            .map_err(|e| Error::io("start flush thread", &engine.path, e))?;
        *lock(&engine.flusher) = Some(handle);
        Ok(())
    }

    /// Stops the flush thread and waits for it (a no-op once stopped).
    pub(crate) fn stop_flusher(&self) {
        {
            let (m, cv) = &*self.stop;
            *lock(m) = true;
            cv.notify_all();
        }
        if let Some(h) = lock(&self.flusher).take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }

    /// The store directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The options the store was opened with.
    pub(crate) fn options(&self) -> &StoreOptions {
        &self.opts
    }

    /// The chunking parameters the store was created with.
    pub(crate) fn chunking(&self) -> ChunkingParams {
        self.chunking
    }

    /// Read access to the index.
    pub(crate) fn index(&self) -> &Index {
        &self.index
    }

    /// `len` bytes of segment data at `location` (one or more consecutive chunk records,
    /// unchecked: the caller checks each record).
    pub(crate) fn read_run(&self, location: Location, len: usize) -> Result<RunBytes> {
        self.segments.read(location, len)
    }

    /// Bytes on disk: segment files and the index.
    pub(crate) fn disk_bytes(&self) -> u64 {
        self.segments.disk_bytes() + self.index.disk_bytes()
    }

    /// Ids and lengths of the active segment and of the sealed ones.
    pub(crate) fn segment_sizes(&self) -> ((u32, u64), Vec<(u32, u64)>) {
        (
            self.segments.active_segment(),
            self.segments.sealed_segments(),
        )
    }

    /// A new unique id for a file.
    pub(crate) fn next_id(&self) -> Result<u64> {
        self.index.next_id()
    }

    /// Starts a write: shared with other writes, exclusive with gc. Refused once a sync has
    /// failed (segments or index): what that sync covered may not be on disk, so no later write
    /// may be acknowledged until the store is reopened and recovered.
    pub(crate) fn write(&self) -> Result<Write<'_>> {
        self.check_writable()?;
        Ok(Write {
            engine: self,
            _guard: Guard::Shared(read(&self.mutation)),
            pending: Pending::default(),
        })
    }

    /// Starts gc's write: no other write runs until it is dropped (reads do).
    pub(crate) fn exclusive(&self) -> Result<Write<'_>> {
        let guard = write(&self.mutation);
        self.check_writable()?;
        Ok(Write {
            engine: self,
            _guard: Guard::Exclusive(guard),
            pending: Pending::default(),
        })
    }

    /// Holds off gc while `f` reads the index (tests compare counts that gc would change).
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn quiesced<T>(&self, f: impl FnOnce() -> T) -> T {
        let _shared = read(&self.mutation);
        f()
    }

    /// The commit protocol (see the module docs): the only place that knows its order.
    fn commit<M: Mutation>(&self, pending: &mut Pending, m: &M) -> Result<M::Output> {
        let Pending { unrecorded, ticket } = std::mem::take(pending);
        let durable_now = M::ALWAYS_DURABLE || self.opts.durability == Durability::Immediate;
        // 1. The appended bytes, durable before anything refers to them.
        if let (Some(t), true) = (ticket, durable_now) {
            self.segments.sync(t)?;
        }
        // 2. Their chunk records.
        self.index.insert_chunks(&unrecorded)?;
        drop(unrecorded);
        // 3. The operation's transaction.
        let out = m.apply(&self.index)?;
        // 4. The index, durable as the durability says.
        if durable_now {
            self.sync_index()?;
        }
        // 5. Acknowledge.
        Ok(out)
    }

    /// Makes every acknowledged write durable now: segments, then the index.
    pub(crate) fn sync(&self) -> Result<()> {
        self.segments.sync_all()?;
        self.sync_index()
    }

    /// Fails with [`Error::Poisoned`] after any failed sync.
    fn check_writable(&self) -> Result<()> {
        self.segments.check_writable()?;
        match self.index_sync.failure() {
            Some(cause) => Err(Error::Poisoned { cause }),
            None => Ok(()),
        }
    }

    /// Flushes sled and `fdatasync`s its log, shared by concurrent callers.
    fn sync_index(&self) -> Result<()> {
        let t = self.index_sync.ticket();
        self.index_sync
            .wait(t, || {
                self.index.flush().map_err(std::io::Error::other)?;
                // sled 0.34's flush ends in sync_file_range, which does not flush the drive's
                // cache; fdatasync on its log file does.
                self.index_log.sync_data()
            })
            .map_err(|cause| Error::Poisoned { cause })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_flusher();
        // Best effort: make a clean close durable whatever the durability setting.
        let _ = self.segments.sync_all();
        let _ = self.index.flush();
        let _ = self.index_log.sync_data();
    }
}

impl Write<'_> {
    /// Streams `reader` (at most `limit` bytes) into the segments, adding where each of its
    /// chunks is to `locations`. Returns its hashes and chunk list, ready for a mutation.
    pub(crate) fn stage(
        &mut self,
        reader: &mut dyn Read,
        limit: u64,
        locations: &mut ChunkLocations,
    ) -> Result<Ingested> {
        let staged = self.engine.stage(reader, limit)?;
        locations.extend(staged.chunks);
        self.pending.add(staged.unrecorded, staged.ticket);
        Ok(staged.ingested)
    }

    /// Commits `m` through the engine's protocol (see the module docs), with whatever this write
    /// staged or copied since its last commit.
    pub(crate) fn commit<M: Mutation>(&mut self, m: &M) -> Result<M::Output> {
        self.engine.commit(&mut self.pending, m)
    }

    /// Appends already-encoded chunk records (gc's copies) to the active segment; the next
    /// commit makes them durable. Returns where the batch starts.
    pub(crate) fn append_copies(&mut self, batch: &[u8]) -> Result<Location> {
        let (at, ticket) = self.engine.segments.append(batch)?;
        self.pending.add(Vec::new(), Some(ticket));
        Ok(at)
    }

    /// Seals the active segment and starts a new one (gc, before compacting it).
    pub(crate) fn seal_active(&self) -> Result<()> {
        self.engine.segments.seal_active()
    }

    /// Deletes a sealed segment file (gc, once the index points at the copies of its live
    /// records). Readers holding it keep their map or handle until they finish.
    pub(crate) fn remove_segment(&self, id: u32) -> Result<()> {
        self.engine.segments.remove(id)
    }
}

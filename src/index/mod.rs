//! The index: sled trees mapping keys to files, contents, chunks, releases, projects, tokens and
//! upload pieces, and the transactions that keep them consistent.
//!
//! Reading is [`Index`]; changing is [`IndexWriter`], which only [`Index::open`] hands out and
//! which the engine keeps to itself, and a change is a [`Mutation`]: a value describing one
//! logical operation (an upload, a delete, a release edit, a token, gc's steps) that the engine's
//! commit protocol applies in one transaction. The files of this folder are the record families:
//! `files.rs`, `contents.rs`, `chunks.rs`, `releases.rs`, `tokens.rs`, `pieces.rs`; `tables.rs`
//! lists the tables and `codec.rs` encodes their values.
//!
//! Every logical operation is one multi-tree sled transaction, so a crash leaves the old state or
//! the new one. sled runs transactions under one global lock; callers therefore do all hashing and
//! I/O before calling in here, and these functions only read and write small records. Chunk
//! records are the one exception, on purpose (see `chunks.rs`).

pub mod chunks;
pub mod codec;
pub mod contents;
pub mod files;
pub mod pieces;
pub mod records;
pub mod releases;
pub mod tables;
pub mod tokens;

use std::path::Path;

use sled::transaction::{TransactionError, TransactionalTree};
use sled::Transactional;

use crate::error::{Error, Result};
use records::Counters;
use tables::{Abort, Tx, TxResult, META, STATS_KEY};

/// Read access to the sled database and its tables.
#[derive(Debug)]
pub struct Index {
    db: sled::Db,
    trees: Vec<sled::Tree>,
}

/// Write access to the index: the engine's alone (see the module docs). Reads go through
/// `Deref` to [`Index`].
#[derive(Debug)]
pub struct IndexWriter(Index);

impl std::ops::Deref for IndexWriter {
    type Target = Index;
    fn deref(&self) -> &Index {
        &self.0
    }
}

/// One logical change of the index, described as data. The engine's commit protocol
/// (`engine/mod.rs`) is the only caller of [`Mutation::apply`]: it makes the bytes the change
/// refers to durable first, and the index afterwards.
pub trait Mutation {
    /// What the change returns.
    type Output;
    /// Whether the change must be durable before it is acknowledged whatever the store's
    /// durability setting.
    const ALWAYS_DURABLE: bool = false;
    /// Applies the change: one transaction (or a bounded series of them, for gc's batches).
    fn apply(&self, ix: &IndexWriter) -> Result<Self::Output>;
}

/// Turns a finished sled transaction into the operation's result: `None` when the body asked
/// for a retry.
fn finish_tx<T>(
    op: &'static str,
    r: std::result::Result<T, TransactionError<Abort>>,
) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(TransactionError::Abort(Abort::Err(e))) => Err(e),
        Err(TransactionError::Abort(Abort::Retry)) => Ok(None),
        Err(TransactionError::Storage(e)) => Err(Error::index(op, e)),
    }
}

impl Index {
    /// Opens (creating) the sled database at `dir` and hands out its one writer.
    ///
    /// The store opens its index only while holding its `LOCK` (tests, after closing the store),
    /// so a busy sled lock belongs to an instance this process just dropped: sled 0.34 releases
    /// it from background threads a moment after `Db` is dropped (sled issues #1234, #1289).
    /// Such a lock is waited for, up to 5 seconds.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<IndexWriter> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut pause = std::time::Duration::from_millis(1);
        let db = loop {
            let opened = sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes)
                // relstore decides when the index is flushed (the engine's commit protocol), so
                // that it is never made durable ahead of the segment bytes it refers to.
                .flush_every_ms(None)
                .open();
            match opened {
                Ok(db) => break db,
                Err(sled::Error::Io(io))
                    if io.to_string().starts_with("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(50));
                }
                Err(sled::Error::Io(io)) => return Err(Error::io("open index", dir, io)),
                Err(other) => return Err(Error::index("open index", other)),
            }
        };
        let trees = tables::ALL
            .iter()
            .map(|n| db.open_tree(n))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::index("open index trees", e))?;
        Ok(IndexWriter(Index { db, trees }))
    }

    /// The trees, for [`tables::Table`]'s reads.
    pub(crate) fn trees(&self) -> &[sled::Tree] {
        &self.trees
    }

    /// Bytes sled uses on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// The store-wide counters.
    pub fn counters(&self) -> Result<Counters> {
        Ok(META.get(&self.trees, STATS_KEY)?.unwrap_or_default())
    }
}

impl IndexWriter {
    /// Writes everything committed so far to sled's log (the engine `fdatasync`s it after).
    pub(crate) fn flush(&self) -> Result<()> {
        self.0
            .db
            .flush()
            .map(|_| ())
            .map_err(|e| Error::index("flush index", e))
    }

    /// A new unique id (sled's persistent id generator, never reused across restarts).
    pub(crate) fn next_id(&self) -> Result<u64> {
        self.0
            .db
            .generate_id()
            .map(|i| i + 1)
            .map_err(|e| Error::index("generate id", e))
    }

    /// Runs `body` as one transaction over every table. `None` when `body` asked for a retry.
    pub(crate) fn transact<T>(
        &self,
        op: &'static str,
        body: impl Fn(Tx<'_>) -> TxResult<T>,
    ) -> Result<Option<T>> {
        let r = self
            .0
            .trees
            .as_slice()
            .transaction(|t: &Vec<TransactionalTree>| body(Tx(t)));
        finish_tx(op, r)
    }

    /// [`IndexWriter::transact`] with the store counters read before `body` and written after it.
    pub(crate) fn counted_tx<T>(
        &self,
        op: &'static str,
        body: impl Fn(Tx<'_>, &mut Counters) -> TxResult<T>,
    ) -> Result<Option<T>> {
        self.transact(op, |t| {
            let mut counters = t.counters()?;
            let v = body(t, &mut counters)?;
            t.put_counters(&counters)?;
            Ok(v)
        })
    }

    /// [`IndexWriter::counted_tx`] for a `body` that never asks for a retry.
    pub(crate) fn counted_op<T>(
        &self,
        op: &'static str,
        body: impl Fn(Tx<'_>, &mut Counters) -> TxResult<T>,
    ) -> Result<T> {
        Ok(self.counted_tx(op, body)?.expect("no retry"))
    }

    /// The sled tree of one table, for the plain (non-transactional) writes of chunk records.
    pub(crate) fn tree<V: tables::Value>(&self, table: tables::Table<V>) -> &sled::Tree {
        table.tree(&self.0.trees)
    }
}

//! The index's tables, each a sled tree with one value type: a [`Table<V>`] names the tree and
//! decodes and encodes its values, so reading or writing a record is one generic call, inside a
//! transaction ([`Tx`]) or outside it ([`super::Index`]). Keys are bytes built by the functions
//! below (and [`crate::key`]); integers in keys are big-endian so that byte order is numeric order.

use std::marker::PhantomData;

use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::IVec;

use super::codec::{self, Stored};
use super::records::*;
use crate::error::{Error, Result};
use crate::id::{ContentId, Sha1};
use crate::key::encode_parts;

/// How a table's values are stored.
pub(crate) trait Value: Sized + 'static {
    fn to_bytes(&self) -> Vec<u8>;
    fn from_bytes(what: &'static str, bytes: &[u8]) -> Result<Self>;
}

impl<T: Stored + 'static> Value for T {
    fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }
    fn from_bytes(what: &'static str, bytes: &[u8]) -> Result<Self> {
        codec::decode(what, bytes)
    }
}

/// A value stored as its raw bytes, without the codec: the encoded file key of `file_ids`, and
/// the empty values of the pure key sets `by_sha1` and `debug_ids`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Raw(pub(crate) Vec<u8>);

impl Value for Raw {
    fn to_bytes(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn from_bytes(_: &'static str, bytes: &[u8]) -> Result<Self> {
        Ok(Raw(bytes.to_vec()))
    }
}

/// One table: the sled tree at position `pos` of [`ALL`], whose values are `V`.
#[derive(Debug)]
pub(crate) struct Table<V> {
    /// The tree's name on disk.
    pub(crate) name: &'static str,
    /// What a value is, for errors ("file record").
    pub(crate) what: &'static str,
    pos: usize,
    _value: PhantomData<fn() -> V>,
}

impl<V> Clone for Table<V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for Table<V> {}

const fn table<V>(pos: usize, name: &'static str, what: &'static str) -> Table<V> {
    Table {
        name,
        what,
        pos,
        _value: PhantomData,
    }
}

/// `files`: file key → the file's id and record (a listing is one range scan).
pub(crate) const FILES: Table<FileRow> = table(0, "files", "file record");
/// `file_ids`: file id (u64 BE) → the encoded file key.
pub(crate) const FILE_IDS: Table<Raw> = table(1, "file_ids", "file id");
/// `contents`: content id → [`ContentRec`].
pub(crate) const CONTENTS: Table<ContentRec> = table(2, "contents", "content record");
/// `content_pages`: content id ‖ page (u32 BE) → one page of a long chunk list.
pub(crate) const PAGES: Table<Vec<ChunkRef>> = table(3, "content_pages", "manifest page");
/// `by_sha1`: SHA-1 ‖ content id → empty.
pub(crate) const BY_SHA1: Table<Raw> = table(4, "by_sha1", "sha1 index");
/// `chunks`: chunk id → [`ChunkRec`] (immutable; see `chunks.rs`).
pub(crate) const CHUNKS: Table<ChunkRec> = table(5, "chunks", "chunk record");
/// `releases`: org ‖ version → [`ReleaseRec`].
pub(crate) const RELEASES: Table<ReleaseRec> = table(6, "releases", "release record");
/// `projects`: org ‖ slug → [`ProjectRec`].
pub(crate) const PROJECTS: Table<ProjectRec> = table(7, "projects", "project record");
/// `meta`: `stats` → [`Counters`].
pub(crate) const META: Table<Counters> = table(8, "meta", "stats");
/// `tokens`: BLAKE3 of a token's secret → [`TokenRec`].
pub(crate) const TOKENS: Table<TokenRec> = table(9, "tokens", "token record");
/// `pieces`: org ‖ SHA-1 → [`PieceRec`].
pub(crate) const PIECES: Table<PieceRec> = table(10, "pieces", "piece record");
/// `bundles`: org ‖ checksum → [`BundleRec`].
pub(crate) const BUNDLES: Table<BundleRec> = table(11, "bundles", "bundle record");
/// `bundle_entries`: bundle key ‖ entry number (u32 BE) → [`BundleEntryRec`].
pub(crate) const BUNDLE_ENTRIES: Table<BundleEntryRec> =
    table(12, "bundle_entries", "bundle entry");
/// `debug_ids`: debug id ‖ org ‖ checksum ‖ entry number → empty.
pub(crate) const DEBUG_IDS: Table<Raw> = table(13, "debug_ids", "debug id index");

/// The names of every tree, in position order (what the index opens).
pub const ALL: [&str; 14] = [
    FILES.name,
    FILE_IDS.name,
    CONTENTS.name,
    PAGES.name,
    BY_SHA1.name,
    CHUNKS.name,
    RELEASES.name,
    PROJECTS.name,
    META.name,
    TOKENS.name,
    PIECES.name,
    BUNDLES.name,
    BUNDLE_ENTRIES.name,
    DEBUG_IDS.name,
];

/// The key of the store counters in `meta`.
pub(crate) const STATS_KEY: &[u8] = b"stats";

impl<V: Value> Table<V> {
    pub(crate) fn tree<'t>(&self, trees: &'t [sled::Tree]) -> &'t sled::Tree {
        &trees[self.pos]
    }

    fn decode(&self, bytes: &[u8]) -> Result<V> {
        V::from_bytes(self.what, bytes)
    }

    /// The value at `key`.
    pub(crate) fn get(&self, trees: &[sled::Tree], key: impl AsRef<[u8]>) -> Result<Option<V>> {
        match self
            .tree(trees)
            .get(key)
            .map_err(|e| Error::index(self.name, e))?
        {
            None => Ok(None),
            Some(v) => self.decode(&v).map(Some),
        }
    }

    /// Every (key, value) whose key starts with `prefix`, in key order.
    pub(crate) fn scan<'t>(
        &self,
        trees: &'t [sled::Tree],
        prefix: impl AsRef<[u8]>,
    ) -> impl Iterator<Item = Result<(IVec, V)>> + 't {
        let this = *self;
        self.tree(trees)
            .scan_prefix(prefix)
            .map(move |item| this.entry(item))
    }

    /// Every (key, value) with `start <= key < end`, in key order.
    pub(crate) fn range<'t>(
        &self,
        trees: &'t [sled::Tree],
        start: Vec<u8>,
        end: Vec<u8>,
    ) -> impl Iterator<Item = Result<(IVec, V)>> + 't {
        let this = *self;
        self.tree(trees)
            .range(start..end)
            .map(move |item| this.entry(item))
    }

    fn entry(&self, item: sled::Result<(IVec, IVec)>) -> Result<(IVec, V)> {
        let (k, v) = item.map_err(|e| Error::index(self.name, e))?;
        Ok((k, self.decode(&v)?))
    }

    /// Every key, in order (for tables whose keys carry the data).
    pub(crate) fn keys<'t>(
        &self,
        trees: &'t [sled::Tree],
        prefix: impl AsRef<[u8]>,
    ) -> impl Iterator<Item = Result<IVec>> + 't {
        let name = self.name;
        self.tree(trees)
            .scan_prefix(prefix)
            .keys()
            .map(move |k| k.map_err(|e| Error::index(name, e)))
    }
}

/// One transaction's view of every table (see [`super::IndexWriter::transact`]).
#[derive(Clone, Copy)]
pub(crate) struct Tx<'a>(pub(super) &'a [TransactionalTree]);

/// Why a transaction stopped on purpose.
pub(crate) enum Abort {
    /// The operation fails with this error.
    Err(Error),
    /// The data the caller gathered outside the transaction changed; gather it again.
    Retry,
}

/// What a step of a transaction returns: an abort carries an [`Error`] or asks for a retry.
pub(crate) type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Abort>>;

/// Aborts the transaction with `e`.
pub(crate) fn abort<T>(e: Error) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(Abort::Err(e)))
}

impl Tx<'_> {
    /// The value at `key` in `table`.
    pub(crate) fn get<V: Value>(
        &self,
        table: Table<V>,
        key: impl AsRef<[u8]>,
    ) -> TxResult<Option<V>> {
        match self.0[table.pos].get(key)? {
            None => Ok(None),
            Some(v) => match table.decode(&v) {
                Ok(x) => Ok(Some(x)),
                Err(e) => abort(e),
            },
        }
    }

    /// Whether `table` holds `key`.
    pub(crate) fn has<V: Value>(&self, table: Table<V>, key: impl AsRef<[u8]>) -> TxResult<bool> {
        Ok(self.0[table.pos].get(key)?.is_some())
    }

    /// Stores `value` at `key` in `table`.
    pub(crate) fn put<V: Value>(
        &self,
        table: Table<V>,
        key: impl AsRef<[u8]>,
        value: &V,
    ) -> TxResult<()> {
        self.0[table.pos].insert(key.as_ref(), value.to_bytes())?;
        Ok(())
    }

    /// Removes `key` from `table`; true if it was there.
    pub(crate) fn remove<V: Value>(
        &self,
        table: Table<V>,
        key: impl AsRef<[u8]>,
    ) -> TxResult<bool> {
        Ok(self.0[table.pos].remove(key.as_ref())?.is_some())
    }

    /// The store counters.
    pub(crate) fn counters(&self) -> TxResult<Counters> {
        Ok(self.get(META, STATS_KEY)?.unwrap_or_default())
    }

    /// Stores the store counters.
    pub(crate) fn put_counters(&self, c: &Counters) -> TxResult<()> {
        self.put(META, STATS_KEY, c)
    }
}

/// Key of manifest page `page` of `content` in `content_pages`.
pub(crate) fn page_key(content: &ContentId, page: u32) -> Vec<u8> {
    let mut k = content.as_bytes().to_vec();
    k.extend_from_slice(&page.to_be_bytes());
    k
}

/// Key of `content` under its `sha1` in `by_sha1`.
pub(crate) fn sha1_key(sha1: &Sha1, content: &ContentId) -> Vec<u8> {
    let mut k = sha1.as_bytes().to_vec();
    k.extend_from_slice(content.as_bytes());
    k
}

/// Key of a release in `releases`.
pub(crate) fn release_key(org: &str, version: &str) -> Vec<u8> {
    encode_parts(&[org, version])
}

/// Key of a project in `projects`.
pub(crate) fn project_key(org: &str, slug: &str) -> Vec<u8> {
    encode_parts(&[org, slug])
}

/// Key of a file id in `file_ids`.
pub(crate) fn file_id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

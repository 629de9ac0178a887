//! The index: sled trees mapping keys to files, contents, chunks, releases and projects, and the
//! transactions that keep them consistent.
//!
//! Every logical operation (upload, overwrite, rename, delete, release delete, release create) is
//! one multi-tree sled transaction, so a crash leaves the old state or the new one. sled runs
//! transactions under one global lock; callers therefore do all hashing and I/O before calling in
//! here, and these functions only read and write small records.
//!
//! Trees (keys use [`crate::key`]'s encoding; integers in keys are big-endian):
//! - `files`: file key → [`FileRow`] (the file's id and record, so a listing is one range scan)
//! - `file_ids`: id (u64 BE) → file key
//! - `contents`: BLAKE3 → [`ContentRec`]; `content_pages`: BLAKE3 ‖ page (u32 BE) → chunk refs
//! - `by_sha1`: SHA-1 ‖ BLAKE3 → empty
//! - `chunks`: BLAKE3 → [`ChunkRec`], immutable: inserted outside any transaction by the upload
//!   that appended the chunk, once its bytes are where its durability needs them, and removed
//!   only by gc when no manifest lists it (see [`crate::gc`])
//! - `releases`: org ‖ version → [`ReleaseRec`]; `projects`: org ‖ slug → [`ProjectRec`]
//! - `meta`: `stats` → [`Counters`]
//! - `tokens`: BLAKE3 of an API token → [`TokenRec`]
//! - `pieces`, `bundles`, `bundle_entries`, `debug_ids`: chunk upload and artifact bundles
//!   (see `pieces.rs`)
//!
//! Chunk records are the one exception to "one transaction per operation", and on purpose: a
//! 1 GiB upload has ~260,000 chunks, and sled 0.34 runs every transaction under a process-wide
//! write lock (`concurrency_control::write()`), so taking per-chunk references in transactions
//! serialised the whole index behind the upload. A chunk record says only "these bytes are
//! here"; it is true from the moment it is inserted, whether or not the upload that wrote it
//! ever commits, so it needs no transaction. Contents keep their refcounts (files, pieces and
//! bundles refer to them inside the operation's transaction).

pub mod codec;
mod pieces;

pub use pieces::BundleCommit;
pub mod records;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use crate::content::ingest::Ingested;
use crate::error::{Error, Result};
use crate::key::{encode_parts, FileKey, ReleaseScope};
use crate::segment::Location;
use records::*;

/// A page of listed files (encoded key and row) and whether more remain.
pub type ListedPage = (Vec<(Vec<u8>, FileRow)>, bool);
/// Reference counts by BLAKE3 identity.
pub type RefCounts = HashMap<[u8; 32], u64>;

/// `files` tree value: the file's id and its record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct FileRow {
    /// The file id.
    pub id: u64,
    /// The record.
    pub rec: FileRec,
}

const T_FILES: usize = 0;
const T_FILE_IDS: usize = 1;
const T_CONTENTS: usize = 2;
const T_PAGES: usize = 3;
const T_BY_SHA1: usize = 4;
const T_CHUNKS: usize = 5;
const T_RELEASES: usize = 6;
const T_PROJECTS: usize = 7;
const T_META: usize = 8;
const T_TOKENS: usize = 9;
const T_PIECES: usize = 10;
const T_BUNDLES: usize = 11;
const T_BUNDLE_ENTRIES: usize = 12;
const T_DEBUG_IDS: usize = 13;
const TREE_NAMES: [&str; 14] = [
    "files",
    "file_ids",
    "contents",
    "content_pages",
    "by_sha1",
    "chunks",
    "releases",
    "projects",
    "meta",
    "tokens",
    "pieces",
    "bundles",
    "bundle_entries",
    "debug_ids",
];
const STATS_KEY: &[u8] = b"stats";

/// The sled database and its trees.
#[derive(Debug)]
pub struct Index {
    db: sled::Db,
    trees: Vec<sled::Tree>,
}

/// Why a transaction stopped on purpose.
enum Abort {
    Err(Error),
    /// The data the caller gathered outside the transaction changed; gather it again.
    Retry,
}

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Abort>>;

fn abort<T>(e: Error) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(Abort::Err(e)))
}

fn sled_err(op: &'static str) -> impl Fn(sled::Error) -> Error {
    move |e| Error::index(op, e)
}

fn run_tx<T>(
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

fn get<T: codec::Record>(t: &TransactionalTree, key: &[u8], what: &str) -> TxResult<Option<T>> {
    match t.get(key)? {
        None => Ok(None),
        Some(v) => match codec::decode(what, &v) {
            Ok(x) => Ok(Some(x)),
            Err(e) => abort(e),
        },
    }
}

fn put<T: codec::Record>(t: &TransactionalTree, key: &[u8], value: &T) -> TxResult<()> {
    t.insert(key, codec::encode(value))?;
    Ok(())
}

fn page_key(content: &[u8; 32], page: u32) -> Vec<u8> {
    let mut k = content.to_vec();
    k.extend_from_slice(&page.to_be_bytes());
    k
}

fn sha1_key(sha1: &[u8; 20], content: &[u8; 32]) -> Vec<u8> {
    let mut k = sha1.to_vec();
    k.extend_from_slice(content);
    k
}

/// The key of a release in the `releases` tree.
pub fn release_key(org: &str, version: &str) -> Vec<u8> {
    encode_parts(&[org, version])
}

/// The key of a project in the `projects` tree.
pub fn project_key(org: &str, slug: &str) -> Vec<u8> {
    encode_parts(&[org, slug])
}

/// Where the chunks of contents being created are, as their upload found or appended them:
/// the manifest's location hints. A chunk missing here is looked up in the `chunks` tree.
pub type ChunkLocations = HashMap<[u8; 32], Location>;

/// Everything an upload commit needs, computed outside the transaction.
pub struct UploadCommit<'a> {
    /// The target key.
    pub key: &'a FileKey,
    /// The new file id.
    pub id: u64,
    /// Validated headers.
    pub headers: &'a [(String, String)],
    /// Creation time.
    pub created_ms: i64,
    /// The ingest result.
    pub ingested: &'a Ingested,
    /// Where the upload's chunks are (see [`ChunkLocations`]).
    pub chunks: &'a ChunkLocations,
    /// Replace an existing file at `key` instead of failing.
    pub overwrite: bool,
}

/// A release with its linked projects, as read from the index.
#[derive(Clone, Debug)]
pub struct ReleaseRow {
    /// Organization.
    pub org: String,
    /// Version.
    pub version: String,
    /// The record.
    pub rec: ReleaseRec,
}

impl Index {
    /// Opens (creating) the sled database at `dir`.
    ///
    /// The store opens its index only while holding its `LOCK` (tests, after closing the store),
    /// so a busy sled lock belongs to an instance this process just dropped: sled 0.34 releases
    /// it from background threads a moment after `Db` is dropped (sled issues #1234, #1289).
    /// Such a lock is waited for, up to 5 seconds.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Index> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut pause = std::time::Duration::from_millis(1);
        let db = loop {
            let opened = sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes)
                // relstore decides when the index is flushed (see `Store`), so that it is never
                // made durable ahead of the segment bytes it refers to.
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
        let trees = TREE_NAMES
            .iter()
            .map(|n| db.open_tree(n))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(sled_err("open index trees"))?;
        Ok(Index { db, trees })
    }

    fn tree(&self, i: usize) -> &sled::Tree {
        &self.trees[i]
    }

    /// Writes everything committed so far to sled's log (see `Store` for the fdatasync after).
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(sled_err("flush index"))
    }

    /// A new unique id (sled's persistent id generator, never reused across restarts).
    pub fn next_id(&self) -> Result<u64> {
        self.db
            .generate_id()
            .map(|i| i + 1)
            .map_err(sled_err("generate id"))
    }

    /// Bytes sled uses on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// The store-wide counters.
    pub fn counters(&self) -> Result<Counters> {
        match self
            .tree(T_META)
            .get(STATS_KEY)
            .map_err(sled_err("read stats"))?
        {
            None => Ok(Counters::default()),
            Some(v) => codec::decode("stats", &v),
        }
    }

    /// The chunk record of `blake3`, if any (live or awaiting gc).
    pub fn chunk(&self, blake3: &[u8; 32]) -> Result<Option<ChunkRec>> {
        match self
            .tree(T_CHUNKS)
            .get(blake3)
            .map_err(sled_err("read chunk"))?
        {
            None => Ok(None),
            Some(v) => codec::decode("chunk record", &v).map(Some),
        }
    }

    /// Records chunks an upload appended, each with a plain insert that keeps an existing record
    /// (a concurrent upload that appended the same chunk first wins; both copies are valid, and
    /// the one no record points at is garbage for gc). Call only once the chunks' bytes are as
    /// durable as the store's durability promises: from then on any upload may use them.
    ///
    /// Plain inserts take sled's process-wide lock shared, so this runs beside other uploads'
    /// lookups and inserts; a transaction would exclude them all.
    pub fn insert_chunks(&self, recs: &[([u8; 32], ChunkRec)]) -> Result<()> {
        let t = self.tree(T_CHUNKS);
        for (id, rec) in recs {
            t.compare_and_swap(id, None as Option<&[u8]>, Some(codec::encode(rec)))
                .map_err(sled_err("record chunk"))?
                // An existing record is kept: nothing to do.
                .ok();
        }
        Ok(())
    }

    /// Number and total payload bytes of the chunk records (live or awaiting gc). Scans the
    /// `chunks` tree: chunk records are written outside transactions, so no counter could be
    /// kept exact through a crash.
    pub fn chunk_totals(&self) -> Result<(u64, u64)> {
        let mut n = 0u64;
        let mut bytes = 0u64;
        for v in self.tree(T_CHUNKS).iter().values() {
            let rec: ChunkRec =
                codec::decode("chunk record", &v.map_err(sled_err("scan chunks"))?)?;
            n += 1;
            bytes += u64::from(rec.len);
        }
        Ok((n, bytes))
    }

    /// The content record of `blake3`.
    pub fn content(&self, blake3: &[u8; 32]) -> Result<Option<ContentRec>> {
        match self
            .tree(T_CONTENTS)
            .get(blake3)
            .map_err(sled_err("read content"))?
        {
            None => Ok(None),
            Some(v) => codec::decode("content record", &v).map(Some),
        }
    }

    /// The full ordered chunk list of a content.
    pub fn manifest(&self, blake3: &[u8; 32], rec: &ContentRec) -> Result<Vec<ChunkRef>> {
        if rec.pages() == 0 {
            return Ok(rec.inline.clone());
        }
        let mut out = Vec::with_capacity(rec.chunk_count as usize);
        for p in 0..rec.pages() {
            let v = self
                .tree(T_PAGES)
                .get(page_key(blake3, p))
                .map_err(sled_err("read manifest page"))?
                .ok_or_else(|| {
                    Error::corrupt(
                        format!("content {}", crate::hex(blake3)),
                        format!("manifest page {p} is missing"),
                    )
                })?;
            let page: Vec<ChunkRef> = codec::decode("manifest page", &v)?;
            out.extend(page);
        }
        if out.len() as u64 != rec.chunk_count {
            return Err(Error::corrupt(
                format!("content {}", crate::hex(blake3)),
                "manifest length differs from its record",
            ));
        }
        Ok(out)
    }

    /// Removes manifest page `page` of content `blake3`, as damage would. For tests of what
    /// verify and gc do with a damaged index; never called by relstore. True if it existed.
    #[doc(hidden)]
    pub fn damage_manifest_page(&self, blake3: &[u8; 32], page: u32) -> Result<bool> {
        let gone = self
            .tree(T_PAGES)
            .remove(page_key(blake3, page))
            .map_err(sled_err("damage manifest page"))?;
        self.flush()?;
        Ok(gone.is_some())
    }

    /// Contents whose SHA-1 is `sha1`.
    pub fn contents_by_sha1(&self, sha1: &[u8; 20]) -> Result<Vec<[u8; 32]>> {
        self.tree(T_BY_SHA1)
            .scan_prefix(sha1)
            .keys()
            .map(|k| {
                let k = k.map_err(sled_err("scan sha1 index"))?;
                k.get(20..52)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| Error::corrupt("sha1 index", "malformed key"))
            })
            .collect()
    }

    /// The file at `key`.
    pub fn file(&self, key: &FileKey) -> Result<Option<FileRow>> {
        match self
            .tree(T_FILES)
            .get(key.encode())
            .map_err(sled_err("read file"))?
        {
            None => Ok(None),
            Some(v) => codec::decode("file record", &v).map(Some),
        }
    }

    /// The file with id `id`.
    pub fn file_by_id(&self, id: u64) -> Result<Option<FileRow>> {
        let Some(k) = self
            .tree(T_FILE_IDS)
            .get(id.to_be_bytes())
            .map_err(sled_err("read file id"))?
        else {
            return Ok(None);
        };
        let key = FileKey::decode(&k)?;
        self.file(&key)
    }

    /// Files of `scope` whose encoded key is greater than `after` (or from the start), in key
    /// order, for which `keep` holds, at most `limit` of them, plus whether more (matching or not)
    /// remain. Returns the encoded key of the last row examined-and-kept for the next cursor.
    pub fn list_files(
        &self,
        scope: &ReleaseScope,
        after: Option<&[u8]>,
        limit: usize,
        keep: &mut dyn FnMut(&FileRow) -> bool,
    ) -> Result<ListedPage> {
        let prefix = scope.encode_prefix();
        let mut end = prefix.clone();
        // Every key of the scope starts with `prefix` followed by a part byte; the prefix with a
        // 0xFF byte appended is past them all (escaped parts never start with 0xFF... and even if
        // a name starts with 0xFF in UTF-8 it cannot: 0xFF is never a UTF-8 byte).
        end.push(0xFF);
        let start = match after {
            Some(a) => {
                if !a.starts_with(&prefix) {
                    return Err(Error::InvalidCursor(
                        "cursor belongs to another listing".into(),
                    ));
                }
                let mut s = a.to_vec();
                s.push(0); // the smallest key strictly greater than `a`
                s
            }
            None => prefix,
        };
        let mut out = Vec::new();
        for item in self.tree(T_FILES).range(start..end) {
            let (k, v) = item.map_err(sled_err("list files"))?;
            let row: FileRow = codec::decode("file record", &v)?;
            if !keep(&row) {
                continue;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push((k.to_vec(), row));
        }
        Ok((out, false))
    }

    /// Ids of every file in `scope`.
    fn scope_ids(&self, scope: &ReleaseScope) -> Result<Vec<u64>> {
        self.tree(T_FILES)
            .scan_prefix(scope.encode_prefix())
            .values()
            .map(|v| {
                let v = v.map_err(sled_err("scan release"))?;
                codec::decode::<FileRow>("file record", &v).map(|r| r.id)
            })
            .collect()
    }

    /// The release `org`/`version`.
    pub fn release(&self, org: &str, version: &str) -> Result<Option<ReleaseRow>> {
        match self
            .tree(T_RELEASES)
            .get(release_key(org, version))
            .map_err(sled_err("read release"))?
        {
            None => Ok(None),
            Some(v) => Ok(Some(ReleaseRow {
                org: org.into(),
                version: version.into(),
                rec: codec::decode("release record", &v)?,
            })),
        }
    }

    /// Every release of `org`, in key order.
    pub fn releases(&self, org: &str) -> Result<Vec<ReleaseRow>> {
        let prefix = encode_parts(&[org]);
        self.tree(T_RELEASES)
            .scan_prefix(&prefix)
            .map(|item| {
                let (k, v) = item.map_err(sled_err("list releases"))?;
                let parts = crate::key::decode_parts(&k, 2)?;
                Ok(ReleaseRow {
                    org: org.into(),
                    version: parts[1].clone(),
                    rec: codec::decode("release record", &v)?,
                })
            })
            .collect()
    }

    /// Every organization that has at least one release.
    pub fn orgs(&self) -> Result<Vec<String>> {
        let mut orgs: Vec<String> = Vec::new();
        for k in self.tree(T_RELEASES).iter().keys() {
            let k = k.map_err(sled_err("list releases"))?;
            let org = crate::key::decode_parts(&k, 2)?.swap_remove(0);
            if orgs.last() != Some(&org) {
                orgs.push(org);
            }
        }
        Ok(orgs)
    }

    /// The project `org`/`slug`.
    pub fn project(&self, org: &str, slug: &str) -> Result<Option<ProjectRec>> {
        match self
            .tree(T_PROJECTS)
            .get(project_key(org, slug))
            .map_err(sled_err("read project"))?
        {
            None => Ok(None),
            Some(v) => codec::decode("project record", &v).map(Some),
        }
    }

    /// Every project of `org` as (slug, record).
    pub fn projects(&self, org: &str) -> Result<Vec<(String, ProjectRec)>> {
        self.tree(T_PROJECTS)
            .scan_prefix(encode_parts(&[org]))
            .map(|item| {
                let (k, v) = item.map_err(sled_err("list projects"))?;
                let slug = crate::key::decode_parts(&k, 2)?.swap_remove(1);
                Ok((slug, codec::decode("project record", &v)?))
            })
            .collect()
    }

    fn all(&self) -> &[sled::Tree] {
        &self.trees
    }

    /// Runs `body` as one transaction over every tree, with the store counters read before it
    /// and written after it. `None` when `body` asked for a retry.
    fn counted_tx<T>(
        &self,
        op: &'static str,
        body: impl Fn(&[TransactionalTree], &mut Counters) -> TxResult<T>,
    ) -> Result<Option<T>> {
        let r = self.all().transaction(|t| {
            let mut counters: Counters = get(&t[T_META], STATS_KEY, "stats")?.unwrap_or_default();
            let v = body(t, &mut counters)?;
            put(&t[T_META], STATS_KEY, &counters)?;
            Ok(v)
        });
        run_tx(op, r)
    }

    /// [`Index::counted_tx`] for a `body` that never asks for a retry.
    fn counted_op<T>(
        &self,
        op: &'static str,
        body: impl Fn(&[TransactionalTree], &mut Counters) -> TxResult<T>,
    ) -> Result<T> {
        Ok(self.counted_tx(op, body)?.expect("no retry"))
    }

    /// Creates the release or links more projects to it. Returns the release and whether it is new.
    pub fn create_release(
        &self,
        org: &str,
        version: &str,
        projects: &[String],
        now_ms: i64,
    ) -> Result<(ReleaseRow, bool)> {
        let rkey = release_key(org, version);
        let r = self.all().transaction(|t| {
            let mut counters: Counters = get(&t[T_META], STATS_KEY, "stats")?.unwrap_or_default();
            let existing: Option<ReleaseRec> = get(&t[T_RELEASES], &rkey, "release record")?;
            let created = existing.is_none();
            let mut rec = existing.unwrap_or(ReleaseRec {
                created_ms: now_ms,
                released_ms: None,
                url: None,
                vcs_ref: None,
                projects: Vec::new(),
                file_count: 0,
                file_bytes: 0,
            });
            for slug in projects {
                let pkey = project_key(org, slug);
                if get::<ProjectRec>(&t[T_PROJECTS], &pkey, "project record")?.is_none() {
                    counters.next_project_id = counters.next_project_id.max(1);
                    let id = counters.next_project_id;
                    counters.next_project_id += 1;
                    put(
                        &t[T_PROJECTS],
                        &pkey,
                        &ProjectRec {
                            id,
                            created_ms: now_ms,
                        },
                    )?;
                }
                if !rec.projects.contains(slug) {
                    rec.projects.push(slug.clone());
                }
            }
            put(&t[T_RELEASES], &rkey, &rec)?;
            put(&t[T_META], STATS_KEY, &counters)?;
            Ok((rec, created))
        });
        let (rec, created) = run_tx("create release", r)?.expect("no retry");
        Ok((
            ReleaseRow {
                org: org.into(),
                version: version.into(),
                rec,
            },
            created,
        ))
    }

    /// Applies `change` to the release record in one transaction.
    pub fn update_release(
        &self,
        org: &str,
        version: &str,
        change: &dyn Fn(&mut ReleaseRec),
    ) -> Result<ReleaseRow> {
        let rkey = release_key(org, version);
        let r = self.tree(T_RELEASES).transaction(|t| {
            let Some(mut rec) = get::<ReleaseRec>(t, &rkey, "release record")? else {
                return abort(Error::not_found(format!("release {org}/{version}")));
            };
            change(&mut rec);
            put(t, &rkey, &rec)?;
            Ok(rec)
        });
        let rec = run_tx("update release", r)?.expect("no retry");
        Ok(ReleaseRow {
            org: org.into(),
            version: version.into(),
            rec,
        })
    }

    /// Commits an upload (see [`UploadCommit`]). Returns the new row and the id it replaced.
    pub fn commit_upload(&self, c: &UploadCommit<'_>) -> Result<(FileRow, Option<u64>)> {
        let fkey = c.key.encode();
        let rkey = release_key(&c.key.org, &c.key.release);
        let ing = c.ingested;
        let row = FileRow {
            id: c.id,
            rec: FileRec {
                key: c.key.clone(),
                content: ing.blake3,
                sha1: ing.sha1,
                size: ing.size,
                headers: c.headers.to_vec(),
                created_ms: c.created_ms,
            },
        };
        let replaced = self.counted_op("commit upload", |t, counters| {
            let Some(mut release) = get::<ReleaseRec>(&t[T_RELEASES], &rkey, "release record")?
            else {
                return abort(Error::not_found(format!(
                    "release {}/{}",
                    c.key.org, c.key.release
                )));
            };
            if let Some(p) = &c.key.project {
                if !release.projects.contains(p) {
                    return abort(Error::not_found(format!(
                        "release {} in project {p}",
                        c.key.release
                    )));
                }
            }
            let old: Option<FileRow> = get(&t[T_FILES], &fkey, "file record")?;
            if old.is_some() && !c.overwrite {
                return abort(Error::AlreadyExists {
                    key: c.key.to_string(),
                });
            }
            // Reference the new content before releasing the old one, so overwriting a file with
            // its own bytes never drops the content to zero in between.
            incref_content(t, counters, ing, c.chunks)?;
            if let Some(old) = &old {
                drop_replaced(t, counters, &mut release, old)?;
            }
            put(&t[T_FILES], &fkey, &row)?;
            t[T_FILE_IDS].insert(&c.id.to_be_bytes(), fkey.as_slice())?;
            counters.files += 1;
            counters.logical_bytes += ing.size;
            release.file_count += 1;
            release.file_bytes += ing.size;
            put(&t[T_RELEASES], &rkey, &release)?;
            Ok(old.map(|o| o.id))
        })?;
        Ok((row, replaced))
    }

    /// Deletes file `id`. Returns the deleted row, or `None` when no such file exists.
    pub fn delete_file(&self, id: u64) -> Result<Option<FileRow>> {
        self.counted_op("delete file", |t, counters| remove_file(t, counters, id))
    }

    /// Renames file `id` to `(name, dist)` in its scope; fails if that key is taken by another file.
    pub fn rename_file(&self, id: u64, name: &str, dist: Option<&str>) -> Result<FileRow> {
        let r = self.all().transaction(|t| {
            let Some(k) = t[T_FILE_IDS].get(id.to_be_bytes())? else {
                return abort(Error::not_found(format!("file {id}")));
            };
            let Some(mut row) = get::<FileRow>(&t[T_FILES], &k, "file record")? else {
                return abort(Error::corrupt(
                    format!("file {id}"),
                    "id index points at a missing file",
                ));
            };
            let new_key = row.rec.key.scope().file(name, dist);
            let nk = new_key.encode();
            if nk == k.as_ref() {
                return Ok(row);
            }
            if t[T_FILES].get(&nk)?.is_some() {
                return abort(Error::AlreadyExists {
                    key: new_key.to_string(),
                });
            }
            t[T_FILES].remove(&k)?;
            row.rec.key = new_key;
            put(&t[T_FILES], &nk, &row)?;
            t[T_FILE_IDS].insert(&id.to_be_bytes(), nk.as_slice())?;
            Ok(row)
        });
        Ok(run_tx("rename file", r)?.expect("no retry"))
    }

    /// Deletes every file of `scopes` (must be all scopes of the release when `drop_release`),
    /// and the release record itself when `drop_release`. Returns the number of files deleted.
    pub fn delete_files_of(
        &self,
        org: &str,
        version: &str,
        scopes: &[ReleaseScope],
        drop_release: bool,
    ) -> Result<u64> {
        let rkey = release_key(org, version);
        loop {
            let mut ids = Vec::new();
            for s in scopes {
                ids.extend(self.scope_ids(s)?);
            }
            let r = self.counted_tx("delete release files", |t, counters| {
                let Some(release) = get::<ReleaseRec>(&t[T_RELEASES], &rkey, "release record")?
                else {
                    return abort(Error::not_found(format!("release {org}/{version}")));
                };
                if drop_release && release.file_count != ids.len() as u64 {
                    // A file arrived or left since the scan: scan again.
                    return Err(ConflictableTransactionError::Abort(Abort::Retry));
                }
                let mut deleted = 0u64;
                for &id in &ids {
                    if remove_file(t, counters, id)?.is_some() {
                        deleted += 1;
                    } else {
                        return Err(ConflictableTransactionError::Abort(Abort::Retry));
                    }
                }
                if drop_release {
                    t[T_RELEASES].remove(rkey.as_slice())?;
                }
                Ok(deleted)
            });
            if let Some(n) = r? {
                return Ok(n);
            }
        }
    }

    /// Stores an API token record under the hash of its secret.
    pub fn put_token(&self, hash: &[u8; 32], rec: &TokenRec) -> Result<()> {
        self.tree(T_TOKENS)
            .insert(hash, codec::encode(rec))
            .map_err(sled_err("store token"))?;
        Ok(())
    }

    /// The token whose secret hashes to `hash`.
    pub fn token(&self, hash: &[u8; 32]) -> Result<Option<TokenRec>> {
        match self
            .tree(T_TOKENS)
            .get(hash)
            .map_err(sled_err("read token"))?
        {
            None => Ok(None),
            Some(v) => codec::decode("token record", &v).map(Some),
        }
    }

    /// Every token as (hash, record).
    pub fn tokens(&self) -> Result<Vec<([u8; 32], TokenRec)>> {
        self.tree(T_TOKENS)
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(sled_err("list tokens"))?;
                let h: [u8; 32] = k
                    .as_ref()
                    .try_into()
                    .map_err(|_| Error::corrupt("token index", "malformed key"))?;
                Ok((h, codec::decode("token record", &v)?))
            })
            .collect()
    }

    /// Removes the token with hash `hash`; true if it existed.
    pub fn remove_token(&self, hash: &[u8; 32]) -> Result<bool> {
        Ok(self
            .tree(T_TOKENS)
            .remove(hash)
            .map_err(sled_err("revoke token"))?
            .is_some())
    }

    /// Chunk records, for gc and verify: (BLAKE3, record) in key order.
    pub fn all_chunks(&self) -> impl Iterator<Item = Result<([u8; 32], ChunkRec)>> + '_ {
        self.tree(T_CHUNKS).iter().map(|item| {
            let (k, v) = item.map_err(sled_err("scan chunks"))?;
            let id: [u8; 32] = k
                .as_ref()
                .try_into()
                .map_err(|_| Error::corrupt("chunk index", "malformed key"))?;
            Ok((id, codec::decode("chunk record", &v)?))
        })
    }

    /// Contents, for verify: (BLAKE3, record).
    pub fn all_contents(&self) -> impl Iterator<Item = Result<([u8; 32], ContentRec)>> + '_ {
        self.tree(T_CONTENTS).iter().map(|item| {
            let (k, v) = item.map_err(sled_err("scan contents"))?;
            let id: [u8; 32] = k
                .as_ref()
                .try_into()
                .map_err(|_| Error::corrupt("content index", "malformed key"))?;
            Ok((id, codec::decode("content record", &v)?))
        })
    }

    /// Every file row, for verify.
    pub fn all_files(&self) -> impl Iterator<Item = Result<FileRow>> + '_ {
        self.tree(T_FILES).iter().values().map(|v| {
            let v = v.map_err(sled_err("scan files"))?;
            codec::decode("file record", &v)
        })
    }

    /// Removes the records of chunks no manifest lists (gc only: it holds the store's exclusive
    /// lock, so no upload can be about to use one). Returns how many were removed.
    pub fn drop_dead_chunks(&self, dead: &[[u8; 32]]) -> Result<u64> {
        let t = self.tree(T_CHUNKS);
        let mut n = 0;
        for id in dead {
            if t.remove(id).map_err(sled_err("drop dead chunk"))?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Points moved chunks at their new locations (compaction), if they still live where the
    /// compaction found them.
    pub fn relocate_chunks(&self, moves: &[([u8; 32], Location, Location)]) -> Result<()> {
        let r = self.tree(T_CHUNKS).transaction(|t| {
            for (id, from, to) in moves {
                if let Some(mut rec) = get::<ChunkRec>(t, id, "chunk record")? {
                    if rec.location == *from {
                        rec.location = *to;
                        put(t, id, &rec)?;
                    }
                }
            }
            Ok(())
        });
        run_tx("relocate chunks", r)?;
        Ok(())
    }

    /// Recomputes every content refcount from the file rows, pieces and bundles (verify's
    /// ground truth).
    pub fn expected_content_refs(&self) -> Result<RefCounts> {
        let mut contents: RefCounts = self.piece_and_bundle_refs()?;
        for row in self.all_files() {
            *contents.entry(row?.rec.content).or_default() += 1;
        }
        Ok(contents)
    }

    /// Every content's manifest: (BLAKE3, chunk list), one item per content record; an item is
    /// an error when the record or its manifest cannot be read.
    pub fn manifests(&self) -> impl Iterator<Item = Result<([u8; 32], Vec<ChunkRef>)>> + '_ {
        self.all_contents()
            .map(|item| item.and_then(|(id, rec)| Ok((id, self.manifest(&id, &rec)?))))
    }

    /// The live chunks: every chunk some content record's manifest lists (gc's mark phase).
    /// Holds one id per distinct live chunk in memory (~70 bytes each with the set's overhead).
    /// Fails on the first manifest it cannot read: its chunks could not be told from garbage.
    pub fn live_chunks(&self) -> Result<HashSet<[u8; 32]>> {
        let mut live = HashSet::new();
        for m in self.manifests() {
            live.extend(m?.1.iter().map(|r| r.blake3));
        }
        Ok(live)
    }
}

/// Takes one reference to the content `ing`, creating its record and manifest when it is new.
/// A new content's chunks must all have records already (its upload inserted them before this
/// transaction, or found them); `at` saves looking each one up.
fn incref_content(
    t: &[TransactionalTree],
    counters: &mut Counters,
    ing: &Ingested,
    at: &ChunkLocations,
) -> TxResult<()> {
    if let Some(mut rec) = get::<ContentRec>(&t[T_CONTENTS], &ing.blake3, "content record")? {
        rec.refcount += 1;
        return put(&t[T_CONTENTS], &ing.blake3, &rec);
    }
    let mut refs: Vec<ChunkRef> = Vec::with_capacity(ing.chunks.len());
    for c in &ing.chunks {
        let loc = match at.get(&c.blake3) {
            Some(l) => *l,
            // The upload took the content from the index (a small duplicate) and it has been
            // deleted since: its chunks' records stay until gc, which no upload overlaps.
            None => match get::<ChunkRec>(&t[T_CHUNKS], &c.blake3, "chunk record")? {
                Some(ch) => ch.location,
                None => {
                    return abort(Error::corrupt(
                        format!("chunk {}", crate::hex(&c.blake3)),
                        "a new content lists a chunk the index does not hold",
                    ))
                }
            },
        };
        refs.push(ChunkRef {
            blake3: c.blake3,
            len: c.len,
            crc32: c.crc32,
            at: loc,
        });
    }
    let rec = ContentRec {
        sha1: ing.sha1,
        size: ing.size,
        refcount: 1,
        chunk_count: refs.len() as u64,
        inline: if refs.len() <= CHUNKS_PER_PAGE {
            refs.clone()
        } else {
            Vec::new()
        },
    };
    if rec.pages() > 0 {
        for (i, page) in refs.chunks(CHUNKS_PER_PAGE).enumerate() {
            put(
                &t[T_PAGES],
                &page_key(&ing.blake3, i as u32),
                &page.to_vec(),
            )?;
        }
    }
    put(&t[T_CONTENTS], &ing.blake3, &rec)?;
    t[T_BY_SHA1].insert(sha1_key(&ing.sha1, &ing.blake3), &[] as &[u8])?;
    counters.contents += 1;
    Ok(())
}

/// Drops one reference to the content `id`, removing its record and manifest at zero. Its
/// chunks' records stay: gc removes those no other manifest lists.
fn decref_content(t: &[TransactionalTree], counters: &mut Counters, id: &[u8; 32]) -> TxResult<()> {
    let Some(mut rec) = get::<ContentRec>(&t[T_CONTENTS], id, "content record")? else {
        return abort(Error::corrupt(
            format!("content {}", crate::hex(id)),
            "a file refers to a missing content",
        ));
    };
    rec.refcount -= 1;
    if rec.refcount > 0 {
        return put(&t[T_CONTENTS], id, &rec);
    }
    for p in 0..rec.pages() {
        if t[T_PAGES].remove(page_key(id, p))?.is_none() {
            return abort(Error::corrupt(
                format!("content {}", crate::hex(id)),
                format!("manifest page {p} is missing"),
            ));
        }
    }
    t[T_CONTENTS].remove(id.as_slice())?;
    t[T_BY_SHA1].remove(sha1_key(&rec.sha1, id))?;
    counters.contents -= 1;
    Ok(())
}

/// Releases the file `old` that a new file at its key replaces (its record is overwritten by the
/// caller): its id, its content reference and its share of the counters and of `release`.
fn drop_replaced(
    t: &[TransactionalTree],
    counters: &mut Counters,
    release: &mut ReleaseRec,
    old: &FileRow,
) -> TxResult<()> {
    t[T_FILE_IDS].remove(&old.id.to_be_bytes())?;
    decref_content(t, counters, &old.rec.content)?;
    counters.files -= 1;
    counters.logical_bytes -= old.rec.size;
    release.file_count -= 1;
    release.file_bytes -= old.rec.size;
    Ok(())
}

fn remove_file(
    t: &[TransactionalTree],
    counters: &mut Counters,
    id: u64,
) -> TxResult<Option<FileRow>> {
    let Some(k) = t[T_FILE_IDS].get(id.to_be_bytes())? else {
        return Ok(None);
    };
    let Some(row) = get::<FileRow>(&t[T_FILES], &k, "file record")? else {
        return abort(Error::corrupt(
            format!("file {id}"),
            "id index points at a missing file",
        ));
    };
    t[T_FILES].remove(&k)?;
    t[T_FILE_IDS].remove(&id.to_be_bytes())?;
    decref_content(t, counters, &row.rec.content)?;
    counters.files -= 1;
    counters.logical_bytes -= row.rec.size;
    let rkey = release_key(&row.rec.key.org, &row.rec.key.release);
    if let Some(mut release) = get::<ReleaseRec>(&t[T_RELEASES], &rkey, "release record")? {
        release.file_count -= 1;
        release.file_bytes -= row.rec.size;
        put(&t[T_RELEASES], &rkey, &release)?;
    }
    Ok(Some(row))
}

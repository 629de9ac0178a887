//! [`Store`]: the one entry type. Opening, uploading, reading, listing, renaming and deleting.
//!
//! The store ties the layers together and owns the write order that makes acknowledgements
//! durable: (1) stream the upload once, appending new chunks to a segment; (2) `fdatasync` the
//! segment, shared by concurrent uploads; (3) one index transaction; (4) flush the index and
//! `fdatasync` its log, again shared; (5) return. A crash at any point leaves the old state or the
//! new one. It has no async runtime and knows nothing of HTTP.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::content::ingest::ChunkingParams;
use crate::content::ContentReader;
use crate::error::{Error, Result};
use crate::group_commit::GroupCommit;
use crate::index::records::{Counters, FormatRec, ReleaseRec};
use crate::index::{FileRow, Index, ReleaseRow, UploadCommit};
use crate::key::{validate_slug, validate_version, FileKey, ReleaseScope};
use crate::segment::io::{SegmentIo, StdIo};
use crate::segment::{ReadMode, Segments};
use crate::staging::Staged;

/// Version of the store layout written in `FORMAT`.
pub const FORMAT_VERSION: u32 = 3;
/// Most headers a file may carry.
pub const MAX_HEADERS: usize = 64;
/// Largest total size of a file's header names and values, bytes.
pub const MAX_HEADER_BYTES: usize = 16 << 10;

/// When an acknowledged write is durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Every mutating call returns only after its bytes and its index entry are on stable storage
    /// (concurrent calls share the syncs).
    #[default]
    Immediate,
    /// Mutating calls return once the segment bytes are in the OS and the index transaction is
    /// committed in memory; a background thread syncs segments and then the index every
    /// `interval`. A process crash or a power loss may lose the writes acknowledged in the last
    /// interval (sled keeps committed transactions in memory until it is flushed); it never
    /// leaves an entry that points at missing bytes unnoticed (reads check CRCs).
    Batched {
        /// Time between background syncs.
        interval: Duration,
    },
}

/// How to open a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The store directory (created if missing).
    pub path: PathBuf,
    /// Durability of acknowledged writes.
    pub durability: Durability,
    /// Chunking parameters for a new store; an existing store keeps its own (see `FORMAT`).
    pub chunking: ChunkingParams,
    /// sled's page cache size in bytes.
    pub cache_bytes: u64,
    /// Size at which a segment is sealed and a new one started.
    pub segment_max_bytes: u64,
    /// Largest accepted upload in bytes.
    pub max_upload_bytes: u64,
    /// How sealed segments are read.
    pub read_mode: ReadMode,
    /// Segment file I/O (replace it to inject faults in tests).
    pub io: Arc<dyn SegmentIo>,
    /// How long gc keeps upload pieces and assembled bundle files that no file needs (24 h,
    /// as Sentry does).
    pub piece_grace: Duration,
}

impl StoreOptions {
    /// Defaults for a store at `path`: `Immediate`, 4 KiB average chunks, 64 MiB sled cache,
    /// 128 MiB segments, 1 GiB uploads, memory-mapped reads.
    pub fn new(path: impl Into<PathBuf>) -> StoreOptions {
        StoreOptions {
            path: path.into(),
            durability: Durability::Immediate,
            chunking: ChunkingParams::default(),
            cache_bytes: 64 << 20,
            segment_max_bytes: 128 << 20,
            max_upload_bytes: 1 << 30,
            read_mode: ReadMode::Mmap,
            io: Arc::new(StdIo),
            piece_grace: Duration::from_secs(24 * 3600),
        }
    }

    /// Sets the grace period of upload pieces.
    pub fn piece_grace(mut self, d: Duration) -> Self {
        self.piece_grace = d;
        self
    }

    /// Sets the durability.
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Sets the chunking parameters used if the store is new.
    pub fn chunking(mut self, c: ChunkingParams) -> Self {
        self.chunking = c;
        self
    }

    /// Sets the segment size.
    pub fn segment_max_bytes(mut self, n: u64) -> Self {
        self.segment_max_bytes = n;
        self
    }

    /// Sets the upload limit.
    pub fn max_upload_bytes(mut self, n: u64) -> Self {
        self.max_upload_bytes = n;
        self
    }

    /// Sets the read mode.
    pub fn read_mode(mut self, m: ReadMode) -> Self {
        self.read_mode = m;
        self
    }

    /// Sets sled's cache size.
    pub fn cache_bytes(mut self, n: u64) -> Self {
        self.cache_bytes = n;
        self
    }

    /// Sets the segment I/O backend.
    pub fn io(mut self, io: Arc<dyn SegmentIo>) -> Self {
        self.io = io;
        self
    }
}

/// A project of an organization.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Project {
    /// Numeric id, unique in the store.
    pub id: u64,
    /// Slug (also used as the name).
    pub slug: String,
}

/// A release of an organization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// Organization slug.
    pub org: String,
    /// Version string.
    pub version: String,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: i64,
    /// Release time, if set.
    pub released_ms: Option<i64>,
    /// URL, if set.
    pub url: Option<String>,
    /// VCS ref, if set.
    pub vcs_ref: Option<String>,
    /// Linked projects, in link order.
    pub projects: Vec<Project>,
    /// Number of files in every scope of the release.
    pub file_count: u64,
    /// Sum of their sizes.
    pub file_bytes: u64,
}

/// Changes to a release's metadata (`None` leaves a field as it is).
#[derive(Clone, Debug, Default)]
pub struct ReleaseUpdate {
    /// New release time (`Some(None)` clears it).
    pub released_ms: Option<Option<i64>>,
    /// New URL.
    pub url: Option<Option<String>>,
    /// New VCS ref.
    pub vcs_ref: Option<Option<String>>,
}

/// A stored release file: what the Sentry API calls a release file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    /// Unique id (never reused).
    pub id: u64,
    /// Where the file lives.
    pub key: FileKey,
    /// Headers, in upload order.
    pub headers: Vec<(String, String)>,
    /// Size in bytes.
    pub size: u64,
    /// SHA-1 of the content.
    pub sha1: [u8; 20],
    /// BLAKE3 of the content (its identity in the store).
    pub content_id: [u8; 32],
    /// Creation time, ms since the Unix epoch.
    pub created_ms: i64,
}

impl FileRecord {
    fn from_row(row: FileRow) -> FileRecord {
        FileRecord {
            id: row.id,
            key: row.rec.key,
            headers: row.rec.headers,
            size: row.rec.size,
            sha1: row.rec.sha1,
            content_id: row.rec.content,
            created_ms: row.rec.created_ms,
        }
    }

    /// The SHA-1 as 40 lower-case hex characters.
    pub fn sha1_hex(&self) -> String {
        crate::hex(&self.sha1)
    }

    /// The header named `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Serialises to Sentry's file JSON: `{id, name, dist, headers, size, sha1, dateCreated}`.
impl serde::Serialize for FileRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeStruct};
        struct Headers<'a>(&'a [(String, String)]);
        impl serde::Serialize for Headers<'_> {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
        let mut st = s.serialize_struct("File", 7)?;
        st.serialize_field("id", &self.id.to_string())?;
        st.serialize_field("name", &self.key.name)?;
        st.serialize_field("dist", &self.key.dist)?;
        st.serialize_field("headers", &Headers(&self.headers))?;
        st.serialize_field("size", &self.size)?;
        st.serialize_field("sha1", &self.sha1_hex())?;
        st.serialize_field("dateCreated", &crate::rfc3339_ms(self.created_ms))?;
        st.end()
    }
}

/// A filter and a position for [`Store::list_files`].
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Case-insensitive substrings of the name; a file matches if it contains any (none: all).
    pub queries: Vec<String>,
    /// SHA-1s (hex); a file matches if its SHA-1 is any of them (none: all). AND-ed with `queries`.
    pub checksums: Vec<String>,
    /// Where to continue: the `next` cursor of the previous page.
    pub cursor: Option<String>,
    /// Page size (at least 1).
    pub limit: usize,
}

/// One page of a listing.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Cursor of the next page, when another page exists.
    pub next: Option<String>,
}

/// Store-wide figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Release files.
    pub files: u64,
    /// Distinct contents.
    pub contents: u64,
    /// Distinct chunks stored: those of live contents and, until gc removes them, those no
    /// content lists any more (of deleted files, or of uploads that failed).
    pub chunks: u64,
    /// Sum of the sizes of all files (what was uploaded).
    pub logical_bytes: u64,
    /// Sum of the sizes of the distinct chunks stored (what deduplication keeps; see `chunks`).
    pub stored_bytes: u64,
    /// Bytes on disk: segment files and the index.
    pub disk_bytes: u64,
}

/// The store. Cheap to clone; all clones share one open store. `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
    /// Shared by the handles only (not by readers or the flush thread): the last handle to go
    /// stops the flush thread before releasing `inner`. Otherwise the flush thread, holding a
    /// strong reference mid-sync, could be the one to drop `Inner`: it would join itself (a
    /// panic) and the store would stay locked after the caller dropped it.
    _handles: Arc<Handles>,
}

#[derive(Debug)]
struct Handles(Arc<Inner>);

impl Drop for Handles {
    fn drop(&mut self) {
        self.0.stop_flusher();
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) path: PathBuf,
    pub(crate) opts: StoreOptions,
    pub(crate) chunking: ChunkingParams,
    pub(crate) index: Index,
    pub(crate) segments: Segments,
    /// Shared by every index mutation; taken exclusively by gc so that chunk records it removes
    /// cannot be referenced by an upload that looked them up earlier.
    pub(crate) mutation: RwLock<()>,
    index_sync: GroupCommit,
    index_log: File,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    _lock: File,
}

impl Inner {
    /// Stops the flush thread and waits for it (a no-op once stopped).
    fn stop_flusher(&self) {
        {
            let (m, cv) = &*self.stop;
            *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cv.notify_all();
        }
        if let Some(h) = self
            .flusher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_flusher();
        // Best effort: make a clean close durable whatever the durability setting.
        let _ = self.segments.sync_all();
        let _ = self.index.flush();
        let _ = self.index_log.sync_data();
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Checks and normalises headers: at most 64, names are HTTP tokens, values carry no control
/// characters, a later header replaces an earlier one of the same name, bounded total size.
pub fn validate_headers(headers: &[(String, String)]) -> Result<Vec<(String, String)>> {
    if headers.len() > MAX_HEADERS {
        return Err(Error::invalid(
            "headers",
            format!("{} headers, the limit is {MAX_HEADERS}", headers.len()),
        ));
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(headers.len());
    let mut total = 0;
    for (k, v) in headers {
        let token = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(Error::invalid(
                "header",
                format!("name {k:?} is not an HTTP token"),
            ));
        }
        if v.chars().any(char::is_control) {
            return Err(Error::invalid(
                "header",
                format!("value of {k} contains control characters (CR, LF, tab...)"),
            ));
        }
        total += k.len() + v.len();
        match out.iter_mut().find(|(ek, _)| ek == k) {
            Some(e) => e.1 = v.clone(),
            None => out.push((k.clone(), v.clone())),
        }
    }
    if total > MAX_HEADER_BYTES {
        return Err(Error::invalid(
            "headers",
            format!("{total} bytes in all, the limit is {MAX_HEADER_BYTES}"),
        ));
    }
    Ok(out)
}

fn parse_sha1_hex(s: &str) -> Option<[u8; 20]> {
    crate::unhex(s)?.try_into().ok()
}

impl Store {
    /// Opens the store described by `opts`, creating it if the directory holds none.
    ///
    /// Fails at once with [`Error::Locked`] if another process holds it, and with
    /// [`Error::Format`] for a store of another format version.
    pub fn open(opts: StoreOptions) -> Result<Store> {
        let path = opts.path.clone();
        std::fs::create_dir_all(&path)
            .map_err(|e| Error::io("create store directory", &path, e))?;
        let lock_path = path.join("LOCK");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("open lock file", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked { path }),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io("lock store", &lock_path, e))
            }
        }
        let chunking = read_or_create_format(&path, opts.chunking)?;
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
        let inner = Arc::new(Inner {
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
        if let Durability::Batched { interval } = inner.opts.durability {
            let weak = Arc::downgrade(&inner);
            let stop = inner.stop.clone();
            let handle = std::thread::Builder::new()
                .name("relstore-flush".into())
                .spawn(move || loop {
                    {
                        let (m, cv) = &*stop;
                        let g = m.lock().unwrap_or_else(|p| p.into_inner());
                        let (g, _) = cv
                            .wait_timeout_while(g, interval, |s| !*s)
                            .unwrap_or_else(|p| p.into_inner());
                        if *g {
                            return;
                        }
                    }
                    let Some(inner) = weak.upgrade() else { return };
                    // Errors poison the sync points; the next write reports them.
                    let _ = inner.segments.sync_all().and_then(|()| inner.sync_index());
                })
                .map_err(|e| Error::io("start flush thread", &inner.path, e))?;
            *inner.flusher.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        }
        Ok(Store {
            _handles: Arc::new(Handles(inner.clone())),
            inner,
        })
    }

    /// Opens the store at `path` with default options.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Store> {
        Store::open(StoreOptions::new(path.as_ref()))
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The chunking parameters this store was created with.
    pub fn chunking(&self) -> ChunkingParams {
        self.inner.chunking
    }

    // ----- releases -----

    /// Creates release `version` of `org` linked to `projects`, or links the projects to the
    /// existing release. Returns the release and `true` when it was created.
    pub fn create_release(
        &self,
        org: &str,
        version: &str,
        projects: &[&str],
    ) -> Result<(Release, bool)> {
        validate_slug("org", org)?;
        validate_version(version)?;
        for p in projects {
            validate_slug("project", p)?;
        }
        let projects: Vec<String> = projects.iter().map(|p| p.to_string()).collect();
        let _m = self.inner.mutation_guard()?;
        let (row, created) = self
            .inner
            .index
            .create_release(org, version, &projects, now_ms())?;
        self.inner.durable_index()?;
        Ok((self.release_from_row(row)?, created))
    }

    /// The release `version` of `org`.
    pub fn release(&self, org: &str, version: &str) -> Result<Option<Release>> {
        self.inner
            .index
            .release(org, version)?
            .map(|r| self.release_from_row(r))
            .transpose()
    }

    /// Releases of `org` (only those linked to `project` when given), newest first.
    pub fn releases(&self, org: &str, project: Option<&str>) -> Result<Vec<Release>> {
        let mut rows = self.inner.index.releases(org)?;
        if let Some(p) = project {
            rows.retain(|r| r.rec.projects.iter().any(|x| x == p));
        }
        rows.sort_by(|a, b| {
            b.rec
                .created_ms
                .cmp(&a.rec.created_ms)
                .then_with(|| b.version.cmp(&a.version))
        });
        rows.into_iter().map(|r| self.release_from_row(r)).collect()
    }

    /// Organizations that have releases.
    pub fn orgs(&self) -> Result<Vec<String>> {
        self.inner.index.orgs()
    }

    /// Projects of `org`.
    pub fn projects(&self, org: &str) -> Result<Vec<Project>> {
        Ok(self
            .inner
            .index
            .projects(org)?
            .into_iter()
            .map(|(slug, rec)| Project { id: rec.id, slug })
            .collect())
    }

    /// Changes a release's metadata.
    pub fn update_release(
        &self,
        org: &str,
        version: &str,
        update: &ReleaseUpdate,
    ) -> Result<Release> {
        let _m = self.inner.mutation_guard()?;
        let row = self
            .inner
            .index
            .update_release(org, version, &|rec: &mut ReleaseRec| {
                if let Some(v) = update.released_ms {
                    rec.released_ms = v;
                }
                if let Some(v) = &update.url {
                    rec.url = v.clone();
                }
                if let Some(v) = &update.vcs_ref {
                    rec.vcs_ref = v.clone();
                }
            })?;
        self.inner.durable_index()?;
        self.release_from_row(row)
    }

    /// Deletes a release and every file in every scope of it, in one transaction. Returns the
    /// number of files deleted; [`Error::NotFound`] if the release does not exist.
    pub fn delete_release(&self, org: &str, version: &str) -> Result<u64> {
        let Some(row) = self.inner.index.release(org, version)? else {
            return Err(Error::not_found(format!("release {org}/{version}")));
        };
        let mut scopes: Vec<ReleaseScope> = row
            .rec
            .projects
            .iter()
            .map(|p| ReleaseScope::project(org, p, version))
            .collect();
        scopes.push(ReleaseScope::org_wide(org, version));
        let _m = self.inner.mutation_guard()?;
        let n = self
            .inner
            .index
            .delete_files_of(org, version, &scopes, true)?;
        self.inner.durable_index()?;
        Ok(n)
    }

    /// Deletes every file of one scope of a release (the release stays). Returns the count.
    pub fn delete_files_in(&self, scope: &ReleaseScope) -> Result<u64> {
        let _m = self.inner.mutation_guard()?;
        let n = self.inner.index.delete_files_of(
            &scope.org,
            &scope.release,
            std::slice::from_ref(scope),
            false,
        )?;
        self.inner.durable_index()?;
        Ok(n)
    }

    fn release_from_row(&self, row: ReleaseRow) -> Result<Release> {
        let mut projects = Vec::with_capacity(row.rec.projects.len());
        for slug in &row.rec.projects {
            let rec = self.inner.index.project(&row.org, slug)?.ok_or_else(|| {
                Error::corrupt(
                    format!("release {}/{}", row.org, row.version),
                    format!("links missing project {slug}"),
                )
            })?;
            projects.push(Project {
                id: rec.id,
                slug: slug.clone(),
            });
        }
        Ok(Release {
            org: row.org,
            version: row.version,
            created_ms: row.rec.created_ms,
            released_ms: row.rec.released_ms,
            url: row.rec.url,
            vcs_ref: row.rec.vcs_ref,
            projects,
            file_count: row.rec.file_count,
            file_bytes: row.rec.file_bytes,
        })
    }

    // ----- files -----

    /// Stores the bytes of `reader` as the file `key` with `headers`.
    ///
    /// The release must exist and, for a project scope, be linked to the project. When `key`
    /// already names a file: with `overwrite` the file is replaced atomically (the new file gets a
    /// new id), without it the call fails with [`Error::AlreadyExists`] and changes nothing.
    /// Returns after the file is durable (see [`Durability`]).
    pub fn upload(
        &self,
        key: &FileKey,
        headers: &[(String, String)],
        reader: &mut dyn Read,
        overwrite: bool,
    ) -> Result<FileRecord> {
        key.validate()?;
        let headers = validate_headers(headers)?;
        let inner = &*self.inner;
        inner.check_writable()?;
        // Fail before reading a byte when the target cannot be written.
        self.check_target(key, overwrite)?;
        let _m = inner.mutation_guard()?;
        let staged = inner.stage(reader, inner.opts.max_upload_bytes)?;
        inner.commit_staged(key, &headers, staged, overwrite)
    }

    fn check_target(&self, key: &FileKey, overwrite: bool) -> Result<()> {
        let Some(release) = self.inner.index.release(&key.org, &key.release)? else {
            return Err(Error::not_found(format!(
                "release {}/{}",
                key.org, key.release
            )));
        };
        if let Some(p) = &key.project {
            if !release.rec.projects.contains(p) {
                return Err(Error::not_found(format!(
                    "release {} in project {p}",
                    key.release
                )));
            }
        }
        if !overwrite && self.inner.index.file(key)?.is_some() {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        Ok(())
    }

    /// The file at `key`.
    pub fn file(&self, key: &FileKey) -> Result<Option<FileRecord>> {
        Ok(self.inner.index.file(key)?.map(FileRecord::from_row))
    }

    /// The file with id `id`.
    pub fn file_by_id(&self, id: u64) -> Result<Option<FileRecord>> {
        Ok(self.inner.index.file_by_id(id)?.map(FileRecord::from_row))
    }

    /// A `Read + Seek` over the content of `file`, checked chunk by chunk.
    pub fn open_file(&self, file: &FileRecord) -> Result<ContentReader> {
        self.open_content(&file.content_id)
    }

    /// A reader over the content with BLAKE3 `id`.
    pub fn open_content(&self, id: &[u8; 32]) -> Result<ContentReader> {
        let rec = self
            .inner
            .index
            .content(id)?
            .ok_or_else(|| Error::not_found(format!("content {}", crate::hex(id))))?;
        let chunks = self.inner.index.manifest(id, &rec)?;
        let reader = ContentReader::new(self.inner.clone(), chunks);
        if reader.size() != rec.size {
            return Err(Error::corrupt(
                format!("content {}", crate::hex(id)),
                "chunk lengths do not add up to its size",
            ));
        }
        Ok(reader)
    }

    /// The whole content of the file at `key`.
    pub fn read(&self, key: &FileKey) -> Result<Vec<u8>> {
        let file = self
            .file(key)?
            .ok_or_else(|| Error::not_found(format!("file {key}")))?;
        self.open_file(&file)?.read_to_vec()
    }

    /// Contents whose SHA-1 is `sha1` (more than one only for SHA-1 collisions).
    pub fn contents_by_sha1(&self, sha1: &[u8; 20]) -> Result<Vec<[u8; 32]>> {
        self.inner.index.contents_by_sha1(sha1)
    }

    /// Lists the files of `scope` in name order (then dist), filtered and paginated by `query`.
    pub fn list_files(&self, scope: &ReleaseScope, query: &ListQuery) -> Result<Page<FileRecord>> {
        let after = match query.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(
                crate::unhex(c)
                    .ok_or_else(|| Error::InvalidCursor("not a cursor of this store".into()))?,
            ),
        };
        if let Some(a) = &after {
            FileKey::decode(a)
                .map_err(|_| Error::InvalidCursor("not a cursor of this store".into()))?;
        }
        let needles: Vec<String> = query.queries.iter().map(|q| q.to_lowercase()).collect();
        let mut sums = Vec::new();
        for c in &query.checksums {
            sums.push(parse_sha1_hex(&c.to_ascii_lowercase()).ok_or_else(|| {
                Error::invalid("checksum", format!("{c:?} is not a 40-character hex SHA-1"))
            })?);
        }
        let mut keep = |row: &FileRow| {
            let name_ok = needles.is_empty() || {
                let lower = row.rec.key.name.to_lowercase();
                needles.iter().any(|n| lower.contains(n.as_str()))
            };
            name_ok && (sums.is_empty() || sums.contains(&row.rec.sha1))
        };
        let (rows, more) =
            self.inner
                .index
                .list_files(scope, after.as_deref(), query.limit.max(1), &mut keep)?;
        let next = if more {
            rows.last().map(|(k, _)| crate::hex(k))
        } else {
            None
        };
        Ok(Page {
            items: rows
                .into_iter()
                .map(|(_, r)| FileRecord::from_row(r))
                .collect(),
            next,
        })
    }

    /// Renames file `id` within its scope to `name` and `dist` (atomic). Fails with
    /// [`Error::AlreadyExists`] if another file has that name and dist.
    pub fn rename(&self, id: u64, name: &str, dist: Option<&str>) -> Result<FileRecord> {
        crate::key::validate_name(name)?;
        let dist = dist.filter(|d| !d.is_empty());
        if let Some(d) = dist {
            crate::key::validate_dist(d)?;
        }
        let _m = self.inner.mutation_guard()?;
        let row = self.inner.index.rename_file(id, name, dist)?;
        self.inner.durable_index()?;
        Ok(FileRecord::from_row(row))
    }

    /// Deletes file `id`. Returns the deleted file, or `None` when there was none.
    pub fn delete_file(&self, id: u64) -> Result<Option<FileRecord>> {
        let _m = self.inner.mutation_guard()?;
        let row = self.inner.index.delete_file(id)?;
        if row.is_some() {
            self.inner.durable_index()?;
        }
        Ok(row.map(FileRecord::from_row))
    }

    /// Store-wide counts and sizes. Files, contents and logical bytes are counters; the chunk
    /// figures come from a scan of the chunk records (~1 s per million chunks).
    pub fn stats(&self) -> Result<Stats> {
        let c: Counters = self.inner.index.counters()?;
        let (chunks, stored_bytes) = self.inner.index.chunk_totals()?;
        Ok(Stats {
            files: c.files,
            contents: c.contents,
            chunks,
            logical_bytes: c.logical_bytes,
            stored_bytes,
            disk_bytes: self.disk_bytes(),
        })
    }

    /// Bytes on disk: segment files and the index.
    pub fn disk_bytes(&self) -> u64 {
        self.inner.segments.disk_bytes() + self.inner.index.disk_bytes()
    }

    /// Makes every acknowledged write durable now (useful with [`Durability::Batched`]).
    pub fn sync(&self) -> Result<()> {
        self.inner.segments.sync_all()?;
        self.inner.sync_index()
    }
}

impl Inner {
    /// Commits a staged upload as the file `key` (validated, with validated `headers`): syncs
    /// its bytes and records its last chunks, runs the one index transaction (which re-checks
    /// the release, the project link and a taken key), and makes the index durable. Call with
    /// the mutation guard held.
    pub(crate) fn commit_staged(
        &self,
        key: &FileKey,
        headers: &[(String, String)],
        staged: Staged,
        overwrite: bool,
    ) -> Result<FileRecord> {
        self.sync_staged(&staged)?;
        self.index.insert_chunks(&staged.unrecorded)?;
        let id = self.index.next_id()?;
        let (row, _replaced) = self.index.commit_upload(&UploadCommit {
            key,
            id,
            headers,
            created_ms: now_ms(),
            ingested: &staged.ingested,
            chunks: &staged.chunks,
            overwrite,
        })?;
        self.durable_index()?;
        Ok(FileRecord::from_row(row))
    }

    /// Makes a staged upload's bytes durable before its chunk records and its index
    /// transaction (`Immediate`).
    pub(crate) fn sync_staged(&self, staged: &Staged) -> Result<()> {
        match (staged.ticket, self.opts.durability) {
            (Some(t), Durability::Immediate) => self.segments.sync(t),
            _ => Ok(()),
        }
    }

    /// Syncs every append so far when durability is `Immediate` (before an index transaction).
    pub(crate) fn sync_segments_if_immediate(&self) -> Result<()> {
        match self.opts.durability {
            Durability::Immediate => self.segments.sync_all(),
            Durability::Batched { .. } => Ok(()),
        }
    }

    /// Admits one index mutation: shared with other mutations, exclusive with gc. Refused once a
    /// sync has failed (segments or index): what that sync covered may not be on disk, so no
    /// later write may be acknowledged until the store is reopened and recovered.
    pub(crate) fn mutation_guard(&self) -> Result<std::sync::RwLockReadGuard<'_, ()>> {
        self.check_writable()?;
        Ok(self.mutation.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Fails with [`Error::Poisoned`] after any failed sync.
    pub(crate) fn check_writable(&self) -> Result<()> {
        self.segments.check_writable()?;
        match self.index_sync.failure() {
            Some(cause) => Err(Error::Poisoned { cause }),
            None => Ok(()),
        }
    }

    /// Flushes sled and `fdatasync`s its log, shared by concurrent callers.
    pub(crate) fn sync_index(&self) -> Result<()> {
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

    /// After an index transaction: durable now with `Immediate`, later with `Batched`.
    pub(crate) fn durable_index(&self) -> Result<()> {
        match self.opts.durability {
            Durability::Immediate => self.sync_index(),
            Durability::Batched { .. } => Ok(()),
        }
    }
}

fn read_or_create_format(path: &Path, chunking: ChunkingParams) -> Result<ChunkingParams> {
    let fpath = path.join("FORMAT");
    match std::fs::read(&fpath) {
        Ok(bytes) => {
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| Error::Format {
                    path: fpath.clone(),
                    detail: format!("unreadable FORMAT file: {e}"),
                })?;
            if v.get("format").and_then(|f| f.as_str()) != Some("relstore") {
                return Err(Error::Format {
                    path: fpath,
                    detail: "not a relstore FORMAT file".into(),
                });
            }
            let version = v.get("version").and_then(|x| x.as_u64()).unwrap_or(0);
            if version != u64::from(FORMAT_VERSION) {
                return Err(Error::Format {
                    path: fpath,
                    detail: format!("format version {version}, this build reads {FORMAT_VERSION}"),
                });
            }
            let rec: FormatRec = serde_json::from_value(
                serde_json::json!({"version": version, "chunking": v.get("chunking")}),
            )
            .map_err(|e| Error::Format {
                path: fpath.clone(),
                detail: format!("bad chunking parameters: {e}"),
            })?;
            rec.chunking.validate()?;
            Ok(rec.chunking)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            chunking.validate()?;
            let body = serde_json::json!({"format": "relstore", "version": FORMAT_VERSION, "chunking": chunking});
            let tmp = path.join("FORMAT.tmp");
            let text = serde_json::to_vec_pretty(&body).expect("json");
            (|| {
                use std::io::Write;
                let mut f = File::create(&tmp)?;
                f.write_all(&text)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &fpath)?;
                File::open(path)?.sync_all()
            })()
            .map_err(|e| Error::io("write FORMAT", &fpath, e))?;
            Ok(chunking)
        }
        Err(e) => Err(Error::io("read FORMAT", &fpath, e)),
    }
}

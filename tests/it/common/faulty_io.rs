//! Test support shared by the durability tests: a fault-injecting [`SegmentIo`] and an index
//! recount.
//!
//! [`FaultyIo`] wraps the real file system and fails exactly the N-th segment write or the N-th
//! segment sync (`fdatasync` of a segment or of the segment directory) with an OS error such as
//! `ENOSPC` or `EIO`, optionally after writing half of the buffer, the way a full disk tears a
//! write. [`assert_index_consistent`] recounts every refcount and store counter from the file
//! records of a closed store, independently of the library's own `verify`.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use relstore::__private::Index;
use relstore::{ChunkId, SegmentFile, SegmentIo, StdIo};

/// `ENOSPC`: no space left on device.
pub const ENOSPC: i32 = 28;
/// `EIO`: I/O error.
pub const EIO: i32 = 5;

/// Which kind of call a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// `write_all_at` on a segment file.
    Write,
    /// `sync_data` on a segment file or `sync_dir` on the segment directory.
    Sync,
}

#[derive(Debug, Default)]
struct Plan {
    writes: u64,
    syncs: u64,
    /// The armed fault: kind, 1-based position counted from arming, errno, tear the write.
    fault: Option<(FaultKind, u64, i32, bool)>,
    /// Set once the armed fault has fired.
    fired: bool,
}

/// Segment I/O on the real file system that fails one chosen call (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct FaultyIo {
    plan: Arc<Mutex<Plan>>,
}

impl FaultyIo {
    /// A new backend with no fault armed.
    pub fn new() -> FaultyIo {
        FaultyIo::default()
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resets the call counters and arms a fault: the `nth` (1-based) call of `kind` from now on
    /// fails with `errno`; with `tear`, a failing write first writes half of its buffer.
    pub fn arm(&self, kind: FaultKind, nth: u64, errno: i32, tear: bool) {
        let mut p = self.plan();
        p.writes = 0;
        p.syncs = 0;
        p.fault = Some((kind, nth, errno, tear));
        p.fired = false;
    }

    /// Resets the counters without arming a fault (to count the calls of a scenario).
    pub fn count_only(&self) {
        let mut p = self.plan();
        p.writes = 0;
        p.syncs = 0;
        p.fault = None;
        p.fired = false;
    }

    /// Writes and syncs seen since the last `arm`/`count_only`.
    pub fn counts(&self) -> (u64, u64) {
        let p = self.plan();
        (p.writes, p.syncs)
    }

    /// True once the armed fault has fired.
    pub fn fired(&self) -> bool {
        self.plan().fired
    }

    /// Counts a call of `kind`; returns the error to fail it with, and whether to tear it.
    fn check(&self, kind: FaultKind) -> Option<(io::Error, bool)> {
        let mut p = self.plan();
        let n = match kind {
            FaultKind::Write => {
                p.writes += 1;
                p.writes
            }
            FaultKind::Sync => {
                p.syncs += 1;
                p.syncs
            }
        };
        match p.fault {
            Some((k, nth, errno, tear)) if k == kind && nth == n && !p.fired => {
                p.fired = true;
                Some((io::Error::from_raw_os_error(errno), tear))
            }
            _ => None,
        }
    }
}

impl SegmentIo for FaultyIo {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
        let inner = StdIo.create(path)?;
        Ok(Arc::new(FaultyFile {
            io: self.clone(),
            inner,
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
        let inner = StdIo.open(path)?;
        Ok(Arc::new(FaultyFile {
            io: self.clone(),
            inner,
        }))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if let Some((e, _)) = self.check(FaultKind::Sync) {
            return Err(e);
        }
        StdIo.sync_dir(dir)
    }
}

#[derive(Debug)]
struct FaultyFile {
    io: FaultyIo,
    inner: Arc<dyn SegmentFile>,
}

impl SegmentFile for FaultyFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if let Some((e, tear)) = self.io.check(FaultKind::Write) {
            if tear && buf.len() > 1 {
                self.inner.write_all_at(&buf[..buf.len() / 2], offset)?;
            }
            return Err(e);
        }
        self.inner.write_all_at(buf, offset)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if let Some((e, _)) = self.io.check(FaultKind::Sync) {
            return Err(e);
        }
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn os_file(&self) -> Option<&File> {
        self.inner.os_file()
    }
}

/// What [`assert_index_consistent`] counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recount {
    /// File records.
    pub files: u64,
    /// Contents with a reference.
    pub contents: u64,
    /// Chunks some manifest lists.
    pub chunks: u64,
    /// Sum of file sizes.
    pub logical_bytes: u64,
    /// Sum of the sizes of the chunks some manifest lists.
    pub stored_bytes: u64,
}

/// Opens the index of the (closed) store at `store_dir` directly and checks that every content
/// refcount equals the number of live references recounted from the file records, that every
/// referenced content and every chunk a manifest lists has its record (with the manifest's
/// length), and that the store counters equal the recount. Panics with a description of the
/// first mismatch; returns the recount.
pub fn assert_index_consistent(store_dir: &Path) -> Recount {
    let index = Index::open(&store_dir.join("index"), 4 << 20).expect("open index directly");
    let want_contents = index.expected_content_refs().expect("recount refcounts");
    let mut r = Recount::default();
    for row in index.all_files() {
        let row = row.expect("file row decodes");
        r.files += 1;
        r.logical_bytes += row.rec.size;
    }
    let mut seen_contents = 0;
    let mut listed: HashMap<ChunkId, u32> = HashMap::new();
    for item in index.all_contents() {
        let (id, rec) = item.expect("content record decodes");
        let want = want_contents.get(&id).copied().unwrap_or(0);
        assert_eq!(
            rec.refcount, want,
            "content {} has refcount {} but {want} live file references",
            id, rec.refcount
        );
        for c in index.manifest(&id, &rec).expect("manifest reads") {
            listed.insert(c.id, c.len);
        }
        seen_contents += 1;
    }
    assert_eq!(
        seen_contents,
        want_contents.len(),
        "a file refers to a content that has no record"
    );
    r.contents = seen_contents as u64;
    let mut records: HashMap<ChunkId, u32> = HashMap::new();
    for item in index.all_chunks() {
        let (id, rec) = item.expect("chunk record decodes");
        records.insert(id, rec.len);
    }
    for (id, len) in &listed {
        assert_eq!(
            records.get(id),
            Some(len),
            "a content lists chunk {} of {len} bytes; its record says {:?}",
            id,
            records.get(id)
        );
        r.chunks += 1;
        r.stored_bytes += u64::from(*len);
    }
    let c = index.counters().expect("read counters");
    assert_eq!(
        (c.files, c.contents, c.logical_bytes),
        (r.files, r.contents, r.logical_bytes),
        "store counters (files, contents, logical bytes) differ from the recount"
    );
    r
}

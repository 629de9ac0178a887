//! Segment files: append-only packs of chunk records under `STORE/segments/`.
//!
//! This module owns the bytes of every chunk. It appends batches of encoded records to the one
//! active segment, makes them durable with a shared sync (group commit), seals a segment when it
//! is full, and reads records back through a memory map (sealed segments) or positional reads
//! (the active segment, or every segment in [`ReadMode::Pread`]). It never decides what is live:
//! that is the index's job; it only stores and returns checked bytes. The byte layout is in
//! [`mod@format`] and `docs/format.md`.

pub mod format;
pub mod io;
mod mmap;
pub mod recover;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use crate::error::{Error, Object, Result};
use crate::group_commit::GroupCommit;
use crate::lock::{lock, read, write};
use format::{decode_segment_header, encode_segment_header, SEGMENT_HEADER_LEN};
use io::{SegmentFile, SegmentIo};
use mmap::SealedMap;

/// How sealed segments are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadMode {
    /// Memory-map sealed segments (the active one is always read with `pread`).
    #[default]
    Mmap,
    /// Positional reads for every segment.
    Pread,
}

/// Where a chunk record lives: the segment and the offset of its record header.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    bincode::Encode,
    bincode::Decode,
)]
pub struct Location {
    /// Segment id (its file name is the id in 8 decimal digits).
    pub segment: u32,
    /// Offset of the record header within the segment file.
    pub offset: u64,
}

/// The file name of segment `id`.
pub fn segment_file_name(id: u32) -> String {
    format!("{id:08}.seg")
}

fn parse_segment_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[derive(Debug)]
struct Active {
    id: u32,
    file: Arc<dyn SegmentFile>,
    len: u64,
}

#[derive(Debug)]
struct Sealed {
    file: Arc<dyn SegmentFile>,
    map: OnceLock<Option<SealedMap>>,
}

/// Bytes of one or more consecutive records, borrowed from a sealed segment's map or read into
/// memory. Holding it keeps the map alive, even if compaction removes the file meanwhile.
#[derive(Debug)]
pub struct RunBytes(RunInner);

#[derive(Debug)]
enum RunInner {
    Mapped(Arc<Sealed>, usize, usize),
    Owned(Vec<u8>),
}

impl RunBytes {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            RunInner::Owned(v) => v,
            RunInner::Mapped(sealed, start, len) => match sealed.map.get() {
                Some(Some(map)) => &map.bytes()[*start..*start + *len],
                _ => unreachable!(
                    "`Mapped` is only built after the map was created and bounds-checked"
                ),
            },
        }
    }
}

/// The segment files of one store.
#[derive(Debug)]
pub struct Segments {
    dir: PathBuf,
    io: Arc<dyn SegmentIo>,
    max_bytes: u64,
    read_mode: ReadMode,
    active: Mutex<Active>,
    sealed: RwLock<BTreeMap<u32, Arc<Sealed>>>,
    sync: GroupCommit,
}

impl Segments {
    /// Opens (creating if needed) the segments of `dir`: validates every header, truncates a torn
    /// tail of the newest segment, and makes it the active one.
    pub fn open(
        dir: &Path,
        io: Arc<dyn SegmentIo>,
        max_bytes: u64,
        read_mode: ReadMode,
    ) -> Result<Segments> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create segment directory", dir, e))?;
        let mut ids = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list segments", dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list segments", dir, e))?;
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(parse_segment_file_name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut sealed = BTreeMap::new();
        let last = ids.pop();
        for id in ids {
            let path = dir.join(segment_file_name(id));
            let file = io
                .open(&path)
                .map_err(|e| Error::io("open segment", &path, e))?;
            check_header(&*file, id, &path)?;
            sealed.insert(
                id,
                Arc::new(Sealed {
                    file,
                    map: OnceLock::new(),
                }),
            );
        }
        let active = match last {
            Some(id) => open_active(&*io, dir, id)?,
            None => create_segment(&*io, dir, 1).map_err(|(e, _)| e)?,
        };
        Ok(Segments {
            dir: dir.to_owned(),
            io,
            max_bytes,
            read_mode,
            active: Mutex::new(active),
            sealed: RwLock::new(sealed),
            sync: GroupCommit::default(),
        })
    }

    fn lock_active(&self) -> MutexGuard<'_, Active> {
        lock(&self.active)
    }

    /// Fails if an earlier sync failed (see [`Error::Poisoned`]).
    pub fn check_writable(&self) -> Result<()> {
        match self.sync.failure() {
            Some(cause) => Err(Error::Poisoned { cause }),
            None => Ok(()),
        }
    }

    /// Appends `batch` (whole encoded records) to the active segment, sealing it first when the
    /// batch would not fit. Returns where the batch starts and a ticket for [`Self::sync`].
    /// On failure the segment is cut back to its previous length, so no partial record remains.
    pub fn append(&self, batch: &[u8]) -> Result<(Location, u64)> {
        self.check_writable()?;
        let mut active = self.lock_active();
        if active.len > SEGMENT_HEADER_LEN as u64
            && active.len + batch.len() as u64 > self.max_bytes
        {
            self.roll(&mut active)?;
        }
        let offset = active.len;
        if let Err(e) = active.file.write_all_at(batch, offset) {
            let path = self.path_of(active.id);
            if let Err(cut) = active.file.set_len(offset) {
                self.sync
                    .poison(format!("could not cut a failed append back ({cut})"));
            }
            return Err(Error::io("append to segment", path, e));
        }
        active.len += batch.len() as u64;
        let location = Location {
            segment: active.id,
            offset,
        };
        drop(active);
        Ok((location, self.sync.ticket()))
    }

    /// Returns once every append whose ticket is `ticket` or older is on stable storage.
    /// Concurrent callers share one `fdatasync`.
    pub fn sync(&self, ticket: u64) -> Result<()> {
        self.sync
            .wait(ticket, || {
                let file = self.lock_active().file.clone();
                file.sync_data()
            })
            .map_err(|cause| Error::Poisoned { cause })
    }

    /// Syncs everything appended so far.
    pub fn sync_all(&self) -> Result<()> {
        let t = self.sync.ticket();
        self.sync(t)
    }

    /// Seals the active segment and starts a new one (used before compaction).
    pub fn seal_active(&self) -> Result<()> {
        self.check_writable()?;
        let mut active = self.lock_active();
        if active.len > SEGMENT_HEADER_LEN as u64 {
            self.roll(&mut active)?;
        }
        Ok(())
    }

    fn roll(&self, active: &mut Active) -> Result<()> {
        let path = self.path_of(active.id);
        if let Err(e) = active.file.sync_data() {
            self.sync
                .poison(format!("sync of {} failed: {e}", path.display()));
            return Err(Error::io("sync segment", path, e));
        }
        let next = self.next_id(active.id);
        let new = create_segment(&*self.io, &self.dir, next).map_err(|(e, synced)| {
            if synced {
                self.sync.poison(format!("creating segment {next}: {e}"));
            }
            e
        })?;
        let old = std::mem::replace(active, new);
        write(&self.sealed).insert(
            old.id,
            Arc::new(Sealed {
                file: old.file,
                map: OnceLock::new(),
            }),
        );
        Ok(())
    }

    fn next_id(&self, active: u32) -> u32 {
        let sealed = read(&self.sealed);
        sealed.keys().next_back().copied().unwrap_or(0).max(active) + 1
    }

    /// Removes a sealed segment file. Readers holding it keep their handle until they finish.
    pub fn remove(&self, id: u32) -> Result<()> {
        let removed = write(&self.sealed).remove(&id);
        if removed.is_some() {
            let path = self.path_of(id);
            std::fs::remove_file(&path).map_err(|e| Error::io("remove segment", &path, e))?;
        }
        Ok(())
    }

    /// Ids and lengths of the sealed segments.
    pub fn sealed_segments(&self) -> Vec<(u32, u64)> {
        let sealed = read(&self.sealed);
        sealed
            .iter()
            .map(|(id, s)| (*id, s.file.len().unwrap_or(0)))
            .collect()
    }

    /// Id and length of the active segment.
    pub fn active_segment(&self) -> (u32, u64) {
        let a = self.lock_active();
        (a.id, a.len)
    }

    /// Total bytes of all segment files.
    pub fn disk_bytes(&self) -> u64 {
        let active = self.lock_active().len;
        active + self.sealed_segments().iter().map(|(_, l)| l).sum::<u64>()
    }

    /// The path of segment `id`.
    pub fn path_of(&self, id: u32) -> PathBuf {
        self.dir.join(segment_file_name(id))
    }

    /// Reads `len` bytes at `location` (one or more consecutive records).
    pub fn read(&self, location: Location, len: usize) -> Result<RunBytes> {
        let sealed = {
            let active = self.lock_active();
            if active.id == location.segment {
                let file = active.file.clone();
                drop(active);
                return self.pread(&*file, location, len);
            }
            read(&self.sealed).get(&location.segment).cloned()
        };
        let Some(sealed) = sealed else {
            return Err(Error::corrupt(
                Object::Segment(location.segment),
                "the index refers to a segment that does not exist",
            ));
        };
        if self.read_mode == ReadMode::Mmap {
            let map = sealed.map.get_or_init(|| {
                sealed
                    .file
                    .os_file()
                    .and_then(|f| SealedMap::map_sealed(f).ok())
            });
            if let Some(map) = map {
                let start = usize::try_from(location.offset).unwrap_or(usize::MAX);
                return match start.checked_add(len) {
                    Some(end) if end <= map.bytes().len() => {
                        Ok(RunBytes(RunInner::Mapped(sealed.clone(), start, len)))
                    }
                    _ => Err(Error::corrupt(
                        Object::Segment(location.segment),
                        format!(
                            "record at {} (+{len}) lies past the end of the file",
                            location.offset
                        ),
                    )),
                };
            }
        }
        self.pread(&*sealed.file, location, len)
    }

    fn pread(&self, file: &dyn SegmentFile, location: Location, len: usize) -> Result<RunBytes> {
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, location.offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupt(
                    Object::Segment(location.segment),
                    format!(
                        "record at {} (+{len}) lies past the end of the file",
                        location.offset
                    ),
                )
            } else {
                Error::io("read segment", self.path_of(location.segment), e)
            }
        })?;
        Ok(RunBytes(RunInner::Owned(buf)))
    }
}

/// Opens the newest segment as the active one: rewrites a header that never made it, and cuts a
/// torn tail after the last valid record (see [`recover::scan`]).
fn open_active(io: &dyn SegmentIo, dir: &Path, id: u32) -> Result<Active> {
    let path = dir.join(segment_file_name(id));
    let file = io
        .open(&path)
        .map_err(|e| Error::io("open segment", &path, e))?;
    let len = file
        .len()
        .map_err(|e| Error::io("stat segment", &path, e))?;
    if len < SEGMENT_HEADER_LEN as u64 {
        // Created but its header never made it: rewrite it.
        file.set_len(0)
            .map_err(|e| Error::io("truncate segment", &path, e))?;
        file.write_all_at(&encode_segment_header(id), 0)
            .map_err(|e| Error::io("write segment header", &path, e))?;
        file.sync_data()
            .map_err(|e| Error::io("sync segment", &path, e))?;
        return Ok(Active {
            id,
            file,
            len: SEGMENT_HEADER_LEN as u64,
        });
    }
    check_header(&*file, id, &path)?;
    let scan = recover::scan(len, |off, buf| file.read_exact_at(buf, off))
        .map_err(|e| Error::io("scan segment", &path, e))?;
    if scan.valid_end < len {
        file.set_len(scan.valid_end)
            .map_err(|e| Error::io("truncate torn segment tail", &path, e))?;
        file.sync_data()
            .map_err(|e| Error::io("sync segment", &path, e))?;
    }
    Ok(Active {
        id,
        file,
        len: scan.valid_end,
    })
}

fn check_header(file: &dyn SegmentFile, id: u32, path: &Path) -> Result<()> {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    file.read_exact_at(&mut h, 0)
        .map_err(|e| Error::io("read segment header", path, e))?;
    let named = decode_segment_header(&h).map_err(|e| match e {
        Error::Corrupt { detail, .. } => {
            Error::corrupt(Object::Segment(id), format!("{}: {detail}", path.display()))
        }
        other => other,
    })?;
    if named != id {
        return Err(Error::corrupt(
            Object::Segment(id),
            format!(
                "{}: the header names segment {named}, the file name says {id}",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Creates segment `id` with its header, durably. On failure the file is removed again (so the
/// next roll can reuse the id) and the flag tells whether a sync failed, which poisons the store.
fn create_segment(io: &dyn SegmentIo, dir: &Path, id: u32) -> Result<Active, (Error, bool)> {
    let path = dir.join(segment_file_name(id));
    let file = io
        .create(&path)
        .map_err(|e| (Error::io("create segment", &path, e), false))?;
    let header = encode_segment_header(id);
    let done = match file.write_all_at(&header, 0) {
        Err(e) => Err((Error::io("write segment header", &path, e), false)),
        Ok(()) => match file.sync_data() {
            Err(e) => Err((Error::io("sync segment header", &path, e), true)),
            // The new directory entry must be durable before the index can refer to the file.
            Ok(()) => io
                .sync_dir(dir)
                .map_err(|e| (Error::io("sync segment directory", dir, e), true)),
        },
    };
    if let Err(e) = done {
        // Nothing refers to the file yet; a leftover would make every later roll fail (the id
        // is taken) and a torn header would make the next open fail.
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(Active {
        id,
        file,
        len: SEGMENT_HEADER_LEN as u64,
    })
}

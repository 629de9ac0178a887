//! Reading a content back: `Read + Seek` over its chunk list, CRC32-checked chunk by chunk.
//!
//! Chunks that lie back to back in one segment (the usual case: an upload appends its new chunks
//! in order) are fetched as one range, up to [`MAX_RUN`] bytes, and each record in the range is
//! checked before any of its bytes are handed out. Locations are resolved lazily, per run, so a
//! long-lived reader follows chunks that compaction moved meanwhile.
//!
//! A reader holds the engine for as long as it lives: it needs only the index and the segments,
//! but it also keeps the store's `LOCK`, so no other process can open the store and compact the
//! segments it reads.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use sha1::Digest;

use super::Engine;
use crate::error::{Error, Object, Result};
use crate::id::{ChunkId, ContentId, Sha1};
use crate::index::records::{ChunkRec, ChunkRef};
use crate::segment::format::{check_record, HEADER_LEN};
use crate::segment::{Location, RunBytes};

/// Largest range read at once.
const MAX_RUN: usize = 4 << 20;

/// A readable, seekable view of one stored content. Obtained from [`crate::Store::open_file`].
pub struct ContentReader {
    engine: Arc<Engine>,
    chunks: Vec<ChunkRef>,
    /// `starts[i]` = offset of chunk `i` in the content; one extra entry = size.
    starts: Vec<u64>,
    pos: u64,
    run: Option<Run>,
}

struct Run {
    bytes: RunBytes,
    /// First chunk index in the run.
    first: usize,
    /// Byte offset (within `bytes`) of each chunk's payload in the run.
    payload_at: Vec<usize>,
}

impl std::fmt::Debug for ContentReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentReader")
            .field("size", &self.size())
            .field("chunks", &self.chunks.len())
            .field("pos", &self.pos)
            .finish()
    }
}

impl Engine {
    /// A reader over the content `id`, checked chunk by chunk.
    pub(crate) fn open_content(self: &Arc<Self>, id: &ContentId) -> Result<ContentReader> {
        ContentReader::open(self.clone(), id)
    }
}

impl ContentReader {
    /// A reader over the stored content `id`.
    fn open(engine: Arc<Engine>, id: &ContentId) -> Result<ContentReader> {
        let index = engine.index();
        let rec = index
            .content(id)?
            .ok_or_else(|| Error::not_found(format!("content {id}")))?;
        let chunks = index.manifest(id, &rec)?;
        let reader = ContentReader::over_chunks(engine, chunks);
        if reader.size() != rec.size {
            return Err(Error::corrupt(
                Object::Content(*id),
                "chunk lengths do not add up to its size",
            ));
        }
        Ok(reader)
    }

    /// A reader over the bytes of `chunks` in order (a bundle assembled from its pieces' chunk
    /// lists, before it is a content).
    pub(crate) fn over_chunks(engine: Arc<Engine>, chunks: Vec<ChunkRef>) -> ContentReader {
        let mut starts = Vec::with_capacity(chunks.len() + 1);
        let mut off = 0u64;
        for c in &chunks {
            starts.push(off);
            off += u64::from(c.len);
        }
        starts.push(off);
        ContentReader {
            engine,
            chunks,
            starts,
            pos: 0,
            run: None,
        }
    }

    /// The content's size in bytes.
    pub fn size(&self) -> u64 {
        *self.starts.last().expect("starts has a final entry")
    }

    fn locate(&self, id: &ChunkId) -> Result<ChunkRec> {
        self.engine
            .index()
            .chunk(id)?
            .ok_or_else(|| Error::corrupt(Object::Chunk(*id), "missing from the index"))
    }

    /// Loads the run that starts at chunk `first`.
    fn load_run(&mut self, first: usize) -> Result<()> {
        // The manifest's location hints first: no index lookup. A hint goes stale when gc moves
        // the chunk; the record found there then fails its checks (or its segment is gone), and
        // the `chunks` tree says where the chunk is now. Only that answer's errors count.
        if self.try_load_run(first, false).is_ok() {
            return Ok(());
        }
        // One retry: a compaction may move the chunks between the lookup and the read.
        match self.try_load_run(first, true) {
            Err(Error::Corrupt { .. }) => self.try_load_run(first, true),
            other => other,
        }
    }

    /// Where chunk `i` is: from the `chunks` tree, or from the manifest's hint.
    fn resolve(&self, i: usize, from_index: bool) -> Result<ChunkRec> {
        let c = &self.chunks[i];
        if from_index {
            self.locate(&c.id)
        } else {
            Ok(ChunkRec {
                location: c.location_hint,
                len: c.len,
                crc32: c.crc32,
            })
        }
    }

    fn try_load_run(&mut self, first: usize, from_index: bool) -> Result<()> {
        let head = self.resolve(first, from_index)?;
        let mut recs = vec![head];
        let mut span = HEADER_LEN + head.len as usize;
        let mut next_at = head.location.offset + span as u64;
        for (i, c) in self.chunks.iter().enumerate().skip(first + 1) {
            if span + HEADER_LEN + c.len as usize > MAX_RUN {
                break;
            }
            let rec = self.resolve(i, from_index)?;
            if rec.location
                != (Location {
                    segment: head.location.segment,
                    offset: next_at,
                })
            {
                break;
            }
            span += HEADER_LEN + rec.len as usize;
            next_at += (HEADER_LEN + rec.len as usize) as u64;
            recs.push(rec);
        }
        let bytes = self.engine.read_run(head.location, span)?;
        let data = bytes.as_slice();
        let mut payload_at = Vec::with_capacity(recs.len());
        let mut off = 0usize;
        for (i, rec) in recs.iter().enumerate() {
            let c = &self.chunks[first + i];
            if rec.len != c.len {
                return Err(Error::corrupt(
                    Object::Chunk(c.id),
                    "index length differs from the manifest",
                ));
            }
            check_record(&data[off..], rec.len, rec.crc32, &c.id)?;
            payload_at.push(off + HEADER_LEN);
            off += HEADER_LEN + rec.len as usize;
        }
        self.run = Some(Run {
            bytes,
            first,
            payload_at,
        });
        Ok(())
    }

    fn chunk_at(&self, pos: u64) -> usize {
        // The last start <= pos (chunks are never empty).
        self.starts.partition_point(|&s| s <= pos) - 1
    }

    /// Reads into `buf` from the current position; `Ok(0)` at the end.
    pub fn read_checked(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.pos >= self.size() || buf.is_empty() {
            return Ok(0);
        }
        let i = self.chunk_at(self.pos);
        let covered = self
            .run
            .as_ref()
            .is_some_and(|r| i >= r.first && i < r.first + r.payload_at.len());
        if !covered {
            self.load_run(i)?;
        }
        let run = self.run.as_ref().expect("run loaded");
        let within = (self.pos - self.starts[i]) as usize;
        let len = self.chunks[i].len as usize;
        let start = run.payload_at[i - run.first] + within;
        let n = (len - within).min(buf.len());
        buf[..n].copy_from_slice(&run.bytes.as_slice()[start..start + n]);
        self.pos += n as u64;
        Ok(n)
    }

    /// Reads the whole remaining content into a vector.
    pub fn read_to_vec(&mut self) -> Result<Vec<u8>> {
        let mut out = vec![0u8; (self.size() - self.pos.min(self.size())) as usize];
        let mut filled = 0;
        while filled < out.len() {
            let n = self.read_checked(&mut out[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        out.truncate(filled);
        Ok(out)
    }
}

/// SHA-1, content id and length of everything `reader` has left to read: what assemble checks a
/// bundle against and what verify checks a content against.
pub(crate) fn hash_content(reader: &mut ContentReader) -> Result<(Sha1, ContentId, u64)> {
    let mut sha1 = sha1::Sha1::new();
    let mut b3 = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = reader.read_checked(&mut buf)?;
        if n == 0 {
            break;
        }
        sha1.update(&buf[..n]);
        b3.update(&buf[..n]);
        total += n as u64;
    }
    Ok((
        Sha1::from_bytes(sha1.finalize().into()),
        ContentId::from_bytes(*b3.finalize().as_bytes()),
        total,
    ))
}

impl Read for ContentReader {
    /// Fills `buf` as far as the content allows: some readers (the ZIP parser among them) treat a
    /// short read before the end as the end.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self
                .read_checked(&mut buf[filled..])
                .map_err(io::Error::from)?
            {
                0 => break,
                n => filled += n,
            }
        }
        Ok(filled)
    }
}

impl Seek for ContentReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(t) => {
                self.pos = t;
                Ok(t)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the content",
            )),
        }
    }
}

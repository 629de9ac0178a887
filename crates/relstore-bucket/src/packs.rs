//! The slots of a prefix, asynchronously: creating a pack or a marker in a slot (create-if-absent,
//! one PUT or a staged multipart upload), listing slots in order, ranged and whole reads, and
//! replacing a retired pack by its tombstone.
//!
//! Nothing here knows about leases: callers (the shipper, the lease's fence, `retire`) decide
//! whether they may write. What this module guarantees is that a slot is created at most once
//! and that a slot's bytes are never returned unless they are what the slot claims to hold.

use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions,
    PutOptions, PutPayload, UpdateVersion, WriteMultipart,
};

use crate::config::Limits;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::trailer::{SlotKind, Trailer, TRAILER_LEN};

/// The largest object a slot may hold: S3 copies at most 5 GiB in one request, and a multipart
/// pack reaches its slot by such a copy.
pub const MAX_OBJECT_LEN: u64 = 5 << 30;

/// What happened to a create-if-absent write of a slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The slot was empty and now holds our object.
    Created,
    /// The slot already held exactly our object (an earlier attempt whose answer was lost, or
    /// a second shipper of the same pack).
    Same,
    /// The slot holds something else.
    Taken(Trailer),
}

/// One slot as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The slot number (the segment's sequence number for a pack).
    pub seq: u64,
    /// Length of the object, trailer included.
    pub object_len: u64,
}

impl Slot {
    /// True when the slot holds a pack's bytes (false for a fence or a tombstone, which are a
    /// trailer alone).
    pub fn holds_data(&self) -> bool {
        self.object_len > TRAILER_LEN as u64
    }

    /// Length of the pack's payload (the sealed segment's bytes); 0 for a marker.
    pub fn payload_len(&self) -> u64 {
        self.object_len.saturating_sub(TRAILER_LEN as u64)
    }
}

/// The slots of one prefix.
#[derive(Debug)]
pub(crate) struct Packs {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) layout: Layout,
    pub(crate) limits: Limits,
}

impl Packs {
    fn store_err(&self, op: &'static str, key: &Path) -> impl FnOnce(object_store::Error) -> Error {
        let key = self.layout.display(key);
        move |source| Error::Store { op, key, source }
    }

    fn location(&self) -> String {
        self.layout.location().to_owned()
    }

    /// Uploads the file at `path` to slot `seq` as a pack of `epoch`, create-if-absent.
    pub(crate) async fn put_pack(&self, seq: u64, epoch: u64, path: &FsPath) -> Result<Claim> {
        let path = path.to_path_buf();
        let meta = {
            let p = path.clone();
            tokio::task::spawn_blocking(move || std::fs::metadata(&p))
                .await
                .map_err(|_| Error::Stopped)?
        }
        .map_err(|source| Error::Io {
            op: "stat pack",
            path: path.clone(),
            source,
        })?;
        let len = meta.len();
        check_pack_len(&path, seq, len)?;
        if len + TRAILER_LEN as u64 >= self.limits.multipart_threshold {
            self.put_multipart(seq, epoch, path, len).await
        } else {
            self.put_single(seq, epoch, path, len).await
        }
    }

    async fn put_single(&self, seq: u64, epoch: u64, path: PathBuf, len: u64) -> Result<Claim> {
        let (bytes, hash) = {
            let p = path.clone();
            tokio::task::spawn_blocking(move || read_whole(&p))
                .await
                .map_err(|_| Error::Stopped)??
        };
        if bytes.len() as u64 != len {
            return Err(changed_while_read(&path, seq, len, bytes.len() as u64));
        }
        let trailer = Trailer::pack(seq, epoch, len, hash);
        let payload = PutPayload::from_iter([
            Bytes::from(bytes),
            Bytes::copy_from_slice(&trailer.encode()),
        ]);
        self.create(seq, payload, &trailer).await
    }

    /// Creates slot `seq` with `payload` (whose trailer is `ours`) unless it exists.
    async fn create(&self, seq: u64, payload: PutPayload, ours: &Trailer) -> Result<Claim> {
        let key = self.layout.slot(seq);
        match self
            .store
            .put_opts(&key, payload, PutOptions::from(PutMode::Create))
            .await
        {
            Ok(_) => Ok(Claim::Created),
            Err(object_store::Error::AlreadyExists { .. }) => self.compare(seq, ours).await,
            Err(e) => Err(self.store_err("create slot", &key)(e)),
        }
    }

    /// What an occupied slot holds, against what we meant to write there.
    async fn compare(&self, seq: u64, ours: &Trailer) -> Result<Claim> {
        match self.trailer(seq).await? {
            Some(there) if there == *ours => Ok(Claim::Same),
            Some(there) => Ok(Claim::Taken(there)),
            // Existed a moment ago, gone now: slots are never deleted, so this is not our
            // protocol's doing.
            None => Err(Error::Corrupt {
                key: self.layout.display(&self.layout.slot(seq)),
                detail: "the slot existed, then vanished; slots are never deleted".into(),
            }),
        }
    }

    /// A large pack: a multipart upload to a staging object, then a server-side copy into the
    /// slot completed with `If-None-Match: *`. The multipart API cannot make its own completion
    /// conditional, and an unconditional completion could overwrite a fence; the copy can.
    async fn put_multipart(&self, seq: u64, epoch: u64, path: PathBuf, len: u64) -> Result<Claim> {
        let staging = self.layout.staging(seq, epoch, nonce());
        let upload = self
            .store
            .put_multipart_opts(&staging, PutMultipartOptions::default())
            .await
            .map_err(self.store_err("start multipart upload", &staging))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.limits.part_size);
        let staged = match self.stream_parts(&mut writer, &path, seq, len).await {
            Ok(hash) => {
                let trailer = Trailer::pack(seq, epoch, len, hash);
                writer.put(Bytes::copy_from_slice(&trailer.encode()));
                writer
                    .finish()
                    .await
                    .map(|_| trailer)
                    .map_err(self.store_err("complete multipart upload", &staging))
            }
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        };
        let trailer = staged?;
        let key = self.layout.slot(seq);
        let claimed = match self.store.copy_if_not_exists(&staging, &key).await {
            Ok(()) => Ok(Claim::Created),
            Err(object_store::Error::AlreadyExists { .. }) => self.compare(seq, &trailer).await,
            Err(e) => Err(self.store_err("copy staged pack into slot", &key)(e)),
        };
        // Best effort: a leftover staging object is removed by `purge` or the lifecycle rule.
        let _ = self.store.delete(&staging).await;
        claimed
    }

    /// Feeds the file to `writer` part by part (at most `part_concurrency` parts in flight) and
    /// returns the BLAKE3 of what it sent.
    async fn stream_parts(
        &self,
        writer: &mut WriteMultipart,
        path: &FsPath,
        seq: u64,
        len: u64,
    ) -> Result<[u8; 32]> {
        let part = self.limits.part_size;
        let mut file = Some(open(path)?);
        let mut hasher = blake3::Hasher::new();
        let mut sent = 0u64;
        loop {
            let f = file.take().expect("the file is put back after every read");
            let p = path.to_path_buf();
            let (f, block) = tokio::task::spawn_blocking(move || {
                let block = read_block(&f, &p, part);
                (f, block)
            })
            .await
            .map_err(|_| Error::Stopped)?;
            file = Some(f);
            let block = block?;
            if block.is_empty() {
                break;
            }
            hasher.update(&block);
            sent += block.len() as u64;
            if sent > len {
                return Err(changed_while_read(path, seq, len, sent));
            }
            writer
                .wait_for_capacity(self.limits.part_concurrency)
                .await
                .map_err(self.store_err("upload part", &self.layout.slot(seq)))?;
            writer.put(Bytes::from(block));
        }
        if sent != len {
            return Err(changed_while_read(path, seq, len, sent));
        }
        Ok(*hasher.finalize().as_bytes())
    }

    /// Creates slot `seq` holding a marker (fence or tombstone trailer alone).
    pub(crate) async fn put_marker(&self, marker: &Trailer) -> Result<Claim> {
        let payload = PutPayload::from(Bytes::copy_from_slice(&marker.encode()));
        self.create(marker.seq, payload, marker).await
    }

    /// The trailer of slot `seq` (one ranged GET of its last bytes), or `None` when the slot is
    /// empty. A trailer that does not decode, or that names another slot, is `Corrupt`.
    pub(crate) async fn trailer(&self, seq: u64) -> Result<Option<Trailer>> {
        let key = self.layout.slot(seq);
        let opts = GetOptions::new().with_range(Some(GetRange::Suffix(TRAILER_LEN as u64)));
        let got = match self.store.get_opts(&key, opts).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.store_err("read trailer", &key)(e)),
        };
        let size = got.meta.size;
        let tail = got
            .bytes()
            .await
            .map_err(self.store_err("read trailer", &key))?;
        let trailer = Trailer::decode(&tail).map_err(|e| Error::Corrupt {
            key: self.layout.display(&key),
            detail: e.to_string(),
        })?;
        self.check_trailer(seq, size, &trailer)?;
        Ok(Some(trailer))
    }

    /// A trailer must name its own slot and account for every byte of its object.
    pub(crate) fn check_trailer(&self, seq: u64, object_len: u64, t: &Trailer) -> Result<()> {
        let corrupt = |detail: String| Error::Corrupt {
            key: self.layout.display(&self.layout.slot(seq)),
            detail,
        };
        if t.seq != seq {
            return Err(corrupt(format!(
                "the trailer is slot {}'s: the object was copied into the wrong slot",
                t.seq
            )));
        }
        let expected = t.object_payload_len() + TRAILER_LEN as u64;
        if object_len != expected {
            return Err(corrupt(format!(
                "the object has {object_len} bytes, its trailer ({} of {} payload bytes) says {expected}",
                t.kind, t.payload_len
            )));
        }
        Ok(())
    }

    /// Metadata of slot `seq` (one HEAD), `None` when empty.
    pub(crate) async fn head(&self, seq: u64) -> Result<Option<ObjectMeta>> {
        let key = self.layout.slot(seq);
        match self.store.head(&key).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.store_err("head slot", &key)(e)),
        }
    }

    /// Up to `limit` slots after `after` (all when `None`), in slot order. S3 lists keys in byte
    /// order, which the zero-padded names make slot order, so the listing stops after `limit`.
    pub(crate) async fn list_after(&self, after: Option<u64>, limit: usize) -> Result<Vec<Slot>> {
        let dir = self.layout.slots();
        let mut listing = match after {
            Some(seq) => self
                .store
                .list_with_offset(Some(&dir), &self.layout.slot(seq)),
            None => self.store.list(Some(&dir)),
        };
        let mut slots = Vec::new();
        while slots.len() < limit {
            let Some(meta) = listing
                .try_next()
                .await
                .map_err(self.store_err("list slots", &dir))?
            else {
                break;
            };
            // Objects that are not slots (left by hand under the prefix) are not ours to read.
            let Some(seq) = self.layout.parse_slot(&meta.location) else {
                continue;
            };
            if after.is_some_and(|a| seq <= a) {
                continue;
            }
            slots.push(Slot {
                seq,
                object_len: meta.size,
            });
        }
        slots.sort_by_key(|s| s.seq);
        Ok(slots)
    }

    /// The bytes of `ranges` of pack `seq`'s payload, in the order asked, fetched with one ranged
    /// GET per run of overlapping or adjacent ranges (at most `read_concurrency` at once). Holds
    /// the runs in memory: callers ask for bounded runs (the engine reads at most a few MiB).
    /// Checking the bytes is the caller's: a ranged read cannot be held to the whole pack's hash.
    pub(crate) async fn read_ranges(&self, seq: u64, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        for r in ranges {
            if r.start >= r.end {
                return Err(Error::OutOfRange {
                    location: self.location(),
                    seq,
                    range: r.clone(),
                    len: 0,
                });
            }
        }
        let runs = coalesce(ranges);
        let fetched: Vec<(Range<u64>, Bytes)> = futures::stream::iter(runs)
            .map(|run| async move {
                let bytes = self.read_run(seq, run.clone()).await?;
                Ok::<_, Error>((run, bytes))
            })
            .buffered(self.limits.read_concurrency.max(1))
            .try_collect()
            .await?;
        // `buffered` keeps the runs in offset order: the run holding a range is the last one
        // starting at or before it.
        Ok(ranges
            .iter()
            .map(|r| {
                let i = fetched.partition_point(|(run, _)| run.start <= r.start) - 1;
                let (run, bytes) = &fetched[i];
                debug_assert!(r.end <= run.end, "every range lies in the run made from it");
                bytes.slice((r.start - run.start) as usize..(r.end - run.start) as usize)
            })
            .collect())
    }

    async fn read_run(&self, seq: u64, run: Range<u64>) -> Result<Bytes> {
        let key = self.layout.slot(seq);
        let opts = GetOptions::new().with_range(Some(GetRange::Bounded(run.clone())));
        let got = match self.store.get_opts(&key, opts).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::NotFound {
                    location: self.location(),
                    seq,
                });
            }
            // A range starting past the end is refused by the server (416); say so in the
            // caller's terms when a HEAD confirms it.
            Err(e) => {
                return Err(match self.head(seq).await {
                    Ok(Some(meta)) => self
                        .range_error(seq, &run, meta.size)
                        .unwrap_or_else(|| self.store_err("ranged read", &key)(e)),
                    _ => self.store_err("ranged read", &key)(e),
                });
            }
        };
        if let Some(err) = self.range_error(seq, &run, got.meta.size) {
            return Err(err);
        }
        let bytes = got
            .bytes()
            .await
            .map_err(self.store_err("ranged read", &key))?;
        if bytes.len() as u64 != run.end - run.start {
            return Err(Error::Corrupt {
                key: self.layout.display(&key),
                detail: format!(
                    "asked for {} bytes at {}, received {}",
                    run.end - run.start,
                    run.start,
                    bytes.len()
                ),
            });
        }
        Ok(bytes)
    }

    /// Why `run` cannot be read from an object of `object_len` bytes, if it cannot.
    fn range_error(&self, seq: u64, run: &Range<u64>, object_len: u64) -> Option<Error> {
        let trailer = TRAILER_LEN as u64;
        if object_len == trailer {
            return Some(Error::NoData {
                location: self.location(),
                seq,
            });
        }
        if object_len < trailer {
            return Some(Error::Corrupt {
                key: self.layout.display(&self.layout.slot(seq)),
                detail: format!("{object_len} bytes, too short to hold a trailer"),
            });
        }
        let payload = object_len - trailer;
        (run.end > payload).then(|| Error::OutOfRange {
            location: self.location(),
            seq,
            range: run.clone(),
            len: payload,
        })
    }

    /// The whole object of slot `seq` as a stream, with its length. The stream's bytes are
    /// unchecked: the reader holds them to the trailer (`fetch`).
    pub(crate) async fn open(&self, seq: u64) -> Result<(u64, BoxStream<'static, Result<Bytes>>)> {
        let key = self.layout.slot(seq);
        let got = match self.store.get_opts(&key, GetOptions::new()).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::NotFound {
                    location: self.location(),
                    seq,
                });
            }
            Err(e) => return Err(self.store_err("read pack", &key)(e)),
        };
        let size = got.meta.size;
        let display = self.layout.display(&key);
        let stream = got
            .into_stream()
            .map_err(move |source| Error::Store {
                op: "read pack",
                key: display.clone(),
                source,
            })
            .boxed();
        Ok((size, stream))
    }

    /// Replaces the pack in slot `seq` by its tombstone, provided the slot still holds the
    /// object whose ETag was recorded at retirement. Idempotent.
    pub(crate) async fn tombstone(&self, seq: u64, e_tag: &str, epoch: u64) -> Result<()> {
        let key = self.layout.slot(seq);
        let pack = match self.trailer(seq).await? {
            None => {
                return Err(Error::NotFound {
                    location: self.location(),
                    seq,
                });
            }
            Some(t) if t.kind == SlotKind::Tombstone => return Ok(()),
            Some(t) => t,
        };
        if pack.kind != SlotKind::Pack {
            return Err(Error::Corrupt {
                key: self.layout.display(&key),
                detail: format!("a retired slot holds a {}, not a pack", pack.kind),
            });
        }
        let stone = Trailer::tombstone(&pack, epoch);
        let mode = PutMode::Update(UpdateVersion {
            e_tag: Some(e_tag.to_owned()),
            version: None,
        });
        let payload = PutPayload::from(Bytes::copy_from_slice(&stone.encode()));
        match self.store.put_opts(&key, payload, mode.into()).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::Precondition { .. }) => match self.trailer(seq).await? {
                Some(t) if t.kind == SlotKind::Tombstone => Ok(()),
                _ => Err(Error::Corrupt {
                    key: self.layout.display(&key),
                    detail: "the slot changed after it was retired".into(),
                }),
            },
            Err(e) => Err(self.store_err("tombstone slot", &key)(e)),
        }
    }
}

/// Merges ranges that overlap or touch into runs, in offset order.
pub(crate) fn coalesce(ranges: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut sorted: Vec<Range<u64>> = ranges.to_vec();
    sorted.sort_by_key(|r| r.start);
    let mut runs: Vec<Range<u64>> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match runs.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => runs.push(r),
        }
    }
    runs
}

fn check_pack_len(path: &FsPath, seq: u64, len: u64) -> Result<()> {
    let invalid = |reason: String| Error::InvalidPack {
        path: path.to_path_buf(),
        seq,
        reason,
    };
    if len == 0 {
        return Err(invalid("the file is empty".into()));
    }
    if len + TRAILER_LEN as u64 > MAX_OBJECT_LEN {
        return Err(invalid(format!(
            "{len} bytes; a pack holds at most {} (S3 copies at most 5 GiB at once)",
            MAX_OBJECT_LEN - TRAILER_LEN as u64
        )));
    }
    Ok(())
}

fn changed_while_read(path: &FsPath, seq: u64, expected: u64, read: u64) -> Error {
    Error::InvalidPack {
        path: path.to_path_buf(),
        seq,
        reason: format!(
            "it was {expected} bytes when shipping began and {read} were read: a sealed segment \
             must not change"
        ),
    }
}

fn open(path: &FsPath) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|source| Error::Io {
        op: "open pack",
        path: path.to_path_buf(),
        source,
    })
}

fn read_whole(path: &FsPath) -> Result<(Vec<u8>, [u8; 32])> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        op: "read pack",
        path: path.to_path_buf(),
        source,
    })?;
    let hash = *blake3::hash(&bytes).as_bytes();
    Ok((bytes, hash))
}

/// Up to `max` bytes from the file's current position; empty at the end.
fn read_block(file: &std::fs::File, path: &FsPath, max: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut block = Vec::with_capacity(max);
    file.take(max as u64)
        .read_to_end(&mut block)
        .map_err(|source| Error::Io {
            op: "read pack",
            path: path.to_path_buf(),
            source,
        })?;
    Ok(block)
}

/// A random 64-bit number that keeps two attempts' staging objects apart.
pub(crate) fn nonce() -> u64 {
    let mut b = [0u8; 8];
    // Falls back to the clock: the nonce only has to differ between attempts.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64;
    }
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalescing_merges_overlapping_and_adjacent_ranges_only() {
        assert_eq!(
            coalesce(&[10..20, 0..5, 5..8, 19..30, 40..41, 30..31]),
            vec![0..8, 10..31, 40..41]
        );
        let one = 3..4;
        assert_eq!(coalesce(std::slice::from_ref(&one)), vec![one]);
        assert_eq!(coalesce(&[0..10, 2..3]), vec![0..10]);
        assert!(coalesce(&[]).is_empty());
    }

    #[test]
    fn slot_lengths_say_whether_a_slot_holds_data() {
        let marker = Slot {
            seq: 1,
            object_len: TRAILER_LEN as u64,
        };
        assert!(!marker.holds_data());
        assert_eq!(marker.payload_len(), 0);
        let pack = Slot {
            seq: 2,
            object_len: 100 + TRAILER_LEN as u64,
        };
        assert!(pack.holds_data());
        assert_eq!(pack.payload_len(), 100);
    }
}

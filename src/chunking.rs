//! Chunking: the one streaming pass over an upload. FastCDC 2020 cut points, BLAKE3 and CRC32 of
//! every chunk, and SHA-1 and BLAKE3 of the whole. It knows nothing of where chunks are stored.
//!
//! Memory stays bounded whatever the upload's size: bytes flow through a small pool of blocks
//! (`BLOCK` fresh bytes plus the carried-over tail of an unfinished chunk). On uploads larger than
//! one block, the whole-file hashes run on a second thread, overlapping with the chunker and the
//! per-chunk hashes on the caller's thread: SHA-1 (the most expensive of the hashes) and the
//! whole BLAKE3. The whole BLAKE3 is fed a block at a time there, not a chunk at a time: chunk
//! boundaries fall inside BLAKE3's 1 KiB chunks, and every misaligned update runs BLAKE3's
//! one-lane compression instead of its SIMD many-chunk path (docs/benchmarks.md, W3, has the
//! measurements).

use std::io::Read;
use std::sync::mpsc;
use std::sync::Arc;

use sha1::Digest;

use crate::error::{Error, Result};
use crate::id::{ChunkId, ContentId, Sha1};

/// Fresh bytes read into each block.
const BLOCK: usize = 1 << 20;
/// Blocks in flight between the chunker and the hashing thread (bounds memory).
const POOL: usize = 3;

/// Content-defined chunking parameters, fixed per store (recorded in its `FORMAT` file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkingParams {
    /// Smallest chunk, bytes.
    pub min: u32,
    /// Average chunk, bytes (a power of two).
    pub avg: u32,
    /// Largest chunk, bytes.
    pub max: u32,
}

impl Default for ChunkingParams {
    /// Min 2 KiB, average 4 KiB, max 32 KiB, chosen on ten consecutive releases of three npm
    /// packages (docs/benchmarks.md, W8): fewer bytes kept on disk than with 16 KiB chunks, for
    /// every package. The price is per-chunk work in the store: large uploads are slower than
    /// with 16 KiB chunks (W2). Existing stores keep the parameters they were created with
    /// (`FORMAT`).
    fn default() -> Self {
        ChunkingParams {
            min: 2 << 10,
            avg: 4 << 10,
            max: 32 << 10,
        }
    }
}

impl ChunkingParams {
    /// Checks the parameters against the FastCDC 2020 limits.
    pub fn validate(&self) -> Result<()> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max)
            && self.avg.is_power_of_two()
            && self.min <= self.avg
            && self.avg <= self.max;
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(
                "chunking",
                format!(
                    "{self:?}: need min <= avg <= max within FastCDC's limits, avg a power of two"
                ),
            ))
        }
    }
}

/// One chunk as the ingest pass saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkMeta {
    /// The chunk's identity.
    pub id: ChunkId,
    /// CRC32 of the chunk.
    pub crc32: u32,
    /// Length in bytes.
    pub len: u32,
}

/// The result of an ingest pass.
#[derive(Clone, Debug)]
pub struct Ingested {
    /// The whole content's identity.
    pub content_id: ContentId,
    /// SHA-1 of the whole content: the public checksum.
    pub sha1: Sha1,
    /// Size in bytes.
    pub size: u64,
    /// The chunks, in order.
    pub chunks: Vec<ChunkMeta>,
}

struct Cutter {
    p: ChunkingParams,
    mask_s: u64,
    mask_l: u64,
}

impl Cutter {
    fn new(p: ChunkingParams) -> Cutter {
        // Normalization level 1, as `fastcdc::v2020::FastCDC::new` uses.
        let bits = fastcdc::v2020::logarithm2(p.avg);
        Cutter {
            p,
            mask_s: fastcdc::v2020::MASKS[(bits + 1) as usize],
            mask_l: fastcdc::v2020::MASKS[(bits - 1) as usize],
        }
    }

    /// Length of the next chunk at the start of `data`.
    fn cut(&self, data: &[u8]) -> usize {
        let (_, len) = fastcdc::v2020::cut(
            data,
            self.p.min as usize,
            self.p.avg as usize,
            self.p.max as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        len
    }
}

fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::UploadRead(e)),
        }
    }
    Ok(n)
}

/// Streams `reader` once, calling `on_chunk` for every chunk in order, and returns the hashes.
/// Fails with [`Error::TooLarge`] as soon as more than `limit` bytes arrive.
#[cfg(any(test, feature = "test-support"))]
pub fn ingest(
    reader: &mut dyn Read,
    params: ChunkingParams,
    limit: u64,
    on_chunk: &mut dyn FnMut(&[u8], &ChunkMeta) -> Result<()>,
) -> Result<Ingested> {
    ingest_or_known(reader, params, limit, &mut |_| Ok(None), on_chunk)
}

/// Like `ingest` (tests and benches), with a shortcut for small uploads that are already stored: when the whole
/// upload fits one block, its BLAKE3 is computed first and `known` asked for it; an answer is
/// returned as it is, without chunking, per-chunk hashing, SHA-1 or `on_chunk` calls. Re-uploads
/// of unchanged files (every release re-sends most of them) then cost one hash and a lookup.
pub(crate) fn ingest_or_known(
    reader: &mut dyn Read,
    params: ChunkingParams,
    limit: u64,
    known: &mut dyn FnMut(&ContentId) -> Result<Option<Ingested>>,
    on_chunk: &mut dyn FnMut(&[u8], &ChunkMeta) -> Result<()>,
) -> Result<Ingested> {
    let cutter = Cutter::new(params);
    let cap = BLOCK + params.max as usize;
    // Most uploads are far smaller than a block: read the first block into a growing buffer
    // rather than zeroing (and page-faulting in) a fresh 1 MiB for every small file.
    let mut first = Vec::new();
    (&mut *reader)
        .take(BLOCK as u64)
        .read_to_end(&mut first)
        .map_err(Error::UploadRead)?;
    let n = first.len();
    if n < BLOCK {
        // The whole upload fits one block: no thread, everything inline.
        check_limit(n as u64, limit)?;
        let whole = ContentId::of(&first);
        if let Some(stored) = known(&whole)? {
            return Ok(stored);
        }
        let mut state = Pass::new(cutter);
        let sha1 = Sha1::of(&first[..n]);
        state.chunk_all(&first[..n], true, on_chunk)?;
        return Ok(state.finish(sha1, whole));
    }
    first.resize(cap, 0);
    std::thread::scope(|scope| {
        let (to_hasher, hasher_rx) = mpsc::sync_channel::<(Arc<Vec<u8>>, usize, usize)>(POOL);
        let (free_tx, free_rx) = mpsc::channel::<Arc<Vec<u8>>>();
        let hasher = scope.spawn(move || {
            let mut h = sha1::Sha1::new();
            let mut b = blake3::Hasher::new();
            for (block, start, end) in hasher_rx {
                h.update(&block[start..end]);
                b.update(&block[start..end]);
                // The pool may be gone when the chunker stopped early; that is fine.
                let _ = free_tx.send(block);
            }
            (
                Sha1::from_bytes(h.finalize().into()),
                ContentId::from_bytes(*b.finalize().as_bytes()),
            )
        });
        let result = (|| {
            let mut state = Pass::new(cutter);
            let mut pool_left = POOL - 1;
            let mut block = Arc::new(first);
            let mut carry = 0usize; // bytes at the block's start carried over from the last one
            let mut filled = n;
            let mut total = n as u64;
            loop {
                check_limit(total, limit)?;
                let eof = filled - carry < BLOCK;
                to_hasher
                    .send((block.clone(), carry, filled))
                    .map_err(|_| hasher_gone())?;
                let consumed = state.chunk_all(&block[..filled], eof, on_chunk)?;
                if eof {
                    break;
                }
                let mut next = if pool_left > 0 {
                    pool_left -= 1;
                    Arc::new(vec![0u8; cap])
                } else {
                    free_rx.recv().map_err(|_| hasher_gone())?
                };
                // The hasher returned this block, and the chunker dropped its clone two blocks
                // ago, so it is unshared; allocate if that ever does not hold.
                let buf = match Arc::get_mut(&mut next) {
                    Some(b) => b,
                    None => {
                        next = Arc::new(vec![0u8; cap]);
                        Arc::get_mut(&mut next).expect("fresh Arc is unique")
                    }
                };
                carry = filled - consumed;
                buf[..carry].copy_from_slice(&block[consumed..filled]);
                let got = read_full(reader, &mut buf[carry..carry + BLOCK])?;
                filled = carry + got;
                total += got as u64;
                block = next;
            }
            Ok(state)
        })();
        drop(to_hasher);
        let (sha1, whole) = hasher.join().map_err(|_| hasher_gone())?;
        result.map(|state| state.finish(sha1, whole))
    })
}

fn hasher_gone() -> Error {
    Error::Internal {
        what: "the whole-upload hashing thread stopped",
    }
}

fn check_limit(total: u64, limit: u64) -> Result<()> {
    if total > limit {
        Err(Error::TooLarge { limit })
    } else {
        Ok(())
    }
}

/// The chunker's state: cut points and per-chunk hashes (the whole-upload hashes are computed
/// beside it).
struct Pass {
    cutter: Cutter,
    size: u64,
    chunks: Vec<ChunkMeta>,
}

impl Pass {
    fn new(cutter: Cutter) -> Pass {
        Pass {
            cutter,
            size: 0,
            chunks: Vec::new(),
        }
    }

    /// Cuts and hashes chunks from `data`; without `eof`, stops before a chunk that might still
    /// grow. Returns how many bytes were consumed.
    fn chunk_all(
        &mut self,
        data: &[u8],
        eof: bool,
        on_chunk: &mut dyn FnMut(&[u8], &ChunkMeta) -> Result<()>,
    ) -> Result<usize> {
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            if !eof && rest.len() < self.cutter.p.max as usize {
                break;
            }
            let len = self.cutter.cut(rest);
            let chunk = &rest[..len];
            let meta = ChunkMeta {
                id: ChunkId::of(chunk),
                crc32: crc32fast::hash(chunk),
                len: len as u32,
            };
            self.size += len as u64;
            on_chunk(chunk, &meta)?;
            self.chunks.push(meta);
            pos += len;
        }
        Ok(pos)
    }

    fn finish(self, sha1: Sha1, content_id: ContentId) -> Ingested {
        Ingested {
            content_id,
            sha1,
            size: self.size,
            chunks: self.chunks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn run(data: &[u8]) -> (Ingested, Vec<Vec<u8>>) {
        let mut seen = Vec::new();
        let got = ingest(
            &mut &data[..],
            ChunkingParams::default(),
            u64::MAX,
            &mut |c, m| {
                assert_eq!(ChunkId::of(c), m.id);
                seen.push(c.to_vec());
                Ok(())
            },
        )
        .unwrap();
        (got, seen)
    }

    #[test]
    fn hashes_and_chunks_match_a_one_shot_computation() {
        for size in [
            0,
            1,
            4095,
            70_000,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            3 * BLOCK + 12345,
        ] {
            let data = pseudo_random(size, size as u64 + 7);
            let (got, seen) = run(&data);
            assert_eq!(got.size, size as u64);
            assert_eq!(got.sha1, Sha1::from_bytes(sha1::Sha1::digest(&data).into()));
            assert_eq!(got.content_id.as_bytes(), blake3::hash(&data).as_bytes());
            assert_eq!(
                seen.concat(),
                data,
                "chunks reassemble the input, size {size}"
            );
            // Streaming cut points equal those of the crate's own in-memory chunker.
            let p = ChunkingParams::default();
            let expect: Vec<usize> = fastcdc::v2020::FastCDC::new(&data, p.min, p.avg, p.max)
                .map(|c| c.length)
                .collect();
            assert_eq!(
                seen.iter().map(Vec::len).collect::<Vec<_>>(),
                expect,
                "size {size}"
            );
        }
    }

    #[test]
    fn a_known_small_upload_is_answered_without_chunking_and_others_are_not() {
        let data = pseudo_random(70_000, 3);
        let (plain, _) = run(&data);
        let mut asked = Vec::new();
        let stored = Ingested {
            content_id: plain.content_id,
            sha1: Sha1::from_bytes([7; 20]),
            size: 1,
            chunks: Vec::new(),
        };
        let mut calls = 0;
        let got = ingest_or_known(
            &mut &data[..],
            ChunkingParams::default(),
            u64::MAX,
            &mut |id| {
                asked.push(*id);
                Ok(Some(stored.clone()))
            },
            &mut |_, _| {
                calls += 1;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(
            asked,
            vec![plain.content_id],
            "asked once, by the whole BLAKE3"
        );
        assert_eq!((got.sha1, got.size, calls), (stored.sha1, 1, 0));
        // Unknown: the same result as a plain pass.
        let got = ingest_or_known(
            &mut &data[..],
            ChunkingParams::default(),
            u64::MAX,
            &mut |_| Ok(None),
            &mut |_, _| Ok(()),
        )
        .unwrap();
        assert_eq!(
            (got.content_id, got.sha1, got.size, got.chunks),
            (plain.content_id, plain.sha1, plain.size, plain.chunks)
        );
        // Larger than one block: never asked.
        let big = pseudo_random(BLOCK + 10, 4);
        ingest_or_known(
            &mut &big[..],
            ChunkingParams::default(),
            u64::MAX,
            &mut |_| panic!("asked about a multi-block upload"),
            &mut |_, _| Ok(()),
        )
        .unwrap();
    }

    #[test]
    fn limit_is_enforced_while_streaming() {
        let data = pseudo_random(3 * BLOCK, 1);
        let err = ingest(
            &mut &data[..],
            ChunkingParams::default(),
            2 * BLOCK as u64,
            &mut |_, _| Ok(()),
        )
        .unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }));
    }
}

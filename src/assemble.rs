//! Chunk upload and bundle assembly, the protocol of sentry-cli 3.x and the bundler plugins.
//!
//! A client splits a file (a source bundle) into pieces of up to 8 MiB named by their SHA-1,
//! asks which pieces the server lacks, uploads those, and asks the server to assemble. Here a
//! piece is stored as a content like any other upload (so its bytes are deduplicated chunk by
//! chunk) and owned by the org that uploaded it. Assembly builds the bundle's content from the
//! pieces' chunk lists in order (no bytes copied), streams it once to check the declared SHA-1,
//! reads the bundle's entries straight out of the stored content, and commits the bundle, its
//! entries and their projection into release files in one transaction.

use sha1::Digest;
use std::collections::{HashMap, HashSet};

use crate::bundle::{Bundle, BundleLimits};
use crate::content::ingest::{ChunkMeta, Ingested};
use crate::content::ContentReader;
use crate::error::{Error, Result};
use crate::index::records::{BundleEntryRec, ChunkRef};
use crate::index::ChunkLocations;
use crate::key::FileKey;
use crate::staging::Record;
use crate::store::{now_ms, Store};

/// Largest upload piece (Sentry's `chunkSize`).
pub const MAX_PIECE_BYTES: u64 = 8 << 20;

/// What an assemble request asks for.
#[derive(Clone, Debug)]
pub struct AssembleRequest<'a> {
    /// Owning organization.
    pub org: &'a str,
    /// Declared SHA-1 of the whole file.
    pub checksum: [u8; 20],
    /// SHA-1s of the pieces, in order.
    pub pieces: &'a [[u8; 20]],
    /// Projects to project the bundle's files into (none: the organization-wide scope).
    pub projects: &'a [String],
    /// Release to project into (none: store the bundle only, findable by debug id).
    pub version: Option<&'a str>,
    /// Dist for the projected files (none: the manifest's dist).
    pub dist: Option<&'a str>,
}

/// The answer to an assemble request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AssembleOutcome {
    /// Pieces that `org` has not uploaded (empty when the request named none).
    Missing(Vec<[u8; 20]>),
    /// Assembled (now or earlier) and projected; the number of release files written.
    Ok {
        /// Release files the projection wrote or confirmed.
        files: u64,
    },
    /// Assembly failed for good: `Reported checksum mismatch` or `the bundle is invalid`.
    Failed(String),
}

/// A bundle entry found by debug id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleEntry {
    /// Organization that uploaded the bundle.
    pub org: String,
    /// SHA-1 of the bundle.
    pub bundle_checksum: [u8; 20],
    /// The entry's URL.
    pub url: String,
    /// The entry's headers.
    pub headers: Vec<(String, String)>,
    /// SHA-1 of the entry.
    pub sha1: [u8; 20],
    /// Size of the entry.
    pub size: u64,
    /// BLAKE3 of the entry: pass it to [`Store::open_content`].
    pub content_id: [u8; 32],
}

impl Store {
    /// Stores upload pieces for `org`, each checked against its declared SHA-1. All or nothing:
    /// if one piece is oversized or mismatched, none is recorded.
    pub fn put_pieces(&self, org: &str, pieces: &[([u8; 20], &[u8])]) -> Result<()> {
        let mut batch = self.piece_batch(org)?;
        for (sha1, bytes) in pieces {
            batch.add(sha1, &mut &bytes[..])?;
        }
        batch.commit()
    }

    /// Starts a batch of upload pieces for `org`, streamed in one by one and recorded together
    /// (what one chunk-upload request carries). Holds off gc until committed or dropped.
    pub fn piece_batch(&self, org: &str) -> Result<PieceBatch<'_>> {
        crate::key::validate_slug("org", org)?;
        let inner = &*self.inner;
        Ok(PieceBatch {
            store: self,
            _mutation: inner.mutation_guard()?,
            org: org.to_owned(),
            ingested: Vec::new(),
            chunks: HashMap::new(),
            unrecorded: Vec::new(),
        })
    }

    /// The pieces among `sha1s` that `org` does not own, in request order, without repeats.
    /// One index lookup per piece.
    pub fn missing_pieces(&self, org: &str, sha1s: &[[u8; 20]]) -> Result<Vec<[u8; 20]>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for s in sha1s {
            if seen.insert(*s) && self.inner.index.piece(org, s)?.is_none() {
                out.push(*s);
            }
        }
        Ok(out)
    }

    /// Assembles (or re-projects) a bundle; see [`AssembleRequest`] and [`AssembleOutcome`].
    pub fn assemble(&self, req: &AssembleRequest<'_>) -> Result<AssembleOutcome> {
        crate::key::validate_slug("org", req.org)?;
        if let Some(v) = req.version {
            crate::key::validate_version(v)?;
        }
        for p in req.projects {
            crate::key::validate_slug("project", p)?;
        }
        let inner = &*self.inner;
        let _m = inner.mutation_guard()?;
        if let Some((_, entries)) = inner.index.bundle(req.org, &req.checksum)? {
            let files = self.projection(req, &entries, None)?;
            inner.index.project_bundle(&files, &entries, now_ms())?;
            inner.durable_index()?;
            return Ok(AssembleOutcome::Ok {
                files: files.len() as u64,
            });
        }
        let missing = self.missing_pieces(req.org, req.pieces)?;
        if req.pieces.is_empty() || !missing.is_empty() {
            return Ok(AssembleOutcome::Missing(missing));
        }

        // The bundle's chunk list: the pieces' lists, in order.
        let mut refs: Vec<ChunkRef> = Vec::new();
        let mut metas: Vec<ChunkMeta> = Vec::new();
        for s in req.pieces {
            let piece = inner
                .index
                .piece(req.org, s)?
                .ok_or_else(|| Error::not_found(format!("piece {}", crate::hex(s))))?;
            let rec = inner.index.content(&piece.content)?.ok_or_else(|| {
                Error::corrupt(format!("piece {}", crate::hex(s)), "its content is missing")
            })?;
            for r in inner.index.manifest(&piece.content, &rec)? {
                metas.push(ChunkMeta {
                    blake3: r.blake3,
                    crc32: r.crc32,
                    len: r.len,
                });
                refs.push(r);
            }
        }
        // One reader (and one copy of the chunk list, ~52 bytes a chunk) for both passes.
        let mut reader = ContentReader::new(self.inner.clone(), refs);
        let size = reader.size();
        let (sha1, blake3) = hash_stream(&mut reader)?;
        if sha1 != req.checksum {
            return Ok(AssembleOutcome::Failed("Reported checksum mismatch".into()));
        }
        let whole = Ingested {
            blake3,
            sha1,
            size,
            chunks: metas,
        };

        // Read the bundle straight out of the store and ingest its entries.
        std::io::Seek::rewind(&mut reader).map_err(Error::Source)?;
        let mut bundle = match Bundle::open(reader, size, BundleLimits::default()) {
            Ok(b) => b,
            Err(Error::InvalidBundle(_)) => {
                return Ok(AssembleOutcome::Failed("the bundle is invalid".into()))
            }
            Err(e) => return Err(e),
        };
        let mut entries: Vec<(BundleEntryRec, Ingested)> =
            Vec::with_capacity(bundle.manifest.files.len());
        let mut chunks: ChunkLocations = HashMap::new();
        let mut unrecorded: Vec<Record> = Vec::new();
        for f in bundle.manifest.files.clone() {
            let staged = match bundle
                .read_entry(&f.zip_path, |r| inner.stage(r, inner.opts.max_upload_bytes))
            {
                Ok(s) => s,
                Err(Error::InvalidBundle(_)) => {
                    return Ok(AssembleOutcome::Failed("the bundle is invalid".into()))
                }
                Err(e) => return Err(e),
            };
            let debug_id = f
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("debug-id"))
                .map(|(_, v)| v.to_ascii_lowercase());
            let rec = BundleEntryRec {
                url: f.url,
                headers: f.headers,
                content: staged.ingested.blake3,
                sha1: staged.ingested.sha1,
                size: staged.ingested.size,
                debug_id,
            };
            chunks.extend(staged.chunks);
            unrecorded.extend(staged.unrecorded);
            entries.push((rec, staged.ingested));
        }
        // The reader's chunk list is not needed for the commit; free it before the commit's
        // own per-chunk bookkeeping.
        let dist = bundle.manifest.dist.clone();
        drop(bundle);
        inner.sync_segments_if_immediate()?;
        inner.index.insert_chunks(&unrecorded)?;
        drop(unrecorded);
        let entry_recs: Vec<BundleEntryRec> = entries.iter().map(|(e, _)| e.clone()).collect();
        let files = self.projection(req, &entry_recs, dist.as_deref())?;
        inner.index.commit_bundle(&crate::index::BundleCommit {
            org: req.org,
            checksum: req.checksum,
            bundle: &whole,
            entries: &entries,
            chunks: &chunks,
            files: &files,
            now_ms: now_ms(),
        })?;
        inner.durable_index()?;
        Ok(AssembleOutcome::Ok {
            files: files.len() as u64,
        })
    }

    /// The release files a bundle projects to (creating the release and linking the projects
    /// first), with a fresh id for each.
    fn projection(
        &self,
        req: &AssembleRequest<'_>,
        entries: &[BundleEntryRec],
        manifest_dist: Option<&str>,
    ) -> Result<Vec<(FileKey, u64, usize)>> {
        let Some(version) = req.version else {
            return Ok(Vec::new());
        };
        let inner = &*self.inner;
        inner
            .index
            .create_release(req.org, version, req.projects, now_ms())?;
        let dist = req.dist.or(manifest_dist).filter(|d| !d.is_empty());
        let scopes: Vec<Option<&String>> = if req.projects.is_empty() {
            vec![None]
        } else {
            req.projects.iter().map(Some).collect()
        };
        let mut files = Vec::with_capacity(scopes.len() * entries.len());
        for p in scopes {
            for (n, e) in entries.iter().enumerate() {
                let key = FileKey {
                    org: req.org.into(),
                    project: p.cloned(),
                    release: version.into(),
                    dist: dist.map(str::to_owned),
                    name: e.url.clone(),
                };
                files.push((key, inner.index.next_id()?, n));
            }
        }
        Ok(files)
    }

    /// Bundle entries whose `debug-id` header is `debug_id` (compared case-insensitively).
    pub fn bundle_entries_by_debug_id(&self, debug_id: &str) -> Result<Vec<BundleEntry>> {
        Ok(self
            .inner
            .index
            .debug_id_entries(&debug_id.to_ascii_lowercase())?
            .into_iter()
            .map(|(org, checksum, e)| BundleEntry {
                org,
                bundle_checksum: checksum,
                url: e.url,
                headers: e.headers,
                sha1: e.sha1,
                size: e.size,
                content_id: e.content,
            })
            .collect())
    }
}

fn hash_stream(reader: &mut ContentReader) -> Result<([u8; 20], [u8; 32])> {
    let mut sha1 = sha1::Sha1::new();
    let mut b3 = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = reader.read_checked(&mut buf)?;

        if n == 0 {
            break;
        }
        sha1.update(&buf[..n]);
        b3.update(&buf[..n]);
    }
    Ok((sha1.finalize().into(), *b3.finalize().as_bytes()))
}

/// Upload pieces streamed into the store and recorded together by [`PieceBatch::commit`];
/// dropping the batch records none of them (their bytes are garbage for gc). See
/// [`Store::piece_batch`].
pub struct PieceBatch<'a> {
    store: &'a Store,
    _mutation: std::sync::RwLockReadGuard<'a, ()>,
    org: String,
    ingested: Vec<Ingested>,
    chunks: ChunkLocations,
    unrecorded: Vec<Record>,
}

impl std::fmt::Debug for PieceBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceBatch")
            .field("org", &self.org)
            .field("pieces", &self.ingested.len())
            .finish()
    }
}

impl PieceBatch<'_> {
    /// Streams one piece from `reader` (at most [`MAX_PIECE_BYTES`], else [`Error::TooLarge`])
    /// and checks it against `sha1` ([`Error::ChecksumMismatch`]). Never holds the piece in
    /// memory. After an error the batch may still be used, but should not be committed.
    pub fn add(&mut self, sha1: &[u8; 20], reader: &mut dyn std::io::Read) -> Result<()> {
        let inner = &*self.store.inner;
        let staged = inner.stage(reader, MAX_PIECE_BYTES)?;
        if staged.ingested.sha1 != *sha1 {
            return Err(Error::ChecksumMismatch {
                expected: crate::hex(sha1),
                actual: crate::hex(&staged.ingested.sha1),
            });
        }
        self.chunks.extend(staged.chunks);
        self.unrecorded.extend(staged.unrecorded);
        self.ingested.push(staged.ingested);
        Ok(())
    }

    /// Records every added piece as owned by the org, in one index transaction, durably.
    pub fn commit(self) -> Result<()> {
        if self.ingested.is_empty() {
            return Ok(());
        }
        let inner = &*self.store.inner;
        inner.sync_segments_if_immediate()?;
        inner.index.insert_chunks(&self.unrecorded)?;
        inner
            .index
            .commit_pieces(&self.org, &self.ingested, &self.chunks, now_ms())?;
        inner.durable_index()
    }
}

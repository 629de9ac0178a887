//! Chunk upload and bundle assembly, the protocol of sentry-cli 3.x and the bundler plugins.
//!
//! A client splits a file (a source bundle) into pieces of up to 8 MiB named by their SHA-1,
//! asks which pieces the server lacks, uploads those, and asks the server to assemble. Here a
//! piece is stored as a content like any other upload (so its bytes are deduplicated chunk by
//! chunk) and owned by the org that uploaded it. Assembly builds the bundle's content from the
//! pieces' chunk lists in order (no bytes copied), streams it once to check the declared SHA-1,
//! reads the bundle's entries straight out of the stored content, and commits the bundle, its
//! entries and their projection into release files in one transaction.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use super::Store;
use crate::bundle::{Bundle, BundleLimits};
use crate::chunking::{ChunkMeta, Ingested};
use crate::clock::now_ms;
use crate::engine::reader::{hash_content, ContentReader};
use crate::engine::Write;
use crate::error::{Error, Object, Result};
use crate::id::{ContentId, Sha1};
use crate::index::contents::ChunkLocations;
use crate::index::pieces::{CommitBundle, CommitPieces, ProjectBundle, Projected};
use crate::index::records::{BundleEntryRec, ChunkRef};
use crate::index::releases::CreateRelease;
use crate::key::{validate_slug, validate_version, FileKey};

/// Largest upload piece (Sentry's `chunkSize`).
pub const MAX_PIECE_BYTES: u64 = 8 << 20;

/// What an assemble request asks for.
#[derive(Clone, Debug)]
pub struct AssembleRequest<'a> {
    /// Owning organization.
    pub org: &'a str,
    /// Declared SHA-1 of the whole file.
    pub checksum: Sha1,
    /// SHA-1s of the pieces, in order.
    pub pieces: &'a [Sha1],
    /// Projects to project the bundle's files into (none: the organization-wide scope).
    pub projects: &'a [String],
    /// Release to project into (none: store the bundle only, findable by debug id).
    pub version: Option<&'a str>,
    /// Dist for the projected files (none: the manifest's dist).
    pub dist: Option<&'a str>,
}

/// Why an assembly failed for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The pieces' bytes do not have the declared SHA-1.
    ChecksumMismatch,
    /// The assembled file is not a valid source bundle.
    InvalidBundle,
}

/// The answer to an assemble request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AssembleOutcome {
    /// Pieces that `org` has not uploaded (empty when the request named none).
    Missing(Vec<Sha1>),
    /// Assembled (now or earlier) and projected; the number of release files written.
    Ok {
        /// Release files the projection wrote or confirmed.
        files: u64,
    },
    /// Assembly failed for good.
    Failed(Failure),
}

/// A bundle entry found by debug id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleEntry {
    /// Organization that uploaded the bundle.
    pub org: String,
    /// SHA-1 of the bundle.
    pub bundle_checksum: Sha1,
    /// The entry's URL.
    pub url: String,
    /// The entry's headers.
    pub headers: Vec<(String, String)>,
    /// SHA-1 of the entry.
    pub sha1: Sha1,
    /// Size of the entry.
    pub size: u64,
    /// The entry's content: pass it to [`Store::open_content`].
    pub content_id: ContentId,
}

/// A bundle's entries, ingested into the segments and not yet committed.
struct Entries {
    entries: Vec<(BundleEntryRec, Ingested)>,
    chunks: ChunkLocations,
    dist: Option<String>,
}

impl Store {
    /// Stores upload pieces for `org`, each checked against its declared SHA-1. All or nothing:
    /// if one piece is oversized or mismatched, none is recorded.
    pub fn put_pieces(&self, org: &str, pieces: &[(Sha1, &[u8])]) -> Result<()> {
        let mut batch = self.piece_batch(org)?;
        for (sha1, bytes) in pieces {
            batch.add(sha1, &mut &bytes[..])?;
        }
        batch.commit()
    }

    /// Starts a batch of upload pieces for `org`, streamed in one by one and recorded together
    /// (what one chunk-upload request carries). Holds off gc until committed or dropped.
    pub fn piece_batch(&self, org: &str) -> Result<PieceBatch<'_>> {
        validate_slug("org", org)?;
        Ok(PieceBatch {
            write: self.engine.write()?,
            org: org.to_owned(),
            ingested: Vec::new(),
            chunks: HashMap::new(),
        })
    }

    /// The pieces among `sha1s` that `org` does not own, in request order, without repeats.
    /// One index lookup per piece.
    pub fn missing_pieces(&self, org: &str, sha1s: &[Sha1]) -> Result<Vec<Sha1>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for s in sha1s {
            if seen.insert(*s) && self.engine.index().piece(org, s)?.is_none() {
                out.push(*s);
            }
        }
        Ok(out)
    }

    /// Assembles (or re-projects) a bundle; see [`AssembleRequest`] and [`AssembleOutcome`].
    pub fn assemble(&self, req: &AssembleRequest<'_>) -> Result<AssembleOutcome> {
        validate_slug("org", req.org)?;
        if let Some(v) = req.version {
            validate_version(v)?;
        }
        for p in req.projects {
            validate_slug("project", p)?;
        }
        let mut write = self.engine.write()?;
        if let Some((_, entries)) = self.engine.index().bundle(req.org, &req.checksum)? {
            let files = self.projection(req, &entries, None)?;
            write.commit(&ProjectBundle {
                release: release_of(req),
                files: &files,
                entries: &entries,
                now_ms: now_ms(),
            })?;
            return Ok(AssembleOutcome::Ok {
                files: files.len() as u64,
            });
        }
        let missing = self.missing_pieces(req.org, req.pieces)?;
        if req.pieces.is_empty() || !missing.is_empty() {
            return Ok(AssembleOutcome::Missing(missing));
        }
        let (mut reader, whole) = match self.bundle_content(req)? {
            Ok(built) => built,
            Err(failure) => return Ok(AssembleOutcome::Failed(failure)),
        };
        let size = reader.size();
        std::io::Seek::rewind(&mut reader).map_err(|_| Error::Internal {
            what: "rewinding a content reader",
        })?;
        let bundle = match Bundle::open(reader, size, BundleLimits::default()) {
            Ok(b) => b,
            Err(Error::InvalidBundle(_)) => {
                return Ok(AssembleOutcome::Failed(Failure::InvalidBundle))
            }
            Err(e) => return Err(e),
        };
        let staged = match self.ingest_entries(&mut write, bundle) {
            Err(Error::InvalidBundle(_)) => {
                return Ok(AssembleOutcome::Failed(Failure::InvalidBundle))
            }
            other => other?,
        };
        let entry_recs: Vec<BundleEntryRec> =
            staged.entries.iter().map(|(e, _)| e.clone()).collect();
        let files = self.projection(req, &entry_recs, staged.dist.as_deref())?;
        write.commit(&CommitBundle {
            org: req.org,
            checksum: req.checksum,
            bundle: &whole,
            entries: &staged.entries,
            chunks: &staged.chunks,
            release: release_of(req),
            files: &files,
            now_ms: now_ms(),
        })?;
        Ok(AssembleOutcome::Ok {
            files: files.len() as u64,
        })
    }

    /// The bundle as a content built from its pieces' chunk lists, in order, checked against the
    /// declared SHA-1: a reader over it (one copy of the chunk list, ~52 bytes a chunk, serves
    /// both the check and the entries' pass) and its hashes.
    fn bundle_content(
        &self,
        req: &AssembleRequest<'_>,
    ) -> Result<std::result::Result<(ContentReader, Ingested), Failure>> {
        let index = self.engine.index();
        let mut refs: Vec<ChunkRef> = Vec::new();
        let mut metas: Vec<ChunkMeta> = Vec::new();
        for s in req.pieces {
            let piece = index
                .piece(req.org, s)?
                .ok_or_else(|| Error::not_found(format!("piece {s}")))?;
            let rec = index
                .content(&piece.content_id)?
                .ok_or_else(|| Error::corrupt(Object::Piece(*s), "its content is missing"))?;
            for r in index.manifest(&piece.content_id, &rec)? {
                metas.push(ChunkMeta {
                    id: r.id,
                    crc32: r.crc32,
                    len: r.len,
                });
                refs.push(r);
            }
        }
        let mut reader = ContentReader::over_chunks(self.engine.clone(), refs);
        let (sha1, content_id, size) = hash_content(&mut reader)?;
        if sha1 != req.checksum {
            return Ok(Err(Failure::ChecksumMismatch));
        }
        let whole = Ingested {
            content_id,
            sha1,
            size,
            chunks: metas,
        };
        Ok(Ok((reader, whole)))
    }

    /// Streams every entry of `bundle` into the segments as a content of its own.
    fn ingest_entries(
        &self,
        write: &mut Write<'_>,
        mut bundle: Bundle<ContentReader>,
    ) -> Result<Entries> {
        let limit = self.engine.options().max_upload_bytes;
        let mut entries = Vec::with_capacity(bundle.manifest.files.len());
        let mut chunks: ChunkLocations = HashMap::new();
        for f in bundle.manifest.files.clone() {
            let ingested =
                bundle.read_entry(&f.zip_path, |r| write.stage(r, limit, &mut chunks))?;
            let debug_id = f
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("debug-id"))
                .map(|(_, v)| v.to_ascii_lowercase());
            let rec = BundleEntryRec {
                url: f.url,
                headers: f.headers,
                content_id: ingested.content_id,
                sha1: ingested.sha1,
                size: ingested.size,
                debug_id,
            };
            entries.push((rec, ingested));
        }
        // Dropping the bundle frees the reader's chunk list before the commit's own per-chunk
        // bookkeeping.
        Ok(Entries {
            entries,
            chunks,
            dist: bundle.manifest.dist.clone(),
        })
    }

    /// The release files a bundle projects to, with a fresh id for each (the commit creates the
    /// release and links the projects first).
    fn projection(
        &self,
        req: &AssembleRequest<'_>,
        entries: &[BundleEntryRec],
        manifest_dist: Option<&str>,
    ) -> Result<Vec<Projected>> {
        let Some(version) = req.version else {
            return Ok(Vec::new());
        };
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
                files.push((key, self.engine.next_id()?, n));
            }
        }
        Ok(files)
    }

    /// Bundle entries whose `debug-id` header is `debug_id` (compared case-insensitively).
    pub fn bundle_entries_by_debug_id(&self, debug_id: &str) -> Result<Vec<BundleEntry>> {
        Ok(self
            .engine
            .index()
            .debug_id_entries(&debug_id.to_ascii_lowercase())?
            .into_iter()
            .map(|(org, checksum, e)| BundleEntry {
                org,
                bundle_checksum: checksum,
                url: e.url,
                headers: e.headers,
                sha1: e.sha1,
                size: e.size,
                content_id: e.content_id,
            })
            .collect())
    }
}

/// The release an assemble request projects into, created or linked by its commit.
fn release_of<'a>(req: &AssembleRequest<'a>) -> Option<CreateRelease<'a>> {
    req.version.map(|version| CreateRelease {
        org: req.org,
        version,
        projects: req.projects,
        now_ms: now_ms(),
    })
}

/// Upload pieces streamed into the store and recorded together by [`PieceBatch::commit`];
/// dropping the batch records none of them (their bytes are garbage for gc). See
/// [`Store::piece_batch`].
pub struct PieceBatch<'a> {
    write: Write<'a>,
    org: String,
    ingested: Vec<Ingested>,
    chunks: ChunkLocations,
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
    pub fn add(&mut self, sha1: &Sha1, reader: &mut dyn Read) -> Result<()> {
        let mut chunks = HashMap::new();
        let ingested = self.write.stage(reader, MAX_PIECE_BYTES, &mut chunks)?;
        if ingested.sha1 != *sha1 {
            return Err(Error::ChecksumMismatch {
                expected: *sha1,
                actual: ingested.sha1,
            });
        }
        self.chunks.extend(chunks);
        self.ingested.push(ingested);
        Ok(())
    }

    /// Records every added piece as owned by the org, in one index transaction, durably.
    pub fn commit(mut self) -> Result<()> {
        if self.ingested.is_empty() {
            return Ok(());
        }
        self.write.commit(&CommitPieces {
            org: &self.org,
            items: &self.ingested,
            chunks: &self.chunks,
            now_ms: now_ms(),
        })
    }
}

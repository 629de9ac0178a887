//! Chunk upload and artifact bundles in the index: upload pieces owned by an organization,
//! assembled bundles with their entries, the projection of entries into release files, and the
//! debug-id lookup. Each operation is one transaction, like every other index mutation.
//!
//! Keys: `pieces` = `org` part ‖ SHA-1 (20 bytes); `bundles` = `org` part ‖ checksum (20 bytes);
//! `bundle_entries` = bundle key ‖ entry number (u32 BE); `debug_ids` = `debug id` part ‖ `org`
//! part ‖ checksum ‖ entry number → empty.

use super::contents::{decref_content, incref_content, ChunkLocations, RefCounts};
use super::files::put_existing_content_file;
use super::records::{BundleEntryRec, BundleRec, FileRec, FileRow, PieceRec};
use super::releases::CreateRelease;
use super::tables::{Raw, Tx, TxResult, BUNDLES, BUNDLE_ENTRIES, DEBUG_IDS, PIECES};
use super::{Index, IndexWriter, Mutation};
use crate::chunking::Ingested;
use crate::error::{Error, Object, Result};
use crate::id::Sha1;
use crate::key::{decode_parts, encode_parts, FileKey};

fn piece_key(org: &str, sha1: &Sha1) -> Vec<u8> {
    let mut k = encode_parts(&[org]);
    k.extend_from_slice(sha1.as_bytes());
    k
}

fn bundle_key(org: &str, checksum: &Sha1) -> Vec<u8> {
    piece_key(org, checksum)
}

fn entry_key(bundle: &[u8], n: u32) -> Vec<u8> {
    let mut k = bundle.to_vec();
    k.extend_from_slice(&n.to_be_bytes());
    k
}

fn debug_key(debug_id: &str, org: &str, checksum: &Sha1, n: u32) -> Vec<u8> {
    let mut k = encode_parts(&[debug_id, org]);
    k.extend_from_slice(checksum.as_bytes());
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// One release file a bundle projects to: its key, its new id, and the entry it shows.
pub type Projected = (FileKey, u64, usize);

impl Index {
    /// The piece `sha1` of `org`.
    pub fn piece(&self, org: &str, sha1: &Sha1) -> Result<Option<PieceRec>> {
        PIECES.get(self.trees(), piece_key(org, sha1))
    }

    /// The bundle `checksum` of `org` and its entries.
    pub fn bundle(
        &self,
        org: &str,
        checksum: &Sha1,
    ) -> Result<Option<(BundleRec, Vec<BundleEntryRec>)>> {
        let bkey = bundle_key(org, checksum);
        let Some(rec) = BUNDLES.get(self.trees(), &bkey)? else {
            return Ok(None);
        };
        let mut entries = Vec::with_capacity(rec.entry_count as usize);
        for n in 0..rec.entry_count {
            let entry = BUNDLE_ENTRIES
                .get(self.trees(), entry_key(&bkey, n))?
                .ok_or_else(|| {
                    Error::corrupt(Object::Bundle(*checksum), format!("entry {n} is missing"))
                })?;
            entries.push(entry);
        }
        Ok(Some((rec, entries)))
    }

    /// Bundle entries whose `debug-id` header is `debug_id` (lower-case), as (org, checksum, entry).
    pub fn debug_id_entries(&self, debug_id: &str) -> Result<Vec<(String, Sha1, BundleEntryRec)>> {
        let prefix = encode_parts(&[debug_id]);
        let mut out = Vec::new();
        for k in DEBUG_IDS.keys(self.trees(), &prefix) {
            let k = k?;
            let rest = &k[prefix.len()..];
            let bad = || Error::corrupt(Object::Index(DEBUG_IDS.what), "malformed key");
            let org_len = rest.len().checked_sub(24).ok_or_else(bad)?;
            let org = decode_parts(&rest[..org_len], 1)?.swap_remove(0);
            let checksum = Sha1::from_slice(&rest[org_len..org_len + 20]).ok_or_else(bad)?;
            let n = u32::from_be_bytes(rest[org_len + 20..].try_into().map_err(|_| bad())?);
            let bkey = bundle_key(&org, &checksum);
            if let Some(entry) = BUNDLE_ENTRIES.get(self.trees(), entry_key(&bkey, n))? {
                out.push((org, checksum, entry));
            }
        }
        Ok(out)
    }

    /// Content references held by pieces, bundle files and bundle entries.
    pub fn piece_and_bundle_refs(&self) -> Result<RefCounts> {
        let mut refs = RefCounts::new();
        for item in PIECES.scan(self.trees(), []) {
            *refs.entry(item?.1.content_id).or_default() += 1;
        }
        for item in BUNDLES.scan(self.trees(), []) {
            if let Some(c) = item?.1.bundle_content {
                *refs.entry(c).or_default() += 1;
            }
        }
        for item in BUNDLE_ENTRIES.scan(self.trees(), []) {
            *refs.entry(item?.1.content_id).or_default() += 1;
        }
        Ok(refs)
    }

    /// Recomputes every content refcount from the file rows, pieces and bundles (verify's
    /// ground truth).
    pub fn expected_content_refs(&self) -> Result<RefCounts> {
        let mut contents = self.piece_and_bundle_refs()?;
        for row in self.all_files() {
            *contents.entry(row?.rec.content_id).or_default() += 1;
        }
        Ok(contents)
    }
}

/// Projects bundle entries into release files (`files` names which entry goes where),
/// replacing different files there.
fn project(
    t: Tx<'_>,
    counters: &mut super::records::Counters,
    files: &[Projected],
    entries: &[BundleEntryRec],
    now_ms: i64,
) -> TxResult<()> {
    for (key, id, n) in files {
        let e = &entries[*n];
        let row = FileRow {
            id: *id,
            rec: FileRec {
                key: key.clone(),
                content_id: e.content_id,
                sha1: e.sha1,
                size: e.size,
                headers: e.headers.clone(),
                created_ms: now_ms,
            },
        };
        put_existing_content_file(t, counters, &row)?;
    }
    Ok(())
}

/// Records uploaded pieces for `org` in one transaction (each takes a reference to its
/// content; re-uploading a piece refreshes its time).
#[derive(Debug)]
pub struct CommitPieces<'a> {
    /// Owning organization.
    pub org: &'a str,
    /// The pieces' contents.
    pub items: &'a [Ingested],
    /// Where their chunks are.
    pub chunks: &'a ChunkLocations,
    /// Now, ms since the epoch.
    pub now_ms: i64,
}

impl Mutation for CommitPieces<'_> {
    type Output = ();

    fn apply(&self, ix: &IndexWriter) -> Result<()> {
        ix.counted_op("commit pieces", |t, counters| {
            for ing in self.items {
                let k = piece_key(self.org, &ing.sha1);
                let old = t.get(PIECES, &k)?;
                if old.map(|o| o.content_id) != Some(ing.content_id) {
                    incref_content(t, counters, ing, self.chunks)?;
                    if let Some(o) = old {
                        decref_content(t, counters, &o.content_id)?;
                    }
                }
                t.put(
                    PIECES,
                    &k,
                    &PieceRec {
                        content_id: ing.content_id,
                        created_ms: self.now_ms,
                    },
                )?;
            }
            Ok(())
        })
    }
}

/// Commits a newly assembled bundle and its projection into release files, atomically, after
/// creating (or linking) the release it projects into.
#[derive(Debug)]
pub struct CommitBundle<'a> {
    /// Owning organization.
    pub org: &'a str,
    /// SHA-1 of the bundle file.
    pub checksum: Sha1,
    /// The bundle file as a content (its chunks are the pieces' chunks, all already indexed).
    pub bundle: &'a Ingested,
    /// The entries and their ingested contents.
    pub entries: &'a [(BundleEntryRec, Ingested)],
    /// Where the entries' chunks are, as their ingest found or appended them.
    pub chunks: &'a ChunkLocations,
    /// The release to create or link first, when the bundle projects into one.
    pub release: Option<CreateRelease<'a>>,
    /// Release files to create.
    pub files: &'a [Projected],
    /// Now, ms since the epoch.
    pub now_ms: i64,
}

impl Mutation for CommitBundle<'_> {
    type Output = ();

    fn apply(&self, ix: &IndexWriter) -> Result<()> {
        if let Some(r) = &self.release {
            r.apply(ix)?;
        }
        let bkey = bundle_key(self.org, &self.checksum);
        let entry_recs: Vec<BundleEntryRec> = self.entries.iter().map(|(e, _)| e.clone()).collect();
        ix.counted_op("commit bundle", |t, counters| {
            if !t.has(BUNDLES, &bkey)? {
                incref_content(t, counters, self.bundle, self.chunks)?;
                for (n, (entry, ing)) in self.entries.iter().enumerate() {
                    incref_content(t, counters, ing, self.chunks)?;
                    t.put(BUNDLE_ENTRIES, entry_key(&bkey, n as u32), entry)?;
                    if let Some(id) = &entry.debug_id {
                        t.put(
                            DEBUG_IDS,
                            debug_key(id, self.org, &self.checksum, n as u32),
                            &Raw::default(),
                        )?;
                    }
                }
                let rec = BundleRec {
                    bundle_content: Some(self.bundle.content_id),
                    created_ms: self.now_ms,
                    entry_count: self.entries.len() as u32,
                };
                t.put(BUNDLES, &bkey, &rec)?;
            }
            project(t, counters, self.files, &entry_recs, self.now_ms)
        })
    }
}

/// Projects the entries of a known bundle into release files again (one transaction), after
/// creating (or linking) the release.
#[derive(Debug)]
pub struct ProjectBundle<'a> {
    /// The release to create or link first.
    pub release: Option<CreateRelease<'a>>,
    /// Release files to create.
    pub files: &'a [Projected],
    /// The bundle's entries.
    pub entries: &'a [BundleEntryRec],
    /// Now, ms since the epoch.
    pub now_ms: i64,
}

impl Mutation for ProjectBundle<'_> {
    type Output = ();

    fn apply(&self, ix: &IndexWriter) -> Result<()> {
        if let Some(r) = &self.release {
            r.apply(ix)?;
        }
        ix.counted_op("project bundle", |t, counters| {
            project(t, counters, self.files, self.entries, self.now_ms)
        })
    }
}

/// Drops pieces last uploaded at or before `cutoff_ms` and the bundle files (not their entries)
/// assembled before it. Returns (pieces, bundle files) dropped.
#[derive(Debug)]
pub struct ExpirePieces {
    /// The cutoff, ms since the epoch.
    pub cutoff_ms: i64,
}

impl Mutation for ExpirePieces {
    type Output = (u64, u64);
    /// gc's first step: durable before its sweep.
    const ALWAYS_DURABLE: bool = true;

    fn apply(&self, ix: &IndexWriter) -> Result<(u64, u64)> {
        let cutoff_ms = self.cutoff_ms;
        let mut old_pieces = Vec::new();
        for item in PIECES.scan(ix.trees(), []) {
            let (k, rec) = item?;
            if rec.created_ms <= cutoff_ms {
                old_pieces.push(k.to_vec());
            }
        }
        let mut old_bundles = Vec::new();
        for item in BUNDLES.scan(ix.trees(), []) {
            let (k, rec) = item?;
            if rec.created_ms <= cutoff_ms && rec.bundle_content.is_some() {
                old_bundles.push(k.to_vec());
            }
        }
        ix.counted_op("expire pieces", |t, counters| {
            let (mut pieces, mut bundles) = (0, 0);
            for k in &old_pieces {
                if let Some(rec) = t.get(PIECES, k)? {
                    if rec.created_ms <= cutoff_ms {
                        decref_content(t, counters, &rec.content_id)?;
                        t.remove(PIECES, k)?;
                        pieces += 1;
                    }
                }
            }
            for k in &old_bundles {
                if let Some(mut rec) = t.get(BUNDLES, k)? {
                    if let Some(c) = rec.bundle_content.take() {
                        decref_content(t, counters, &c)?;
                        t.put(BUNDLES, k, &rec)?;
                        bundles += 1;
                    }
                }
            }
            Ok((pieces, bundles))
        })
    }
}

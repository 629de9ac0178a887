//! Index side of chunk upload and artifact bundles: upload pieces owned by an organization,
//! assembled bundles with their entries, the projection of entries into release files, and the
//! debug-id lookup. Each operation is one transaction, like every other index mutation.
//!
//! Keys: `pieces` = `org` part ‖ SHA-1 (20 bytes); `bundles` = `org` part ‖ checksum (20 bytes);
//! `bundle_entries` = bundle key ‖ entry number (u32 BE); `debug_ids` = `debug id` part ‖ `org`
//! part ‖ checksum ‖ entry number → empty.

use std::collections::HashMap;

use sled::transaction::TransactionalTree;

use super::records::*;
use super::{
    abort, decref_content, drop_replaced, get, incref_content, put, release_key, sled_err,
    ChunkLocations, Index, TxResult,
};
use super::{
    FileRow, T_BUNDLES, T_BUNDLE_ENTRIES, T_CONTENTS, T_DEBUG_IDS, T_FILES, T_FILE_IDS, T_PIECES,
    T_RELEASES,
};
use crate::content::ingest::Ingested;
use crate::error::{Error, Result};
use crate::key::{encode_parts, FileKey};

fn piece_key(org: &str, sha1: &[u8; 20]) -> Vec<u8> {
    let mut k = encode_parts(&[org]);
    k.extend_from_slice(sha1);
    k
}

fn bundle_key(org: &str, checksum: &[u8; 20]) -> Vec<u8> {
    piece_key(org, checksum)
}

fn entry_key(bundle: &[u8], n: u32) -> Vec<u8> {
    let mut k = bundle.to_vec();
    k.extend_from_slice(&n.to_be_bytes());
    k
}

fn debug_key(debug_id: &str, org: &str, checksum: &[u8; 20], n: u32) -> Vec<u8> {
    let mut k = encode_parts(&[debug_id, org]);
    k.extend_from_slice(checksum);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// Everything the first assembly of a bundle commits.
pub struct BundleCommit<'a> {
    /// Owning organization.
    pub org: &'a str,
    /// SHA-1 of the bundle file.
    pub checksum: [u8; 20],
    /// The bundle file as a content (its chunks are the pieces' chunks, all already indexed).
    pub bundle: &'a Ingested,
    /// The entries and their ingested contents.
    pub entries: &'a [(BundleEntryRec, Ingested)],
    /// Where the entries' chunks are, as their ingest found or appended them.
    pub chunks: &'a ChunkLocations,
    /// Release files to create: key, new id, entry number.
    pub files: &'a [(FileKey, u64, usize)],
    /// Now, ms since the epoch.
    pub now_ms: i64,
}

impl Index {
    /// The piece `sha1` of `org`.
    pub fn piece(&self, org: &str, sha1: &[u8; 20]) -> Result<Option<PieceRec>> {
        match self
            .tree(T_PIECES)
            .get(piece_key(org, sha1))
            .map_err(sled_err("read piece"))?
        {
            None => Ok(None),
            Some(v) => super::codec::decode("piece record", &v).map(Some),
        }
    }

    /// Records uploaded pieces for `org` in one transaction (each takes a reference to its
    /// content; re-uploading a piece refreshes its time).
    pub fn commit_pieces(
        &self,
        org: &str,
        items: &[Ingested],
        chunks: &ChunkLocations,
        now_ms: i64,
    ) -> Result<()> {
        self.counted_op("commit pieces", |t, counters| {
            for ing in items {
                let k = piece_key(org, &ing.sha1);
                let old: Option<PieceRec> = get(&t[T_PIECES], &k, "piece record")?;
                if old.map(|o| o.content) != Some(ing.blake3) {
                    incref_content(t, counters, ing, chunks)?;
                    if let Some(o) = old {
                        decref_content(t, counters, &o.content)?;
                    }
                }
                put(
                    &t[T_PIECES],
                    &k,
                    &PieceRec {
                        content: ing.blake3,
                        created_ms: now_ms,
                    },
                )?;
            }
            Ok(())
        })
    }

    /// The bundle `checksum` of `org` and its entries.
    pub fn bundle(
        &self,
        org: &str,
        checksum: &[u8; 20],
    ) -> Result<Option<(BundleRec, Vec<BundleEntryRec>)>> {
        let bkey = bundle_key(org, checksum);
        let Some(v) = self
            .tree(T_BUNDLES)
            .get(&bkey)
            .map_err(sled_err("read bundle"))?
        else {
            return Ok(None);
        };
        let rec: BundleRec = super::codec::decode("bundle record", &v)?;
        let mut entries = Vec::with_capacity(rec.entry_count as usize);
        for n in 0..rec.entry_count {
            let v = self
                .tree(T_BUNDLE_ENTRIES)
                .get(entry_key(&bkey, n))
                .map_err(sled_err("read bundle entry"))?
                .ok_or_else(|| {
                    Error::corrupt(
                        format!("bundle {}", crate::hex(checksum)),
                        format!("entry {n} is missing"),
                    )
                })?;
            entries.push(super::codec::decode("bundle entry", &v)?);
        }
        Ok(Some((rec, entries)))
    }

    /// Commits a newly assembled bundle and its projection into release files, atomically.
    pub fn commit_bundle(&self, c: &BundleCommit<'_>) -> Result<()> {
        let bkey = bundle_key(c.org, &c.checksum);
        self.counted_op("commit bundle", |t, counters| {
            if t[T_BUNDLES].get(&bkey)?.is_none() {
                incref_content(t, counters, c.bundle, c.chunks)?;
                for (n, (entry, ing)) in c.entries.iter().enumerate() {
                    incref_content(t, counters, ing, c.chunks)?;
                    put(&t[T_BUNDLE_ENTRIES], &entry_key(&bkey, n as u32), entry)?;
                    if let Some(id) = &entry.debug_id {
                        t[T_DEBUG_IDS]
                            .insert(debug_key(id, c.org, &c.checksum, n as u32), &[] as &[u8])?;
                    }
                }
                let rec = BundleRec {
                    bundle_content: Some(c.bundle.blake3),
                    created_ms: c.now_ms,
                    entry_count: c.entries.len() as u32,
                };
                put(&t[T_BUNDLES], &bkey, &rec)?;
            }
            for (key, id, n) in c.files {
                put_entry_file(t, counters, key, *id, &c.entries[*n].0, c.now_ms)?;
            }
            Ok(())
        })
    }

    /// Projects the entries of a known bundle into release files again (one transaction).
    pub fn project_bundle(
        &self,
        files: &[(FileKey, u64, usize)],
        entries: &[BundleEntryRec],
        now_ms: i64,
    ) -> Result<()> {
        self.counted_op("project bundle", |t, counters| {
            for (key, id, n) in files {
                put_entry_file(t, counters, key, *id, &entries[*n], now_ms)?;
            }
            Ok(())
        })
    }

    /// Bundle entries whose `debug-id` header is `debug_id` (lower-case), as (org, checksum, entry).
    pub fn debug_id_entries(
        &self,
        debug_id: &str,
    ) -> Result<Vec<(String, [u8; 20], BundleEntryRec)>> {
        let prefix = encode_parts(&[debug_id]);
        let mut out = Vec::new();
        for k in self.tree(T_DEBUG_IDS).scan_prefix(&prefix).keys() {
            let k = k.map_err(sled_err("scan debug ids"))?;
            let rest = &k[prefix.len()..];
            let bad = || Error::corrupt("debug id index", "malformed key");
            let org_len = rest.len().checked_sub(24).ok_or_else(bad)?;
            let org = crate::key::decode_parts(&rest[..org_len], 1)?.swap_remove(0);
            let checksum: [u8; 20] = rest[org_len..org_len + 20].try_into().map_err(|_| bad())?;
            let n = u32::from_be_bytes(rest[org_len + 20..].try_into().map_err(|_| bad())?);
            let bkey = bundle_key(&org, &checksum);
            if let Some(v) = self
                .tree(T_BUNDLE_ENTRIES)
                .get(entry_key(&bkey, n))
                .map_err(sled_err("read bundle entry"))?
            {
                out.push((org, checksum, super::codec::decode("bundle entry", &v)?));
            }
        }
        Ok(out)
    }

    /// Content references held by pieces, bundle files and bundle entries (for verify).
    pub fn piece_and_bundle_refs(&self) -> Result<HashMap<[u8; 32], u64>> {
        let mut refs: HashMap<[u8; 32], u64> = HashMap::new();
        for v in self.tree(T_PIECES).iter().values() {
            let rec: PieceRec =
                super::codec::decode("piece record", &v.map_err(sled_err("scan pieces"))?)?;
            *refs.entry(rec.content).or_default() += 1;
        }
        for v in self.tree(T_BUNDLES).iter().values() {
            let rec: BundleRec =
                super::codec::decode("bundle record", &v.map_err(sled_err("scan bundles"))?)?;
            if let Some(c) = rec.bundle_content {
                *refs.entry(c).or_default() += 1;
            }
        }
        for v in self.tree(T_BUNDLE_ENTRIES).iter().values() {
            let rec: BundleEntryRec =
                super::codec::decode("bundle entry", &v.map_err(sled_err("scan bundle entries"))?)?;
            *refs.entry(rec.content).or_default() += 1;
        }
        Ok(refs)
    }

    /// Drops pieces last uploaded at or before `cutoff_ms` and the bundle files (not their entries)
    /// assembled before it. Returns (pieces, bundle files) dropped.
    pub fn expire_pieces(&self, cutoff_ms: i64) -> Result<(u64, u64)> {
        let mut old_pieces = Vec::new();
        for item in self.tree(T_PIECES).iter() {
            let (k, v) = item.map_err(sled_err("scan pieces"))?;
            let rec: PieceRec = super::codec::decode("piece record", &v)?;
            if rec.created_ms <= cutoff_ms {
                old_pieces.push(k.to_vec());
            }
        }
        let mut old_bundles = Vec::new();
        for item in self.tree(T_BUNDLES).iter() {
            let (k, v) = item.map_err(sled_err("scan bundles"))?;
            let rec: BundleRec = super::codec::decode("bundle record", &v)?;
            if rec.created_ms <= cutoff_ms && rec.bundle_content.is_some() {
                old_bundles.push(k.to_vec());
            }
        }
        self.counted_op("expire pieces", |t, counters| {
            let (mut pieces, mut bundles) = (0, 0);
            for k in &old_pieces {
                if let Some(rec) = get::<PieceRec>(&t[T_PIECES], k, "piece record")? {
                    if rec.created_ms <= cutoff_ms {
                        decref_content(t, counters, &rec.content)?;
                        t[T_PIECES].remove(k.as_slice())?;
                        pieces += 1;
                    }
                }
            }
            for k in &old_bundles {
                if let Some(mut rec) = get::<BundleRec>(&t[T_BUNDLES], k, "bundle record")? {
                    if let Some(c) = rec.bundle_content.take() {
                        decref_content(t, counters, &c)?;
                        put(&t[T_BUNDLES], k, &rec)?;
                        bundles += 1;
                    }
                }
            }
            Ok((pieces, bundles))
        })
    }
}

/// Puts one projected bundle entry at `key`, replacing a different file there. An identical
/// file (same content and headers) is left as it is, keeping its id.
fn put_entry_file(
    t: &[TransactionalTree],
    counters: &mut Counters,
    key: &FileKey,
    id: u64,
    e: &BundleEntryRec,
    now_ms: i64,
) -> TxResult<()> {
    let rkey = release_key(&key.org, &key.release);
    let Some(mut release) = get::<ReleaseRec>(&t[T_RELEASES], &rkey, "release record")? else {
        return abort(Error::not_found(format!(
            "release {}/{}",
            key.org, key.release
        )));
    };
    let fkey = key.encode();
    let old: Option<FileRow> = get(&t[T_FILES], &fkey, "file record")?;
    if let Some(o) = &old {
        if o.rec.content == e.content && o.rec.headers == e.headers {
            return Ok(());
        }
    }
    let Some(mut content) = get::<ContentRec>(&t[T_CONTENTS], &e.content, "content record")? else {
        return abort(Error::corrupt(
            format!("content {}", crate::hex(&e.content)),
            "a bundle entry refers to a missing content",
        ));
    };
    content.refcount += 1;
    put(&t[T_CONTENTS], &e.content, &content)?;
    if let Some(o) = &old {
        drop_replaced(t, counters, &mut release, o)?;
    }
    let row = FileRow {
        id,
        rec: FileRec {
            key: key.clone(),
            content: e.content,
            sha1: e.sha1,
            size: e.size,
            headers: e.headers.clone(),
            created_ms: now_ms,
        },
    };
    put(&t[T_FILES], &fkey, &row)?;
    t[T_FILE_IDS].insert(&id.to_be_bytes(), fkey.as_slice())?;
    counters.files += 1;
    counters.logical_bytes += e.size;
    release.file_count += 1;
    release.file_bytes += e.size;
    put(&t[T_RELEASES], &rkey, &release)?;
    Ok(())
}

//! Pending chunk references: references that no content holds yet or any more, kept in the
//! `pending` tree so that no single sled transaction has to touch every chunk of a large content.
//!
//! sled keeps every write of a transaction in memory until the transaction commits (~4 KiB per
//! write, measured), so a content of 65,000 chunks (1 GiB at 16 KiB) cannot take or drop its
//! chunk references inside the one transaction that creates or removes it without ~290 MiB of
//! peak memory. Instead:
//!
//! - **Taking.** Before the transaction that creates large new contents, [`Index::preown`]
//!   increments their chunks' refcounts (creating the records of chunks the upload wrote) in
//!   transactions of at most [`PENDING_CHUNKS`] chunks, each also writing a pending record that
//!   lists them. The creating transaction deletes those records when it creates the content: the
//!   references become the content's. When it does not create the content (it failed, or a
//!   concurrent upload created the same content first), the records stay and are released.
//! - **Dropping.** A transaction that removes more than [`TX_CHUNKS`] chunk references writes
//!   the rest as pending records instead of decrementing each chunk in place ([`Deferrer`]).
//! - **Releasing.** [`Index::release_pending`] decrements the chunks of pending records, one
//!   bounded transaction per record, right after each operation; the store also releases every
//!   record when it opens, so a crash between the steps leaks nothing.
//!
//! A pending record therefore always means "one reference to each listed chunk that no content
//! holds", which is how verify counts it. Chunk records stay at refcount 0 after a release, like
//! after any decrement, until gc (which excludes every other mutation) removes them.
//!
//! Keys: operation nonce (u64 BE, from sled's id generator) ‖ sequence (u32 BE). Records taken
//! ahead of a creation use sequences below 2^31, deferred drops from 2^31 up.

use std::collections::{HashMap, HashSet};

use sled::transaction::TransactionalTree;
use sled::Transactional;

use super::records::{ChunkRec, Counters, PendingRec};
use super::{
    abort, get, put, run_tx, sled_err, Index, TxResult, STATS_KEY, T_CHUNKS, T_CONTENTS, T_META,
    T_PENDING,
};
use crate::content::ingest::Ingested;
use crate::error::{Error, Result};
use crate::segment::Location;

/// Chunk ids per pending record (32 KiB values, well under the size at which sled moves values
/// to side files it does not sync) and per release transaction.
pub const PENDING_CHUNKS: usize = 1024;

/// Chunk-refcount writes one transaction may make in place; beyond this they go through
/// pending records. Bounds a transaction's sled memory to a few tens of MiB.
pub const TX_CHUNKS: usize = 4096;

/// The trees of a reference transaction, in this order (see `Index::ref_trees`).
pub(super) const REF_TREES: [usize; 3] = [T_CHUNKS, T_PENDING, T_META];
const R_CHUNKS: usize = 0;
const R_PENDING: usize = 1;
const R_META: usize = 2;

/// First sequence number of deferred drops.
const DEFER_SEQ: u32 = 1 << 31;

fn pending_key(nonce: u64, seq: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&nonce.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Chunk references taken ahead of creating contents (see the module docs).
#[derive(Debug, Default)]
pub struct Preowned {
    /// Content → sequence numbers of its pending records.
    by_content: HashMap<[u8; 32], Vec<u32>>,
    /// Where each chunk taken ahead lives (for the creating transaction's manifest), sorted by
    /// id once taking is done: a flat list costs half a hash map's memory at ~260,000 entries
    /// a GiB.
    locations: Vec<([u8; 32], Location)>,
    nonce: u64,
}

impl Preowned {
    /// The pending-record keys holding `content`'s chunk references, if they were taken ahead.
    fn keys(&self, content: &[u8; 32]) -> Option<impl Iterator<Item = [u8; 12]> + '_> {
        let nonce = self.nonce;
        self.by_content
            .get(content)
            .map(move |seqs| seqs.iter().map(move |&s| pending_key(nonce, s)))
    }
}

/// Per-transaction budget of in-place chunk decrements; the rest become pending records. Make a
/// new one in each attempt of a transaction closure (sled may run it more than once).
pub struct Deferrer {
    nonce: u64,
    next_seq: u32,
    budget: usize,
    per_record: usize,
}

/// Where the chunks of a content being created live: taken ahead (a sorted list shared by the
/// operation) or taken in place (a map of this content's chunks).
pub(super) enum ChunkLocations<'p> {
    Taken(&'p [([u8; 32], Location)]),
    InPlace(HashMap<[u8; 32], Location>),
}

impl ChunkLocations<'_> {
    /// Where chunk `id` lives, if it is one of the content's.
    pub(super) fn get(&self, id: &[u8; 32]) -> Option<Location> {
        match self {
            ChunkLocations::Taken(list) => list
                .binary_search_by(|(k, _)| k.cmp(id))
                .ok()
                .map(|i| list[i].1),
            ChunkLocations::InPlace(map) => map.get(id).copied(),
        }
    }
}

/// Takes one reference to each distinct chunk of a content being created: in place when the
/// creating transaction could not take them itself (`pre` has no records for it), otherwise by
/// deleting the pending records that already hold them. Returns where each chunk lives.
pub(super) fn take_chunk_refs<'p>(
    t: &[TransactionalTree],
    counters: &mut Counters,
    ing: &Ingested,
    written: &HashMap<[u8; 32], Location>,
    pre: &'p Preowned,
) -> TxResult<ChunkLocations<'p>> {
    if let Some(keys) = pre.keys(&ing.blake3) {
        for k in keys {
            if t[T_PENDING].remove(&k)?.is_none() {
                return abort(Error::corrupt(
                    format!("content {}", crate::hex(&ing.blake3)),
                    "its pending chunk references vanished before it was created",
                ));
            }
        }
        return Ok(ChunkLocations::Taken(&pre.locations));
    }
    let mut at = HashMap::with_capacity(ing.chunks.len());
    for c in &ing.chunks {
        if let std::collections::hash_map::Entry::Vacant(e) = at.entry(c.blake3) {
            e.insert(incref_chunk(
                &t[T_CHUNKS],
                counters,
                &c.blake3,
                c.len,
                c.crc32,
                written.get(&c.blake3).copied(),
            )?);
        }
    }
    Ok(ChunkLocations::InPlace(at))
}

/// Drops one reference to each of `chunks` (distinct): in place within the budget, the rest as
/// pending records released after the transaction.
pub(super) fn drop_chunk_refs(
    t: &[TransactionalTree],
    counters: &mut Counters,
    chunks: &[[u8; 32]],
    d: &mut Deferrer,
) -> TxResult<()> {
    if chunks.len() <= d.budget {
        d.budget -= chunks.len();
        for id in chunks {
            decref_chunk(&t[T_CHUNKS], counters, id)?;
        }
        return Ok(());
    }
    for group in chunks.chunks(d.per_record) {
        let k = pending_key(d.nonce, d.next_seq);
        d.next_seq += 1;
        put(
            &t[T_PENDING],
            &k,
            &PendingRec {
                chunks: group.to_vec(),
            },
        )?;
    }
    Ok(())
}

/// Takes one reference to chunk `id`, creating its record at `written` (where this upload
/// appended it) when the index has none.
fn incref_chunk(
    chunks: &TransactionalTree,
    counters: &mut Counters,
    id: &[u8; 32],
    len: u32,
    crc32: u32,
    written: Option<Location>,
) -> TxResult<Location> {
    match get::<ChunkRec>(chunks, id, "chunk record")? {
        Some(mut ch) => {
            if ch.refcount == 0 {
                counters.chunks += 1;
                counters.stored_bytes += u64::from(ch.len);
            }
            ch.refcount += 1;
            put(chunks, id, &ch)?;
            Ok(ch.location)
        }
        None => {
            let Some(location) = written else {
                // The upload saw this chunk in the index and did not write it; only gc removes
                // chunk records and it excludes uploads, so this is a bug, not a race.
                return abort(Error::corrupt(
                    format!("chunk {}", crate::hex(id)),
                    "vanished from the index during an upload",
                ));
            };
            counters.chunks += 1;
            counters.stored_bytes += u64::from(len);
            put(
                chunks,
                id,
                &ChunkRec {
                    location,
                    len,
                    crc32,
                    refcount: 1,
                },
            )?;
            Ok(location)
        }
    }
}

fn decref_chunk(
    chunks: &TransactionalTree,
    counters: &mut Counters,
    id: &[u8; 32],
) -> TxResult<()> {
    let Some(mut ch) = get::<ChunkRec>(chunks, id, "chunk record")? else {
        return abort(Error::corrupt(
            format!("chunk {}", crate::hex(id)),
            "a content refers to a missing chunk",
        ));
    };
    if ch.refcount == 0 {
        return abort(Error::corrupt(
            format!("chunk {}", crate::hex(id)),
            "refcount would drop below zero",
        ));
    }
    ch.refcount -= 1;
    if ch.refcount == 0 {
        counters.chunks -= 1;
        counters.stored_bytes -= u64::from(ch.len);
    }
    // Kept at refcount 0 until gc: an upload that already decided not to write this chunk may
    // still reference it; gc removes such records while no upload runs.
    put(chunks, id, &ch)
}

impl Index {
    /// The in-place budget of one transaction attempt of the operation `nonce`.
    pub(super) fn deferrer(&self, nonce: u64) -> Deferrer {
        Deferrer {
            nonce,
            next_seq: DEFER_SEQ,
            budget: self.tx_chunks,
            per_record: self.per_record(),
        }
    }

    /// A fresh operation nonce for pending-record keys.
    pub(super) fn nonce(&self) -> Result<u64> {
        self.db.generate_id().map_err(sled_err("generate id"))
    }

    /// Chunk ids per pending record.
    fn per_record(&self) -> usize {
        PENDING_CHUNKS.min(self.tx_chunks)
    }

    /// Takes the chunk references of the contents in `items` that do not exist yet, ahead of the
    /// transaction that creates them, when together they have more than `tx_chunks` distinct
    /// chunks (otherwise that transaction takes them itself and this writes nothing). On error,
    /// whatever was taken stays pending under `nonce`; release it.
    pub(super) fn preown(
        &self,
        nonce: u64,
        items: &[&Ingested],
        written: &HashMap<[u8; 32], Location>,
    ) -> Result<Preowned> {
        let mut pre = Preowned {
            by_content: HashMap::new(),
            locations: Vec::new(),
            nonce,
        };
        let mut todo: Vec<(&Ingested, Vec<usize>)> = Vec::new();
        let mut contents = HashSet::new();
        let mut total = 0;
        for ing in items {
            if !contents.insert(ing.blake3)
                || self
                    .tree(T_CONTENTS)
                    .contains_key(ing.blake3)
                    .map_err(sled_err("read content"))?
            {
                continue;
            }
            let mut seen = HashSet::new();
            let distinct: Vec<usize> = (0..ing.chunks.len())
                .filter(|&i| seen.insert(ing.chunks[i].blake3))
                .collect();
            total += distinct.len();
            todo.push((ing, distinct));
        }
        if total <= self.tx_chunks {
            return Ok(pre);
        }
        pre.locations.reserve_exact(total);
        let mut seq = 0u32;
        for (ing, distinct) in todo {
            for group in distinct.chunks(self.per_record()) {
                let k = pending_key(nonce, seq);
                let r = self.ref_trees.as_slice().transaction(|t| {
                    let mut counters: Counters =
                        get(&t[R_META], STATS_KEY, "stats")?.unwrap_or_default();
                    let mut ids = Vec::with_capacity(group.len());
                    let mut at = Vec::with_capacity(group.len());
                    for &i in group {
                        let c = &ing.chunks[i];
                        at.push(incref_chunk(
                            &t[R_CHUNKS],
                            &mut counters,
                            &c.blake3,
                            c.len,
                            c.crc32,
                            written.get(&c.blake3).copied(),
                        )?);
                        ids.push(c.blake3);
                    }
                    put(
                        &t[R_PENDING],
                        &k,
                        &PendingRec {
                            chunks: ids.clone(),
                        },
                    )?;
                    put(&t[R_META], STATS_KEY, &counters)?;
                    Ok(ids.into_iter().zip(at).collect::<Vec<_>>())
                });
                let at = run_tx("take chunk references", r)?.expect("no retry");
                pre.locations.extend(at);
                pre.by_content.entry(ing.blake3).or_default().push(seq);
                seq += 1;
            }
        }
        pre.locations.sort_unstable_by_key(|e| e.0);
        pre.locations.dedup_by(|a, b| a.0 == b.0);
        Ok(pre)
    }

    /// Releases the pending records of the operation `nonce` (all of them when `None`), one
    /// transaction per record.
    pub fn release_pending(&self, nonce: Option<u64>) -> Result<()> {
        let prefix = nonce.map(u64::to_be_bytes);
        let scan = match &prefix {
            Some(p) => self.tree(T_PENDING).scan_prefix(p),
            None => self.tree(T_PENDING).iter(),
        };
        let keys = scan
            .keys()
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(sled_err("scan pending references"))?;
        for k in keys {
            let r = self.ref_trees.as_slice().transaction(|t| {
                let Some(rec) = get::<PendingRec>(&t[R_PENDING], &k, "pending references")? else {
                    return Ok(());
                };
                let mut counters: Counters =
                    get(&t[R_META], STATS_KEY, "stats")?.unwrap_or_default();
                for id in &rec.chunks {
                    decref_chunk(&t[R_CHUNKS], &mut counters, id)?;
                }
                t[R_PENDING].remove(&k)?;
                put(&t[R_META], STATS_KEY, &counters)?;
                Ok(())
            });
            run_tx("release chunk references", r)?;
        }
        Ok(())
    }

    /// Runs one operation that may leave pending records under `nonce`, then releases them.
    /// A failure to release after the operation succeeded is not the operation's failure: the
    /// records stay, verify counts them, and the next open releases them.
    pub(super) fn settle<T>(&self, nonce: u64, op: impl FnOnce() -> Result<T>) -> Result<T> {
        let result = op();
        let _left_for_open = self.release_pending(Some(nonce));
        result
    }

    /// Chunk references held by pending records (for verify).
    pub fn pending_chunk_refs(&self) -> Result<HashMap<[u8; 32], u64>> {
        let mut refs: HashMap<[u8; 32], u64> = HashMap::new();
        for v in self.tree(T_PENDING).iter().values() {
            let v = v.map_err(sled_err("scan pending references"))?;
            let rec: PendingRec = super::codec::decode("pending references", &v)?;
            for id in rec.chunks {
                *refs.entry(id).or_default() += 1;
            }
        }
        Ok(refs)
    }

    /// Number of pending records (0 on a quiet store).
    pub fn pending_records(&self) -> usize {
        self.tree(T_PENDING).len()
    }
}

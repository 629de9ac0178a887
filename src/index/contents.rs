//! Contents in the index: `contents` (content id → record), `content_pages` (long chunk lists)
//! and `by_sha1`, with the one place that takes a reference to a content (creating its record
//! and manifest when it is new) and the one place that drops one (removing them at zero).

use std::collections::{HashMap, HashSet};

use super::records::{ChunkRef, ContentRec, Counters, CHUNKS_PER_PAGE};
use super::tables::{
    abort, page_key, sha1_key, Raw, Tx, TxResult, BY_SHA1, CHUNKS, CONTENTS, PAGES,
};
use super::Index;
use crate::chunking::Ingested;
use crate::error::{Error, Object, Result};
use crate::id::{ChunkId, ContentId, Sha1};
use crate::segment::Location;

/// Where the chunks of contents being created are, as their upload found or appended them:
/// the manifest's location hints. A chunk missing here is looked up in the `chunks` table.
pub type ChunkLocations = HashMap<ChunkId, Location>;

/// Reference counts by content.
pub type RefCounts = HashMap<ContentId, u64>;

impl Index {
    /// The content record of `id`.
    pub fn content(&self, id: &ContentId) -> Result<Option<ContentRec>> {
        CONTENTS.get(self.trees(), id)
    }

    /// The full ordered chunk list of a content.
    pub fn manifest(&self, id: &ContentId, rec: &ContentRec) -> Result<Vec<ChunkRef>> {
        if rec.pages() == 0 {
            return Ok(rec.inline.clone());
        }
        let mut out = Vec::with_capacity(rec.chunk_count as usize);
        for p in 0..rec.pages() {
            let page = PAGES.get(self.trees(), page_key(id, p))?.ok_or_else(|| {
                Error::corrupt(
                    Object::Content(*id),
                    format!("manifest page {p} is missing"),
                )
            })?;
            out.extend(page);
        }
        if out.len() as u64 != rec.chunk_count {
            return Err(Error::corrupt(
                Object::Content(*id),
                "manifest length differs from its record",
            ));
        }
        Ok(out)
    }

    /// Contents whose SHA-1 is `sha1`.
    pub fn contents_by_sha1(&self, sha1: &Sha1) -> Result<Vec<ContentId>> {
        BY_SHA1
            .keys(self.trees(), sha1)
            .map(|k| {
                ContentId::from_slice(&k?[Sha1::LEN..])
                    .ok_or_else(|| Error::corrupt(Object::Index(BY_SHA1.what), "malformed key"))
            })
            .collect()
    }

    /// Contents, for verify and gc: (id, record).
    pub fn all_contents(&self) -> impl Iterator<Item = Result<(ContentId, ContentRec)>> + '_ {
        CONTENTS.scan(self.trees(), []).map(|item| {
            let (k, rec) = item?;
            let id = ContentId::from_slice(&k)
                .ok_or_else(|| Error::corrupt(Object::Index(CONTENTS.what), "malformed key"))?;
            Ok((id, rec))
        })
    }

    /// Every content's manifest: (id, chunk list), one item per content record; an item is an
    /// error when the record or its manifest cannot be read.
    pub fn manifests(&self) -> impl Iterator<Item = Result<(ContentId, Vec<ChunkRef>)>> + '_ {
        self.all_contents()
            .map(|item| item.and_then(|(id, rec)| Ok((id, self.manifest(&id, &rec)?))))
    }

    /// The live chunks: every chunk some content record's manifest lists (gc's mark phase).
    /// Holds one id per distinct live chunk in memory. Fails on the first manifest it cannot
    /// read: its chunks could not be told from garbage.
    pub fn live_chunks(&self) -> Result<HashSet<ChunkId>> {
        let mut live = HashSet::new();
        for m in self.manifests() {
            live.extend(m?.1.iter().map(|r| r.id));
        }
        Ok(live)
    }
}

/// Takes one reference to the content `ing`, creating its record and manifest when it is new.
/// A new content's chunks must all have records already (its upload inserted them before this
/// transaction, or found them); `at` saves looking each one up.
pub(crate) fn incref_content(
    t: Tx<'_>,
    counters: &mut Counters,
    ing: &Ingested,
    at: &ChunkLocations,
) -> TxResult<()> {
    let id = &ing.content_id;
    if let Some(mut rec) = t.get(CONTENTS, id)? {
        rec.refcount += 1;
        return t.put(CONTENTS, id, &rec);
    }
    let mut refs: Vec<ChunkRef> = Vec::with_capacity(ing.chunks.len());
    for c in &ing.chunks {
        let loc = match at.get(&c.id) {
            Some(l) => *l,
            // The upload took the content from the index (a small duplicate) and it has been
            // deleted since: its chunks' records stay until gc, which no upload overlaps.
            None => match t.get(CHUNKS, c.id)? {
                Some(ch) => ch.location,
                None => {
                    return abort(Error::corrupt(
                        Object::Chunk(c.id),
                        "a new content lists a chunk the index does not hold",
                    ))
                }
            },
        };
        refs.push(ChunkRef {
            id: c.id,
            len: c.len,
            crc32: c.crc32,
            location_hint: loc,
        });
    }
    let rec = ContentRec {
        sha1: ing.sha1,
        size: ing.size,
        refcount: 1,
        chunk_count: refs.len() as u64,
        inline: if refs.len() <= CHUNKS_PER_PAGE {
            refs.clone()
        } else {
            Vec::new()
        },
    };
    if rec.pages() > 0 {
        for (i, page) in refs.chunks(CHUNKS_PER_PAGE).enumerate() {
            t.put(PAGES, page_key(id, i as u32), &page.to_vec())?;
        }
    }
    t.put(CONTENTS, id, &rec)?;
    t.put(BY_SHA1, sha1_key(&ing.sha1, id), &Raw::default())?;
    counters.contents += 1;
    Ok(())
}

/// Takes one more reference to the existing content `id` (`who` names the referrer when the
/// content is missing, which is damage).
pub(crate) fn incref_existing(t: Tx<'_>, id: &ContentId, who: &str) -> TxResult<()> {
    let Some(mut content) = t.get(CONTENTS, id)? else {
        return abort(Error::corrupt(
            Object::Content(*id),
            format!("{who} refers to a missing content"),
        ));
    };
    content.refcount += 1;
    t.put(CONTENTS, id, &content)
}

/// Drops one reference to the content `id`, removing its record and manifest at zero. Its
/// chunks' records stay: gc removes those no other manifest lists.
pub(crate) fn decref_content(t: Tx<'_>, counters: &mut Counters, id: &ContentId) -> TxResult<()> {
    let Some(mut rec) = t.get(CONTENTS, id)? else {
        return abort(Error::corrupt(
            Object::Content(*id),
            "a file refers to a missing content",
        ));
    };
    rec.refcount -= 1;
    if rec.refcount > 0 {
        return t.put(CONTENTS, id, &rec);
    }
    for p in 0..rec.pages() {
        if !t.remove(PAGES, page_key(id, p))? {
            return abort(Error::corrupt(
                Object::Content(*id),
                format!("manifest page {p} is missing"),
            ));
        }
    }
    t.remove(CONTENTS, id)?;
    t.remove(BY_SHA1, sha1_key(&rec.sha1, id))?;
    counters.contents -= 1;
    Ok(())
}

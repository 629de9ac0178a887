//! Deleting packs after a grace period: the half of gc-on-bucket that does not need the engine.
//!
//! Retiring a pack writes a small marker naming it (and the ETag it had); purging replaces every
//! pack whose marker is older than the grace period by its tombstone, then removes the marker.
//! Both are writes of the primary, checked against its lease. Ages are measured on the bucket's
//! clock only: the marker's `Last-Modified` against the lease's, which the primary renews every
//! third of its time to live, so no machine's clock is trusted and "now" errs on the early side,
//! which makes the grace period longer, never shorter.
//!
//! The slot keeps its tombstone forever: deleting it would free a slot number that an old,
//! fenced-out writer could still fill.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::packs::Packs;
use crate::trailer::SlotKind;

const FORMAT: &str = "relstore-retired";
const VERSION: u32 = 1;
/// Staging objects older than this are leftovers of uploads that died (an upload of the largest
/// pack at 10 MB/s takes under ten minutes).
const STAGING_MAX_AGE: Duration = Duration::from_secs(3600);
/// The largest retirement marker read; a real one is about 130 bytes.
const MAX_MARKER_BYTES: u64 = 64 << 10;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Marker {
    format: String,
    version: u32,
    seq: u64,
    /// The epoch of the primary that retired it.
    epoch: u64,
    /// The slot's ETag when it was retired: the tombstone replaces that object only.
    e_tag: String,
}

/// What a purge did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PurgeReport {
    /// Slots whose pack was replaced by its tombstone.
    pub tombstoned: Vec<u64>,
    /// Retired packs still inside their grace period.
    pub waiting: usize,
    /// Staging objects of dead uploads removed.
    pub staging_removed: usize,
}

/// Marks pack `seq` retired at the bucket's current time. Idempotent.
pub(crate) async fn retire(packs: &Packs, seq: u64, epoch: u64) -> Result<()> {
    let trailer = packs.trailer(seq).await?.ok_or_else(|| Error::NotFound {
        location: packs.layout.location().to_owned(),
        seq,
    })?;
    if trailer.kind != SlotKind::Pack {
        return Err(Error::NoData {
            location: packs.layout.location().to_owned(),
            seq,
        });
    }
    let meta = packs.head(seq).await?.ok_or_else(|| Error::NotFound {
        location: packs.layout.location().to_owned(),
        seq,
    })?;
    let marker = Marker {
        format: FORMAT.into(),
        version: VERSION,
        seq,
        epoch,
        e_tag: meta.e_tag.unwrap_or_default(),
    };
    let key = packs.layout.retired(seq);
    let body = serde_json::to_vec(&marker).expect("a marker always serialises");
    match packs
        .store
        .put_opts(
            &key,
            PutPayload::from(Bytes::from(body)),
            PutOptions::from(PutMode::Create),
        )
        .await
    {
        // Already retired: the first retirement's time counts.
        Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
        Err(source) => Err(Error::Store {
            op: "write retirement marker",
            key: packs.layout.display(&key),
            source,
        }),
    }
}

/// The bucket's clock: the lease's `Last-Modified`.
async fn bucket_now(packs: &Packs) -> Result<SystemTime> {
    let key = packs.layout.lease();
    let meta = packs
        .store
        .head(&key)
        .await
        .map_err(|source| Error::Store {
            op: "read lease time",
            key: packs.layout.display(&key),
            source,
        })?;
    Ok(SystemTime::from(meta.last_modified))
}

/// Tombstones every retired pack older than `grace`; removes staging leftovers.
pub(crate) async fn purge(packs: &Packs, grace: Duration, epoch: u64) -> Result<PurgeReport> {
    let now = bucket_now(packs).await?;
    let mut report = PurgeReport::default();
    let dir = packs.layout.retired_dir();
    let markers: Vec<_> = packs
        .store
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(|source| Error::Store {
            op: "list retired packs",
            key: packs.layout.display(&dir),
            source,
        })?;
    for meta in markers {
        let Some(seq) = packs.layout.parse_retired(&meta.location) else {
            continue;
        };
        let retired_at = SystemTime::from(meta.last_modified);
        if retired_at + grace > now {
            report.waiting += 1;
            continue;
        }
        let marker = read_marker(packs, &meta.location, seq).await?;
        packs.tombstone(seq, &marker.e_tag, epoch).await?;
        packs
            .store
            .delete(&meta.location)
            .await
            .map_err(|source| Error::Store {
                op: "remove retirement marker",
                key: packs.layout.display(&meta.location),
                source,
            })?;
        report.tombstoned.push(seq);
    }
    report.tombstoned.sort_unstable();
    let staging = packs.layout.staging_dir();
    let leftovers: Vec<_> = packs
        .store
        .list(Some(&staging))
        .try_collect()
        .await
        .map_err(|source| Error::Store {
            op: "list staging objects",
            key: packs.layout.display(&staging),
            source,
        })?;
    for meta in leftovers {
        if SystemTime::from(meta.last_modified) + STAGING_MAX_AGE.max(grace) <= now
            && packs.store.delete(&meta.location).await.is_ok()
        {
            report.staging_removed += 1;
        }
    }
    Ok(report)
}

async fn read_marker(packs: &Packs, key: &object_store::path::Path, seq: u64) -> Result<Marker> {
    let corrupt = |detail: String| Error::Corrupt {
        key: packs.layout.display(key),
        detail,
    };
    let got = packs.store.get(key).await.map_err(|source| Error::Store {
        op: "read retirement marker",
        key: packs.layout.display(key),
        source,
    })?;
    if got.meta.size > MAX_MARKER_BYTES {
        return Err(corrupt(format!(
            "{} bytes; a marker is at most {MAX_MARKER_BYTES}",
            got.meta.size
        )));
    }
    let bytes = got.bytes().await.map_err(|source| Error::Store {
        op: "read retirement marker",
        key: packs.layout.display(key),
        source,
    })?;
    let marker: Marker = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if marker.format != FORMAT || marker.version != VERSION || marker.seq != seq {
        return Err(corrupt(format!(
            "marker says {} version {} for slot {}",
            marker.format, marker.version, marker.seq
        )));
    }
    Ok(marker)
}

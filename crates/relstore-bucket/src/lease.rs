//! The primary's lease on a prefix, and the fence a new primary writes (docs/format.md, "Packs on
//! object storage", and the fencing argument in the crate docs).
//!
//! The lease is one small JSON object changed only by conditional PUT: created with
//! `If-None-Match: *`, renewed and taken over with `If-Match: <the ETag last seen>`. No clock is
//! compared across machines: a holder counts its validity from the moment it *sent* its last
//! successful renewal and stops writing after 3/4 of the time to live; a contender takes over only
//! after it has itself watched the lease stay unchanged for the whole time to live. A holder whose
//! renewal finds the ETag changed has been fenced out for good.
//!
//! The lease alone cannot stop a write already in flight when it lapses. The slots do: a new
//! primary creates a fence in the first free slot before it writes anything, and every writer
//! ships its packs one at a time in increasing slot order, so an older primary's next write finds
//! its slot taken and stops.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::packs::{Claim, Packs};
use crate::trailer::Trailer;

const FORMAT: &str = "relstore-lease";
const VERSION: u32 = 1;
/// The largest lease object read; a real one is about 150 bytes.
const MAX_LEASE_BYTES: usize = 64 << 10;

/// The lease object's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LeaseRecord {
    /// Always `relstore-lease`.
    pub(crate) format: String,
    /// Always 1.
    pub(crate) version: u32,
    /// Bumped by every takeover; written into every pack and fence of the tenure.
    pub(crate) epoch: u64,
    /// Who holds it.
    pub(crate) holder: String,
    /// The holder's time to live, in milliseconds.
    pub(crate) ttl_ms: u64,
    /// Bumped by every renewal, so that each renewal changes the ETag (S3's ETag of a small
    /// object is the MD5 of its bytes: rewriting the same bytes would not change it).
    pub(crate) renewal: u64,
    /// Set by a holder that shut down cleanly: the next primary need not wait.
    pub(crate) released: bool,
    /// The log's first slot, fixed when the lease was first created: where a fence goes while
    /// the prefix holds no slot yet.
    pub(crate) start_seq: u64,
}

impl LeaseRecord {
    pub(crate) fn parse(bytes: &[u8]) -> std::result::Result<LeaseRecord, String> {
        if bytes.len() > MAX_LEASE_BYTES {
            return Err(format!(
                "{} bytes; a lease is at most {MAX_LEASE_BYTES}",
                bytes.len()
            ));
        }
        let record: LeaseRecord = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if record.format != FORMAT {
            return Err(format!("format {:?}, expected {FORMAT:?}", record.format));
        }
        if record.version != VERSION {
            return Err(format!(
                "lease version {}; this build reads version {VERSION}",
                record.version
            ));
        }
        if record.ttl_ms == 0 {
            return Err("a time to live of 0".into());
        }
        Ok(record)
    }

    fn to_payload(&self) -> PutPayload {
        let json = serde_json::to_vec(self).expect("a lease record always serialises");
        PutPayload::from(Bytes::from(json))
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    pub(crate) fn info(&self) -> LeaseInfo {
        LeaseInfo {
            holder: self.holder.clone(),
            epoch: self.epoch,
            ttl: self.ttl(),
            released: self.released,
        }
    }
}

/// Who holds a prefix, as its lease says (what a replica names when it refuses a write).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The holder's name.
    pub holder: String,
    /// Its epoch.
    pub epoch: u64,
    /// Its time to live.
    pub ttl: Duration,
    /// True when it shut down cleanly and gave the prefix up.
    pub released: bool,
}

/// How to take a prefix's lease.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LeaseOptions {
    /// This writer's name, unique among writers and stable across its restarts (the engine keeps
    /// one per store directory, whose lock ensures a single process). A holder that finds its
    /// own name in the lease resumes its tenure: same epoch, no fence, no waiting.
    pub holder: String,
    /// The lease's time to live: how long after its last renewal a silent holder loses it.
    /// Renewals go out every third of it; the holder stops writing after three quarters of it
    /// without a successful renewal.
    pub ttl: Duration,
    /// How long `acquire` may wait for another holder's lease to lapse. Zero refuses at once
    /// when another holder has the lease (unless it released it); at least `ttl` lets a standby
    /// take over from a dead primary.
    pub wait: Duration,
    /// A slot known to be on the bucket (the last one this node shipped or applied), so that
    /// finding the head of the log lists only what follows it. `None` lists the whole prefix.
    pub known_head: Option<u64>,
    /// The log's first slot when this holder is the first ever to write the prefix (the
    /// engine's lowest segment number); ignored otherwise.
    pub start_seq: u64,
}

impl LeaseOptions {
    /// Options for `holder` with a 30 s time to live, no waiting, listing the whole prefix.
    pub fn new(holder: impl Into<String>) -> LeaseOptions {
        LeaseOptions {
            holder: holder.into(),
            ttl: Duration::from_secs(30),
            wait: Duration::ZERO,
            known_head: None,
            start_seq: 0,
        }
    }
}

/// A primary's tenure over a prefix, as `acquire` established it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tenure {
    /// The epoch every pack and fence of this tenure carries.
    pub epoch: u64,
    /// True when this holder found its own lease and continued its tenure (a restart): same
    /// epoch, no fence; its packs not yet shipped may still go to their slots.
    pub resumed: bool,
    /// The highest occupied slot when the tenure began (before its fence). The engine must have
    /// applied every slot up to it before it writes: those are the history it continues.
    pub bucket_head: Option<u64>,
    /// The slot of this tenure's fence, when it wrote one (every takeover does; a brand-new
    /// prefix and a resumed tenure need none).
    pub fence: Option<u64>,
    /// The slot of this tenure's first pack: after its fence, after the head, or the log's
    /// first slot on an empty prefix. Packs go to consecutive slots from here.
    pub next_seq: u64,
}

/// What the holder knows of its lease.
#[derive(Debug)]
pub(crate) struct LeaseState {
    pub(crate) record: LeaseRecord,
    pub(crate) e_tag: String,
    /// When the last successful renewal (or the acquisition) was sent.
    pub(crate) renewed_at: Instant,
    /// Set once the lease is lost; never cleared.
    pub(crate) fenced: Option<String>,
}

impl LeaseState {
    /// Validity: three quarters of the time to live after the last successful renewal was sent.
    /// The remaining quarter is the margin against a contender that waits the whole time to
    /// live from when it saw the lease last change, which is after that renewal was sent.
    pub(crate) fn valid_until(&self) -> Instant {
        self.renewed_at + self.record.ttl() * 3 / 4
    }

    /// Whether the holder may write now.
    pub(crate) fn check_writable(&self, location: &str) -> Result<()> {
        if let Some(detail) = &self.fenced {
            return Err(Error::Fenced {
                location: location.to_owned(),
                epoch: self.record.epoch,
                detail: detail.clone(),
            });
        }
        let now = Instant::now();
        if now >= self.valid_until() {
            return Err(Error::LeaseLapsed {
                location: location.to_owned(),
                since: now - self.renewed_at,
            });
        }
        Ok(())
    }
}

/// Reads the lease: its record and ETag, or `None` when there is none.
pub(crate) async fn read(packs: &Packs) -> Result<Option<(LeaseRecord, String)>> {
    let key = packs.layout.lease();
    let got = match packs.store.get(&key).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(source) => {
            return Err(Error::Store {
                op: "read lease",
                key: packs.layout.display(&key),
                source,
            });
        }
    };
    let e_tag = got.meta.e_tag.clone().unwrap_or_default();
    // The length is known from the headers: a huge object is refused without reading it.
    if got.meta.size > MAX_LEASE_BYTES as u64 {
        return Err(Error::Corrupt {
            key: packs.layout.display(&key),
            detail: format!(
                "{} bytes; a lease is at most {MAX_LEASE_BYTES}",
                got.meta.size
            ),
        });
    }
    let bytes = got.bytes().await.map_err(|source| Error::Store {
        op: "read lease",
        key: packs.layout.display(&key),
        source,
    })?;
    let record = LeaseRecord::parse(&bytes).map_err(|detail| Error::Corrupt {
        key: packs.layout.display(&key),
        detail,
    })?;
    Ok(Some((record, e_tag)))
}

enum Write {
    Done(String),
    Conflict,
}

/// Writes `record` as the lease: create-if-absent when `e_tag` is `None`, else only over the
/// object with that ETag.
async fn write(packs: &Packs, record: &LeaseRecord, e_tag: Option<&str>) -> Result<Write> {
    let key = packs.layout.lease();
    let mode = match e_tag {
        None => PutMode::Create,
        Some(tag) => PutMode::Update(UpdateVersion {
            e_tag: Some(tag.to_owned()),
            version: None,
        }),
    };
    match packs
        .store
        .put_opts(&key, record.to_payload(), PutOptions::from(mode))
        .await
    {
        Ok(put) => match put.e_tag {
            Some(tag) => Ok(Write::Done(tag)),
            // Every S3 implementation answers a PUT with an ETag; without one there is no
            // conditional renewal, so read it back.
            None => match read(packs).await? {
                Some((there, tag)) if there == *record => Ok(Write::Done(tag)),
                _ => Ok(Write::Conflict),
            },
        },
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => Ok(Write::Conflict),
        Err(source) => Err(Error::Store {
            op: "write lease",
            key: packs.layout.display(&key),
            source,
        }),
    }
}

/// Checks that the server honours the conditional writes fencing rests on: a second
/// create-if-absent PUT of a key fails, a PUT over a wrong ETag fails, and a second
/// create-if-absent copy fails. A server that ignored them (an old S3-compatible one, or a proxy
/// that drops the headers) would let two primaries overwrite each other's packs silently.
async fn check_conditional_writes(packs: &Packs) -> Result<()> {
    let nonce = crate::packs::nonce();
    let (a, b) = (
        packs.layout.probe("a", nonce),
        packs.layout.probe("b", nonce),
    );
    let outcome = probe(packs, &a, &b).await;
    // Best effort: a leftover probe object is a few bytes under PREFIX/probe/.
    let _ = packs.store.delete(&a).await;
    let _ = packs.store.delete(&b).await;
    match outcome? {
        None => Ok(()),
        Some(what) => Err(Error::Config {
            detail: format!(
                "{} does not honour {what}: on such a server two primaries could overwrite each \
                 other's packs, so relstore will not write to it",
                packs.layout.location()
            ),
        }),
    }
}

/// `Some(what was ignored)`, or `None` when every condition held.
async fn probe(
    packs: &Packs,
    a: &object_store::path::Path,
    b: &object_store::path::Path,
) -> Result<Option<&'static str>> {
    let store_err = |op: &'static str, key: &object_store::path::Path| {
        let key = packs.layout.display(key);
        move |source| Error::Store { op, key, source }
    };
    let create = || PutOptions::from(PutMode::Create);
    let body = || PutPayload::from(Bytes::from_static(b"relstore conditional-write check"));
    packs
        .store
        .put_opts(a, body(), create())
        .await
        .map_err(store_err("check conditional writes", a))?;
    match packs.store.put_opts(a, body(), create()).await {
        Err(object_store::Error::AlreadyExists { .. }) => {}
        Ok(_) => {
            return Ok(Some(
                "If-None-Match: * on PUT (a second create-if-absent succeeded)",
            ))
        }
        Err(e) => return Err(store_err("check conditional writes", a)(e)),
    }
    let stale = PutMode::Update(UpdateVersion {
        e_tag: Some("\"relstore-no-such-etag\"".into()),
        version: None,
    });
    match packs.store.put_opts(a, body(), stale.into()).await {
        Err(object_store::Error::Precondition { .. }) => {}
        Ok(_) => {
            return Ok(Some(
                "If-Match on PUT (a write over a wrong ETag succeeded)",
            ))
        }
        Err(e) => return Err(store_err("check conditional writes", a)(e)),
    }
    packs
        .store
        .copy_if_not_exists(a, b)
        .await
        .map_err(store_err("check conditional copies", b))?;
    match packs.store.copy_if_not_exists(a, b).await {
        Err(object_store::Error::AlreadyExists { .. }) => Ok(None),
        Ok(()) => Ok(Some(
            "If-None-Match: * on CompleteMultipartUpload (a second create-if-absent copy succeeded)",
        )),
        Err(e) => Err(store_err("check conditional copies", b)(e)),
    }
}

/// Takes the prefix: checks the server's conditional writes, creates, resumes or takes over the
/// lease, then fences older writers out.
pub(crate) async fn acquire(packs: &Packs, opts: &LeaseOptions) -> Result<(LeaseState, Tenure)> {
    if opts.holder.is_empty() {
        return Err(Error::Config {
            detail: "a lease holder needs a name".into(),
        });
    }
    if opts.ttl < Duration::from_millis(300) {
        return Err(Error::Config {
            detail: format!(
                "a lease time to live of {:?} is too short (at least 300 ms)",
                opts.ttl
            ),
        });
    }
    check_conditional_writes(packs).await?;
    let started = Instant::now();
    // The ETag being watched and since when (this process's clock only).
    let mut watching: Option<(String, Instant)> = None;
    let (record, e_tag, sent, how) = loop {
        let sent = Instant::now();
        match read(packs).await? {
            None => {
                let record = LeaseRecord {
                    format: FORMAT.into(),
                    version: VERSION,
                    epoch: 1,
                    holder: opts.holder.clone(),
                    ttl_ms: opts.ttl.as_millis() as u64,
                    renewal: 0,
                    released: false,
                    start_seq: opts.start_seq,
                };
                if let Write::Done(tag) = write(packs, &record, None).await? {
                    break (record, tag, sent, How::Created);
                }
            }
            Some((there, tag)) => {
                let mine = there.holder == opts.holder;
                let lapsed = match &watching {
                    Some((seen, since)) if *seen == tag => since.elapsed() >= there.ttl(),
                    _ => {
                        watching = Some((tag.clone(), Instant::now()));
                        false
                    }
                };
                if !(mine || there.released || lapsed) {
                    if started.elapsed() >= opts.wait {
                        return Err(Error::LeaseHeld {
                            location: packs.layout.location().to_owned(),
                            ttl: there.ttl(),
                            holder: there.holder,
                            epoch: there.epoch,
                        });
                    }
                    // Polling the bucket, not waiting for a thread: the lease lapses on the
                    // holder's schedule.
                    let poll = (there.ttl() / 4)
                        .min(Duration::from_secs(1))
                        .min(opts.wait.saturating_sub(started.elapsed()))
                        .max(Duration::from_millis(10));
                    tokio::time::sleep(poll).await;
                    continue;
                }
                let record = LeaseRecord {
                    format: FORMAT.into(),
                    version: VERSION,
                    epoch: if mine { there.epoch } else { there.epoch + 1 },
                    holder: opts.holder.clone(),
                    ttl_ms: opts.ttl.as_millis() as u64,
                    renewal: there.renewal + 1,
                    released: false,
                    start_seq: there.start_seq,
                };
                if let Write::Done(new_tag) = write(packs, &record, Some(&tag)).await? {
                    let how = if mine { How::Resumed } else { How::TakenOver };
                    break (record, new_tag, sent, how);
                }
            }
        }
        // Another writer changed the lease between our read and our write: look again.
    };
    let head = find_head(packs, opts.known_head).await?;
    let first_free = |head: Option<u64>| head.map_or(record.start_seq, |h| h + 1);
    let (bucket_head, fence) = match how {
        How::Resumed => (head, None),
        // A brand-new prefix: no earlier writer exists to fence out.
        How::Created if head.is_none() => (None, None),
        How::Created | How::TakenOver => {
            let (head, fence) = place_fence(packs, record.epoch, head, first_free(head)).await?;
            (head, Some(fence))
        }
    };
    let tenure = Tenure {
        epoch: record.epoch,
        resumed: matches!(how, How::Resumed),
        bucket_head,
        fence,
        next_seq: fence.map_or_else(|| first_free(bucket_head), |f| f + 1),
    };
    let state = LeaseState {
        record,
        e_tag,
        renewed_at: sent,
        fenced: None,
    };
    Ok((state, tenure))
}

/// How `acquire` came to hold the lease.
#[derive(Clone, Copy)]
enum How {
    /// There was no lease.
    Created,
    /// The lease named this holder.
    Resumed,
    /// Another holder's lease was released or lapsed.
    TakenOver,
}

/// The highest occupied slot after `known_head` (or `known_head` itself when nothing follows).
/// `known_head` must be an occupied slot: a guess too high could leave free slots below the
/// fence for an older writer to fill.
async fn find_head(packs: &Packs, known_head: Option<u64>) -> Result<Option<u64>> {
    if let Some(k) = known_head {
        if packs.head(k).await?.is_none() {
            return Err(Error::Config {
                detail: format!(
                    "known head {k} is not a slot of {}; pass a slot this node shipped or applied",
                    packs.layout.location()
                ),
            });
        }
    }
    let mut head = known_head;
    loop {
        let page = packs.list_after(head, 1000).await?;
        match page.last() {
            Some(last) => head = Some(last.seq),
            None => return Ok(head),
        }
    }
}

/// Creates this epoch's fence in the first free slot, `seq`, moving up past any slot filled
/// meanwhile (an older primary's last packs: writers fill consecutive slots, so the next free
/// one is the next one). Returns the head below the fence and the fence's slot.
async fn place_fence(
    packs: &Packs,
    epoch: u64,
    mut head: Option<u64>,
    mut seq: u64,
) -> Result<(Option<u64>, u64)> {
    loop {
        match packs.put_marker(&Trailer::fence(seq, epoch)).await? {
            Claim::Created | Claim::Same => return Ok((head, seq)),
            Claim::Taken(_) => {
                head = Some(seq);
                seq += 1;
            }
        }
    }
}

/// Renews the lease once. `Ok` extends its validity; `Err(Fenced)` means it is lost for good
/// (and is recorded in `state`); other errors leave the validity to run out.
pub(crate) async fn renew(packs: &Packs, state: &Mutex<LeaseState>) -> Result<()> {
    let location = packs.layout.location();
    let (mut record, e_tag) = {
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(detail) = &s.fenced {
            return Err(Error::Fenced {
                location: location.to_owned(),
                epoch: s.record.epoch,
                detail: detail.clone(),
            });
        }
        (s.record.clone(), s.e_tag.clone())
    };
    record.renewal += 1;
    let sent = Instant::now();
    let outcome = match write(packs, &record, Some(&e_tag)).await? {
        Write::Done(tag) => Ok((record, tag)),
        // Our own renewal may have landed with its answer lost, and the client's retry then
        // found the ETag changed: the lease is still ours if it still names us at our epoch, and
        // that renewal was sent no earlier than `sent` (renewals are never concurrent).
        Write::Conflict => match read(packs).await? {
            Some((there, tag))
                if there.holder == record.holder
                    && there.epoch == record.epoch
                    && !there.released =>
            {
                Ok((there, tag))
            }
            Some((there, _)) => Err(format!(
                "primary {:?} holds the lease now (epoch {})",
                there.holder, there.epoch
            )),
            None => Err("the lease object was deleted".to_owned()),
        },
    };
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    match outcome {
        Ok((record, tag)) => {
            s.record = record;
            s.e_tag = tag;
            s.renewed_at = sent;
            Ok(())
        }
        Err(detail) => {
            s.fenced = Some(detail.clone());
            Err(Error::Fenced {
                location: location.to_owned(),
                epoch: s.record.epoch,
                detail,
            })
        }
    }
}

/// Gives the lease up so the next primary need not wait. Only a holder that shipped everything
/// should: a holder that releases with packs unshipped lets a successor fence them out.
pub(crate) async fn release(packs: &Packs, state: &Mutex<LeaseState>) -> Result<()> {
    let (mut record, e_tag) = {
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        if s.fenced.is_some() {
            return Ok(());
        }
        (s.record.clone(), s.e_tag.clone())
    };
    record.renewal += 1;
    record.released = true;
    match write(packs, &record, Some(&e_tag)).await? {
        Write::Done(tag) => {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            s.record = record;
            s.e_tag = tag;
            s.fenced = Some("it released the lease".into());
        }
        // Someone else holds it already: nothing of ours to give up.
        Write::Conflict => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> LeaseRecord {
        LeaseRecord {
            format: FORMAT.into(),
            version: VERSION,
            epoch: 3,
            holder: "node-a".into(),
            ttl_ms: 30_000,
            renewal: 7,
            released: false,
            start_seq: 1,
        }
    }

    #[test]
    fn a_record_round_trips_and_bad_ones_are_refused() {
        let r = record();
        let json = serde_json::to_vec(&r).unwrap();
        assert_eq!(LeaseRecord::parse(&json), Ok(r.clone()));
        let with = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v = serde_json::to_value(&r).unwrap();
            edit(&mut v);
            LeaseRecord::parse(&serde_json::to_vec(&v).unwrap())
        };
        assert!(with(&|v| v["format"] = "other".into())
            .unwrap_err()
            .contains("format"));
        assert!(with(&|v| v["version"] = 2.into())
            .unwrap_err()
            .contains("version 2"));
        assert!(with(&|v| v["ttl_ms"] = 0.into())
            .unwrap_err()
            .contains("time to live"));
        assert!(
            with(&|v| v["extra"] = 1.into()).is_err(),
            "unknown fields are refused"
        );
        assert!(LeaseRecord::parse(b"{").is_err());
        assert!(LeaseRecord::parse(&vec![b' '; MAX_LEASE_BYTES + 1]).is_err());
    }

    proptest::proptest! {
        // Lease objects come from the bucket: arbitrary bytes must parse or fail, never panic.
        #[test]
        fn any_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = LeaseRecord::parse(&bytes);
        }
    }

    #[test]
    fn a_holder_stops_writing_a_quarter_ttl_before_a_contender_may_take_over() {
        let renewed_at = Instant::now() - Duration::from_secs(23);
        let state = LeaseState {
            record: record(),
            e_tag: "x".into(),
            renewed_at,
            fenced: None,
        };
        assert_eq!(
            state.valid_until(),
            renewed_at + Duration::from_millis(22_500)
        );
        let err = state.check_writable("s3://b/p").unwrap_err();
        assert!(matches!(err, Error::LeaseLapsed { .. }), "{err}");
        let fresh = LeaseState {
            renewed_at: Instant::now(),
            ..state
        };
        assert!(fresh.check_writable("s3://b/p").is_ok());
        let fenced = LeaseState {
            fenced: Some("primary \"b\" holds the lease now (epoch 4)".into()),
            ..fresh
        };
        let err = fenced.check_writable("s3://b/p").unwrap_err().to_string();
        assert!(err.contains("epoch 3") && err.contains("epoch 4"), "{err}");
    }
}

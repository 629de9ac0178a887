//! relstore's sealed segments on S3-compatible object storage.
//!
//! Once the segment log is the store's truth (chunks and commit records; sled a derived index), a
//! bucket holding the sealed segments holds the whole store. This crate is the part of that which
//! does not depend on the engine: it treats a sealed segment as an opaque, immutable **pack** and
//! keeps packs in numbered **slots** under `s3://BUCKET/PREFIX`, with one writer at a time.
//!
//! - [`Bucket`]: every node's handle (primary or replica): list slots in order
//!   ([`Bucket::list_after`]), ranged reads with a verification hook ([`Bucket::read_ranges`]),
//!   verified whole-pack downloads ([`Bucket::fetch`]), who the primary is ([`Bucket::lease`]).
//! - [`Primary`]: the writer's tenure, from [`Bucket::acquire`]: a lease renewed in the
//!   background, a shipper that uploads offered packs in slot order with retries while the bucket
//!   is down ([`Primary::ship`], [`Primary::is_safe`], [`Primary::status`] for lag), and deletion
//!   of retired packs after a grace period ([`Primary::retire`], [`Primary::purge`]).
//!
//! Everything is blocking from the caller's side: the crate owns a small tokio runtime
//! (`Limits::runtime_threads` workers, as many blocking threads), and works from any thread,
//! including one of another tokio runtime.
//!
//! # Layout
//!
//! Byte by byte in `docs/format.md` ("Packs on object storage"):
//!
//! ```text
//! PREFIX/lease                          JSON {epoch, holder, ttl_ms, renewal, released}
//! PREFIX/packs/{seq:020}.pack           slot seq: payload ‖ 72-byte trailer (RSPK, kind, seq,
//!                                       epoch, payload length, BLAKE3 of the payload, CRC32)
//! PREFIX/retired/{seq:020}              a retired pack waiting out its grace period
//! PREFIX/staging/{seq:020}-{epoch}-{n}  a large pack on its way to its slot
//! PREFIX/probe/...                      scratch objects of the conditional-write check
//! ```
//!
//! Before taking the lease, a primary checks that the server honours conditional writes (a
//! second create-if-absent PUT and copy fail, a PUT over a wrong ETag fails) and refuses one that
//! does not: on it, nothing below would hold.
//!
//! A slot is written once, with `If-None-Match: *` (a small pack: one PUT; a large one: a
//! multipart upload to `staging/`, then a server-side copy into the slot completed with
//! `If-None-Match: *`, because a multipart completion through `object_store` cannot be made
//! conditional). A fence and a tombstone are a trailer alone. A slot is never deleted: purging a
//! pack replaces it by its tombstone.
//!
//! # Why two primaries can never interleave packs
//!
//! 1. A slot is created at most once and never deleted (create-if-absent; purging writes a
//!    tombstone over the pack, never a delete).
//! 2. A tenure writes consecutive slots from its first ([`Tenure::next_seq`]: the slot after its
//!    fence, or after the head), one at a time, and stops for good at the first slot it finds
//!    taken by another object. So the occupied slots are always one run without holes.
//! 3. A new primary takes the lease by a conditional PUT over the ETag it watched stay unchanged
//!    for the whole time to live, then lists to the head and creates a **fence** in the next slot
//!    before it writes anything, moving up while that slot is filled under it.
//!
//! An older tenure's next write goes either to the slot after its last success or, if it has
//! written nothing, to its own first slot; both are at most one past the head at the moment the
//! fence is created, and every slot up to the head is occupied. So that write finds an occupied
//! slot (the fence or something below it) and the older primary stops. Its packs that landed
//! before the fence lie below it: history the new primary catches up on. The log is therefore a
//! sequence of tenures, each a contiguous run of slots, whatever the clocks and pauses. The lease
//! only makes the loser find out early: it stops writing 3/4 of the time to live after it sent
//! its last successful renewal, a quarter before a contender may take over. (On an empty prefix
//! the fence goes to the log's first slot, fixed in the lease when it was created.)
//!
//! Deleting the lease object or a slot by hand breaks this argument: don't.
//!
//! # The seam for the engine (issue 15 onwards)
//!
//! The engine will hold one `Bucket` and, on a primary, one `Primary`:
//!
//! - **Open** — `Bucket::open(&BucketConfig::new("s3://b/p"))`; on a primary,
//!   `bucket.acquire(&opts)` with `LeaseOptions::new(holder)`, `known_head` (the last slot it
//!   shipped or applied) and `start_seq` (its first segment number, used on an empty prefix).
//!   The holder name is the store's own (kept in the store directory, whose `LOCK` guarantees one
//!   process), so a restart resumes its tenure ([`Tenure::resumed`]) and ships what it had not.
//!   Before accepting writes, the engine applies every slot up to [`Tenure::bucket_head`] that it
//!   does not have, and numbers its next segment [`Tenure::next_seq`].
//! - **Seal** — after sealing segment `seq` (its file synced; segments numbered consecutively):
//!   `primary.ship(seq, &path)`.
//!   Returns at once; acknowledgement stays local-durable. `--ack-after-upload` waits with
//!   `primary.wait_shipped(seq, timeout)`.
//! - **Evict** — the local cache may drop a sealed segment when `primary.is_safe(seq)`.
//! - **Read an evicted chunk run** — `bucket.read_ranges(seq, &[offset..offset + len], |r, b|
//!   check the chunk records' CRCs and BLAKE3)`: one ranged GET per contiguous run.
//! - **Restore / replica catch-up** — `bucket.list_after(last_applied, 1000)`, then
//!   `bucket.fetch(seq, &segments_dir.join(name))` for each slot that holds data (fences and
//!   tombstones hold none), replaying its commit records; a replica names the primary in its
//!   write errors with `bucket.lease()`.
//! - **gc on the bucket** — after the pack holding the commit record that relocated a pack's
//!   live chunks is safe: `primary.retire(old_seq)`; periodically `primary.purge(grace)`.
//! - **Lag** — `primary.status()` (queued packs, bytes, age of the oldest; failures) on the
//!   primary; `list_after(last_applied)` on a replica.
//!
//! # What this crate does not do
//!
//! It knows nothing of chunks, commit records or the index: which packs to retire, how to repack,
//! how a replica applies a pack, and the `--blobs`/`--replica`/`restore` commands belong to the
//! engine and the binary. Packs are at most 5 GiB (one server-side copy).
//!
//! # Bucket settings
//!
//! A lifecycle rule must abort incomplete multipart uploads (a crash between the first part and
//! the completion leaves parts that are billed but invisible), and may expire `staging/` objects
//! (purge removes those older than an hour on its own):
//!
//! ```json
//! {"Rules": [
//!   {"ID": "relstore-abort-multipart", "Status": "Enabled", "Filter": {"Prefix": "PREFIX/"},
//!    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
//!   {"ID": "relstore-staging", "Status": "Enabled", "Filter": {"Prefix": "PREFIX/staging/"},
//!    "Expiration": {"Days": 1}}
//! ]}
//! ```
//!
//! (`aws s3api put-bucket-lifecycle-configuration --bucket BUCKET --lifecycle-configuration
//! file://rules.json`). Do not enable versioning on the prefix, or tombstoned packs stay billed as
//! noncurrent versions (or add a `NoncurrentVersionExpiration` rule).

#![deny(unsafe_code)]

mod bucket;
mod config;
mod error;
mod layout;
mod lease;
mod packs;
mod primary;
mod retire;
mod runtime;
mod shipper;
mod trailer;

#[cfg(feature = "test-support")]
pub mod testing;

pub use bucket::Bucket;
pub use bytes::Bytes;
pub use config::{BucketConfig, Limits};
pub use error::{Error, Result};
pub use lease::{LeaseInfo, LeaseOptions, Tenure};
pub use packs::{Slot, MAX_OBJECT_LEN};
pub use primary::{CloseReport, Offer, Primary};
pub use retire::PurgeReport;
pub use shipper::ShipStatus;
pub use trailer::{SlotKind, Trailer, TrailerError, TRAILER_LEN};

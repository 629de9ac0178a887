//! The shipper: a bounded queue of sealed packs and the one task that uploads them, in slot order
//! and one at a time, retrying with backoff while the bucket is unreachable.
//!
//! Offering a pack never waits for the bucket: the engine's acknowledgement stays local, and the
//! queue holds paths, not bytes. What the shipper reports is `shipped_through`, the highest slot
//! below which every offered pack is on the bucket; a sealed segment at or below it may be evicted
//! locally. One upload at a time is not a throughput choice (a large pack's parts still go in
//! parallel): it is what lets a fenced-out writer stop at its first taken slot instead of landing
//! a later pack behind a newer primary's fence.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::error::{Error, Result};
use crate::lease::{self, LeaseState};
use crate::packs::{Claim, Packs};

/// First pause after a failed attempt; it doubles up to `Limits::max_retry_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// A pack waiting to be shipped.
#[derive(Clone, Debug)]
pub(crate) struct Queued {
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
    pub(crate) offered: Instant,
}

/// What the shipper has done and has left to do.
#[derive(Debug, Default)]
pub(crate) struct ShipState {
    pub(crate) queue: VecDeque<Queued>,
    /// The last slot offered (queued or found already safe).
    pub(crate) last_offered: Option<u64>,
    /// Every offered pack at or below this slot is on the bucket.
    pub(crate) shipped_through: Option<u64>,
    pub(crate) shipped_packs: u64,
    pub(crate) shipped_bytes: u64,
    pub(crate) failed_attempts: u64,
    pub(crate) last_error: Option<String>,
    /// Set when the shipper stopped for good (fenced out).
    pub(crate) stopped: Option<String>,
}

/// A snapshot of the shipper, for `relstore stats`, metrics and the eviction policy.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShipStatus {
    /// The tenure's epoch.
    pub epoch: u64,
    /// Every offered pack at or below this slot is on the bucket.
    pub shipped_through: Option<u64>,
    /// Packs waiting (lag in packs).
    pub queued_packs: usize,
    /// Their bytes (lag in bytes: what a crash of this machine's disk would lose).
    pub queued_bytes: u64,
    /// How long the oldest waiting pack has waited (lag in time).
    pub oldest_queued: Option<Duration>,
    /// Packs shipped by this process.
    pub shipped_packs: u64,
    /// Their bytes.
    pub shipped_bytes: u64,
    /// Attempts that failed and were retried.
    pub failed_attempts: u64,
    /// The last failure, while the shipper is retrying (cleared by a success).
    pub last_error: Option<String>,
    /// Why the shipper stopped for good, when it did (this primary was fenced out).
    pub stopped: Option<String>,
    /// True while the lease has gone unrenewed for longer than is safe to write (the bucket is
    /// unreachable or slow): packs wait, offers are still accepted.
    pub lease_lapsed: bool,
}

/// State shared by the primary's handle and its two tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) packs: Arc<Packs>,
    pub(crate) lease: Mutex<LeaseState>,
    /// Held across a renewal or a release, so that two never race with the same ETag (the
    /// loser could not tell when the winner had been sent).
    pub(crate) renewing: tokio::sync::Mutex<()>,
    pub(crate) ship: Mutex<ShipState>,
    /// Signalled whenever `shipped_through` moves or the shipper stops.
    pub(crate) progress: Condvar,
    /// Signalled when a pack is queued.
    pub(crate) work: Notify,
    pub(crate) epoch: u64,
}

impl Shared {
    pub(crate) fn location(&self) -> &str {
        self.packs.layout.location()
    }

    pub(crate) fn ship_state(&self) -> std::sync::MutexGuard<'_, ShipState> {
        self.ship.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lease_check(&self) -> Result<()> {
        self.lease
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check_writable(self.location())
    }

    pub(crate) fn status(&self) -> ShipStatus {
        let lease_lapsed = matches!(self.lease_check(), Err(Error::LeaseLapsed { .. }));
        let s = self.ship_state();
        ShipStatus {
            epoch: self.epoch,
            shipped_through: s.shipped_through,
            queued_packs: s.queue.len(),
            queued_bytes: s.queue.iter().map(|q| q.len).sum(),
            oldest_queued: s.queue.front().map(|q| q.offered.elapsed()),
            shipped_packs: s.shipped_packs,
            shipped_bytes: s.shipped_bytes,
            failed_attempts: s.failed_attempts,
            last_error: s.last_error.clone(),
            stopped: s.stopped.clone(),
            lease_lapsed,
        }
    }

    fn stop(&self, why: String) {
        let mut s = self.ship_state();
        if s.stopped.is_none() {
            s.stopped = Some(why);
        }
        drop(s);
        self.progress.notify_all();
    }

    /// The error a stopped shipper gives.
    pub(crate) fn stopped_error(&self, why: &str) -> Error {
        Error::Fenced {
            location: self.location().to_owned(),
            epoch: self.epoch,
            detail: why.to_owned(),
        }
    }
}

/// Sleeps `d`, or less when shutdown is signalled; true when it was.
async fn pause(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let slept = tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.wait_for(|stop| *stop) => false,
    };
    !slept || *shutdown.borrow()
}

/// A pause of about `d`, spread by ±25 % so that many primaries that lost the bucket together
/// do not come back in step.
fn jittered(d: Duration) -> Duration {
    let spread = (crate::packs::nonce() % 501) as f64 / 1000.0 + 0.75;
    d.mul_f64(spread)
}

/// The shipping task: uploads the queue's head until shutdown or fencing.
pub(crate) async fn ship_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let job = {
            let s = shared.ship_state();
            if s.stopped.is_some() {
                return;
            }
            s.queue.front().cloned()
        };
        let Some(job) = job else {
            tokio::select! {
                _ = shared.work.notified() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            continue;
        };
        // The lease is checked before every attempt, retries included: a writer that cannot
        // show a valid lease does not write.
        let attempt = match shared.lease_check() {
            Ok(()) => {
                shared
                    .packs
                    .put_pack(job.seq, shared.epoch, &job.path)
                    .await
            }
            Err(e) => Err(e),
        };
        match attempt {
            Ok(Claim::Created | Claim::Same) => {
                backoff = FIRST_BACKOFF;
                {
                    let mut s = shared.ship_state();
                    s.queue.pop_front();
                    s.shipped_through = Some(job.seq);
                    s.shipped_packs += 1;
                    s.shipped_bytes += job.len;
                    s.last_error = None;
                }
                shared.progress.notify_all();
            }
            Ok(Claim::Taken(there)) => {
                let why = format!(
                    "slot {} already holds a {} of epoch {}: a newer primary fenced this one out",
                    job.seq, there.kind, there.epoch
                );
                shared
                    .lease
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .fenced = Some(why.clone());
                shared.stop(why);
                return;
            }
            Err(Error::Fenced { detail, .. }) => {
                shared.stop(detail);
                return;
            }
            Err(e) => {
                {
                    let mut s = shared.ship_state();
                    s.failed_attempts += 1;
                    s.last_error = Some(e.to_string());
                }
                if pause(&mut shutdown, jittered(backoff)).await {
                    return;
                }
                backoff = (backoff * 2).min(shared.packs.limits.max_retry_backoff);
            }
        }
    }
}

/// The renewing task: renews every third of the time to live, sooner after a failure, until
/// shutdown or fencing.
pub(crate) async fn renew_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let ttl = shared
        .lease
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .record
        .ttl_ms;
    let ttl = Duration::from_millis(ttl);
    let mut every = ttl / 3;
    loop {
        if pause(&mut shutdown, every).await {
            return;
        }
        let renewed = {
            let _one_at_a_time = shared.renewing.lock().await;
            lease::renew(&shared.packs, &shared.lease).await
        };
        match renewed {
            Ok(()) => every = ttl / 3,
            Err(Error::Fenced { detail, .. }) => {
                shared.stop(detail);
                // Wake the shipper so it sees the stop instead of waiting for work.
                shared.work.notify_one();
                return;
            }
            Err(_) => every = (ttl / 10).max(Duration::from_millis(50)),
        }
    }
}

//! `Primary`: the blocking handle of a writer's tenure over a prefix. It owns the lease (renewed in
//! the background), the shipper, and the writes that need the lease (retiring and purging packs).
//! Dropping it stops both tasks without giving the lease up, so a restart of the same holder
//! resumes the tenure; `close` gives it up once everything is shipped.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::bucket::Bucket;
use crate::error::{Error, Result};
use crate::lease::{self, Tenure};
use crate::retire::{self, PurgeReport};
use crate::shipper::{self, Queued, Shared, ShipStatus};

/// What `ship` did with a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Offer {
    /// Queued; `is_safe` turns true once it is on the bucket.
    Queued,
    /// The slot was already shipped (at or below `shipped_through`): nothing to do.
    AlreadySafe,
}

/// What `close` did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseReport {
    /// Packs still queued when the drain time ran out (0 when everything was shipped).
    pub unshipped: usize,
    /// True when the lease was given up (only after everything was shipped).
    pub released: bool,
}

/// A writer's tenure: the lease, the shipper and the writes that need the lease.
#[derive(Debug)]
pub struct Primary {
    bucket: Bucket,
    shared: Arc<Shared>,
    tenure: Tenure,
    shutdown: watch::Sender<bool>,
}

impl Primary {
    pub(crate) fn start(bucket: Bucket, shared: Arc<Shared>, tenure: Tenure) -> Primary {
        let (shutdown, rx) = watch::channel(false);
        bucket
            .runtime()
            .spawn(shipper::ship_loop(shared.clone(), rx.clone()));
        bucket
            .runtime()
            .spawn(shipper::renew_loop(shared.clone(), rx));
        Primary {
            bucket,
            shared,
            tenure,
            shutdown,
        }
    }

    /// How the tenure began: its epoch, the head it continues, its fence.
    pub fn tenure(&self) -> &Tenure {
        &self.tenure
    }

    /// The bucket (for reads).
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// Offers the sealed segment at `path` as pack `seq`. Returns at once: the pack is uploaded
    /// in the background, in slot order. The file must not change or disappear until
    /// [`Primary::is_safe`] says the pack is on the bucket.
    ///
    /// Packs go to consecutive slots: the first to [`Tenure::next_seq`], each next one to the
    /// slot after the last offered. A slot already on the bucket is `AlreadySafe`.
    ///
    /// Errors: [`Error::Fenced`] once this primary has lost the prefix; [`Error::OutOfOrder`]
    /// when `seq` is not the next slot; [`Error::QueueFull`] when the queue holds
    /// its limit (keep the pack and offer it again); [`Error::InvalidPack`] for an empty or
    /// oversized file.
    pub fn ship(&self, seq: u64, path: &Path) -> Result<Offer> {
        let len = std::fs::metadata(path)
            .map_err(|source| Error::Io {
                op: "stat pack",
                path: path.to_path_buf(),
                source,
            })?
            .len();
        let mut s = self.shared.ship_state();
        if let Some(why) = &s.stopped {
            return Err(self.shared.stopped_error(why));
        }
        let expected = s.last_offered.map_or(self.tenure.next_seq, |last| last + 1);
        // Queued packs all lie above `shipped_through`: packs ship in slot order.
        if seq < expected && s.shipped_through.is_some_and(|t| seq <= t) {
            return Ok(Offer::AlreadySafe);
        }
        if seq != expected {
            return Err(Error::OutOfOrder { seq, expected });
        }
        if len == 0 {
            return Err(Error::InvalidPack {
                path: path.to_path_buf(),
                seq,
                reason: "the file is empty".into(),
            });
        }
        let limit = self.bucket.limits().max_queued_packs;
        if s.queue.len() >= limit {
            return Err(Error::QueueFull {
                seq,
                queued: s.queue.len(),
            });
        }
        s.queue.push_back(Queued {
            seq,
            path: path.to_path_buf(),
            len,
            offered: Instant::now(),
        });
        s.last_offered = Some(seq);
        drop(s);
        self.shared.work.notify_one();
        Ok(Offer::Queued)
    }

    /// True when slot `seq` is on the bucket: shipped by this primary, or part of the history
    /// it continued. A local copy of such a pack may be evicted.
    pub fn is_safe(&self, seq: u64) -> bool {
        self.shared
            .ship_state()
            .shipped_through
            .is_some_and(|t| seq <= t)
    }

    /// Every offered pack at or below this slot is on the bucket.
    pub fn shipped_through(&self) -> Option<u64> {
        self.shared.ship_state().shipped_through
    }

    /// The shipper's progress and lag.
    pub fn status(&self) -> ShipStatus {
        self.shared.status()
    }

    /// Blocks until pack `seq` is on the bucket (what `--ack-after-upload` waits for), this
    /// primary is fenced out, or `timeout` passes.
    pub fn wait_shipped(&self, seq: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut s = self.shared.ship_state();
        loop {
            if s.shipped_through.is_some_and(|t| seq <= t) {
                return Ok(());
            }
            if let Some(why) = &s.stopped {
                return Err(self.shared.stopped_error(why));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    seq,
                    waited: timeout,
                    detail: s
                        .last_error
                        .clone()
                        .unwrap_or_else(|| format!("{} packs queued", s.queue.len())),
                });
            }
            s = self
                .shared
                .progress
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Marks pack `seq` for deletion after a grace period (see [`Primary::purge`]). The engine
    /// retires a pack only once the pack holding the commit record that moved its live data
    /// elsewhere is safe, so no reader's history still needs it after the grace period.
    pub fn retire(&self, seq: u64) -> Result<()> {
        self.check_writable()?;
        let shared = self.shared.clone();
        self.bucket
            .runtime()
            .run(async move { retire::retire(&shared.packs, seq, shared.epoch).await })
    }

    /// Replaces every pack retired at least `grace` ago (on the bucket's clock) by its tombstone,
    /// and removes staging objects of uploads that died. The grace period must cover the
    /// slowest replica's lag and the longest read in flight. Renews the lease first: a primary
    /// that cannot renew does not delete.
    pub fn purge(&self, grace: Duration) -> Result<PurgeReport> {
        let shared = self.shared.clone();
        self.bucket.runtime().run(async move {
            {
                let _one_at_a_time = shared.renewing.lock().await;
                lease::renew(&shared.packs, &shared.lease).await?;
            }
            retire::purge(&shared.packs, grace, shared.epoch).await
        })
    }

    fn check_writable(&self) -> Result<()> {
        self.shared
            .lease
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check_writable(self.bucket.location())
    }

    /// Ends the tenure: waits up to `drain` for the queue to empty, stops the background tasks,
    /// and gives the lease up if everything was shipped (so the next primary need not wait).
    /// With packs left unshipped the lease is kept to lapse: the same holder, restarted,
    /// resumes the tenure and ships them.
    pub fn close(self, drain: Duration) -> Result<CloseReport> {
        let last = self.shared.ship_state().last_offered;
        let drained = match last {
            Some(seq) => self.wait_shipped(seq, drain).is_ok(),
            None => true,
        };
        let _ = self.shutdown.send(true);
        let unshipped = self.shared.ship_state().queue.len();
        let released = drained && unshipped == 0 && self.shared.ship_state().stopped.is_none();
        if released {
            let shared = self.shared.clone();
            self.bucket.runtime().run(async move {
                let _one_at_a_time = shared.renewing.lock().await;
                lease::release(&shared.packs, &shared.lease).await
            })?;
        }
        Ok(CloseReport {
            unshipped,
            released,
        })
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

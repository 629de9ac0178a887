//! Group commit: many threads that each need "everything written so far is durable" share one
//! sync call instead of each paying for their own.
//!
//! A writer takes a ticket *after* its write has reached the OS. The first waiter whose ticket is
//! not yet covered becomes the leader: it notes the newest ticket issued, runs the sync, and marks
//! every ticket up to that one as done. Writers that arrive during a sync wait for the next one,
//! which covers all of them at once. A failed sync poisons the commit point for good: the data of
//! the failed sync may or may not be on disk, so nobody may be told it is (fsyncgate).

use std::sync::{Condvar, Mutex, MutexGuard};

use crate::lock::lock;

/// A shared sync point (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct State {
    issued: u64,
    done: u64,
    running: bool,
    failed: Option<String>,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// A ticket for the writes this thread completed before calling.
    pub(crate) fn ticket(&self) -> u64 {
        let mut s = self.lock();
        s.issued += 1;
        s.issued
    }

    /// The failure that poisoned this commit point, if any.
    pub(crate) fn failure(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    /// Marks the commit point as failed (used when a sync outside `wait` fails).
    pub(crate) fn poison(&self, why: String) {
        let mut s = self.lock();
        s.failed.get_or_insert(why);
        self.cv.notify_all();
    }

    /// Returns once the writes behind `ticket` are durable, running `sync` if this thread leads.
    pub(crate) fn wait(
        &self,
        ticket: u64,
        sync: impl Fn() -> std::io::Result<()>,
    ) -> Result<(), String> {
        let mut s = self.lock();
        loop {
            if let Some(f) = &s.failed {
                return Err(f.clone());
            }
            if s.done >= ticket {
                return Ok(());
            }
            if s.running {
                s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            s.running = true;
            let target = s.issued;
            drop(s);
            let result = sync();
            s = self.lock();
            s.running = false;
            match result {
                Ok(()) => s.done = s.done.max(target),
                Err(e) => {
                    s.failed.get_or_insert(e.to_string());
                }
            }
            // Wake everyone: covered waiters return, a later ticket's waiter leads next.
            self.cv.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn concurrent_waiters_share_syncs_and_all_are_covered() {
        let gc = Arc::new(GroupCommit::default());
        let syncs = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (gc, syncs) = (gc.clone(), syncs.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let t = gc.ticket();
                        gc.wait(t, || {
                            syncs.fetch_add(1, Ordering::SeqCst);
                            Ok(())
                        })
                        .unwrap();
                        assert!(gc.lock().done >= t);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = syncs.load(Ordering::SeqCst);
        assert!((1..=1600).contains(&n), "{n}");
        assert_eq!(gc.lock().done, 1600);
    }

    /// Seven writers that take their tickets while a sync runs are all covered by the one sync
    /// that follows it: eight waiters, two syncs. A sync that served only its leader would make
    /// eight.
    #[test]
    fn writers_arriving_during_a_sync_share_the_next_one() {
        use std::sync::{mpsc, Barrier};
        const LATE: usize = 7;
        let gc = Arc::new(GroupCommit::default());
        let syncs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Barrier::new(LATE + 1));
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let started_rx = Arc::new(Mutex::new(started_rx));
        let late: Vec<_> = (0..LATE)
            .map(|_| {
                let (gc, syncs, gate, started) =
                    (gc.clone(), syncs.clone(), gate.clone(), started_rx.clone());
                std::thread::spawn(move || {
                    // Take the ticket only once the first sync is under way...
                    lock(&started).recv().unwrap();
                    let t = gc.ticket();
                    // ...and let it finish only once every late writer holds a ticket.
                    gate.wait();
                    gc.wait(t, || {
                        syncs.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .unwrap();
                    t
                })
            })
            .collect();
        let first = gc.ticket();
        gc.wait(first, || {
            syncs.fetch_add(1, Ordering::SeqCst);
            for _ in 0..LATE {
                started_tx.send(()).unwrap();
            }
            gate.wait();
            Ok(())
        })
        .unwrap();
        let tickets: Vec<u64> = late.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(first, 1);
        assert!(tickets.iter().all(|&t| t > first), "{tickets:?}");
        assert_eq!(gc.lock().done, 1 + LATE as u64);
        assert_eq!(
            syncs.load(Ordering::SeqCst),
            2,
            "the late writers shared one sync"
        );
    }

    #[test]
    fn a_failed_sync_poisons_every_later_wait() {
        let gc = GroupCommit::default();
        let t = gc.ticket();
        assert!(gc.wait(t, || Err(std::io::Error::other("EIO"))).is_err());
        let t2 = gc.ticket();
        assert!(gc.wait(t2, || Ok(())).unwrap_err().contains("EIO"));
    }
}

//! One primary per prefix: a second one is refused by name; a takeover fences the old one out,
//! and a pack the old one had in flight lands below the new fence or not at all.

use std::time::Duration;

use relstore_bucket::testing::{put_slot, Action, Gate, Op, RawClaim, Rule};
use relstore_bucket::{Bucket, Error, SlotKind};

use crate::{config, faulty, fetch_bytes, lease, pack_file, PATIENCE};

/// (slot, kind, epoch) of every slot, in order.
fn history(bucket: &Bucket) -> Vec<(u64, SlotKind, u64)> {
    bucket
        .list_after(None, 1000)
        .unwrap()
        .iter()
        .map(|s| {
            let t = bucket.slot_info(s.seq).unwrap().unwrap();
            (s.seq, t.kind, t.epoch)
        })
        .collect()
}

fn hold(op: Op, key: &str, gate: &std::sync::Arc<Gate>) -> Rule {
    Rule {
        op: Some(op),
        key_contains: Some(key.into()),
        nth: 1,
        action: Action::Hold(gate.clone()),
    }
}

/// Every lease write fails from now on (the primary's renewals cannot reach the bucket).
fn renewals_fail() -> Rule {
    Rule {
        op: Some(Op::Put),
        key_contains: Some("/lease".into()),
        nth: 0,
        action: Action::Fail,
    }
}

#[test]
fn a_second_primary_is_refused_and_told_who_holds_the_prefix() {
    let cfg = config("second");
    let (a, b) = (Bucket::open(&cfg).unwrap(), Bucket::open(&cfg).unwrap());
    let ttl = Duration::from_secs(4);
    let first = a.acquire(&lease("node-a", ttl)).unwrap();

    let err = b.acquire(&lease("node-b", ttl)).unwrap_err();
    match &err {
        Error::LeaseHeld { holder, epoch, .. } => {
            assert_eq!((holder.as_str(), *epoch), ("node-a", 1))
        }
        other => panic!("expected LeaseHeld, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("\"node-a\"") && msg.contains("replica"),
        "{msg}"
    );

    // Waiting longer than the time to live does not help while the holder renews.
    let mut patient = lease("node-b", ttl);
    patient.wait = ttl + Duration::from_secs(1);
    assert!(matches!(b.acquire(&patient), Err(Error::LeaseHeld { .. })));
    let info = b.lease().unwrap().unwrap();
    assert_eq!(
        (info.holder.as_str(), info.epoch, info.released),
        ("node-a", 1, false)
    );

    // The holder is undisturbed.
    let dir = tempfile::tempdir().unwrap();
    first.ship(1, &pack_file(dir.path(), 1, 100, 0).0).unwrap();
    first.wait_shipped(1, PATIENCE).unwrap();
    assert_eq!(first.status().stopped, None);
}

#[test]
fn a_primary_cut_off_from_the_bucket_is_fenced_out_and_cannot_write() {
    let cfg = config("cut-off");
    let (a, faults) = faulty(&cfg);
    let b = Bucket::open(&cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(1);

    let old = a.acquire(&lease("node-a", ttl)).unwrap();
    let (p1, b1) = pack_file(dir.path(), 1, 4000, 5);
    old.ship(1, &p1).unwrap();
    old.wait_shipped(1, PATIENCE).unwrap();

    // node-a loses the bucket; node-b waits out its lease and takes over.
    faults.set_down(true);
    let (p2, _) = pack_file(dir.path(), 2, 4000, 5);
    old.ship(2, &p2).unwrap();
    let mut o = lease("node-b", ttl);
    o.wait = PATIENCE;
    let new = b.acquire(&o).unwrap();
    let t = new.tenure().clone();
    assert_eq!(
        (t.epoch, t.bucket_head, t.fence, t.next_seq),
        (2, Some(1), Some(2), 3)
    );

    // node-a reconnects: its next renewal finds the lease changed, and it stops for good.
    faults.set_down(false);
    let err = old.wait_shipped(2, PATIENCE).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Fenced { epoch: 1, .. }), "{msg}");
    assert!(msg.contains("node-b") || msg.contains("epoch 2"), "{msg}");
    assert!(matches!(old.ship(3, &p2), Err(Error::Fenced { .. })));
    assert!(old.status().stopped.is_some());
    assert!(!old.is_safe(2));

    // Below the lease, the slots refuse it too: its next slot holds the new primary's fence.
    match put_slot(&a, 2, 1, &p2).unwrap() {
        RawClaim::Taken(t) => assert_eq!((t.kind, t.epoch), (SlotKind::Fence, 2)),
        other => panic!("node-a wrote slot 2 behind the fence: {other:?}"),
    }

    let (p3, b3) = pack_file(dir.path(), 3, 4000, 6);
    new.ship(3, &p3).unwrap();
    new.wait_shipped(3, PATIENCE).unwrap();
    assert_eq!(
        history(&b),
        vec![
            (1, SlotKind::Pack, 1),
            (2, SlotKind::Fence, 2),
            (3, SlotKind::Pack, 2)
        ]
    );
    assert_eq!(fetch_bytes(&b, 1).unwrap(), b1);
    assert_eq!(fetch_bytes(&b, 3).unwrap(), b3);
}

#[test]
fn a_pack_in_flight_at_takeover_that_arrives_after_the_fence_is_refused() {
    let cfg = config("late-pack");
    let (a, fa) = faulty(&cfg);
    let b = Bucket::open(&cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Long enough that node-a's lease cannot lapse (its renewals fail from now) before its
    // upload has started, however loaded the machine.
    let ttl = Duration::from_secs(3);

    let old = a.acquire(&lease("node-a", ttl)).unwrap();
    let gate = Gate::new();
    fa.add(hold(Op::Put, "/packs/", &gate));
    fa.add(renewals_fail());
    let (p1, _) = pack_file(dir.path(), 1, 4000, 7);
    old.ship(1, &p1).unwrap();
    assert!(gate.wait_arrived(PATIENCE), "node-a's upload never started");

    // node-a's upload of slot 1 is in flight (checked against its lease, not yet arrived).
    let mut o = lease("node-b", ttl);
    o.wait = PATIENCE;
    let new = b.acquire(&o).unwrap();
    let t = new.tenure().clone();
    assert_eq!(
        (t.epoch, t.bucket_head, t.fence),
        (2, None, Some(1)),
        "the empty log's first slot"
    );

    gate.open();
    let err = old.wait_shipped(1, PATIENCE).unwrap_err();
    assert!(
        err.to_string()
            .contains("slot 1 already holds a fence of epoch 2"),
        "{err}"
    );
    assert_eq!(history(&b), vec![(1, SlotKind::Fence, 2)]);
}

#[test]
fn a_pack_in_flight_at_takeover_that_arrives_first_becomes_history_below_the_fence() {
    let cfg = config("early-pack");
    let (a, fa) = faulty(&cfg);
    let (b, fb) = faulty(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(3);

    let old = a.acquire(&lease("node-a", ttl)).unwrap();
    let old_upload = Gate::new();
    fa.add(hold(Op::Put, "/packs/", &old_upload));
    fa.add(renewals_fail());
    let (p1, b1) = pack_file(dir.path(), 1, 4000, 8);
    old.ship(1, &p1).unwrap();
    assert!(old_upload.wait_arrived(PATIENCE));

    // node-b takes over and is about to create its fence in slot 1 (the log is empty)...
    let fence = Gate::new();
    fb.add(hold(Op::Put, "/packs/", &fence));
    let contender = std::thread::spawn(move || {
        let mut o = lease("node-b", ttl);
        o.wait = PATIENCE;
        b.acquire(&o).map(|p| (p, b))
    });
    assert!(fence.wait_arrived(PATIENCE), "node-b never tried to fence");

    // ...when node-a's pack lands there first.
    old_upload.open();
    old.wait_shipped(1, PATIENCE).unwrap();
    fence.open();
    let (new, b) = contender.join().unwrap().unwrap();
    let t = new.tenure().clone();
    assert_eq!(
        (t.epoch, t.bucket_head, t.fence, t.next_seq),
        (2, Some(1), Some(2), 3),
        "the fence moved up past node-a's pack, which is history node-b must catch up on"
    );
    assert_eq!(fetch_bytes(&b, 1).unwrap(), b1);

    // node-a's next pack finds the fence; once its renewals reach the bucket it knows why.
    let (p2, _) = pack_file(dir.path(), 2, 4000, 8);
    old.ship(2, &p2).unwrap();
    fa.clear();
    assert!(matches!(
        old.wait_shipped(2, PATIENCE),
        Err(Error::Fenced { .. })
    ));
    assert_eq!(
        history(&b),
        vec![(1, SlotKind::Pack, 1), (2, SlotKind::Fence, 2)]
    );
}

#[test]
fn a_server_that_ignores_conditional_writes_is_refused_before_anything_is_written() {
    let cfg = config("no-conditions");
    let (bucket, faults) = faulty(&cfg);
    faults.set_ignore_conditions(true);
    let err = bucket
        .acquire(&lease("node-a", Duration::from_secs(30)))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Config { .. }), "{msg}");
    assert!(msg.contains("If-None-Match: * on PUT"), "{msg}");
    assert_eq!(bucket.lease().unwrap(), None, "no lease was taken");
    assert!(bucket.list_after(None, 10).unwrap().is_empty());
    // The same server honouring them is accepted.
    faults.set_ignore_conditions(false);
    bucket
        .acquire(&lease("node-a", Duration::from_secs(30)))
        .unwrap();
}

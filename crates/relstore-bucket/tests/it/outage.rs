//! The bucket failing: offers keep being accepted while the queue holds, shipping resumes by
//! itself, single failed requests are retried, a full queue refuses with a typed error.

use std::time::Duration;

use relstore_bucket::testing::{staging_dir, Action, Gate, Op, Rule};
use relstore_bucket::{Error, Offer};

use crate::{config, eventually, faulty, fetch_bytes, lease, pack_file, Raw, PATIENCE};

#[test]
fn while_the_bucket_is_down_packs_queue_and_shipping_resumes_when_it_is_back() {
    let cfg = config("down");
    let (bucket, faults) = faulty(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let primary = bucket
        .acquire(&lease("node-a", Duration::from_secs(1)))
        .unwrap();
    let (p1, _) = pack_file(dir.path(), 1, 1000, 9);
    primary.ship(1, &p1).unwrap();
    primary.wait_shipped(1, PATIENCE).unwrap();

    faults.set_down(true);
    let mut packs = Vec::new();
    for seq in 2..=5 {
        let (path, bytes) = pack_file(dir.path(), seq, 50_000, 9);
        // Accepted at once: the engine's acknowledgement does not wait for the bucket.
        assert_eq!(primary.ship(seq, &path).unwrap(), Offer::Queued);
        packs.push((seq, bytes));
    }
    // The shipper keeps trying, and its lease lapses (its renewals fail too): it says both.
    eventually("the lease lapses while the bucket is down", || {
        primary
            .status()
            .last_error
            .is_some_and(|e| e.contains("has not been renewed"))
    });
    let s = primary.status();
    assert!(s.failed_attempts >= 2, "{s:?}");
    assert_eq!(
        (s.shipped_through, s.queued_packs, s.queued_bytes),
        (Some(1), 4, 200_000)
    );
    assert!(s.oldest_queued.is_some());
    assert!(!primary.is_safe(2));
    let err = primary
        .wait_shipped(5, Duration::from_millis(1))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { seq: 5, .. }), "{err}");

    // Back up: the lease is renewed (nobody took it meanwhile) and the queue drains in order.
    faults.set_down(false);
    primary.wait_shipped(5, PATIENCE).unwrap();
    let s = primary.status();
    assert_eq!(
        (s.shipped_through, s.queued_packs, s.last_error, s.stopped),
        (Some(5), 0, None, None)
    );
    for (seq, bytes) in &packs {
        assert!(fetch_bytes(&bucket, *seq).unwrap() == *bytes, "pack {seq}");
    }
    assert_eq!(
        bucket
            .list_after(None, 10)
            .unwrap()
            .iter()
            .map(|s| s.seq)
            .collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
}

#[test]
fn a_failed_request_is_retried_and_a_failed_multipart_upload_leaves_nothing_behind() {
    let cfg = config("retry");
    let (bucket, faults) = faulty(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let primary = bucket
        .acquire(&lease("node-a", Duration::from_secs(30)))
        .unwrap();

    // The first PUT of a small pack fails.
    faults.add(Rule::fail(Op::Put, 1).on_key("/packs/"));
    let (p1, b1) = pack_file(dir.path(), 1, 3000, 10);
    primary.ship(1, &p1).unwrap();
    primary.wait_shipped(1, PATIENCE).unwrap();
    assert_eq!(primary.status().failed_attempts, 1);
    assert_eq!(fetch_bytes(&bucket, 1).unwrap(), b1);

    // The second part of a multipart upload fails: the upload is aborted and redone whole.
    faults.reset_counts();
    faults.add(Rule::fail(Op::PutPart, 2));
    let (p2, b2) = pack_file(dir.path(), 2, 11 << 20, 10);
    primary.ship(2, &p2).unwrap();
    primary.wait_shipped(2, PATIENCE).unwrap();
    let c = faults.counts();
    assert_eq!(primary.status().failed_attempts, 2);
    assert_eq!(
        (c.get(Op::CreateMultipart), c.get(Op::AbortMultipart)),
        (2, 1),
        "{c:?}"
    );
    assert_eq!(
        (c.get(Op::CompleteMultipart), c.get(Op::Copy)),
        (1, 1),
        "{c:?}"
    );
    assert!(fetch_bytes(&bucket, 2).unwrap() == b2);

    // The copy into the slot fails after the staging upload completed: retried, and the
    // staging objects of both attempts are removed.
    faults.add(Rule::fail(Op::Copy, 1));
    let (p3, b3) = pack_file(dir.path(), 3, 7 << 20, 10);
    primary.ship(3, &p3).unwrap();
    primary.wait_shipped(3, PATIENCE).unwrap();
    assert!(fetch_bytes(&bucket, 3).unwrap() == b3);
    assert_eq!(Raw::new(&cfg).list(&staging_dir(&bucket)), vec![]);
}

#[test]
fn parts_that_finish_out_of_order_still_assemble_in_order() {
    let cfg = config("slow-part");
    let (bucket, faults) = faulty(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let primary = bucket
        .acquire(&lease("node-a", Duration::from_secs(30)))
        .unwrap();
    // The first part is held back long enough for the later ones to finish before it.
    faults.add(Rule {
        op: Some(Op::PutPart),
        key_contains: None,
        nth: 1,
        action: Action::Delay(Duration::from_secs(1)),
    });
    let (p1, b1) = pack_file(dir.path(), 1, (16 << 20) + 123, 12);
    primary.ship(1, &p1).unwrap();
    primary.wait_shipped(1, PATIENCE).unwrap();
    assert_eq!(faults.counts().get(Op::PutPart), 4);
    assert!(fetch_bytes(&bucket, 1).unwrap() == b1);
}

#[test]
fn offers_never_wait_for_an_upload_and_a_full_queue_refuses() {
    let mut cfg = config("queue");
    cfg.limits.max_queued_packs = 3;
    let (bucket, faults) = faulty(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let primary = bucket
        .acquire(&lease("node-a", Duration::from_secs(30)))
        .unwrap();
    let gate = Gate::new();
    faults.add(Rule {
        op: Some(Op::Put),
        key_contains: Some("/packs/".into()),
        nth: 1,
        action: Action::Hold(gate.clone()),
    });
    let files: Vec<_> = (1..=4)
        .map(|s| pack_file(dir.path(), s, 2000, 13))
        .collect();
    primary.ship(1, &files[0].0).unwrap();
    assert!(gate.wait_arrived(PATIENCE));
    // Slot 1's upload is held; offers still return, until the queue is full.
    primary.ship(2, &files[1].0).unwrap();
    primary.ship(3, &files[2].0).unwrap();
    let err = primary.ship(4, &files[3].0).unwrap_err();
    assert!(
        matches!(err, Error::QueueFull { seq: 4, queued: 3 }),
        "{err}"
    );
    assert!(err.to_string().contains("offer it again"), "{err}");
    gate.open();
    primary.wait_shipped(3, PATIENCE).unwrap();
    assert_eq!(primary.ship(4, &files[3].0).unwrap(), Offer::Queued);
    primary.wait_shipped(4, PATIENCE).unwrap();
    for (i, (_, bytes)) in files.iter().enumerate() {
        assert_eq!(fetch_bytes(&bucket, i as u64 + 1).unwrap(), *bytes);
    }
}

#[test]
fn a_renewal_that_cannot_land_pauses_writes_until_it_does() {
    let cfg = config("slow-renewal");
    let (bucket, faults) = faulty(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let primary = bucket
        .acquire(&lease("node-a", Duration::from_secs(1)))
        .unwrap();
    let gate = Gate::new();
    faults.add(Rule {
        op: Some(Op::Put),
        key_contains: Some("/lease".into()),
        nth: 1,
        action: Action::Hold(gate.clone()),
    });
    assert!(gate.wait_arrived(PATIENCE), "no renewal was sent");
    // With its renewal stuck, the primary's lease runs out and it does not write.
    eventually("the lease lapses", || primary.status().lease_lapsed);
    let (p1, b1) = pack_file(dir.path(), 1, 2000, 14);
    primary.ship(1, &p1).unwrap();
    eventually("writes wait for the lease", || {
        primary
            .status()
            .last_error
            .is_some_and(|e| e.contains("has not been renewed"))
    });
    assert!(!primary.is_safe(1));
    // The renewal lands (nobody took the lease): writes resume.
    gate.open();
    primary.wait_shipped(1, PATIENCE).unwrap();
    assert_eq!(fetch_bytes(&bucket, 1).unwrap(), b1);
    assert_eq!(primary.status().stopped, None);
}

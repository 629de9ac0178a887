//! Shipping packs and reading them back: order, listing, byte equality, multipart, resuming.

use std::time::Duration;

use relstore_bucket::testing::{staging_dir, Op};
use relstore_bucket::{Bucket, Error, Offer, SlotKind};

use crate::{config, faulty, fetch_bytes, lease, pack_file, Raw, PATIENCE};

#[test]
fn shipped_packs_list_in_order_and_read_back_byte_for_byte() {
    let cfg = config("ship-order");
    let (bucket, faults) = faulty(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let primary = bucket
        .acquire(&lease("node-a", Duration::from_secs(30)))
        .unwrap();
    faults.reset_counts();
    let tenure = primary.tenure().clone();
    assert_eq!(
        (tenure.epoch, tenure.fence, tenure.bucket_head),
        (1, None, None)
    );
    assert_eq!(
        tenure.next_seq, 1,
        "an empty prefix starts at the holder's first slot"
    );

    // A one-byte pack, small ones, and two above the 6 MiB multipart threshold.
    let sizes = [
        1usize,
        100 << 10,
        3 << 20,
        7 << 20,
        (12 << 20) + 5,
        20 << 10,
    ];
    let mut packs = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        let seq = i as u64 + 1;
        let (path, bytes) = pack_file(dir.path(), seq, len, 11);
        assert_eq!(primary.ship(seq, &path).unwrap(), Offer::Queued);
        packs.push((seq, bytes));
    }
    primary.wait_shipped(6, PATIENCE).unwrap();
    assert!(primary.is_safe(6) && primary.is_safe(1));
    assert!(!primary.is_safe(7));
    let status = primary.status();
    assert_eq!(status.shipped_through, Some(6));
    assert_eq!((status.queued_packs, status.queued_bytes), (0, 0));
    assert_eq!(status.shipped_packs, 6);
    assert_eq!(
        status.shipped_bytes,
        sizes.iter().map(|&s| s as u64).sum::<u64>()
    );
    assert_eq!(status.failed_attempts, 0);

    // Two packs went up as multipart uploads and reached their slots by create-if-absent copy.
    let counts = faults.counts();
    assert_eq!(counts.get(Op::CreateMultipart), 2, "{counts:?}");
    assert_eq!(counts.get(Op::Copy), 2, "{counts:?}");
    assert_eq!(
        counts.get(Op::PutPart),
        2 + 3,
        "5 MiB parts: 7 MiB is 2, 12 MiB is 3"
    );
    assert_eq!(counts.get(Op::CompleteMultipart), 2);

    // A replica with a client of its own sees every slot in order and reads every byte back.
    let replica = Bucket::open(&cfg).unwrap();
    let slots = replica.list_after(None, 100).unwrap();
    let listed: Vec<(u64, u64)> = slots.iter().map(|s| (s.seq, s.payload_len())).collect();
    let expected: Vec<(u64, u64)> = packs.iter().map(|(s, b)| (*s, b.len() as u64)).collect();
    assert_eq!(listed, expected);
    assert!(slots.iter().all(|s| s.holds_data()));
    for (seq, bytes) in &packs {
        assert!(
            fetch_bytes(&replica, *seq).unwrap() == *bytes,
            "pack {seq} differs"
        );
        let info = replica.slot_info(*seq).unwrap().unwrap();
        assert_eq!((info.kind, info.seq, info.epoch), (SlotKind::Pack, *seq, 1));
        assert_eq!(info.blake3, *blake3::hash(bytes).as_bytes());
    }
    let tail: Vec<u64> = replica
        .list_after(Some(3), 100)
        .unwrap()
        .iter()
        .map(|s| s.seq)
        .collect();
    assert_eq!(tail, vec![4, 5, 6]);
    let first_two: Vec<u64> = replica
        .list_after(None, 2)
        .unwrap()
        .iter()
        .map(|s| s.seq)
        .collect();
    assert_eq!(first_two, vec![1, 2]);
    assert!(replica.list_after(Some(6), 100).unwrap().is_empty());

    // The staging objects of the multipart uploads are gone.
    let staged = Raw::new(&cfg).list(&staging_dir(&bucket));
    assert!(staged.is_empty(), "staging objects left behind: {staged:?}");

    // Offers of slots already shipped are no-ops; a gap or a step back is refused.
    assert_eq!(
        primary.ship(3, &dir.path().join("00000003.seg")).unwrap(),
        Offer::AlreadySafe
    );
    let (p8, _) = pack_file(dir.path(), 8, 10, 1);
    let err = primary.ship(8, &p8).unwrap_err();
    assert!(
        matches!(
            err,
            Error::OutOfOrder {
                seq: 8,
                expected: 7
            }
        ),
        "{err}"
    );
    let empty = dir.path().join("empty.seg");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        primary.ship(7, &empty),
        Err(Error::InvalidPack { .. })
    ));
    let report = primary.close(PATIENCE).unwrap();
    assert!(report.released && report.unshipped == 0, "{report:?}");
    let info = bucket.lease().unwrap().unwrap();
    assert!(info.released && info.holder == "node-a", "{info:?}");
}

#[test]
fn a_restarted_holder_resumes_its_tenure_and_a_clean_close_hands_over_at_once() {
    let cfg = config("resume");
    let bucket = Bucket::open(&cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(30);

    let first = bucket.acquire(&lease("node-a", ttl)).unwrap();
    for seq in 1..=2 {
        first
            .ship(seq, &pack_file(dir.path(), seq, 1000, 2).0)
            .unwrap();
    }
    first.wait_shipped(2, PATIENCE).unwrap();
    // Pack 3 is offered but the process "dies" before shipping it: dropping the handle stops
    // the tasks without giving the lease up.
    drop(first);

    // The same holder comes back at once (no waiting for its 30 s lease): same epoch, no fence.
    let again = bucket.acquire(&lease("node-a", ttl)).unwrap();
    let t = again.tenure().clone();
    assert!(t.resumed, "{t:?}");
    assert_eq!(
        (t.epoch, t.fence, t.bucket_head, t.next_seq),
        (1, None, Some(2), 3)
    );
    assert_eq!(
        again.ship(2, &dir.path().join("00000002.seg")).unwrap(),
        Offer::AlreadySafe
    );
    let (p3, b3) = pack_file(dir.path(), 3, 5000, 2);
    again.ship(3, &p3).unwrap();
    again.wait_shipped(3, PATIENCE).unwrap();
    assert!(again.close(PATIENCE).unwrap().released);

    // Another node takes the released prefix without waiting: a new epoch, fenced after 3.
    let other = bucket.acquire(&lease("node-b", ttl)).unwrap();
    let t = other.tenure().clone();
    assert!(!t.resumed);
    assert_eq!(
        (t.epoch, t.bucket_head, t.fence, t.next_seq),
        (2, Some(3), Some(4), 5)
    );
    assert_eq!(fetch_bytes(&bucket, 3).unwrap(), b3);
    let fence = bucket.slot_info(4).unwrap().unwrap();
    assert_eq!((fence.kind, fence.epoch), (SlotKind::Fence, 2));
    let err = fetch_bytes(&bucket, 4).unwrap_err();
    assert!(matches!(err, Error::NoData { seq: 4, .. }), "{err}");
    // Listing shows the fence as a slot without data.
    let slots = bucket.list_after(Some(2), 10).unwrap();
    assert_eq!(
        slots
            .iter()
            .map(|s| (s.seq, s.holds_data()))
            .collect::<Vec<_>>(),
        vec![(3, true), (4, false)]
    );
}

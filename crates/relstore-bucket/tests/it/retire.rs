//! Deleting packs after a grace period: a retired pack stays readable until the grace period has
//! passed on the bucket's clock, then becomes a tombstone that keeps its slot forever.

use std::time::Duration;

use relstore_bucket::testing::{put_slot, RawClaim};
use relstore_bucket::{Bucket, Error, SlotKind};

use crate::{config, fetch_bytes, lease, pack_file, PATIENCE};

#[test]
fn retired_packs_become_tombstones_after_the_grace_period_and_keep_their_slot() {
    let cfg = config("retire");
    let bucket = Bucket::open(&cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let primary = bucket
        .acquire(&lease("node-a", Duration::from_secs(30)))
        .unwrap();
    let packs: Vec<_> = (1..=3)
        .map(|s| pack_file(dir.path(), s, 10_000, 40))
        .collect();
    for (i, (path, _)) in packs.iter().enumerate() {
        primary.ship(i as u64 + 1, path).unwrap();
    }
    primary.wait_shipped(3, PATIENCE).unwrap();

    primary.retire(2).unwrap();
    primary.retire(2).unwrap(); // idempotent: the first retirement's time counts
    let report = primary.purge(Duration::from_secs(3600)).unwrap();
    assert_eq!(
        (report.tombstoned.clone(), report.waiting),
        (vec![], 1),
        "{report:?}"
    );
    assert_eq!(
        fetch_bytes(&bucket, 2).unwrap(),
        packs[1].1,
        "readable during its grace period"
    );

    let report = primary.purge(Duration::ZERO).unwrap();
    assert_eq!(
        (report.tombstoned.clone(), report.waiting),
        (vec![2], 0),
        "{report:?}"
    );
    let err = fetch_bytes(&bucket, 2).unwrap_err();
    assert!(matches!(err, Error::NoData { seq: 2, .. }), "{err}");
    let stone = bucket.slot_info(2).unwrap().unwrap();
    assert_eq!(stone.kind, SlotKind::Tombstone);
    assert_eq!(
        stone.payload_len, 10_000,
        "the tombstone remembers what it replaced"
    );
    assert_eq!(stone.blake3, *blake3::hash(&packs[1].1).as_bytes());
    let slots = bucket.list_after(None, 10).unwrap();
    assert_eq!(
        slots
            .iter()
            .map(|s| (s.seq, s.holds_data()))
            .collect::<Vec<_>>(),
        vec![(1, true), (2, false), (3, true)]
    );
    // The slot can never be created again, by anyone.
    match put_slot(&bucket, 2, 1, &packs[1].0).unwrap() {
        RawClaim::Taken(t) => assert_eq!(t.kind, SlotKind::Tombstone),
        other => panic!("a purged slot was written again: {other:?}"),
    }
    // Nothing left to purge; neighbours untouched.
    assert_eq!(
        primary.purge(Duration::ZERO).unwrap().tombstoned,
        Vec::<u64>::new()
    );
    assert_eq!(fetch_bytes(&bucket, 3).unwrap(), packs[2].1);

    // Only packs can be retired.
    assert!(matches!(
        primary.retire(2),
        Err(Error::NoData { seq: 2, .. })
    ));
    assert!(matches!(
        primary.retire(9),
        Err(Error::NotFound { seq: 9, .. })
    ));
}

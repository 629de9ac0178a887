//! Ranged reads: one GET per contiguous run, every range handed to the caller's check, typed
//! errors for ranges outside the pack and for slots without data.

use std::time::Duration;

use relstore_bucket::testing::Op;
use relstore_bucket::{Bucket, Error};

use crate::{config, faulty, lease, pack_file, PATIENCE};

#[test]
fn each_contiguous_run_is_one_ranged_get_and_every_range_is_checked() {
    let cfg = config("ranges");
    let (bucket, faults) = faulty(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let primary = bucket
        .acquire(&lease("node-a", Duration::from_secs(30)))
        .unwrap();
    let len = 1 << 20;
    let (p1, bytes) = pack_file(dir.path(), 1, len, 20);
    primary.ship(1, &p1).unwrap();
    primary.wait_shipped(1, PATIENCE).unwrap();

    // Touching and overlapping ranges, out of order: four runs.
    let ranges = [
        150..300u64,
        0..10,
        10..20,
        100..200,
        5000..6000,
        len as u64 - 76..len as u64,
    ];
    faults.reset_counts();
    let mut checked = Vec::new();
    let got = bucket
        .read_ranges(1, &ranges, |r, b| {
            checked.push(r.clone());
            if b == &bytes[r.start as usize..r.end as usize] {
                Ok(())
            } else {
                Err("bytes differ".into())
            }
        })
        .unwrap();
    assert_eq!(
        checked,
        ranges.to_vec(),
        "every range is checked, in the order asked"
    );
    for (r, b) in ranges.iter().zip(&got) {
        assert!(b[..] == bytes[r.start as usize..r.end as usize], "{r:?}");
    }
    assert_eq!(
        faults.counts().get(Op::Get),
        4,
        "one GET per run: 0..20, 100..300, 5000..6000, the tail"
    );

    // A rejection by the check is corruption, named with the range; nothing is returned.
    let err = bucket
        .read_range(1, 64..128, |_| Err("record CRC mismatch".into()))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Corrupt { .. }), "{msg}");
    assert!(msg.contains("bytes 64..128: record CRC mismatch"), "{msg}");

    // Ranges outside the payload (never into the trailer), empty ranges, missing slots.
    for bad in [
        len as u64 - 10..len as u64 + 1,
        len as u64 + 100..len as u64 + 200,
        7..7,
    ] {
        let err = bucket.read_range(1, bad.clone(), |_| Ok(())).unwrap_err();
        assert!(
            matches!(err, Error::OutOfRange { seq: 1, .. }),
            "{bad:?}: {err}"
        );
    }
    let err = bucket.read_range(99, 0..1, |_| Ok(())).unwrap_err();
    assert!(matches!(err, Error::NotFound { seq: 99, .. }), "{err}");

    // A fence holds no data.
    assert!(primary.close(PATIENCE).unwrap().released);
    let other = Bucket::open(&cfg).unwrap();
    let next = other
        .acquire(&lease("node-b", Duration::from_secs(30)))
        .unwrap();
    let fence = next.tenure().fence.unwrap();
    let err = other.read_range(fence, 0..1, |_| Ok(())).unwrap_err();
    assert!(matches!(err, Error::NoData { .. }), "{err}");
}

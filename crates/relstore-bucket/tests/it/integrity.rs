//! Damaged objects on the bucket: a download is held to the pack's trailer and never leaves
//! wrong bytes at its destination; a ranged read of damaged bytes is caught by the caller's check.

use std::time::Duration;

use relstore_bucket::testing::slot_key;
use relstore_bucket::{Bucket, Error, TRAILER_LEN};

use crate::{config, lease, pack_file, Raw, PATIENCE};

fn fetch_err(bucket: &Bucket, seq: u64) -> (Error, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("pack");
    let err = bucket.fetch(seq, &dest).unwrap_err();
    (err, dest, dir)
}

#[test]
fn a_tampered_pack_is_refused_and_nothing_is_left_at_the_destination() {
    let cfg = config("tamper");
    let bucket = Bucket::open(&cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let primary = bucket
        .acquire(&lease("node-a", Duration::from_secs(30)))
        .unwrap();
    let (p1, b1) = pack_file(dir.path(), 1, 200_000, 30);
    let (p2, _) = pack_file(dir.path(), 2, 7 << 20, 30);
    primary.ship(1, &p1).unwrap();
    primary.ship(2, &p2).unwrap();
    primary.wait_shipped(2, PATIENCE).unwrap();
    let raw = Raw::new(&cfg);
    let key1 = slot_key(&bucket, 1);
    let original = raw.get(&key1);
    assert_eq!(original.len(), b1.len() + TRAILER_LEN);

    let damaged = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut obj = original.clone();
        edit(&mut obj);
        raw.put(&key1, obj);
        let (err, dest, tmp) = fetch_err(&bucket, 1);
        assert!(!dest.exists(), "a refused pack was left at its destination");
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        err.to_string()
    };

    // One flipped payload bit: the trailer is intact, the hash is not.
    let msg = damaged(&|o| o[123_456] ^= 0x10);
    assert!(
        msg.contains("BLAKE3") && msg.contains("packs/00000000000000000001.pack"),
        "{msg}"
    );
    // A flipped trailer bit, a truncated object, an object grown by a byte.
    let msg = damaged(&|o| {
        let at = o.len() - 40;
        o[at] ^= 1
    });
    assert!(msg.contains("CRC"), "{msg}");
    assert!(damaged(&|o| {
        o.pop();
    })
    .contains("trailer"));
    let msg = damaged(&|o| o.insert(10, 0));
    assert!(msg.contains("bytes"), "{msg}");
    // Another slot's object copied into this one.
    let other = raw.get(&slot_key(&bucket, 2));
    raw.put(&key1, other);
    let (err, _, _) = fetch_err(&bucket, 1);
    assert!(err.to_string().contains("slot 2's"), "{err}");

    // A ranged read of damaged bytes returns them; the caller's check is what refuses them.
    let mut obj = original.clone();
    obj[5000] ^= 0xff;
    raw.put(&key1, obj);
    let expected = blake3::hash(&b1[4096..8192]);
    let err = bucket
        .read_range(1, 4096..8192, |b| {
            if blake3::hash(b) == expected {
                Ok(())
            } else {
                Err("BLAKE3 of the chunk differs".into())
            }
        })
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");

    // Put right, the pack reads back whole.
    raw.put(&key1, original.clone());
    let dest = dir.path().join("restored");
    let trailer = bucket.fetch(1, &dest).unwrap();
    assert_eq!(trailer.payload_len, b1.len() as u64);
    assert!(std::fs::read(&dest).unwrap() == b1);
}

//! Fault injection: a failing segment write or sync (`ENOSPC`, `EIO`) at every position of a
//! small scenario.
//!
//! For a failed write the operation must return a typed I/O error carrying the OS error, leave no
//! partial record in any segment and no file record in the index, and the store must keep
//! working. For a failed sync the operation fails and the store refuses every later write with
//! [`Error::Poisoned`] while reads keep working. In both cases a reopened store holds exactly the
//! acknowledged state, with consistent refcounts and counters. A large upload's syncs ahead (made
//! while it streams) fail the same way.

use crate::common::{faulty_io, scope, small_chunk_options};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::common::faulty_io::{FaultKind, FaultyIo, EIO, ENOSPC};
use relstore::__private::scan_slice;
use relstore::__private::SEGMENT_HEADER_LEN;
use relstore::{Error, ListQuery, ReadMode, Store, StoreOptions};
use relstore_testkit::random_bytes;

fn options(dir: &Path) -> StoreOptions {
    // Small segments: the scenario rolls to new segments several times.
    small_chunk_options(dir).segment_max_bytes(48 << 10)
}

/// Deterministic bytes; `base` picks the stream so that equal bases share chunks.
fn bytes(base: u64, len: usize, tweak: u8) -> Vec<u8> {
    let mut v = random_bytes(base, len);
    if let Some(b) = v.get_mut(len / 2) {
        *b ^= tweak;
    }
    v
}

#[derive(Clone, Debug)]
enum Op {
    Upload(&'static str, Vec<u8>),
    Delete(&'static str),
}

fn scenario() -> Vec<Op> {
    vec![
        Op::Upload("a.js", bytes(1, 20_000, 0)),
        Op::Upload("b.js", bytes(2, 30_000, 0)),
        // Overwrite sharing most chunks with the old content.
        Op::Upload("a.js", bytes(1, 25_000, 7)),
        Op::Delete("b.js"),
        Op::Upload("c.js", bytes(3, 40_000, 0)),
        Op::Upload("d.js", bytes(4, 5_000, 0)),
        Op::Delete("a.js"),
        // Same bytes as the deleted b.js: its chunks await gc and are reused.
        Op::Upload("b.js", bytes(2, 30_000, 0)),
        Op::Upload("e.js", bytes(5, 60_000, 0)),
        Op::Upload("c.js", Vec::new()),
        // Over two append batches: appends run on the stager's writer thread.
        Op::Upload("f.js", bytes(6, 2_600_000, 0)),
    ]
}

fn apply(store: &Store, op: &Op) -> relstore::Result<()> {
    match op {
        Op::Upload(n, data) => {
            let key = scope().file(n, None);
            let exists = store.file(&key)?.is_some();
            store
                .upload(&key, &[], &mut data.as_slice(), exists)
                .map(|_| ())
        }
        Op::Delete(n) => {
            let id = store
                .file(&scope().file(n, None))?
                .expect("the scenario deletes existing files only")
                .id;
            store.delete_file(id).map(|_| ())
        }
    }
}

fn name_of(op: &Op) -> &'static str {
    match op {
        Op::Upload(n, _) | Op::Delete(n) => n,
    }
}

/// Checks that the store holds exactly `model` (reads, lookups and the listing).
fn assert_holds(store: &Store, model: &BTreeMap<&'static str, Vec<u8>>, ctx: &str) {
    for op in scenario() {
        let n = name_of(&op);
        let key = scope().file(n, None);
        match model.get(n) {
            Some(want) => {
                let got = store
                    .read(&key)
                    .unwrap_or_else(|e| panic!("{ctx}: reading {n}: {e}"));
                assert!(got == *want, "{ctx}: {n} reads back different bytes");
            }
            None => assert!(
                store.file(&key).expect("lookup").is_none(),
                "{ctx}: {n} exists but was never acknowledged (or was deleted)"
            ),
        }
    }
    let page = store
        .list_files(
            &scope(),
            &ListQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .expect("list");
    let listed: Vec<&str> = page.items.iter().map(|f| f.key.name.as_str()).collect();
    let want: Vec<&str> = model.keys().copied().collect();
    assert_eq!(listed, want, "{ctx}: listing");
}

/// Every segment file holds a valid header followed by whole, checked records only.
fn assert_no_partial_records(dir: &Path, ctx: &str) {
    let seg_dir = dir.join("segments");
    for entry in std::fs::read_dir(&seg_dir).expect("list segments") {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("read segment");
        assert!(
            data.len() >= SEGMENT_HEADER_LEN,
            "{ctx}: {} is shorter than a segment header ({} bytes)",
            path.display(),
            data.len()
        );
        relstore::__private::decode_segment_header(&data)
            .unwrap_or_else(|e| panic!("{ctx}: {}: {e}", path.display()));
        let scan = scan_slice(&data);
        assert_eq!(
            scan.valid_end,
            data.len() as u64,
            "{ctx}: {} ends in a partial or damaged record",
            path.display()
        );
    }
}

fn is_errno(e: &Error, errno: i32) -> bool {
    matches!(e, Error::Io { source, .. } if source.raw_os_error() == Some(errno))
}

/// Runs the scenario with `fault` armed (or none) and checks the store's reaction. Returns the
/// number of segment writes and syncs the scenario made.
fn run(fault: Option<(FaultKind, u64, i32, bool)>) -> (u64, u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let ctx = format!("{fault:?}");
    let io = FaultyIo::new();
    let store = Store::open(options(&dir).io(Arc::new(io.clone()))).expect("open");
    store
        .create_release("acme", "1.0", &["web"])
        .expect("release");
    match fault {
        Some((kind, n, errno, tear)) => io.arm(kind, n, errno, tear),
        None => io.count_only(),
    }
    let mut model: BTreeMap<&'static str, Vec<u8>> = BTreeMap::new();
    let mut poisoned = false;
    for (i, op) in scenario().into_iter().enumerate() {
        let ctx = format!("{ctx}, op {i} {}", name_of(&op));
        if matches!(op, Op::Delete(n) if !model.contains_key(n)) {
            // Its upload failed on purpose: nothing to delete.
            continue;
        }
        let fired_before = io.fired();
        let result = apply(&store, &op);
        let fired_now = io.fired() && !fired_before;
        match result {
            Ok(()) => {
                assert!(!poisoned, "{ctx}: a write succeeded on a poisoned store");
                assert!(
                    !fired_now,
                    "{ctx}: the fault fired but the operation succeeded"
                );
                match op {
                    Op::Upload(n, data) => {
                        model.insert(n, data);
                    }
                    Op::Delete(n) => {
                        model.remove(n);
                    }
                }
            }
            Err(e) if poisoned => {
                assert!(
                    matches!(e, Error::Poisoned { .. }),
                    "{ctx}: a write on a poisoned store failed with {e:?}, not Poisoned"
                );
            }
            Err(e) => {
                let (kind, _, errno, _) = fault.unwrap_or_else(|| panic!("{ctx}: {e}"));
                assert!(fired_now, "{ctx}: failed without a fault: {e:?}");
                match kind {
                    FaultKind::Write => assert!(
                        is_errno(&e, errno),
                        "{ctx}: a failed write gave {e:?}, not an I/O error with errno {errno}"
                    ),
                    FaultKind::Sync => {
                        assert!(
                            is_errno(&e, errno) || matches!(e, Error::Poisoned { .. }),
                            "{ctx}: a failed sync gave {e:?}"
                        );
                        poisoned = true;
                    }
                }
            }
        }
        // Whatever happened, the store serves exactly the acknowledged state, poisoned or not.
        assert_holds(&store, &model, &ctx);
        if !poisoned {
            assert_no_partial_records(&dir, &ctx);
        }
    }
    if let Some((kind, n, _, _)) = fault {
        assert!(io.fired(), "{ctx}: fault {kind:?} #{n} never fired");
        if kind == FaultKind::Sync {
            assert!(poisoned, "{ctx}: a failed sync did not poison the store");
            // Every kind of write is refused, not just uploads.
            let e = store
                .upload(&scope().file("z.js", None), &[], &mut &b"z"[..], false)
                .expect_err("upload on a poisoned store");
            assert!(matches!(e, Error::Poisoned { .. }), "{ctx}: {e:?}");
        }
    }
    let counts = io.counts();
    drop(store);
    // Reopened with plain I/O: exactly the acknowledged state, consistent, appendable.
    for mode in [ReadMode::Mmap, ReadMode::Pread] {
        let store = Store::open(options(&dir).read_mode(mode)).expect("reopen");
        assert_holds(&store, &model, &format!("{ctx}, reopened {mode:?}"));
        drop(store);
    }
    faulty_io::assert_index_consistent(&dir);
    let store = Store::open(options(&dir)).expect("reopen");
    let report = store.verify(&mut |_| {}).expect("verify");
    assert!(report.is_clean(), "{ctx}: verify after reopen:\n{report}");
    let key = scope().file("after.js", None);
    store
        .upload(&key, &[], &mut &b"after reopen"[..], false)
        .unwrap_or_else(|e| panic!("{ctx}: write after reopen: {e}"));
    model.insert("after.js", b"after reopen".to_vec());
    assert_eq!(store.read(&key).expect("read"), b"after reopen");
    counts
}

#[test]
fn every_failed_write_is_reported_and_harmless() {
    let (writes, _) = run(None);
    eprintln!("sweeping {writes} segment writes");
    assert!(writes >= 8, "scenario makes too few writes ({writes})");
    for n in 1..=writes {
        for (errno, tear) in [(ENOSPC, false), (ENOSPC, true), (EIO, true)] {
            run(Some((FaultKind::Write, n, errno, tear)));
        }
    }
}

#[test]
fn every_failed_sync_poisons_until_reopen() {
    let (_, syncs) = run(None);
    eprintln!("sweeping {syncs} segment syncs");
    assert!(syncs >= 8, "scenario makes too few syncs ({syncs})");
    for n in 1..=syncs {
        for errno in [EIO, ENOSPC] {
            run(Some((FaultKind::Sync, n, errno, false)));
        }
    }
}

/// A large upload with `Immediate` durability syncs its segment while it streams (every
/// 16 MiB, on a thread of its own), so that the sync before its commit finds little left. A
/// failure of such a sync ahead fails the upload and poisons the store like any other failed
/// sync: nothing of the upload is acknowledged, and a reopened store is consistent without it.
#[test]
fn a_failed_sync_while_a_large_upload_streams_fails_it_and_poisons() {
    let data = random_bytes(77, 40 << 20);
    let key = scope().file("big.js", None);
    let run = |fault: bool| -> u64 {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("store");
        let io = FaultyIo::new();
        let store = Store::open(StoreOptions::new(&dir).io(Arc::new(io.clone()))).expect("open");
        store
            .create_release("acme", "1.0", &["web"])
            .expect("release");
        if fault {
            // The first sync of the upload is always a sync ahead: the one before the commit
            // comes after the stream ends.
            io.arm(FaultKind::Sync, 1, EIO, false);
        } else {
            io.count_only();
        }
        let result = store.upload(&key, &[], &mut &data[..], false);
        let syncs = io.counts().1;
        if !fault {
            result.expect("upload without a fault");
            return syncs;
        }
        let e = result.expect_err("an upload whose sync ahead failed");
        assert!(io.fired(), "the sync ahead never ran");
        assert!(
            is_errno(&e, EIO) || matches!(e, Error::Poisoned { .. }),
            "a failed sync ahead gave {e:?}"
        );
        let e = store
            .upload(&scope().file("z.js", None), &[], &mut &b"z"[..], false)
            .expect_err("upload on a poisoned store");
        assert!(matches!(e, Error::Poisoned { .. }), "{e:?}");
        drop(store);
        let store = Store::open(StoreOptions::new(&dir)).expect("reopen");
        assert!(store.file(&key).expect("lookup").is_none());
        let report = store.verify(&mut |_| {}).expect("verify");
        assert!(report.is_clean(), "verify after reopen:\n{report}");
        drop(store);
        faulty_io::assert_index_consistent(&dir);
        syncs
    };
    let syncs = run(false);
    assert!(
        syncs >= 2,
        "a 40 MiB upload made {syncs} segment syncs: none while it streamed"
    );
    run(true);
}

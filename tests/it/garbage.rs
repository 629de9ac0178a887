//! Chunks an upload recorded but never committed. An upload larger than `SYNC_AHEAD` (16 MiB)
//! inserts its chunks' records while it streams (`src/staging.rs`); whatever ends it early (a
//! refused size, an abandoned or refused target), those records stay as garbage: they change no
//! file, content or refcount, verify counts them without calling them faults, a later upload of
//! the same bytes uses them, and gc removes the ones still unused, leaving exactly the chunks
//! the manifests list.

use crate::common;

use crate::common::{js_like, options, put, read_all, scope};
use relstore::{Error, Store, UploadTarget};
use relstore_testkit::random_bytes;

const MIB: usize = 1 << 20;
/// Above `SYNC_AHEAD`, so the first 16 MiB of an upload this large are recorded while it
/// streams, whatever happens to it afterwards.
const LARGE: usize = 40 * MIB;

fn store(dir: &std::path::Path) -> Store {
    let store = Store::open(options(dir).max_upload_bytes(32 << 20)).unwrap();
    store.create_release("acme", "1.0", &["web"]).unwrap();
    store
}

/// Content refcounts equal a recount, every live chunk has its record, verify finds no fault
/// and counts `garbage` unreferenced chunk records (`None`: some).
fn assert_exact(store: &Store, garbage: Option<u64>, ctx: &str) {
    common::assert_refcounts_exact(store, ctx);
    let v = store.verify(&mut |_| {}).unwrap();
    assert!(v.is_clean(), "{ctx}: verify:\n{v}");
    match garbage {
        Some(n) => assert_eq!(v.unreferenced_chunks, n, "{ctx}: unreferenced chunks"),
        None => assert!(
            v.unreferenced_chunks > 0,
            "{ctx}: the failed upload left no records"
        ),
    }
}

/// The store's only file is `kept`; after gc, only its chunks are stored.
fn assert_only_after_gc(store: &Store, kept: &[u8], ctx: &str) {
    let s = store.stats().unwrap();
    assert_eq!((s.files, s.contents), (1, 1), "{ctx}");
    common::assert_collected(store, ctx);
    let s = store.stats().unwrap();
    let live_bytes: u64 = common::distinct_chunk_bytes([kept], store.chunking());
    assert_eq!(s.stored_bytes, live_bytes, "{ctx}: stored bytes after gc");
    assert_exact(store, Some(0), ctx);
}

#[test]
fn an_upload_over_the_size_limit_leaves_only_garbage_that_gc_removes() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let kept = js_like(1, 3 * MIB);
    let f = put(&store, &scope().file("kept.js", None), &kept);
    // 40 MiB of new bytes: 32 MiB are appended, 16 MiB of them recorded, before the limit
    // stops the upload.
    let big = random_bytes(2, LARGE);
    let e = store
        .upload(&scope().file("big.js", None), &[], &mut &big[..], false)
        .unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e:?}");
    let s = store.stats().unwrap();
    assert_eq!(
        (s.files, s.contents),
        (1, 1),
        "the refused upload made no file"
    );
    assert_exact(&store, None, "after the refused upload");
    assert!(read_all(&store, &f) == kept);
    assert_only_after_gc(&store, &kept, "after gc");
    assert!(read_all(&store, &f) == kept);
}

#[test]
fn an_abandoned_or_refused_deferred_upload_leaves_garbage_a_later_upload_reuses() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let kept = js_like(3, 3 * MIB);
    put(&store, &scope().file("kept.js", None), &kept);

    // The target never comes.
    let data = random_bytes(4, 30 * MIB);
    let e = store.upload_deferred(&mut &data[..], || None).unwrap_err();
    assert!(matches!(e, Error::Abandoned { .. }), "{e:?}");
    assert_exact(&store, None, "abandoned");

    // The target is taken and may not be overwritten: the commit refuses after streaming.
    let e = store
        .upload_deferred(&mut &data[..], || {
            Some(UploadTarget {
                key: scope().file("kept.js", None),
                headers: vec![],
                overwrite: false,
            })
        })
        .unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
    let s = store.stats().unwrap();
    assert_eq!((s.files, s.contents), (1, 1), "refused: no file");
    assert_exact(&store, None, "refused");

    // An invalid header, found after streaming.
    let e = store
        .upload_deferred(&mut &data[..], || {
            Some(UploadTarget {
                key: scope().file("new.js", None),
                headers: vec![("Bad Name".into(), "x".into())],
                overwrite: false,
            })
        })
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    assert_exact(&store, None, "invalid header");

    // A successful upload of the same bytes uses the recorded chunks (each id has one record,
    // so nothing is counted twice), and its file survives the gc that follows.
    let f = put(&store, &scope().file("new.js", None), &data);
    let s = store.stats().unwrap();
    assert_eq!(
        s.stored_bytes,
        common::distinct_chunk_bytes([&kept[..], &data[..]], store.chunking()),
        "one record per distinct chunk"
    );
    assert!(read_all(&store, &f) == data);
    assert_exact(&store, Some(0), "committed");
    common::assert_collected(&store, "committed, then gc");
    assert!(read_all(&store, &f) == data, "reads back after gc");
    store.delete_file(f.id).unwrap().unwrap();
    assert_only_after_gc(&store, &kept, "deleted, then gc");
}

#[test]
fn overwriting_a_large_file_with_new_and_with_its_own_bytes_keeps_refcounts_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let key = scope().file("app.js", None);
    let v1 = js_like(5, 5 * MIB);
    put(&store, &key, &v1);
    // New bytes sharing half the chunks: the shared half is found, the new half recorded.
    let mut v2 = v1[..v1.len() / 2].to_vec();
    v2.extend_from_slice(&js_like(6, 2 * MIB));
    let f2 = store.upload(&key, &[], &mut &v2[..], true).unwrap();
    assert_exact(&store, None, "overwritten: v1's own half awaits gc");
    // The same bytes again: nothing new is written, the content gains and loses one file.
    let f3 = store.upload(&key, &[], &mut &v2[..], true).unwrap();
    assert_eq!(f3.content_id, f2.content_id);
    assert!(read_all(&store, &f3) == v2);
    assert_only_after_gc(&store, &v2, "own bytes");
    // Reopening finds the same state.
    drop(store);
    let store = Store::open(options(dir.path())).unwrap();
    assert_only_after_gc(&store, &v2, "reopened");
    assert!(read_all(&store, &f3) == v2);
}

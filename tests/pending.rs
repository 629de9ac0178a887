//! Chunk references taken ahead of a commit (`src/index/pending.rs`): a large upload takes the
//! references of its chunks in bounded transactions before the one that creates its content.
//! Whatever ends the upload (a refused size, an abandoned or refused target, an overwrite with
//! its own bytes), those references are adopted by its content or released: no refcount leaks,
//! nothing stays pending, and the store's counters match a recount.

mod common;

use common::{js_like, options, put, read_all};
use relstore::{Error, ReleaseScope, Store, UploadTarget};

const MIB: usize = 1 << 20;

/// Small pending records (16 chunks each), so that a few MiB make many of them.
fn store(dir: &std::path::Path) -> Store {
    let store = Store::open(options(dir).max_tx_chunks(16).max_upload_bytes(6 << 20)).unwrap();
    store.create_release("acme", "1.0", &["web"]).unwrap();
    store
}

fn scope() -> ReleaseScope {
    ReleaseScope::project("acme", "web", "1.0")
}

/// The store's refcounts equal a recount from its files, nothing is pending, and verify agrees.
fn assert_exact(store: &Store, ctx: &str) {
    common::assert_refcounts_exact(store, ctx);
    let v = store.verify(&mut |_| {}).unwrap();
    assert!(v.is_clean(), "{ctx}: verify:\n{v}");
}

/// Stats of a store whose only file is `kept`: the failed uploads around it added nothing.
fn assert_only(store: &Store, kept: &[u8], ctx: &str) {
    let s = store.stats().unwrap();
    assert_eq!((s.files, s.contents), (1, 1), "{ctx}");
    let live_bytes: u64 = common::distinct_chunk_bytes([kept], store.chunking());
    assert_eq!(s.stored_bytes, live_bytes, "{ctx}: stored bytes");
}

#[test]
fn an_upload_over_the_size_limit_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let kept = js_like(1, 3 * MIB);
    let f = put(&store, &scope().file("kept.js", None), &kept);
    // 8 MiB of new bytes: ~6 MiB of chunks are appended before the limit stops the upload.
    let big = js_like(2, 8 * MIB);
    let e = store
        .upload(&scope().file("big.js", None), &[], &mut &big[..], false)
        .unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e:?}");
    assert_only(&store, &kept, "after the refused upload");
    assert_exact(&store, "after the refused upload");
    assert!(read_all(&store, &f) == kept);
}

#[test]
fn an_abandoned_or_refused_deferred_upload_releases_what_it_took() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let kept = js_like(3, 3 * MIB);
    put(&store, &scope().file("kept.js", None), &kept);

    // The target never comes.
    let data = js_like(4, 4 * MIB);
    let e = store.upload_deferred(&mut &data[..], || None).unwrap_err();
    assert!(matches!(e, Error::Source(_)), "{e:?}");
    assert_only(&store, &kept, "abandoned");
    assert_exact(&store, "abandoned");

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
    assert_only(&store, &kept, "refused");
    assert_exact(&store, "refused");

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
    assert_only(&store, &kept, "invalid header");
    assert_exact(&store, "invalid header");
}

#[test]
fn overwriting_a_large_file_with_new_and_with_its_own_bytes_keeps_refcounts_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let key = scope().file("app.js", None);
    let v1 = js_like(5, 5 * MIB);
    put(&store, &key, &v1);
    // New bytes sharing half the chunks: the shared half gains references, the new half gets
    // records, all taken ahead in records of 16 chunks.
    let mut v2 = v1[..v1.len() / 2].to_vec();
    v2.extend_from_slice(&js_like(6, 2 * MIB));
    let f2 = store.upload(&key, &[], &mut &v2[..], true).unwrap();
    assert_only(&store, &v2, "overwritten");
    assert_exact(&store, "overwritten");
    // The same bytes again: nothing new is written, the content gains and loses one file.
    let f3 = store.upload(&key, &[], &mut &v2[..], true).unwrap();
    assert_eq!(f3.content_id, f2.content_id);
    assert_only(&store, &v2, "own bytes");
    assert_exact(&store, "own bytes");
    assert!(read_all(&store, &f3) == v2);
    // Reopening releases nothing more and finds the same state.
    drop(store);
    let store = Store::open(options(dir.path())).unwrap();
    assert_only(&store, &v2, "reopened");
    assert_exact(&store, "reopened");
}

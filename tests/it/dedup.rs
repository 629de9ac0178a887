//! Deduplication: sub-file (chunk-level) dedup between two builds of one bundle, whole-file
//! dedup of one file under many names, and across releases and organizations.

use crate::common;

use crate::common::{chunk_set, distinct_chunk_bytes, js_like, options, put, read_all};
use relstore::{ReleaseScope, Store};

const MIB: usize = 1 << 20;

/// A 4 MiB minified bundle behind a version banner, as a build pipeline emits it.
fn bundle(banner: &str, body: &[u8]) -> Vec<u8> {
    let mut v = banner.as_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

#[test]
fn a_new_build_with_a_new_banner_and_small_edits_stores_little() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).unwrap();
    store.create_release("acme", "1.0.0", &["web"]).unwrap();
    store.create_release("acme", "1.0.1", &["web"]).unwrap();
    let params = store.chunking();

    let body = js_like(42, 4 * MIB);
    let v1 = bundle(
        "/*! acme-web v1.0.0 | (c) Acme | build 2026-11-27T10:00:00Z */\n",
        &body,
    );
    let mut body2 = body.clone();
    // A changed literal, an inserted statement and a removed one, in the middle of the bundle.
    body2[MIB..MIB + 8].copy_from_slice(b"\"v1.0.1\"");
    let insert_at = 2 * MIB + 1234;
    body2.splice(
        insert_at..insert_at,
        b"console.log(\"feature flag: on\");".iter().copied(),
    );
    body2.drain(3 * MIB..3 * MIB + 40);
    let v2 = bundle(
        "/*! acme-web v1.0.1 | (c) Acme | build 2026-11-28T16:45:12Z | hotfix */\n",
        &body2,
    );

    let f1 = put(
        &store,
        &ReleaseScope::project("acme", "web", "1.0.0").file("~/static/app.js", None),
        &v1,
    );
    let s1 = store.stats().unwrap();
    assert_eq!(s1.stored_bytes, distinct_chunk_bytes([&v1[..]], params));
    // The baseline is a full copy: the bundle does not dedup against itself, so the ratio below
    // measures dedup between the builds.
    assert!(
        s1.stored_bytes > v1.len() as u64 * 95 / 100,
        "first version stored in {} bytes of {}",
        s1.stored_bytes,
        v1.len()
    );

    let f2 = put(
        &store,
        &ReleaseScope::project("acme", "web", "1.0.1").file("~/static/app.js", None),
        &v2,
    );
    let s2 = store.stats().unwrap();
    assert_eq!(s2.contents, 2);
    assert_eq!(s2.logical_bytes, (v1.len() + v2.len()) as u64);
    assert_eq!(
        s2.stored_bytes,
        distinct_chunk_bytes([&v1[..], &v2[..]], params)
    );
    assert!(
        s2.stored_bytes * 10 < s1.stored_bytes * 13,
        "two builds stored in {} bytes, the first alone in {}",
        s2.stored_bytes,
        s1.stored_bytes
    );
    assert!(read_all(&store, &f1) == v1, "v1 reads back");
    assert!(read_all(&store, &f2) == v2, "v2 reads back");

    // Deleting the first build, then gc, frees exactly the chunks only it used.
    store.delete_file(f1.id).unwrap().unwrap();
    assert_eq!(
        store.stats().unwrap().stored_bytes,
        s2.stored_bytes,
        "until gc"
    );
    store.gc(&mut |_| {}).unwrap();
    let s3 = store.stats().unwrap();
    assert_eq!(s3.stored_bytes, distinct_chunk_bytes([&v2[..]], params));
    assert_eq!(s3.contents, 1);
    assert!(
        read_all(&store, &f2) == v2,
        "v2 reads back after v1 is gone"
    );
}

#[test]
fn fifty_names_for_one_file_store_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).unwrap();
    store.create_release("acme", "1.0", &["web"]).unwrap();
    let scope = ReleaseScope::project("acme", "web", "1.0");
    let data = js_like(7, MIB);
    let chunks = chunk_set(&data, store.chunking());
    let one_copy: u64 = chunks.values().sum();
    assert!(one_copy <= MIB as u64);
    let mut files = Vec::new();
    for i in 0..50 {
        files.push(put(
            &store,
            &scope.file(&format!("~/static/js/copy-{i:02}.js"), None),
            &data,
        ));
        let s = store.stats().unwrap();
        assert_eq!(
            (s.files, s.contents, s.stored_bytes),
            (i + 1, 1, one_copy),
            "after {} uploads",
            i + 1
        );
    }
    let s = store.stats().unwrap();
    assert_eq!(s.logical_bytes, 50 * MIB as u64);
    assert_eq!(s.chunks, chunks.len() as u64);
    assert!(files.iter().all(|f| f.content_id == files[0].content_id));
    assert_eq!(store.contents_by_sha1(&files[0].sha1).unwrap().len(), 1);
    for f in &files {
        assert!(read_all(&store, f) == data, "{} reads back", f.key);
    }
    // Removing 49 names keeps the one copy; removing the last frees it.
    for f in &files[1..] {
        store.delete_file(f.id).unwrap().unwrap();
    }
    let s = store.stats().unwrap();
    assert_eq!((s.files, s.contents, s.stored_bytes), (1, 1, one_copy));
    assert!(read_all(&store, &files[0]) == data);
    store.delete_file(files[0].id).unwrap().unwrap();
    // The chunk records stay until gc, which finds no manifest listing them.
    let s = store.stats().unwrap();
    assert_eq!((s.files, s.contents, s.stored_bytes), (0, 0, one_copy));
    store.gc(&mut |_| {}).unwrap();
    let s = store.stats().unwrap();
    assert_eq!(
        (s.files, s.contents, s.chunks, s.stored_bytes),
        (0, 0, 0, 0)
    );
}

#[test]
fn whole_files_dedup_across_releases_and_organizations() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).unwrap();
    store.create_release("acme", "1.0", &["web"]).unwrap();
    store.create_release("acme", "2.0", &[]).unwrap();
    store.create_release("beta", "9", &["api"]).unwrap();
    let data = js_like(9, 300_000);
    let one_copy: u64 = chunk_set(&data, store.chunking()).values().sum();
    let keys = [
        ReleaseScope::project("acme", "web", "1.0").file("~/vendor.js", None),
        ReleaseScope::org_wide("acme", "2.0").file("~/vendor.js", Some("ios")),
        ReleaseScope::project("beta", "api", "9").file("lib/vendor.min.js", None),
    ];
    let files: Vec<_> = keys.iter().map(|k| put(&store, k, &data)).collect();
    let s = store.stats().unwrap();
    assert_eq!((s.files, s.contents, s.stored_bytes), (3, 1, one_copy));
    assert_eq!(s.logical_bytes, 3 * data.len() as u64);
    assert_eq!(
        store.contents_by_sha1(&files[0].sha1).unwrap(),
        [files[0].content_id]
    );

    assert_eq!(store.delete_release("acme", "1.0").unwrap(), 1);
    let s = store.stats().unwrap();
    assert_eq!((s.files, s.contents, s.stored_bytes), (2, 1, one_copy));
    for k in &keys[1..] {
        assert!(store.read(k).unwrap() == data, "{k} reads back");
    }
    assert_eq!(store.delete_release("acme", "2.0").unwrap(), 1);
    assert_eq!(store.delete_release("beta", "9").unwrap(), 1);
    let s = store.stats().unwrap();
    assert_eq!((s.files, s.contents, s.stored_bytes), (0, 0, one_copy));
    assert!(store.contents_by_sha1(&files[0].sha1).unwrap().is_empty());

    // Uploading it again while its chunk records await gc uses them: nothing is written twice.
    store.create_release("gamma", "1", &[]).unwrap();
    let again = put(
        &store,
        &ReleaseScope::org_wide("gamma", "1").file("v.js", None),
        &data,
    );
    assert_eq!(again.content_id, files[0].content_id);
    let s = store.stats().unwrap();
    assert_eq!((s.files, s.contents, s.stored_bytes), (1, 1, one_copy));
    assert!(read_all(&store, &again) == data);
}

/// Concurrent uploads of the same new content may each append its chunks; the first record of
/// each chunk wins, one upload creates the content and the others reference it. Refcounts end
/// exact, each chunk is counted once, and deleting everything then gc frees it all.
#[test]
fn concurrent_uploads_of_one_large_new_content_count_each_chunk_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).unwrap();
    store.create_release("acme", "1.0", &["web"]).unwrap();
    let scope = ReleaseScope::project("acme", "web", "1.0");
    let mut ids = Vec::new();
    let mut all_chunks = std::collections::HashSet::new();
    for round in 0..6u64 {
        // Each round a new ~2 MiB content (two append batches: the writer and recorder run).
        let data = js_like(100 + round, 2 * MIB);
        all_chunks.extend(chunk_set(&data, store.chunking()).into_keys());
        let files: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|t| {
                    let (store, scope, data) = (&store, &scope, &data);
                    s.spawn(move || {
                        put(store, &scope.file(&format!("r{round}/t{t}.js"), None), data)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for f in &files {
            assert_eq!(read_all(&store, f), data);
        }
        let s = store.stats().unwrap();
        assert_eq!(s.contents, round + 1, "one content per round");
        assert_eq!(
            s.chunks,
            all_chunks.len() as u64,
            "round {round}: one record per distinct chunk"
        );
        ids.extend(files.iter().map(|f| f.id));
        common::assert_refcounts_exact(&store, &format!("round {round}"));
    }
    assert!(store.verify(&mut |_| {}).unwrap().is_clean());
    for id in ids {
        store.delete_file(id).unwrap();
    }
    common::assert_collected(&store, "all deleted");
    let s = store.stats().unwrap();
    assert_eq!(
        (s.files, s.contents, s.chunks, s.stored_bytes),
        (0, 0, 0, 0)
    );
    assert!(store.verify(&mut |_| {}).unwrap().is_clean());
}

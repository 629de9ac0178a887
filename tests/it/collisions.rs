//! SHA-1 collisions and the Sentry file shape.
//!
//! The two public SHA-1 collision pairs (SHAttered's PDFs, Shambles' 640-byte messages) ship as
//! test data in the `sha1-checked` crate; `relstore_testkit::collision_data` finds them through
//! `cargo metadata`, never copied into this repository. SHA-1 is only the public checksum: files
//! that share it must stay two contents and each read back its own bytes.

use crate::common;

use crate::common::{options, read_all};
use relstore::{ListQuery, ReleaseScope, Store};
use relstore_testkit::collision_data;

fn read(dir: &std::path::Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

fn check_pair(a: &[u8], b: &[u8], expected_sha1: &str, names: [&str; 2]) {
    assert_ne!(a, b, "a collision pair differs");
    assert_eq!(common::sha1(a), common::sha1(b), "the pair collides");
    assert_eq!(common::sha1(a).to_string(), expected_sha1);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).unwrap();
    store.create_release("acme", "1.0", &["web"]).unwrap();
    let scope = ReleaseScope::project("acme", "web", "1.0");
    let fa = common::put(&store, &scope.file(names[0], None), a);
    let fb = common::put(&store, &scope.file(names[1], None), b);
    assert_eq!(fa.sha1_hex(), expected_sha1);
    assert_eq!(fb.sha1_hex(), expected_sha1);
    assert_ne!(fa.content_id, fb.content_id, "one SHA-1, two contents");
    assert!(
        read_all(&store, &fa) == a,
        "{} reads back its own bytes",
        names[0]
    );
    assert!(
        read_all(&store, &fb) == b,
        "{} reads back its own bytes",
        names[1]
    );
    let s = store.stats().unwrap();
    assert_eq!((s.files, s.contents), (2, 2));
    let mut by_sha1 = store.contents_by_sha1(&fa.sha1).unwrap();
    by_sha1.sort();
    let mut want = vec![fa.content_id, fb.content_id];
    want.sort();
    assert_eq!(by_sha1, want);
    // A checksum filter finds both.
    let listed = store
        .list_files(
            &scope,
            &ListQuery {
                checksums: vec![expected_sha1.to_string()],
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(listed.items.len(), 2);
    // Deleting one leaves the other intact.
    store.delete_file(fa.id).unwrap().unwrap();
    assert_eq!(store.contents_by_sha1(&fa.sha1).unwrap(), [fb.content_id]);
    assert!(read_all(&store, &fb) == b);
    // Uploading the same bytes again finds the existing content, not the other one.
    let again = common::put(&store, &scope.file("again", None), b);
    assert_eq!(again.content_id, fb.content_id);
    assert_eq!(store.stats().unwrap().contents, 1);
}

#[test]
fn shattered_pdfs_stay_two_contents() {
    let dir = collision_data();
    check_pair(
        &read(&dir, "shattered-1.pdf"),
        &read(&dir, "shattered-2.pdf"),
        "38762cf7f55934b34d179ae6a4c80cadccbb7f0a",
        ["shattered-1.pdf", "shattered-2.pdf"],
    );
}

#[test]
fn shambles_messages_stay_two_contents() {
    let dir = collision_data();
    let (a, b) = (read(&dir, "sha-mbles-1.bin"), read(&dir, "sha-mbles-2.bin"));
    assert_eq!((a.len(), b.len()), (640, 640));
    check_pair(
        &a,
        &b,
        "8ac60ba76f1999a1ab70223f225aefdc78d4ddc0",
        ["sha-mbles-1.bin", "sha-mbles-2.bin"],
    );
}

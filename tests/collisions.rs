//! SHA-1 collisions and the Sentry file shape.
//!
//! The two public SHA-1 collision pairs (SHAttered's PDFs, Shambles' 640-byte messages) ship as
//! test data in the `sha1-checked` crate; `relstore_testkit::collision_data` finds them through
//! `cargo metadata`, never copied into this repository. SHA-1 is only the public checksum: files
//! that share it must stay two contents and each read back its own bytes.

mod common;

use common::{options, read_all};
use relstore::{FileRecord, ListQuery, ReleaseScope, Store};
use relstore_testkit::collision_data;

fn read(dir: &std::path::Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

fn check_pair(a: &[u8], b: &[u8], expected_sha1: &str, names: [&str; 2]) {
    assert_ne!(a, b, "a collision pair differs");
    assert_eq!(common::sha1(a), common::sha1(b), "the pair collides");
    assert_eq!(relstore::hex(&common::sha1(a)), expected_sha1);
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

/// The example of Sentry's release-file docs: 20 bytes uploaded as `/demo/hello.py`.
#[test]
fn sentry_seed_example_has_its_documented_sha1_and_shape() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).unwrap();
    store.create_release("acme", "2da95dfb", &["demo"]).unwrap();
    let scope = ReleaseScope::project("acme", "demo", "2da95dfb");
    let body = br#"print "Hello World!""#;
    assert_eq!(body.len(), 20);
    let headers = vec![(
        "Content-Type".to_string(),
        "text/plain; encoding=utf-8".to_string(),
    )];
    let f = store
        .upload(
            &scope.file("/demo/hello.py", None),
            &headers,
            &mut &body[..],
            false,
        )
        .unwrap();
    assert_eq!(f.sha1_hex(), "7dc0876d778eae1093028f7bf368d0b95a53ec1a");
    assert_eq!(f.size, 20);

    let text = serde_json::to_string(&f).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let obj = v.as_object().expect("an object");
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    let mut want = vec![
        "id",
        "name",
        "dist",
        "headers",
        "size",
        "sha1",
        "dateCreated",
    ];
    want.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, want, "exactly Sentry's fields");
    // Field order as Sentry writes it.
    let positions: Vec<usize> = [
        "\"id\"",
        "\"name\"",
        "\"dist\"",
        "\"headers\"",
        "\"size\"",
        "\"sha1\"",
        "\"dateCreated\"",
    ]
    .iter()
    .map(|k| text.find(k).unwrap_or_else(|| panic!("{k} in {text}")))
    .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "field order in {text}"
    );
    assert_eq!(v["id"], serde_json::Value::String(f.id.to_string()));
    assert!(v["id"]
        .as_str()
        .unwrap()
        .bytes()
        .all(|b| b.is_ascii_digit()));
    assert_eq!(v["name"], "/demo/hello.py");
    assert!(v["dist"].is_null());
    assert_eq!(
        v["headers"],
        serde_json::json!({"Content-Type": "text/plain; encoding=utf-8"})
    );
    assert_eq!(v["size"], 20);
    assert_eq!(v["sha1"], "7dc0876d778eae1093028f7bf368d0b95a53ec1a");
    let date = v["dateCreated"].as_str().expect("dateCreated is a string");
    assert_date_shape(date);
    let parsed = humantime::parse_rfc3339(date).expect("RFC 3339");
    let ms = parsed
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert_eq!(
        ms, f.created_ms,
        "dateCreated is the creation time to the millisecond"
    );
    assert_eq!(
        common::read_all(&store, &f),
        body,
        "the seed file reads back"
    );

    // With a dist, `dist` is its string.
    let g: FileRecord = store
        .upload(
            &scope.file("/demo/hello.py", Some("42")),
            &[],
            &mut &body[..],
            false,
        )
        .unwrap();
    let v = serde_json::to_value(&g).unwrap();
    assert_eq!(v["dist"], "42");
    assert_eq!(v["headers"], serde_json::json!({}));
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn assert_date_shape(d: &str) {
    let b = d.as_bytes();
    assert_eq!(b.len(), 24, "{d}");
    for (i, c) in b.iter().enumerate() {
        let ok = match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        };
        assert!(ok, "{d}: unexpected {:?} at {i}", *c as char);
    }
}

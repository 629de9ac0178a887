//! API-level checks of the `Store`: typed validation errors, upload targets, overwrite and rename
//! semantics, list filters and keyset pagination, cursors, seekable reads, read modes, locking
//! and reopening.

use crate::common;

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use crate::common::{js_like, options, put};
use relstore::{
    Durability, Error, FileKey, FileRecord, ListQuery, ReadMode, ReleaseScope, Store, MAX_HEADERS,
};
use relstore_testkit::random_bytes_at;

fn open(dir: &std::path::Path) -> Store {
    Store::open(options(dir)).expect("open store")
}

/// A store with release `acme`/`1.0` linked to project `web`.
fn fixture() -> (tempfile::TempDir, Store, ReleaseScope) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.create_release("acme", "1.0", &["web"]).unwrap();
    (dir, store, ReleaseScope::project("acme", "web", "1.0"))
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A reader that counts how many times it was asked for bytes.
struct Counting<'a> {
    data: &'a [u8],
    reads: usize,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reads += 1;
        self.data.read(buf)
    }
}

fn list_all(store: &Store, scope: &ReleaseScope, q: &ListQuery) -> Vec<FileRecord> {
    let mut out = Vec::new();
    let mut q = q.clone();
    loop {
        let page = store.list_files(scope, &q).expect("list");
        assert!(page.items.len() <= q.limit.max(1), "page over its limit");
        out.extend(page.items);
        match page.next {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
}

fn names(files: &[FileRecord]) -> Vec<&str> {
    files.iter().map(|f| f.key.name.as_str()).collect()
}

#[track_caller]
fn assert_invalid(r: relstore::Result<impl std::fmt::Debug>, field: &str) {
    match r {
        Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected InvalidInput({field}), got {other:?}"),
    }
}

#[test]
fn validation_errors_are_typed_and_change_nothing() {
    let (_dir, store, scope) = fixture();
    let before = store.stats().unwrap();
    let up = |key: &FileKey, h: &[(String, String)]| {
        let mut data = Counting {
            data: b"x",
            reads: 0,
        };
        let r = store.upload(key, h, &mut data, false);
        assert_eq!(data.reads, 0, "a refused upload must not read its body");
        r
    };
    let ok = headers(&[("Content-Type", "text/javascript")]);
    assert_invalid(up(&scope.file("", None), &ok), "name");
    assert_invalid(up(&scope.file(&"a".repeat(1025), None), &ok), "name");
    for bad in [
        "a\nb.js",
        "a\rb",
        "tab\there",
        "nul\0",
        "del\u{7f}",
        "c1\u{85}",
    ] {
        assert_invalid(up(&scope.file(bad, None), &ok), "name");
    }
    assert_invalid(up(&scope.file("a.js", Some(&"d".repeat(65))), &ok), "dist");
    assert_invalid(up(&scope.file("a.js", Some("a\nb")), &ok), "dist");
    let many: Vec<(String, String)> = (0..=MAX_HEADERS)
        .map(|i| (format!("X-H{i}"), "v".into()))
        .collect();
    assert_invalid(up(&scope.file("a.js", None), &many), "headers");
    for bad in ["", "Content Type", "a:b", "Ünïcode", "x(y)", "a\"b"] {
        assert_invalid(
            up(&scope.file("a.js", None), &headers(&[(bad, "v")])),
            "header",
        );
    }
    for bad in ["a\r\nInjected: 1", "a\nb", "a\rb"] {
        assert_invalid(
            up(&scope.file("a.js", None), &headers(&[("X-Ok", bad)])),
            "header",
        );
    }
    assert_eq!(
        store.stats().unwrap(),
        before,
        "refused uploads changed the store"
    );
    assert!(store
        .list_files(&scope, &ListQuery::default())
        .unwrap()
        .items
        .is_empty());

    // The boundaries themselves are accepted.
    let exactly: Vec<(String, String)> = (0..MAX_HEADERS)
        .map(|i| (format!("X-H{i}"), "v".into()))
        .collect();
    let f = store
        .upload(
            &scope.file(&"n".repeat(1024), Some(&"d".repeat(64))),
            &exactly,
            &mut &b"ok"[..],
            false,
        )
        .unwrap();
    assert_eq!(f.headers.len(), MAX_HEADERS);

    // Rename validates too, and leaves the file where it was.
    assert_invalid(store.rename(f.id, "", None), "name");
    assert_invalid(store.rename(f.id, "x\ny", None), "name");
    assert_invalid(store.rename(f.id, "ok", Some(&"d".repeat(65))), "dist");
    assert_eq!(store.file_by_id(f.id).unwrap(), Some(f));

    // Release and slug validation.
    assert_invalid(store.create_release("acme", "", &[]), "version");
    assert_invalid(store.create_release("acme", "a/b", &[]), "version");
    assert_invalid(store.create_release("", "1.0", &[]), "org");
    assert_invalid(store.create_release("acme", "1.0", &["we/b"]), "project");
}

#[test]
fn uploads_need_an_existing_release_and_a_linked_project() {
    let (_dir, store, _scope) = fixture();
    store.create_release("acme", "2.0", &[]).unwrap();
    let cases = [
        ReleaseScope::project("acme", "web", "9.9"),
        ReleaseScope::org_wide("acme", "9.9"),
        ReleaseScope::project("other", "web", "1.0"),
        ReleaseScope::project("acme", "api", "1.0"),
        ReleaseScope::project("acme", "web", "2.0"),
    ];
    for scope in cases {
        let mut data = Counting {
            data: b"x",
            reads: 0,
        };
        let r = store.upload(&scope.file("a.js", None), &[], &mut data, false);
        assert!(matches!(r, Err(Error::NotFound { .. })), "{scope:?}: {r:?}");
        assert_eq!(data.reads, 0);
    }
    assert_eq!(store.stats().unwrap().files, 0);
    // The org-wide scope of an existing release takes files without any project link.
    put(
        &store,
        &ReleaseScope::org_wide("acme", "2.0").file("a.js", None),
        b"x",
    );
    // Linking the project makes the upload possible.
    store.create_release("acme", "2.0", &["web"]).unwrap();
    put(
        &store,
        &ReleaseScope::project("acme", "web", "2.0").file("a.js", None),
        b"x",
    );
    assert_eq!(store.stats().unwrap().files, 2);
}

#[test]
fn already_exists_without_overwrite_changes_nothing() {
    let (_dir, store, scope) = fixture();
    let key = scope.file("~/app.js", Some("web"));
    let first = store
        .upload(
            &key,
            &headers(&[("Content-Type", "a")]),
            &mut &b"one"[..],
            false,
        )
        .unwrap();
    let stats = store.stats().unwrap();
    let mut data = Counting {
        data: b"two, longer",
        reads: 0,
    };
    let r = store.upload(&key, &headers(&[("Content-Type", "b")]), &mut data, false);
    assert!(matches!(r, Err(Error::AlreadyExists { .. })), "{r:?}");
    assert_eq!(data.reads, 0, "a refused upload must not read its body");
    assert_eq!(store.file(&key).unwrap(), Some(first.clone()));
    assert_eq!(store.read(&key).unwrap(), b"one");
    assert_eq!(store.stats().unwrap(), stats);
    // The same name with another dist is another file.
    put(&store, &scope.file("~/app.js", None), b"three");
    assert_eq!(store.read(&key).unwrap(), b"one");
}

#[test]
fn overwrite_gives_a_new_id_and_the_old_id_is_gone() {
    let (_dir, store, scope) = fixture();
    let key = scope.file("~/app.js", None);
    let old = put(&store, &key, b"old bytes");
    let new = store
        .upload(
            &key,
            &headers(&[("X-New", "1")]),
            &mut &b"new bytes!"[..],
            true,
        )
        .unwrap();
    assert_ne!(new.id, old.id);
    assert_eq!(new.key, key);
    assert_eq!(new.size, 10);
    assert_eq!(new.header("x-new"), Some("1"));
    assert_eq!(store.file_by_id(old.id).unwrap(), None);
    assert_eq!(store.file_by_id(new.id).unwrap(), Some(new.clone()));
    assert_eq!(store.read(&key).unwrap(), b"new bytes!");
    assert!(matches!(
        store.rename(old.id, "x.js", None),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(store.delete_file(old.id).unwrap(), None);
    let s = store.stats().unwrap();
    assert_eq!((s.files, s.contents, s.logical_bytes), (1, 1, 10));
    assert_eq!(store.release("acme", "1.0").unwrap().unwrap().file_count, 1);
    // Overwriting with identical bytes keeps one content and still issues a new id.
    let again = store
        .upload(&key, &[], &mut &b"new bytes!"[..], true)
        .unwrap();
    assert_ne!(again.id, new.id);
    let s = store.stats().unwrap();
    assert_eq!((s.files, s.contents, s.logical_bytes), (1, 1, 10));
    assert_eq!(store.read(&key).unwrap(), b"new bytes!");
}

#[test]
fn rename_is_atomic_and_refuses_taken_names() {
    let (_dir, store, scope) = fixture();
    let a = put(&store, &scope.file("a.js", None), b"A");
    let b = put(&store, &scope.file("b.js", None), b"B");
    let r = store.rename(a.id, "b.js", None);
    assert!(matches!(r, Err(Error::AlreadyExists { .. })), "{r:?}");
    assert_eq!(store.file_by_id(a.id).unwrap(), Some(a.clone()));
    assert_eq!(store.file_by_id(b.id).unwrap(), Some(b.clone()));
    assert_eq!(store.read(&scope.file("b.js", None)).unwrap(), b"B");

    // A free name: the same id moves, the old name is free at once.
    let moved = store.rename(a.id, "c.js", Some("d1")).unwrap();
    assert_eq!(moved.id, a.id);
    assert_eq!(moved.key, scope.file("c.js", Some("d1")));
    assert_eq!(
        (moved.sha1, moved.size, &moved.headers),
        (a.sha1, a.size, &a.headers)
    );
    assert_eq!(store.file(&scope.file("a.js", None)).unwrap(), None);
    assert_eq!(store.file_by_id(a.id).unwrap(), Some(moved.clone()));
    assert_eq!(store.read(&moved.key).unwrap(), b"A");
    // Same name, other dist, is free; renaming onto itself is a no-op.
    store.rename(b.id, "c.js", None).unwrap();
    assert_eq!(store.rename(a.id, "c.js", Some("d1")).unwrap(), moved);
    // An empty dist means none.
    let r = store.rename(a.id, "c.js", Some(""));
    assert!(matches!(r, Err(Error::AlreadyExists { .. })), "{r:?}");
    put(&store, &scope.file("a.js", None), b"A2");
    let listed = store
        .list_files(
            &scope,
            &ListQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap();
    let got: Vec<_> = listed
        .items
        .iter()
        .map(|f| (f.key.name.as_str(), f.key.dist.as_deref()))
        .collect();
    assert_eq!(got, [("a.js", None), ("c.js", None), ("c.js", Some("d1"))]);
    assert!(matches!(
        store.rename(u64::MAX, "z.js", None),
        Err(Error::NotFound { .. })
    ));
    let s = store.stats().unwrap();
    assert_eq!((s.files, s.contents), (3, 3));
}

#[test]
fn list_filters_or_within_and_between() {
    let (_dir, store, scope) = fixture();
    let files = [
        ("~/static/App.js", &b"one"[..]),
        ("~/static/app.js.map", b"two"),
        ("~/vendor.JS", b"one"),
        ("index.html", b"three"),
        ("~/APP/main.css", b"two"),
    ];
    for (n, d) in files {
        put(&store, &scope.file(n, None), d);
    }
    let one = common::sha1(b"one");
    let two = common::sha1(b"two");
    let q = |queries: &[&str], sums: &[relstore::Sha1]| ListQuery {
        queries: queries.iter().map(|s| s.to_string()).collect(),
        checksums: sums.iter().map(|s| s.to_string()).collect(),
        cursor: None,
        limit: 2,
    };
    let run = |q: ListQuery| {
        let got = list_all(&store, &scope, &q);
        names(&got)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        run(q(&["APP"], &[])),
        ["~/APP/main.css", "~/static/App.js", "~/static/app.js.map"]
    );
    assert_eq!(
        run(q(&[".js"], &[])),
        ["~/static/App.js", "~/static/app.js.map", "~/vendor.JS"]
    );
    assert_eq!(
        run(q(&["html", "css"], &[])),
        ["index.html", "~/APP/main.css"]
    );
    assert_eq!(run(q(&["nothing"], &[])), Vec::<String>::new());
    assert_eq!(run(q(&[], &[one])), ["~/static/App.js", "~/vendor.JS"]);
    assert_eq!(
        run(q(&[], &[one, two])),
        [
            "~/APP/main.css",
            "~/static/App.js",
            "~/static/app.js.map",
            "~/vendor.JS"
        ]
    );
    assert_eq!(run(q(&["app"], &[one])), ["~/static/App.js"]);
    assert_eq!(
        run(q(&["app", "vendor"], &[two])),
        ["~/APP/main.css", "~/static/app.js.map"]
    );
    assert_eq!(run(q(&[], &[])).len(), 5);
    // Checksums are accepted in upper case; a malformed one is an input error.
    let upper = ListQuery {
        checksums: vec![one.to_string().to_uppercase()],
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.list_files(&scope, &upper).unwrap().items.len(), 2);
    for bad in ["xyz", "00", &"g".repeat(40)] {
        let r = store.list_files(
            &scope,
            &ListQuery {
                checksums: vec![bad.to_string()],
                limit: 10,
                ..Default::default()
            },
        );
        assert!(matches!(r, Err(Error::InvalidInput { .. })), "{bad}: {r:?}");
    }
}

#[test]
fn keyset_pagination_sees_every_file_once_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    // Batched: a thousand uploads need no thousand fsyncs to test pagination.
    let store = Store::open(options(dir.path()).durability(Durability::Batched {
        interval: Duration::from_millis(50),
    }))
    .unwrap();
    store
        .create_release("acme", "1.0", &["web", "api"])
        .unwrap();
    let scope = ReleaseScope::project("acme", "web", "1.0");
    // Neighbouring scopes whose files must never leak into the listing.
    put(
        &store,
        &ReleaseScope::project("acme", "api", "1.0").file("~/a.js", None),
        b"x",
    );
    put(
        &store,
        &ReleaseScope::org_wide("acme", "1.0").file("~/a.js", None),
        b"x",
    );
    let mut rng = common::Rng(7);
    let mut expected = BTreeSet::new();
    while expected.len() < 1000 {
        let name = format!(
            "~/{}/{}-{}.js",
            rng.pick(&["static", "assets", "a", "static/js", "Z", "é"]),
            rng.pick(&["app", "vendor", "main", "chunk"]),
            rng.below(400)
        );
        let dist = match rng.below(3) {
            0 => None,
            1 => Some("d1"),
            _ => Some("d2"),
        };
        let key = scope.file(&name, dist);
        if expected.insert((name.clone(), dist.map(str::to_owned))) {
            put(&store, &key, name.as_bytes());
        }
    }
    let mut seen = Vec::new();
    let mut q = ListQuery {
        limit: 7,
        ..Default::default()
    };
    let mut pages = 0;
    loop {
        let page = store.list_files(&scope, &q).unwrap();
        assert!(page.items.len() <= 7);
        assert!(
            !page.items.is_empty(),
            "an empty page with a cursor before it"
        );
        pages += 1;
        for f in &page.items {
            assert_eq!(f.key.scope(), scope);
            seen.push((f.key.name.clone(), f.key.dist.clone()));
        }
        match page.next {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 1000_usize.div_ceil(7));
    let want: Vec<_> = expected.into_iter().collect();
    assert_eq!(seen, want, "every file once, in (name, dist) order");
}

#[test]
fn tampered_cursors_are_refused() {
    let (_dir, store, scope) = fixture();
    store.create_release("acme", "1.0", &["api"]).unwrap();
    for i in 0..5 {
        put(&store, &scope.file(&format!("f{i}.js"), None), b"x");
    }
    let first = store
        .list_files(
            &scope,
            &ListQuery {
                limit: 2,
                ..Default::default()
            },
        )
        .unwrap();
    let cursor = first.next.expect("a second page");
    let with = |c: &str| ListQuery {
        cursor: Some(c.to_string()),
        limit: 2,
        ..Default::default()
    };
    let second = store.list_files(&scope, &with(&cursor)).unwrap();
    assert_eq!(names(&second.items), ["f2.js", "f3.js"]);
    let mut bad = vec![
        "zz".to_string(),
        "abc".to_string(),
        cursor[..cursor.len() - 2].to_string(),
        format!("{cursor}00"),
        format!("{}02", &cursor[..cursor.len() - 2]),
        "00".repeat(20),
        "not a cursor".to_string(),
    ];
    // A cursor of the same release in another scope.
    bad.push(cursor.clone());
    for (i, c) in bad.iter().enumerate() {
        let target = if i + 1 == bad.len() {
            ReleaseScope::project("acme", "api", "1.0")
        } else {
            scope.clone()
        };
        let r = store.list_files(&target, &with(c));
        assert!(
            matches!(r, Err(Error::InvalidCursor(_))),
            "cursor {c:?}: {:?}",
            r.map(|p| names(&p.items).join(","))
        );
    }
}

#[test]
fn read_and_seek_ranges_on_a_multi_chunk_file() {
    let (_dir, store, scope) = fixture();
    let mut data = vec![0u8; (1 << 20) + 12_345];
    random_bytes_at(3, 0, &mut data);
    let f = put(&store, &scope.file("big.bin", None), &data);
    assert!(common::chunk_lengths(&data, store.chunking()).len() > 20);
    let mut r = store.open_file(&f).unwrap();
    assert_eq!(r.size(), data.len() as u64);
    let mut rng = common::Rng(11);
    for _ in 0..200 {
        let start = rng.below(data.len() + 10);
        let len = rng.below(200_000);
        let at = r.seek(SeekFrom::Start(start as u64)).unwrap();
        assert_eq!(at, start as u64);
        let mut buf = vec![0u8; len];
        let mut got = 0;
        loop {
            let n = r.read(&mut buf[got..]).unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        let end = (start + len).min(data.len()).max(start);
        assert_eq!(got, end - start, "range {start}+{len}");
        assert_eq!(&buf[..got], &data[start.min(data.len())..end]);
    }
    // Relative seeks.
    r.seek(SeekFrom::End(-100)).unwrap();
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, &data[data.len() - 100..]);
    r.seek(SeekFrom::Start(50_000)).unwrap();
    assert_eq!(r.seek(SeekFrom::Current(-20_000)).unwrap(), 30_000);
    let mut buf = [0u8; 64];
    r.read_exact(&mut buf).unwrap();
    assert_eq!(&buf[..], &data[30_000..30_064]);
    assert_eq!(r.stream_position().unwrap(), 30_064);
    assert!(r.seek(SeekFrom::Current(-100_000)).is_err());
    assert!(r.seek(SeekFrom::End(-(data.len() as i64) - 1)).is_err());
    // The whole file in small reads.
    r.seek(SeekFrom::Start(0)).unwrap();
    let mut all = Vec::new();
    let mut small = [0u8; 777];
    loop {
        let n = r.read(&mut small).unwrap();
        if n == 0 {
            break;
        }
        all.extend_from_slice(&small[..n]);
    }
    assert_eq!(all, data);
    // Empty files read as empty.
    let empty = put(&store, &scope.file("empty", None), b"");
    assert_eq!(empty.size, 0);
    assert_eq!(common::read_all(&store, &empty), b"");
}

#[test]
fn pread_and_mmap_return_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let scope = ReleaseScope::project("acme", "web", "1.0");
    let mut files = Vec::new();
    {
        let store = Store::open(options(dir.path()).segment_max_bytes(64 << 10)).unwrap();
        store.create_release("acme", "1.0", &["web"]).unwrap();
        for i in 0..6u64 {
            let data = if i % 2 == 0 {
                js_like(i, 150_000 + i as usize * 10_000)
            } else {
                let mut d = vec![0u8; 200_000];
                random_bytes_at(i, 0, &mut d);
                d
            };
            let f = put(&store, &scope.file(&format!("f{i}"), None), &data);
            files.push((f, data));
        }
    }
    let segments = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        })
        .count();
    assert!(segments >= 5, "only {segments} segments: nothing sealed");
    for mode in [ReadMode::Mmap, ReadMode::Pread] {
        let store = Store::open(options(dir.path()).read_mode(mode)).unwrap();
        for (f, data) in &files {
            assert_eq!(&common::read_all(&store, f), data, "{mode:?} {}", f.key);
            let mut r = store.open_file(f).unwrap();
            r.seek(SeekFrom::Start(data.len() as u64 / 3)).unwrap();
            let mut buf = vec![0u8; 70_000];
            r.read_exact(&mut buf).unwrap();
            let s = data.len() / 3;
            assert_eq!(&buf[..], &data[s..s + 70_000]);
        }
    }
}

#[test]
fn a_second_store_on_the_same_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let again = Store::open(options(dir.path()));
    assert!(matches!(again, Err(Error::Locked { .. })), "{again:?}");
    // A clone shares the open store; dropping every handle releases the lock.
    let clone = store.clone();
    drop(store);
    assert!(matches!(
        Store::open(options(dir.path())),
        Err(Error::Locked { .. })
    ));
    drop(clone);
    open(dir.path());
}

#[test]
fn reopen_keeps_every_file_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let scopes = [
        ReleaseScope::project("acme", "web", "1.0"),
        ReleaseScope::org_wide("acme", "1.0"),
        ReleaseScope::project("beta", "web", "2.0"),
    ];
    let mut files = Vec::new();
    let stats;
    {
        let store = open(dir.path());
        store.create_release("acme", "1.0", &["web"]).unwrap();
        store.create_release("beta", "2.0", &["web"]).unwrap();
        for (i, s) in scopes.iter().enumerate() {
            for j in 0..4 {
                let data = js_like((i * 10 + j) as u64, 1000 * j * j);
                let f = store
                    .upload(
                        &s.file(&format!("~/f{j}.js"), (j % 2 == 1).then_some("d")),
                        &headers(&[("Content-Type", "text/javascript"), ("X-J", &j.to_string())]),
                        &mut &data[..],
                        false,
                    )
                    .unwrap();
                files.push((f, data));
            }
        }
        let gone = files.remove(3);
        store.delete_file(gone.0.id).unwrap().unwrap();
        let renamed = store.rename(files[0].0.id, "~/renamed.js", None).unwrap();
        files[0].0 = renamed;
        stats = store.stats().unwrap();
    }
    let store = open(dir.path());
    let s = store.stats().unwrap();
    assert_eq!(
        (
            s.files,
            s.contents,
            s.chunks,
            s.logical_bytes,
            s.stored_bytes
        ),
        (
            stats.files,
            stats.contents,
            stats.chunks,
            stats.logical_bytes,
            stats.stored_bytes
        )
    );
    for (f, data) in &files {
        assert_eq!(store.file(&f.key).unwrap().as_ref(), Some(f));
        assert_eq!(store.file_by_id(f.id).unwrap().as_ref(), Some(f));
        assert_eq!(&store.read(&f.key).unwrap(), data);
    }
    assert_eq!(store.release("beta", "2.0").unwrap().unwrap().file_count, 4);
    // Ids stay unique across the restart.
    let new = put(&store, &scopes[0].file("new.js", None), b"n");
    assert!(files.iter().all(|(f, _)| f.id != new.id));
}

/// Regression: with `Batched`, the flush thread holds the store for the length of each sync.
/// Dropping the last handle during one left the store locked (and the thread joining itself).
#[test]
fn dropping_a_batched_store_releases_it_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let scope = ReleaseScope::org_wide("acme", "1.0");
    let opts = options(dir.path()).durability(Durability::Batched {
        interval: Duration::from_millis(1),
    });
    for i in 0..100 {
        let store = Store::open(opts.clone())
            .unwrap_or_else(|e| panic!("reopen {i} after dropping the store: {e}"));
        store.create_release("acme", "1.0", &[]).unwrap();
        put(&store, &scope.file(&format!("f{i}"), None), &[i as u8; 100]);
        drop(store);
    }
    let store = Store::open(opts).unwrap();
    assert_eq!(store.stats().unwrap().files, 100);
}

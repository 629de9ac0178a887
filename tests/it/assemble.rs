//! Chunk upload and bundle assembly through the library API.

use std::io::{Cursor, Write};
use std::time::Duration;

use crate::common::sha1;
use relstore::{
    AssembleOutcome, AssembleRequest, Failure, ListQuery, ReleaseScope, Sha1, Store, StoreOptions,
};

fn js(n: usize, seed: u32) -> Vec<u8> {
    (0..n)
        .map(|i| {
            format!(
                "function f{i}_{}(a){{return a*{}+{seed};}}\n",
                i % 97,
                i % 13
            )
        })
        .collect::<String>()
        .into_bytes()
}

/// A source bundle: SYSB header, then a ZIP with manifest.json and files/.
fn bundle(files: &[(&str, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut manifest = serde_json::Map::new();
    for (i, (url, data, debug_id)) in files.iter().enumerate() {
        let path = format!("files/_/_/{i}");
        w.start_file(path.as_str(), opts).unwrap();
        w.write_all(data).unwrap();
        let mut headers = serde_json::Map::new();
        if let Some(d) = debug_id {
            headers.insert("debug-id".into(), (*d).into());
        }
        manifest.insert(
            path,
            serde_json::json!({"url": url, "type": "minified_source", "headers": headers}),
        );
    }
    w.start_file("manifest.json", opts).unwrap();
    w.write_all(
        serde_json::json!({"org": "acme", "files": manifest})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let mut out = b"SYSB\x02\x00\x00\x00".to_vec();
    out.extend_from_slice(&w.finish().unwrap().into_inner());
    out
}

fn pieces(b: &[u8], size: usize) -> Vec<(Sha1, Vec<u8>)> {
    b.chunks(size).map(|c| (sha1(c), c.to_vec())).collect()
}

fn upload_all(store: &Store, org: &str, ps: &[(Sha1, Vec<u8>)]) {
    let refs: Vec<(Sha1, &[u8])> = ps.iter().map(|(s, b)| (*s, b.as_slice())).collect();
    store.put_pieces(org, &refs).unwrap();
}

#[test]
fn assemble_projects_a_bundle_into_release_files_and_repeats_cheaply() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(dir.path())).unwrap();
    let app = js(40_000, 1);
    let map = js(60_000, 2);
    let b = bundle(&[
        (
            "~/app.js",
            &app,
            Some("AAAAAAAA-0000-0000-0000-000000000001"),
        ),
        ("~/app.js.map", &map, None),
    ]);
    let ps = pieces(&b, 16 << 10);
    assert!(ps.len() > 1, "several pieces");
    let checksum = sha1(&b);
    let ids: Vec<Sha1> = ps.iter().map(|(s, _)| *s).collect();
    let projects = vec!["web".to_string(), "api".to_string()];
    let req = AssembleRequest {
        org: "acme",
        checksum,
        pieces: &ids,
        projects: &projects,
        version: Some("1.0"),
        dist: None,
    };

    // Nothing uploaded yet: every piece is missing; an empty request is not_found with none.
    assert_eq!(
        store.assemble(&req).unwrap(),
        AssembleOutcome::Missing(ids.clone())
    );
    assert_eq!(
        store
            .assemble(&AssembleRequest {
                pieces: &[],
                ..req.clone()
            })
            .unwrap(),
        AssembleOutcome::Missing(vec![])
    );

    upload_all(&store, "acme", &ps[..1]);
    assert_eq!(
        store.missing_pieces("acme", &ids).unwrap(),
        ids[1..].to_vec()
    );
    // Another org owns nothing, although the bytes are stored once.
    assert_eq!(store.missing_pieces("other", &ids).unwrap(), ids.clone());
    upload_all(&store, "acme", &ps[1..]);
    assert!(store.missing_pieces("acme", &ids).unwrap().is_empty());

    assert_eq!(
        store.assemble(&req).unwrap(),
        AssembleOutcome::Ok { files: 4 }
    );
    for p in ["web", "api"] {
        let scope = ReleaseScope::project("acme", p, "1.0");
        let page = store
            .list_files(
                &scope,
                &ListQuery {
                    limit: 100,
                    ..Default::default()
                },
            )
            .unwrap();
        let names: Vec<&str> = page.items.iter().map(|f| f.key.name.as_str()).collect();
        assert_eq!(names, ["~/app.js", "~/app.js.map"]);
        assert_eq!(store.read(&scope.file("~/app.js", None)).unwrap(), app);
        assert_eq!(store.read(&scope.file("~/app.js.map", None)).unwrap(), map);
        assert_eq!(
            page.items[0].header("debug-id"),
            Some("AAAAAAAA-0000-0000-0000-000000000001")
        );
    }
    let found = store
        .bundle_entries_by_debug_id("aaaaaaaa-0000-0000-0000-000000000001")
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        store
            .open_content(&found[0].content_id)
            .unwrap()
            .read_to_vec()
            .unwrap(),
        app
    );

    // Delete the files, assemble the known checksum again: ok at once, files restored, and no
    // new bytes stored.
    let stored = store.stats().unwrap().stored_bytes;
    store
        .delete_files_in(&ReleaseScope::project("acme", "web", "1.0"))
        .unwrap();
    assert_eq!(
        store.assemble(&req).unwrap(),
        AssembleOutcome::Ok { files: 4 }
    );
    assert_eq!(
        store
            .read(&ReleaseScope::project("acme", "web", "1.0").file("~/app.js", None))
            .unwrap(),
        app
    );
    assert_eq!(store.stats().unwrap().stored_bytes, stored);
    let v = store.verify(&mut |_| {}).unwrap();
    assert!(v.is_clean(), "{v}");
}

#[test]
fn checksum_mismatch_and_invalid_bundles_fail_without_side_effects() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(dir.path())).unwrap();
    let projects = vec!["web".to_string()];
    let not_a_zip = js(10_000, 3);
    let ps = pieces(&not_a_zip, 64 << 10);
    let ids: Vec<Sha1> = ps.iter().map(|(s, _)| *s).collect();
    upload_all(&store, "acme", &ps);
    let wrong = AssembleRequest {
        org: "acme",
        checksum: Sha1::from_bytes([7; 20]),
        pieces: &ids,
        projects: &projects,
        version: Some("1.0"),
        dist: None,
    };
    assert_eq!(
        store.assemble(&wrong).unwrap(),
        AssembleOutcome::Failed(Failure::ChecksumMismatch)
    );
    let invalid = AssembleRequest {
        checksum: sha1(&not_a_zip),
        ..wrong.clone()
    };
    assert_eq!(
        store.assemble(&invalid).unwrap(),
        AssembleOutcome::Failed(Failure::InvalidBundle)
    );
    assert_eq!(store.stats().unwrap().files, 0);
    // A piece whose bytes do not match its name is refused, and nothing of the request is kept.
    let good = b"good piece".to_vec();
    let bad = b"bad piece".to_vec();
    let err = store
        .put_pieces(
            "acme",
            &[
                (sha1(&good), &good[..]),
                (Sha1::from_bytes([1; 20]), &bad[..]),
            ],
        )
        .unwrap_err();
    assert!(
        matches!(err, relstore::Error::ChecksumMismatch { .. }),
        "{err}"
    );
    assert_eq!(
        store.missing_pieces("acme", &[sha1(&good)]).unwrap(),
        vec![sha1(&good)]
    );
}

#[test]
fn gc_drops_pieces_after_the_grace_period_but_keeps_bundle_entries() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions::new(dir.path()).piece_grace(Duration::ZERO);
    let store = Store::open(opts).unwrap();
    let app = js(50_000, 4);
    let b = bundle(&[("~/app.js", &app, None)]);
    let ps = pieces(&b, 256 << 10);
    let ids: Vec<Sha1> = ps.iter().map(|(s, _)| *s).collect();
    upload_all(&store, "acme", &ps);
    let projects = vec!["web".to_string()];
    let req = AssembleRequest {
        org: "acme",
        checksum: sha1(&b),
        pieces: &ids,
        projects: &projects,
        version: Some("1.0"),
        dist: Some("d1"),
    };
    assert_eq!(
        store.assemble(&req).unwrap(),
        AssembleOutcome::Ok { files: 1 }
    );
    let report = store.gc(&mut |_| {}).unwrap();
    assert_eq!(
        (report.expired_pieces, report.expired_bundles),
        (ps.len() as u64, 1),
        "{report:?}"
    );
    assert_eq!(store.missing_pieces("acme", &ids).unwrap(), ids);
    let key = ReleaseScope::project("acme", "web", "1.0").file("~/app.js", Some("d1"));
    assert_eq!(store.read(&key).unwrap(), app);
    // The bundle record stays: a repeated assemble answers ok without the pieces.
    store
        .delete_files_in(&ReleaseScope::project("acme", "web", "1.0"))
        .unwrap();
    assert_eq!(
        store.assemble(&req).unwrap(),
        AssembleOutcome::Ok { files: 1 }
    );
    assert_eq!(store.read(&key).unwrap(), app);
    assert!(store.verify(&mut |_| {}).unwrap().is_clean());
}

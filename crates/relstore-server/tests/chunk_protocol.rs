//! Chunk upload and assembly over HTTP (contract section 4), through `oneshot`: every error text
//! of 4.2 and 4.3, the gzip bomb, malicious bundles, and the happy path.

use std::io::{Cursor, Write};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use relstore::{ReleaseScope, Store, StoreOptions};
use relstore_server::{app, AppState, Config};
use relstore_testkit::random_bytes;
use serde_json::{json, Value};
use sha1::Digest;
use tower::ServiceExt;

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    token: String,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(dir.path())).unwrap();
    store
        .create_release("acme", "0.0.1", &["web", "api"])
        .unwrap();
    let (token, _) = store.create_token("acme", &[], "test").unwrap();
    Env {
        _dir: dir,
        store,
        token,
    }
}

fn sha1_hex(b: &[u8]) -> String {
    relstore_testkit::hex(&sha1::Sha1::digest(b))
}

async fn call(e: &Env, config: Config, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let resp = app(AppState::new(e.store.clone(), config))
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status();
    (
        status,
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

fn multipart(parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "relstore-test-boundary";
    let mut body = Vec::new();
    for (field, filename, data) in parts {
        write!(body, "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").unwrap();
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_chunks(e: &Env, parts: &[(&str, &str, &[u8])]) -> (StatusCode, Value) {
    let (ct, body) = multipart(parts);
    let req = Request::post("/api/0/organizations/acme/chunk-upload/")
        .header("authorization", format!("Bearer {}", e.token))
        .header("content-type", ct)
        .body(Body::from(body))
        .unwrap();
    let (status, bytes) = call(e, Config::default(), req).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn assemble(e: &Env, body: Value) -> (StatusCode, Value) {
    let req = Request::post("/api/0/organizations/acme/artifactbundle/assemble/")
        .header("authorization", format!("Bearer {}", e.token))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, bytes) = call(e, Config::default(), req).await;
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn bundle(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    let mut manifest = serde_json::Map::new();
    for (i, (url, data)) in files.iter().enumerate() {
        let path = format!("files/_/_/{i}");
        w.start_file(path.as_str(), opts).unwrap();
        w.write_all(data).unwrap();
        manifest.insert(
            path,
            json!({"url": url, "type": "minified_source", "headers": {"sourcemap": "x.map"}}),
        );
    }
    w.start_file("manifest.json", opts).unwrap();
    w.write_all(json!({"files": manifest}).to_string().as_bytes())
        .unwrap();
    w.finish().unwrap().into_inner()
}

#[tokio::test]
async fn options_advertise_the_contract_and_legacy_mode_hides_them() {
    let e = env();
    let req = || {
        Request::get("/api/0/organizations/acme/chunk-upload/")
            .header("authorization", format!("Bearer {}", e.token))
            .header("host", "example.test:9000")
            .body(Body::empty())
            .unwrap()
    };
    let (status, body) = call(&e, Config::default(), req()).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["url"],
        "http://example.test:9000/api/0/organizations/acme/chunk-upload/"
    );
    assert_eq!(v["chunkSize"], 8388608);
    assert_eq!(v["chunksPerRequest"], 64);
    assert_eq!(v["maxRequestSize"], 33554432);
    assert_eq!(v["hashAlgorithm"], "sha1");
    assert_eq!(v["compression"], json!(["gzip"]));
    let accept: Vec<&str> = v["accept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for a in ["release_files", "artifact_bundles", "artifact_bundles_v2"] {
        assert!(accept.contains(&a), "{a}");
    }
    let legacy = Config {
        legacy_uploads: true,
        ..Config::default()
    };
    assert_eq!(call(&e, legacy, req()).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn chunk_upload_errors_in_contract_order_and_nothing_stored_on_failure() {
    let e = env();
    let good = b"a good chunk".to_vec();
    let good_name = sha1_hex(&good);
    // Too many chunks (65 parts).
    let names: Vec<String> = (0..65)
        .map(|i| sha1_hex(format!("{i}").as_bytes()))
        .collect();
    let datas: Vec<Vec<u8>> = (0..65).map(|i| format!("{i}").into_bytes()).collect();
    let parts: Vec<(&str, &str, &[u8])> = (0..65)
        .map(|i| ("file", names[i].as_str(), datas[i].as_slice()))
        .collect();
    assert_eq!(
        post_chunks(&e, &parts).await,
        (StatusCode::BAD_REQUEST, json!({"error": "Too many chunks"}))
    );
    // Request too large: > 32 MiB received in all.
    let big = vec![7u8; 5 << 20];
    let big_name = sha1_hex(&big);
    let parts: Vec<(&str, &str, &[u8])> = (0..7)
        .map(|_| ("file", big_name.as_str(), big.as_slice()))
        .collect();
    assert_eq!(
        post_chunks(&e, &parts).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "Request too large"})
        )
    );
    // maxRequestSize counts decoded bytes, as Sentry does: five gzip parts of 7 MiB each are
    // small on the wire and too large decoded.
    let sevens: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 7 << 20]).collect();
    let seven_names: Vec<String> = sevens.iter().map(|d| sha1_hex(d)).collect();
    let seven_gz: Vec<Vec<u8>> = sevens.iter().map(|d| gzip(d)).collect();
    let parts: Vec<(&str, &str, &[u8])> = (0..5)
        .map(|i| ("file_gzip", seven_names[i].as_str(), seven_gz[i].as_slice()))
        .collect();
    assert_eq!(
        post_chunks(&e, &parts).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "Request too large"})
        )
    );
    // ...and the precedence holds across parts: a checksum mismatch before an oversized part
    // answers `Chunk size too large`.
    let nine = vec![3u8; 9 << 20];
    assert_eq!(
        post_chunks(
            &e,
            &[
                ("file", &"0".repeat(40), b"other"),
                ("file", &sha1_hex(&nine), &nine)
            ]
        )
        .await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "Chunk size too large"})
        )
    );
    // Chunk size too large: a raw 9 MiB part, and a gzip bomb whose decoded size passes 8 MiB.
    let huge = vec![1u8; 9 << 20];
    let huge_name = sha1_hex(&huge);
    assert_eq!(
        post_chunks(&e, &[("file", &huge_name, &huge)]).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "Chunk size too large"})
        )
    );
    let bomb_src = vec![0u8; 64 << 20];
    let bomb = gzip(&bomb_src);
    assert!(bomb.len() < 256 << 10, "a real bomb: {} bytes", bomb.len());
    let bomb_name = sha1_hex(&bomb_src);
    assert_eq!(
        post_chunks(&e, &[("file_gzip", &bomb_name, &bomb)]).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "Chunk size too large"})
        )
    );
    // Checksum mismatch, with a good part first: the request stores none of its chunks.
    assert_eq!(
        post_chunks(
            &e,
            &[
                ("file", &good_name, &good),
                ("file", &"0".repeat(40), b"other")
            ]
        )
        .await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "Checksum mismatch"})
        )
    );
    assert_eq!(
        e.store
            .missing_pieces("acme", &[relstore::Sha1::of(&good)])
            .unwrap()
            .len(),
        1
    );
    // No parts: 200. Good parts (raw and gzip): 200, then owned.
    assert_eq!(post_chunks(&e, &[]).await.0, StatusCode::OK);
    let other = b"gzipped chunk".to_vec();
    let (status, _) = post_chunks(
        &e,
        &[
            ("file", &good_name, &good),
            ("file_gzip", &sha1_hex(&other), &gzip(&other)),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<relstore::Sha1> = vec![relstore::Sha1::of(&good), relstore::Sha1::of(&other)];
    assert!(e.store.missing_pieces("acme", &ids).unwrap().is_empty());

    // What sentry-cli 3.x sends: four full 8 MiB pieces (32 MiB decoded) gzipped, which makes
    // incompressible data slightly larger than 32 MiB on the wire. Accepted, and owned.
    let pieces: Vec<Vec<u8>> = (1..=4).map(|seed| random_bytes(seed, 8 << 20)).collect();
    let names: Vec<String> = pieces.iter().map(|p| sha1_hex(p)).collect();
    let gz: Vec<Vec<u8>> = pieces.iter().map(|p| gzip(p)).collect();
    assert!(
        gz.iter().map(Vec::len).sum::<usize>() > 32 << 20,
        "gzip grows random data"
    );
    let parts: Vec<(&str, &str, &[u8])> = (0..4)
        .map(|i| ("file_gzip", names[i].as_str(), gz[i].as_slice()))
        .collect();
    assert_eq!(post_chunks(&e, &parts).await.0, StatusCode::OK);
    let ids: Vec<relstore::Sha1> = pieces.iter().map(|p| relstore::Sha1::of(p)).collect();
    assert!(e.store.missing_pieces("acme", &ids).unwrap().is_empty());
}

#[tokio::test]
async fn assemble_states_errors_and_projection() {
    let e = env();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("~/app.js", b"console.log('app')".to_vec()),
        ("~/app.js.map", b"{\"version\":3}".to_vec()),
    ];
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(u, d)| (*u, d.as_slice())).collect();
    let b = bundle(&refs);
    let pieces: Vec<&[u8]> = b.chunks(100).collect();
    let names: Vec<String> = pieces.iter().map(|p| sha1_hex(p)).collect();
    let checksum = sha1_hex(&b);
    let req = |projects: Value| json!({"checksum": checksum, "chunks": names, "projects": projects, "version": "2.0", "dist": "d1"});

    // Schema and validation errors, with their texts.
    assert_eq!(
        assemble(&e, json!({"chunks": []})).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        assemble(&e, req(json!([]))).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "You need to specify at least one project"})
        )
    );
    assert_eq!(
        assemble(&e, req(json!(["nope"]))).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "One or more projects are invalid"})
        )
    );
    let no_version =
        json!({"checksum": checksum, "chunks": names, "projects": ["web"], "dist": "d1"});
    assert_eq!(
        assemble(&e, no_version).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "You need to specify a release together with a dist"})
        )
    );

    // Nothing uploaded: not_found with every chunk; `chunks: []` is not_found with none.
    let (status, v) = assemble(&e, req(json!(["web"]))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["state"], "not_found");
    assert_eq!(
        v["missingChunks"].as_array().unwrap().len(),
        names.iter().collect::<std::collections::HashSet<_>>().len()
    );
    let empty = json!({"checksum": checksum, "chunks": [], "projects": ["web"]});
    assert_eq!(
        assemble(&e, empty).await.1,
        json!({"state": "not_found", "missingChunks": [], "detail": null})
    );

    // Upload, assemble: ok, projected into both projects (web by slug, api by numeric id).
    let parts: Vec<(&str, &str, &[u8])> = pieces
        .iter()
        .zip(&names)
        .map(|(p, n)| ("file", n.as_str(), *p))
        .collect();
    assert_eq!(post_chunks(&e, &parts).await.0, StatusCode::OK);
    let api_id = e
        .store
        .projects("acme")
        .unwrap()
        .into_iter()
        .find(|p| p.slug == "api")
        .unwrap()
        .id;
    let (status, v) = assemble(&e, req(json!(["web", api_id]))).await;
    assert_eq!(
        (status, v["state"].as_str(), v["missingChunks"].clone()),
        (StatusCode::OK, Some("ok"), json!([]))
    );
    for p in ["web", "api"] {
        let scope = ReleaseScope::project("acme", p, "2.0");
        for (url, data) in &files {
            assert_eq!(
                &e.store.read(&scope.file(url, Some("d1"))).unwrap(),
                data,
                "{p} {url}"
            );
        }
    }
    // Again: ok at once.
    assert_eq!(assemble(&e, req(json!(["web"]))).await.1["state"], "ok");

    // A wrong checksum and an invalid bundle give state error with the contract's details.
    let junk = b"PK\x03\x04 not really a zip".to_vec();
    let junk_name = sha1_hex(&junk);
    assert_eq!(
        post_chunks(&e, &[("file", &junk_name, &junk)]).await.0,
        StatusCode::OK
    );
    let bad = json!({"checksum": "1".repeat(40), "chunks": [junk_name], "projects": ["web"], "version": "2.0"});
    assert_eq!(
        assemble(&e, bad).await.1,
        json!({"state": "error", "missingChunks": [], "detail": "Reported checksum mismatch"})
    );
    let invalid = json!({"checksum": junk_name, "chunks": [junk_name], "projects": ["web"], "version": "2.0"});
    assert_eq!(
        assemble(&e, invalid).await.1,
        json!({"state": "error", "missingChunks": [], "detail": "the bundle is invalid"})
    );
}

#[tokio::test]
async fn malicious_bundles_are_refused() {
    let e = env();
    let traversal = {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        w.start_file("files/../../etc/passwd", opts).unwrap();
        w.write_all(b"root").unwrap();
        w.start_file("manifest.json", opts).unwrap();
        w.write_all(br#"{"files":{"files/../../etc/passwd":{"url":"~/p"}}}"#)
            .unwrap();
        w.finish().unwrap().into_inner()
    };
    let outside = bundle(&[("~/a.js", b"a")]).into_iter().collect::<Vec<u8>>();
    let outside = {
        // Re-pack with an extra entry outside files/.
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        let mut src = zip::ZipArchive::new(Cursor::new(outside)).unwrap();
        for i in 0..src.len() {
            w.raw_copy_file(src.by_index_raw(i).unwrap()).unwrap();
        }
        w.start_file("evil.sh", opts).unwrap();
        w.write_all(b"rm -rf /").unwrap();
        w.finish().unwrap().into_inner()
    };
    let bomb = {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        w.start_file("files/z", opts).unwrap();
        w.write_all(&vec![0u8; 300 << 20]).unwrap();
        w.start_file("manifest.json", opts).unwrap();
        w.write_all(br#"{"files":{"files/z":{"url":"~/z"}}}"#)
            .unwrap();
        w.finish().unwrap().into_inner()
    };
    let huge_manifest = {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        w.start_file("manifest.json", opts).unwrap();
        w.write_all(format!("{{\"files\":{{}},\"pad\":\"{}\"}}", " ".repeat(20 << 20)).as_bytes())
            .unwrap();
        w.finish().unwrap().into_inner()
    };
    for (what, b) in [
        ("traversal", traversal),
        ("outside files/", outside),
        ("zip bomb", bomb),
        ("huge manifest", huge_manifest),
    ] {
        let pieces: Vec<&[u8]> = b.chunks(1 << 20).collect();
        let names: Vec<String> = pieces.iter().map(|p| sha1_hex(p)).collect();
        for (p, n) in pieces.iter().zip(&names) {
            assert_eq!(
                post_chunks(&e, &[("file", n, p)]).await.0,
                StatusCode::OK,
                "{what}"
            );
        }
        let body = json!({"checksum": sha1_hex(&b), "chunks": names, "projects": ["web"], "version": "0.0.1"});
        let (status, v) = assemble(&e, body).await;
        assert_eq!(status, StatusCode::OK, "{what}");
        assert_eq!(
            v,
            json!({"state": "error", "missingChunks": [], "detail": "the bundle is invalid"}),
            "{what}"
        );
    }
    assert_eq!(e.store.stats().unwrap().files, 0, "nothing projected");
}

//! Contract checks through `tower::ServiceExt::oneshot`: auth, error texts, 409s, pagination,
//! download headers and ranges.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use relstore_server::{app, AppState, Config};
use tower::ServiceExt;

struct T {
    state: AppState,
    token: String,
    _dir: tempfile::TempDir,
}

fn setup() -> T {
    let dir = tempfile::tempdir().unwrap();
    let store = relstore::Store::open_path(dir.path().join("d")).unwrap();
    let (token, _) = store.create_token("acme", &[], "").unwrap();
    store.create_release("acme", "1.0", &["web"]).unwrap();
    T {
        state: AppState::new(store, Config::default()),
        token,
        _dir: dir,
    }
}

async fn call(t: &T, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let r = app(t.state.clone()).oneshot(req).await.unwrap();
    let (p, b) = r.into_parts();
    (
        p.status,
        p.headers,
        b.collect().await.unwrap().to_bytes().to_vec(),
    )
}

fn req(t: &T, method: &str, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("Authorization", format!("Bearer {}", t.token))
}

fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let b = "XyZbOuNdArY";
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes(),
        );
        if let Some(f) = filename {
            body.extend_from_slice(
                format!("; filename=\"{f}\"\r\nContent-Type: text/plain").as_bytes(),
            );
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

const FILES: &str = "/api/0/projects/acme/web/releases/1.0/files/";

async fn upload(t: &T, parts: &[(&str, Option<&str>, &[u8])]) -> (StatusCode, serde_json::Value) {
    let (ct, body) = multipart(parts);
    let (s, h, b) = call(
        t,
        req(t, "POST", FILES)
            .header("Content-Type", ct)
            .body(Body::from(body))
            .unwrap(),
    )
    .await;
    assert_eq!(h["content-type"], "application/json");
    (s, serde_json::from_slice(&b).unwrap())
}

#[tokio::test]
async fn upload_errors_and_seed_example() {
    let t = setup();
    let hello: &[u8] = b"print \"Hello World!\"";
    let (s, v) = upload(&t, &[("name", None, b"x")]).await;
    assert_eq!(
        (s, v["detail"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Missing uploaded file"))
    );
    let (s, v) = upload(&t, &[("file", Some("file"), hello)]).await;
    assert_eq!(
        (s, v["detail"].as_str()),
        (StatusCode::BAD_REQUEST, Some("File name must be specified"))
    );
    let (_, v) = upload(&t, &[("file", Some("a"), hello), ("name", None, b"x/a\tb")]).await;
    assert_eq!(
        v["detail"],
        "File name must not contain special whitespace characters"
    );
    let (_, v) = upload(
        &t,
        &[("file", Some("a"), hello), ("header", None, b"nocolon")],
    )
    .await;
    assert_eq!(v["detail"], "header value was not formatted correctly");
    let (_, v) = upload(
        &t,
        &[("file", Some("a"), hello), ("header", None, b"K:a\x0bb")],
    )
    .await;
    assert_eq!(
        v["detail"],
        "header value must not contain special whitespace characters"
    );
    let (s, v) = upload(
        &t,
        &[
            ("file", Some("hello.py"), hello),
            ("name", None, b"/demo/hello.py"),
            ("header", None, b"Content-Type:text/plain; encoding=utf-8"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(v["name"], "/demo/hello.py");
    assert_eq!(v["dist"], serde_json::Value::Null);
    assert_eq!(v["size"], 20);
    assert_eq!(v["sha1"], "7dc0876d778eae1093028f7bf368d0b95a53ec1a");
    assert_eq!(v["headers"]["Content-Type"], "text/plain; encoding=utf-8");
    let (s, v) = upload(
        &t,
        &[
            ("file", Some("hello.py"), b"other"),
            ("name", None, b"/demo/hello.py"),
        ],
    )
    .await;
    assert_eq!(
        (s, v["detail"].as_str()),
        (
            StatusCode::CONFLICT,
            Some("A file matching this name already exists for the given release")
        )
    );
    // Download: headers, range, etag.
    let id = upload(&t, &[("file", Some("b.py"), hello)]).await.1["id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!("{FILES}{id}/?download=1");
    let (s, h, b) = call(&t, req(&t, "GET", &url).body(Body::empty()).unwrap()).await;
    assert_eq!((s, b.as_slice()), (StatusCode::OK, hello));
    assert_eq!(h["content-disposition"], "attachment; filename=\"b.py\"");
    assert_eq!(h["content-type"], "text/plain");
    assert_eq!(h["etag"], "\"7dc0876d778eae1093028f7bf368d0b95a53ec1a\"");
    let (s, h, b) = call(
        &t,
        req(&t, "GET", &url)
            .header("Range", "bytes=6-10")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, b.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &hello[6..=10])
    );
    assert_eq!(h["content-range"], "bytes 6-10/20");
    let (s, _, _) = call(
        &t,
        req(&t, "GET", &url)
            .header(
                "If-None-Match",
                "\"7dc0876d778eae1093028f7bf368d0b95a53ec1a\"",
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_MODIFIED);
    // Rename onto a taken name: 409.
    let (s, _, b) = call(
        &t,
        req(&t, "PUT", &format!("{FILES}{id}/"))
            .body(Body::from(r#"{"name": "/demo/hello.py"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{}", String::from_utf8_lossy(&b));
    let (s, _, _) = call(
        &t,
        req(&t, "PUT", &format!("{FILES}abc/"))
            .body(Body::from(r#"{"name": "x"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn auth_401_403_404() {
    let t = setup();
    let (s, _, b) = call(&t, Request::get(FILES).body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        b,
        br#"{"detail":"Authentication credentials were not provided."}"#
    );
    let (s, _, b) = call(
        &t,
        Request::get(FILES)
            .header("Authorization", format!("Bearer {}", "0".repeat(64)))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, b.as_slice()),
        (
            StatusCode::UNAUTHORIZED,
            &br#"{"detail":"Invalid token"}"#[..]
        )
    );
    let other = t.state.store.create_token("other", &[], "").unwrap().0;
    let (s, _, _) = call(
        &t,
        Request::get(FILES)
            .header("Authorization", format!("Bearer {other}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let ro = t
        .state
        .store
        .create_token("acme", &["project:read".into()], "")
        .unwrap()
        .0;
    let (s, _, _) = call(
        &t,
        Request::delete("/api/0/organizations/acme/releases/1.0/")
            .header("Authorization", format!("Bearer {ro}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:", t.token));
    let (s, _, _) = call(
        &t,
        Request::get(FILES)
            .header("Authorization", format!("Basic {basic}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn pagination_sees_every_file_once() {
    let t = setup();
    let scope = relstore::ReleaseScope::project("acme", "web", "1.0");
    for i in 0..53 {
        t.state
            .store
            .upload(
                &scope.file(&format!("~/f{i:03}.js"), None),
                &[],
                &mut &b"x"[..],
                false,
            )
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (s, h, b) = call(
            &t,
            req(&t, "GET", &format!("{FILES}?per_page=10&cursor={cursor}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let v: Vec<serde_json::Value> = serde_json::from_slice(&b).unwrap();
        seen.extend(v.iter().map(|f| f["name"].as_str().unwrap().to_string()));
        let link = h["link"].to_str().unwrap().to_string();
        let next = link.split(", ").nth(1).unwrap();
        assert!(next.contains("per_page=10&cursor="), "{link}");
        if next.contains("results=\"false\"") {
            break;
        }
        cursor = next
            .rsplit("cursor=\"")
            .next()
            .unwrap()
            .trim_end_matches('"')
            .to_string();
    }
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(seen.len(), 53);
    assert_eq!(sorted.len(), 53);
    let (s, _, _) = call(
        &t,
        req(&t, "GET", &format!("{FILES}?per_page=0"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = call(
        &t,
        req(&t, "GET", &format!("{FILES}?cursor=zz"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

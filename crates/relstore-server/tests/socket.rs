//! The server over a real loopback socket: a restart keeps every file with its id, checksum,
//! headers and bytes; the SHA-1 collision pairs uploaded over HTTP each read back their own
//! bytes; a graceful shutdown stops accepting connections but finishes an upload in flight,
//! which is then durable.

mod net_support;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use net_support::{
    client, create_release, download, file_part_frame, list_all, serve_release, sha1_hex, upload,
    Server, Upload,
};
use relstore::Store;
use relstore_server::Config;
use relstore_testkit::{collision_data, random_bytes_at, splitmix};
use reqwest::StatusCode;
use serde_json::Value;
use sha1::Digest;

/// What the test expects of one stored file: the JSON the server answered and the bytes.
struct Expected {
    json: Value,
    bytes: Vec<u8>,
}

/// Text content that shares most of its bytes with its siblings (`seed` varies a banner).
fn js(seed: u64, len: usize) -> Vec<u8> {
    let mut out = format!("/*! build {seed} */\n").into_bytes();
    let mut i = 0u64;
    while out.len() < len {
        let v = splitmix(i % 997);
        out.extend_from_slice(
            format!("var a{}=function(e){{return e*{}}};\n", v % 89, v).as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_every_file_with_its_id_sha1_headers_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = Store::open_path(&data).unwrap();
    let (token, _) = store.create_token("acme", &[], "").unwrap();
    let server = Server::start(store, Config::default());
    let base = server.url();
    let c = client();

    create_release(&c, &base, &token, "acme", Some("web"), "1.0").await;
    create_release(&c, &base, &token, "acme", Some("web"), "1.1").await;
    create_release(&c, &base, &token, "acme", Some("api"), "1.1").await;
    create_release(&c, &base, &token, "acme", None, "org-2.0").await;
    let scopes = [
        format!("{base}/api/0/projects/acme/web/releases/1.0/files/"),
        format!("{base}/api/0/projects/acme/web/releases/1.1/files/"),
        format!("{base}/api/0/projects/acme/api/releases/1.1/files/"),
        format!("{base}/api/0/organizations/acme/releases/1.1/files/"),
        format!("{base}/api/0/organizations/acme/releases/org-2.0/files/"),
    ];
    // (scope URL, id) -> what must survive.
    let mut expected: BTreeMap<(usize, String), Expected> = BTreeMap::new();
    let mut n = 0u64;
    for (si, url) in scopes.iter().enumerate() {
        for (name, dist, len) in [
            ("~/static/app.js", None, 40_000),
            ("~/static/app.js", Some("android"), 40_000),
            ("~/static/app.js.map", None, 300_000),
            ("~/static/vendor.js", None, 5),
        ] {
            n += 1;
            let bytes = js(n % 3, len);
            let banner = format!("X-Build: {n}");
            let (s, v) = upload(
                &c,
                &token,
                url,
                Upload {
                    name,
                    dist,
                    content_type: "application/javascript",
                    headers: &["Sourcemap: app.js.map", &banner],
                    bytes: bytes.clone(),
                },
            )
            .await;
            assert_eq!(s, StatusCode::CREATED, "{url} {name}: {v}");
            assert_eq!(v["sha1"], sha1_hex(&bytes));
            assert_eq!(v["headers"]["X-Build"], n.to_string());
            let id = v["id"].as_str().expect("string id").to_owned();
            expected.insert((si, id), Expected { json: v, bytes });
        }
    }
    // A rename and a delete must survive the restart too.
    let (si, id) = expected.keys().nth(1).cloned().unwrap();
    let r = c
        .put(format!("{}{id}/", scopes[si]))
        .bearer_auth(&token)
        .header("Content-Type", "application/json")
        .body(r#"{"name": "~/static/renamed.js"}"#)
        .send()
        .await
        .unwrap();
    let (s, v) = net_support::json_of(r).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["id"], id.as_str());
    expected.get_mut(&(si, id)).unwrap().json = v;
    let (si, id) = expected.keys().nth(6).cloned().unwrap();
    let r = c
        .delete(format!("{}{id}/", scopes[si]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    expected.remove(&(si, id));

    server.stop().expect("serve returned an error");
    // The first server released the store: the directory opens again in this process.
    let store = Store::open_path(&data).expect("reopen after the server stopped");
    let server = Server::start(store, Config::default());
    let base2 = server.url();
    let c = client();
    let mut seen = 0;
    for (si, url) in scopes.iter().enumerate() {
        let url = url.replace(&base, &base2);
        // Small pages, so the restarted server's cursors are exercised too.
        let listed = list_all(&c, &token, &format!("{url}?per_page=2")).await;
        let want: Vec<&Value> = expected
            .iter()
            .filter(|((s, _), _)| *s == si)
            .map(|(_, e)| &e.json)
            .collect();
        assert_eq!(
            listed.len(),
            want.len(),
            "{url}: listed {listed:?}, expected {want:?}"
        );
        for item in &listed {
            let id = item["id"].as_str().expect("string id").to_owned();
            let e = expected
                .get(&(si, id.clone()))
                .unwrap_or_else(|| panic!("{url}: unexpected file {item}"));
            // Id, name, dist, headers, size, sha1 and dateCreated, field for field.
            assert_eq!(item, &e.json, "{url}: file {id} changed across the restart");
            let got = download(&c, &token, &url, &id).await;
            assert!(got == e.bytes, "{url}: file {id} reads back other bytes");
            seen += 1;
        }
    }
    assert_eq!(seen, expected.len());
    // Ids are never handed out twice, across restarts too.
    let (s, v) = upload(
        &c,
        &token,
        &scopes[0].replace(&base, &base2),
        Upload {
            name: "after-restart.js",
            dist: None,
            content_type: "text/plain",
            headers: &[],
            bytes: b"new".to_vec(),
        },
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let new_id = v["id"].as_str().unwrap();
    let max_old = expected
        .keys()
        .map(|(_, id)| id.parse::<u64>().unwrap())
        .max()
        .unwrap();
    assert!(
        new_id.parse::<u64>().unwrap() > max_old,
        "id {new_id} reused after restart"
    );
    server.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha1_collision_pairs_over_http_each_read_back_their_own_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token, url) = serve_release(dir.path());
    let c = client();
    let data = collision_data();
    for (pair, sha1) in [
        (
            ["shattered-1.pdf", "shattered-2.pdf"],
            "38762cf7f55934b34d179ae6a4c80cadccbb7f0a",
        ),
        (
            ["sha-mbles-1.bin", "sha-mbles-2.bin"],
            "8ac60ba76f1999a1ab70223f225aefdc78d4ddc0",
        ),
    ] {
        let bytes: Vec<Vec<u8>> = pair
            .iter()
            .map(|f| std::fs::read(data.join(f)).unwrap())
            .collect();
        assert_ne!(bytes[0], bytes[1], "a collision pair differs");
        let mut ids = Vec::new();
        for (name, b) in pair.iter().zip(&bytes) {
            let (s, v) = upload(
                &c,
                &token,
                &url,
                Upload {
                    name,
                    dist: None,
                    content_type: "application/octet-stream",
                    headers: &[],
                    bytes: b.clone(),
                },
            )
            .await;
            assert_eq!(s, StatusCode::CREATED, "{name}: {v}");
            assert_eq!(v["sha1"], sha1, "{name}");
            assert_eq!(v["size"], b.len() as u64, "{name}");
            ids.push(v["id"].as_str().unwrap().to_owned());
        }
        assert_ne!(ids[0], ids[1]);
        for ((name, b), id) in pair.iter().zip(&bytes).zip(&ids) {
            let got = download(&c, &token, &url, id).await;
            assert!(&got == b, "{name} does not read back its own bytes");
        }
        // The checksum filter finds both files of the pair.
        let listed = list_all(&c, &token, &format!("{url}?checksum={sha1}")).await;
        let mut got: Vec<&str> = listed.iter().map(|v| v["id"].as_str().unwrap()).collect();
        got.sort();
        let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
        want.sort();
        assert_eq!(got, want, "checksum={sha1}");
    }
    server.stop().unwrap();
}

/// The most a TCP connection can carry that its server has not read: the largest send and
/// receive buffers the kernel allows (`/proc/sys/net/...`), plus room for the client's own
/// buffers. Once the client has handed over more than this, the server has read the request.
fn unread_bound() -> u64 {
    let read_max = |path: &str| -> u64 {
        let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        s.split_whitespace()
            .last()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{path}: unparsable {s:?}"))
    };
    let snd = read_max("/proc/sys/net/ipv4/tcp_wmem").max(read_max("/proc/sys/net/core/wmem_max"));
    let rcv = read_max("/proc/sys/net/ipv4/tcp_rmem").max(read_max("/proc/sys/net/core/rmem_max"));
    snd + rcv + (8 << 20)
}

fn refused(addr: std::net::SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(_) => false,
        // A connection that reached the listener's backlog as the listener closed is reset:
        // the shutdown is under way but not settled. Ask again; the next one must be refused.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
        Err(e) => {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "connecting after shutdown: {e}"
            );
            true
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_an_upload_in_flight_and_refuses_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, token, url) = serve_release(dir.path());
    let addr = server.addr;

    // The body streams from a channel this test feeds, so the test decides when it ends.
    const PIECE: usize = 256 << 10;
    let before_shutdown = unread_bound().div_ceil(PIECE as u64) * PIECE as u64;
    let total = before_shutdown + (4 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let boundary = "sHuTdOwNbOuNdArY";
    let (head, tail) = file_part_frame(boundary, "big.bin");
    let request = tokio::spawn(
        client()
            .post(&url)
            .bearer_auth(&token)
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header(
                "Content-Length",
                (head.len() as u64 + total + tail.len() as u64).to_string(),
            )
            .body(body)
            .send(),
    );
    tx.send(Ok(Bytes::from(head))).await.unwrap();
    let mut sha1 = sha1::Sha1::new();
    let mut sent = 0u64;
    // The next piece of the file, generated when needed (the body is never held whole).
    let mut next_piece = || {
        let mut b = vec![0u8; PIECE];
        random_bytes_at(0x5107, sent, &mut b);
        sha1.update(&b);
        sent += PIECE as u64;
        (Bytes::from(b), sent)
    };
    // With a channel of one, each send returns once the client took the previous piece, so
    // after this loop the client has handed over more than the connection can hold unread: the
    // server has accepted the connection and is reading the upload.
    loop {
        let (p, upto) = next_piece();
        tx.send(Ok(p)).await.expect("the request is still sending");
        if upto >= before_shutdown {
            break;
        }
    }
    assert!(!request.is_finished(), "the upload must still be in flight");

    server.begin_shutdown();
    // The listener closes while the upload is still open: new connections are refused.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !refused(addr) {
        assert!(
            Instant::now() < deadline,
            "the server still accepts connections 60 s after shutdown began"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!request.is_finished(), "the upload must still be in flight");

    // Finish the body: the server answers it in full.
    loop {
        let (p, upto) = next_piece();
        tx.send(Ok(p)).await.expect("the request is still sending");
        if upto >= total {
            break;
        }
    }
    tx.send(Ok(Bytes::from(tail))).await.unwrap();
    drop(tx);
    let resp = request.await.unwrap().expect("the upload got an answer");
    let (s, v) = net_support::json_of(resp).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let want_sha1 = relstore_testkit::hex(&sha1.finalize());
    assert_eq!(v["sha1"], want_sha1.as_str());
    assert_eq!(v["size"], total);

    server.stop().expect("serve returned an error");
    assert!(refused(addr), "a connection after shutdown must be refused");

    // Durable: the reopened store has the file, byte for byte.
    let store = Store::open_path(&data).expect("reopen after shutdown");
    let id: u64 = v["id"].as_str().unwrap().parse().unwrap();
    let file = store
        .file_by_id(id)
        .unwrap()
        .expect("the acknowledged file");
    assert_eq!(file.sha1_hex(), want_sha1);
    let mut r = store.open_file(&file).unwrap();
    let mut h = sha1::Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n_read = 0u64;
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        n_read += n as u64;
    }
    assert_eq!(n_read, total);
    assert_eq!(relstore_testkit::hex(&h.finalize()), want_sha1);
}

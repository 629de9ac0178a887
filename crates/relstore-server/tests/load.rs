//! Load: 16 concurrent clients upload and list against one server on loopback for a bounded
//! time (20 s; `RELSTORE_LOAD_SECS` overrides it), then every acknowledged upload is verified
//! through the API. Prints requests per second and p50/p99 latencies; asserts correctness only,
//! never time.
//!
//! Figures: `cargo test --release -p relstore-server --test load -- --nocapture`.

mod net_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use net_support::{client, download, list_all, sha1_hex, upload, Server, Upload};
use relstore::Store;
use relstore_server::Config;
use relstore_testkit::splitmix;
use reqwest::StatusCode;

const CLIENTS: u64 = 16;
const RELEASES: u64 = 4;
const MAX_SIZE: usize = 200 << 10;

/// One acknowledged upload: enough to regenerate its bytes and find it again.
#[derive(Clone, Debug)]
struct Acked {
    release: u64,
    client: u64,
    seq: u64,
    id: String,
    sha1: String,
}

/// What one client did.
#[derive(Default)]
struct Tally {
    acked: Vec<Acked>,
    upload_lat: Vec<Duration>,
    list_lat: Vec<Duration>,
}

/// Text shared by every upload: releases re-upload nearly the same bundles.
fn base_text() -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_SIZE + 64);
    let mut i = 0u64;
    while out.len() < MAX_SIZE {
        let v = splitmix(i % 4093);
        out.extend_from_slice(
            format!(
                "function f{}(e,t){{return e.map(function(n){{return n*{}+t}})}};\n",
                v % 1000,
                v % 97
            )
            .as_bytes(),
        );
        i += 1;
    }
    out
}

/// Upload `seq` of `client`: its release, size (1..=200 KiB) and bytes (a banner of its own,
/// then a prefix of the shared text).
fn planned(base: &[u8], client: u64, seq: u64) -> (u64, Vec<u8>) {
    let r = splitmix((client << 32) | seq);
    let size = 1024 + (r % (MAX_SIZE as u64 - 1023)) as usize;
    let mut b = format!("/*! client {client} upload {seq} */\n").into_bytes();
    let need = size.saturating_sub(b.len());
    b.extend_from_slice(&base[..need]);
    b.truncate(size);
    ((r >> 20) % RELEASES, b)
}

fn files_url(base_url: &str, release: u64) -> String {
    format!("{base_url}/api/0/projects/acme/web/releases/load-{release}/files/")
}

fn name_of(client: u64, seq: u64) -> String {
    format!("~/static/c{client}/chunk-{seq}.js")
}

async fn run_client(
    base_url: String,
    token: String,
    text: Arc<Vec<u8>>,
    client_no: u64,
    deadline: Instant,
) -> Tally {
    let c = client();
    let mut t = Tally::default();
    let mut seq = 0u64;
    while Instant::now() < deadline {
        seq += 1;
        let (release, bytes) = planned(&text, client_no, seq);
        let sha1 = sha1_hex(&bytes);
        let url = files_url(&base_url, release);
        let name = name_of(client_no, seq);
        let started = Instant::now();
        let (s, v) = upload(
            &c,
            &token,
            &url,
            Upload {
                name: &name,
                dist: None,
                content_type: "application/javascript",
                headers: &[],
                bytes,
            },
        )
        .await;
        t.upload_lat.push(started.elapsed());
        assert_eq!(
            s,
            StatusCode::CREATED,
            "client {client_no} upload {seq}: {v}"
        );
        assert_eq!(v["sha1"], sha1.as_str(), "client {client_no} upload {seq}");
        assert_eq!(v["name"], name.as_str());
        t.acked.push(Acked {
            release,
            client: client_no,
            seq,
            id: v["id"].as_str().expect("string id").to_owned(),
            sha1,
        });

        let list = format!(
            "{}?per_page=100",
            files_url(&base_url, (seq + client_no) % RELEASES)
        );
        let started = Instant::now();
        let r = c
            .get(&list)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {list}: {e}"));
        let (s, v) = net_support::json_of(r).await;
        t.list_lat.push(started.elapsed());
        assert_eq!(s, StatusCode::OK, "GET {list}: {v}");
        assert!(v.as_array().expect("a list").len() <= 100);
    }
    t
}

fn percentile(sorted: &[Duration], p: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = (sorted.len() * p / 100).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_clients_upload_and_list_then_every_acknowledged_file_verifies() {
    let secs: u64 = match std::env::var("RELSTORE_LOAD_SECS") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("RELSTORE_LOAD_SECS={s:?} is not a number of seconds")),
        Err(_) => 20,
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_path(dir.path().join("data")).unwrap();
    let (token, _) = store.create_token("acme", &[], "").unwrap();
    for r in 0..RELEASES {
        store
            .create_release("acme", &format!("load-{r}"), &["web"])
            .unwrap();
    }
    let server = Server::start(store, Config::default());
    let base_url = server.url();
    let text = Arc::new(base_text());

    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|k| {
            tokio::spawn(run_client(
                base_url.clone(),
                token.clone(),
                text.clone(),
                k,
                deadline,
            ))
        })
        .collect();
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await.expect("a client failed");
        all.acked.extend(t.acked);
        all.upload_lat.extend(t.upload_lat);
        all.list_lat.extend(t.list_lat);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.upload_lat.sort();
    all.list_lat.sort();
    let (nu, nl) = (all.upload_lat.len(), all.list_lat.len());
    let uploaded_bytes: u64 = all
        .acked
        .iter()
        .map(|a| planned(&text, a.client, a.seq).1.len() as u64)
        .sum();
    println!(
        "load: {CLIENTS} clients, {elapsed:.1} s: {:.0} requests/s ({nu} uploads = {:.0}/s, \
         {:.1} MiB/s; {nl} lists = {:.0}/s)",
        (nu + nl) as f64 / elapsed,
        nu as f64 / elapsed,
        uploaded_bytes as f64 / (1 << 20) as f64 / elapsed,
        nl as f64 / elapsed,
    );
    println!(
        "load: upload latency p50 {:.1} ms, p99 {:.1} ms; list latency p50 {:.1} ms, p99 {:.1} ms",
        percentile(&all.upload_lat, 50),
        percentile(&all.upload_lat, 99),
        percentile(&all.list_lat, 50),
        percentile(&all.list_lat, 99),
    );
    assert!(
        nu >= CLIENTS as usize,
        "every client uploaded at least once"
    );

    // Every acknowledged upload reads back its own bytes, and each release lists exactly the
    // acknowledged files (none lost, none extra).
    let verify_started = Instant::now();
    let c = client();
    let mut by_release: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for a in &all.acked {
        by_release
            .entry(a.release)
            .or_default()
            .insert(a.id.clone());
    }
    let checks = futures::stream::iter(all.acked.iter().cloned())
        .map(|a| {
            let (c, token, text, base_url) = (&c, &token, &text, &base_url);
            async move {
                let got = download(c, token, &files_url(base_url, a.release), &a.id).await;
                let (_, want) = planned(text, a.client, a.seq);
                assert!(
                    got == want,
                    "file {} (client {} upload {}) reads back other bytes",
                    a.id,
                    a.client,
                    a.seq
                );
                assert_eq!(sha1_hex(&got), a.sha1, "file {}", a.id);
            }
        })
        .buffer_unordered(8);
    checks.collect::<Vec<()>>().await;
    for r in 0..RELEASES {
        let listed = list_all(
            &c,
            &token,
            &format!("{}?per_page=1000", files_url(&base_url, r)),
        )
        .await;
        let ids: BTreeSet<String> = listed
            .iter()
            .map(|v| v["id"].as_str().expect("string id").to_owned())
            .collect();
        assert_eq!(
            ids.len(),
            listed.len(),
            "release load-{r} lists a file twice"
        );
        assert_eq!(
            ids,
            by_release.remove(&r).unwrap_or_default(),
            "release load-{r} lists other files than were acknowledged"
        );
    }
    println!(
        "load: verified {nu} acknowledged uploads in {:.1} s",
        verify_started.elapsed().as_secs_f64()
    );
    server.stop().unwrap();
}

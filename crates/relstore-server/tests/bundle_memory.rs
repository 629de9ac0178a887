//! A 1 GiB source bundle uploaded over a real socket the way sentry-cli does it (pieces of
//! `chunkSize` named by SHA-1, batched up to `chunksPerRequest` / `maxRequestSize`, sent
//! `concurrency` requests at a time, then `artifactbundle/assemble` polled until `ok`), with the
//! process's peak resident memory (VmHWM) kept under 256 MiB.
//!
//! This binary holds exactly one test, so VmHWM is the server's (plus a client that streams
//! every piece from the bundle file and never holds more than a read buffer). The bundle is
//! generated on disk, never in memory. Measured (debug build): ~130 MiB during the upload
//! (of which sled's page cache, 64 MiB by default, fills as the index grows) and ~215 MiB at the
//! end of assembly; before chunk-upload requests were streamed into the store, 8 concurrent
//! requests buffering 32 MiB each took the upload to ~430 MiB.

mod cli_support;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cli_support::Server;
use futures::StreamExt;
use relstore::{ListQuery, ReleaseScope, Store, StoreOptions};
use relstore_testkit::{proc_status, Rng};
use serde_json::{json, Value};
use sha1::Digest;

/// The budget of the issue: a 1 GiB bundle assembles with the server's peak under 256 MiB.
const PEAK_LIMIT: u64 = 256 << 20;

/// Sizes of the bundle's entries: just over 1 GiB in all, none a multiple of anything.
const ENTRY_SIZES: [u64; 4] = [
    (384 << 20) + 12_345,
    (320 << 20) + 777,
    (256 << 20) + 1,
    (64 << 20) - 3,
];

const IO_BUF: usize = 1 << 20;

/// One bundle entry as the test expects to find it.
struct Entry {
    url: String,
    size: u64,
    sha1: [u8; 20],
}

/// Writes a source bundle as sentry-cli lays it out (`SYSB` + version 2, then a ZIP with
/// `files/...` and `manifest.json`), its entries Stored so that generating it is I/O bound.
fn write_bundle(path: &Path) -> Vec<Entry> {
    let mut file = File::create(path).unwrap();
    file.write_all(b"SYSB\x02\x00\x00\x00").unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(false);
    // Incompressible content (splitmix64).
    let mut noise = Rng(0x5eed);
    let mut buf = vec![0u8; IO_BUF];
    let mut entries = Vec::new();
    let mut manifest = serde_json::Map::new();
    for (i, &size) in ENTRY_SIZES.iter().enumerate() {
        let zip_path = format!("files/_/_/static/big{i}.bin");
        zip.start_file(zip_path.as_str(), stored).unwrap();
        let mut sha1 = sha1::Sha1::new();
        let mut left = size;
        while left > 0 {
            let n = left.min(IO_BUF as u64) as usize;
            noise.fill(&mut buf[..n]);
            sha1.update(&buf[..n]);
            zip.write_all(&buf[..n]).unwrap();
            left -= n as u64;
        }
        let url = format!("~/static/big{i}.bin");
        manifest.insert(
            zip_path,
            json!({"url": url, "type": "source", "headers": {"debug-id": format!("00000000-0000-4000-8000-00000000000{i}")}}),
        );
        entries.push(Entry {
            url,
            size,
            sha1: sha1.finalize().into(),
        });
    }
    zip.start_file("manifest.json", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(
        json!({"org": "acme", "release": "1.0", "files": manifest})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    zip.finish().unwrap().sync_all().unwrap();
    entries
}

/// The SHA-1 of the whole file and of each `piece`-sized piece, in one streaming pass.
fn piece_sha1s(path: &Path, piece: u64) -> ([u8; 20], Vec<[u8; 20]>, u64) {
    let mut file = File::open(path).unwrap();
    let mut whole = sha1::Sha1::new();
    let mut current = sha1::Sha1::new();
    let mut in_piece = 0u64;
    let mut pieces = Vec::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; IO_BUF];
    loop {
        let want = (piece - in_piece).min(IO_BUF as u64) as usize;
        let n = file.read(&mut buf[..want]).unwrap();
        if n == 0 {
            break;
        }
        whole.update(&buf[..n]);
        current.update(&buf[..n]);
        in_piece += n as u64;
        total += n as u64;
        if in_piece == piece {
            pieces.push(std::mem::take(&mut current).finalize().into());
            in_piece = 0;
        }
    }
    if in_piece > 0 {
        pieces.push(current.finalize().into());
    }
    (whole.finalize().into(), pieces, total)
}

/// `len` bytes of `path` from `offset`, read 256 KiB at a time as the request goes out.
fn file_range_body(path: &Path, offset: u64, len: u64) -> reqwest::Body {
    let mut file = File::open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    let stream = futures::stream::unfold((file, len), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; left.min(256 << 10) as usize];
        match file.read_exact(&mut buf) {
            Ok(()) => {
                let n = buf.len() as u64;
                Some((Ok(buf), (file, left - n)))
            }
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    reqwest::Body::wrap_stream(stream)
}

/// VmHWM, VmRSS, RssAnon and RssFile of this process in bytes.
fn memory() -> [u64; 4] {
    proc_status(["VmHWM:", "VmRSS:", "RssAnon:", "RssFile:"])
}

/// Resets VmHWM to the current RSS (Linux 4.0+), so a phase's peak can be read on its own.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

/// Samples RssAnon and RssFile while a phase runs, to tell heap from mapped segment pages in
/// the report (VmHWM alone cannot). Measurement only: nothing waits on it.
struct Sampler {
    stop: Arc<AtomicBool>,
    anon: Arc<AtomicU64>,
    file: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start() -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let anon = Arc::new(AtomicU64::new(0));
        let file = Arc::new(AtomicU64::new(0));
        let (s, a, f) = (stop.clone(), anon.clone(), file.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let [_, _, anon, file] = memory();
                a.fetch_max(anon, Ordering::Relaxed);
                f.fetch_max(file, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Sampler {
            stop,
            anon,
            file,
            thread: Some(thread),
        }
    }

    /// Peak RssAnon and RssFile seen.
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        (
            self.anon.load(Ordering::Relaxed),
            self.file.load(Ordering::Relaxed),
        )
    }
}

async fn post_json(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> (reqwest::StatusCode, Value) {
    let resp = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}")),
    )
}

#[test]
fn a_1_gib_bundle_uploads_and_assembles_under_256_mib_of_peak_memory() {
    // glibc gives each thread that allocates its own arena (up to 8 per core) and keeps what is
    // freed there: staging runs on short-lived blocking threads, and with default arenas the same
    // run peaks 60–70 MiB higher than with one arena (about 225 against 160 MiB). Servers on glibc
    // bound the arenas (docs/http-api.md, "Memory"); this test measures the server configured
    // so, by running itself again with the setting when the variable is absent.
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_1_gib_bundle_uploads_and_assembles_under_256_mib_of_peak_memory",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("MALLOC_ARENA_MAX", "2")
            .status()
            .unwrap();
        assert!(
            status.success(),
            "the measured run failed (its output is above)"
        );
        return;
    }
    let data = tempfile::tempdir().unwrap();
    // Positional reads: memory-mapped segments would put every page assembly reads (the whole
    // GiB) into RSS as file-backed pages. Those are the kernel's reclaimable page cache, not
    // the server's allocations, but VmHWM cannot tell them apart (see the printed RssFile).
    let store = Store::open(
        StoreOptions::new(data.path().join("store")).read_mode(relstore::ReadMode::Pread),
    )
    .unwrap();
    store.create_release("acme", "1.0", &["web"]).unwrap();
    let (token, _) = store.create_token("acme", &[], "memory").unwrap();
    // Assembly is synchronous in the assemble request; a debug build on two shared cores may
    // need more than the default 60 s for 1 GiB (the time is reported, never asserted).
    let config = relstore_server::Config {
        request_timeout: Duration::from_secs(3600),
        ..relstore_server::Config::default()
    };
    let server = Server::start(store.clone(), config);
    let api = format!("{}/api/0/organizations/acme", server.url());

    let started = Instant::now();
    let bundle_path = data.path().join("bundle.zip");
    let entries = write_bundle(&bundle_path);
    let generated = started.elapsed();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();

    // The server's options, as sentry-cli reads them first.
    let options: Value = rt.block_on(async {
        let text = client
            .get(format!("{api}/chunk-upload/"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str(&text).unwrap()
    });
    let chunk_size = options["chunkSize"].as_u64().unwrap();
    let per_request = options["chunksPerRequest"].as_u64().unwrap() as usize;
    let max_request = options["maxRequestSize"].as_u64().unwrap();
    let concurrency = options["concurrency"].as_u64().unwrap() as usize;
    let (checksum, pieces, bundle_size) = piece_sha1s(&bundle_path, chunk_size);
    assert!(bundle_size > 1 << 30, "a bundle of {bundle_size} bytes");
    let assemble_body = json!({
        "checksum": relstore_testkit::hex(&checksum),
        "chunks": pieces.iter().map(|p| relstore_testkit::hex(p)).collect::<Vec<_>>(),
        "projects": ["web"],
        "version": "1.0",
    });
    let assemble_url = format!("{api}/artifactbundle/assemble/");

    // From here on the peak is the server's work (the generator above used a 1 MiB buffer).
    reset_peak();
    let base = memory();
    let sampler = Sampler::start();
    let upload_started = Instant::now();

    // Ask which pieces are missing (all of them), then upload those in sentry-cli's batches.
    let (status, answer) = rt.block_on(post_json(&client, &assemble_url, &token, &assemble_body));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["state"], "not_found", "{answer}");
    let missing: Vec<String> = answer["missingChunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(missing.len(), pieces.len());
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut batch_bytes = 0u64;
    for (i, p) in pieces.iter().enumerate() {
        if !missing.contains(&relstore_testkit::hex(p)) {
            continue;
        }
        let len = chunk_size.min(bundle_size - i as u64 * chunk_size);
        let full = batches
            .last()
            .is_none_or(|b| b.len() == per_request || batch_bytes + len > max_request);
        if full {
            batches.push(Vec::new());
            batch_bytes = 0;
        }
        batches.last_mut().unwrap().push(i);
        batch_bytes += len;
    }
    let requests = batches.len();
    rt.block_on(async {
        futures::stream::iter(batches)
            .map(|batch| {
                let mut form = reqwest::multipart::Form::new();
                for i in batch {
                    let offset = i as u64 * chunk_size;
                    let len = chunk_size.min(bundle_size - offset);
                    let part = reqwest::multipart::Part::stream_with_length(
                        file_range_body(&bundle_path, offset, len),
                        len,
                    )
                    .file_name(relstore_testkit::hex(&pieces[i]))
                    .mime_str("application/octet-stream")
                    .unwrap();
                    form = form.part("file", part);
                }
                let req = client
                    .post(format!("{api}/chunk-upload/"))
                    .bearer_auth(&token)
                    .multipart(form);
                async move {
                    let resp = req.send().await.unwrap();
                    let status = resp.status();
                    let text = resp.text().await.unwrap();
                    assert_eq!(status, 200, "chunk upload: {text}");
                }
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<()>>()
            .await
    });
    let uploaded = upload_started.elapsed();
    let upload_peak = memory()[0];
    let (upload_anon, upload_file) = sampler.finish();

    // Assemble, polling as `sentry-cli --wait` does (once a second) until the state is final.
    reset_peak();
    let sampler = Sampler::start();
    let assemble_started = Instant::now();
    let mut polls = 0;
    let final_state = loop {
        polls += 1;
        let (status, answer) =
            rt.block_on(post_json(&client, &assemble_url, &token, &assemble_body));
        assert_eq!(status, 200, "{answer}");
        let state = answer["state"].as_str().unwrap().to_owned();
        assert!(
            matches!(state.as_str(), "ok" | "created" | "assembling"),
            "assemble after upload: {answer}"
        );
        if state == "ok" || polls == 600 {
            break state;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let assembled = assemble_started.elapsed();
    let assemble_peak = memory()[0];
    let (assemble_anon, assemble_file) = sampler.finish();
    assert_eq!(final_state, "ok", "still not assembled after {polls} polls");

    let peak = upload_peak.max(assemble_peak);
    println!(
        "bundle: {:.1} MiB in {} pieces of {} MiB, {requests} chunk-upload requests (<= {per_request} pieces, <= {} MiB each), {concurrency} at a time",
        mib(bundle_size),
        pieces.len(),
        chunk_size >> 20,
        max_request >> 20
    );
    println!(
        "times: generate {:.1} s, upload {:.1} s, assemble {:.1} s ({polls} assemble calls)",
        generated.as_secs_f64(),
        uploaded.as_secs_f64(),
        assembled.as_secs_f64()
    );
    println!(
        "memory: RSS before upload {:.1} MiB; upload peak VmHWM {:.1} MiB (sampled RssAnon {:.1}, RssFile {:.1}); assembly peak VmHWM {:.1} MiB (sampled RssAnon {:.1}, RssFile {:.1}); limit {:.0} MiB",
        mib(base[1]),
        mib(upload_peak),
        mib(upload_anon),
        mib(upload_file),
        mib(assemble_peak),
        mib(assemble_anon),
        mib(assemble_file),
        mib(PEAK_LIMIT)
    );

    // The projection: every entry listed with its size and SHA-1, and its bytes as generated.
    let page = store
        .list_files(
            &ReleaseScope::project("acme", "web", "1.0"),
            &ListQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(page.items.len(), entries.len(), "{:?}", page.items);
    for e in &entries {
        let f = page
            .items
            .iter()
            .find(|f| f.key.name == e.url)
            .unwrap_or_else(|| panic!("{} not listed", e.url));
        assert_eq!(f.size, e.size, "{}", e.url);
        assert_eq!(
            relstore_testkit::hex(f.sha1.as_bytes()),
            relstore_testkit::hex(&e.sha1),
            "{}",
            e.url
        );
    }
    let biggest = &entries[0];
    let f = page
        .items
        .iter()
        .find(|f| f.key.name == biggest.url)
        .unwrap();
    let mut reader = store.open_file(f).unwrap();
    let mut sha1 = sha1::Sha1::new();
    let mut buf = vec![0u8; IO_BUF];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        sha1.update(&buf[..n]);
    }
    assert_eq!(
        relstore_testkit::hex(&sha1.finalize()),
        relstore_testkit::hex(&biggest.sha1),
        "stored bytes of {}",
        biggest.url
    );

    assert!(
        peak < PEAK_LIMIT,
        "peak resident memory {:.1} MiB (upload {:.1}, assembly {:.1}) is over {:.0} MiB \
         ({concurrency} chunk-upload requests of up to {} MiB in flight)",
        mib(peak),
        mib(upload_peak),
        mib(assemble_peak),
        mib(PEAK_LIMIT),
        max_request >> 20
    );
}

//! Bytes on the wire with the real sentry-cli 3.8.2 (installed from PyPI under target/ when
//! missing): a first `sourcemaps upload` of a build directory, the same directory again, and the
//! directory with one file's build banner changed. The server counts every request body as its
//! handlers read it; the figures print with `--nocapture`.

mod cli_support;

use std::path::Path;

use cli_support::{release_files, run_cli_env, sentry_cli, write_build_dir, RequestRecord, Server};
use relstore::{Store, StoreOptions};
use relstore_testkit::Rng;

/// A short minified-style identifier: a letter, `_` or `$`, then up to two more characters.
fn ident(rng: &mut Rng) -> String {
    const FIRST: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$";
    const REST: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut s = String::new();
    s.push(FIRST[rng.below(FIRST.len())] as char);
    for _ in 0..rng.below(3) {
        s.push(REST[rng.below(REST.len())] as char);
    }
    s
}

const WORDS: &[&str] = &[
    "user", "session", "render", "props", "state", "value", "index", "items", "config", "request",
    "response", "handler", "error", "result", "options", "element", "context", "payload", "store",
    "router", "event", "listener", "cache", "token", "format", "parse", "update", "create",
];

/// Minified code, its readable source and a source map in the shape bundlers write; the
/// first line of the minified file is the build banner.
fn module(rng: &mut Rng, name: &str, statements: usize, banner: &str) -> (String, String) {
    let mut min = format!("/*! {name} | {banner} | (c) relstore tests */\n");
    let mut src = String::new();
    let mut mappings = String::new();
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for i in 0..statements {
        let (f, a, b) = (ident(rng), ident(rng), ident(rng));
        let w1 = WORDS[rng.below(WORDS.len())];
        let w2 = WORDS[rng.below(WORDS.len())];
        let n = rng.below(100_000);
        match rng.below(3) {
            0 => {
                min.push_str(&format!(
                    "function {f}({a},{b}){{return {a}.{w1}?{b}[{n}]:{a}+{b}}}"
                ));
                src.push_str(&format!(
                    "export function {w1}_{w2}_{i}({w1}, {w2}) {{\n  if ({w1}.{w1}) {{\n    return {w2}[{n}];\n  }}\n  return {w1} + {w2};\n}}\n\n"
                ));
            }
            1 => {
                min.push_str(&format!("var {f}={{{w1}:{n},{w2}:\"{w1}-{w2}\",{a}:function({b}){{return {b}.{w2}()}}}};"));
                src.push_str(&format!(
                    "const {w1}{i} = {{\n  {w1}: {n},\n  {w2}: '{w1}-{w2}',\n  get{w2}(x) {{\n    return x.{w2}();\n  }},\n}};\n\n"
                ));
            }
            _ => {
                min.push_str(&format!(
                    "{f}.prototype.{w1}=function({a}){{this.{w2}={a}||{n};return this}};"
                ));
                src.push_str(&format!(
                    "class {w1}{i} {{\n  {w1}({w2}) {{\n    this.{w2} = {w2} ?? {n};\n    return this;\n  }}\n}}\n\n"
                ));
            }
        }
        // VLQ-looking segments, as dense as a real `mappings` string.
        for _ in 0..3 + rng.below(4) {
            for _ in 0..4 + rng.below(2) {
                mappings.push(B64[rng.below(64)] as char);
            }
            mappings.push(',');
        }
        if i % 40 == 39 {
            min.push('\n');
            mappings.push(';');
        }
    }
    min.push_str(&format!("\n//# sourceMappingURL={name}.map\n"));
    let map = serde_json::json!({
        "version": 3,
        "file": name,
        "sources": [format!("webpack://app/./src/{name}.ts")],
        "sourcesContent": [src],
        "names": WORDS,
        "mappings": mappings,
    })
    .to_string();
    (min, map)
}

/// Sized so that the bundle spans two 8 MiB pieces (55 MiB on disk): with one piece, any change
/// re-sends it all. `RELSTORE_BYTES_SCALE` multiplies it (7 makes a bundle of 5 pieces).
const SCALE: usize = 3;

fn scale() -> usize {
    match std::env::var("RELSTORE_BYTES_SCALE") {
        Ok(s) => s
            .parse()
            .expect("RELSTORE_BYTES_SCALE is a positive integer"),
        Err(_) => SCALE,
    }
}

const MODULES: &[(&str, usize)] = &[
    ("main.js", 9000),
    ("vendor.js", 30000),
    ("chunk-auth.js", 6000),
    ("chunk-dashboard.js", 12000),
    ("chunk-editor.js", 18000),
    ("chunk-reports.js", 9000),
    ("chunk-settings.js", 4000),
    ("runtime.js", 1500),
];

/// Writes the build output under `dir/static/js/`; `changed` gets `banner2` instead of
/// `banner`. Returns every file as (`~/` name, bytes).
fn write_build(dir: &Path, banner: &str, changed: Option<(&str, &str)>) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng(42);
    let mut files = Vec::new();
    for (name, statements) in MODULES {
        let b = match changed {
            Some((c, b2)) if c == *name => b2,
            _ => banner,
        };
        let (js, map) = module(&mut rng, name, statements * scale(), b);
        files.push((format!("static/js/{name}"), js.into_bytes()));
        files.push((format!("static/js/{name}.map"), map.into_bytes()));
    }
    write_build_dir(dir, files)
}

fn assert_release_holds(store: &Store, version: &str, expected: &[(String, Vec<u8>)]) {
    let items = release_files(store, "web", version);
    assert_eq!(items.len(), expected.len(), "files of {version}");
    for (name, data) in expected {
        let file = items
            .iter()
            .find(|f| &f.key.name == name)
            .unwrap_or_else(|| panic!("{name} missing from {version}"));
        assert!(
            &store.open_file(file).unwrap().read_to_vec().unwrap() == data,
            "{name} in {version} is not byte-identical to the file on disk"
        );
    }
}

/// What one `sourcemaps upload` sent.
#[derive(Debug)]
struct Upload {
    /// Body bytes of `POST chunk-upload` requests.
    chunk_bytes: u64,
    /// Body bytes of every request.
    total_bytes: u64,
    requests: usize,
    chunk_posts: usize,
    raw_parts: u64,
    gzip_parts: u64,
    /// Pieces the bundle was split into (the `chunks` of the last assemble request).
    pieces: usize,
    /// Growth of the store's deduplicated bytes (`Stats::stored_bytes`).
    stored_bytes: i64,
}

fn summarize(records: &[RequestRecord], stored_bytes: i64) -> Upload {
    let chunk: Vec<&RequestRecord> = records.iter().filter(|r| r.is_chunk_post()).collect();
    let last_assemble = records
        .iter()
        .rev()
        .find(|r| r.is_assemble())
        .expect("sentry-cli called assemble");
    let body: serde_json::Value = serde_json::from_slice(&last_assemble.body).unwrap();
    Upload {
        chunk_bytes: chunk.iter().map(|r| r.body_bytes).sum(),
        total_bytes: records.iter().map(|r| r.body_bytes).sum(),
        requests: records.len(),
        chunk_posts: chunk.len(),
        raw_parts: chunk.iter().map(|r| r.raw_parts).sum(),
        gzip_parts: chunk.iter().map(|r| r.gzip_parts).sum(),
        pieces: body["chunks"].as_array().unwrap().len(),
        stored_bytes,
    }
}

#[test]
fn sentry_cli_resends_only_the_pieces_a_change_touches() {
    let cli = sentry_cli("3.8.2");
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(data.path())).unwrap();
    store.create_release("acme", "1.0", &["web"]).unwrap();
    let (token, _) = store.create_token("acme", &[], "bytes").unwrap();
    let server = Server::start(store.clone(), relstore_server::Config::default());
    let build = tempfile::tempdir().unwrap();
    let dir = build.path().to_str().unwrap();
    let upload = |version: &str| {
        let mark = server.traffic.len();
        let stored = store.stats().unwrap().stored_bytes as i64;
        let out = run_cli_env(
            &cli,
            &server,
            &token,
            "acme",
            "web",
            &[
                "sourcemaps",
                "upload",
                "--release",
                version,
                "--no-rewrite",
                "--wait",
                dir,
            ],
            &[("SENTRY_LOG_LEVEL", "info")],
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let grown = store.stats().unwrap().stored_bytes as i64 - stored;
        (summarize(&server.traffic.since(mark), grown), stderr)
    };

    let first_files = write_build(build.path(), "build 2026.11.27-1", None);
    let disk: u64 = first_files.iter().map(|(_, d)| d.len() as u64).sum();
    let (first, log) = upload("1.0");
    assert_release_holds(&store, "1.0", &first_files);
    let compression: Vec<&str> = log.lines().filter(|l| l.contains("compression")).collect();

    // The unchanged directory to the same release: the same bundle, nothing to send.
    let (second, _) = upload("1.0");
    assert_release_holds(&store, "1.0", &first_files);

    // One banner changed in the last module sentry-cli packs (`vendor.js` sorts last).
    let changed_files = write_build(
        build.path(),
        "build 2026.11.27-1",
        Some(("vendor.js", "build 2026.11.27-2")),
    );
    let (changed, _) = upload("1.0");
    assert_release_holds(&store, "1.0", &changed_files);

    // The same change in the first module packed (`chunk-auth.js`), on top of the previous one.
    let early_files = write_build(
        build.path(),
        "build 2026.11.27-1",
        Some(("chunk-auth.js", "build 2026.11.27-3")),
    );
    let (early, _) = upload("1.0");
    assert_release_holds(&store, "1.0", &early_files);

    // The last directory again under a new release: the manifest names the release, so the
    // bundle differs from the previous one only where the manifest sits.
    let (new_release, _) = upload("2.0");
    assert_release_holds(&store, "2.0", &early_files);

    let ratio = |u: &Upload| u.chunk_bytes as f64 / first.chunk_bytes as f64;
    println!(
        "build directory: {} files, {:.2} MiB on disk",
        first_files.len(),
        disk as f64 / (1 << 20) as f64
    );
    println!("sentry-cli log lines about compression: {compression:?}");
    for (label, u) in [
        ("first upload", &first),
        ("unchanged, same release", &second),
        ("vendor.js banner changed", &changed),
        ("chunk-auth.js banner changed", &early),
        ("same files, new release 2.0", &new_release),
    ] {
        println!(
            "{label:>30}: chunk bytes {:>9} ({:.3} of first), all request bytes {:>9}, {} requests, {} chunk POSTs, parts raw/gzip {}/{}, bundle pieces {}, stored bytes +{}",
            u.chunk_bytes,
            ratio(u),
            u.total_bytes,
            u.requests,
            u.chunk_posts,
            u.raw_parts,
            u.gzip_parts,
            u.pieces,
            u.stored_bytes
        );
    }

    assert!(first.chunk_bytes > 0, "the first upload sends pieces");
    assert!(
        first.pieces > 1,
        "the bundle must span several pieces for the comparison to mean anything: {first:?}"
    );
    assert_eq!(
        second.chunk_bytes, 0,
        "an unchanged directory sends no piece"
    );
    assert_eq!(second.chunk_posts, 0, "{second:?}");
    assert!(
        changed.chunk_bytes > 0 && changed.chunk_bytes < first.chunk_bytes,
        "one changed file sends some pieces, not all: {changed:?} vs {first:?}"
    );
    assert!(store.verify(&mut |_| {}).unwrap().is_clean());
}

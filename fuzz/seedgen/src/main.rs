//! Builds a small real store and writes seed inputs for every fuzz target from its bytes:
//! segment images, record headers, index record values, file keys and list cursors.
//! Usage: `relstore-fuzz-seedgen <corpus dir>` (creates `<corpus dir>/<target>/seed-*`).

use std::path::{Path, PathBuf};

use relstore::__private::{encode, scan_slice, Index, StoredFileKey, HEADER_LEN, SEGMENT_HEADER_LEN};
use relstore::{ChunkingParams, ListQuery, ReleaseScope, Store, StoreOptions};

fn write(corpus: &Path, target: &str, n: &mut usize, bytes: &[u8]) {
    let dir = corpus.join(target);
    std::fs::create_dir_all(&dir).expect("create corpus dir");
    *n += 1;
    std::fs::write(dir.join(format!("seed-{n:04}")), bytes).expect("write seed");
}

fn main() {
    let corpus: PathBuf = std::env::args_os()
        .nth(1)
        .expect("usage: relstore-fuzz-seedgen <corpus dir>")
        .into();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    // Tiny chunks and segments keep every seed far below libFuzzer's input size limit.
    let opts = StoreOptions::new(&dir)
        .chunking(ChunkingParams {
            min: 64,
            avg: 256,
            max: 1024,
        })
        .segment_max_bytes(3000)
        .cache_bytes(1 << 20);
    let scope = ReleaseScope::project("acme", "web", "1.0");
    let mut cursors = Vec::new();
    {
        let store = Store::open(opts).expect("open");
        store
            .create_release("acme", "1.0", &["web"])
            .expect("release");
        store.create_release("acme", "2.0", &[]).expect("release");
        for i in 0..6u32 {
            let body: Vec<u8> = (0..400 + 300 * i)
                .map(|j| (j * 31 + i * 7) as u8 ^ (j >> 5) as u8)
                .collect();
            let dist = (i % 2 == 0).then_some("d1");
            store
                .upload(
                    &scope.file(&format!("~/static/f{i}.js"), dist),
                    &[("Content-Type".into(), "text/javascript".into())],
                    &mut body.as_slice(),
                    false,
                )
                .expect("upload");
            store
                .upload(
                    &ReleaseScope::org_wide("acme", "2.0").file(&format!("f{i}.map"), None),
                    &[],
                    &mut body.as_slice(),
                    false,
                )
                .expect("upload");
        }
        let mut q = ListQuery {
            limit: 2,
            ..Default::default()
        };
        loop {
            let page = store.list_files(&scope, &q).expect("list");
            match page.next {
                Some(c) => {
                    cursors.push(c.clone());
                    q.cursor = Some(c);
                }
                None => break,
            }
        }
    }
    let mut n = 0;
    for c in &cursors {
        write(&corpus, "list_cursor", &mut n, c.as_bytes());
    }
    write(&corpus, "list_cursor", &mut n, b"");
    write(&corpus, "list_cursor", &mut n, b"zz");
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .expect("segments")
        .map(|e| e.expect("entry").path())
        .collect();
    segs.sort();
    for path in &segs {
        let data = std::fs::read(path).expect("read segment");
        write(&corpus, "segment_scan", &mut n, &data);
        write(
            &corpus,
            "segment_header",
            &mut n,
            &data[..SEGMENT_HEADER_LEN],
        );
        for r in scan_slice(&data).records.iter().take(3) {
            let start = r.offset as usize;
            let end = start + HEADER_LEN + r.header.len as usize;
            write(&corpus, "record_header", &mut n, &data[start..end]);
        }
    }
    let index = Index::open(&dir.join("index"), 1 << 20).expect("index");
    let mut rec = |which: u8, value: Vec<u8>| {
        let mut v = vec![which];
        v.extend(value);
        write(&corpus, "index_records", &mut n, &v);
    };
    for row in index.all_files().take(4) {
        let row = row.expect("row");
        rec(0, encode(&row));
        rec(1, encode(&row.rec));
        rec(
            10,
            encode(&StoredFileKey {
                key: row.rec.key.clone(),
            }),
        );
        let content = index.content(&row.rec.content_id).expect("c").expect("c");
        rec(2, encode(&content));
        rec(
            3,
            encode(&index.manifest(&row.rec.content_id, &content).expect("m")),
        );
    }
    for c in index.all_chunks().take(3) {
        rec(4, encode(&c.expect("chunk").1));
    }
    if let Some(r) = index.release("acme", "1.0").expect("release") {
        rec(5, encode(&r.rec));
    }
    if let Some(p) = index.project("acme", "web").expect("project") {
        rec(6, encode(&p));
    }
    rec(7, encode(&index.counters().expect("counters")));
    let mut keys = Vec::new();
    for row in index.all_files() {
        keys.push(row.expect("row").rec.key.encode());
    }
    drop(index);
    for k in keys.iter().take(6) {
        write(&corpus, "file_key", &mut n, k);
        let mut v = vec![5u8];
        v.extend(k);
        write(&corpus, "file_key", &mut n, &v);
    }
    for (deflate, sysb) in [(true, true), (false, false)] {
        let b = bundle(deflate, sysb);
        write(&corpus, "bundle", &mut n, &b);
    }
    write(
        &corpus,
        "bundle",
        &mut n,
        br#"{"org":"acme","files":{"files/_/_/a.js":{"url":"~/a.js","type":"minified_source","headers":{"sourcemap":"a.js.map"}}}}"#,
    );
    eprintln!("wrote {n} seeds under {}", corpus.display());
}

/// A small source bundle in sentry-cli's layout: optional `SYSB` header, ZIP, manifest.json.
fn bundle(deflate: bool, sysb: bool) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    let files = [
        (
            "files/_/_/app.js",
            "~/static/app.js",
            "console.log(1);//# sourceMappingURL=app.js.map",
        ),
        (
            "files/_/_/app.js.map",
            "~/static/app.js.map",
            "{\"version\":3,\"mappings\":\"\"}",
        ),
    ];
    let mut manifest = String::from("{\"org\":\"acme\",\"release\":\"1.0\",\"files\":{");
    for (i, (path, url, body)) in files.iter().enumerate() {
        w.start_file(*path, opts).expect("zip entry");
        w.write_all(body.as_bytes()).expect("zip write");
        if i > 0 {
            manifest.push(',');
        }
        manifest.push_str(&format!(
            "\"{path}\":{{\"url\":\"{url}\",\"type\":\"minified_source\",\"headers\":{{\"debug-id\":\"5b1c1a4a-0f0e-4c5b-9a8f-3d2e1f0a9b8c\"}}}}"
        ));
    }
    manifest.push_str("}}");
    w.start_file("manifest.json", opts).expect("zip entry");
    w.write_all(manifest.as_bytes()).expect("zip write");
    let zip = w.finish().expect("zip finish").into_inner();
    let mut out = if sysb {
        b"SYSB\x02\x00\x00\x00".to_vec()
    } else {
        Vec::new()
    };
    out.extend_from_slice(&zip);
    out
}

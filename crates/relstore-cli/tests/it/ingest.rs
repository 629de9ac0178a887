//! The offline tools through the real binary: ingest, export, prune, verify and gc.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{tree, Env, COUNTS};
use relstore_testkit::random_bytes;
use serde_json::{json, Value};

const MAP_LINE: &[u8] = b"\n//# sourceMappingURL=app.min.js.map\n";

/// Writes a build-like tree of `n` files under `root`: nested folders, every seventh file a
/// duplicate of an earlier one, a few larger files, and one minified file with its source map.
fn build_tree(root: &Path, n: usize) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut min_js = b"function a(){return 1}".repeat(40);
    min_js.extend_from_slice(MAP_LINE);
    files.insert("static/js/app.min.js".to_string(), min_js);
    files.insert(
        "static/js/app.min.js.map".to_string(),
        br#"{"version":3,"sources":["app.js"],"mappings":"AAAA"}"#.to_vec(),
    );
    let mut i = 0;
    while files.len() < n {
        let path = format!(
            "static/{}/part-{}/{}/file-{i}.{}",
            ["js", "css", "media"][i % 3],
            i % 17,
            if i % 5 == 0 { "deep/er" } else { "flat" },
            ["js", "map", "css", "txt"][i % 4]
        );
        let size = if i % 500 == 0 {
            150_000
        } else {
            64 + (i * 37) % 3000
        };
        let body = if i % 7 == 6 {
            files[&files.keys().nth(i / 2).cloned().expect("earlier file")].clone()
        } else {
            random_bytes(i as u64, size)
        };
        files.insert(path, body);
        i += 1;
    }
    for (rel, body) in &files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    files
}

fn json_lines(stdout: &str) -> (Vec<Value>, Value) {
    let mut lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let last = lines.pop().expect("a summary line");
    (lines, last["summary"].clone())
}

#[test]
fn ingest_export_round_trip_of_5000_files_and_reingest_stores_nothing() {
    let env = Env::new();
    let src = env.path().join("build");
    let files = build_tree(&src, 5000);
    let scope = ["--org", "acme", "--project", "web", "--release", "1.0"];
    let mut args = vec!["ingest"];
    args.extend_from_slice(&scope);
    args.extend_from_slice(&["--json", src.to_str().unwrap()]);
    let (stored, sum) = json_lines(&env.ok(&args));
    assert_eq!(stored.len(), 5000);
    assert_eq!(sum["files"], 5000);
    assert_eq!(sum["stored"], 5000);
    assert_eq!(sum["unchanged"], 0);
    assert_eq!(sum["conflicts"], 0);
    let total: u64 = files.values().map(|b| b.len() as u64).sum();
    assert_eq!(sum["bytes"], total);
    assert_eq!(sum["stored_file_bytes"], total);
    let stats = env.stats();
    assert_eq!(stats["files"], 5000);
    assert_eq!(sum["new_bytes"], stats["stored_bytes"]);
    let dup_bytes: u64 = sum["deduplicated_bytes"].as_u64().unwrap();
    assert!(dup_bytes > 0 && dup_bytes < total, "{sum}");
    assert_eq!(
        stats["stored_bytes"].as_u64().unwrap() + dup_bytes,
        total,
        "new plus deduplicated is everything"
    );
    let by_name: BTreeMap<&str, &Value> = stored
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    assert_eq!(
        by_name["~/static/js/app.min.js"]["headers"],
        json!({"Sourcemap": "app.min.js.map"})
    );
    assert_eq!(by_name["~/static/js/app.min.js.map"]["headers"], json!({}));
    for rel in files.keys() {
        assert!(by_name.contains_key(format!("~/{rel}").as_str()), "{rel}");
    }

    // Export and compare byte for byte.
    let out = env.path().join("out");
    let mut args = vec!["export"];
    args.extend_from_slice(&scope);
    args.push(out.to_str().unwrap());
    let line = env.ok(&args);
    assert!(line.contains("exported 5000 files"), "{line}");
    let exported = tree(&out);
    assert_eq!(exported, files.keys().cloned().collect::<Vec<_>>());
    for (rel, body) in &files {
        assert!(
            std::fs::read(out.join(rel)).unwrap() == *body,
            "{rel} differs"
        );
    }

    // Re-ingest, piped: a single summary line, nothing new.
    let before = env.stats();
    let mut args = vec!["ingest"];
    args.extend_from_slice(&scope);
    args.push(src.to_str().unwrap());
    let o = env.run(&args);
    assert!(o.status.success());
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("nothing new stored, 5000 unchanged"),
        "{stdout}"
    );
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let after = env.stats();
    for k in COUNTS {
        assert_eq!(before[k], after[k], "{k}");
    }
    let mut args = vec!["ingest"];
    args.extend_from_slice(&scope);
    args.extend_from_slice(&["--json", src.to_str().unwrap()]);
    let (stored, sum) = json_lines(&env.ok(&args));
    assert!(stored.is_empty());
    assert_eq!(sum["unchanged"], 5000);
    assert_eq!(sum["new_bytes"], 0);
}

#[test]
fn ingest_reports_conflicts_keeps_them_and_overwrite_replaces() {
    let env = Env::new();
    let src = env.path().join("b");
    let w = |rel: &str, body: &[u8]| {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    };
    w("a.js", b"one");
    w("sub/b.js", b"bee");
    let args = [
        "ingest",
        "-o",
        "acme",
        "-r",
        "1",
        "--json",
        src.to_str().unwrap(),
    ];
    env.ok(&args);
    w("a.js", b"two");
    w("c.js", b"sea");
    let o = env.run(&args);
    assert_eq!(o.status.code(), Some(1));
    let (stored, sum) = json_lines(&String::from_utf8(o.stdout).unwrap());
    assert_eq!(
        (sum["stored"].as_u64(), sum["conflicts"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(sum["unchanged"], 1);
    assert_eq!(stored[0]["name"], "~/c.js");
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("~/a.js") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(env.ok(&["cat", "-o", "acme", "-r", "1", "~/a.js"]), "one");

    let mut over = args.to_vec();
    over.insert(1, "--overwrite");
    let (stored, sum) = json_lines(&env.ok(&over));
    assert_eq!(sum["stored"], 1);
    assert_eq!(stored[0]["name"], "~/a.js");
    assert_eq!(env.ok(&["cat", "-o", "acme", "-r", "1", "~/a.js"]), "two");
}

#[test]
fn ingest_filters_by_extension_and_glob_and_prefixes_names() {
    let env = Env::new();
    let src = env.path().join("b");
    for rel in [
        "a.js",
        "a.js.map",
        "readme.txt",
        "sub/b.js",
        "node_modules/x.js",
        "sub/skip.min.js",
    ] {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, rel).unwrap();
    }
    env.ok(&[
        "ingest",
        "-o",
        "acme",
        "-p",
        "web",
        "-r",
        "1",
        "--url-prefix",
        "~/static",
        "--ext",
        "js,map",
        "--ignore",
        "node_modules",
        "--ignore",
        "*.min.js",
        "--dist",
        "d",
        src.to_str().unwrap(),
    ]);
    let v = env.json(&["ls", "-o", "acme", "-p", "web", "-r", "1", "--json"]);
    let names: Vec<(&str, &str)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["dist"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("~/static/a.js", "d"),
            ("~/static/a.js.map", "d"),
            ("~/static/sub/b.js", "d")
        ]
    );
    let err = env.fails(1, &["ingest", "-o", "acme", "-r", "1", "no-such-dir"]);
    assert!(
        err.contains("no-such-dir") && err.contains("not a directory"),
        "{err}"
    );
}

#[test]
fn export_refuses_names_that_escape_and_maps_urls() {
    let env = Env::new();
    let f = env.write("f.js", b"payload");
    for (name, dist) in [
        ("~/../../evil.js", None),
        ("~/ok.js", None),
        ("https://cdn.example.com/lib/x.js", None),
        ("/abs/y.js", None),
        ("~/dist-only.js", Some("d1")),
    ] {
        let mut args = vec!["upload", "-o", "acme", "-r", "1", "--name", name];
        if let Some(d) = dist {
            args.extend_from_slice(&["--dist", d]);
        }
        args.push(f.to_str().unwrap());
        env.ok(&args);
    }
    let out = env.path().join("a/b/out");
    let err = env.fails(
        1,
        &["export", "-o", "acme", "-r", "1", out.to_str().unwrap()],
    );
    assert!(err.contains("refused") && err.contains("evil.js"), "{err}");
    assert_eq!(
        tree(&out),
        ["abs/y.js", "cdn.example.com/lib/x.js", "ok.js"]
    );
    assert!(
        !tree(env.path()).iter().any(|p| p.ends_with("evil.js")),
        "nothing escaped: {:?}",
        tree(env.path())
    );
    let out2 = env.path().join("d1");
    env.ok(&[
        "export",
        "-o",
        "acme",
        "-r",
        "1",
        "--dist",
        "d1",
        out2.to_str().unwrap(),
    ]);
    assert_eq!(tree(&out2), ["dist-only.js"]);
    assert_eq!(
        std::fs::read(out2.join("dist-only.js")).unwrap(),
        b"payload"
    );
}

#[test]
fn prune_dry_run_changes_nothing_then_prune_removes_and_reclaims() {
    let env = Env::new();
    let a = env.write("a.bin", &random_bytes(1, 50_000));
    let b = env.write("b.bin", &random_bytes(2, 50_000));
    env.upload_web("1", None, &a);
    env.upload_web("2", None, &b);
    env.ok(&["upload", "-o", "other", "-r", "9", b.to_str().unwrap()]);
    let snapshot = || {
        (
            env.json(&["releases", "--json"]),
            env.json(&["ls", "-o", "acme", "-p", "web", "-r", "1", "--json"]),
            env.stats(),
        )
    };
    let before = snapshot();
    let dry = env.json(&[
        "prune",
        "--org",
        "acme",
        "--older-than",
        "0s",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(dry["releases"], json!(["2", "1"]));
    assert_eq!(dry["files"], 2);
    let text = env.ok(&["prune", "--org", "acme", "--older-than", "0s", "--dry-run"]);
    assert!(
        text.contains("would remove release 1") && text.contains("nothing changed"),
        "{text}"
    );
    let after = snapshot();
    assert_eq!(before.0, after.0);
    assert_eq!(before.1, after.1);
    for k in COUNTS {
        assert_eq!(before.2[k], after.2[k], "{k}");
    }

    let none = env.json(&[
        "prune",
        "--org",
        "acme",
        "--older-than",
        "1000days",
        "--json",
    ]);
    assert_eq!(none["releases"], json!([]));
    assert_eq!(env.stats()["files"], 3);

    let done = env.json(&["prune", "--org", "acme", "--older-than", "0s", "--json"]);
    assert_eq!(done["releases"], json!(["2", "1"]));
    let rels = env.json(&["releases", "--json"]);
    assert_eq!(rels.as_array().unwrap().len(), 1, "{rels}");
    assert_eq!(rels[0]["org"], "other");
    let s = env.stats();
    assert_eq!(s["files"], 1);
    assert_eq!(
        s["stored_bytes"], 50_000,
        "a.bin's chunks are gone, b.bin's kept"
    );
    assert!(done["gc"]["dead_chunks"].as_u64().unwrap() > 0, "{done}");
    env.fails(2, &["prune", "--org", "acme", "--older-than", "soon"]);
}

#[test]
fn verify_names_a_damaged_file_and_gc_reclaims_deleted_ones() {
    let env = Env::new();
    let victim = random_bytes(5, 200_000);
    let v = env.write("victim.js", &victim);
    let ok = env.write("ok.js", &random_bytes(6, 20_000));
    // The victim goes last: opening the store treats damage in the active segment as a torn
    // tail and cuts everything after it, which would take later files with it.
    env.ok(&["upload", "-o", "acme", "-r", "1", ok.to_str().unwrap()]);
    env.ok(&["upload", "-o", "acme", "-r", "1", v.to_str().unwrap()]);
    let report = env.json(&["verify", "--json"]);
    assert_eq!(report["faults"], json!([]));
    assert_eq!(report["files"], 2);

    // Flip one byte of the victim's stored bytes.
    let needle = &victim[100_000..100_064];
    let mut flipped = false;
    for e in std::fs::read_dir(env.data().join("segments")).unwrap() {
        let p = e.unwrap().path();
        let mut bytes = std::fs::read(&p).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[at + 10] ^= 0x40;
            std::fs::write(&p, bytes).unwrap();
            flipped = true;
        }
    }
    assert!(flipped, "found the victim's bytes in a segment");
    let o = env.run(&["verify"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("victim.js"), "{err}");
    assert!(!err.contains("ok.js"), "{err}");

    env.ok(&["rm", "-o", "acme", "-r", "1", "victim.js", "ok.js"]);
    let gc = env.json(&["gc", "--json"]);
    assert!(gc["dead_chunks"].as_u64().unwrap() > 0, "{gc}");
    let s = env.stats();
    assert_eq!(
        (s["files"].as_u64(), s["stored_bytes"].as_u64()),
        (Some(0), Some(0))
    );
    let text = env.ok(&["verify"]);
    assert!(!text.is_empty());
}

#[test]
fn ingest_draws_progress_on_a_terminal_and_only_the_summary_when_piped() {
    let env = Env::new();
    let src = env.path().join("b");
    build_tree(&src, 300);
    let bin = assert_cmd::cargo::cargo_bin("relstore");
    let line = format!(
        "{} --data {} ingest -o acme -p web -r 1 {}",
        bin.display(),
        env.data().display(),
        src.display()
    );
    // util-linux `script` runs the command on a pseudo-terminal and copies what it drew.
    let out = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .output()
        .expect("`script` (util-linux) is needed to run a command on a terminal");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(
        tty.contains("ingest ") && tty.contains("/300 files"),
        "{tty}"
    );
    assert!(tty.contains("ETA") && tty.contains("/s"), "{tty}");
    assert!(
        tty.contains("300 files (") && tty.contains("300 stored"),
        "{tty}"
    );

    let o = env.run(&[
        "ingest",
        "-o",
        "acme",
        "-p",
        "web",
        "-r",
        "2",
        src.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        !stdout.contains("ETA") && !stdout.contains('\r'),
        "{stdout}"
    );
}

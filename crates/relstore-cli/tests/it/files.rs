//! The single-file commands through the real binary: upload, cat, ls, rm, info, stats, releases,
//! and the help, exit-code and completion ergonomics.

use crate::common::{Env, COUNTS};
use relstore_testkit::{collision_data, random_bytes};
use serde_json::{json, Value};

const SEED: &[u8] = b"print \"Hello World!\"";
const SEED_SHA1: &str = "7dc0876d778eae1093028f7bf368d0b95a53ec1a";

#[test]
fn upload_prints_the_file_json_of_the_seed_example() {
    let env = Env::new();
    let f = env.write("hello.py", SEED);
    let out = env.ok(&[
        "upload",
        "--org",
        "acme",
        "--project",
        "web",
        "--release",
        "1.0",
        "--name",
        "/demo/hello.py",
        "-H",
        "Content-Type:text/plain; encoding=utf-8",
        f.to_str().unwrap(),
    ]);
    assert_eq!(out.lines().count(), 1, "one JSON line: {out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["sha1"], SEED_SHA1);
    assert_eq!(v["size"], 20);
    assert_eq!(v["name"], "/demo/hello.py");
    assert_eq!(v["dist"], Value::Null);
    assert_eq!(
        v["headers"],
        json!({"Content-Type": "text/plain; encoding=utf-8"})
    );
    assert!(v["id"].is_string());
    assert!(v["dateCreated"].as_str().unwrap().ends_with('Z'));
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 7, "exactly the API's fields: {keys:?}");

    // Exactly the headers given: none given, none stored (no invented Content-Type).
    let v = env.json(&[
        "upload", "-o", "acme", "-p", "web", "-r", "1.0", "--dist", "d1", "hello.py",
    ]);
    assert_eq!(v["headers"], json!({}));
    assert_eq!(v["name"], "hello.py", "the default name is the file name");
    assert_eq!(v["dist"], "d1");

    let bytes = env
        .cmd()
        .args([
            "cat",
            "-o",
            "acme",
            "-p",
            "web",
            "-r",
            "1.0",
            "/demo/hello.py",
        ])
        .output()
        .unwrap();
    assert!(bytes.status.success());
    assert_eq!(bytes.stdout, SEED);
}

#[test]
fn upload_reads_stdin_and_refuses_to_replace_without_overwrite() {
    let env = Env::new();
    let up = |body: &'static [u8], extra: &[&str]| {
        let mut args = vec!["upload", "-o", "acme", "-r", "2", "--name", "~/a.js"];
        args.extend_from_slice(extra);
        args.push("-");
        env.cmd().args(&args).write_stdin(body).output().unwrap()
    };
    assert!(up(b"one", &[]).status.success());
    let second = up(b"two", &[]);
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("already exists") && err.contains("--overwrite"),
        "{err}"
    );
    let cat = || env.ok(&["cat", "-o", "acme", "-r", "2", "~/a.js"]);
    assert_eq!(cat(), "one");
    assert!(up(b"two", &["--overwrite"]).status.success());
    assert_eq!(cat(), "two");
    // No --project: the organization-wide scope, distinct from any project's files.
    let err = env.fails(1, &["cat", "-o", "acme", "-p", "web", "-r", "2", "~/a.js"]);
    assert!(err.contains("not linked to project"), "{err}");
}

#[test]
fn errors_name_the_problem_and_exit_with_1_usage_with_2() {
    let env = Env::new();
    let err = env.fails(1, &["ls", "-o", "acme", "-r", "1"]);
    assert!(err.contains("no relstore store at"), "{err}");
    assert!(err.contains("RELSTORE_DATA"), "{err}");
    let f = env.write("x.txt", b"x");
    env.upload_web("1", None, &f);
    let err = env.fails(1, &["cat", "-o", "acme", "-p", "web", "-r", "1", "nope.js"]);
    assert!(
        err.contains("\"nope.js\"") && err.contains("relstore ls"),
        "{err}"
    );
    let err = env.fails(1, &["ls", "-o", "acme", "-p", "web", "-r", "9"]);
    assert!(
        err.contains("\"9\"") && err.contains("relstore releases"),
        "{err}"
    );
    let err = env.fails(1, &["upload", "-o", "acme", "-r", "1", "missing.bin"]);
    assert!(err.contains("missing.bin"), "{err}");
    let err = env.fails(
        1,
        &[
            "upload",
            "-o",
            "acme",
            "-r",
            "1",
            "-H",
            "bad key:v",
            "x.txt",
        ],
    );
    assert!(err.contains("HTTP token"), "{err}");
    // Usage errors are clap's: exit code 2.
    env.fails(2, &["ls", "-o", "acme"]);
    env.fails(
        2,
        &["upload", "-o", "acme", "-r", "1", "-H", "novalue", "x.txt"],
    );
    env.fails(2, &["frobnicate"]);
    // --data wins over the environment.
    let other = env.path().join("other");
    let err = env.fails(1, &["--data", other.to_str().unwrap(), "stats"]);
    assert!(err.contains("other"), "{err}");
}

#[test]
fn fifty_uploads_of_one_file_store_one_copy() {
    let env = Env::new();
    let mib = random_bytes(7, 1 << 20);
    let f = env.write("big.bin", &mib);
    for i in 0..50 {
        let name = format!("~/copy-{i}.bin");
        env.upload_web("1", Some(name.as_str()), &f);
    }
    let s = env.stats();
    assert_eq!(s["files"], 50);
    assert_eq!(s["contents"], 1);
    assert_eq!(s["logical_bytes"], 50 << 20);
    assert_eq!(s["stored_bytes"], 1 << 20);
    assert!(s["disk_bytes"].as_u64().unwrap() >= 1 << 20);
    assert_eq!(s["dedup_ratio"], 50.0);
    for k in COUNTS.into_iter().chain(["disk_bytes"]) {
        assert!(s[k].is_u64(), "{k} in {s}");
    }
}

#[test]
fn sha1_collision_pairs_come_back_byte_exact() {
    let env = Env::new();
    let dir = collision_data();
    for (a, b) in [
        ("shattered-1.pdf", "shattered-2.pdf"),
        ("sha-mbles-1.bin", "sha-mbles-2.bin"),
    ] {
        let (pa, pb) = (dir.join(a), dir.join(b));
        let (ba, bb) = (std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
        assert_ne!(ba, bb);
        let ja = env.json(&["upload", "-o", "acme", "-r", "1", pa.to_str().unwrap()]);
        let jb = env.json(&["upload", "-o", "acme", "-r", "1", pb.to_str().unwrap()]);
        assert_eq!(ja["sha1"], jb["sha1"], "{a} and {b} are a SHA-1 collision");
        for (name, bytes) in [(a, &ba), (b, &bb)] {
            let out = env
                .cmd()
                .args(["cat", "-o", "acme", "-r", "1", name])
                .output()
                .unwrap();
            assert!(out.status.success());
            assert!(out.stdout == *bytes, "{name} came back different");
        }
    }
    assert_eq!(env.stats()["contents"], 4);
}

#[test]
fn ls_filters_rm_and_release_removal() {
    let env = Env::new();
    let a = env.write("a.js", b"alpha");
    let b = env.write("b.js.map", b"{\"version\":3}");
    let c = env.write("c.css", b"body{}");
    let up = |p: &std::path::Path, name: &str| {
        env.upload_web("1", Some(name), p);
    };
    up(&c, "~/c.css");
    up(&a, "~/a.js");
    up(&b, "~/a.js.map");
    let scope = ["-o", "acme", "-p", "web", "-r", "1"];
    let ls = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["ls"];
        args.extend_from_slice(&scope);
        args.extend_from_slice(extra);
        args.push("--json");
        let v = env.json(&args);
        v.as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ls(&[]), ["~/a.js", "~/a.js.map", "~/c.css"]);
    assert_eq!(ls(&["--query", "A.JS"]), ["~/a.js", "~/a.js.map"]);
    assert_eq!(ls(&["-q", ".css", "-q", ".map"]), ["~/a.js.map", "~/c.css"]);
    let sha1_alpha = "be76331b95dfc399cd776d2fc68021e0db03cc4f";
    assert_eq!(ls(&["--checksum", sha1_alpha]), ["~/a.js"]);

    let mut args = vec!["ls"];
    args.extend_from_slice(&scope);
    let table = env.ok(&args);
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.lines().next().unwrap().contains("NAME"));
    args.push("--long");
    let long = env.ok(&args);
    assert!(long.contains(sha1_alpha), "{long}");

    let mut args = vec!["rm"];
    args.extend_from_slice(&scope);
    args.extend_from_slice(&["~/a.js", "~/c.css"]);
    env.ok(&args);
    assert_eq!(ls(&[]), ["~/a.js.map"]);
    let mut args = vec!["rm"];
    args.extend_from_slice(&scope);
    args.push("~/gone.js");
    let err = env.fails(1, &args);
    assert!(err.contains("~/gone.js"), "{err}");

    let info = env.json(&[
        "info",
        "-o",
        "acme",
        "-p",
        "web",
        "-r",
        "1",
        "~/a.js.map",
        "--json",
    ]);
    assert_eq!(info["size"], 13);
    assert_eq!(info["contentId"].as_str().unwrap().len(), 64);

    env.upload_web("2", None, &a);
    let rels = env.json(&["releases", "--org", "acme", "--json"]);
    assert_eq!(rels.as_array().unwrap().len(), 2);
    env.ok(&["rm", "-o", "acme", "-r", "1", "--release-all"]);
    let rels = env.json(&["releases", "--org", "acme", "--json"]);
    let versions: Vec<&str> = rels
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["2"]);
    assert_eq!(env.stats()["files"], 1);
    env.fails(1, &["rm", "-o", "acme", "-r", "1", "--release-all"]);
}

#[test]
fn stats_ranks_releases_by_unique_bytes() {
    let env = Env::new();
    let shared = env.write("shared.bin", &random_bytes(1, 3000));
    let big = env.write("big.bin", &random_bytes(2, 9000));
    let small = env.write("small.bin", &random_bytes(3, 100));
    for (r, f) in [("1", &shared), ("1", &small), ("2", &shared), ("2", &big)] {
        env.ok(&["upload", "-o", "acme", "-r", r, f.to_str().unwrap()]);
    }
    let s = env.stats();
    let top = s["top_releases"].as_array().unwrap();
    assert_eq!(top[0]["version"], "2");
    assert_eq!(top[0]["unique_bytes"], 9000);
    assert_eq!(top[1]["version"], "1");
    assert_eq!(top[1]["unique_bytes"], 100);
    assert_eq!(top[1]["bytes"], 3100);
    let text = env.ok(&["stats"]);
    assert!(text.contains("dedup ratio"), "{text}");
}

#[test]
fn every_command_has_help_with_an_example_and_completions_work() {
    let env = Env::new();
    let top = env.ok(&["--help"]);
    assert!(
        top.contains("Exit codes") && top.contains("2 usage"),
        "{top}"
    );
    for c in [
        "upload",
        "cat",
        "ls",
        "rm",
        "info",
        "ingest",
        "export",
        "releases",
        "stats",
        "prune",
        "verify",
        "gc",
        "completions",
    ] {
        let h = env.ok(&[c, "--help"]);
        assert!(
            h.contains("Examples:") && h.contains(&format!("relstore {c}")),
            "{c}: {h}"
        );
    }
    for shell in ["bash", "zsh", "fish"] {
        let out = env.ok(&["completions", shell]);
        assert!(
            out.contains("ingest") && out.contains("relstore"),
            "{shell}"
        );
    }
    env.fails(2, &["completions", "cmd.exe"]);
}

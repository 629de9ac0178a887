//! End to end with the real sentry-cli (installed from PyPI under target/ when missing):
//! 3.8.2 and 2.58.6 `sourcemaps upload` through chunk upload and artifact-bundle assembly.

mod cli_support;

use std::path::Path;
use std::sync::atomic::Ordering;

use cli_support::{release_files, run_cli, sentry_cli, write_build_dir, Server};
use relstore::{Store, StoreOptions};

/// A small build output: a minified bundle with its source map, a vendor file, a nested asset.
fn write_fixture(dir: &Path, banner: &str) -> Vec<(String, Vec<u8>)> {
    let body: String = (0..3000)
        .map(|i| format!("function f{i}(a){{return a+{i}}}"))
        .collect();
    let files = vec![
        ("static/js/app.min.js", format!("/*! {banner} */{body}\n//# sourceMappingURL=app.min.js.map").into_bytes()),
        (
            "static/js/app.min.js.map",
            format!(r#"{{"version":3,"file":"app.min.js","sources":["src/app.js"],"sourcesContent":["{body}"],"names":[],"mappings":"AAAA"}}"#).into_bytes(),
        ),
        ("static/js/vendor.js", (0..2000).map(|i| format!("var v{i}={i};\n")).collect::<String>().into_bytes()),
    ];
    write_build_dir(dir, files)
}

fn assert_release_holds(
    store: &Store,
    project: &str,
    version: &str,
    expected: &[(String, Vec<u8>)],
) {
    let items = release_files(store, project, version);
    let names: Vec<&str> = items.iter().map(|f| f.key.name.as_str()).collect();
    for (name, data) in expected {
        assert!(
            names.contains(&name.as_str()),
            "{name} missing from {version}: {names:?}"
        );
        let file = items.iter().find(|f| &f.key.name == name).unwrap();
        assert_eq!(
            &store.open_file(file).unwrap().read_to_vec().unwrap(),
            data,
            "{name} in {version}"
        );
    }
}

#[test]
fn sentry_cli_3_and_2_upload_source_maps_as_artifact_bundles() {
    let cli3 = sentry_cli("3.8.2");
    let cli2 = sentry_cli("2.58.6");
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(data.path())).unwrap();
    let (token, _) = store.create_token("acme", &[], "e2e").unwrap();
    let server = Server::start(store.clone(), relstore_server::Config::default());
    let fixture = tempfile::tempdir().unwrap();
    let expected = write_fixture(fixture.path(), "build 1");
    let dir = fixture.path().to_str().unwrap();

    // Every command runs as organization `acme`, project `web`.
    let cli = |bin: &Path, args: &[&str]| run_cli(bin, &server, &token, "acme", "web", args);
    let upload_1_0 = || {
        cli(
            &cli3,
            &[
                "sourcemaps",
                "upload",
                "--release",
                "1.0",
                "--wait",
                "--no-rewrite",
                dir,
            ],
        )
    };

    // 3.8.2: releases new, then sourcemaps upload --wait.
    cli(&cli3, &["releases", "new", "1.0"]);
    assert!(store.release("acme", "1.0").unwrap().is_some());
    upload_1_0();
    let first_posts = server.chunk_posts.load(Ordering::SeqCst);
    assert!(first_posts > 0, "the first upload sends chunks");
    assert_release_holds(&store, "web", "1.0", &expected);
    let stats = store.stats().unwrap();

    // The same directory again: nothing is sent and nothing new is stored.
    upload_1_0();
    assert_eq!(
        server.chunk_posts.load(Ordering::SeqCst),
        first_posts,
        "a second identical upload sends no chunk"
    );
    assert_eq!(
        store.stats().unwrap().chunks,
        stats.chunks,
        "and stores no new chunk"
    );
    assert_release_holds(&store, "web", "1.0", &expected);

    // 2.58.6 lists what 3.8.2 uploaded.
    let out = cli(&cli2, &["releases", "files", "1.0", "list"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    for (name, _) in &expected {
        assert!(
            listing.contains(name.as_str()),
            "{name} not in 2.58.6's listing:\n{listing}"
        );
    }

    // 2.58.6 sourcemaps upload takes the bundle path too (chunk upload accepts artifact bundles);
    // a changed banner stores only a little more.
    let expected2 = write_fixture(fixture.path(), "build 2");
    cli(&cli2, &["releases", "new", "2.0"]);
    let posts_before = server.chunk_posts.load(Ordering::SeqCst);
    cli(
        &cli2,
        &[
            "sourcemaps",
            "upload",
            "--release",
            "2.0",
            "--no-rewrite",
            dir,
        ],
    );
    assert!(
        server.chunk_posts.load(Ordering::SeqCst) > posts_before,
        "2.58.6 used chunk upload"
    );
    assert_release_holds(&store, "web", "2.0", &expected2);
    assert!(store.verify(&mut |_| {}).unwrap().is_clean());
}

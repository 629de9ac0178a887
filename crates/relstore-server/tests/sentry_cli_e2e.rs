//! End-to-end: the official sentry-cli 2.58.6 against a real server on loopback. The test installs
//! sentry-cli from PyPI into `<workspace>/target/sentry-cli-2.58.6` when it is missing (see
//! `cli_support`, shared with the bundle tests so both install under one lock).

use std::process::Command;

use relstore_server::{AppState, Config};

mod cli_support;

#[test]
fn sentry_cli_2_58_6_release_files_flow() {
    let cli = cli_support::sentry_cli("2.58.6");
    let dir = tempfile::tempdir().unwrap();
    let store = relstore::Store::open_path(dir.path().join("data")).unwrap();
    let (token, _) = store.create_token("acme", &[], "e2e").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(store.clone(), Config::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(relstore_server::serve(listener, state, async {
        let _ = stop_rx.await;
    }));
    let file = dir.path().join("hello.py");
    std::fs::write(&file, b"print \"Hello World!\"").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(&cli)
            .args(args)
            .env("SENTRY_URL", format!("http://{addr}"))
            .env("SENTRY_AUTH_TOKEN", &token)
            .env("SENTRY_ORG", "acme")
            .env("SENTRY_PROJECT", "web")
            .env("SENTRY_DISABLE_UPDATE_CHECK", "true")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let f = file.to_str().unwrap();
    let (ok, out) = run(&["releases", "new", "2.0"]);
    assert!(ok, "{out}");
    let (ok, out) = run(&[
        "releases",
        "files",
        "2.0",
        "upload",
        f,
        "~/hello.py",
        "--dist",
        "d1",
        "-H",
        "X-Test: yes",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("7dc0876d778eae1093028f7bf368d0b95a53ec1a"),
        "{out}"
    );
    let (ok, out) = run(&[
        "releases",
        "files",
        "2.0",
        "upload",
        f,
        "~/hello.py",
        "--dist",
        "d1",
    ]);
    assert!(!ok && out.contains("File already present"), "{out}");
    let scope = relstore::ReleaseScope::project("acme", "web", "2.0");
    let rec = store
        .file(&scope.file("~/hello.py", Some("d1")))
        .unwrap()
        .expect("stored");
    assert_eq!(rec.header("X-Test"), Some("yes"));
    assert_eq!(
        store.open_file(&rec).unwrap().read_to_vec().unwrap(),
        b"print \"Hello World!\""
    );
    let (ok, out) = run(&["releases", "files", "2.0", "list"]);
    assert!(
        ok && out.contains("~/hello.py") && out.contains("d1"),
        "{out}"
    );
    let (ok, out) = run(&["releases", "files", "2.0", "delete", "~/hello.py"]);
    assert!(ok, "{out}");
    assert!(store
        .file(&scope.file("~/hello.py", Some("d1")))
        .unwrap()
        .is_none());
    let (ok, out) = run(&["releases", "files", "2.0", "upload", f, "~/a.py"]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["releases", "files", "2.0", "upload", f, "~/b.py"]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["releases", "files", "2.0", "delete", "--all"]);
    assert!(ok, "{out}");
    let page = store
        .list_files(
            &scope,
            &relstore::ListQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(page.items.is_empty(), "{:?}", page.items);
    let _ = stop_tx.send(());
    rt.block_on(server).unwrap().unwrap();
}

//! Support for end-to-end tests with the real `sentry-cli`: installing a pinned version from PyPI
//! into a virtual environment under the workspace's `target/` (once; later runs reuse it), and
//! running a relstore server on a loopback port in a background thread.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use relstore::Store;

/// The workspace's `target/` directory (or `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    }
}

/// Path of `sentry-cli` `version`, installing it from PyPI first when missing. Panics (fails the
/// test) when it cannot be installed: a test never skips silently.
pub fn sentry_cli(version: &str) -> PathBuf {
    let venv = target_dir().join(format!("sentry-cli-{version}"));
    let bin = venv.join("bin").join("sentry-cli");
    std::fs::create_dir_all(target_dir()).unwrap();
    // One installer at a time across test processes.
    let lock =
        std::fs::File::create(target_dir().join(format!(".sentry-cli-{version}.lock"))).unwrap();
    lock.lock().unwrap();
    if !bin.exists() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let status = Command::new(&python)
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed to install sentry-cli from PyPI");
        assert!(
            status.success(),
            "creating a venv at {} failed",
            venv.display()
        );
        let out = Command::new(venv.join("bin").join("pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                &format!("sentry-cli=={version}"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pip install sentry-cli=={version} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(&bin).arg("--version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(version),
        "{} is not sentry-cli {version}",
        bin.display()
    );
    bin
}

/// A relstore server on `127.0.0.1:<random port>` serving `store`, counting the requests that
/// upload pieces. Stops when dropped.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `POST .../chunk-upload/` requests received.
    pub chunk_posts: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts a server over `store` with `config`.
    pub fn start(store: Store, config: relstore_server::Config) -> Server {
        let chunk_posts = Arc::new(AtomicUsize::new(0));
        let counter = chunk_posts.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = relstore_server::app(relstore_server::AppState::new(store, config))
                    .layer(axum::middleware::from_fn(
                        move |req: axum::extract::Request, next: axum::middleware::Next| {
                            if req.method() == axum::http::Method::POST
                                && req.uri().path().contains("/chunk-upload")
                            {
                                counter.fetch_add(1, Ordering::SeqCst);
                            }
                            next.run(req)
                        },
                    ));
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        Server {
            addr,
            chunk_posts,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `sentry-cli` with the environment of contract section 7 and returns its output,
/// failing the test (with both streams) when it exits non-zero.
pub fn run_cli(
    bin: &Path,
    server: &Server,
    token: &str,
    org: &str,
    project: &str,
    args: &[&str],
) -> Output {
    let out = Command::new(bin)
        .args(args)
        .env("SENTRY_URL", server.url())
        .env("SENTRY_AUTH_TOKEN", token)
        .env("SENTRY_ORG", org)
        .env("SENTRY_PROJECT", project)
        .env("SENTRY_DISABLE_UPDATE_CHECK", "true")
        .env_remove("SENTRY_DSN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sentry-cli {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

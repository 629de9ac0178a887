//! Support for end-to-end tests with the real `sentry-cli`: installing a pinned version from PyPI
//! into a virtual environment under the workspace's `target/` (once; later runs reuse it), and
//! running a relstore server on a loopback port in a background thread.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;

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
    /// Every request and the body bytes its handler read.
    pub traffic: Arc<Traffic>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts a server over `store` with `config`.
    pub fn start(store: Store, config: relstore_server::Config) -> Server {
        let chunk_posts = Arc::new(AtomicUsize::new(0));
        let counter = chunk_posts.clone();
        let traffic = Arc::new(Traffic::default());
        let recorder = traffic.clone();
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
                    ))
                    .layer(axum::middleware::from_fn(
                        move |req: axum::extract::Request, next: axum::middleware::Next| {
                            next.run(recorder.clone().count(req))
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
            traffic,
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

/// One request as the server saw it: its body counted as the handlers read it (after HTTP
/// framing, before multipart or gzip decoding).
#[derive(Clone, Debug, Default)]
pub struct RequestRecord {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The URI path.
    pub path: String,
    /// Body bytes read.
    pub body_bytes: u64,
    /// Multipart parts named `file` (raw pieces).
    pub raw_parts: u64,
    /// Multipart parts named `file_gzip` (gzip-compressed pieces).
    pub gzip_parts: u64,
    /// The body itself, kept for assemble requests only (small JSON).
    pub body: Vec<u8>,
}

impl RequestRecord {
    /// `POST .../chunk-upload/`.
    pub fn is_chunk_post(&self) -> bool {
        self.method == "POST" && self.path.contains("/chunk-upload")
    }

    /// `POST .../assemble/`.
    pub fn is_assemble(&self) -> bool {
        self.method == "POST" && self.path.trim_end_matches('/').ends_with("/assemble")
    }
}

/// The requests a [`Server`] received, in arrival order.
#[derive(Debug, Default)]
pub struct Traffic {
    records: Mutex<Vec<RequestRecord>>,
}

const RAW_PART: &[u8] = b"name=\"file\"";
const GZIP_PART: &[u8] = b"name=\"file_gzip\"";

/// Matches of `pat` in `tail + data` that end inside `data` (so a match split across two
/// frames is counted once).
fn new_matches(tail: &[u8], data: &[u8], pat: &[u8]) -> u64 {
    let mut joined = Vec::with_capacity(tail.len() + data.len());
    joined.extend_from_slice(tail);
    joined.extend_from_slice(data);
    joined
        .windows(pat.len())
        .enumerate()
        .filter(|(i, w)| *w == pat && i + pat.len() > tail.len())
        .count() as u64
}

impl Traffic {
    /// Requests so far (a mark for [`Traffic::since`]).
    pub fn len(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    /// Requests received after `mark`.
    pub fn since(&self, mark: usize) -> Vec<RequestRecord> {
        self.records.lock().unwrap()[mark..].to_vec()
    }

    /// Wraps `req`'s body so that every frame a handler reads is counted.
    fn count(self: Arc<Self>, req: axum::extract::Request) -> axum::extract::Request {
        let idx = {
            let mut records = self.records.lock().unwrap();
            records.push(RequestRecord {
                method: req.method().to_string(),
                path: req.uri().path().to_owned(),
                ..RequestRecord::default()
            });
            records.len() - 1
        };
        let (parts, body) = req.into_parts();
        let mut tail: Vec<u8> = Vec::new();
        let counted = body.into_data_stream().inspect(move |frame| {
            let Ok(data) = frame else { return };
            let mut records = self.records.lock().unwrap();
            let r = &mut records[idx];
            r.body_bytes += data.len() as u64;
            if r.is_chunk_post() {
                r.raw_parts += new_matches(&tail, data, RAW_PART);
                r.gzip_parts += new_matches(&tail, data, GZIP_PART);
                let keep = GZIP_PART.len().min(data.len() + tail.len());
                let mut joined = std::mem::take(&mut tail);
                joined.extend_from_slice(&data[data.len().saturating_sub(keep)..]);
                tail = joined[joined.len() - keep..].to_vec();
            } else if r.is_assemble() && r.body.len() < 1 << 20 {
                r.body.extend_from_slice(data);
            }
        });
        axum::extract::Request::from_parts(parts, axum::body::Body::from_stream(counted))
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
    run_cli_env(bin, server, token, org, project, args, &[])
}

/// [`run_cli`] with extra environment variables (e.g. `SENTRY_LOG_LEVEL=debug`).
pub fn run_cli_env(
    bin: &Path,
    server: &Server,
    token: &str,
    org: &str,
    project: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let out = Command::new(bin)
        .args(args)
        .env("SENTRY_URL", server.url())
        .env("SENTRY_AUTH_TOKEN", token)
        .env("SENTRY_ORG", org)
        .env("SENTRY_PROJECT", project)
        .env("SENTRY_DISABLE_UPDATE_CHECK", "true")
        .env_remove("SENTRY_DSN")
        .envs(env.iter().copied())
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

/// Writes a build directory: each of `files` (path relative to `dir`, bytes), creating folders
/// as needed. Returns the files as sentry-cli names them in a release: (`~/` + path, bytes).
pub fn write_build_dir<N: AsRef<str>>(
    dir: &Path,
    files: Vec<(N, Vec<u8>)>,
) -> Vec<(String, Vec<u8>)> {
    files
        .into_iter()
        .map(|(rel, data)| {
            let p = dir.join(rel.as_ref());
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, &data).unwrap();
            (format!("~/{}", rel.as_ref()), data)
        })
        .collect()
}

/// The files of release `version` of project `project` in organization `acme` (one page of at
/// most 1000).
pub fn release_files(store: &Store, project: &str, version: &str) -> Vec<relstore::FileRecord> {
    store
        .list_files(
            &relstore::ReleaseScope::project("acme", project, version),
            &relstore::ListQuery {
                limit: 1000,
                ..Default::default()
            },
        )
        .unwrap()
        .items
}

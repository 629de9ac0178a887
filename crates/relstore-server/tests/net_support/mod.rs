//! Support for tests over a real loopback socket: a server running [`relstore_server::serve`] in a
//! background thread with its own runtime, and the few client calls the tests share (upload,
//! paginated list, download, a streamed multipart body's framing), built on `reqwest`. Generated
//! content, the collision pairs and memory figures come from `relstore_testkit`.
//!
//! Each test binary includes this module and uses only part of it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use relstore::Store;
use reqwest::StatusCode;
use serde_json::Value;

/// A server on `127.0.0.1:<random port>` running `relstore_server::serve` over a store it owns.
/// Dropping it shuts it down gracefully and waits until the store has been released, so the data
/// directory can be reopened at once.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Starts serving `store` (moved in: the server holds the only handle) with `config`.
    pub fn start(store: Store, config: relstore_server::Config) -> Server {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                addr_tx
                    .send(listener.local_addr()?)
                    .expect("the test waits for the address");
                let state = relstore_server::AppState::new(store, config);
                relstore_server::serve(listener, state, async move {
                    let _ = stop_rx.await;
                })
                .await
            })
            // Dropping the runtime here waits for its blocking tasks, the last store holders.
        });
        let addr = addr_rx.recv().expect("the server thread failed to bind");
        Server {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Tells the server to stop accepting connections and finish what is in flight; returns at
    /// once.
    pub fn begin_shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Shuts down and waits until `serve` has returned and the store is released; returns what
    /// `serve` returned.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.begin_shutdown();
        let t = self.thread.take().expect("joined once");
        t.join().expect("the server thread panicked")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.begin_shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A client that never goes through a proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

/// One file to upload.
pub struct Upload<'a> {
    /// The `name` field.
    pub name: &'a str,
    /// The `dist` field, when set.
    pub dist: Option<&'a str>,
    /// The file part's content type.
    pub content_type: &'a str,
    /// Repeated `header` fields, `Key:Value`.
    pub headers: &'a [&'a str],
    /// The file's bytes.
    pub bytes: Vec<u8>,
}

/// POSTs `u` as multipart to `files_url` (a `.../files/` URL); returns the status and JSON.
pub async fn upload(
    c: &reqwest::Client,
    token: &str,
    files_url: &str,
    u: Upload<'_>,
) -> (StatusCode, Value) {
    let part = reqwest::multipart::Part::bytes(u.bytes)
        .file_name("upload")
        .mime_str(u.content_type)
        .expect("valid content type");
    let mut form = reqwest::multipart::Form::new()
        .part("file", part)
        .text("name", u.name.to_owned());
    if let Some(d) = u.dist {
        form = form.text("dist", d.to_owned());
    }
    for h in u.headers {
        form = form.text("header", (*h).to_owned());
    }
    let r = c
        .post(files_url)
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {files_url}: {e}"));
    json_of(r).await
}

/// The status and JSON body of `r`; fails the test when the body is not JSON.
pub async fn json_of(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let body = r.bytes().await.expect("response body");
    let v = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{status}: body is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, v)
}

/// Creates release `version` through the API: at the project level when `project` is given,
/// at the organization level with no project otherwise. Accepts 201 and 208.
pub async fn create_release(
    c: &reqwest::Client,
    base: &str,
    token: &str,
    org: &str,
    project: Option<&str>,
    version: &str,
) {
    let (url, body) = match project {
        Some(p) => (
            format!("{base}/api/0/projects/{org}/{p}/releases/"),
            serde_json::json!({ "version": version }),
        ),
        None => (
            format!("{base}/api/0/organizations/{org}/releases/"),
            serde_json::json!({ "version": version, "projects": [] }),
        ),
    };
    let r = c
        .post(&url)
        .bearer_auth(token)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let (s, v) = json_of(r).await;
    assert!(
        s == StatusCode::CREATED || s == StatusCode::ALREADY_REPORTED,
        "creating release {version}: {s} {v}"
    );
}

/// The `next` URL of a `Link` header when it says another page exists.
pub fn next_link(link: &str) -> Option<String> {
    link.split(", <").find_map(|part| {
        let part = part.trim_start_matches('<');
        let (url, params) = part.split_once('>')?;
        (params.contains("rel=\"next\"") && params.contains("results=\"true\""))
            .then(|| url.to_owned())
    })
}

/// `GET url` with `token`; fails the test when no response comes.
pub async fn get(c: &reqwest::Client, token: &str, url: &str) -> reqwest::Response {
    c.get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Every item of a paginated list, following `Link` until `results="false"`; fails the test on
/// a non-200 page or a page without `Link`.
pub async fn list_all(c: &reqwest::Client, token: &str, first: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut url = Some(first.to_owned());
    while let Some(u) = url.take() {
        let r = get(c, token, &u).await;
        let link = r
            .headers()
            .get("link")
            .unwrap_or_else(|| panic!("GET {u}: no Link header"))
            .to_str()
            .expect("ASCII Link")
            .to_owned();
        let (s, v) = json_of(r).await;
        assert_eq!(s, StatusCode::OK, "GET {u}: {v}");
        out.extend(v.as_array().expect("a list").iter().cloned());
        url = next_link(&link);
    }
    out
}

/// Downloads `files_url/{id}/?download=1`; fails the test on a status other than 200.
pub async fn download(c: &reqwest::Client, token: &str, files_url: &str, id: &str) -> Vec<u8> {
    let u = format!("{files_url}{id}/?download=1");
    let r = get(c, token, &u).await;
    assert_eq!(r.status(), StatusCode::OK, "GET {u}");
    r.bytes().await.expect("download body").to_vec()
}

/// Lower-case hex SHA-1 of `b`.
pub fn sha1_hex(b: &[u8]) -> String {
    use sha1::Digest;
    relstore_testkit::hex(&sha1::Sha1::digest(b))
}

/// A fresh store in `dir/data` with release `1.0` of organization `acme`, project `web`, served
/// by a new [`Server`] with the default configuration. Returns the server, a token for `acme`
/// and the release's `.../files/` URL.
pub fn serve_release(dir: &Path) -> (Server, String, String) {
    let store = Store::open_path(dir.join("data")).expect("open store");
    let (token, _) = store.create_token("acme", &[], "").expect("create token");
    store
        .create_release("acme", "1.0", &["web"])
        .expect("create release");
    let server = Server::start(store, relstore_server::Config::default());
    let url = format!(
        "{}/api/0/projects/acme/web/releases/1.0/files/",
        server.url()
    );
    (server, token, url)
}

/// The multipart framing of an upload streamed by hand: the bytes before a `file` part named
/// `filename` (`application/octet-stream`) and those after its content, which add a `name`
/// field `~/{filename}` and close the body.
pub fn file_part_frame(boundary: &str, filename: &str) -> (String, String) {
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!(
        "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n\
         ~/{filename}\r\n--{boundary}--\r\n"
    );
    (head, tail)
}

//! moto's S3 server on a loopback port, for tests: installed from PyPI into a virtual environment
//! under the workspace's `target/` when missing (once; later runs reuse it), started on a free
//! port, stopped when dropped or, for the shared instance, when the test process exits.
//!
//! moto's conditional writes check and then write without a lock of their own; under concurrent
//! requests with large bodies two `If-None-Match: *` PUTs of one key can both succeed (measured
//! while building this harness: 3 of 10 races of four 16 MB PUTs had two or three winners). The
//! launcher therefore serves one request at a time, which makes every conditional write atomic as
//! S3's are. Tests of races rely on that; never point them at a server that lacks it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::config::BucketConfig;

/// The moto release the tests run against.
pub const MOTO_VERSION: &str = "5.2.5";

/// The server: moto's WSGI app behind one lock, on `127.0.0.1:0`, printing its port, exiting when
/// its standard input closes (the test process is gone, however it ended).
const LAUNCHER: &str = r#"
import os, sys, threading
from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app)

app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()

def serialised(environ, start_response):
    with lock:
        return list(app(environ, start_response))

server = make_server("127.0.0.1", 0, serialised, threaded=True,
                     request_handler=MotoRequestHandler)

def exit_with_parent():
    sys.stdin.read()
    os._exit(0)

threading.Thread(target=exit_with_parent, daemon=True).start()
print(server.server_port, flush=True)
server.serve_forever()
"#;

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    // Held open: moto exits when it closes.
    _stdin: ChildStdin,
    port: u16,
}

/// The workspace's `target/` directory (or `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    }
}

/// The Python of a virtual environment with moto installed, installing it first when missing.
/// Panics (fails the test) when it cannot be installed: a test never skips silently.
pub fn moto_python() -> PathBuf {
    let target = target_dir();
    let venv = target.join(format!("moto-{MOTO_VERSION}"));
    let python = venv.join("bin").join("python");
    let done = venv.join(".installed");
    std::fs::create_dir_all(&target).expect("create target/");
    // One installer at a time across test processes.
    let lock = std::fs::File::create(target.join(format!(".moto-{MOTO_VERSION}.lock")))
        .expect("create the moto install lock");
    lock.lock().expect("take the moto install lock");
    if !done.exists() {
        let host_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let status = Command::new(&host_python)
            .args(["-m", "venv", "--clear"])
            .arg(&venv)
            .status()
            .unwrap_or_else(|e| panic!("{host_python} is needed to install moto from PyPI: {e}"));
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
                &format!("moto[server]=={MOTO_VERSION}"),
            ])
            .output()
            .expect("run pip");
        assert!(
            out.status.success(),
            "pip install moto[server]=={MOTO_VERSION} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&done, MOTO_VERSION).expect("mark the moto venv installed");
    }
    python
}

impl Moto {
    /// Starts a server of its own (stopped when dropped).
    pub fn start() -> Moto {
        let python = moto_python();
        let log = std::env::var_os("RELSTORE_MOTO_LOG")
            .and_then(|p| std::fs::File::create(p).ok())
            .map_or_else(Stdio::null, Stdio::from);
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(LAUNCHER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start moto with {}: {e}", python.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read moto's port");
        let port: u16 = line.trim().parse().unwrap_or_else(|_| {
            let status = child.try_wait().ok().flatten();
            panic!(
                "moto did not start (printed {line:?}, exit {status:?}); \
                 set RELSTORE_MOTO_LOG=<file> to see its output"
            )
        });
        Moto {
            child,
            _stdin: stdin,
            port,
        }
    }

    /// One server for the whole test process, started on first use; it exits with the process.
    pub fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        SHARED.get_or_init(Moto::start)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates bucket `name` (an unsigned `PUT /name`, which moto accepts).
    pub fn create_bucket(&self, name: &str) {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        conn.set_read_timeout(Some(Duration::from_secs(30))).ok();
        write!(
            conn,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("send create-bucket");
        let mut answer = String::new();
        conn.read_to_string(&mut answer)
            .expect("read create-bucket answer");
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "creating bucket {name} failed: {answer}"
        );
    }

    /// A configuration for prefix `prefix` of a new, empty bucket (named after `tag`), with
    /// dummy credentials and plain HTTP to this server.
    pub fn bucket(&self, tag: &str, prefix: &str) -> BucketConfig {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let tag: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(30)
            .collect();
        let name = format!(
            "rs-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.create_bucket(&name);
        let mut config = BucketConfig::new(format!("s3://{name}/{prefix}"));
        config.endpoint = Some(self.endpoint());
        config.allow_http = true;
        config.region = Some("us-east-1".into());
        config.credentials = Some(("testing".into(), "testing".into()));
        config
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

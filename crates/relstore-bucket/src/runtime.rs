//! The crate's own small tokio runtime, and the bridge that lets synchronous code (the relstore
//! library has no async runtime) wait for work done on it.
//!
//! Work is spawned onto the runtime and the calling thread waits for its result with a plain
//! executor, never with `Runtime::block_on`: that works from any thread, including a thread of
//! another tokio runtime (the HTTP server's), where `block_on` would panic. The runtime is shut
//! down in the background when the last handle goes, so dropping it inside an async context is
//! safe too.

use std::future::Future;
use std::sync::Arc;

use crate::error::{Error, Result};

/// A handle to the runtime; clones share it.
#[derive(Clone, Debug)]
pub(crate) struct Runtime {
    inner: Arc<Owned>,
}

#[derive(Debug)]
struct Owned {
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Runtime {
    /// A runtime of `threads` workers and as many blocking threads (file reads of packs).
    pub(crate) fn new(threads: usize) -> Result<Runtime> {
        let threads = threads.max(1);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .max_blocking_threads(threads)
            .thread_name("relstore-bucket")
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                op: "start the bucket runtime",
                path: "<runtime>".into(),
                source,
            })?;
        Ok(Runtime {
            inner: Arc::new(Owned { rt: Some(rt) }),
        })
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        self.inner
            .rt
            .as_ref()
            .expect("the runtime lives until its last handle drops")
            .handle()
    }

    /// Runs `fut` on the runtime and waits for its output on the calling thread.
    pub(crate) fn run<F, T>(&self, fut: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let task = self.handle().spawn(fut);
        match futures::executor::block_on(task) {
            Ok(out) => out,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(Error::Stopped),
        }
    }

    /// Starts `fut` in the background.
    pub(crate) fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle().spawn(fut)
    }
}

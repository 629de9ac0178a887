//! An `ObjectStore` that wraps another and fails, delays or holds chosen requests, takes the whole
//! bucket down on demand, and counts requests by S3 operation (for the request-cost figures).
//!
//! A rule matches requests by operation and by a substring of the key, and fires on the N-th
//! matching request after it was added. A held request waits at a [`Gate`] until the test opens
//! it, and the test can wait until it arrives: that is how a test puts a request "in flight" at a
//! precise point without sleeping.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

/// An S3 operation, as the wrapper counts and matches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `PutObject` (slots, markers, the lease).
    Put,
    /// `CreateMultipartUpload`.
    CreateMultipart,
    /// `UploadPart`.
    PutPart,
    /// `CompleteMultipartUpload`.
    CompleteMultipart,
    /// `AbortMultipartUpload`.
    AbortMultipart,
    /// `GetObject` (whole or ranged).
    Get,
    /// `HeadObject`.
    Head,
    /// `ListObjectsV2` (one call; pages are counted apart).
    List,
    /// A create-if-absent copy: `CreateMultipartUpload` + `UploadPartCopy` +
    /// `CompleteMultipartUpload` on S3.
    Copy,
    /// `DeleteObject(s)`.
    Delete,
}

/// What a rule does to the request it fires on.
#[derive(Clone, Debug)]
pub enum Action {
    /// Fail it (before it reaches the server).
    Fail,
    /// Delay it, then let it through.
    Delay(Duration),
    /// Hold it at the gate until the test opens it, then let it through.
    Hold(Arc<Gate>),
}

/// A rule: fires on the `nth` (1-based) request matching `op` and `key_contains` after it was
/// added, then is spent; with `nth == 0` it fires on every matching request until removed with
/// [`Faults::clear`].
#[derive(Clone, Debug)]
pub struct Rule {
    /// The operation to match, any when `None`.
    pub op: Option<Op>,
    /// A substring the key must contain, any when `None`.
    pub key_contains: Option<String>,
    /// Which matching request fires it (1 = the next one).
    pub nth: u64,
    /// What it does.
    pub action: Action,
}

impl Rule {
    /// A rule failing the `nth` next `op` request.
    pub fn fail(op: Op, nth: u64) -> Rule {
        Rule {
            op: Some(op),
            key_contains: None,
            nth,
            action: Action::Fail,
        }
    }

    /// Restricts the rule to keys containing `part`.
    pub fn on_key(mut self, part: &str) -> Rule {
        self.key_contains = Some(part.to_owned());
        self
    }

    fn matches(&self, op: Op, key: &str) -> bool {
        self.op.is_none_or(|o| o == op)
            && self.key_contains.as_deref().is_none_or(|k| key.contains(k))
    }
}

/// A point where a held request waits until the test opens it.
#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<(bool, bool)>, // (arrived, open)
    changed: Condvar,
    opened: tokio::sync::Notify,
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    /// Blocks until a request waits at the gate; false if none came within `timeout` (a
    /// generous bound that separates "arrived" from "never will").
    pub fn wait_arrived(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while !s.0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Lets the held request (and any later one) through.
    pub fn open(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.opened.notify_waiters();
    }

    async fn pass(&self) {
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.0 = true;
        }
        self.changed.notify_all();
        loop {
            let opened = self.opened.notified();
            if self.state.lock().unwrap_or_else(|p| p.into_inner()).1 {
                return;
            }
            opened.await;
        }
    }
}

/// Requests counted by operation; LIST pages counted as S3 bills them (1,000 keys a page).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Requests by operation.
    pub by_op: HashMap<Op, u64>,
    /// LIST pages.
    pub list_pages: u64,
}

impl RequestCounts {
    /// Requests of `op`.
    pub fn get(&self, op: Op) -> u64 {
        self.by_op.get(&op).copied().unwrap_or(0)
    }

    /// Requests S3 bills in its PUT class (PUT, COPY, POST, LIST): a create-if-absent copy is
    /// three of them, a LIST call one per page.
    pub fn put_class(&self) -> u64 {
        self.get(Op::Put)
            + self.get(Op::CreateMultipart)
            + self.get(Op::PutPart)
            + self.get(Op::CompleteMultipart)
            + 3 * self.get(Op::Copy)
            + self.list_pages
    }

    /// Requests S3 bills in its GET class (GET, HEAD).
    pub fn get_class(&self) -> u64 {
        self.get(Op::Get) + self.get(Op::Head)
    }
}

/// The controls shared by a [`FaultyStore`] and its test.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<(Rule, u64)>>,
    down: AtomicBool,
    ignore_conditions: AtomicBool,
    counts: Mutex<RequestCounts>,
}

impl Faults {
    /// Adds a rule.
    pub fn add(&self, rule: Rule) {
        self.rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((rule, 0));
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Takes the bucket down (every request fails) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Makes the store behave like a server that ignores conditional writes: create-if-absent
    /// and if-match PUTs and create-if-absent copies overwrite unconditionally.
    pub fn set_ignore_conditions(&self, ignore: bool) {
        self.ignore_conditions.store(ignore, Ordering::SeqCst);
    }

    /// Requests seen so far (failed ones included: they were sent, as far as the caller knows).
    pub fn counts(&self) -> RequestCounts {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts counting from zero.
    pub fn reset_counts(&self) {
        *self.counts.lock().unwrap_or_else(|p| p.into_inner()) = RequestCounts::default();
    }

    fn count(&self, op: Op) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *c.by_op.entry(op).or_insert(0) += 1;
        if op == Op::List {
            c.list_pages += 1;
        }
    }

    /// Counts the request and applies what the rules say.
    async fn before(&self, op: Op, key: &str) -> object_store::Result<()> {
        self.count(op);
        if self.down.load(Ordering::SeqCst) {
            return Err(injected(op, key, "the bucket is down"));
        }
        let fired = {
            let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
            let mut fired = None;
            for i in 0..rules.len() {
                let (rule, seen) = &mut rules[i];
                if rule.matches(op, key) {
                    if rule.nth == 0 {
                        fired = Some(rule.action.clone());
                        break;
                    }
                    *seen += 1;
                    if *seen == rule.nth {
                        fired = Some(rules.remove(i).0.action);
                        break;
                    }
                }
            }
            fired
        };
        match fired {
            None => Ok(()),
            Some(Action::Fail) => Err(injected(op, key, "injected failure")),
            Some(Action::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Some(Action::Hold(gate)) => {
                gate.pass().await;
                Ok(())
            }
        }
    }
}

fn injected(op: Op, key: &str, why: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "faults",
        source: format!("{why} ({op:?} {key})").into(),
    }
}

/// The wrapping store.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: Arc<Faults>,
}

impl FaultyStore {
    /// Wraps `inner`; the returned [`Faults`] control it.
    pub fn wrap(inner: Arc<dyn ObjectStore>) -> (Arc<FaultyStore>, Arc<Faults>) {
        let faults = Arc::new(Faults::default());
        (
            Arc::new(FaultyStore {
                inner,
                faults: faults.clone(),
            }),
            faults,
        )
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.faults.before(Op::Put, location.as_ref()).await?;
        let mut opts = opts;
        if self.faults.ignore_conditions.load(Ordering::SeqCst) {
            opts.mode = object_store::PutMode::Overwrite;
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.faults
            .before(Op::CreateMultipart, location.as_ref())
            .await?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            inner,
            faults: self.faults.clone(),
            key: location.to_string(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let op = if options.head { Op::Head } else { Op::Get };
        self.faults.before(op, location.as_ref()).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        // One GET per range, each through `get_opts` so each is counted and can fail.
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            let got = self
                .get_opts(location, GetOptions::new().with_range(Some(r.clone())))
                .await?;
            out.push(got.bytes().await?);
        }
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let faults = self.faults.clone();
        let inner = self.inner.clone();
        locations
            .then(move |location| {
                let faults = faults.clone();
                let inner = inner.clone();
                async move {
                    let location = location?;
                    faults.before(Op::Delete, location.as_ref()).await?;
                    let mut done =
                        inner.delete_stream(futures::stream::iter([Ok(location)]).boxed());
                    done.next().await.unwrap_or_else(|| {
                        Err(injected(Op::Delete, "", "the inner store returned nothing"))
                    })
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.counted_list(prefix, None)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.counted_list(prefix, Some(offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.faults.before(Op::List, &key).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.faults.before(Op::Copy, to.as_ref()).await?;
        let mut options = options;
        if self.faults.ignore_conditions.load(Ordering::SeqCst) {
            options.mode = object_store::CopyMode::Overwrite;
        }
        self.inner.copy_opts(from, to, options).await
    }
}

impl FaultyStore {
    fn counted_list(
        &self,
        prefix: Option<&Path>,
        offset: Option<&Path>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let faults = self.faults.clone();
        let inner = self.inner.clone();
        let prefix = prefix.cloned();
        let offset = offset.cloned();
        let key = prefix.as_ref().map(|p| p.to_string()).unwrap_or_default();
        let gate_faults = faults.clone();
        futures::stream::once(async move { gate_faults.before(Op::List, &key).await })
            .flat_map(move |allowed| match allowed {
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
                Ok(()) => {
                    let listing = match &offset {
                        Some(o) => inner.list_with_offset(prefix.as_ref(), o),
                        None => inner.list(prefix.as_ref()),
                    };
                    let faults = faults.clone();
                    let mut seen = 0u64;
                    listing
                        .inspect(move |item| {
                            if item.is_ok() {
                                seen += 1;
                                // S3 returns 1,000 keys a page: key 1,001 starts page two.
                                if seen > 1 && (seen - 1).is_multiple_of(1000) {
                                    faults
                                        .counts
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .list_pages += 1;
                                }
                            }
                        })
                        .boxed()
                }
            })
            .boxed()
    }
}

#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    faults: Arc<Faults>,
    key: String,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        let faults = self.faults.clone();
        let key = self.key.clone();
        Box::pin(async move {
            faults.before(Op::PutPart, &key).await?;
            part.await
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.faults.before(Op::CompleteMultipart, &self.key).await?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.faults.before(Op::AbortMultipart, &self.key).await?;
        self.inner.abort().await
    }
}

//! Release-file upload (`POST .../files/`, contract section 3.1), streamed into the store.
//!
//! The multipart `file` part is never held whole: its chunks go through a bounded channel to a
//! blocking task that feeds them, as a `std::io::Read`, to [`relstore::Store::upload_deferred`],
//! so memory stays at a few chunks whatever the upload size. Clients send the `file` part before
//! `name`, `dist` and `header`, so the target is resolved when the body has been read, and the
//! checks run then, in the contract's order. Anything that stops the body early (a client gone, a
//! malformed body, the size limit, the idle timeout) drops the channel without its end marker, and
//! the store indexes nothing.

use std::io::Read;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::multipart::{Field, Multipart, MultipartRejection};
use axum::http::StatusCode;
use axum::response::Response;
use relstore::{FileRecord, ReleaseScope, UploadTarget};
use tokio::sync::{mpsc, oneshot};

use crate::error::{json_response, ApiError};
use crate::AppState;

/// Chunks of the body in flight between the connection and the store (bounds memory).
const CHANNEL_DEPTH: usize = 8;
/// Largest accepted text field (`name`, `dist`, `header`, ...).
const MAX_TEXT_FIELD: usize = 64 << 10;
/// Most form fields in one upload (64 headers plus the few others, with room to spare).
const MAX_FIELDS: usize = 256;

enum Msg {
    Data(Bytes),
    End,
}

/// The blocking side of the bridge: reads what the async side sends; a channel closed without
/// [`Msg::End`] is an error, never an end of file, so a cut-off body is never stored.
struct ChannelReader {
    rx: mpsc::Receiver<Msg>,
    cur: Bytes,
    done: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Msg::Data(b)) => self.cur = b,
                Some(Msg::End) => self.done = true,
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the upload body ended early",
                    ))
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// A running store upload fed by the handler.
struct Sink {
    tx: Option<mpsc::Sender<Msg>>,
    target: Option<oneshot::Sender<Option<UploadTarget>>>,
    task: tokio::task::JoinHandle<relstore::Result<FileRecord>>,
}

impl Sink {
    fn start(state: &AppState) -> Sink {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let (ttx, trx) = oneshot::channel::<Option<UploadTarget>>();
        let store = state.store.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut reader = ChannelReader {
                rx,
                cur: Bytes::new(),
                done: false,
            };
            store.upload_deferred(&mut reader, move || trx.blocking_recv().ok().flatten())
        });
        Sink {
            tx: Some(tx),
            target: Some(ttx),
            task,
        }
    }

    /// Waits for the store's answer after the target (or its absence) was sent.
    async fn finish(mut self, target: Option<UploadTarget>) -> Result<FileRecord, ApiError> {
        if let Some(t) = self.target.take() {
            let _ = t.send(target);
        }
        self.tx = None;
        match (&mut self.task).await {
            Ok(r) => Ok(r?),
            Err(e) => Err(ApiError::internal(format!("upload task failed: {e}"))),
        }
    }
}

/// What the form said, besides the file bytes.
#[derive(Default)]
struct Form {
    file_seen: bool,
    file_name: Option<String>,
    content_type: Option<String>,
    name: Option<String>,
    dist: Option<String>,
    headers: Vec<String>,
    overwrite: bool,
}

/// The next piece of a multipart field, failing after `idle` without data.
pub(crate) async fn next_chunk(
    field: &mut Field<'_>,
    idle: Duration,
) -> Result<Option<Bytes>, ApiError> {
    match tokio::time::timeout(idle, field.chunk()).await {
        Err(_) => Err(ApiError::detail(
            StatusCode::REQUEST_TIMEOUT,
            format!("No upload data arrived for {} seconds", idle.as_secs()),
        )),
        Ok(Err(e)) => Err(ApiError::bad_request(format!(
            "Malformed multipart body: {e}"
        ))),
        Ok(Ok(c)) => Ok(c),
    }
}

async fn read_text(field: &mut Field<'_>, idle: Duration) -> Result<String, ApiError> {
    let mut buf = Vec::new();
    while let Some(c) = next_chunk(field, idle).await? {
        if buf.len() + c.len() > MAX_TEXT_FIELD {
            return Err(ApiError::bad_request(format!(
                "Form field {:?} is over {MAX_TEXT_FIELD} bytes",
                field.name().unwrap_or("")
            )));
        }
        buf.extend_from_slice(&c);
    }
    String::from_utf8(buf).map_err(|_| ApiError::bad_request("Form fields must be UTF-8"))
}

/// Sentry's "special whitespace": `\n \t \r \f \v`.
fn special_whitespace(s: &str) -> bool {
    s.contains(['\n', '\t', '\r', '\x0c', '\x0b'])
}

fn truthy(s: &str) -> bool {
    matches!(s.trim(), "1" | "true" | "True" | "yes")
}

/// Turns the form into the upload target, with the contract's checks in its order (the file
/// part's presence is checked by the caller first).
fn resolve(form: &Form, scope: &ReleaseScope) -> Result<UploadTarget, ApiError> {
    let name = form
        .name
        .clone()
        .or_else(|| form.file_name.clone())
        .unwrap_or_default();
    if name.is_empty() || name == "file" {
        return Err(ApiError::bad_request("File name must be specified"));
    }
    let last = name.rsplit('/').next().unwrap_or(&name);
    if special_whitespace(last) || last.contains('\\') {
        return Err(ApiError::bad_request(
            "File name must not contain special whitespace characters",
        ));
    }
    let content_type = form
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    let mut headers: Vec<(String, String)> = vec![("Content-Type".into(), content_type)];
    for h in &form.headers {
        let Some((k, v)) = h.split_once(':') else {
            return Err(ApiError::bad_request(
                "header value was not formatted correctly",
            ));
        };
        if special_whitespace(v) {
            return Err(ApiError::bad_request(
                "header value must not contain special whitespace characters",
            ));
        }
        let v = v.trim().to_string();
        match headers.iter_mut().find(|(ek, _)| ek == k) {
            Some(slot) => slot.1 = v,
            None => headers.push((k.to_string(), v)),
        }
    }
    let dist = form.dist.as_deref().filter(|d| !d.is_empty());
    Ok(UploadTarget {
        key: scope.file(&name, dist),
        headers,
        overwrite: form.overwrite,
    })
}

/// Reads the multipart body, streaming the `file` part into the store, and answers 201 with the
/// file JSON. The caller has authorized the request and checked that `scope`'s release exists.
pub async fn upload(
    state: AppState,
    scope: ReleaseScope,
    overwrite: bool,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    // Sentry reads a body it cannot parse as an empty form.
    let Ok(mut multipart) = multipart else {
        return Err(ApiError::bad_request("Missing uploaded file"));
    };
    let idle = state.config.upload_idle_timeout;
    let limit = state.config.max_upload_bytes;
    let mut form = Form {
        overwrite,
        ..Form::default()
    };
    let mut sink: Option<Sink> = None;
    let mut fields = 0usize;
    let read = async {
        loop {
            let next = tokio::time::timeout(idle, multipart.next_field()).await;
            let mut field = match next {
                Err(_) => {
                    return Err(ApiError::detail(
                        StatusCode::REQUEST_TIMEOUT,
                        format!("No upload data arrived for {} seconds", idle.as_secs()),
                    ))
                }
                Ok(Err(e)) => {
                    return Err(ApiError::bad_request(format!(
                        "Malformed multipart body: {e}"
                    )))
                }
                Ok(Ok(None)) => return Ok(()),
                Ok(Ok(Some(f))) => f,
            };
            fields += 1;
            if fields > MAX_FIELDS {
                return Err(ApiError::bad_request(format!(
                    "More than {MAX_FIELDS} form fields"
                )));
            }
            match field.name().unwrap_or("") {
                "file" if !form.file_seen => {
                    form.file_seen = true;
                    form.file_name = field.file_name().map(str::to_owned);
                    form.content_type = field.content_type().map(str::to_owned);
                    let s = sink.insert(Sink::start(&state));
                    let mut total: u64 = 0;
                    while let Some(chunk) = next_chunk(&mut field, idle).await? {
                        total += chunk.len() as u64;
                        if total > limit {
                            return Err(relstore::Error::TooLarge { limit }.into());
                        }
                        let Some(tx) = &s.tx else { break };
                        if tx.send(Msg::Data(chunk)).await.is_err() {
                            // The store stopped reading: it failed; its error is the answer.
                            return Ok(());
                        }
                    }
                    if let Some(tx) = s.tx.take() {
                        let _ = tx.send(Msg::End).await;
                    }
                }
                "name" => form.name = Some(read_text(&mut field, idle).await?),
                "dist" => form.dist = Some(read_text(&mut field, idle).await?),
                "header" => form.headers.push(read_text(&mut field, idle).await?),
                "overwrite" => form.overwrite |= truthy(&read_text(&mut field, idle).await?),
                _ => while next_chunk(&mut field, idle).await?.is_some() {},
            }
        }
    };
    let outcome = read.await;
    let Some(sink) = sink else {
        outcome?;
        return Err(ApiError::bad_request("Missing uploaded file"));
    };
    if let Err(e) = outcome {
        // Abandon: the reader sees the channel close without its end and the store indexes
        // nothing.
        let _ = sink.finish(None).await;
        return Err(e);
    }
    let target = match resolve(&form, &scope) {
        Ok(t) => t,
        Err(e) => {
            let _ = sink.finish(None).await;
            return Err(e);
        }
    };
    let file = sink.finish(Some(target)).await?;
    tracing::info!(id = file.id, key = %file.key, size = file.size, "stored");
    Ok(json_response(
        StatusCode::CREATED,
        &crate::json::FileJson(&file),
    ))
}

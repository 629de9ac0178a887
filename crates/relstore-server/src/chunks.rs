//! Chunk upload and assembly (contract section 4): what sentry-cli 3.x always uses, and 2.x for
//! directories of source maps.
//!
//! - `GET  /organizations/{org}/chunk-upload/`: the upload options (404 with `--legacy-uploads`).
//! - `POST /organizations/{org}/chunk-upload/`: pieces (`file` or `file_gzip` parts named by the
//!   SHA-1 of the decoded bytes), all checked before any is stored; gzip is decoded with a hard
//!   cap, so a bomb is refused after at most `chunkSize` + 1 bytes.
//! - `POST /organizations/{org}/artifactbundle/assemble/` and
//!   `POST /organizations/{org}/releases/{version}/assemble/`: assemble a bundle from pieces and
//!   project it into release files ([`relstore::Store::assemble`]).
//!
//! Errors of these endpoints are `{"error": "..."}`, as in Sentry.

use std::io::Read;

use axum::body::Bytes;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use relstore::{AssembleOutcome, AssembleRequest, Sha1, Store};
use serde_json::{json, Value};

use tokio::sync::mpsc;

use crate::auth::{authorize, Access};
use crate::error::{blocking, json_response, ApiError};
use crate::upload::next_chunk;
use crate::AppState;

/// Largest piece (`chunkSize`).
pub const CHUNK_SIZE: u64 = 8 << 20;
/// Most pieces per request (`chunksPerRequest`).
pub const CHUNKS_PER_REQUEST: usize = 64;
/// Largest request (`maxRequestSize`), counted over the decoded piece bytes (as Sentry does).
pub const MAX_REQUEST_SIZE: u64 = 32 << 20;
/// Largest assembled file (`maxFileSize`).
pub const MAX_FILE_SIZE: u64 = 4 << 30;

fn chunk_error(message: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": message }))
}

/// `GET /organizations/{org}/chunk-upload/`.
pub async fn options(
    State(s): State<AppState>,
    Path(org): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let (h, o) = (headers.clone(), org.clone());
    blocking(move || authorize(&store, &h, &o, Access::Read)).await?;
    if s.config.legacy_uploads {
        return Err(ApiError::not_found());
    }
    let base = crate::pagination::base_url(s.config.public_url.as_deref(), &headers);
    let org_enc = percent_encoding::utf8_percent_encode(&org, percent_encoding::NON_ALPHANUMERIC);
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "url": format!("{base}/api/0/organizations/{org_enc}/chunk-upload/"),
            "chunkSize": CHUNK_SIZE,
            "chunksPerRequest": CHUNKS_PER_REQUEST,
            "maxFileSize": MAX_FILE_SIZE,
            "maxRequestSize": MAX_REQUEST_SIZE,
            "concurrency": 8,
            "hashAlgorithm": "sha1",
            "compression": ["gzip"],
            "accept": ["debug_files", "release_files", "pdbs", "sources", "bcsymbolmaps", "il2cpp", "portablepdbs", "artifact_bundles", "artifact_bundles_v2"],
        }),
    ))
}

/// Largest raw request body: `maxRequestSize` counts decoded piece bytes, as Sentry does, and
/// sentry-cli fills a request up to it before gzip, which can add a little.
const MAX_RAW_REQUEST: u64 = MAX_REQUEST_SIZE + MAX_REQUEST_SIZE / 8;
/// Messages in flight between the connection and the store (bounds memory).
const CHANNEL_DEPTH: usize = 8;

/// The request body as the store side sees it: parts, their bytes, and the end of the request.
enum PieceMsg {
    Start { name: String, gzip: bool },
    Data(Bytes),
    PartEnd,
    RequestEnd,
}

/// Why a chunk-upload request is refused, in the contract's order of precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Refusal {
    RequestTooLarge,
    ChunkTooLarge,
    ChecksumMismatch,
}

impl Refusal {
    fn message(self) -> &'static str {
        match self {
            Refusal::RequestTooLarge => "Request too large",
            Refusal::ChunkTooLarge => "Chunk size too large",
            Refusal::ChecksumMismatch => "Checksum mismatch",
        }
    }
}

/// One part's bytes, read from the channel up to its [`PieceMsg::PartEnd`]. A channel closed
/// early is an error, so a cut-off request is never recorded.
struct PartReader<'a> {
    rx: &'a mut mpsc::Receiver<PieceMsg>,
    cur: Bytes,
    ended: bool,
    /// Raw bytes handed out.
    read: u64,
}

impl Read for PartReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(PieceMsg::Data(b)) => self.cur = b,
                Some(PieceMsg::PartEnd) => self.ended = true,
                Some(_) | None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the chunk-upload body ended early",
                    ))
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        self.read += n as u64;
        Ok(n)
    }
}

impl PartReader<'_> {
    /// Reads and drops what is left of the part (after a refusal, or past a bomb's cap).
    fn drain(&mut self) -> std::io::Result<()> {
        std::io::copy(self, &mut std::io::sink()).map(|_| ())
    }
}

/// Counts the bytes read through it (decoded piece bytes, for `maxRequestSize`).
struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

/// The store side of a chunk-upload request: streams each part (decoding gzip, at most
/// `chunkSize` + 1 bytes, so a bomb never fills memory or disk) into a [`relstore::PieceBatch`],
/// and records the batch only when every part passed. Returns the refusal, if any.
fn store_pieces(
    store: &Store,
    org: &str,
    mut rx: mpsc::Receiver<PieceMsg>,
) -> relstore::Result<Option<Refusal>> {
    let abandoned = || relstore::Error::Abandoned {
        reason: "the chunk-upload request ended early".into(),
    };
    let mut batch = store.piece_batch(org)?;
    let mut refusal: Option<Refusal> = None;
    let mut decoded_total: u64 = 0;
    loop {
        let (name, gzip) = match rx.blocking_recv() {
            Some(PieceMsg::Start { name, gzip }) => (name, gzip),
            Some(PieceMsg::RequestEnd) => break,
            Some(_) | None => return Err(abandoned()),
        };
        let mut part = PartReader {
            rx: &mut rx,
            cur: Bytes::new(),
            ended: false,
            read: 0,
        };
        let declared = parse_sha1(&Value::String(name));
        let (added, decoded) = {
            let source: Box<dyn Read + '_> = if gzip {
                Box::new(flate2::read::MultiGzDecoder::new(&mut part))
            } else {
                Box::new(&mut part)
            };
            let mut piece = Counted {
                inner: source.take(CHUNK_SIZE + 1),
                n: 0,
            };
            let added = match &declared {
                Some(sha1) => batch.add(sha1, &mut piece),
                None => std::io::copy(&mut piece, &mut std::io::sink())
                    .map(|_| ())
                    .map_err(relstore::Error::UploadRead),
            };
            (added, piece.n)
        };
        if part.drain().is_err() {
            return Err(abandoned());
        }
        decoded_total += decoded;
        let this = match added {
            Ok(()) if declared.is_some() => None,
            Ok(()) => Some(Refusal::ChecksumMismatch),
            Err(relstore::Error::TooLarge { .. }) => Some(Refusal::ChunkTooLarge),
            Err(relstore::Error::ChecksumMismatch { .. }) => Some(Refusal::ChecksumMismatch),
            // The part arrived whole (it drained to its end) but did not decode: gzip that is
            // not gzip cannot match its declared checksum.
            Err(relstore::Error::UploadRead(_)) => Some(Refusal::ChecksumMismatch),
            Err(e) => return Err(e),
        };
        if let Some(t) = this {
            refusal = Some(refusal.map_or(t, |r| r.min(t)));
        }
    }
    if decoded_total > MAX_REQUEST_SIZE {
        return Ok(Some(Refusal::RequestTooLarge));
    }
    if refusal.is_some() {
        // Dropping the batch records none of its pieces.
        return Ok(refusal);
    }
    batch.commit()?;
    Ok(None)
}

/// `POST /organizations/{org}/chunk-upload/`: every part is streamed into the store as it
/// arrives (memory stays at a few buffers per request) and the pieces are recorded together
/// once the whole request has been read and every part checked.
pub async fn upload(
    State(s): State<AppState>,
    Path(org): Path<String>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let (h, o) = (headers.clone(), org.clone());
    blocking(move || authorize(&store, &h, &o, Access::Write)).await?;
    // Wait for a turn before reading the body: the client's sends pause meanwhile.
    let _turn = s
        .chunk_upload_slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::internal("chunk-upload slots closed"))?;
    let idle = s.config.upload_idle_timeout;
    let (tx, rx) = mpsc::channel::<PieceMsg>(CHANNEL_DEPTH);
    let store = s.store.clone();
    let task = tokio::task::spawn_blocking(move || store_pieces(&store, &org, rx));
    let read = async {
        let mut parts = 0usize;
        let mut received: u64 = 0;
        loop {
            let mut field = match tokio::time::timeout(idle, multipart.next_field()).await {
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
                Ok(Ok(None)) => return Ok(None),
                Ok(Ok(Some(f))) => f,
            };
            let gzip = match field.name() {
                Some("file") => false,
                Some("file_gzip") => true,
                _ => {
                    while next_chunk(&mut field, idle).await?.is_some() {}
                    continue;
                }
            };
            parts += 1;
            if parts > CHUNKS_PER_REQUEST {
                return Ok(Some(chunk_error("Too many chunks")));
            }
            let name = field.file_name().unwrap_or("").to_ascii_lowercase();
            // A send fails only when the store side stopped; its result is the answer then.
            if tx.send(PieceMsg::Start { name, gzip }).await.is_err() {
                return Ok(None);
            }
            while let Some(bytes) = next_chunk(&mut field, idle).await? {
                received += bytes.len() as u64;
                if received > MAX_RAW_REQUEST {
                    return Ok(Some(chunk_error("Request too large")));
                }
                if tx.send(PieceMsg::Data(bytes)).await.is_err() {
                    return Ok(None);
                }
            }
            if tx.send(PieceMsg::PartEnd).await.is_err() {
                return Ok(None);
            }
        }
    };
    let early = match read.await {
        Ok(None) => None,
        Ok(Some(answer)) => Some(Ok(answer)),
        Err(e) => Some(Err(e)),
    };
    if let Some(answer) = early {
        // Refused or failed before the end: the store side sees the channel close without the
        // request's end and records nothing.
        drop(tx);
        let _ = task.await;
        return answer;
    }
    let _ = tx.send(PieceMsg::RequestEnd).await;
    drop(tx);
    let refusal = match task.await {
        Ok(r) => r?,
        Err(e) => return Err(ApiError::internal(format!("chunk upload task failed: {e}"))),
    };
    Ok(match refusal {
        Some(r) => chunk_error(r.message()),
        None => StatusCode::OK.into_response(),
    })
}

fn parse_sha1(v: &Value) -> Option<Sha1> {
    v.as_str()?.parse().ok()
}

/// Resolves project references (slugs, or numeric ids as JSON integers or decimal strings) to
/// slugs of existing projects; `None` if any is unknown.
fn resolve_projects(
    store: &Store,
    org: &str,
    list: &[Value],
) -> Result<Option<Vec<String>>, ApiError> {
    let known = store.projects(org)?;
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        let by_id = |id: u64| known.iter().find(|p| p.id == id).map(|p| p.slug.clone());
        let found = match v {
            Value::Number(n) => n.as_u64().and_then(by_id),
            Value::String(s) => known
                .iter()
                .find(|p| &p.slug == s)
                .map(|p| p.slug.clone())
                .or_else(|| s.parse::<u64>().ok().and_then(by_id)),
            _ => None,
        };
        match found {
            Some(slug) if !out.contains(&slug) => out.push(slug),
            Some(_) => {}
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

fn outcome_json(outcome: AssembleOutcome) -> Response {
    let body = match outcome {
        AssembleOutcome::Missing(missing) => {
            json!({"state": "not_found", "missingChunks": missing.iter().map(Sha1::to_string).collect::<Vec<_>>(), "detail": null})
        }
        AssembleOutcome::Ok { .. } => json!({"state": "ok", "missingChunks": [], "detail": null}),
        AssembleOutcome::Failed(failure) => {
            json!({"state": "error", "missingChunks": [], "detail": crate::json::assemble_failure(failure)})
        }
        _ => json!({"state": "error", "missingChunks": [], "detail": "unknown assembly outcome"}),
    };
    json_response(StatusCode::OK, &body)
}

/// The `checksum` and `chunks` of an assemble body, or the error text.
fn checksum_and_chunks(body: &Value) -> Result<(Sha1, Vec<Sha1>), &'static str> {
    let checksum = body
        .get("checksum")
        .and_then(parse_sha1)
        .ok_or("checksum: a 40-character hex SHA-1 is required")?;
    let chunks = body
        .get("chunks")
        .and_then(Value::as_array)
        .ok_or("chunks: a list of SHA-1s is required")?;
    let chunks = chunks
        .iter()
        .map(parse_sha1)
        .collect::<Option<Vec<_>>>()
        .ok_or("chunks: every entry must be a 40-character hex SHA-1")?;
    Ok((checksum, chunks))
}

/// `POST /organizations/{org}/artifactbundle/assemble/`.
pub async fn assemble_artifact_bundle(
    State(s): State<AppState>,
    Path(org): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    blocking(move || {
        authorize(&store, &headers, &org, Access::Write)?;
        let Ok(body) = serde_json::from_slice::<Value>(&body) else {
            return Ok(chunk_error("Invalid JSON body"));
        };
        let (checksum, chunks) = match checksum_and_chunks(&body) {
            Ok(x) => x,
            Err(e) => return Ok(chunk_error(e)),
        };
        let Some(projects) = body.get("projects").and_then(Value::as_array) else {
            return Ok(chunk_error("projects: a list of projects is required"));
        };
        if projects.is_empty() {
            return Ok(chunk_error("You need to specify at least one project"));
        }
        let version = match body.get("version") {
            None | Some(Value::Null) => None,
            Some(Value::String(v)) => Some(v.clone()),
            Some(_) => return Ok(chunk_error("version: must be a string")),
        };
        let dist = match body.get("dist") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) if d.is_empty() => None,
            Some(Value::String(d)) => Some(d.clone()),
            Some(_) => return Ok(chunk_error("dist: must be a string")),
        };
        if dist.is_some() && version.is_none() {
            return Ok(chunk_error(
                "You need to specify a release together with a dist",
            ));
        }
        let Some(projects) = resolve_projects(&store, &org, projects)? else {
            return Ok(chunk_error("One or more projects are invalid"));
        };
        let outcome = store.assemble(&AssembleRequest {
            org: &org,
            checksum,
            pieces: &chunks,
            projects: &projects,
            version: version.as_deref(),
            dist: dist.as_deref(),
        })?;
        Ok(outcome_json(outcome))
    })
    .await
}

/// `POST /organizations/{org}/releases/{version}/assemble/` (sentry-cli 2.x release bundles).
pub async fn assemble_release_bundle(
    State(s): State<AppState>,
    Path((org, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    blocking(move || {
        authorize(&store, &headers, &org, Access::Write)?;
        let Some(release) = store.release(&org, &version)? else {
            return Err(ApiError::not_found());
        };
        let Ok(body) = serde_json::from_slice::<Value>(&body) else {
            return Ok(chunk_error("Invalid JSON body"));
        };
        let (checksum, chunks) = match checksum_and_chunks(&body) {
            Ok(x) => x,
            Err(e) => return Ok(chunk_error(e)),
        };
        let projects: Vec<String> = release.projects.iter().map(|p| p.slug.clone()).collect();
        let outcome = store.assemble(&AssembleRequest {
            org: &org,
            checksum,
            pieces: &chunks,
            projects: &projects,
            version: Some(&version),
            dist: None,
        })?;
        Ok(outcome_json(outcome))
    })
    .await
}

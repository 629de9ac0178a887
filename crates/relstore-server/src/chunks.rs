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

use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use relstore::{AssembleOutcome, AssembleRequest, Store};
use serde_json::{json, Value};
use sha1::Digest;

use crate::auth::{authorize, Access};
use crate::error::{blocking, json_response, ApiError};
use crate::AppState;

/// Largest piece (`chunkSize`).
pub const CHUNK_SIZE: u64 = 8 << 20;
/// Most pieces per request (`chunksPerRequest`).
pub const CHUNKS_PER_REQUEST: usize = 64;
/// Largest request (`maxRequestSize`), counted over the parts' bytes as received.
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

struct Part {
    name: String,
    gzip: bool,
    body: Vec<u8>,
}

/// Decodes gzip, stopping one byte past `cap` (a bomb never fills memory).
fn gunzip_capped(data: &[u8], cap: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .take(cap + 1)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// `POST /organizations/{org}/chunk-upload/`.
pub async fn upload(
    State(s): State<AppState>,
    Path(org): Path<String>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let (h, o) = (headers.clone(), org.clone());
    blocking(move || authorize(&store, &h, &o, Access::Write)).await?;
    let mut parts: Vec<Part> = Vec::new();
    let mut received: u64 = 0;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return Err(ApiError::bad_request(format!(
                    "Malformed multipart body: {e}"
                )))
            }
        };
        let gzip = match field.name() {
            Some("file") => false,
            Some("file_gzip") => true,
            _ => continue,
        };
        if parts.len() == CHUNKS_PER_REQUEST {
            return Ok(chunk_error("Too many chunks"));
        }
        let name = field.file_name().unwrap_or("").to_ascii_lowercase();
        let mut body = Vec::new();
        let mut field = field;
        loop {
            match field.chunk().await {
                Ok(Some(bytes)) => {
                    received += bytes.len() as u64;
                    if received > MAX_REQUEST_SIZE {
                        return Ok(chunk_error("Request too large"));
                    }
                    body.extend_from_slice(&bytes);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(ApiError::bad_request(format!(
                        "Malformed multipart body: {e}"
                    )))
                }
            }
        }
        parts.push(Part { name, gzip, body });
    }
    let outcome = blocking(move || {
        let mut pieces: Vec<([u8; 20], Vec<u8>)> = Vec::with_capacity(parts.len());
        for p in parts {
            let data = if p.gzip {
                match gunzip_capped(&p.body, CHUNK_SIZE) {
                    Ok(d) => d,
                    Err(_) => return Ok(Some("Checksum mismatch")),
                }
            } else {
                p.body
            };
            if data.len() as u64 > CHUNK_SIZE {
                return Ok(Some("Chunk size too large"));
            }
            let sha1: [u8; 20] = sha1::Sha1::digest(&data).into();
            if relstore::hex(&sha1) != p.name {
                return Ok(Some("Checksum mismatch"));
            }
            pieces.push((sha1, data));
        }
        let refs: Vec<([u8; 20], &[u8])> = pieces.iter().map(|(s, d)| (*s, d.as_slice())).collect();
        s.store.put_pieces(&org, &refs)?;
        Ok(None)
    })
    .await?;
    Ok(match outcome {
        Some(message) => chunk_error(message),
        None => StatusCode::OK.into_response(),
    })
}

fn parse_sha1(v: &Value) -> Option<[u8; 20]> {
    let s = v.as_str()?;
    if s.len() != 40 {
        return None;
    }
    relstore::unhex(&s.to_ascii_lowercase())?.try_into().ok()
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
            json!({"state": "not_found", "missingChunks": missing.iter().map(|m| relstore::hex(m)).collect::<Vec<_>>(), "detail": null})
        }
        AssembleOutcome::Ok { .. } => json!({"state": "ok", "missingChunks": [], "detail": null}),
        AssembleOutcome::Failed(detail) => {
            json!({"state": "error", "missingChunks": [], "detail": detail})
        }
        _ => json!({"state": "error", "missingChunks": [], "detail": "unknown assembly outcome"}),
    };
    json_response(StatusCode::OK, &body)
}

/// The `checksum` and `chunks` of an assemble body, or the error text.
fn checksum_and_chunks(body: &Value) -> Result<([u8; 20], Vec<[u8; 20]>), &'static str> {
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

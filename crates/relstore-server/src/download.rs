//! File downloads (`GET .../files/{id}/?download`, contract section 3.3): the content with its
//! stored `Content-Type`, `Content-Disposition`, `ETag` (the SHA-1) and single `Range`s.
//!
//! The store checks every chunk before handing out its bytes, so a damaged file never yields a
//! wrong byte. Files up to [`BUFFERED_MAX`] are read whole before the answer, so damage is a clean
//! 500; larger ones stream, and damage found mid-stream aborts the body, which the client sees as
//! a short read against `Content-Length`.

use std::io::{Read, Seek, SeekFrom};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use relstore::FileRecord;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{blocking, ApiError};
use crate::AppState;

/// Largest answer read whole before it is sent.
pub const BUFFERED_MAX: u64 = 1 << 20;
const STREAM_BLOCK: usize = 256 << 10;

/// RFC 5987 `attr-char`s stay as they are; everything else is percent-encoded.
const ATTR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `attachment; filename="..."` for a file name: the last path segment of the name with
/// whitespace runs collapsed to one space, trimmed; `"` and `\` escaped; a non-ASCII name gets an
/// ASCII fallback and `filename*=UTF-8''...` (RFC 6266).
pub fn content_disposition(name: &str) -> String {
    let collapsed = name.split_whitespace().collect::<Vec<_>>().join(" ");
    let base = collapsed.rsplit('/').next().unwrap_or("").trim();
    let quoted = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    if base.is_ascii() {
        format!("attachment; filename=\"{}\"", quoted(base))
    } else {
        let fallback: String = base
            .chars()
            .map(|c| if c.is_ascii() { c } else { '_' })
            .collect();
        format!(
            "attachment; filename=\"{}\"; filename*=UTF-8''{}",
            quoted(&fallback),
            utf8_percent_encode(base, ATTR)
        )
    }
}

/// A satisfiable byte range, inclusive.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// No usable `Range`: the whole content.
    Full,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// Nothing of the content is in range (416).
    Unsatisfiable,
}

/// Interprets a `Range` header against `size`. Only one `bytes=` range is honoured; several, or
/// another unit, answer the whole content (as RFC 9110 allows).
pub fn parse_range(value: Option<&str>, size: u64) -> RangeAsk {
    let Some(v) = value else {
        return RangeAsk::Full;
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return RangeAsk::Full;
    };
    if spec.contains(',') {
        return RangeAsk::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeAsk::Full,
        (true, false) => match parse(b) {
            None => RangeAsk::Full,
            Some(0) => RangeAsk::Unsatisfiable,
            Some(_) if size == 0 => RangeAsk::Unsatisfiable,
            Some(n) => RangeAsk::Part(size.saturating_sub(n), size - 1),
        },
        (false, _) => {
            let Some(start) = parse(a) else {
                return RangeAsk::Full;
            };
            let end = if b.is_empty() {
                size.saturating_sub(1)
            } else {
                match parse(b) {
                    Some(e) if e >= start => e.min(size.saturating_sub(1)),
                    _ => return RangeAsk::Full,
                }
            };
            if start >= size {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Part(start, end)
            }
        }
    }
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

/// Answers a download of `file`.
pub async fn respond(
    state: AppState,
    file: FileRecord,
    req: &HeaderMap,
) -> Result<Response, ApiError> {
    let etag = format!("\"{}\"", file.sha1_hex());
    let get = |h: header::HeaderName| req.get(h).and_then(|v| v.to_str().ok());
    let mut b = Response::builder()
        .header(header::ETAG, header_value(&etag))
        .header(header::ACCEPT_RANGES, "bytes");
    if get(header::IF_NONE_MATCH).is_some_and(|l| etag_matches(l, &etag)) {
        return b
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(ApiError::internal);
    }
    let size = file.size;
    // If-Range with another validator means the client's partial copy is stale: send it all.
    let range_ok = get(header::IF_RANGE).is_none_or(|v| v.trim() == etag);
    let range = if range_ok {
        parse_range(get(header::RANGE), size)
    } else {
        RangeAsk::Full
    };
    let content_type = file
        .header("Content-Type")
        .filter(|v| !v.is_empty())
        .unwrap_or("application/octet-stream");
    b = b
        .header(header::CONTENT_TYPE, header_value(content_type))
        .header(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&content_disposition(&file.key.name))
                .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
        );
    let (status, start, len) = match range {
        RangeAsk::Full => (StatusCode::OK, 0, size),
        RangeAsk::Part(s, e) => {
            b = b.header(header::CONTENT_RANGE, format!("bytes {s}-{e}/{size}"));
            (StatusCode::PARTIAL_CONTENT, s, e - s + 1)
        }
        RangeAsk::Unsatisfiable => {
            let mut r = crate::error::json_response(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &serde_json::json!({"detail": "Requested range not satisfiable"}),
            );
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{size}")),
            );
            return Ok(r);
        }
    };
    b = b.status(status).header(header::CONTENT_LENGTH, len);
    let store = state.store.clone();
    if len <= BUFFERED_MAX {
        let bytes = blocking(move || {
            let mut r = store.open_file(&file)?;
            r.seek(SeekFrom::Start(start))
                .map_err(|e| read_error(e, &file))?;
            let mut buf = Vec::with_capacity(len as usize);
            r.take(len)
                .read_to_end(&mut buf)
                .map_err(|e| read_error(e, &file))?;
            Ok(buf)
        })
        .await?;
        return b.body(Body::from(bytes)).map_err(ApiError::internal);
    }
    let mut reader = {
        let store = store.clone();
        let f = file.clone();
        blocking(move || Ok(store.open_file(&f)?)).await?
    };
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut left = len;
        if let Err(e) = reader.seek(SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        while left > 0 {
            let mut buf = vec![0u8; (left as usize).min(STREAM_BLOCK)];
            match reader.read(&mut buf) {
                Ok(0) => {
                    let _ = tx.blocking_send(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "content shorter than its record",
                    )));
                    return;
                }
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return; // client gone
                    }
                }
                Err(e) => {
                    tracing::error!(id = file.id, key = %file.key, error = %e, "download aborted");
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    b.body(Body::from_stream(ReceiverStream::new(rx)))
        .map_err(ApiError::internal)
}

/// Maps a reader failure back to the store error it carries (integrity errors stay 500s with
/// their own message).
fn read_error(e: std::io::Error, file: &FileRecord) -> ApiError {
    let text = e.to_string();
    match e.into_inner().map(|b| b.downcast::<relstore::Error>()) {
        Some(Ok(err)) => (*err).into(),
        _ => ApiError::internal(format!("read file {}: {text}", file.id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), RangeAsk::Full);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), RangeAsk::Part(0, 4));
        assert_eq!(parse_range(Some("bytes=5-"), 10), RangeAsk::Part(5, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), RangeAsk::Part(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), RangeAsk::Part(0, 9));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), RangeAsk::Part(8, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), RangeAsk::Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeAsk::Full);
        assert_eq!(parse_range(Some("bytes=4-2"), 10), RangeAsk::Full);
    }

    #[test]
    fn dispositions() {
        assert_eq!(
            content_disposition("/demo/hello.py"),
            "attachment; filename=\"hello.py\""
        );
        assert_eq!(
            content_disposition("~/a/my   \"odd\"  name.js "),
            "attachment; filename=\"my \\\"odd\\\" name.js\""
        );
        assert_eq!(
            content_disposition("~/é x.js"),
            "attachment; filename=\"_ x.js\"; filename*=UTF-8''%C3%A9%20x.js"
        );
    }
}

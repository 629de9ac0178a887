//! Query strings, page parameters and Sentry's `Link` header (contract section 5).
//!
//! Cursors are opaque hex strings, so they never contain `"`, `,` or whitespace, which sentry-cli's
//! small `Link` tokenizer cannot handle. The cursor `0` (and an empty or absent one) is the first
//! page. relstore pages by key, forward only: the `previous` link points at the first page (with
//! `results="true"` whenever the request was not on it), which is what a client re-listing from the
//! start needs; a client walking backwards page by page is not supported.

use axum::http::{header, HeaderMap, HeaderValue, Uri};

use crate::error::ApiError;

/// Default page size.
pub const DEFAULT_PER_PAGE: usize = 100;
/// Largest page size.
pub const MAX_PER_PAGE: usize = 1000;
/// The cursor of the first page.
pub const FIRST_CURSOR: &str = "0";

/// The decoded pairs of a query string, in order, repeated keys kept.
pub fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// Every value of `key`.
pub fn all<'a>(pairs: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The first value of `key`.
pub fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Page size and position of a list request.
#[derive(Clone, Debug)]
pub struct PageParams {
    /// Items per page.
    pub per_page: usize,
    /// Where to continue (`None`: the first page).
    pub cursor: Option<String>,
}

/// Reads `per_page` (1..=1000, default 100) and `cursor`.
pub fn page_params(pairs: &[(String, String)]) -> Result<PageParams, ApiError> {
    let per_page = match first(pairs, "per_page") {
        None => DEFAULT_PER_PAGE,
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_PER_PAGE).contains(&n) => n,
            _ => return Err(ApiError::bad_request("Invalid per_page parameter.")),
        },
    };
    let cursor = match first(pairs, "cursor").map(str::trim) {
        None | Some("") | Some(FIRST_CURSOR) => None,
        Some(c) => Some(c.to_string()),
    };
    Ok(PageParams { per_page, cursor })
}

/// `scheme://host` for absolute links: the configured public URL, else the request's `Host`.
pub fn base_url(public_url: Option<&str>, headers: &HeaderMap) -> String {
    if let Some(u) = public_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// Builds the `Link` header: `previous` (to the first page) and `next`.
pub fn link_header(
    base: &str,
    uri: &Uri,
    on_first_page: bool,
    next: Option<&str>,
    fallback_next: &str,
) -> HeaderValue {
    // Sentry keeps every other parameter in its raw form and appends `&cursor=`.
    let rest: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| {
            !p.is_empty() && {
                let k = p.split('=').next().unwrap_or("");
                k != "cursor"
            }
        })
        .collect();
    let prefix = format!("{base}{}?{}", uri.path(), rest.join("&"));
    let link = |cursor: &str, rel: &str, results: bool| {
        format!(
            "<{prefix}&cursor={cursor}>; rel=\"{rel}\"; results=\"{results}\"; cursor=\"{cursor}\""
        )
    };
    let value = format!(
        "{}, {}",
        link(FIRST_CURSOR, "previous", !on_first_page),
        link(next.unwrap_or(fallback_next), "next", next.is_some())
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

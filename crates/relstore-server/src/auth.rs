//! Authentication and authorization: Bearer tokens and Basic (API key as the user name), checked
//! against the store's hashed tokens, then the organization and the scope a request needs.
//!
//! The order of the checks is the contract's: no credentials or unknown credentials are 401, a
//! token of another organization is 404 (the other organization's existence is not revealed), a
//! token without a needed scope is 403.

use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine;
use relstore::{Store, TokenInfo};

use crate::error::{ApiError, FORBIDDEN, INVALID_TOKEN, NO_CREDENTIALS};

/// What a request does, which decides the scopes it needs (Sentry's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Metadata and lists.
    Read,
    /// Uploads, changes, and downloads of content (content is source code).
    Write,
    /// Deletions.
    Delete,
}

impl Access {
    /// Scopes of which a token needs any one.
    pub fn scopes(self) -> &'static [&'static str] {
        match self {
            Access::Read => &[
                "project:read",
                "project:write",
                "project:admin",
                "project:releases",
                "org:ci",
            ],
            Access::Write => &[
                "project:write",
                "project:admin",
                "project:releases",
                "org:ci",
            ],
            Access::Delete => &["project:admin", "project:releases"],
        }
    }
}

/// True for the shape of a relstore token: 64 lower-case hex characters.
pub fn is_token_shape(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The secret the request presents: `Ok(None)` without an `Authorization` header; 401 when the
/// header cannot carry a token of ours.
pub fn presented_secret(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let invalid = || ApiError::detail(StatusCode::UNAUTHORIZED, INVALID_TOKEN);
    let value = value.to_str().map_err(|_| invalid())?.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    let secret = if scheme.eq_ignore_ascii_case("bearer") {
        rest.to_string()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| invalid())?;
        let text = String::from_utf8(decoded).map_err(|_| invalid())?;
        // The API key is the user name; the password is empty (or ignored).
        text.split_once(':')
            .map_or(text.clone(), |(u, _)| u.to_string())
    } else {
        return Err(invalid());
    };
    if !is_token_shape(&secret) {
        return Err(invalid());
    }
    Ok(Some(secret))
}

/// The token behind the request, if any; 401 for unknown or malformed credentials. Blocking.
pub fn authenticate(store: &Store, headers: &HeaderMap) -> Result<Option<TokenInfo>, ApiError> {
    let Some(secret) = presented_secret(headers)? else {
        return Ok(None);
    };
    match store.authenticate(&secret)? {
        Some(t) => Ok(Some(t)),
        None => Err(ApiError::detail(StatusCode::UNAUTHORIZED, INVALID_TOKEN)),
    }
}

/// Checks that the request may do `access` in `org`. Blocking (one index lookup).
pub fn authorize(
    store: &Store,
    headers: &HeaderMap,
    org: &str,
    access: Access,
) -> Result<TokenInfo, ApiError> {
    let Some(token) = authenticate(store, headers)? else {
        return Err(ApiError::detail(StatusCode::UNAUTHORIZED, NO_CREDENTIALS));
    };
    if token.org != org {
        return Err(ApiError::not_found());
    }
    if !access.scopes().iter().any(|s| token.has_scope(s)) {
        return Err(ApiError::detail(StatusCode::FORBIDDEN, FORBIDDEN));
    }
    Ok(token)
}

//! [`ApiError`]: the one error type of the HTTP layer, and how each failure becomes a response.
//!
//! Every handler returns `Result<_, ApiError>`. The texts of the Sentry-facing errors are fixed by
//! the wire contract (Sentry's own messages, byte for byte); everything else carries a message a
//! person can act on. Internal failures are logged with their cause and answered with a generic
//! text: a client never sees paths or index internals, and never a byte of damaged content.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Sentry's text for every unknown or hidden resource.
pub const NOT_FOUND: &str = "The requested resource does not exist";
/// Sentry's 409 text for an upload or rename onto a taken `(name, dist)`.
pub const ALREADY_EXISTS: &str = "A file matching this name already exists for the given release";
/// DRF's 401 text when no credentials were sent.
pub const NO_CREDENTIALS: &str = "Authentication credentials were not provided.";
/// Sentry's 401 text for an unknown or malformed token.
pub const INVALID_TOKEN: &str = "Invalid token";
/// DRF's 403 text.
pub const FORBIDDEN: &str = "You do not have permission to perform this action.";
/// DRF's text for a cursor it cannot parse.
pub const INVALID_CURSOR: &str = "Invalid cursor parameter.";

/// An error answer: a status and a JSON body.
#[derive(Debug)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// The JSON body (`{"detail": ...}` or a serializer-style `{"field": [...]}`).
    pub body: Value,
}

impl ApiError {
    /// `{"detail": detail}` with `status`.
    pub fn detail(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: json!({ "detail": detail.into() }),
        }
    }

    /// 400 `{"detail": detail}`.
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::detail(StatusCode::BAD_REQUEST, detail)
    }

    /// 400 in the shape of a serializer error: `{"field": ["message"]}`.
    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({ field: [message.into()] }),
        }
    }

    /// 404 with Sentry's text.
    pub fn not_found() -> ApiError {
        ApiError::detail(StatusCode::NOT_FOUND, NOT_FOUND)
    }

    /// 409 with Sentry's text.
    pub fn conflict() -> ApiError {
        ApiError::detail(StatusCode::CONFLICT, ALREADY_EXISTS)
    }

    /// 500 with a generic text; the cause goes to the log, not to the client.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::detail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error; the server log has the details",
        )
    }
}

impl From<relstore::Error> for ApiError {
    fn from(e: relstore::Error) -> ApiError {
        use relstore::Error as E;
        match e {
            E::NotFound { .. } => ApiError::not_found(),
            E::AlreadyExists { .. } => ApiError::conflict(),
            E::InvalidInput { .. } => ApiError::bad_request(e.to_string()),
            E::InvalidCursor(_) => ApiError::bad_request(INVALID_CURSOR),
            E::TooLarge { limit } => ApiError::detail(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("File too large: the upload limit is {limit} bytes"),
            ),
            E::Corrupt { .. } => {
                tracing::error!(error = %e, "integrity check failed");
                ApiError::detail(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Stored data failed an integrity check; the file cannot be served. \
                     Run `relstore verify` on the store and re-upload the file",
                )
            }
            E::Poisoned { .. } => {
                tracing::error!(error = %e, "store refuses writes");
                ApiError::detail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The store refuses writes after a failed disk sync; restart the server",
                )
            }
            E::UploadRead(ref io) => {
                ApiError::bad_request(format!("Reading the upload failed: {io}"))
            }
            E::Abandoned { ref reason } => {
                ApiError::bad_request(format!("Upload abandoned: {reason}"))
            }
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body)
    }
}

/// A JSON response with `Content-Type: application/json` (sentry-cli refuses JSON without it).
pub fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut r = (status, bytes).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => ApiError::internal(format!("serialize response: {e}")).into_response(),
    }
}

/// Runs blocking store work off the async threads.
pub async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("blocking task failed: {e}")))?
}

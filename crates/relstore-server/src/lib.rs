//! The relstore HTTP server: Sentry's release-files API (see `docs/http-api.md`) over a shared
//! [`relstore::Store`].
//!
//! [`app`] builds the axum router; [`serve`] runs it on a listener until a shutdown future
//! resolves, finishing requests in flight. Handlers authorize first, then run every blocking store
//! call on tokio's blocking pool; uploads stream their multipart body into the store through a
//! bounded channel (see [`upload`]), so neither memory nor the async threads carry a file. The
//! crate owns the wire format (status codes, texts, headers) and nothing of the storage format.

#![deny(unsafe_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use relstore::Store;
use serde_json::json;

pub mod auth;
pub mod chunks;
pub mod download;
pub mod error;
pub mod files;
pub mod json;
pub mod pagination;
pub mod releases;
pub mod upload;

use error::{json_response, ApiError};

/// Server settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Largest accepted file upload in bytes (413 past it). Keep the store's own limit at least
    /// as high.
    pub max_upload_bytes: u64,
    /// `scheme://host[:port]` used in absolute links (`Link`); the request's `Host` when `None`.
    pub public_url: Option<String>,
    /// Time limit for a request's handler, except uploads (the body of a download streams after
    /// it and is not limited).
    pub request_timeout: Duration,
    /// Time limit for a whole upload.
    pub upload_timeout: Duration,
    /// Longest wait for the next piece of an upload body.
    pub upload_idle_timeout: Duration,
    /// Answer 404 at `GET chunk-upload`, so clients fall back to one request per file.
    pub legacy_uploads: bool,
    /// Chunk-upload requests streamed into the store at once; more wait, unread, for a turn.
    /// sentry-cli sends up to `concurrency` (8) requests of up to 32 MiB in parallel, and each
    /// one staged costs ~10 MiB of buffers: on a 2-core machine a ninth request gains nothing
    /// but memory. Default 2.
    pub max_concurrent_chunk_uploads: usize,
}

impl Default for Config {
    /// 1 GiB uploads; 60 s per request, 1 h per upload, 60 s of upload silence.
    fn default() -> Config {
        Config {
            max_upload_bytes: 1 << 30,
            public_url: None,
            request_timeout: Duration::from_secs(60),
            upload_timeout: Duration::from_secs(3600),
            upload_idle_timeout: Duration::from_secs(60),
            legacy_uploads: false,
            max_concurrent_chunk_uploads: 2,
        }
    }
}

/// What every handler shares: the store and the settings. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// The settings.
    pub config: Arc<Config>,
    /// Turns for chunk-upload requests (see [`Config::max_concurrent_chunk_uploads`]).
    pub chunk_upload_slots: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// State over `store` with `config`.
    pub fn new(store: Store, config: Config) -> AppState {
        AppState {
            store,
            chunk_upload_slots: Arc::new(tokio::sync::Semaphore::new(
                config.max_concurrent_chunk_uploads.max(1),
            )),
            config: Arc::new(config),
        }
    }
}

/// Adds `path` and, for the slash-less spelling clients sometimes use, `path` without its final
/// `/`.
fn both(router: Router<AppState>, path: &str, m: MethodRouter<AppState>) -> Router<AppState> {
    let bare = path.trim_end_matches('/');
    router.route(path, m.clone()).route(bare, m)
}

/// The router of the whole API, under `/api/0/`.
pub fn app(state: AppState) -> Router {
    use axum::routing::{delete, post};
    let p = "/api/0/projects/{org}/{project}";
    let o = "/api/0/organizations/{org}";
    // The 2 MB default body limit would also cap multipart uploads; they enforce their own
    // limit while streaming.
    let unlimited = || DefaultBodyLimit::disable();
    let mut r = Router::new().route("/api/0/", get(root));
    r = both(
        r,
        &format!("{o}/releases/"),
        post(releases::org_create).get(releases::org_list),
    );
    r = both(
        r,
        &format!("{p}/releases/"),
        post(releases::project_create).get(releases::project_list),
    );
    r = both(
        r,
        &format!("{o}/releases/{{version}}/"),
        get(releases::org_get)
            .put(releases::org_update)
            .delete(releases::org_delete),
    );
    r = both(
        r,
        &format!("{p}/releases/{{version}}/"),
        get(releases::project_get)
            .put(releases::project_update)
            .delete(releases::project_delete),
    );
    r = both(
        r,
        &format!("{o}/releases/{{version}}/files/"),
        post(files::org_upload)
            .layer(unlimited())
            .get(files::org_list),
    );
    r = both(
        r,
        &format!("{p}/releases/{{version}}/files/"),
        post(files::project_upload)
            .layer(unlimited())
            .get(files::project_list),
    );
    r = both(
        r,
        &format!("{o}/releases/{{version}}/files/{{file_id}}/"),
        get(files::org_get)
            .put(files::org_put)
            .delete(files::org_delete),
    );
    r = both(
        r,
        &format!("{p}/releases/{{version}}/files/{{file_id}}/"),
        get(files::project_get)
            .put(files::project_put)
            .delete(files::project_delete),
    );
    r = both(
        r,
        &format!("{p}/files/source-maps/"),
        delete(files::delete_source_maps),
    );
    r = both(
        r,
        &format!("{o}/chunk-upload/"),
        get(chunks::options).post(chunks::upload).layer(unlimited()),
    );
    r = both(
        r,
        &format!("{o}/artifactbundle/assemble/"),
        post(chunks::assemble_artifact_bundle),
    );
    r = both(
        r,
        &format!("{o}/releases/{{version}}/assemble/"),
        post(chunks::assemble_release_bundle),
    );
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), time_limit))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// `GET /api/0/`: who the caller is (sentry-cli `info`); no credentials is not an error here.
async fn root(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let token = error::blocking(move || auth::authenticate(&s.store, &headers)).await?;
    let auth = token.map(|t| json!({"scopes": t.scopes}));
    Ok(json_response(
        StatusCode::OK,
        &json!({"user": null, "auth": auth}),
    ))
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::detail(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("Method \"{method}\" not allowed."),
    )
}

fn is_upload(req: &Request) -> bool {
    req.method() == Method::POST && req.uri().path().trim_end_matches('/').ends_with("/files")
}

/// Bounds the time a handler may take (uploads have their own, longer limit).
async fn time_limit(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let limit = if is_upload(&req) {
        s.config.upload_timeout
    } else {
        s.config.request_timeout
    };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::detail(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("The request took longer than {} seconds", limit.as_secs()),
        )
        .into_response(),
    }
}

/// One structured log line per request.
async fn log_request(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let agent = req
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(%method, path, status, ms, agent, "request");
    } else {
        tracing::info!(%method, path, status, ms, agent, "request");
    }
    resp
}

/// Serves `app(state)` on `listener` until `shutdown` resolves, then stops accepting and
/// returns once the requests in flight (uploads included) have finished.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}

/// Sends structured logs to stderr; `RUST_LOG` filters them (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

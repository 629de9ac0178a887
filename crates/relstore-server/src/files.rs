//! Release-file endpoints (contract section 3): upload, list, details, download, rename and
//! delete, at the project level (the project's files of a release) and the organization level
//! (the release's organization-wide files, [`ReleaseScope::org_wide`]); and the source-maps
//! delete that `sentry-cli releases files V delete --all` sends.

use axum::body::Bytes;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use relstore::{FileRecord, ListQuery, ReleaseScope, Store};
use serde_json::Value;

use crate::auth::{authorize, Access};
use crate::error::{blocking, json_response, ApiError};
use crate::pagination::{self, FIRST_CURSOR};
use crate::releases::find_release;
use crate::{download, upload, AppState};

/// The scope a file path addresses, after checking that its release exists (and, at the project
/// level, is linked to the project): 404 otherwise.
fn scope_of(
    store: &Store,
    org: &str,
    project: Option<&str>,
    version: &str,
) -> Result<ReleaseScope, ApiError> {
    find_release(store, org, project, version)?;
    Ok(match project {
        Some(p) => ReleaseScope::project(org, p, version),
        None => ReleaseScope::org_wide(org, version),
    })
}

/// The file `id` of `scope`: 404 for a non-numeric id, an unknown one, or one of another scope.
fn file_in(store: &Store, scope: &ReleaseScope, id: &str) -> Result<FileRecord, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::not_found())?;
    match store.file_by_id(id)? {
        Some(f) if f.key.scope() == *scope => Ok(f),
        _ => Err(ApiError::not_found()),
    }
}

fn list(
    state: &AppState,
    scope: &ReleaseScope,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Response, ApiError> {
    let pairs = pagination::query_pairs(uri);
    let page = pagination::page_params(&pairs)?;
    let queries: Vec<String> = pagination::all(&pairs, "query")
        .into_iter()
        .filter(|q| !q.is_empty())
        .map(str::to_owned)
        .collect();
    let asked: Vec<&str> = pagination::all(&pairs, "checksum");
    // A malformed checksum matches no file, as in Sentry; it is not an error.
    let checksums: Vec<String> = asked
        .iter()
        .filter(|c| c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let (items, next) = if !asked.is_empty() && checksums.is_empty() {
        (Vec::new(), None)
    } else {
        let p = state.store.list_files(
            scope,
            &ListQuery {
                queries,
                checksums,
                cursor: page.cursor.clone(),
                limit: page.per_page,
            },
        )?;
        (p.items, p.next)
    };
    let fallback = items
        .last()
        .map(|f| crate::json::hex(&f.key.encode()))
        .or(page.cursor.clone())
        .unwrap_or_else(|| FIRST_CURSOR.into());
    let mut resp = json_response(StatusCode::OK, &crate::json::files(&items));
    let base = pagination::base_url(state.config.public_url.as_deref(), headers);
    resp.headers_mut().insert(
        axum::http::header::LINK,
        pagination::link_header(
            &base,
            uri,
            page.cursor.is_none(),
            next.as_deref(),
            &fallback,
        ),
    );
    Ok(resp)
}

/// The rename body: `{"name": str, "dist"?: str|null}`.
fn rename(
    store: &Store,
    scope: &ReleaseScope,
    id: &str,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request("Can only update release files with integer IDs"))?;
    let body: serde_json::Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice(body) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(ApiError::field(
                    "non_field_errors",
                    "Invalid data. Expected a dictionary.",
                ))
            }
            Err(e) => return Err(ApiError::bad_request(format!("JSON parse error - {e}"))),
        }
    };
    let name = match body.get("name") {
        None | Some(Value::Null) => return Err(ApiError::field("name", "This field is required.")),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::field("name", "Not a valid string.")),
    };
    if name.is_empty() {
        return Err(ApiError::field("name", "This field may not be blank."));
    }
    let last = name.rsplit('/').next().unwrap_or(&name);
    if last.contains(['\n', '\t', '\r', '\x0c', '\x0b', '\\']) {
        return Err(ApiError::field(
            "name",
            "File name must not contain special whitespace characters",
        ));
    }
    let current = match store.file_by_id(id)? {
        Some(f) if f.key.scope() == *scope => f,
        _ => return Err(ApiError::not_found()),
    };
    let dist: Option<String> = match body.get("dist") {
        None => current.key.dist.clone(),
        Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()).filter(|s| !s.is_empty()),
        Some(_) => return Err(ApiError::field("dist", "Not a valid string.")),
    };
    let file = store.rename(id, &name, dist.as_deref())?;
    Ok(json_response(StatusCode::OK, &crate::json::FileJson(&file)))
}

fn delete(store: &Store, scope: &ReleaseScope, id: &str) -> Result<Response, ApiError> {
    let file = file_in(store, scope, id)?;
    match store.delete_file(file.id)? {
        Some(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        None => Err(ApiError::not_found()),
    }
}

fn wants_download(uri: &Uri) -> bool {
    pagination::query_pairs(uri)
        .iter()
        .any(|(k, _)| k == "download")
}

async fn upload_in(
    s: AppState,
    org: String,
    project: Option<String>,
    version: String,
    headers: HeaderMap,
    uri: Uri,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let st = s.clone();
    let scope = blocking(move || {
        authorize(&st.store, &headers, &org, Access::Write)?;
        scope_of(&st.store, &org, project.as_deref(), &version)
    })
    .await?;
    let overwrite = pagination::query_pairs(&uri)
        .iter()
        .any(|(k, v)| k == "overwrite" && matches!(v.as_str(), "1" | "true" | "True" | "yes"));
    upload::upload(s, scope, overwrite, multipart).await
}

async fn list_in(
    s: AppState,
    org: String,
    project: Option<String>,
    version: String,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    blocking(move || {
        authorize(&s.store, &headers, &org, Access::Read)?;
        let scope = scope_of(&s.store, &org, project.as_deref(), &version)?;
        list(&s, &scope, &headers, &uri)
    })
    .await
}

async fn get_in(
    s: AppState,
    org: String,
    project: Option<String>,
    version: String,
    id: String,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let download = wants_download(&uri);
    let st = s.clone();
    let h = headers.clone();
    let file = blocking(move || {
        let access = if download {
            Access::Write
        } else {
            Access::Read
        };
        authorize(&st.store, &h, &org, access)?;
        let scope = scope_of(&st.store, &org, project.as_deref(), &version)?;
        file_in(&st.store, &scope, &id)
    })
    .await?;
    if download {
        download::respond(s, file, &headers).await
    } else {
        Ok(json_response(StatusCode::OK, &crate::json::FileJson(&file)))
    }
}

async fn put_in(
    s: AppState,
    org: String,
    project: Option<String>,
    version: String,
    id: String,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    blocking(move || {
        authorize(&s.store, &headers, &org, Access::Write)?;
        let scope = scope_of(&s.store, &org, project.as_deref(), &version)?;
        rename(&s.store, &scope, &id, &body)
    })
    .await
}

async fn delete_in(
    s: AppState,
    org: String,
    project: Option<String>,
    version: String,
    id: String,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    blocking(move || {
        authorize(&s.store, &headers, &org, Access::Delete)?;
        let scope = scope_of(&s.store, &org, project.as_deref(), &version)?;
        delete(&s.store, &scope, &id)
    })
    .await
}

/// `POST /projects/{org}/{project}/releases/{version}/files/`.
pub async fn project_upload(
    State(s): State<AppState>,
    Path((org, project, version)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    upload_in(s, org, Some(project), version, headers, uri, multipart).await
}

/// `POST /organizations/{org}/releases/{version}/files/`.
pub async fn org_upload(
    State(s): State<AppState>,
    Path((org, version)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    upload_in(s, org, None, version, headers, uri, multipart).await
}

/// `GET /projects/{org}/{project}/releases/{version}/files/`.
pub async fn project_list(
    State(s): State<AppState>,
    Path((org, project, version)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    list_in(s, org, Some(project), version, headers, uri).await
}

/// `GET /organizations/{org}/releases/{version}/files/`.
pub async fn org_list(
    State(s): State<AppState>,
    Path((org, version)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    list_in(s, org, None, version, headers, uri).await
}

/// `GET /projects/{org}/{project}/releases/{version}/files/{file_id}/` (`?download`: content).
pub async fn project_get(
    State(s): State<AppState>,
    Path((org, project, version, id)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    get_in(s, org, Some(project), version, id, headers, uri).await
}

/// `GET /organizations/{org}/releases/{version}/files/{file_id}/` (`?download`: content).
pub async fn org_get(
    State(s): State<AppState>,
    Path((org, version, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    get_in(s, org, None, version, id, headers, uri).await
}

/// `PUT /projects/{org}/{project}/releases/{version}/files/{file_id}/`: rename.
pub async fn project_put(
    State(s): State<AppState>,
    Path((org, project, version, id)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    put_in(s, org, Some(project), version, id, headers, body).await
}

/// `PUT /organizations/{org}/releases/{version}/files/{file_id}/`: rename.
pub async fn org_put(
    State(s): State<AppState>,
    Path((org, version, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    put_in(s, org, None, version, id, headers, body).await
}

/// `DELETE /projects/{org}/{project}/releases/{version}/files/{file_id}/`.
pub async fn project_delete(
    State(s): State<AppState>,
    Path((org, project, version, id)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    delete_in(s, org, Some(project), version, id, headers).await
}

/// `DELETE /organizations/{org}/releases/{version}/files/{file_id}/`.
pub async fn org_delete(
    State(s): State<AppState>,
    Path((org, version, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    delete_in(s, org, None, version, id, headers).await
}

/// `DELETE /projects/{org}/{project}/files/source-maps/?name={version}`: every file of the
/// release in the project.
pub async fn delete_source_maps(
    State(s): State<AppState>,
    Path((org, project)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    blocking(move || {
        authorize(&s.store, &headers, &org, Access::Delete)?;
        let pairs = pagination::query_pairs(&uri);
        let version = pagination::first(&pairs, "name")
            .filter(|v| !v.is_empty())
            .ok_or_else(ApiError::not_found)?;
        let scope = scope_of(&s.store, &org, Some(&project), version)?;
        let n = s.store.delete_files_in(&scope)?;
        tracing::info!(deleted = n, release = version, "source maps deleted");
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

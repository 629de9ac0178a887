//! Release endpoints (contract section 2): create (201/208), list, get, update and delete, at the
//! organization level and at the project level.
//!
//! Projects are not created by any endpoint: a project exists once a release names it by slug. A
//! JSON integer, or a decimal string equal to an existing project's id, names that project.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use relstore::{Release, ReleaseUpdate, Store};
use serde_json::{json, Map, Value};

use crate::auth::{authorize, Access};
use crate::error::{blocking, json_response, ApiError, INVALID_CURSOR};
use crate::pagination::{self, FIRST_CURSOR};
use crate::AppState;

/// Sentry's release JSON (the fields clients read, plus neutral values for the rest).
pub fn release_json(r: &Release) -> Value {
    let projects: Vec<Value> = r
        .projects
        .iter()
        .map(|p| json!({"id": p.id, "slug": p.slug, "name": p.slug, "newGroups": 0}))
        .collect();
    json!({
        "version": r.version,
        "shortVersion": short_version(&r.version),
        "ref": r.vcs_ref,
        "url": r.url,
        "dateCreated": crate::json::rfc3339_ms(r.created_ms),
        "dateReleased": r.released_ms.map(crate::json::rfc3339_ms),
        "dateStarted": null,
        "lastEvent": null,
        "firstEvent": null,
        "newGroups": 0,
        "commitCount": 0,
        "deployCount": 0,
        "authors": [],
        "data": {},
        "owner": null,
        "status": "open",
        "projects": projects,
        "fileCount": r.file_count,
    })
}

/// Sentry's short form: `package@1.2.3` shows `1.2.3`, a 40-character commit hash its first 12.
fn short_version(v: &str) -> String {
    let v = v.rsplit_once('@').map_or(v, |(_, b)| b);
    if v.len() == 40 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        v[..12].to_string()
    } else {
        v.to_string()
    }
}

/// Parses RFC 3339 (`2018-08-22T18:24:15.908Z`, offsets, or no zone meaning UTC) to ms since epoch.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 3)];
        ms = format!("{frac:0<3}").parse().ok()?;
    }
    let offset_min = match &s[i..] {
        "" | "Z" | "z" => 0,
        z if z.len() == 6 && matches!(&z[..1], "+" | "-") && &z[3..4] == ":" => {
            let oh: i64 = z[1..3].parse().ok()?;
            let om: i64 = z[4..6].parse().ok()?;
            let sign = if z.starts_with('-') { -1 } else { 1 };
            sign * (oh * 60 + om)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

fn parse_body(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::field(
            "non_field_errors",
            "Invalid data. Expected a dictionary, but got list.",
        )),
        Err(e) => Err(ApiError::bad_request(format!("JSON parse error - {e}"))),
    }
}

/// The metadata fields of a create or update body.
fn metadata(body: &Map<String, Value>) -> Result<ReleaseUpdate, ApiError> {
    let mut u = ReleaseUpdate::default();
    if let Some(v) = body.get("dateReleased") {
        u.released_ms = Some(match v {
            Value::Null => None,
            Value::String(s) => Some(parse_datetime(s).ok_or_else(|| {
                ApiError::field(
                    "dateReleased",
                    "Datetime has wrong format. Use one of these formats instead: \
                     YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].",
                )
            })?),
            _ => return Err(ApiError::field("dateReleased", "Not a valid datetime.")),
        });
    }
    for (field, slot) in [("url", &mut u.url), ("ref", &mut u.vcs_ref)] {
        if let Some(v) = body.get(field) {
            *slot = Some(match v {
                Value::Null => None,
                Value::String(s) if s.is_empty() => None,
                Value::String(s) => Some(s.clone()),
                _ => return Err(ApiError::field(field, "Not a valid string.")),
            });
        }
    }
    if let Some(v) = body.get("dateStarted") {
        if !v.is_null() && v.as_str().and_then(parse_datetime).is_none() {
            return Err(ApiError::field("dateStarted", "Datetime has wrong format."));
        }
    }
    Ok(u)
}

fn version_field(body: &Map<String, Value>) -> Result<String, ApiError> {
    let v = match body.get("version") {
        None | Some(Value::Null) => {
            return Err(ApiError::field("version", "This field is required."))
        }
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::field("version", "Not a valid string.")),
    };
    if v.is_empty() {
        return Err(ApiError::field("version", "This field may not be blank."));
    }
    if v.chars().count() > relstore::MAX_VERSION_CHARS {
        return Err(ApiError::field(
            "version",
            "Ensure this field has no more than 200 characters.",
        ));
    }
    if relstore::validate_version(&v).is_err() {
        return Err(ApiError::field(
            "version",
            format!("Release with name {v} is not allowed"),
        ));
    }
    Ok(v)
}

/// Resolves the `projects` of a body to slugs.
fn project_slugs(store: &Store, org: &str, list: &[Value]) -> Result<Vec<String>, ApiError> {
    let invalid = || ApiError::field("projects", "Invalid project ids or slugs");
    let known = store.projects(org)?;
    let by_id = |id: u64| known.iter().find(|p| p.id == id).map(|p| p.slug.clone());
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        let slug = match v {
            Value::Number(n) => by_id(n.as_u64().ok_or_else(invalid)?).ok_or_else(invalid)?,
            Value::String(s) => match s.parse::<u64>().ok().and_then(by_id) {
                Some(slug) => slug,
                None => {
                    relstore::validate_slug("project", s).map_err(|_| invalid())?;
                    s.clone()
                }
            },
            _ => return Err(invalid()),
        };
        if !out.contains(&slug) {
            out.push(slug);
        }
    }
    Ok(out)
}

fn create(
    store: &Store,
    org: &str,
    path_project: Option<&str>,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let body = parse_body(body)?;
    let version = version_field(&body)?;
    let projects = match path_project {
        Some(p) => {
            relstore::validate_slug("project", p).map_err(|_| ApiError::not_found())?;
            vec![p.to_string()]
        }
        None => match body.get("projects") {
            None | Some(Value::Null) => {
                return Err(ApiError::field("projects", "This field is required."))
            }
            Some(Value::Array(list)) => project_slugs(store, org, list)?,
            Some(_) => {
                return Err(ApiError::field(
                    "projects",
                    "Expected a list of items but got type \"str\".",
                ))
            }
        },
    };
    let update = metadata(&body)?;
    let refs: Vec<&str> = projects.iter().map(String::as_str).collect();
    let (mut release, created) = store.create_release(org, &version, &refs)?;
    if update.released_ms.is_some() || update.url.is_some() || update.vcs_ref.is_some() {
        release = store.update_release(org, &version, &update)?;
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::ALREADY_REPORTED
    };
    Ok(json_response(status, &release_json(&release)))
}

/// The release, which must exist and, at the project level, be linked to the project.
pub fn find_release(
    store: &Store,
    org: &str,
    project: Option<&str>,
    version: &str,
) -> Result<Release, ApiError> {
    let release = store
        .release(org, version)?
        .ok_or_else(ApiError::not_found)?;
    if let Some(p) = project {
        if !release.projects.iter().any(|x| x.slug == p) {
            return Err(ApiError::not_found());
        }
    }
    Ok(release)
}

fn release_cursor(r: &Release) -> String {
    let mut raw = r.created_ms.to_be_bytes().to_vec();
    raw.extend_from_slice(r.version.as_bytes());
    crate::json::hex(&raw)
}

fn parse_release_cursor(c: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::bad_request(INVALID_CURSOR);
    let raw = crate::json::unhex(c).ok_or_else(bad)?;
    if raw.len() < 9 {
        return Err(bad());
    }
    let (ms, v) = raw.split_at(8);
    let ms = i64::from_be_bytes(ms.try_into().map_err(|_| bad())?);
    Ok((ms, String::from_utf8(v.to_vec()).map_err(|_| bad())?))
}

fn list(
    state: &AppState,
    org: &str,
    project: Option<&str>,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Response, ApiError> {
    let store = &state.store;
    let pairs = pagination::query_pairs(uri);
    let page = pagination::page_params(&pairs)?;
    if let Some(p) = project {
        if !store.projects(org)?.iter().any(|x| x.slug == p) {
            return Err(ApiError::not_found());
        }
    }
    let after = page
        .cursor
        .as_deref()
        .map(parse_release_cursor)
        .transpose()?;
    let needle = pagination::first(&pairs, "query").map(str::to_lowercase);
    let mut all = store.releases(org, project)?;
    all.retain(|r| {
        needle
            .as_deref()
            .is_none_or(|n| r.version.to_lowercase().contains(n))
            && after.as_ref().is_none_or(|(ms, v)| {
                // Newest first: keep what sorts after the cursor in (created desc, version desc).
                (r.created_ms, r.version.as_str()) < (*ms, v.as_str())
            })
    });
    let more = all.len() > page.per_page;
    all.truncate(page.per_page);
    let next = if more {
        all.last().map(release_cursor)
    } else {
        None
    };
    let fallback = all
        .last()
        .map(release_cursor)
        .or(page.cursor.clone())
        .unwrap_or_else(|| FIRST_CURSOR.into());
    let body: Vec<Value> = all.iter().map(release_json).collect();
    let mut resp = json_response(StatusCode::OK, &body);
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

fn update(
    store: &Store,
    org: &str,
    project: Option<&str>,
    version: &str,
    body: &Bytes,
) -> Result<Response, ApiError> {
    find_release(store, org, project, version)?;
    let body = parse_body(body)?;
    let update = metadata(&body)?;
    let release = store.update_release(org, version, &update)?;
    Ok(json_response(StatusCode::OK, &release_json(&release)))
}

fn delete(
    store: &Store,
    org: &str,
    project: Option<&str>,
    version: &str,
) -> Result<Response, ApiError> {
    find_release(store, org, project, version)?;
    store.delete_release(org, version)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /organizations/{org}/releases/`.
pub async fn org_create(
    State(s): State<AppState>,
    Path(org): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    blocking(move || {
        authorize(&s.store, &headers, &org, Access::Write)?;
        create(&s.store, &org, None, &body)
    })
    .await
}

/// `POST /projects/{org}/{project}/releases/`.
pub async fn project_create(
    State(s): State<AppState>,
    Path((org, project)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    blocking(move || {
        authorize(&s.store, &headers, &org, Access::Write)?;
        create(&s.store, &org, Some(&project), &body)
    })
    .await
}

/// `GET /organizations/{org}/releases/`.
pub async fn org_list(
    State(s): State<AppState>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    blocking(move || {
        authorize(&s.store, &headers, &org, Access::Read)?;
        list(&s, &org, None, &headers, &uri)
    })
    .await
}

/// `GET /projects/{org}/{project}/releases/`.
pub async fn project_list(
    State(s): State<AppState>,
    Path((org, project)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    blocking(move || {
        authorize(&s.store, &headers, &org, Access::Read)?;
        list(&s, &org, Some(&project), &headers, &uri)
    })
    .await
}

/// `GET /organizations/{org}/releases/{version}/`.
pub async fn org_get(
    State(s): State<AppState>,
    Path((org, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    blocking(move || {
        authorize(&s.store, &headers, &org, Access::Read)?;
        let r = find_release(&s.store, &org, None, &version)?;
        Ok(json_response(StatusCode::OK, &release_json(&r)))
    })
    .await
}

/// `GET /projects/{org}/{project}/releases/{version}/`.
pub async fn project_get(
    State(s): State<AppState>,
    Path((org, project, version)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    blocking(move || {
        authorize(&s.store, &headers, &org, Access::Read)?;
        let r = find_release(&s.store, &org, Some(&project), &version)?;
        Ok(json_response(StatusCode::OK, &release_json(&r)))
    })
    .await
}

/// `PUT /organizations/{org}/releases/{version}/`.
pub async fn org_update(
    State(s): State<AppState>,
    Path((org, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    blocking(move || {
        authorize(&s.store, &headers, &org, Access::Write)?;
        update(&s.store, &org, None, &version, &body)
    })
    .await
}

/// `PUT /projects/{org}/{project}/releases/{version}/`.
pub async fn project_update(
    State(s): State<AppState>,
    Path((org, project, version)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    blocking(move || {
        authorize(&s.store, &headers, &org, Access::Write)?;
        update(&s.store, &org, Some(&project), &version, &body)
    })
    .await
}

/// `DELETE /organizations/{org}/releases/{version}/`.
pub async fn org_delete(
    State(s): State<AppState>,
    Path((org, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    blocking(move || {
        authorize(&s.store, &headers, &org, Access::Delete)?;
        delete(&s.store, &org, None, &version)
    })
    .await
}

/// `DELETE /projects/{org}/{project}/releases/{version}/`.
pub async fn project_delete(
    State(s): State<AppState>,
    Path((org, project, version)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    blocking(move || {
        authorize(&s.store, &headers, &org, Access::Delete)?;
        delete(&s.store, &org, Some(&project), &version)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_like_rfc3339() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_datetime("2018-08-22T18:24:15.908Z").map(crate::json::rfc3339_ms),
            Some("2018-08-22T18:24:15.908Z".to_string())
        );
        assert_eq!(
            parse_datetime("2018-08-22T20:24:15.9081234+02:00").map(crate::json::rfc3339_ms),
            Some("2018-08-22T18:24:15.908Z".to_string())
        );
        assert_eq!(parse_datetime("2018-08-22"), None);
        assert_eq!(parse_datetime("2018-13-22T00:00:00Z"), None);
        assert_eq!(parse_datetime("2018-08-22T00:00:00+0200"), None);
    }

    #[test]
    fn short_versions() {
        assert_eq!(short_version("pkg@1.2.3"), "1.2.3");
        assert_eq!(
            short_version("0123456789abcdef0123456789abcdef01234567"),
            "0123456789ab"
        );
        assert_eq!(short_version("1.0"), "1.0");
    }
}

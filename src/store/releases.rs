//! Releases and projects: create and link, look up, list, edit, delete.

use super::types::{Project, Release, ReleaseUpdate};
use super::Store;
use crate::clock::now_ms;
use crate::error::{Error, Object, Result};
use crate::index::files::{AlsoDelete, DeleteFiles};
use crate::index::releases::{Change, CreateRelease, ReleaseRow, UpdateRelease};
use crate::key::{validate_slug, validate_version, ReleaseScope};

impl<T> From<Option<Option<T>>> for Change<T> {
    fn from(v: Option<Option<T>>) -> Change<T> {
        match v {
            None => Change::Keep,
            Some(None) => Change::Clear,
            Some(Some(v)) => Change::Set(v),
        }
    }
}

impl Store {
    /// Creates release `version` of `org` linked to `projects`, or links the projects to the
    /// existing release. Returns the release and `true` when it was created.
    pub fn create_release(
        &self,
        org: &str,
        version: &str,
        projects: &[&str],
    ) -> Result<(Release, bool)> {
        validate_slug("org", org)?;
        validate_version(version)?;
        for p in projects {
            validate_slug("project", p)?;
        }
        let projects: Vec<String> = projects.iter().map(|p| p.to_string()).collect();
        let (row, created) = self.engine.write()?.commit(&CreateRelease {
            org,
            version,
            projects: &projects,
            now_ms: now_ms(),
        })?;
        Ok((self.release_from_row(row)?, created))
    }

    /// The release `version` of `org`.
    pub fn release(&self, org: &str, version: &str) -> Result<Option<Release>> {
        self.engine
            .index()
            .release(org, version)?
            .map(|r| self.release_from_row(r))
            .transpose()
    }

    /// Releases of `org` (only those linked to `project` when given), newest first.
    pub fn releases(&self, org: &str, project: Option<&str>) -> Result<Vec<Release>> {
        let mut rows = self.engine.index().releases(org)?;
        if let Some(p) = project {
            rows.retain(|r| r.rec.projects.iter().any(|x| x == p));
        }
        rows.sort_by(|a, b| {
            b.rec
                .created_ms
                .cmp(&a.rec.created_ms)
                .then_with(|| b.version.cmp(&a.version))
        });
        rows.into_iter().map(|r| self.release_from_row(r)).collect()
    }

    /// Organizations that have releases.
    pub fn orgs(&self) -> Result<Vec<String>> {
        self.engine.index().orgs()
    }

    /// Projects of `org`.
    pub fn projects(&self, org: &str) -> Result<Vec<Project>> {
        Ok(self
            .engine
            .index()
            .projects(org)?
            .into_iter()
            .map(|(slug, rec)| Project { id: rec.id, slug })
            .collect())
    }

    /// Changes a release's metadata.
    pub fn update_release(
        &self,
        org: &str,
        version: &str,
        update: &ReleaseUpdate,
    ) -> Result<Release> {
        let row = self.engine.write()?.commit(&UpdateRelease {
            org,
            version,
            released_ms: update.released_ms.into(),
            url: update.url.clone().into(),
            vcs_ref: update.vcs_ref.clone().into(),
        })?;
        self.release_from_row(row)
    }

    /// Deletes a release and every file in every scope of it, in one transaction. Returns the
    /// number of files deleted; [`Error::NotFound`] if the release does not exist.
    pub fn delete_release(&self, org: &str, version: &str) -> Result<u64> {
        let Some(row) = self.engine.index().release(org, version)? else {
            return Err(Error::not_found(format!("release {org}/{version}")));
        };
        let mut scopes: Vec<ReleaseScope> = row
            .rec
            .projects
            .iter()
            .map(|p| ReleaseScope::project(org, p, version))
            .collect();
        scopes.push(ReleaseScope::org_wide(org, version));
        self.engine.write()?.commit(&DeleteFiles {
            org,
            version,
            scopes: &scopes,
            also: AlsoDelete::Release,
        })
    }

    /// Deletes every file of one scope of a release (the release stays). Returns the count.
    pub fn delete_files_in(&self, scope: &ReleaseScope) -> Result<u64> {
        self.engine.write()?.commit(&DeleteFiles {
            org: &scope.org,
            version: &scope.release,
            scopes: std::slice::from_ref(scope),
            also: AlsoDelete::Nothing,
        })
    }

    fn release_from_row(&self, row: ReleaseRow) -> Result<Release> {
        let mut projects = Vec::with_capacity(row.rec.projects.len());
        for slug in &row.rec.projects {
            let rec = self
                .engine
                .index()
                .project(&row.org, slug)?
                .ok_or_else(|| {
                    Error::corrupt(
                        Object::Release {
                            org: row.org.clone(),
                            version: row.version.clone(),
                        },
                        format!("links missing project {slug}"),
                    )
                })?;
            projects.push(Project {
                id: rec.id,
                slug: slug.clone(),
            });
        }
        Ok(Release {
            org: row.org,
            version: row.version,
            created_ms: row.rec.created_ms,
            released_ms: row.rec.released_ms,
            url: row.rec.url,
            vcs_ref: row.rec.vcs_ref,
            projects,
            file_count: row.rec.file_count,
            file_bytes: row.rec.file_bytes,
        })
    }
}

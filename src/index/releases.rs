//! Releases and projects in the index: `releases` (org ‖ version) and `projects` (org ‖ slug),
//! and the mutations that create, link and edit them. Deleting a release's files is in
//! `files.rs`, where every file row is written and released.

use super::records::{ProjectRec, ReleaseRec};
use super::tables::{abort, project_key, release_key, Tx, TxResult, PROJECTS, RELEASES};
use super::{Index, IndexWriter, Mutation};
use crate::error::{Error, Result};
use crate::key::{decode_parts, encode_parts};

/// A release with its linked projects, as read from the index.
#[derive(Clone, Debug)]
pub struct ReleaseRow {
    /// Organization.
    pub org: String,
    /// Version.
    pub version: String,
    /// The record.
    pub rec: ReleaseRec,
}

impl Index {
    /// The release `org`/`version`.
    pub fn release(&self, org: &str, version: &str) -> Result<Option<ReleaseRow>> {
        Ok(RELEASES
            .get(self.trees(), release_key(org, version))?
            .map(|rec| ReleaseRow {
                org: org.into(),
                version: version.into(),
                rec,
            }))
    }

    /// Every release of `org`, in key order.
    pub fn releases(&self, org: &str) -> Result<Vec<ReleaseRow>> {
        RELEASES
            .scan(self.trees(), encode_parts(&[org]))
            .map(|item| {
                let (k, rec) = item?;
                Ok(ReleaseRow {
                    org: org.into(),
                    version: decode_parts(&k, 2)?.swap_remove(1),
                    rec,
                })
            })
            .collect()
    }

    /// Every organization that has at least one release.
    pub fn orgs(&self) -> Result<Vec<String>> {
        let mut orgs: Vec<String> = Vec::new();
        for k in RELEASES.keys(self.trees(), []) {
            let org = decode_parts(&k?, 2)?.swap_remove(0);
            if orgs.last() != Some(&org) {
                orgs.push(org);
            }
        }
        Ok(orgs)
    }

    /// The project `org`/`slug`.
    pub fn project(&self, org: &str, slug: &str) -> Result<Option<ProjectRec>> {
        PROJECTS.get(self.trees(), project_key(org, slug))
    }

    /// Every project of `org` as (slug, record).
    pub fn projects(&self, org: &str) -> Result<Vec<(String, ProjectRec)>> {
        PROJECTS
            .scan(self.trees(), encode_parts(&[org]))
            .map(|item| {
                let (k, rec) = item?;
                Ok((decode_parts(&k, 2)?.swap_remove(1), rec))
            })
            .collect()
    }
}

/// Creates release `version` of `org` or links more projects to it (creating the projects).
/// Returns the release and whether it is new.
#[derive(Debug)]
pub struct CreateRelease<'a> {
    /// Organization.
    pub org: &'a str,
    /// Version.
    pub version: &'a str,
    /// Project slugs to link.
    pub projects: &'a [String],
    /// Now, ms since the epoch.
    pub now_ms: i64,
}

impl CreateRelease<'_> {
    /// The transaction's body, also run by the bundle commits that project into a release.
    pub(crate) fn run(&self, t: Tx<'_>) -> TxResult<(ReleaseRec, bool)> {
        let rkey = release_key(self.org, self.version);
        let mut counters = t.counters()?;
        let existing = t.get(RELEASES, &rkey)?;
        let created = existing.is_none();
        let mut rec = existing.unwrap_or(ReleaseRec {
            created_ms: self.now_ms,
            released_ms: None,
            url: None,
            vcs_ref: None,
            projects: Vec::new(),
            file_count: 0,
            file_bytes: 0,
        });
        for slug in self.projects {
            let pkey = project_key(self.org, slug);
            if !t.has(PROJECTS, &pkey)? {
                counters.next_project_id = counters.next_project_id.max(1);
                let id = counters.next_project_id;
                counters.next_project_id += 1;
                t.put(
                    PROJECTS,
                    &pkey,
                    &ProjectRec {
                        id,
                        created_ms: self.now_ms,
                    },
                )?;
            }
            if !rec.projects.contains(slug) {
                rec.projects.push(slug.clone());
            }
        }
        t.put(RELEASES, &rkey, &rec)?;
        t.put_counters(&counters)?;
        Ok((rec, created))
    }
}

impl Mutation for CreateRelease<'_> {
    type Output = (ReleaseRow, bool);

    fn apply(&self, ix: &IndexWriter) -> Result<(ReleaseRow, bool)> {
        let (rec, created) = ix
            .transact("create release", |t| self.run(t))?
            .expect("no retry");
        Ok((
            ReleaseRow {
                org: self.org.into(),
                version: self.version.into(),
                rec,
            },
            created,
        ))
    }
}

/// A change to one field of a release's metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Change<T> {
    /// Leave the field as it is.
    #[default]
    Keep,
    /// Clear the field.
    Clear,
    /// Set the field.
    Set(T),
}

impl<T: Clone> Change<T> {
    fn apply_to(&self, field: &mut Option<T>) {
        match self {
            Change::Keep => {}
            Change::Clear => *field = None,
            Change::Set(v) => *field = Some(v.clone()),
        }
    }
}

/// Edits a release's metadata in one transaction; `NotFound` if the release does not exist.
#[derive(Debug)]
pub struct UpdateRelease<'a> {
    /// Organization.
    pub org: &'a str,
    /// Version.
    pub version: &'a str,
    /// New release time.
    pub released_ms: Change<i64>,
    /// New URL.
    pub url: Change<String>,
    /// New VCS ref.
    pub vcs_ref: Change<String>,
}

impl Mutation for UpdateRelease<'_> {
    type Output = ReleaseRow;

    fn apply(&self, ix: &IndexWriter) -> Result<ReleaseRow> {
        let rkey = release_key(self.org, self.version);
        let rec = ix
            .transact("update release", |t| {
                let Some(mut rec) = t.get(RELEASES, &rkey)? else {
                    return abort(Error::not_found(format!(
                        "release {}/{}",
                        self.org, self.version
                    )));
                };
                self.released_ms.apply_to(&mut rec.released_ms);
                self.url.apply_to(&mut rec.url);
                self.vcs_ref.apply_to(&mut rec.vcs_ref);
                t.put(RELEASES, &rkey, &rec)?;
                Ok(rec)
            })?
            .expect("no retry");
        Ok(ReleaseRow {
            org: self.org.into(),
            version: self.version.into(),
            rec,
        })
    }
}

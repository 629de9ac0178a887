//! The values the store's verbs take and return: files, releases, projects, pages of a
//! listing, store figures and the progress of long operations.

use crate::id::{ContentId, Sha1};
use crate::index::records::FileRow;
use crate::key::FileKey;

/// A project of an organization.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Project {
    /// Numeric id, unique in the store.
    pub id: u64,
    /// Slug (also used as the name).
    pub slug: String,
}

/// A release of an organization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// Organization slug.
    pub org: String,
    /// Version string.
    pub version: String,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: i64,
    /// Release time, if set.
    pub released_ms: Option<i64>,
    /// URL, if set.
    pub url: Option<String>,
    /// VCS ref, if set.
    pub vcs_ref: Option<String>,
    /// Linked projects, in link order.
    pub projects: Vec<Project>,
    /// Number of files in every scope of the release.
    pub file_count: u64,
    /// Sum of their sizes.
    pub file_bytes: u64,
}

/// Changes to a release's metadata (`None` leaves a field as it is).
#[derive(Clone, Debug, Default)]
pub struct ReleaseUpdate {
    /// New release time (`Some(None)` clears it).
    pub released_ms: Option<Option<i64>>,
    /// New URL.
    pub url: Option<Option<String>>,
    /// New VCS ref.
    pub vcs_ref: Option<Option<String>>,
}

/// A stored release file: what the Sentry API calls a release file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    /// Unique id (never reused).
    pub id: u64,
    /// Where the file lives.
    pub key: FileKey,
    /// Headers, in upload order.
    pub headers: Vec<(String, String)>,
    /// Size in bytes.
    pub size: u64,
    /// SHA-1 of the content.
    pub sha1: Sha1,
    /// The content (its identity in the store: the BLAKE3 of the bytes).
    pub content_id: ContentId,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: i64,
}

impl FileRecord {
    pub(crate) fn from_row(row: FileRow) -> FileRecord {
        FileRecord {
            id: row.id,
            key: row.rec.key,
            headers: row.rec.headers,
            size: row.rec.size,
            sha1: row.rec.sha1,
            content_id: row.rec.content_id,
            created_ms: row.rec.created_ms,
        }
    }

    /// The SHA-1 as 40 lower-case hex characters.
    pub fn sha1_hex(&self) -> String {
        self.sha1.to_string()
    }

    /// The header named `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A filter and a position for [`crate::Store::list_files`].
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Case-insensitive substrings of the name; a file matches if it contains any (none: all).
    pub queries: Vec<String>,
    /// SHA-1s (hex); a file matches if its SHA-1 is any of them (none: all). AND-ed with `queries`.
    pub checksums: Vec<String>,
    /// Where to continue: the `next` cursor of the previous page.
    pub cursor: Option<String>,
    /// Page size (at least 1).
    pub limit: usize,
}

/// One page of a listing.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Cursor of the next page, when another page exists.
    pub next: Option<String>,
}

/// Store-wide figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Release files.
    pub files: u64,
    /// Distinct contents.
    pub contents: u64,
    /// Distinct chunks stored: those of live contents and, until gc removes them, those no
    /// content lists any more (of deleted files, or of uploads that failed).
    pub chunks: u64,
    /// Sum of the sizes of all files (what was uploaded).
    pub logical_bytes: u64,
    /// Sum of the sizes of the distinct chunks stored (what deduplication keeps; see `chunks`).
    pub stored_bytes: u64,
    /// Bytes on disk: segment files and the index.
    pub disk_bytes: u64,
}

/// Progress of a long-running operation ([`crate::Store::verify`], [`crate::Store::gc`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Current phase ("chunks", "contents", "files", "scan", "compact").
    pub phase: &'static str,
    /// Items (or bytes) done in this phase.
    pub done: u64,
    /// Items (or bytes) in this phase.
    pub total: u64,
}

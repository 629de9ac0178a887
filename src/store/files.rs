//! Release files: upload (also with its target known only after its bytes), read, list, rename
//! and delete.

use std::collections::HashMap;
use std::io::Read;

use super::types::{FileRecord, ListQuery, Page};
use super::Store;
use crate::clock::now_ms;
use crate::engine::reader::ContentReader;
use crate::error::{Error, Result};
use crate::id::{self, ContentId, Sha1};
use crate::index::files::{DeleteFile, RenameFile, UploadCommit};
use crate::index::records::FileRow;
use crate::key::{validate_dist, validate_headers, validate_name, FileKey, ReleaseScope};

/// Where a deferred upload goes: what [`Store::upload`] takes as arguments.
#[derive(Clone, Debug)]
pub struct UploadTarget {
    /// The file's key.
    pub key: FileKey,
    /// Its headers.
    pub headers: Vec<(String, String)>,
    /// Replace an existing file at `key` instead of failing with [`Error::AlreadyExists`].
    pub overwrite: bool,
}

impl Store {
    /// Stores the bytes of `reader` as the file `key` with `headers`.
    ///
    /// The release must exist and, for a project scope, be linked to the project. When `key`
    /// already names a file: with `overwrite` the file is replaced atomically (the new file gets a
    /// new id), without it the call fails with [`Error::AlreadyExists`] and changes nothing.
    /// Returns after the file is durable (see [`crate::Durability`]).
    pub fn upload(
        &self,
        key: &FileKey,
        headers: &[(String, String)],
        reader: &mut dyn Read,
        overwrite: bool,
    ) -> Result<FileRecord> {
        key.validate()?;
        let headers = validate_headers(headers)?;
        let mut write = self.engine.write()?;
        // Fail before reading a byte when the target cannot be written.
        self.check_target(key, overwrite)?;
        let mut chunks = HashMap::new();
        let ingested = write.stage(reader, self.engine.options().max_upload_bytes, &mut chunks)?;
        let row = write.commit(&UploadCommit {
            key,
            id: self.engine.next_id()?,
            headers: &headers,
            created_ms: now_ms(),
            ingested: &ingested,
            chunks: &chunks,
            overwrite,
        })?;
        Ok(FileRecord::from_row(row))
    }

    /// Streams `reader` into the store, then calls `target` for the key, headers and overwrite
    /// flag, and commits like [`Store::upload`]. `target` returning `None` abandons the upload
    /// (nothing is indexed; the appended chunks are garbage for gc) with [`Error::Abandoned`].
    ///
    /// For multipart clients (sentry-cli, `curl -F`), which send the file's bytes before its
    /// name, dist and headers: a server that streams the body into the store learns the key only
    /// once the content has gone by.
    pub fn upload_deferred(
        &self,
        reader: &mut dyn Read,
        target: impl FnOnce() -> Option<UploadTarget>,
    ) -> Result<FileRecord> {
        let mut write = self.engine.write()?;
        let mut chunks = HashMap::new();
        let ingested = write.stage(reader, self.engine.options().max_upload_bytes, &mut chunks)?;
        let Some(t) = target() else {
            return Err(Error::Abandoned {
                reason: "the upload ended before it named its target".into(),
            });
        };
        t.key.validate()?;
        let headers = validate_headers(&t.headers)?;
        let row = write.commit(&UploadCommit {
            key: &t.key,
            id: self.engine.next_id()?,
            headers: &headers,
            created_ms: now_ms(),
            ingested: &ingested,
            chunks: &chunks,
            overwrite: t.overwrite,
        })?;
        Ok(FileRecord::from_row(row))
    }

    /// Fails like the upload's transaction would (missing release or project link, taken key),
    /// before any byte is read. The transaction checks again.
    fn check_target(&self, key: &FileKey, overwrite: bool) -> Result<()> {
        let index = self.engine.index();
        let Some(release) = index.release(&key.org, &key.release)? else {
            return Err(Error::not_found(format!(
                "release {}/{}",
                key.org, key.release
            )));
        };
        if let Some(p) = &key.project {
            if !release.rec.projects.contains(p) {
                return Err(Error::not_found(format!(
                    "release {} in project {p}",
                    key.release
                )));
            }
        }
        if !overwrite && index.file(key)?.is_some() {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        Ok(())
    }

    /// The file at `key`.
    pub fn file(&self, key: &FileKey) -> Result<Option<FileRecord>> {
        Ok(self.engine.index().file(key)?.map(FileRecord::from_row))
    }

    /// The file with id `id`.
    pub fn file_by_id(&self, id: u64) -> Result<Option<FileRecord>> {
        Ok(self
            .engine
            .index()
            .file_by_id(id)?
            .map(FileRecord::from_row))
    }

    /// A `Read + Seek` over the content of `file`, checked chunk by chunk.
    pub fn open_file(&self, file: &FileRecord) -> Result<ContentReader> {
        self.open_content(&file.content_id)
    }

    /// A reader over the content `id`.
    pub fn open_content(&self, id: &ContentId) -> Result<ContentReader> {
        self.engine.open_content(id)
    }

    /// The whole content of the file at `key`.
    pub fn read(&self, key: &FileKey) -> Result<Vec<u8>> {
        let file = self
            .file(key)?
            .ok_or_else(|| Error::not_found(format!("file {key}")))?;
        self.open_file(&file)?.read_to_vec()
    }

    /// Contents whose SHA-1 is `sha1` (more than one only for SHA-1 collisions).
    pub fn contents_by_sha1(&self, sha1: &Sha1) -> Result<Vec<ContentId>> {
        self.engine.index().contents_by_sha1(sha1)
    }

    /// Lists the files of `scope` in name order (then dist), filtered and paginated by `query`.
    pub fn list_files(&self, scope: &ReleaseScope, query: &ListQuery) -> Result<Page<FileRecord>> {
        let not_ours = || Error::InvalidCursor("not a cursor of this store".into());
        let after = match query.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(id::unhex(c).ok_or_else(not_ours)?),
        };
        if let Some(a) = &after {
            FileKey::decode(a).map_err(|_| not_ours())?;
        }
        let needles: Vec<String> = query.queries.iter().map(|q| q.to_lowercase()).collect();
        let mut sums = Vec::new();
        for c in &query.checksums {
            sums.push(c.parse::<Sha1>().map_err(|_| {
                Error::invalid("checksum", format!("{c:?} is not a 40-character hex SHA-1"))
            })?);
        }
        let mut keep = |row: &FileRow| {
            let name_ok = needles.is_empty() || {
                let lower = row.rec.key.name.to_lowercase();
                needles.iter().any(|n| lower.contains(n.as_str()))
            };
            name_ok && (sums.is_empty() || sums.contains(&row.rec.sha1))
        };
        let (rows, more) = self.engine.index().list_files(
            scope,
            after.as_deref(),
            query.limit.max(1),
            &mut keep,
        )?;
        let next = if more {
            rows.last().map(|(k, _)| id::hex(k))
        } else {
            None
        };
        Ok(Page {
            items: rows
                .into_iter()
                .map(|(_, r)| FileRecord::from_row(r))
                .collect(),
            next,
        })
    }

    /// Renames file `id` within its scope to `name` and `dist` (atomic). Fails with
    /// [`Error::AlreadyExists`] if another file has that name and dist.
    pub fn rename(&self, id: u64, name: &str, dist: Option<&str>) -> Result<FileRecord> {
        validate_name(name)?;
        let dist = dist.filter(|d| !d.is_empty());
        if let Some(d) = dist {
            validate_dist(d)?;
        }
        let row = self
            .engine
            .write()?
            .commit(&RenameFile { id, name, dist })?;
        Ok(FileRecord::from_row(row))
    }

    /// Deletes file `id`. Returns the deleted file, or `None` when there was none.
    pub fn delete_file(&self, id: u64) -> Result<Option<FileRecord>> {
        let row = self.engine.write()?.commit(&DeleteFile { id })?;
        Ok(row.map(FileRecord::from_row))
    }
}

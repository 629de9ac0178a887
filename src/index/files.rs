//! Release files in the index: `files` (key → id and record) and `file_ids` (id → key), the one
//! place that writes a file row and the one place that releases it, and the mutations built on
//! them (upload, delete, rename, delete a release's files).

use super::contents::{decref_content, incref_content, ChunkLocations};
use super::records::{Counters, FileRec, FileRow, ReleaseRec};
use super::tables::{
    abort, file_id_key, release_key, Abort, Raw, Tx, TxResult, FILES, FILE_IDS, RELEASES,
};
use super::{Index, IndexWriter, Mutation};
use crate::chunking::Ingested;
use crate::error::{Error, Object, Result};
use crate::key::{FileKey, ReleaseScope};
use sled::transaction::ConflictableTransactionError;

/// A page of listed files (encoded key and row) and whether more remain.
pub type ListedPage = (Vec<(Vec<u8>, FileRow)>, bool);

impl Index {
    /// The file at `key`.
    pub fn file(&self, key: &FileKey) -> Result<Option<FileRow>> {
        FILES.get(self.trees(), key.encode())
    }

    /// The file with id `id`.
    pub fn file_by_id(&self, id: u64) -> Result<Option<FileRow>> {
        let Some(k) = FILE_IDS.get(self.trees(), file_id_key(id))? else {
            return Ok(None);
        };
        let key = FileKey::decode(&k.0)?;
        self.file(&key)
    }

    /// Files of `scope` whose encoded key is greater than `after` (or from the start), in key
    /// order, for which `keep` holds, at most `limit` of them, plus whether more (matching or not)
    /// remain.
    pub fn list_files(
        &self,
        scope: &ReleaseScope,
        after: Option<&[u8]>,
        limit: usize,
        keep: &mut dyn FnMut(&FileRow) -> bool,
    ) -> Result<ListedPage> {
        let prefix = scope.encode_prefix();
        let mut end = prefix.clone();
        // Every key of the scope is `prefix` followed by the encoded name, whose first byte is
        // a byte of UTF-8 or the escape 0x00: never 0xFF, which no UTF-8 text contains. So
        // `prefix ‖ 0xFF` is greater than every key of the scope.
        end.push(0xFF);
        let start = match after {
            Some(a) => {
                if !a.starts_with(&prefix) {
                    return Err(Error::InvalidCursor(
                        "cursor belongs to another listing".into(),
                    ));
                }
                let mut s = a.to_vec();
                s.push(0); // the smallest key strictly greater than `a`
                s
            }
            None => prefix,
        };
        let mut out = Vec::new();
        for item in FILES.range(self.trees(), start, end) {
            let (k, row) = item?;
            if !keep(&row) {
                continue;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push((k.to_vec(), row));
        }
        Ok((out, false))
    }

    /// Ids of every file in `scope`.
    fn scope_ids(&self, scope: &ReleaseScope) -> Result<Vec<u64>> {
        FILES
            .scan(self.trees(), scope.encode_prefix())
            .map(|item| item.map(|(_, row)| row.id))
            .collect()
    }

    /// Every file row, for verify.
    pub fn all_files(&self) -> impl Iterator<Item = Result<FileRow>> + '_ {
        FILES
            .scan(self.trees(), [])
            .map(|item| item.map(|(_, row)| row))
    }
}

/// The release `key` belongs to, for a transaction that changes its files; `NotFound` if none.
fn load_release(t: Tx<'_>, key: &FileKey) -> TxResult<(Vec<u8>, ReleaseRec)> {
    let rkey = release_key(&key.org, &key.release);
    match t.get(RELEASES, &rkey)? {
        Some(release) => Ok((rkey, release)),
        None => abort(Error::not_found(format!(
            "release {}/{}",
            key.org, key.release
        ))),
    }
}

/// Writes `row` as the file at its key, replacing `old` (the row there before, if any): the one
/// place that adds a file to the counters and to its release. The caller has already taken the
/// reference to the new row's content (before releasing the old one, so overwriting a file with
/// its own bytes never drops the content to zero in between).
fn put_file_row(
    t: Tx<'_>,
    counters: &mut Counters,
    (rkey, release): (&[u8], &mut ReleaseRec),
    row: &FileRow,
    old: Option<&FileRow>,
) -> TxResult<()> {
    if let Some(old) = old {
        release_file_row(t, counters, Some(release), old)?;
    }
    let fkey = row.rec.key.encode();
    t.put(FILES, &fkey, row)?;
    t.put(FILE_IDS, file_id_key(row.id), &Raw(fkey))?;
    counters.files += 1;
    counters.logical_bytes += row.rec.size;
    release.file_count += 1;
    release.file_bytes += row.rec.size;
    t.put(RELEASES, rkey, release)
}

/// Releases the file `old` (its row is removed or overwritten by the caller): its id, its
/// content reference and its share of the counters and of its release: the one place that
/// takes a file out of the books.
fn release_file_row(
    t: Tx<'_>,
    counters: &mut Counters,
    release: Option<&mut ReleaseRec>,
    old: &FileRow,
) -> TxResult<()> {
    t.remove(FILE_IDS, file_id_key(old.id))?;
    decref_content(t, counters, &old.rec.content_id)?;
    counters.files -= 1;
    counters.logical_bytes -= old.rec.size;
    if let Some(release) = release {
        release.file_count -= 1;
        release.file_bytes -= old.rec.size;
    }
    Ok(())
}

/// Removes file `id` and releases it. `None` when no such file exists.
fn remove_file(t: Tx<'_>, counters: &mut Counters, id: u64) -> TxResult<Option<FileRow>> {
    let Some(k) = t.get(FILE_IDS, file_id_key(id))? else {
        return Ok(None);
    };
    let Some(row) = t.get(FILES, &k.0)? else {
        return abort(Error::corrupt(
            Object::File(id),
            "id index points at a missing file",
        ));
    };
    t.remove(FILES, &k.0)?;
    let rkey = release_key(&row.rec.key.org, &row.rec.key.release);
    let mut release = t.get(RELEASES, &rkey)?;
    release_file_row(t, counters, release.as_mut(), &row)?;
    if let Some(release) = release {
        t.put(RELEASES, &rkey, &release)?;
    }
    Ok(Some(row))
}

/// Puts a file whose content already has its record (a projected bundle entry) at `key`,
/// replacing a different file there; an identical file (same content and headers) is left as it
/// is, keeping its id.
pub(crate) fn put_existing_content_file(
    t: Tx<'_>,
    counters: &mut Counters,
    row: &FileRow,
) -> TxResult<()> {
    let (rkey, mut release) = load_release(t, &row.rec.key)?;
    let old = t.get(FILES, row.rec.key.encode())?;
    if let Some(o) = &old {
        if o.rec.content_id == row.rec.content_id && o.rec.headers == row.rec.headers {
            return Ok(());
        }
    }
    super::contents::incref_existing(t, &row.rec.content_id, "a bundle entry")?;
    put_file_row(t, counters, (&rkey, &mut release), row, old.as_ref())
}

/// An upload's commit: the file `key` with a new `id` and the uploaded content, in one
/// transaction that re-checks the release, the project link and a taken key.
#[derive(Debug)]
pub struct UploadCommit<'a> {
    /// The target key.
    pub key: &'a FileKey,
    /// The new file id.
    pub id: u64,
    /// Validated headers.
    pub headers: &'a [(String, String)],
    /// Creation time.
    pub created_ms: i64,
    /// The ingest result.
    pub ingested: &'a Ingested,
    /// Where the upload's chunks are (see [`ChunkLocations`]).
    pub chunks: &'a ChunkLocations,
    /// Replace an existing file at `key` instead of failing.
    pub overwrite: bool,
}

impl Mutation for UploadCommit<'_> {
    type Output = FileRow;

    fn apply(&self, ix: &IndexWriter) -> Result<FileRow> {
        let ing = self.ingested;
        let row = FileRow {
            id: self.id,
            rec: FileRec {
                key: self.key.clone(),
                content_id: ing.content_id,
                sha1: ing.sha1,
                size: ing.size,
                headers: self.headers.to_vec(),
                created_ms: self.created_ms,
            },
        };
        ix.counted_op("commit upload", |t, counters| {
            let (rkey, mut release) = load_release(t, self.key)?;
            if let Some(p) = &self.key.project {
                if !release.projects.contains(p) {
                    return abort(Error::not_found(format!(
                        "release {} in project {p}",
                        self.key.release
                    )));
                }
            }
            let old = t.get(FILES, self.key.encode())?;
            if old.is_some() && !self.overwrite {
                return abort(Error::AlreadyExists {
                    key: self.key.to_string(),
                });
            }
            incref_content(t, counters, ing, self.chunks)?;
            put_file_row(t, counters, (&rkey, &mut release), &row, old.as_ref())
        })?;
        Ok(row)
    }
}

/// Deletes file `id`; the deleted row, or `None` when no such file exists.
#[derive(Debug)]
pub struct DeleteFile {
    /// The file.
    pub id: u64,
}

impl Mutation for DeleteFile {
    type Output = Option<FileRow>;

    fn apply(&self, ix: &IndexWriter) -> Result<Option<FileRow>> {
        ix.counted_op("delete file", |t, counters| {
            remove_file(t, counters, self.id)
        })
    }
}

/// Renames file `id` to `(name, dist)` in its scope; fails if that key is taken by another file.
#[derive(Debug)]
pub struct RenameFile<'a> {
    /// The file.
    pub id: u64,
    /// The new name (validated).
    pub name: &'a str,
    /// The new dist (validated, `None` for none).
    pub dist: Option<&'a str>,
}

impl Mutation for RenameFile<'_> {
    type Output = FileRow;

    fn apply(&self, ix: &IndexWriter) -> Result<FileRow> {
        let r = ix.transact("rename file", |t| {
            let Some(k) = t.get(FILE_IDS, file_id_key(self.id))? else {
                return abort(Error::not_found(format!("file {}", self.id)));
            };
            let Some(mut row) = t.get(FILES, &k.0)? else {
                return abort(Error::corrupt(
                    Object::File(self.id),
                    "id index points at a missing file",
                ));
            };
            let new_key = row.rec.key.scope().file(self.name, self.dist);
            let nk = new_key.encode();
            if nk == k.0 {
                return Ok(row);
            }
            if t.has(FILES, &nk)? {
                return abort(Error::AlreadyExists {
                    key: new_key.to_string(),
                });
            }
            t.remove(FILES, &k.0)?;
            row.rec.key = new_key;
            t.put(FILES, &nk, &row)?;
            t.put(FILE_IDS, file_id_key(self.id), &Raw(nk))?;
            Ok(row)
        });
        Ok(r?.expect("no retry"))
    }
}

/// What [`DeleteFiles`] deletes besides the files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlsoDelete {
    /// Nothing: the release stays.
    Nothing,
    /// The release record (the scopes must then be every scope of the release).
    Release,
}

/// Deletes every file of `scopes` of release `org`/`version`, and with
/// [`AlsoDelete::Release`] the release itself. Returns the number of files deleted.
#[derive(Debug)]
pub struct DeleteFiles<'a> {
    /// Organization.
    pub org: &'a str,
    /// Release version.
    pub version: &'a str,
    /// The scopes whose files go.
    pub scopes: &'a [ReleaseScope],
    /// Whether the release goes too.
    pub also: AlsoDelete,
}

impl Mutation for DeleteFiles<'_> {
    type Output = u64;

    fn apply(&self, ix: &IndexWriter) -> Result<u64> {
        let rkey = release_key(self.org, self.version);
        let drop_release = self.also == AlsoDelete::Release;
        loop {
            let mut ids = Vec::new();
            for s in self.scopes {
                ids.extend(ix.scope_ids(s)?);
            }
            let r = ix.counted_tx("delete release files", |t, counters| {
                let Some(release) = t.get(RELEASES, &rkey)? else {
                    return abort(Error::not_found(format!(
                        "release {}/{}",
                        self.org, self.version
                    )));
                };
                if drop_release && release.file_count != ids.len() as u64 {
                    // A file arrived or left since the scan: scan again.
                    return Err(ConflictableTransactionError::Abort(Abort::Retry));
                }
                let mut deleted = 0u64;
                for &id in &ids {
                    if remove_file(t, counters, id)?.is_some() {
                        deleted += 1;
                    } else {
                        return Err(ConflictableTransactionError::Abort(Abort::Retry));
                    }
                }
                if drop_release {
                    t.remove(RELEASES, &rkey)?;
                }
                Ok(deleted)
            });
            if let Some(n) = r? {
                return Ok(n);
            }
        }
    }
}

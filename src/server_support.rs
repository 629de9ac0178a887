//! Store support for the HTTP server: an upload whose target is known only after its bytes.
//!
//! Multipart clients (sentry-cli, `curl -F`) send the `file` part before the `name`, `dist` and
//! `header` fields, so a server that streams the body into the store learns the file's key only
//! once the content has gone by. [`Store::upload_deferred`] streams first and asks for the target
//! at the end; it commits exactly like [`Store::upload`] (one index transaction, same checks).

use std::io::Read;

use crate::error::{Error, Result};
use crate::key::FileKey;
use crate::store::{validate_headers, FileRecord, Store};

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
    /// Streams `reader` into the store, then calls `target` for the key, headers and overwrite
    /// flag, and commits like [`Store::upload`]. `target` returning `None` abandons the upload
    /// (nothing is indexed; the appended chunks are garbage for gc) with [`Error::Source`].
    pub fn upload_deferred(
        &self,
        reader: &mut dyn Read,
        target: impl FnOnce() -> Option<UploadTarget>,
    ) -> Result<FileRecord> {
        let inner = &*self.inner;
        inner.check_writable()?;
        let _m = inner.mutation_guard()?;
        let staged = inner.stage(reader, inner.opts.max_upload_bytes)?;
        let Some(t) = target() else {
            return Err(Error::Source(std::io::Error::other(
                "upload abandoned before it named its target",
            )));
        };
        t.key.validate()?;
        let headers = validate_headers(&t.headers)?;
        inner.commit_staged(&t.key, &headers, staged, t.overwrite)
    }
}

//! The store directory's own files: `LOCK`, which keeps a second process out, and `FORMAT`, which
//! names the layout version and the chunking parameters fixed at creation (`docs/format.md`).

use std::fs::File;
use std::path::Path;

use crate::chunking::ChunkingParams;
use crate::error::{Error, Result};
use crate::index::records::FormatRec;

/// Version of the store layout written in `FORMAT`.
pub(crate) const FORMAT_VERSION: u32 = 3;

/// Creates the store directory if needed and takes its `LOCK` (held for as long as the returned
/// file is open). Fails at once with [`Error::Locked`] if another process holds it.
pub(super) fn lock(path: &Path) -> Result<File> {
    std::fs::create_dir_all(path).map_err(|e| Error::io("create store directory", path, e))?;
    let lock_path = path.join("LOCK");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io("open lock file", &lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked {
            path: path.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock store", &lock_path, e)),
    }
}

/// Reads the chunking parameters from `FORMAT`, or writes a new `FORMAT` with `chunking`
/// (durably: temporary file, fsync, rename, fsync of the directory) when the store is new.
pub(super) fn read_or_create_format(
    path: &Path,
    chunking: ChunkingParams,
) -> Result<ChunkingParams> {
    let fpath = path.join("FORMAT");
    match std::fs::read(&fpath) {
        Ok(bytes) => {
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| Error::Format {
                    path: fpath.clone(),
                    detail: format!("unreadable FORMAT file: {e}"),
                })?;
            if v.get("format").and_then(|f| f.as_str()) != Some("relstore") {
                return Err(Error::Format {
                    path: fpath,
                    detail: "not a relstore FORMAT file".into(),
                });
            }
            let version = v.get("version").and_then(|x| x.as_u64()).unwrap_or(0);
            if version != u64::from(FORMAT_VERSION) {
                return Err(Error::UnsupportedVersion {
                    what: "store format",
                    found: version,
                    supported: FORMAT_VERSION.into(),
                });
            }
            let rec: FormatRec = serde_json::from_value(
                serde_json::json!({"version": version, "chunking": v.get("chunking")}),
            )
            .map_err(|e| Error::Format {
                path: fpath.clone(),
                detail: format!("bad chunking parameters: {e}"),
            })?;
            rec.chunking.validate()?;
            Ok(rec.chunking)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            chunking.validate()?;
            let body = serde_json::json!({"format": "relstore", "version": FORMAT_VERSION, "chunking": chunking});
            let tmp = path.join("FORMAT.tmp");
            let text = serde_json::to_vec_pretty(&body).expect("json");
            (|| {
                use std::io::Write;
                let mut f = File::create(&tmp)?;
                f.write_all(&text)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &fpath)?;
                File::open(path)?.sync_all()
            })()
            .map_err(|e| Error::io("write FORMAT", &fpath, e))?;
            Ok(chunking)
        }
        Err(e) => Err(Error::io("read FORMAT", &fpath, e)),
    }
}

//! The one error type of the library.
//!
//! Every fallible public function returns [`Error`]. Variants carry the context a person needs to act
//! (the path, the operation, the key) and never expose sled, bincode or memmap2 types: those are
//! converted at the boundary so the public API stays stable when the backends change.

use std::io;
use std::path::PathBuf;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What the store was doing ("append to segment", "open index", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Stored bytes or index records fail an integrity check. The store never returns such bytes.
    #[error("integrity error in {what}: {detail}")]
    Corrupt {
        /// Which object is damaged (a segment record, a chunk, a content, an index record).
        what: String,
        /// What check failed.
        detail: String,
    },
    /// The target of an upload or rename is already taken.
    #[error("a file matching this name already exists for the given release: {key}")]
    AlreadyExists {
        /// The taken key, in display form.
        key: String,
    },
    /// A release, project or file does not exist.
    #[error("{what} does not exist")]
    NotFound {
        /// What was looked up, in display form.
        what: String,
    },
    /// A caller passed a value the store refuses (bad name, oversized header, ...).
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The field at fault ("name", "dist", "header", "version", ...).
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// A list cursor that this store did not issue (or that belongs to another listing).
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    /// An upload stream exceeded the configured size limit; nothing was indexed.
    #[error("upload exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// Another process holds the store.
    #[error("store {} is in use by another process (lock file {} is held); stop that process or use another --data directory", path.display(), path.join("LOCK").display())]
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// The store directory holds a format this version does not read.
    #[error("unsupported store format at {}: {detail}", path.display())]
    Format {
        /// The store directory or file.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// A sync failed earlier: data written since may or may not be on disk, so the store refuses
    /// further writes until it is reopened (reads keep working).
    #[error("store refuses writes after an earlier failed sync ({cause}); reopen it")]
    Poisoned {
        /// The failure that poisoned the store.
        cause: String,
    },
    /// The index database (sled) reported an error.
    #[error("index error during {op}: {detail}")]
    Index {
        /// The operation.
        op: &'static str,
        /// sled's message.
        detail: String,
    },
    /// A source bundle is malformed or unsafe (corrupt ZIP, path outside `files/`, zip bomb, ...).
    #[error("the bundle is invalid: {0}")]
    InvalidBundle(String),
    /// Uploaded bytes do not have the SHA-1 the client declared; nothing was indexed.
    #[error("checksum mismatch: expected {expected}, the bytes have {actual}")]
    ChecksumMismatch {
        /// The declared SHA-1 (hex).
        expected: String,
        /// The SHA-1 of the bytes received (hex).
        actual: String,
    },
    /// The reader supplying upload bytes failed; nothing was indexed.
    #[error("reading the upload failed: {0}")]
    Source(#[source] io::Error),
}

impl Error {
    /// Wraps an I/O error with the operation and path it came from.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            what: what.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }

    pub(crate) fn index(op: &'static str, e: impl std::fmt::Display) -> Self {
        Error::Index {
            op,
            detail: e.to_string(),
        }
    }

    /// True for integrity failures (damaged bytes or records).
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Error::Corrupt { .. })
    }
}

/// Converts errors to `io::Error` for the `Read` implementation of content readers; the original
/// error stays reachable through `io::Error::get_ref`.
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::Corrupt { .. } => io::ErrorKind::InvalidData,
            Error::NotFound { .. } => io::ErrorKind::NotFound,
            Error::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

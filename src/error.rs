//! The one error type of the library.
//!
//! Every fallible public function returns [`Error`]. Variants carry the context a person needs to act
//! (the path, the operation, the key, the damaged object) and never expose sled, bincode or
//! memmap2 types: those are converted at the boundary so the public API stays stable when the
//! backends change. Three variants tell apart failures that once shared one: a client's stream
//! that failed ([`Error::UploadRead`]), an upload its caller gave up ([`Error::Abandoned`]), and a
//! failure inside the store ([`Error::Internal`]), so a caller never blames a client for a thread
//! that died.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::id::{ChunkId, ContentId, Sha1};

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A stored object that failed an integrity check (see [`Error::Corrupt`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Object {
    /// A chunk.
    Chunk(ChunkId),
    /// A content.
    Content(ContentId),
    /// A release file, by id.
    File(u64),
    /// A release.
    Release {
        /// Organization.
        org: String,
        /// Version.
        version: String,
    },
    /// An assembled bundle, by checksum.
    Bundle(Sha1),
    /// An upload piece, by SHA-1.
    Piece(Sha1),
    /// A segment file, by id.
    Segment(u32),
    /// An index record or key of the named kind ("chunk record", "file key", ...) that no id
    /// names.
    Index(&'static str),
    /// A file or record header of the named kind ("segment header", "segment record header").
    Header(&'static str),
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Chunk(id) => write!(f, "chunk {id}"),
            Object::Content(id) => write!(f, "content {id}"),
            Object::File(id) => write!(f, "file {id}"),
            Object::Release { org, version } => write!(f, "release {org}/{version}"),
            Object::Bundle(sum) => write!(f, "bundle {sum}"),
            Object::Piece(sum) => write!(f, "piece {sum}"),
            Object::Segment(id) => write!(f, "segment {id}"),
            Object::Index(what) | Object::Header(what) => f.write_str(what),
        }
    }
}

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
    #[error("integrity error in {object}: {detail}")]
    Corrupt {
        /// Which object is damaged.
        object: Object,
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
    #[error("store {} is in use by another process (lock file {} is held)", path.display(), path.join("LOCK").display())]
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// The store directory holds something this build cannot read as a store (an unreadable
    /// `FORMAT` file, another program's files).
    #[error("not a readable relstore store at {}: {detail}", path.display())]
    Format {
        /// The store directory or file.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// A store, segment or record of a version this build does not read (an older store, or a
    /// newer build's).
    #[error("unsupported {what} version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// What carries the version ("store format", "segment", "index record", ...).
        what: &'static str,
        /// The version found.
        found: u64,
        /// The version this build reads and writes.
        supported: u64,
    },
    /// A sync failed earlier: data written since may or may not be on disk, so the store refuses
    /// further writes until it is reopened (reads keep working).
    #[error("store refuses writes after an earlier failed sync ({cause}); reopen it")]
    Poisoned {
        /// The failure that poisoned the store.
        cause: String,
    },
    /// The index database reported an error.
    #[error("index error during {op}: {source}")]
    Index {
        /// The operation.
        op: &'static str,
        /// The database's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A source bundle is malformed or unsafe (corrupt ZIP, path outside `files/`, zip bomb, ...).
    #[error("the bundle is invalid: {0}")]
    InvalidBundle(String),
    /// Uploaded bytes do not have the SHA-1 the client declared; nothing was indexed.
    #[error("checksum mismatch: expected {expected}, the bytes have {actual}")]
    ChecksumMismatch {
        /// The declared SHA-1.
        expected: Sha1,
        /// The SHA-1 of the bytes received.
        actual: Sha1,
    },
    /// The reader supplying upload bytes (the client's stream) failed; nothing was indexed.
    #[error("reading the upload failed: {0}")]
    UploadRead(#[source] io::Error),
    /// The caller gave an upload up before it could be committed; nothing was indexed.
    #[error("the upload was abandoned: {reason}")]
    Abandoned {
        /// Why.
        reason: String,
    },
    /// A failure inside the store that no input explains (a worker thread that stopped or
    /// panicked); nothing was indexed.
    #[error("internal failure: {what}")]
    Internal {
        /// What failed.
        what: &'static str,
    },
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

    pub(crate) fn corrupt(object: Object, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            object,
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

    pub(crate) fn index(
        op: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Index {
            op,
            source: Box::new(source),
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

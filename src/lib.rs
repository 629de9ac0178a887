//! relstore: an embedded, content-addressed storage engine for release artifacts.
//!
//! Build pipelines upload the same minified JavaScript, source maps and debug files release after
//! release, each differing from the last by a banner or a build stamp. relstore stores every
//! distinct content once, and below that every distinct content-defined chunk once (FastCDC,
//! 4 KiB average by default), indexes files by `(org, project, release, dist, name)` in sled
//! with one transaction per operation, and acknowledges a write only once it would survive a
//! crash.
//! SHA-1 is the public checksum; BLAKE3 is the identity, so SHA-1 collisions never mix two files.
//!
//! ```
//! use relstore::{ReleaseScope, Store, StoreOptions, ListQuery};
//!
//! # fn main() -> Result<(), relstore::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(StoreOptions::new(dir.path()))?;
//! store.create_release("acme", "1.0.0", &["web"])?;
//! let scope = ReleaseScope::project("acme", "web", "1.0.0");
//! let key = scope.file("~/static/app.js", None);
//! let headers = vec![("Content-Type".to_string(), "text/javascript".to_string())];
//! let file = store.upload(&key, &headers, &mut &b"console.log('hi')"[..], false)?;
//! assert_eq!(file.sha1_hex().len(), 40);
//! assert_eq!(file.sha1, relstore::Sha1::of(b"console.log('hi')"));
//! assert_eq!(store.read(&key)?, b"console.log('hi')");
//! let page = store.list_files(&scope, &ListQuery { limit: 100, ..Default::default() })?;
//! assert_eq!(page.items.len(), 1);
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

// The layers, bottom to top (docs/architecture.md; `tests/it/layers.rs` fails on an import
// that reaches upward or closes a cycle).
// 0: the vocabulary.
mod clock;
mod error;
mod group_commit;
mod id;
mod lock;
// 1: input rules and formats that know nothing of storage.
mod bundle;
mod chunking;
mod key;
// 2: storage: the chunk bytes and the index.
mod index;
mod options;
mod segment;
// 3: the engine: one open store and its commit protocol.
mod engine;
// 4: the public façade.
mod store;

#[cfg(feature = "test-support")]
mod testing;

pub use chunking::ChunkingParams;
pub use engine::reader::ContentReader;
pub use error::{Error, Object, Result};
pub use id::{ChunkId, ContentId, ParseIdError, Sha1};
pub use key::{
    validate_dist, validate_headers, validate_name, validate_slug, validate_version, FileKey,
    ReleaseScope, MAX_DIST_CHARS, MAX_HEADERS, MAX_HEADER_BYTES, MAX_NAME_BYTES, MAX_SLUG_CHARS,
    MAX_VERSION_CHARS,
};
pub use options::{Durability, StoreOptions};
pub use segment::io::{SegmentFile, SegmentIo, StdIo};
pub use segment::ReadMode;
pub use store::types::{
    FileRecord, ListQuery, Page, Progress, Project, Release, ReleaseUpdate, Stats,
};
pub use store::{
    AssembleOutcome, AssembleRequest, BundleEntry, Failure, Fault, GcReport, PieceBatch, Store,
    TokenInfo, UploadTarget, VerifyReport, ALL_SCOPES, COMPACT_BELOW, MAX_PIECE_BYTES,
};

/// Version of the store layout written in a store's `FORMAT` file.
pub const FORMAT_VERSION: u32 = engine::FORMAT_VERSION;

/// Internals for the workspace's tests, fuzz targets and benches (feature `test-support`).
/// Not a stable API: anything here may change in any release.
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod __private {
    pub use crate::testing::*;
}

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

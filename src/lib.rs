//! relstore: an embedded, content-addressed storage engine for release artifacts.
//!
//! Build pipelines upload the same minified JavaScript, source maps and debug files release after
//! release, each differing from the last by a banner or a build stamp. relstore stores every
//! distinct content once, and below that every distinct content-defined chunk once (FastCDC,
//! 16 KiB average), indexes files by `(org, project, release, dist, name)` in sled with one
//! transaction per operation, and acknowledges a write only once it would survive a crash.
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
//! assert_eq!(store.read(&key)?, b"console.log('hi')");
//! let page = store.list_files(&scope, &ListQuery { limit: 100, ..Default::default() })?;
//! assert_eq!(page.items.len(), 1);
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod assemble;
pub mod bundle;
pub mod content;
pub mod error;
mod gc;
mod group_commit;
pub mod index;
pub mod key;
pub mod segment;
mod staging;
mod store;
#[doc(hidden)]
pub mod testing;
pub mod tokens;
mod verify;

pub use assemble::{AssembleOutcome, AssembleRequest, BundleEntry, PieceBatch, MAX_PIECE_BYTES};
pub use content::{ChunkingParams, ContentReader};
pub use error::{Error, Result};
pub use gc::{GcReport, COMPACT_BELOW};
pub use key::{FileKey, ReleaseScope};
pub use segment::ReadMode;
pub use store::{
    validate_headers, Durability, FileRecord, ListQuery, Page, Project, Release, ReleaseUpdate,
    Stats, Store, StoreOptions, FORMAT_VERSION, MAX_HEADERS,
};
pub use tokens::{TokenInfo, ALL_SCOPES};
mod server_support;
pub use server_support::UploadTarget;
pub use verify::{Fault, Progress, VerifyReport};

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Parses lower- or upper-case hex; `None` for anything else.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// Formats milliseconds since the Unix epoch as RFC 3339 with milliseconds and `Z`
/// (`2018-08-22T18:24:15.908Z`), the shape of Sentry's `dateCreated`.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

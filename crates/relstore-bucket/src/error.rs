//! The one error type of the crate. Every variant names the bucket location (`s3://bucket/prefix`)
//! and, where there is one, the slot or object concerned, so a message read in a log says where
//! to look. Integrity failures (`Corrupt`) are distinct from transport failures (`Store`): the
//! first must never be retried into success, the second usually should be.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between relstore and its bucket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bucket URL or an option is unusable; nothing was contacted.
    #[error("bucket configuration: {detail}")]
    Config {
        /// What is wrong and what to write instead.
        detail: String,
    },

    /// A request to the object store failed (network, credentials, server error). Usually
    /// transient: the shipper retries these on its own.
    #[error("{op} {key} failed: {source}")]
    Store {
        /// What was being done (`put pack`, `list slots`, ...).
        op: &'static str,
        /// The full object key, `s3://bucket/prefix/...`.
        key: String,
        /// The object store's error.
        #[source]
        source: object_store::Error,
    },

    /// Reading or writing a local file failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The local file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// Another primary holds the prefix's lease: this process may not write it.
    #[error(
        "{location} is held by primary {holder:?} (epoch {epoch}); only one primary may write a \
         prefix: start this node as a replica, or stop that primary (its lease lapses {ttl:?} \
         after its last renewal) and try again"
    )]
    LeaseHeld {
        /// `s3://bucket/prefix`.
        location: String,
        /// The holder named in the lease.
        holder: String,
        /// Its epoch.
        epoch: u64,
        /// The lease's time to live.
        ttl: Duration,
    },

    /// This primary lost the prefix to a newer one: it must stop writing for good. Packs it had
    /// not shipped are not part of the bucket's history.
    #[error("this primary (epoch {epoch}) was fenced out of {location}: {detail}")]
    Fenced {
        /// `s3://bucket/prefix`.
        location: String,
        /// The epoch of the fenced primary.
        epoch: u64,
        /// Who or what fenced it (a newer lease, or a slot already taken).
        detail: String,
    },

    /// The lease could not be renewed for longer than is safe: writes wait until it is (the
    /// bucket is probably unreachable). Not fatal, unlike [`Error::Fenced`].
    #[error("the lease on {location} has not been renewed for {since:?}; writes wait until it is")]
    LeaseLapsed {
        /// `s3://bucket/prefix`.
        location: String,
        /// Time since the last successful renewal was sent.
        since: Duration,
    },

    /// An object's bytes are not what was written: a pack whose hash does not match its
    /// trailer, a trailer that does not decode, a range the caller's check rejected, a lease
    /// record that does not parse. Never retried into success; never returned as data.
    #[error("{key} is corrupt: {detail}")]
    Corrupt {
        /// The object, `s3://bucket/prefix/...`.
        key: String,
        /// What did not match.
        detail: String,
    },

    /// No object occupies the slot.
    #[error("no pack at slot {seq} of {location}")]
    NotFound {
        /// `s3://bucket/prefix`.
        location: String,
        /// The slot.
        seq: u64,
    },

    /// The slot is occupied by a marker (a fence, or a pack deleted after retirement): it holds
    /// no bytes to read.
    #[error("slot {seq} of {location} holds no data (a fence, or a pack deleted after its grace period)")]
    NoData {
        /// `s3://bucket/prefix`.
        location: String,
        /// The slot.
        seq: u64,
    },

    /// A requested byte range is empty or lies outside the pack.
    #[error("bytes {}..{} are outside pack {seq} of {location} ({len} bytes)", range.start, range.end)]
    OutOfRange {
        /// `s3://bucket/prefix`.
        location: String,
        /// The slot.
        seq: u64,
        /// The range asked for.
        range: Range<u64>,
        /// The pack's payload length.
        len: u64,
    },

    /// A local file cannot be shipped as a pack (empty, or larger than a pack may be).
    #[error("{} cannot be shipped as pack {seq}: {reason}", path.display())]
    InvalidPack {
        /// The local file.
        path: PathBuf,
        /// The slot it was offered for.
        seq: u64,
        /// Why not.
        reason: String,
    },

    /// Packs must be offered for consecutive slots, from the tenure's first (the fencing
    /// argument depends on there being no free slot below a writer's next one).
    #[error(
        "pack {seq} offered where pack {expected} was expected: packs go to consecutive slots"
    )]
    OutOfOrder {
        /// The slot offered.
        seq: u64,
        /// The slot expected next.
        expected: u64,
    },

    /// The shipping queue is full: the pack stays local; offer it again later.
    #[error("the shipping queue is full ({queued} packs waiting); keep pack {seq} locally and offer it again")]
    QueueFull {
        /// The slot refused.
        seq: u64,
        /// Packs waiting.
        queued: usize,
    },

    /// Waiting for a pack to be shipped took longer than the caller allowed.
    #[error("pack {seq} was not on the bucket after {waited:?} ({detail})")]
    Timeout {
        /// The slot waited for.
        seq: u64,
        /// How long.
        waited: Duration,
        /// What the shipper last reported.
        detail: String,
    },

    /// The crate's background runtime is gone (the process is shutting down).
    #[error("the bucket client has shut down")]
    Stopped,
}

impl Error {
    /// True for failures that may pass on their own (network, server errors), false for those
    /// a retry cannot fix (corruption, fencing, bad input).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Store { source, .. } => !matches!(
                source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
                    | object_store::Error::UnknownConfigurationKey { .. }
                    | object_store::Error::InvalidPath { .. }
            ),
            Error::Io { .. } | Error::LeaseLapsed { .. } => true,
            _ => false,
        }
    }
}

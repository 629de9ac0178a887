//! The record types stored as index values, one per table (see [`super::tables`]). They are
//! internal: the public API exposes [`crate::FileRecord`] and friends, built from these. Records
//! holding public types (ids, keys) list their fields with `stored!` (see [`super::codec`]).

use serde::{Deserialize, Serialize};

use super::codec::stored;
use crate::chunking::ChunkingParams;
use crate::id::{ChunkId, ContentId, Sha1};
use crate::key::FileKey;
use crate::segment::Location;

/// Chunk references per manifest page. A content with more chunks than this stores its list in
/// the `content_pages` tree, one value per page, keeping every sled value small (sled writes
/// values over ~128 KiB to side files it does not sync).
pub const CHUNKS_PER_PAGE: usize = 1024;

/// A release file, as the `files` table holds it under its key (inside a [`FileRow`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRec {
    /// The file's key (so an id resolves to its release and name).
    pub key: FileKey,
    /// The file's content.
    pub content_id: ContentId,
    /// SHA-1 of the content (denormalised so listings need no content lookup).
    pub sha1: Sha1,
    /// Size of the content.
    pub size: u64,
    /// Headers as given at upload, in order, keys unique.
    pub headers: Vec<(String, String)>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
}
stored!(FileRec {
    key,
    content_id,
    sha1,
    size,
    headers,
    created_ms
});

/// `files` value: the file's id and its record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRow {
    /// The file id.
    pub id: u64,
    /// The record.
    pub rec: FileRec,
}
stored!(FileRow { id, rec });

/// One entry of a content's ordered chunk list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// The chunk.
    pub id: ChunkId,
    /// Chunk length.
    pub len: u32,
    /// CRC32 of the chunk (as in its record header).
    pub crc32: u32,
    /// Where the chunk was when the content was created: a hint that saves a `chunks` lookup per
    /// chunk on reads. Compaction moves chunks without rewriting manifests, so a reader checks
    /// the record found there (header CRC, BLAKE3, length, payload CRC) and falls back to the
    /// `chunks` tree when it is not the chunk.
    pub location_hint: Location,
}
stored!(ChunkRef {
    id,
    len,
    crc32,
    location_hint
});

/// `contents`: content id → the content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRec {
    /// SHA-1 of the whole content.
    pub sha1: Sha1,
    /// Size in bytes.
    pub size: u64,
    /// Number of references: the file records, upload pieces and bundles that use this content.
    pub refcount: u64,
    /// Number of chunks.
    pub chunk_count: u64,
    /// The chunk list when it has at most [`CHUNKS_PER_PAGE`] entries; otherwise empty and the
    /// list lives in `content_pages`.
    pub inline: Vec<ChunkRef>,
}
stored!(ContentRec {
    sha1,
    size,
    refcount,
    chunk_count,
    inline
});

impl ContentRec {
    /// Number of manifest pages in `content_pages` (0 when the list is inline).
    pub fn pages(&self) -> u32 {
        if self.chunk_count as usize <= CHUNKS_PER_PAGE {
            0
        } else {
            self.chunk_count.div_ceil(CHUNKS_PER_PAGE as u64) as u32
        }
    }
}

/// `chunks`: chunk id → where the chunk lives. Immutable: inserted once, by the upload that first
/// appended the chunk, and changed only by gc (removed when no manifest lists it, or pointed at
/// its compacted copy). It carries no refcount: which chunks are live is decided by gc marking
/// the manifests (see `store/gc.rs`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode,
)]
pub struct ChunkRec {
    /// Segment and offset of the record header.
    pub location: Location,
    /// Payload length.
    pub len: u32,
    /// CRC32 of the payload.
    pub crc32: u32,
}

/// `releases`: org ‖ version → the release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct ReleaseRec {
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// Release time, if set.
    pub released_ms: Option<i64>,
    /// URL, if set.
    pub url: Option<String>,
    /// VCS ref, if set.
    pub vcs_ref: Option<String>,
    /// Linked project slugs, in link order.
    pub projects: Vec<String>,
    /// Files in every scope of the release.
    pub file_count: u64,
    /// Sum of those files' sizes.
    pub file_bytes: u64,
}

/// `projects`: org ‖ slug → the project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct ProjectRec {
    /// Numeric id, unique in the store.
    pub id: u64,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
}

/// `meta` key `stats`: counters kept exact by every transaction.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    bincode::Encode,
    bincode::Decode,
)]
pub struct Counters {
    /// Release files.
    pub files: u64,
    /// Distinct contents.
    pub contents: u64,
    /// Sum of file sizes (what users uploaded).
    pub logical_bytes: u64,
    /// Next project id.
    pub next_project_id: u64,
}

/// The `FORMAT` file of a store (JSON; the codec test holds its bincode form too).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatRec {
    /// Store format version.
    pub version: u32,
    /// Chunking parameters fixed at creation.
    pub chunking: ChunkingParams,
}
stored!(FormatRec { version, chunking });

/// `tokens`: BLAKE3 of the secret → an API token (the secret itself is never stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct TokenRec {
    /// The organization the token belongs to.
    pub org: String,
    /// Granted scopes (`project:read`, `project:releases`, ...).
    pub scopes: Vec<String>,
    /// A free-form label.
    pub label: String,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
}

/// `pieces`: org ‖ SHA-1 → an upload piece (Sentry's "chunk") owned by that org.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceRec {
    /// The piece's content (the piece holds one reference to it).
    pub content_id: ContentId,
    /// When it was last uploaded, ms since the epoch (gc expires it after the grace period).
    pub created_ms: i64,
}
stored!(PieceRec {
    content_id,
    created_ms
});

/// `bundles`: org ‖ checksum → an assembled artifact bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRec {
    /// The bundle file's own content while it is kept (gc drops it after the grace period).
    pub bundle_content: Option<ContentId>,
    /// Assembly time, ms since the epoch.
    pub created_ms: i64,
    /// Number of entries in `bundle_entries`.
    pub entry_count: u32,
}
// By hand: an optional id has no `Field` of its own (see `codec.rs`).
impl bincode::Encode for BundleRec {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        e: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.bundle_content.map(<[u8; 32]>::from).encode(e)?;
        self.created_ms.encode(e)?;
        self.entry_count.encode(e)
    }
}
impl<C> bincode::Decode<C> for BundleRec {
    fn decode<D: bincode::de::Decoder<Context = C>>(
        d: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        use bincode::Decode;
        Ok(BundleRec {
            bundle_content: <Option<[u8; 32]>>::decode(d)?.map(ContentId::from_bytes),
            created_ms: Decode::decode(d)?,
            entry_count: Decode::decode(d)?,
        })
    }
}
bincode::impl_borrow_decode!(BundleRec);

/// `bundle_entries`: org ‖ checksum ‖ entry number (u32 BE) → one file of a bundle. The bundle
/// holds one reference to each entry's content, so a later assemble can project it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleEntryRec {
    /// The file's URL (its release-file name), e.g. `~/static/app.js`.
    pub url: String,
    /// Headers from the manifest.
    pub headers: Vec<(String, String)>,
    /// The entry's content.
    pub content_id: ContentId,
    /// SHA-1 of the entry's content.
    pub sha1: Sha1,
    /// Size of the entry.
    pub size: u64,
    /// The `debug-id` header, lower-cased, if any.
    pub debug_id: Option<String>,
}
stored!(BundleEntryRec {
    url,
    headers,
    content_id,
    sha1,
    size,
    debug_id
});

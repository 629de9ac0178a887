//! The versioned value encoding of index records: one version byte, then bincode 2 (standard
//! configuration, varint integers). The only module that calls bincode.
//!
//! Records derive bincode's own `Encode`/`Decode`, not serde: its decoder reads a `[u8; 32]` as
//! one copy, where the serde route visits 32 bytes one by one (~12 % of a small read, perf). The
//! bytes are the same either way (the test below holds every record type to it), so stores
//! written through serde read unchanged.
//!
//! Decoding treats its input as untrusted: a size limit keeps a damaged length prefix from
//! allocating without bound, trailing bytes are an error, and an unknown version byte is a typed
//! error rather than garbage.

use crate::error::{Error, Result};

/// A type stored as an index record value.
pub trait Record: bincode::Encode + bincode::Decode<()> {}
impl<T: bincode::Encode + bincode::Decode<()>> Record for T {}

/// Version byte of every record value written by this build.
pub const CODEC_VERSION: u8 = 1;
/// Largest record value decoded (manifest pages are far below it).
const DECODE_LIMIT: usize = 4 << 20;

/// Encodes a record value.
pub fn encode<T: Record>(value: &T) -> Vec<u8> {
    let mut out = vec![CODEC_VERSION];
    bincode::encode_into_std_write(value, &mut out, bincode::config::standard())
        .expect("in-memory encoding of plain records cannot fail");
    out
}

/// Decodes a record value of type `T`, naming `what` in errors.
pub fn decode<T: Record>(what: &str, bytes: &[u8]) -> Result<T> {
    let (&version, body) = bytes
        .split_first()
        .ok_or_else(|| Error::corrupt(what.to_owned(), "empty record"))?;
    if version != CODEC_VERSION {
        return Err(Error::corrupt(
            what.to_owned(),
            format!("unknown record version {version}"),
        ));
    }
    let cfg = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    let (value, used) = bincode::decode_from_slice(body, cfg)
        .map_err(|e| Error::corrupt(what.to_owned(), format!("undecodable record: {e}")))?;
    if used != body.len() {
        return Err(Error::corrupt(
            what.to_owned(),
            "trailing bytes after record",
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::records::*;
    use crate::index::FileRow;
    use crate::key::FileKey;
    use crate::segment::Location;

    /// The bytes serde's bincode route writes for `v`: how stores were written before records
    /// derived bincode's traits.
    fn via_serde<T: serde::Serialize>(v: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
    }

    fn same<
        T: Record + serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    >(
        v: T,
    ) {
        let native = encode(&v);
        assert_eq!(native[1..], via_serde(&v)[..], "{v:?}");
        assert_eq!(decode::<T>("test", &native).unwrap(), v);
        let (back, _): (T, usize) =
            bincode::serde::decode_from_slice(&native[1..], bincode::config::standard()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn every_record_type_encodes_to_the_bytes_serde_wrote() {
        let at = Location {
            segment: 7,
            offset: 1 << 40,
        };
        let chunk = ChunkRef {
            blake3: [0xAB; 32],
            len: 70_000,
            crc32: 0xDEAD_BEEF,
            at,
        };
        let key = FileKey {
            org: "acme".into(),
            project: Some("web".into()),
            release: "1.0".into(),
            dist: None,
            name: "~/static/app.js".into(),
        };
        let file = FileRec {
            key: key.clone(),
            content: [3; 32],
            sha1: [4; 20],
            size: 123_456_789,
            headers: vec![("Content-Type".into(), "text/javascript".into())],
            created_ms: -5,
        };
        same(file.clone());
        same(FileRow { id: 42, rec: file });
        same(key);
        same(at);
        same(chunk);
        same(vec![chunk; 3]);
        same(ContentRec {
            sha1: [9; 20],
            size: 1 << 33,
            refcount: 3,
            chunk_count: 2,
            inline: vec![chunk, chunk],
        });
        same(ChunkRec {
            location: at,
            len: 4096,
            crc32: 1,
        });
        same(ReleaseRec {
            created_ms: 1,
            released_ms: Some(2),
            url: Some("https://example.com".into()),
            vcs_ref: None,
            projects: vec!["web".into(), "api".into()],
            file_count: 10,
            file_bytes: 1 << 20,
        });
        same(ProjectRec {
            id: 3,
            created_ms: 4,
        });
        same(Counters {
            files: 1,
            contents: 2,
            logical_bytes: 4,
            next_project_id: 6,
        });
        same(FormatRec {
            version: 2,
            chunking: crate::content::ChunkingParams::default(),
        });
        same(TokenRec {
            org: "acme".into(),
            scopes: vec!["project:read".into()],
            label: "ci".into(),
            created_ms: 9,
        });
        same(PieceRec {
            content: [1; 32],
            created_ms: 2,
        });
        same(BundleRec {
            bundle_content: Some([5; 32]),
            created_ms: 6,
            entry_count: 7,
        });
        same(BundleEntryRec {
            url: "~/static/app.js.map".into(),
            headers: vec![("debug-id".into(), "abc".into())],
            content: [2; 32],
            sha1: [3; 20],
            size: 99,
            debug_id: Some("abc".into()),
        });
    }
}

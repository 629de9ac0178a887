//! The versioned value encoding of index records: one version byte, then bincode 2 (standard
//! configuration, varint integers). The only module that calls bincode.
//!
//! Records implement bincode's own `Encode`/`Decode`, not serde: its decoder reads a `[u8; 32]` as
//! one copy, where the serde route visits 32 bytes one by one (docs/benchmarks.md, W4, has what
//! that cost a small read). The bytes are the same either way (the test below holds every record
//! type to it), so stores written through serde read unchanged.
//!
//! The public types a record holds (ids, file keys, chunking parameters) implement no bincode
//! trait, so that bincode stays out of the public API: records list their fields with
//! `stored!`, which encodes each through [`Field`], a crate-private trait that
//! writes those types exactly as bincode writes the plain values inside them.
//!
//! Decoding treats its input as untrusted: a size limit keeps a damaged length prefix from
//! allocating without bound, trailing bytes are an error, and an unknown version byte is a typed
//! error rather than garbage.

use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};

use crate::chunking::ChunkingParams;
use crate::error::{Error, Object, Result};
use crate::id::{ChunkId, ContentId, Sha1};
use crate::key::FileKey;

/// A type stored as an index value (the records of `records.rs`).
pub trait Stored: Encode + Decode<()> {}
impl<T: Encode + Decode<()>> Stored for T {}

/// Version byte of every record value written by this build.
pub const CODEC_VERSION: u8 = 1;
/// Largest record value decoded (manifest pages are far below it).
const DECODE_LIMIT: usize = 4 << 20;

/// Encodes a record value.
pub fn encode<T: Stored>(value: &T) -> Vec<u8> {
    let mut out = vec![CODEC_VERSION];
    bincode::encode_into_std_write(value, &mut out, bincode::config::standard())
        .expect("in-memory encoding of plain records cannot fail");
    out
}

/// Decodes a record value of type `T`, naming `what` in errors.
pub fn decode<T: Stored>(what: &'static str, bytes: &[u8]) -> Result<T> {
    let (&version, body) = bytes
        .split_first()
        .ok_or_else(|| Error::corrupt(Object::Index(what), "empty record"))?;
    if version != CODEC_VERSION {
        return Err(Error::UnsupportedVersion {
            what: "index record",
            found: version.into(),
            supported: CODEC_VERSION.into(),
        });
    }
    let cfg = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    let (value, used) = bincode::decode_from_slice(body, cfg)
        .map_err(|e| Error::corrupt(Object::Index(what), format!("undecodable record: {e}")))?;
    if used != body.len() {
        return Err(Error::corrupt(
            Object::Index(what),
            "trailing bytes after record",
        ));
    }
    Ok(value)
}

/// One field of a stored record: bincode's encoding of the field's plain value. Implemented for
/// every bincode type, and by hand for the public types records hold.
pub(crate) trait Field: Sized {
    fn encode_field<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError>;
    fn decode_field<C, D: Decoder<Context = C>>(d: &mut D) -> Result<Self, DecodeError>;
}

impl<T: Encode + Decode<()>> Field for T {
    fn encode_field<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        self.encode(e)
    }
    fn decode_field<C, D: Decoder<Context = C>>(d: &mut D) -> Result<Self, DecodeError> {
        T::decode(&mut d.with_context(()))
    }
}

macro_rules! id_field {
    ($($id:ty),*) => {$(
        impl Field for $id {
            fn encode_field<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
                self.as_bytes().encode(e)
            }
            fn decode_field<C, D: Decoder<Context = C>>(d: &mut D) -> Result<Self, DecodeError> {
                Field::decode_field(d).map(<$id>::from_bytes)
            }
        }
    )*};
}
id_field!(ContentId, ChunkId, Sha1);

impl Field for FileKey {
    /// The fields in declaration order, as a derive would write them.
    fn encode_field<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        self.org.encode(e)?;
        self.project.encode(e)?;
        self.release.encode(e)?;
        self.dist.encode(e)?;
        self.name.encode(e)
    }
    fn decode_field<C, D: Decoder<Context = C>>(d: &mut D) -> Result<Self, DecodeError> {
        Ok(FileKey {
            org: Field::decode_field(d)?,
            project: Field::decode_field(d)?,
            release: Field::decode_field(d)?,
            dist: Field::decode_field(d)?,
            name: Field::decode_field(d)?,
        })
    }
}

impl Field for ChunkingParams {
    fn encode_field<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        self.min.encode(e)?;
        self.avg.encode(e)?;
        self.max.encode(e)
    }
    fn decode_field<C, D: Decoder<Context = C>>(d: &mut D) -> Result<Self, DecodeError> {
        Ok(ChunkingParams {
            min: Field::decode_field(d)?,
            avg: Field::decode_field(d)?,
            max: Field::decode_field(d)?,
        })
    }
}

/// Implements bincode's `Encode`, `Decode` and `BorrowDecode` for a record struct, field by field
/// in the order given (which must be the declaration order: the encoding is the fields in turn).
macro_rules! stored {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        impl bincode::Encode for $ty {
            fn encode<E: bincode::enc::Encoder>(
                &self,
                e: &mut E,
            ) -> Result<(), bincode::error::EncodeError> {
                $($crate::index::codec::Field::encode_field(&self.$field, e)?;)*
                Ok(())
            }
        }

        impl<C> bincode::Decode<C> for $ty {
            fn decode<D: bincode::de::Decoder<Context = C>>(
                d: &mut D,
            ) -> Result<Self, bincode::error::DecodeError> {
                Ok($ty {
                    $($field: $crate::index::codec::Field::decode_field(d)?,)*
                })
            }
        }

        bincode::impl_borrow_decode!($ty);
    };
}
pub(crate) use stored;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::records::*;
    use crate::segment::Location;

    /// The bytes serde's bincode route writes for `v`: how stores were written before records
    /// derived bincode's traits.
    fn via_serde<T: serde::Serialize>(v: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
    }

    fn same<
        T: Stored + serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
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

    /// A file key on its own, as a record: [`FileKey`] implements no bincode trait (it is public).
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct KeyOnly {
        key: FileKey,
    }
    stored!(KeyOnly { key });

    #[test]
    fn every_record_type_encodes_to_the_bytes_serde_wrote() {
        let at = Location {
            segment: 7,
            offset: 1 << 40,
        };
        let chunk = ChunkRef {
            id: ChunkId::from_bytes([0xAB; 32]),
            len: 70_000,
            crc32: 0xDEAD_BEEF,
            location_hint: at,
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
            content_id: ContentId::from_bytes([3; 32]),
            sha1: Sha1::from_bytes([4; 20]),
            size: 123_456_789,
            headers: vec![("Content-Type".into(), "text/javascript".into())],
            created_ms: -5,
        };
        same(file.clone());
        same(FileRow { id: 42, rec: file });
        same(KeyOnly { key });
        same(at);
        same(chunk);
        same(vec![chunk; 3]);
        same(ContentRec {
            sha1: Sha1::from_bytes([9; 20]),
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
            chunking: crate::chunking::ChunkingParams::default(),
        });
        same(TokenRec {
            org: "acme".into(),
            scopes: vec!["project:read".into()],
            label: "ci".into(),
            created_ms: 9,
        });
        same(PieceRec {
            content_id: ContentId::from_bytes([1; 32]),
            created_ms: 2,
        });
        same(BundleRec {
            bundle_content: Some(ContentId::from_bytes([5; 32])),
            created_ms: 6,
            entry_count: 7,
        });
        same(BundleEntryRec {
            url: "~/static/app.js.map".into(),
            headers: vec![("debug-id".into(), "abc".into())],
            content_id: ContentId::from_bytes([2; 32]),
            sha1: Sha1::from_bytes([3; 20]),
            size: 99,
            debug_id: Some("abc".into()),
        });
    }

    #[test]
    fn an_unknown_record_version_is_unsupported_not_garbage() {
        let mut bytes = encode(&ProjectRec {
            id: 1,
            created_ms: 2,
        });
        bytes[0] = CODEC_VERSION + 1;
        assert!(matches!(
            decode::<ProjectRec>("project record", &bytes),
            Err(Error::UnsupportedVersion {
                found: 2,
                supported: 1,
                ..
            })
        ));
    }
}

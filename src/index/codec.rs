//! The versioned value encoding of index records: one version byte, then bincode 2 (standard
//! configuration, varint integers). The only module that names bincode.
//!
//! Decoding treats its input as untrusted: a size limit keeps a damaged length prefix from
//! allocating without bound, trailing bytes are an error, and an unknown version byte is a typed
//! error rather than garbage.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Version byte of every record value written by this build.
pub const CODEC_VERSION: u8 = 1;
/// Largest record value decoded (manifest pages are far below it).
const DECODE_LIMIT: usize = 4 << 20;

/// Encodes a record value.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![CODEC_VERSION];
    bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard())
        .expect("in-memory encoding of plain records cannot fail");
    out
}

/// Decodes a record value of type `T`, naming `what` in errors.
pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
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
    let (value, used) = bincode::serde::decode_from_slice(body, cfg)
        .map_err(|e| Error::corrupt(what.to_owned(), format!("undecodable record: {e}")))?;
    if used != body.len() {
        return Err(Error::corrupt(
            what.to_owned(),
            "trailing bytes after record",
        ));
    }
    Ok(value)
}

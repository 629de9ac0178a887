//! Chunk records: the unit of a segment file (`[header | payload]`), their encoding and checks.
//!
//! The header is fixed-size and self-checking (its own CRC32), so recovery can tell a torn or
//! zeroed tail from a record, and a reader can tell a misplaced location from the chunk it expects.
//! Every field size is derived from one constant below; `docs/format.md` mirrors this table.

use crate::error::{Error, Result};

/// Magic bytes opening every chunk record.
pub const RECORD_MAGIC: [u8; 4] = *b"RSCK";
/// Version of the record layout.
pub const RECORD_VERSION: u8 = 1;
/// Record kind of a content-defined chunk (the only kind so far).
pub const KIND_CHUNK: u8 = 1;

const MAGIC_LEN: usize = 4;
const VERSION_LEN: usize = 1;
const KIND_LEN: usize = 1;
const RESERVED_LEN: usize = 2;
const LEN_LEN: usize = 4;
const CRC_LEN: usize = 4;
const HASH_LEN: usize = 32;

const OFF_VERSION: usize = MAGIC_LEN;
const OFF_KIND: usize = OFF_VERSION + VERSION_LEN;
const OFF_LEN: usize = OFF_KIND + KIND_LEN + RESERVED_LEN;
const OFF_CRC: usize = OFF_LEN + LEN_LEN;
const OFF_HASH: usize = OFF_CRC + CRC_LEN;
const OFF_HEADER_CRC: usize = OFF_HASH + HASH_LEN;
/// Size of a record header in bytes (52).
pub const HEADER_LEN: usize = OFF_HEADER_CRC + CRC_LEN;

/// The decoded header of one chunk record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Payload length in bytes.
    pub len: u32,
    /// CRC32 (IEEE) of the payload.
    pub crc32: u32,
    /// BLAKE3 of the payload: the chunk's identity.
    pub blake3: [u8; 32],
}

impl RecordHeader {
    /// Encodes the header into its fixed 52-byte form.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..MAGIC_LEN].copy_from_slice(&RECORD_MAGIC);
        h[OFF_VERSION] = RECORD_VERSION;
        h[OFF_KIND] = KIND_CHUNK;
        h[OFF_LEN..OFF_LEN + LEN_LEN].copy_from_slice(&self.len.to_le_bytes());
        h[OFF_CRC..OFF_CRC + CRC_LEN].copy_from_slice(&self.crc32.to_le_bytes());
        h[OFF_HASH..OFF_HASH + HASH_LEN].copy_from_slice(&self.blake3);
        let hc = crc32fast::hash(&h[..OFF_HEADER_CRC]);
        h[OFF_HEADER_CRC..].copy_from_slice(&hc.to_le_bytes());
        h
    }

    /// Decodes and checks a header (magic, version, kind, header CRC). Never panics.
    pub fn decode(bytes: &[u8]) -> Result<RecordHeader> {
        let bad = |d: String| Error::corrupt("segment record header", d);
        if bytes.len() < HEADER_LEN {
            return Err(bad(format!("{} bytes, need {HEADER_LEN}", bytes.len())));
        }
        let h = &bytes[..HEADER_LEN];
        if h[..MAGIC_LEN] != RECORD_MAGIC {
            return Err(bad("bad magic".into()));
        }
        let stored = u32::from_le_bytes(h[OFF_HEADER_CRC..].try_into().expect("4 bytes"));
        if crc32fast::hash(&h[..OFF_HEADER_CRC]) != stored {
            return Err(bad("header checksum mismatch".into()));
        }
        if h[OFF_VERSION] != RECORD_VERSION {
            return Err(bad(format!("unknown record version {}", h[OFF_VERSION])));
        }
        if h[OFF_KIND] != KIND_CHUNK {
            return Err(bad(format!("unknown record kind {}", h[OFF_KIND])));
        }
        let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().expect("4 bytes"));
        let mut blake3 = [0u8; 32];
        blake3.copy_from_slice(&h[OFF_HASH..OFF_HASH + HASH_LEN]);
        Ok(RecordHeader {
            len: u32_at(OFF_LEN),
            crc32: u32_at(OFF_CRC),
            blake3,
        })
    }
}

/// Appends a full record (header and payload) for `payload` to `out`.
pub fn encode_record(out: &mut Vec<u8>, payload: &[u8], crc32: u32, blake3: &[u8; 32]) {
    let header = RecordHeader {
        len: u32::try_from(payload.len()).expect("chunks are far below 4 GiB"),
        crc32,
        blake3: *blake3,
    };
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
}

/// Checks one record in `bytes` (which starts at the record) against what the index expects and
/// returns its payload. The CRC32 of the payload is always checked; it is the read-path check.
pub fn check_record<'a>(
    bytes: &'a [u8],
    expect_len: u32,
    expect_crc: u32,
    expect_blake3: &[u8; 32],
) -> Result<&'a [u8]> {
    let header = RecordHeader::decode(bytes)?;
    // Named only on failure: formatting the id on every read cost ~2 % of a small read.
    let damaged = |why: &str| Error::corrupt(format!("chunk {}", crate::hex(expect_blake3)), why);
    if header.len != expect_len || header.blake3 != *expect_blake3 || header.crc32 != expect_crc {
        return Err(damaged(
            "record header does not match the index (misplaced or overwritten record)",
        ));
    }
    let end = HEADER_LEN + expect_len as usize;
    let payload = bytes
        .get(HEADER_LEN..end)
        .ok_or_else(|| damaged("record truncated"))?;
    if crc32fast::hash(payload) != expect_crc {
        return Err(damaged("payload CRC32 mismatch (the stored bytes changed)"));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_every_flipped_byte() {
        let payload = b"hello chunk";
        let crc = crc32fast::hash(payload);
        let b3 = *blake3::hash(payload).as_bytes();
        let mut rec = Vec::new();
        encode_record(&mut rec, payload, crc, &b3);
        assert_eq!(rec.len(), HEADER_LEN + payload.len());
        assert_eq!(check_record(&rec, 11, crc, &b3).unwrap(), payload);
        for i in 0..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 0x40;
            assert!(check_record(&bad, 11, crc, &b3).is_err(), "flip at {i}");
        }
    }
}

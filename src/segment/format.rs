//! The bytes of a segment file: its 32-byte header, and the chunk records (`[header | payload]`)
//! that follow it, with their encoding and checks.
//!
//! Both headers are fixed-size and self-checking (their own CRC32), so recovery can tell a torn or
//! zeroed tail from a record, and a reader can tell a misplaced location from the chunk it expects.
//! Every offset is derived from one length constant per field; `docs/format.md` mirrors these
//! tables, and a test holds the two together.

use crate::error::{Error, Object, Result};
use crate::id::ChunkId;

/// Magic bytes opening every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RELSTSEG";
/// Version of the segment file layout.
pub const SEGMENT_VERSION: u32 = 1;

const SEG_MAGIC_LEN: usize = 8;
const SEG_VERSION_LEN: usize = 4;
const SEG_ID_LEN: usize = 4;
const SEG_RESERVED_LEN: usize = 12;
const SEG_CRC_LEN: usize = 4;

/// Offset of the segment header's version (u32 LE).
pub const SEG_OFF_VERSION: usize = SEG_MAGIC_LEN;
/// Offset of the segment id (u32 LE).
pub const SEG_OFF_ID: usize = SEG_OFF_VERSION + SEG_VERSION_LEN;
/// Offset of the reserved bytes (zero when written).
pub const SEG_OFF_RESERVED: usize = SEG_OFF_ID + SEG_ID_LEN;
/// Offset of the CRC32 of the bytes before it (u32 LE).
pub const SEG_OFF_CRC: usize = SEG_OFF_RESERVED + SEG_RESERVED_LEN;
/// Size of the segment file header (32).
pub const SEGMENT_HEADER_LEN: usize = SEG_OFF_CRC + SEG_CRC_LEN;

fn u32_le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Encodes the 32-byte segment file header.
pub fn encode_segment_header(id: u32) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..SEG_MAGIC_LEN].copy_from_slice(&SEGMENT_MAGIC);
    h[SEG_OFF_VERSION..SEG_OFF_ID].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[SEG_OFF_ID..SEG_OFF_RESERVED].copy_from_slice(&id.to_le_bytes());
    let crc = crc32fast::hash(&h[..SEG_OFF_CRC]);
    h[SEG_OFF_CRC..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes a segment file header and returns the segment id it names.
pub fn decode_segment_header(h: &[u8]) -> Result<u32> {
    let bad = |d: &str| Error::corrupt(Object::Header("segment header"), d);
    if h.len() < SEGMENT_HEADER_LEN {
        return Err(bad("file shorter than its header"));
    }
    if h[..SEG_MAGIC_LEN] != SEGMENT_MAGIC {
        return Err(bad("bad magic (not a relstore segment)"));
    }
    if u32_le(h, SEG_OFF_CRC) != crc32fast::hash(&h[..SEG_OFF_CRC]) {
        return Err(bad("header checksum mismatch"));
    }
    let version = u32_le(h, SEG_OFF_VERSION);
    if version != SEGMENT_VERSION {
        return Err(Error::UnsupportedVersion {
            what: "segment",
            found: version.into(),
            supported: SEGMENT_VERSION.into(),
        });
    }
    Ok(u32_le(h, SEG_OFF_ID))
}

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

/// Offset of the record version (one byte).
pub const OFF_VERSION: usize = MAGIC_LEN;
/// Offset of the record kind (one byte).
pub const OFF_KIND: usize = OFF_VERSION + VERSION_LEN;
/// Offset of the reserved bytes (zero when written).
pub const OFF_RESERVED: usize = OFF_KIND + KIND_LEN;
/// Offset of the payload length (u32 LE).
pub const OFF_LEN: usize = OFF_RESERVED + RESERVED_LEN;
/// Offset of the payload's CRC32 (u32 LE).
pub const OFF_CRC: usize = OFF_LEN + LEN_LEN;
/// Offset of the payload's BLAKE3, the chunk id (32 bytes).
pub const OFF_HASH: usize = OFF_CRC + CRC_LEN;
/// Offset of the CRC32 of the header bytes before it (u32 LE).
pub const OFF_HEADER_CRC: usize = OFF_HASH + HASH_LEN;
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
    pub id: ChunkId,
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
        h[OFF_HASH..OFF_HASH + HASH_LEN].copy_from_slice(self.id.as_bytes());
        let hc = crc32fast::hash(&h[..OFF_HEADER_CRC]);
        h[OFF_HEADER_CRC..].copy_from_slice(&hc.to_le_bytes());
        h
    }

    /// Decodes and checks a header (magic, version, kind, header CRC). Never panics.
    pub fn decode(bytes: &[u8]) -> Result<RecordHeader> {
        let bad = |d: String| Error::corrupt(Object::Header("segment record header"), d);
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
        // Inside a segment of a supported version, another record version is damage: the
        // scanner and the read path treat it like any other failed check.
        if h[OFF_VERSION] != RECORD_VERSION {
            return Err(bad(format!("unknown record version {}", h[OFF_VERSION])));
        }
        if h[OFF_KIND] != KIND_CHUNK {
            return Err(bad(format!("unknown record kind {}", h[OFF_KIND])));
        }
        Ok(RecordHeader {
            len: u32_le(h, OFF_LEN),
            crc32: u32_le(h, OFF_CRC),
            id: ChunkId::from_slice(&h[OFF_HASH..OFF_HASH + HASH_LEN]).expect("32 bytes"),
        })
    }
}

/// Appends a full record (header and payload) for `payload` to `out`.
pub fn encode_record(out: &mut Vec<u8>, payload: &[u8], crc32: u32, id: &ChunkId) {
    let header = RecordHeader {
        len: u32::try_from(payload.len()).expect("chunks are far below 4 GiB"),
        crc32,
        id: *id,
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
    expect_id: &ChunkId,
) -> Result<&'a [u8]> {
    let header = RecordHeader::decode(bytes)?;
    let damaged = |why: &str| Error::corrupt(Object::Chunk(*expect_id), why);
    if header.len != expect_len || header.id != *expect_id || header.crc32 != expect_crc {
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
        let b3 = ChunkId::of(payload);
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

//! The 72-byte trailer that ends every slot object (docs/format.md, "Packs on object storage").
//!
//! A pack object is the sealed segment's bytes followed by this trailer; a fence or a tombstone
//! is a trailer alone. The trailer travels with the bytes (a server-side copy, a bucket
//! replication or an `aws s3 cp` keeps it, where object metadata may be dropped), says which slot
//! and epoch the object was written for (an object copied into the wrong slot is detected), and
//! carries the BLAKE3 of the payload, which every whole-pack download checks. Putting it at the
//! end keeps the payload's offsets equal to the segment file's, so ranged reads need no
//! translation.
//!
//! All integers are little-endian, like the segment files'.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | magic `RSPK` |
//! | 4 | 2 | version, `1` |
//! | 6 | 1 | kind: `1` pack, `2` fence, `3` tombstone |
//! | 7 | 1 | reserved, zero |
//! | 8 | 8 | slot number |
//! | 16 | 8 | epoch of the writer |
//! | 24 | 8 | payload length (tombstone: the deleted pack's) |
//! | 32 | 32 | BLAKE3-256 of the payload (tombstone: the deleted pack's; fence: zero) |
//! | 64 | 4 | reserved, zero |
//! | 68 | 4 | CRC32 (IEEE) of bytes 0..68 |

use std::fmt;

/// Length of a trailer in bytes.
pub const TRAILER_LEN: usize = MAGIC_LEN
    + VERSION_LEN
    + KIND_LEN
    + RESERVED1_LEN
    + SEQ_LEN
    + EPOCH_LEN
    + PAYLOAD_LEN_LEN
    + HASH_LEN
    + RESERVED2_LEN
    + CRC_LEN;

const MAGIC: [u8; 4] = *b"RSPK";
const VERSION: u16 = 1;

const MAGIC_LEN: usize = 4;
const VERSION_LEN: usize = 2;
const KIND_LEN: usize = 1;
const RESERVED1_LEN: usize = 1;
const SEQ_LEN: usize = 8;
const EPOCH_LEN: usize = 8;
const PAYLOAD_LEN_LEN: usize = 8;
const HASH_LEN: usize = 32;
const RESERVED2_LEN: usize = 4;
const CRC_LEN: usize = 4;

const VERSION_AT: usize = MAGIC_LEN;
const KIND_AT: usize = VERSION_AT + VERSION_LEN;
const RESERVED1_AT: usize = KIND_AT + KIND_LEN;
const SEQ_AT: usize = RESERVED1_AT + RESERVED1_LEN;
const EPOCH_AT: usize = SEQ_AT + SEQ_LEN;
const PAYLOAD_LEN_AT: usize = EPOCH_AT + EPOCH_LEN;
const HASH_AT: usize = PAYLOAD_LEN_AT + PAYLOAD_LEN_LEN;
const RESERVED2_AT: usize = HASH_AT + HASH_LEN;
const CRC_AT: usize = RESERVED2_AT + RESERVED2_LEN;

/// What occupies a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlotKind {
    /// A sealed segment: payload bytes, then the trailer.
    Pack,
    /// A new primary's fence: no payload. Written at the first free slot when a primary takes
    /// the prefix over, so that any older primary's next write finds its slot taken.
    Fence,
    /// A pack deleted after retirement: no payload; the trailer keeps the deleted pack's length
    /// and hash. The slot stays occupied so that no writer can ever create it again.
    Tombstone,
}

impl SlotKind {
    fn code(self) -> u8 {
        match self {
            SlotKind::Pack => 1,
            SlotKind::Fence => 2,
            SlotKind::Tombstone => 3,
        }
    }

    fn from_code(code: u8) -> Option<SlotKind> {
        match code {
            1 => Some(SlotKind::Pack),
            2 => Some(SlotKind::Fence),
            3 => Some(SlotKind::Tombstone),
            _ => None,
        }
    }
}

impl fmt::Display for SlotKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlotKind::Pack => "pack",
            SlotKind::Fence => "fence",
            SlotKind::Tombstone => "tombstone",
        })
    }
}

/// A decoded trailer: what a slot object says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// Pack, fence or tombstone.
    pub kind: SlotKind,
    /// The slot it was written for.
    pub seq: u64,
    /// The epoch of the primary that wrote it.
    pub epoch: u64,
    /// Payload bytes before the trailer (a tombstone: the deleted pack's; a fence: 0).
    pub payload_len: u64,
    /// BLAKE3-256 of the payload (a tombstone: the deleted pack's; a fence: zero).
    pub blake3: [u8; 32],
}

/// Why bytes are not a trailer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrailerError {
    /// Fewer than [`TRAILER_LEN`] bytes.
    Short(usize),
    /// The CRC does not match: torn, truncated or overwritten bytes.
    Crc,
    /// Not `RSPK`.
    Magic,
    /// A version this build does not read.
    Version(u16),
    /// An unknown kind code.
    Kind(u8),
    /// Reserved bytes are not zero.
    Reserved,
}

impl fmt::Display for TrailerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrailerError::Short(n) => write!(f, "{n} bytes, a trailer has {TRAILER_LEN}"),
            TrailerError::Crc => f.write_str("the trailer's CRC does not match"),
            TrailerError::Magic => f.write_str("no RSPK trailer at the end of the object"),
            TrailerError::Version(v) => {
                write!(f, "trailer version {v}; this build reads version {VERSION}")
            }
            TrailerError::Kind(k) => write!(f, "unknown slot kind {k}"),
            TrailerError::Reserved => f.write_str("reserved trailer bytes are not zero"),
        }
    }
}

impl Trailer {
    /// The trailer of a pack of `payload_len` bytes hashing to `blake3`.
    pub fn pack(seq: u64, epoch: u64, payload_len: u64, blake3: [u8; 32]) -> Trailer {
        Trailer {
            kind: SlotKind::Pack,
            seq,
            epoch,
            payload_len,
            blake3,
        }
    }

    /// A fence for slot `seq`, written by the primary of `epoch`.
    pub fn fence(seq: u64, epoch: u64) -> Trailer {
        Trailer {
            kind: SlotKind::Fence,
            seq,
            epoch,
            payload_len: 0,
            blake3: [0; 32],
        }
    }

    /// The tombstone that replaces pack `deleted`, written by the primary of `epoch`.
    pub fn tombstone(deleted: &Trailer, epoch: u64) -> Trailer {
        Trailer {
            kind: SlotKind::Tombstone,
            seq: deleted.seq,
            epoch,
            payload_len: deleted.payload_len,
            blake3: deleted.blake3,
        }
    }

    /// Bytes of the object that precede the trailer: the payload for a pack, none otherwise.
    pub fn object_payload_len(&self) -> u64 {
        match self.kind {
            SlotKind::Pack => self.payload_len,
            _ => 0,
        }
    }

    /// The trailer's bytes.
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut out = [0u8; TRAILER_LEN];
        out[..MAGIC_LEN].copy_from_slice(&MAGIC);
        out[VERSION_AT..VERSION_AT + VERSION_LEN].copy_from_slice(&VERSION.to_le_bytes());
        out[KIND_AT] = self.kind.code();
        out[SEQ_AT..SEQ_AT + SEQ_LEN].copy_from_slice(&self.seq.to_le_bytes());
        out[EPOCH_AT..EPOCH_AT + EPOCH_LEN].copy_from_slice(&self.epoch.to_le_bytes());
        out[PAYLOAD_LEN_AT..PAYLOAD_LEN_AT + PAYLOAD_LEN_LEN]
            .copy_from_slice(&self.payload_len.to_le_bytes());
        out[HASH_AT..HASH_AT + HASH_LEN].copy_from_slice(&self.blake3);
        let crc = crc32fast::hash(&out[..CRC_AT]);
        out[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes the last [`TRAILER_LEN`] bytes of `bytes` (an object's tail). The CRC is checked
    /// first, so a torn or foreign tail is reported as such rather than as a strange field.
    pub fn decode(bytes: &[u8]) -> Result<Trailer, TrailerError> {
        if bytes.len() < TRAILER_LEN {
            return Err(TrailerError::Short(bytes.len()));
        }
        let t = &bytes[bytes.len() - TRAILER_LEN..];
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&t[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let stored_crc =
            u32::from_le_bytes([t[CRC_AT], t[CRC_AT + 1], t[CRC_AT + 2], t[CRC_AT + 3]]);
        if t[..MAGIC_LEN] != MAGIC {
            return Err(TrailerError::Magic);
        }
        if crc32fast::hash(&t[..CRC_AT]) != stored_crc {
            return Err(TrailerError::Crc);
        }
        let version = u16::from_le_bytes([t[VERSION_AT], t[VERSION_AT + 1]]);
        if version != VERSION {
            return Err(TrailerError::Version(version));
        }
        let kind = SlotKind::from_code(t[KIND_AT]).ok_or(TrailerError::Kind(t[KIND_AT]))?;
        if t[RESERVED1_AT] != 0 || t[RESERVED2_AT..CRC_AT].iter().any(|&b| b != 0) {
            return Err(TrailerError::Reserved);
        }
        let mut blake3 = [0u8; 32];
        blake3.copy_from_slice(&t[HASH_AT..HASH_AT + HASH_LEN]);
        Ok(Trailer {
            kind,
            seq: u64_at(SEQ_AT),
            epoch: u64_at(EPOCH_AT),
            payload_len: u64_at(PAYLOAD_LEN_AT),
            blake3,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Trailer {
        Trailer::pack(
            0x0102_0304_0506_0708,
            9,
            123_456_789,
            *blake3::hash(b"x").as_bytes(),
        )
    }

    #[test]
    fn layout_matches_the_documented_offsets() {
        assert_eq!(TRAILER_LEN, 72);
        assert_eq!(
            (
                VERSION_AT,
                KIND_AT,
                SEQ_AT,
                EPOCH_AT,
                PAYLOAD_LEN_AT,
                HASH_AT,
                RESERVED2_AT,
                CRC_AT
            ),
            (4, 6, 8, 16, 24, 32, 64, 68)
        );
        let bytes = sample().encode();
        assert_eq!(&bytes[..4], b"RSPK");
        assert_eq!(&bytes[8..16], &0x0102_0304_0506_0708u64.to_le_bytes());
    }

    #[test]
    fn every_kind_round_trips_also_after_a_payload() {
        let pack = sample();
        for t in [pack, Trailer::fence(5, 2), Trailer::tombstone(&pack, 3)] {
            let mut object = b"payload bytes".to_vec();
            object.extend_from_slice(&t.encode());
            assert_eq!(Trailer::decode(&object), Ok(t));
        }
        assert_eq!(Trailer::tombstone(&pack, 3).object_payload_len(), 0);
        assert_eq!(pack.object_payload_len(), 123_456_789);
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let good = sample().encode();
        for byte in 0..TRAILER_LEN {
            for bit in 0..8 {
                let mut bad = good;
                bad[byte] ^= 1 << bit;
                assert!(
                    Trailer::decode(&bad).is_err(),
                    "flipping bit {bit} of byte {byte} went unnoticed"
                );
            }
        }
    }

    proptest::proptest! {
        // The trailer is read from objects anyone with write access to the bucket could have
        // written: any bytes must decode or fail, never panic, and what decodes re-encodes to
        // the same bytes.
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Ok(t) = Trailer::decode(&bytes) {
                proptest::prop_assert_eq!(&t.encode()[..], &bytes[bytes.len() - TRAILER_LEN..]);
            }
        }

        #[test]
        fn every_trailer_round_trips(seq: u64, epoch: u64, len: u64, hash: [u8; 32], kind in 0u8..3) {
            let mut t = Trailer::pack(seq, epoch, len, hash);
            t.kind = [SlotKind::Pack, SlotKind::Fence, SlotKind::Tombstone][kind as usize];
            proptest::prop_assert_eq!(Trailer::decode(&t.encode()), Ok(t));
        }
    }

    #[test]
    fn fields_are_checked_behind_a_valid_crc() {
        let reencode = |mut b: [u8; TRAILER_LEN]| {
            let crc = crc32fast::hash(&b[..CRC_AT]);
            b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
            b
        };
        let good = sample().encode();
        let mut v = good;
        v[VERSION_AT] = 2;
        assert_eq!(Trailer::decode(&reencode(v)), Err(TrailerError::Version(2)));
        let mut k = good;
        k[KIND_AT] = 9;
        assert_eq!(Trailer::decode(&reencode(k)), Err(TrailerError::Kind(9)));
        let mut r = good;
        r[RESERVED2_AT] = 1;
        assert_eq!(Trailer::decode(&reencode(r)), Err(TrailerError::Reserved));
        assert_eq!(Trailer::decode(&good[..10]), Err(TrailerError::Short(10)));
    }
}

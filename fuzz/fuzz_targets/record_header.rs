//! Chunk record headers and whole-record checks, as read back from a segment file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relstore::__private::{check_record, RecordHeader, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = RecordHeader::decode(data) {
        // Re-encoding keeps every field. Only the reserved bytes (6..8, covered by the header
        // CRC but not checked to be zero) and hence the header CRC may differ.
        let again = h.encode();
        assert_eq!(
            RecordHeader::decode(&again).expect("re-encoded header decodes"),
            h
        );
        assert_eq!(again[..6], data[..6]);
        assert_eq!(again[8..HEADER_LEN - 4], data[8..HEADER_LEN - 4]);
        // Checked against its own header fields, a record is accepted only when its payload is
        // complete and matches its CRC32.
        if let Ok(payload) = check_record(data, h.len, h.crc32, &h.id) {
            assert_eq!(payload.len(), h.len as usize);
            assert_eq!(crc32fast_hash(payload), h.crc32);
        }
    }
    // Against arbitrary expectations taken from the input itself: never panics.
    if data.len() >= 8 {
        let len = u32::from_le_bytes(data[..4].try_into().unwrap()) % 70_000;
        let crc = u32::from_le_bytes(data[4..8].try_into().unwrap());
        let mut b3 = [0u8; 32];
        let n = data.len().min(32);
        b3[..n].copy_from_slice(&data[..n]);
        let _ = check_record(&data[8..], len, crc, &relstore::ChunkId::from_bytes(b3));
    }
});

fn crc32fast_hash(b: &[u8]) -> u32 {
    // The CRC32 (IEEE) the segment format uses, computed independently of the library.
    let mut crc = !0u32;
    for &x in b {
        crc ^= u32::from(x);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

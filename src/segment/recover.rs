//! Scanning a segment's records: used on open to find the end of the last complete record of the
//! active segment (a crash may leave a torn tail), by `verify`, and by compaction.
//!
//! The scanner reads through a positional-read closure so the same code runs over a file and,
//! in the fuzz target, over a byte slice.

use super::record::{RecordHeader, HEADER_LEN};
use super::SEGMENT_HEADER_LEN;

/// One complete, CRC-checked record found by a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedRecord {
    /// Offset of the record header in the segment.
    pub offset: u64,
    /// The decoded header.
    pub header: RecordHeader,
}

/// What a scan found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Every complete record, in file order.
    pub records: Vec<ScannedRecord>,
    /// Offset just past the last complete record: where a torn tail starts.
    pub valid_end: u64,
}

/// The longest payload a scan accepts; anything longer is treated as damage, which keeps a
/// corrupt length field from making the scanner allocate gigabytes.
pub const MAX_SCAN_PAYLOAD: u32 = 64 << 20;

/// Scans records from just after the segment header to `len`, stopping at the first record that
/// is incomplete or fails a check. `read_at(offset, buf)` must fill `buf` or fail.
pub fn scan(
    len: u64,
    mut read_at: impl FnMut(u64, &mut [u8]) -> std::io::Result<()>,
) -> std::io::Result<ScanOutcome> {
    let mut out = ScanOutcome {
        records: Vec::new(),
        valid_end: SEGMENT_HEADER_LEN as u64,
    };
    let mut header_buf = [0u8; HEADER_LEN];
    let mut payload = Vec::new();
    let mut off = SEGMENT_HEADER_LEN as u64;
    while off + HEADER_LEN as u64 <= len {
        read_at(off, &mut header_buf)?;
        let Ok(header) = RecordHeader::decode(&header_buf) else {
            break;
        };
        if header.len > MAX_SCAN_PAYLOAD {
            break;
        }
        let end = off + HEADER_LEN as u64 + u64::from(header.len);
        if end > len {
            break;
        }
        payload.resize(header.len as usize, 0);
        read_at(off + HEADER_LEN as u64, &mut payload)?;
        if crc32fast::hash(&payload) != header.crc32 {
            break;
        }
        out.records.push(ScannedRecord {
            offset: off,
            header,
        });
        off = end;
        out.valid_end = end;
    }
    Ok(out)
}

/// [`scan`] over an in-memory segment image (fuzzing and tests).
pub fn scan_slice(bytes: &[u8]) -> ScanOutcome {
    scan(bytes.len() as u64, |off, buf| {
        let start = usize::try_from(off).map_err(std::io::Error::other)?;
        let src = bytes
            .get(start..start + buf.len())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    })
    .expect("slice reads within bounds never fail")
}

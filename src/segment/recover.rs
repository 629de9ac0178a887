//! Scanning a segment's records: used on open to find the end of the last complete record of the
//! active segment (a crash may leave a torn tail), by `verify`, and by compaction.
//!
//! The scanner reads through a positional-read closure so the same code runs over a file and,
//! in the fuzz target, over a byte slice.

use super::format::{RecordHeader, HEADER_LEN, RECORD_MAGIC, SEGMENT_HEADER_LEN};

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

/// Scans records from just after the segment header to `len`. `read_at(offset, buf)` must fill
/// `buf` or fail.
///
/// A record that is incomplete or fails a check is skipped by searching forward for the next
/// record that passes every check (magic, header CRC, bounds, payload CRC). Damage followed by
/// valid records is bit rot or an out-of-order writeback, not a torn tail: cutting the file there
/// would destroy every acknowledged record after it. `valid_end` is the end of the last valid
/// record, so only a tail with no valid record in it is cut.
pub fn scan(
    len: u64,
    mut read_at: impl FnMut(u64, &mut [u8]) -> std::io::Result<()>,
) -> std::io::Result<ScanOutcome> {
    let mut out = ScanOutcome {
        records: Vec::new(),
        valid_end: SEGMENT_HEADER_LEN as u64,
    };
    let mut payload = Vec::new();
    let mut window = Vec::new();
    let mut off = SEGMENT_HEADER_LEN as u64;
    while off + HEADER_LEN as u64 <= len {
        match record_at(len, off, &mut read_at, &mut payload)? {
            Some(header) => {
                let end = off + HEADER_LEN as u64 + u64::from(header.len);
                out.records.push(ScannedRecord {
                    offset: off,
                    header,
                });
                off = end;
                out.valid_end = end;
            }
            None => match next_record(len, off + 1, &mut read_at, &mut payload, &mut window)? {
                Some(next) => off = next,
                None => break,
            },
        }
    }
    Ok(out)
}

/// The header of the record at `off` if a complete record that passes every check starts there.
fn record_at(
    len: u64,
    off: u64,
    read_at: &mut impl FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    payload: &mut Vec<u8>,
) -> std::io::Result<Option<RecordHeader>> {
    if off + HEADER_LEN as u64 > len {
        return Ok(None);
    }
    let mut header_buf = [0u8; HEADER_LEN];
    read_at(off, &mut header_buf)?;
    let Ok(header) = RecordHeader::decode(&header_buf) else {
        return Ok(None);
    };
    if header.len > MAX_SCAN_PAYLOAD {
        return Ok(None);
    }
    let end = off + HEADER_LEN as u64 + u64::from(header.len);
    if end > len {
        return Ok(None);
    }
    payload.resize(header.len as usize, 0);
    read_at(off + HEADER_LEN as u64, payload)?;
    if crc32fast::hash(payload) != header.crc32 {
        return Ok(None);
    }
    Ok(Some(header))
}

/// The offset of the first valid record starting at or after `from`, if any.
fn next_record(
    len: u64,
    from: u64,
    read_at: &mut impl FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    payload: &mut Vec<u8>,
    window: &mut Vec<u8>,
) -> std::io::Result<Option<u64>> {
    const WINDOW: u64 = 64 << 10;
    let magic_len = RECORD_MAGIC.len();
    let mut pos = from;
    while pos + HEADER_LEN as u64 <= len {
        let n = WINDOW.min(len - pos) as usize;
        window.resize(n, 0);
        read_at(pos, window)?;
        let mut i = 0;
        while i + magic_len <= n {
            if window[i..i + magic_len] == RECORD_MAGIC {
                let at = pos + i as u64;
                if record_at(len, at, read_at, payload)?.is_some() {
                    return Ok(Some(at));
                }
            }
            i += 1;
        }
        // Overlap the windows so a magic split across two of them is still seen.
        pos += (n - (magic_len - 1)) as u64;
    }
    Ok(None)
}

/// [`scan`] over an in-memory segment image (for the fuzz target and the corruption tests,
/// through the `test-support` feature).
#[cfg(any(test, feature = "test-support"))]
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

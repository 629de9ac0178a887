//! Recovery's scan of a segment image: what open uses to find and cut a torn tail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relstore::__private::{check_record, scan_slice, HEADER_LEN, SEGMENT_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let out = scan_slice(data);
    let mut at = SEGMENT_HEADER_LEN as u64;
    for r in &out.records {
        // Records are in file order and never overlap (damage between them is skipped), and
        // each one passes the read path's check.
        assert!(r.offset >= at);
        let start = r.offset as usize;
        check_record(
            &data[start..],
            r.header.len,
            r.header.crc32,
            &r.header.id,
        )
        .expect("a scanned record passes the read-path check");
        at = r.offset + (HEADER_LEN + r.header.len as usize) as u64;
    }
    // The cut point is the end of the last valid record.
    assert_eq!(out.valid_end, at);
    assert!(out.valid_end as usize <= data.len().max(SEGMENT_HEADER_LEN));
});

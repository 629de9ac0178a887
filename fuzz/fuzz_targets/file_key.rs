//! File key decoding (index keys and, through cursors, client input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use relstore::__private::{decode_parts, encode_parts};
use relstore::FileKey;

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = FileKey::decode(data) {
        // The encoding is unambiguous: only the canonical bytes decode, to a key that encodes back.
        assert_eq!(k.encode(), data);
    }
    if let Some((&n, rest)) = data.split_first() {
        let count = usize::from(n % 8);
        if let Ok(parts) = decode_parts(rest, count) {
            assert_eq!(parts.len(), count);
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            assert_eq!(encode_parts(&refs), rest);
        }
    }
});

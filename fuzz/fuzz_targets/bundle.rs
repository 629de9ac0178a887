//! Source bundles uploaded by clients (optional `SYSB` header, ZIP, `manifest.json`): opening,
//! manifest parsing and streaming every entry under small limits.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use relstore::__private::{parse_manifest, Bundle, BundleLimits};

fuzz_target!(|data: &[u8]| {
    let _ = parse_manifest(data);
    let limits = BundleLimits {
        max_manifest_bytes: 64 << 10,
        max_entries: 64,
        max_total_bytes: 1 << 20,
        ..BundleLimits::default()
    };
    let Ok(mut bundle) = Bundle::open(Cursor::new(data), data.len() as u64, limits) else {
        return;
    };
    let paths: Vec<String> = bundle
        .manifest
        .files
        .iter()
        .map(|f| f.zip_path.clone())
        .collect();
    assert!(paths.len() <= limits.max_entries);
    let mut total = 0u64;
    for p in paths {
        if let Ok(n) = bundle.read_entry(&p, |r| {
            std::io::copy(r, &mut std::io::sink()).map_err(relstore::Error::UploadRead)
        }) {
            total += n;
        }
    }
    // The decompression budget holds whatever the archive claims.
    assert!(total <= limits.max_total_bytes);
});

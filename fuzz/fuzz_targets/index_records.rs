//! Index record values as stored in sled: the versioned codec over every record type.
//! The first input byte picks the type; the rest is the stored value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relstore::__private::{decode, encode, Stored};
use relstore::__private::{
    BundleEntryRec, BundleRec, ChunkRec, ChunkRef, ContentRec, Counters, FileRec, FileRow,
    FormatRec, PieceRec, ProjectRec, ReleaseRec, StoredFileKey, TokenRec,
};
fn round_trip<T: Stored + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    if let Ok(v) = decode::<T>("fuzz", bytes) {
        let again: T = decode("fuzz", &encode(&v)).expect("an encoded record decodes");
        assert_eq!(again, v);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 14 {
        0 => round_trip::<FileRow>(bytes),
        1 => round_trip::<FileRec>(bytes),
        2 => round_trip::<ContentRec>(bytes),
        3 => round_trip::<Vec<ChunkRef>>(bytes),
        4 => round_trip::<ChunkRec>(bytes),
        5 => round_trip::<ReleaseRec>(bytes),
        6 => round_trip::<ProjectRec>(bytes),
        7 => round_trip::<Counters>(bytes),
        8 => round_trip::<TokenRec>(bytes),
        9 => round_trip::<FormatRec>(bytes),
        10 => round_trip::<StoredFileKey>(bytes),
        11 => round_trip::<PieceRec>(bytes),
        12 => round_trip::<BundleRec>(bytes),
        _ => round_trip::<BundleEntryRec>(bytes),
    }
});

//! The one module allowed to use `unsafe`: read-only memory maps of sealed segment files.
//!
//! # Invariant that makes the maps sound
//!
//! A map is only ever created for a **sealed** segment: one that is no longer the active segment,
//! whose bytes were synced when it was sealed, and which the store never writes, truncates or
//! extends again. Compaction does not modify a sealed segment either: it copies live records to a
//! new segment and, once the index points there, unlinks the old file; unlinking leaves existing
//! maps valid (the inode lives until the last map is dropped). The `LOCK` file, held with an
//! exclusive lock for the life of the store, keeps other relstore processes out of the directory.
//! What no program can rule out is another program truncating the file behind the store's back;
//! that is outside the contract (documented in docs/format.md), and reads check CRC32s, so
//! modification in place is detected rather than returned.

use std::fs::File;
use std::io;

/// A read-only map of a sealed segment file.
#[derive(Debug)]
pub(crate) struct SealedMap(memmap2::Mmap);

impl SealedMap {
    /// Maps `file`, which must be a sealed segment (see the module docs).
    pub(crate) fn map_sealed(file: &File) -> io::Result<SealedMap> {
        // SAFETY: `file` is a sealed segment: the store never writes, truncates or extends it
        // while it is open (module docs), and the exclusive LOCK keeps other relstore processes
        // out. The map is read-only and lives no longer than the Arc that owns it.
        #[expect(unsafe_code, reason = "the one memory map; soundness argued above")]
        let map = unsafe { memmap2::Mmap::map(file)? };
        Ok(SealedMap(map))
    }

    /// The mapped bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

//! Where every object lives under `s3://BUCKET/PREFIX/` (docs/format.md, "Packs on object
//! storage"). This module owns the names and nothing else: it never talks to the store.
//!
//! ```text
//! PREFIX/lease                         the primary's lease (JSON), changed only by conditional PUT
//! PREFIX/packs/{seq:020}.pack          slot `seq`: a pack, a fence or a tombstone; created once
//! PREFIX/retired/{seq:020}             a retired pack waiting out its grace period (JSON)
//! PREFIX/staging/{seq:020}-{epoch}-{nonce}   a large pack on its way to its slot (multipart)
//! PREFIX/probe/{a|b}-{nonce}           scratch objects of the conditional-write check (removed)
//! ```
//!
//! Slot numbers are zero-padded to 20 digits (`u64::MAX` has 20), so the byte order of the keys,
//! which is the order S3 lists them in, is the numeric order of the slots.

use object_store::path::Path;

use crate::error::{Error, Result};

/// Width of a slot number in a key: `u64::MAX` has 20 decimal digits.
const SEQ_DIGITS: usize = 20;
const PACKS: &str = "packs";
const PACK_SUFFIX: &str = ".pack";
const LEASE: &str = "lease";
const RETIRED: &str = "retired";
const STAGING: &str = "staging";
const PROBE: &str = "probe";

/// The names of one prefix's objects, and the `s3://bucket/prefix` string messages show.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// The prefix as the object store sees it (no bucket, no leading or trailing `/`).
    prefix: String,
    /// `s3://bucket/prefix`, for messages.
    location: String,
    /// The bucket's name.
    bucket: String,
}

impl Layout {
    /// The layout of `prefix` (slash-separated, may be empty) in `bucket`.
    pub(crate) fn new(bucket: &str, prefix: &str) -> Result<Layout> {
        let prefix = prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() {
            Path::parse(&prefix).map_err(|e| Error::Config {
                detail: format!("prefix {prefix:?} is not a valid object key prefix: {e}"),
            })?;
        }
        let location = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        Ok(Layout {
            prefix,
            location,
            bucket: bucket.to_owned(),
        })
    }

    /// `s3://bucket/prefix`.
    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    /// `s3://bucket/prefix/<key>` for messages.
    pub(crate) fn display(&self, key: &Path) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn join(&self, rest: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }

    /// The lease object.
    pub(crate) fn lease(&self) -> Path {
        self.join(LEASE)
    }

    /// The folder of the slots.
    pub(crate) fn slots(&self) -> Path {
        self.join(PACKS)
    }

    /// Slot `seq`.
    pub(crate) fn slot(&self, seq: u64) -> Path {
        self.join(&format!("{PACKS}/{seq:0SEQ_DIGITS$}{PACK_SUFFIX}"))
    }

    /// The slot number of `key`, when `key` is a slot of this prefix.
    pub(crate) fn parse_slot(&self, key: &Path) -> Option<u64> {
        let name = key.as_ref().strip_prefix(self.slots().as_ref())?;
        let digits = name.strip_prefix('/')?.strip_suffix(PACK_SUFFIX)?;
        if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// The folder of the retirement markers.
    pub(crate) fn retired_dir(&self) -> Path {
        self.join(RETIRED)
    }

    /// The retirement marker of slot `seq`.
    pub(crate) fn retired(&self, seq: u64) -> Path {
        self.join(&format!("{RETIRED}/{seq:0SEQ_DIGITS$}"))
    }

    /// The slot number of a retirement marker's key.
    pub(crate) fn parse_retired(&self, key: &Path) -> Option<u64> {
        let name = key.as_ref().strip_prefix(self.retired_dir().as_ref())?;
        let digits = name.strip_prefix('/')?;
        if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// A scratch object for checking that the server honours conditional writes.
    pub(crate) fn probe(&self, name: &str, nonce: u64) -> Path {
        self.join(&format!("{PROBE}/{name}-{nonce:016x}"))
    }

    /// The folder of staged multipart uploads.
    pub(crate) fn staging_dir(&self) -> Path {
        self.join(STAGING)
    }

    /// A staging object for pack `seq` of `epoch`; `nonce` keeps two attempts apart.
    pub(crate) fn staging(&self, seq: u64, epoch: u64, nonce: u64) -> Path {
        self.join(&format!(
            "{STAGING}/{seq:0SEQ_DIGITS$}-{epoch}-{nonce:016x}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_keys_sort_as_their_numbers_and_parse_back() {
        let layout = Layout::new("b", "/a/b/").unwrap();
        assert_eq!(layout.location(), "s3://b/a/b");
        let seqs = [
            0u64,
            1,
            9,
            10,
            99,
            100,
            12_345,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ];
        let keys: Vec<String> = seqs.iter().map(|&s| layout.slot(s).to_string()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "byte order of keys must be slot order");
        for (&seq, key) in seqs.iter().zip(&keys) {
            assert_eq!(layout.parse_slot(&Path::from(key.as_str())), Some(seq));
        }
        assert_eq!(
            layout.slot(7).to_string(),
            "a/b/packs/00000000000000000007.pack"
        );
        assert_eq!(
            layout.display(&layout.slot(7)),
            "s3://b/a/b/packs/00000000000000000007.pack"
        );
    }

    #[test]
    fn foreign_names_are_not_slots() {
        let layout = Layout::new("b", "p").unwrap();
        for name in [
            "p/packs/7.pack",
            "p/packs/0000000000000000000x.pack",
            "p/packs/00000000000000000007.tmp",
            "p/packsx/00000000000000000007.pack",
            "q/packs/00000000000000000007.pack",
            "p/packs/99999999999999999999.pack", // above u64::MAX
        ] {
            assert_eq!(layout.parse_slot(&Path::from(name)), None, "{name}");
        }
        assert_eq!(
            layout.parse_retired(&layout.retired(42)),
            Some(42),
            "retired markers parse back"
        );
    }

    #[test]
    fn an_empty_prefix_is_the_bucket_root() {
        let layout = Layout::new("b", "").unwrap();
        assert_eq!(layout.location(), "s3://b");
        assert_eq!(layout.lease().to_string(), "lease");
        assert_eq!(layout.display(&layout.lease()), "s3://b/lease");
        assert_eq!(layout.parse_slot(&layout.slot(3)), Some(3));
    }
}

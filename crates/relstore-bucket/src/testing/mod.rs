//! Test support (feature `test-support`): a moto S3 server on loopback, a fault-injecting and
//! request-counting `ObjectStore`, and raw slot writes that bypass the lease, for tests of what
//! the slots alone guarantee. Never enabled in a release build.

mod faults;
mod moto;

pub use faults::{Action, Faults, FaultyStore, Gate, Op, RequestCounts, Rule};
pub use moto::{moto_python, target_dir, Moto, MOTO_VERSION};

use std::path::Path;

use crate::bucket::Bucket;
use crate::error::Result;
use crate::packs::Claim;
use crate::trailer::Trailer;

/// What a raw slot write found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawClaim {
    /// The slot was empty and now holds the object.
    Created,
    /// The slot already held exactly this object.
    Same,
    /// The slot holds another object, with this trailer.
    Taken(Trailer),
}

impl From<Claim> for RawClaim {
    fn from(c: Claim) -> RawClaim {
        match c {
            Claim::Created => RawClaim::Created,
            Claim::Same => RawClaim::Same,
            Claim::Taken(t) => RawClaim::Taken(t),
        }
    }
}

/// Uploads the file at `path` to slot `seq` as a pack of `epoch`, exactly as the shipper does
/// but without a lease: the slot's create-if-absent is all that decides.
pub fn put_slot(bucket: &Bucket, seq: u64, epoch: u64, path: &Path) -> Result<RawClaim> {
    let packs = bucket.packs().clone();
    let path = path.to_path_buf();
    bucket
        .runtime()
        .run(async move { packs.put_pack(seq, epoch, &path).await.map(RawClaim::from) })
}

/// The object key of slot `seq` in `bucket` (to damage or replace it behind the crate's back).
pub fn slot_key(bucket: &Bucket, seq: u64) -> object_store::path::Path {
    bucket.packs().layout.slot(seq)
}

/// The object key of `bucket`'s lease.
pub fn lease_key(bucket: &Bucket) -> object_store::path::Path {
    bucket.packs().layout.lease()
}

/// The folder of `bucket`'s staging objects.
pub fn staging_dir(bucket: &Bucket) -> object_store::path::Path {
    bucket.packs().layout.staging_dir()
}

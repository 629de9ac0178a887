//! `Bucket`: the blocking handle on a prefix that every node has, primary or replica. Reads
//! (listing slots, ranged reads, verified whole-pack downloads), the lease as it stands, and
//! `acquire`, which turns a node into the primary.

use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use object_store::ObjectStore;
use tokio::sync::Notify;

use crate::config::{BucketConfig, Limits};
use crate::error::{Error, Result};
use crate::lease::{self, LeaseInfo, LeaseOptions};
use crate::packs::{nonce, Packs, Slot};
use crate::primary::Primary;
use crate::runtime::Runtime;
use crate::shipper::{Shared, ShipState};
use crate::trailer::{SlotKind, Trailer, TRAILER_LEN};

/// Chunks of a download buffered between the network and the file.
const FETCH_BUFFER: usize = 4;

/// A prefix of a bucket, read from synchronous code. Clones share the client and the runtime.
#[derive(Clone, Debug)]
pub struct Bucket {
    rt: Runtime,
    packs: Arc<Packs>,
}

impl Bucket {
    /// Opens the prefix of `config` (contacts nothing yet).
    pub fn open(config: &BucketConfig) -> Result<Bucket> {
        Bucket::with_store(config.build()?, config)
    }

    /// Opens the prefix of `config` through `store` instead of the client `config` would build
    /// (a wrapper that counts or injects faults, another S3 client). `store` must be the bucket
    /// `config.url` names and must support conditional PUT and create-if-absent copies.
    pub fn with_store(store: Arc<dyn ObjectStore>, config: &BucketConfig) -> Result<Bucket> {
        let layout = config.layout()?;
        let limits = config.limits.clone();
        if limits.part_size < 5 << 20 {
            return Err(Error::Config {
                detail: format!(
                    "a part size of {} bytes is below S3's 5 MiB minimum",
                    limits.part_size
                ),
            });
        }
        if limits.multipart_threshold <= limits.part_size as u64 {
            return Err(Error::Config {
                detail: "the multipart threshold must exceed the part size".into(),
            });
        }
        Ok(Bucket {
            rt: Runtime::new(limits.runtime_threads)?,
            packs: Arc::new(Packs {
                store,
                layout,
                limits,
            }),
        })
    }

    pub(crate) fn runtime(&self) -> &Runtime {
        &self.rt
    }

    #[cfg(feature = "test-support")]
    pub(crate) fn packs(&self) -> &Arc<Packs> {
        &self.packs
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.packs.limits
    }

    /// `s3://bucket/prefix`.
    pub fn location(&self) -> &str {
        self.packs.layout.location()
    }

    /// Up to `limit` slots after slot `after` (from the first when `None`), in slot order:
    /// packs, fences and tombstones alike ([`Slot::holds_data`] tells them apart). A replica
    /// follows the bucket by calling this with the last slot it applied.
    pub fn list_after(&self, after: Option<u64>, limit: usize) -> Result<Vec<Slot>> {
        let packs = self.packs.clone();
        self.rt
            .run(async move { packs.list_after(after, limit).await })
    }

    /// What slot `seq` holds, from its trailer: kind, epoch, length, hash. `None` when empty.
    pub fn slot_info(&self, seq: u64) -> Result<Option<Trailer>> {
        let packs = self.packs.clone();
        self.rt.run(async move { packs.trailer(seq).await })
    }

    /// The bytes of `ranges` of pack `seq`, in the order asked, with one ranged GET per run of
    /// overlapping or adjacent ranges. Each range's bytes are handed to `verify` (the engine
    /// checks the CRC and BLAKE3 of the chunk records in them) before any is returned; a
    /// rejection becomes [`Error::Corrupt`].
    pub fn read_ranges<F>(
        &self,
        seq: u64,
        ranges: &[Range<u64>],
        mut verify: F,
    ) -> Result<Vec<Bytes>>
    where
        F: FnMut(&Range<u64>, &[u8]) -> std::result::Result<(), String>,
    {
        let packs = self.packs.clone();
        let asked = ranges.to_vec();
        let got = self
            .rt
            .run(async move { packs.read_ranges(seq, &asked).await })?;
        for (range, bytes) in ranges.iter().zip(&got) {
            verify(range, bytes).map_err(|detail| Error::Corrupt {
                key: self.packs.layout.display(&self.packs.layout.slot(seq)),
                detail: format!("bytes {}..{}: {detail}", range.start, range.end),
            })?;
        }
        Ok(got)
    }

    /// [`Bucket::read_ranges`] of one range: one ranged GET.
    pub fn read_range<F>(&self, seq: u64, range: Range<u64>, mut verify: F) -> Result<Bytes>
    where
        F: FnMut(&[u8]) -> std::result::Result<(), String>,
    {
        let mut got = self.read_ranges(seq, std::slice::from_ref(&range), |_, b| verify(b))?;
        Ok(got.pop().expect("one range asked, one returned"))
    }

    /// Downloads pack `seq` to `dest`, checked against its trailer (slot, length, BLAKE3), and
    /// makes it durable there: written to a temporary file beside `dest`, synced, renamed, the
    /// directory synced. Nothing is left at `dest` when the check fails. Memory held: a few
    /// network buffers, whatever the pack's size.
    pub fn fetch(&self, seq: u64, dest: &Path) -> Result<Trailer> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(FETCH_BUFFER);
        let (len_tx, len_rx) = futures::channel::oneshot::channel();
        let packs = self.packs.clone();
        self.rt.spawn(async move {
            match packs.open(seq).await {
                Err(e) => {
                    let _ = len_tx.send(Err(e));
                }
                Ok((len, mut stream)) => {
                    if len_tx.send(Ok(len)).is_err() {
                        return;
                    }
                    while let Some(item) = stream.next().await {
                        let failed = item.is_err();
                        // The receiver went away (the check failed): stop downloading.
                        if tx.send(item).await.is_err() || failed {
                            return;
                        }
                    }
                }
            }
        });
        let object_len = futures::executor::block_on(len_rx).map_err(|_| Error::Stopped)??;
        let key = self.packs.layout.display(&self.packs.layout.slot(seq));
        if object_len < TRAILER_LEN as u64 {
            return Err(Error::Corrupt {
                key,
                detail: format!("{object_len} bytes, too short to hold a trailer"),
            });
        }
        let tmp = temp_beside(dest)?;
        let written = (|| {
            let mut file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
            let payload_len = object_len - TRAILER_LEN as u64;
            let mut hasher = blake3::Hasher::new();
            let mut tail = Vec::with_capacity(TRAILER_LEN);
            let mut seen = 0u64;
            while let Some(item) = futures::executor::block_on(rx.recv()) {
                let chunk = item?;
                let in_payload = payload_len.saturating_sub(seen).min(chunk.len() as u64) as usize;
                seen += chunk.len() as u64;
                if seen > object_len {
                    break;
                }
                let (payload, rest) = chunk.split_at(in_payload);
                hasher.update(payload);
                file.write_all(payload).map_err(io("write", &tmp))?;
                tail.extend_from_slice(rest);
            }
            if seen != object_len {
                return Err(Error::Corrupt {
                    key: key.clone(),
                    detail: format!(
                        "the object announced {object_len} bytes and sent {}{seen}",
                        if seen > object_len { "at least " } else { "" }
                    ),
                });
            }
            let trailer = Trailer::decode(&tail).map_err(|e| Error::Corrupt {
                key: key.clone(),
                detail: e.to_string(),
            })?;
            self.packs.check_trailer(seq, object_len, &trailer)?;
            if trailer.kind != SlotKind::Pack {
                return Err(Error::NoData {
                    location: self.location().to_owned(),
                    seq,
                });
            }
            let hash = *hasher.finalize().as_bytes();
            if hash != trailer.blake3 {
                return Err(Error::Corrupt {
                    key: key.clone(),
                    detail: format!(
                        "the payload's BLAKE3 is {}, its trailer says {}",
                        hex(&hash),
                        hex(&trailer.blake3)
                    ),
                });
            }
            file.sync_all().map_err(io("sync", &tmp))?;
            Ok(trailer)
        })();
        drop(rx);
        let trailer = match written {
            Ok(t) => t,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        std::fs::rename(&tmp, dest).map_err(io("rename into place", dest))?;
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("sync directory", dir))?;
        }
        Ok(trailer)
    }

    /// The prefix's lease as it stands (who is primary), `None` when no primary ever wrote it.
    pub fn lease(&self) -> Result<Option<LeaseInfo>> {
        let packs = self.packs.clone();
        self.rt
            .run(async move { Ok(lease::read(&packs).await?.map(|(record, _)| record.info())) })
    }

    /// Makes this node the prefix's primary: takes the lease (waiting up to `opts.wait` for
    /// another holder's to lapse), fences older writers out, and starts renewing and shipping.
    /// Fails with [`Error::LeaseHeld`] naming the current primary when it is alive.
    pub fn acquire(&self, opts: &LeaseOptions) -> Result<Primary> {
        let packs = self.packs.clone();
        let o = opts.clone();
        let (state, tenure) = self
            .rt
            .run(async move { lease::acquire(&packs, &o).await })?;
        let shared = Arc::new(Shared {
            packs: self.packs.clone(),
            lease: Mutex::new(state),
            renewing: tokio::sync::Mutex::new(()),
            ship: Mutex::new(ShipState {
                // The fence and everything below it are on the bucket already.
                shipped_through: tenure.fence.or(tenure.bucket_head),
                ..ShipState::default()
            }),
            progress: Condvar::new(),
            work: Notify::new(),
            epoch: tenure.epoch,
        });
        Ok(Primary::start(self.clone(), shared, tenure))
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { op, path, source }
}

/// A temporary name in `dest`'s directory (so the final rename stays within one filesystem).
fn temp_beside(dest: &Path) -> Result<PathBuf> {
    let name = dest.file_name().ok_or_else(|| Error::Config {
        detail: format!("{} is not a file path", dest.display()),
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".fetch-{:016x}", nonce()));
    Ok(dest.with_file_name(tmp_name))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

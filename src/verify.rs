//! `Store::verify`: re-hash everything and check every index entry, reporting what is damaged.
//!
//! Reads check CRC32s already; verify goes further. It re-hashes every live chunk (CRC32 and
//! BLAKE3 against its key), streams every content (SHA-1 and BLAKE3 against its record, length
//! against its manifest), checks that every file points at an existing content and is reachable
//! by its id, that every chunk a manifest lists has its record, recounts every content refcount
//! and store counter from the file records, and names each damaged file by its key. Chunk
//! records no manifest lists are not faults: gc removes them (see [`crate::gc`]); verify counts
//! them. It never modifies the store.

use std::collections::{HashMap, HashSet};
use std::fmt;

use sha1::Digest;

use crate::error::Result;
use crate::index::records::ChunkRec;
use crate::segment::record::{check_record, HEADER_LEN};
use crate::store::Store;

/// Progress of a long-running operation ([`Store::verify`], [`Store::gc`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Current phase ("chunks", "contents", "files", "scan", "compact").
    pub phase: &'static str,
    /// Items (or bytes) done in this phase.
    pub done: u64,
    /// Items (or bytes) in this phase.
    pub total: u64,
}

/// One problem found by [`Store::verify`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Fault {
    /// What is damaged: `chunk <blake3>`, `content <blake3>`, `file <key>`, `counters`.
    pub object: String,
    /// What check failed.
    pub detail: String,
}

/// What [`Store::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Live chunks re-hashed.
    pub chunks: u64,
    /// Chunk records no content lists (garbage that gc removes; not re-hashed).
    pub unreferenced_chunks: u64,
    /// Contents re-hashed.
    pub contents: u64,
    /// Files checked.
    pub files: u64,
    /// Bytes re-hashed (chunk pass plus content pass).
    pub bytes: u64,
    /// Every fault, in the order found.
    pub faults: Vec<Fault>,
    /// Keys (display form) of the files whose bytes cannot be served correctly.
    pub damaged_files: Vec<String>,
}

impl VerifyReport {
    /// True when no fault was found.
    pub fn is_clean(&self) -> bool {
        self.faults.is_empty()
    }

    fn fault(&mut self, object: impl Into<String>, detail: impl Into<String>) {
        self.faults.push(Fault {
            object: object.into(),
            detail: detail.into(),
        });
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checked {} chunks, {} contents, {} files ({} bytes re-hashed); {} unreferenced chunks await gc",
            self.chunks, self.contents, self.files, self.bytes, self.unreferenced_chunks
        )?;
        if self.is_clean() {
            return write!(f, "no faults found");
        }
        writeln!(f, "{} fault(s):", self.faults.len())?;
        for fault in &self.faults {
            writeln!(f, "  {}: {}", fault.object, fault.detail)?;
        }
        if !self.damaged_files.is_empty() {
            writeln!(f, "damaged files ({}):", self.damaged_files.len())?;
            for k in &self.damaged_files {
                writeln!(f, "  {k}")?;
            }
        }
        Ok(())
    }
}

impl Store {
    /// Re-hashes every live chunk and every content and checks every index entry and content
    /// refcount. Calls `progress` as it goes. Returns a report naming each damaged file by its
    /// key; an `Err` only when the index itself cannot be read at all.
    pub fn verify(&self, progress: &mut dyn FnMut(Progress)) -> Result<VerifyReport> {
        let inner = &*self.inner;
        let index = &inner.index;
        let mut report = VerifyReport::default();

        // Pass 1: every live chunk, in file order so the reads are sequential.
        // The live set from the manifests that can be read, not `Index::live_chunks`, which
        // stops at the first that cannot: that is a fault of its content (pass 2 reports it),
        // not the end of verify.
        let live: HashSet<[u8; 32]> = index
            .manifests()
            .flatten()
            .flat_map(|(_, m)| m.into_iter().map(|r| r.blake3))
            .collect();
        let mut chunks: Vec<([u8; 32], ChunkRec)> = Vec::new();
        for item in index.all_chunks() {
            match item {
                Ok((id, rec)) if live.contains(&id) => chunks.push((id, rec)),
                Ok(_) => report.unreferenced_chunks += 1,
                Err(e) => report.fault("chunk index", e.to_string()),
            }
        }
        drop(live);
        chunks.sort_by_key(|(_, r)| r.location);
        let total = chunks.len() as u64;
        let mut bad_chunks: HashSet<[u8; 32]> = HashSet::new();
        for (i, (id, rec)) in chunks.iter().enumerate() {
            let checked = inner
                .segments
                .read(rec.location, HEADER_LEN + rec.len as usize)
                .and_then(|run| {
                    let payload = check_record(run.as_slice(), rec.len, rec.crc32, id)?;
                    if blake3::hash(payload).as_bytes() != id {
                        return Err(crate::Error::corrupt(
                            format!("chunk {}", crate::hex(id)),
                            "BLAKE3 of the stored bytes differs from the chunk's identity",
                        ));
                    }
                    Ok(())
                });
            report.bytes += u64::from(rec.len);
            if let Err(e) = checked {
                report.fault(format!("chunk {}", crate::hex(id)), e.to_string());
                bad_chunks.insert(*id);
            }
            report.chunks += 1;
            if i % 256 == 0 {
                progress(Progress {
                    phase: "chunks",
                    done: i as u64,
                    total,
                });
            }
        }
        progress(Progress {
            phase: "chunks",
            done: total,
            total,
        });

        // Pass 2: every content, streamed whole.
        let expect_content_refs = index.expected_content_refs()?;
        let contents: Vec<_> = index.all_contents().collect();
        let total = contents.len() as u64;
        let mut bad_contents: HashSet<[u8; 32]> = HashSet::new();
        for (i, item) in contents.into_iter().enumerate() {
            let (id, rec) = match item {
                Ok(x) => x,
                Err(e) => {
                    report.fault("content index", e.to_string());
                    continue;
                }
            };
            report.contents += 1;
            let name = format!("content {}", crate::hex(&id));
            let manifest = match index.manifest(&id, &rec) {
                Ok(m) => m,
                Err(e) => {
                    report.fault(&name, e.to_string());
                    bad_contents.insert(id);
                    continue;
                }
            };
            for c in &manifest {
                match index.chunk(&c.blake3) {
                    Ok(Some(ch)) if ch.len == c.len => {}
                    Ok(Some(_)) => {
                        report.fault(
                            &name,
                            format!(
                                "chunk {} has another length in the index",
                                crate::hex(&c.blake3)
                            ),
                        );
                        bad_contents.insert(id);
                    }
                    Ok(None) => {
                        report.fault(
                            &name,
                            format!(
                                "uses chunk {} that is not in the index",
                                crate::hex(&c.blake3)
                            ),
                        );
                        bad_contents.insert(id);
                    }
                    Err(e) => {
                        report.fault(&name, e.to_string());
                        bad_contents.insert(id);
                    }
                }
                if bad_chunks.contains(&c.blake3) {
                    bad_contents.insert(id);
                }
            }
            if expect_content_refs.get(&id).copied().unwrap_or(0) != rec.refcount {
                report.fault(
                    &name,
                    format!(
                        "refcount {} but {} files refer to it",
                        rec.refcount,
                        expect_content_refs.get(&id).copied().unwrap_or(0)
                    ),
                );
            }
            if !bad_contents.contains(&id) {
                match self.open_content(&id).and_then(|mut r| {
                    let mut sha1 = sha1::Sha1::new();
                    let mut b3 = blake3::Hasher::new();
                    let mut buf = vec![0u8; 256 << 10];
                    let mut n_total = 0u64;
                    loop {
                        let n = r.read_checked(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        sha1.update(&buf[..n]);
                        b3.update(&buf[..n]);
                        n_total += n as u64;
                    }
                    Ok((
                        <[u8; 20]>::from(sha1.finalize()),
                        *b3.finalize().as_bytes(),
                        n_total,
                    ))
                }) {
                    Ok((sha1, b3, n)) => {
                        report.bytes += n;
                        if n != rec.size {
                            report.fault(
                                &name,
                                format!("{n} bytes read, the record says {}", rec.size),
                            );
                            bad_contents.insert(id);
                        } else if b3 != id {
                            report.fault(
                                &name,
                                "BLAKE3 of the bytes differs from the content's identity",
                            );
                            bad_contents.insert(id);
                        } else if sha1 != rec.sha1 {
                            report
                                .fault(&name, "SHA-1 of the bytes differs from the recorded SHA-1");
                            bad_contents.insert(id);
                        }
                    }
                    Err(e) => {
                        report.fault(&name, e.to_string());
                        bad_contents.insert(id);
                    }
                }
            }
            match index.contents_by_sha1(&rec.sha1) {
                Ok(ids) if ids.contains(&id) => {}
                Ok(_) => report.fault(&name, "missing from the SHA-1 index"),
                Err(e) => report.fault(&name, e.to_string()),
            }
            if i % 64 == 0 {
                progress(Progress {
                    phase: "contents",
                    done: i as u64,
                    total,
                });
            }
        }
        progress(Progress {
            phase: "contents",
            done: total,
            total,
        });

        // Pass 3: files.
        let mut counts = crate::index::records::Counters::default();
        let mut per_release: HashMap<(String, String), (u64, u64)> = HashMap::new();
        let rows: Vec<_> = index.all_files().collect();
        let total = rows.len() as u64;
        for (i, row) in rows.into_iter().enumerate() {
            let row = match row {
                Ok(r) => r,
                Err(e) => {
                    report.fault("file index", e.to_string());
                    continue;
                }
            };
            report.files += 1;
            counts.files += 1;
            counts.logical_bytes += row.rec.size;
            let key = row.rec.key.to_string();
            let e = per_release
                .entry((row.rec.key.org.clone(), row.rec.key.release.clone()))
                .or_default();
            e.0 += 1;
            e.1 += row.rec.size;
            match index.file_by_id(row.id) {
                Ok(Some(r)) if r.rec.key == row.rec.key => {}
                Ok(_) => report.fault(
                    format!("file {key}"),
                    format!("id {} does not resolve to this file", row.id),
                ),
                Err(e) => report.fault(format!("file {key}"), e.to_string()),
            }
            match index.content(&row.rec.content) {
                Ok(Some(c)) if c.sha1 == row.rec.sha1 && c.size == row.rec.size => {}
                Ok(Some(_)) => report.fault(
                    format!("file {key}"),
                    "SHA-1 or size differs from its content's record",
                ),
                Ok(None) => {
                    report.fault(format!("file {key}"), "its content is missing");
                    report.damaged_files.push(key.clone());
                }
                Err(e) => report.fault(format!("file {key}"), e.to_string()),
            }
            if bad_contents.contains(&row.rec.content) {
                report.fault(
                    format!("file {key}"),
                    format!("content {} is damaged", crate::hex(&row.rec.content)),
                );
                report.damaged_files.push(key);
            }
            if i % 1024 == 0 {
                progress(Progress {
                    phase: "files",
                    done: i as u64,
                    total,
                });
            }
        }
        progress(Progress {
            phase: "files",
            done: total,
            total,
        });
        for ((org, version), (n, bytes)) in per_release {
            match index.release(&org, &version) {
                Ok(Some(r)) if r.rec.file_count == n && r.rec.file_bytes == bytes => {}
                Ok(Some(r)) => report.fault(
                    format!("release {org}/{version}"),
                    format!(
                        "counts {} files / {} bytes, found {n} / {bytes}",
                        r.rec.file_count, r.rec.file_bytes
                    ),
                ),
                Ok(None) => report.fault(
                    format!("release {org}/{version}"),
                    "has files but no release record",
                ),
                Err(e) => report.fault(format!("release {org}/{version}"), e.to_string()),
            }
        }

        // Store counters against the recount.
        counts.contents = expect_content_refs.len() as u64;
        let stored = index.counters()?;
        let (a, b) = (
            (counts.files, counts.contents, counts.logical_bytes),
            (stored.files, stored.contents, stored.logical_bytes),
        );
        if a != b {
            report.fault(
                "counters",
                format!("stored (files, contents, logical bytes) = {b:?}, recount = {a:?}"),
            );
        }
        report.damaged_files.sort();
        report.damaged_files.dedup();
        Ok(report)
    }
}

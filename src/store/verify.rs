//! `Store::verify`: re-hash everything and check every index entry, reporting what is damaged.
//!
//! Reads check CRC32s already; verify goes further. It re-hashes every live chunk (CRC32 and
//! BLAKE3 against its key), streams every content (SHA-1 and BLAKE3 against its record, length
//! against its manifest), checks that every file points at an existing content and is reachable
//! by its id, that every chunk a manifest lists has its record, recounts every content refcount
//! and store counter from the file records, and names each damaged file by its key. Chunk
//! records no manifest lists are not faults: gc removes them (see `gc.rs`); verify counts
//! them. It never modifies the store.
//!
//! It runs in passes that each build on the last, in [`VerifyState`]: chunks (which are
//! damaged), contents (which are damaged, given the chunks), files (which are damaged, given
//! the contents) and counters.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::types::Progress;
use super::Store;
use crate::engine::reader::hash_content;
use crate::error::{Error, Object, Result};
use crate::id::{ChunkId, ContentId};
use crate::index::contents::RefCounts;
use crate::index::records::{ChunkRec, ContentRec, Counters};
use crate::index::Index;
use crate::segment::format::{check_record, HEADER_LEN};

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

/// What one verify pass hands the next.
#[derive(Default)]
struct VerifyState {
    report: VerifyReport,
    bad_chunks: HashSet<ChunkId>,
    bad_contents: HashSet<ContentId>,
    /// Content references recounted from files, pieces and bundles.
    expected_refs: RefCounts,
}

impl VerifyState {
    fn fault(&mut self, object: impl ToString, detail: impl Into<String>) {
        self.report.fault(object.to_string(), detail);
    }
}

impl Store {
    /// Re-hashes every live chunk and every content and checks every index entry and content
    /// refcount. Calls `progress` as it goes. Returns a report naming each damaged file by its
    /// key. Fails only when the index cannot be scanned: a record that cannot be read is a fault
    /// in the report, except while recounting the references (files, pieces, bundles) and the
    /// store counters, which need every such record.
    pub fn verify(&self, progress: &mut dyn FnMut(Progress)) -> Result<VerifyReport> {
        let index = self.engine.index();
        let mut state = VerifyState {
            expected_refs: index.expected_content_refs()?,
            ..VerifyState::default()
        };
        self.verify_chunks(&mut state, progress);
        self.verify_contents(&mut state, progress);
        let counts = verify_files(index, &mut state, progress);
        verify_counters(index, &mut state, counts)?;
        let mut report = state.report;
        report.damaged_files.sort();
        report.damaged_files.dedup();
        Ok(report)
    }

    /// Pass 1: every live chunk, in file order so the reads are sequential: the record checks
    /// and the BLAKE3 against the chunk's id.
    fn verify_chunks(&self, state: &mut VerifyState, progress: &mut dyn FnMut(Progress)) {
        let index = self.engine.index();
        // The live set from the manifests that can be read, not `Index::live_chunks`, which
        // stops at the first that cannot: that is a fault of its content (pass 2 reports it),
        // not the end of verify.
        let live: HashSet<ChunkId> = index
            .manifests()
            .flatten()
            .flat_map(|(_, m)| m.into_iter().map(|r| r.id))
            .collect();
        let mut chunks: Vec<(ChunkId, ChunkRec)> = Vec::new();
        for item in index.all_chunks() {
            match item {
                Ok((id, rec)) if live.contains(&id) => chunks.push((id, rec)),
                Ok(_) => state.report.unreferenced_chunks += 1,
                Err(e) => state.fault("chunk index", e.to_string()),
            }
        }
        drop(live);
        chunks.sort_by_key(|(_, r)| r.location);
        let total = chunks.len() as u64;
        for (i, (id, rec)) in chunks.iter().enumerate() {
            let checked = self
                .engine
                .read_run(rec.location, HEADER_LEN + rec.len as usize)
                .and_then(|run| {
                    let payload = check_record(run.as_slice(), rec.len, rec.crc32, id)?;
                    if ChunkId::of(payload) != *id {
                        return Err(Error::corrupt(
                            Object::Chunk(*id),
                            "BLAKE3 of the stored bytes differs from the chunk's identity",
                        ));
                    }
                    Ok(())
                });
            state.report.bytes += u64::from(rec.len);
            if let Err(e) = checked {
                state.fault(Object::Chunk(*id), e.to_string());
                state.bad_chunks.insert(*id);
            }
            state.report.chunks += 1;
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
    }

    /// Pass 2: every content: its manifest against the chunk records, its refcount against the
    /// recount, its bytes streamed whole against its size, id and SHA-1, and its `by_sha1` entry.
    fn verify_contents(&self, state: &mut VerifyState, progress: &mut dyn FnMut(Progress)) {
        let index = self.engine.index();
        let contents: Vec<_> = index.all_contents().collect();
        let total = contents.len() as u64;
        for (i, item) in contents.into_iter().enumerate() {
            match item {
                Ok((id, rec)) => self.verify_content(state, id, &rec),
                Err(e) => state.fault("content index", e.to_string()),
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
    }

    fn verify_content(&self, state: &mut VerifyState, id: ContentId, rec: &ContentRec) {
        let index = self.engine.index();
        state.report.contents += 1;
        let name = Object::Content(id);
        let manifest = match index.manifest(&id, rec) {
            Ok(m) => m,
            Err(e) => {
                state.fault(&name, e.to_string());
                state.bad_contents.insert(id);
                return;
            }
        };
        for c in &manifest {
            match index.chunk(&c.id) {
                Ok(Some(ch)) if ch.len == c.len => {}
                Ok(Some(_)) => {
                    state.fault(
                        &name,
                        format!("chunk {} has another length in the index", c.id),
                    );
                    state.bad_contents.insert(id);
                }
                Ok(None) => {
                    state.fault(
                        &name,
                        format!("uses chunk {} that is not in the index", c.id),
                    );
                    state.bad_contents.insert(id);
                }
                Err(e) => {
                    state.fault(&name, e.to_string());
                    state.bad_contents.insert(id);
                }
            }
            if state.bad_chunks.contains(&c.id) {
                state.bad_contents.insert(id);
            }
        }
        let expected = state.expected_refs.get(&id).copied().unwrap_or(0);
        if expected != rec.refcount {
            state.fault(
                &name,
                format!(
                    "refcount {} but {expected} files, pieces and bundles refer to it",
                    rec.refcount
                ),
            );
        }
        if !state.bad_contents.contains(&id) {
            match self
                .open_content(&id)
                .and_then(|mut r| hash_content(&mut r))
            {
                Ok((sha1, b3, n)) => {
                    state.report.bytes += n;
                    if n != rec.size {
                        state.fault(
                            &name,
                            format!("{n} bytes read, the record says {}", rec.size),
                        );
                        state.bad_contents.insert(id);
                    } else if b3 != id {
                        state.fault(
                            &name,
                            "BLAKE3 of the bytes differs from the content's identity",
                        );
                        state.bad_contents.insert(id);
                    } else if sha1 != rec.sha1 {
                        state.fault(&name, "SHA-1 of the bytes differs from the recorded SHA-1");
                        state.bad_contents.insert(id);
                    }
                }
                Err(e) => {
                    state.fault(&name, e.to_string());
                    state.bad_contents.insert(id);
                }
            }
        }
        match index.contents_by_sha1(&rec.sha1) {
            Ok(ids) if ids.contains(&id) => {}
            Ok(_) => state.fault(&name, "missing from the SHA-1 index"),
            Err(e) => state.fault(&name, e.to_string()),
        }
    }
}

/// Pass 3: every file: reachable by its id, its content present and agreeing with it, not
/// damaged; and every release's file counts. Returns the recount for the counters.
fn verify_files(
    index: &Index,
    state: &mut VerifyState,
    progress: &mut dyn FnMut(Progress),
) -> Counters {
    let mut counts = Counters::default();
    let mut per_release: HashMap<(String, String), (u64, u64)> = HashMap::new();
    let rows: Vec<_> = index.all_files().collect();
    let total = rows.len() as u64;
    for (i, row) in rows.into_iter().enumerate() {
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                state.fault("file index", e.to_string());
                continue;
            }
        };
        state.report.files += 1;
        counts.files += 1;
        counts.logical_bytes += row.rec.size;
        let key = row.rec.key.to_string();
        let e = per_release
            .entry((row.rec.key.org.clone(), row.rec.key.release.clone()))
            .or_default();
        e.0 += 1;
        e.1 += row.rec.size;
        let file = format!("file {key}");
        match index.file_by_id(row.id) {
            Ok(Some(r)) if r.rec.key == row.rec.key => {}
            Ok(_) => state.fault(
                &file,
                format!("id {} does not resolve to this file", row.id),
            ),
            Err(e) => state.fault(&file, e.to_string()),
        }
        match index.content(&row.rec.content_id) {
            Ok(Some(c)) if c.sha1 == row.rec.sha1 && c.size == row.rec.size => {}
            Ok(Some(_)) => state.fault(&file, "SHA-1 or size differs from its content's record"),
            Ok(None) => {
                state.fault(&file, "its content is missing");
                state.report.damaged_files.push(key.clone());
            }
            Err(e) => state.fault(&file, e.to_string()),
        }
        if state.bad_contents.contains(&row.rec.content_id) {
            state.fault(&file, format!("content {} is damaged", row.rec.content_id));
            state.report.damaged_files.push(key);
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
        let release = Object::Release {
            org: org.clone(),
            version: version.clone(),
        };
        match index.release(&org, &version) {
            Ok(Some(r)) if r.rec.file_count == n && r.rec.file_bytes == bytes => {}
            Ok(Some(r)) => state.fault(
                &release,
                format!(
                    "counts {} files / {} bytes, found {n} / {bytes}",
                    r.rec.file_count, r.rec.file_bytes
                ),
            ),
            Ok(None) => state.fault(&release, "has files but no release record"),
            Err(e) => state.fault(&release, e.to_string()),
        }
    }
    counts
}

/// Pass 4: the store counters against the recount.
fn verify_counters(index: &Index, state: &mut VerifyState, mut counts: Counters) -> Result<()> {
    counts.contents = state.expected_refs.len() as u64;
    let stored = index.counters()?;
    let (a, b) = (
        (counts.files, counts.contents, counts.logical_bytes),
        (stored.files, stored.contents, stored.logical_bytes),
    );
    if a != b {
        state.fault(
            "counters",
            format!("stored (files, contents, logical bytes) = {b:?}, recount = {a:?}"),
        );
    }
    Ok(())
}

//! W8: consecutive releases of real npm packages uploaded release after release, and what each
//! deduplication scheme would keep of them: relstore (measured), whole-file dedup (what cacache
//! and plain files achieve), Sentry's fixed 1 MiB pieces, and content-defined chunking at other
//! average sizes (computed, to choose the chunking parameters across packages).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use relstore::{Durability, ReleaseScope, Store, StoreOptions};

use crate::child::{du, Job, Measure};
use crate::peers::R;

/// Record header bytes relstore writes per stored chunk.
const RECORD_HEADER: u64 = 52;
/// Average chunk sizes compared (min = avg/4, max = avg×4, as relstore's default).
const SWEEP: [u32; 5] = [4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10];

/// Packages under `root` (`root/<pkg>/<version>/.complete`, scoped ones one level deeper), each
/// with its complete versions in version order.
pub fn packages(root: &Path) -> Vec<(String, Vec<(String, PathBuf)>)> {
    let mut pkg_dirs = Vec::new();
    for e in fs::read_dir(root).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('@') {
            for s in fs::read_dir(e.path()).into_iter().flatten().flatten() {
                pkg_dirs.push((
                    format!("{name}/{}", s.file_name().to_string_lossy()),
                    s.path(),
                ));
            }
        } else {
            pkg_dirs.push((name, e.path()));
        }
    }
    pkg_dirs.sort();
    let mut out = Vec::new();
    for (name, dir) in pkg_dirs {
        let mut versions: Vec<(Vec<u64>, String, PathBuf)> = fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join(".complete").exists())
            .map(|e| {
                let v = e.file_name().to_string_lossy().into_owned();
                let key = v.split('.').map(|p| p.parse().unwrap_or(0)).collect();
                (key, v, e.path())
            })
            .collect();
        versions.sort();
        if versions.len() >= 2 {
            out.push((name, versions.into_iter().map(|(_, v, p)| (v, p)).collect()));
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if e.file_name() != ".complete" {
            out.push(p);
        }
    }
}

fn slug(pkg: &str) -> String {
    let s: String = pkg
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.trim_matches('-').to_string()
}

/// Runs W8 over the packages in `job.source`, at most `job.n` versions each.
pub fn run(job: &Job) -> R<()> {
    let root = job.source.as_ref().ok_or("npm needs a data directory")?;
    let pkgs = packages(root);
    if pkgs.is_empty() {
        return Err(format!("no npm data under {}", root.display()).into());
    }
    for (pkg, versions) in pkgs {
        let versions = &versions[versions.len().saturating_sub(job.n)..];
        let dir = job.dir.join(slug(&pkg));
        let chunking = job.chunking.unwrap_or_default();
        let sweep_on = job.chunking.is_none();
        let store = Store::open(StoreOptions::new(&dir).chunking(chunking).durability(
            Durability::Batched {
                interval: Duration::from_secs(1),
            },
        ))?;
        let mut whole: HashSet<[u8; 32]> = HashSet::new();
        let mut pieces: HashSet<[u8; 32]> = HashSet::new();
        let mut sweep: Vec<HashSet<[u8; 32]>> = SWEEP.iter().map(|_| HashSet::new()).collect();
        let (mut logical, mut map_bytes, mut files) = (0u64, 0u64, 0u64);
        let (mut whole_bytes, mut piece_bytes) = (0u64, 0u64);
        let mut sweep_bytes = [0u64; SWEEP.len()];
        let mut upload_secs = 0.0;
        let mut per_release = Vec::new();
        for (ver, vdir) in versions {
            let mut paths = Vec::new();
            walk(vdir, &mut paths);
            paths.sort();
            store.create_release("npm", ver, &["web"])?;
            let scope = ReleaseScope::project("npm", "web", ver);
            for p in &paths {
                let data = fs::read(p)?;
                let rel = p.strip_prefix(vdir)?.to_string_lossy().replace('\\', "/");
                let name = format!("~/{}/{rel}", slug(&pkg));
                let t = Instant::now();
                store.upload(&scope.file(&name, None), &[], &mut &data[..], false)?;
                upload_secs += t.elapsed().as_secs_f64();
                logical += data.len() as u64;
                files += 1;
                if rel.ends_with(".map") {
                    map_bytes += data.len() as u64;
                }
                if whole.insert(*blake3::hash(&data).as_bytes()) {
                    whole_bytes += data.len() as u64;
                }
                for piece in data.chunks(1 << 20) {
                    if pieces.insert(*blake3::hash(piece).as_bytes()) {
                        piece_bytes += piece.len() as u64;
                    }
                }
                for (k, avg) in SWEEP.iter().enumerate().filter(|_| sweep_on) {
                    for c in fastcdc::v2020::FastCDC::new(&data, avg / 4, *avg, avg * 4) {
                        let chunk = &data[c.offset..c.offset + c.length];
                        if sweep[k].insert(*blake3::hash(chunk).as_bytes()) {
                            sweep_bytes[k] += c.length as u64 + RECORD_HEADER;
                        }
                    }
                }
            }
            let t = Instant::now();
            store.sync()?;
            upload_secs += t.elapsed().as_secs_f64();
            let st = store.stats()?;
            per_release.push(st.disk_bytes as f64 / logical as f64);
        }
        let st = store.stats()?;
        if store.chunking() != chunking {
            return Err(format!("{}: store kept other chunking parameters", dir.display()).into());
        }
        drop(store);
        let mut m = Measure {
            workload: "W8".into(),
            contender: pkg.clone(),
            round: job.round,
            ops: files,
            bytes: logical,
            secs: upload_secs,
            disk_bytes: Some(du(&dir)),
            ..Default::default()
        };
        let e = &mut m.extra;
        e.insert("default_run".into(), if sweep_on { 1.0 } else { 0.0 });
        e.insert("chunk_min_kib".into(), (chunking.min >> 10) as f64);
        e.insert("chunk_avg_kib".into(), (chunking.avg >> 10) as f64);
        e.insert("chunk_max_kib".into(), (chunking.max >> 10) as f64);
        // Allocated blocks after close, split so the index's share of the store is known.
        e.insert("index_du_bytes".into(), du(&dir.join("index")) as f64);
        e.insert("segments_du_bytes".into(), du(&dir.join("segments")) as f64);
        e.insert("versions".into(), versions.len() as f64);
        e.insert("map_bytes".into(), map_bytes as f64);
        e.insert("relstore_disk_bytes".into(), st.disk_bytes as f64);
        e.insert("relstore_chunk_bytes".into(), st.stored_bytes as f64);
        e.insert("relstore_chunks".into(), st.chunks as f64);
        e.insert("whole_file_bytes".into(), whole_bytes as f64);
        e.insert("fixed_1mib_bytes".into(), piece_bytes as f64);
        for (k, avg) in SWEEP.iter().enumerate().filter(|_| sweep_on) {
            e.insert(format!("cdc_{}k_bytes", avg >> 10), sweep_bytes[k] as f64);
            e.insert(format!("cdc_{}k_chunks", avg >> 10), sweep[k].len() as f64);
        }
        for (i, r) in per_release.iter().enumerate() {
            e.insert(format!("release_{:02}_disk_ratio", i + 1), *r);
        }
        m.emit();
    }
    Ok(())
}

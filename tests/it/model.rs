//! Model test: random sequences of store operations checked after every step against a plain
//! `BTreeMap` model.
//!
//! Operations: uploads (with and without overwrite, of contents drawn from a small palette so
//! whole files repeat, and built as edited slices of a few base buffers so chunks are shared
//! between different contents), renames (also onto taken names), file deletes (also of ids that
//! are already gone), release deletes, scope deletes, release creation and project linking, in
//! project and organization-wide scopes of two organizations, with dists, and store reopens.
//!
//! After every step the store must agree with the model on: every scope's listing (paged three at
//! a time, so cursors are exercised), every file's record by key and by id, every file's bytes,
//! the absence of every id ever deleted or replaced, each release's links and file counts, the
//! `stats()` counters, and the refcounts of every content and chunk record. The expected chunk
//! set comes from the fastcdc crate's own chunker, not from the store.
//!
//! `PROPTEST_CASES` overrides the number of cases (default 256).

use crate::common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use proptest::prelude::*;

use crate::common::{chunk_set, js_like, sha1};
use relstore::{
    ChunkId, ChunkingParams, ContentId, Durability, Error, FileRecord, ListQuery, ReadMode,
    ReleaseScope, Sha1, Store, StoreOptions,
};
use relstore_testkit::random_bytes_at;

const ORGS: [&str; 2] = ["acme", "beta"];
const VERSIONS: [&str; 2] = ["1.0", "2.0"];
const PROJECTS: [&str; 2] = ["web", "api"];
const NAMES: [&str; 6] = [
    "~/app.js",
    "~/app.js.map",
    "~/static/App.JS",
    "~/vendor.js",
    "index.html",
    "a",
];
const DISTS: [Option<&str>; 3] = [None, Some("d1"), Some("d2")];
/// Releases are `ORGS × VERSIONS`; each has three scopes: two projects and the org-wide one.
const RELEASES: usize = ORGS.len() * VERSIONS.len();
const SCOPES: usize = RELEASES * 3;
const BASE_LEN: usize = 320 << 10;
const PAGE: usize = 3;

fn release_of(r: usize) -> (&'static str, &'static str) {
    (ORGS[r / VERSIONS.len()], VERSIONS[r % VERSIONS.len()])
}

fn scope_of(s: usize) -> ReleaseScope {
    let (org, version) = release_of(s / 3);
    match s % 3 {
        2 => ReleaseScope::org_wide(org, version),
        p => ReleaseScope::project(org, PROJECTS[p], version),
    }
}

fn header_set(h: usize) -> Vec<(String, String)> {
    let pairs: &[(&str, &str)] = match h {
        0 => &[],
        1 => &[("Content-Type", "text/javascript")],
        _ => &[
            ("Content-Type", "application/json"),
            ("Sourcemap", "~/app.js.map"),
        ],
    };
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Three base buffers: two text-like, one random. Contents are edited slices of them.
fn bases() -> &'static [Vec<u8>; 3] {
    static BASES: OnceLock<[Vec<u8>; 3]> = OnceLock::new();
    BASES.get_or_init(|| {
        let mut random = vec![0u8; BASE_LEN];
        random_bytes_at(99, 0, &mut random);
        [js_like(1, BASE_LEN), js_like(2, BASE_LEN), random]
    })
}

#[derive(Clone, Debug)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
}

/// A content: `len` bytes of base `base` from `start`, then small edits.
#[derive(Clone, Debug)]
struct ContentSpec {
    base: usize,
    start: usize,
    len: usize,
    edits: Vec<Edit>,
}

impl ContentSpec {
    fn materialize(&self) -> Vec<u8> {
        let base = &bases()[self.base];
        let start = self.start.min(base.len());
        let end = (start + self.len).min(base.len());
        let mut v = base[start..end].to_vec();
        for e in &self.edits {
            match *e {
                Edit::Set(p, b) if !v.is_empty() => {
                    let p = p % v.len();
                    v[p] = b;
                }
                Edit::Set(..) => {}
                Edit::Insert(p, b) => {
                    let p = p % (v.len() + 1);
                    v.insert(p, b);
                }
            }
        }
        v
    }
}

#[derive(Clone, Debug)]
enum Op {
    Upload {
        scope: usize,
        name: usize,
        dist: usize,
        content: usize,
        headers: usize,
        overwrite: bool,
    },
    Rename {
        pick: usize,
        name: usize,
        dist: usize,
    },
    Delete {
        pick: usize,
        stale: bool,
    },
    DeleteRelease {
        release: usize,
    },
    DeleteScope {
        scope: usize,
    },
    CreateRelease {
        release: usize,
        projects: usize,
    },
    Reopen,
    /// `Store::gc`: afterwards exactly the live chunks have records.
    Gc,
}

#[derive(Clone, Debug)]
struct Case {
    palette: Vec<ContentSpec>,
    ops: Vec<Op>,
    batched: bool,
    pread: bool,
    segment_max_bytes: u64,
}

fn content_spec() -> impl Strategy<Value = ContentSpec> {
    let edit = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Set(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Insert(p, b)),
    ];
    (
        0..3usize,
        prop_oneof![Just(0usize), 0..20_000usize],
        prop_oneof![1 => 0..64usize, 3 => 0..300usize << 10],
        proptest::collection::vec(edit, 0..3),
    )
        .prop_map(|(base, start, len, edits)| ContentSpec {
            base,
            start,
            len,
            edits,
        })
}

fn op(palette: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0..SCOPES, 0..NAMES.len(), 0..DISTS.len(), 0..palette, 0..3usize, any::<bool>())
            .prop_map(|(scope, name, dist, content, headers, overwrite)| Op::Upload {
                scope, name, dist, content, headers, overwrite,
            }),
        3 => (any::<usize>(), 0..NAMES.len(), 0..DISTS.len())
            .prop_map(|(pick, name, dist)| Op::Rename { pick, name, dist }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(pick, stale)| Op::Delete { pick, stale }),
        1 => (0..RELEASES).prop_map(|release| Op::DeleteRelease { release }),
        1 => (0..SCOPES).prop_map(|scope| Op::DeleteScope { scope }),
        2 => (0..RELEASES, 0..4usize).prop_map(|(release, projects)| Op::CreateRelease {
            release, projects,
        }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Gc),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    proptest::collection::vec(content_spec(), 2..7).prop_flat_map(|palette| {
        let n = palette.len();
        (
            Just(palette),
            proptest::collection::vec(op(n), 1..32),
            proptest::bool::weighted(0.3),
            any::<bool>(),
            prop_oneof![Just(64u64 << 10), Just(256 << 10), Just(4 << 20)],
        )
            .prop_map(|(palette, ops, batched, pread, segment_max_bytes)| Case {
                palette,
                ops,
                batched,
                pread,
                segment_max_bytes,
            })
    })
}

/// A content of the palette with what the model needs to know about it.
struct Content {
    bytes: Arc<Vec<u8>>,
    blake3: ContentId,
    sha1: Sha1,
    chunks: HashMap<ChunkId, u64>,
}

/// Model key: (org, project or "", release, name, dist or ""). Strings compare by bytes, which is
/// the order the store promises for a scope's listing (name, then dist, no dist first).
type MKey = (String, String, String, String, String);

fn mkey(k: &relstore::FileKey) -> MKey {
    (
        k.org.clone(),
        k.project.clone().unwrap_or_default(),
        k.release.clone(),
        k.name.clone(),
        k.dist.clone().unwrap_or_default(),
    )
}

#[derive(Default)]
struct Model {
    files: BTreeMap<MKey, (FileRecord, usize)>,
    /// Existing releases and their linked projects, in link order.
    releases: BTreeMap<usize, Vec<String>>,
    issued: BTreeSet<u64>,
}

impl Model {
    fn live_ids(&self) -> HashSet<u64> {
        self.files.values().map(|(f, _)| f.id).collect()
    }
}

fn kind<T: std::fmt::Debug>(r: &relstore::Result<T>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(Error::NotFound { .. }) => "NotFound".into(),
        Err(Error::AlreadyExists { .. }) => "AlreadyExists".into(),
        Err(e) => format!("unexpected error: {e}"),
    }
}

struct Run<'a> {
    case: &'a Case,
    dir: tempfile::TempDir,
    store: Option<Store>,
    contents: Vec<Content>,
    model: Model,
    chunking: ChunkingParams,
}

impl Run<'_> {
    fn options(&self) -> StoreOptions {
        let durability = if self.case.batched {
            Durability::Batched {
                interval: Duration::from_millis(20),
            }
        } else {
            Durability::Immediate
        };
        let mode = if self.case.pread {
            ReadMode::Pread
        } else {
            ReadMode::Mmap
        };
        common::options(self.dir.path())
            .segment_max_bytes(self.case.segment_max_bytes)
            .chunking(self.chunking)
            .durability(durability)
            .read_mode(mode)
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("store is open")
    }

    fn reopen(&mut self) {
        self.store = None;
        self.store = Some(Store::open(self.options()).expect("reopen store"));
    }

    fn apply(&mut self, op: &Op) {
        if let Op::Reopen = op {
            return self.reopen();
        }
        if let Op::Gc = op {
            let store = self.store();
            store.gc(&mut |_| {}).expect("gc");
            let report = store.debug_refcounts().expect("refcounts");
            assert_eq!(
                report.recorded(),
                report.live_chunks,
                "after gc exactly the live chunks have records"
            );
            return;
        }
        let store = self.store().clone();
        let m = &mut self.model;
        match *op {
            Op::Upload {
                scope,
                name,
                dist,
                content,
                headers,
                overwrite,
            } => {
                let s = scope_of(scope);
                let key = s.file(NAMES[name], DISTS[dist]);
                let c = &self.contents[content];
                let headers = header_set(headers);
                let got = store.upload(&key, &headers, &mut &c.bytes[..], overwrite);
                let linked = m
                    .releases
                    .get(&(scope / 3))
                    .is_some_and(|links| s.project.as_ref().is_none_or(|p| links.contains(p)));
                let exists = m.files.contains_key(&mkey(&key));
                if !linked {
                    assert_eq!(kind(&got), "NotFound", "upload {key}");
                } else if exists && !overwrite {
                    assert_eq!(kind(&got), "AlreadyExists", "upload {key}");
                } else {
                    let f = got.unwrap_or_else(|e| panic!("upload {key}: {e}"));
                    assert!(m.issued.insert(f.id), "id {} issued twice", f.id);
                    assert_eq!(f.key, key);
                    assert_eq!(f.headers, headers);
                    assert_eq!(f.size, c.bytes.len() as u64);
                    assert_eq!(f.sha1, c.sha1);
                    assert_eq!(f.content_id, c.blake3);
                    m.files.insert(mkey(&key), (f, content));
                }
            }
            Op::Rename { pick, name, dist } => {
                if m.files.is_empty() {
                    let r = store.rename(u64::MAX - 1, NAMES[name], DISTS[dist]);
                    assert_eq!(kind(&r), "NotFound");
                    return;
                }
                let old_key = m.files.keys().nth(pick % m.files.len()).cloned();
                let old_key = old_key.expect("picked a live file");
                let (old, content) = m.files[&old_key].clone();
                let new_key = old.key.scope().file(NAMES[name], DISTS[dist]);
                let got = store.rename(old.id, NAMES[name], DISTS[dist]);
                if new_key == old.key {
                    assert_eq!(got.ok().as_ref(), Some(&old), "rename onto itself");
                } else if m.files.contains_key(&mkey(&new_key)) {
                    assert_eq!(
                        kind(&got),
                        "AlreadyExists",
                        "rename {} to {new_key}",
                        old.key
                    );
                } else {
                    let f = got.unwrap_or_else(|e| panic!("rename {} to {new_key}: {e}", old.key));
                    let mut want = old.clone();
                    want.key = new_key.clone();
                    assert_eq!(f, want, "renamed record");
                    m.files.remove(&old_key);
                    m.files.insert(mkey(&new_key), (f, content));
                }
            }
            Op::Delete { pick, stale } => {
                let live = m.live_ids();
                let dead: Vec<u64> = m
                    .issued
                    .iter()
                    .filter(|i| !live.contains(i))
                    .copied()
                    .collect();
                if stale && !dead.is_empty() {
                    let id = dead[pick % dead.len()];
                    assert_eq!(store.delete_file(id).expect("delete stale id"), None);
                } else if m.files.is_empty() {
                    assert_eq!(store.delete_file(u64::MAX - 1).expect("delete"), None);
                } else {
                    let k = m.files.keys().nth(pick % m.files.len()).cloned();
                    let (old, _) = m.files.remove(&k.expect("picked")).expect("live");
                    let got = store.delete_file(old.id).expect("delete file");
                    assert_eq!(got, Some(old));
                }
            }
            Op::DeleteRelease { release } => {
                let (org, version) = release_of(release);
                let got = store.delete_release(org, version);
                if m.releases.remove(&release).is_none() {
                    assert_eq!(kind(&got), "NotFound");
                    return;
                }
                let before = m.files.len();
                m.files.retain(|k, _| !(k.0 == org && k.2 == version));
                let n = got.unwrap_or_else(|e| panic!("delete release {org}/{version}: {e}"));
                assert_eq!(n, (before - m.files.len()) as u64, "files deleted");
            }
            Op::DeleteScope { scope } => {
                let s = scope_of(scope);
                let got = store.delete_files_in(&s);
                if !m.releases.contains_key(&(scope / 3)) {
                    assert_eq!(kind(&got), "NotFound");
                    return;
                }
                let before = m.files.len();
                let p = s.project.clone().unwrap_or_default();
                m.files
                    .retain(|k, _| !(k.0 == s.org && k.1 == p && k.2 == s.release));
                let n = got.unwrap_or_else(|e| panic!("delete scope {s:?}: {e}"));
                assert_eq!(n, (before - m.files.len()) as u64, "files deleted");
            }
            Op::CreateRelease { release, projects } => {
                let (org, version) = release_of(release);
                let slugs: Vec<&str> = PROJECTS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| projects & (1 << i) != 0)
                    .map(|(_, p)| *p)
                    .collect();
                let (rel, created) = store
                    .create_release(org, version, &slugs)
                    .unwrap_or_else(|e| panic!("create release {org}/{version}: {e}"));
                assert_eq!(created, !m.releases.contains_key(&release));
                let links = m.releases.entry(release).or_default();
                for s in slugs {
                    if !links.iter().any(|l| l == s) {
                        links.push(s.to_string());
                    }
                }
                let got: Vec<&str> = rel.projects.iter().map(|p| p.slug.as_str()).collect();
                assert_eq!(got, *links, "linked projects");
            }
            Op::Reopen | Op::Gc => unreachable!("handled above"),
        }
    }

    fn check(&self) {
        let store = self.store();
        let m = &self.model;
        // Listings, page by page.
        for s in 0..SCOPES {
            let scope = scope_of(s);
            let mut listed = Vec::new();
            let mut q = ListQuery {
                limit: PAGE,
                ..Default::default()
            };
            loop {
                let page = store.list_files(&scope, &q).expect("list files");
                assert!(page.items.len() <= PAGE);
                listed.extend(page.items);
                match page.next {
                    Some(c) => q.cursor = Some(c),
                    None => break,
                }
            }
            let p = scope.project.clone().unwrap_or_default();
            let want: Vec<&FileRecord> = m
                .files
                .iter()
                .filter(|(k, _)| k.0 == scope.org && k.1 == p && k.2 == scope.release)
                .map(|(_, (f, _))| f)
                .collect();
            let listed: Vec<&FileRecord> = listed.iter().collect();
            assert_eq!(listed, want, "listing of {scope:?}");
        }
        // Every file by key, by id, and its bytes.
        for (f, content) in m.files.values() {
            assert_eq!(store.file(&f.key).expect("file").as_ref(), Some(f));
            assert_eq!(
                store.file_by_id(f.id).expect("file by id").as_ref(),
                Some(f)
            );
            let bytes = common::read_all(store, f);
            assert!(
                bytes == *self.contents[*content].bytes,
                "bytes of {} differ ({} read, {} expected)",
                f.key,
                bytes.len(),
                self.contents[*content].bytes.len()
            );
        }
        let live = m.live_ids();
        for id in m.issued.iter().filter(|i| !live.contains(i)) {
            assert_eq!(
                store.file_by_id(*id).expect("file by id"),
                None,
                "id {id} is gone"
            );
        }
        // Releases.
        for r in 0..RELEASES {
            let (org, version) = release_of(r);
            let got = store.release(org, version).expect("release");
            match (got, m.releases.get(&r)) {
                (None, None) => {}
                (Some(rel), Some(links)) => {
                    let slugs: Vec<&str> = rel.projects.iter().map(|p| p.slug.as_str()).collect();
                    assert_eq!(slugs, *links);
                    let files: Vec<&FileRecord> = m
                        .files
                        .iter()
                        .filter(|(k, _)| k.0 == org && k.2 == version)
                        .map(|(_, (f, _))| f)
                        .collect();
                    assert_eq!(rel.file_count, files.len() as u64, "{org}/{version} count");
                    assert_eq!(
                        rel.file_bytes,
                        files.iter().map(|f| f.size).sum::<u64>(),
                        "{org}/{version} bytes"
                    );
                }
                (got, want) => panic!("release {org}/{version}: store {got:?}, model {want:?}"),
            }
        }
        // Counters and refcounts.
        let mut content_refs: HashMap<ContentId, u64> = HashMap::new();
        let mut by_id: HashMap<ContentId, &Content> = HashMap::new();
        for (_, c) in m.files.values() {
            let c = &self.contents[*c];
            *content_refs.entry(c.blake3).or_default() += 1;
            by_id.insert(c.blake3, c);
        }
        let mut chunk_refs: HashMap<ChunkId, u64> = HashMap::new();
        let mut chunk_len: HashMap<ChunkId, u64> = HashMap::new();
        for c in by_id.values() {
            for (id, len) in &c.chunks {
                *chunk_refs.entry(*id).or_default() += 1;
                chunk_len.insert(*id, *len);
            }
        }
        let stats = store.stats().expect("stats");
        let want = (
            m.files.len() as u64,
            m.files.values().map(|(f, _)| f.size).sum::<u64>(),
            by_id.len() as u64,
        );
        let got = (stats.files, stats.logical_bytes, stats.contents);
        assert_eq!(got, want, "stats (files, logical, contents)");
        let report = store.debug_refcounts().expect("refcounts");
        assert_eq!(report.contents, content_refs, "content refcounts");
        assert_eq!(
            report.expected_contents, content_refs,
            "recomputed content refcounts"
        );
        let live: HashSet<ChunkId> = chunk_refs.keys().copied().collect();
        assert_eq!(report.live_chunks, live, "live chunks");
        assert_eq!(report.missing_chunks(), 0, "live chunks without a record");
        // Chunk records beyond the live ones are garbage awaiting gc, and the chunk figures
        // of the stats count them too.
        assert_eq!(
            (stats.chunks, stats.stored_bytes),
            (
                report.chunk_records.len() as u64,
                chunk_len.values().sum::<u64>() + report.dead_bytes()
            ),
            "stats (chunks, stored bytes)"
        );
    }
}

fn run_case(case: &Case) {
    let dir = tempfile::tempdir().expect("tempdir");
    // Small chunks: contents of up to 20 KB have up to ~40 chunks, shared between contents.
    let chunking = ChunkingParams {
        min: 256,
        avg: 512,
        max: 2048,
    };
    let contents = case
        .palette
        .iter()
        .map(|spec| {
            let bytes = spec.materialize();
            Content {
                blake3: ContentId::of(&bytes),
                sha1: sha1(&bytes),
                chunks: chunk_set(&bytes, chunking),
                bytes: Arc::new(bytes),
            }
        })
        .collect();
    let mut run = Run {
        case,
        dir,
        store: None,
        contents,
        model: Model::default(),
        chunking,
    };
    run.reopen();
    assert_eq!(run.store().chunking(), run.chunking);
    // Start with two releases so early uploads have somewhere to go.
    for op in [
        Op::CreateRelease {
            release: 0,
            projects: 3,
        },
        Op::CreateRelease {
            release: 2,
            projects: 1,
        },
    ]
    .iter()
    .chain(&case.ops)
    {
        run.apply(op);
        run.check();
    }
    // Everything survives a final close and reopen.
    run.reopen();
    run.check();
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        max_shrink_iters: 2048,
        // The minimal failing case is printed; nothing is written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn store_matches_model(case in case()) {
        run_case(&case);
    }
}

//! `relstore ingest`: store a directory tree as the files of a release, the way
//! `sentry-cli sourcemaps upload` names them (`~/static/app.js`).
//!
//! The walk comes first (so the progress bar knows the total), then a pool of threads uploads
//! one file each at a time through a shared [`Store`]: hashing and chunking run on every core.
//! The store is opened with batched durability and synced once at the end, so the many small
//! uploads share a few syncs instead of paying two each; nothing is reported as stored before
//! that final sync has returned. Files already stored with the same size and SHA-1 are skipped
//! without touching the store; a name holding different content is a conflict unless
//! `--overwrite` is given.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use globset::{Glob, GlobSet, GlobSetBuilder};
use indicatif::ProgressBar;
use relstore::{Durability, Error, FileKey, FileRecord, Store, StoreOptions};
use serde::Serialize;
use sha1::Digest;

use super::common::{bytes_bar, human_bytes, open_store_with, ScopeArgs};

/// Arguments of `relstore ingest`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  relstore ingest --org acme --project web --release 1.0 build/
  relstore ingest -o acme -p web -r 1.0 --url-prefix '~/static/js' --ext js,map build/static/js
  relstore ingest -o acme -p web -r 1.0 --ignore 'node_modules' --ignore '*.txt' --json build/ > log.jsonl

Every file under DIR is stored as <url-prefix><path relative to DIR>. A file whose last line is
`//# sourceMappingURL=X` gets the header `Sourcemap: X` (inline data: URLs are not copied).
Files already stored with the same content are skipped. A name that holds different content is a
conflict: it is reported and left as it is, the rest is stored, and the exit code is 1; pass
--overwrite to replace such files. A progress bar is drawn on a terminal; otherwise only the
summary is printed. With --json, one file JSON per stored file and a final {\"summary\": {..}}.")]
pub struct IngestArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// Distribution to store the files under.
    #[arg(long, short = 'd')]
    dist: Option<String>,
    /// Prefix of every name; a `/` is put between it and the relative path.
    #[arg(long, default_value = "~/", value_name = "PREFIX")]
    url_prefix: String,
    /// Only files with these extensions, comma-separated (`js,map`; default: every file).
    #[arg(long, value_delimiter = ',', value_name = "EXT,...")]
    ext: Vec<String>,
    /// Skip files and folders whose relative path or name matches GLOB (repeatable).
    #[arg(long, value_name = "GLOB")]
    ignore: Vec<String>,
    /// Replace stored files whose content changed instead of reporting a conflict.
    #[arg(long)]
    overwrite: bool,
    /// Print one JSON line per stored file and a summary object.
    #[arg(long)]
    json: bool,
    /// Upload threads (default: four per core, so that file reads and index commits overlap
    /// hashing).
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// The directory to store.
    dir: PathBuf,
}

/// One file found by the walk.
struct Item {
    path: PathBuf,
    name: String,
    size: u64,
}

/// What happened to one file.
enum Outcome {
    Stored(FileRecord),
    Unchanged,
    Conflict { stored_sha1: String },
    Failed(String),
}

/// The final report, printed as one line or as `{"summary": ..}`.
#[derive(Serialize, Default)]
struct Summary {
    files: u64,
    bytes: u64,
    stored: u64,
    unchanged: u64,
    conflicts: u64,
    failed: u64,
    /// Bytes of the files that were stored.
    stored_file_bytes: u64,
    /// Growth of the store's distinct chunk bytes.
    new_bytes: u64,
    /// Bytes of stored files that the store already had.
    deduplicated_bytes: u64,
    elapsed_secs: f64,
    files_per_sec: f64,
    bytes_per_sec: f64,
}

/// `relstore ingest`.
pub fn run(data: &Path, a: &IngestArgs) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    if !a.dir.is_dir() {
        bail!(
            "{} is not a directory; pass the folder that holds the build output",
            a.dir.display()
        );
    }
    let ignore = build_globs(&a.ignore)?;
    let exts: Vec<String> = a
        .ext
        .iter()
        .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .collect();
    let mut failed_walk = Vec::new();
    let items = walk(&a.dir, &a.url_prefix, &exts, &ignore, &mut failed_walk);
    for msg in &failed_walk {
        eprintln!("error: {msg}");
    }

    let opts = StoreOptions::new(data).durability(Durability::Batched {
        interval: Duration::from_secs(1),
    });
    let store = open_store_with(opts, true)?;
    let projects: Vec<&str> = a.scope.project.iter().map(String::as_str).collect();
    store
        .create_release(&a.scope.org, &a.scope.release, &projects)
        .with_context(|| format!("cannot create release {}", a.scope.describe()))?;
    let before = store.stats()?.stored_bytes;

    let total_bytes: u64 = items.iter().map(|i| i.size).sum();
    let pb = bytes_bar(total_bytes, "ingest");
    pb.set_message(format!("0/{} files", items.len()));
    let jobs = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()) * 4);
    let outcomes = upload_all(&store, a, &items, jobs.max(1), &pb);
    pb.finish_and_clear();
    store
        .sync()
        .context("cannot make the ingested files durable")?;

    let mut sum = Summary {
        files: items.len() as u64,
        bytes: total_bytes,
        failed: failed_walk.len() as u64,
        ..Summary::default()
    };
    let mut stored = Vec::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Stored(rec) => {
                sum.stored += 1;
                sum.stored_file_bytes += rec.size;
                stored.push(rec);
            }
            Outcome::Unchanged => sum.unchanged += 1,
            Outcome::Conflict { .. } => sum.conflicts += 1,
            Outcome::Failed(_) => sum.failed += 1,
        }
    }
    let after = store.stats()?.stored_bytes;
    sum.new_bytes = after.saturating_sub(before);
    sum.deduplicated_bytes = sum.stored_file_bytes.saturating_sub(sum.new_bytes);
    let secs = start.elapsed().as_secs_f64().max(1e-6);
    sum.elapsed_secs = secs;
    sum.files_per_sec = sum.files as f64 / secs;
    sum.bytes_per_sec = sum.bytes as f64 / secs;

    if a.json {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for rec in &stored {
            writeln!(
                out,
                "{}",
                serde_json::to_string(&relstore_server::json::FileJson(rec))?
            )?;
        }
        writeln!(
            out,
            "{}",
            serde_json::to_string(&serde_json::json!({ "summary": sum }))?
        )?;
    } else {
        println!("{}", summary_line(&sum, &a.scope.describe()));
    }
    Ok(if sum.conflicts == 0 && sum.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn summary_line(s: &Summary, scope: &str) -> String {
    let mut line = format!(
        "{} files ({}) into {scope} in {:.2}s: ",
        s.files,
        human_bytes(s.bytes),
        s.elapsed_secs
    );
    if s.stored == 0 && s.conflicts == 0 && s.failed == 0 {
        line.push_str(&format!("nothing new stored, {} unchanged", s.unchanged));
    } else {
        line.push_str(&format!(
            "{} stored, {} unchanged, {} conflicts, {} failed; {} new, {} deduplicated",
            s.stored,
            s.unchanged,
            s.conflicts,
            s.failed,
            human_bytes(s.new_bytes),
            human_bytes(s.deduplicated_bytes)
        ));
    }
    line.push_str(&format!(
        "; {:.0} files/s, {}/s",
        s.files_per_sec,
        human_bytes(s.bytes_per_sec as u64)
    ));
    line
}

fn build_globs(patterns: &[String]) -> anyhow::Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).with_context(|| format!("invalid --ignore pattern {p:?}"))?);
    }
    b.build().context("invalid --ignore patterns")
}

/// The relative path of `path` under `root` with `/` separators, if it is UTF-8.
fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

fn ignored(globs: &GlobSet, rel: &str) -> bool {
    let base = rel.rsplit('/').next().unwrap_or(rel);
    globs.is_match(rel) || globs.is_match(base)
}

/// Joins the URL prefix and a relative path: `~/` + `a.js`, `~/static` + `a.js` → `~/static/a.js`.
pub fn file_name(prefix: &str, rel: &str) -> String {
    if prefix.is_empty() {
        rel.to_string()
    } else if prefix.ends_with('/') {
        format!("{prefix}{rel}")
    } else {
        format!("{prefix}/{rel}")
    }
}

fn walk(
    root: &Path,
    prefix: &str,
    exts: &[String],
    globs: &GlobSet,
    errors: &mut Vec<String>,
) -> Vec<Item> {
    let mut items = Vec::new();
    let it = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0 || relative(root, e.path()).is_none_or(|r| !ignored(globs, &r))
        });
    for entry in it {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                errors.push(format!("cannot read {}: {e}", path_of(&e)));
                continue;
            }
        };
        let meta = match entry.metadata() {
            // A symlink counts as what it points at (walkdir does not follow it by default).
            Ok(m) if m.file_type().is_symlink() => match std::fs::metadata(entry.path()) {
                Ok(m) => m,
                Err(e) => {
                    errors.push(format!("cannot follow {}: {e}", entry.path().display()));
                    continue;
                }
            },
            Ok(m) => m,
            Err(e) => {
                errors.push(format!("cannot stat {}: {e}", entry.path().display()));
                continue;
            }
        };
        if !meta.is_file() {
            continue;
        }
        let Some(rel) = relative(root, entry.path()) else {
            errors.push(format!(
                "{} has a name that is not UTF-8; rename it or skip it with --ignore",
                entry.path().display()
            ));
            continue;
        };
        if !exts.is_empty() {
            let ext = rel.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
            if !ext.is_some_and(|e| exts.contains(&e) && !e.contains('/')) {
                continue;
            }
        }
        items.push(Item {
            path: entry.path().to_path_buf(),
            name: file_name(prefix, &rel),
            size: meta.len(),
        });
    }
    items
}

fn path_of(e: &walkdir::Error) -> String {
    e.path()
        .map_or_else(|| "a folder".to_string(), |p| p.display().to_string())
}

fn upload_all(
    store: &Store,
    a: &IngestArgs,
    items: &[Item],
    jobs: usize,
    pb: &ProgressBar,
) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(items.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let key = a.scope.key(&item.name, a.dist.as_deref());
                let outcome = ingest_one(store, &key, item, a.overwrite, pb);
                report(&outcome, item, pb);
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                pb.set_message(format!("{n}/{} files", items.len()));
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(outcome);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Failed("not processed".into())))
        .collect()
}

fn report(outcome: &Outcome, item: &Item, pb: &ProgressBar) {
    let msg = match outcome {
        Outcome::Conflict { stored_sha1 } => format!(
            "conflict: {} already holds different content (sha1 {stored_sha1}) than {}; left \
             as it is (pass --overwrite to replace it)",
            item.name,
            item.path.display()
        ),
        Outcome::Failed(why) => format!("error: {}: {why}", item.path.display()),
        _ => return,
    };
    pb.suspend(|| eprintln!("{msg}"));
}

fn ingest_one(
    store: &Store,
    key: &FileKey,
    item: &Item,
    overwrite: bool,
    pb: &ProgressBar,
) -> Outcome {
    match try_ingest_one(store, key, item, overwrite, pb) {
        Ok(o) => o,
        Err(e) => Outcome::Failed(format!("{e:#}")),
    }
}

fn try_ingest_one(
    store: &Store,
    key: &FileKey,
    item: &Item,
    overwrite: bool,
    pb: &ProgressBar,
) -> anyhow::Result<Outcome> {
    let mut file = File::open(&item.path).context("cannot open")?;
    let existing = store.file(key)?;
    if let Some(old) = &existing {
        if old.size == item.size {
            let sha1 = sha1_of(&mut file).context("cannot read")?;
            if sha1 == *old.sha1.as_bytes() {
                pb.inc(item.size);
                return Ok(Outcome::Unchanged);
            }
            file.seek(SeekFrom::Start(0)).context("cannot read")?;
        }
        if !overwrite {
            pb.inc(item.size);
            return Ok(Outcome::Conflict {
                stored_sha1: old.sha1_hex(),
            });
        }
    }
    let mut headers = Vec::new();
    if let Some(url) = sourcemap_ref(&mut file, item.size).context("cannot read")? {
        headers.push(("Sourcemap".to_string(), url));
    }
    let mut counted = Counting {
        inner: file,
        pb,
        n: 0,
    };
    let result = store.upload(key, &headers, &mut counted, overwrite);
    pb.inc(item.size.saturating_sub(counted.n));
    match result {
        Ok(rec) => Ok(Outcome::Stored(rec)),
        // Only possible if something else wrote the name since the check above.
        Err(Error::AlreadyExists { .. }) => Ok(Outcome::Conflict {
            stored_sha1: store
                .file(key)?
                .map_or_else(|| "?".into(), |f| f.sha1_hex()),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Counts bytes into the progress bar as the store reads them.
struct Counting<'a> {
    inner: File,
    pb: &'a ProgressBar,
    n: u64,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        self.pb.inc(n as u64);
        Ok(n)
    }
}

fn sha1_of(file: &mut File) -> std::io::Result<[u8; 20]> {
    let mut h = sha1::Sha1::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    }
}

/// Longest tail read to find the last line; a longer last line is an inline source map.
const TAIL: u64 = 4096;

/// The `X` of a last line `//# sourceMappingURL=X` (or the legacy `//@`), leaving the file at
/// its start. Inline `data:` maps are left out: they are not a reference to another file.
fn sourcemap_ref(file: &mut File, size: u64) -> std::io::Result<Option<String>> {
    let from = size.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::with_capacity(TAIL as usize);
    file.by_ref().take(TAIL).read_to_end(&mut tail)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(parse_sourcemap_ref(&tail, from == 0))
}

/// See [`sourcemap_ref`]; `whole` says whether `tail` starts at the beginning of the file.
pub fn parse_sourcemap_ref(tail: &[u8], whole: bool) -> Option<String> {
    let text = std::str::from_utf8(tail).ok().or_else(|| {
        // The tail may start inside a multi-byte character; the last line is what matters.
        let nl = tail.iter().position(|&b| b == b'\n')?;
        std::str::from_utf8(&tail[nl + 1..]).ok()
    })?;
    let trimmed = text.trim_end();
    let (line, bounded) = match trimmed.rfind('\n') {
        Some(i) => (&trimmed[i + 1..], true),
        None => (trimmed, whole),
    };
    if !bounded {
        return None;
    }
    let line = line.trim();
    let url = line
        .strip_prefix("//# sourceMappingURL=")
        .or_else(|| line.strip_prefix("//@ sourceMappingURL="))?
        .trim();
    if url.is_empty() || url.starts_with("data:") || url.chars().any(char::is_whitespace) {
        return None;
    }
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_sourcemap_of_the_last_line_only() {
        assert_eq!(
            parse_sourcemap_ref(b"a();\n//# sourceMappingURL=app.js.map\n", true).as_deref(),
            Some("app.js.map")
        );
        assert_eq!(
            parse_sourcemap_ref(b"a();\n//@ sourceMappingURL=x.map", true).as_deref(),
            Some("x.map")
        );
        assert_eq!(
            parse_sourcemap_ref(b"//# sourceMappingURL=app.js.map\nmore();\n", true),
            None
        );
        assert_eq!(
            parse_sourcemap_ref(
                b"//# sourceMappingURL=data:application/json;base64,e30=",
                true
            ),
            None
        );
        // A tail cut inside the line: the line is longer than the tail, so it is not trusted.
        assert_eq!(parse_sourcemap_ref(b"sourceMappingURL=x.map", false), None);
    }

    #[test]
    fn names_follow_sentry_cli() {
        assert_eq!(file_name("~/", "static/app.js"), "~/static/app.js");
        assert_eq!(file_name("~/static", "app.js"), "~/static/app.js");
        assert_eq!(file_name("", "app.js"), "app.js");
    }
}

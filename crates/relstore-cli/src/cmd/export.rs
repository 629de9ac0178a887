//! `relstore export`: write the files of one dist of a release back to a directory under their
//! names, checking every SHA-1, and refusing any name that would land outside the directory.
//!
//! Names map to paths the way they were made: `~/a/b.js` → `a/b.js`, `https://host/a/b.js` →
//! `host/a/b.js`, a leading `/` dropped, empty and `.` segments skipped. A `..` segment is refused
//! outright (even when it would stay inside), so no name can climb out of OUTDIR. Each file is
//! written to a temporary name beside its target and renamed into place only once its SHA-1
//! matches the record, so a damaged file never appears under its real name.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use relstore::{FileRecord, Store};
use sha1::Digest;

use super::common::{bytes_bar, human_bytes, list_all, open_store, require_release, ScopeArgs};

/// Arguments of `relstore export`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  relstore export --org acme --project web --release 1.0 out/
  relstore export -o acme -p web -r 1.0 --dist android out-android/

Names map to paths: `~/a/b.js` → `a/b.js`, `https://host/a/b.js` → `host/a/b.js`, a leading `/`
is dropped. Names with a `..` segment are refused and reported (exit code 1); the rest is written.
Existing files in OUTDIR with the same paths are replaced.")]
pub struct ExportArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// Export the files of this dist (default: the files without a dist).
    #[arg(long, short = 'd')]
    dist: Option<String>,
    /// Print a JSON summary instead of a line of text.
    #[arg(long)]
    json: bool,
    /// Directory to write into (created if missing).
    outdir: PathBuf,
}

/// The relative path a release file name exports to, or why it cannot be exported.
pub fn export_path(name: &str) -> Result<PathBuf, String> {
    let rest = if let Some(r) = name.strip_prefix("~/") {
        r
    } else if let Some((scheme, r)) = name.split_once("://") {
        let is_scheme = !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if is_scheme {
            r
        } else {
            name
        }
    } else {
        name
    };
    let mut path = PathBuf::new();
    for seg in rest.split('/') {
        match seg {
            "" | "." => continue,
            ".." => return Err("it contains a '..' segment that would leave OUTDIR".into()),
            s => path.push(s),
        }
    }
    if path.as_os_str().is_empty() {
        return Err("it has no file name after its prefix".into());
    }
    Ok(path)
}

/// `relstore export`.
pub fn run(data: &Path, a: &ExportArgs) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let store = open_store(data, false)?;
    require_release(&store, &a.scope)?;
    let dist = a.dist.as_deref().filter(|d| !d.is_empty());
    let files: Vec<FileRecord> = list_all(&store, &a.scope.scope(), &[], &[])?
        .into_iter()
        .filter(|f| f.key.dist.as_deref() == dist)
        .collect();
    if files.is_empty() {
        bail!(
            "{} has no files{}; `relstore ls {}` shows which dists it has",
            a.scope.describe(),
            match dist {
                Some(d) => format!(" in dist {d:?}"),
                None => " without a dist (pass --dist D for a dist)".into(),
            },
            a.scope.flags()
        );
    }
    std::fs::create_dir_all(&a.outdir)
        .with_context(|| format!("cannot create {}", a.outdir.display()))?;

    let mut refused = 0u64;
    let mut failed = 0u64;
    let mut plan: Vec<(&FileRecord, PathBuf)> = Vec::new();
    let mut taken: HashMap<PathBuf, &str> = HashMap::new();
    for f in &files {
        match export_path(&f.key.name) {
            Ok(p) => {
                if let Some(other) = taken.get(&p) {
                    failed += 1;
                    eprintln!(
                        "error: {:?} and {other:?} both map to {}; exported only the first",
                        f.key.name,
                        p.display()
                    );
                    continue;
                }
                taken.insert(p.clone(), &f.key.name);
                plan.push((f, p));
            }
            Err(why) => {
                refused += 1;
                eprintln!("refused: {:?}: {why}", f.key.name);
            }
        }
    }

    let total: u64 = plan.iter().map(|(f, _)| f.size).sum();
    let pb = bytes_bar(total, "export");
    let mut written = 0u64;
    let mut bytes = 0u64;
    for (i, (f, rel)) in plan.iter().enumerate() {
        pb.set_message(format!("{}/{} files", i + 1, plan.len()));
        let target = a.outdir.join(rel);
        match write_one(&store, f, &target, &pb) {
            Ok(()) => {
                written += 1;
                bytes += f.size;
            }
            Err(e) => {
                failed += 1;
                pb.suspend(|| eprintln!("error: {:?} → {}: {e:#}", f.key.name, target.display()));
            }
        }
    }
    pb.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    if a.json {
        let v = serde_json::json!({
            "files": written, "bytes": bytes, "refused": refused, "failed": failed,
            "outdir": a.outdir.display().to_string(), "elapsed_secs": secs,
        });
        println!("{v}");
    } else {
        println!(
            "exported {written} files ({}) to {} in {secs:.2}s, every SHA-1 verified; {refused} refused, {failed} failed",
            human_bytes(bytes),
            a.outdir.display()
        );
    }
    Ok(if refused == 0 && failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn write_one(
    store: &Store,
    f: &FileRecord,
    target: &Path,
    pb: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let dir = target.parent().context("no parent folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file_name = target
        .file_name()
        .context("no file name")?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{file_name}.relstore-tmp"));
    let result = (|| -> anyhow::Result<()> {
        let mut reader = store.open_file(f)?;
        let mut out = BufWriter::with_capacity(
            1 << 16,
            File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?,
        );
        let mut h = sha1::Sha1::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read_checked(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n])
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            pb.inc(n as u64);
        }
        out.flush()
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        let sha1 = relstore::Sha1::from_bytes(h.finalize().into());
        if sha1 != f.sha1 {
            bail!(
                "SHA-1 mismatch: read {sha1} but the record says {}; run `relstore verify`",
                f.sha1
            );
        }
        std::fs::rename(&tmp, target)
            .with_context(|| format!("cannot move the file into place at {}", target.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_paths_inside() {
        let ok = |n: &str| export_path(n).unwrap();
        assert_eq!(ok("~/a/b.js"), PathBuf::from("a/b.js"));
        assert_eq!(ok("https://host/a/b.js"), PathBuf::from("host/a/b.js"));
        assert_eq!(ok("/a/b.js"), PathBuf::from("a/b.js"));
        assert_eq!(ok("app://./x//y.js"), PathBuf::from("x/y.js"));
        assert_eq!(ok("a:b/c"), PathBuf::from("a:b/c"));
        for bad in [
            "~/../x.js",
            "../x",
            "https://h/../../x",
            "a/../b",
            "~/",
            "/",
        ] {
            assert!(export_path(bad).is_err(), "{bad}");
        }
    }
}

//! Store-wide subcommands: `stats`, `releases`, `prune`, `verify`, `gc` and `completions`.
//! They read or maintain the whole store rather than one file.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use relstore::{ReleaseScope, Store};
use serde::Serialize;

use super::common::{date, human_bytes, items_bar, list_all, open_store, print_table};

/// Arguments of `relstore stats`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  relstore stats
  relstore --data /var/lib/relstore stats --json --top 10

The dedup ratio is logical bytes (what was uploaded) over stored bytes (distinct chunks kept).
A release's unique bytes are the sizes of the contents no other release uses: roughly what
removing it and running `relstore gc` frees (less when chunks are shared across contents).")]
pub struct StatsArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// How many releases to list by unique bytes (0 skips the per-release scan).
    #[arg(long, default_value_t = 5, value_name = "N")]
    top: usize,
}

/// Arguments of `relstore releases`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  relstore releases --org acme
  relstore releases --org acme --project web --json
  relstore releases            # every organization")]
pub struct ReleasesArgs {
    /// Organization slug (default: every organization).
    #[arg(long, short = 'o')]
    org: Option<String>,
    /// Only releases linked to this project.
    #[arg(long, short = 'p', requires = "org")]
    project: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `relstore prune`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  relstore prune --org acme --older-than 90d --dry-run
  relstore prune --org acme --older-than '6months'

Removes every release of ORG created before now minus DURATION (all its files, in every project),
then runs gc to reclaim the space. --dry-run only lists what would go.")]
pub struct PruneArgs {
    /// Organization slug.
    #[arg(long, short = 'o')]
    org: String,
    /// Age cut-off: `90d`, `12h`, `2weeks`, `6months` (humantime syntax).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    older_than: Duration,
    /// List the releases that would be removed and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `relstore verify`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  relstore verify
  relstore --data /var/lib/relstore verify --json

Re-hashes every chunk and every content and checks every index entry. Exits with 1 and names
each damaged file when anything is wrong; changes nothing.")]
pub struct VerifyArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `relstore gc`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  relstore gc
  relstore gc --json

Removes chunks no file uses any more and compacts segments that are mostly dead. Uploads wait
while it runs.")]
pub struct GcArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `relstore completions`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  relstore completions bash > ~/.local/share/bash-completion/completions/relstore
  relstore completions zsh > ~/.zfunc/_relstore
  relstore completions fish > ~/.config/fish/completions/relstore.fish")]
pub struct CompletionsArgs {
    /// Shell to generate completions for.
    shell: clap_complete::Shell,
}

#[derive(Serialize)]
struct TopRelease {
    org: String,
    version: String,
    files: u64,
    bytes: u64,
    unique_bytes: u64,
}

/// `relstore stats`.
pub fn stats(data: &Path, a: &StatsArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(data, false)?;
    let s = store.stats()?;
    let ratio = if s.stored_bytes == 0 {
        1.0
    } else {
        s.logical_bytes as f64 / s.stored_bytes as f64
    };
    let top = if a.top > 0 {
        top_releases(&store, a.top)?
    } else {
        Vec::new()
    };
    if a.json {
        let mut v = serde_json::to_value(s)?;
        v["dedup_ratio"] = serde_json::json!(ratio);
        v["top_releases"] = serde_json::to_value(&top)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("files:         {}", s.files);
    println!("contents:      {}", s.contents);
    println!("chunks:        {}", s.chunks);
    println!(
        "logical bytes: {} ({})",
        s.logical_bytes,
        human_bytes(s.logical_bytes)
    );
    println!(
        "stored bytes:  {} ({})",
        s.stored_bytes,
        human_bytes(s.stored_bytes)
    );
    println!(
        "disk bytes:    {} ({})",
        s.disk_bytes,
        human_bytes(s.disk_bytes)
    );
    println!("dedup ratio:   {ratio:.2}x");
    if !top.is_empty() {
        println!();
        println!("top releases by unique bytes:");
        let rows: Vec<Vec<String>> = top
            .iter()
            .map(|t| {
                vec![
                    human_bytes(t.unique_bytes),
                    human_bytes(t.bytes),
                    t.files.to_string(),
                    t.org.clone(),
                    t.version.clone(),
                ]
            })
            .collect();
        print_table(&["UNIQUE", "SIZE", "FILES", "ORG", "VERSION"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// Scans every file of every release and ranks releases by the bytes of contents only they use.
fn top_releases(store: &Store, n: usize) -> anyhow::Result<Vec<TopRelease>> {
    // content id -> (size, the one release using it, or None once a second one does)
    let mut owner: HashMap<relstore::ContentId, (u64, Option<usize>)> = HashMap::new();
    let mut rels: Vec<TopRelease> = Vec::new();
    for org in store.orgs()? {
        for r in store.releases(&org, None)? {
            let idx = rels.len();
            let mut scopes = vec![ReleaseScope::org_wide(&org, &r.version)];
            scopes.extend(
                r.projects
                    .iter()
                    .map(|p| ReleaseScope::project(&org, &p.slug, &r.version)),
            );
            for scope in &scopes {
                for f in list_all(store, scope, &[], &[])? {
                    owner
                        .entry(f.content_id)
                        .and_modify(|e| {
                            if e.1 != Some(idx) {
                                e.1 = None;
                            }
                        })
                        .or_insert((f.size, Some(idx)));
                }
            }
            rels.push(TopRelease {
                org: org.clone(),
                version: r.version,
                files: r.file_count,
                bytes: r.file_bytes,
                unique_bytes: 0,
            });
        }
    }
    for (size, o) in owner.values() {
        if let Some(i) = o {
            rels[*i].unique_bytes += size;
        }
    }
    rels.sort_by(|a, b| {
        b.unique_bytes
            .cmp(&a.unique_bytes)
            .then_with(|| b.bytes.cmp(&a.bytes))
    });
    rels.truncate(n);
    Ok(rels)
}

#[derive(Serialize)]
struct ReleaseRow {
    org: String,
    version: String,
    #[serde(rename = "dateCreated")]
    date_created: String,
    projects: Vec<String>,
    files: u64,
    bytes: u64,
}

/// `relstore releases`.
pub fn releases(data: &Path, a: &ReleasesArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(data, false)?;
    let orgs = match &a.org {
        Some(o) => vec![o.clone()],
        None => store.orgs()?,
    };
    let mut rows = Vec::new();
    for org in &orgs {
        for r in store.releases(org, a.project.as_deref())? {
            rows.push(ReleaseRow {
                org: r.org,
                version: r.version,
                date_created: relstore_server::json::rfc3339_ms(r.created_ms),
                projects: r.projects.into_iter().map(|p| p.slug).collect(),
                files: r.file_count,
                bytes: r.file_bytes,
            });
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        match &a.org {
            Some(o) => eprintln!("organization {o:?} has no releases"),
            None => eprintln!("the store has no releases"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.org.clone(),
                r.version.clone(),
                r.date_created.clone(),
                r.files.to_string(),
                human_bytes(r.bytes),
                r.projects.join(","),
            ]
        })
        .collect();
    print_table(
        &["ORG", "VERSION", "CREATED", "FILES", "SIZE", "PROJECTS"],
        &table,
    );
    Ok(ExitCode::SUCCESS)
}

/// `relstore prune`.
pub fn prune(data: &Path, a: &PruneArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(data, false)?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let cutoff = now_ms.saturating_sub(a.older_than.as_millis() as i64);
    let old: Vec<relstore::Release> = store
        .releases(&a.org, None)?
        .into_iter()
        .filter(|r| r.created_ms < cutoff)
        .collect();
    let files: u64 = old.iter().map(|r| r.file_count).sum();
    let bytes: u64 = old.iter().map(|r| r.file_bytes).sum();
    if !a.json {
        for r in &old {
            println!(
                "{} release {} (created {}, {} files, {})",
                if a.dry_run {
                    "would remove"
                } else {
                    "removing"
                },
                r.version,
                date(r.created_ms),
                r.file_count,
                human_bytes(r.file_bytes)
            );
        }
    }
    if a.dry_run {
        if a.json {
            let v = serde_json::json!({
                "dry_run": true,
                "cutoff": relstore_server::json::rfc3339_ms(cutoff),
                "releases": old.iter().map(|r| &r.version).collect::<Vec<_>>(),
                "files": files,
                "bytes": bytes,
            });
            println!("{v}");
        } else {
            println!(
                "dry run: {} of {}'s releases created before {} would be removed ({files} files, {}); nothing changed",
                old.len(),
                a.org,
                date(cutoff),
                human_bytes(bytes)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    for r in &old {
        store
            .delete_release(&a.org, &r.version)
            .with_context(|| format!("cannot remove release {} of {}", r.version, a.org))?;
    }
    let gc = run_gc(&store)?;
    if a.json {
        let v = serde_json::json!({
            "dry_run": false,
            "cutoff": relstore_server::json::rfc3339_ms(cutoff),
            "releases": old.iter().map(|r| &r.version).collect::<Vec<_>>(),
            "files": files,
            "bytes": bytes,
            "gc": gc,
        });
        println!("{v}");
    } else {
        println!(
            "removed {} releases ({files} files, {}); gc reclaimed {} on disk",
            old.len(),
            human_bytes(bytes),
            human_bytes(gc.reclaimed())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Drives a progress bar from the library's progress callbacks (one bar, reset per phase).
fn with_progress<T>(f: impl FnOnce(&mut dyn FnMut(relstore::Progress)) -> T) -> T {
    let pb = items_bar();
    let mut phase = "";
    let mut cb = |p: relstore::Progress| {
        if p.phase != phase {
            phase = p.phase;
            pb.reset();
            pb.set_message(p.phase);
        }
        pb.set_length(p.total);
        pb.set_position(p.done);
    };
    let out = f(&mut cb);
    pb.finish_and_clear();
    out
}

fn run_gc(store: &Store) -> anyhow::Result<relstore::GcReport> {
    with_progress(|cb| store.gc(cb)).context("gc failed")
}

/// `relstore verify`.
pub fn verify(data: &Path, a: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(data, false)?;
    let report = with_progress(|cb| store.verify(cb)).context("verify could not run")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    if report.is_clean() {
        return Ok(ExitCode::SUCCESS);
    }
    for f in &report.damaged_files {
        eprintln!("damaged file: {f}");
    }
    eprintln!(
        "error: the store has {} fault(s); damaged files must be uploaded again (remove them \
         with `relstore rm`, then upload or ingest them)",
        report.faults.len()
    );
    Ok(ExitCode::from(1))
}

/// `relstore gc`.
pub fn gc(data: &Path, a: &GcArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(data, false)?;
    let report = run_gc(&store)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `relstore completions`.
pub fn completions(a: &CompletionsArgs, mut cmd: clap::Command) -> anyhow::Result<ExitCode> {
    let name = cmd.get_name().to_string();
    clap_complete::generate(a.shell, &mut cmd, name, &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

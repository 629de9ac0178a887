//! What the offline subcommands share: the arguments that address a release, opening the store
//! with messages a person can act on, listing a scope page by page, progress bars that appear only
//! on a terminal, and small formatting helpers for tables.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use relstore::{FileKey, FileRecord, ListQuery, ReleaseScope, Store, StoreOptions};

/// Addresses the files of one release: `--org`, optional `--project`, `--release`.
#[derive(clap::Args, Debug, Clone)]
pub struct ScopeArgs {
    /// Organization slug.
    #[arg(long, short = 'o', value_name = "ORG")]
    pub org: String,
    /// Project slug. Omit it to address the organization-wide files of the release (those
    /// uploaded at the organization level, not under a project).
    #[arg(long, short = 'p', value_name = "PROJECT")]
    pub project: Option<String>,
    /// Release version.
    #[arg(long, short = 'r', value_name = "VERSION")]
    pub release: String,
}

impl ScopeArgs {
    /// The scope these arguments name.
    pub fn scope(&self) -> ReleaseScope {
        match &self.project {
            Some(p) => ReleaseScope::project(&self.org, p, &self.release),
            None => ReleaseScope::org_wide(&self.org, &self.release),
        }
    }

    /// The key of `name` in this scope.
    pub fn key(&self, name: &str, dist: Option<&str>) -> FileKey {
        self.scope().file(name, dist)
    }

    /// `acme/web@1.0` or `acme (organization-wide)@1.0`, for messages.
    pub fn describe(&self) -> String {
        describe_scope(&self.scope())
    }

    /// The `--org .. --project .. --release ..` part of a command line, for hints.
    pub fn flags(&self) -> String {
        let mut s = format!("--org {} ", shell_quote(&self.org));
        if let Some(p) = &self.project {
            s.push_str(&format!("--project {} ", shell_quote(p)));
        }
        s.push_str(&format!("--release {}", shell_quote(&self.release)));
        s
    }
}

/// `acme/web@1.0` (project scope) or `acme/(org-wide)@1.0`.
pub fn describe_scope(scope: &ReleaseScope) -> String {
    format!(
        "{}/{}@{}",
        scope.org,
        scope.project.as_deref().unwrap_or("(org-wide)"),
        scope.release
    )
}

/// Quotes `s` for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.,/:@+=~".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Opens the store at `data`. With `create == false` a missing directory is an error that says
/// how to point at the right one, instead of silently creating an empty store to read from.
pub fn open_store(data: &Path, create: bool) -> anyhow::Result<Store> {
    open_store_with(StoreOptions::new(data), create)
}

/// [`open_store`] with explicit options.
pub fn open_store_with(opts: StoreOptions, create: bool) -> anyhow::Result<Store> {
    let data = opts.path.clone();
    if !create && !data.join("FORMAT").exists() {
        bail!(
            "no relstore store at {}: pass --data DIR or set RELSTORE_DATA to the store directory \
             (`relstore upload` or `relstore ingest` creates one)",
            data.display()
        );
    }
    match Store::open(opts) {
        // The library names the held lock; which flag picks another store is the CLI's to say.
        Err(e @ relstore::Error::Locked { .. }) => Err(anyhow::Error::new(e).context(format!(
            "cannot open the store at {}; stop the process that holds it or use another --data \
             directory",
            data.display()
        ))),
        r => r.with_context(|| format!("cannot open the store at {}", data.display())),
    }
}

/// Fails with a helpful message when the release of `scope` does not exist (or, for a project
/// scope, is not linked to the project).
pub fn require_release(store: &Store, args: &ScopeArgs) -> anyhow::Result<relstore::Release> {
    let Some(release) = store.release(&args.org, &args.release)? else {
        bail!(
            "release {:?} of organization {:?} does not exist; `relstore releases --org {}` lists \
             the releases",
            args.release,
            args.org,
            shell_quote(&args.org)
        );
    };
    if let Some(p) = &args.project {
        if !release.projects.iter().any(|x| &x.slug == p) {
            let linked: Vec<&str> = release.projects.iter().map(|x| x.slug.as_str()).collect();
            bail!(
                "release {:?} of {:?} is not linked to project {:?} (linked: {}); omit --project \
                 for the organization-wide files",
                args.release,
                args.org,
                p,
                if linked.is_empty() {
                    "none".to_string()
                } else {
                    linked.join(", ")
                }
            );
        }
    }
    Ok(release)
}

/// Every file of `scope` matching `queries`/`checksums`, in name order, all pages.
pub fn list_all(
    store: &Store,
    scope: &ReleaseScope,
    queries: &[String],
    checksums: &[String],
) -> anyhow::Result<Vec<FileRecord>> {
    let mut out = Vec::new();
    let mut q = ListQuery {
        queries: queries.to_vec(),
        checksums: checksums.to_vec(),
        cursor: None,
        limit: 1000,
    };
    loop {
        let page = store.list_files(scope, &q)?;
        out.extend(page.items);
        match page.next {
            Some(n) => q.cursor = Some(n),
            None => return Ok(out),
        }
    }
}

/// Whether progress should be drawn: only when stderr is a terminal.
pub fn interactive() -> bool {
    std::io::stderr().is_terminal()
}

/// A byte-counting progress bar with files in its message, hidden unless stderr is a terminal.
pub fn bytes_bar(total_bytes: u64, verb: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total_bytes), draw_target());
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{verb} {{msg}} [{{wide_bar}}] {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} ETA {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb
}

/// A progress bar for a phase of `total` items, hidden unless stderr is a terminal.
pub fn items_bar() -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(0), draw_target());
    pb.set_style(
        ProgressStyle::with_template("{msg:>10} [{wide_bar}] {pos}/{len} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb
}

fn draw_target() -> ProgressDrawTarget {
    if interactive() {
        ProgressDrawTarget::stderr_with_hz(10)
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}

/// Prints rows as a left-aligned table (the last column is not padded).
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    use std::io::Write;
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        let cells: Vec<&str> = cells.collect();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        // A closed pipe (`| head`) is not an error worth reporting.
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
}

/// `2024-05-01 12:00:00Z`-style UTC time of milliseconds since the epoch.
pub fn date(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Parses `-H 'Key:Value'` as the Sentry API does: split at the first `:`, value trimmed.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.trim().to_string())),
        Some(_) => Err(format!(
            "header {s:?} has an empty name; use -H 'Key:Value'"
        )),
        None => Err(format!("header {s:?} has no ':'; use -H 'Key:Value'")),
    }
}

//! The single-file subcommands: `upload`, `cat`, `ls`, `rm` and `info`. Each opens the store,
//! does one thing through the library's public API and prints either for people or, with
//! `--json`, the Sentry API's file JSON.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use relstore::{Error, FileRecord};

use super::common::{
    date, human_bytes, list_all, open_store, parse_header, print_table, require_release,
    shell_quote, ScopeArgs,
};

/// Arguments of `relstore upload`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  relstore upload --org acme --project web --release 1.0 --name '~/static/app.js' \\
      -H 'Content-Type:text/javascript' -H 'Sourcemap:app.js.map' dist/app.js
  printf 'print \"Hello World!\"' | relstore upload -o acme -p web -r 1.0 --name /demo/hello.py -

The release is created (and linked to --project) when missing. Only the headers given with -H are
stored. Without --project the file goes to the organization-wide scope of the release.")]
pub struct UploadArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// Distribution (build variant) of the file.
    #[arg(long, short = 'd')]
    dist: Option<String>,
    /// Name of the file in the release, usually its URL (`~/static/app.js`). Default: FILE's
    /// file name.
    #[arg(long, short = 'n')]
    name: Option<String>,
    /// A header to store with the file, `Key:Value` (repeatable). The value is trimmed.
    #[arg(short = 'H', long = "header", value_name = "KEY:VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Replace a file of the same name and dist instead of failing.
    #[arg(long)]
    overwrite: bool,
    /// The file to upload; `-` reads standard input (then --name is required).
    file: PathBuf,
}

/// Arguments of `relstore cat`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  relstore cat --org acme --project web --release 1.0 '~/static/app.js' > app.js
  relstore cat -o acme -p web -r 1.0 --dist android '~/index.bundle' | head")]
pub struct CatArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// Distribution of the file (none: the file without a dist).
    #[arg(long, short = 'd')]
    dist: Option<String>,
    /// Name of the file.
    name: String,
}

/// Arguments of `relstore ls`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  relstore ls --org acme --project web --release 1.0
  relstore ls -o acme -p web -r 1.0 --long --query .map
  relstore ls -o acme -p web -r 1.0 --checksum 7dc0876d778eae1093028f7bf368d0b95a53ec1a --json")]
pub struct LsArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// Only files of this distribution (default: every dist, and files without one).
    #[arg(long, short = 'd')]
    dist: Option<String>,
    /// Only names containing this text, case-insensitively (repeatable: any of them).
    #[arg(long, short = 'q', value_name = "TEXT")]
    query: Vec<String>,
    /// Only files with this SHA-1 (repeatable: any of them).
    #[arg(long, value_name = "SHA1")]
    checksum: Vec<String>,
    /// Also show SHA-1, creation date and headers.
    #[arg(long, short = 'l')]
    long: bool,
    /// Print a JSON array of file objects (the Sentry API's shape) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `relstore rm`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  relstore rm --org acme --project web --release 1.0 '~/static/app.js' '~/static/app.js.map'
  relstore rm -o acme -r 1.0 --release-all

Removing files frees their space only when no other file shares it; `relstore gc` reclaims it.")]
pub struct RmArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// Distribution of the files (none: the files without a dist).
    #[arg(long, short = 'd', conflicts_with = "release_all")]
    dist: Option<String>,
    /// Remove the whole release: every file of every project and the release itself
    /// (--project is then ignored).
    #[arg(long, conflicts_with = "names")]
    release_all: bool,
    /// Names of the files to remove.
    #[arg(required_unless_present = "release_all")]
    names: Vec<String>,
}

/// Arguments of `relstore info`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  relstore info --org acme --project web --release 1.0 '~/static/app.js'
  relstore info -o acme -p web -r 1.0 --dist android '~/index.bundle' --json")]
pub struct InfoArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// Distribution of the file (none: the file without a dist).
    #[arg(long, short = 'd')]
    dist: Option<String>,
    /// Print the file JSON (the Sentry API's shape plus `contentId`).
    #[arg(long)]
    json: bool,
    /// Name of the file.
    name: String,
}

/// `relstore upload`.
pub fn upload(data: &Path, a: &UploadArgs) -> anyhow::Result<ExitCode> {
    let name = match (&a.name, a.file.as_os_str() == "-") {
        (Some(n), _) => n.clone(),
        (None, true) => bail!("reading standard input needs --name NAME"),
        (None, false) => a
            .file
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .with_context(|| {
                format!(
                    "cannot derive a name from {}; pass --name",
                    a.file.display()
                )
            })?,
    };
    let mut input: Box<dyn Read> = if a.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(&a.file)
                .with_context(|| format!("cannot open {}", a.file.display()))?,
        )
    };
    let store = open_store(data, true)?;
    let projects: Vec<&str> = a.scope.project.iter().map(String::as_str).collect();
    store
        .create_release(&a.scope.org, &a.scope.release, &projects)
        .with_context(|| format!("cannot create release {}", a.scope.describe()))?;
    let key = a.scope.key(&name, a.dist.as_deref());
    let file = match store.upload(&key, &a.headers, &mut input, a.overwrite) {
        Ok(f) => f,
        Err(Error::AlreadyExists { .. }) => bail!(
            "{name:?} already exists in {}{}; pass --overwrite to replace it",
            a.scope.describe(),
            dist_note(a.dist.as_deref())
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot upload {}", a.file.display())),
    };
    println!(
        "{}",
        serde_json::to_string(&relstore_server::json::FileJson(&file))?
    );
    Ok(ExitCode::SUCCESS)
}

/// `relstore cat`.
pub fn cat(data: &Path, a: &CatArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(data, false)?;
    let file = find_file(&store, &a.scope, a.dist.as_deref(), &a.name)?;
    let mut reader = store.open_file(&file)?;
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // `read_checked` keeps the store's typed error (which chunk is damaged).
        let n = reader
            .read_checked(&mut buf)
            .with_context(|| format!("cannot read {} from the store", a.name))?;
        if n == 0 {
            break;
        }
        if let Err(e) = out.write_all(&buf[..n]) {
            return pipe_result(e);
        }
    }
    if let Err(e) = out.flush() {
        return pipe_result(e);
    }
    Ok(ExitCode::SUCCESS)
}

/// A reader that went away (`| head`) is a normal end, anything else an error.
fn pipe_result(e: std::io::Error) -> anyhow::Result<ExitCode> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(e).context("cannot write to standard output")
    }
}

/// `relstore ls`.
pub fn ls(data: &Path, a: &LsArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(data, false)?;
    require_release(&store, &a.scope)?;
    let mut files =
        list_all(&store, &a.scope.scope(), &a.query, &a.checksum).context("cannot list files")?;
    if let Some(d) = a.dist.as_deref().filter(|d| !d.is_empty()) {
        files.retain(|f| f.key.dist.as_deref() == Some(d));
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&relstore_server::json::files(&files))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if files.is_empty() {
        eprintln!("no matching files in {}", a.scope.describe());
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = files
        .iter()
        .map(|f| {
            let mut r = vec![
                human_bytes(f.size),
                f.key.dist.clone().unwrap_or_else(|| "-".into()),
            ];
            if a.long {
                r.push(f.sha1_hex());
                r.push(date(f.created_ms));
                r.push(f.key.name.clone());
                r.push(headers_text(f));
            } else {
                r.push(f.key.name.clone());
            }
            r
        })
        .collect();
    if a.long {
        print_table(
            &["SIZE", "DIST", "SHA1", "CREATED", "NAME", "HEADERS"],
            &rows,
        );
    } else {
        print_table(&["SIZE", "DIST", "NAME"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

fn headers_text(f: &FileRecord) -> String {
    f.headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `relstore rm`.
pub fn rm(data: &Path, a: &RmArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(data, false)?;
    if a.release_all {
        let n = match store.delete_release(&a.scope.org, &a.scope.release) {
            Ok(n) => n,
            Err(Error::NotFound { .. }) => bail!(
                "release {:?} of organization {:?} does not exist; `relstore releases --org {}` \
                 lists the releases",
                a.scope.release,
                a.scope.org,
                shell_quote(&a.scope.org)
            ),
            Err(e) => return Err(e.into()),
        };
        println!(
            "removed release {} of {} ({n} files); run `relstore gc` to reclaim the space",
            a.scope.release, a.scope.org
        );
        return Ok(ExitCode::SUCCESS);
    }
    require_release(&store, &a.scope)?;
    let mut missing = 0;
    for name in &a.names {
        let key = a.scope.key(name, a.dist.as_deref());
        let removed = match store.file(&key)? {
            Some(f) => store.delete_file(f.id)?,
            None => None,
        };
        match removed {
            Some(f) => println!("removed {} ({})", f.key.name, human_bytes(f.size)),
            None => {
                missing += 1;
                eprintln!(
                    "error: no file {name:?} in {}{}; `relstore ls {}` lists the files",
                    a.scope.describe(),
                    dist_note(a.dist.as_deref()),
                    a.scope.flags()
                );
            }
        }
    }
    Ok(if missing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `relstore info`.
pub fn info(data: &Path, a: &InfoArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(data, false)?;
    let f = find_file(&store, &a.scope, a.dist.as_deref(), &a.name)?;
    if a.json {
        let mut v = serde_json::to_value(relstore_server::json::FileJson(&f))?;
        v["contentId"] = f.content_id.to_string().into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("name:     {}", f.key.name);
    println!("dist:     {}", f.key.dist.as_deref().unwrap_or("(none)"));
    println!("release:  {}", f.key.release);
    println!("org:      {}", f.key.org);
    println!(
        "project:  {}",
        f.key.project.as_deref().unwrap_or("(organization-wide)")
    );
    println!("id:       {}", f.id);
    println!("size:     {} ({} bytes)", human_bytes(f.size), f.size);
    println!("sha1:     {}", f.sha1_hex());
    println!("content:  {} (BLAKE3)", f.content_id);
    println!(
        "created:  {}",
        relstore_server::json::rfc3339_ms(f.created_ms)
    );
    if f.headers.is_empty() {
        println!("headers:  (none)");
    } else {
        println!("headers:");
        for (k, v) in &f.headers {
            println!("  {k}: {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn find_file(
    store: &relstore::Store,
    scope: &ScopeArgs,
    dist: Option<&str>,
    name: &str,
) -> anyhow::Result<FileRecord> {
    if let Some(f) = store.file(&scope.key(name, dist))? {
        return Ok(f);
    }
    require_release(store, scope)?;
    bail!(
        "no file {name:?} in {}{}; `relstore ls {}` lists the files",
        scope.describe(),
        dist_note(dist),
        scope.flags()
    )
}

fn dist_note(dist: Option<&str>) -> String {
    match dist.filter(|d| !d.is_empty()) {
        Some(d) => format!(" (dist {d:?})"),
        None => " (no dist)".to_string(),
    }
}

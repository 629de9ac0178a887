//! The `relstore` command-line tool: serve the Sentry release-files API, and index, inspect,
//! verify and clean a store offline.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// relstore: a content-addressed store for release artifacts (source maps, minified JS, debug files).
#[derive(Parser, Debug)]
#[command(name = "relstore", version, about, long_about = None)]
#[command(after_help = AFTER_HELP)]
pub struct Cli {
    /// Store directory.
    #[arg(
        long,
        global = true,
        env = "RELSTORE_DATA",
        default_value = "./relstore-data"
    )]
    pub data: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the Sentry release-files API over HTTP.
    #[command(
        after_help = "Examples:\n  relstore serve\n  relstore --data /srv/relstore serve --listen 0.0.0.0:9000 --public-url https://artifacts.example.com\n  relstore serve --max-upload-bytes 2147483648 --legacy-uploads"
    )]
    Serve(cmd::serve::ServeArgs),
    /// Manage API tokens.
    #[command(
        subcommand,
        after_help = "Examples:\n  TOKEN=$(relstore token create --org acme)\n  relstore token create --org acme --scope project:read --label dashboards\n  relstore token list --json\n  relstore token revoke 1a2b3c4d5e6f7081"
    )]
    Token(cmd::token::TokenCmd),
    /// Store one file in a release (created if missing) and print its file JSON.
    Upload(cmd::files::UploadArgs),
    /// Write one file's bytes to standard output.
    Cat(cmd::files::CatArgs),
    /// List the files of a release.
    Ls(cmd::files::LsArgs),
    /// Remove files, or a whole release.
    Rm(cmd::files::RmArgs),
    /// Print one file's record.
    Info(cmd::files::InfoArgs),
    /// Store every file under a directory as release files (`~/path`), in parallel.
    Ingest(cmd::ingest::IngestArgs),
    /// Write the files of a release back to a directory, verifying each SHA-1.
    Export(cmd::export::ExportArgs),
    /// List releases with their file counts and sizes.
    Releases(cmd::admin::ReleasesArgs),
    /// Show store-wide counts, the dedup ratio and the releases using the most unique bytes.
    Stats(cmd::admin::StatsArgs),
    /// Remove an organization's releases older than a cut-off, then reclaim their space.
    Prune(cmd::admin::PruneArgs),
    /// Re-hash everything in the store and report damage.
    Verify(cmd::admin::VerifyArgs),
    /// Reclaim the space of deleted files.
    Gc(cmd::admin::GcArgs),
    /// Print shell completions.
    Completions(cmd::admin::CompletionsArgs),
}

const AFTER_HELP: &str = "\
Examples:
  relstore upload --org acme --project web --release 1.0 --name '~/app.js' dist/app.js
  relstore ingest --org acme --project web --release 1.0 dist/
  RELSTORE_DATA=/var/lib/relstore relstore stats

Exit codes: 0 success, 1 failure (the message on stderr says what and what to do), 2 usage error.
`relstore COMMAND --help` shows each command's options and examples.";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(args) => cmd::serve::run(&cli.data, args),
        Command::Token(c) => cmd::token::run(&cli.data, c),
        Command::Upload(a) => cmd::files::upload(&cli.data, a),
        Command::Cat(a) => cmd::files::cat(&cli.data, a),
        Command::Ls(a) => cmd::files::ls(&cli.data, a),
        Command::Rm(a) => cmd::files::rm(&cli.data, a),
        Command::Info(a) => cmd::files::info(&cli.data, a),
        Command::Ingest(a) => cmd::ingest::run(&cli.data, a),
        Command::Export(a) => cmd::export::run(&cli.data, a),
        Command::Releases(a) => cmd::admin::releases(&cli.data, a),
        Command::Stats(a) => cmd::admin::stats(&cli.data, a),
        Command::Prune(a) => cmd::admin::prune(&cli.data, a),
        Command::Verify(a) => cmd::admin::verify(&cli.data, a),
        Command::Gc(a) => cmd::admin::gc(&cli.data, a),
        Command::Completions(a) => {
            cmd::admin::completions(a, <Cli as clap::CommandFactory>::command())
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

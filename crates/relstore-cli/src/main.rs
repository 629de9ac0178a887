//! The `relstore` command-line tool: serve the Sentry release-files API, and index, inspect,
//! verify and clean a store offline.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// relstore: a content-addressed store for release artifacts (source maps, minified JS, debug files).
#[derive(Parser, Debug)]
#[command(name = "relstore", version, about, long_about = None)]
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
    Serve(cmd::serve::ServeArgs),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(cmd::token::TokenCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(args) => cmd::serve::run(&cli.data, args),
        Command::Token(c) => cmd::token::run(&cli.data, c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

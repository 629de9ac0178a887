//! `relstore token create|list|revoke`.

use std::path::Path;
use std::process::ExitCode;

/// Token subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token and print it alone on stdout.
    Create {
        /// Organization the token belongs to.
        #[arg(long)]
        org: String,
        /// Scope to grant (repeatable; all scopes when none is given).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
}

/// Runs a token subcommand.
pub fn run(data: &Path, cmd: &TokenCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCmd::Create { org, scopes } => {
            let store = relstore::Store::open_path(data)?;
            let (secret, _) = store.create_token(org, scopes, "")?;
            println!("{secret}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

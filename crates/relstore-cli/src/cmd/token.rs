//! `relstore token create|list|revoke`: API tokens for the server. A token's secret is printed
//! once, at creation; the store keeps only its hash.

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
        /// Scope to grant (repeatable; all scopes when none is given): org:ci, project:read,
        /// project:write, project:admin, project:releases.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Free-form label shown by `token list`.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List tokens (id, organization, scopes, creation time, label); never their secrets.
    List {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke the token with this id (as shown by `token list`).
    Revoke {
        /// The token id.
        id: String,
    },
}

/// Runs a token subcommand.
pub fn run(data: &Path, cmd: &TokenCmd) -> anyhow::Result<ExitCode> {
    let store = relstore::Store::open_path(data)?;
    match cmd {
        TokenCmd::Create { org, scopes, label } => {
            let (secret, _) = store.create_token(org, scopes, label)?;
            println!("{secret}");
        }
        TokenCmd::List { json } => {
            for t in store.tokens()? {
                if *json {
                    println!("{}", serde_json::to_string(&t)?);
                } else {
                    println!(
                        "{}  {}  {}  {}  {}",
                        t.id,
                        t.org,
                        t.scopes.join(","),
                        relstore_server::json::rfc3339_ms(t.created_ms),
                        t.label
                    );
                }
            }
        }
        TokenCmd::Revoke { id } => {
            if !store.revoke_token(id)? {
                anyhow::bail!("no token has the id {id}; `relstore token list` shows the ids");
            }
            eprintln!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

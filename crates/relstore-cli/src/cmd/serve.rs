//! `relstore serve`.

use std::path::Path;
use std::process::ExitCode;

/// Arguments of `relstore serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: String,
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(_data: &Path, _args: &ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("serve is not implemented yet")
}

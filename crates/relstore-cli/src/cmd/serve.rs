//! `relstore serve`: runs the Sentry release-files API over the store until SIGTERM or SIGINT.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `relstore serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: String,
    /// Largest accepted file upload in bytes (larger ones get 413).
    #[arg(long, default_value_t = 1 << 30)]
    pub max_upload_bytes: u64,
    /// Public base URL (`https://relstore.example.com`) for absolute links, when clients reach
    /// the server through a proxy; by default links use the request's Host.
    #[arg(long)]
    pub public_url: Option<String>,
    /// Answer 404 at `GET chunk-upload`, so clients that can only upload file by file fall back
    /// to one request per file (sentry-cli 2.x does).
    #[arg(long)]
    pub legacy_uploads: bool,
}

/// Runs the server until SIGTERM or SIGINT, then finishes the requests in flight and exits.
pub fn run(data: &Path, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    relstore_server::init_logging();
    let store = relstore::Store::open(
        relstore::StoreOptions::new(data).max_upload_bytes(args.max_upload_bytes),
    )
    .with_context(|| format!("open store {}", data.display()))?;
    let config = relstore_server::Config {
        max_upload_bytes: args.max_upload_bytes,
        public_url: args.public_url.clone(),
        legacy_uploads: args.legacy_uploads,
        ..Default::default()
    };
    let state = relstore_server::AppState::new(store, config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listen on {}", args.listen))?;
        let addr = listener.local_addr().context("read the bound address")?;
        println!(
            "relstore listening on http://{addr} (data {})",
            data.display()
        );
        relstore_server::serve(listener, state, relstore_server::shutdown_signal())
            .await
            .context("serve")
    })?;
    // The store (dropped with the state) syncs on close.
    Ok(ExitCode::SUCCESS)
}

//! One module per subcommand.

pub mod admin;
pub mod common;
pub mod export;
pub mod files;
pub mod ingest;
pub mod serve;
pub mod token;

//! The `relstore` command-line tool's integration tests, one binary (one link) with a module per
//! command family: each test runs the real binary against a temporary store.

mod common;

mod files;
mod ingest;

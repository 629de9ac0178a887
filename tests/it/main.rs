//! The relstore library's integration tests, one binary (one link) with a module per scenario.
//! `tests/kill.rs` and `tests/streaming_memory.rs` are binaries of their own: the first re-execs
//! itself as the process it kills, the second measures its own process's memory.

mod common;

mod api;
mod assemble;
mod collisions;
mod corruption;
mod dedup;
mod faults;
mod format_docs;
mod garbage;
mod gc;
mod layers;
mod model;
mod old_store;

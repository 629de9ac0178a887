//! Comparison harness (placeholder).
fn main() {}

//! Contents: the streaming ingest pass that turns an upload into chunks and hashes, and the
//! reader that turns a content's chunk list back into bytes.

pub mod ingest;
mod reader;

pub use ingest::ChunkingParams;
pub use reader::ContentReader;

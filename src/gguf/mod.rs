//! GGUF v2/v3: a hardened, zero-copy reader over a memory map, and a streaming writer.
//!
//! The reader parses the header, metadata and tensor infos into small index structures that point
//! into the mapped bytes; strings, arrays and tensor data are borrowed views. Every length, count
//! and offset is checked against the bytes left with checked u64 arithmetic, and no allocation is
//! sized by a count read from the file before the bytes backing it are known to exist.

mod error;
mod reader;
mod value;
mod writer;

pub use error::GgufError;
pub use reader::{Gguf, TensorInfo, TensorView};
pub use value::{ArrayRef, OwnedValue, Value, ValueType};
pub use writer::{GgufWriter, TensorSpec};

/// "GGUF" as the first four bytes of the file.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Default `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Longest string (key or value) accepted: 256 MiB. Chat templates and tokens are far smaller.
pub const MAX_STRING_LEN: u64 = 256 << 20;
/// Longest key accepted.
pub const MAX_KEY_LEN: u64 = 64 << 10;
/// Deepest nesting of arrays inside arrays.
pub const MAX_ARRAY_DEPTH: u32 = 4;
/// Most dimensions a tensor may have (ggml's GGML_MAX_DIMS).
pub const MAX_DIMS: u32 = 4;

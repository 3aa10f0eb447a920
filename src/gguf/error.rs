use ferrolm_kernels::GgmlType;

use super::value::ValueType;

/// Everything that can be wrong with a GGUF file, with the facts needed to find the problem.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot open {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not a GGUF file: magic bytes are {found:02x?}, expected \"GGUF\"")]
    BadMagic { found: Vec<u8> },
    #[error("unsupported GGUF version {0} (supported: 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("truncated file: {what} at offset {offset} needs {need} bytes but only {have} remain")]
    Truncated {
        what: &'static str,
        offset: u64,
        need: u64,
        have: u64,
    },
    #[error("{what} at offset {offset} has length {len}, over the limit of {limit}")]
    TooLong {
        what: &'static str,
        offset: u64,
        len: u64,
        limit: u64,
    },
    #[error("{what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { what: &'static str, offset: u64 },
    #[error("unknown metadata value type {type_id} for key '{key}'")]
    UnknownValueType { key: String, type_id: u32 },
    #[error("metadata key '{key}': arrays nested deeper than {limit}")]
    TooDeep { key: String, limit: u32 },
    #[error("duplicate metadata key '{0}'")]
    DuplicateKey(String),
    #[error("general.alignment = {0} is not a non-zero power of two")]
    BadAlignment(u64),
    #[error("tensor '{name}': {n_dims} dimensions (at most 4 are allowed)")]
    TooManyDims { name: String, n_dims: u32 },
    #[error("tensor '{name}' has unknown or unsupported ggml type id {type_id}")]
    UnknownTensorType { name: String, type_id: u32 },
    #[error(
        "tensor '{name}': first dimension {ne0} is not a multiple of the {ty} block size {block}"
    )]
    BadRowLength {
        name: String,
        ty: GgmlType,
        ne0: u64,
        block: usize,
    },
    #[error("tensor '{name}': shape {shape:?} overflows")]
    ShapeOverflow { name: String, shape: Vec<u64> },
    #[error("tensor '{name}': data offset {offset} is not aligned to {alignment}")]
    MisalignedTensor {
        name: String,
        offset: u64,
        alignment: u64,
    },
    #[error("tensor '{name}': data [{start}, {end}) lies outside the file ({file_len} bytes)")]
    TensorOutOfBounds {
        name: String,
        start: u64,
        end: u64,
        file_len: u64,
    },
    #[error("tensors '{a}' and '{b}' overlap in the data section")]
    TensorOverlap { a: String, b: String },
    #[error("duplicate tensor name '{0}'")]
    DuplicateTensor(String),
    #[error("metadata key '{0}' is missing")]
    MissingKey(String),
    #[error("metadata key '{key}' has type {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("metadata key '{key}' = {value} does not fit in {expected}")]
    OutOfRange {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("writer: {0}")]
    Write(String),
    #[error("write failed")]
    WriteIo(#[from] std::io::Error),
}

impl GgufError {
    pub(crate) fn wrong_type(key: &str, expected: &'static str, found: ValueType) -> Self {
        GgufError::WrongType {
            key: key.to_string(),
            expected,
            found: found.name().to_string(),
        }
    }
}

//! Everything that can go wrong converting or requantizing, with the facts a user needs.

use std::path::PathBuf;

use ferrolm::gguf::GgufError;
use ferrolm_kernels::GgmlType;

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is neither a GGUF file nor a Hugging Face checkpoint directory")]
    UnknownInput(PathBuf),
    #[error("{dir}: no config.json (a Hugging Face checkpoint directory needs one)")]
    MissingConfig { dir: PathBuf },
    #[error("{path}: invalid JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {what}")]
    BadConfig { path: PathBuf, what: String },
    #[error(
        "architecture {found:?} is not supported (supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma3ForCausalLM, Gemma3ForConditionalGeneration (text), Phi3ForCausalLM, SmolLM3ForCausalLM)"
    )]
    UnsupportedArchitecture { found: String },
    #[error("{dir}: no model.safetensors and no model.safetensors.index.json")]
    NoWeights { dir: PathBuf },
    #[error("{path}: not a valid safetensors file (truncated or corrupt): {reason}")]
    BadSafetensors { path: PathBuf, reason: String },
    #[error("{path}: tensor '{tensor}' has dtype {dtype}; only F32, F16 and BF16 are supported")]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    #[error(
        "tensor '{tensor}' ({path}) has shape {found:?}, but config.json implies {expected:?}"
    )]
    ShapeMismatch {
        path: PathBuf,
        tensor: String,
        found: Vec<u64>,
        expected: Vec<u64>,
    },
    #[error("tensor '{tensor}' in {path} has no GGUF name for architecture {arch}")]
    UnknownTensor {
        path: PathBuf,
        tensor: String,
        arch: &'static str,
    },
    #[error("tensor '{0}' appears in more than one file")]
    DuplicateTensor(String),
    #[error("the checkpoint has no tensor '{0}'")]
    MissingTensor(String),
    #[error("{index}: lists tensor '{tensor}' in {file}, which does not hold it")]
    IndexMismatch {
        index: PathBuf,
        tensor: String,
        file: String,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An unknown type name, or a shape no type (nor its fallback) serves.
    #[error(transparent)]
    Ftype(#[from] crate::ftype::FtypeError),
    #[error("tensor '{tensor}' has type {ty}, which cannot be dequantized")]
    UnsupportedSourceType { tensor: String, ty: GgmlType },
    #[error(transparent)]
    Output(#[from] ferrolm::output::OutputError),
    #[error("the input's tensors are already quantized ({types}): requantizing loses quality; pass --allow-requantize to do it anyway")]
    Requantize { types: String },
    #[error("the output would not load: {0}; nothing was written")]
    InvalidOutput(String),
    #[error("interrupted; no output was written")]
    Cancelled,
    #[error("{path}")]
    Gguf {
        path: PathBuf,
        #[source]
        source: GgufError,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: GgufError,
    },
    #[error("kernel: {0}")]
    Kernel(String),
}

impl QuantizeError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        QuantizeError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad_config(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        QuantizeError::BadConfig {
            path: path.into(),
            what: what.into(),
        }
    }
}

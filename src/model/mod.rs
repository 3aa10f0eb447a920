//! The decoder: a model's description and weights (views into the map), and contexts that run it.

mod config;
mod context;
mod family;

pub use config::{Arch, Config, SUPPORTED_ARCHS};
pub use context::{
    Context, ContextParams, Logits, SeqBatch, DEFAULT_MAX_CTX, MAX_CTX, MAX_SEQ, MAX_THREADS,
};
pub use family::{Family, Ffn};

use std::path::Path;

use ferrolm_kernels::dispatch::kernels;
use ferrolm_kernels::matmul::MatRef;
use ferrolm_kernels::GgmlType;

use crate::gguf::{Gguf, GgufError};

/// Why a model cannot be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("unsupported architecture '{arch}' (supported: {})", SUPPORTED_ARCHS)]
    UnsupportedArch { arch: String },
    #[error("{key} {why}")]
    BadMetadata { key: String, why: String },
    #[error("{key} = '{found}' (supported: none, linear, llama3)")]
    RopeScalingType { key: String, found: String },
    #[error("{key} = {factor}: a linear scaling factor must be a positive number")]
    RopeScalingFactor { key: String, factor: f32 },
    #[error(
        "{arch}.rope.dimension_count = {n_rot} does not fit the head of {head_dim} dimensions \
         ({arch} rotates whole heads; partial rotary, an even count up to the head size, is phi3's)"
    )]
    PartialRotary {
        arch: &'static str,
        n_rot: i128,
        head_dim: usize,
    },
    #[error(
        "{arch}.embedding_length = {n_embd} is not divisible by {arch}.attention.head_count = \
         {n_head}"
    )]
    HeadsDoNotDivide {
        arch: &'static str,
        n_embd: usize,
        n_head: usize,
    },
    #[error(
        "{arch}.block_count is {n_layer}, but the file has tensor '{tensor}' of layer {layer}"
    )]
    LayerOutOfRange {
        arch: &'static str,
        n_layer: usize,
        tensor: String,
        layer: usize,
    },
    #[error(
        "tokenizer.ggml.tokens has {n_tokens} tokens, but token_embd.weight has {n_rows} rows"
    )]
    VocabMismatch { n_tokens: usize, n_rows: usize },
    #[error("{key} = {id} is out of range (vocabulary of {n_vocab} tokens)")]
    SpecialTokenOutOfRange {
        key: String,
        id: i128,
        n_vocab: usize,
    },
    #[error(
        "{arch}: embedding_length, block_count, attention.head_count, feed_forward_length and the \
         vocabulary must be non-zero"
    )]
    ZeroSize { arch: &'static str },
    #[error(
        "{arch}.attention.head_count = {n_head} is not a multiple of \
         {arch}.attention.head_count_kv = {n_head_kv}"
    )]
    KvHeads {
        arch: &'static str,
        n_head: usize,
        n_head_kv: usize,
    },
    #[error("{arch}: head dimension {head_dim} must be even and at most 1024")]
    HeadDim { arch: &'static str, head_dim: usize },
    #[error("{arch}.{key} = {value} is out of range")]
    OutOfRange {
        arch: &'static str,
        key: &'static str,
        value: f32,
    },
    #[error(
        "{arch}: implausible model size (n_embd {n_embd}, n_layer {n_layer}, n_ff {n_ff}, n_head \
         {n_head})"
    )]
    Implausible {
        arch: &'static str,
        n_embd: usize,
        n_layer: usize,
        n_ff: usize,
        n_head: usize,
    },
    #[error("tensor '{0}' is missing")]
    MissingTensor(String),
    #[error("tensor '{name}' has shape {found:?}, expected {expected:?}")]
    BadShape {
        name: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error("tensor '{name}' has type {ty}, which ferrolm cannot {what}")]
    UnsupportedType {
        name: String,
        ty: GgmlType,
        what: &'static str,
    },
    #[error(
        "tensor '{name}' ({ty}) starts at file offset {offset}, not a multiple of the {need} bytes \
         its kernels need; the file's general.alignment is {file_alignment} (llama.cpp writes 32)"
    )]
    Misaligned {
        name: String,
        ty: GgmlType,
        offset: usize,
        need: usize,
        file_alignment: u64,
    },
    #[error("{n_tokens} tokens do not fit in the context: {n_past} already used of {n_ctx}")]
    ContextFull {
        n_tokens: usize,
        n_past: usize,
        n_ctx: usize,
    },
    #[error("token id {id} is out of range (vocabulary size {n_vocab})")]
    BadToken { id: u32, n_vocab: usize },
    #[error("the prompt is empty and the model adds no BOS token: nothing to generate from")]
    EmptyPrompt,
    #[error("invalid context parameters: context length {n_ctx} is over the limit of {max}")]
    ContextTooLong { n_ctx: usize, max: usize },
    #[error("invalid context parameters: {n_threads} threads is over the limit of {max}")]
    TooManyThreads { n_threads: usize, max: usize },
    #[error("invalid context parameters: {n_seq} sequences (expected 1..={max})")]
    BadSeqCount { n_seq: usize, max: usize },
    #[error("bad batch: {why}")]
    BadBatch { why: String },
    #[error("{what} only before anything is evaluated (the context holds {n_past} positions)")]
    NotEmpty { what: &'static str, n_past: usize },
    #[error(transparent)]
    KvCache(#[from] crate::kv_cache::KvError),
}

/// Where a weight matrix lives in the file: no lifetimes, so a `Model` can own its `Gguf`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mat {
    ty: GgmlType,
    /// The activation format its dot product pairs with (looked up once, at load).
    pub(crate) partner: GgmlType,
    /// Its row dequantizer (the token embedding's lookup).
    pub(crate) dequantize: ferrolm_kernels::dispatch::DequantizeRowFn,
    start: usize,
    len: usize,
    n_rows: usize,
    n_cols: usize,
}

/// Where an f32 vector (norm weight, bias) lives in the file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Vector {
    start: usize,
    len: usize,
}

/// A layer's Q, K and V projections: three matrices, or one (Phi-3's `attn_qkv`, rows Q then K
/// then V).
#[derive(Clone, Debug)]
pub(crate) enum Qkv {
    Split { wq: Mat, wk: Mat, wv: Mat }, // [q_dim | kv_dim | kv_dim rows, n_embd cols]
    Fused(Mat),                          // [q_dim + 2 kv_dim, n_embd]
}

/// A layer's FFN gate and up projections: two matrices, or one (Phi-3's `ffn_up`, gate rows
/// first).
#[derive(Clone, Debug)]
pub(crate) enum GateUp {
    Split { gate: Mat, up: Mat }, // [n_ff, n_embd] each
    Fused(Mat),                   // [2 n_ff, n_embd]
}

#[derive(Clone, Debug)]
pub(crate) struct Layer {
    attn_norm: Vector,              // [n_embd]
    qkv: Qkv,                       // see `Qkv`
    bq: Option<Vector>,             // [n_head * head_dim] (qwen2)
    bk: Option<Vector>,             // [n_head_kv * head_dim]
    bv: Option<Vector>,             // [n_head_kv * head_dim]
    q_norm: Option<Vector>,         // [head_dim] (qwen3, gemma3)
    k_norm: Option<Vector>,         // [head_dim]
    wo: Mat,                        // [n_embd, n_head * head_dim]
    post_attn_norm: Option<Vector>, // [n_embd] (gemma3)
    ffn_norm: Vector,               // [n_embd]
    gate_up: GateUp,                // see `GateUp`
    w_down: Mat,                    // [n_embd, n_ff]
    post_ffn_norm: Option<Vector>,  // [n_embd] (gemma3)
}

/// A loaded model: the mapped file, its configuration, and where each weight lives in the map.
/// Shareable across threads and contexts (`Arc<Model>`).
pub struct Model {
    gguf: Gguf,
    config: Config,
    tok_embd: Mat,              // [n_vocab rows, n_embd cols]
    output_norm: Vector,        // [n_embd]
    output: Mat,                // [n_vocab, n_embd] (token_embd when tied)
    rope_freqs: Option<Vector>, // [n_rot / 2] Llama-3 frequency factors
    /// LongRoPE frequency factors (Phi-3), for contexts up to / over `family.longrope_ctx`.
    rope_factors: Option<(Vector, Vector)>, // ([n_rot / 2] short, [n_rot / 2] long)
    layers: Vec<Layer>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .finish()
    }
}

impl Model {
    /// Map a GGUF file and validate every tensor the forward pass will use. Nothing is copied.
    pub fn load(path: impl AsRef<Path>) -> Result<Model, ModelError> {
        Self::from_gguf(Gguf::open(path)?)
    }

    pub fn from_gguf(gguf: Gguf) -> Result<Model, ModelError> {
        let config = Config::from_gguf(&gguf)?;
        let c = &config;
        let base = gguf.bytes().as_ptr() as usize;
        let table = kernels();

        let mat = |name: &str, n_cols: usize, n_rows: usize| -> Result<Mat, ModelError> {
            let t = gguf
                .tensor(name)
                .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
            if t.shape() != [n_cols as u64, n_rows as u64] {
                return Err(ModelError::BadShape {
                    name: name.to_string(),
                    expected: vec![n_cols as u64, n_rows as u64],
                    found: t.shape().to_vec(),
                });
            }
            let kernels = table.get(t.ty).filter(|k| k.vec_dot.is_some());
            let Some((partner, dequantize)) =
                kernels.and_then(|k| Some((k.vec_dot_type, k.dequantize_row?)))
            else {
                return Err(ModelError::UnsupportedType {
                    name: name.to_string(),
                    ty: t.ty,
                    what: "multiply",
                });
            };
            let need = ferrolm_kernels::dispatch::block_align(t.ty);
            if (t.data.as_ptr() as usize) % need != 0 {
                return Err(ModelError::Misaligned {
                    name: name.to_string(),
                    ty: t.ty,
                    offset: t.data.as_ptr() as usize - base,
                    need,
                    file_alignment: gguf.alignment(),
                });
            }
            Ok(Mat {
                ty: t.ty,
                partner,
                dequantize,
                start: t.data.as_ptr() as usize - base,
                len: t.data.len(),
                n_rows,
                n_cols,
            })
        };
        let vector = |name: &str, n: usize| -> Result<Vector, ModelError> {
            let t = gguf
                .tensor(name)
                .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
            if t.shape() != [n as u64] {
                return Err(ModelError::BadShape {
                    name: name.to_string(),
                    expected: vec![n as u64],
                    found: t.shape().to_vec(),
                });
            }
            if t.ty != GgmlType::F32 {
                return Err(ModelError::UnsupportedType {
                    name: name.to_string(),
                    ty: t.ty,
                    what: "use as a norm or bias (F32 expected)",
                });
            }
            if (t.data.as_ptr() as usize) % 4 != 0 {
                return Err(ModelError::Misaligned {
                    name: name.to_string(),
                    ty: t.ty,
                    offset: t.data.as_ptr() as usize - base,
                    need: 4,
                    file_alignment: gguf.alignment(),
                });
            }
            Ok(Vector {
                start: t.data.as_ptr() as usize - base,
                len: n,
            })
        };
        let opt_vector = |name: &str, n: usize| -> Result<Option<Vector>, ModelError> {
            if gguf.tensor(name).is_some() {
                vector(name, n).map(Some)
            } else {
                Ok(None)
            }
        };

        let tok_embd = mat("token_embd.weight", c.n_embd, c.n_vocab)?;
        let output_norm = vector("output_norm.weight", c.n_embd)?;
        let output = if gguf.tensor("output.weight").is_some() {
            mat("output.weight", c.n_embd, c.n_vocab)?
        } else {
            tok_embd
        };
        let f = &c.family;
        let rope_freqs = opt_vector("rope_freqs.weight", f.n_rot / 2)?;
        let rope_factors = if f.longrope_ctx > 0 {
            Some((
                vector("rope_factors_short.weight", f.n_rot / 2)?,
                vector("rope_factors_long.weight", f.n_rot / 2)?,
            ))
        } else {
            None
        };
        let mut layers = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}");
            let bias = |s: &str, len: usize| -> Result<Option<Vector>, ModelError> {
                if f.qkv_bias {
                    vector(&n(s), len).map(Some)
                } else {
                    opt_vector(&n(s), len)
                }
            };
            // A vector the family requires, or none.
            let when = |on: bool, s: &str, len: usize| -> Result<Option<Vector>, ModelError> {
                on.then(|| vector(&n(s), len)).transpose()
            };
            let qkv = if f.fused {
                Qkv::Fused(mat(
                    &n("attn_qkv.weight"),
                    c.n_embd,
                    c.q_dim() + 2 * c.kv_dim(),
                )?)
            } else {
                Qkv::Split {
                    wq: mat(&n("attn_q.weight"), c.n_embd, c.q_dim())?,
                    wk: mat(&n("attn_k.weight"), c.n_embd, c.kv_dim())?,
                    wv: mat(&n("attn_v.weight"), c.n_embd, c.kv_dim())?,
                }
            };
            let gate_up = if f.fused {
                GateUp::Fused(mat(&n("ffn_up.weight"), c.n_embd, 2 * c.n_ff)?)
            } else {
                GateUp::Split {
                    gate: mat(&n("ffn_gate.weight"), c.n_embd, c.n_ff)?,
                    up: mat(&n("ffn_up.weight"), c.n_embd, c.n_ff)?,
                }
            };
            layers.push(Layer {
                attn_norm: vector(&n("attn_norm.weight"), c.n_embd)?,
                qkv,
                bq: bias("attn_q.bias", c.q_dim())?,
                bk: bias("attn_k.bias", c.kv_dim())?,
                bv: bias("attn_v.bias", c.kv_dim())?,
                q_norm: when(f.qk_norm, "attn_q_norm.weight", c.head_dim)?,
                k_norm: when(f.qk_norm, "attn_k_norm.weight", c.head_dim)?,
                wo: mat(&n("attn_output.weight"), c.q_dim(), c.n_embd)?,
                post_attn_norm: when(f.post_norms, "post_attention_norm.weight", c.n_embd)?,
                ffn_norm: vector(&n("ffn_norm.weight"), c.n_embd)?,
                gate_up,
                w_down: mat(&n("ffn_down.weight"), c.n_ff, c.n_embd)?,
                post_ffn_norm: when(f.post_norms, "post_ffw_norm.weight", c.n_embd)?,
            });
        }
        Ok(Model {
            gguf,
            config,
            tok_embd,
            output_norm,
            output,
            rope_freqs,
            rope_factors,
            layers,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn gguf(&self) -> &Gguf {
        &self.gguf
    }

    #[inline]
    pub(crate) fn mat(&self, m: &Mat) -> MatRef<'_> {
        MatRef::new(
            m.ty,
            &self.gguf.bytes()[m.start..m.start + m.len],
            m.n_rows,
            m.n_cols,
        )
    }

    #[inline]
    pub(crate) fn vector(&self, v: &Vector) -> &[f32] {
        ferrolm_kernels::cast_blocks::<f32>(&self.gguf.bytes()[v.start..v.start + v.len * 4])
    }

    /// Bytes of all weights the forward pass reads per token (for bandwidth figures).
    pub fn weight_bytes(&self) -> u64 {
        let mut b = self.output.len as u64;
        for l in &self.layers {
            let qkv = match &l.qkv {
                Qkv::Split { wq, wk, wv } => wq.len + wk.len + wv.len,
                Qkv::Fused(w) => w.len,
            };
            let gate_up = match &l.gate_up {
                GateUp::Split { gate, up } => gate.len + up.len,
                GateUp::Fused(w) => w.len,
            };
            b += (qkv + l.wo.len + gate_up + l.w_down.len) as u64;
        }
        b
    }
}

//! The ABI's constants, status codes, opaque handles and parameter structs.

use std::ffi::{c_char, c_int, c_void, CString};
use std::mem::{offset_of, size_of};
use std::sync::Arc;

use ferrolm::model::{Context, Model};
use ferrolm::sampler::{Sampler, SEED_FROM_TIME};
use ferrolm::tokenizer::Tokenizer;

/// Version of the C ABI. It changes only when an existing function or struct field changes
/// meaning or layout; additions (new functions, new fields appended to a parameter struct, new
/// status codes) keep it. Compare `ferrolm_abi_version()` with this at start-up.
pub const FERROLM_ABI_VERSION: u32 = 1;

/// A token id. Valid ids are `0 <= id < n_vocab`.
pub type ferrolm_token = i32;

/// "No token": returned as the BOS/EOS id of a model without one, and passed to the generation
/// callback with the text released after the last token.
#[allow(clippy::unnecessary_cast)] // the cast makes cbindgen write `(int32_t)-1`, safe in any expression
pub const FERROLM_TOKEN_NONE: ferrolm_token = -1 as i32;

/// `ferrolm_sampler_params.seed` value asking for a seed taken from the clock
/// (`ferrolm_sampler_seed()` then tells the seed used).
pub const FERROLM_SEED_RANDOM: u64 = u64::MAX;
const _: () = assert!(FERROLM_SEED_RANDOM == SEED_FROM_TIME);

/// What a function returns. `FERROLM_OK` is 0; every other value is a failure whose message is
/// in `ferrolm_last_error()` (and, for calls on a context, `ferrolm_context_error(ctx)`).
/// New codes may be added at the end; treat unknown non-zero values as failures.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ferrolm_status {
    /// Success.
    FERROLM_OK = 0,
    /// A parameter value is out of range (a struct_size too small, a negative temperature, a
    /// context length over the limit, a KV type that does not exist, ...).
    FERROLM_INVALID_ARGUMENT = 1,
    /// A required pointer argument is NULL.
    FERROLM_NULL_POINTER = 2,
    /// Text passed in is not valid UTF-8.
    FERROLM_INVALID_UTF8 = 3,
    /// A file could not be opened, read or mapped.
    FERROLM_IO = 4,
    /// The file is not a valid GGUF model (bad magic, truncated, missing tensor, bad metadata).
    FERROLM_FORMAT = 5,
    /// Valid, but not supported by ferrolm (architecture, tensor type, tokenizer, GGUF version).
    FERROLM_UNSUPPORTED = 6,
    /// The tokens do not fit in the context: reset or truncate it, or create a larger one.
    FERROLM_CONTEXT_FULL = 7,
    /// An output buffer is too small; the size needed was written to the length out-parameter.
    FERROLM_BUFFER_TOO_SMALL = 8,
    /// A token id is negative or not below the vocabulary size.
    FERROLM_INVALID_TOKEN = 9,
    /// There are no logits to read or sample from: nothing was evaluated since the context was
    /// created, reset or truncated.
    FERROLM_NO_LOGITS = 10,
    /// A metadata key is not in the model.
    FERROLM_NOT_FOUND = 11,
    /// A bug in ferrolm (a Rust panic) was caught at the boundary. A context on which this
    /// happened is unusable: every later call on it returns `FERROLM_PANIC`; free it.
    FERROLM_PANIC = 12,
}

pub(crate) use ferrolm_status::*;

/// KV cache element types; the values are ggml's type ids (as llama.cpp's `type_k`/`type_v`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ferrolm_kv_type {
    /// 32-bit floats: 2x the memory of F16, exact.
    FERROLM_KV_F32 = 0,
    /// 16-bit floats (the default, as llama.cpp's).
    FERROLM_KV_F16 = 1,
    /// 4-bit blocks of 32 with a scale: about 28% of F16's memory.
    FERROLM_KV_Q4_0 = 2,
    /// 4-bit blocks of 32 with a scale and a minimum: 31% of F16's memory.
    FERROLM_KV_Q4_1 = 3,
    /// 5-bit blocks of 32 with a scale: 34% of F16's memory.
    FERROLM_KV_Q5_0 = 6,
    /// 5-bit blocks of 32 with a scale and a minimum: 38% of F16's memory.
    FERROLM_KV_Q5_1 = 7,
    /// 8-bit blocks of 32 with a scale: about half of F16's memory.
    FERROLM_KV_Q8_0 = 8,
}

/// Why a generation ended (`ferrolm_generate_stats.stop_reason`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ferrolm_stop_reason {
    /// The model produced an end-of-generation token (EOS, EOT, `<|im_end|>`, ...). The token is
    /// not passed to the callback.
    FERROLM_STOP_EOG = 0,
    /// `n_predict` tokens were generated.
    FERROLM_STOP_MAX_TOKENS = 1,
    /// One of the stop strings appeared; the text before it was passed to the callback.
    FERROLM_STOP_STRING = 2,
    /// The callback returned false.
    FERROLM_STOP_CALLBACK = 3,
    /// The context is full.
    FERROLM_STOP_CONTEXT_FULL = 4,
}

/// Opaque model: the memory-mapped GGUF file, its configuration and its tokenizer. Immutable once
/// loaded: any number of threads may use one model at the same time, and any number of contexts
/// may share it. A context keeps the model's data alive, so `ferrolm_model_free()` may come
/// before the contexts made from it are freed.
pub struct ferrolm_model {
    pub(crate) model: Arc<Model>,
    pub(crate) tok: Arc<Tokenizer>,
    pub(crate) arch: CString,
    pub(crate) name: CString,
}

/// Opaque context: one conversation's KV cache, scratch buffers, worker threads, sampler and last
/// logits. Use a context from one thread at a time (it may move between threads).
pub struct ferrolm_context {
    pub(crate) ctx: Context,
    pub(crate) tok: Arc<Tokenizer>,
    pub(crate) sampler: Sampler,
    /// `ctx.logits()` holds the logits of the last token in the cache.
    pub(crate) has_logits: bool,
    /// The last token `ferrolm_generate` sampled and returned but did not evaluate; the next
    /// generate or eval call evaluates it first, so the cache holds exactly the text returned.
    pub(crate) pending: Option<u32>,
    /// A panic happened inside a call on this context: its state may be inconsistent.
    pub(crate) poisoned: bool,
    /// Message of the last failed call on this context.
    pub(crate) error: Option<CString>,
    /// Generation: the text passed to the callback, NUL-terminated; reused, so decoding a token
    /// allocates nothing once it has grown.
    pub(crate) text: Vec<u8>,
    /// Generation: the prompt's ids.
    pub(crate) ids: Vec<u32>,
}

impl ferrolm_context {
    /// The cache changed under the logits (reset, truncation): drop them and the pending token.
    pub(crate) fn forget_logits(&mut self) {
        self.has_logits = false;
        self.pending = None;
    }
}

/// How a model is loaded. Get one from `ferrolm_model_default_params()` and change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ferrolm_model_params {
    /// `sizeof(ferrolm_model_params)`, set by `ferrolm_model_default_params()`. Fields past it
    /// (added in later versions) take their defaults.
    pub struct_size: usize,
    /// Memory-map the file (default true). With false the file is read into memory instead.
    pub use_mmap: bool,
    /// Must be zero (`FERROLM_INVALID_ARGUMENT` otherwise): room for flags added later, where zero
    /// keeps today's behaviour.
    pub reserved: [u8; 7],
}

/// How a context is created. Get one from `ferrolm_context_default_params()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ferrolm_context_params {
    /// `sizeof(ferrolm_context_params)`, set by `ferrolm_context_default_params()`.
    pub struct_size: usize,
    /// Positions in the KV cache. 0 (default) = the model's trained length, at most 4096.
    pub n_ctx: u32,
    /// Most tokens evaluated in one batch; prompts are cut into batches. 0 = the default, 512.
    pub n_batch: u32,
    /// Worker threads. 0 (default) = one per available CPU.
    pub n_threads: i32,
    /// KV cache element type, a `ferrolm_kv_type` value. Default `FERROLM_KV_F16`.
    pub kv_type: i32,
}

/// How tokens are sampled. Get one from `ferrolm_sampler_default_params()`; the defaults are
/// llama.cpp's and `ferrolm run`'s. The chain is penalties -> top-k -> top-p -> min-p ->
/// temperature -> draw.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ferrolm_sampler_params {
    /// `sizeof(ferrolm_sampler_params)`, set by `ferrolm_sampler_default_params()`.
    pub struct_size: usize,
    /// Temperature (default 0.8); 0 = greedy (the most likely token).
    pub temp: f32,
    /// Keep the k most likely tokens (default 40); <= 0 keeps all.
    pub top_k: i32,
    /// Nucleus sampling threshold in [0, 1] (default 0.95); 1 = off.
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely one, in [0, 1] (default 0.05).
    pub min_p: f32,
    /// Repetition penalty (default 1 = off).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at (default 64; 0 = off).
    pub repeat_last_n: i32,
    /// Frequency penalty (default 0 = off).
    pub frequency_penalty: f32,
    /// Presence penalty (default 0 = off).
    pub presence_penalty: f32,
    /// Random seed; `FERROLM_SEED_RANDOM` (default) takes one from the clock.
    pub seed: u64,
}

/// How `ferrolm_generate()` runs. Get one from `ferrolm_generate_default_params()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ferrolm_generate_params {
    /// `sizeof(ferrolm_generate_params)`, set by `ferrolm_generate_default_params()`.
    pub struct_size: usize,
    /// Stop strings (`n_stop` NUL-terminated UTF-8 strings; may be NULL when `n_stop` is 0).
    /// Generation ends when one appears; it and what follows are not passed to the callback.
    /// The strings are read during the call only.
    pub stop: *const *const c_char,
    /// Number of stop strings.
    pub n_stop: usize,
    /// Most tokens to generate; -1 (default) = until end of generation or a full context.
    pub n_predict: i32,
    /// Keep generating past end-of-generation tokens (default false).
    pub ignore_eos: bool,
    /// Render control tokens (`<|im_end|>`) in the text passed to the callback (default false).
    pub special: bool,
    /// `ferrolm_generate()`: control tokens written in the prompt (`<|im_start|>`) become their
    /// ids (default true, as `ferrolm run`).
    pub parse_special: bool,
    /// Must be zero (`FERROLM_INVALID_ARGUMENT` otherwise): room for a flag added later.
    pub reserved: u8,
}

/// Counts and timings of one generation, written by `ferrolm_generate()`. The caller sets
/// `struct_size = sizeof(ferrolm_generate_stats)` before the call; ferrolm writes the fields
/// that fit and sets `struct_size` to the bytes it wrote.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ferrolm_generate_stats {
    pub struct_size: usize,
    /// Prompt tokens evaluated.
    pub n_prompt: u64,
    /// Tokens sampled (including an end-of-generation token that ended the run).
    pub n_gen: u64,
    /// Time spent evaluating the prompt, in milliseconds.
    pub prompt_ms: f64,
    /// Time spent generating (sampling, evaluating, the callback), in milliseconds.
    pub gen_ms: f64,
    /// Why generation ended.
    pub stop_reason: ferrolm_stop_reason,
    /// Zero.
    pub reserved: u32,
}

/// A model's description, written by `ferrolm_model_get_info()`. The caller sets
/// `struct_size = sizeof(ferrolm_model_info)`; ferrolm writes the fields that fit and sets
/// `struct_size` to the bytes it wrote. The strings are owned by the model and valid until
/// `ferrolm_model_free()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ferrolm_model_info {
    pub struct_size: usize,
    /// Architecture (`general.architecture`): "llama" or "qwen2".
    pub arch: *const c_char,
    /// `general.name`, or "" when the file has none.
    pub name: *const c_char,
    /// Size of the GGUF file in bytes.
    pub file_size: u64,
    /// Bytes of weights read per generated token (for bandwidth figures).
    pub weight_bytes: u64,
    /// Vocabulary size.
    pub n_vocab: i32,
    /// Embedding width.
    pub n_embd: i32,
    /// Transformer blocks.
    pub n_layer: i32,
    /// Attention heads.
    pub n_head: i32,
    /// Key/value heads (grouped-query attention).
    pub n_head_kv: i32,
    /// Width of one head.
    pub head_dim: i32,
    /// Feed-forward width.
    pub n_ff: i32,
    /// Context length the model was trained with.
    pub n_ctx_train: i32,
    /// Beginning-of-sequence token, or `FERROLM_TOKEN_NONE`.
    pub token_bos: ferrolm_token,
    /// End-of-sequence token, or `FERROLM_TOKEN_NONE`.
    pub token_eos: ferrolm_token,
}

/// Called by `ferrolm_generate()` for each generated token, with the text it completes: `text`
/// is `text_len` bytes of UTF-8 followed by a NUL, valid only during the call. The text may be
/// empty (a character split across tokens, or text held back because it may begin a stop
/// string). After the last token the callback may be called once more with
/// `FERROLM_TOKEN_NONE` and the text held back until then. Return true to go on, false to stop.
/// The callback must not unwind (no C++ exception or longjmp out of it) and must not call
/// functions on the same context.
pub type ferrolm_token_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        token: ferrolm_token,
        text: *const c_char,
        text_len: usize,
    ) -> bool,
>;

// The layouts are part of the ABI: no padding (so a field appended later never lands in an older
// struct's tail padding) and `struct_size` first.
const _: () = assert!(size_of::<ferrolm_model_params>() == 16);
const _: () = assert!(size_of::<ferrolm_context_params>() == 24);
const _: () = assert!(size_of::<ferrolm_sampler_params>() == 48);
const _: () = assert!(size_of::<ferrolm_generate_params>() == 32 || size_of::<usize>() != 8);
const _: () = assert!(size_of::<ferrolm_generate_stats>() == 48);
const _: () = assert!(size_of::<ferrolm_model_info>() == 80 || size_of::<usize>() != 8);
const _: () = assert!(size_of::<ferrolm_status>() == size_of::<c_int>());
const _: () = assert!(size_of::<ferrolm_stop_reason>() == 4);

/// A struct whose first field is `size_t struct_size`.
pub(crate) trait Versioned: Copy {
    /// The smallest `struct_size` accepted: the size of the struct's first published version.
    const MIN_SIZE: usize;
    const NAME: &'static str;
}

macro_rules! sized_struct {
    ($t:ty, $min:expr) => {
        const _: () = assert!(offset_of!($t, struct_size) == 0);
        impl Versioned for $t {
            const MIN_SIZE: usize = $min;
            const NAME: &'static str = stringify!($t);
        }
    };
}
sized_struct!(ferrolm_model_params, size_of::<ferrolm_model_params>());
sized_struct!(ferrolm_context_params, size_of::<ferrolm_context_params>());
sized_struct!(ferrolm_sampler_params, size_of::<ferrolm_sampler_params>());
sized_struct!(
    ferrolm_generate_params,
    size_of::<ferrolm_generate_params>()
);
sized_struct!(ferrolm_generate_stats, size_of::<ferrolm_generate_stats>());
sized_struct!(ferrolm_model_info, size_of::<ferrolm_model_info>());

// The handles' thread-safety promises, checked by the compiler: a model is shared between
// threads, a context moves between them.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    const fn movable<T: Send>() {}
    shared::<ferrolm_model>();
    movable::<ferrolm_context>();
};

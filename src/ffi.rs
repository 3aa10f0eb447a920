//! The C ABI: the only place in ferrolm with `extern "C"`. `include/ferrolm.h` is generated from
//! this file by cbindgen (`scripts/gen-header.sh`); the doc comments here become the header's.
//!
//! Design (after rure / regex-capi):
//! - opaque handles: `ferrolm_model` (the mapped weights and the tokenizer; shared by any number
//!   of contexts and threads) and `ferrolm_context` (KV cache, scratch, sampler state; one thread
//!   at a time);
//! - every fallible function returns a `ferrolm_status`; results come back through out-parameters;
//!   the message of a failure is owned by ferrolm: `ferrolm_context_error(ctx)` for calls on a
//!   context, `ferrolm_last_error()` (per thread) for every failing call;
//! - parameter structs begin with `size_t struct_size` and have no padding, so fields can be
//!   appended in later versions without breaking callers built against older headers;
//! - every entry point runs inside `std::panic::catch_unwind`: a panic becomes `FERROLM_PANIC`
//!   and never unwinds into C.
//!
//! Safety contract for callers (the usual C one): a handle passed in must come from the matching
//! `*_new`/`*_load` and not be freed yet; a `(pointer, length)` pair must describe readable (or,
//! for outputs, writable) memory. Everything that can be checked (NULL, UTF-8, buffer sizes,
//! token ids, parameter values) is checked and reported as a status.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::mem::{offset_of, size_of};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;

use crate::generate::{generate, GenOptions, StopReason};
use crate::gguf::{Gguf, GgufError};
use crate::kv_cache::KvType;
use crate::model::{Context, ContextParams, Logits, Model, ModelError};
use crate::sampler::{Sampler, SamplerParams, StopMatcher, SEED_FROM_TIME};
use crate::tokenizer::{Tokenizer, TokenizerError};

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

use ferrolm_status::*;

/// KV cache element types; the values are ggml's type ids (as llama.cpp's `type_k`/`type_v`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ferrolm_kv_type {
    /// 32-bit floats: 2x the memory of F16, exact.
    FERROLM_KV_F32 = 0,
    /// 16-bit floats (the default, as llama.cpp's).
    FERROLM_KV_F16 = 1,
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
    model: Arc<Model>,
    tok: Arc<Tokenizer>,
    arch: CString,
    name: CString,
}

/// Opaque context: one conversation's KV cache, scratch buffers, worker threads, sampler and last
/// logits. Use a context from one thread at a time (it may move between threads).
pub struct ferrolm_context {
    ctx: Context,
    tok: Arc<Tokenizer>,
    sampler: Sampler,
    /// `ctx.logits()` holds the logits of the last token in the cache.
    has_logits: bool,
    /// The last token `ferrolm_generate` sampled and returned but did not evaluate; the next
    /// generate or eval call evaluates it first, so the cache holds exactly the text returned.
    pending: Option<u32>,
    /// A panic happened inside a call on this context: its state may be inconsistent.
    poisoned: bool,
    /// Message of the last failed call on this context.
    error: Option<CString>,
    /// Generation: the text passed to the callback, NUL-terminated; reused, so decoding a token
    /// allocates nothing once it has grown.
    text: Vec<u8>,
    /// Generation: the prompt's ids.
    ids: Vec<u32>,
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
trait Versioned: Copy {
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

// ---- errors ----

/// A failure on its way to C: the status and the message.
struct Error {
    status: ferrolm_status,
    msg: String,
}

type Res<T> = Result<T, Error>;

fn err<T>(status: ferrolm_status, msg: impl Into<String>) -> Res<T> {
    Err(Error {
        status,
        msg: msg.into(),
    })
}

fn gguf_status(e: &GgufError) -> ferrolm_status {
    match e {
        GgufError::Io { .. } | GgufError::WriteIo(_) => FERROLM_IO,
        GgufError::UnsupportedVersion(_) | GgufError::UnknownTensorType { .. } => {
            FERROLM_UNSUPPORTED
        }
        _ => FERROLM_FORMAT,
    }
}

impl From<GgufError> for Error {
    fn from(e: GgufError) -> Error {
        Error {
            status: gguf_status(&e),
            msg: e.to_string(),
        }
    }
}

impl From<ModelError> for Error {
    fn from(e: ModelError) -> Error {
        let status = match &e {
            ModelError::Gguf(g) => gguf_status(g),
            ModelError::UnsupportedArch { .. }
            | ModelError::Unsupported(_)
            | ModelError::UnsupportedType { .. } => FERROLM_UNSUPPORTED,
            ModelError::BadMetadata(_)
            | ModelError::MissingTensor(_)
            | ModelError::BadShape { .. }
            | ModelError::Misaligned { .. } => FERROLM_FORMAT,
            ModelError::ContextFull { .. } => FERROLM_CONTEXT_FULL,
            ModelError::BadToken { .. } => FERROLM_INVALID_TOKEN,
            ModelError::BadParams(_) => FERROLM_INVALID_ARGUMENT,
            ModelError::EmptyPrompt => FERROLM_NO_LOGITS,
        };
        Error {
            status,
            msg: e.to_string(),
        }
    }
}

impl From<TokenizerError> for Error {
    fn from(e: TokenizerError) -> Error {
        let status = match &e {
            TokenizerError::Gguf(g) => gguf_status(g),
            TokenizerError::UnsupportedModel(_)
            | TokenizerError::UnsupportedPreTokenizer(_)
            | TokenizerError::VocabTooLarge(_) => FERROLM_UNSUPPORTED,
            _ => FERROLM_FORMAT,
        };
        Error {
            status,
            msg: format!("tokenizer: {e}"),
        }
    }
}

thread_local! {
    /// Message of the last failed call on this thread.
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// A C string of `msg` (an interior NUL, impossible in our messages, is shown as `\0`).
fn c_string(msg: &str) -> CString {
    CString::new(msg.replace('\0', "\\0")).unwrap_or_default()
}

fn set_last_error(msg: &str) {
    let c = c_string(msg);
    // During thread teardown the slot may be gone; the status still tells the caller.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = Some(c));
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    let what = p
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(|s| s.as_str()))
        .unwrap_or("unknown panic");
    format!("internal error (panic): {what}")
}

/// Run an entry point: failures and panics become a status, with the message stored per thread.
fn guard(f: impl FnOnce() -> Res<()>) -> ferrolm_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => FERROLM_OK,
        Ok(Err(e)) => {
            set_last_error(&e.msg);
            e.status
        }
        Err(p) => {
            set_last_error(&panic_message(&*p));
            FERROLM_PANIC
        }
    }
}

/// Run an entry point on a context: as `guard`, and the message is also kept by the context.
fn guard_ctx(
    ctx: *mut ferrolm_context,
    f: impl FnOnce(&mut ferrolm_context) -> Res<()>,
) -> ferrolm_status {
    if ctx.is_null() {
        set_last_error("ctx is NULL");
        return FERROLM_NULL_POINTER;
    }
    // SAFETY: the caller passes a live context from ferrolm_context_new and uses it from one
    // thread at a time (documented on every function), so this is the only reference to it.
    let c = unsafe { &mut *ctx };
    if c.poisoned {
        let msg =
            "this context is unusable after an internal error (panic) in an earlier call; free it";
        set_last_error(msg);
        c.error = Some(c_string(msg));
        return FERROLM_PANIC;
    }
    c.error = None;
    let r = catch_unwind(AssertUnwindSafe(|| f(&mut *c)));
    let (status, msg) = match r {
        Ok(Ok(())) => return FERROLM_OK,
        Ok(Err(e)) => (e.status, e.msg),
        Err(p) => {
            c.poisoned = true;
            (FERROLM_PANIC, panic_message(&*p))
        }
    };
    set_last_error(&msg);
    c.error = Some(c_string(&msg));
    status
}

/// Run an entry point that returns a plain value; `fallback` on a panic.
fn guard_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            set_last_error(&panic_message(&*p));
            fallback
        }
    }
}

// ---- argument helpers ----

fn non_null<T>(p: *const T, what: &str) -> Res<()> {
    if p.is_null() {
        err(FERROLM_NULL_POINTER, format!("{what} is NULL"))
    } else {
        Ok(())
    }
}

/// The model behind a pointer.
fn model_ref<'a>(model: *const ferrolm_model) -> Res<&'a ferrolm_model> {
    non_null(model, "model")?;
    // SAFETY: non-NULL, and the caller passes a live model (never mutated after load, so shared
    // references from many threads are fine).
    Ok(unsafe { &*model })
}

/// Read a parameter struct: NULL = the defaults; otherwise `struct_size` bytes of it (at most
/// ours), the rest from the defaults.
fn read_params<T: Versioned>(p: *const T, defaults: T) -> Res<T> {
    if p.is_null() {
        return Ok(defaults);
    }
    // SAFETY: the caller passes a readable struct, whose first field is the size_t struct_size
    // (checked by `sized_struct!`); read_unaligned tolerates a misaligned pointer.
    let size = unsafe { (p as *const usize).read_unaligned() };
    if size < T::MIN_SIZE {
        return err(
            FERROLM_INVALID_ARGUMENT,
            format!(
                "{}.struct_size is {size}, less than the {} bytes of its first version (initialize it with its *_default_params() function)",
                T::NAME,
                T::MIN_SIZE
            ),
        );
    }
    let n = size.min(size_of::<T>());
    let mut out = defaults;
    // SAFETY: the caller's struct has at least `size >= n` readable bytes; `out` has
    // size_of::<T>() >= n writable bytes; they do not overlap (`out` is a local). The layout has no
    // padding (const asserts above), so the bytes copied are whole fields of the version the
    // caller was built with.
    unsafe { std::ptr::copy_nonoverlapping(p as *const u8, &mut out as *mut T as *mut u8, n) };
    Ok(out)
}

/// Write an output struct: the fields that fit in the caller's `struct_size`, which is then set to
/// the bytes written.
fn write_sized<T: Versioned>(out: *mut T, value: T) -> Res<()> {
    non_null(out, "the output struct")?;
    // SAFETY: the caller passes a writable struct whose first field is its struct_size.
    let size = unsafe { (out as *const usize).read_unaligned() };
    if size < T::MIN_SIZE {
        return err(
            FERROLM_INVALID_ARGUMENT,
            format!(
                "{}.struct_size is {size}; set it to sizeof({}) before the call",
                T::NAME,
                T::NAME
            ),
        );
    }
    let n = size.min(size_of::<T>());
    // SAFETY: `value` is a local of size_of::<T>() >= n bytes; the caller's struct has `size >= n`
    // writable bytes; no overlap. Then struct_size (the first usize) is set to n.
    unsafe {
        std::ptr::copy_nonoverlapping(&value as *const T as *const u8, out as *mut u8, n);
        (out as *mut usize).write_unaligned(n);
    }
    Ok(())
}

/// A NUL-terminated UTF-8 argument.
fn c_str<'a>(p: *const c_char, what: &str) -> Res<&'a str> {
    non_null(p, what)?;
    // SAFETY: non-NULL; the caller passes a NUL-terminated string alive for the call.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|e| Error {
        status: FERROLM_INVALID_UTF8,
        msg: format!("{what} is not valid UTF-8 (byte {})", e.valid_up_to()),
    })
}

/// `(pointer, length)` as a slice; the pointer may be NULL when the length is 0.
fn slice<'a, T>(p: *const T, n: usize, what: &str) -> Res<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    non_null(p, what)?;
    if n.checked_mul(size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return err(
            FERROLM_INVALID_ARGUMENT,
            format!("{what}: length {n} is too large"),
        );
    }
    // SAFETY: non-NULL, and the caller passes `n` readable elements alive for the call; the size
    // fits in isize (checked).
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// Check token ids against the vocabulary and convert them.
fn check_tokens(tokens: &[ferrolm_token], n_vocab: usize, out: &mut Vec<u32>) -> Res<()> {
    out.clear();
    for (i, &t) in tokens.iter().enumerate() {
        if t < 0 || t as usize >= n_vocab {
            return err(
                FERROLM_INVALID_TOKEN,
                format!("token {i} is {t}, outside the vocabulary (0..{n_vocab})"),
            );
        }
        out.push(t as u32);
    }
    Ok(())
}

fn check_token(t: ferrolm_token, n_vocab: usize) -> Res<u32> {
    if t < 0 || t as usize >= n_vocab {
        return err(
            FERROLM_INVALID_TOKEN,
            format!("token {t} is outside the vocabulary (0..{n_vocab})"),
        );
    }
    Ok(t as u32)
}

/// Copy `bytes` and a NUL into `buf` (`buf_size` bytes; may be NULL when 0) and store the length
/// (without the NUL) in `*out_len`; `FERROLM_BUFFER_TOO_SMALL` when `buf_size < len + 1`.
fn write_text(bytes: &[u8], buf: *mut c_char, buf_size: usize, out_len: *mut usize) -> Res<()> {
    non_null(out_len, "out_len")?;
    // SAFETY: non-NULL; the caller passes a writable size_t.
    unsafe { out_len.write_unaligned(bytes.len()) };
    if buf_size < bytes.len() + 1 {
        return err(
            FERROLM_BUFFER_TOO_SMALL,
            format!(
                "the buffer holds {buf_size} bytes; {} are needed (the text and a NUL)",
                bytes.len() + 1
            ),
        );
    }
    non_null(buf, "buf")?;
    // SAFETY: buf has buf_size >= len + 1 writable bytes (caller's contract); no overlap with our
    // own `bytes`.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf as *mut u8, bytes.len());
        *buf.add(bytes.len()) = 0;
    }
    Ok(())
}

/// Reserved bytes must be zero, so that a later version can give them a meaning.
fn check_reserved(bytes: &[u8], what: &str) -> Res<()> {
    if bytes.iter().any(|&b| b != 0) {
        return err(
            FERROLM_INVALID_ARGUMENT,
            format!("{what}.reserved must be zero"),
        );
    }
    Ok(())
}

fn kv_type_from(v: i32) -> Res<KvType> {
    match v {
        0 => Ok(KvType::F32),
        1 => Ok(KvType::F16),
        8 => Ok(KvType::Q8_0),
        _ => err(
            FERROLM_INVALID_ARGUMENT,
            format!("kv_type {v} is not a ferrolm_kv_type (F32 = 0, F16 = 1, Q8_0 = 8)"),
        ),
    }
}

fn sampler_params_from(p: &ferrolm_sampler_params) -> Res<SamplerParams> {
    if p.repeat_last_n < 0 {
        return err(
            FERROLM_INVALID_ARGUMENT,
            format!(
                "sampler repeat_last_n is {}; expected 0..=1048576",
                p.repeat_last_n
            ),
        );
    }
    let params = SamplerParams {
        temp: p.temp,
        top_k: p.top_k,
        top_p: p.top_p,
        min_p: p.min_p,
        repeat_penalty: p.repeat_penalty,
        repeat_last_n: p.repeat_last_n as usize,
        freq_penalty: p.frequency_penalty,
        presence_penalty: p.presence_penalty,
        seed: p.seed,
    };
    match params.validate() {
        Ok(()) => Ok(params),
        Err(m) => err(FERROLM_INVALID_ARGUMENT, format!("sampler {m}")),
    }
}

fn stop_reason(s: StopReason) -> ferrolm_stop_reason {
    match s {
        StopReason::EndOfGeneration => ferrolm_stop_reason::FERROLM_STOP_EOG,
        StopReason::MaxTokens => ferrolm_stop_reason::FERROLM_STOP_MAX_TOKENS,
        StopReason::StopString => ferrolm_stop_reason::FERROLM_STOP_STRING,
        StopReason::Callback => ferrolm_stop_reason::FERROLM_STOP_CALLBACK,
        StopReason::ContextFull => ferrolm_stop_reason::FERROLM_STOP_CONTEXT_FULL,
    }
}

fn token_or_none(t: Option<u32>) -> ferrolm_token {
    t.map_or(FERROLM_TOKEN_NONE, |t| t as ferrolm_token)
}

// ---- version, status, errors ----

/// The library's version, "MAJOR.MINOR.PATCH". Static storage.
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn ferrolm_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// The library's `FERROLM_ABI_VERSION`. A program built against a header whose
/// `FERROLM_ABI_VERSION` differs must not use the library.
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn ferrolm_abi_version() -> u32 {
    FERROLM_ABI_VERSION
}

/// A short description of a status code ("buffer too small"), or "unknown status" for a value
/// that is not one. Static storage.
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn ferrolm_status_string(status: c_int) -> *const c_char {
    let s: &'static CStr = match status {
        0 => c"ok",
        1 => c"invalid argument",
        2 => c"null pointer",
        3 => c"invalid UTF-8",
        4 => c"I/O error",
        5 => c"invalid model file",
        6 => c"unsupported",
        7 => c"context full",
        8 => c"buffer too small",
        9 => c"invalid token",
        10 => c"no logits",
        11 => c"not found",
        12 => c"internal error (panic)",
        _ => c"unknown status",
    };
    s.as_ptr()
}

/// The message of the last call that failed on the calling thread (any function), or "" when
/// none has. The text is owned by ferrolm and stays valid until the next failing ferrolm call on
/// this thread. This is where the message of a failed `ferrolm_model_load()` is.
/// Thread safety: safe from any thread; each thread has its own message.
#[no_mangle]
pub extern "C" fn ferrolm_last_error() -> *const c_char {
    guard_value(c"".as_ptr(), || {
        LAST_ERROR
            .try_with(|e| e.borrow().as_ref().map_or(c"".as_ptr(), |c| c.as_ptr()))
            .unwrap_or(c"".as_ptr())
    })
}

// ---- default parameters ----

/// Default model parameters (memory-mapped).
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn ferrolm_model_default_params() -> ferrolm_model_params {
    ferrolm_model_params {
        struct_size: size_of::<ferrolm_model_params>(),
        use_mmap: true,
        reserved: [0; 7],
    }
}

/// Default context parameters: the model's context length (at most 4096), batches of 512, one
/// thread per CPU, F16 KV cache.
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn ferrolm_context_default_params() -> ferrolm_context_params {
    let d = ContextParams::default();
    ferrolm_context_params {
        struct_size: size_of::<ferrolm_context_params>(),
        n_ctx: 0,
        n_batch: d.n_batch as u32,
        n_threads: 0,
        kv_type: ferrolm_kv_type::FERROLM_KV_F16 as i32,
    }
}

/// Default sampler parameters, llama.cpp's and `ferrolm run`'s: temp 0.8, top-k 40, top-p 0.95,
/// min-p 0.05, penalties off, seed from the clock.
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn ferrolm_sampler_default_params() -> ferrolm_sampler_params {
    let d = SamplerParams::default();
    ferrolm_sampler_params {
        struct_size: size_of::<ferrolm_sampler_params>(),
        temp: d.temp,
        top_k: d.top_k,
        top_p: d.top_p,
        min_p: d.min_p,
        repeat_penalty: d.repeat_penalty,
        repeat_last_n: d.repeat_last_n.min(i32::MAX as usize) as i32,
        frequency_penalty: d.freq_penalty,
        presence_penalty: d.presence_penalty,
        seed: FERROLM_SEED_RANDOM,
    }
}

/// Default generation parameters: no limit on tokens, stop at end of generation, no stop
/// strings, control tokens in the prompt parsed, not rendered in the output.
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn ferrolm_generate_default_params() -> ferrolm_generate_params {
    ferrolm_generate_params {
        struct_size: size_of::<ferrolm_generate_params>(),
        stop: std::ptr::null(),
        n_stop: 0,
        n_predict: -1,
        ignore_eos: false,
        special: false,
        parse_special: true,
        reserved: 0,
    }
}

// ---- model ----

#[cfg(unix)]
fn path_from(p: &CStr) -> Res<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(p.to_bytes())))
}

#[cfg(not(unix))]
fn path_from(p: &CStr) -> Res<PathBuf> {
    match p.to_str() {
        Ok(s) => Ok(PathBuf::from(s)),
        Err(e) => err(
            FERROLM_INVALID_UTF8,
            format!("path is not valid UTF-8 (byte {})", e.valid_up_to()),
        ),
    }
}

/// Load a GGUF model. `params` may be NULL for the defaults. On success `*out_model` is a new
/// model to free with `ferrolm_model_free()`; on failure it is set to NULL and the message is in
/// `ferrolm_last_error()`. Statuses: `FERROLM_NULL_POINTER`, `FERROLM_IO` (cannot open or read),
/// `FERROLM_FORMAT` (not a GGUF model, truncated, missing tensors), `FERROLM_UNSUPPORTED`,
/// `FERROLM_INVALID_ARGUMENT` (bad `struct_size`). On Unix the path is taken as bytes.
/// Thread safety: safe from any thread; loads may run concurrently.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_model_load(
    path: *const c_char,
    params: *const ferrolm_model_params,
    out_model: *mut *mut ferrolm_model,
) -> ferrolm_status {
    guard(|| {
        non_null(out_model, "out_model")?;
        // SAFETY: non-NULL; the caller passes a writable pointer slot.
        unsafe { out_model.write_unaligned(std::ptr::null_mut()) };
        non_null(path, "path")?;
        let p = read_params(params, ferrolm_model_default_params())?;
        check_reserved(&p.reserved, "ferrolm_model_params")?;
        // SAFETY: non-NULL; the caller passes a NUL-terminated string.
        let path = path_from(unsafe { CStr::from_ptr(path) })?;
        let model = if p.use_mmap {
            Model::load(&path)?
        } else {
            let io = |source| GgufError::Io {
                path: path.display().to_string(),
                source,
            };
            let mut bytes = Vec::new();
            crate::gguf::open_regular(&path)
                .and_then(|f| std::io::Read::read_to_end(&mut &f, &mut bytes))
                .map_err(io)?;
            Model::from_gguf(Gguf::from_bytes(&bytes)?)?
        };
        let tok = Tokenizer::from_gguf(model.gguf())?;
        let arch = c_string(model.config().arch.name());
        let name = c_string(model.gguf().get_str("general.name").unwrap_or(""));
        let handle = Box::new(ferrolm_model {
            model: Arc::new(model),
            tok: Arc::new(tok),
            arch,
            name,
        });
        // SAFETY: as above.
        unsafe { out_model.write_unaligned(Box::into_raw(handle)) };
        Ok(())
    })
}

/// Free a model. NULL is ignored. Call at most once per model. Contexts made from it stay valid
/// (they keep the weights mapped until they are freed).
/// Thread safety: no other thread may be using this model handle (contexts may go on).
#[no_mangle]
pub unsafe extern "C" fn ferrolm_model_free(model: *mut ferrolm_model) {
    if model.is_null() {
        return;
    }
    guard_value((), || {
        // SAFETY: a pointer from ferrolm_model_load, freed at most once (caller's contract).
        drop(unsafe { Box::from_raw(model) });
    })
}

/// Describe a model into `*out_info` (set `out_info->struct_size = sizeof(ferrolm_model_info)`
/// first). Thread safety: safe from any thread, concurrently with other calls on the model.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_model_get_info(
    model: *const ferrolm_model,
    out_info: *mut ferrolm_model_info,
) -> ferrolm_status {
    guard(|| {
        let m = model_ref(model)?;
        let c = m.model.config();
        let i = |v: usize| v.min(i32::MAX as usize) as i32;
        let info = ferrolm_model_info {
            struct_size: size_of::<ferrolm_model_info>(),
            arch: m.arch.as_ptr(),
            name: m.name.as_ptr(),
            file_size: m.model.gguf().file_len(),
            weight_bytes: m.model.weight_bytes(),
            n_vocab: i(c.n_vocab),
            n_embd: i(c.n_embd),
            n_layer: i(c.n_layer),
            n_head: i(c.n_head),
            n_head_kv: i(c.n_head_kv),
            head_dim: i(c.head_dim),
            n_ff: i(c.n_ff),
            n_ctx_train: i(c.n_ctx_train),
            token_bos: token_or_none(m.tok.bos()),
            token_eos: token_or_none(m.tok.eos()),
        };
        write_sized(out_info, info)
    })
}

/// A metadata value of the model as text (strings as they are, numbers and booleans formatted,
/// arrays as "[type; length]"), like llama.cpp's `llama_model_meta_val_str`. Writes the text and
/// a NUL into `buf` (`buf_size` bytes; `buf` may be NULL when `buf_size` is 0) and its length
/// without the NUL into `*out_len`, also when the status is `FERROLM_BUFFER_TOO_SMALL` (call
/// again with `*out_len + 1` bytes). `FERROLM_NOT_FOUND` when the key is absent.
/// Thread safety: safe from any thread, concurrently with other calls on the model.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_model_meta(
    model: *const ferrolm_model,
    key: *const c_char,
    buf: *mut c_char,
    buf_size: usize,
    out_len: *mut usize,
) -> ferrolm_status {
    guard(|| {
        let m = model_ref(model)?;
        let key = c_str(key, "key")?;
        non_null(out_len, "out_len")?;
        let Some(v) = m.model.gguf().get(key) else {
            // SAFETY: non-NULL, writable (caller's contract).
            unsafe { out_len.write_unaligned(0) };
            return err(
                FERROLM_NOT_FOUND,
                format!("metadata key '{key}' is not in the model"),
            );
        };
        let text = match v.as_str() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(v.to_string()),
        };
        write_text(text.as_bytes(), buf, buf_size, out_len)
    })
}

/// Tokenize `text_len` bytes of UTF-8 at `text` (no NUL needed; `text` may be NULL when
/// `text_len` is 0). `add_special` adds BOS/EOS as the model's metadata asks (as at the start of
/// a conversation); `parse_special` turns control tokens written in the text (`<|im_start|>`)
/// into their ids. Writes up to `n_tokens_max` ids to `tokens` (may be NULL when `n_tokens_max`
/// is 0) and the count to `*out_n_tokens`, also when the status is `FERROLM_BUFFER_TOO_SMALL`
/// (nothing is written to `tokens` then). `FERROLM_INVALID_UTF8` for text that is not UTF-8.
/// Thread safety: safe from any thread, concurrently with other calls on the model.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_tokenize(
    model: *const ferrolm_model,
    text: *const c_char,
    text_len: usize,
    add_special: bool,
    parse_special: bool,
    tokens: *mut ferrolm_token,
    n_tokens_max: usize,
    out_n_tokens: *mut usize,
) -> ferrolm_status {
    guard(|| {
        let m = model_ref(model)?;
        non_null(out_n_tokens, "out_n_tokens")?;
        let bytes = slice(text as *const u8, text_len, "text")?;
        let text = std::str::from_utf8(bytes).map_err(|e| Error {
            status: FERROLM_INVALID_UTF8,
            msg: format!("text is not valid UTF-8 (byte {})", e.valid_up_to()),
        })?;
        let ids = m.tok.encode(text, add_special, parse_special);
        // SAFETY: non-NULL, writable (caller's contract).
        unsafe { out_n_tokens.write_unaligned(ids.len()) };
        if ids.len() > n_tokens_max {
            return err(
                FERROLM_BUFFER_TOO_SMALL,
                format!(
                    "the text is {} tokens; the buffer holds {n_tokens_max}",
                    ids.len()
                ),
            );
        }
        if !ids.is_empty() {
            non_null(tokens, "tokens")?;
            // SAFETY: `tokens` has n_tokens_max >= ids.len() writable elements (caller's
            // contract); u32 ids below 2^31 (the vocabulary limit) have the same bits as i32.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    ids.as_ptr() as *const ferrolm_token,
                    tokens,
                    ids.len(),
                )
            };
        }
        Ok(())
    })
}

/// Turn tokens back into text, as llama.cpp's `llama_detokenize` (control tokens rendered only
/// with `special`; bytes that are not UTF-8 become U+FFFD). Writes the text and a NUL into `buf`
/// (`buf_size` bytes; may be NULL when 0) and the text's length without the NUL into
/// `*out_len`, also when the status is `FERROLM_BUFFER_TOO_SMALL` (call again with
/// `*out_len + 1` bytes). `FERROLM_INVALID_TOKEN` for an id outside the vocabulary.
/// Thread safety: safe from any thread, concurrently with other calls on the model.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_detokenize(
    model: *const ferrolm_model,
    tokens: *const ferrolm_token,
    n_tokens: usize,
    special: bool,
    buf: *mut c_char,
    buf_size: usize,
    out_len: *mut usize,
) -> ferrolm_status {
    guard(|| {
        let m = model_ref(model)?;
        non_null(out_len, "out_len")?;
        let toks = slice(tokens, n_tokens, "tokens")?;
        let mut ids = Vec::with_capacity(toks.len());
        check_tokens(toks, m.tok.n_vocab(), &mut ids)?;
        let text = m.tok.decode(&ids, special);
        write_text(text.as_bytes(), buf, buf_size, out_len)
    })
}

/// The bytes one token stands for (a piece of a UTF-8 character for byte tokens; nothing for a
/// control token unless `special`). Buffer handling as `ferrolm_detokenize()`.
/// Thread safety: safe from any thread, concurrently with other calls on the model.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_token_to_piece(
    model: *const ferrolm_model,
    token: ferrolm_token,
    special: bool,
    buf: *mut c_char,
    buf_size: usize,
    out_len: *mut usize,
) -> ferrolm_status {
    guard(|| {
        let m = model_ref(model)?;
        non_null(out_len, "out_len")?;
        let id = check_token(token, m.tok.n_vocab())?;
        write_text(m.tok.token_to_piece(id, special), buf, buf_size, out_len)
    })
}

/// True when `token` ends generation (EOS, EOT, `<|im_end|>`, ...). False for NULL or an id
/// outside the vocabulary.
/// Thread safety: safe from any thread, concurrently with other calls on the model.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_token_is_eog(
    model: *const ferrolm_model,
    token: ferrolm_token,
) -> bool {
    guard_value(false, || match model_ref(model) {
        Ok(m) => token >= 0 && m.tok.is_eog(token as u32),
        Err(_) => false,
    })
}

// ---- context ----

/// Create a context for `model`. `params` may be NULL for the defaults. Allocates the KV cache
/// and scratch buffers and starts the worker threads; the sampler starts with
/// `ferrolm_sampler_default_params()`. On success `*out_ctx` is a new context to free with
/// `ferrolm_context_free()`; on failure it is NULL and the message in `ferrolm_last_error()`.
/// Thread safety: safe from any thread; any number of contexts may share one model.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_context_new(
    model: *const ferrolm_model,
    params: *const ferrolm_context_params,
    out_ctx: *mut *mut ferrolm_context,
) -> ferrolm_status {
    guard(|| {
        non_null(out_ctx, "out_ctx")?;
        // SAFETY: non-NULL; the caller passes a writable pointer slot.
        unsafe { out_ctx.write_unaligned(std::ptr::null_mut()) };
        let m = model_ref(model)?;
        let p = read_params(params, ferrolm_context_default_params())?;
        if p.n_threads < 0 {
            return err(
                FERROLM_INVALID_ARGUMENT,
                format!(
                    "n_threads is {}; expected >= 0 (0 = one per CPU)",
                    p.n_threads
                ),
            );
        }
        let cp = ContextParams {
            n_ctx: p.n_ctx as usize,
            n_batch: if p.n_batch == 0 {
                ContextParams::default().n_batch
            } else {
                p.n_batch as usize
            },
            n_threads: p.n_threads as usize,
            kv_type: kv_type_from(p.kv_type)?,
            min_ctx: 0,
        };
        let ctx = Context::new(Arc::clone(&m.model), cp)?;
        let n_vocab = m.model.config().n_vocab;
        let sp = sampler_params_from(&ferrolm_sampler_default_params())?;
        let handle = Box::new(ferrolm_context {
            ctx,
            tok: Arc::clone(&m.tok),
            sampler: Sampler::new(sp, n_vocab),
            has_logits: false,
            pending: None,
            poisoned: false,
            error: None,
            text: Vec::with_capacity(256),
            ids: Vec::new(),
        });
        // SAFETY: as above.
        unsafe { out_ctx.write_unaligned(Box::into_raw(handle)) };
        Ok(())
    })
}

/// Free a context (joins its worker threads). NULL is ignored. Call at most once per context.
/// Thread safety: no other thread may be using this context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_context_free(ctx: *mut ferrolm_context) {
    if ctx.is_null() {
        return;
    }
    guard_value((), || {
        // SAFETY: a pointer from ferrolm_context_new, freed at most once (caller's contract).
        drop(unsafe { Box::from_raw(ctx) });
    })
}

/// The message of the last call on this context if it failed, else "" (each call on the context
/// clears it). Owned by the context; valid until the next call on it. "" for NULL.
/// Thread safety: as every call on a context, one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_context_error(ctx: *const ferrolm_context) -> *const c_char {
    if ctx.is_null() {
        return c"".as_ptr();
    }
    guard_value(c"".as_ptr(), || {
        // SAFETY: a live context (caller's contract), only read here.
        let c = unsafe { &*ctx };
        c.error.as_ref().map_or(c"".as_ptr(), |e| e.as_ptr())
    })
}

/// Positions the context holds (its KV cache length); 0 for NULL.
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_context_n_ctx(ctx: *const ferrolm_context) -> usize {
    if ctx.is_null() {
        return 0;
    }
    // SAFETY: a live context (caller's contract), only read here.
    guard_value(0, || unsafe { &*ctx }.ctx.n_ctx())
}

/// Positions in use (tokens evaluated since creation, reset or truncation); 0 for NULL.
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_context_n_past(ctx: *const ferrolm_context) -> usize {
    if ctx.is_null() {
        return 0;
    }
    // SAFETY: a live context (caller's contract), only read here.
    guard_value(0, || unsafe { &*ctx }.ctx.n_past())
}

/// Worker threads of the context; 0 for NULL.
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_context_n_threads(ctx: *const ferrolm_context) -> usize {
    if ctx.is_null() {
        return 0;
    }
    // SAFETY: a live context (caller's contract), only read here.
    guard_value(0, || unsafe { &*ctx }.ctx.n_threads())
}

/// Forget everything: empty the KV cache, drop the logits, empty the sampler's penalty window and
/// restart its random generator from its seed (so the same calls give the same text again).
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_context_reset(ctx: *mut ferrolm_context) -> ferrolm_status {
    guard_ctx(ctx, |c| {
        c.ctx.reset();
        c.sampler.reset();
        c.has_logits = false;
        c.pending = None;
        Ok(())
    })
}

/// Keep only the first `n_keep` positions (rewind a chat turn); a no-op when `n_keep >= n_past`.
/// When positions are dropped the logits are too (evaluate a token to get new ones).
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_context_truncate(
    ctx: *mut ferrolm_context,
    n_keep: usize,
) -> ferrolm_status {
    guard_ctx(ctx, |c| {
        if n_keep < c.ctx.n_past() {
            c.ctx.truncate(n_keep);
            c.has_logits = false;
            c.pending = None;
        }
        Ok(())
    })
}

/// Evaluate `n_tokens` tokens at the next positions (append them to the KV cache) and keep the
/// logits of the last one. `tokens` may be NULL when `n_tokens` is 0 (a no-op). Errors:
/// `FERROLM_CONTEXT_FULL` (nothing is evaluated), `FERROLM_INVALID_TOKEN`. Does not touch the
/// sampler's penalty window (see `ferrolm_sampler_accept()`).
/// Thread safety: one thread at a time per context; contexts sharing a model may eval in parallel.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_eval(
    ctx: *mut ferrolm_context,
    tokens: *const ferrolm_token,
    n_tokens: usize,
) -> ferrolm_status {
    guard_ctx(ctx, |c| {
        let toks = slice(tokens, n_tokens, "tokens")?;
        if toks.is_empty() {
            return Ok(());
        }
        let mut ids = std::mem::take(&mut c.ids);
        let r = check_tokens(toks, c.ctx.model().config().n_vocab, &mut ids)
            .and_then(|()| flush_pending(c, ids.len()))
            .and_then(|()| c.ctx.eval(&ids, Logits::Last).map_err(Error::from));
        c.ids = ids;
        r?;
        c.has_logits = true;
        Ok(())
    })
}

/// The logits of the last evaluated token: `*out_logits` points to `*out_n_vocab` floats owned by
/// the context, valid until the next call on it that evaluates, resets, truncates or frees.
/// `FERROLM_NO_LOGITS` before anything was evaluated (or after a reset or truncation).
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_get_logits(
    ctx: *mut ferrolm_context,
    out_logits: *mut *const f32,
    out_n_vocab: *mut usize,
) -> ferrolm_status {
    guard_ctx(ctx, |c| {
        non_null(out_logits, "out_logits")?;
        non_null(out_n_vocab, "out_n_vocab")?;
        if !c.has_logits {
            return err(FERROLM_NO_LOGITS, "no logits: evaluate tokens first");
        }
        let l = c.ctx.logits();
        // SAFETY: both non-NULL and writable (caller's contract).
        unsafe {
            out_logits.write_unaligned(l.as_ptr());
            out_n_vocab.write_unaligned(l.len());
        }
        Ok(())
    })
}

/// Replace the context's sampler: new parameters, an empty penalty window, the random generator
/// seeded from `params->seed`. `params` may be NULL for the defaults.
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_sampler_set(
    ctx: *mut ferrolm_context,
    params: *const ferrolm_sampler_params,
) -> ferrolm_status {
    guard_ctx(ctx, |c| {
        let p = read_params(params, ferrolm_sampler_default_params())?;
        let sp = sampler_params_from(&p)?;
        c.sampler = Sampler::new(sp, c.ctx.model().config().n_vocab);
        Ok(())
    })
}

/// The seed of the context's sampler (the clock's, when `FERROLM_SEED_RANDOM` was asked for);
/// 0 for NULL.
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_sampler_seed(ctx: *const ferrolm_context) -> u64 {
    if ctx.is_null() {
        return 0;
    }
    // SAFETY: a live context (caller's contract), only read here.
    guard_value(0, || unsafe { &*ctx }.sampler.seed())
}

/// Sample the next token from the last logits with the context's sampler, and record it in the
/// penalty window (as llama.cpp's `llama_sampler_sample`). The token is not evaluated: pass it
/// to `ferrolm_eval()` to continue. `FERROLM_NO_LOGITS` when there are none.
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_sample(
    ctx: *mut ferrolm_context,
    out_token: *mut ferrolm_token,
) -> ferrolm_status {
    guard_ctx(ctx, |c| {
        non_null(out_token, "out_token")?;
        if !c.has_logits {
            return err(
                FERROLM_NO_LOGITS,
                "no logits to sample from: evaluate tokens first",
            );
        }
        let id = c.sampler.sample(c.ctx.logits());
        c.sampler.accept(id);
        // SAFETY: non-NULL, writable (caller's contract).
        unsafe { out_token.write_unaligned(id as ferrolm_token) };
        Ok(())
    })
}

/// Record tokens in the sampler's penalty window (e.g. a prompt evaluated with `ferrolm_eval()`,
/// as `ferrolm_generate()` does). `tokens` may be NULL when `n_tokens` is 0.
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_sampler_accept(
    ctx: *mut ferrolm_context,
    tokens: *const ferrolm_token,
    n_tokens: usize,
) -> ferrolm_status {
    guard_ctx(ctx, |c| {
        let toks = slice(tokens, n_tokens, "tokens")?;
        let n_vocab = c.ctx.model().config().n_vocab;
        for &t in toks {
            check_token(t, n_vocab)?;
        }
        for &t in toks {
            c.sampler.accept(t as u32);
        }
        Ok(())
    })
}

/// Generation shared by the two entry points; the prompt ids are in `c.ids`.
/// Evaluate the token the last generate call returned but did not evaluate, if the context has
/// room for it and `then` more tokens (otherwise leave it for the caller's context-full error).
fn flush_pending(c: &mut ferrolm_context, then: usize) -> Res<()> {
    if let Some(t) = c.pending {
        if c.ctx.n_past() + 1 + then <= c.ctx.n_ctx() {
            c.pending = None;
            c.ctx.eval(&[t], Logits::Last)?;
            c.has_logits = true;
        }
    }
    Ok(())
}

fn run_generate(
    c: &mut ferrolm_context,
    callback: ferrolm_token_callback,
    user_data: *mut c_void,
    out_stats: *mut ferrolm_generate_stats,
    p: &ferrolm_generate_params,
) -> Res<()> {
    if !out_stats.is_null() {
        // Check the caller's struct_size before generating, not after.
        // SAFETY: non-NULL; the caller passes a readable struct starting with its struct_size.
        let size = unsafe { (out_stats as *const usize).read_unaligned() };
        if size < ferrolm_generate_stats::MIN_SIZE {
            return err(
                FERROLM_INVALID_ARGUMENT,
                format!("ferrolm_generate_stats.struct_size is {size}; set it to sizeof(ferrolm_generate_stats) before the call"),
            );
        }
    }
    if p.n_predict < -1 {
        return err(
            FERROLM_INVALID_ARGUMENT,
            format!(
                "n_predict is {}; expected -1 (no limit) or >= 0",
                p.n_predict
            ),
        );
    }
    let stop_ptrs = slice(p.stop, p.n_stop, "stop")?;
    let mut stops = Vec::with_capacity(stop_ptrs.len());
    for (i, &s) in stop_ptrs.iter().enumerate() {
        stops.push(c_str(s, &format!("stop[{i}]"))?.to_string());
    }
    flush_pending(c, c.ids.len())?;
    if c.ids.is_empty() && !c.has_logits {
        return err(
            FERROLM_NO_LOGITS,
            "the prompt is empty and nothing was evaluated before: nothing to generate from",
        );
    }
    let free = c.ctx.n_ctx() - c.ctx.n_past();
    if c.ids.len() > free {
        return err(
            FERROLM_CONTEXT_FULL,
            format!(
                "the prompt is {} tokens, but the context has {free} positions left of {}",
                c.ids.len(),
                c.ctx.n_ctx()
            ),
        );
    }
    let mut stops = StopMatcher::new(stops);
    let opts = GenOptions {
        n_predict: usize::try_from(p.n_predict).ok(),
        ignore_eog: p.ignore_eos,
        special: p.special,
    };
    let ids = std::mem::take(&mut c.ids);
    let text = &mut c.text;
    let on_token = |id: u32, piece: &str| -> bool {
        let Some(cb) = callback else { return true };
        text.clear();
        text.extend_from_slice(piece.as_bytes());
        text.push(0);
        let token = if id == u32::MAX {
            FERROLM_TOKEN_NONE
        } else {
            id as ferrolm_token
        };
        // SAFETY: a C function pointer given by the caller, called with the caller's user_data and
        // a NUL-terminated buffer of piece.len() + 1 bytes alive for the call.
        unsafe {
            cb(
                user_data,
                token,
                text.as_ptr() as *const c_char,
                piece.len(),
            )
        }
    };
    let r = generate(
        &mut c.ctx,
        &c.tok,
        &mut c.sampler,
        &mut stops,
        &ids,
        &opts,
        on_token,
    );
    c.ids = ids;
    let stats = r?;
    if !c.ids.is_empty() {
        c.has_logits = true;
    }
    c.pending = stats.pending;
    if !out_stats.is_null() {
        let s = ferrolm_generate_stats {
            struct_size: size_of::<ferrolm_generate_stats>(),
            n_prompt: stats.n_prompt as u64,
            n_gen: stats.n_gen as u64,
            prompt_ms: stats.prompt_time.as_secs_f64() * 1e3,
            gen_ms: stats.gen_time.as_secs_f64() * 1e3,
            stop_reason: stop_reason(stats.stop),
            reserved: 0,
        };
        write_sized(out_stats, s)?;
    }
    Ok(())
}

/// Generate from a prompt, as `ferrolm run` does: tokenize `prompt` (NUL-terminated UTF-8; BOS
/// added when the context is empty, control tokens parsed per `params->parse_special`), append
/// it to the context, then sample, stream and feed back one token at a time with the context's
/// sampler, calling `callback` (may be NULL) for each token. `params` and `out_stats` may be
/// NULL. With the same prompt, seed and sampler parameters on a fresh context, the text is the
/// one `ferrolm run -p PROMPT -n N --seed SEED` prints.
///
/// The last token sampled is not evaluated at once (as in llama.cpp's examples): `n_past` grows
/// by the prompt and all generated tokens but the last, and the next `ferrolm_generate()` or
/// `ferrolm_eval()` on the context evaluates that token first, so that two calls (a prompt, then
/// an empty prompt to continue) give the same text as one call for all the tokens.
/// Errors: `FERROLM_INVALID_UTF8`, `FERROLM_CONTEXT_FULL` (the prompt does not fit; a context
/// that fills during generation ends it with `FERROLM_STOP_CONTEXT_FULL` instead),
/// `FERROLM_NO_LOGITS` (empty prompt on an empty context).
/// Thread safety: one thread at a time per context; contexts sharing a model may generate in
/// parallel.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_generate(
    ctx: *mut ferrolm_context,
    prompt: *const c_char,
    params: *const ferrolm_generate_params,
    callback: ferrolm_token_callback,
    user_data: *mut c_void,
    out_stats: *mut ferrolm_generate_stats,
) -> ferrolm_status {
    guard_ctx(ctx, |c| {
        let p = read_params(params, ferrolm_generate_default_params())?;
        check_reserved(&[p.reserved], "ferrolm_generate_params")?;
        let prompt = c_str(prompt, "prompt")?;
        let add_special = c.ctx.n_past() == 0;
        c.ids.clear();
        c.tok
            .encode_into(prompt, add_special, p.parse_special, &mut c.ids);
        run_generate(c, callback, user_data, out_stats, &p)
    })
}

/// `ferrolm_generate()` from token ids instead of text (nothing is added to them;
/// `params->parse_special` is unused). `tokens` may be NULL when `n_tokens` is 0.
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_generate_tokens(
    ctx: *mut ferrolm_context,
    tokens: *const ferrolm_token,
    n_tokens: usize,
    params: *const ferrolm_generate_params,
    callback: ferrolm_token_callback,
    user_data: *mut c_void,
    out_stats: *mut ferrolm_generate_stats,
) -> ferrolm_status {
    guard_ctx(ctx, |c| {
        let p = read_params(params, ferrolm_generate_default_params())?;
        check_reserved(&[p.reserved], "ferrolm_generate_params")?;
        let toks = slice(tokens, n_tokens, "tokens")?;
        let mut ids = std::mem::take(&mut c.ids);
        let r = check_tokens(toks, c.ctx.model().config().n_vocab, &mut ids);
        c.ids = ids;
        r?;
        run_generate(c, callback, user_data, out_stats, &p)
    })
}

// The handles' thread-safety promises, checked by the compiler: a model is shared between
// threads, a context moves between them.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    const fn movable<T: Send>() {}
    shared::<ferrolm_model>();
    movable::<ferrolm_context>();
};

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: ferrolm_last_error returns a valid NUL-terminated string.
        unsafe { CStr::from_ptr(ferrolm_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_with_its_message() {
        let st = guard(|| panic!("boom {}", 42));
        assert_eq!(st, FERROLM_PANIC);
        assert!(last_error().contains("boom 42"), "{}", last_error());
        assert_eq!(guard_value(7u32, || panic!("again")), 7);
        assert!(last_error().contains("again"));
    }

    #[test]
    fn errors_are_per_thread() {
        let st = guard(|| err(FERROLM_IO, "on the main thread"));
        assert_eq!(st, FERROLM_IO);
        let other = std::thread::spawn(|| {
            let before = last_error();
            let _ = guard(|| err(FERROLM_FORMAT, "on another thread"));
            (before, last_error())
        })
        .join()
        .unwrap();
        assert_eq!(other, (String::new(), "on another thread".to_string()));
        assert_eq!(last_error(), "on the main thread");
        // Success does not clear it.
        assert_eq!(guard(|| Ok(())), FERROLM_OK);
        assert_eq!(last_error(), "on the main thread");
    }

    #[test]
    fn status_strings_cover_every_status() {
        for s in 0..=FERROLM_PANIC as c_int {
            // SAFETY: static NUL-terminated strings.
            let text = unsafe { CStr::from_ptr(ferrolm_status_string(s)) }
                .to_str()
                .unwrap();
            assert_ne!(text, "unknown status", "status {s}");
        }
    }

    #[test]
    fn params_read_by_struct_size() {
        // NULL: the defaults.
        let p = read_params(std::ptr::null(), ferrolm_context_default_params())
            .ok()
            .unwrap();
        assert_eq!((p.n_ctx, p.n_batch, p.kv_type), (0, 512, 1));
        // A caller built against a newer, larger struct: our fields are read, the rest ignored.
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Newer {
            p: ferrolm_sampler_params,
            extra: u64,
        }
        let mut n = Newer {
            p: ferrolm_sampler_default_params(),
            extra: 99,
        };
        n.p.struct_size = size_of::<Newer>();
        n.p.temp = 0.25;
        let p = read_params(
            &n.p as *const ferrolm_sampler_params,
            ferrolm_sampler_default_params(),
        )
        .ok()
        .unwrap();
        assert_eq!(p.temp, 0.25);
        // Too small: refused with a message naming the struct.
        let mut small = ferrolm_sampler_default_params();
        small.struct_size = 8;
        let e = read_params(&small as *const _, ferrolm_sampler_default_params())
            .err()
            .unwrap();
        assert_eq!(e.status, FERROLM_INVALID_ARGUMENT);
        assert!(e.msg.contains("ferrolm_sampler_params"), "{}", e.msg);
    }

    #[test]
    fn output_structs_written_up_to_struct_size() {
        #[repr(C)]
        struct Newer {
            s: ferrolm_generate_stats,
            extra: u64,
        }
        let mut out = Newer {
            s: ferrolm_generate_stats {
                struct_size: size_of::<Newer>(),
                n_prompt: 0,
                n_gen: 0,
                prompt_ms: 0.0,
                gen_ms: 0.0,
                stop_reason: ferrolm_stop_reason::FERROLM_STOP_EOG,
                reserved: 0,
            },
            extra: 123,
        };
        let v = ferrolm_generate_stats {
            n_gen: 5,
            stop_reason: ferrolm_stop_reason::FERROLM_STOP_STRING,
            ..out.s
        };
        write_sized(&mut out.s as *mut _, v).ok().unwrap();
        assert_eq!(out.s.struct_size, size_of::<ferrolm_generate_stats>());
        assert_eq!(out.s.n_gen, 5);
        assert_eq!(out.s.stop_reason, ferrolm_stop_reason::FERROLM_STOP_STRING);
        assert_eq!(out.extra, 123, "bytes past our struct are left alone");
        out.s.struct_size = 0;
        assert_eq!(
            write_sized(&mut out.s as *mut _, v).err().unwrap().status,
            FERROLM_INVALID_ARGUMENT
        );
    }

    #[test]
    fn text_buffers_report_the_length_needed() {
        let mut buf = [0x55 as c_char; 8];
        let mut len = 0usize;
        let e = write_text(b"hello", buf.as_mut_ptr(), 5, &mut len)
            .err()
            .unwrap();
        assert_eq!((e.status, len), (FERROLM_BUFFER_TOO_SMALL, 5));
        assert_eq!(buf[0], 0x55, "nothing written on failure");
        write_text(b"hello", buf.as_mut_ptr(), 6, &mut len)
            .ok()
            .unwrap();
        // SAFETY: NUL-terminated by write_text.
        assert_eq!(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_bytes(), b"hello");
        assert_eq!(
            write_text(b"", std::ptr::null_mut(), 0, &mut len)
                .err()
                .unwrap()
                .status,
            FERROLM_BUFFER_TOO_SMALL
        );
        assert_eq!(
            write_text(b"x", std::ptr::null_mut(), 9, &mut len)
                .err()
                .unwrap()
                .status,
            FERROLM_NULL_POINTER
        );
    }

    #[test]
    fn null_handles_are_errors_not_crashes() {
        // SAFETY: every pointer is NULL or points to a local; the functions check for NULL.
        unsafe {
            ferrolm_model_free(std::ptr::null_mut());
            ferrolm_context_free(std::ptr::null_mut());
            let mut n = 0usize;
            assert_eq!(
                ferrolm_eval(std::ptr::null_mut(), std::ptr::null(), 0),
                FERROLM_NULL_POINTER
            );
            assert_eq!(
                ferrolm_tokenize(
                    std::ptr::null(),
                    c"x".as_ptr(),
                    1,
                    true,
                    true,
                    std::ptr::null_mut(),
                    0,
                    &mut n
                ),
                FERROLM_NULL_POINTER
            );
            let mut m: *mut ferrolm_model = std::ptr::NonNull::dangling().as_ptr();
            assert_eq!(
                ferrolm_model_load(std::ptr::null(), std::ptr::null(), &mut m),
                FERROLM_NULL_POINTER
            );
            assert!(m.is_null(), "the out-parameter is set to NULL on failure");
            assert_eq!(
                ferrolm_model_load(
                    c"/nonexistent/ferrolm.gguf".as_ptr(),
                    std::ptr::null(),
                    &mut m
                ),
                FERROLM_IO
            );
            assert!(last_error().contains("/nonexistent/ferrolm.gguf"));
        }
    }

    #[test]
    fn a_context_that_panicked_refuses_further_calls() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
        if !path.exists() {
            eprintln!("skipped: {} is missing", path.display());
            return;
        }
        let path = CString::new(path.to_str().unwrap()).unwrap();
        let mut cp = ferrolm_context_default_params();
        cp.n_ctx = 32;
        cp.n_threads = 1;
        // SAFETY: valid arguments; every handle is freed once at the end.
        unsafe {
            let mut model = std::ptr::null_mut();
            assert_eq!(
                ferrolm_model_load(path.as_ptr(), std::ptr::null(), &mut model),
                FERROLM_OK
            );
            let mut ctx = std::ptr::null_mut();
            assert_eq!(ferrolm_context_new(model, &cp, &mut ctx), FERROLM_OK);
            assert_eq!(ferrolm_eval(ctx, [1].as_ptr(), 1), FERROLM_OK);
            assert_eq!(guard_ctx(ctx, |_| panic!("a bug")), FERROLM_PANIC);
            let msg = CStr::from_ptr(ferrolm_context_error(ctx))
                .to_string_lossy()
                .into_owned();
            assert!(msg.contains("a bug"), "{msg}");
            assert_eq!(ferrolm_eval(ctx, [1].as_ptr(), 1), FERROLM_PANIC);
            assert_eq!(ferrolm_context_reset(ctx), FERROLM_PANIC);
            let msg = CStr::from_ptr(ferrolm_context_error(ctx))
                .to_string_lossy()
                .into_owned();
            assert!(msg.contains("unusable"), "{msg}");
            ferrolm_context_free(ctx);
            ferrolm_model_free(model);
        }
    }

    unsafe extern "C" fn collect(
        ud: *mut c_void,
        _t: ferrolm_token,
        text: *const c_char,
        n: usize,
    ) -> bool {
        // SAFETY: `ud` is the String passed below; `text` holds `n` bytes for the call.
        unsafe {
            let out = &mut *(ud as *mut String);
            let b = std::slice::from_raw_parts(text as *const u8, n);
            out.push_str(std::str::from_utf8(b).unwrap());
        }
        true
    }

    /// Issue 15, item 12: generate 4 tokens, then continue with an empty prompt for 4 more: the
    /// same text as one 8-token call (before, the last token of the first call was never
    /// evaluated and the continuation sampled it again).
    #[test]
    fn continuing_with_an_empty_prompt_equals_one_call() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
        if !path.exists() {
            eprintln!("skipped: {} is missing", path.display());
            return;
        }
        let path = CString::new(path.to_str().unwrap()).unwrap();
        let prompt = CString::new("The three primary colors are").unwrap();
        let empty = CString::new("").unwrap();
        let mut cp = ferrolm_context_default_params();
        cp.n_ctx = 64;
        cp.n_threads = 1;
        let mut sp = ferrolm_sampler_default_params();
        sp.temp = 0.0;
        // SAFETY: valid arguments; every handle is freed once at the end; the callback's
        // user_data is a live String.
        unsafe {
            let mut model = std::ptr::null_mut();
            assert_eq!(
                ferrolm_model_load(path.as_ptr(), std::ptr::null(), &mut model),
                FERROLM_OK
            );
            let run = |parts: &[(&CStr, i32)]| {
                let mut ctx = std::ptr::null_mut();
                assert_eq!(ferrolm_context_new(model, &cp, &mut ctx), FERROLM_OK);
                assert_eq!(ferrolm_sampler_set(ctx, &sp), FERROLM_OK);
                let mut text = String::new();
                for &(p, n) in parts {
                    let mut gp = ferrolm_generate_default_params();
                    gp.n_predict = n;
                    let st = ferrolm_generate(
                        ctx,
                        p.as_ptr(),
                        &gp,
                        Some(collect),
                        &mut text as *mut String as *mut c_void,
                        std::ptr::null_mut(),
                    );
                    assert_eq!(st, FERROLM_OK);
                }
                let n_past = (*ctx).ctx.n_past();
                ferrolm_context_free(ctx);
                (text, n_past)
            };
            let (one, n_one) = run(&[(&prompt, 8)]);
            let (two, n_two) = run(&[(&prompt, 4), (&empty, 4)]);
            let (three, _) = run(&[(&prompt, 3), (&empty, 2), (&empty, 3)]);
            assert_eq!(two, one);
            assert_eq!(three, one);
            // Both contexts hold the prompt and all generated tokens but the last.
            assert_eq!(n_two, n_one);
            ferrolm_model_free(model);
        }
    }
}

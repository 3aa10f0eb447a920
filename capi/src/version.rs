//! Version, status strings, the last error and the default parameter structs.

use std::ffi::{c_char, c_int, CStr};
use std::mem::size_of;

use ferrolm::model::ContextParams;
use ferrolm::sampler::SamplerParams;

use crate::error::*;
use crate::types::*;

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

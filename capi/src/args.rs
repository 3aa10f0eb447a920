//! Checking what C passes in: pointers, parameter structs, strings, slices, token ids.

use std::ffi::{c_char, CStr};
use std::mem::size_of;
use std::path::PathBuf;

use ferrolm::generate::StopReason;
use ferrolm::kv_cache::KvType;
use ferrolm::sampler::SamplerParams;

use crate::error::*;
use crate::types::*;

pub(crate) fn non_null<T>(p: *const T, what: &str) -> Res<()> {
    if p.is_null() {
        err(FERROLM_NULL_POINTER, format!("{what} is NULL"))
    } else {
        Ok(())
    }
}

/// The model behind a pointer.
pub(crate) fn model_ref<'a>(model: *const ferrolm_model) -> Res<&'a ferrolm_model> {
    non_null(model, "model")?;
    // SAFETY: non-NULL, and the caller passes a live model (never mutated after load, so shared
    // references from many threads are fine).
    Ok(unsafe { &*model })
}

/// Read a parameter struct: NULL = the defaults; otherwise `struct_size` bytes of it (at most
/// ours), the rest from the defaults.
pub(crate) fn read_params<T: Versioned>(p: *const T, defaults: T) -> Res<T> {
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
pub(crate) fn write_sized<T: Versioned>(out: *mut T, value: T) -> Res<()> {
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
pub(crate) fn c_str<'a>(p: *const c_char, what: &str) -> Res<&'a str> {
    non_null(p, what)?;
    // SAFETY: non-NULL; the caller passes a NUL-terminated string alive for the call.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|e| Error {
        status: FERROLM_INVALID_UTF8,
        msg: format!("{what} is not valid UTF-8 (byte {})", e.valid_up_to()),
    })
}

/// `(pointer, length)` as a slice; the pointer may be NULL when the length is 0.
pub(crate) fn slice<'a, T>(p: *const T, n: usize, what: &str) -> Res<&'a [T]> {
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
pub(crate) fn check_tokens(
    tokens: &[ferrolm_token],
    n_vocab: usize,
    out: &mut Vec<u32>,
) -> Res<()> {
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

pub(crate) fn check_token(t: ferrolm_token, n_vocab: usize) -> Res<u32> {
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
pub(crate) fn write_text(
    bytes: &[u8],
    buf: *mut c_char,
    buf_size: usize,
    out_len: *mut usize,
) -> Res<()> {
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
pub(crate) fn check_reserved(bytes: &[u8], what: &str) -> Res<()> {
    if bytes.iter().any(|&b| b != 0) {
        return err(
            FERROLM_INVALID_ARGUMENT,
            format!("{what}.reserved must be zero"),
        );
    }
    Ok(())
}

pub(crate) fn kv_type_from(v: i32) -> Res<KvType> {
    match v {
        0 => Ok(KvType::F32),
        1 => Ok(KvType::F16),
        2 => Ok(KvType::Q4_0),
        3 => Ok(KvType::Q4_1),
        6 => Ok(KvType::Q5_0),
        7 => Ok(KvType::Q5_1),
        8 => Ok(KvType::Q8_0),
        _ => err(
            FERROLM_INVALID_ARGUMENT,
            format!(
                "kv_type {v} is not a ferrolm_kv_type (F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, \
                 Q5_0 = 6, Q5_1 = 7, Q8_0 = 8)"
            ),
        ),
    }
}

pub(crate) fn sampler_params_from(p: &ferrolm_sampler_params) -> Res<SamplerParams> {
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

pub(crate) fn stop_reason(s: StopReason) -> ferrolm_stop_reason {
    match s {
        StopReason::EndOfGeneration => ferrolm_stop_reason::FERROLM_STOP_EOG,
        StopReason::MaxTokens => ferrolm_stop_reason::FERROLM_STOP_MAX_TOKENS,
        StopReason::StopString => ferrolm_stop_reason::FERROLM_STOP_STRING,
        StopReason::Callback => ferrolm_stop_reason::FERROLM_STOP_CALLBACK,
        StopReason::ContextFull => ferrolm_stop_reason::FERROLM_STOP_CONTEXT_FULL,
    }
}

pub(crate) fn token_or_none(t: Option<u32>) -> ferrolm_token {
    t.map_or(FERROLM_TOKEN_NONE, |t| t as ferrolm_token)
}

/// A NUL-terminated path argument: its bytes as they are on Unix, UTF-8 elsewhere.
pub(crate) fn c_path(p: *const c_char, what: &str) -> Res<PathBuf> {
    non_null(p, what)?;
    // SAFETY: non-NULL; the caller passes a NUL-terminated string alive for the call.
    let p = unsafe { CStr::from_ptr(p) };
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(p.to_bytes())))
    }
    #[cfg(not(unix))]
    match p.to_str() {
        Ok(s) => Ok(PathBuf::from(s)),
        Err(e) => err(
            FERROLM_INVALID_UTF8,
            format!("{what} is not valid UTF-8 (byte {})", e.valid_up_to()),
        ),
    }
}

//! Loading a model, its metadata, and the tokenizer's entry points.

use std::ffi::c_char;
use std::mem::size_of;
use std::sync::Arc;

use ferrolm::gguf::{Gguf, GgufError};
use ferrolm::model::Model;
use ferrolm::tokenizer::Tokenizer;

use crate::args::*;
use crate::error::*;
use crate::types::*;
use crate::version::*;

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
        let path = c_path(path, "path")?;
        let p = read_params(params, ferrolm_model_default_params())?;
        check_reserved(&p.reserved, "ferrolm_model_params")?;
        let model = if p.use_mmap {
            Model::load(&path)?
        } else {
            let io = |source| GgufError::Io {
                path: path.display().to_string(),
                source,
            };
            let mut bytes = Vec::new();
            ferrolm::gguf::open_regular(&path)
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

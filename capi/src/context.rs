//! Contexts: creation, state, evaluation, logits and the sampler.

use std::ffi::c_char;
use std::sync::Arc;

use ferrolm::model::{Context, ContextParams, Logits};
use ferrolm::sampler::Sampler;

use crate::args::*;
use crate::error::*;
use crate::generate::flush_pending;
use crate::types::*;
use crate::version::*;

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
            flash_attn: false,
            n_seq: 1,
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

/// `f` of a live context (only read), or 0 for NULL or when `f` panics.
///
/// # Safety
/// `ctx` is NULL or a live context no other thread is using.
unsafe fn read_ctx(
    ctx: *const ferrolm_context,
    f: impl FnOnce(&ferrolm_context) -> usize,
) -> usize {
    if ctx.is_null() {
        return 0;
    }
    // SAFETY: not NULL, so a live context (the caller's contract), only read here.
    guard_value(0, || f(unsafe { &*ctx }))
}

/// Positions the context holds (its KV cache length); 0 for NULL.
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_context_n_ctx(ctx: *const ferrolm_context) -> usize {
    // SAFETY: a live context or NULL (caller's contract).
    unsafe { read_ctx(ctx, |c| c.ctx.n_ctx()) }
}

/// Positions in use (tokens evaluated since creation, reset or truncation); 0 for NULL.
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_context_n_past(ctx: *const ferrolm_context) -> usize {
    // SAFETY: a live context or NULL (caller's contract).
    unsafe { read_ctx(ctx, |c| c.ctx.n_past()) }
}

/// Worker threads of the context; 0 for NULL.
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_context_n_threads(ctx: *const ferrolm_context) -> usize {
    // SAFETY: a live context or NULL (caller's contract).
    unsafe { read_ctx(ctx, |c| c.ctx.n_threads()) }
}

/// Forget everything: empty the KV cache, drop the logits, empty the sampler's penalty window and
/// restart its random generator from its seed (so the same calls give the same text again).
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_context_reset(ctx: *mut ferrolm_context) -> ferrolm_status {
    guard_ctx(ctx, |c| {
        c.ctx.reset();
        c.sampler.reset();
        c.forget_logits();
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
            c.forget_logits();
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
        let grammar = c.sampler.grammar().cloned();
        c.sampler = Sampler::new(sp, c.ctx.model().config().n_vocab);
        c.sampler.set_grammar(grammar);
        c.sampler.reset_grammar();
        Ok(())
    })
}

/// Constrain sampling to a GBNF grammar (llama.cpp's syntax; the repository's `grammars/` has
/// examples), starting from the rule named `root` (NULL: "root"); `grammar` NULL removes the
/// constraint. From then on `ferrolm_sample()` and `ferrolm_generate()` produce only text the
/// grammar allows and end generation only where it can end; the grammar follows the tokens they
/// produce (not prompt tokens) and starts over on every call of this function and of
/// `ferrolm_sampler_set()` (which keeps it). A grammar that does not parse:
/// `FERROLM_INVALID_ARGUMENT`, with the line and column in `ferrolm_last_error()`, and the
/// previous constraint kept.
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_sampler_set_grammar(
    ctx: *mut ferrolm_context,
    grammar: *const c_char,
    root: *const c_char,
) -> ferrolm_status {
    guard_ctx(ctx, |c| {
        if grammar.is_null() {
            c.sampler.set_grammar(None);
            return Ok(());
        }
        let text = c_str(grammar, "grammar")?;
        let root = if root.is_null() {
            "root"
        } else {
            c_str(root, "root")?
        };
        let tok = Arc::clone(&c.tok);
        let lookup = |t: &str| {
            let ids = tok.encode(t, false, true);
            (ids.len() == 1).then(|| ids[0])
        };
        let g =
            ferrolm::grammar::Grammar::parse_with_root(text, root, Some(&lookup)).map_err(|e| {
                Error {
                    status: FERROLM_INVALID_ARGUMENT,
                    msg: e.to_string(),
                }
            })?;
        let table = Arc::new(ferrolm::grammar::TokenTable::new(&tok));
        c.sampler
            .set_grammar(Some(ferrolm::grammar::Constraint::new(Arc::new(g), table)));
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
        c.sampler.accept_generated(id);
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

impl From<ferrolm::state::StateError> for Error {
    fn from(e: ferrolm::state::StateError) -> Error {
        use ferrolm::state::StateError as S;
        let status = match &e {
            S::Io { .. } => FERROLM_IO,
            S::TooLong { .. } => FERROLM_CONTEXT_FULL,
            _ => FERROLM_FORMAT,
        };
        Error {
            status,
            msg: ferrolm::error_chain(&e),
        }
    }
}

/// Save the context's state to the file `path`: the tokens in its KV cache, the cache itself and
/// the last token's logits, so that `ferrolm_state_load()` in another context of the same model
/// continues exactly as this one would (a long system prompt is evaluated once). A token returned
/// by `ferrolm_generate()` and not yet evaluated is evaluated first. The file is written under a
/// temporary name and renamed: a failed save leaves no partial file and replaces none.
/// Errors: `FERROLM_IO`. The sampler is not saved.
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_state_save(
    ctx: *mut ferrolm_context,
    path: *const c_char,
) -> ferrolm_status {
    guard_ctx(ctx, |c| {
        let path = c_path(path, "path")?;
        flush_pending(c, 0)?;
        let logits = c.has_logits.then(|| c.ctx.logits());
        c.ctx.state_save(0, logits, &path)?;
        Ok(())
    })
}

/// Replace the context's KV cache by a state saved with `ferrolm_state_save()`: afterwards it
/// holds the saved tokens (`ferrolm_context_n_past()` of them) and, when they were saved, their
/// last logits (`ferrolm_sample()` and `ferrolm_generate()` continue from them). The file is
/// checked before use: the model (the same GGUF file), the cache type and layout, the context's
/// room, the file's size and a checksum. Errors: `FERROLM_IO`, `FERROLM_FORMAT` (not a state
/// file, damaged, another model or cache), `FERROLM_CONTEXT_FULL` (more tokens than positions);
/// on any error the context is left empty. The sampler is untouched.
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_state_load(
    ctx: *mut ferrolm_context,
    path: *const c_char,
) -> ferrolm_status {
    guard_ctx(ctx, |c| {
        let path = c_path(path, "path")?;
        c.forget_logits();
        let loaded = c.ctx.state_load(0, &path)?;
        c.has_logits = loaded.logits;
        Ok(())
    })
}

/// Switch llama.cpp's flash-attention arithmetic (its `-fa on`, the CPU default of llama.cpp;
/// values summed in f16 precision in one pass) on or off for a context with an F16 KV cache
/// (other cache types ignore it). Only before anything is evaluated (a new or reset context):
/// `FERROLM_INVALID_ARGUMENT` otherwise. Off by default.
/// Thread safety: one thread at a time per context.
#[no_mangle]
pub unsafe extern "C" fn ferrolm_context_set_flash_attn(
    ctx: *mut ferrolm_context,
    on: bool,
) -> ferrolm_status {
    guard_ctx(ctx, |c| {
        if c.pending.is_some() {
            return err(
                FERROLM_INVALID_ARGUMENT,
                "flash attention can be switched only before anything is evaluated",
            );
        }
        c.ctx.set_flash_attn(on)?;
        Ok(())
    })
}

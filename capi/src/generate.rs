//! Generation: `ferrolm_generate` and `ferrolm_generate_tokens`.

use std::ffi::{c_char, c_void};
use std::mem::size_of;

use ferrolm::generate::{generate, GenOptions};
use ferrolm::model::Logits;
use ferrolm::sampler::StopMatcher;

use crate::args::*;
use crate::error::*;
use crate::types::*;
use crate::version::*;

/// Evaluate the token the last generate call returned but did not evaluate, if the context has
/// room for it and `then` more tokens (otherwise leave it for the caller's context-full error).
pub(crate) fn flush_pending(c: &mut ferrolm_context, then: usize) -> Res<()> {
    if let Some(t) = c.pending {
        if c.ctx.n_past() + 1 + then <= c.ctx.n_ctx() {
            c.pending = None;
            c.ctx.eval(&[t], Logits::Last)?;
            c.has_logits = true;
        }
    }
    Ok(())
}

/// Generation shared by the two entry points; the prompt ids are in `c.ids`.
pub(crate) fn run_generate(
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

/// `*params` (NULL: the defaults), checked.
fn generate_params(params: *const ferrolm_generate_params) -> Res<ferrolm_generate_params> {
    let p = read_params(params, ferrolm_generate_default_params())?;
    check_reserved(&[p.reserved], "ferrolm_generate_params")?;
    Ok(p)
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
        let p = generate_params(params)?;
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
        let p = generate_params(params)?;
        let toks = slice(tokens, n_tokens, "tokens")?;
        let mut ids = std::mem::take(&mut c.ids);
        let r = check_tokens(toks, c.ctx.model().config().n_vocab, &mut ids);
        c.ids = ids;
        r?;
        run_generate(c, callback, user_data, out_stats, &p)
    })
}

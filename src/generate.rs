//! The generation loop shared by the CLI and the C ABI: prefill the prompt, then sample, stream
//! and feed back one token at a time.

use std::time::{Duration, Instant};

use crate::model::{Context, Logits, ModelError};
use crate::sampler::{Sampler, StopMatcher};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token (EOS, EOT, `<|im_end|>`, ...).
    EndOfGeneration,
    /// `n_predict` tokens were generated.
    MaxTokens,
    /// A stop string appeared in the text.
    StopString,
    /// The callback asked to stop.
    Callback,
    /// The context is full.
    ContextFull,
}

impl std::fmt::Display for StopReason {
    /// The words `ferrolm run` prints, and OpenAI's `finish_reason` where one applies.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::EndOfGeneration => "end of generation",
            StopReason::MaxTokens => "token limit (-n)",
            StopReason::StopString => "stop text",
            StopReason::Callback => "interrupted",
            StopReason::ContextFull => "context full",
        })
    }
}

/// Counts and timings of one generation.
#[derive(Clone, Copy, Debug)]
pub struct GenStats {
    pub n_prompt: usize,
    pub n_gen: usize,
    pub prompt_time: Duration,
    pub gen_time: Duration,
    pub stop: StopReason,
    /// The last token sampled, when generation ended without feeding it back (end of generation,
    /// a stop string, `n_predict` reached, the callback): it is part of the output but not in the
    /// context. A caller that continues the same sequence evaluates it first.
    pub pending: Option<u32>,
}

impl GenStats {
    pub fn prompt_tps(&self) -> f64 {
        self.n_prompt as f64 / self.prompt_time.as_secs_f64().max(1e-9)
    }

    pub fn gen_tps(&self) -> f64 {
        self.n_gen as f64 / self.gen_time.as_secs_f64().max(1e-9)
    }
}

/// Options of one generation.
#[derive(Clone, Debug, Default)]
pub struct GenOptions {
    /// Most tokens to generate; `None` = until end of generation or a full context.
    pub n_predict: Option<usize>,
    /// Keep going past end-of-generation tokens.
    pub ignore_eog: bool,
    /// Render control tokens in the streamed text.
    pub special: bool,
}

/// Evaluate `prompt` (appended to whatever the context holds) and generate. `on_token(id, text)`
/// receives each token and the text it completes (possibly empty: a UTF-8 character split across
/// tokens, or text held back because it may begin a stop string); returning `false` stops.
/// Decoding a token allocates nothing after the first (the stop matcher aside, when used).
pub fn generate(
    ctx: &mut Context,
    tok: &Tokenizer,
    sampler: &mut Sampler,
    stops: &mut StopMatcher,
    prompt: &[u32],
    opts: &GenOptions,
    mut on_token: impl FnMut(u32, &str) -> bool,
) -> Result<GenStats, ModelError> {
    if prompt.is_empty() && ctx.n_past() == 0 {
        return Err(ModelError::EmptyPrompt);
    }
    let t0 = Instant::now();
    for &id in prompt {
        sampler.accept(id);
    }
    if !prompt.is_empty() {
        ctx.eval(prompt, Logits::Last)?;
    }
    let prompt_time = t0.elapsed();
    let t1 = Instant::now();
    let mut dec = StreamDecoder::new();
    let mut n_gen = 0;
    let mut pending = None;
    let use_stops = !stops.stops().is_empty();
    let stop = loop {
        if opts.n_predict.is_some_and(|n| n_gen >= n) {
            break StopReason::MaxTokens;
        }
        if ctx.n_past() >= ctx.n_ctx() {
            break StopReason::ContextFull;
        }
        let id = sampler.sample(ctx.logits());
        sampler.accept_generated(id);
        n_gen += 1;
        pending = Some(id);
        if tok.is_eog(id) && !opts.ignore_eog {
            break StopReason::EndOfGeneration;
        }
        let text = dec.push(tok, id, opts.special);
        let (text, stopped) = if use_stops {
            let o = stops.push(text);
            (o.text, o.stopped.is_some())
        } else {
            (text, false)
        };
        if !on_token(id, text) {
            break StopReason::Callback;
        }
        if stopped {
            break StopReason::StopString;
        }
        if opts.n_predict.is_some_and(|n| n_gen >= n) {
            break StopReason::MaxTokens;
        }
        if ctx.n_past() >= ctx.n_ctx() {
            break StopReason::ContextFull;
        }
        ctx.eval(&[id], Logits::Last)?;
        pending = None;
    };
    // Release text held back (an incomplete character, a partial stop string).
    if stop != StopReason::StopString && stop != StopReason::Callback {
        let tail = held_back_text(&mut dec, stops);
        if !tail.is_empty() {
            on_token(u32::MAX, &tail);
        }
    }
    Ok(GenStats {
        n_prompt: prompt.len(),
        n_gen,
        prompt_time,
        gen_time: t1.elapsed(),
        stop,
        pending,
    })
}

/// The text still held back when a generation ends other than by a stop string: the decoder's
/// incomplete character, passed through the stop matcher, then what the matcher held as a
/// possible start of a stop string (unless that character completed one).
pub fn held_back_text(dec: &mut StreamDecoder, stops: &mut StopMatcher) -> String {
    let flushed = dec.flush().to_string();
    let o = stops.push(&flushed);
    let mut tail = o.text.to_string();
    if o.stopped.is_none() {
        tail.push_str(stops.finish());
    }
    tail
}

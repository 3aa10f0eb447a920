//! The scheduler: one thread owns the model's context, whose sequences are the server's slots,
//! and runs continuous batching. Each step puts every running slot's next token (a decode step)
//! and as much of the waiting prompts as the batch has room for through one forward pass
//! ([`Context::eval_seqs`]), then samples each slot whose logits came out. A slot keeps its KV
//! cache after a request; a new request goes to the free slot whose cached tokens share the
//! longest prefix with its prompt and evaluates only the rest.
//!
//! Requests wait in a bounded queue (a `sync_channel`): the engine takes one only when a slot is
//! free, so a full queue is refused at once (503). A request whose client went away (its event
//! receiver dropped) is dropped before the next step.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use ferrolm::chat::reusable_prefix;
use ferrolm::model::{Context, ContextParams, Model, SeqBatch};
use ferrolm::sampler::{Sampler, SamplerParams, StopMatcher};
use ferrolm::tokenizer::{StreamDecoder, Tokenizer};
use tokio::sync::mpsc::UnboundedSender;

/// One generation request, as the HTTP layer hands it over (already validated).
pub struct Job {
    pub prompt: Vec<u32>,
    pub sampler: SamplerParams,
    pub stops: Vec<String>,
    /// Most tokens to generate (the slot's room is checked before the job is queued).
    pub max_tokens: usize,
    /// Report each token's log-probability and this many alternatives (`logprobs` +
    /// `top_logprobs`).
    pub logprobs: Option<usize>,
    /// Keep generating past end-of-generation tokens (llama-server's `ignore_eos`, for
    /// benchmarks).
    pub ignore_eos: bool,
    /// A grammar the output must follow (`response_format`, `grammar`).
    pub grammar: Option<Arc<ferrolm::grammar::Grammar>>,
    pub events: UnboundedSender<Event>,
}

/// What a job's stream carries: its tokens, then one `Done`.
#[derive(Debug)]
pub enum Event {
    Token(Token),
    Done(Done),
}

/// One generated token and the text it completes (empty while a character or a possible stop
/// string is incomplete; `id` is `None` for text released at the end).
#[derive(Debug)]
pub struct Token {
    pub id: Option<u32>,
    pub text: String,
    pub logprob: Option<TokenLogprob>,
}

/// log p(token) under the model's raw distribution, and the most likely alternatives.
#[derive(Debug, Clone)]
pub struct TokenLogprob {
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// Why generation ended: OpenAI's `finish_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens`, or the slot's context is full.
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// Counts and timings of a finished job.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    pub finish: Finish,
    pub n_prompt: usize,
    /// Prompt tokens found in the slot's cache (not evaluated again).
    pub n_cached: usize,
    pub n_gen: usize,
    pub prompt_ms: f64,
    pub gen_ms: f64,
    pub slot: usize,
}

/// Server-wide counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub rejected: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    /// Microseconds spent in forward passes.
    pub busy_us: AtomicU64,
    pub queued: AtomicUsize,
    pub busy_slots: AtomicUsize,
}

/// How the engine is set up.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub n_slots: usize,
    /// Positions per slot (0 in a [`crate::ServerConfig`]: the model's length, at most 4096).
    pub n_ctx: usize,
    pub n_batch: usize,
    pub n_threads: usize,
    pub kv_type: ferrolm::kv_cache::KvType,
    pub flash_attn: bool,
    /// Requests that may wait for a slot.
    pub queue: usize,
}

/// Why a job was not queued.
#[derive(Debug)]
pub enum SubmitError {
    QueueFull,
    ShuttingDown,
}

/// The HTTP side's end: submits jobs.
#[derive(Clone)]
pub struct Handle {
    tx: SyncSender<Job>,
    pub metrics: Arc<Metrics>,
}

impl Handle {
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        // Counted before the send: the engine decrements when it takes the job.
        self.metrics.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => {
                self.metrics.requests.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
                self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => SubmitError::QueueFull,
                    TrySendError::Disconnected(_) => SubmitError::ShuttingDown,
                })
            }
        }
    }
}

/// Creates the context (every slot's KV cache, allocated now) and starts the engine thread. The
/// thread ends when every [`Handle`] is dropped and the running jobs are finished.
pub fn start(
    model: Arc<Model>,
    tok: Arc<Tokenizer>,
    cfg: &EngineConfig,
) -> Result<(Handle, std::thread::JoinHandle<()>), ferrolm::model::ModelError> {
    let ctx = Context::new(
        model,
        ContextParams {
            n_ctx: cfg.n_ctx,
            // Room for a full prompt chunk and every slot's decode token in one pass.
            n_batch: cfg.n_batch + cfg.n_slots,
            n_threads: cfg.n_threads,
            kv_type: cfg.kv_type,
            flash_attn: cfg.flash_attn,
            n_seq: cfg.n_slots,
            ..Default::default()
        },
    )?;
    let (tx, rx) = std::sync::mpsc::sync_channel(cfg.queue);
    let n_batch = cfg.n_batch.max(1);
    let metrics = Arc::new(Metrics::default());
    let m = Arc::clone(&metrics);
    let thread = std::thread::Builder::new()
        .name("ferrolm-engine".into())
        .spawn(move || Engine::new(ctx, tok, rx, m, n_batch).run())
        .expect("spawn the engine thread");
    Ok((Handle { tx, metrics }, thread))
}

/// A slot: a sequence of the context (which knows the tokens its cache holds) and its job if
/// running.
struct Slot {
    job: Option<Running>,
}

struct Running {
    job: Job,
    /// Prompt tokens not evaluated yet.
    pending: Vec<u32>,
    /// How many of `pending` (from its start) go through the prefill tiles, in chunks of two or
    /// more tokens; the rest (none, or the prompt's last token) alone, as `Context::eval` would
    /// evaluate the whole prompt (see `plan`).
    tile_left: usize,
    /// The token sampled last, to be evaluated in the next step.
    next: Option<u32>,
    sampler: Sampler,
    stops: StopMatcher,
    dec: StreamDecoder,
    n_cached: usize,
    n_gen: usize,
    t0: Instant,
    prompt_ms: f64,
    t_gen: Option<Instant>,
}

struct Engine {
    ctx: Context,
    tok: Arc<Tokenizer>,
    rx: Receiver<Job>,
    metrics: Arc<Metrics>,
    slots: Vec<Slot>,
    /// Prompt tokens per forward pass; prompts are cut into chunks of this size from their start,
    /// as `Context::eval` cuts them, so a request's values do not depend on what else runs.
    n_batch: usize,
    /// Set when the queue's senders are gone: finish the running jobs, then stop.
    closing: bool,
    /// Every token's text decoded for grammars, made at the first request with one.
    grammar_table: Option<Arc<ferrolm::grammar::TokenTable>>,
}

impl Engine {
    fn new(
        ctx: Context,
        tok: Arc<Tokenizer>,
        rx: Receiver<Job>,
        metrics: Arc<Metrics>,
        n_batch: usize,
    ) -> Self {
        let slots = (0..ctx.n_seq()).map(|_| Slot { job: None }).collect();
        Engine {
            ctx,
            tok,
            rx,
            metrics,
            slots,
            n_batch,
            closing: false,
            grammar_table: None,
        }
    }

    fn run(mut self) {
        loop {
            self.admit();
            self.drop_abandoned();
            if self.slots.iter().all(|s| s.job.is_none()) {
                if self.closing {
                    return;
                }
                continue;
            }
            // A panic here is a bug; it must not take the server down: the jobs of this step end
            // with an error event (their streams close), every slot's cache is dropped.
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.step()));
            if step.is_err() {
                eprintln!("ferrolm serve: internal error in a forward pass; its requests failed");
                for (i, slot) in self.slots.iter_mut().enumerate() {
                    if slot.job.take().is_some() {
                        self.metrics.busy_slots.fetch_sub(1, Ordering::Relaxed);
                    }
                    self.ctx.seq_truncate(i, 0);
                }
            }
        }
    }

    /// Takes queued jobs while a slot is free; blocks for one when nothing is running.
    fn admit(&mut self) {
        while !self.closing && self.slots.iter().any(|s| s.job.is_none()) {
            let idle = self.slots.iter().all(|s| s.job.is_none());
            let job = if idle {
                match self.rx.recv() {
                    Ok(j) => j,
                    Err(_) => {
                        self.closing = true;
                        return;
                    }
                }
            } else {
                match self.rx.try_recv() {
                    Ok(j) => j,
                    Err(TryRecvError::Empty) => return,
                    Err(TryRecvError::Disconnected) => {
                        self.closing = true;
                        return;
                    }
                }
            };
            self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
            if job.events.is_closed() {
                continue;
            }
            self.start_job(job);
        }
    }

    /// Puts `job` in the free slot whose cache shares the longest prefix with its prompt.
    fn start_job(&mut self, job: Job) {
        let (i, prefix) = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.job.is_none())
            .map(|(i, _)| (i, reusable_prefix(self.ctx.seq_tokens(i), &job.prompt)))
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))
            .expect("a free slot");
        let (reuse, tile_left) = plan(job.prompt.len(), prefix, self.n_batch);
        let slot = &mut self.slots[i];
        self.ctx.seq_truncate(i, reuse);
        let mut sampler = Sampler::new(job.sampler, self.tok.n_vocab());
        for &id in &job.prompt {
            sampler.accept(id);
        }
        if let Some(g) = &job.grammar {
            let tok = &self.tok;
            let table = self
                .grammar_table
                .get_or_insert_with(|| Arc::new(ferrolm::grammar::TokenTable::new(tok)));
            sampler.set_grammar(Some(ferrolm::grammar::Constraint::new(
                Arc::clone(g),
                Arc::clone(table),
            )));
        }
        let stops = StopMatcher::new(job.stops.clone());
        self.metrics.busy_slots.fetch_add(1, Ordering::Relaxed);
        slot.job = Some(Running {
            pending: job.prompt[reuse..].to_vec(),
            tile_left,
            job,
            next: None,
            sampler,
            stops,
            dec: StreamDecoder::new(),
            n_cached: reuse,
            n_gen: 0,
            t0: Instant::now(),
            prompt_ms: 0.0,
            t_gen: None,
        });
    }

    /// Drops the jobs whose client went away.
    fn drop_abandoned(&mut self) {
        for slot in &mut self.slots {
            if slot.job.as_ref().is_some_and(|r| r.job.events.is_closed()) {
                slot.job = None;
                self.metrics.busy_slots.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// One forward pass over every running slot's next tokens, then sampling. Every decoding slot
    /// gives its one token; waiting prompts give their next chunk (min(left, n_batch) tokens,
    /// whole) while the pass has room for n_batch prompt tokens. The forward pass computes a
    /// single token with the decode kernels and chunks of several with the prefill tiles, each
    /// token's values independent of the others in the pass: what a slot produces is what it
    /// produces alone (tests/batch.rs).
    fn step(&mut self) {
        let mut budget = self.n_batch;
        let mut take = vec![0usize; self.slots.len()];
        for (i, s) in self.slots.iter().enumerate() {
            let Some(r) = &s.job else { continue };
            if r.next.is_some() {
                take[i] = 1;
            } else {
                let chunk = next_chunk(r.tile_left, r.pending.len(), self.n_batch);
                if chunk > 0 && chunk <= budget {
                    take[i] = chunk;
                    budget -= chunk;
                }
            }
        }
        let mut parts = Vec::with_capacity(self.slots.len());
        for (i, s) in self.slots.iter().enumerate() {
            let Some(r) = &s.job else { continue };
            if take[i] == 0 {
                continue;
            }
            let (tokens, logits) = match &r.next {
                Some(t) => (std::slice::from_ref(t), true),
                None => (&r.pending[..take[i]], take[i] == r.pending.len()),
            };
            parts.push(SeqBatch {
                seq: i,
                tokens,
                logits,
            });
        }
        if parts.is_empty() {
            return;
        }
        let t = Instant::now();
        let res = self.ctx.eval_seqs(&parts);
        drop(parts);
        self.metrics
            .busy_us
            .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        if let Err(e) = res {
            // Not expected (jobs are checked against the slot's room): end the jobs involved.
            eprintln!("ferrolm serve: batch failed: {e}");
            for (i, n) in take.iter().enumerate() {
                if *n > 0 {
                    self.finish(i, Finish::Length);
                }
            }
            return;
        }
        for (i, &n) in take.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let slot = &mut self.slots[i];
            let r = slot.job.as_mut().expect("running");
            // The context appended the evaluated tokens to the sequence's token list; a prompt
            // chunk also leaves the pending prompt.
            if r.next.take().is_none() {
                r.tile_left = r.tile_left.saturating_sub(n);
                r.pending.drain(..n);
                self.metrics
                    .prompt_tokens
                    .fetch_add(n as u64, Ordering::Relaxed);
                if !r.pending.is_empty() {
                    continue;
                }
                r.prompt_ms = r.t0.elapsed().as_secs_f64() * 1e3;
                r.t_gen = Some(Instant::now());
            }
            self.sample(i);
        }
    }

    /// Samples slot `i`'s next token from the logits of its last step and streams it.
    fn sample(&mut self, i: usize) {
        let n_ctx = self.ctx.n_ctx();
        let logits = self.ctx.seq_logits(i).expect("logits were asked for");
        let slot = &mut self.slots[i];
        let r = slot.job.as_mut().expect("running");
        let id = r.sampler.sample(logits);
        r.sampler.accept_generated(id);
        r.n_gen += 1;
        self.metrics
            .generated_tokens
            .fetch_add(1, Ordering::Relaxed);
        let logprob = r.job.logprobs.map(|k| logprob_of(logits, id, k));
        if self.tok.is_eog(id) && !r.job.ignore_eos {
            if logprob.is_some() {
                let _ = r.job.events.send(Event::Token(Token {
                    id: Some(id),
                    text: String::new(),
                    logprob,
                }));
            }
            self.finish(i, Finish::Stop);
            return;
        }
        let text = r.dec.push(&self.tok, id, false);
        let o = r.stops.push(text);
        let stopped = o.stopped.is_some();
        let text = o.text.to_string();
        let _ = r.job.events.send(Event::Token(Token {
            id: Some(id),
            text,
            logprob,
        }));
        if stopped {
            self.finish(i, Finish::Stop);
        } else if r.n_gen >= r.job.max_tokens || self.ctx.seq_n_past(i) >= n_ctx {
            self.finish(i, Finish::Length);
        } else {
            r.next = Some(id);
        }
    }

    /// Ends slot `i`'s job: releases held-back text (unless a stop string ended it), sends
    /// `Done`, frees the slot (its cache stays for the next request).
    fn finish(&mut self, i: usize, finish: Finish) {
        let slot = &mut self.slots[i];
        let Some(mut r) = slot.job.take() else { return };
        self.metrics.busy_slots.fetch_sub(1, Ordering::Relaxed);
        if !r.stops.stopped() {
            let tail = ferrolm::generate::held_back_text(&mut r.dec, &mut r.stops);
            if !tail.is_empty() {
                let _ = r.job.events.send(Event::Token(Token {
                    id: None,
                    text: tail,
                    logprob: None,
                }));
            }
        }
        let gen_ms = r
            .t_gen
            .map(|t| t.elapsed().as_secs_f64() * 1e3)
            .unwrap_or(0.0);
        let _ = r.job.events.send(Event::Done(Done {
            finish,
            n_prompt: r.job.prompt.len(),
            n_cached: r.n_cached,
            n_gen: r.n_gen,
            prompt_ms: r.prompt_ms,
            gen_ms,
            slot: i,
        }));
    }
}

/// How a prompt of `len` tokens whose first `prefix` are in the slot's cache is evaluated, so that
/// every token gets the values a fresh `Context::eval` of the whole prompt gives it: that cuts
/// the prompt into chunks of `n_batch` from its start, and computes chunks of two or more tokens
/// with the prefill tiles (whose values do not depend on how tokens are grouped) and a chunk of
/// one token (the prompt's last, when len % n_batch == 1) with the decode kernels. Returns the
/// positions reused and how many of the rest go through the tiles; the reuse is cut back by one
/// when it would leave a single tile token (which would be computed alone).
fn plan(len: usize, prefix: usize, n_batch: usize) -> (usize, usize) {
    let solo_last = n_batch == 1 || len % n_batch == 1;
    let tile_end = len - solo_last as usize;
    let mut reuse = prefix.min(len.saturating_sub(1));
    if n_batch > 1 && reuse < tile_end && tile_end - reuse == 1 {
        reuse = reuse.saturating_sub(1);
    }
    (reuse, tile_end.saturating_sub(reuse))
}

/// The next prompt chunk: up to `n_batch` of the `tile_left` tile tokens, never leaving a single
/// one behind (it would be computed alone), then the solo last token.
fn next_chunk(tile_left: usize, pending: usize, n_batch: usize) -> usize {
    if tile_left == 0 {
        return pending.min(1);
    }
    let mut c = tile_left.min(n_batch);
    if tile_left - c == 1 && c > 2 {
        c -= 1;
    }
    c
}

/// log softmax(logits)[id] and the `k` most likely tokens with theirs (ties to the lower id).
fn logprob_of(logits: &[f32], id: u32, k: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let lse = max as f64 + sum.ln();
    let lp = |t: u32| (logits[t as usize] as f64 - lse) as f32;
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k > 0 {
        for (t, &l) in logits.iter().enumerate() {
            if top.len() == k && l <= top[k - 1].1 {
                continue;
            }
            let at = top.partition_point(|&(_, v)| v >= l);
            top.insert(at, (t as u32, l));
            top.truncate(k);
        }
    }
    TokenLogprob {
        logprob: lp(id),
        top: top.into_iter().map(|(t, _)| (t, lp(t))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_plans_match_a_fresh_evaluation() {
        // Fresh: 513 tokens at n_batch 512 = a tile chunk of 512, the last token alone.
        assert_eq!(plan(513, 0, 512), (0, 512));
        assert_eq!(plan(10, 0, 512), (0, 10));
        assert_eq!(plan(1, 0, 512), (0, 0));
        // The same prompt again: reuse all but two (a single token would be computed alone).
        assert_eq!(plan(10, 9, 512), (8, 2));
        // ... unless the fresh evaluation computes the last one alone too.
        assert_eq!(plan(513, 512, 512), (512, 0));
        assert_eq!(plan(20, 5, 512), (5, 15));
        // Chunks never leave a single tile token.
        assert_eq!(next_chunk(513, 513, 512), 511);
        assert_eq!(next_chunk(2, 2, 512), 2);
        assert_eq!(next_chunk(0, 1, 512), 1);
        assert_eq!(next_chunk(0, 0, 512), 0);
    }

    #[test]
    fn logprobs_are_log_softmax_and_top_k_sorted() {
        let l = [1.0f32, 3.0, 2.0, 3.0, -1.0];
        let r = logprob_of(&l, 2, 3);
        let lse = l.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
        assert!((r.logprob as f64 - (2.0 - lse)).abs() < 1e-6);
        let ids: Vec<u32> = r.top.iter().map(|t| t.0).collect();
        assert_eq!(ids, [1, 3, 2], "by logit, ties to the lower id");
        assert!(logprob_of(&l, 0, 0).top.is_empty());
    }
}

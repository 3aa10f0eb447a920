//! A context: the KV cache, scratch buffers and thread pool for one conversation, and the forward
//! pass, which reads top to bottom like llama2.c's `forward`.
//!
//! Everything is allocated in `Context::new`; decoding a token allocates nothing.

use std::sync::Arc;

use ferrolm_kernels::dispatch::{kernels, KernelTable};
use ferrolm_kernels::matmul::{matmul_q_many_mixed_with, ActBuf};
use ferrolm_kernels::pool::ThreadPool;

use super::{Ffn, GateUp, Mat, Model, ModelError, Qkv, Vector};
use crate::kv_cache::{Kv, KvCache, KvType};

mod attention;
mod ops;
use attention::{AttnScratch, AttnSpec};
use ops::{
    add, add_bias, geglu, rmsnorm, rmsnorm_heads, rmsnorm_in_place, rope, rope_table, scale,
    softcap,
};

/// Default context length cap: the model's own length, but at most this many positions.
pub const DEFAULT_MAX_CTX: usize = 4096;
/// Default prefill batch (llama.cpp's n_ubatch).
pub const DEFAULT_BATCH: usize = 512;
/// Most worker threads a context may have.
pub const MAX_THREADS: usize = 512;
/// Longest context a context may be created with.
pub const MAX_CTX: usize = 1 << 20;
/// Most sequences a context may hold.
pub const MAX_SEQ: usize = 256;

/// How a context is created.
#[derive(Clone, Debug)]
pub struct ContextParams {
    /// Positions in the KV cache. 0 = the model's context length, capped at `DEFAULT_MAX_CTX`
    /// (4096, llama.cpp's default too): a 4096-position F16 cache is 90 MiB for SmolLM2 and 48 MiB
    /// for Qwen2.5-0.5B, while the trained lengths (8192, 32768) would cost 2x and 8x that. The cache
    /// is allocated zeroed, so the OS only backs the positions actually written.
    pub n_ctx: usize,
    /// Most tokens evaluated in one batch (prefill is cut into batches of this size).
    pub n_batch: usize,
    /// Threads. 0 = one per available CPU.
    pub n_threads: usize,
    pub kv_type: KvType,
    /// With `n_ctx` 0: at least this many positions (up to the model's trained length).
    pub min_ctx: usize,
    /// Attention as llama.cpp's flash attention computes it (`-fa on`: values accumulated in
    /// f16 precision in one pass) with an F16 cache; other caches ignore it.
    pub flash_attn: bool,
    /// Sequences, each with a KV cache of its own (`n_ctx` positions), evaluated together by
    /// [`Context::eval_seqs`] (a server's slots); the single-sequence methods use sequence 0.
    pub n_seq: usize,
}

impl ContextParams {
    /// The defaults with `n_ctx` positions.
    pub fn with_n_ctx(n_ctx: usize) -> Self {
        ContextParams {
            n_ctx,
            ..Default::default()
        }
    }

    /// When `n_ctx` is left to its default, make sure it holds at least `n` positions (a prompt
    /// given on the command line), up to the model's own length.
    pub fn with_min_ctx(mut self, n: usize) -> Self {
        self.min_ctx = n;
        self
    }
}

impl Default for ContextParams {
    fn default() -> Self {
        ContextParams {
            n_ctx: 0,
            n_batch: DEFAULT_BATCH,
            n_threads: 0,
            kv_type: KvType::F16,
            min_ctx: 0,
            flash_attn: false,
            n_seq: 1,
        }
    }
}

/// Which logits an evaluation keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// None (prefill of a prompt whose next token is not needed yet).
    None,
    /// The last token's (generation).
    Last,
    /// Every token's (eval, perplexity).
    All,
}

/// One sequence's part of a batch for [`Context::eval_seqs`]: `tokens` appended to sequence
/// `seq` at its next positions; with `logits`, its last token's logits are kept.
#[derive(Clone, Copy, Debug)]
pub struct SeqBatch<'a> {
    pub seq: usize,
    pub tokens: &'a [u32],
    pub logits: bool,
}

/// One conversation (or several: `ContextParams::n_seq`): the model, the engine that computes,
/// the KV caches, and the run state of the forward pass.
pub struct Context {
    model: Arc<Model>,
    engine: Engine,
    /// [n_seq] one cache per sequence.
    kvs: Vec<KvCache>,
    state: RunState,
    n_ctx: usize,
    n_batch: usize,
    /// [n_seq] the token ids in each sequence's cache, position by position (capacity n_ctx:
    /// appending never allocates); a sequence's n_past is its length.
    hist: Vec<Vec<u32>>,
    /// The segments of the batch being evaluated (capacity n_seq: filled without allocating).
    segs: Vec<Seg>,
    /// Batch rows whose logits are computed, in `state.logits_all` order (capacity n_seq).
    out_rows: Vec<usize>,
    /// [n_seq] the row of `state.logits_all` holding each sequence's logits after `eval_seqs`.
    seq_logit_row: Vec<usize>,
    /// The tokens of the batch `eval_seqs` evaluates (capacity n_batch).
    tokens: Vec<u32>,
}

/// Rows row0..row0 + n of a batch: tokens of sequence `seq` at positions pos0...
#[derive(Clone, Copy, Debug)]
struct Seg {
    seq: usize,
    row0: usize,
    n: usize,
    pos0: usize,
}

/// What computes: the kernel table and the worker threads.
struct Engine {
    table: &'static KernelTable,
    pool: ThreadPool,
}

/// Everything one batch of the forward pass writes, allocated once for `n_batch` tokens.
struct RunState {
    x: Vec<f32>,   // [n_batch, n_embd] residual stream
    xb: Vec<f32>,  // [n_batch, n_embd] normed input / projection output
    q: Vec<f32>,   // [n_batch, n_head * head_dim]
    k: Vec<f32>,   // [n_batch, n_head_kv * head_dim]
    v: Vec<f32>,   // [n_batch, n_head_kv * head_dim]
    att: Vec<f32>, // [n_batch, n_head * head_dim] attention output
    hb: Vec<f32>,  // [n_batch, n_ff]
    hb2: Vec<f32>, // [n_batch, n_ff]
    qkv: Vec<f32>, // [n_batch, q_dim + 2 kv_dim] fused Q/K/V output (Phi-3; else empty)
    gu: Vec<f32>,  // [n_batch, 2 n_ff] fused gate/up output (Phi-3; else empty)
    /// The input of the matrices being applied, quantized to their dot partner: filled and
    /// read within one [`Engine::project`] call, so it never outlives the buffer it came from.
    acts: ActBuf,
    attn: Vec<AttnScratch>, // one per thread
    rope: Vec<f32>,         // [n_batch, n_rot] cos/sin pairs per position
    rope_swa: Vec<f32>,     // [n_batch, n_rot] the same for the sliding-window layers (or empty)
    /// The frequency factors this context's RoPE uses (Llama-3's, or LongRoPE's for its length).
    rope_factors: Option<Vector>,
    logits: Vec<f32>,     // [n_vocab] of the last token
    logits_all: Vec<f32>, // [n_tokens, n_vocab], grown on demand for Logits::All
    n_logits_all: usize,
    /// Flash-attention arithmetic (`ContextParams::flash_attn` with an F16 cache).
    flash: bool,
}

impl Context {
    pub fn new(model: Arc<Model>, params: ContextParams) -> Result<Context, ModelError> {
        let c = model.config().clone();
        let n_ctx = if params.n_ctx == 0 {
            c.n_ctx_train
                .clamp(1, DEFAULT_MAX_CTX)
                .max(params.min_ctx.min(c.n_ctx_train))
        } else {
            params.n_ctx
        };
        if n_ctx > MAX_CTX {
            return Err(ModelError::ContextTooLong {
                n_ctx,
                max: MAX_CTX,
            });
        }
        let n_batch = params.n_batch.clamp(1, n_ctx);
        let n_threads = if params.n_threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            params.n_threads
        };
        if n_threads > MAX_THREADS {
            return Err(ModelError::TooManyThreads {
                n_threads,
                max: MAX_THREADS,
            });
        }
        let n_seq = params.n_seq;
        if !(1..=MAX_SEQ).contains(&n_seq) {
            return Err(ModelError::BadSeqCount {
                n_seq,
                max: MAX_SEQ,
            });
        }
        let flash = params.flash_attn && params.kv_type == KvType::F16;
        let mut kvs = Vec::with_capacity(n_seq);
        for _ in 0..n_seq {
            let kv = KvCache::new(params.kv_type, c.n_layer, n_ctx, c.n_head_kv, c.head_dim)?;
            kvs.push(if flash { kv.with_value_rows() } else { kv });
        }
        let max_cols = c.n_embd.max(c.n_ff).max(c.q_dim());
        let f = &c.family;
        let fused = |len: usize| {
            if f.fused {
                vec![0.0; n_batch * len]
            } else {
                Vec::new()
            }
        };
        let rope_factors = match model.rope_factors {
            Some((short, long)) => Some(if n_ctx > f.longrope_ctx { long } else { short }),
            None => model.rope_freqs,
        };
        let state = RunState {
            x: vec![0.0; n_batch * c.n_embd],
            xb: vec![0.0; n_batch * c.n_embd],
            q: vec![0.0; n_batch * c.q_dim()],
            k: vec![0.0; n_batch * c.kv_dim()],
            v: vec![0.0; n_batch * c.kv_dim()],
            att: vec![0.0; n_batch * c.q_dim()],
            hb: vec![0.0; n_batch * c.n_ff],
            hb2: vec![0.0; n_batch * c.n_ff],
            qkv: fused(c.q_dim() + 2 * c.kv_dim()),
            gu: fused(2 * c.n_ff),
            acts: ActBuf::with_capacity(max_cols, n_batch),
            attn: (0..n_threads)
                .map(|_| AttnScratch::new(&c, n_ctx))
                .collect(),
            rope: vec![0.0; n_batch * f.n_rot],
            rope_swa: if f.swa_layers.contains(&true) {
                vec![0.0; n_batch * f.n_rot]
            } else {
                Vec::new()
            },
            rope_factors,
            logits: vec![0.0; c.n_vocab],
            // Several sequences' logits at once: allocated here; else grown for Logits::All.
            logits_all: if n_seq > 1 {
                vec![0.0; n_seq.min(n_batch) * c.n_vocab]
            } else {
                Vec::new()
            },
            n_logits_all: 0,
            flash,
        };
        Ok(Context {
            engine: Engine {
                table: kernels(),
                pool: ThreadPool::new(n_threads),
            },
            kvs,
            state,
            n_ctx,
            n_batch,
            hist: (0..n_seq).map(|_| Vec::with_capacity(n_ctx)).collect(),
            segs: Vec::with_capacity(n_seq),
            out_rows: Vec::with_capacity(n_seq),
            seq_logit_row: vec![usize::MAX; n_seq],
            tokens: Vec::with_capacity(n_batch),
            model,
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    pub fn n_batch(&self) -> usize {
        self.n_batch
    }

    /// Positions already in the cache (sequence 0's).
    pub fn n_past(&self) -> usize {
        self.hist[0].len()
    }

    /// Sequences (each with its own cache).
    pub fn n_seq(&self) -> usize {
        self.kvs.len()
    }

    /// Positions already in sequence `seq`'s cache; panics when there is no such sequence.
    pub fn seq_n_past(&self, seq: usize) -> usize {
        self.hist[seq].len()
    }

    /// Keep only the first `n` positions of sequence `seq`; panics when there is no such
    /// sequence.
    pub fn seq_truncate(&mut self, seq: usize, n: usize) {
        self.hist[seq].truncate(n);
    }

    pub fn n_threads(&self) -> usize {
        self.engine.pool.n_threads()
    }

    /// Sequence `seq`'s cache.
    pub(crate) fn seq_kv(&self, seq: usize) -> &KvCache {
        &self.kvs[seq]
    }

    pub(crate) fn seq_kv_mut(&mut self, seq: usize) -> &mut KvCache {
        &mut self.kvs[seq]
    }

    /// Marks positions 0..tokens.len() of sequence `seq` as holding `tokens` (after a state file
    /// was read into its cache).
    pub(crate) fn seq_restore(&mut self, seq: usize, tokens: &[u32]) {
        let h = &mut self.hist[seq];
        h.clear();
        h.extend_from_slice(&tokens[..tokens.len().min(self.n_ctx)]);
    }

    /// The token ids in sequence `seq`'s cache, position by position.
    pub fn seq_tokens(&self, seq: usize) -> &[u32] {
        &self.hist[seq]
    }

    /// The token ids in the cache (sequence 0's), position by position.
    pub fn tokens(&self) -> &[u32] {
        &self.hist[0]
    }

    /// Switches llama.cpp's flash-attention arithmetic on or off (`ContextParams::flash_attn`; an
    /// F16 cache only, other caches ignore it), before anything is evaluated.
    pub fn set_flash_attn(&mut self, on: bool) -> Result<(), ModelError> {
        let n_past = self.hist.iter().map(Vec::len).max().unwrap_or(0);
        if n_past > 0 {
            return Err(ModelError::NotEmpty {
                what: "flash attention can be switched",
                n_past,
            });
        }
        let flash = on && self.kvs[0].ty() == KvType::F16;
        for kv in &mut self.kvs {
            kv.set_value_rows(flash);
        }
        self.state.flash = flash;
        Ok(())
    }

    /// Whether attention uses llama.cpp's flash-attention arithmetic.
    pub fn flash_attn(&self) -> bool {
        self.state.flash
    }

    /// Makes `l` the last token's logits ([`Context::logits`]), as restored from a state file.
    pub(crate) fn set_logits(&mut self, l: &[f32]) {
        self.state.logits.copy_from_slice(l);
    }

    /// Sequence 0's cache.
    pub fn kv_cache(&self) -> &KvCache {
        &self.kvs[0]
    }

    /// Forget everything in the cache (sequence 0's).
    pub fn reset(&mut self) {
        self.hist[0].clear();
    }

    /// Keep only the first `n` positions (e.g. to rewind a chat turn; sequence 0).
    pub fn truncate(&mut self, n: usize) {
        self.hist[0].truncate(n);
    }

    /// Logits of the last evaluated token: [n_vocab].
    pub fn logits(&self) -> &[f32] {
        &self.state.logits
    }

    /// Logits of every token of the last `Logits::All` evaluation: [n_tokens, n_vocab].
    pub fn logits_all(&self) -> &[f32] {
        &self.state.logits_all[..self.state.n_logits_all * self.model.config().n_vocab]
    }

    /// Evaluate `tokens` at positions n_past.. and append them to the cache (sequence 0's).
    pub fn eval(&mut self, tokens: &[u32], want: Logits) -> Result<(), ModelError> {
        let n_vocab = self.model.config().n_vocab;
        let n_past = self.hist[0].len();
        if tokens.len() > self.n_ctx - n_past {
            return Err(ModelError::ContextFull {
                n_tokens: tokens.len(),
                n_past,
                n_ctx: self.n_ctx,
            });
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(ModelError::BadToken { id, n_vocab });
        }
        let s = &mut self.state;
        if want == Logits::All {
            let need = tokens.len() * n_vocab;
            if s.logits_all.len() < need {
                s.logits_all.resize(need, 0.0);
            }
            s.n_logits_all = tokens.len();
        }
        for (i, batch) in tokens.chunks(self.n_batch).enumerate() {
            let done = i * self.n_batch;
            let out = match want {
                Logits::All => Out::All(done),
                Logits::Last if done + batch.len() == tokens.len() => Out::Last,
                _ => Out::None,
            };
            let seg = Seg {
                seq: 0,
                row0: 0,
                n: batch.len(),
                pos0: self.hist[0].len(),
            };
            let (m, e) = (&*self.model, &self.engine);
            forward(m, e, &mut self.kvs, s, batch, &[seg], out);
            self.hist[0].extend_from_slice(batch);
        }
        Ok(())
    }

    /// Evaluate several sequences' tokens in one forward pass (continuous batching: one pass
    /// over the weights serves them all). `batch` names each sequence at most once, with at least
    /// one token, n_batch tokens in all; each sequence's tokens go to its next positions. The
    /// results are those of evaluating each sequence alone (the forward pass does not depend on
    /// how tokens are batched). Afterwards [`Context::seq_logits`] gives the last token's logits
    /// of each part that asked for them. Nothing is evaluated when the batch is invalid.
    pub fn eval_seqs(&mut self, batch: &[SeqBatch]) -> Result<(), ModelError> {
        let n_vocab = self.model.config().n_vocab;
        let n_seq = self.kvs.len();
        let bad = |why: String| Err(ModelError::BadBatch { why });
        let total: usize = batch.iter().map(|b| b.tokens.len()).sum();
        if total == 0 || total > self.n_batch {
            return bad(format!(
                "{total} tokens (expected 1..={} in one batch)",
                self.n_batch
            ));
        }
        if batch.len() > n_seq {
            return bad(format!("{} parts for {n_seq} sequences", batch.len()));
        }
        for (i, b) in batch.iter().enumerate() {
            if b.seq >= n_seq {
                return bad(format!("sequence {} (the context has {n_seq})", b.seq));
            }
            if b.tokens.is_empty() {
                return bad(format!("sequence {} has no tokens", b.seq));
            }
            if batch[..i].iter().any(|o| o.seq == b.seq) {
                return bad(format!("sequence {} appears twice", b.seq));
            }
            let n_past = self.hist[b.seq].len();
            if b.tokens.len() > self.n_ctx - n_past {
                return Err(ModelError::ContextFull {
                    n_tokens: b.tokens.len(),
                    n_past,
                    n_ctx: self.n_ctx,
                });
            }
            if let Some(&id) = b.tokens.iter().find(|&&t| t as usize >= n_vocab) {
                return Err(ModelError::BadToken { id, n_vocab });
            }
        }
        // The tokens side by side in the run state's token list: x rows follow the parts.
        self.segs.clear();
        self.out_rows.clear();
        self.seq_logit_row.fill(usize::MAX);
        // Several-token parts first, then single tokens (see `forward`).
        let order = batch
            .iter()
            .filter(|b| b.tokens.len() > 1)
            .chain(batch.iter().filter(|b| b.tokens.len() == 1));
        let mut row0 = 0;
        for b in order.clone() {
            self.segs.push(Seg {
                seq: b.seq,
                row0,
                n: b.tokens.len(),
                pos0: self.hist[b.seq].len(),
            });
            if b.logits {
                self.seq_logit_row[b.seq] = self.out_rows.len();
                self.out_rows.push(row0 + b.tokens.len() - 1);
            }
            row0 += b.tokens.len();
        }
        // Preallocated for several sequences; a one-sequence context grows it once here.
        let need = self.out_rows.len() * n_vocab;
        if self.state.logits_all.len() < need {
            self.state.logits_all.resize(need, 0.0);
        }
        self.tokens.clear();
        for b in order {
            self.tokens.extend_from_slice(b.tokens);
        }
        let (m, e, s) = (&*self.model, &self.engine, &mut self.state);
        let out = Out::Rows(&self.out_rows);
        forward(m, e, &mut self.kvs, s, &self.tokens, &self.segs, out);
        for b in batch {
            self.hist[b.seq].extend_from_slice(b.tokens);
        }
        Ok(())
    }

    /// The logits of sequence `seq`'s last token in the last [`Context::eval_seqs`], if it asked
    /// for them: [n_vocab].
    pub fn seq_logits(&self, seq: usize) -> Option<&[f32]> {
        let nv = self.model.config().n_vocab;
        let r = *self.seq_logit_row.get(seq)?;
        (r != usize::MAX).then(|| &self.state.logits_all[r * nv..(r + 1) * nv])
    }
}

/// Elements from which [`Engine::rows`] shares a step's rows among the threads (a prompt batch;
/// a decode step's vectors stay on the calling thread, where waking the pool would cost more).
const PAR_ROWS_MIN: usize = 1 << 15;

impl Engine {
    /// f(t, row t of `out`) for every row of `row` elements of `out`, on the pool's threads when
    /// `out` is large. The rows are independent, so the results do not depend on the split.
    fn rows(&self, out: &mut [f32], row: usize, f: &(dyn Fn(usize, &mut [f32]) + Sync)) {
        if self.pool.n_threads() > 1 && out.len() >= PAR_ROWS_MIN && out.len() > row {
            self.pool.for_each_part(out, row, f);
        } else {
            for (t, o) in out.chunks_exact_mut(row).enumerate() {
                f(t, o);
            }
        }
    }

    /// outs_j[..n * rows_j] = x[..n * cols] · W_jᵀ for matrices that read the same input (Q, K
    /// and V; gate and up): x quantized to their dot partner once, and for a decode step one
    /// parallel call over all their rows ([`matmul_q_many_with`]). Matrices that differ in dot
    /// partner or width go one at a time.
    /// The first `n_tile` of the n rows go through the prefill tiles, the others through the
    /// decode kernels (single-token segments: see [`matmul_q_many_mixed_with`]).
    fn project<const N: usize>(
        &self,
        model: &Model,
        acts: &mut ActBuf,
        x: &[f32],
        (n, n_tile): (usize, usize),
        outs: [(&Mat, &mut [f32]); N],
    ) {
        let (p0, cols) = (outs[0].0.partner, outs[0].0.n_cols);
        if outs
            .iter()
            .any(|(w, _)| w.partner != p0 || w.n_cols != cols)
        {
            for out in outs {
                self.project(model, acts, x, (n, n_tile), [out]);
            }
            return;
        }
        acts.quantize_par(self.table, &self.pool, p0, &x[..n * cols], n, cols);
        let mut jobs = outs.map(|(w, o)| {
            let w = model.mat(w);
            let rows = w.n_rows;
            (w, &mut o[..n * rows])
        });
        matmul_q_many_mixed_with(self.table, &self.pool, &mut jobs, acts, n_tile);
    }
}

/// One batch of `tokens` (≤ n_batch), cut into segments: the rows of `seg` are sequence
/// `seg.seq`'s tokens at positions seg.pos0.., their keys and values stored in `kvs[seg.seq]`
/// and attending to that cache only; the logits `out` asks for are left in `s`. The model's [`Family`](super::Family) selects
/// the variants (fused projections, Q/K norms, RoPE per layer, window, post-norms, FFN kind).
/// Shapes in comments use n = tokens.len(), d = n_embd, hd = head_dim.
fn forward(
    model: &Model,
    e: &Engine,
    kvs: &mut [KvCache],
    s: &mut RunState,
    tokens: &[u32],
    segs: &[Seg],
    out: Out,
) {
    let c = model.config();
    let f = &c.family;
    let (d, n) = (c.n_embd, tokens.len());
    let (q_dim, kv_dim, hd, ff) = (c.q_dim(), c.kv_dim(), c.head_dim, c.n_ff);
    // Segments of several tokens come first and go through the prefill tiles; single tokens
    // (decode steps) through the decode kernels, so each sequence gets the values it gets alone.
    let n_tile: usize = segs.iter().filter(|g| g.n > 1).map(|g| g.n).sum();
    debug_assert!(
        segs.iter()
            .take_while(|g| g.n > 1)
            .map(|g| g.n)
            .sum::<usize>()
            == n_tile
    );
    let rows = (n, n_tile);

    // Token embeddings: x[t] = token_embd[tokens[t]] (* embd_scale)  (one row dequantized each).
    let emb = model.mat(&model.tok_embd);
    let deq = model.tok_embd.dequantize;
    let rb = emb.row_bytes();
    for (t, &tok) in tokens.iter().enumerate() {
        let row = &emb.data[tok as usize * rb..(tok as usize + 1) * rb];
        deq(row, &mut s.x[t * d..(t + 1) * d]);
    }
    if let Some(k) = f.embd_scale {
        scale(&mut s.x[..n * d], k);
    }

    // RoPE cos/sin for each position of the batch: rope[t] = [cos θ0, sin θ0, cos θ1, ...], with
    // the global layers' base and, where the family has them, the sliding-window layers'.
    let factors = s.rope_factors.as_ref().map(|v| model.vector(v));
    let table = |dst: &mut Vec<f32>, base: f32, freq_scale: f32| {
        for g in segs {
            let dst = &mut dst[g.row0 * f.n_rot..(g.row0 + g.n) * f.n_rot];
            rope_table(
                dst,
                f.n_rot,
                g.pos0,
                base,
                freq_scale,
                f.rope_mscale,
                factors,
            );
        }
    };
    table(&mut s.rope, c.rope_base, c.rope_freq_scale);
    if !s.rope_swa.is_empty() {
        table(&mut s.rope_swa, f.rope_base_swa, f.rope_freq_scale_swa);
    }

    for (li, layer) in model.layers.iter().enumerate() {
        let swa = f.swa_layers[li];
        // ---- attention ----
        // xb = rmsnorm(x) * attn_norm                         [n, d]
        let norm = model.vector(&layer.attn_norm);
        let x = &s.x;
        e.rows(&mut s.xb[..n * d], d, &|t, o| {
            rmsnorm(o, &x[t * d..(t + 1) * d], norm, d, c.rms_eps)
        });
        // q = xb Wqᵀ [n, q_dim]; k = xb Wkᵀ, v = xb Wvᵀ [n, kv_dim]
        match &layer.qkv {
            Qkv::Split { wq, wk, wv } => {
                let qkv = [(wq, &mut s.q[..]), (wk, &mut s.k[..]), (wv, &mut s.v[..])];
                e.project(model, &mut s.acts, &s.xb, rows, qkv);
            }
            Qkv::Fused(w) => {
                // qkv = xb Wqkvᵀ [n, q_dim + 2 kv_dim], then split per token.
                e.project(model, &mut s.acts, &s.xb, rows, [(w, &mut s.qkv[..])]);
                let w = q_dim + 2 * kv_dim;
                for (t, row) in s.qkv[..n * w].chunks_exact(w).enumerate() {
                    s.q[t * q_dim..(t + 1) * q_dim].copy_from_slice(&row[..q_dim]);
                    s.k[t * kv_dim..(t + 1) * kv_dim].copy_from_slice(&row[q_dim..q_dim + kv_dim]);
                    s.v[t * kv_dim..(t + 1) * kv_dim].copy_from_slice(&row[q_dim + kv_dim..]);
                }
            }
        }
        if let (Some(bq), Some(bk), Some(bv)) = (&layer.bq, &layer.bk, &layer.bv) {
            add_bias(&mut s.q[..n * q_dim], model.vector(bq));
            add_bias(&mut s.k[..n * kv_dim], model.vector(bk));
            add_bias(&mut s.v[..n * kv_dim], model.vector(bv));
        }
        // Per-head RMS norms of q and k (qwen3, gemma3).
        if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
            rmsnorm_heads(&mut s.q[..n * q_dim], model.vector(qn), c.rms_eps);
            rmsnorm_heads(&mut s.k[..n * kv_dim], model.vector(kn), c.rms_eps);
        }
        // Rotate q and k by position (the first n_rot dimensions of each head).
        if f.rope_layers[li] {
            let tab = if swa { &s.rope_swa } else { &s.rope };
            for t in 0..n {
                let cs = &tab[t * f.n_rot..(t + 1) * f.n_rot];
                for h in s.q[t * q_dim..(t + 1) * q_dim].chunks_exact_mut(hd) {
                    rope(&mut h[..f.n_rot], cs, f.rope_neox);
                }
                for h in s.k[t * kv_dim..(t + 1) * kv_dim].chunks_exact_mut(hd) {
                    rope(&mut h[..f.n_rot], cs, f.rope_neox);
                }
            }
        }
        if f.scale_queries {
            scale(&mut s.q[..n * q_dim], f.attn_scale);
        }
        // Write k, v into their sequence's cache at their positions:
        // cache[li][kv][head][pos] = [hd].
        for g in segs {
            let kv = &mut kvs[g.seq];
            for t in 0..g.n {
                for h in 0..c.n_head_kv {
                    let o = (g.row0 + t) * kv_dim + h * hd;
                    kv.store(e.table, li, Kv::K, h, g.pos0 + t, &s.k[o..o + hd]);
                    kv.store(e.table, li, Kv::V, h, g.pos0 + t, &s.v[o..o + hd]);
                }
            }
        }
        // att[t, head] = softmax(q·Kᵀ * scale) V over the positions token t sees   [n, q_dim]
        let spec = AttnSpec {
            scale: if f.scale_queries { 1.0 } else { f.attn_scale },
            window: if swa { f.n_swa } else { 0 },
            flash: s.flash,
        };
        attention::attention(c, e, kvs, segs, s, li, spec);
        // xb = att Woᵀ [n, d] (rmsnorm'd by post_attn_norm, gemma3); x += xb
        e.project(
            model,
            &mut s.acts,
            &s.att,
            rows,
            [(&layer.wo, &mut s.xb[..])],
        );
        if let Some(pn) = &layer.post_attn_norm {
            rmsnorm_in_place(&mut s.xb[..n * d], model.vector(pn), d, c.rms_eps);
        }
        let xb = &s.xb;
        e.rows(&mut s.x[..n * d], d, &|t, o| {
            add(o, &xb[t * d..(t + 1) * d])
        });

        // ---- feed-forward (SwiGLU or GeGLU) ----
        // xb = rmsnorm(x) * ffn_norm                          [n, d]
        let norm = model.vector(&layer.ffn_norm);
        let x = &s.x;
        e.rows(&mut s.xb[..n * d], d, &|t, o| {
            rmsnorm(o, &x[t * d..(t + 1) * d], norm, d, c.rms_eps)
        });
        // hb = xb Wgateᵀ, hb2 = xb Wupᵀ                        [n, n_ff]
        match &layer.gate_up {
            GateUp::Split { gate, up } => {
                let gate_up = [(gate, &mut s.hb[..]), (up, &mut s.hb2[..])];
                e.project(model, &mut s.acts, &s.xb, rows, gate_up);
            }
            GateUp::Fused(w) => {
                // gu = xb Wupᵀ [n, 2 n_ff]: the gate, then up, per token.
                e.project(model, &mut s.acts, &s.xb, rows, [(w, &mut s.gu[..])]);
                for (t, row) in s.gu[..n * 2 * ff].chunks_exact(2 * ff).enumerate() {
                    s.hb[t * ff..(t + 1) * ff].copy_from_slice(&row[..ff]);
                    s.hb2[t * ff..(t + 1) * ff].copy_from_slice(&row[ff..]);
                }
            }
        }
        // hb = act(hb) * hb2
        match f.ffn {
            Ffn::Silu => {
                let (hb2, swiglu) = (&s.hb2, e.table.swiglu);
                e.rows(&mut s.hb[..n * ff], ff, &|t, o| {
                    swiglu(o, &hb2[t * ff..(t + 1) * ff])
                });
            }
            Ffn::Gelu => {
                let hb2 = &s.hb2;
                e.rows(&mut s.hb[..n * ff], ff, &|t, o| {
                    geglu(o, &hb2[t * ff..(t + 1) * ff])
                });
            }
        }
        // xb = hb Wdownᵀ [n, d] (rmsnorm'd by post_ffn_norm, gemma3); x += xb
        e.project(
            model,
            &mut s.acts,
            &s.hb,
            rows,
            [(&layer.w_down, &mut s.xb[..])],
        );
        if let Some(pn) = &layer.post_ffn_norm {
            rmsnorm_in_place(&mut s.xb[..n * d], model.vector(pn), d, c.rms_eps);
        }
        let xb = &s.xb;
        e.rows(&mut s.x[..n * d], d, &|t, o| {
            add(o, &xb[t * d..(t + 1) * d])
        });
    }

    // ---- output ----
    let out_norm = model.vector(&model.output_norm);
    let (first, count) = match out {
        Out::None => return,
        Out::Last => (n - 1, 1),
        Out::All(_) => (0, n),
        Out::Rows(rows) => {
            // Several sequences' last tokens: xb[k] = rmsnorm(x[rows[k]]) * output_norm, then
            // logits_all[k] = xb[k] Woutᵀ                     [rows.len(), n_vocab]
            let count = rows.len();
            if count == 0 {
                return;
            }
            for (k, &r) in rows.iter().enumerate() {
                let (x, xb) = (&s.x[r * d..(r + 1) * d], &mut s.xb[k * d..(k + 1) * d]);
                rmsnorm(xb, x, out_norm, d, c.rms_eps);
            }
            let dst = &mut s.logits_all[..count * c.n_vocab];
            // Each row as its sequence's one-token output alone (the decode kernels).
            let rows = (count, 0);
            e.project(
                model,
                &mut s.acts,
                &s.xb,
                rows,
                [(&model.output, &mut *dst)],
            );
            if let Some(cap) = f.final_softcap {
                softcap(dst, cap);
            }
            return;
        }
    };
    // xb = rmsnorm(x[rows]) * output_norm                     [count, d]
    let x = &s.x[first * d..(first + count) * d];
    rmsnorm(&mut s.xb[..count * d], x, out_norm, d, c.rms_eps);
    // logits = xb Woutᵀ (soft-capped where the family says)   [count, n_vocab]
    let nv = c.n_vocab;
    match out {
        Out::All(offset) => {
            let dst = &mut s.logits_all[offset * nv..(offset + count) * nv];
            e.project(
                model,
                &mut s.acts,
                &s.xb,
                (count, count),
                [(&model.output, &mut *dst)],
            );
            if let Some(cap) = f.final_softcap {
                softcap(dst, cap);
            }
            s.logits.copy_from_slice(&dst[(count - 1) * nv..]);
        }
        _ => {
            e.project(
                model,
                &mut s.acts,
                &s.xb,
                (count, count),
                [(&model.output, &mut s.logits[..])],
            );
            if let Some(cap) = f.final_softcap {
                softcap(&mut s.logits, cap);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Out<'a> {
    None,
    Last,
    /// All rows, stored from this token offset of the evaluation.
    All(usize),
    /// These rows (one per sequence), stored from the start of `logits_all`.
    Rows(&'a [usize]),
}

//! A context: the KV cache, scratch buffers and thread pool for one conversation, and the forward
//! pass, which reads top to bottom like llama2.c's `forward`.
//!
//! Everything is allocated in `Context::new`; decoding a token allocates nothing.

use std::sync::Arc;

use ferrolm_kernels::dispatch::{kernels, KernelTable};
use ferrolm_kernels::matmul::{matmul_q_many_with, ActBuf};
use ferrolm_kernels::pool::ThreadPool;

use super::{Mat, Model, ModelError};
use crate::kv_cache::{Kv, KvCache, KvType};

mod attention;
use attention::AttnScratch;

/// Default context length cap: the model's own length, but at most this many positions.
pub const DEFAULT_MAX_CTX: usize = 4096;
/// Default prefill batch (llama.cpp's n_ubatch).
pub const DEFAULT_BATCH: usize = 512;
/// Most worker threads a context may have.
pub const MAX_THREADS: usize = 512;
/// Longest context a context may be created with.
pub const MAX_CTX: usize = 1 << 20;

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

/// One conversation: the model, the engine that computes, the KV cache, and the run state of
/// the forward pass.
pub struct Context {
    model: Arc<Model>,
    engine: Engine,
    kv: KvCache,
    state: RunState,
    n_ctx: usize,
    n_batch: usize,
    n_past: usize,
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
    /// The input of the matrices being applied, quantized to their dot partner: filled and
    /// read within one [`Engine::project`] call, so it never outlives the buffer it came from.
    acts: ActBuf,
    attn: Vec<AttnScratch>, // one per thread
    rope: Vec<f32>,         // [n_batch, head_dim] cos/sin pairs per position
    logits: Vec<f32>,       // [n_vocab] of the last token
    logits_all: Vec<f32>,   // [n_tokens, n_vocab], grown on demand for Logits::All
    n_logits_all: usize,
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
        let kv = KvCache::new(params.kv_type, c.n_layer, n_ctx, c.n_head_kv, c.head_dim)?;
        let max_cols = c.n_embd.max(c.n_ff).max(c.q_dim());
        let state = RunState {
            x: vec![0.0; n_batch * c.n_embd],
            xb: vec![0.0; n_batch * c.n_embd],
            q: vec![0.0; n_batch * c.q_dim()],
            k: vec![0.0; n_batch * c.kv_dim()],
            v: vec![0.0; n_batch * c.kv_dim()],
            att: vec![0.0; n_batch * c.q_dim()],
            hb: vec![0.0; n_batch * c.n_ff],
            hb2: vec![0.0; n_batch * c.n_ff],
            acts: ActBuf::with_capacity(max_cols, n_batch),
            attn: (0..n_threads)
                .map(|_| AttnScratch::new(&c, n_ctx))
                .collect(),
            rope: vec![0.0; n_batch * c.head_dim],
            logits: vec![0.0; c.n_vocab],
            logits_all: Vec::new(),
            n_logits_all: 0,
        };
        Ok(Context {
            engine: Engine {
                table: kernels(),
                pool: ThreadPool::new(n_threads),
            },
            kv,
            state,
            n_ctx,
            n_batch,
            n_past: 0,
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

    /// Positions already in the cache.
    pub fn n_past(&self) -> usize {
        self.n_past
    }

    pub fn n_threads(&self) -> usize {
        self.engine.pool.n_threads()
    }

    pub fn kv_cache(&self) -> &KvCache {
        &self.kv
    }

    /// Forget everything in the cache.
    pub fn reset(&mut self) {
        self.n_past = 0;
    }

    /// Keep only the first `n` positions (e.g. to rewind a chat turn).
    pub fn truncate(&mut self, n: usize) {
        self.n_past = self.n_past.min(n);
    }

    /// Logits of the last evaluated token: [n_vocab].
    pub fn logits(&self) -> &[f32] {
        &self.state.logits
    }

    /// Logits of every token of the last `Logits::All` evaluation: [n_tokens, n_vocab].
    pub fn logits_all(&self) -> &[f32] {
        &self.state.logits_all[..self.state.n_logits_all * self.model.config().n_vocab]
    }

    /// Evaluate `tokens` at positions n_past.. and append them to the cache.
    pub fn eval(&mut self, tokens: &[u32], want: Logits) -> Result<(), ModelError> {
        let n_vocab = self.model.config().n_vocab;
        if tokens.len() > self.n_ctx - self.n_past {
            return Err(ModelError::ContextFull {
                n_tokens: tokens.len(),
                n_past: self.n_past,
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
            let (m, e) = (&*self.model, &self.engine);
            forward(m, e, &mut self.kv, s, batch, self.n_past, out);
            self.n_past += batch.len();
        }
        Ok(())
    }
}

impl Engine {
    /// outs_j[..n * rows_j] = x[..n * cols] · W_jᵀ for matrices that read the same input (Q, K
    /// and V; gate and up): x quantized to their dot partner once, and for a decode step one
    /// parallel call over all their rows ([`matmul_q_many_with`]). Matrices that differ in dot
    /// partner or width go one at a time.
    fn project<const N: usize>(
        &self,
        model: &Model,
        acts: &mut ActBuf,
        x: &[f32],
        n: usize,
        outs: [(&Mat, &mut [f32]); N],
    ) {
        let (p0, cols) = (outs[0].0.partner, outs[0].0.n_cols);
        if outs
            .iter()
            .any(|(w, _)| w.partner != p0 || w.n_cols != cols)
        {
            for out in outs {
                self.project(model, acts, x, n, [out]);
            }
            return;
        }
        acts.quantize_with(self.table, p0, &x[..n * cols], n, cols);
        let mut jobs = outs.map(|(w, o)| {
            let w = model.mat(w);
            let rows = w.n_rows;
            (w, &mut o[..n * rows])
        });
        matmul_q_many_with(self.table, &self.pool, &mut jobs, acts);
    }
}

/// One batch of `tokens` (≤ n_batch) at positions pos0..pos0 + n, their keys and values stored
/// in `kv`, the logits `out` asks for left in `s`. Shapes in comments use n = tokens.len(),
/// d = n_embd, hd = head_dim.
fn forward(
    model: &Model,
    e: &Engine,
    kv: &mut KvCache,
    s: &mut RunState,
    tokens: &[u32],
    pos0: usize,
    out: Out,
) {
    let c = model.config();
    let (d, n) = (c.n_embd, tokens.len());
    let (q_dim, kv_dim, hd, ff) = (c.q_dim(), c.kv_dim(), c.head_dim, c.n_ff);

    // Token embeddings: x[t] = token_embd[tokens[t]]  (one row dequantized per token).
    let emb = model.mat(&model.tok_embd);
    let deq = model.tok_embd.dequantize;
    let rb = emb.row_bytes();
    for (t, &tok) in tokens.iter().enumerate() {
        let row = &emb.data[tok as usize * rb..(tok as usize + 1) * rb];
        deq(row, &mut s.x[t * d..(t + 1) * d]);
    }

    // RoPE cos/sin for each position of the batch: rope[t] = [cos θ0, sin θ0, cos θ1, ...].
    rope_table(model, &mut s.rope, n, pos0);

    for (li, layer) in model.layers.iter().enumerate() {
        // ---- attention ----
        // xb = rmsnorm(x) * attn_norm                         [n, d]
        let norm = model.vector(&layer.attn_norm);
        rmsnorm(&mut s.xb[..n * d], &s.x[..n * d], norm, d, c.rms_eps);
        // q = xb Wqᵀ [n, q_dim]; k = xb Wkᵀ, v = xb Wvᵀ [n, kv_dim]
        let qkv = [
            (&layer.wq, &mut s.q[..]),
            (&layer.wk, &mut s.k[..]),
            (&layer.wv, &mut s.v[..]),
        ];
        e.project(model, &mut s.acts, &s.xb, n, qkv);
        if let (Some(bq), Some(bk), Some(bv)) = (&layer.bq, &layer.bk, &layer.bv) {
            add_bias(&mut s.q[..n * q_dim], model.vector(bq));
            add_bias(&mut s.k[..n * kv_dim], model.vector(bk));
            add_bias(&mut s.v[..n * kv_dim], model.vector(bv));
        }
        // Rotate q and k by position.
        let neox = c.arch.rope_neox();
        for t in 0..n {
            let cs = &s.rope[t * hd..(t + 1) * hd];
            for h in s.q[t * q_dim..(t + 1) * q_dim].chunks_exact_mut(hd) {
                rope(h, cs, neox);
            }
            for h in s.k[t * kv_dim..(t + 1) * kv_dim].chunks_exact_mut(hd) {
                rope(h, cs, neox);
            }
        }
        // Write k, v into the cache at their positions: cache[li][kv][head][pos] = [hd].
        for t in 0..n {
            for h in 0..c.n_head_kv {
                let o = t * kv_dim + h * hd;
                kv.store(e.table, li, Kv::K, h, pos0 + t, &s.k[o..o + hd]);
                kv.store(e.table, li, Kv::V, h, pos0 + t, &s.v[o..o + hd]);
            }
        }
        // att[t, head] = softmax(q·Kᵀ / sqrt(hd)) V over positions 0..=pos0+t   [n, q_dim]
        attention::attention(c, e, kv, s, li, n, pos0);
        // xb = att Woᵀ [n, d]; x += xb
        e.project(model, &mut s.acts, &s.att, n, [(&layer.wo, &mut s.xb[..])]);
        add(&mut s.x[..n * d], &s.xb[..n * d]);

        // ---- feed-forward (SwiGLU) ----
        // xb = rmsnorm(x) * ffn_norm                          [n, d]
        let norm = model.vector(&layer.ffn_norm);
        rmsnorm(&mut s.xb[..n * d], &s.x[..n * d], norm, d, c.rms_eps);
        // hb = xb Wgateᵀ, hb2 = xb Wupᵀ                        [n, n_ff]
        let gate_up = [
            (&layer.w_gate, &mut s.hb[..]),
            (&layer.w_up, &mut s.hb2[..]),
        ];
        e.project(model, &mut s.acts, &s.xb, n, gate_up);
        // hb = silu(hb) * hb2
        (e.table.swiglu)(&mut s.hb[..n * ff], &s.hb2[..n * ff]);
        // xb = hb Wdownᵀ [n, d]; x += xb
        e.project(
            model,
            &mut s.acts,
            &s.hb,
            n,
            [(&layer.w_down, &mut s.xb[..])],
        );
        add(&mut s.x[..n * d], &s.xb[..n * d]);
    }

    // ---- output ----
    let (first, count) = match out {
        Out::None => return,
        Out::Last => (n - 1, 1),
        Out::All(_) => (0, n),
    };
    // xb = rmsnorm(x[rows]) * output_norm                     [count, d]
    let x = &s.x[first * d..(first + count) * d];
    rmsnorm(
        &mut s.xb[..count * d],
        x,
        model.vector(&model.output_norm),
        d,
        c.rms_eps,
    );
    // logits = xb Woutᵀ                                       [count, n_vocab]
    let nv = c.n_vocab;
    match out {
        Out::All(offset) => {
            let dst = &mut s.logits_all[offset * nv..(offset + count) * nv];
            e.project(
                model,
                &mut s.acts,
                &s.xb,
                count,
                [(&model.output, &mut *dst)],
            );
            s.logits.copy_from_slice(&dst[(count - 1) * nv..]);
        }
        _ => e.project(
            model,
            &mut s.acts,
            &s.xb,
            count,
            [(&model.output, &mut s.logits[..])],
        ),
    }
}

/// cos/sin of θ_i = pos · freq_scale · base^(-2i/hd) / freq_factor_i, computed as ggml's
/// `ggml_rope_cache_init` does (θ multiplied by base^(-2/hd) step by step, in f32).
fn rope_table(model: &Model, rope: &mut [f32], n: usize, pos0: usize) {
    let c = model.config();
    let hd = c.head_dim;
    let theta_scale = c.rope_base.powf(-2.0 / hd as f32);
    let ff = model.rope_freqs.as_ref().map(|v| model.vector(v));
    for t in 0..n {
        let mut theta = (pos0 + t) as f32;
        let row = &mut rope[t * hd..(t + 1) * hd];
        for i in 0..hd / 2 {
            let f = ff.map_or(1.0, |f| f[i]);
            let th = c.rope_freq_scale * (theta / f);
            row[2 * i] = th.cos();
            row[2 * i + 1] = th.sin();
            theta *= theta_scale;
        }
    }
}

#[derive(Clone, Copy)]
enum Out {
    None,
    Last,
    /// All rows, stored from this token offset of the evaluation.
    All(usize),
}

/// out[t] = x[t] / sqrt(mean(x[t]²) + eps) * w, per row of `d`, as ggml's rms_norm (sum in f64).
fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], d: usize, eps: f32) {
    for (o, xr) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        let sum: f64 = xr.iter().map(|&v| (v * v) as f64).sum();
        let mean = (sum / d as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((o, &v), &wi) in o.iter_mut().zip(xr).zip(w) {
            *o = (v * scale) * wi;
        }
    }
}

/// Rotate one head by the cos/sin pairs in `cs` ([cos θ0, sin θ0, ...], hd values).
#[inline]
fn rope(h: &mut [f32], cs: &[f32], neox: bool) {
    let half = h.len() / 2;
    for i in 0..half {
        let (cos, sin) = (cs[2 * i], cs[2 * i + 1]);
        let (a, b) = if neox {
            (i, i + half)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (x0, x1) = (h[a], h[b]);
        h[a] = x0 * cos - x1 * sin;
        h[b] = x0 * sin + x1 * cos;
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// x[t] += b for each row of len(b).
fn add_bias(x: &mut [f32], b: &[f32]) {
    for row in x.chunks_exact_mut(b.len()) {
        add(row, b);
    }
}

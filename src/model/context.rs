//! A context: the KV cache, scratch buffers and thread pool for one conversation, and the forward
//! pass, which reads top to bottom like llama2.c's `forward`.
//!
//! Everything is allocated in `Context::new`; decoding a token allocates nothing.

use std::sync::Arc;

use ferrolm_kernels::dispatch::{kernels, KernelTable};
use ferrolm_kernels::matmul::{matmul_q_many_with, matmul_q_with, ActBuf, MatRef};
use ferrolm_kernels::pool::ThreadPool;
use ferrolm_kernels::GgmlType;

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

pub struct Context {
    model: Arc<Model>,
    table: &'static KernelTable,
    pool: ThreadPool,
    kv: KvCache,
    n_ctx: usize,
    n_batch: usize,
    n_past: usize,
    // Activations, for a batch of up to n_batch tokens:
    x: Vec<f32>,   // [n_batch, n_embd] residual stream
    xb: Vec<f32>,  // [n_batch, n_embd] normed input / projection output
    q: Vec<f32>,   // [n_batch, n_head * head_dim]
    k: Vec<f32>,   // [n_batch, n_head_kv * head_dim]
    v: Vec<f32>,   // [n_batch, n_head_kv * head_dim]
    att: Vec<f32>, // [n_batch, n_head * head_dim] attention output
    hb: Vec<f32>,  // [n_batch, n_ff]
    hb2: Vec<f32>, // [n_batch, n_ff]
    acts: ActBuf,  // one of the above, quantized to a weight's dot partner
    /// Which buffer `acts` holds, in which format, while that buffer is unchanged.
    acts_src: Option<(Src, GgmlType)>,
    attn: AttnScratch,
    rope: Vec<f32>,       // [n_batch, head_dim] cos/sin pairs per position
    logits: Vec<f32>,     // [n_vocab] of the last token
    logits_all: Vec<f32>, // [n_tokens, n_vocab], grown on demand for Logits::All
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
        let table = kernels();
        let max_cols = c.n_embd.max(c.n_ff).max(c.q_dim());
        // The query in the cache's dot partner (f32 for F16/F32 caches, Q8_0 for a Q8_0 cache), or
        // the f32 queries of the heads that share a KV head.
        let group = c.n_head / c.n_head_kv;
        let qbuf_words = (group * c.head_dim * 4).div_ceil(8);
        Ok(Context {
            table,
            pool: ThreadPool::new(n_threads),
            kv,
            n_ctx,
            n_batch,
            n_past: 0,
            x: vec![0.0; n_batch * c.n_embd],
            xb: vec![0.0; n_batch * c.n_embd],
            q: vec![0.0; n_batch * c.q_dim()],
            k: vec![0.0; n_batch * c.kv_dim()],
            v: vec![0.0; n_batch * c.kv_dim()],
            att: vec![0.0; n_batch * c.q_dim()],
            hb: vec![0.0; n_batch * c.n_ff],
            hb2: vec![0.0; n_batch * c.n_ff],
            acts: ActBuf::with_capacity(max_cols, n_batch),
            acts_src: None,
            attn: AttnScratch {
                scores: vec![0.0; n_threads * group * n_ctx],
                vrow: vec![0.0; n_threads * c.head_dim],
                qbuf: vec![0; n_threads * qbuf_words],
                qbuf_words,
            },
            rope: vec![0.0; n_batch * c.head_dim],
            logits: vec![0.0; c.n_vocab],
            logits_all: Vec::new(),
            n_logits_all: 0,
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
        self.pool.n_threads()
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
        &self.logits
    }

    /// Logits of every token of the last `Logits::All` evaluation: [n_tokens, n_vocab].
    pub fn logits_all(&self) -> &[f32] {
        &self.logits_all[..self.n_logits_all * self.model.config().n_vocab]
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
        if want == Logits::All {
            let need = tokens.len() * n_vocab;
            if self.logits_all.len() < need {
                self.logits_all.resize(need, 0.0);
            }
            self.n_logits_all = tokens.len();
        }
        let mut done = 0;
        while done < tokens.len() {
            let n = (tokens.len() - done).min(self.n_batch);
            let last_chunk = done + n == tokens.len();
            let out = match want {
                Logits::All => Out::All(done),
                Logits::Last if last_chunk => Out::Last,
                _ => Out::None,
            };
            self.forward(&tokens[done..done + n], out);
            done += n;
        }
        Ok(())
    }

    /// One batch of `tokens` (≤ n_batch) at positions n_past..n_past+n. Shapes in comments use
    /// n = tokens.len(), d = n_embd, hd = head_dim.
    fn forward(&mut self, tokens: &[u32], out: Out) {
        let model = Arc::clone(&self.model);
        let c = model.config();
        let (d, n) = (c.n_embd, tokens.len());
        let (q_dim, kv_dim, hd) = (c.q_dim(), c.kv_dim(), c.head_dim);
        let pos0 = self.n_past;

        // Token embeddings: x[t] = token_embd[tokens[t]]  (one row dequantized per token).
        let emb = model.mat(&model.tok_embd);
        let deq = model.tok_embd.dequantize;
        let rb = emb.row_bytes();
        for (t, &tok) in tokens.iter().enumerate() {
            let row = &emb.data[tok as usize * rb..(tok as usize + 1) * rb];
            deq(row, &mut self.x[t * d..(t + 1) * d]);
        }

        // RoPE cos/sin for each position of the batch: rope[t] = [cos θ0, sin θ0, cos θ1, ...].
        self.rope_table(n, pos0);

        for (li, layer) in model.layers.iter().enumerate() {
            // ---- attention ----
            // xb = rmsnorm(x) * attn_norm                         [n, d]
            self.invalidate_acts();
            rmsnorm(
                &mut self.xb[..n * d],
                &self.x[..n * d],
                model.vector(&layer.attn_norm),
                d,
                c.rms_eps,
            );
            // q = xb Wqᵀ [n, q_dim]; k = xb Wkᵀ, v = xb Wvᵀ [n, kv_dim]; one quantization of xb serves all three
            // when their dot partners agree.
            self.matmul_fused(
                &model,
                [&layer.wq, &layer.wk, &layer.wv],
                Src::Xb,
                n,
                [Dst::Q, Dst::K, Dst::V],
            );
            if let (Some(bq), Some(bk), Some(bv)) = (&layer.bq, &layer.bk, &layer.bv) {
                add_bias(&mut self.q[..n * q_dim], model.vector(bq));
                add_bias(&mut self.k[..n * kv_dim], model.vector(bk));
                add_bias(&mut self.v[..n * kv_dim], model.vector(bv));
            }
            // Rotate q and k by position.
            let neox = c.arch.rope_neox();
            for t in 0..n {
                let cs = &self.rope[t * hd..(t + 1) * hd];
                for h in self.q[t * q_dim..(t + 1) * q_dim].chunks_exact_mut(hd) {
                    rope(h, cs, neox);
                }
                for h in self.k[t * kv_dim..(t + 1) * kv_dim].chunks_exact_mut(hd) {
                    rope(h, cs, neox);
                }
            }
            // Write k, v into the cache at their positions: cache[li][kv][head][pos] = [hd].
            for t in 0..n {
                for h in 0..c.n_head_kv {
                    let s = t * kv_dim + h * hd;
                    self.kv
                        .store(self.table, li, Kv::K, h, pos0 + t, &self.k[s..s + hd]);
                    self.kv
                        .store(self.table, li, Kv::V, h, pos0 + t, &self.v[s..s + hd]);
                }
            }
            // att[t, head] = softmax(q·Kᵀ / sqrt(hd)) V over positions 0..=pos0+t   [n, q_dim]
            self.invalidate_acts();
            self.attention(li, n, pos0);
            // xb = att Woᵀ [n, d]; x += xb
            self.matmul(&model, &layer.wo, Src::Att, n, Dst::Xb);
            add(&mut self.x[..n * d], &self.xb[..n * d]);

            // ---- feed-forward (SwiGLU) ----
            // xb = rmsnorm(x) * ffn_norm                          [n, d]
            self.invalidate_acts();
            rmsnorm(
                &mut self.xb[..n * d],
                &self.x[..n * d],
                model.vector(&layer.ffn_norm),
                d,
                c.rms_eps,
            );
            // hb = xb Wgateᵀ, hb2 = xb Wupᵀ                        [n, n_ff]
            self.matmul_fused(
                &model,
                [&layer.w_gate, &layer.w_up],
                Src::Xb,
                n,
                [Dst::Hb, Dst::Hb2],
            );
            // hb = silu(hb) * hb2
            self.invalidate_acts();
            (self.table.swiglu)(&mut self.hb[..n * c.n_ff], &self.hb2[..n * c.n_ff]);
            // xb = hb Wdownᵀ [n, d]; x += xb
            self.matmul(&model, &layer.w_down, Src::Hb, n, Dst::Xb);
            add(&mut self.x[..n * d], &self.xb[..n * d]);
        }
        self.n_past += n;

        // ---- output ----
        let (first, count) = match out {
            Out::None => return,
            Out::Last => (n - 1, 1),
            Out::All(_) => (0, n),
        };
        // xb = rmsnorm(x[rows]) * output_norm                     [count, d]
        rmsnorm(
            &mut self.xb[..count * d],
            &self.x[first * d..(first + count) * d],
            model.vector(&model.output_norm),
            d,
            c.rms_eps,
        );
        let w = model.mat(&model.output);
        let partner = model.output.partner;
        self.invalidate_acts();
        self.acts
            .quantize_with(self.table, partner, &self.xb[..count * d], count, d);
        // logits = xb Woutᵀ                                       [count, n_vocab]
        let nv = c.n_vocab;
        match out {
            Out::All(offset) => {
                let dst = &mut self.logits_all[offset * nv..(offset + count) * nv];
                matmul_q_with(self.table, &self.pool, &w, &self.acts, dst);
                self.logits.copy_from_slice(&dst[(count - 1) * nv..]);
            }
            _ => matmul_q_with(self.table, &self.pool, &w, &self.acts, &mut self.logits),
        }
    }

    /// dst[..n] = src[..n] · Wᵀ, quantizing src to W's dot partner first.
    fn matmul(&mut self, model: &Model, m: &Mat, src: Src, n: usize, dst: Dst) {
        self.matmul_fused(model, [m], src, n, [dst]);
    }

    /// dst_j[..n] = src[..n] · W_jᵀ for matrices that share their input (Q, K, V; gate, up):
    /// one quantization of src, and for a decode step one parallel call over all their rows
    /// ([`matmul_q_many_with`]) when they share a dot partner; else one call per matrix.
    fn matmul_fused<const N: usize>(
        &mut self,
        model: &Model,
        ms: [&Mat; N],
        src: Src,
        n: usize,
        dsts: [Dst; N],
    ) {
        let ws = ms.map(|m| model.mat(m));
        let p0 = ms[0].partner;
        if N > 1
            && ms
                .iter()
                .any(|m| m.partner != p0 || m.n_cols != ms[0].n_cols)
        {
            for (m, d) in ms.into_iter().zip(dsts) {
                self.matmul_fused(model, [m], src, n, [d]);
            }
            return;
        }
        let n_cols = ws[0].n_cols;
        let x: &[f32] = match src {
            Src::Xb => &self.xb[..n * n_cols],
            Src::Att => &self.att[..n * n_cols],
            Src::Hb => &self.hb[..n * n_cols],
        };
        // Re-quantize unless the buffer already holds this input in this format (Q/K/V and gate/up
        // share their input).
        if self.acts_src != Some((src, p0)) {
            self.acts.quantize_with(self.table, p0, x, n, n_cols);
            self.acts_src = Some((src, p0));
        }
        let Context {
            table,
            pool,
            acts,
            q,
            k,
            v,
            xb,
            hb,
            hb2,
            ..
        } = self;
        let mut slots = [Some(q), Some(k), Some(v), Some(xb), Some(hb), Some(hb2)];
        let mut jobs: [(MatRef, &mut [f32]); N] = std::array::from_fn(|i| {
            let buf = slots[dsts[i] as usize]
                .take()
                .expect("each output buffer at most once");
            (ws[i], &mut buf[..n * ws[i].n_rows])
        });
        matmul_q_many_with(table, pool, &mut jobs, acts);
        // Writing a buffer invalidates a quantization of it.
        for d in dsts {
            if matches!(
                (d, self.acts_src),
                (Dst::Xb, Some((Src::Xb, _))) | (Dst::Hb, Some((Src::Hb, _)))
            ) {
                self.acts_src = None;
            }
        }
    }

    /// Forget the cached quantization (its source buffer is about to change).
    #[inline]
    fn invalidate_acts(&mut self) {
        self.acts_src = None;
    }

    /// cos/sin of θ_i = pos · freq_scale · base^(-2i/hd) / freq_factor_i, computed as ggml's
    /// `ggml_rope_cache_init` does (θ multiplied by base^(-2/hd) step by step, in f32).
    fn rope_table(&mut self, n: usize, pos0: usize) {
        let c = self.model.config();
        let hd = c.head_dim;
        let theta_scale = c.rope_base.powf(-2.0 / hd as f32);
        let ff = self.model.rope_freqs.as_ref().map(|v| self.model.vector(v));
        for t in 0..n {
            let mut theta = (pos0 + t) as f32;
            let row = &mut self.rope[t * hd..(t + 1) * hd];
            for i in 0..hd / 2 {
                let f = ff.map_or(1.0, |f| f[i]);
                let th = c.rope_freq_scale * (theta / f);
                row[2 * i] = th.cos();
                row[2 * i + 1] = th.sin();
                theta *= theta_scale;
            }
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Src {
    Xb,
    Att,
    Hb,
}

/// Output buffers; the discriminant indexes `matmul_fused`'s table of them.
#[derive(Clone, Copy)]
enum Dst {
    Q = 0,
    K = 1,
    V = 2,
    Xb = 3,
    Hb = 4,
    Hb2 = 5,
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

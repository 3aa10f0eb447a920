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
use crate::kv_cache::{KvCache, KvType};

/// Default context length cap: the model's own length, but at most this many positions.
pub const DEFAULT_MAX_CTX: usize = 4096;
/// Default prefill batch (llama.cpp's n_ubatch).
pub const DEFAULT_BATCH: usize = 512;

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

/// Per-thread attention scratch.
struct AttnScratch {
    /// [n_threads, group, n_ctx] attention scores (group = query heads per KV head).
    scores: Vec<f32>,
    /// [n_threads, head_dim] a dequantized V row.
    vrow: Vec<f32>,
    /// [n_threads, qbuf_words] one head's query in the cache's dot partner format, or a group's
    /// queries as f32.
    qbuf: Vec<u64>,
    qbuf_words: usize,
}

/// A raw pointer that may be shared with the pool's threads. Each user documents why its writes
/// are disjoint.
#[derive(Clone, Copy)]
struct SyncPtr<T>(*mut T);
// SAFETY: only used to give each pool thread access to a disjoint region of one buffer (see uses).
unsafe impl<T> Sync for SyncPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Send for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// The pointer (a method, so closures capture the whole Sync wrapper, not the raw field).
    #[inline]
    fn get(&self) -> *mut T {
        self.0
    }
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
        if n_ctx > 1 << 20 {
            return Err(ModelError::BadParams(format!(
                "context length {n_ctx} is over the limit of {}",
                1 << 20
            )));
        }
        let n_batch = params.n_batch.clamp(1, n_ctx);
        let n_threads = if params.n_threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            params.n_threads
        };
        if n_threads > 512 {
            return Err(ModelError::BadParams(format!(
                "{n_threads} threads is over the limit of 512"
            )));
        }
        let kv = KvCache::new(params.kv_type, c.n_layer, n_ctx, c.n_head_kv, c.head_dim)
            .ok_or_else(|| {
                ModelError::BadParams(format!(
                "a {} KV cache needs the head dimension ({}) to be a multiple of its block size",
                params.kv_type.name(),
                c.head_dim
            ))
            })?;
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
        let deq = self
            .table
            .get(emb.ty)
            .and_then(|k| k.dequantize_row)
            .expect("checked at load");
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
                        .store(self.table, li, 0, h, pos0 + t, &self.k[s..s + hd]);
                    self.kv
                        .store(self.table, li, 1, h, pos0 + t, &self.v[s..s + hd]);
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
        let partner = self.table.get(w.ty).expect("checked at load").vec_dot_type;
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
        let partner = |w: &MatRef| self.table.get(w.ty).expect("checked at load").vec_dot_type;
        let p0 = partner(&ws[0]);
        if N > 1
            && ws
                .iter()
                .any(|w| partner(w) != p0 || w.n_cols != ws[0].n_cols)
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

    /// Causal attention for the n tokens of this batch over the cache, one (token, head) task at a
    /// time spread over the pool's threads.
    fn attention(&mut self, layer: usize, n: usize, pos0: usize) {
        let c = self.model.config();
        let (hd, q_dim, n_head) = (c.head_dim, c.q_dim(), c.n_head);
        let group = c.n_head / c.n_head_kv;
        let scale = 1.0 / (hd as f32).sqrt();
        let n_ctx = self.n_ctx;
        let kv = &self.kv;
        let table = self.table;
        let cache_ty = kv.ty().ggml();
        let ck = table.get(cache_ty).expect("cache type is in the table");
        let dot = ck.vec_dot.expect("cache type has a vec_dot");
        let partner = ck.vec_dot_type;
        let deq = ck.dequantize_row.expect("cache type has a dequantizer");
        // Transposed values (F16/F32 caches) are dotted with the f32 attention weights.
        let vdot = ck.vec_dot.expect("cache type has a vec_dot");
        let f16_cache = kv.ty() == KvType::F16;
        let q = &self.q;
        let att = SyncPtr(self.att.as_mut_ptr());
        let scores = SyncPtr(self.attn.scores.as_mut_ptr());
        let vrows = SyncPtr(self.attn.vrow.as_mut_ptr());
        let qbufs = SyncPtr(self.attn.qbuf.as_mut_ptr());
        let qw = self.attn.qbuf_words;
        let n_tasks = n * n_head;
        let rb = kv.row_bytes();
        let s_stride = group * n_ctx;

        // Grouped: one task per (token, KV head) for the `group` query heads that share it, each
        // key and value row read and widened once for all of them (the kernel table's
        // `multi_dot`). The choice depends only on the model and the cache, never on the thread
        // count, so results stay bit-identical for any number of threads (tests/generate.rs).
        // (A decode step has only n_head_kv such tasks: more threads than KV heads idle here.)
        let n_kv_head = c.n_head_kv;
        if let Some(md) = ck
            .multi_dot
            .filter(|_| f16_cache && kv.v_transposed() && group >= 2)
        {
            let n_tasks = n * n_kv_head;
            self.pool.run(&|ti: usize, nt: usize| {
                // SAFETY: thread `ti` only touches the ti-th slice of each per-thread scratch
                // buffer (scores: n_threads * group * n_ctx; qbuf: n_threads * qw words, qw * 8 >=
                // group * hd * 4 bytes), and `nt` equals the pool's thread count that sized them.
                let (s_all, qf) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(scores.get().add(ti * s_stride), s_stride),
                        std::slice::from_raw_parts_mut(
                            qbufs.get().add(ti * qw) as *mut f32,
                            group * hd,
                        ),
                    )
                };
                let mut task = ti;
                while task < n_tasks {
                    let (t, kvh) = (task / n_kv_head, task % n_kv_head);
                    let n_kv = pos0 + t + 1;
                    // The group's heads are kvh * group ..: contiguous in q and in att.
                    let h0 = kvh * group;
                    let qs = &q[t * q_dim + h0 * hd..t * q_dim + (h0 + group) * hd];
                    // llama.cpp rounds q to f16 before the dot with an F16 cache; so do we.
                    qf.copy_from_slice(qs);
                    round_f16_slice(qf);
                    // scores[g][j] = q_g . k_j * scale
                    let keys = kv.rows(layer, 0, kvh, n_kv);
                    md(hd, keys, rb, n_kv, qf, hd, group, s_all, n_ctx);
                    for g in 0..group {
                        let s = &mut s_all[g * n_ctx..g * n_ctx + n_kv];
                        for v in s.iter_mut() {
                            *v *= scale;
                        }
                        softmax(s);
                        // llama.cpp multiplies V (f16) by the weights converted to f16.
                        round_f16_slice(s);
                    }
                    // SAFETY: task (t, kvh) owns att[t, h0*hd..(h0+group)*hd]; tasks are disjoint
                    // and each is run by exactly one thread (task ≡ ti mod nt).
                    let o = unsafe {
                        std::slice::from_raw_parts_mut(
                            att.get().add(t * q_dim + h0 * hd),
                            group * hd,
                        )
                    };
                    // o[g][d] = sum_j p[g][j] V[j][d]: the transposed values' rows d against the
                    // group's weights.
                    let (vt, v_stride) = kv.v_columns(layer, kvh, n_kv);
                    md(n_kv, vt, v_stride, hd, s_all, n_ctx, group, o, hd);
                    task += nt;
                }
            });
            return;
        }

        self.pool.run(&|ti: usize, nt: usize| {
            // SAFETY: thread `ti` only touches the ti-th slice of each per-thread scratch buffer
            // (sizes: n_threads * group * n_ctx, n_threads * hd, n_threads * qw), and `nt` equals
            // the pool's thread count that sized them.
            let (s_all, vrow, qbuf) = unsafe {
                (
                    std::slice::from_raw_parts_mut(scores.get().add(ti * s_stride), n_ctx),
                    std::slice::from_raw_parts_mut(vrows.get().add(ti * hd), hd),
                    std::slice::from_raw_parts_mut(qbufs.get().add(ti * qw), qw),
                )
            };
            // SAFETY: u64 storage viewed as bytes: initialized, alignment 1, same length.
            let qbytes =
                unsafe { std::slice::from_raw_parts_mut(qbuf.as_mut_ptr() as *mut u8, qw * 8) };
            let mut task = ti;
            while task < n_tasks {
                let (t, h) = (task / n_head, task % n_head);
                let n_kv = pos0 + t + 1;
                let kvh = h / group;
                let qh = &q[t * q_dim + h * hd..t * q_dim + (h + 1) * hd];
                // The query in the cache's dot partner format. With an F16 cache llama.cpp rounds
                // q to f16 before the dot (F16's dot partner in ggml is F16); so do we.
                let qb: &[u8] = if partner == GgmlType::F32 {
                    let qf = ferrolm_kernels::cast_blocks_mut::<f32>(&mut qbytes[..hd * 4]);
                    for (o, &v) in qf.iter_mut().zip(qh) {
                        *o = if f16_cache { round_f16(v) } else { v };
                    }
                    &qbytes[..hd * 4]
                } else {
                    let len = partner
                        .row_bytes(hd as u64)
                        .expect("head_dim is whole blocks") as usize;
                    let ff = table
                        .get(partner)
                        .and_then(|k| k.from_float)
                        .expect("partner has from_float");
                    ff(qh, &mut qbytes[..len]);
                    &qbytes[..len]
                };
                // scores[j] = q·k_j * scale
                let keys = kv.rows(layer, 0, kvh, n_kv);
                let s = &mut s_all[..n_kv];
                for (j, sj) in s.iter_mut().enumerate() {
                    *sj = dot(hd, &keys[j * rb..(j + 1) * rb], qb) * scale;
                }
                softmax(s);
                if f16_cache {
                    // llama.cpp multiplies V (f16) by the attention weights converted to f16.
                    round_f16_slice(s);
                }
                // SAFETY: task (t, h) owns att[t, h*hd..(h+1)*hd]; tasks are disjoint and each is run
                // by exactly one thread (task ≡ ti mod nt).
                let o = unsafe {
                    std::slice::from_raw_parts_mut(att.get().add(t * q_dim + h * hd), hd)
                };
                if kv.v_transposed() {
                    // o[d] = Σ_j p_j V[j][d]: one contiguous dot per value dimension.
                    // SAFETY: as for `qbytes`: this thread's scores, viewed as bytes.
                    let pb =
                        unsafe { std::slice::from_raw_parts(s.as_ptr() as *const u8, n_kv * 4) };
                    for (d, od) in o.iter_mut().enumerate() {
                        *od = vdot(n_kv, kv.v_column(layer, kvh, d, n_kv), pb);
                    }
                } else {
                    o.fill(0.0);
                    let vals = kv.rows(layer, 1, kvh, n_kv);
                    for (j, &p) in s.iter().enumerate() {
                        deq(&vals[j * rb..(j + 1) * rb], vrow);
                        for (a, &b) in o.iter_mut().zip(vrow.iter()) {
                            *a += p * b;
                        }
                    }
                }
                task += nt;
            }
        });
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

/// In-place softmax, max-subtracted, sum in f64 (ggml_vec_soft_max_f32).
fn softmax(s: &mut [f32]) {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for v in s.iter_mut() {
        let d = *v - max;
        // exp(d) is 0 in f32 below about -103.97 (it rounds to 0 under half the least subnormal);
        // libm's expf takes a slow underflow path (errno) there. Same values, bit for bit.
        *v = if d < -105.0 { 0.0 } else { d.exp() };
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in s.iter_mut() {
        *v *= inv;
    }
}

/// `x` rounded to f16 precision (as llama.cpp rounds what meets an F16 cache in a dot product).
#[inline]
fn round_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// Every element of `x` rounded to f16 precision, as [`round_f16`], through `half`'s slice
/// conversions (F16C 8 at a time where the CPU has it; one feature check per slice instead of
/// one per element), 64 elements per step in a stack buffer.
fn round_f16_slice(x: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    let mut buf = [half::f16::ZERO; 64];
    for c in x.chunks_mut(64) {
        let b = &mut buf[..c.len()];
        b.convert_from_f32_slice(c);
        b.convert_to_f32_slice(c);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The slice rounding (F16C where present) equals the per-element one, bit for bit: ties to
    /// even, subnormal and overflowing halves, infinities, lengths around the 64-element step.
    #[test]
    fn round_f16_slice_matches_round_f16() {
        let mut vals = vec![
            0.0,
            -0.0,
            1.0 + 1.0 / 2048.0, // a tie: rounds to even (1.0)
            1.0 + 3.0 / 2048.0, // a tie: rounds to even (1.0 + 2/1024)
            65504.0,
            65520.0, // rounds to infinity
            1e-7,    // subnormal half
            -3e-8,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        let mut s = 12345u32;
        while vals.len() < 131 {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            vals.push(f32::from_bits(s & 0x47FF_FFFF | (s & 1) << 31) * 0.37);
        }
        for len in [0, 1, 63, 64, 65, 131] {
            let mut got = vals[..len].to_vec();
            round_f16_slice(&mut got);
            for (g, &v) in got.iter().zip(&vals) {
                assert_eq!(g.to_bits(), round_f16(v).to_bits(), "round_f16({v:e})");
            }
        }
    }
}

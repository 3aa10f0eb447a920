//! Causal attention over the KV cache, one (token, head) task at a time spread over the pool's
//! threads, and its scratch buffers.

use super::*;
use ferrolm_kernels::views::{Rows, RowsMut};

/// Per-thread attention scratch.
pub(super) struct AttnScratch {
    /// [n_threads, group, n_ctx] attention scores (group = query heads per KV head).
    pub(super) scores: Vec<f32>,
    /// [n_threads, head_dim] a dequantized V row.
    pub(super) vrow: Vec<f32>,
    /// [n_threads, qbuf_words] one head's query in the cache's dot partner format, or a group's
    /// queries as f32.
    pub(super) qbuf: Vec<u64>,
    pub(super) qbuf_words: usize,
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

impl Context {
    /// Causal attention for the n tokens of this batch over the cache, one (token, head) task at a
    /// time spread over the pool's threads.
    pub(super) fn attention(&mut self, layer: usize, n: usize, pos0: usize) {
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
                    let keys = kv.rows(layer, Kv::K, kvh, n_kv);
                    md(
                        Rows::new(keys, n_kv, rb, rb),
                        Rows::new(qf, group, hd, hd),
                        RowsMut::new(s_all, group, n_kv, n_ctx),
                    );
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
                    md(
                        kv.v_columns(layer, kvh, n_kv),
                        Rows::new(s_all, group, n_kv, n_ctx),
                        RowsMut::new(o, group, hd, hd),
                    );
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
                let keys = kv.rows(layer, Kv::K, kvh, n_kv);
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
                    let vals = kv.rows(layer, Kv::V, kvh, n_kv);
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

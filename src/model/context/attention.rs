//! Causal attention over the KV cache: one task per (token, head), or per (token, KV head) for
//! the query heads that share it, spread over the pool's threads, each thread with its own scratch.

use ferrolm_kernels::blocks::{as_bytes, as_bytes_mut};
use ferrolm_kernels::views::{Rows, RowsMut};

use super::{Engine, RunState, Seg};
use crate::kv_cache::{Kv, KvCache, KvType};
use crate::model::Config;
use ferrolm_kernels::GgmlType;

/// One thread's attention scratch.
pub(super) struct AttnScratch {
    /// [group, n_ctx] attention scores (group = query heads per KV head).
    scores: Vec<f32>,
    /// [head_dim] a dequantized V row.
    vrow: Vec<f32>,
    /// A group's queries as f32, or one head's query in the cache's dot partner format (as
    /// bytes: f32 storage keeps any block format aligned).
    q: Vec<f32>,
    /// [group, head_dim] flash attention's f16 accumulators.
    acc: Vec<half::f16>,
    /// [group] flash attention's running (maximum, sum).
    run: Vec<(f32, f32)>,
}

impl AttnScratch {
    pub(super) fn new(c: &Config, n_ctx: usize) -> AttnScratch {
        let group = c.n_head / c.n_head_kv;
        AttnScratch {
            scores: vec![0.0; group * n_ctx],
            vrow: vec![0.0; c.head_dim],
            // A group's f32 queries; a quantized query is never larger than its f32 form.
            q: vec![0.0; group * c.head_dim],
            acc: vec![half::f16::ZERO; group * c.head_dim],
            run: vec![(0.0, 0.0); group],
        }
    }
}

/// Which keys a layer's queries see and how their scores are scaled.
#[derive(Clone, Copy)]
pub(super) struct AttnSpec {
    /// The scores q·k are multiplied by this.
    pub scale: f32,
    /// A query at position p sees the last `window` positions up to p (0: all of 0..=p).
    pub window: usize,
    /// Flash-attention arithmetic (with an F16 cache): see [`flash_f16`].
    pub flash: bool,
}

impl AttnSpec {
    /// The positions a query at `pos` attends to.
    #[inline]
    fn span(self, pos: usize) -> std::ops::Range<usize> {
        let end = pos + 1;
        match self.window {
            0 => 0..end,
            w => end.saturating_sub(w)..end,
        }
    }
}

/// att[t, head] = softmax(q[t, head] · Kᵀ * scale) V over the positions `spec` lets each token
/// see, for the tokens of the segments `segs` (contiguous rows of this batch, each segment's
/// tokens at positions pos0.. of its sequence's cache `kvs[seq]`; `s.q`: [n, q_dim] in, `s.att`:
/// [n, q_dim] out), `layer`'s caches. All segments' tasks go to the pool in one call (several
/// sequences' decode steps: one meeting of the threads per layer, not one per sequence); each
/// token's arithmetic is the same whatever shares the call.
pub(super) fn attention(
    c: &Config,
    e: &Engine,
    kvs: &[KvCache],
    segs: &[Seg],
    s: &mut RunState,
    layer: usize,
    spec: AttnSpec,
) {
    let (Some(first), Some(last)) = (segs.first(), segs.last()) else {
        return;
    };
    let (row0, n) = (first.row0, last.row0 + last.n - first.row0);
    debug_assert!(segs.windows(2).all(|w| w[1].row0 == w[0].row0 + w[0].n));
    // The cache and the position of the token at row row0 + t.
    let locate = |t: usize| -> (&KvCache, usize) {
        let r = row0 + t;
        let g = segs
            .iter()
            .find(|g| r < g.row0 + g.n)
            .expect("row inside the segments");
        (&kvs[g.seq], g.pos0 + r - g.row0)
    };
    let kv = &kvs[first.seq];
    let (hd, q_dim, n_head) = (c.head_dim, c.q_dim(), c.n_head);
    let group = c.n_head / c.n_head_kv;
    let scale = spec.scale;
    let softmax = e.table.softmax;
    let n_ctx = kv.n_ctx();
    let ck = e
        .table
        .get(kv.ty().ggml())
        .expect("cache type is in the table");
    let dot = ck.vec_dot.expect("cache type has a vec_dot");
    let partner = ck.vec_dot_type;
    let deq = ck.dequantize_row.expect("cache type has a dequantizer");
    let f16_cache = kv.ty() == KvType::F16;
    let rb = kv.row_bytes();
    let RunState { q, att, attn, .. } = s;
    let rows = row0 * q_dim..(row0 + n) * q_dim;
    let (q, att) = (&q[rows.clone()], &mut att[rows]);

    // Grouped: one task per (token, KV head) for the `group` query heads that share it, each
    // key and value row read and widened once for all of them (the kernel table's
    // `multi_dot`). The choice depends only on the model and the cache, never on the thread
    // count, so results stay bit-identical for any number of threads (tests/generate.rs).
    // (A decode step has only n_head_kv such tasks: more threads than KV heads idle here.)
    let n_kv_head = c.n_head_kv;
    if let Some(md) = ck
        .multi_dot
        .filter(|_| f16_cache && (spec.flash || (kv.v_transposed() && group >= 2)))
    {
        // Task (t, kvh) writes att[t, kvh * group * hd..(kvh + 1) * group * hd]: chunk
        // t * n_kv_head + kvh of `att` in chunks of group * hd.
        e.pool
            .for_each_chunk(att, group * hd, attn, &|task, o, th| {
                let (t, kvh) = (task / n_kv_head, task % n_kv_head);
                let (kv, pos) = locate(t);
                let span = spec.span(pos);
                let n_kv = span.len();
                // The group's heads are kvh * group ..: contiguous in q and in att.
                let h0 = kvh * group;
                let qf = &mut th.q[..group * hd];
                // llama.cpp rounds q to f16 before the dot with an F16 cache; so do we.
                qf.copy_from_slice(&q[t * q_dim + h0 * hd..t * q_dim + (h0 + group) * hd]);
                round_f16_slice(qf);
                // scores[g][j] = q_g . k_j * scale
                let keys = kv.rows(layer, Kv::K, kvh, span.clone());
                md(
                    Rows::new(keys, n_kv, rb, rb),
                    Rows::new(qf, group, hd, hd),
                    RowsMut::new(&mut th.scores, group, n_kv, n_ctx),
                );
                if spec.flash {
                    // Values in rows (`with_value_rows`): llama.cpp's flash-attention
                    // arithmetic, each value row read once for the group's heads.
                    for g in 0..group {
                        for v in th.scores[g * n_ctx..g * n_ctx + n_kv].iter_mut() {
                            *v *= scale;
                        }
                    }
                    let vals = kv.rows(layer, Kv::V, kvh, span);
                    let scores = Rows::new(&th.scores, group, n_kv, n_ctx);
                    flash_f16(e, scores, vals, rb, &mut th.acc, &mut th.run, o);
                    return;
                }
                for g in 0..group {
                    softmax_f16(e, &mut th.scores[g * n_ctx..g * n_ctx + n_kv], scale);
                }
                // o[g][d] = sum_j p[g][j] V[j][d]: the transposed values' rows d against the
                // group's weights.
                md(
                    kv.v_columns(layer, kvh, span),
                    Rows::new(&th.scores, group, n_kv, n_ctx),
                    RowsMut::new(o, group, hd, hd),
                );
            });
        return;
    }

    // A quantized cache (Q8_0, Q4_0, ...): one task per (token, KV head) too, each key row
    // dotted with the group's queries (quantized once, to the cache type's dot partner) and each
    // value row dequantized once for the group. The same arithmetic per head as the one-head
    // tasks below, which serve a cache without shared heads.
    if kv.ty().is_quantized() && group >= 2 {
        let qlen = partner
            .row_bytes(hd as u64)
            .expect("head_dim is whole blocks") as usize;
        let ff = e
            .table
            .get(partner)
            .and_then(|k| k.from_float)
            .expect("partner has from_float");
        e.pool
            .for_each_chunk(att, group * hd, attn, &|task, o, th| {
                let (t, kvh) = (task / n_kv_head, task % n_kv_head);
                let (kv, pos) = locate(t);
                let span = spec.span(pos);
                let n_kv = span.len();
                let h0 = kvh * group;
                // The group's queries, one partner-format row each (f32 storage is at least as
                // large and keeps the blocks aligned).
                let qb = &mut as_bytes_mut(&mut th.q)[..group * qlen];
                for (g, qg) in qb.chunks_exact_mut(qlen).enumerate() {
                    let h = h0 + g;
                    ff(&q[t * q_dim + h * hd..t * q_dim + (h + 1) * hd], qg);
                }
                let qb = &*qb;
                // scores[g][j] = q_g · k_j, then the weights.
                let keys = kv.rows(layer, Kv::K, kvh, span.clone());
                for (j, kr) in keys.chunks_exact(rb).enumerate() {
                    for (g, qg) in qb.chunks_exact(qlen).enumerate() {
                        th.scores[g * n_ctx + j] = dot(hd, kr, qg);
                    }
                }
                for g in 0..group {
                    softmax(&mut th.scores[g * n_ctx..g * n_ctx + n_kv], scale);
                }
                // o[g] = sum_j p[g][j] V[j]
                o.fill(0.0);
                let vals = kv.rows(layer, Kv::V, kvh, span);
                for (j, vr) in vals.chunks_exact(rb).enumerate() {
                    deq(vr, &mut th.vrow);
                    for (g, og) in o.chunks_exact_mut(hd).enumerate() {
                        let p = th.scores[g * n_ctx + j];
                        for (a, &b) in og.iter_mut().zip(th.vrow.iter()) {
                            *a += p * b;
                        }
                    }
                }
            });
        return;
    }

    // One task per (token, head): task t * n_head + h writes att[t, h * hd..(h + 1) * hd].
    e.pool.for_each_chunk(att, hd, attn, &|task, o, th| {
        let (t, h) = (task / n_head, task % n_head);
        let (kv, pos) = locate(t);
        let span = spec.span(pos);
        let n_kv = span.len();
        let kvh = h / group;
        let qh = &q[t * q_dim + h * hd..t * q_dim + (h + 1) * hd];
        // The query in the cache's dot partner format. With an F16 cache llama.cpp rounds q to
        // f16 before the dot (F16's dot partner in ggml is F16); so do we.
        let qb: &[u8] = if partner == GgmlType::F32 {
            let qf = &mut th.q[..hd];
            for (o, &v) in qf.iter_mut().zip(qh) {
                *o = if f16_cache { round_f16(v) } else { v };
            }
            as_bytes(qf)
        } else {
            let len = partner
                .row_bytes(hd as u64)
                .expect("head_dim is whole blocks") as usize;
            let ff = e
                .table
                .get(partner)
                .and_then(|k| k.from_float)
                .expect("partner has from_float");
            let qbytes = &mut as_bytes_mut(&mut th.q)[..len];
            ff(qh, qbytes);
            qbytes
        };
        // scores[j] = q·k_j (times `scale` below)
        let keys = kv.rows(layer, Kv::K, kvh, span.clone());
        let sc = &mut th.scores[..n_kv];
        for (j, sj) in sc.iter_mut().enumerate() {
            *sj = dot(hd, &keys[j * rb..(j + 1) * rb], qb);
        }
        if spec.flash && f16_cache {
            for v in sc.iter_mut() {
                *v *= scale;
            }
            // Values in rows (`with_value_rows`): llama.cpp's flash-attention arithmetic.
            let vals = kv.rows(layer, Kv::V, kvh, span);
            let scores = Rows::new(&*sc, 1, n_kv, n_kv);
            let (acc, run) = (&mut th.acc[..hd], &mut th.run[..1]);
            flash_f16(e, scores, vals, rb, acc, run, o);
            return;
        }
        if f16_cache {
            softmax_f16(e, sc, scale);
        } else {
            softmax(sc, scale);
        }
        if kv.v_transposed() {
            // o[d] = Σ_j p_j V[j][d]: one contiguous dot per value dimension (transposed values
            // of F16/F32 caches, dotted with the f32 weights).
            let (pb, vt) = (as_bytes(sc), kv.v_columns(layer, kvh, span));
            for (d, od) in o.iter_mut().enumerate() {
                *od = dot(n_kv, vt.row(d), pb);
            }
        } else {
            o.fill(0.0);
            let vals = kv.rows(layer, Kv::V, kvh, span);
            for (j, &p) in sc.iter().enumerate() {
                deq(&vals[j * rb..(j + 1) * rb], &mut th.vrow);
                for (a, &b) in o.iter_mut().zip(th.vrow.iter()) {
                    *a += p * b;
                }
            }
        }
    });
}

/// o[g] = softmax(scores[g]) V for the g query heads that share the value rows `vals` (F16, `rb`
/// bytes each, one per scored position), as ggml's CPU flash attention computes it for an F16
/// cache (llama.cpp's `-fa on`, its default where the backend has it): one pass over the
/// positions with a running maximum M and sum S per head, the output accumulated in f16: per
/// position j, when its score s_j raises M the accumulator is scaled by exp(M_old - M) and the
/// row weighted by 1, else the row is weighted by exp(s_j - M) (the kernel table's
/// `flash_step_f16`); S = S * scale + weight; finally o = acc / S. Each value row is read once
/// for all heads. `acc` ([g, head_dim]) and `run` ([g]) are scratch; `o` is [g, head_dim].
fn flash_f16(
    e: &Engine,
    scores: Rows<f32>,
    vals: &[u8],
    rb: usize,
    acc: &mut [half::f16],
    run: &mut [(f32, f32)],
    o: &mut [f32],
) {
    let (group, n_kv) = (scores.n(), scores.row_len());
    let hd = o.len() / group;
    let step = e.table.flash_step_f16;
    acc.fill(half::f16::ZERO);
    run.fill((f32::NEG_INFINITY, 0.0));
    for j in 0..n_kv {
        let row: &[half::f16] = ferrolm_kernels::cast_blocks(&vals[j * rb..(j + 1) * rb]);
        for g in 0..group {
            let s = scores.row(g)[j];
            let (m, sum) = &mut run[g];
            let (mut ms, mut vs) = (1.0f32, 1.0f32);
            if s > *m {
                ms = (*m - s).exp();
                *m = s;
            } else {
                vs = (s - *m).exp();
            }
            step(&mut acc[g * hd..(g + 1) * hd], row, ms, vs);
            *sum = *sum * ms + vs;
        }
    }
    for g in 0..group {
        let sum = run[g].1;
        let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
        for (a, &x) in o[g * hd..(g + 1) * hd]
            .iter_mut()
            .zip(&acc[g * hd..(g + 1) * hd])
        {
            *a = x.to_f32() * inv;
        }
    }
}

/// `s = softmax(s * scale)`, each weight then rounded to f16 precision: llama.cpp multiplies the
/// values of an F16 cache by the weights converted to f16. One pass where the kernel table has it
/// (`softmax_round_f16`, the same bits), else the softmax then [`round_f16_slice`].
fn softmax_f16(e: &Engine, s: &mut [f32], scale: f32) {
    if let Some(sr) = e.table.softmax_round_f16 {
        sr(s, scale);
    } else {
        (e.table.softmax)(s, scale);
        round_f16_slice(s);
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

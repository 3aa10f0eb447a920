//! Q5_0 x Q8_0 on x86: the one-row dot (AVX2), the decode mat-vecs (AVX-512 VNNI quads, AVX2
//! pairs), the block's unpacking for the prefill tiles ([`Nibble32`]), and this format's kernels.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::block32::{dot_nibble, nibble_offers, vec_dot_entry, Nibble32};
use super::gemv::quads::{quad_blocks, quad_levels, quad_scales, quad_step, quads_q4_0, QuadQ4_0};
use super::gemv::{gemv_multi_with, gemv_with, multi_runs, store_row, MAX_BLOCKS};
use super::prefetch::{gemv_streams_prefetch, prefetch_lines};
use super::{debug_assert_avx2, debug_assert_vnni};
use crate::blocks::{cast_blocks, BlockQ5_0, BlockQ8_0};
use crate::dispatch::{Offer, VecDotFn};
use crate::views::{Rows, RowsMut};

/// Q5_0's kernels.
pub(super) const OFFERS: &[Offer] =
    &nibble_offers::<BlockQ5_0>(gemv_q5_0_q8_0, gemv_multi_q5_0_q8_0);

impl Nibble32 for BlockQ5_0 {
    const VEC_DOT: VecDotFn = vec_dot_q5_0_q8_0;
}

vec_dot_entry!(/// Q5_0 weights . Q8_0 activations.
    vec_dot_q5_0_q8_0, dot_nibble::<BlockQ5_0>, BlockQ5_0, BlockQ8_0, debug_assert_avx2);

/// One Q5_0 row against `NT` tokens' quads (seeded with -16 x the activation sums; a last partial
/// quad padded: [`quad_blocks`]). As `row_dot_q4_0`, plus the fifth bits: the
/// four blocks' `qh` words give two 64-bit masks (bits 0..16 of each for the low nibbles' bytes,
/// 16..32 for the high), and one masked byte add of 16 per register puts them in (levels 0..31).
/// The levels and scales once for all tokens; each token's arithmetic the same whatever `NT` is.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn rows_dot_q5_0<const NT: usize>(
    w: &[BlockQ5_0],
    quads: [&[QuadQ4_0]; NT],
    da: [&[[f32; 4]]; NT],
    a: [&[BlockQ8_0]; NT],
) -> [f32; NT] {
    let nq = w.len().div_ceil(4);
    for t in 0..NT {
        assert!(w.len() == a[t].len() && quads[t].len() == nq && da[t].len() == nq);
    }
    let sixteen = _mm512_set1_epi8(16);
    let mut acc = [_mm512_setzero_ps(); NT];
    let pf = gemv_streams_prefetch();
    let mut step = |q: usize, wq: [&BlockQ5_0; 4]| {
        let (lo, hi) = quad_levels(std::array::from_fn(|j| &wq[j].qs));
        let h: [u64; 4] = std::array::from_fn(|j| u32::from_le_bytes(wq[j].qh) as u64);
        let mlo = (h[0] & 0xFFFF) | (h[1] & 0xFFFF) << 16 | (h[2] & 0xFFFF) << 32 | h[3] << 48;
        let mhi = h[0] >> 16 | (h[1] >> 16) << 16 | (h[2] >> 16) << 32 | (h[3] >> 16) << 48;
        let lo = _mm512_mask_add_epi8(lo, mlo, lo, sixteen);
        let hi = _mm512_mask_add_epi8(hi, mhi, hi, sixteen);
        let wd = quad_scales(std::array::from_fn(|j| wq[j].d));
        for t in 0..NT {
            acc[t] = quad_step(lo, hi, &quads[t][q], wd, &da[t][q], acc[t]);
        }
    };
    let full = w.len() / 4;
    for q in 0..full {
        let wq = &w[4 * q..4 * q + 4];
        if pf {
            // The quad's 88 bytes: two lines.
            prefetch_lines::<2, _>(wq.as_ptr());
        }
        step(q, [&wq[0], &wq[1], &wq[2], &wq[3]]);
    }
    if full < nq {
        step(full, quad_blocks(w, full));
    }
    let mut out = [0.0f32; NT];
    for t in 0..NT {
        out[t] = _mm512_reduce_add_ps(acc[t]);
    }
    out
}

/// Q5_0 rows against `NT` tokens (the `GemvFn` body for one, the `GemvMultiFn` body for more),
/// four blocks per 512-bit step.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q5_0_multi<const NT: usize>(w: Rows<u8>, a: [&[BlockQ8_0]; NT], out: &mut RowsMut<f32>) {
    let mut qbuf = [[MaybeUninit::<QuadQ4_0>::uninit(); MAX_BLOCKS / 4]; NT];
    let mut dbuf = [[MaybeUninit::<[f32; 4]>::uninit(); MAX_BLOCKS / 4]; NT];
    let (mut quads, mut da): ([&[QuadQ4_0]; NT], [&[[f32; 4]]; NT]) = ([&[]; NT], [&[]; NT]);
    for (t, (qb, db)) in qbuf.iter_mut().zip(dbuf.iter_mut()).enumerate() {
        (quads[t], da[t]) = quads_q4_0(a[t], 16, qb, db);
    }
    for r in 0..w.n() {
        store_row(out, r, rows_dot_q5_0(cast_blocks(w.row(r)), quads, da, a));
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q5_0(w: Rows<u8>, a: &[BlockQ8_0], out: &mut [f32]) {
    run_q5_0_multi::<1>(w, [a], &mut RowsMut::one(out));
}

/// Q5_0 weights x Q8_0 activations (`GemvFn`), four blocks per 512-bit step.
fn gemv_q5_0_q8_0(n: usize, w: Rows<u8>, a: &[u8], out: &mut [f32]) {
    gemv_with::<BlockQ5_0, BlockQ8_0>(n, w, a, out, vec_dot_q5_0_q8_0, run_q5_0, debug_assert_vnni);
}

/// Q5_0 weights x up to four tokens' Q8_0 activations (`GemvMultiFn`): `gemv_q5_0_q8_0`'s bits
/// per token, the weights unpacked once.
fn gemv_multi_q5_0_q8_0(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
    let runs = multi_runs!(run_q5_0_multi, BlockQ8_0);
    gemv_multi_with::<BlockQ5_0, BlockQ8_0>(
        n,
        w,
        a,
        out,
        vec_dot_q5_0_q8_0,
        runs,
        debug_assert_vnni,
    );
}

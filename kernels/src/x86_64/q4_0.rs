//! Q4_0 x Q8_0 on x86: the one-row dot (AVX2; a VNNI variant, tested but not installed), the
//! decode mat-vecs (AVX-512 VNNI quads, AVX2 pairs), the block's unpacking for the prefill tiles
//! ([`Nibble32`]), and this format's kernel list.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::block32::{accumulate, dot_nibble, nibble_offers, nibbles, vec_dot_entry, Nibble32};
use super::gemv::quads::{quad_blocks, quad_levels, quad_scales, quad_step, quads_q4_0, QuadQ4_0};
use super::gemv::{gemv_multi_with, gemv_with, multi_runs, store_row, MAX_BLOCKS};
use super::prefetch::{gemv_streams_prefetch, prefetch_lines};
use super::{debug_assert_avx2, debug_assert_vnni, f16_table, load32i, lut};
use crate::blocks::{cast_blocks, BlockQ4_0, BlockQ8_0};
use crate::dispatch::{Offer, VecDotFn};
use crate::views::{Rows, RowsMut};

/// Q4_0's kernels. The VNNI one-row dot (`vec_dot_q4_0_q8_0_vnni`) is not among them: it is no
/// faster than the AVX2 one (docs/perf.md).
pub(super) const OFFERS: &[Offer] =
    &nibble_offers::<BlockQ4_0>(gemv_q4_0_q8_0, gemv_multi_q4_0_q8_0);

impl Nibble32 for BlockQ4_0 {
    const VEC_DOT: VecDotFn = vec_dot_q4_0_q8_0;
}

/// With VNNI: `vpdpbusd` (unsigned x signed bytes, summed in i32 without saturation) replaces
/// `maddubs` + `madd`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dot_q4_0_vnni(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let off = _mm256_set1_epi8(8);
    let t = f16_table();
    accumulate::<_, _, false>(w, a, |x, y| {
        let av = load32i(&y.qs);
        let z = _mm256_setzero_si256();
        let s = _mm256_sub_epi32(
            _mm256_dpbusd_epi32(z, nibbles(&x.qs), av),
            _mm256_dpbusd_epi32(z, off, av),
        );
        (lut(t, x.d) * lut(t, y.d), s, 0.0)
    })
}

vec_dot_entry!(/// Q4_0 weights . Q8_0 activations.
    vec_dot_q4_0_q8_0, dot_nibble::<BlockQ4_0>, BlockQ4_0, BlockQ8_0, debug_assert_avx2);
vec_dot_entry!(/// Q4_0 weights . Q8_0 activations (AVX-512 VNNI on 256-bit registers). Not installed
    /// (see `OFFERS`); kept, and tested, for CPUs where that may change.
    #[allow(dead_code)]
    vec_dot_q4_0_q8_0_vnni, dot_q4_0_vnni, BlockQ4_0, BlockQ8_0, debug_assert_vnni);

/// One Q4_0 row against `NT` tokens' quads (a last partial quad padded: [`quad_blocks`]). Per
/// quad of weight blocks: their 16 quant bytes go to the four 128-bit lanes; the low nibbles (one
/// AND) and the high nibbles (a 16-bit shift right by 4 and the same AND) are the levels of `lo`
/// and `hi`, and two chained `vpdpbusd` from the seed sum the four blocks exactly, 4 lanes each.
/// The four scales `d_w * d_a` are made in an xmm and spread to those lanes by one `vpermps`: one
/// conversion and one FMA per four blocks, where two blocks per step (the high nibbles in the
/// upper lanes of the same register) took one per two. (A GFNI affine transform for the high
/// nibbles gains nothing from memory: not worth a second feature test.) The levels and weight
/// scales are made once for all tokens; each token's arithmetic is the same whatever `NT` is.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn rows_dot_q4_0<const NT: usize>(
    w: &[BlockQ4_0],
    quads: [&[QuadQ4_0]; NT],
    da: [&[[f32; 4]]; NT],
) -> [f32; NT] {
    let nq = w.len().div_ceil(4);
    for t in 0..NT {
        assert!(quads[t].len() == nq && da[t].len() == nq);
    }
    let mut acc = [[_mm512_setzero_ps(); 2]; NT];
    let pf = gemv_streams_prefetch();
    // Quad q into accumulator `slot` (a constant at each call: the accumulators stay in
    // registers).
    let mut step = |q: usize, wq: [&BlockQ4_0; 4], slot: usize| {
        let (lo, hi) = quad_levels(std::array::from_fn(|j| &wq[j].qs));
        let wd = quad_scales(std::array::from_fn(|j| wq[j].d));
        for t in 0..NT {
            acc[t][slot] = quad_step(lo, hi, &quads[t][q], wd, &da[t][q], acc[t][slot]);
        }
    };
    let refs = |q: usize| -> [&BlockQ4_0; 4] {
        let b: &[BlockQ4_0; 4] = w[4 * q..4 * q + 4].try_into().expect("4 blocks");
        [&b[0], &b[1], &b[2], &b[3]]
    };
    let full = w.len() / 4;
    let mut q = 0;
    while q + 1 < full {
        if pf {
            // The two quads' 144 bytes: three lines.
            prefetch_lines::<3, _>(w[4 * q..].as_ptr());
        }
        step(q, refs(q), 0);
        step(q + 1, refs(q + 1), 1);
        q += 2;
    }
    if q < full {
        step(q, refs(q), 0);
        if q + 1 < nq {
            step(q + 1, quad_blocks(w, q + 1), 1);
        }
    } else if q < nq {
        step(q, quad_blocks(w, q), 0);
    }
    acc.map(|[a0, a1]| _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)))
}

/// Q4_0 rows against `NT` tokens (the `GemvFn` body for one, the `GemvMultiFn` body for more),
/// four blocks per 512-bit step.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q4_0_multi<const NT: usize>(w: Rows<u8>, a: [&[BlockQ8_0]; NT], out: &mut RowsMut<f32>) {
    let mut qbuf = [[MaybeUninit::<QuadQ4_0>::uninit(); MAX_BLOCKS / 4]; NT];
    let mut dbuf = [[MaybeUninit::<[f32; 4]>::uninit(); MAX_BLOCKS / 4]; NT];
    let (mut quads, mut da): ([&[QuadQ4_0]; NT], [&[[f32; 4]]; NT]) = ([&[]; NT], [&[]; NT]);
    for (t, (qb, db)) in qbuf.iter_mut().zip(dbuf.iter_mut()).enumerate() {
        (quads[t], da[t]) = quads_q4_0(a[t], 8, qb, db);
    }
    for r in 0..w.n() {
        store_row(out, r, rows_dot_q4_0(cast_blocks(w.row(r)), quads, da));
    }
}

/// Q4_0 rows (`GemvFn` body), four blocks per 512-bit step.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q4_0(w: Rows<u8>, a: &[BlockQ8_0], out: &mut [f32]) {
    run_q4_0_multi::<1>(w, [a], &mut RowsMut::one(out));
}

/// Q4_0 weights x Q8_0 activations (`GemvFn`), four blocks per 512-bit step.
fn gemv_q4_0_q8_0(n: usize, w: Rows<u8>, a: &[u8], out: &mut [f32]) {
    gemv_with::<BlockQ4_0, BlockQ8_0>(n, w, a, out, vec_dot_q4_0_q8_0, run_q4_0, debug_assert_vnni);
}

/// Q4_0 weights x up to four tokens' Q8_0 activations (`GemvMultiFn`): `gemv_q4_0_q8_0`'s bits
/// per token, the weights unpacked once.
fn gemv_multi_q4_0_q8_0(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
    let runs = multi_runs!(run_q4_0_multi, BlockQ8_0);
    gemv_multi_with::<BlockQ4_0, BlockQ8_0>(
        n,
        w,
        a,
        out,
        vec_dot_q4_0_q8_0,
        runs,
        debug_assert_vnni,
    );
}

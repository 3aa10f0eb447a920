//! Q4_0 x Q8_0 on x86: the one-row dot (AVX2; a VNNI variant, tested but not installed), the
//! decode mat-vecs (AVX-512 VNNI quads, AVX2 pairs), the block's unpacking for the prefill tiles
//! ([`Nibble32`]), and this format's kernel list.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::block32::{accumulate, dot_nibble, nibble_offers, nibbles, vec_dot_entry, Nibble32};
use super::gemv::quads::{quad_levels, quad_step, quads_q4_0, QuadQ4_0};
use super::gemv::{gemv_with, seeds, MAX_BLOCKS};
use super::prefetch::{gemv_streams_prefetch, prefetch_lines};
use super::{debug_assert_avx2, debug_assert_vnni, f16_table, load32i, lut};
use crate::blocks::{cast_blocks, BlockQ4_0, BlockQ8_0};
use crate::dispatch::{Offer, VecDotFn};
use crate::views::Rows;

/// Q4_0's kernels. The VNNI one-row dot (`vec_dot_q4_0_q8_0_vnni`) is not among them: it is no
/// faster than the AVX2 one (docs/perf.md).
pub(super) const OFFERS: &[Offer] = &nibble_offers::<BlockQ4_0>(gemv_q4_0_q8_0);

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

/// One Q4_0 row against the quads, plus up to 3 last blocks (`tail`: each with its ymm seed and
/// `d_a`). Per quad of weight blocks: their 16 quant bytes go to the four 128-bit lanes; the low
/// nibbles (one AND) and the high nibbles (a 16-bit shift right by 4 and the same AND) are the
/// levels of `lo` and `hi`, and two chained `vpdpbusd` from the seed sum the four blocks exactly, 4
/// lanes each. The four scales `d_w * d_a` are made in an xmm and spread to those lanes by one
/// `vpermps`: one conversion and one FMA per four blocks, where two blocks per step (the high
/// nibbles in the upper lanes of the same register) took one per two. (A GFNI affine transform
/// for the high nibbles gains nothing from memory: not worth a second feature test.)
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn row_dot_q4_0(
    w: &[BlockQ4_0],
    quads: &[QuadQ4_0],
    da: &[[f32; 4]],
    tail: &[(BlockQ8_0, [i32; 8], f32)],
) -> f32 {
    let nq = quads.len();
    assert!(da.len() == nq && w.len() == 4 * nq + tail.len());
    let quad = |q: usize, acc: __m512| -> __m512 {
        let wq = &w[4 * q..4 * q + 4];
        let (lo, hi) = quad_levels(std::array::from_fn(|j| &wq[j].qs));
        quad_step(
            lo,
            hi,
            &quads[q],
            std::array::from_fn(|j| wq[j].d),
            &da[q],
            acc,
        )
    };
    let mut acc = [_mm512_setzero_ps(); 2];
    let mut q = 0;
    let pf = gemv_streams_prefetch();
    while q + 1 < nq {
        if pf {
            // The two quads' 144 bytes: three lines.
            prefetch_lines::<3, _>(w[4 * q..].as_ptr());
        }
        acc[0] = quad(q, acc[0]);
        acc[1] = quad(q + 1, acc[1]);
        q += 2;
    }
    if q < nq {
        acc[0] = quad(q, acc[0]);
    }
    let mut sum = _mm512_add_ps(acc[0], acc[1]);
    for (x, (a, seed, da)) in w[4 * nq..].iter().zip(tail) {
        // SAFETY: `seed` is 32 readable bytes; unaligned load.
        let s0 = unsafe { _mm256_loadu_si256(seed.as_ptr() as *const __m256i) };
        let s = _mm256_dpbusd_epi32(s0, nibbles(&x.qs), load32i(&a.qs));
        let d = lut(f16_table(), x.d) * da;
        let v = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d));
        sum = _mm512_add_ps(sum, _mm512_zextps256_ps512(v));
    }
    _mm512_reduce_add_ps(sum)
}

/// Q4_0 rows (`GemvFn` body), four blocks per 512-bit step.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q4_0(w: Rows<u8>, a: &[BlockQ8_0], out: &mut [f32]) {
    let nb = a.len();
    let mut qbuf = [MaybeUninit::<QuadQ4_0>::uninit(); MAX_BLOCKS / 4];
    let mut dbuf = [MaybeUninit::<[f32; 4]>::uninit(); MAX_BLOCKS / 4];
    let (quads, da) = quads_q4_0(a, 8, &mut qbuf, &mut dbuf);
    let nt = nb % 4;
    let mut tail = [(a[0], [0i32; 8], 0f32); 3];
    for (j, y) in a[nb - nt..].iter().enumerate() {
        let (mut s, mut d) = ([[0i32; 8]; 1], [0f32; 1]);
        seeds(std::slice::from_ref(y), 8, &mut s, &mut d);
        tail[j] = (*y, s[0], d[0]);
    }
    for (r, o) in out.iter_mut().enumerate() {
        let row = cast_blocks::<BlockQ4_0>(w.row(r));
        *o = row_dot_q4_0(row, quads, da, &tail[..nt]);
    }
}

/// Q4_0 weights x Q8_0 activations (`GemvFn`), four blocks per 512-bit step.
fn gemv_q4_0_q8_0(n: usize, w: Rows<u8>, a: &[u8], out: &mut [f32]) {
    gemv_with::<BlockQ4_0, BlockQ8_0>(n, w, a, out, vec_dot_q4_0_q8_0, run_q4_0, debug_assert_vnni);
}

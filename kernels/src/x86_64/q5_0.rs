//! Q5_0 x Q8_0 on x86: the one-row dot (AVX2), the decode mat-vecs (AVX-512 VNNI quads, AVX2
//! pairs), the block's unpacking for the prefill tiles ([`Nibble32`]), and this format's kernels.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::block32::{dot_nibble, nibble_offers, vec_dot_entry, Nibble32};
use super::gemv::quads::{quad_levels, quad_step, quads_q4_0, QuadQ4_0};
use super::gemv::{gemv_with, MAX_BLOCKS};
use super::prefetch::{gemv_streams_prefetch, prefetch_lines};
use super::{debug_assert_avx2, debug_assert_vnni};
use crate::blocks::{cast_blocks, BlockQ5_0, BlockQ8_0};
use crate::dispatch::{Offer, VecDotFn};
use crate::views::Rows;

/// Q5_0's kernels.
pub(super) const OFFERS: &[Offer] = &nibble_offers::<BlockQ5_0>(gemv_q5_0_q8_0);

impl Nibble32 for BlockQ5_0 {
    const VEC_DOT: VecDotFn = vec_dot_q5_0_q8_0;
}

vec_dot_entry!(/// Q5_0 weights . Q8_0 activations.
    vec_dot_q5_0_q8_0, dot_nibble::<BlockQ5_0>, BlockQ5_0, BlockQ8_0, debug_assert_avx2);

/// One Q5_0 row against the quads (seeded with -16 x the activation sums), the last `w.len() % 4`
/// blocks by the one-row AVX2 kernel. As `row_dot_q4_0`, plus the fifth bits: the four blocks'
/// `qh` words give two 64-bit masks (bits 0..16 of each for the low nibbles' bytes, 16..32 for the
/// high), and one masked byte add of 16 per register puts them in (levels 0..31).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn row_dot_q5_0(w: &[BlockQ5_0], quads: &[QuadQ4_0], da: &[[f32; 4]], a: &[BlockQ8_0]) -> f32 {
    let nq = quads.len();
    assert!(w.len() == a.len() && w.len() / 4 == nq && da.len() == nq);
    let sixteen = _mm512_set1_epi8(16);
    let mut acc = _mm512_setzero_ps();
    let pf = gemv_streams_prefetch();
    for (q, qd) in quads.iter().enumerate() {
        let wq = &w[4 * q..4 * q + 4];
        if pf {
            // The quad's 88 bytes: two lines.
            prefetch_lines::<2, _>(wq.as_ptr());
        }
        let (lo, hi) = quad_levels(std::array::from_fn(|j| &wq[j].qs));
        let h: [u64; 4] = std::array::from_fn(|j| u32::from_le_bytes(wq[j].qh) as u64);
        let mlo = (h[0] & 0xFFFF) | (h[1] & 0xFFFF) << 16 | (h[2] & 0xFFFF) << 32 | h[3] << 48;
        let mhi = h[0] >> 16 | (h[1] >> 16) << 16 | (h[2] >> 16) << 32 | (h[3] >> 16) << 48;
        let lo = _mm512_mask_add_epi8(lo, mlo, lo, sixteen);
        let hi = _mm512_mask_add_epi8(hi, mhi, hi, sixteen);
        acc = quad_step(lo, hi, qd, std::array::from_fn(|j| wq[j].d), &da[q], acc);
    }
    let tail = if w.len() > 4 * nq {
        dot_nibble::<BlockQ5_0>(&w[4 * nq..], &a[4 * nq..])
    } else {
        0.0
    };
    _mm512_reduce_add_ps(acc) + tail
}

/// Q5_0 rows (`GemvFn` body), four blocks per 512-bit step.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q5_0(w: Rows<u8>, a: &[BlockQ8_0], out: &mut [f32]) {
    let mut qbuf = [MaybeUninit::<QuadQ4_0>::uninit(); MAX_BLOCKS / 4];
    let mut dbuf = [MaybeUninit::<[f32; 4]>::uninit(); MAX_BLOCKS / 4];
    let (quads, da) = quads_q4_0(a, 16, &mut qbuf, &mut dbuf);
    for (r, o) in out.iter_mut().enumerate() {
        *o = row_dot_q5_0(cast_blocks(w.row(r)), quads, da, a);
    }
}

/// Q5_0 weights x Q8_0 activations (`GemvFn`), four blocks per 512-bit step.
fn gemv_q5_0_q8_0(n: usize, w: Rows<u8>, a: &[u8], out: &mut [f32]) {
    gemv_with::<BlockQ5_0, BlockQ8_0>(n, w, a, out, vec_dot_q5_0_q8_0, run_q5_0, debug_assert_vnni);
}

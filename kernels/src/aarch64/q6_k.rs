//! Q6_K · Q8_K on NEON: 6-bit values from `ql` (4 bits) and `qh` (2 bits), shifted to -32..32 in
//! the vector (so the result does not depend on the activation's `bsums`), sixteen 16-element
//! integer dots per super-block each weighted by its signed 8-bit scale.

use core::arch::aarch64::*;

use super::simd::{dot16, f16_to_f32};
use crate::blocks::{BlockQ6_K, BlockQ8_K};
use crate::dispatch::{Backend, Offer};

/// `sum_g scales[g] * dot_g(q6 - 32, q8)` for one super-block (|sum| <= 16 * 128 * 16 * 32 * 128).
///
/// # Safety
/// With `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn super_block_isum<const SDOT: bool>(x: &BlockQ6_K, y: &BlockQ8_K) -> i32 {
    let m4 = vdupq_n_u8(0x0F);
    let m3 = vdupq_n_u8(0x03);
    let m32 = vdupq_n_s8(32);
    let mut acc = vdupq_n_s32(0);
    // Two halves of 128 elements: ql[64h..64h+64], qh[32h..32h+32], scales[8h..8h+8].
    for h in 0..2 {
        // SAFETY: `x.ql` is 128 bytes and `x.qh` 64, h < 2: the loads read ql[64h..64h+64] and
        // qh[32h..32h+32].
        let (l0, l1, l2, l3, h0, h1) = unsafe {
            let l = x.ql.as_ptr().add(64 * h);
            let q = x.qh.as_ptr().add(32 * h);
            (
                vld1q_u8(l),
                vld1q_u8(l.add(16)),
                vld1q_u8(l.add(32)),
                vld1q_u8(l.add(48)),
                vld1q_u8(q),
                vld1q_u8(q.add(16)),
            )
        };
        // Element l + 32k of the half (l in 0..32, k in 0..4) takes the low (k = 0, 1) or high
        // (k = 2, 3) nibble of ql[l + 32 (k % 2)] and bits 2k..2k+2 of qh[l].
        let six = |lo: uint8x16_t, hbits: uint8x16_t| -> int8x16_t {
            vsubq_s8(
                vreinterpretq_s8_u8(vorrq_u8(lo, vshlq_n_u8::<4>(vandq_u8(hbits, m3)))),
                m32,
            )
        };
        let v = [
            six(vandq_u8(l0, m4), h0),
            six(vandq_u8(l1, m4), h1),
            six(vandq_u8(l2, m4), vshrq_n_u8::<2>(h0)),
            six(vandq_u8(l3, m4), vshrq_n_u8::<2>(h1)),
            six(vshrq_n_u8::<4>(l0), vshrq_n_u8::<4>(h0)),
            six(vshrq_n_u8::<4>(l1), vshrq_n_u8::<4>(h1)),
            six(vshrq_n_u8::<4>(l2), vshrq_n_u8::<6>(h0)),
            six(vshrq_n_u8::<4>(l3), vshrq_n_u8::<6>(h1)),
        ];
        for (g, &q6) in v.iter().enumerate() {
            // SAFETY: `y.qs` is 256 bytes; 128h + 16g + 16 <= 256.
            let q8 = unsafe { vld1q_s8(y.qs.as_ptr().add(128 * h + 16 * g)) };
            // SAFETY: forwarded from the caller; |q6 - 32| <= 32 fits the narrow bound.
            let p = unsafe { dot16::<SDOT>(vdupq_n_s32(0), q6, q8) };
            acc = vmlaq_n_s32(acc, p, x.scales[8 * h + g] as i32);
        }
    }
    vaddvq_s32(acc)
}

/// `sum_b d_a * d_w * isum`.
///
/// # Safety
/// `w.len() == a.len()`; with `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn vec_dot<const SDOT: bool>(w: &[BlockQ6_K], a: &[BlockQ8_K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let d = y.d * f16_to_f32(x.d.to_bits());
        // SAFETY: forwarded from the caller.
        let isum = unsafe { super_block_isum::<SDOT>(x, y) };
        sumf += d * isum as f32;
    }
    sumf
}

super::vec_dot_entry_points!(
    vec_dot_q6_k_q8_k_neon,
    vec_dot_q6_k_q8_k_sdot,
    BlockQ6_K,
    BlockQ8_K
);

/// This format's kernels, slowest first (see [`crate::dispatch::install_offers`]).
pub(super) const OFFERS: &[Offer] = {
    use crate::dispatch::offer as o;
    use crate::dispatch::OfferedKernel::*;
    use crate::types::GgmlType as T;
    &[
        o(
            T::Q6_K,
            T::Q8_K,
            Backend::Neon,
            VecDot(vec_dot_q6_k_q8_k_neon),
        ),
        o(
            T::Q6_K,
            T::Q8_K,
            Backend::NeonDotprod,
            VecDot(vec_dot_q6_k_q8_k_sdot),
        ),
        o(
            T::Q6_K,
            T::Q8_K,
            Backend::NeonDotprod,
            Tile(super::tile::gemm_tile_q6_k),
        ),
        o(
            T::Q6_K,
            T::Q8_K,
            Backend::NeonI8mm,
            Tile(super::mmla::gemm_tile_q6_k),
        ),
    ]
};

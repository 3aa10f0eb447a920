//! Q5_K · Q8_K on NEON: as Q4_K with a fifth bit per weight from `qh` (values 0..32).

use core::arch::aarch64::*;

use super::q4_k::{mins_dot_bsums, scales_mins_k4};
use super::simd::{dot32, f16_to_f32};
use crate::blocks::{BlockQ5_K, BlockQ8_K};
use crate::dispatch::{Backend, Offer};

/// `sum_g scales[g] * dot_g(q5, q8)` for one super-block (|sum| <= 8 * 63 * 32 * 31 * 128).
///
/// # Safety
/// With `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn super_block_isum<const SDOT: bool>(x: &BlockQ5_K, y: &BlockQ8_K, scales: u64) -> i32 {
    let m4 = vdupq_n_u8(0x0F);
    let one = vdupq_n_u8(1);
    let two = vdupq_n_u8(2);
    let sc = scales.to_le_bytes();
    // Bit 2j of qh[l] is the fifth bit of element l of group 2j, bit 2j+1 that of group 2j+1;
    // the masks shift down by two each step.
    // SAFETY: `x.qh` is 32 bytes; the loads read 0..16 and 16..32.
    let (mut qh0, mut qh1) = unsafe { (vld1q_u8(x.qh.as_ptr()), vld1q_u8(x.qh.as_ptr().add(16))) };
    let mut acc = vdupq_n_s32(0);
    for j in 0..4 {
        // SAFETY: `x.qs` is 128 bytes and `y.qs` 256: the loads read qs[32j..32j+32] and
        // q8[64j..64j+64], j < 4.
        let (q0, q1, y0, y1, y2, y3) = unsafe {
            let q = x.qs.as_ptr().add(32 * j);
            let a = y.qs.as_ptr().add(64 * j);
            (
                vld1q_u8(q),
                vld1q_u8(q.add(16)),
                vld1q_s8(a),
                vld1q_s8(a.add(16)),
                vld1q_s8(a.add(32)),
                vld1q_s8(a.add(48)),
            )
        };
        let lo0 = vorrq_u8(vandq_u8(q0, m4), vshlq_n_u8::<4>(vandq_u8(qh0, one)));
        let lo1 = vorrq_u8(vandq_u8(q1, m4), vshlq_n_u8::<4>(vandq_u8(qh1, one)));
        let hi0 = vorrq_u8(vshrq_n_u8::<4>(q0), vshlq_n_u8::<3>(vandq_u8(qh0, two)));
        let hi1 = vorrq_u8(vshrq_n_u8::<4>(q1), vshlq_n_u8::<3>(vandq_u8(qh1, two)));
        qh0 = vshrq_n_u8::<2>(qh0);
        qh1 = vshrq_n_u8::<2>(qh1);
        // SAFETY: forwarded from the caller; 0 <= q <= 31 fits the narrow bound.
        let (p_lo, p_hi) = unsafe {
            (
                dot32::<SDOT>(
                    vdupq_n_s32(0),
                    vreinterpretq_s8_u8(lo0),
                    y0,
                    vreinterpretq_s8_u8(lo1),
                    y1,
                ),
                dot32::<SDOT>(
                    vdupq_n_s32(0),
                    vreinterpretq_s8_u8(hi0),
                    y2,
                    vreinterpretq_s8_u8(hi1),
                    y3,
                ),
            )
        };
        acc = vmlaq_n_s32(acc, p_lo, sc[2 * j] as i32);
        acc = vmlaq_n_s32(acc, p_hi, sc[2 * j + 1] as i32);
    }
    vaddvq_s32(acc)
}

/// `sum_b (d_a * d_w * isum - d_a * dmin_w * sum(mins * bsums))`.
///
/// # Safety
/// `w.len() == a.len()`; with `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn vec_dot<const SDOT: bool>(w: &[BlockQ5_K], a: &[BlockQ8_K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let d = y.d * f16_to_f32(x.d.to_bits());
        let dmin = y.d * f16_to_f32(x.dmin.to_bits());
        let (scales, mins) = scales_mins_k4(&x.scales);
        let summ = mins_dot_bsums(mins, &y.bsums);
        // SAFETY: forwarded from the caller.
        let isum = unsafe { super_block_isum::<SDOT>(x, y, scales) };
        sumf += d * isum as f32 - dmin * summ as f32;
    }
    sumf
}

super::vec_dot_entry_points!(
    vec_dot_q5_k_q8_k_neon,
    vec_dot_q5_k_q8_k_sdot,
    BlockQ5_K,
    BlockQ8_K
);

/// This format's kernels, slowest first (see [`crate::dispatch::install_offers`]).
pub(super) const OFFERS: &[Offer] = {
    use crate::dispatch::offer as o;
    use crate::dispatch::OfferedKernel::*;
    use crate::types::GgmlType as T;
    &[
        o(
            T::Q5_K,
            T::Q8_K,
            Backend::Neon,
            VecDot(vec_dot_q5_k_q8_k_neon),
        ),
        o(
            T::Q5_K,
            T::Q8_K,
            Backend::NeonDotprod,
            VecDot(vec_dot_q5_k_q8_k_sdot),
        ),
        o(
            T::Q5_K,
            T::Q8_K,
            Backend::NeonDotprod,
            Tile(super::tile::gemm_tile_q5_k),
        ),
        o(
            T::Q5_K,
            T::Q8_K,
            Backend::NeonI8mm,
            Tile(super::mmla::gemm_tile_q5_k),
        ),
    ]
};

//! Q4_K · Q8_K on NEON: per super-block of 256, eight 32-element integer dots each weighted by its
//! 6-bit scale, minus the mins times the activation's 32-element sums (from `bsums`).

use core::arch::aarch64::*;

use super::simd::{dot32, f16_to_f32};
use crate::blocks::{BlockQ4_K, BlockQ8_K};
use crate::dispatch::{Backend, Offer};

/// Unpacks the eight 6-bit scales and eight 6-bit mins of a Q4_K/Q5_K block
/// (ggml's `get_scale_min_k4` for j = 0..8), as two little-endian byte vectors (scale j in byte j).
#[inline]
pub(crate) fn scales_mins_k4(q: &[u8; 12]) -> (u64, u64) {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let u0 = u32::from_le_bytes([q[0], q[1], q[2], q[3]]);
    let u1 = u32::from_le_bytes([q[4], q[5], q[6], q[7]]);
    let u2 = u32::from_le_bytes([q[8], q[9], q[10], q[11]]);
    // scales 0..4: low 6 bits of bytes 0..4; 4..8: low nibble of bytes 8..12 | top 2 bits of 0..4.
    let sc_lo = u0 & KMASK1;
    let sc_hi = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
    // mins 0..4: low 6 bits of bytes 4..8; 4..8: high nibble of bytes 8..12 | top 2 bits of 4..8.
    let m_lo = u1 & KMASK1;
    let m_hi = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
    (
        sc_lo as u64 | (sc_hi as u64) << 32,
        m_lo as u64 | (m_hi as u64) << 32,
    )
}

/// `sum_g mins[g] * (bsums[2g] + bsums[2g + 1])` over the eight 32-element groups, in i32 (exact
/// for any bsums: each product is at most 63 * 65534).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn mins_dot_bsums(mins: u64, bsums: &[i16; 16]) -> i32 {
    // SAFETY: `bsums` is 16 i16; the loads read elements 0..8 and 8..16.
    let (b0, b1) = unsafe { (vld1q_s16(bsums.as_ptr()), vld1q_s16(bsums.as_ptr().add(8))) };
    // Pairwise sums widened to i32: groups 0..4 and 4..8.
    let (s0, s1) = (vpaddlq_s16(b0), vpaddlq_s16(b1));
    let m = vmovl_u8(vcreate_u8(mins));
    let m0 = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(m)));
    let m1 = vreinterpretq_s32_u32(vmovl_u16(vget_high_u16(m)));
    vaddvq_s32(vmlaq_s32(vmulq_s32(s0, m0), s1, m1))
}

/// `sum_g scales[g] * dot_g(q4, q8)` for one super-block (|sum| <= 8 * 63 * 32 * 15 * 128).
///
/// # Safety
/// With `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn super_block_isum<const SDOT: bool>(x: &BlockQ4_K, y: &BlockQ8_K, scales: u64) -> i32 {
    let m4 = vdupq_n_u8(0x0F);
    let sc = scales.to_le_bytes();
    let mut acc = vdupq_n_s32(0);
    for j in 0..4 {
        // Bytes 32j..32j+32 hold group 2j in their low nibbles and group 2j+1 in their high nibbles.
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
        let lo0 = vreinterpretq_s8_u8(vandq_u8(q0, m4));
        let lo1 = vreinterpretq_s8_u8(vandq_u8(q1, m4));
        let hi0 = vreinterpretq_s8_u8(vshrq_n_u8::<4>(q0));
        let hi1 = vreinterpretq_s8_u8(vshrq_n_u8::<4>(q1));
        // SAFETY: forwarded from the caller; 0 <= q <= 15 fits the narrow bound.
        let (p_lo, p_hi) = unsafe {
            (
                dot32::<SDOT>(vdupq_n_s32(0), lo0, y0, lo1, y1),
                dot32::<SDOT>(vdupq_n_s32(0), hi0, y2, hi1, y3),
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
pub(crate) unsafe fn vec_dot<const SDOT: bool>(w: &[BlockQ4_K], a: &[BlockQ8_K]) -> f32 {
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
    vec_dot_q4_k_q8_k_neon,
    vec_dot_q4_k_q8_k_sdot,
    BlockQ4_K,
    BlockQ8_K
);

/// This format's kernels, slowest first (see [`crate::dispatch::install_offers`]).
pub(super) const OFFERS: &[Offer] = {
    use crate::dispatch::offer as o;
    use crate::dispatch::OfferedKernel::*;
    use crate::types::GgmlType as T;
    &[
        o(
            T::Q4_K,
            T::Q8_K,
            Backend::Neon,
            VecDot(vec_dot_q4_k_q8_k_neon),
        ),
        o(
            T::Q4_K,
            T::Q8_K,
            Backend::NeonDotprod,
            VecDot(vec_dot_q4_k_q8_k_sdot),
        ),
        o(
            T::Q4_K,
            T::Q8_K,
            Backend::NeonDotprod,
            Tile(super::tile::gemm_tile_q4_k),
        ),
        o(
            T::Q4_K,
            T::Q8_K,
            Backend::NeonI8mm,
            Tile(super::mmla::gemm_tile_q4_k),
        ),
    ]
};

//! Q4_1 · Q8_1 on NEON: unsigned nibbles, 32-element integer dot per block, plus the min term
//! `m_w * s_a` (s = d_a * sum(a) is stored in the Q8_1 block). Two blocks per step.

use core::arch::aarch64::*;

use super::simd::{dot32, f16_to_f32, f16x4_to_f32, u16x4};
use crate::blocks::{BlockQ4_1, BlockQ8_1};

/// Integer products of one block: lanes sum to `sum_j q_j * a_j` (|sum| <= 32 * 15 * 128).
///
/// # Safety
/// With `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn block_isum<const SDOT: bool>(x: &BlockQ4_1, y: &BlockQ8_1) -> int32x4_t {
    // SAFETY: `x.qs` is 16 bytes and `y.qs` 32 bytes; each load reads 16 bytes inside them.
    let (qx, y0, y1) = unsafe {
        (
            vld1q_u8(x.qs.as_ptr()),
            vld1q_s8(y.qs.as_ptr()),
            vld1q_s8(y.qs.as_ptr().add(16)),
        )
    };
    let lo = vreinterpretq_s8_u8(vandq_u8(qx, vdupq_n_u8(0x0F)));
    let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(qx));
    // SAFETY: the caller guarantees dotprod when SDOT; 0 <= q <= 15 fits the narrow bound.
    unsafe { dot32::<SDOT>(vdupq_n_s32(0), lo, y0, hi, y1) }
}

/// `sum_b (d_w[b] * d_a[b] * isum[b] + m_w[b] * s_a[b])`.
///
/// # Safety
/// `w.len() == a.len()`; with `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn vec_dot<const SDOT: bool>(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    let mut sum0 = vdupq_n_f32(0.0);
    let mut sum1 = vdupq_n_f32(0.0);
    let mut summs = vdup_n_f32(0.0);
    let mut summ_tail = 0.0f32;
    let (w2, a2) = (w.chunks_exact(2), a.chunks_exact(2));
    let (wr, ar) = (w2.remainder(), a2.remainder());
    for (x, y) in w2.zip(a2) {
        // SAFETY: forwarded from the caller.
        let (p0, p1) = unsafe {
            (
                block_isum::<SDOT>(&x[0], &y[0]),
                block_isum::<SDOT>(&x[1], &y[1]),
            )
        };
        // [d_w0, d_w1, m_w0, m_w1] * [d_a0, d_a1, s_a0, s_a1]
        let ws = f16x4_to_f32(u16x4(
            x[0].d.to_bits(),
            x[1].d.to_bits(),
            x[0].m.to_bits(),
            x[1].m.to_bits(),
        ));
        let as_ = f16x4_to_f32(u16x4(
            y[0].d.to_bits(),
            y[1].d.to_bits(),
            y[0].s.to_bits(),
            y[1].s.to_bits(),
        ));
        let prod = vmulq_f32(ws, as_);
        let d = vget_low_f32(prod);
        summs = vadd_f32(summs, vget_high_f32(prod));
        sum0 = vmlaq_lane_f32::<0>(sum0, vcvtq_f32_s32(p0), d);
        sum1 = vmlaq_lane_f32::<1>(sum1, vcvtq_f32_s32(p1), d);
    }
    for (x, y) in wr.iter().zip(ar) {
        // SAFETY: forwarded from the caller.
        let p = unsafe { block_isum::<SDOT>(x, y) };
        let d = f16_to_f32(x.d.to_bits()) * f16_to_f32(y.d.to_bits());
        summ_tail += f16_to_f32(x.m.to_bits()) * f16_to_f32(y.s.to_bits());
        sum0 = vmlaq_n_f32(sum0, vcvtq_f32_s32(p), d);
    }
    vaddvq_f32(vaddq_f32(sum0, sum1)) + vaddv_f32(summs) + summ_tail
}

super::vec_dot_entry_points!(
    vec_dot_q4_1_q8_1_neon,
    vec_dot_q4_1_q8_1_sdot,
    BlockQ4_1,
    BlockQ8_1
);

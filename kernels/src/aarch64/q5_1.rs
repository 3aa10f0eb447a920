//! Q5_1 · Q8_1 on NEON: nibble plus fifth bit (unsigned 0..32), 32-element integer dot per block,
//! plus the min term `m_w * s_a`. Two blocks per step.

use core::arch::aarch64::*;

use super::q5_0::q5_levels;
use super::simd::{dot32, f16_to_f32, f16x4_to_f32, u16x4};
use crate::blocks::{BlockQ5_1, BlockQ8_1};

/// Integer products of one block: lanes sum to `sum_j q_j * a_j` (|sum| <= 32 * 31 * 128).
///
/// # Safety
/// With `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn block_isum<const SDOT: bool>(x: &BlockQ5_1, y: &BlockQ8_1) -> int32x4_t {
    // SAFETY: `y.qs` is 32 bytes; each load reads 16 bytes inside it.
    let (y0, y1) = unsafe { (vld1q_s8(y.qs.as_ptr()), vld1q_s8(y.qs.as_ptr().add(16))) };
    let [lo, hi] = q5_levels(&x.qs, x.qh);
    // SAFETY: the caller guarantees dotprod when SDOT; 0 <= q <= 31 fits the narrow bound.
    unsafe {
        dot32::<SDOT>(
            vdupq_n_s32(0),
            vreinterpretq_s8_u8(lo),
            y0,
            vreinterpretq_s8_u8(hi),
            y1,
        )
    }
}

/// `sum_b (d_w[b] * d_a[b] * isum[b] + m_w[b] * s_a[b])`.
///
/// # Safety
/// `w.len() == a.len()`; with `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn vec_dot<const SDOT: bool>(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
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
    vec_dot_q5_1_q8_1_neon,
    vec_dot_q5_1_q8_1_sdot,
    BlockQ5_1,
    BlockQ8_1
);

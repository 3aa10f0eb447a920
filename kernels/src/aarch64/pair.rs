//! The two-block driver of the 32-element formats (Q4_0, Q5_0, Q8_0 x Q8_0; Q4_1, Q5_1 x Q8_1).
//! Each format's file gives its block's exact integer dot ([`Block32::isum`]) and its scale bits;
//! the driver sums two blocks per step into two float accumulators, as ggml's NEON paths do.

use core::arch::aarch64::*;

use super::simd::{dot32, dot32_full, f16_to_f32, f16x4_to_f32, scale_pair, u16x4};
use crate::blocks::{ActBlock32, BlockQ8_1};

/// A 32-element weight block: its levels as signed bytes, its scale, and the activation block
/// its integer dot pairs with. The vec_dot driver below and the prefill tiles (`tile.rs`) both
/// unpack blocks through it.
pub(super) trait Block32 {
    type Act: ActBlock32;
    /// True when the levels use the whole signed byte range (Q8_0): their products need
    /// `dot32_full`; every other format's levels stay within `dot32`'s bound (|q| <= 63).
    const FULL: bool = false;
    /// The 32 levels, offset removed (`q - 8`, `q - 16`, or the unsigned levels of the formats
    /// with a min), elements 0..16 and 16..32: the block's integer dot is `sum levels * a`.
    fn levels(&self) -> [int8x16_t; 2];
    /// The weight block's scale (f16 bits).
    fn d(&self) -> u16;
}

/// Integer products of one block: the lanes sum to the block's exact integer dot.
///
/// # Safety
/// With `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn isum<W: Block32, const SDOT: bool>(x: &W, y: &W::Act) -> int32x4_t {
    let q = y.qs();
    // SAFETY: `q` is 32 bytes; the loads read 0..16 and 16..32.
    let (y0, y1) = unsafe { (vld1q_s8(q.as_ptr()), vld1q_s8(q.as_ptr().add(16))) };
    let [lo, hi] = x.levels();
    // SAFETY: the caller guarantees dotprod when SDOT; `dot32` only gets levels within its bound.
    unsafe {
        if W::FULL {
            dot32_full::<SDOT>(vdupq_n_s32(0), lo, y0, hi, y1)
        } else {
            dot32::<SDOT>(vdupq_n_s32(0), lo, y0, hi, y1)
        }
    }
}

/// An activation block's scale `d` (f16 bits).
#[inline(always)]
fn act_d<A: ActBlock32>(y: &A) -> u16 {
    y.d().to_bits()
}

/// A block with a min term `m_w * s_a` (Q4_1, Q5_1 with Q8_1's `s = d_a * sum(a)`).
pub(super) trait Block32Min: Block32<Act = BlockQ8_1> {
    /// The weight block's min (f16 bits).
    fn m(&self) -> u16;
}

/// `sum_b d_w[b] * d_a[b] * isum[b]`.
///
/// # Safety
/// `w.len() == a.len()`; with `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn vec_dot<W: Block32, const SDOT: bool>(w: &[W], a: &[W::Act]) -> f32 {
    let mut sum0 = vdupq_n_f32(0.0);
    let mut sum1 = vdupq_n_f32(0.0);
    let (w2, a2) = (w.chunks_exact(2), a.chunks_exact(2));
    let (wr, ar) = (w2.remainder(), a2.remainder());
    for (x, y) in w2.zip(a2) {
        // SAFETY: forwarded from the caller.
        let (p0, p1) = unsafe { (isum::<W, SDOT>(&x[0], &y[0]), isum::<W, SDOT>(&x[1], &y[1])) };
        let d = scale_pair(x[0].d(), x[1].d(), act_d(&y[0]), act_d(&y[1]));
        sum0 = vmlaq_lane_f32::<0>(sum0, vcvtq_f32_s32(p0), d);
        sum1 = vmlaq_lane_f32::<1>(sum1, vcvtq_f32_s32(p1), d);
    }
    for (x, y) in wr.iter().zip(ar) {
        // SAFETY: forwarded from the caller.
        let p = unsafe { isum::<W, SDOT>(x, y) };
        let d = f16_to_f32(x.d()) * f16_to_f32(act_d(y));
        sum0 = vmlaq_n_f32(sum0, vcvtq_f32_s32(p), d);
    }
    vaddvq_f32(vaddq_f32(sum0, sum1))
}

/// `sum_b (d_w[b] * d_a[b] * isum[b] + m_w[b] * s_a[b])`.
///
/// # Safety
/// `w.len() == a.len()`; with `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn vec_dot_min<W: Block32Min, const SDOT: bool>(w: &[W], a: &[W::Act]) -> f32 {
    let mut sum0 = vdupq_n_f32(0.0);
    let mut sum1 = vdupq_n_f32(0.0);
    let mut summs = vdup_n_f32(0.0);
    let mut summ_tail = 0.0f32;
    let (w2, a2) = (w.chunks_exact(2), a.chunks_exact(2));
    let (wr, ar) = (w2.remainder(), a2.remainder());
    for (x, y) in w2.zip(a2) {
        // SAFETY: forwarded from the caller.
        let (p0, p1) = unsafe { (isum::<W, SDOT>(&x[0], &y[0]), isum::<W, SDOT>(&x[1], &y[1])) };
        // [d_w0, d_w1, m_w0, m_w1] * [d_a0, d_a1, s_a0, s_a1]
        let ws = f16x4_to_f32(u16x4(x[0].d(), x[1].d(), x[0].m(), x[1].m()));
        let as_ = f16x4_to_f32(u16x4(
            act_d(&y[0]),
            act_d(&y[1]),
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
        let p = unsafe { isum::<W, SDOT>(x, y) };
        let d = f16_to_f32(x.d()) * f16_to_f32(act_d(y));
        summ_tail += f16_to_f32(x.m()) * f16_to_f32(y.s.to_bits());
        sum0 = vmlaq_n_f32(sum0, vcvtq_f32_s32(p), d);
    }
    vaddvq_f32(vaddq_f32(sum0, sum1)) + vaddv_f32(summs) + summ_tail
}

/// The `VecDotFn` entry points of a 32-element format, through [`vec_dot`] (with `min`: through
/// [`vec_dot_min`]).
macro_rules! pair_entry_points {
    ($neon:ident, $sdot:ident, $W:ty, $A:ty) => {
        $crate::aarch64::pair::pair_entry_points!(@ vec_dot, $neon, $sdot, $W, $A);
    };
    ($neon:ident, $sdot:ident, $W:ty, $A:ty, min) => {
        $crate::aarch64::pair::pair_entry_points!(@ vec_dot_min, $neon, $sdot, $W, $A);
    };
    (@ $driver:ident, $neon:ident, $sdot:ident, $W:ty, $A:ty) => {
        /// `sum_b d_w[b] * d_a[b] * isum[b]` (plus `m_w[b] * s_a[b]` with a min), by the
        /// shared two-block driver.
        ///
        /// # Safety
        /// `w.len() == a.len()`; with `SDOT = true` the CPU must have dotprod.
        #[inline]
        #[target_feature(enable = "neon")]
        unsafe fn vec_dot<const SDOT: bool>(w: &[$W], a: &[$A]) -> f32 {
            // SAFETY: forwarded from the caller.
            unsafe { $crate::aarch64::pair::$driver::<_, SDOT>(w, a) }
        }
        $crate::aarch64::vec_dot_entry_points!($neon, $sdot, $W, $A);
    };
}
pub(super) use pair_entry_points;

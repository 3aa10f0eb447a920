//! Q8_0 · Q8_0 on NEON: 32-element integer dot per block (full-range products: plain NEON widens
//! each product pair separately), two blocks per step with two float accumulators.

use core::arch::aarch64::*;

use super::pair::{self, Block32};
use super::simd::dot32_full;
use crate::blocks::BlockQ8_0;

/// Integer products of one block: lanes sum to `sum_j w_j * a_j` (|sum| <= 32 * 128 * 128).
///
/// # Safety
/// With `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn block_isum<const SDOT: bool>(x: &BlockQ8_0, y: &BlockQ8_0) -> int32x4_t {
    // SAFETY: both `qs` are 32 bytes; the loads read bytes 0..16 and 16..32.
    let (x0, x1, y0, y1) = unsafe {
        (
            vld1q_s8(x.qs.as_ptr()),
            vld1q_s8(x.qs.as_ptr().add(16)),
            vld1q_s8(y.qs.as_ptr()),
            vld1q_s8(y.qs.as_ptr().add(16)),
        )
    };
    // SAFETY: the caller guarantees dotprod when SDOT.
    unsafe { dot32_full::<SDOT>(vdupq_n_s32(0), x0, y0, x1, y1) }
}

impl Block32 for BlockQ8_0 {
    type Act = BlockQ8_0;
    #[inline]
    unsafe fn isum<const SDOT: bool>(&self, y: &BlockQ8_0) -> int32x4_t {
        // SAFETY: forwarded from the caller.
        unsafe { block_isum::<SDOT>(self, y) }
    }
    #[inline]
    fn d(&self) -> u16 {
        self.d.to_bits()
    }
}

/// `sum_b d_w[b] * d_a[b] * isum[b]`, by the shared two-block driver.
///
/// # Safety
/// `w.len() == a.len()`; with `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn vec_dot<const SDOT: bool>(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    // SAFETY: forwarded from the caller.
    unsafe { pair::vec_dot::<_, SDOT>(w, a) }
}

super::vec_dot_entry_points!(
    vec_dot_q8_0_q8_0_neon,
    vec_dot_q8_0_q8_0_sdot,
    BlockQ8_0,
    BlockQ8_0
);

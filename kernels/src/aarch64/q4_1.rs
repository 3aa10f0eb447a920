//! Q4_1 · Q8_1 on NEON: unsigned nibbles, 32-element integer dot per block, plus the min term
//! `m_w * s_a` (s = d_a * sum(a) is stored in the Q8_1 block). Two blocks per step.

use core::arch::aarch64::*;

use super::pair::{self, Block32, Block32Min};
use super::simd::dot32;
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

impl Block32 for BlockQ4_1 {
    type Act = BlockQ8_1;
    #[inline]
    unsafe fn isum<const SDOT: bool>(&self, y: &BlockQ8_1) -> int32x4_t {
        // SAFETY: forwarded from the caller.
        unsafe { block_isum::<SDOT>(self, y) }
    }
    #[inline]
    fn d(&self) -> u16 {
        self.d.to_bits()
    }
}

impl Block32Min for BlockQ4_1 {
    #[inline]
    fn m(&self) -> u16 {
        self.m.to_bits()
    }
}

/// `sum_b (d_w[b] * d_a[b] * isum[b] + m_w[b] * s_a[b])`, by the shared two-block driver.
///
/// # Safety
/// `w.len() == a.len()`; with `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn vec_dot<const SDOT: bool>(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    // SAFETY: forwarded from the caller.
    unsafe { pair::vec_dot_min::<_, SDOT>(w, a) }
}

super::vec_dot_entry_points!(
    vec_dot_q4_1_q8_1_neon,
    vec_dot_q4_1_q8_1_sdot,
    BlockQ4_1,
    BlockQ8_1
);

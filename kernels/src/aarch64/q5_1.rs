//! Q5_1 · Q8_1 on NEON: nibble plus fifth bit (unsigned 0..32), 32-element integer dot per block,
//! plus the min term `m_w * s_a`. Two blocks per step.

use core::arch::aarch64::*;

use super::pair::{self, Block32, Block32Min};
use super::q5_0::q5_levels;
use super::simd::dot32;
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

impl Block32 for BlockQ5_1 {
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

impl Block32Min for BlockQ5_1 {
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
unsafe fn vec_dot<const SDOT: bool>(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    // SAFETY: forwarded from the caller.
    unsafe { pair::vec_dot_min::<_, SDOT>(w, a) }
}

super::vec_dot_entry_points!(
    vec_dot_q5_1_q8_1_neon,
    vec_dot_q5_1_q8_1_sdot,
    BlockQ5_1,
    BlockQ8_1
);

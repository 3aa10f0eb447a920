//! Q4_0 · Q8_0 on NEON: nibbles to signed bytes (`q - 8`), 32-element integer dot per block,
//! two blocks per step with two float accumulators (as ggml's `ggml_vec_dot_q4_0_q8_0`).

use core::arch::aarch64::*;

use super::pair::{self, Block32};
use super::simd::dot32;
use crate::blocks::{BlockQ4_0, BlockQ8_0};

/// Integer products of one block: lanes sum to `sum_j (q_j - 8) * a_j` (|sum| <= 32 * 8 * 128).
///
/// # Safety
/// With `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn block_isum<const SDOT: bool>(x: &BlockQ4_0, y: &BlockQ8_0) -> int32x4_t {
    // SAFETY: `x.qs` is 16 bytes and `y.qs` 32 bytes; each load reads 16 bytes inside them.
    let (qx, y0, y1) = unsafe {
        (
            vld1q_u8(x.qs.as_ptr()),
            vld1q_s8(y.qs.as_ptr()),
            vld1q_s8(y.qs.as_ptr().add(16)),
        )
    };
    let eight = vdupq_n_s8(8);
    // Low nibbles are elements 0..16, high nibbles 16..32.
    let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(qx, vdupq_n_u8(0x0F))), eight);
    let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(qx)), eight);
    // SAFETY: the caller guarantees dotprod when SDOT; |lo|, |hi| <= 8 fit the narrow bound.
    unsafe { dot32::<SDOT>(vdupq_n_s32(0), lo, y0, hi, y1) }
}

impl Block32 for BlockQ4_0 {
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
unsafe fn vec_dot<const SDOT: bool>(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    // SAFETY: forwarded from the caller.
    unsafe { pair::vec_dot::<_, SDOT>(w, a) }
}

super::vec_dot_entry_points!(
    vec_dot_q4_0_q8_0_neon,
    vec_dot_q4_0_q8_0_sdot,
    BlockQ4_0,
    BlockQ8_0
);

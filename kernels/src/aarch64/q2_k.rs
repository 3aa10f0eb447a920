//! Q2_K · Q8_K on NEON: 2-bit values (0..4) in sixteen 16-element groups, each weighted by its
//! 4-bit scale, minus the 4-bit mins times the activation's group sums (`bsums`).

use core::arch::aarch64::*;

use super::simd::{dot16, f16_to_f32};
use crate::blocks::{BlockQ2_K, BlockQ8_K};
use crate::dispatch::{Backend, Offer};

/// `sum_g (scales[g] >> 4) * bsums[g]`, widened to i32 (exact for any bsums).
#[inline]
#[target_feature(enable = "neon")]
fn mins_dot_bsums(scales: &[u8; 16], bsums: &[i16; 16]) -> i32 {
    // SAFETY: `scales` is 16 bytes and `bsums` 16 i16; the loads read exactly those.
    let (sc, b0, b1) = unsafe {
        (
            vld1q_u8(scales.as_ptr()),
            vld1q_s16(bsums.as_ptr()),
            vld1q_s16(bsums.as_ptr().add(8)),
        )
    };
    let m = vshrq_n_u8::<4>(sc);
    let m0 = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(m)));
    let m1 = vreinterpretq_s16_u16(vmovl_high_u8(m));
    let mut acc = vmull_s16(vget_low_s16(b0), vget_low_s16(m0));
    acc = vmlal_high_s16(acc, b0, m0);
    acc = vmlal_s16(acc, vget_low_s16(b1), vget_low_s16(m1));
    acc = vmlal_high_s16(acc, b1, m1);
    vaddvq_s32(acc)
}

/// `sum_g (scales[g] & 15) * dot_g(q2, q8)` for one super-block (|sum| <= 16 * 15 * 16 * 3 * 128).
///
/// # Safety
/// With `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn super_block_isum<const SDOT: bool>(x: &BlockQ2_K, y: &BlockQ8_K) -> i32 {
    let m3 = vdupq_n_u8(3);
    let mut acc = vdupq_n_s32(0);
    // Element 128h + 32s + l (l < 32) is bits 2s..2s+2 of qs[32h + l]; group = element / 16.
    for h in 0..2 {
        // SAFETY: `x.qs` is 64 bytes, h < 2: the loads read qs[32h..32h+32].
        let (q0, q1) = unsafe {
            (
                vld1q_u8(x.qs.as_ptr().add(32 * h)),
                vld1q_u8(x.qs.as_ptr().add(32 * h + 16)),
            )
        };
        let v = [
            vandq_u8(q0, m3),
            vandq_u8(q1, m3),
            vandq_u8(vshrq_n_u8::<2>(q0), m3),
            vandq_u8(vshrq_n_u8::<2>(q1), m3),
            vandq_u8(vshrq_n_u8::<4>(q0), m3),
            vandq_u8(vshrq_n_u8::<4>(q1), m3),
            vshrq_n_u8::<6>(q0),
            vshrq_n_u8::<6>(q1),
        ];
        for (k, &q2) in v.iter().enumerate() {
            let g = 8 * h + k;
            // SAFETY: `y.qs` is 256 bytes; 16g + 16 <= 256.
            let q8 = unsafe { vld1q_s8(y.qs.as_ptr().add(16 * g)) };
            // SAFETY: forwarded from the caller; 0 <= q <= 3 fits the narrow bound.
            let p = unsafe { dot16::<SDOT>(vdupq_n_s32(0), vreinterpretq_s8_u8(q2), q8) };
            acc = vmlaq_n_s32(acc, p, (x.scales[g] & 0xF) as i32);
        }
    }
    vaddvq_s32(acc)
}

/// `sum_b (d_a * d_w * isum - d_a * dmin_w * sum(mins * bsums))`.
///
/// # Safety
/// `w.len() == a.len()`; with `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn vec_dot<const SDOT: bool>(w: &[BlockQ2_K], a: &[BlockQ8_K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let dall = y.d * f16_to_f32(x.d.to_bits());
        let dmin = y.d * f16_to_f32(x.dmin.to_bits());
        let summ = mins_dot_bsums(&x.scales, &y.bsums);
        // SAFETY: forwarded from the caller.
        let isum = unsafe { super_block_isum::<SDOT>(x, y) };
        sumf += dall * isum as f32 - dmin * summ as f32;
    }
    sumf
}

super::vec_dot_entry_points!(
    vec_dot_q2_k_q8_k_neon,
    vec_dot_q2_k_q8_k_sdot,
    BlockQ2_K,
    BlockQ8_K
);

/// This format's kernels, slowest first (see [`crate::dispatch::install_offers`]).
pub(super) const OFFERS: &[Offer] = {
    use crate::dispatch::offer as o;
    use crate::dispatch::OfferedKernel::*;
    use crate::types::GgmlType as T;
    &[
        o(
            T::Q2_K,
            T::Q8_K,
            Backend::Neon,
            VecDot(vec_dot_q2_k_q8_k_neon),
        ),
        o(
            T::Q2_K,
            T::Q8_K,
            Backend::NeonDotprod,
            VecDot(vec_dot_q2_k_q8_k_sdot),
        ),
        o(
            T::Q2_K,
            T::Q8_K,
            Backend::NeonDotprod,
            Tile(super::tile::gemm_tile_q2_k),
        ),
        o(
            T::Q2_K,
            T::Q8_K,
            Backend::NeonI8mm,
            Tile(super::mmla::gemm_tile_q2_k),
        ),
    ]
};

/// The tiles' view of Q2_K: levels 0..4 from `qs`, a 4-bit scale (low nibble) and a 4-bit min
/// (high nibble) per group: `d * scale * q - dmin * min`.
impl super::tile::K16Block for BlockQ2_K {
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn levels(&self, c: usize) -> [int8x16_t; 2] {
        // SAFETY: the caller guarantees NEON.
        unsafe { q2_levels(self, c) }
    }
    #[inline(always)]
    fn header(&self) -> ([i8; 16], [u8; 16], f32, f32) {
        (
            self.scales.map(|s| (s & 0x0F) as i8),
            self.scales.map(|s| s >> 4),
            self.d.to_f32(),
            self.dmin.to_f32(),
        )
    }
}

/// Levels (0..4) of elements 32c..32c + 32, c < 8, as two halves: element 128n + 32j + l has bits
/// 2j..2j + 2 of qs[32n + l].
#[inline]
#[target_feature(enable = "neon")]
fn q2_levels(b: &BlockQ2_K, c: usize) -> [int8x16_t; 2] {
    let (n, j) = (c / 4, c % 4);
    let shift = vdupq_n_s8(-2 * j as i8);
    [0, 16].map(|h| {
        // SAFETY: qs[32n + h..32n + h + 16] is in bounds (32n + h + 16 <= 64).
        let q = unsafe { vld1q_u8(b.qs.as_ptr().add(32 * n + h)) };
        vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q, shift), vdupq_n_u8(3)))
    })
}

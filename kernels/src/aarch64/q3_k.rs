//! Q3_K · Q8_K on NEON: 2 low bits from `qs` plus a high bit from `hmask` give -4..4 (the high bit
//! set means +0, clear means -4); sixteen 16-element groups, each weighted by its signed 6-bit
//! scale (`sc - 32`).

use core::arch::aarch64::*;

use super::simd::{dot16, f16_to_f32};
use crate::blocks::{BlockQ3_K, BlockQ8_K};
use crate::dispatch::{Backend, Offer};
use crate::scalar::q3_k::unpack_scales;

/// `sum_g (sc[g] - 32) * dot_g(q3, q8)` for one super-block (|sum| <= 16 * 32 * 16 * 4 * 128).
///
/// # Safety
/// With `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn super_block_isum<const SDOT: bool>(x: &BlockQ3_K, y: &BlockQ8_K) -> i32 {
    let m3 = vdupq_n_u8(3);
    let one = vdupq_n_u8(1);
    let four = vdupq_n_s8(4);
    let sc = unpack_scales(&x.scales);
    // SAFETY: `x.hmask` is 32 bytes; the loads read 0..16 and 16..32.
    let (mut hm0, mut hm1) = unsafe {
        (
            vld1q_u8(x.hmask.as_ptr()),
            vld1q_u8(x.hmask.as_ptr().add(16)),
        )
    };
    let mut acc = vdupq_n_s32(0);
    // Element 128h + 32s + l (l < 32): bits 2s..2s+2 of qs[32h + l], high bit = bit 4h + s of
    // hmask[l] (the masks shift down by one per s); group = element / 16.
    for h in 0..2 {
        // SAFETY: `x.qs` is 64 bytes, h < 2: the loads read qs[32h..32h+32].
        let (q0, q1) = unsafe {
            (
                vld1q_u8(x.qs.as_ptr().add(32 * h)),
                vld1q_u8(x.qs.as_ptr().add(32 * h + 16)),
            )
        };
        for s in 0..4 {
            let (l0, l1) = match s {
                0 => (vandq_u8(q0, m3), vandq_u8(q1, m3)),
                1 => (
                    vandq_u8(vshrq_n_u8::<2>(q0), m3),
                    vandq_u8(vshrq_n_u8::<2>(q1), m3),
                ),
                2 => (
                    vandq_u8(vshrq_n_u8::<4>(q0), m3),
                    vandq_u8(vshrq_n_u8::<4>(q1), m3),
                ),
                _ => (vshrq_n_u8::<6>(q0), vshrq_n_u8::<6>(q1)),
            };
            let v0 = vsubq_s8(
                vreinterpretq_s8_u8(vorrq_u8(l0, vshlq_n_u8::<2>(vandq_u8(hm0, one)))),
                four,
            );
            let v1 = vsubq_s8(
                vreinterpretq_s8_u8(vorrq_u8(l1, vshlq_n_u8::<2>(vandq_u8(hm1, one)))),
                four,
            );
            hm0 = vshrq_n_u8::<1>(hm0);
            hm1 = vshrq_n_u8::<1>(hm1);
            let g = 8 * h + 2 * s;
            // SAFETY: `y.qs` is 256 bytes; 16g + 32 <= 256.
            let (y0, y1) = unsafe {
                (
                    vld1q_s8(y.qs.as_ptr().add(16 * g)),
                    vld1q_s8(y.qs.as_ptr().add(16 * g + 16)),
                )
            };
            // SAFETY: forwarded from the caller; |q| <= 4 fits the narrow bound.
            let (p0, p1) = unsafe {
                (
                    dot16::<SDOT>(vdupq_n_s32(0), v0, y0),
                    dot16::<SDOT>(vdupq_n_s32(0), v1, y1),
                )
            };
            acc = vmlaq_n_s32(acc, p0, sc[g] as i32 - 32);
            acc = vmlaq_n_s32(acc, p1, sc[g + 1] as i32 - 32);
        }
    }
    vaddvq_s32(acc)
}

/// `sum_b d_a * d_w * isum`.
///
/// # Safety
/// `w.len() == a.len()`; with `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn vec_dot<const SDOT: bool>(w: &[BlockQ3_K], a: &[BlockQ8_K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let d = y.d * f16_to_f32(x.d.to_bits());
        // SAFETY: forwarded from the caller.
        let isum = unsafe { super_block_isum::<SDOT>(x, y) };
        sumf += d * isum as f32;
    }
    sumf
}

super::vec_dot_entry_points!(
    vec_dot_q3_k_q8_k_neon,
    vec_dot_q3_k_q8_k_sdot,
    BlockQ3_K,
    BlockQ8_K
);

/// This format's kernels, slowest first (see [`crate::dispatch::install_offers`]).
pub(super) const OFFERS: &[Offer] = {
    use crate::dispatch::offer as o;
    use crate::dispatch::OfferedKernel::*;
    use crate::types::GgmlType as T;
    &[
        o(
            T::Q3_K,
            T::Q8_K,
            Backend::Neon,
            VecDot(vec_dot_q3_k_q8_k_neon),
        ),
        o(
            T::Q3_K,
            T::Q8_K,
            Backend::NeonDotprod,
            VecDot(vec_dot_q3_k_q8_k_sdot),
        ),
        o(
            T::Q3_K,
            T::Q8_K,
            Backend::NeonDotprod,
            Tile(super::tile::gemm_tile_q3_k),
        ),
        o(
            T::Q3_K,
            T::Q8_K,
            Backend::NeonI8mm,
            Tile(super::mmla::gemm_tile_q3_k),
        ),
    ]
};

/// The tiles' view of Q3_K: levels u - 4 (two low bits from `qs`, the third from `hmask`),
/// signed 6-bit group scales.
impl super::tile::K16Block for BlockQ3_K {
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn levels(&self, c: usize) -> [int8x16_t; 2] {
        // SAFETY: the caller guarantees NEON.
        unsafe { q3_levels(self, c) }
    }
    #[inline(always)]
    fn header(&self) -> ([i8; 16], [u8; 16], f32, f32) {
        let sc = unpack_scales(&self.scales).map(|s| s as i8 - 32);
        (sc, [0; 16], self.d.to_f32(), 0.0)
    }
}

/// Signed levels (-4..4) of elements 32c..32c + 32, c < 8, as two halves: element 128n + 32j + l
/// has bits 2j..2j + 2 of qs[32n + l] and bit 4n + j of hmask[l].
#[inline]
#[target_feature(enable = "neon")]
fn q3_levels(b: &BlockQ3_K, c: usize) -> [int8x16_t; 2] {
    let (n, j) = (c / 4, c % 4);
    let shift = vdupq_n_s8(-2 * j as i8);
    let bit = vdupq_n_u8(1 << (4 * n + j));
    [0, 16].map(|h| {
        // SAFETY: qs[32n + h..32n + h + 16] and hmask[h..h + 16] are in bounds (32n + h + 16 <=
        // 64, h + 16 <= 32).
        let (q, m) = unsafe {
            (
                vld1q_u8(b.qs.as_ptr().add(32 * n + h)),
                vld1q_u8(b.hmask.as_ptr().add(h)),
            )
        };
        let lo = vandq_u8(vshlq_u8(q, shift), vdupq_n_u8(3));
        let hi = vandq_u8(vtstq_u8(m, bit), vdupq_n_u8(4));
        vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, hi)), vdupq_n_s8(4))
    })
}

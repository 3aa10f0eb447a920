//! Q5_0 · Q8_0 on NEON: nibble plus fifth bit (from `qh`, expanded to byte masks), minus 16,
//! 32-element integer dot per block, two blocks per step with two float accumulators.

use core::arch::aarch64::*;

use super::pair::{pair_entry_points, Block32};
use crate::blocks::{BlockQ5_0, BlockQ8_0};
use crate::dispatch::{Backend, Offer};

/// The fifth bits of a Q5 block as byte masks: lane j of the first vector is 0xFF when bit j of
/// `qh` (a little-endian u32) is set, lane j of the second when bit 16 + j is.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn fifth_bits(qh: [u8; 4]) -> (uint8x16_t, uint8x16_t) {
    // Lane k of `bit` selects bit k % 8 of the byte broadcast into it.
    let bit = vcombine_u8(
        vcreate_u8(0x8040_2010_0804_0201),
        vcreate_u8(0x8040_2010_0804_0201),
    );
    let lo = vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1]));
    let hi = vcombine_u8(vdup_n_u8(qh[2]), vdup_n_u8(qh[3]));
    (vtstq_u8(lo, bit), vtstq_u8(hi, bit))
}

/// Levels 0..31 of a Q5 block (elements 0..16, 16..32): the nibbles of `qs` plus the fifth
/// bits of `qh` at bit 4.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn q5_levels(qs: &[u8; 16], qh: [u8; 4]) -> [uint8x16_t; 2] {
    // SAFETY: `qs` is 16 bytes.
    let qx = unsafe { vld1q_u8(qs.as_ptr()) };
    let (h0, h1) = fifth_bits(qh);
    let b4 = vdupq_n_u8(0x10);
    [
        vorrq_u8(vandq_u8(qx, vdupq_n_u8(0x0F)), vandq_u8(h0, b4)),
        vorrq_u8(vshrq_n_u8::<4>(qx), vandq_u8(h1, b4)),
    ]
}

impl Block32 for BlockQ5_0 {
    type Act = BlockQ8_0;
    /// `q - 16` (|level| <= 16).
    #[inline(always)]
    fn levels(&self) -> [int8x16_t; 2] {
        // SAFETY: NEON is part of the aarch64 baseline (this module is compiled for aarch64
        // only); no memory is touched.
        unsafe {
            let sixteen = vdupq_n_s8(16);
            q5_levels(&self.qs, self.qh).map(|l| vsubq_s8(vreinterpretq_s8_u8(l), sixteen))
        }
    }
    #[inline(always)]
    fn d(&self) -> u16 {
        self.d.to_bits()
    }
}

pair_entry_points!(
    vec_dot_q5_0_q8_0_neon,
    vec_dot_q5_0_q8_0_sdot,
    BlockQ5_0,
    BlockQ8_0
);

/// This format's kernels, slowest first (see [`crate::dispatch::install_offers`]).
pub(super) const OFFERS: &[Offer] = {
    use crate::dispatch::offer as o;
    use crate::dispatch::OfferedKernel::*;
    use crate::types::GgmlType as T;
    &[
        o(
            T::Q5_0,
            T::Q8_0,
            Backend::Neon,
            VecDot(vec_dot_q5_0_q8_0_neon),
        ),
        o(
            T::Q5_0,
            T::Q8_0,
            Backend::NeonDotprod,
            VecDot(vec_dot_q5_0_q8_0_sdot),
        ),
        o(
            T::Q5_0,
            T::Q8_0,
            Backend::NeonDotprod,
            Tile(super::tile::gemm_tile_q5_0),
        ),
        o(
            T::Q5_0,
            T::Q8_0,
            Backend::NeonI8mm,
            Tile(super::mmla::gemm_tile_q5_0),
        ),
    ]
};

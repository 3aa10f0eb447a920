//! Q4_1 · Q8_1 on NEON: unsigned nibbles, 32-element integer dot per block, plus the min term
//! `m_w * s_a` (s = d_a * sum(a) is stored in the Q8_1 block). Two blocks per step.

use core::arch::aarch64::*;

use super::pair::{pair_entry_points, Block32, Block32Min};
use crate::blocks::{BlockQ4_1, BlockQ8_1};
use crate::dispatch::{Backend, Offer};

impl Block32 for BlockQ4_1 {
    type Act = BlockQ8_1;
    /// The nibbles 0..15 as they are: low nibbles elements 0..16, high 16..32.
    #[inline(always)]
    fn levels(&self) -> [int8x16_t; 2] {
        // SAFETY: NEON is part of the aarch64 baseline (this module is compiled for aarch64
        // only); the load reads the 16 bytes of `qs`.
        unsafe {
            let qx = vld1q_u8(self.qs.as_ptr());
            [
                vreinterpretq_s8_u8(vandq_u8(qx, vdupq_n_u8(0x0F))),
                vreinterpretq_s8_u8(vshrq_n_u8::<4>(qx)),
            ]
        }
    }
    #[inline(always)]
    fn d(&self) -> u16 {
        self.d.to_bits()
    }
}

impl Block32Min for BlockQ4_1 {
    #[inline(always)]
    fn m(&self) -> u16 {
        self.m.to_bits()
    }
}

pair_entry_points!(
    vec_dot_q4_1_q8_1_neon,
    vec_dot_q4_1_q8_1_sdot,
    BlockQ4_1,
    BlockQ8_1,
    min
);

/// This format's kernels, slowest first (see [`crate::dispatch::install_offers`]).
pub(super) const OFFERS: &[Offer] = {
    use crate::dispatch::offer as o;
    use crate::dispatch::OfferedKernel::*;
    use crate::types::GgmlType as T;
    &[
        o(
            T::Q4_1,
            T::Q8_1,
            Backend::Neon,
            VecDot(vec_dot_q4_1_q8_1_neon),
        ),
        o(
            T::Q4_1,
            T::Q8_1,
            Backend::NeonDotprod,
            VecDot(vec_dot_q4_1_q8_1_sdot),
        ),
        o(
            T::Q4_1,
            T::Q8_1,
            Backend::NeonDotprod,
            Tile(super::tile::gemm_tile_q4_1),
        ),
        o(
            T::Q4_1,
            T::Q8_1,
            Backend::NeonI8mm,
            Tile(super::mmla::gemm_tile_q4_1),
        ),
    ]
};

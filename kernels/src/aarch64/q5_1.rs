//! Q5_1 · Q8_1 on NEON: nibble plus fifth bit (unsigned 0..32), 32-element integer dot per block,
//! plus the min term `m_w * s_a`. Two blocks per step.

use core::arch::aarch64::*;

use super::pair::{pair_entry_points, Block32, Block32Min};
use super::q5_0::q5_levels;
use crate::blocks::{BlockQ5_1, BlockQ8_1};
use crate::dispatch::{Backend, Offer};

impl Block32 for BlockQ5_1 {
    type Act = BlockQ8_1;
    /// The levels 0..31 as they are.
    #[inline(always)]
    fn levels(&self) -> [int8x16_t; 2] {
        // SAFETY: NEON is part of the aarch64 baseline (this module is compiled for aarch64
        // only); no memory is touched.
        unsafe { q5_levels(&self.qs, self.qh).map(|l| vreinterpretq_s8_u8(l)) }
    }
    #[inline(always)]
    fn d(&self) -> u16 {
        self.d.to_bits()
    }
}

impl Block32Min for BlockQ5_1 {
    #[inline(always)]
    fn m(&self) -> u16 {
        self.m.to_bits()
    }
}

pair_entry_points!(
    vec_dot_q5_1_q8_1_neon,
    vec_dot_q5_1_q8_1_sdot,
    BlockQ5_1,
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
            T::Q5_1,
            T::Q8_1,
            Backend::Neon,
            VecDot(vec_dot_q5_1_q8_1_neon),
        ),
        o(
            T::Q5_1,
            T::Q8_1,
            Backend::NeonDotprod,
            VecDot(vec_dot_q5_1_q8_1_sdot),
        ),
        o(
            T::Q5_1,
            T::Q8_1,
            Backend::NeonDotprod,
            Tile(super::tile::gemm_tile_q5_1),
        ),
        o(
            T::Q5_1,
            T::Q8_1,
            Backend::NeonI8mm,
            Tile(super::mmla::gemm_tile_q5_1),
        ),
    ]
};

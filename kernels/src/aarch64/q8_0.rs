//! Q8_0 · Q8_0 on NEON: 32-element integer dot per block (full-range products: plain NEON widens
//! each product pair separately), two blocks per step with two float accumulators.

use core::arch::aarch64::*;

use super::pair::{pair_entry_points, Block32};
use crate::blocks::BlockQ8_0;
use crate::dispatch::{Backend, Offer};

impl Block32 for BlockQ8_0 {
    type Act = BlockQ8_0;
    const FULL: bool = true;
    /// The stored bytes (|sum| <= 32 * 128 * 128).
    #[inline(always)]
    fn levels(&self) -> [int8x16_t; 2] {
        // SAFETY: NEON is part of the aarch64 baseline (this module is compiled for aarch64
        // only); the loads read bytes 0..16 and 16..32 of the 32-byte `qs`.
        unsafe {
            [
                vld1q_s8(self.qs.as_ptr()),
                vld1q_s8(self.qs.as_ptr().add(16)),
            ]
        }
    }
    #[inline(always)]
    fn d(&self) -> u16 {
        self.d.to_bits()
    }
}

pair_entry_points!(
    vec_dot_q8_0_q8_0_neon,
    vec_dot_q8_0_q8_0_sdot,
    BlockQ8_0,
    BlockQ8_0
);

/// This format's kernels, slowest first (see [`crate::dispatch::install_offers`]).
pub(super) const OFFERS: &[Offer] = {
    use crate::dispatch::offer as o;
    use crate::dispatch::OfferedKernel::*;
    use crate::types::GgmlType as T;
    &[
        o(
            T::Q8_0,
            T::Q8_0,
            Backend::Neon,
            VecDot(vec_dot_q8_0_q8_0_neon),
        ),
        o(
            T::Q8_0,
            T::Q8_0,
            Backend::NeonDotprod,
            VecDot(vec_dot_q8_0_q8_0_sdot),
        ),
        o(
            T::Q8_0,
            T::Q8_0,
            Backend::NeonDotprod,
            Tile(super::tile::gemm_tile_q8_0),
        ),
        o(
            T::Q8_0,
            T::Q8_0,
            Backend::NeonI8mm,
            Tile(super::mmla::gemm_tile_q8_0),
        ),
    ]
};

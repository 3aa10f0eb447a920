//! Q4_0 · Q8_0 on NEON: nibbles to signed bytes (`q - 8`), 32-element integer dot per block,
//! two blocks per step with two float accumulators (as ggml's `ggml_vec_dot_q4_0_q8_0`).

use core::arch::aarch64::*;

use super::pair::{pair_entry_points, Block32};
use crate::blocks::{BlockQ4_0, BlockQ8_0};
use crate::dispatch::{Backend, Offer};

impl Block32 for BlockQ4_0 {
    type Act = BlockQ8_0;
    /// `q - 8`: low nibbles are elements 0..16, high nibbles 16..32 (|level| <= 8).
    #[inline(always)]
    fn levels(&self) -> [int8x16_t; 2] {
        // SAFETY: NEON is part of the aarch64 baseline (this module is compiled for aarch64
        // only); the load reads the 16 bytes of `qs`.
        unsafe {
            let qx = vld1q_u8(self.qs.as_ptr());
            let eight = vdupq_n_s8(8);
            [
                vsubq_s8(vreinterpretq_s8_u8(vandq_u8(qx, vdupq_n_u8(0x0F))), eight),
                vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(qx)), eight),
            ]
        }
    }
    #[inline(always)]
    fn d(&self) -> u16 {
        self.d.to_bits()
    }
}

pair_entry_points!(
    vec_dot_q4_0_q8_0_neon,
    vec_dot_q4_0_q8_0_sdot,
    BlockQ4_0,
    BlockQ8_0
);

/// This format's kernels, slowest first (see [`crate::dispatch::install_offers`]).
pub(super) const OFFERS: &[Offer] = {
    use crate::dispatch::offer as o;
    use crate::dispatch::OfferedKernel::*;
    use crate::types::GgmlType as T;
    &[
        o(
            T::Q4_0,
            T::Q8_0,
            Backend::Neon,
            VecDot(vec_dot_q4_0_q8_0_neon),
        ),
        o(
            T::Q4_0,
            T::Q8_0,
            Backend::NeonDotprod,
            VecDot(vec_dot_q4_0_q8_0_sdot),
        ),
        o(
            T::Q4_0,
            T::Q8_0,
            Backend::NeonDotprod,
            Tile(super::tile::gemm_tile_q4_0),
        ),
        o(
            T::Q4_0,
            T::Q8_0,
            Backend::NeonI8mm,
            Tile(super::mmla::gemm_tile_q4_0),
        ),
    ]
};

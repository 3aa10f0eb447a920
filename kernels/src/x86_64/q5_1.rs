//! Q5_1 x Q8_1 on x86: the one-row dot and the decode mat-vec (AVX2 pairs), the block's
//! unpacking for the prefill tiles ([`Nibble32`]), and this format's kernels.

use super::block32::{dot_nibble, nibble_offers, vec_dot_entry, Nibble32};
use super::debug_assert_avx2;
use super::gemv::pairs::{gemv_multi_pairs, gemv_pairs};
use crate::blocks::{BlockQ5_1, BlockQ8_1};
use crate::dispatch::{Offer, VecDotFn};

/// Q5_1's kernels.
pub(super) const OFFERS: &[Offer] =
    &nibble_offers::<BlockQ5_1>(gemv_pairs::<BlockQ5_1>, gemv_multi_pairs::<BlockQ5_1>);

impl Nibble32 for BlockQ5_1 {
    const VEC_DOT: VecDotFn = vec_dot_q5_1_q8_1;
}

vec_dot_entry!(/// Q5_1 weights . Q8_1 activations.
    vec_dot_q5_1_q8_1, dot_nibble::<BlockQ5_1>, BlockQ5_1, BlockQ8_1, debug_assert_avx2);

//! Q2_K x Q8_K on x86: the one-row dot (AVX2) and this format's kernel list.

use std::arch::x86_64::*;

use super::gemv::k16::{k16_avx2_entries, k16_gemv_entries, LowBitK16};
use super::tile::{self, k16_tile, K16Block};
use super::{h2f, load32, AVX2, AVXVNNI, VNNI};
use crate::blocks::{cast_blocks, BlockQ2_K, BlockQ8_K};
use crate::dispatch::{offer, Offer, OfferedKernel as K};
use crate::types::GgmlType;
use crate::views::{Rows, RowsMut};

/// Q2_K's kernels.
pub(super) const OFFERS: &[Offer] = {
    const T: GgmlType = GgmlType::Q2_K;
    const A: GgmlType = GgmlType::Q8_K;
    &[
        offer(T, A, AVX2, K::VecDot(vec_dot_q2_k_q8_k)),
        offer(T, A, AVX2, K::Gemv(gemv_q2_k_q8_k_avx2)),
        offer(T, A, AVX2, K::GemvMulti(gemv_multi_q2_k_q8_k_avx2)),
        offer(T, A, AVX2, K::Tile(tile::avx2::gemm_tile_k::<BlockQ2_K>)),
        offer(
            T,
            A,
            AVXVNNI,
            K::Tile(tile::avxvnni::gemm_tile_k::<BlockQ2_K>),
        ),
        offer(T, A, VNNI, K::Gemv(gemv_q2_k_q8_k)),
        offer(T, A, VNNI, K::GemvMulti(gemv_multi_q2_k_q8_k)),
        offer(T, A, VNNI, K::Tile(tile::vnni::gemm_tile_k::<BlockQ2_K>)),
    ]
};

k16_avx2_entries!(
    BlockQ2_K,
    vec_dot_q2_k_q8_k,
    gemv_q2_k_q8_k_avx2,
    gemv_multi_q2_k_q8_k_avx2
);

/// The tiles' view of Q2_K: levels 0..4 from `qs`, a 4-bit scale (low nibble) and a 4-bit min
/// (high nibble) per group: `d * scale * q - dmin * min`.
impl K16Block for BlockQ2_K {
    const TYPE: GgmlType = GgmlType::Q2_K;
    const OFFSET: i32 = 0;
    const HAS_MIN: bool = true;
    const SUMS_FIT_I16: bool = true;
    #[inline(always)]
    unsafe fn scales(&self) -> __m128i {
        // SAFETY: scales is 16 bytes; unaligned load; the caller guarantees AVX2.
        unsafe {
            let v = _mm_loadu_si128(self.scales.as_ptr() as *const __m128i);
            _mm_and_si128(v, _mm_set1_epi8(0x0F))
        }
    }
    #[inline(always)]
    unsafe fn mins(&self) -> __m128i {
        // SAFETY: as for `scales`.
        unsafe {
            let v = _mm_loadu_si128(self.scales.as_ptr() as *const __m128i);
            _mm_and_si128(_mm_srli_epi16::<4>(v), _mm_set1_epi8(0x0F))
        }
    }
    #[inline(always)]
    unsafe fn d(&self) -> (f32, f32) {
        // SAFETY: the caller guarantees F16C.
        unsafe { (h2f(self.d), h2f(self.dmin)) }
    }
    #[inline(always)]
    unsafe fn levels(&self, c: usize) -> __m256i {
        // Elements 128n + 32j + l: bits 2j..2j + 2 of qs[32n + l].
        let (n, j) = (c / 4, c % 4);
        // SAFETY: the caller guarantees AVX2.
        unsafe {
            let bits = load32(self.qs[32 * n..32 * n + 32].try_into().expect("32 bytes"));
            _mm256_and_si256(
                _mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * j as i32)),
                _mm256_set1_epi8(3),
            )
        }
    }
}

k16_tile!(BlockQ2_K);

impl LowBitK16 for BlockQ2_K {
    #[inline(always)]
    fn qs(&self) -> &[u8; 64] {
        &self.qs
    }
    #[inline(always)]
    fn hmask(&self) -> Option<&[u8; 32]> {
        None
    }
}

k16_gemv_entries!(BlockQ2_K, gemv_q2_k_q8_k, gemv_multi_q2_k_q8_k);

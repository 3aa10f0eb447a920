//! Q3_K x Q8_K on x86: the one-row dot (AVX2) and this format's kernel list.

use std::arch::x86_64::*;

use super::gemv::k16::{k16_avx2_entries, k16_gemv_entries, LowBitK16};
use super::tile::{self, k16_tile, K16Block};
use super::{h2f, load32, AVX2, AVXVNNI, VNNI};
use crate::blocks::{cast_blocks, BlockQ3_K, BlockQ8_K};
use crate::dispatch::{offer, Offer, OfferedKernel as K};
use crate::types::GgmlType;
use crate::views::{Rows, RowsMut};

/// Q3_K's kernels.
pub(super) const OFFERS: &[Offer] = {
    const T: GgmlType = GgmlType::Q3_K;
    const A: GgmlType = GgmlType::Q8_K;
    &[
        offer(T, A, AVX2, K::VecDot(vec_dot_q3_k_q8_k)),
        offer(T, A, AVX2, K::Gemv(gemv_q3_k_q8_k_avx2)),
        offer(T, A, AVX2, K::GemvMulti(gemv_multi_q3_k_q8_k_avx2)),
        offer(T, A, AVX2, K::Tile(tile::avx2::gemm_tile_k::<BlockQ3_K>)),
        offer(
            T,
            A,
            AVXVNNI,
            K::Tile(tile::avxvnni::gemm_tile_k::<BlockQ3_K>),
        ),
        offer(T, A, VNNI, K::Gemv(gemv_q3_k_q8_k)),
        offer(T, A, VNNI, K::GemvMulti(gemv_multi_q3_k_q8_k)),
        offer(T, A, VNNI, K::Tile(tile::vnni::gemm_tile_k::<BlockQ3_K>)),
    ]
};

/// The 16 6-bit group scales of Q3_K (0..64, before subtracting 32) as bytes of 4 u32: low
/// nibbles from bytes 0..8 (groups 0..8) or their high nibbles (8..16), top 2 bits from bytes 8..12.
#[inline]
pub(super) fn q3_scales(s: &[u8; 12]) -> [u32; 4] {
    const KMASK1: u32 = 0x03030303;
    const KMASK2: u32 = 0x0f0f0f0f;
    let a0 = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let a1 = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
    let t = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    [
        (a0 & KMASK2) | ((t & KMASK1) << 4),
        (a1 & KMASK2) | (((t >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((t >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((t >> 6) & KMASK1) << 4),
    ]
}

k16_avx2_entries!(
    BlockQ3_K,
    vec_dot_q3_k_q8_k,
    gemv_q3_k_q8_k_avx2,
    gemv_multi_q3_k_q8_k_avx2
);

/// The tiles' view of Q3_K: levels stored as u = q + 4 (0..8: two low bits from `qs`, the third
/// from `hmask`), signed 6-bit group scales (stored + 32).
impl K16Block for BlockQ3_K {
    const TYPE: GgmlType = GgmlType::Q3_K;
    const OFFSET: i32 = 4;
    const HAS_MIN: bool = false;
    const SUMS_FIT_I16: bool = true;
    #[inline(always)]
    unsafe fn scales(&self) -> __m128i {
        let u = q3_scales(&self.scales);
        // SAFETY: the caller guarantees AVX2.
        unsafe {
            _mm_sub_epi8(
                _mm_set_epi32(u[3] as i32, u[2] as i32, u[1] as i32, u[0] as i32),
                _mm_set1_epi8(32),
            )
        }
    }
    #[inline(always)]
    unsafe fn mins(&self) -> __m128i {
        // SAFETY: the caller guarantees AVX2.
        unsafe { _mm_setzero_si128() }
    }
    #[inline(always)]
    unsafe fn d(&self) -> (f32, f32) {
        // SAFETY: the caller guarantees F16C.
        (unsafe { h2f(self.d) }, 0.0)
    }
    #[inline(always)]
    unsafe fn levels(&self, c: usize) -> __m256i {
        // Elements 128n + 32j + l: bits 2j..2j + 2 of qs[32n + l], bit 4n + j of hmask[l].
        let (n, j) = (c / 4, c % 4);
        // SAFETY: the caller guarantees AVX2.
        unsafe {
            let bits = load32(self.qs[32 * n..32 * n + 32].try_into().expect("32 bytes"));
            let lo = _mm256_and_si256(
                _mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * j as i32)),
                _mm256_set1_epi8(3),
            );
            let hm = _mm256_set1_epi8((1u8 << (4 * n + j)) as i8);
            let hb = load32(&self.hmask);
            let hi = _mm256_and_si256(
                _mm256_cmpeq_epi8(_mm256_and_si256(hb, hm), hm),
                _mm256_set1_epi8(4),
            );
            _mm256_or_si256(lo, hi)
        }
    }
}

k16_tile!(BlockQ3_K);

impl LowBitK16 for BlockQ3_K {
    #[inline(always)]
    fn qs(&self) -> &[u8; 64] {
        &self.qs
    }
    #[inline(always)]
    fn hmask(&self) -> Option<&[u8; 32]> {
        Some(&self.hmask)
    }
}

k16_gemv_entries!(BlockQ3_K, gemv_q3_k_q8_k, gemv_multi_q3_k_q8_k);

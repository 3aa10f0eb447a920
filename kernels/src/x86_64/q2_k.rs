//! Q2_K x Q8_K on x86: the one-row dot (AVX2) and this format's kernel list.

use std::arch::x86_64::*;

use super::block32::vec_dot_entry;
use super::gemv::k16::{k16_gemv_entries, LowBitK16};
use super::prefetch::prefetch_lines;
use super::superblock::pair_scales;
use super::tile::{self, k16_tile, K16Block};
use super::{debug_assert_avx2, h2f, hsum_ps, load32, load32i, AVX2, AVXVNNI, VNNI};
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

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q2_k(w: &[BlockQ2_K], a: &[BlockQ8_K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let m3 = _mm256_set1_epi8(3);
    let m4 = _mm_set1_epi8(0x0F);
    for (x, y) in w.iter().zip(a) {
        prefetch_lines::<1, _>(x);
        // SAFETY: scales is 16 bytes, bsums 16 i16 = 32 bytes; unaligned loads.
        let (sc8, bs) = unsafe {
            (
                _mm_loadu_si128(x.scales.as_ptr() as *const __m128i),
                _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i),
            )
        };
        let scales = _mm_and_si128(sc8, m4); // 0..16, positive as i8
        let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(sc8), m4));
        let msum = _mm256_madd_epi16(mins, bs);
        let mut sumi = _mm256_setzero_si256();
        for n in 0..2 {
            let bits = load32(x.qs[32 * n..32 * n + 32].try_into().expect("32 bytes"));
            for j in 0..4 {
                let q =
                    _mm256_and_si256(_mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * j as i32)), m3);
                let off = 128 * n + 32 * j;
                let av = load32i(y.qs[off..off + 32].try_into().expect("32 bytes"));
                let sc = pair_scales(scales, 8 * n + 2 * j);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(sc, _mm256_maddubs_epi16(q, av)));
            }
        }
        let dd = _mm256_set1_ps(h2f(x.d) * y.d);
        let dm = _mm256_set1_ps(h2f(x.dmin) * y.d);
        acc = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sumi), acc);
        acc = _mm256_fnmadd_ps(dm, _mm256_cvtepi32_ps(msum), acc);
    }
    hsum_ps(acc)
}

vec_dot_entry!(/// Q2_K weights . Q8_K activations.
    vec_dot_q2_k_q8_k, dot_q2_k, BlockQ2_K, BlockQ8_K, debug_assert_avx2);

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
    const OFFSET_LOG2: Option<u32> = None;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn scales16(&self) -> __m256i {
        // SAFETY: the caller guarantees AVX2.
        unsafe { _mm256_cvtepu8_epi16(K16Block::scales(self)) }
    }
    #[inline(always)]
    unsafe fn mins16(&self) -> __m256i {
        // SAFETY: the caller guarantees AVX2.
        unsafe { _mm256_cvtepu8_epi16(K16Block::mins(self)) }
    }
    #[inline(always)]
    unsafe fn dd(&self) -> (f32, f32) {
        // SAFETY: the caller guarantees F16C.
        unsafe { K16Block::d(self) }
    }
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

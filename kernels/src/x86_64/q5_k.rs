//! Q5_K x Q8_K on x86: the one-row dot (AVX2), the decode mat-vecs (Q4_K's bodies with the fifth
//! bits, AVX-512 VNNI and AVX2), the super-block's unpacking for the prefill tiles ([`KBlock`]),
//! and this format's kernels.

use std::arch::x86_64::*;

use super::block32::vec_dot_entry;
use super::gemv::{check, gemv_multi_with, multi_runs};
use super::prefetch::prefetch_lines;
use super::q4_k::{k4_levels, run_k4_avx2_multi, run_k4_multi, K4Gemv};
use super::superblock::dot_k4_like;
use super::tile;
use super::tile::KBlock;
use super::{debug_assert_avx2, debug_assert_vnni, h2f, hsum_ps, load32, AVX2, AVXVNNI, VNNI};
use crate::blocks::{BlockQ5_K, BlockQ8_K};
use crate::dispatch::{offer, Offer, OfferedKernel as K};
use crate::types::GgmlType;
use crate::views::{Rows, RowsMut};

/// Q5_K's kernels, AVX2 first (AVX-512 VNNI replaces them where the CPU has it).
pub(super) const OFFERS: &[Offer] = {
    const T: GgmlType = GgmlType::Q5_K;
    const A: GgmlType = GgmlType::Q8_K;
    &[
        offer(T, A, AVX2, K::VecDot(vec_dot_q5_k_q8_k)),
        offer(T, A, AVX2, K::Gemv(gemv_q5_k_q8_k_avx2)),
        offer(T, A, AVX2, K::GemvMulti(gemv_multi_q5_k_q8_k_avx2)),
        offer(T, A, AVX2, K::Tile(tile::avx2::gemm_tile_k::<BlockQ5_K>)),
        offer(
            T,
            A,
            AVXVNNI,
            K::Tile(tile::avxvnni::gemm_tile_k::<BlockQ5_K>),
        ),
        offer(T, A, VNNI, K::Gemv(gemv_q5_k_q8_k)),
        offer(T, A, VNNI, K::GemvMulti(gemv_multi_q5_k_q8_k)),
        offer(T, A, VNNI, K::Tile(tile::vnni::gemm_tile_k::<BlockQ5_K>)),
    ]
};

impl KBlock for BlockQ5_K {
    const HALF_SUMS_FIT_I16: bool = false;
    const TYPE: GgmlType = GgmlType::Q5_K;
    #[inline(always)]
    fn header(&self) -> (&[u8; 12], half::f16, half::f16) {
        (&self.scales, self.d, self.dmin)
    }
    #[inline(always)]
    fn levels(&self, s: usize) -> __m256i {
        // SAFETY: as for Q4_K: only called from the AVX2/VNNI tile functions.
        unsafe {
            let lo = k4_levels(&self.qs, s);
            let bit = _mm256_set1_epi8((1u8 << s) as i8);
            let qh = load32(&self.qh);
            let hi = _mm256_and_si256(
                _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit),
                _mm256_set1_epi8(0x10),
            );
            _mm256_or_si256(lo, hi)
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q5_k(w: &[BlockQ5_K], a: &[BlockQ8_K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    let b5 = _mm256_set1_epi8(0x10);
    for (x, y) in w.iter().zip(a) {
        prefetch_lines::<2, _>(x);
        let hb = load32(&x.qh);
        // Element 64j + l takes bit 2j of qh[l], element 64j + 32 + l bit 2j + 1.
        let high = |j: usize| {
            let ml = _mm256_set1_epi8((1u8 << (2 * j)) as i8);
            let mh = _mm256_set1_epi8((1u8 << (2 * j + 1)) as i8);
            let hl = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, ml), ml), b5);
            let hh = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, mh), mh), b5);
            (hl, hh)
        };
        dot_k4_like(
            h2f(x.d),
            h2f(x.dmin),
            &x.scales,
            &x.qs,
            y,
            high,
            &mut acc,
            &mut acc_m,
        );
    }
    let m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    let m = _mm_add_ss(m, _mm_movehdup_ps(m));
    hsum_ps(acc) + _mm_cvtss_f32(m)
}

vec_dot_entry!(/// Q5_K weights . Q8_K activations.
    vec_dot_q5_k_q8_k, dot_q5_k, BlockQ5_K, BlockQ8_K, debug_assert_avx2);

impl K4Gemv for BlockQ5_K {
    #[inline(always)]
    fn qs(&self) -> &[u8; 128] {
        &self.qs
    }
    #[inline(always)]
    fn qh(&self) -> Option<&[u8; 32]> {
        Some(&self.qh)
    }
}

/// Q5_K rows against `NT` tokens, AVX-512 VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q5_k_multi<const NT: usize>(w: Rows<u8>, a: [&[BlockQ8_K]; NT], out: &mut RowsMut<f32>) {
    run_k4_multi::<BlockQ5_K, NT>(w, a, out)
}

/// Q5_K rows against `NT` tokens, AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
fn run_q5_k_avx2_multi<const NT: usize>(
    w: Rows<u8>,
    a: [&[BlockQ8_K]; NT],
    out: &mut RowsMut<f32>,
) {
    run_k4_avx2_multi::<BlockQ5_K, NT>(w, a, out)
}

/// Q5_K weights x Q8_K activations (`GemvFn`), AVX-512 VNNI: Q4_K's body with the fifth bits.
fn gemv_q5_k_q8_k(n: usize, w: Rows<u8>, a: &[u8], out: &mut [f32]) {
    let one = Rows::new(a, 1, a.len(), a.len());
    gemv_multi_q5_k_q8_k(
        n,
        w,
        one,
        RowsMut::one(check::<BlockQ5_K, BlockQ8_K>(n, &w, a, out)),
    );
}

/// Q5_K weights x up to four tokens' Q8_K activations (`GemvMultiFn`), AVX-512 VNNI.
fn gemv_multi_q5_k_q8_k(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
    let runs = multi_runs!(run_q5_k_multi, BlockQ8_K);
    gemv_multi_with::<BlockQ5_K, BlockQ8_K>(
        n,
        w,
        a,
        out,
        vec_dot_q5_k_q8_k,
        runs,
        debug_assert_vnni,
    );
}

/// Q5_K weights x Q8_K activations (`GemvFn`), AVX2.
fn gemv_q5_k_q8_k_avx2(n: usize, w: Rows<u8>, a: &[u8], out: &mut [f32]) {
    let one = Rows::new(a, 1, a.len(), a.len());
    gemv_multi_q5_k_q8_k_avx2(
        n,
        w,
        one,
        RowsMut::one(check::<BlockQ5_K, BlockQ8_K>(n, &w, a, out)),
    );
}

/// Q5_K weights x up to four tokens' Q8_K activations (`GemvMultiFn`), AVX2.
fn gemv_multi_q5_k_q8_k_avx2(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
    let runs = multi_runs!(run_q5_k_avx2_multi, BlockQ8_K);
    gemv_multi_with::<BlockQ5_K, BlockQ8_K>(
        n,
        w,
        a,
        out,
        vec_dot_q5_k_q8_k,
        runs,
        debug_assert_avx2,
    );
}

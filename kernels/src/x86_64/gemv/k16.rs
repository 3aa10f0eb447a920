//! The AVX-512 VNNI mat-vec body of the low-bit k-quants with 16-element groups, Q3_K and Q2_K
//! (x Q8_K), shaped as Q6_K's (`q6_k.rs`). Per half super-block (128 elements, the activation
//! bytes `qs[128n..128n + 128]` as they are), two 512-bit registers of unsigned levels: the 32
//! `qs` bytes of the half broadcast to both 256-bit halves and shifted by one variable 16-bit
//! shift per register (2j for the 32-element chunk j), masked to two bits, and for Q3_K the third
//! bit (`hmask` bit 4n + j) added as 4 under a byte mask (`vptestmb`). Then `vpdpbusd` against the
//! activations (|sum of 4| <= 4 * 7 * 128), `packssdw` of the two registers (exact) and one
//! `vpdpwssd` with the group scales spread by `vpermw` (the words of 128-bit lane j of the two
//! registers are groups 8n + j and 8n + 4 + j, as Q6_K's). Q3_K's levels are stored as q + 4: the
//! offset `-4 * sum_g scale_g * bsum_g` seeds the sum; Q2_K's mins, `sum_g min_g * bsum_g`, come
//! off by a second FMA by `dmin * d_a`.

use std::arch::x86_64::*;

use super::super::prefetch::{gemv_streams_prefetch, prefetch_lines};
use super::super::q6_k::Q6_K_SCALE_IDX as SCALE_IDX;
use super::super::superblock::pair_scales;
use super::super::tile::K16Block;
use crate::blocks::BlockQ8_K;

/// A Q3_K/Q2_K super-block as the mat-vecs read it: the tiles' view ([`K16Block`]: scales, mins,
/// d, offset) plus its level bytes.
pub(in crate::x86_64) trait LowBitK16: K16Block {
    /// The two-bit level bytes.
    fn qs(&self) -> &[u8; 64];
    /// The third level bit (Q3_K).
    fn hmask(&self) -> Option<&[u8; 32]>;
}

/// `madd(maddubs(..), ..)` of the offset: OFFSET * sum_g scale_g * bsum_g per i32 lane of the
/// 16 scales `sc` (i16) against the `bsums` (OFFSET is 0 or a power of two).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn offset_terms<W: K16Block>(sc: __m256i, bsums: &[i16; 16]) -> __m256i {
    // SAFETY: `bsums` is 16 i16 = 32 bytes; unaligned load.
    let bs = unsafe { _mm256_loadu_si256(bsums.as_ptr() as *const __m256i) };
    let shift = _mm_cvtsi32_si128(W::OFFSET.trailing_zeros() as i32);
    _mm256_sll_epi32(_mm256_madd_epi16(sc, bs), shift)
}

/// One row against `NT` tokens: the levels and scale words made once for all, each token's
/// arithmetic the same whatever `NT` is (so `NT = 1` is the one-token kernel's bits).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
pub(in crate::x86_64) fn rows_dot_k16<W: LowBitK16, const NT: usize>(
    w: &[W],
    a: [&[BlockQ8_K]; NT],
) -> [f32; NT] {
    assert!(a.iter().all(|a| a.len() == w.len()));
    let m3 = _mm512_set1_epi8(3);
    let four = _mm512_set1_epi8(4);
    let halves16 = |x: i16, y: i16| {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_set1_epi16(x)),
            _mm256_set1_epi16(y),
        )
    };
    let halves8 = |x: u8, y: u8| {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_set1_epi8(x as i8)),
            _mm256_set1_epi8(y as i8),
        )
    };
    // Chunks 0, 1 (register lo) and 2, 3 (register hi) of a half.
    let (sh_lo, sh_hi) = (halves16(0, 2), halves16(4, 6));
    let bits = [0, 1].map(|n| {
        (
            halves8(1 << (4 * n), 2 << (4 * n)),
            halves8(4 << (4 * n), 8 << (4 * n)),
        )
    });
    // SAFETY: each row of SCALE_IDX is 32 i16 = 64 readable bytes; unaligned loads.
    let idx = SCALE_IDX.map(|r| unsafe { _mm512_loadu_si512(r.as_ptr() as *const __m512i) });
    let mut acc = [_mm512_setzero_ps(); NT];
    let pf = gemv_streams_prefetch();
    for (b, x) in w.iter().enumerate() {
        if pf {
            prefetch_lines::<2, _>(x);
        }
        // SAFETY: the CPU has AVX2, F16C and FMA (this function is compiled for them).
        let (sc8, (dw, dmin)) = unsafe { (x.scales(), x.d()) };
        // The scales as i16 (Q3_K's signed, Q2_K's 0..16).
        let sc = _mm256_cvtepi8_epi16(sc8);
        let mut sum = [_mm512_setzero_si512(); NT];
        if W::OFFSET != 0 {
            for t in 0..NT {
                let off = offset_terms::<W>(sc, &a[t][b].bsums);
                sum[t] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(off));
            }
        }
        let scz = _mm512_castsi256_si512(sc);
        // SAFETY: `hmask` is 32 bytes; unaligned load.
        let hm = x.hmask().map(|h| unsafe {
            _mm512_broadcast_i64x4(_mm256_loadu_si256(h.as_ptr() as *const __m256i))
        });
        for (n, sidx) in idx.iter().enumerate() {
            // SAFETY: `qs[32n..32n + 32]` is in bounds (n < 2: `idx` has two entries); unaligned.
            let q = unsafe {
                _mm512_broadcast_i64x4(_mm256_loadu_si256(
                    x.qs().as_ptr().add(32 * n) as *const __m256i
                ))
            };
            let mut lo = _mm512_and_si512(_mm512_srlv_epi16(q, sh_lo), m3);
            let mut hi = _mm512_and_si512(_mm512_srlv_epi16(q, sh_hi), m3);
            if let Some(h) = hm {
                let (blo, bhi) = bits[n];
                lo = _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(h, blo), lo, four);
                hi = _mm512_mask_add_epi8(hi, _mm512_test_epi8_mask(h, bhi), hi, four);
            }
            let s = _mm512_permutexvar_epi16(*sidx, scz);
            for t in 0..NT {
                // SAFETY: `qs[128n..128n + 128]` is in bounds (n < 2); unaligned loads.
                let (alo, ahi) = unsafe {
                    let p = a[t][b].qs.as_ptr().add(128 * n) as *const __m512i;
                    (_mm512_loadu_si512(p), _mm512_loadu_si512(p.add(1)))
                };
                let z = _mm512_setzero_si512();
                let (dlo, dhi) = (
                    _mm512_dpbusd_epi32(z, lo, alo),
                    _mm512_dpbusd_epi32(z, hi, ahi),
                );
                sum[t] = _mm512_dpwssd_epi32(sum[t], _mm512_packs_epi32(dlo, dhi), s);
            }
        }
        let mn = if W::HAS_MIN {
            // SAFETY: as for `scales`.
            _mm256_cvtepu8_epi16(unsafe { x.mins() })
        } else {
            _mm256_setzero_si256()
        };
        for t in 0..NT {
            let da = a[t][b].d;
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[t]), _mm512_set1_ps(dw * da), acc[t]);
            if W::HAS_MIN {
                // SAFETY: `bsums` is 16 i16 = 32 bytes; unaligned load.
                let bs = unsafe { _mm256_loadu_si256(a[t][b].bsums.as_ptr() as *const __m256i) };
                let m = _mm512_zextsi256_si512(_mm256_madd_epi16(mn, bs));
                acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_set1_ps(dmin * da), acc[t]);
            }
        }
    }
    acc.map(|v| _mm512_reduce_add_ps(v))
}

/// The `GemvFn` `$gemv` and the `GemvMultiFn` `$multi` of the [`LowBitK16`] format `$b` (x Q8_K)
/// by [`rows_dot_k16`], on AVX-512 VNNI: one row after another, each token's bits the same alone
/// or with others (long rows in the multi-token call go one token at a time through `$gemv`).
macro_rules! k16_gemv_entries {
    ($b:ty, $gemv:ident, $multi:ident) => {
        /// `$b` weights x Q8_K activations (`GemvFn`), AVX-512 VNNI.
        fn $gemv(n: usize, w: Rows<u8>, a: &[u8], out: &mut [f32]) {
            let out = $crate::x86_64::gemv::check::<$b, BlockQ8_K>(n, &w, a, out);
            let a = cast_blocks::<BlockQ8_K>(a);
            for (r, o) in out.iter_mut().enumerate() {
                $crate::x86_64::debug_assert_vnni();
                // SAFETY: reachable only through the kernel table, filled with this kernel only
                // after detecting AVX2, FMA, F16C, AVX-512 F/BW/VL and VNNI; lengths checked above.
                *o = unsafe {
                    $crate::x86_64::gemv::k16::rows_dot_k16::<$b, 1>(cast_blocks(w.row(r)), [a])
                }[0];
            }
        }

        /// `$b` weights x up to four tokens' Q8_K activations (`GemvMultiFn`): `$gemv`'s bits per
        /// token, the weights unpacked once.
        fn $multi(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
            /// The rows of `w` against `NT` tokens.
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            fn run<const NT: usize>(w: Rows<u8>, a: [&[BlockQ8_K]; NT], out: &mut RowsMut<f32>) {
                for r in 0..w.n() {
                    $crate::x86_64::gemv::store_row(
                        out,
                        r,
                        $crate::x86_64::gemv::k16::rows_dot_k16::<$b, NT>(cast_blocks(w.row(r)), a),
                    );
                }
            }
            /// One row, one token, as `$gemv` computes it (the long-row path).
            fn one_row(n: usize, w: &[u8], a: &[u8]) -> f32 {
                let mut o = [0.0f32];
                $gemv(n, Rows::one(w), a, &mut o);
                o[0]
            }
            let runs = $crate::x86_64::gemv::multi_runs!(run, BlockQ8_K);
            $crate::x86_64::gemv::gemv_multi_with::<$b, BlockQ8_K>(
                n,
                w,
                a,
                out,
                one_row,
                runs,
                $crate::x86_64::debug_assert_vnni,
            );
        }
    };
}
pub(in crate::x86_64) use k16_gemv_entries;

/// The AVX2 body of the same formats (and their one-row `vec_dot`): per 32-element chunk j of
/// half n, the levels (two bits of `qs` shifted by 2j; Q3_K's third bit added as 4 where `hmask`
/// bit 4n + j is set) made once, then per token `maddubs` against the activations (|pair sum| <=
/// 2 * 7 * 128) and `madd` with the chunk's two group scales as i16 pairs; the offset and the mins
/// from the `bsums` as in [`rows_dot_k16`].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::x86_64) fn rows_dot_k16_avx2<W: LowBitK16, const NT: usize>(
    w: &[W],
    a: [&[BlockQ8_K]; NT],
) -> [f32; NT] {
    assert!(a.iter().all(|a| a.len() == w.len()));
    let m3 = _mm256_set1_epi8(3);
    let four = _mm256_set1_epi8(4);
    let mut acc = [_mm256_setzero_ps(); NT];
    for (b, x) in w.iter().enumerate() {
        prefetch_lines::<2, _>(x);
        // SAFETY: the CPU has AVX2, F16C and FMA (this function is compiled for them).
        let (sc8, (dw, dmin)) = unsafe { (x.scales(), x.d()) };
        let mut sum = [_mm256_setzero_si256(); NT];
        if W::OFFSET != 0 {
            let sc = _mm256_cvtepi8_epi16(sc8);
            for t in 0..NT {
                let off = offset_terms::<W>(sc, &a[t][b].bsums);
                sum[t] = _mm256_sub_epi32(_mm256_setzero_si256(), off);
            }
        }
        // SAFETY: `hmask` is 32 bytes; unaligned load.
        let hm = x
            .hmask()
            .map(|h| unsafe { _mm256_loadu_si256(h.as_ptr() as *const __m256i) });
        for n in 0..2 {
            // SAFETY: `qs[32n..32n + 32]` is in bounds (n < 2); unaligned load.
            let q = unsafe { _mm256_loadu_si256(x.qs().as_ptr().add(32 * n) as *const __m256i) };
            for j in 0..4 {
                let mut lv =
                    _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * j as i32)), m3);
                if let Some(h) = hm {
                    let bit = _mm256_set1_epi8((1u8 << (4 * n + j)) as i8);
                    let set = _mm256_cmpeq_epi8(_mm256_and_si256(h, bit), bit);
                    lv = _mm256_or_si256(lv, _mm256_and_si256(set, four));
                }
                // Chunk c = 4n + j's scales: i16 lanes 0..8 group 2c, 8..16 group 2c + 1.
                let sp = pair_scales(sc8, 2 * (4 * n + j));
                for t in 0..NT {
                    // SAFETY: `qs[128n + 32j..128n + 32j + 32]` is in bounds; unaligned load.
                    let av = unsafe {
                        _mm256_loadu_si256(
                            a[t][b].qs.as_ptr().add(128 * n + 32 * j) as *const __m256i
                        )
                    };
                    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(lv, av), sp);
                    sum[t] = _mm256_add_epi32(sum[t], p);
                }
            }
        }
        let mn = if W::HAS_MIN {
            // SAFETY: as for `scales`.
            _mm256_cvtepu8_epi16(unsafe { x.mins() })
        } else {
            _mm256_setzero_si256()
        };
        for t in 0..NT {
            let da = a[t][b].d;
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[t]), _mm256_set1_ps(dw * da), acc[t]);
            if W::HAS_MIN {
                // SAFETY: `bsums` is 16 i16 = 32 bytes; unaligned load.
                let bs = unsafe { _mm256_loadu_si256(a[t][b].bsums.as_ptr() as *const __m256i) };
                let m = _mm256_madd_epi16(mn, bs);
                acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(m), _mm256_set1_ps(dmin * da), acc[t]);
            }
        }
    }
    acc.map(|v| crate::x86_64::hsum_ps(v))
}

/// The AVX2 `VecDotFn` `$dot`, `GemvFn` `$gemv` and `GemvMultiFn` `$multi` of the [`LowBitK16`]
/// format `$b` by [`rows_dot_k16_avx2`] (the one-row dot is the mat-vec's bits).
macro_rules! k16_avx2_entries {
    ($b:ty, $dot:ident, $gemv:ident, $multi:ident) => {
        /// One `$b` row . Q8_K (AVX2).
        #[target_feature(enable = "avx2,fma,f16c")]
        fn one_row_avx2(w: &[$b], a: &[BlockQ8_K]) -> f32 {
            $crate::x86_64::gemv::k16::rows_dot_k16_avx2::<$b, 1>(w, [a])[0]
        }
        $crate::x86_64::block32::vec_dot_entry!(/// `$b` weights . Q8_K activations (AVX2).
            $dot, one_row_avx2, $b, BlockQ8_K, $crate::x86_64::debug_assert_avx2);

        /// The rows of `w` against `NT` tokens (AVX2).
        #[target_feature(enable = "avx2,fma,f16c")]
        fn run_avx2<const NT: usize>(w: Rows<u8>, a: [&[BlockQ8_K]; NT], out: &mut RowsMut<f32>) {
            for r in 0..w.n() {
                $crate::x86_64::gemv::store_row(
                    out,
                    r,
                    $crate::x86_64::gemv::k16::rows_dot_k16_avx2::<$b, NT>(cast_blocks(w.row(r)), a),
                );
            }
        }

        /// `$b` weights x Q8_K activations (`GemvFn`), AVX2.
        fn $gemv(n: usize, w: Rows<u8>, a: &[u8], out: &mut [f32]) {
            let out = $crate::x86_64::gemv::check::<$b, BlockQ8_K>(n, &w, a, out);
            $crate::x86_64::debug_assert_avx2();
            let a = cast_blocks::<BlockQ8_K>(a);
            // SAFETY: reachable only through the kernel table, filled with this kernel only after
            // detecting AVX2, FMA and F16C; lengths checked above.
            unsafe { run_avx2::<1>(w, [a], &mut RowsMut::one(out)) }
        }

        /// `$b` weights x up to four tokens' Q8_K activations (`GemvMultiFn`), AVX2: `$gemv`'s
        /// bits per token, the levels made once.
        fn $multi(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
            let runs = $crate::x86_64::gemv::multi_runs!(run_avx2, BlockQ8_K);
            $crate::x86_64::gemv::gemv_multi_with::<$b, BlockQ8_K>(
                n,
                w,
                a,
                out,
                $dot,
                runs,
                $crate::x86_64::debug_assert_avx2,
            );
        }
    };
}
pub(in crate::x86_64) use k16_avx2_entries;

//! AVX2 activation quantizers (`from_float`) for Q8_0, Q8_1 and Q8_K.
//!
//! Byte-identical with the scalar `from_float_*` / `quantize_row_q8_k_ref`: the same f32 operations
//! in the same order per element (one multiply, then round half to even with `_mm256_round_ps`,
//! which is what `round_ties_even` and ggml's `nearest_int` do in range), and the scales converted to
//! f16 with round-to-nearest-even as `scalar::f32_to_f16` does.

use std::arch::x86_64::*;

use super::{f2h, hsum_epi32, quant_blocks, AVX2};
use crate::blocks::{BlockQ8_0, BlockQ8_1, BlockQ8_K, QK, QK_K};
use crate::dispatch::{offer, Offer, OfferedKernel as K};
use crate::types::GgmlType;

/// The activation quantizers.
pub(super) const OFFERS: &[Offer] = {
    use GgmlType as T;
    &[
        offer(T::Q8_0, T::Q8_0, AVX2, K::FromFloat(from_float_q8_0)),
        offer(T::Q8_1, T::Q8_1, AVX2, K::FromFloat(from_float_q8_1)),
        offer(T::Q8_K, T::Q8_K, AVX2, K::FromFloat(from_float_q8_k)),
    ]
};

/// Loads 8 floats.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load8(x: &[f32]) -> __m256 {
    assert!(x.len() >= 8);
    // SAFETY: 8 floats are readable (checked above); unaligned load.
    unsafe { _mm256_loadu_ps(x.as_ptr()) }
}

/// Largest lane.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hmax_ps(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_extractf128_ps::<1>(v), _mm256_castps256_ps128(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_movehdup_ps(m));
    _mm_cvtss_f32(m)
}

/// |x| lane-wise.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn abs_ps(v: __m256) -> __m256 {
    _mm256_andnot_ps(_mm256_set1_ps(-0.0), v)
}

/// Rounds 32 floats times `mul` to nearest even and packs them to 32 signed bytes in order.
/// Also returns the i32 lane sums (for Q8_1's `s`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn round_pack(v: [__m256; 4], mul: __m256) -> (__m256i, __m256i) {
    let r = |x: __m256| {
        _mm256_cvtps_epi32(_mm256_round_ps::<
            { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
        >(_mm256_mul_ps(x, mul)))
    };
    let (i0, i1, i2, i3) = (r(v[0]), r(v[1]), r(v[2]), r(v[3]));
    let sum = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
    // packs work per 128-bit lane: 0-3 8-11 | 4-7 12-15 ...; the permute restores the order.
    let p01 = _mm256_packs_epi32(i0, i1);
    let p23 = _mm256_packs_epi32(i2, i3);
    let p = _mm256_packs_epi16(p01, p23);
    let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    (p, sum)
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn store32(dst: &mut [i8; 32], v: __m256i) {
    // SAFETY: `dst` is 32 writable bytes; unaligned store.
    unsafe { _mm256_storeu_si256(dst.as_mut_ptr() as *mut __m256i, v) }
}

/// Loads a 32-float block and its amax.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_block32(xb: &[f32]) -> ([__m256; 4], f32) {
    let v = [
        load8(&xb[0..]),
        load8(&xb[8..]),
        load8(&xb[16..]),
        load8(&xb[24..]),
    ];
    let m = _mm256_max_ps(
        _mm256_max_ps(abs_ps(v[0]), abs_ps(v[1])),
        _mm256_max_ps(abs_ps(v[2]), abs_ps(v[3])),
    );
    (v, hmax_ps(m))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let (v, amax) = load_block32(xb);
        let d = amax / 127.0;
        let id = crate::scalar::q8_0::act_multiplier(amax);
        yb.d = f2h(d);
        let (q, _) = round_pack(v, _mm256_set1_ps(id));
        store32(&mut yb.qs, q);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let (v, amax) = load_block32(xb);
        let d = amax / 127.0;
        let id = crate::scalar::q8_0::act_multiplier(amax);
        yb.d = f2h(d);
        let (q, sum) = round_pack(v, _mm256_set1_ps(id));
        store32(&mut yb.qs, q);
        yb.s = f2h(d * hsum_epi32(sum) as f32);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q8_k(x: &[f32], y: &mut [BlockQ8_K]) {
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut m = _mm256_setzero_ps();
        for c in xb.chunks_exact(8) {
            m = _mm256_max_ps(m, abs_ps(load8(c)));
        }
        let amax = hmax_ps(m);
        if amax == 0.0 {
            yb.d = 0.0;
            yb.qs = [0; QK_K];
            yb.bsums = [0; QK_K / 16];
            continue;
        }
        // The signed value of largest magnitude, first one in order (the scalar loop keeps the
        // first strict maximum).
        let target = _mm256_set1_ps(amax);
        let mut max = amax;
        for (i, c) in xb.chunks_exact(8).enumerate() {
            let hits = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(abs_ps(load8(c)), target));
            if hits != 0 {
                max = xb[i * 8 + hits.trailing_zeros() as usize];
                break;
            }
        }
        let iscale = -127.0 / max;
        if !iscale.is_finite() {
            // A block of values below ~1e-37: the reference's nearest_int trick turns the
            // infinite products into 0 (and d into -0.0); do the same.
            yb.d = 1.0 / iscale;
            yb.qs = [0; QK_K];
            yb.bsums = [0; QK_K / 16];
            continue;
        }
        let mul = _mm256_set1_ps(iscale);
        let cap = _mm256_set1_epi8(127);
        for (j, (xc, qc)) in xb
            .chunks_exact(32)
            .zip(yb.qs.chunks_exact_mut(32))
            .enumerate()
        {
            let v = [
                load8(&xc[0..]),
                load8(&xc[8..]),
                load8(&xc[16..]),
                load8(&xc[24..]),
            ];
            let (q, _) = round_pack(v, mul);
            let q = _mm256_min_epi8(q, cap);
            let qc: &mut [i8; 32] = qc.try_into().expect("chunks_exact(32)");
            store32(qc, q);
            // bsums: sad of (q + 128) against 0 sums 8 bytes per u64 lane.
            let sad = _mm256_sad_epu8(
                _mm256_xor_si256(q, _mm256_set1_epi8(-128)),
                _mm256_setzero_si256(),
            );
            let mut lanes = [0i64; 4];
            // SAFETY: `lanes` is 32 writable bytes; unaligned store.
            unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, sad) };
            yb.bsums[2 * j] = (lanes[0] + lanes[1] - 16 * 128) as i16;
            yb.bsums[2 * j + 1] = (lanes[2] + lanes[3] - 16 * 128) as i16;
        }
        yb.d = 1.0 / iscale;
    }
}

/// Q8_0 activations: d = amax / 127, q = round_half_even(x * 127 / amax).
pub(super) fn from_float_q8_0(x: &[f32], out: &mut [u8]) {
    let y = quant_blocks::<BlockQ8_0>(x, out);
    crate::x86_64::debug_assert_avx2();
    // SAFETY: reachable only through the kernel table, filled after detecting AVX2, FMA and F16C.
    unsafe { q8_0(x, y) }
}

/// Q8_1 activations: as Q8_0 plus s = f16(d * sum(q)).
pub(super) fn from_float_q8_1(x: &[f32], out: &mut [u8]) {
    let y = quant_blocks::<BlockQ8_1>(x, out);
    crate::x86_64::debug_assert_avx2();
    // SAFETY: reachable only through the kernel table, filled after detecting AVX2, FMA and F16C.
    unsafe { q8_1(x, y) }
}

/// Q8_K activations: iscale = -127 / max (signed), q = min(127, nearest_int(iscale * x)), bsums.
pub(super) fn from_float_q8_k(x: &[f32], out: &mut [u8]) {
    let y = quant_blocks::<BlockQ8_K>(x, out);
    crate::x86_64::debug_assert_avx2();
    // SAFETY: reachable only through the kernel table, filled after detecting AVX2, FMA and F16C.
    unsafe { q8_k(x, y) }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::Lcg;
    use super::*;
    use crate::blocks::as_bytes;
    use crate::scalar;

    /// Rows that stress rounding: random, ties (multiples of 1/2 with amax 127), zeros, outliers,
    /// tiny values, all negative.
    fn rows(len: usize) -> Vec<Vec<f32>> {
        let mut rng = Lcg(77);
        let mut out = vec![
            rng.f32s(len, 1.0),
            rng.f32s(len, 3e4),
            vec![0.0; len],
            rng.f32s(len, 1e-6),
        ];
        let mut ties: Vec<f32> = (0..len)
            .map(|j| (j * 5 % 254) as f32 - 127.0 + 0.5)
            .collect();
        for (j, t) in ties.iter_mut().enumerate() {
            if j % 32 == 0 {
                *t = 127.0;
            }
        }
        out.push(ties);
        let mut outlier = rng.f32s(len, 0.01);
        outlier[len / 3] = 1000.0;
        outlier[len / 2] = -1000.0;
        out.push(outlier);
        out.push(
            rng.f32s(len, 1.0)
                .iter()
                .map(|v| -(v.abs() + 0.05))
                .collect(),
        );
        let mut mixed = rng.f32s(len, 1.0);
        mixed[5] = -2.0;
        mixed[9] = 2.0;
        out.push(mixed);
        out
    }

    #[test]
    fn q8_0_bytes_match_scalar() {
        if !super::super::has_avx2() {
            return;
        }
        for x in rows(32 * 9) {
            let mut want = vec![
                BlockQ8_0 {
                    d: half::f16::ZERO,
                    qs: [0; 32]
                };
                9
            ];
            scalar::q8_0::from_float_q8_0(&x, &mut want);
            let mut got = vec![0u8; 9 * 34];
            from_float_q8_0(&x, &mut got);
            assert_eq!(got, as_bytes(&want));
        }
    }

    #[test]
    fn q8_1_bytes_match_scalar() {
        if !super::super::has_avx2() {
            return;
        }
        for x in rows(32 * 9) {
            let mut want = vec![
                BlockQ8_1 {
                    d: half::f16::ZERO,
                    s: half::f16::ZERO,
                    qs: [0; 32]
                };
                9
            ];
            scalar::q8_1::from_float_q8_1(&x, &mut want);
            let mut got = vec![0u8; 9 * 36];
            from_float_q8_1(&x, &mut got);
            assert_eq!(got, as_bytes(&want));
        }
    }

    #[test]
    fn q8_k_bytes_match_scalar() {
        if !super::super::has_avx2() {
            return;
        }
        for x in rows(256 * 3) {
            let mut want = vec![
                BlockQ8_K {
                    d: 0.0,
                    qs: [0; 256],
                    bsums: [0; 16]
                };
                3
            ];
            scalar::q8_k::quantize_row_q8_k_ref(&x, &mut want);
            // 4-byte aligned output, as ActBuf provides.
            let mut buf = vec![0u32; 3 * 292 / 4];
            // SAFETY: u32 storage viewed as bytes; exact length, no padding.
            let got =
                unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut u8, 3 * 292) };
            from_float_q8_k(&x, got);
            assert_eq!(&got[..], as_bytes(&want));
        }
    }
}

//! AVX2+FMA dot products of float weight rows (F32, F16 via F16C, BF16) with f32 activations;
//! also `multi_dot_f16` (attention over an F16 cache) and `swiglu`.
//!
//! Four independent 8-lane FMA accumulators (32 elements per step), then the tail in scalar f32.
//! The scalar reference sums in f64, so results agree to within f32 accumulation error.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::prefetch::{gemv_streams_prefetch, prefetch_lines};
use super::{hsum_ps, row_blocks, AVX2};
use crate::dispatch::{offer, Offer, OfferedKernel as K};
use crate::types::GgmlType;
use crate::views::{Rows, RowsMut};

/// The float kernels: one-row dots of F32, F16 and BF16 rows x f32, and the F16 multi-vector dot.
pub(super) const OFFERS: &[Offer] = {
    use GgmlType as T;
    &[
        offer(T::F32, T::F32, AVX2, K::VecDot(vec_dot_f32)),
        offer(T::F16, T::F32, AVX2, K::VecDot(vec_dot_f16_f32)),
        offer(T::F16, T::F32, AVX2, K::MultiDot(multi_dot_f16)),
        offer(T::BF16, T::F32, AVX2, K::VecDot(vec_dot_bf16_f32)),
    ]
};

/// Generic body: `load(i)` yields the 8 weights starting at element i as f32; `pf(i)` prefetches
/// ahead of the 32 weights from element i.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_with(
    n: usize,
    a: &[f32],
    load: impl Fn(usize) -> __m256,
    tail: impl Fn(usize) -> f32,
    pf: impl Fn(usize),
) -> f32 {
    assert!(a.len() >= n);
    let la = |i: usize| {
        // SAFETY: i + 8 <= n <= a.len() at every call below; unaligned load.
        unsafe { _mm256_loadu_ps(a.as_ptr().add(i)) }
    };
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        pf(i);
        for (k, acc) in acc.iter_mut().enumerate() {
            *acc = _mm256_fmadd_ps(load(i + 8 * k), la(i + 8 * k), *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(load(i), la(i), acc[0]);
        i += 8;
    }
    let mut sum = hsum_ps(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    ));
    while i < n {
        sum += tail(i) * a[i];
        i += 1;
    }
    sum
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_f32(w: &[f32], a: &[f32]) -> f32 {
    let pf = gemv_streams_prefetch();
    let n = w.len();
    dot_with(
        n,
        a,
        |i| {
            assert!(i + 8 <= w.len());
            // SAFETY: checked above; unaligned load.
            unsafe { _mm256_loadu_ps(w.as_ptr().add(i)) }
        },
        |i| w[i],
        |i| {
            if pf {
                prefetch_lines::<2, _>(w.as_ptr().wrapping_add(i))
            }
        },
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_f16(w: &[f16], a: &[f32]) -> f32 {
    let pf = gemv_streams_prefetch();
    let n = w.len();
    dot_with(
        n,
        a,
        |i| {
            assert!(i + 8 <= w.len());
            // SAFETY: checked above: 8 halves (16 bytes) readable; unaligned load.
            _mm256_cvtph_ps(unsafe { _mm_loadu_si128(w.as_ptr().add(i) as *const __m128i) })
        },
        |i| w[i].to_f32(),
        |i| {
            if pf {
                prefetch_lines::<1, _>(w.as_ptr().wrapping_add(i))
            }
        },
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_bf16(w: &[bf16], a: &[f32]) -> f32 {
    let pf = gemv_streams_prefetch();
    let n = w.len();
    dot_with(
        n,
        a,
        |i| {
            assert!(i + 8 <= w.len());
            // SAFETY: checked above: 8 bf16 (16 bytes) readable; unaligned load.
            let h = unsafe { _mm_loadu_si128(w.as_ptr().add(i) as *const __m128i) };
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
        },
        |i| w[i].to_f32(),
        |i| {
            if pf {
                prefetch_lines::<1, _>(w.as_ptr().wrapping_add(i))
            }
        },
    )
}

/// F32 weights . f32 activations.
pub(super) fn vec_dot_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = row_blocks::<f32, f32>(n, w, a);
    crate::x86_64::debug_assert_avx2();
    // SAFETY: reachable only through the kernel table, filled after detecting AVX2, FMA and F16C.
    unsafe { dot_f32(w, a) }
}

/// F16 weights . f32 activations.
pub(super) fn vec_dot_f16_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = row_blocks::<f16, f32>(n, w, a);
    crate::x86_64::debug_assert_avx2();
    // SAFETY: reachable only through the kernel table, filled after detecting AVX2, FMA and F16C.
    unsafe { dot_f16(w, a) }
}

/// BF16 weights . f32 activations.
pub(super) fn vec_dot_bf16_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = row_blocks::<bf16, f32>(n, w, a);
    crate::x86_64::debug_assert_avx2();
    // SAFETY: reachable only through the kernel table, filled after detecting AVX2, FMA and F16C.
    unsafe { dot_bf16(w, a) }
}

/// `NG` (<= `MULTI_DOT_GROUP`) vectors against every row: each 8 halves of a row are widened once and FMA'd into
/// the `NG` accumulators, then each (vector, row) sum is reduced.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn multi_rows_f16<const NG: usize>(rows: Rows<u8>, x: Rows<f32>, mut out: RowsMut<f32>) {
    let len = x.row_len();
    let xs: [&[f32]; NG] = x.first();
    for i in 0..rows.n() {
        let row = rows.row(i);
        let mut acc = [_mm256_setzero_ps(); NG];
        let mut k = 0;
        while k + 8 <= len {
            // SAFETY: 2 * (k + 8) <= 2 * len = row.len(); unaligned load.
            let rv = _mm256_cvtph_ps(unsafe {
                _mm_loadu_si128(row.as_ptr().add(2 * k) as *const __m128i)
            });
            for (a, xg) in acc.iter_mut().zip(&xs) {
                let xk = &xg[k..k + 8];
                // SAFETY: `xk` is 8 readable floats; unaligned load.
                *a = _mm256_fmadd_ps(rv, unsafe { _mm256_loadu_ps(xk.as_ptr()) }, *a);
            }
            k += 8;
        }
        let mut tail = [0.0f32; NG];
        while k < len {
            let r = f16::from_le_bytes([row[2 * k], row[2 * k + 1]]).to_f32();
            for (t, xg) in tail.iter_mut().zip(&xs) {
                *t += r * xg[k];
            }
            k += 1;
        }
        for g in 0..NG {
            out.row_mut(g)[i] = hsum_ps(acc[g]) + tail[g];
        }
    }
}

/// F16 rows . several f32 vectors (`MultiDotFn`), in groups of up to `MULTI_DOT_GROUP` vectors.
pub(super) fn multi_dot_f16(rows: Rows<u8>, x: Rows<f32>, out: RowsMut<f32>) {
    crate::dispatch::multi_dot_groups(2, rows, x, out, |x, out| {
        crate::x86_64::debug_assert_avx2();
        // SAFETY: reachable only through the kernel table, filled after detecting AVX2, FMA and
        // F16C; the views were checked by `multi_dot_groups`, and every access inside is
        // bounds-checked.
        unsafe { crate::dispatch::by_group_size!(x.n(), multi_rows_f16(rows, x, out)) }
    });
}

/// `a = silu(a) * b` on AVX2+FMA: [`crate::vecmath::swiglu_lanes`] compiled as 256-bit vectors
/// (a polynomial e^x instead of libm's, within 2 ulp of it).
pub(super) fn swiglu(a: &mut [f32], b: &[f32]) {
    #[target_feature(enable = "avx2,fma")]
    fn inner(a: &mut [f32], b: &[f32]) {
        crate::vecmath::swiglu_lanes(a, b)
    }
    // SAFETY: installed in the table only after AVX2 and FMA were detected.
    unsafe { inner(a, b) }
}

/// [`crate::scalar::ops::flash_step_f16`] with F16C conversions and FMA, 8 elements per step (the
/// tail element by element with the same arithmetic): bit-identical to the reference.
pub(super) fn flash_step_f16(acc: &mut [f16], v: &[f16], ms: f32, vs: f32) {
    assert_eq!(
        acc.len(),
        v.len(),
        "flash step: accumulator and value lengths differ"
    );
    #[target_feature(enable = "avx2,fma,f16c")]
    fn inner(acc: &mut [f16], v: &[f16], ms: f32, vs: f32) {
        const RN: i32 = _MM_FROUND_TO_NEAREST_INT;
        let scale = ms != 1.0;
        let (vms, vvs) = (_mm256_set1_ps(ms), _mm256_set1_ps(vs));
        let mut ac = acc.chunks_exact_mut(8);
        let mut vc = v.chunks_exact(8);
        for (a8, v8) in (&mut ac).zip(&mut vc) {
            // SAFETY: a8 and v8 are 8 f16 (16 bytes) each; unaligned loads and stores.
            unsafe {
                let pa = a8.as_mut_ptr() as *mut __m128i;
                let mut a = _mm256_cvtph_ps(_mm_loadu_si128(pa));
                if scale {
                    a = _mm256_cvtph_ps(_mm256_cvtps_ph::<RN>(_mm256_mul_ps(a, vms)));
                }
                let x = _mm256_cvtph_ps(_mm_loadu_si128(v8.as_ptr() as *const __m128i));
                _mm_storeu_si128(pa, _mm256_cvtps_ph::<RN>(_mm256_fmadd_ps(x, vvs, a)));
            }
        }
        for (a, &x) in ac.into_remainder().iter_mut().zip(vc.remainder()) {
            let mut y = a.to_f32();
            if scale {
                y = f16::from_f32(y * ms).to_f32();
            }
            *a = f16::from_f32(x.to_f32().mul_add(vs, y));
        }
    }
    // SAFETY: installed in the table only after AVX2, FMA and F16C were detected.
    unsafe { inner(acc, v, ms, vs) }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{close, Lcg};
    use super::*;
    use crate::blocks::as_bytes;
    use crate::scalar;

    #[test]
    fn float_rows_match_scalar() {
        if !super::super::has_avx2() {
            return;
        }
        let mut rng = Lcg(5);
        for n in [1usize, 7, 8, 31, 32, 33, 100, 2048, 2051] {
            let wf = rng.f32s(n, 2.0);
            let a = rng.f32s(n, 1.0);
            let tol = 1e-6 * n as f32 * 2.0;
            let want = scalar::float::vec_dot_f32(&wf, &a);
            let got = vec_dot_f32(n, as_bytes(&wf), as_bytes(&a));
            assert!(close(got, want, tol), "f32 n={n}: {got} vs {want}");

            let wh: Vec<f16> = wf.iter().map(|&v| f16::from_f32(v)).collect();
            let want = scalar::float::vec_dot_f16_f32(&wh, &a);
            let got = vec_dot_f16_f32(n, as_bytes(&wh), as_bytes(&a));
            assert!(close(got, want, tol), "f16 n={n}: {got} vs {want}");

            let wb: Vec<bf16> = wf.iter().map(|&v| bf16::from_f32(v)).collect();
            let want = scalar::float::vec_dot_bf16_f32(&wb, &a);
            let got = vec_dot_bf16_f32(n, as_bytes(&wb), as_bytes(&a));
            assert!(close(got, want, tol), "bf16 n={n}: {got} vs {want}");
        }
    }
}

//! AVX2+FMA dot products of float weight rows (F32, F16 via F16C, BF16) with f32 activations;
//! also `multi_dot_f16` (attention over an F16 cache) and `swiglu`.
//!
//! Four independent 8-lane FMA accumulators (32 elements per step), then the tail in scalar f32.
//! The scalar reference sums in f64, so results agree to within f32 accumulation error.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::prefetch::{gemv_streams_prefetch, prefetch_lines};
use super::{hsum_ps, row_blocks, AVX2, VNNI};
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
        offer(T::F16, T::F32, VNNI, K::MultiDot(multi_dot_f16_512)),
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

/// Vectors per pass of [`multi_rows_f16`]: with two rows per step, 2 x 4 accumulators, the two
/// widened rows and one vector fit the 16 registers.
const PASS: usize = 4;

/// `NG` (<= [`PASS`]) vectors against every row, two rows per step: each 8 halves of the two rows
/// are widened once and each 8 floats of a vector loaded once for both rows (11 loads per 14 FMAs
/// for a group of 7 vectors in two passes, against 16 with one row per step: the loads, not the
/// FMAs, bounded the one-row loop). The vectors are read through raw pointers, so accumulators,
/// pointers and index stay in registers; the 2 x `NG` sums of a step are reduced together by a
/// tree of `hadd`s (9 instructions for 8 sums, against 6 per sum one by one).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn multi_rows_f16<const NG: usize>(rows: Rows<u8>, x: Rows<f32>, mut out: RowsMut<f32>) {
    const { assert!(NG <= PASS) };
    let len = x.row_len();
    let len8 = len / 8 * 8;
    let xs: [&[f32]; NG] = x.first();
    let xp: [*const f32; NG] = std::array::from_fn(|g| xs[g].as_ptr());
    assert!(out.n() == NG && out.row_len() == rows.n());
    let (ostride, op) = (out.stride(), out.as_mut_ptr());
    let mut i = 0;
    while i < rows.n() {
        let two = i + 1 < rows.n();
        let r0 = rows.row(i);
        let r1 = rows.row(if two { i + 1 } else { i });
        assert!(r0.len() >= 2 * len && r1.len() >= 2 * len);
        let (p0, p1) = (r0.as_ptr(), r1.as_ptr());
        // acc[g] for row i, acc[PASS + g] for row i + 1.
        let mut acc = [_mm256_setzero_ps(); 2 * PASS];
        let mut k = 0;
        while k < len8 {
            // SAFETY: k + 8 <= len8 <= len: both rows have 2 * len bytes (asserted)
            // and every vector `len` floats (`Rows::first`); unaligned loads.
            unsafe {
                let a = _mm256_cvtph_ps(_mm_loadu_si128(p0.add(2 * k) as *const __m128i));
                let b = _mm256_cvtph_ps(_mm_loadu_si128(p1.add(2 * k) as *const __m128i));
                for g in 0..NG {
                    let xv = _mm256_loadu_ps(xp[g].add(k));
                    acc[g] = _mm256_fmadd_ps(a, xv, acc[g]);
                    acc[PASS + g] = _mm256_fmadd_ps(b, xv, acc[PASS + g]);
                }
            }
            k += 8;
        }
        // Lane j of `sums` is the sum of acc[j]'s lanes.
        let h = [
            _mm256_hadd_ps(acc[0], acc[1]),
            _mm256_hadd_ps(acc[2], acc[3]),
            _mm256_hadd_ps(acc[4], acc[5]),
            _mm256_hadd_ps(acc[6], acc[7]),
        ];
        let (h01, h23) = (_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));
        let sums = _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(h01, h23),
            _mm256_permute2f128_ps::<0x31>(h01, h23),
        );
        let mut s = [0.0f32; 2 * PASS];
        // SAFETY: `s` is 8 writable floats; unaligned store.
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), sums) };
        if len8 < len {
            for (j, row) in [r0, r1].into_iter().enumerate() {
                for k in len8..len {
                    let r = f16::from_le_bytes([row[2 * k], row[2 * k + 1]]).to_f32();
                    for (g, xg) in xs.iter().enumerate() {
                        s[j * PASS + g] += r * xg[k];
                    }
                }
            }
        }
        for j in 0..1 + two as usize {
            for g in 0..NG {
                // SAFETY: g < NG = out.n() and i + j < rows.n() = out.row_len()
                // (asserted): inside row g of the view.
                unsafe { *op.add(g * ostride + i + j) = s[j * PASS + g] };
            }
        }
        i += 2;
    }
}

/// F16 rows . several f32 vectors (`MultiDotFn`), in passes of up to [`PASS`] vectors (7 as 4 + 3).
pub(super) fn multi_dot_f16(rows: Rows<u8>, x: Rows<f32>, mut out: RowsMut<f32>) {
    crate::dispatch::check_multi_dot_args(2, &rows, &x, &out);
    crate::x86_64::debug_assert_avx2();
    let mut g0 = 0;
    while g0 < x.n() {
        let left = x.n() - g0;
        // Balanced passes: 5 as 3 + 2, 7 as 4 + 3.
        let ng = left.div_ceil(left.div_ceil(PASS));
        let (xg, og) = (x.rows(g0, ng), out.rows_mut(g0, ng));
        // SAFETY: reachable only through the kernel table, filled after detecting AVX2, FMA and
        // F16C; the views were checked above, and every access inside is bounds-checked.
        unsafe {
            match ng {
                1 => multi_rows_f16::<1>(rows, xg, og),
                2 => multi_rows_f16::<2>(rows, xg, og),
                3 => multi_rows_f16::<3>(rows, xg, og),
                _ => multi_rows_f16::<4>(rows, xg, og),
            }
        }
        g0 += ng;
    }
}

/// Columns per block of [`multi_rows_f16_512`]: a block's slice of up to 8 vectors (16 KiB)
/// stays in L1 while every row passes over it (the transposed values of a long context against
/// the attention weights: 64 rows of thousands of columns).
const COLS: usize = 512;

/// Rows of one block that [`multi_rows_f16_512`] prefetches ahead (short rows: about the memory
/// latency's worth of steps).
const AHEAD: usize = 32;

/// The 16 lanes' sums of 16 vectors: lane i of the result is the sum of `v[i]`'s lanes, in 45
/// instructions (unpack and add pairs within 128-bit lanes, then across them).
#[target_feature(enable = "avx512f")]
#[inline]
fn reduce16(v: &[__m512; 16]) -> __m512 {
    let t: [__m512; 4] = std::array::from_fn(|m| {
        let b = 4 * m;
        quad512(pair512(v[b], v[b + 1]), pair512(v[b + 2], v[b + 3]))
    });
    lanes512(lanes512(t[0], t[1]), lanes512(t[2], t[3]))
}

/// Per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3].
#[target_feature(enable = "avx512f")]
#[inline]
fn pair512(a: __m512, b: __m512) -> __m512 {
    _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b))
}

/// From two [`pair512`]s: per 128-bit lane, [a, b, c, d]'s partial sums of that lane.
#[target_feature(enable = "avx512f")]
#[inline]
fn quad512(ab: __m512, cd: __m512) -> __m512 {
    let (ab, cd) = (_mm512_castps_pd(ab), _mm512_castps_pd(cd));
    _mm512_add_ps(
        _mm512_castpd_ps(_mm512_unpacklo_pd(ab, cd)),
        _mm512_castpd_ps(_mm512_unpackhi_pd(ab, cd)),
    )
}

/// [a.l0 + a.l1, a.l2 + a.l3, b.l0 + b.l1, b.l2 + b.l3] of 128-bit lanes.
#[target_feature(enable = "avx512f")]
#[inline]
fn lanes512(a: __m512, b: __m512) -> __m512 {
    _mm512_add_ps(
        _mm512_shuffle_f32x4::<0x88>(a, b),
        _mm512_shuffle_f32x4::<0xDD>(a, b),
    )
}

/// AVX-512: `NG` (<= 8) vectors against every row, two rows per step, 2 x 8 accumulators of 16
/// lanes reduced together ([`reduce16`]) into the step's 16 sums. Rows longer than [`COLS`] go in
/// blocks of columns, each block's sums added to the output, so the vectors' block stays in L1;
/// the rows' next block is prefetched meanwhile (each row is its own stream there, too short for
/// the hardware prefetcher). Tails are masked loads.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[inline]
fn multi_rows_f16_512<const NG: usize>(rows: Rows<u8>, x: Rows<f32>, mut out: RowsMut<f32>) {
    const { assert!(NG >= 1 && NG <= 8) };
    let len = x.row_len();
    let xs: [&[f32]; NG] = x.first();
    assert!(out.n() == NG && out.row_len() == rows.n());
    let (ostride, op) = (out.stride(), out.as_mut_ptr());
    let prefetch = len > COLS;
    // The block's vectors side by side ([NG][COLS], zero past the block's end): one base
    // register and constant offsets address them all.
    let mut xb = XBlock([0.0; 8 * COLS]);
    let mut c0 = 0;
    loop {
        let c1 = len.min(c0 + COLS);
        for (g, xg) in xs.iter().enumerate() {
            xb.0[g * COLS..g * COLS + c1 - c0].copy_from_slice(&xg[c0..c1]);
        }
        let xp = xb.0.as_ptr();
        let mut i = 0;
        while i < rows.n() {
            let two = i + 1 < rows.n();
            let r0 = rows.row(i);
            let r1 = rows.row(if two { i + 1 } else { i });
            assert!(r0.len() >= 2 * len && r1.len() >= 2 * len);
            let (p0, p1) = (r0.as_ptr(), r1.as_ptr());
            if !prefetch && i + AHEAD + 1 < rows.n() {
                // Short rows (the keys of a context, one after another): the rows AHEAD on.
                let (f0, f1) = (
                    rows.row(i + AHEAD).as_ptr(),
                    rows.row(i + AHEAD + 1).as_ptr(),
                );
                for l in (0..2 * len).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(f0.wrapping_add(l) as *const i8);
                    _mm_prefetch::<_MM_HINT_T0>(f1.wrapping_add(l) as *const i8);
                }
            }
            // acc[g] for row i, acc[8 + g] for row i + 1 (unused ones stay zero).
            let mut acc = [_mm512_setzero_ps(); 16];
            let mut k = c0;
            while k + 16 <= c1 {
                // SAFETY: k + 16 <= c1 <= len: both rows have 2 * len bytes (asserted), and
                // g * COLS + k - c0 + 16 <= 8 * COLS floats of `xb`; unaligned loads. The
                // prefetch addresses are computed with wrapping arithmetic.
                unsafe {
                    if prefetch {
                        _mm_prefetch::<_MM_HINT_T0>(p0.wrapping_add(2 * (k + COLS)) as *const i8);
                        _mm_prefetch::<_MM_HINT_T0>(p1.wrapping_add(2 * (k + COLS)) as *const i8);
                    }
                    let a = _mm512_cvtph_ps(_mm256_loadu_si256(p0.add(2 * k) as *const __m256i));
                    let b = _mm512_cvtph_ps(_mm256_loadu_si256(p1.add(2 * k) as *const __m256i));
                    for g in 0..NG {
                        let xv = _mm512_loadu_ps(xp.add(g * COLS + k - c0));
                        acc[g] = _mm512_fmadd_ps(a, xv, acc[g]);
                        acc[8 + g] = _mm512_fmadd_ps(b, xv, acc[8 + g]);
                    }
                }
                k += 16;
            }
            if k < c1 {
                let m: __mmask16 = (1u32 << (c1 - k)) as u16 - 1;
                // SAFETY: as above for the c1 - k < 16 elements the mask selects of the rows
                // (masked-off elements are not read and cannot fault); `xb` has the 16 floats.
                unsafe {
                    let a =
                        _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p0.add(2 * k) as *const i16));
                    let b =
                        _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p1.add(2 * k) as *const i16));
                    for g in 0..NG {
                        let xv = _mm512_loadu_ps(xp.add(g * COLS + k - c0));
                        acc[g] = _mm512_fmadd_ps(a, xv, acc[g]);
                        acc[8 + g] = _mm512_fmadd_ps(b, xv, acc[8 + g]);
                    }
                }
            }
            let mut s = [0.0f32; 16];
            // SAFETY: `s` is 16 writable floats; unaligned store.
            unsafe { _mm512_storeu_ps(s.as_mut_ptr(), reduce16(&acc)) };
            for j in 0..1 + two as usize {
                for g in 0..NG {
                    // SAFETY: g < NG = out.n() and i + j < rows.n() = out.row_len()
                    // (asserted): inside row g of the view.
                    unsafe {
                        let o = op.add(g * ostride + i + j);
                        *o = if c0 == 0 {
                            s[8 * j + g]
                        } else {
                            *o + s[8 * j + g]
                        };
                    }
                }
            }
            i += 2;
        }
        c0 = c1;
        if c0 >= len {
            break;
        }
        // The last block may be shorter: what it does not overwrite must read as zeros.
        if len - c0 < COLS {
            for g in 0..NG {
                xb.0[g * COLS..(g + 1) * COLS].fill(0.0);
            }
        }
    }
}

/// [`multi_rows_f16_512`]'s copy of a block of the vectors, cache-line aligned.
#[repr(align(64))]
struct XBlock([f32; 8 * COLS]);

/// F16 rows . several f32 vectors (`MultiDotFn`) on AVX-512, in passes of up to 8 vectors.
pub(super) fn multi_dot_f16_512(rows: Rows<u8>, x: Rows<f32>, mut out: RowsMut<f32>) {
    crate::dispatch::check_multi_dot_args(2, &rows, &x, &out);
    crate::x86_64::debug_assert_vnni();
    let mut g0 = 0;
    while g0 < x.n() {
        let left = x.n() - g0;
        // Balanced passes: 12 as 6 + 6.
        let ng = left.div_ceil(left.div_ceil(8));
        let (xg, og) = (x.rows(g0, ng), out.rows_mut(g0, ng));
        // SAFETY: reachable only through the kernel table, filled after detecting AVX-512 F, BW
        // and VL (with VNNI) and the AVX2 set; the views were checked above, and every access
        // inside is bounds-checked or masked.
        unsafe {
            match ng {
                1 => multi_rows_f16_512::<1>(rows, xg, og),
                2 => multi_rows_f16_512::<2>(rows, xg, og),
                3 => multi_rows_f16_512::<3>(rows, xg, og),
                4 => multi_rows_f16_512::<4>(rows, xg, og),
                5 => multi_rows_f16_512::<5>(rows, xg, og),
                6 => multi_rows_f16_512::<6>(rows, xg, og),
                7 => multi_rows_f16_512::<7>(rows, xg, og),
                _ => multi_rows_f16_512::<8>(rows, xg, og),
            }
        }
        g0 += ng;
    }
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

/// [`crate::vecmath::exp_lanes`] on one 256-bit vector, the same operations in the same order
/// (LLVM does not keep the lane code in 256-bit registers inside the softmax loop).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn exp_ps(x: __m256) -> __m256 {
    use crate::vecmath::exp_consts::*;
    let v = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
        _mm256_set1_ps(88.3),
    );
    let shift = _mm256_set1_ps(SHIFT);
    let z = _mm256_fmadd_ps(v, _mm256_set1_ps(std::f32::consts::LOG2_E), shift);
    let n = _mm256_sub_ps(z, shift);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), v);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    let mut p = _mm256_set1_ps(C[7]);
    for &c in C[..7].iter().rev() {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_castps_si256(z),
        _mm256_set1_epi32(127),
    ));
    _mm256_mul_ps(p, _mm256_castsi256_ps(e))
}

/// `s = softmax(s * scale)` on AVX2+FMA: [`crate::vecmath::softmax_lanes`]'s arithmetic (the same
/// e^x, the same 8-lane sums) written with 256-bit intrinsics.
pub(super) fn softmax(s: &mut [f32], scale: f32) {
    #[target_feature(enable = "avx2,fma")]
    fn inner(s: &mut [f32], scale: f32) {
        let n8 = s.len() / 8 * 8;
        let sc = _mm256_set1_ps(scale);
        let mut mx = _mm256_set1_ps(f32::NEG_INFINITY);
        let p = s.as_mut_ptr();
        for k in (0..n8).step_by(8) {
            // SAFETY: k + 8 <= n8 <= s.len(); unaligned load and store.
            unsafe {
                let x = _mm256_mul_ps(_mm256_loadu_ps(p.add(k)), sc);
                _mm256_storeu_ps(p.add(k), x);
                mx = _mm256_max_ps(mx, x);
            }
        }
        let mut m = [0.0f32; 8];
        // SAFETY: `m` is 8 writable floats.
        unsafe { _mm256_storeu_ps(m.as_mut_ptr(), mx) };
        let mut max = m.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for v in s[n8..].iter_mut() {
            *v *= scale;
            max = max.max(*v);
        }
        let (maxv, cut) = (_mm256_set1_ps(max), _mm256_set1_ps(-87.0));
        // e^(x - max), 0 below -87; the 8 lanes summed as (l0+l4 + l2+l6) + (l1+l5 + l3+l7).
        // (A function, not a closure, so that it is compiled with the target features.)
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        fn step(x: __m256, maxv: __m256, cut: __m256) -> (__m256, f32) {
            let d = _mm256_sub_ps(x, maxv);
            let e = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(d, cut), exp_ps(d));
            let q = _mm_add_ps(_mm256_castps256_ps128(e), _mm256_extractf128_ps::<1>(e));
            let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
            (e, _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q))))
        }
        let mut sum = 0.0f64;
        for k in (0..n8).step_by(8) {
            // SAFETY: as above.
            unsafe {
                let (e, t) = step(_mm256_loadu_ps(p.add(k)), maxv, cut);
                _mm256_storeu_ps(p.add(k), e);
                sum += t as f64;
            }
        }
        if n8 < s.len() {
            let mut x = [f32::NEG_INFINITY; 8];
            let tail = &mut s[n8..];
            x[..tail.len()].copy_from_slice(tail);
            // SAFETY: `x` is 8 readable and writable floats.
            unsafe {
                let (e, t) = step(_mm256_loadu_ps(x.as_ptr()), maxv, cut);
                _mm256_storeu_ps(x.as_mut_ptr(), e);
                sum += t as f64;
            }
            tail.copy_from_slice(&x[..tail.len()]);
        }
        let inv = (1.0 / sum) as f32;
        let iv = _mm256_set1_ps(inv);
        for k in (0..n8).step_by(8) {
            // SAFETY: as above.
            unsafe { _mm256_storeu_ps(p.add(k), _mm256_mul_ps(_mm256_loadu_ps(p.add(k)), iv)) };
        }
        for v in s[n8..].iter_mut() {
            *v *= inv;
        }
    }
    // SAFETY: installed in the table only after AVX2 and FMA were detected.
    unsafe { inner(s, scale) }
}

/// [`exp_ps`] on 16 lanes: the same operations in the same order.
#[target_feature(enable = "avx512f")]
#[inline]
fn exp_ps512(x: __m512) -> __m512 {
    use crate::vecmath::exp_consts::*;
    let v = _mm512_min_ps(
        _mm512_max_ps(x, _mm512_set1_ps(-87.0)),
        _mm512_set1_ps(88.3),
    );
    let shift = _mm512_set1_ps(SHIFT);
    let z = _mm512_fmadd_ps(v, _mm512_set1_ps(std::f32::consts::LOG2_E), shift);
    let n = _mm512_sub_ps(z, shift);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), v);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let mut p = _mm512_set1_ps(C[7]);
    for &c in C[..7].iter().rev() {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let e = _mm512_slli_epi32::<23>(_mm512_add_epi32(
        _mm512_castps_si512(z),
        _mm512_set1_epi32(127),
    ));
    _mm512_mul_ps(p, _mm512_castsi512_ps(e))
}

/// `s = softmax(s * scale)` on AVX-512: the arithmetic of [`softmax`] (the same e^x, 0 below
/// -87) 16 lanes at a time, tails masked, the sum kept in two f64 vectors.
pub(super) fn softmax_512(s: &mut [f32], scale: f32) {
    crate::x86_64::debug_assert_vnni();
    // SAFETY: installed in the table only after AVX-512 (with the AVX2 set) was detected.
    unsafe { softmax_512_body::<false>(s, scale) }
}

/// [`softmax_512`] with each weight rounded to f16 precision as it is stored (`cvtps2ph` with
/// ties to even, as `half` rounds): the same bits as [`softmax_512`] then that rounding.
pub(super) fn softmax_512_round_f16(s: &mut [f32], scale: f32) {
    crate::x86_64::debug_assert_vnni();
    // SAFETY: installed in the table only after AVX-512 (with the AVX2 set) was detected.
    unsafe { softmax_512_body::<true>(s, scale) }
}

#[target_feature(enable = "avx512f")]
fn softmax_512_body<const ROUND: bool>(s: &mut [f32], scale: f32) {
    let n = s.len();
    let p = s.as_mut_ptr();
    let mask = |k: usize| -> __mmask16 {
        if k + 16 <= n {
            0xFFFF
        } else {
            ((1u32 << (n - k)) - 1) as u16
        }
    };
    let sc = _mm512_set1_ps(scale);
    let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
    for k in (0..n).step_by(16) {
        let m = mask(k);
        // SAFETY: the mask selects the elements k..min(k + 16, n) of `s`; masked loads and
        // stores touch no others.
        unsafe {
            let x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p.add(k)), sc);
            _mm512_mask_storeu_ps(p.add(k), m, x);
            mx = _mm512_mask_max_ps(mx, m, mx, x);
        }
    }
    let maxv = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    let cut = _mm512_set1_ps(-87.0);
    let (mut lo, mut hi) = (_mm512_setzero_pd(), _mm512_setzero_pd());
    for k in (0..n).step_by(16) {
        let m = mask(k);
        // SAFETY: as above.
        unsafe {
            let d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, p.add(k)), maxv);
            let keep = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(d, cut) & m;
            let e = _mm512_maskz_mov_ps(keep, exp_ps512(d));
            _mm512_mask_storeu_ps(p.add(k), m, e);
            lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
            hi = _mm512_add_pd(
                hi,
                _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                    _mm512_castps_pd(e),
                ))),
            );
        }
    }
    let sum = _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
    let iv = _mm512_set1_ps((1.0 / sum) as f32);
    for k in (0..n).step_by(16) {
        let m = mask(k);
        // SAFETY: as above.
        unsafe {
            let mut x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p.add(k)), iv);
            if ROUND {
                x = _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x));
            }
            _mm512_mask_storeu_ps(p.add(k), m, x);
        }
    }
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

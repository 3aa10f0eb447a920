//! The decode mat-vec of the nibble formats on AVX2 alone (Q4_0, Q5_0 x Q8_0 and Q4_1, Q5_1 x
//! Q8_1): two blocks per register, one generic body over [`Nibble32`].

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use crate::blocks::{as_bytes, cast_blocks, ActBlock32};
use crate::views::{Rows, RowsMut};
use crate::x86_64::block32::{fifth_bits, Nibble32};
use crate::x86_64::prefetch::prefetch_lines;
use crate::x86_64::{load16, load32i};

use super::{store_row, MAX_BLOCKS};

/// The activation side of the AVX2 pair gemv, two blocks (A, B) per pair, made once per call:
/// the bytes in the order the weights' levels come out of `[A.qs | B.qs]` (`lo` = A's elements
/// 0..16 then B's, `hi` = their 16..32) and the seeds `-OFFSET * sum(a)` in lanes 0 and 4 (the
/// first lane of each block's four).
#[repr(C, align(32))]
#[derive(Clone, Copy)]
struct PairAct {
    lo: [i8; 32],
    hi: [i8; 32],
    seed: [i32; 8],
}

/// One row on AVX2 against `NT` tokens' pairs: per pair of weight blocks, one AND and one
/// shift+AND give the nibbles of both (the fifth bits OR-ed in for Q5_*: levels 0..31), once for
/// all tokens; per token two `maddubs` against the pair's activations added in i16 (|lane| <= 4 *
/// 31 * 128 < 2^15), one `madd` and the seeds: lanes 0..4 sum to block A's exact integer dot, 4..8
/// to B's. Per four blocks one F16C conversion of the four `d_w` (and of the four mins), then per
/// token the products with its `d_a` (and `s`) spread to the lanes by two `vpermps`, and two
/// conversions and FMAs. The last `nb % 4` blocks by the one-row kernel. Each token's arithmetic
/// is the same whatever `NT` is.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn rows_dot_pairs<W: Nibble32, const NT: usize>(
    w: &[W],
    a: [&[W::Act]; NT],
    pairs: [&[PairAct]; NT],
    da: [&[f32]; NT],
    sa: [&[f32]; NT],
) -> [f32; NT] {
    let nq = w.len() / 4;
    let has_min = W::OFFSET == 0;
    for t in 0..NT {
        assert!(a[t].len() == w.len() && pairs[t].len() >= 2 * nq && da[t].len() >= 4 * nq);
        assert!(!has_min || sa[t].len() >= 4 * nq);
    }
    let (m4, ones) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi16(1));
    let (spread_lo, spread_hi) = (
        _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1),
        _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3),
    );
    let halves = |f: &dyn Fn(&W) -> half::f16, x: &[W]| -> __m128 {
        let bits = f(&x[0]).to_bits() as i64
            | (f(&x[1]).to_bits() as i64) << 16
            | (f(&x[2]).to_bits() as i64) << 32
            | (f(&x[3]).to_bits() as i64) << 48;
        _mm_cvtph_ps(_mm_cvtsi64_si128(bits))
    };
    let levels = |x: &[W]| -> (__m256i, __m256i) {
        let raw = _mm256_set_m128i(load16(x[1].qs()), load16(x[0].qs()));
        let mut lo = _mm256_and_si256(raw, m4);
        let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4);
        if let (Some(ha), Some(hb)) = (x[0].qh(), x[1].qh()) {
            lo = _mm256_or_si256(lo, fifth_bits((ha & 0xFFFF) | hb << 16));
            hi = _mm256_or_si256(hi, fifth_bits(ha >> 16 | (hb >> 16) << 16));
        }
        (lo, hi)
    };
    let pair = |(lo, hi): (__m256i, __m256i), p: &PairAct| -> __m256i {
        // SAFETY: the three fields of `p` are 32 bytes at 32-byte aligned addresses.
        let (alo, ahi, seed) = unsafe {
            (
                _mm256_load_si256(p.lo.as_ptr() as *const __m256i),
                _mm256_load_si256(p.hi.as_ptr() as *const __m256i),
                _mm256_load_si256(p.seed.as_ptr() as *const __m256i),
            )
        };
        let s = _mm256_add_epi16(_mm256_maddubs_epi16(lo, alo), _mm256_maddubs_epi16(hi, ahi));
        _mm256_add_epi32(_mm256_madd_epi16(s, ones), seed)
    };
    let mut acc = [[_mm256_setzero_ps(); 2]; NT];
    let mut acc_m = [_mm_setzero_ps(); NT];
    for q in 0..nq {
        let wq = &w[4 * q..4 * q + 4];
        prefetch_lines::<2, _>(wq.as_ptr());
        let (l01, l23) = (levels(&wq[..2]), levels(&wq[2..]));
        let wd = halves(&|x| x.d(), wq);
        let wm = if has_min {
            halves(&|x| x.m(), wq)
        } else {
            _mm_setzero_ps()
        };
        for t in 0..NT {
            let (s01, s23) = (pair(l01, &pairs[t][2 * q]), pair(l23, &pairs[t][2 * q + 1]));
            // SAFETY: da[t][4q..4q + 4] is in bounds (asserted); unaligned load.
            let da4 = unsafe { _mm_loadu_ps(da[t].as_ptr().add(4 * q)) };
            let d4 = _mm256_castps128_ps256(_mm_mul_ps(wd, da4));
            let (d01, d23) = (
                _mm256_permutevar8x32_ps(d4, spread_lo),
                _mm256_permutevar8x32_ps(d4, spread_hi),
            );
            acc[t][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s01), d01, acc[t][0]);
            acc[t][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s23), d23, acc[t][1]);
            if has_min {
                // SAFETY: sa[t][4q..4q + 4] is in bounds (asserted); unaligned load.
                let sa4 = unsafe { _mm_loadu_ps(sa[t].as_ptr().add(4 * q)) };
                acc_m[t] = _mm_fmadd_ps(wm, sa4, acc_m[t]);
            }
        }
    }
    let mut out = [0.0f32; NT];
    for t in 0..NT {
        let mut sum = crate::x86_64::hsum_ps(_mm256_add_ps(acc[t][0], acc[t][1]));
        if has_min {
            let m = _mm_add_ps(acc_m[t], _mm_movehl_ps(acc_m[t], acc_m[t]));
            sum += _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
        }
        if w.len() > 4 * nq {
            let n = (w.len() - 4 * nq) * 32;
            let (wb, ab) = (as_bytes(&w[4 * nq..]), as_bytes(&a[t][4 * nq..]));
            sum += W::VEC_DOT(n, wb, ab);
        }
        out[t] = sum;
    }
    out
}

/// A nibble format's mat-vec on AVX2 alone (`GemvFn`), two blocks per register.
pub(in crate::x86_64) fn gemv_pairs<W: Nibble32>(n: usize, w: Rows<u8>, a: &[u8], out: &mut [f32]) {
    let assert = crate::x86_64::debug_assert_avx2;
    super::gemv_with::<W, W::Act>(n, w, a, out, W::VEC_DOT, run_pairs::<W>, assert);
}

/// [`gemv_pairs`] for up to four tokens at once (`GemvMultiFn`): the same bits per token.
pub(in crate::x86_64) fn gemv_multi_pairs<W: Nibble32>(
    n: usize,
    w: Rows<u8>,
    a: Rows<u8>,
    out: RowsMut<f32>,
) {
    let assert = crate::x86_64::debug_assert_avx2;
    let runs: [super::MultiRun<W::Act>; 4] = [
        run_pairs_dyn::<W, 1>,
        run_pairs_dyn::<W, 2>,
        run_pairs_dyn::<W, 3>,
        run_pairs_dyn::<W, 4>,
    ];
    super::gemv_multi_with::<W, W::Act>(n, w, a, out, W::VEC_DOT, runs, assert);
}

/// The activation side of one token: its pairs, `d_a` and `s_a` per block (the first `nb / 4 *
/// 2` pairs and `nb` scales written by [`pair_side`]).
struct PairSide {
    pairs: [MaybeUninit<PairAct>; MAX_BLOCKS / 2],
    da: [MaybeUninit<f32>; MAX_BLOCKS],
    sa: [MaybeUninit<f32>; MAX_BLOCKS],
}

impl PairSide {
    const UNINIT: PairSide = PairSide {
        pairs: [MaybeUninit::uninit(); MAX_BLOCKS / 2],
        da: [MaybeUninit::uninit(); MAX_BLOCKS],
        sa: [MaybeUninit::uninit(); MAX_BLOCKS],
    };
}

/// Lays out one token's activation side: its pairs, `d_a` and `s_a` (as `[&pairs, &da, &sa]`).
#[target_feature(enable = "avx2,fma,f16c")]
fn pair_side<'s, W: Nibble32>(
    a: &[W::Act],
    side: &'s mut PairSide,
) -> (&'s [PairAct], &'s [f32], &'s [f32]) {
    let nb = a.len();
    let np = nb / 4 * 2;
    for ((d, s), y) in side.da.iter_mut().zip(side.sa.iter_mut()).zip(a) {
        d.write(crate::x86_64::h2f(y.d()));
        s.write(crate::x86_64::h2f(y.s().unwrap_or(half::f16::ZERO)));
    }
    let ones = _mm256_set1_epi8(1);
    for (ab, o) in a.chunks_exact(2).zip(side.pairs[..np].iter_mut()) {
        let mut seed = [0i32; 8];
        let (mut lo, mut hi) = ([0i8; 32], [0i8; 32]);
        for (j, y) in ab.iter().enumerate() {
            let qs = y.qs();
            lo[16 * j..16 * j + 16].copy_from_slice(&qs[..16]);
            hi[16 * j..16 * j + 16].copy_from_slice(&qs[16..]);
            if W::OFFSET != 0 {
                // The block's activation sum (|sum| <= 32 * 128).
                let sum = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(ones, load32i(qs)),
                    _mm256_set1_epi16(1),
                );
                seed[4 * j] = -W::OFFSET * crate::x86_64::hsum_epi32(sum);
            }
        }
        o.write(PairAct { lo, hi, seed });
    }
    // SAFETY: the first `np` pairs and `nb` (<= MAX_BLOCKS: checked by the frame) scales were
    // written above; `MaybeUninit<T>` has `T`'s layout.
    unsafe {
        (
            &*(&side.pairs[..np] as *const [MaybeUninit<PairAct>] as *const [PairAct]),
            &*(&side.da[..nb] as *const [MaybeUninit<f32>] as *const [f32]),
            &*(&side.sa[..nb] as *const [MaybeUninit<f32>] as *const [f32]),
        )
    }
}

/// Rows of a nibble format on AVX2 against `NT` tokens (the `GemvFn` body for one, the
/// `GemvMultiFn` body for more).
#[target_feature(enable = "avx2,fma,f16c")]
fn run_pairs_multi<W: Nibble32, const NT: usize>(
    w: Rows<u8>,
    a: [&[W::Act]; NT],
    out: &mut RowsMut<f32>,
) {
    let mut sides = [const { PairSide::UNINIT }; NT];
    let mut pairs: [&[PairAct]; NT] = [&[]; NT];
    let (mut da, mut sa): ([&[f32]; NT], [&[f32]; NT]) = ([&[]; NT], [&[]; NT]);
    for (t, side) in sides.iter_mut().enumerate() {
        (pairs[t], da[t], sa[t]) = pair_side::<W>(a[t], side);
    }
    for r in 0..w.n() {
        let row = cast_blocks::<W>(w.row(r));
        store_row(out, r, rows_dot_pairs::<W, NT>(row, a, pairs, da, sa));
    }
}

/// # Safety
/// As [`run_pairs_multi`]: the CPU has AVX2, FMA and F16C; `a` holds NT rows of checked length.
unsafe fn run_pairs_dyn<W: Nibble32, const NT: usize>(
    w: Rows<u8>,
    a: &[&[W::Act]],
    out: &mut RowsMut<f32>,
) {
    let a: [&[W::Act]; NT] = std::array::from_fn(|t| a[t]);
    // SAFETY: called only through `gemv_multi_with`, which has checked the lengths, after the
    // kernel table was filled with it only on a CPU with AVX2, FMA and F16C.
    unsafe { run_pairs_multi::<W, NT>(w, a, out) }
}

/// Rows of a nibble format on AVX2 (`GemvFn` body); the blocks left over by the format's
/// one-row kernel.
#[target_feature(enable = "avx2,fma,f16c")]
fn run_pairs<W: Nibble32>(w: Rows<u8>, a: &[W::Act], out: &mut [f32]) {
    run_pairs_multi::<W, 1>(w, [a], &mut RowsMut::one(out));
}

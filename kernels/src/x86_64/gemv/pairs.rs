//! Q4_0, Q5_0 (x Q8_0), Q4_1 and Q5_1 (x Q8_1) decode mat-vecs on AVX2 alone: two blocks per
//! register, one generic body over the 32-element nibble formats.

use super::*;
use crate::x86_64::quants;

/// The 32-element formats with 4-bit levels in `qs` (plus a fifth bit in `qh` for Q5_*), for
/// the AVX2 pair gemv: Q4_0 and Q5_0 (levels offset by 8 / 16, no min) and Q4_1 and Q5_1 (a min).
pub(super) trait NibbleBlock: Block {
    /// The activation block type they dot with (Q8_0 or Q8_1).
    type Act: ActBlock32;
    /// The levels' offset: the seed is `-OFFSET * sum(a)`. Zero exactly for the formats with a
    /// min (Q4_1, Q5_1), which is how `row_dot_pairs` knows to add the min term.
    const OFFSET: i32;
    fn qs(&self) -> &[u8; 16];
    fn d(&self) -> half::f16;
    /// The min, or zero for the formats without one.
    fn m(&self) -> half::f16;
    /// The fifth bits (bit j of element j), or `None` for the 4-bit formats.
    fn qh(&self) -> Option<u32>;
}

macro_rules! nibble_block {
    ($W:ty, $A:ty, $off:expr, |$x:ident| $m:expr, |$y:ident| $qh:expr) => {
        impl NibbleBlock for $W {
            type Act = $A;
            const OFFSET: i32 = $off;
            #[inline(always)]
            fn qs(&self) -> &[u8; 16] {
                &self.qs
            }
            #[inline(always)]
            fn d(&self) -> half::f16 {
                self.d
            }
            #[inline(always)]
            fn m(&self) -> half::f16 {
                let $x = self;
                $m
            }
            #[inline(always)]
            fn qh(&self) -> Option<u32> {
                let $y = self;
                $qh
            }
        }
    };
}
nibble_block!(BlockQ4_0, BlockQ8_0, 8, |_x| half::f16::ZERO, |_y| None);
nibble_block!(BlockQ4_1, BlockQ8_1, 0, |x| x.m, |_y| None);
nibble_block!(BlockQ5_0, BlockQ8_0, 16, |_x| half::f16::ZERO, |y| Some(
    u32::from_le_bytes(y.qh)
));
nibble_block!(BlockQ5_1, BlockQ8_1, 0, |x| x.m, |y| Some(
    u32::from_le_bytes(y.qh)
));

/// The activation side of the AVX2 pair gemv, two blocks (A, B) per pair, made once per call:
/// the bytes in the order the weights' levels come out of `[A.qs | B.qs]` (`lo` = A's elements
/// 0..16 then B's, `hi` = their 16..32) and the seeds `-OFFSET * sum(a)` in lanes 0 and 4 (the
/// first lane of each block's four).
#[repr(C, align(32))]
#[derive(Clone, Copy)]
pub(super) struct PairAct {
    lo: [i8; 32],
    hi: [i8; 32],
    seed: [i32; 8],
}

/// One row on AVX2 against the pairs: per pair of weight blocks, one AND and one shift+AND give
/// the nibbles of both (the fifth bits OR-ed in for Q5_*: levels 0..31), two `maddubs` against the
/// pair's activations added in i16 (|lane| <= 4 * 31 * 128 < 2^15), one `madd` and the seeds:
/// lanes 0..4 sum to block A's exact integer dot, 4..8 to B's. Per four blocks one F16C conversion
/// of the four `d_w` (and of the four mins, times the activations' `s`), spread to the lanes by
/// two `vpermps`, and two conversions and FMAs. The last `nb % 4` blocks by the one-row kernel.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn row_dot_pairs<W: NibbleBlock>(
    w: &[W],
    a: &[W::Act],
    pairs: &[PairAct],
    da: &[f32],
    sa: &[f32],
    tail: fn(usize, &[u8], &[u8]) -> f32,
) -> f32 {
    let nq = w.len() / 4;
    assert!(a.len() == w.len() && pairs.len() >= 2 * nq && da.len() >= 4 * nq);
    let has_min = W::OFFSET == 0;
    assert!(!has_min || sa.len() >= 4 * nq);
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
    let pair = |x: &[W], p: &PairAct| -> __m256i {
        let raw = _mm256_set_m128i(load16(x[1].qs()), load16(x[0].qs()));
        let mut lo = _mm256_and_si256(raw, m4);
        let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4);
        if let (Some(ha), Some(hb)) = (x[0].qh(), x[1].qh()) {
            lo = _mm256_or_si256(lo, fifth_bits((ha & 0xFFFF) | hb << 16));
            hi = _mm256_or_si256(hi, fifth_bits(ha >> 16 | (hb >> 16) << 16));
        }
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
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut acc_m = _mm_setzero_ps();
    for q in 0..nq {
        let wq = &w[4 * q..4 * q + 4];
        prefetch_lines::<2, _>(wq.as_ptr());
        let (s01, s23) = (
            pair(&wq[..2], &pairs[2 * q]),
            pair(&wq[2..], &pairs[2 * q + 1]),
        );
        // SAFETY: da[4q..4q + 4] is in bounds (asserted); unaligned load.
        let da4 = unsafe { _mm_loadu_ps(da.as_ptr().add(4 * q)) };
        let d4 = _mm256_castps128_ps256(_mm_mul_ps(halves(&|x| x.d(), wq), da4));
        let (d01, d23) = (
            _mm256_permutevar8x32_ps(d4, spread_lo),
            _mm256_permutevar8x32_ps(d4, spread_hi),
        );
        acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s01), d01, acc[0]);
        acc[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s23), d23, acc[1]);
        if has_min {
            // SAFETY: sa[4q..4q + 4] is in bounds (asserted); unaligned load.
            let sa4 = unsafe { _mm_loadu_ps(sa.as_ptr().add(4 * q)) };
            acc_m = _mm_fmadd_ps(halves(&|x| x.m(), wq), sa4, acc_m);
        }
    }
    let mut sum = crate::x86_64::hsum_ps(_mm256_add_ps(acc[0], acc[1]));
    if has_min {
        let m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
        sum += _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
    }
    if w.len() > 4 * nq {
        let n = (w.len() - 4 * nq) * 32;
        let (wb, ab) = (as_bytes(&w[4 * nq..]), as_bytes(&a[4 * nq..]));
        sum += tail(n, wb, ab);
    }
    sum
}

/// Rows of a nibble format on AVX2 (`GemvFn` body); `tail` is the format's one-row kernel.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn run_pairs<W: NibbleBlock>(
    w: Rows<u8>,
    a: &[W::Act],
    out: &mut [f32],
    tail: fn(usize, &[u8], &[u8]) -> f32,
) {
    let nb = a.len();
    let np = nb / 4 * 2;
    let mut pbuf = [MaybeUninit::<PairAct>::uninit(); MAX_BLOCKS / 2];
    let (mut da, mut sa) = ([0.0f32; MAX_BLOCKS], [0.0f32; MAX_BLOCKS]);
    for ((d, s), y) in da.iter_mut().zip(sa.iter_mut()).zip(a) {
        (*d, *s) = (
            crate::x86_64::h2f(y.d()),
            crate::x86_64::h2f(y.s().unwrap_or(half::f16::ZERO)),
        );
    }
    let ones = _mm256_set1_epi8(1);
    for (ab, o) in a.chunks_exact(2).zip(pbuf[..np].iter_mut()) {
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
    // SAFETY: the first `np` elements were written above; `MaybeUninit<T>` has `T`'s layout.
    let pairs = unsafe { &*(&pbuf[..np] as *const [MaybeUninit<PairAct>] as *const [PairAct]) };
    for (r, o) in out.iter_mut().enumerate() {
        let row = cast_blocks::<W>(w.row(r));
        *o = row_dot_pairs(row, a, pairs, &da[..nb], &sa[..nb], tail);
    }
}

/// `GemvFn` bodies of the AVX2 pair gemv, one per format (a `fn` item each, for `gemv_with`):
/// `name: block type, the format's one-row kernel;`.
macro_rules! run_pairs_fns {
    ($($name:ident: $W:ty, $tail:path;)*) => {$(
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $name(w: Rows<u8>, a: &[<$W as NibbleBlock>::Act], out: &mut [f32]) {
            run_pairs::<$W>(w, a, out, $tail)
        }
    )*};
}
run_pairs_fns! {
    run_q4_0_avx2: BlockQ4_0, quants::vec_dot_q4_0_q8_0;
    run_q4_1_avx2: BlockQ4_1, quants::vec_dot_q4_1_q8_1;
    run_q5_0_avx2: BlockQ5_0, quants::vec_dot_q5_0_q8_0;
    run_q5_1_avx2: BlockQ5_1, quants::vec_dot_q5_1_q8_1;
}

gemv_entry!(/// Q4_0 weights x Q8_0 activations on AVX2 alone (`GemvFn`).
    gemv_q4_0_q8_0_avx2, BlockQ4_0, BlockQ8_0, MAX_BLOCKS * 32, crate::x86_64::quants::vec_dot_q4_0_q8_0, run_q4_0_avx2);
gemv_entry!(/// Q4_1 weights x Q8_1 activations on AVX2 alone (`GemvFn`).
    gemv_q4_1_q8_1_avx2, BlockQ4_1, BlockQ8_1, MAX_BLOCKS * 32, crate::x86_64::quants::vec_dot_q4_1_q8_1, run_q4_1_avx2);
gemv_entry!(/// Q5_0 weights x Q8_0 activations on AVX2 alone (`GemvFn`).
    gemv_q5_0_q8_0_avx2, BlockQ5_0, BlockQ8_0, MAX_BLOCKS * 32, crate::x86_64::quants::vec_dot_q5_0_q8_0, run_q5_0_avx2);
gemv_entry!(/// Q5_1 weights x Q8_1 activations on AVX2 alone (`GemvFn`).
    gemv_q5_1_q8_1_avx2, BlockQ5_1, BlockQ8_1, MAX_BLOCKS * 32, crate::x86_64::quants::vec_dot_q5_1_q8_1, run_q5_1_avx2);

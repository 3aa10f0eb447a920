//! Q8_0 x Q8_0 on x86: the one-row dots (AVX2, and AVX-512 VNNI), the decode mat-vec (AVX-512
//! VNNI), the block's unpacking for the prefill tiles, and this format's kernels.
//!
//! The AVX2 dot sign-extends both sides to i16 and uses `madd` (exact for the full i8 range).

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::block32::{accumulate, vec_dot_entry};
use super::gemv::quads::ZERO32;
use super::gemv::{
    gemv_multi_with, gemv_with, halves4, multi_runs, store_row, sum4x4, MAGIC_BITS, MAGIC_F,
    MAX_BLOCKS,
};
use super::prefetch::prefetch_lines_q8_0;
use super::tile;
use super::tile::{TileBlock, Unpacked};
use super::{
    debug_assert_avx2, debug_assert_vnni, f16_table, h2f, load32i, lut, AVX2, AVXVNNI, VNNI,
};
use crate::blocks::{cast_blocks, BlockQ8_0};
use crate::dispatch::{offer, Offer, OfferedKernel as K};
use crate::types::GgmlType;
use crate::views::{Rows, RowsMut};

/// Q8_0's kernels, AVX2 first (AVX-512 VNNI replaces them where the CPU has it).
pub(super) const OFFERS: &[Offer] = {
    const T: GgmlType = GgmlType::Q8_0;
    const A: GgmlType = GgmlType::Q8_0;
    &[
        offer(T, A, AVX2, K::VecDot(vec_dot_q8_0_q8_0)),
        offer(T, A, AVX2, K::Gemv(gemv_q8_0_q8_0_avx2)),
        offer(T, A, AVX2, K::GemvMulti(gemv_multi_q8_0_q8_0_avx2)),
        offer(T, A, AVX2, K::Tile(tile::avx2::gemm_tile::<BlockQ8_0>)),
        offer(
            T,
            A,
            AVXVNNI,
            K::Tile(tile::avxvnni::gemm_tile::<BlockQ8_0>),
        ),
        offer(T, A, VNNI, K::VecDot(vec_dot_q8_0_q8_0_vnni)),
        offer(T, A, VNNI, K::Gemv(gemv_q8_0_q8_0)),
        offer(T, A, VNNI, K::GemvMulti(gemv_multi_q8_0_q8_0)),
        offer(T, A, VNNI, K::Tile(tile::vnni::gemm_tile::<BlockQ8_0>)),
    ]
};

impl TileBlock for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    type Act = BlockQ8_0;
    const HAS_MIN: bool = false;
    const WIDE: bool = true;
    #[inline(always)]
    unsafe fn unpack(&self) -> Unpacked {
        // SAFETY: the caller guarantees AVX2.
        unsafe {
            Unpacked {
                q: load32i(&self.qs),
                d: h2f(self.d),
                m: 0.0,
            }
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn widen16(p: &[i8]) -> __m256i {
    assert!(p.len() >= 16);
    // SAFETY: checked above that 16 bytes are readable; the load is unaligned.
    _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(p.as_ptr() as *const __m128i) })
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    let t = f16_table();
    accumulate::<_, _, false>(w, a, |x, y| {
        let lo = _mm256_madd_epi16(widen16(&x.qs[..16]), widen16(&y.qs[..16]));
        let hi = _mm256_madd_epi16(widen16(&x.qs[16..]), widen16(&y.qs[16..]));
        (lut(t, x.d) * lut(t, y.d), _mm256_add_epi32(lo, hi), 0.0)
    })
}

/// Q8_0 . Q8_0 with VNNI: sum (w + 128) a - 128 sum a, exact for every byte.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dot_q8_0_vnni(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    let x80 = _mm256_set1_epi8(-128);
    let t = f16_table();
    accumulate::<_, _, false>(w, a, |x, y| {
        let av = load32i(&y.qs);
        let z = _mm256_setzero_si256();
        let wu = _mm256_xor_si256(load32i(&x.qs), x80);
        let s = _mm256_sub_epi32(
            _mm256_dpbusd_epi32(z, wu, av),
            _mm256_dpbusd_epi32(z, x80, av),
        );
        (lut(t, x.d) * lut(t, y.d), s, 0.0)
    })
}

vec_dot_entry!(/// Q8_0 weights . Q8_0 activations.
    vec_dot_q8_0_q8_0, dot_q8_0, BlockQ8_0, BlockQ8_0, debug_assert_avx2);
vec_dot_entry!(/// Q8_0 weights . Q8_0 activations (AVX-512 VNNI on 256-bit registers).
    vec_dot_q8_0_q8_0_vnni, dot_q8_0_vnni, BlockQ8_0, BlockQ8_0, debug_assert_vnni);

/// The unsigned levels `w + 128` of a Q8_0 block.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn levels_q8_0(x: &BlockQ8_0) -> __m256i {
    _mm256_xor_si256(load32i(&x.qs), _mm256_set1_epi8(-128))
}

/// One Q8_0 row against `NT` tokens: sum over blocks of `d_w * d_a * (seed + levels . a)`, two
/// blocks per step into two accumulators per token. The levels and the two `d_w` (F16C) once for
/// all tokens; each token's arithmetic the same whatever `NT` is. (The block scales are made
/// inline: a separate first pass, to take them off the vector pipes, was slower; so were 512-bit
/// steps of two blocks, which leave port 1 idle: docs/perf.md.)
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn rows_dot_q8_0<const NT: usize>(
    w: &[BlockQ8_0],
    a: [&[BlockQ8_0]; NT],
    seed: [&[[i32; 8]]; NT],
    da: [&[f32]; NT],
) -> [f32; NT] {
    let nb = w.len();
    for t in 0..NT {
        assert!(a[t].len() == nb && seed[t].len() == nb && da[t].len() == nb);
    }
    let mut acc = [[_mm256_setzero_ps(); 2]; NT];
    let mut b = 0;
    while b + 1 < nb {
        // The two blocks' 68 bytes: two lines (one prefetch per step left every 16th line to
        // the hardware prefetcher).
        prefetch_lines_q8_0::<2, _>(w[b..].as_ptr());
        let (l0, l1) = (levels_q8_0(&w[b]), levels_q8_0(&w[b + 1]));
        // Both blocks' d_w by F16C: a lookup in the 256 KiB f16 table misses L1 about as
        // often as the weights do.
        let bits = w[b].d.to_bits() as i32 | (w[b + 1].d.to_bits() as i32) << 16;
        let wd = _mm_cvtph_ps(_mm_cvtsi32_si128(bits));
        for t in 0..NT {
            // SAFETY: `da[t][b..b + 2]` is 8 readable bytes, `seed[t][b]` and `seed[t][b + 1]`
            // 32 each; unaligned loads.
            let (da2, s0, s1) = unsafe {
                (
                    _mm_castpd_ps(_mm_load_sd(da[t].as_ptr().add(b) as *const f64)),
                    _mm256_loadu_si256(seed[t][b].as_ptr() as *const __m256i),
                    _mm256_loadu_si256(seed[t][b + 1].as_ptr() as *const __m256i),
                )
            };
            let d2 = _mm256_castps128_ps256(_mm_mul_ps(wd, da2));
            let d0 = _mm256_permutevar8x32_ps(d2, _mm256_setzero_si256());
            let d1 = _mm256_permutevar8x32_ps(d2, _mm256_set1_epi32(1));
            let s0 = _mm256_dpbusd_epi32(s0, l0, load32i(&a[t][b].qs));
            let s1 = _mm256_dpbusd_epi32(s1, l1, load32i(&a[t][b + 1].qs));
            acc[t][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), d0, acc[t][0]);
            acc[t][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), d1, acc[t][1]);
        }
        b += 2;
    }
    let mut out = [0.0f32; NT];
    for t in 0..NT {
        if b < nb {
            let d = _mm256_set1_ps(lut(f16_table(), w[b].d) * da[t][b]);
            // SAFETY: `seed[t][b]` is 32 readable bytes; unaligned load.
            let s0 = unsafe { _mm256_loadu_si256(seed[t][b].as_ptr() as *const __m256i) };
            let s = _mm256_dpbusd_epi32(s0, levels_q8_0(&w[b]), load32i(&a[t][b].qs));
            acc[t][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc[t][0]);
        }
        out[t] = crate::x86_64::hsum_ps(_mm256_add_ps(acc[t][0], acc[t][1]));
    }
    out
}

/// Per activation block: the seed, lane i = `-128 * (a[4i] + .. + a[4i + 3])` (kept per lane, so
/// that every lane of a row's block sum is that lane's exact partial sum, as in the one-row
/// kernels: the float rounding stays relative to the actual terms), and `d_a` as f32; written
/// into uninitialized buffers (at least `a.len()` long), the written parts returned.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn seeds<'s>(
    a: &[BlockQ8_0],
    seed: &'s mut [MaybeUninit<[i32; 8]>],
    da: &'s mut [MaybeUninit<f32>],
) -> (&'s [[i32; 8]], &'s [f32]) {
    let t = f16_table();
    let offv = _mm256_set1_epi8(-128);
    let (seed, da) = (&mut seed[..a.len()], &mut da[..a.len()]);
    for ((y, s), d) in a.iter().zip(seed.iter_mut()).zip(da.iter_mut()) {
        let v = _mm256_dpbusd_epi32(_mm256_setzero_si256(), offv, load32i(&y.qs));
        let neg = _mm256_sub_epi32(_mm256_setzero_si256(), v);
        // SAFETY: `s` is 8 writable i32 (32 bytes); unaligned store.
        unsafe { _mm256_storeu_si256(s.as_mut_ptr() as *mut __m256i, neg) };
        d.write(lut(t, y.d));
    }
    // SAFETY: every element of both slices was written above; `MaybeUninit<T>` has `T`'s layout.
    unsafe {
        (
            &*(seed as *const [MaybeUninit<[i32; 8]>] as *const [[i32; 8]]),
            &*(da as *const [MaybeUninit<f32>] as *const [f32]),
        )
    }
}

/// Q8_0 rows against `NT` tokens, the `GemvFn` body with NT = 1 (several tokens go through
/// [`run_q8_0_wide`], which gives the same bits with less work per token):
/// the levels are `w + 128`, so each block's seed is `-128 * sum(a)`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q8_0_multi<const NT: usize>(w: Rows<u8>, a: [&[BlockQ8_0]; NT], out: &mut RowsMut<f32>) {
    let nb = a[0].len();
    let mut sbuf = [[MaybeUninit::<[i32; 8]>::uninit(); MAX_BLOCKS]; NT];
    let mut dbuf = [[MaybeUninit::<f32>::uninit(); MAX_BLOCKS]; NT];
    let (mut seed, mut da): ([&[[i32; 8]]; NT], [&[f32]; NT]) = ([&[]; NT], [&[]; NT]);
    for (t, (sb, db)) in sbuf.iter_mut().zip(dbuf.iter_mut()).enumerate() {
        (seed[t], da[t]) = seeds(a[t], &mut sb[..nb], &mut db[..nb]);
    }
    for r in 0..w.n() {
        store_row(
            out,
            r,
            rows_dot_q8_0(cast_blocks::<BlockQ8_0>(w.row(r)), a, seed, da),
        );
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q8_0(w: Rows<u8>, a: &[BlockQ8_0], out: &mut [f32]) {
    run_q8_0_multi::<1>(w, [a], &mut RowsMut::one(out));
}

/// Two activation blocks (2p, 2p + 1) of one token laid out for the multi-token kernel: their 64
/// quant bytes, their seeds (the one-token kernel's, side by side, plus `MAGIC_BITS`) and `d_a` spread over each
/// block's 8 lanes. A last odd block fills the low halves.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct PairQ8_0 {
    qs: [i8; 64],
    seed: [i32; 16],
    da: [f32; 16],
}

/// Rows against `NT` (2..=4) tokens with less work per token than [`rows_dot_q8_0`] and the same
/// bits: two blocks per 512-bit register, lanes 0..8 doing what the one-token kernel's first
/// accumulator does and 8..16 its second. Per pair of blocks, once for all tokens: the levels and
/// the two `d_w` spread to their lanes; per token one `vpdpbusd` from the seeds, one
/// multiplication by its spread `d_a`, one conversion and one FMA (the one-token kernel: two of
/// each and two permutes).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn rows_dot_q8_0_wide<const NT: usize>(w: &[BlockQ8_0], pairs: [&[PairQ8_0]; NT]) -> [f32; NT] {
    let nb = w.len();
    let np = nb / 2;
    assert!(pairs.iter().all(|p| p.len() == nb.div_ceil(2)));
    let flip = _mm512_set1_epi8(-128);
    let spread = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    let magic_f = _mm512_set1_ps(MAGIC_F);
    let mut acc = [_mm512_setzero_ps(); NT];
    for p in 0..np {
        let (x0, x1) = (&w[2 * p], &w[2 * p + 1]);
        // The two blocks' 68 bytes: two lines.
        prefetch_lines_q8_0::<2, _>(x0);
        let lv = _mm512_xor_si512(
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(load32i(&x0.qs)), load32i(&x1.qs)),
            flip,
        );
        let bits = x0.d.to_bits() as i32 | (x1.d.to_bits() as i32) << 16;
        let wd = _mm512_permutexvar_ps(
            spread,
            _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128(bits))),
        );
        for t in 0..NT {
            let pr = &pairs[t][p];
            // SAFETY: the three fields of `pr` are 64 bytes at 64-byte aligned addresses.
            let (qs, seed, da) = unsafe {
                (
                    _mm512_load_si512(pr.qs.as_ptr() as *const __m512i),
                    _mm512_load_si512(pr.seed.as_ptr() as *const __m512i),
                    _mm512_load_ps(pr.da.as_ptr()),
                )
            };
            // The seeds carry the magic bias: |sum| < 4 * 255 * 128 + 128 * 512 < 2^22, so
            // the float is exact without the conversion (see `MAGIC_BITS`).
            let s = _mm512_dpbusd_epi32(seed, lv, qs);
            let sf = _mm512_sub_ps(_mm512_castsi512_ps(s), magic_f);
            let d = _mm512_mul_ps(wd, da);
            acc[t] = _mm512_fmadd_ps(sf, d, acc[t]);
        }
    }
    for t in 0..NT {
        if 2 * np < nb {
            let mut a0 = _mm512_castps512_ps256(acc[t]);
            // The last odd block as the one-token kernel adds it, into its first accumulator.
            let pr = &pairs[t][np];
            let x = &w[2 * np];
            let d = _mm256_set1_ps(lut(f16_table(), x.d) * pr.da[0]);
            // SAFETY: `seed` and `qs` are 64 bytes at 64-byte aligned addresses: their first
            // 32 bytes are readable.
            let (s0, qs) = unsafe {
                (
                    _mm256_load_si256(pr.seed.as_ptr() as *const __m256i),
                    _mm256_load_si256(pr.qs.as_ptr() as *const __m256i),
                )
            };
            let s = _mm256_dpbusd_epi32(s0, levels_q8_0(x), qs);
            let sf = _mm256_sub_ps(_mm256_castsi256_ps(s), _mm256_set1_ps(MAGIC_F));
            a0 = _mm256_fmadd_ps(sf, d, a0);
            acc[t] = _mm512_castpd_ps(_mm512_insertf64x4::<0>(
                _mm512_castps_pd(acc[t]),
                _mm256_castps_pd(a0),
            ));
        }
    }
    // Lane 4t: token t's `hsum_ps(a0 + a1)`, the one-token kernel's end of row.
    let z = _mm512_setzero_ps();
    let v = std::array::from_fn(|t| if t < NT { acc[t] } else { z });
    let mut l = [0.0f32; 16];
    // SAFETY: `l` is 16 writable f32; unaligned store.
    unsafe { _mm512_storeu_ps(l.as_mut_ptr(), sum4x4(halves4(v))) };
    std::array::from_fn(|t| l[4 * t])
}

/// Q8_0 rows against `NT` tokens (the `GemvMultiFn` body).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q8_0_wide<const NT: usize>(w: Rows<u8>, a: [&[BlockQ8_0]; NT], out: &mut RowsMut<f32>) {
    let t16 = f16_table();
    let off = _mm512_set1_epi8(-128);
    let mut buf = [[MaybeUninit::<PairQ8_0>::uninit(); MAX_BLOCKS / 2]; NT];
    let mut pairs: [&[PairQ8_0]; NT] = [&[]; NT];
    for (t, b) in buf.iter_mut().enumerate() {
        let b = &mut b[..a[t].len().div_ceil(2)];
        for (ab, o) in a[t].chunks(2).zip(b.iter_mut()) {
            let hi = ab.get(1).map_or(&ZERO32, |y| &y.qs);
            let qs =
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(load32i(&ab[0].qs)), load32i(hi));
            // The one-token kernel's seeds, lane i = -128 * (a[4i] + .. + a[4i + 3]), plus the
            // magic bias that lets the sums be read as floats without a conversion.
            let seed = _mm512_sub_epi32(
                _mm512_set1_epi32(MAGIC_BITS),
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), off, qs),
            );
            let (d0, d1) = (lut(t16, ab[0].d), ab.get(1).map_or(0.0, |y| lut(t16, y.d)));
            let da = _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_set1_ps(d0))),
                _mm256_castps_pd(_mm256_set1_ps(d1)),
            ));
            let p = o.as_mut_ptr();
            // SAFETY: `p` points to a writable, 64-byte aligned `PairQ8_0`, whose three fields
            // are 64 bytes each at offsets 0, 64 and 128; all are written before the slice is
            // read below.
            unsafe {
                _mm512_store_si512(std::ptr::addr_of_mut!((*p).qs) as *mut __m512i, qs);
                _mm512_store_si512(std::ptr::addr_of_mut!((*p).seed) as *mut __m512i, seed);
                _mm512_store_ps(std::ptr::addr_of_mut!((*p).da) as *mut f32, da);
            }
        }
        // SAFETY: every element of `b` was written above; `MaybeUninit<T>` has `T`'s layout.
        pairs[t] = unsafe { &*(b as *const [MaybeUninit<PairQ8_0>] as *const [PairQ8_0]) };
    }
    for r in 0..w.n() {
        store_row(
            out,
            r,
            rows_dot_q8_0_wide(cast_blocks::<BlockQ8_0>(w.row(r)), pairs),
        );
    }
}

/// Q8_0 weights x Q8_0 activations (`GemvFn`), two blocks per step on 256-bit registers.
fn gemv_q8_0_q8_0(n: usize, w: Rows<u8>, a: &[u8], out: &mut [f32]) {
    gemv_with::<BlockQ8_0, BlockQ8_0>(
        n,
        w,
        a,
        out,
        vec_dot_q8_0_q8_0_vnni,
        run_q8_0,
        debug_assert_vnni,
    );
}

/// Q8_0 weights x up to four tokens' Q8_0 activations (`GemvMultiFn`): `gemv_q8_0_q8_0`'s bits
/// per token, the weights loaded once.
fn gemv_multi_q8_0_q8_0(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
    let runs = multi_runs!(run_q8_0_wide, BlockQ8_0);
    gemv_multi_with::<BlockQ8_0, BlockQ8_0>(
        n,
        w,
        a,
        out,
        vec_dot_q8_0_q8_0_vnni,
        runs,
        debug_assert_vnni,
    );
}

/// One token's activation block for the AVX2 mat-vec: its bytes widened to i16 (once per call,
/// not once per row) and `d_a`.
#[repr(C, align(32))]
#[derive(Clone, Copy)]
struct WideAct {
    q: [i16; 32],
    d: f32,
}

/// Lays out one token's activation blocks for [`rows_dot_q8_0_avx2`].
#[target_feature(enable = "avx2,fma,f16c")]
fn wide_acts<'b>(a: &[BlockQ8_0], out: &'b mut [MaybeUninit<WideAct>]) -> &'b [WideAct] {
    let t = f16_table();
    let out = &mut out[..a.len()];
    for (y, o) in a.iter().zip(out.iter_mut()) {
        let p = o.as_mut_ptr();
        // SAFETY: `p` points to a writable, 32-byte aligned `WideAct`: `q` is 64 bytes at offset
        // 0, `d` follows; both written before the slice is read below.
        unsafe {
            let q = std::ptr::addr_of_mut!((*p).q) as *mut __m256i;
            _mm256_store_si256(q, widen16(&y.qs[..16]));
            _mm256_store_si256(q.add(1), widen16(&y.qs[16..]));
            std::ptr::addr_of_mut!((*p).d).write(lut(t, y.d));
        }
    }
    // SAFETY: every element of `out` was written above; `MaybeUninit<T>` has `T`'s layout.
    unsafe { &*(out as *const [MaybeUninit<WideAct>] as *const [WideAct]) }
}

/// One Q8_0 row on AVX2 against `NT` tokens: per block the weights widened to i16 once for all
/// tokens (exact for every byte, like the one-row kernel), then per token two `madd` against its
/// widened activations, one conversion and one FMA by `d_w * d_a`, blocks alternating between two
/// accumulators. Each token's arithmetic is the same whatever `NT` is.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn rows_dot_q8_0_avx2<const NT: usize>(w: &[BlockQ8_0], acts: [&[WideAct]; NT]) -> [f32; NT] {
    assert!(acts.iter().all(|a| a.len() == w.len()));
    let t16 = f16_table();
    let mut acc = [[_mm256_setzero_ps(); 2]; NT];
    // Block b into accumulator $slot (a constant: the accumulators stay in registers).
    macro_rules! block {
        ($b:expr, $slot:literal) => {{
            let (b, x) = ($b, &w[$b]);
            let (wl, wh) = (widen16(&x.qs[..16]), widen16(&x.qs[16..]));
            let wd = lut(t16, x.d);
            for t in 0..NT {
                let y = &acts[t][b];
                // SAFETY: `q` is 64 bytes at a 32-byte aligned address.
                let (al, ah) = unsafe {
                    let q = y.q.as_ptr() as *const __m256i;
                    (_mm256_load_si256(q), _mm256_load_si256(q.add(1)))
                };
                let s = _mm256_add_epi32(_mm256_madd_epi16(wl, al), _mm256_madd_epi16(wh, ah));
                let d = _mm256_set1_ps(wd * y.d);
                acc[t][$slot] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc[t][$slot]);
            }
        }};
    }
    let mut b = 0;
    while b + 1 < w.len() {
        // The two blocks' 68 bytes: two lines.
        prefetch_lines_q8_0::<2, _>(&w[b]);
        block!(b, 0);
        block!(b + 1, 1);
        b += 2;
    }
    if b < w.len() {
        block!(b, 0);
    }
    let mut out = [0.0f32; NT];
    for t in 0..NT {
        out[t] = crate::x86_64::hsum_ps(_mm256_add_ps(acc[t][0], acc[t][1]));
    }
    out
}

/// Q8_0 rows on AVX2 against `NT` tokens (the `GemvFn` body for one, the `GemvMultiFn` body for
/// more).
#[target_feature(enable = "avx2,fma,f16c")]
fn run_q8_0_avx2<const NT: usize>(w: Rows<u8>, a: [&[BlockQ8_0]; NT], out: &mut RowsMut<f32>) {
    let mut buf = [[MaybeUninit::<WideAct>::uninit(); MAX_BLOCKS]; NT];
    let mut acts: [&[WideAct]; NT] = [&[]; NT];
    for (t, b) in buf.iter_mut().enumerate() {
        acts[t] = wide_acts(a[t], b);
    }
    for r in 0..w.n() {
        store_row(
            out,
            r,
            rows_dot_q8_0_avx2(cast_blocks::<BlockQ8_0>(w.row(r)), acts),
        );
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn run_q8_0_avx2_one(w: Rows<u8>, a: &[BlockQ8_0], out: &mut [f32]) {
    run_q8_0_avx2::<1>(w, [a], &mut RowsMut::one(out));
}

/// Q8_0 weights x Q8_0 activations on AVX2 (`GemvFn`).
fn gemv_q8_0_q8_0_avx2(n: usize, w: Rows<u8>, a: &[u8], out: &mut [f32]) {
    gemv_with::<BlockQ8_0, BlockQ8_0>(
        n,
        w,
        a,
        out,
        vec_dot_q8_0_q8_0,
        run_q8_0_avx2_one,
        debug_assert_avx2,
    );
}

/// Q8_0 weights x up to four tokens' Q8_0 activations on AVX2 (`GemvMultiFn`):
/// `gemv_q8_0_q8_0_avx2`'s bits per token, the weights widened once.
fn gemv_multi_q8_0_q8_0_avx2(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
    let runs = multi_runs!(run_q8_0_avx2, BlockQ8_0);
    gemv_multi_with::<BlockQ8_0, BlockQ8_0>(
        n,
        w,
        a,
        out,
        vec_dot_q8_0_q8_0,
        runs,
        debug_assert_avx2,
    );
}

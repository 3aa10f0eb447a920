//! Q8_0 x Q8_0 on x86: the one-row dots (AVX2, and AVX-512 VNNI), the decode mat-vec (AVX-512
//! VNNI), the block's unpacking for the prefill tiles, and this format's kernels.
//!
//! The AVX2 dot sign-extends both sides to i16 and uses `madd` (exact for the full i8 range).

use std::arch::x86_64::*;

use super::block32::{accumulate, vec_dot_entry};
use super::gemv::{gemv_with, seeds, MAX_BLOCKS};
use super::prefetch::prefetch_lines_q8_0;
use super::tile;
use super::tile::{TileBlock, Unpacked};
use super::{
    debug_assert_avx2, debug_assert_vnni, f16_table, h2f, load32i, lut, AVX2, AVXVNNI, VNNI,
};
use crate::blocks::{cast_blocks, BlockQ8_0};
use crate::dispatch::{offer, Offer, OfferedKernel as K};
use crate::types::GgmlType;
use crate::views::Rows;

/// Q8_0's kernels, AVX2 first (AVX-512 VNNI replaces them where the CPU has it).
pub(super) const OFFERS: &[Offer] = {
    const T: GgmlType = GgmlType::Q8_0;
    const A: GgmlType = GgmlType::Q8_0;
    &[
        offer(T, A, AVX2, K::VecDot(vec_dot_q8_0_q8_0)),
        offer(T, A, AVX2, K::Tile(tile::avx2::gemm_tile::<BlockQ8_0>)),
        offer(
            T,
            A,
            AVXVNNI,
            K::Tile(tile::avxvnni::gemm_tile::<BlockQ8_0>),
        ),
        offer(T, A, VNNI, K::VecDot(vec_dot_q8_0_q8_0_vnni)),
        offer(T, A, VNNI, K::Gemv(gemv_q8_0_q8_0)),
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

/// One Q8_0 row: sum over blocks of `d_w * d_a * (seed + levels . a)`, two blocks per step into
/// two accumulators. (The block scales are made inline: a separate first pass, to take them off
/// the vector pipes, was slower.)
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn row_dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0], seed: &[[i32; 8]], da: &[f32]) -> f32 {
    let nb = w.len();
    assert!(a.len() == nb && seed.len() == nb && da.len() == nb);
    let mut acc = [_mm256_setzero_ps(); 2];
    let block = |b: usize, d: __m256, acc: __m256| -> __m256 {
        // SAFETY: `seed[b]` is 32 readable bytes; unaligned load.
        let s0 = unsafe { _mm256_loadu_si256(seed[b].as_ptr() as *const __m256i) };
        let s = _mm256_dpbusd_epi32(s0, levels_q8_0(&w[b]), load32i(&a[b].qs));
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc)
    };
    let mut b = 0;
    while b + 1 < nb {
        // The two blocks' 68 bytes: two lines (one prefetch per step left every 16th line to
        // the hardware prefetcher).
        prefetch_lines_q8_0::<2, _>(w[b..].as_ptr());
        // Both blocks' d_w * d_a by F16C: a lookup in the 256 KiB f16 table misses L1 about as
        // often as the weights do.
        let bits = w[b].d.to_bits() as i32 | (w[b + 1].d.to_bits() as i32) << 16;
        // SAFETY: `da[b..b + 2]` is 8 readable bytes; unaligned load.
        let da2 = unsafe { _mm_castpd_ps(_mm_load_sd(da.as_ptr().add(b) as *const f64)) };
        let d2 = _mm256_castps128_ps256(_mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)), da2));
        let d0 = _mm256_permutevar8x32_ps(d2, _mm256_setzero_si256());
        let d1 = _mm256_permutevar8x32_ps(d2, _mm256_set1_epi32(1));
        acc[0] = block(b, d0, acc[0]);
        acc[1] = block(b + 1, d1, acc[1]);
        b += 2;
    }
    if b < nb {
        let d = lut(f16_table(), w[b].d) * da[b];
        acc[0] = block(b, _mm256_set1_ps(d), acc[0]);
    }
    crate::x86_64::hsum_ps(_mm256_add_ps(acc[0], acc[1]))
}

/// Q8_0 rows (`GemvFn` body): `out[r] = dot(row r of w, a)` for `nr` rows of `wrb` bytes; the
/// levels are `w + 128`, so each block's seed is `-128 * sum(a)`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q8_0(w: Rows<u8>, a: &[BlockQ8_0], out: &mut [f32]) {
    let nb = a.len();
    let mut seed = [[0i32; 8]; MAX_BLOCKS];
    let mut da = [0f32; MAX_BLOCKS];
    seeds(a, -128, &mut seed[..nb], &mut da[..nb]);
    for (r, o) in out.iter_mut().enumerate() {
        let row = cast_blocks::<BlockQ8_0>(w.row(r));
        *o = row_dot_q8_0(row, a, &seed[..nb], &da[..nb]);
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

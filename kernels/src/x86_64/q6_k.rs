//! Q6_K x Q8_K on x86: the one-row dot (AVX2), the decode mat-vec (AVX-512 VNNI), the prefill
//! tiles' body for its 6-bit levels and 16-element groups ([`KTile`]), and this format's kernels.

use std::arch::x86_64::*;

use super::block32::vec_dot_entry;
use super::gemv::{check, gemv_multi_with, multi_runs, store_row};
use super::prefetch::{gemv_streams_prefetch, prefetch_lines};
use super::tile;
use super::tile::{k16_tile, K16Block};
use super::{
    debug_assert_avx2, debug_assert_vnni, h2f, hsum_ps, load32, load32i, AVX2, AVXVNNI, VNNI,
};
use crate::blocks::{cast_blocks, BlockQ6_K, BlockQ8_K};
use crate::dispatch::{offer, Offer, OfferedKernel as K};
use crate::types::GgmlType;
use crate::views::{Rows, RowsMut};

/// Q6_K's kernels, AVX2 first (AVX-512 VNNI replaces them where the CPU has it).
pub(super) const OFFERS: &[Offer] = {
    const T: GgmlType = GgmlType::Q6_K;
    const A: GgmlType = GgmlType::Q8_K;
    &[
        offer(T, A, AVX2, K::VecDot(vec_dot_q6_k_q8_k)),
        offer(T, A, AVX2, K::Gemv(gemv_q6_k_q8_k_avx2)),
        offer(T, A, AVX2, K::GemvMulti(gemv_multi_q6_k_q8_k_avx2)),
        offer(T, A, AVX2, K::Tile(tile::avx2::gemm_tile_k::<BlockQ6_K>)),
        offer(
            T,
            A,
            AVXVNNI,
            K::Tile(tile::avxvnni::gemm_tile_k::<BlockQ6_K>),
        ),
        offer(T, A, VNNI, K::Gemv(gemv_q6_k_q8_k)),
        offer(T, A, VNNI, K::GemvMulti(gemv_multi_q6_k_q8_k)),
        offer(T, A, VNNI, K::Tile(tile::vnni::gemm_tile_k::<BlockQ6_K>)),
    ]
};

/// The one-row AVX2 dot: [`rows_dot_q6_k_avx2`] for one token (the AVX2 mat-vec's bits).
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q6_k(w: &[BlockQ6_K], a: &[BlockQ8_K]) -> f32 {
    rows_dot_q6_k_avx2::<1>(w, [a])[0]
}

vec_dot_entry!(/// Q6_K weights . Q8_K activations.
    vec_dot_q6_k_q8_k, dot_q6_k, BlockQ6_K, BlockQ8_K, debug_assert_avx2);

/// One Q6_K row x Q8_K on 512-bit registers. A Q6_K half (128 elements) is 64 `ql` bytes, whose
/// low nibbles are elements 0..64 and high nibbles 64..128, and 32 `qh` bytes holding bits 4-5 of
/// all four groups of 32: so the activation bytes need no reordering (`qs[128n..128n + 64]` and
/// `qs[128n + 64..128n + 128]` as they are). Per half, the `qh` bytes are broadcast to both
/// 256-bit halves and moved to bits 4-5 by one variable 16-bit shift per register (left 4 and 2
/// for groups 0 and 1, right 0 and 2 for groups 2 and 3), masked, and merged with the nibbles by
/// one `vpternlogd`. The levels (0..63) times the activations by `vpdpbusd` (4 products per i32
/// lane, |sum| <= 4 * 63 * 128 = 32256), `packssdw` of the two registers of a half (exact: each
/// 128-bit lane then holds the partial sums of one 16-element group of each), and one `vpdpwssd`
/// with the group scales spread by `vpermw`: 6 multiplying instructions per super-block (it was 8
/// with `maddubs` + `vpdpwssd` per register), the sum exact in i32 lanes; the offset
/// `-32 * sum_g scale_g * bsum_g` comes off before the one conversion and FMA per super-block.
/// Scale words for `packs(lo, hi)` of half n: in 128-bit lane j, words 0..4 are group 8n + j (of
/// the low nibbles) and words 4..8 group 8n + 4 + j (the high nibbles). Q3_K's and Q2_K's
/// mat-vecs (`gemv/k16.rs`) lay their levels out the same way and use it too.
pub(super) const Q6_K_SCALE_IDX: [[i16; 32]; 2] = {
    let mut t = [[0i16; 32]; 2];
    let mut n = 0;
    while n < 2 {
        let mut i = 0;
        while i < 32 {
            let (lane, word) = (i / 8, i % 8);
            t[n][i] = (8 * n + lane + if word >= 4 { 4 } else { 0 }) as i16;
            i += 1;
        }
        n += 1;
    }
    t
};

/// For `NT` tokens at once: the levels and the scale words once for all, each token's
/// arithmetic the same whatever `NT` is.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn rows_dot_q6_k<const NT: usize>(w: &[BlockQ6_K], a: [&[BlockQ8_K]; NT]) -> [f32; NT] {
    assert!(a.iter().all(|a| a.len() == w.len()));
    let m4 = _mm512_set1_epi8(0x0F);
    let m30 = _mm512_set1_epi8(0x30);
    let halves = |x: i16, y: i16| {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_set1_epi16(x)),
            _mm256_set1_epi16(y),
        )
    };
    let (shl, shr) = (halves(4, 2), halves(0, 2));
    // SAFETY: each row of Q6_K_SCALE_IDX is 32 i16 = 64 readable bytes; unaligned loads.
    let idx = Q6_K_SCALE_IDX.map(|r| unsafe { _mm512_loadu_si512(r.as_ptr() as *const __m512i) });
    let mut acc = [_mm512_setzero_ps(); NT];
    let pf = gemv_streams_prefetch();
    for (b, x) in w.iter().enumerate() {
        if pf {
            // The super-block's 210 bytes: four lines.
            prefetch_lines::<4, _>(x);
        }
        // SAFETY: `scales` is 16 bytes; unaligned load.
        let sc =
            unsafe { _mm256_cvtepi8_epi16(_mm_loadu_si128(x.scales.as_ptr() as *const __m128i)) };
        let mut sum = [_mm512_setzero_si512(); NT];
        for t in 0..NT {
            // SAFETY: `bsums` is 16 i16 = 32 bytes; unaligned load.
            let bs = unsafe { _mm256_loadu_si256(a[t][b].bsums.as_ptr() as *const __m256i) };
            let off = _mm256_slli_epi32::<5>(_mm256_madd_epi16(sc, bs));
            sum[t] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(off));
        }
        let scz = _mm512_castsi256_si512(sc);
        for (n, sidx) in idx.iter().enumerate() {
            // SAFETY: `ql[64n..64n + 64]` and `qh[32n..32n + 32]` are in bounds (n < 2: `idx`
            // has two entries); unaligned loads.
            let (ql, qh) = unsafe {
                (
                    _mm512_loadu_si512(x.ql.as_ptr().add(64 * n) as *const __m512i),
                    _mm512_broadcast_i64x4(_mm256_loadu_si256(
                        x.qh.as_ptr().add(32 * n) as *const __m256i
                    )),
                )
            };
            // (a & b) | c with a = nibbles, b = 0x0F, c = the two high bits at 4-5.
            let lo = _mm512_ternarylogic_epi32::<0xEA>(
                ql,
                m4,
                _mm512_and_si512(_mm512_sllv_epi16(qh, shl), m30),
            );
            let hi = _mm512_ternarylogic_epi32::<0xEA>(
                _mm512_srli_epi16::<4>(ql),
                m4,
                _mm512_and_si512(_mm512_srlv_epi16(qh, shr), m30),
            );
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
        let dw = h2f(x.d);
        for t in 0..NT {
            let d = _mm512_set1_ps(dw * a[t][b].d);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[t]), d, acc[t]);
        }
    }
    acc.map(|v| _mm512_reduce_add_ps(v))
}

/// Q6_K weights x Q8_K activations (`GemvFn`).
fn gemv_q6_k_q8_k(n: usize, w: Rows<u8>, a: &[u8], out: &mut [f32]) {
    let out = check::<BlockQ6_K, BlockQ8_K>(n, &w, a, out);
    let a = cast_blocks::<BlockQ8_K>(a);
    for (r, o) in out.iter_mut().enumerate() {
        debug_assert_vnni();
        // SAFETY: reachable only through the kernel table, filled with this kernel only after
        // detecting AVX2, FMA, F16C, AVX-512 F/BW/VL and VNNI; lengths checked above.
        *o = unsafe { rows_dot_q6_k::<1>(cast_blocks(w.row(r)), [a]) }[0];
    }
}

/// Q6_K rows against `NT` tokens (the `GemvMultiFn` body).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q6_k_multi<const NT: usize>(w: Rows<u8>, a: [&[BlockQ8_K]; NT], out: &mut RowsMut<f32>) {
    for r in 0..w.n() {
        store_row(out, r, rows_dot_q6_k(cast_blocks(w.row(r)), a));
    }
}

/// Q6_K weights x up to four tokens' Q8_K activations (`GemvMultiFn`): `gemv_q6_k_q8_k`'s bits
/// per token, the weights unpacked once.
fn gemv_multi_q6_k_q8_k(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
    let runs = multi_runs!(run_q6_k_multi, BlockQ8_K);
    // Long rows one token at a time, as `gemv_q6_k_q8_k` computes them.
    gemv_multi_with::<BlockQ6_K, BlockQ8_K>(n, w, a, out, row_q6_k, runs, debug_assert_vnni);
}

/// One row, one token, as `gemv_q6_k_q8_k` computes it (the long-row path of the multi kernel).
fn row_q6_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut o = [0.0f32];
    gemv_q6_k_q8_k(n, Rows::one(w), a, &mut o);
    o[0]
}

impl K16Block for BlockQ6_K {
    const TYPE: GgmlType = GgmlType::Q6_K;
    const OFFSET: i32 = 32;
    const HAS_MIN: bool = false;
    const SUMS_FIT_I16: bool = false;
    #[inline(always)]
    unsafe fn scales(&self) -> __m128i {
        // SAFETY: scales is 16 bytes; unaligned load.
        unsafe { _mm_loadu_si128(self.scales.as_ptr() as *const __m128i) }
    }
    #[inline(always)]
    unsafe fn mins(&self) -> __m128i {
        // SAFETY: the caller guarantees AVX2.
        unsafe { _mm_setzero_si128() }
    }
    #[inline(always)]
    unsafe fn d(&self) -> (f32, f32) {
        // SAFETY: the caller guarantees F16C.
        (unsafe { h2f(self.d) }, 0.0)
    }
    #[inline(always)]
    unsafe fn levels(&self, c: usize) -> __m256i {
        // SAFETY: the caller guarantees AVX2.
        unsafe { q6_levels(self, c) }
    }
}

k16_tile!(BlockQ6_K);

/// Unsigned levels q (0..63, the stored value before its offset of 32) of the 32-element chunk
/// `c` (0..8) of a Q6_K block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q6_levels(b: &BlockQ6_K, c: usize) -> __m256i {
    let (n, k) = (c / 4, c % 4);
    let ql = load32(
        b.ql[64 * n + 32 * (k % 2)..64 * n + 32 * (k % 2) + 32]
            .try_into()
            .expect("32 bytes"),
    );
    let qh = load32(b.qh[32 * n..32 * n + 32].try_into().expect("32 bytes"));
    let m4 = _mm256_set1_epi8(0x0F);
    let lo = if k < 2 {
        _mm256_and_si256(ql, m4)
    } else {
        _mm256_and_si256(_mm256_srli_epi16::<4>(ql), m4)
    };
    // Bits 2k, 2k + 1 of qh moved to bits 4, 5.
    let hi = match k {
        0 => _mm256_slli_epi16::<4>(_mm256_and_si256(qh, _mm256_set1_epi8(0x03))),
        1 => _mm256_slli_epi16::<2>(_mm256_and_si256(qh, _mm256_set1_epi8(0x0C))),
        2 => _mm256_and_si256(qh, _mm256_set1_epi8(0x30)),
        _ => _mm256_srli_epi16::<2>(_mm256_and_si256(qh, _mm256_set1_epi8(0xC0u8 as i8))),
    };
    _mm256_or_si256(lo, hi)
}

/// Q6_K rows on AVX2 against `NT` tokens (with one, the one-row dot `dot_q6_k`): per super-block
/// the 6-bit levels and the scale words made once for all tokens, then per token the `bsums`
/// offset, `maddubs` + `madd` per group and one FMA by `d_w * d_a`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn rows_dot_q6_k_avx2<const NT: usize>(w: &[BlockQ6_K], a: [&[BlockQ8_K]; NT]) -> [f32; NT] {
    assert!(a.iter().all(|a| a.len() == w.len()));
    let mut acc = [_mm256_setzero_ps(); NT];
    let m4 = _mm256_set1_epi8(0x0F);
    let m3 = _mm256_set1_epi8(0x03);
    let m12 = _mm256_set1_epi8(0x0C);
    let m48 = _mm256_set1_epi8(0x30);
    let m192 = _mm256_set1_epi8(0xC0u8 as i8);
    for (b, x) in w.iter().enumerate() {
        prefetch_lines::<4, _>(x);
        // SAFETY: scales is 16 bytes; unaligned load.
        let sc8 = unsafe { _mm_loadu_si128(x.scales.as_ptr() as *const __m128i) };
        let sc16 = _mm256_cvtepi8_epi16(sc8);
        let mut sumi = [_mm256_setzero_si256(); NT];
        for t in 0..NT {
            // Offset term: 32 * sum_g scale_g * bsum_g.
            // SAFETY: bsums is 16 i16 = 32 readable bytes; unaligned load.
            let bs = unsafe { _mm256_loadu_si256(a[t][b].bsums.as_ptr() as *const __m256i) };
            let off = _mm256_slli_epi32::<5>(_mm256_madd_epi16(sc16, bs));
            sumi[t] = _mm256_sub_epi32(_mm256_setzero_si256(), off);
        }
        for n in 0..2 {
            let ql0 = load32(x.ql[64 * n..64 * n + 32].try_into().expect("32 bytes"));
            let ql1 = load32(x.ql[64 * n + 32..64 * n + 64].try_into().expect("32 bytes"));
            let qh = load32(x.qh[32 * n..32 * n + 32].try_into().expect("32 bytes"));
            let q = [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, m4),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(qh, m3)),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, m4),
                    _mm256_slli_epi16::<2>(_mm256_and_si256(qh, m12)),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
                    _mm256_and_si256(qh, m48),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                    _mm256_srli_epi16::<2>(_mm256_and_si256(qh, m192)),
                ),
            ];
            for (k, &qk) in q.iter().enumerate() {
                let g = (8 * n + 2 * k) as i64;
                // i16 lanes 0..8 = scale g (elements 0..16), 8..16 = scale g + 1.
                let mask = _mm_set_epi64x((g + 1) * 0x0101010101010101, g * 0x0101010101010101);
                let sc = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, mask));
                for t in 0..NT {
                    let y = &a[t][b];
                    let av = load32i(
                        y.qs[128 * n + 32 * k..128 * n + 32 * k + 32]
                            .try_into()
                            .expect("32 bytes"),
                    );
                    let p = _mm256_madd_epi16(sc, _mm256_maddubs_epi16(qk, av));
                    sumi[t] = _mm256_add_epi32(sumi[t], p);
                }
            }
        }
        let dw = h2f(x.d);
        for t in 0..NT {
            acc[t] = _mm256_fmadd_ps(
                _mm256_set1_ps(dw * a[t][b].d),
                _mm256_cvtepi32_ps(sumi[t]),
                acc[t],
            );
        }
    }
    acc.map(|v| hsum_ps(v))
}

/// Q6_K rows on AVX2 against `NT` tokens (the `GemvFn` body for one, the `GemvMultiFn` body for
/// more).
#[target_feature(enable = "avx2,fma,f16c")]
fn run_q6_k_avx2<const NT: usize>(w: Rows<u8>, a: [&[BlockQ8_K]; NT], out: &mut RowsMut<f32>) {
    for r in 0..w.n() {
        store_row(out, r, rows_dot_q6_k_avx2(cast_blocks(w.row(r)), a));
    }
}

/// Q6_K weights x Q8_K activations on AVX2 (`GemvFn`): the one-row kernel's bits.
fn gemv_q6_k_q8_k_avx2(n: usize, w: Rows<u8>, a: &[u8], out: &mut [f32]) {
    let out = check::<BlockQ6_K, BlockQ8_K>(n, &w, a, out);
    debug_assert_avx2();
    let a = cast_blocks::<BlockQ8_K>(a);
    // SAFETY: reachable only through the kernel table, filled with this kernel only after
    // detecting AVX2, FMA and F16C; lengths checked above.
    unsafe { run_q6_k_avx2::<1>(w, [a], &mut RowsMut::one(out)) }
}

/// Q6_K weights x up to four tokens' Q8_K activations on AVX2 (`GemvMultiFn`):
/// `gemv_q6_k_q8_k_avx2`'s bits per token, the levels made once.
fn gemv_multi_q6_k_q8_k_avx2(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
    let runs = multi_runs!(run_q6_k_avx2, BlockQ8_K);
    // Long rows one token at a time, as `gemv_q6_k_q8_k_avx2` computes them.
    gemv_multi_with::<BlockQ6_K, BlockQ8_K>(n, w, a, out, row_q6_k_avx2, runs, debug_assert_avx2);
}

/// One row, one token, as `gemv_q6_k_q8_k_avx2` computes it (the long-row path of the multi
/// kernel).
fn row_q6_k_avx2(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut o = [0.0f32];
    gemv_q6_k_q8_k_avx2(n, Rows::one(w), a, &mut o);
    o[0]
}

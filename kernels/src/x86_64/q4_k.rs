//! Q4_K x Q8_K on x86: the one-row dot (AVX2), the decode mat-vecs (AVX-512 VNNI and AVX2), the
//! super-block's unpacking for the prefill tiles ([`KBlock`]), and this format's kernels.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::block32::vec_dot_entry;
use super::gemv::{gemv_multi_with, gemv_with, multi_runs, store_row, MAX_BLOCKS};
use super::prefetch::prefetch_lines;
use super::superblock::dot_k4_like;
use super::tile;
use super::tile::KBlock;
use super::{debug_assert_avx2, debug_assert_vnni, h2f, hsum_ps, load32, AVX2, AVXVNNI, VNNI};
use crate::blocks::{cast_blocks, BlockQ4_K, BlockQ8_K};
use crate::dispatch::{offer, Offer, OfferedKernel as K};
use crate::types::GgmlType;
use crate::views::{Rows, RowsMut};

/// Q4_K's kernels, AVX2 first (AVX-512 VNNI replaces them where the CPU has it).
pub(super) const OFFERS: &[Offer] = {
    const T: GgmlType = GgmlType::Q4_K;
    const A: GgmlType = GgmlType::Q8_K;
    &[
        offer(T, A, AVX2, K::VecDot(vec_dot_q4_k_q8_k)),
        offer(T, A, AVX2, K::Gemv(gemv_q4_k_q8_k_avx2)),
        offer(T, A, AVX2, K::GemvMulti(gemv_multi_q4_k_q8_k_avx2)),
        offer(T, A, AVX2, K::Tile(tile::avx2::gemm_tile_k::<BlockQ4_K>)),
        offer(
            T,
            A,
            AVXVNNI,
            K::Tile(tile::avxvnni::gemm_tile_k::<BlockQ4_K>),
        ),
        offer(T, A, VNNI, K::Gemv(gemv_q4_k_q8_k)),
        offer(T, A, VNNI, K::GemvMulti(gemv_multi_q4_k_q8_k)),
        offer(T, A, VNNI, K::Tile(tile::vnni::gemm_tile_k::<BlockQ4_K>)),
    ]
};

impl KBlock for BlockQ4_K {
    const HALF_SUMS_FIT_I16: bool = true;
    const TYPE: GgmlType = GgmlType::Q4_K;
    #[inline(always)]
    fn header(&self) -> (&[u8; 12], half::f16, half::f16) {
        (&self.scales, self.d, self.dmin)
    }
    #[inline(always)]
    fn levels(&self, s: usize) -> __m256i {
        // SAFETY: the tile functions run only with AVX2 enabled (their target_feature set), which
        // is the only caller of this method; the 32-byte chunk is in bounds by construction.
        unsafe { k4_levels(&self.qs, s) }
    }
}

/// Low (s even) or high (s odd) nibbles of the 32-byte chunk s / 2 of `qs`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn k4_levels(qs: &[u8; 128], s: usize) -> __m256i {
    let c = s / 2;
    let bits = load32(qs[32 * c..32 * c + 32].try_into().expect("32 bytes"));
    let bits = if s % 2 == 1 {
        _mm256_srli_epi16::<4>(bits)
    } else {
        bits
    };
    _mm256_and_si256(bits, _mm256_set1_epi8(0x0F))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q4_k(w: &[BlockQ4_K], a: &[BlockQ8_K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    let zero = _mm256_setzero_si256();
    for (x, y) in w.iter().zip(a) {
        prefetch_lines::<2, _>(x);
        dot_k4_like(
            h2f(x.d),
            h2f(x.dmin),
            &x.scales,
            &x.qs,
            y,
            |_| (zero, zero),
            &mut acc,
            &mut acc_m,
        );
    }
    let m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    let m = _mm_add_ss(m, _mm_movehdup_ps(m));
    hsum_ps(acc) + _mm_cvtss_f32(m)
}

vec_dot_entry!(/// Q4_K weights . Q8_K activations.
    vec_dot_q4_k_q8_k, dot_q4_k, BlockQ4_K, BlockQ8_K, debug_assert_avx2);

/// Q4_K on 512-bit registers: per activation super-block, made once per call, the 256 bytes in
/// the order the weights' levels come out of two 64-byte loads of `qs` (low nibbles of bytes 0..64
/// are elements 0..32 and 64..96, high nibbles 32..64 and 96..128, and the same for the second
/// half), the 8 sub-block sums (for the mins) and `d`.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct SuperQ4K {
    act: [i8; 256],
    bsum: [i16; 8],
    d: f32,
}

/// Super-blocks (at most 64: rows of up to 16384 elements) a call's stack buffer holds.
const MAX_SUPER: usize = MAX_BLOCKS / 8;

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn supers_q4_k<'p>(a: &[BlockQ8_K], out: &'p mut [MaybeUninit<SuperQ4K>]) -> &'p [SuperQ4K] {
    let out = &mut out[..a.len()];
    for (y, o) in a.iter().zip(out.iter_mut()) {
        let mut act = [0i8; 256];
        for (h, dst) in act.chunks_exact_mut(128).enumerate() {
            let src = &y.qs[128 * h..128 * h + 128];
            dst[..32].copy_from_slice(&src[..32]);
            dst[32..64].copy_from_slice(&src[64..96]);
            dst[64..96].copy_from_slice(&src[32..64]);
            dst[96..].copy_from_slice(&src[96..]);
        }
        let bsum = std::array::from_fn(|j| y.bsums[2 * j] + y.bsums[2 * j + 1]);
        o.write(SuperQ4K { act, bsum, d: y.d });
    }
    // SAFETY: every element of `out` was written above; `MaybeUninit<T>` has `T`'s layout.
    unsafe { &*(out as *const [MaybeUninit<SuperQ4K>] as *const [SuperQ4K]) }
}

/// `vpshufb` controls that spread Q4_K scale bytes (broadcast to every 128-bit lane) over the
/// words of `packs(D_a, D_b)`: in lanes 0-1 words 0..4 get sub-block `first`, 4..8 `first + 1`;
/// in lanes 2-3 `first + 2` and `first + 3` (zero high bytes).
const fn q4_k_scale_ctl(first: u8) -> [u8; 64] {
    let mut c = [0x80u8; 64];
    let mut i = 0;
    while i < 32 {
        let (lane, word) = (i / 8, i % 8);
        c[2 * i] = first + if lane >= 2 { 2 } else { 0 } + if word >= 4 { 1 } else { 0 };
        i += 1;
    }
    c
}
const Q4_K_SCALE_CTL: [[u8; 64]; 2] = [q4_k_scale_ctl(0), q4_k_scale_ctl(4)];

/// A Q4_K super-block's 6-bit scales and mins unpacked in one xmm (two `pshufd`, a variable
/// shift, and/or): bytes `[scales 0..8, mins 0..8]`; and `[d, dmin]` as f32 (F16C), which each
/// token multiplies by its `d_a` (the tokens of a multi-token call share this part).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q4_k_header_w<W: K4Gemv>(x: &W) -> (__m128i, __m128) {
    let p = x as *const W as *const u8;
    // SAFETY: `d`, `dmin` are the block's first 4 bytes and `scales` the 12 after them, followed
    // by at least 16 more (`K4Gemv`): 20 readable bytes; unaligned loads.
    let (bits, raw) = unsafe {
        (
            (p as *const i32).read_unaligned(),
            _mm_loadu_si128(p.add(4) as *const __m128i),
        )
    };
    let p = _mm_shuffle_epi32::<0b10_01_10_00>(raw); // [u0, u2, u1, u2]
    let q = _mm_shuffle_epi32::<0b01_01_00_00>(raw); // [u0, u0, u1, u1]
    let r = _mm_and_si128(
        _mm_srlv_epi32(p, _mm_set_epi32(4, 0, 0, 0)),
        _mm_set_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f),
    );
    let t = _mm_and_si128(
        _mm_srli_epi32::<2>(q),
        _mm_set_epi32(0x30303030, 0, 0x30303030, 0),
    );
    (_mm_or_si128(r, t), _mm_cvtph_ps(_mm_cvtsi32_si128(bits)))
}

/// A Q4_K-layout super-block as the mat-vecs read it: `d`, `dmin` (f16) and the 12 packed scale
/// bytes as its first 16 bytes, then at least 16 more; the 128 nibble bytes; Q5_K's fifth bits.
pub(super) trait K4Gemv: KBlock {
    fn qs(&self) -> &[u8; 128];
    fn qh(&self) -> Option<&[u8; 32]>;
}

impl K4Gemv for BlockQ4_K {
    #[inline(always)]
    fn qs(&self) -> &[u8; 128] {
        &self.qs
    }
    #[inline(always)]
    fn qh(&self) -> Option<&[u8; 32]> {
        None
    }
}

/// One Q4_K row: per super-block, four `vpdpbusd` (levels 0..15 x activations, 4 products per
/// i32 lane: |sum| <= 4 * 15 * 128 = 7680) give the register pairs (sub-blocks 0|2, 1|3) and
/// (4|6, 5|7); `packssdw` of each pair is exact (|x| < 2^15) and puts two sub-blocks' partial
/// sums in each 128-bit lane, and one `vpdpwssd` per pair multiplies them by the sub-block
/// scales (words spread by `vpshufb`) and sums exactly in i32 lanes: 6 multiplying instructions
/// per super-block instead of 8 for `maddubs` + `vpdpwssd` per register. The mins term from the
/// precomputed sub-block sums (`madd`).
/// For `NT` tokens at once: the levels, scale words and `[d, dmin]` once for all, each token's
/// arithmetic the same whatever `NT` is.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn rows_dot_k4<W: K4Gemv, const NT: usize>(w: &[W], sup: [&[SuperQ4K]; NT]) -> [f32; NT] {
    assert!(sup.iter().all(|s| s.len() == w.len()));
    let m4 = _mm512_set1_epi8(0x0F);
    // SAFETY: each control is 64 readable bytes; unaligned loads.
    let (c01, c23) = unsafe {
        (
            _mm512_loadu_si512(Q4_K_SCALE_CTL[0].as_ptr() as *const __m512i),
            _mm512_loadu_si512(Q4_K_SCALE_CTL[1].as_ptr() as *const __m512i),
        )
    };
    let mut acc = [_mm512_setzero_ps(); NT];
    let mut acc_m = [_mm_setzero_ps(); NT];
    for (b, x) in w.iter().enumerate() {
        prefetch_lines::<3, _>(x);
        let (um, wd) = q4_k_header_w(x);
        let mins = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(um, um));
        // Scale bytes 0..8 in every 128-bit lane.
        let sc = _mm512_broadcast_i32x4(um);
        let (s01, s23) = (_mm512_shuffle_epi8(sc, c01), _mm512_shuffle_epi8(sc, c23));
        // SAFETY: `qs` is 128 readable bytes; unaligned loads.
        let (q0, q1) = unsafe {
            let q = x.qs().as_ptr() as *const __m512i;
            (_mm512_loadu_si512(q), _mm512_loadu_si512(q.add(1)))
        };
        let mut l = [
            _mm512_and_si512(q0, m4),
            _mm512_and_si512(_mm512_srli_epi16::<4>(q0), m4),
            _mm512_and_si512(q1, m4),
            _mm512_and_si512(_mm512_srli_epi16::<4>(q1), m4),
        ];
        if let Some(qh) = x.qh() {
            // Q5_K: sub-block s takes bit s of qh[l]; l[k] holds sub-blocks (0|2, 1|3, 4|6, 5|7).
            // SAFETY: `qh` is 32 readable bytes; unaligned load.
            let h = unsafe {
                _mm512_broadcast_i64x4(_mm256_loadu_si256(qh.as_ptr() as *const __m256i))
            };
            let b16 = _mm512_set1_epi8(0x10);
            for (k, (s0, s1)) in [(0, 2), (1, 3), (4, 6), (5, 7)].into_iter().enumerate() {
                let bits = _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(_mm256_set1_epi8((1u8 << s0) as i8)),
                    _mm256_set1_epi8((1u8 << s1) as i8),
                );
                l[k] = _mm512_mask_add_epi8(l[k], _mm512_test_epi8_mask(h, bits), l[k], b16);
            }
        }
        for t in 0..NT {
            let s = &sup[t][b];
            let dd = _mm_mul_ps(wd, _mm_set1_ps(s.d));
            // SAFETY: `bsum` is 8 i16 = 16 readable bytes; unaligned load.
            let bs = unsafe { _mm_loadu_si128(s.bsum.as_ptr() as *const __m128i) };
            let m = _mm_cvtepi32_ps(_mm_madd_epi16(mins, bs));
            acc_m[t] = _mm_fmadd_ps(m, _mm_permute_ps::<0b01_01_01_01>(dd), acc_m[t]);
            // SAFETY: `act` is 256 bytes at a 64-byte aligned address.
            let a = unsafe {
                let a = s.act.as_ptr() as *const __m512i;
                [
                    _mm512_load_si512(a),
                    _mm512_load_si512(a.add(1)),
                    _mm512_load_si512(a.add(2)),
                    _mm512_load_si512(a.add(3)),
                ]
            };
            let z = _mm512_setzero_si512();
            let d0 = _mm512_dpbusd_epi32(z, l[0], a[0]);
            let d1 = _mm512_dpbusd_epi32(z, l[1], a[1]);
            let d2 = _mm512_dpbusd_epi32(z, l[2], a[2]);
            let d3 = _mm512_dpbusd_epi32(z, l[3], a[3]);
            let sum = _mm512_dpwssd_epi32(z, _mm512_packs_epi32(d0, d1), s01);
            let sum = _mm512_dpwssd_epi32(sum, _mm512_packs_epi32(d2, d3), s23);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_broadcastss_ps(dd), acc[t]);
        }
    }
    let mut out = [0.0f32; NT];
    for t in 0..NT {
        let m = _mm_add_ps(acc_m[t], _mm_movehl_ps(acc_m[t], acc_m[t]));
        let m = _mm_add_ss(m, _mm_movehdup_ps(m));
        out[t] = _mm512_reduce_add_ps(acc[t]) - _mm_cvtss_f32(m);
    }
    out
}

/// Q4_K rows against `NT` tokens (the `GemvFn` body for one, the `GemvMultiFn` body for more).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q4_k_multi<const NT: usize>(w: Rows<u8>, a: [&[BlockQ8_K]; NT], out: &mut RowsMut<f32>) {
    run_k4_multi::<BlockQ4_K, NT>(w, a, out)
}

/// Rows of a [`K4Gemv`] format against `NT` tokens on AVX-512 VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
pub(super) fn run_k4_multi<W: K4Gemv, const NT: usize>(
    w: Rows<u8>,
    a: [&[BlockQ8_K]; NT],
    out: &mut RowsMut<f32>,
) {
    let mut buf = [[MaybeUninit::<SuperQ4K>::uninit(); MAX_SUPER]; NT];
    let mut sup: [&[SuperQ4K]; NT] = [&[]; NT];
    for (t, b) in buf.iter_mut().enumerate() {
        sup[t] = supers_q4_k(a[t], b);
    }
    for r in 0..w.n() {
        store_row(out, r, rows_dot_k4::<W, NT>(cast_blocks(w.row(r)), sup));
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q4_k(w: Rows<u8>, a: &[BlockQ8_K], out: &mut [f32]) {
    run_q4_k_multi::<1>(w, [a], &mut RowsMut::one(out));
}

/// One Q4_K row on AVX2 alone against the super-blocks of `supers_q4_k`: per 32-byte chunk c of
/// `qs`, the low nibbles (sub-block 2c) and the high ones (2c + 1) against their activations by
/// `maddubs` (|pair| <= 2 * 15 * 128), each times its sub-block scale by `madd` with the scale
/// broadcast to i16 words (`pshufb`): exact i32 lanes; the mins term from the precomputed
/// sub-block sums; one conversion and FMA per super-block.
/// For `NT` tokens at once: the levels, scale words and `[d, dmin]` once for all, each token's
/// arithmetic the same whatever `NT` is.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn rows_dot_k4_avx2<W: K4Gemv, const NT: usize>(w: &[W], sup: [&[SuperQ4K]; NT]) -> [f32; NT] {
    assert!(sup.iter().all(|s| s.len() == w.len()));
    let m4 = _mm256_set1_epi8(0x0F);
    // Word k of every 128-bit lane <- scale byte k, zero-extended.
    let spread: [__m256i; 8] =
        std::array::from_fn(|k| _mm256_set1_epi16((0x8000u16 | k as u16) as i16));
    let mut acc = [_mm256_setzero_ps(); NT];
    let mut acc_m = [_mm_setzero_ps(); NT];
    for (b, x) in w.iter().enumerate() {
        prefetch_lines::<3, _>(x);
        let (um, wd) = q4_k_header_w(x);
        let mins = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(um, um));
        let sc = _mm256_broadcastsi128_si256(um);
        let mut sum = [_mm256_setzero_si256(); NT];
        for c in 0..4 {
            let (h, k) = (c / 2, c % 2);
            // SAFETY: `qs[32c..32c + 32]` is in bounds; unaligned load.
            let q = unsafe { _mm256_loadu_si256(x.qs().as_ptr().add(32 * c) as *const __m256i) };
            let (mut ql, mut qh) = (
                _mm256_and_si256(q, m4),
                _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4),
            );
            if let Some(hb) = x.qh() {
                // Q5_K: sub-block 2c takes bit 2c of qh[l], 2c + 1 bit 2c + 1, as 16.
                let hb = load32(hb);
                let b16 = _mm256_set1_epi8(0x10);
                let fifth = |s: usize| {
                    let m = _mm256_set1_epi8((1u8 << s) as i8);
                    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, m), m), b16)
                };
                ql = _mm256_or_si256(ql, fifth(2 * c));
                qh = _mm256_or_si256(qh, fifth(2 * c + 1));
            }
            let (sl, sh) = (
                _mm256_shuffle_epi8(sc, spread[2 * c]),
                _mm256_shuffle_epi8(sc, spread[2 * c + 1]),
            );
            for t in 0..NT {
                let s = &sup[t][b];
                // Sub-block 2c's activations are at act[128h + 32k..], 2c + 1's at
                // act[128h + 64 + 32k..].
                // SAFETY: the two 32-byte activation runs are in bounds; unaligned loads.
                let (al, ah) = unsafe {
                    (
                        _mm256_loadu_si256(s.act.as_ptr().add(128 * h + 32 * k) as *const __m256i),
                        _mm256_loadu_si256(
                            s.act.as_ptr().add(128 * h + 64 + 32 * k) as *const __m256i
                        ),
                    )
                };
                let pl = _mm256_madd_epi16(_mm256_maddubs_epi16(ql, al), sl);
                let ph = _mm256_madd_epi16(_mm256_maddubs_epi16(qh, ah), sh);
                sum[t] = _mm256_add_epi32(sum[t], _mm256_add_epi32(pl, ph));
            }
        }
        for t in 0..NT {
            let s = &sup[t][b];
            let dd = _mm_mul_ps(wd, _mm_set1_ps(s.d));
            // SAFETY: `bsum` is 8 i16 = 16 readable bytes; unaligned load.
            let bs = unsafe { _mm_loadu_si128(s.bsum.as_ptr() as *const __m128i) };
            let m = _mm_cvtepi32_ps(_mm_madd_epi16(mins, bs));
            acc_m[t] = _mm_fmadd_ps(m, _mm_permute_ps::<0b01_01_01_01>(dd), acc_m[t]);
            acc[t] = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(sum[t]),
                _mm256_broadcastss_ps(dd),
                acc[t],
            );
        }
    }
    let mut out = [0.0f32; NT];
    for t in 0..NT {
        let m = _mm_add_ps(acc_m[t], _mm_movehl_ps(acc_m[t], acc_m[t]));
        let m = _mm_add_ss(m, _mm_movehdup_ps(m));
        out[t] = crate::x86_64::hsum_ps(acc[t]) - _mm_cvtss_f32(m);
    }
    out
}

/// Q4_K rows on AVX2 against `NT` tokens (the `GemvFn` body for one, the `GemvMultiFn` body for
/// more).
#[target_feature(enable = "avx2,fma,f16c")]
fn run_q4_k_avx2_multi<const NT: usize>(
    w: Rows<u8>,
    a: [&[BlockQ8_K]; NT],
    out: &mut RowsMut<f32>,
) {
    run_k4_avx2_multi::<BlockQ4_K, NT>(w, a, out)
}

/// Rows of a [`K4Gemv`] format against `NT` tokens on AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn run_k4_avx2_multi<W: K4Gemv, const NT: usize>(
    w: Rows<u8>,
    a: [&[BlockQ8_K]; NT],
    out: &mut RowsMut<f32>,
) {
    let mut buf = [[MaybeUninit::<SuperQ4K>::uninit(); MAX_SUPER]; NT];
    let mut sup: [&[SuperQ4K]; NT] = [&[]; NT];
    for (t, b) in buf.iter_mut().enumerate() {
        sup[t] = supers_q4_k(a[t], b);
    }
    for r in 0..w.n() {
        store_row(
            out,
            r,
            rows_dot_k4_avx2::<W, NT>(cast_blocks(w.row(r)), sup),
        );
    }
}

/// Q4_K rows on AVX2 (`GemvFn` body).
#[target_feature(enable = "avx2,fma,f16c")]
fn run_q4_k_avx2(w: Rows<u8>, a: &[BlockQ8_K], out: &mut [f32]) {
    run_q4_k_avx2_multi::<1>(w, [a], &mut RowsMut::one(out));
}

/// Q4_K weights x Q8_K activations (`GemvFn`).
fn gemv_q4_k_q8_k(n: usize, w: Rows<u8>, a: &[u8], out: &mut [f32]) {
    gemv_with::<BlockQ4_K, BlockQ8_K>(n, w, a, out, vec_dot_q4_k_q8_k, run_q4_k, debug_assert_vnni);
}

/// Q4_K weights x up to four tokens' Q8_K activations (`GemvMultiFn`): `gemv_q4_k_q8_k`'s bits
/// per token, the weights unpacked once.
fn gemv_multi_q4_k_q8_k(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
    let runs = multi_runs!(run_q4_k_multi, BlockQ8_K);
    gemv_multi_with::<BlockQ4_K, BlockQ8_K>(
        n,
        w,
        a,
        out,
        vec_dot_q4_k_q8_k,
        runs,
        debug_assert_vnni,
    );
}

/// Q4_K weights x Q8_K activations on AVX2 alone (`GemvFn`).
fn gemv_q4_k_q8_k_avx2(n: usize, w: Rows<u8>, a: &[u8], out: &mut [f32]) {
    gemv_with::<BlockQ4_K, BlockQ8_K>(
        n,
        w,
        a,
        out,
        vec_dot_q4_k_q8_k,
        run_q4_k_avx2,
        debug_assert_avx2,
    );
}

/// Q4_K weights x up to four tokens' Q8_K activations on AVX2 (`GemvMultiFn`):
/// `gemv_q4_k_q8_k_avx2`'s bits per token, the weights unpacked once.
fn gemv_multi_q4_k_q8_k_avx2(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
    let runs = multi_runs!(run_q4_k_avx2_multi, BlockQ8_K);
    gemv_multi_with::<BlockQ4_K, BlockQ8_K>(
        n,
        w,
        a,
        out,
        vec_dot_q4_k_q8_k,
        runs,
        debug_assert_avx2,
    );
}

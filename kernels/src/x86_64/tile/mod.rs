//! Prefill tiles (`GemmTileFn`), compiled twice: with AVX-512 VNNI `vpdpbusd` on 256-bit registers
//! (`vnni`) and with AVX2 `maddubs` + `madd` (`avx2`), for the
//! 32-element formats Q4_0, Q5_0, Q8_0 (x Q8_0) and Q4_1, Q5_1 (x Q8_1), and for the k-quants
//! Q4_K, Q5_K, Q6_K (x Q8_K: per 32-element sub-block the same scheme, the exact sub-block sums
//! then multiplied by the per-row sub-block scales with `vpmulld`, mins from the `bsums`).
//!
//! For a group of 8 weight rows and one block of 32 elements, each row's block is unpacked once to
//! 32 signed bytes and the 8x8 grid of 4-byte groups is transposed, so that lane r of `w[j]` holds
//! row r's elements 4j..4j+4. Then for every token of the tile, 8 `vpdpbusd` of `w[j]` against the
//! token's 4 activation bytes 4j..4j+4 (broadcast) give the 8 rows' block sums in the 8 lanes:
//! 256 multiply-adds per 8 instructions, with the weights unpacked once for all tokens.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes, so the activations are offset to unsigned
//! (`a ^ 0x80` = a + 128, once per token and block, before the inner loop) and the per-row
//! `128 * sum(w)` is subtracted, computed once per block and row group: every block sum is exact.
//! The offset activations of a chunk of blocks are made once for up to `MAX_GROUPS` row groups
//! (a tile of 64 rows), not once per group of 8, which made it a large share of a prefill.
//! Each output element accumulates its blocks in order in its own lane of its own token
//! accumulator, so its value does not depend on how rows and tokens are grouped into tiles (hence
//! not on the thread count either).

use std::arch::x86_64::*;

use super::quants::{fifth_bits, nibbles};
use super::{h2f, load32, load32i};
use crate::blocks::{
    cast_blocks, ActBlock32, Block, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1,
    BlockQ5_K, BlockQ6_K, BlockQ8_0, BlockQ8_1, BlockQ8_K, QK, QK_K,
};
use crate::matmul::check_tile_args;
use crate::types::GgmlType;
use crate::views::{Rows, RowsMut};

/// An unpacked weight block of one row: 32 signed levels, the scale and the min (0 when none).
#[derive(Clone, Copy)]
struct Unpacked {
    q: __m256i,
    d: f32,
    m: f32,
}

/// Blocks per chunk of pre-offset activations in `group`.
const KC: usize = 16;
/// Largest token group.
const MAX_NT: usize = 32;
/// Row groups of 8 sharing one pass over the activations in `group`.
const MAX_GROUPS: usize = 8;

/// Transposes 8 rows of 8 dwords: lane r of out[j] = dword j of v[r].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn transpose8(v: [__m256i; 8]) -> [__m256i; 8] {
    let t0 = _mm256_unpacklo_epi32(v[0], v[1]);
    let t1 = _mm256_unpackhi_epi32(v[0], v[1]);
    let t2 = _mm256_unpacklo_epi32(v[2], v[3]);
    let t3 = _mm256_unpackhi_epi32(v[2], v[3]);
    let t4 = _mm256_unpacklo_epi32(v[4], v[5]);
    let t5 = _mm256_unpackhi_epi32(v[4], v[5]);
    let t6 = _mm256_unpacklo_epi32(v[6], v[7]);
    let t7 = _mm256_unpackhi_epi32(v[6], v[7]);
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    [
        _mm256_permute2x128_si256::<0x20>(u0, u4),
        _mm256_permute2x128_si256::<0x20>(u1, u5),
        _mm256_permute2x128_si256::<0x20>(u2, u6),
        _mm256_permute2x128_si256::<0x20>(u3, u7),
        _mm256_permute2x128_si256::<0x31>(u0, u4),
        _mm256_permute2x128_si256::<0x31>(u1, u5),
        _mm256_permute2x128_si256::<0x31>(u2, u6),
        _mm256_permute2x128_si256::<0x31>(u3, u7),
    ]
}

/// The integer dot steps the tiles are built from, for one instruction set (`vnni::Vnni`: the
/// AVX-512 VNNI instructions on 256-bit registers; `avx2::Avx2`: `maddubs`/`madd` sequences,
/// exact while the i16 sums they form stay below 2^15, which holds for every format's levels;
/// Q8_0's full bytes go through `dpbusd_wide`, which splits them in two nibbles). The generic
/// tile bodies below are `#[inline(always)]` and run only inside the entry points of
/// [`tile_entry_points!`], compiled with the instruction set's features: hence `unsafe`.
trait Isa {
    /// `acc + sum of 4 u8 x i8 products` per i32 lane.
    unsafe fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;
    /// `dpbusd` of two operand pairs in one chain.
    unsafe fn dpbusd2(acc: __m256i, u: [__m256i; 2], s: [__m256i; 2]) -> __m256i;
    /// `dpbusd` for signed bytes `s` of any value (Q8_0 weights).
    unsafe fn dpbusd_wide(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;
    /// `acc + sum of 2 i16 x i16 products` per i32 lane.
    unsafe fn dpwssd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i;
    /// Debug builds: the CPU has this instruction set.
    fn assert_cpu();
}

/// Implements [`Isa`] for `$I` by the module's `dpbusd`, `dpbusd2`, `dpbusd_wide` and `dpwssd`.
macro_rules! impl_isa {
    ($I:ident, $assert:path) => {
        /// The instruction set of this module's tiles.
        pub(super) struct $I;
        impl Isa for $I {
            #[inline(always)]
            unsafe fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
                // SAFETY: called only inside entry points compiled with this module's features.
                unsafe { dpbusd(acc, u, s) }
            }
            #[inline(always)]
            unsafe fn dpbusd2(acc: __m256i, u: [__m256i; 2], s: [__m256i; 2]) -> __m256i {
                // SAFETY: as for `dpbusd`.
                unsafe { dpbusd2(acc, u, s) }
            }
            #[inline(always)]
            unsafe fn dpbusd_wide(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
                // SAFETY: as for `dpbusd`.
                unsafe { dpbusd_wide(acc, u, s) }
            }
            #[inline(always)]
            unsafe fn dpwssd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
                // SAFETY: as for `dpbusd`.
                unsafe { dpwssd(acc, a, b) }
            }
            #[inline(always)]
            fn assert_cpu() {
                $assert();
            }
        }
    };
}

/// A prefill tile entry point (`GemmTileFn`) of one 32-element format for the instruction set
/// `$I`: checks the views, then runs the generic [`tile`] inside a function compiled for
/// `$features`, unpacking each block with `$unpack`.
macro_rules! tile_fn {
    ($features:literal, $I:ty, $(#[$m:meta])* $name:ident, $w:ty, $a:ty, $wt:expr, $at:expr, $has_min:expr, $wide:expr, |$x:ident| $unpack:expr) => {
        $(#[$m])*
        pub(crate) fn $name(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
            check_tile_args($wt, $at, n, &w, &a, &out);
            #[target_feature(enable = $features)]
            fn imp(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
                // SAFETY: this function is compiled with `$I`'s features.
                unsafe { tile::<$I, $w, $a, $has_min, $wide>(n, w, a, out, |$x: &$w| $unpack) }
            }
            <$I as Isa>::assert_cpu();
            // SAFETY: reachable only through the kernel table, which `install` fills with the
            // tiles only after detecting the features `imp` is compiled for.
            unsafe { imp(n, w, a, out) }
        }
    };
}

/// A k-quant tile entry point (`GemmTileFn`) for `$I`: `$group` over `$W` rows.
macro_rules! tile_k_fn {
    ($features:literal, $I:ty, $(#[$m:meta])* $name:ident, $W:ty, $wt:expr, $group:ident $(, $G:ty)?) => {
        $(#[$m])*
        pub(crate) fn $name(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
            check_tile_args($wt, GgmlType::Q8_K, n, &w, &a, &out);
            #[target_feature(enable = $features)]
            fn imp(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
                k_tile_loop!($I, n, w, a, out, $W, $group $(, $G)?)
            }
            <$I as Isa>::assert_cpu();
            // SAFETY: reachable only through the kernel table, which `install` fills with the
            // tiles only after detecting the features `imp` is compiled for.
            unsafe { imp(n, w, a, out) }
        }
    };
}

/// Every tile entry point for the instruction set `$I`, compiled for `$features`.
macro_rules! tile_entry_points {
    ($features:literal, $I:ty) => {
tile_fn!($features, $I, /// Q4_0 x Q8_0 tile.
    gemm_tile_q4_0, BlockQ4_0, BlockQ8_0, GgmlType::Q4_0, GgmlType::Q8_0, false, false,
    |x| Unpacked { q: _mm256_sub_epi8(nibbles(&x.qs), _mm256_set1_epi8(8)), d: h2f(x.d), m: 0.0 });
tile_fn!($features, $I, /// Q5_0 x Q8_0 tile.
gemm_tile_q5_0, BlockQ5_0, BlockQ8_0, GgmlType::Q5_0, GgmlType::Q8_0, false, false,
|x| Unpacked {
    q: _mm256_sub_epi8(_mm256_or_si256(nibbles(&x.qs), fifth_bits(u32::from_le_bytes(x.qh))), _mm256_set1_epi8(16)),
    d: h2f(x.d),
    m: 0.0,
});
tile_fn!($features, $I, /// Q8_0 x Q8_0 tile (with AVX2 alone each weight byte split in two nibbles, see `dpbusd_wide`).
    gemm_tile_q8_0, BlockQ8_0, BlockQ8_0, GgmlType::Q8_0, GgmlType::Q8_0, false, true,
    |x| Unpacked { q: load32i(&x.qs), d: h2f(x.d), m: 0.0 });
tile_fn!($features, $I, /// Q4_1 x Q8_1 tile.
    gemm_tile_q4_1, BlockQ4_1, BlockQ8_1, GgmlType::Q4_1, GgmlType::Q8_1, true, false,
    |x| Unpacked { q: nibbles(&x.qs), d: h2f(x.d), m: h2f(x.m) });
tile_fn!($features, $I, /// Q5_1 x Q8_1 tile.
gemm_tile_q5_1, BlockQ5_1, BlockQ8_1, GgmlType::Q5_1, GgmlType::Q8_1, true, false,
|x| Unpacked {
    q: _mm256_or_si256(nibbles(&x.qs), fifth_bits(u32::from_le_bytes(x.qh))),
    d: h2f(x.d),
    m: h2f(x.m),
});

tile_k_fn!($features, $I, /// Q4_K x Q8_K tile.
    gemm_tile_q4_k, BlockQ4_K, GgmlType::Q4_K, group_k, BlockQ4_K);
tile_k_fn!($features, $I, /// Q5_K x Q8_K tile.
    gemm_tile_q5_k, BlockQ5_K, GgmlType::Q5_K, group_k, BlockQ5_K);
tile_k_fn!($features, $I, /// Q6_K x Q8_K tile.
    gemm_tile_q6_k, BlockQ6_K, GgmlType::Q6_K, group_q6);
    };
}

/// A Q4_K/Q5_K-style super-block of one row: its scales and a way to unpack sub-block `s`.
trait KBlock: Block {
    /// (scales in bytes 0..8 and mins in bytes 8..16 of 4 little-endian words, d, dmin).
    fn scale_words(&self) -> ([u32; 4], f32, f32);
    /// Levels (0..32) of sub-block `s` (elements 32s..32s+32) as 32 bytes.
    fn levels(&self, s: usize) -> __m256i;
}

impl KBlock for BlockQ4_K {
    #[inline(always)]
    fn scale_words(&self) -> ([u32; 4], f32, f32) {
        let u = super::k_quants::unpack_scales_mins(&self.scales);
        (u, self.d.to_f32(), self.dmin.to_f32())
    }
    #[inline(always)]
    fn levels(&self, s: usize) -> __m256i {
        // SAFETY: the tile functions run only with AVX2 enabled (their target_feature set), which
        // is the only caller of this method; the 32-byte chunk is in bounds by construction.
        unsafe { k4_levels(&self.qs, s) }
    }
}

impl KBlock for BlockQ5_K {
    #[inline(always)]
    fn scale_words(&self) -> ([u32; 4], f32, f32) {
        let u = super::k_quants::unpack_scales_mins(&self.scales);
        (u, self.d.to_f32(), self.dmin.to_f32())
    }
    #[inline(always)]
    fn levels(&self, s: usize) -> __m256i {
        // SAFETY: as for Q4_K: only called from the AVX2/VNNI tile functions.
        unsafe {
            let lo = k4_levels(&self.qs, s);
            let bit = _mm256_set1_epi8((1u8 << s) as i8);
            let qh = load32(&self.qh);
            let hi = _mm256_and_si256(
                _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit),
                _mm256_set1_epi8(0x10),
            );
            _mm256_or_si256(lo, hi)
        }
    }
}

/// Activation bytes i..i + 4 as one little-endian i32 (for a `vpdpbusd` broadcast operand).
#[inline(always)]
fn act4(qs: &[i8], i: usize) -> i32 {
    let q = &qs[i..i + 4];
    i32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8])
}

/// Low (s even) or high (s odd) nibbles of the 32-byte chunk s / 2 of `qs`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn k4_levels(qs: &[u8; 128], s: usize) -> __m256i {
    let c = s / 2;
    let bits = load32(qs[32 * c..32 * c + 32].try_into().expect("32 bytes"));
    let bits = if s % 2 == 1 {
        _mm256_srli_epi16::<4>(bits)
    } else {
        bits
    };
    _mm256_and_si256(bits, _mm256_set1_epi8(0x0F))
}

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

/// The whole k-quant tile `group` (Q4_K/Q5_K through `group_k`, Q6_K through `group_q6`): row
/// groups of 8, token groups of 32/16/8/4/2/1.
macro_rules! k_tile_loop {
    ($I:ty, $n:expr, $w:expr, $a:expr, $out:expr, $W:ty, $group:ident $(, $G:ty)?) => {{
        let (w, a, mut out): (Rows<u8>, Rows<u8>, RowsMut<f32>) = ($w, $a, $out);
        let nb = $n / QK_K;
        let (nr, nt) = (w.n(), a.n());
        let row = |r: usize| -> &[$W] { cast_blocks(w.row(r)) };
        let act = |t: usize| -> &[BlockQ8_K] { cast_blocks(a.row(t)) };
        let mut r0 = 0;
        while r0 < nr {
            let rows: [Option<&[$W]>; 8] = std::array::from_fn(|i| (r0 + i < nr).then(|| row(r0 + i)));
            let present = (nr - r0).min(8);
            let mut t0 = 0;
            while t0 < nt {
                // SAFETY: expanded inside entry points compiled with `$I`'s features.
                t0 += crate::dispatch::token_group!(nt - t0, NT => unsafe { $group::<$I, $($G,)? NT>(
                    rows,
                    std::array::from_fn(|i| act(t0 + i)),
                    nb,
                    out.window(t0, NT, r0, present),
                ) }; 32, 16, 8, 4, 2, 1);
            }
            r0 += 8;
        }
    }};
}

/// 8 rows (`rows[r]`, `None` = padding) x NT tokens (`acts[t]`), all blocks; writes
/// out[t * out_stride + r] for the rows present.
#[inline(always)]
unsafe fn group<
    I: Isa,
    W: Block,
    A: ActBlock32,
    const NT: usize,
    const HAS_MIN: bool,
    const WIDE: bool,
>(
    rows: &[Option<&[W]>],
    acts: [&[A]; NT],
    nb: usize,
    unpack: impl Fn(&W) -> Unpacked,
    mut out: RowsMut<f32>,
) {
    // SAFETY: the caller runs this inside an entry point compiled with `I`'s features
    // (see `Isa`); every memory access below is bounds-checked or an unaligned load or
    // store of a local array of the size named beside it.
    unsafe {
        let x80 = _mm256_set1_epi8(-128);
        let ng = rows.len() / 8;
        assert!(rows.len() % 8 == 0 && ng <= MAX_GROUPS);
        // Accumulators per row group, kept here between chunks of KC blocks: the activations of a
        // chunk are offset once for all the row groups.
        let mut accs = [[_mm256_setzero_ps(); NT]; MAX_GROUPS];
        let zero = Unpacked {
            q: _mm256_setzero_si256(),
            d: 0.0,
            m: 0.0,
        };
        // The activations of KC blocks x NT tokens, offset to unsigned (a ^ 0x80) once here, so the
        // inner loop is a broadcast load and a vpdpbusd: xq[kk * NT + t] = token t, block k0 + kk.
        let mut xq = [[0u32; 8]; KC * MAX_NT];
        let mut da = [0.0f32; KC * MAX_NT];
        let mut sa = [0.0f32; KC * MAX_NT];
        let mut k0 = 0;
        while k0 < nb {
            let kn = KC.min(nb - k0);
            for kk in 0..kn {
                for t in 0..NT {
                    let b = &acts[t][k0 + kk];
                    let v = _mm256_xor_si256(load32i(b.qs()), x80);
                    // xq[i] is 8 u32 = 32 writable bytes; unaligned store.
                    _mm256_storeu_si256(xq[kk * NT + t].as_mut_ptr() as *mut __m256i, v);
                    da[kk * NT + t] = h2f(b.d());
                    if HAS_MIN {
                        sa[kk * NT + t] = h2f(b.s().unwrap_or(half::f16::ZERO));
                    }
                }
            }
            for (g, acc) in accs[..ng].iter_mut().enumerate() {
                let rows = &rows[8 * g..8 * g + 8];
                for kk in 0..kn {
                    let k = k0 + kk;
                    // Plain loops rather than array::from_fn: a closure called from a function without
                    // the target features is not inlined.
                    let mut u = [zero; 8];
                    let mut q = [_mm256_setzero_si256(); 8];
                    for r in 0..8 {
                        if let Some(b) = rows[r] {
                            u[r] = unpack(&b[k]);
                            q[r] = u[r].q;
                        }
                    }
                    let w = transpose8(q);
                    // 128 * sum of each row's 32 levels, in two chains.
                    let mut c = [_mm256_setzero_si256(); 2];
                    for (j, wj) in w.iter().enumerate() {
                        c[j & 1] = I::dpbusd(c[j & 1], x80, *wj);
                    }
                    let corr = _mm256_add_epi32(c[0], c[1]);
                    let d = _mm256_setr_ps(
                        u[0].d, u[1].d, u[2].d, u[3].d, u[4].d, u[5].d, u[6].d, u[7].d,
                    );
                    let m = _mm256_setr_ps(
                        u[0].m, u[1].m, u[2].m, u[3].m, u[4].m, u[5].m, u[6].m, u[7].m,
                    );
                    // Token sums, t outer: two vpdpbusd chains per token (the tokens' chains are
                    // independent), so only the accumulators stay live across tokens.
                    let xb = &xq[kk * NT..kk * NT + NT];
                    for t in 0..NT {
                        let mut s = [_mm256_setzero_si256(); 2];
                        for j in (0..8).step_by(2) {
                            let (a0, a1) = (xb[t][j] as i32, xb[t][j + 1] as i32);
                            let u = [_mm256_set1_epi32(a0), _mm256_set1_epi32(a1)];
                            s[(j / 2) & 1] = if WIDE {
                                I::dpbusd_wide(
                                    I::dpbusd_wide(s[(j / 2) & 1], u[0], w[j]),
                                    u[1],
                                    w[j + 1],
                                )
                            } else {
                                I::dpbusd2(s[(j / 2) & 1], u, [w[j], w[j + 1]])
                            };
                        }
                        let s = _mm256_add_epi32(s[0], s[1]);
                        let scale = _mm256_mul_ps(d, _mm256_set1_ps(da[kk * NT + t]));
                        acc[t] = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps(_mm256_sub_epi32(s, corr)),
                            scale,
                            acc[t],
                        );
                        if HAS_MIN {
                            acc[t] = _mm256_fmadd_ps(m, _mm256_set1_ps(sa[kk * NT + t]), acc[t]);
                        }
                    }
                }
            }
            k0 += kn;
        }
        let present = out.row_len();
        for t in 0..NT {
            let mut lanes = [0.0f32; 8 * MAX_GROUPS];
            for (g, acc) in accs[..ng].iter().enumerate() {
                // `lanes[8g..8g + 8]` is 8 writable floats; unaligned store.
                _mm256_storeu_ps(lanes[8 * g..].as_mut_ptr(), acc[t]);
            }
            out.row_mut(t).copy_from_slice(&lanes[..present]);
        }
    }
}

/// The whole tile: row groups of 8, token groups of 32/16/8/4/2/1.
#[inline(always)]
unsafe fn tile<I: Isa, W: Block, A: ActBlock32, const HAS_MIN: bool, const WIDE: bool>(
    n: usize,
    w: Rows<u8>,
    a: Rows<u8>,
    mut out: RowsMut<f32>,
    unpack: impl Fn(&W) -> Unpacked + Copy,
) {
    // SAFETY: the caller runs this inside an entry point compiled with `I`'s features
    // (see `Isa`); every memory access below is bounds-checked or an unaligned load or
    // store of a local array of the size named beside it.
    unsafe {
        let nb = n / QK;
        let (nr, nt) = (w.n(), a.n());
        let row = |r: usize| -> &[W] { cast_blocks(w.row(r)) };
        let act = |t: usize| -> &[A] { cast_blocks(a.row(t)) };
        let mut r0 = 0;
        while r0 < nr {
            let ng = (nr - r0).div_ceil(8).min(MAX_GROUPS);
            let present = (nr - r0).min(8 * ng);
            let rows: [Option<&[W]>; 8 * MAX_GROUPS] =
                std::array::from_fn(|i| (r0 + i < nr).then(|| row(r0 + i)));
            let rows = &rows[..8 * ng];
            let mut t0 = 0;
            while t0 < nt {
                t0 += crate::dispatch::token_group!(nt - t0, NT => group::<I, W, A, NT, HAS_MIN, WIDE>(
                    rows,
                    std::array::from_fn(|i| act(t0 + i)),
                    nb,
                    unpack,
                    out.window(t0, NT, r0, present),
                ); 32, 16, 8, 4, 2, 1);
            }
            r0 += 8 * ng;
        }
    }
}

/// `out.row(t)` = the lanes of `acc[t]` for the rows present (`out.row_len()` of 8).
#[inline(always)]
fn store_rows(acc: &[__m256], mut out: RowsMut<f32>) {
    let present = out.row_len();
    for (t, a) in acc.iter().enumerate() {
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` is 8 writable floats; unaligned store (AVX, which every caller has).
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), *a) };
        out.row_mut(t).copy_from_slice(&lanes[..present]);
    }
}

/// 8 rows x NT tokens of Q4_K/Q5_K . Q8_K over all super-blocks.
#[inline(always)]
unsafe fn group_k<I: Isa, W: KBlock, const NT: usize>(
    rows: [Option<&[W]>; 8],
    acts: [&[BlockQ8_K]; NT],
    nb: usize,
    out: RowsMut<f32>,
) {
    // SAFETY: the caller runs this inside an entry point compiled with `I`'s features
    // (see `Isa`); every memory access below is bounds-checked or an unaligned load or
    // store of a local array of the size named beside it.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); NT];
        for k in 0..nb {
            // Per-row scales and mins as lanes: sc[s] / mn[s] lane r = scale / min s of row r.
            let mut sc = [_mm256_setzero_si256(); 8];
            let mut mn = [_mm256_setzero_si256(); 8];
            let mut d = [0.0f32; 8];
            let mut dmin = [0.0f32; 8];
            for (r, row) in rows.iter().enumerate() {
                if let Some(b) = row {
                    let (u, dr, dm) = b[k].scale_words();
                    let v = _mm_set_epi32(u[3] as i32, u[2] as i32, u[1] as i32, u[0] as i32);
                    sc[r] = _mm256_cvtepu8_epi32(v);
                    // The mins as i16 pairs (m[2i], m[2i + 1]) in dwords 0..4.
                    mn[r] = _mm256_castsi128_si256(_mm_cvtepu8_epi16(_mm_srli_si128::<8>(v)));
                    d[r] = dr;
                    dmin[r] = dm;
                }
            }
            // sc[s] lane r = scale s of row r; mn[i] (i < 4) lane r = row r's min pair i.
            let (sc, mn) = (transpose8(sc), transpose8(mn));
            let ab: [&BlockQ8_K; NT] = std::array::from_fn(|t| &acts[t][k]);
            // Per token, the 32-element sums of its activations as i16 pairs (b[2i], b[2i + 1]), the
            // partner of `mn` in a `vpdpwssd` (|b| <= 32 * 128 fits i16).
            let mut bp = [[0i32; 4]; NT];
            for t in 0..NT {
                // bsums is 16 i16 = 32 readable bytes; `bp[t]` 16 writable bytes; unaligned.
                {
                    let bs = _mm256_loadu_si256(ab[t].bsums.as_ptr() as *const __m256i);
                    let b = _mm_hadd_epi16(
                        _mm256_castsi256_si128(bs),
                        _mm256_extracti128_si256::<1>(bs),
                    );
                    _mm_storeu_si128(bp[t].as_mut_ptr() as *mut __m128i, b);
                }
            }
            // The levels are unsigned (0..15, 0..31), so they are `vpdpbusd`'s unsigned operand and
            // the activations its signed one, as they are: no offset, no correction term.
            let mut isum = [_mm256_setzero_si256(); NT];
            for s in 0..8 {
                let mut v = [_mm256_setzero_si256(); 8];
                for r in 0..8 {
                    if let Some(b) = rows[r] {
                        v[r] = b[k].levels(s);
                    }
                }
                let w = transpose8(v);
                let scv = sc[s];
                // t outer (two vpdpbusd chains per token, the tokens' chains independent), so that
                // only `isum` is live across tokens: 16 tokens fit the registers.
                for t in 0..NT {
                    let mut p = [_mm256_setzero_si256(); 2];
                    for j in (0..8).step_by(2) {
                        // Bytes 4j..4j+8 of chunk s of token t, broadcast to every row lane.
                        let a =
                            [j, j + 1].map(|i| _mm256_set1_epi32(act4(&ab[t].qs, 32 * s + 4 * i)));
                        p[(j / 2) & 1] = I::dpbusd2(p[(j / 2) & 1], [w[j], w[j + 1]], a);
                    }
                    let p = _mm256_add_epi32(p[0], p[1]);
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_mullo_epi32(p, scv));
                }
            }
            // d and dmin are 8 readable floats; unaligned loads.
            let (dv, dminv) = (_mm256_loadu_ps(d.as_ptr()), _mm256_loadu_ps(dmin.as_ptr()));
            for t in 0..NT {
                let mut msum = _mm256_setzero_si256();
                for (i, m) in mn[..4].iter().enumerate() {
                    msum = I::dpwssd(msum, *m, _mm256_set1_epi32(bp[t][i]));
                }
                let da = _mm256_set1_ps(ab[t].d);
                acc[t] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dv, da), acc[t]);
                acc[t] =
                    _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_mul_ps(dminv, da), acc[t]);
            }
        }
        store_rows(&acc, out);
    }
}

/// 8 rows x NT tokens of Q6_K . Q8_K over all super-blocks.
#[inline(always)]
unsafe fn group_q6<I: Isa, const NT: usize>(
    rows: [Option<&[BlockQ6_K]>; 8],
    acts: [&[BlockQ8_K]; NT],
    nb: usize,
    out: RowsMut<f32>,
) {
    // SAFETY: the caller runs this inside an entry point compiled with `I`'s features
    // (see `Isa`); every memory access below is bounds-checked or an unaligned load or
    // store of a local array of the size named beside it.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); NT];
        for k in 0..nb {
            // Per-row scales as lanes: sc[g] lane r = scale g of row r (two 8x8 transposes).
            let mut lo = [_mm256_setzero_si256(); 8];
            let mut hi = [_mm256_setzero_si256(); 8];
            let mut d = [0.0f32; 8];
            for (r, row) in rows.iter().enumerate() {
                if let Some(b) = row {
                    // scales is 16 bytes; unaligned load.
                    let v = _mm_loadu_si128(b[k].scales.as_ptr() as *const __m128i);
                    lo[r] = _mm256_cvtepi8_epi32(v);
                    hi[r] = _mm256_cvtepi8_epi32(_mm_srli_si128::<8>(v));
                    d[r] = h2f(b[k].d);
                }
            }
            let (lo, hi) = (transpose8(lo), transpose8(hi));
            let sc: [__m256i; 16] = std::array::from_fn(|g| if g < 8 { lo[g] } else { hi[g - 8] });
            let ab: [&BlockQ8_K; NT] = std::array::from_fn(|t| &acts[t][k]);
            // The unsigned levels q are `vpdpbusd`'s unsigned operand and the activations its signed
            // one, as they are; the offset, 32 * sum(a) per 16-element sub-block, comes from the
            // activations' `bsums` and is the same for every row lane.
            let mut isum = [_mm256_setzero_si256(); NT];
            for c in 0..8 {
                let mut v = [_mm256_setzero_si256(); 8];
                for r in 0..8 {
                    if let Some(b) = rows[r] {
                        v[r] = q6_levels(&b[k], c);
                    }
                }
                let w = transpose8(v);
                let (s_lo, s_hi) = (sc[2 * c], sc[2 * c + 1]);
                // t outer (the tokens' chains are independent), so only `isum` stays live across
                // tokens; each 16-element half's chain starts from its offset, -32 * its bsum.
                for t in 0..NT {
                    let mut p_lo = _mm256_set1_epi32(-32 * ab[t].bsums[2 * c] as i32);
                    let mut p_hi = _mm256_set1_epi32(-32 * ab[t].bsums[2 * c + 1] as i32);
                    for j in [0, 2] {
                        let lo =
                            [j, j + 1].map(|i| _mm256_set1_epi32(act4(&ab[t].qs, 32 * c + 4 * i)));
                        let hi = [j, j + 1]
                            .map(|i| _mm256_set1_epi32(act4(&ab[t].qs, 32 * c + 16 + 4 * i)));
                        p_lo = I::dpbusd2(p_lo, [w[j], w[j + 1]], lo);
                        p_hi = I::dpbusd2(p_hi, [w[j + 4], w[j + 5]], hi);
                    }
                    let lo = _mm256_mullo_epi32(p_lo, s_lo);
                    let hi = _mm256_mullo_epi32(p_hi, s_hi);
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(lo, hi));
                }
            }
            // d is 8 readable floats; unaligned load.
            let dv = _mm256_loadu_ps(d.as_ptr());
            for t in 0..NT {
                let da = _mm256_set1_ps(ab[t].d);
                acc[t] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dv, da), acc[t]);
            }
        }
        store_rows(&acc, out);
    }
}

/// Tiles with AVX-512 VNNI `vpdpbusd`/`vpdpwssd` on 256-bit registers.
pub(super) mod vnni {
    use super::*;

    /// `acc + sum of 4 u8 x i8 products` per i32 lane (exact).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, u, s)
    }

    /// `dpbusd` of two operand pairs in one chain.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn dpbusd2(acc: __m256i, u: [__m256i; 2], s: [__m256i; 2]) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(acc, u[0], s[0]), u[1], s[1])
    }

    /// `dpbusd` for signed bytes of any value (Q8_0 weights): the instruction is exact for all.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn dpbusd_wide(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, u, s)
    }

    /// `acc + sum of 2 i16 x i16 products` per i32 lane (exact).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn dpwssd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_dpwssd_epi32(acc, a, b)
    }

    impl_isa!(Vnni, crate::x86_64::debug_assert_vnni);
    tile_entry_points!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", Vnni);
}

/// The same tiles on AVX2 alone (a laptop without AVX-512): `vpdpbusd` becomes `maddubs` (u8 x
/// i8 byte pairs summed in i16 lanes, saturating) + `madd` with ones + add. Exact when every pair
/// sum fits i16: the unsigned operand is at most 255 (offset activations) or 63 (k-quant levels)
/// and the signed one at most 31 in magnitude (Q4_0, Q5_0, Q4_1, Q5_1 levels) or 128
/// (activations against levels <= 63): 2 * 255 * 31 = 15810 and 2 * 63 * 128 = 16128 < 32767.
/// Q8_0 weights (up to 128 against 255) would saturate, so their tile splits each byte in two
/// nibbles (`dpbusd_wide`: twice the multiplies, still exact).
pub(super) mod avx2 {
    use super::*;

    /// `acc + sum of 4 u8 x i8 products` per i32 lane, exact while each byte pair's sum fits i16.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(u, s);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    /// `dpbusd` of two operand pairs with one `madd`: the two `maddubs` results are added in i16
    /// lanes first, exact while the four products of each pair of i16 lanes sum below 2^15 in
    /// magnitude: 4 * 255 * 31 = 31620 (32-element formats), 4 * 63 * 128 = 32256 (Q6_K levels),
    /// 4 * 31 * 128 (Q4_K/Q5_K), 4 * 128 * 31 (the offset correction).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn dpbusd2(acc: __m256i, u: [__m256i; 2], s: [__m256i; 2]) -> __m256i {
        let pairs = _mm256_add_epi16(
            _mm256_maddubs_epi16(u[0], s[0]),
            _mm256_maddubs_epi16(u[1], s[1]),
        );
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    /// `dpbusd` for signed bytes `s` of any value (Q8_0 weights, where `maddubs(u, s)` would
    /// saturate): `s = 16 * (s >> 4) + (s & 15)`, the high part -8..7 and the low part 0..15 each
    /// through `maddubs` (|pair| <= 2 * 255 * 15) and `madd` (by 16 and by 1): exact.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn dpbusd_wide(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        let lo = _mm256_and_si256(s, _mm256_set1_epi8(0x0F));
        // Arithmetic shift of bytes by 4: shift the 16-bit words, then sign-extend the nibble.
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(s), _mm256_set1_epi8(0x0F));
        let hi = _mm256_sub_epi8(
            _mm256_xor_si256(hi, _mm256_set1_epi8(8)),
            _mm256_set1_epi8(8),
        );
        let p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(u, hi), _mm256_set1_epi16(16));
        let p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(u, lo), _mm256_set1_epi16(1));
        _mm256_add_epi32(acc, _mm256_add_epi32(p_hi, p_lo))
    }

    /// `acc + sum of 2 i16 x i16 products` per i32 lane (exact but for -32768 * -32768 twice).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn dpwssd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
    }

    impl_isa!(Avx2, crate::x86_64::debug_assert_avx2);
    tile_entry_points!("avx2,fma,f16c", Avx2);
}

#[cfg(test)]
mod tests;

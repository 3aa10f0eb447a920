//! Prefill tiles (`GemmTileFn`), compiled three times: with AVX-512 VNNI `vpdpbusd` on 256-bit
//! registers (`vnni`), with AVX-VNNI's VEX-encoded `vpdpbusd` (`avxvnni`: the same instruction for
//! laptops without AVX-512) and with AVX2 `maddubs` + `madd` (`avx2`), for the
//! 32-element formats Q4_0, Q5_0, Q8_0 (x Q8_0) and Q4_1, Q5_1 (x Q8_1), and for the k-quants
//! Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (x Q8_K: per 32-element sub-block, or pair of 16-element groups,
//! the same scheme, the exact sums then multiplied by the per-row scales with `vpmulld` or, where
//! two sums fit i16, one `vpdpwssd`; offsets and mins from the activations' `bsums`).
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
//! On AVX-512 VNNI the 32-element formats' tiles put two groups of 8 rows side by side in 512-bit
//! registers (`group512`), so each token's per-block steps serve 16 rows.
//!
//! Each output element accumulates its blocks in order in its own lane of its own token
//! accumulator, so its value does not depend on how rows and tokens are grouped into tiles (hence
//! not on the thread count either).

use std::arch::x86_64::*;

use super::block32::Nibble32;
use super::{h2f, load32i};
use crate::blocks::{cast_blocks, ActBlock32, Block, BlockQ8_K, QK, QK_K};
use crate::matmul::check_tile_args;
use crate::types::GgmlType;
use crate::views::{Rows, RowsMut};

/// An unpacked weight block of one row: 32 signed levels, the scale and the min (0 when none).
#[derive(Clone, Copy)]
pub(in crate::x86_64) struct Unpacked {
    pub q: __m256i,
    pub d: f32,
    pub m: f32,
}

/// Blocks per chunk of pre-offset activations in `group`.
const KC: usize = 16;
/// Largest token group.
const MAX_NT: usize = 128;
/// Row groups of 8 sharing one pass over the activations in `group`.
const MAX_GROUPS: usize = 8;

/// Transposes 8 rows of 8 dwords: lane r of out[j] = dword j of v[r].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::x86_64) fn transpose8(v: [__m256i; 8]) -> [__m256i; 8] {
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
/// Q8_0's full bytes go through [`group_i16`] instead). The generic
/// tile bodies below are `#[inline(always)]` and run only inside the entry points of
/// [`tile_entry_points!`], compiled with the instruction set's features: hence `unsafe`.
pub(in crate::x86_64) trait Isa {
    /// `acc + sum of 4 u8 x i8 products` per i32 lane.
    unsafe fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;
    /// `dpbusd` of two operand pairs in one chain.
    unsafe fn dpbusd2(acc: __m256i, u: [__m256i; 2], s: [__m256i; 2]) -> __m256i;
    /// `acc + sum of 2 i16 x i16 products` per i32 lane.
    unsafe fn dpwssd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i;
    /// `dpbusd`/`dpbusd2` saturate on full-range signed bytes (AVX2's `maddubs`), so formats
    /// with such weights (`TileBlock::WIDE`) take [`group_i16`] (i16 `madd`). When false they
    /// are exact for every byte (`vpdpbusd`) and [`group`] serves every format.
    const WIDE_BY_I16: bool;
    /// The 32-element formats' tiles run on 512-bit registers ([`group512`]): AVX-512 VNNI.
    const ZMM: bool;
    /// Debug builds: the CPU has this instruction set.
    fn assert_cpu();
}

/// Implements [`Isa`] for `$I` by the module's `dpbusd`, `dpbusd2` and `dpwssd`.
macro_rules! impl_isa {
    ($I:ident, $assert:path, $wide_by_i16:expr, $zmm:expr) => {
        /// The instruction set of this module's tiles.
        pub(in crate::x86_64) struct $I;
        impl Isa for $I {
            const WIDE_BY_I16: bool = $wide_by_i16;
            const ZMM: bool = $zmm;
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

/// The tile entry points (`GemmTileFn`) for the instruction set `$I`, compiled for `$features`:
/// `gemm_tile::<W>` for the 32-element formats and `gemm_tile_k::<W>` for the k-quants. Each
/// checks the views, then runs the generic body inside a function compiled for the features.
macro_rules! tile_entry_points {
    ($features:literal, $I:ty) => {
        /// A 32-element format's tile (`W` x its activation blocks).
        pub(in crate::x86_64) fn gemm_tile<W: TileBlock>(
            n: usize,
            w: Rows<u8>,
            a: Rows<u8>,
            out: RowsMut<f32>,
        ) {
            check_tile_args(W::TYPE, <W::Act as ActBlock32>::TYPE, n, &w, &a, &out);
            #[target_feature(enable = $features)]
            fn imp<W: TileBlock>(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
                // SAFETY: this function is compiled with `$I`'s features.
                unsafe { tile::<$I, W>(n, w, a, out) }
            }
            <$I as Isa>::assert_cpu();
            // SAFETY: reachable only through the kernel table, which `install` fills with the
            // tiles only after detecting the features `imp` is compiled for.
            unsafe { imp::<W>(n, w, a, out) }
        }

        /// A k-quant's tile (`W` x Q8_K).
        pub(in crate::x86_64) fn gemm_tile_k<W: KTile>(
            n: usize,
            w: Rows<u8>,
            a: Rows<u8>,
            out: RowsMut<f32>,
        ) {
            check_tile_args(<W as KTile>::TYPE, GgmlType::Q8_K, n, &w, &a, &out);
            #[target_feature(enable = $features)]
            fn imp<W: KTile>(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
                // SAFETY: this function is compiled with `$I`'s features.
                unsafe { k_tile::<$I, W>(n, w, a, out) }
            }
            <$I as Isa>::assert_cpu();
            // SAFETY: as for `gemm_tile`.
            unsafe { imp::<W>(n, w, a, out) }
        }
    };
}

/// A 32-element format as the tile reads it: its table types and one block unpacked to 32 signed
/// levels, the scale and the min. The nibble formats get it from [`Nibble32`]; Q8_0 implements it
/// in its own file.
pub(in crate::x86_64) trait TileBlock: Block {
    const TYPE: GgmlType;
    type Act: ActBlock32;
    /// The format has a min (Q4_1, Q5_1), met by the activations' `s`.
    const HAS_MIN: bool;
    /// The levels span the whole i8 range (Q8_0): the AVX2 tile widens them ([`group_i16`]).
    const WIDE: bool;
    /// # Safety
    /// The CPU must have AVX2 (every caller is compiled for it).
    unsafe fn unpack(&self) -> Unpacked;
}

impl<W: Nibble32> TileBlock for W {
    const TYPE: GgmlType = W::TYPE;
    type Act = W::Act;
    const HAS_MIN: bool = W::OFFSET == 0;
    const WIDE: bool = false;
    #[inline(always)]
    unsafe fn unpack(&self) -> Unpacked {
        // SAFETY: the caller guarantees AVX2.
        unsafe {
            let q = self.levels();
            let q = if W::OFFSET != 0 {
                _mm256_sub_epi8(q, _mm256_set1_epi8(W::OFFSET as i8))
            } else {
                q
            };
            let m = if Self::HAS_MIN { h2f(self.m()) } else { 0.0 };
            Unpacked {
                q,
                d: h2f(self.d()),
                m,
            }
        }
    }
}

/// A Q4_K/Q5_K-style super-block of one row: its scales and a way to unpack sub-block `s`
/// (implemented in `q4_k.rs` and `q5_k.rs`).
pub(in crate::x86_64) trait KBlock: Block {
    const TYPE: GgmlType;
    /// The levels are at most 15 (Q4_K), so a sum of 16 level x activation products
    /// (|a| <= 128) fits an i16: [`group_k`] can then apply the sub-block scales to two such
    /// half sums with one `vpdpwssd` instead of an add and a `vpmulld`.
    const HALF_SUMS_FIT_I16: bool;
    /// The 12 packed scale and min bytes, `d` and `dmin`.
    fn header(&self) -> (&[u8; 12], half::f16, half::f16);
    /// (scales in bytes 0..8 and mins in bytes 8..16 of 4 little-endian words, d, dmin).
    #[inline(always)]
    fn scale_words(&self) -> ([u32; 4], f32, f32) {
        let (scales, d, dmin) = self.header();
        let u = super::superblock::unpack_scales_mins(scales);
        (u, d.to_f32(), dmin.to_f32())
    }
    /// Levels (0..32) of sub-block `s` (elements 32s..32s+32) as 32 bytes.
    fn levels(&self, s: usize) -> __m256i;
}

/// A k-quant as the tile reads it: the body of 8 rows x NT tokens over all super-blocks. Q4_K and
/// Q5_K get it from [`KBlock`] (`group_k`); Q6_K implements it in its own file.
pub(in crate::x86_64) trait KTile: Block {
    const TYPE: GgmlType;
    /// 8 rows (`rows[r]`, `None` = padding) x NT tokens; writes `out.row(t)[r]` for the rows
    /// present.
    ///
    /// # Safety
    /// The caller runs inside an entry point compiled with `I`'s features.
    unsafe fn group<I: Isa, const NT: usize>(
        rows: [Option<&[Self]>; 8],
        acts: [&[BlockQ8_K]; NT],
        nb: usize,
        out: RowsMut<f32>,
    );
    /// [`KTile::group`] for 16 rows on 512-bit registers, with bit-identical results.
    ///
    /// # Safety
    /// The caller runs inside an AVX-512 VNNI entry point (`vnni`).
    unsafe fn group16<const NT: usize>(
        rows: [Option<&[Self]>; 16],
        acts: [&[BlockQ8_K]; NT],
        nb: usize,
        out: RowsMut<f32>,
    );
}

impl<W: KBlock> KTile for W {
    const TYPE: GgmlType = <W as KBlock>::TYPE;
    #[inline(always)]
    unsafe fn group<I: Isa, const NT: usize>(
        rows: [Option<&[W]>; 8],
        acts: [&[BlockQ8_K]; NT],
        nb: usize,
        out: RowsMut<f32>,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { group_k::<I, W, NT>(rows, acts, nb, out) }
    }
    #[inline(always)]
    unsafe fn group16<const NT: usize>(
        rows: [Option<&[W]>; 16],
        acts: [&[BlockQ8_K]; NT],
        nb: usize,
        out: RowsMut<f32>,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { group_k512::<W, NT>(rows, acts, nb, out) }
    }
}

/// A k-quant of 16 groups of 16 elements per super-block (Q6_K, Q3_K, Q2_K) as the tile reads
/// it: element i of group g is `d * scale_g * (u_i - OFFSET) - dmin * min_g`, with unsigned
/// stored levels u (at most 63). [`k16_tile!`] makes it a [`KTile`] with [`group_k16`].
pub(in crate::x86_64) trait K16Block: Block {
    const TYPE: GgmlType;
    /// What the stored levels are offset by (32 for Q6_K, 4 for Q3_K, 0 for Q2_K).
    const OFFSET: i32;
    /// The format has per-group mins (Q2_K).
    const HAS_MIN: bool;
    /// Every group's sum of (u - OFFSET) x activation fits an i16 (|q| <= 4: 16 * 4 * 128 =
    /// 8192), so two groups' sums go to their scales in one `vpdpwssd` (as in [`group_k`]).
    const SUMS_FIT_I16: bool;
    // Each method's safety condition: the CPU has AVX2, F16C and FMA (every caller is compiled
    // for them).
    /// The 16 group scales as signed bytes.
    unsafe fn scales(&self) -> __m128i;
    /// The 16 group mins as bytes (0..16; zero without mins).
    unsafe fn mins(&self) -> __m128i;
    /// (d, dmin) as f32 (dmin 0 without mins).
    unsafe fn d(&self) -> (f32, f32);
    /// The 32 unsigned levels of elements 32c..32c + 32 (groups 2c and 2c + 1), c < 8.
    unsafe fn levels(&self, c: usize) -> __m256i;
}

/// `impl KTile for $b` by [`group_k16`] (a [`K16Block`]).
macro_rules! k16_tile {
    ($b:ty) => {
        impl $crate::x86_64::tile::KTile for $b {
            const TYPE: $crate::types::GgmlType = <$b as $crate::x86_64::tile::K16Block>::TYPE;
            #[inline(always)]
            unsafe fn group<I: $crate::x86_64::tile::Isa, const NT: usize>(
                rows: [Option<&[$b]>; 8],
                acts: [&[$crate::blocks::BlockQ8_K]; NT],
                nb: usize,
                out: $crate::views::RowsMut<f32>,
            ) {
                // SAFETY: forwarded from the caller.
                unsafe { $crate::x86_64::tile::group_k16::<I, $b, NT>(rows, acts, nb, out) }
            }
            #[inline(always)]
            unsafe fn group16<const NT: usize>(
                rows: [Option<&[$b]>; 16],
                acts: [&[$crate::blocks::BlockQ8_K]; NT],
                nb: usize,
                out: $crate::views::RowsMut<f32>,
            ) {
                // SAFETY: forwarded from the caller.
                unsafe { $crate::x86_64::tile::group_k16_512::<$b, NT>(rows, acts, nb, out) }
            }
        }
    };
}
pub(in crate::x86_64) use k16_tile;

/// 8 rows x NT tokens of a [`K16Block`] . Q8_K over all super-blocks.
///
/// # Safety
/// The caller runs this inside an entry point compiled with `I`'s features.
#[inline(always)]
pub(in crate::x86_64) unsafe fn group_k16<I: Isa, W: K16Block, const NT: usize>(
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
            // Per-row scales as lanes: sc[g] lane r = scale g of row r (two 8x8 transposes);
            // with mins, mn[i] lane r = row r's mins (2i, 2i + 1) as an i16 pair.
            let mut lo = [_mm256_setzero_si256(); 8];
            let mut hi = [_mm256_setzero_si256(); 8];
            let mut mn = [_mm256_setzero_si256(); 8];
            let mut d = [0.0f32; 8];
            let mut dmin = [0.0f32; 8];
            for (r, row) in rows.iter().enumerate() {
                if let Some(b) = row {
                    let v = b[k].scales();
                    lo[r] = _mm256_cvtepi8_epi32(v);
                    hi[r] = _mm256_cvtepi8_epi32(_mm_srli_si128::<8>(v));
                    if W::HAS_MIN {
                        mn[r] = _mm256_cvtepu8_epi16(b[k].mins());
                    }
                    (d[r], dmin[r]) = b[k].d();
                }
            }
            let (lo, hi) = (transpose8(lo), transpose8(hi));
            let mn = if W::HAS_MIN { transpose8(mn) } else { mn };
            let sc: [__m256i; 16] = std::array::from_fn(|g| if g < 8 { lo[g] } else { hi[g - 8] });
            let ab: [&BlockQ8_K; NT] = std::array::from_fn(|t| &acts[t][k]);
            // The unsigned levels u are `vpdpbusd`'s unsigned operand and the activations its
            // signed one, as they are; the offset, OFFSET * sum(a) per 16-element group, comes
            // from the activations' `bsums` and is the same for every row lane.
            let mut isum = [_mm256_setzero_si256(); NT];
            for c in 0..8 {
                let mut v = [_mm256_setzero_si256(); 8];
                for r in 0..8 {
                    if let Some(b) = rows[r] {
                        v[r] = b[k].levels(c);
                    }
                }
                let w = transpose8(v);
                let (s_lo, s_hi) = (sc[2 * c], sc[2 * c + 1]);
                // The scales as i16 pairs (s_lo, s_hi) per row lane (|scale| <= 32).
                let s2 = _mm256_blend_epi16::<0xAA>(s_lo, _mm256_slli_epi32::<16>(s_hi));
                // t outer (the tokens' chains are independent), so only `isum` stays live across
                // tokens; each 16-element half's chain starts from its offset, -OFFSET * its bsum.
                for t in 0..NT {
                    let mut p_lo = _mm256_set1_epi32(-W::OFFSET * ab[t].bsums[2 * c] as i32);
                    let mut p_hi = _mm256_set1_epi32(-W::OFFSET * ab[t].bsums[2 * c + 1] as i32);
                    for j in [0, 2] {
                        let lo =
                            [j, j + 1].map(|i| _mm256_set1_epi32(act4(&ab[t].qs, 32 * c + 4 * i)));
                        let hi = [j, j + 1]
                            .map(|i| _mm256_set1_epi32(act4(&ab[t].qs, 32 * c + 16 + 4 * i)));
                        p_lo = I::dpbusd2(p_lo, [w[j], w[j + 1]], lo);
                        p_hi = I::dpbusd2(p_hi, [w[j + 4], w[j + 5]], hi);
                    }
                    if W::SUMS_FIT_I16 && !I::WIDE_BY_I16 {
                        // The two sums as the low and high i16 of a dword, against the scale
                        // pair: isum += p_lo * s_lo + p_hi * s_hi, exactly.
                        let pk = _mm256_blend_epi16::<0xAA>(p_lo, _mm256_slli_epi32::<16>(p_hi));
                        isum[t] = I::dpwssd(isum[t], pk, s2);
                    } else {
                        let lo = _mm256_mullo_epi32(p_lo, s_lo);
                        let hi = _mm256_mullo_epi32(p_hi, s_hi);
                        isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(lo, hi));
                    }
                }
            }
            // d and dmin are 8 readable floats; unaligned loads.
            let dv = _mm256_loadu_ps(d.as_ptr());
            let dminv = _mm256_loadu_ps(dmin.as_ptr());
            for t in 0..NT {
                let da = _mm256_set1_ps(ab[t].d);
                acc[t] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dv, da), acc[t]);
                if W::HAS_MIN {
                    // sum_g min_g * bsum_g, the bsums as i16 pairs (|bsum| <= 16 * 128).
                    let mut msum = _mm256_setzero_si256();
                    for (i, m) in mn.iter().enumerate() {
                        msum = I::dpwssd(msum, *m, _mm256_set1_epi32(bsum_pair(ab[t], i)));
                    }
                    acc[t] = _mm256_fnmadd_ps(
                        _mm256_cvtepi32_ps(msum),
                        _mm256_mul_ps(dminv, da),
                        acc[t],
                    );
                }
            }
        }
        store_rows(&acc, out);
    }
}

/// Activation bytes i..i + 4 as one little-endian i32 (for a `vpdpbusd` broadcast operand).
#[inline(always)]
pub(in crate::x86_64) fn act4(qs: &[i8], i: usize) -> i32 {
    let q = &qs[i..i + 4];
    i32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8])
}

/// The activations of blocks k0..k0 + kn of NT tokens for [`group`] and [`group512`]: offset to
/// unsigned (a ^ 0x80) in `xq[kk * NT + t]`, with their scales `da` and (formats with a min) `s`
/// in `sa`, made once per chunk for all the row groups.
///
/// # Safety
/// The CPU must have AVX2 and F16C (every tile entry point is compiled for them).
#[inline(always)]
unsafe fn offset_acts<W: TileBlock, const NT: usize>(
    acts: &[&[W::Act]; NT],
    k0: usize,
    kn: usize,
    xq: &mut [[u32; 8]],
    da: &mut [f32],
    sa: &mut [f32],
) {
    // SAFETY: the caller guarantees AVX2 and F16C; `xq[i]` is 8 u32 = 32 writable bytes
    // (unaligned store).
    unsafe {
        let x80 = _mm256_set1_epi8(-128);
        for kk in 0..kn {
            for t in 0..NT {
                let b = &acts[t][k0 + kk];
                let v = _mm256_xor_si256(load32i(b.qs()), x80);
                _mm256_storeu_si256(xq[kk * NT + t].as_mut_ptr() as *mut __m256i, v);
                (da[kk * NT + t], sa[kk * NT + t]) = act_scales::<W>(b);
            }
        }
    }
}

/// An activation block's scales as the tiles use them: d, and s for the formats with a min (Q4_1,
/// Q5_1; else 0, unused).
///
/// # Safety
/// The CPU must have AVX2 and F16C (every tile entry point is compiled for them).
#[inline(always)]
unsafe fn act_scales<W: TileBlock>(b: &W::Act) -> (f32, f32) {
    // SAFETY: the caller guarantees F16C.
    unsafe {
        let s = if W::HAS_MIN {
            h2f(b.s().unwrap_or(half::f16::ZERO))
        } else {
            0.0
        };
        (h2f(b.d()), s)
    }
}

/// One block's float steps for 16 rows of one token, as [`group512`] and the AMX tile both take
/// them (hence their same bits): acc + sum * (d * da) (+ m * sa for the formats with a min), `sum`
/// the block's exact integer sums.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[inline(always)]
unsafe fn block_step512<W: TileBlock>(
    acc: __m512,
    sum: __m512i,
    d: __m512,
    m: __m512,
    da: f32,
    sa: f32,
) -> __m512 {
    // SAFETY: the caller guarantees AVX-512 F.
    unsafe {
        let scale = _mm512_mul_ps(d, _mm512_set1_ps(da));
        let acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc);
        if W::HAS_MIN {
            _mm512_fmadd_ps(m, _mm512_set1_ps(sa), acc)
        } else {
            acc
        }
    }
}

/// `out.row(t)` = the lanes of `accs[p][t]` for groups of 16 rows p in order, for the rows
/// present (`out.row_len()` of `16 * accs.len()`).
///
/// # Safety
/// The CPU must have AVX-512 F.
#[inline(always)]
unsafe fn store_groups16<const NT: usize>(accs: &[[__m512; NT]], mut out: RowsMut<f32>) {
    let present = out.row_len();
    for t in 0..NT {
        let mut lanes = [0.0f32; 8 * MAX_GROUPS];
        for (p, acc) in accs.iter().enumerate() {
            // SAFETY: `lanes[16p..16p + 16]` is 16 writable floats (p < MAX_GROUPS / 2);
            // unaligned; AVX-512 F by the caller.
            unsafe { _mm512_storeu_ps(lanes[16 * p..].as_mut_ptr(), acc[t]) };
        }
        out.row_mut(t).copy_from_slice(&lanes[..present]);
    }
}

/// 8 rows (`rows[r]`, `None` = padding) x NT tokens (`acts[t]`), all blocks; writes
/// out[t * out_stride + r] for the rows present.
#[inline(always)]
unsafe fn group<I: Isa, W: TileBlock, const NT: usize>(
    rows: &[Option<&[W]>],
    acts: [&[W::Act]; NT],
    nb: usize,
    out: RowsMut<f32>,
) {
    // SAFETY: the caller runs this inside an entry point compiled with `I`'s features
    // (see `Isa`); every memory access below is bounds-checked or an unaligned load or
    // store of a local array of the size named beside it.
    unsafe {
        let x80 = _mm256_set1_epi8(-128);
        let ng = rows.len() / 8;
        assert!(rows.len() % 8 == 0 && ng <= MAX_GROUPS);
        // Full-range weights only where `dpbusd2` is exact for them (else `group_i16`).
        assert!(!(W::WIDE && I::WIDE_BY_I16));
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
            offset_acts::<W, NT>(&acts, k0, kn, &mut xq, &mut da, &mut sa);
            for (g, acc) in accs[..ng].iter_mut().enumerate() {
                let rows = &rows[8 * g..8 * g + 8];
                for kk in 0..kn {
                    let k = k0 + kk;
                    // Plain loops rather than array::from_fn: a closure called from a function
                    // without the target features is not inlined.
                    let mut u = [zero; 8];
                    let mut q = [_mm256_setzero_si256(); 8];
                    for r in 0..8 {
                        if let Some(b) = rows[r] {
                            u[r] = b[k].unpack();
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
                            s[(j / 2) & 1] = I::dpbusd2(s[(j / 2) & 1], u, [w[j], w[j + 1]]);
                        }
                        let s = _mm256_add_epi32(s[0], s[1]);
                        let scale = _mm256_mul_ps(d, _mm256_set1_ps(da[kk * NT + t]));
                        acc[t] = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps(_mm256_sub_epi32(s, corr)),
                            scale,
                            acc[t],
                        );
                        if W::HAS_MIN {
                            acc[t] = _mm256_fmadd_ps(m, _mm256_set1_ps(sa[kk * NT + t]), acc[t]);
                        }
                    }
                }
            }
            k0 += kn;
        }
        store_groups(&accs[..ng], out);
    }
}

/// [`group`] on 512-bit registers, for the AVX-512 VNNI set: two groups of 8 rows side by side
/// (row lanes 0..8 and 8..16 of each register), so that each token's per-block steps (the chain
/// sum, the offset, the conversion, the scale and the FMA) serve 16 rows instead of 8. Every
/// output element gets the same exact integer sum and the same float steps, in the same order,
/// as in [`group`]: the results are bit-identical.
///
/// # Safety
/// The CPU must have AVX2, FMA, F16C, AVX-512 F/BW/VL and VNNI (the `vnni` entry points).
#[inline(always)]
unsafe fn group512<W: TileBlock, const NT: usize>(
    rows: &[Option<&[W]>],
    acts: [&[W::Act]; NT],
    nb: usize,
    out: RowsMut<f32>,
) {
    // SAFETY: as for `group`, with AVX-512 guaranteed by the caller.
    unsafe {
        let x80z = _mm512_set1_epi8(-128);
        let ng = rows.len() / 8;
        assert!(rows.len() % 8 == 0 && ng <= MAX_GROUPS);
        let np = ng.div_ceil(2);
        let mut accs = [[_mm512_setzero_ps(); NT]; MAX_GROUPS / 2];
        let zero = Unpacked {
            q: _mm256_setzero_si256(),
            d: 0.0,
            m: 0.0,
        };
        let mut xq = [[0u32; 8]; KC * MAX_NT];
        let mut da = [0.0f32; KC * MAX_NT];
        let mut sa = [0.0f32; KC * MAX_NT];
        let mut k0 = 0;
        while k0 < nb {
            let kn = KC.min(nb - k0);
            offset_acts::<W, NT>(&acts, k0, kn, &mut xq, &mut da, &mut sa);
            for (p, acc) in accs[..np].iter_mut().enumerate() {
                for kk in 0..kn {
                    let k = k0 + kk;
                    // 16 rows (the second group's absent when ng is odd: zero rows).
                    let mut u = [zero; 16];
                    let mut q = [_mm256_setzero_si256(); 16];
                    for r in 0..16 {
                        if let Some(Some(b)) = rows.get(16 * p + r) {
                            u[r] = b[k].unpack();
                            q[r] = u[r].q;
                        }
                    }
                    let w = transpose16(&q);
                    let mut c = [_mm512_setzero_si512(); 2];
                    for (j, wj) in w.iter().enumerate() {
                        c[j & 1] = _mm512_dpbusd_epi32(c[j & 1], x80z, *wj);
                    }
                    let corr = _mm512_add_epi32(c[0], c[1]);
                    let mut dl = [0.0f32; 16];
                    let mut ml = [0.0f32; 16];
                    for r in 0..16 {
                        dl[r] = u[r].d;
                        ml[r] = u[r].m;
                    }
                    // dl and ml are 16 readable floats; unaligned loads.
                    let d = _mm512_loadu_ps(dl.as_ptr());
                    let m = _mm512_loadu_ps(ml.as_ptr());
                    let xb = &xq[kk * NT..kk * NT + NT];
                    for t in 0..NT {
                        let mut s = [_mm512_setzero_si512(); 2];
                        for j in (0..8).step_by(2) {
                            let (a0, a1) = (xb[t][j] as i32, xb[t][j + 1] as i32);
                            let i = (j / 2) & 1;
                            s[i] = _mm512_dpbusd_epi32(s[i], _mm512_set1_epi32(a0), w[j]);
                            s[i] = _mm512_dpbusd_epi32(s[i], _mm512_set1_epi32(a1), w[j + 1]);
                        }
                        let s = _mm512_sub_epi32(_mm512_add_epi32(s[0], s[1]), corr);
                        let (i, a) = (kk * NT + t, acc[t]);
                        acc[t] = block_step512::<W>(a, s, d, m, da[i], sa[i]);
                    }
                }
            }
            k0 += kn;
        }
        store_groups16(&accs[..np], out);
    }
}

/// Blocks per chunk of widened activations in [`group_i16`].
const KC16: usize = 8;

/// [`group`] for weights whose levels span the whole i8 range (Q8_0) on AVX2, where `maddubs`
/// would saturate: both sides sign-extended to i16 and multiplied with `madd` (two products per
/// i32 lane, exact for every byte value). Per block and group of 8 rows, each row's 32 levels
/// become two vectors of 16 i16, transposed so that lane r of `w[h][j]` holds row r's elements
/// 16h + 2j and 16h + 2j + 1; per token, 16 `madd` against the token's i16 pairs (broadcast) give
/// the 8 rows' exact block sums: 32 integer operations per token and block where splitting each
/// weight byte in two nibbles for `maddubs` took 48. The activations of a chunk of blocks are widened once for all the row groups. The
/// block sums and the float steps equal [`group`]'s, so the results are bit-identical.
#[inline(always)]
unsafe fn group_i16<W: TileBlock, const NT: usize>(
    rows: &[Option<&[W]>],
    acts: [&[W::Act]; NT],
    nb: usize,
    out: RowsMut<f32>,
) {
    // SAFETY: the caller runs this inside an entry point compiled with AVX2; every memory access
    // below is bounds-checked or an unaligned load or store of a local array of the size named
    // beside it.
    unsafe {
        let ng = rows.len() / 8;
        assert!(rows.len() % 8 == 0 && ng <= MAX_GROUPS && !W::HAS_MIN);
        let mut accs = [[_mm256_setzero_ps(); NT]; MAX_GROUPS];
        // xa[kk * NT + t] = token t's block k0 + kk as 32 i16 (16 pairs, one per u32).
        let mut xa = [[0u32; 16]; KC16 * MAX_NT];
        let mut da = [0.0f32; KC16 * MAX_NT];
        let mut k0 = 0;
        while k0 < nb {
            let kn = KC16.min(nb - k0);
            for kk in 0..kn {
                for t in 0..NT {
                    let b = &acts[t][k0 + kk];
                    let v = load32i(b.qs());
                    let x = xa[kk * NT + t].as_mut_ptr() as *mut __m256i;
                    // x and x + 1 are 2 x 32 writable bytes of `xa[i]` (16 u32); unaligned stores.
                    _mm256_storeu_si256(x, _mm256_cvtepi8_epi16(_mm256_castsi256_si128(v)));
                    _mm256_storeu_si256(
                        x.add(1),
                        _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(v)),
                    );
                    da[kk * NT + t] = h2f(b.d());
                }
            }
            for (g, acc) in accs[..ng].iter_mut().enumerate() {
                let rows = &rows[8 * g..8 * g + 8];
                for kk in 0..kn {
                    let k = k0 + kk;
                    let mut lo = [_mm256_setzero_si256(); 8];
                    let mut hi = [_mm256_setzero_si256(); 8];
                    let mut d = [0.0f32; 8];
                    for r in 0..8 {
                        if let Some(b) = rows[r] {
                            let u = b[k].unpack();
                            lo[r] = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(u.q));
                            hi[r] = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(u.q));
                            d[r] = u.d;
                        }
                    }
                    let w = [transpose8(lo), transpose8(hi)];
                    // d is 8 readable floats; unaligned load.
                    let dv = _mm256_loadu_ps(d.as_ptr());
                    for t in 0..NT {
                        let x = &xa[kk * NT + t];
                        let mut s = [_mm256_setzero_si256(); 2];
                        for h in 0..2 {
                            for j in 0..8 {
                                let a = _mm256_set1_epi32(x[8 * h + j] as i32);
                                s[j & 1] =
                                    _mm256_add_epi32(s[j & 1], _mm256_madd_epi16(w[h][j], a));
                            }
                        }
                        let s = _mm256_add_epi32(s[0], s[1]);
                        let scale = _mm256_mul_ps(dv, _mm256_set1_ps(da[kk * NT + t]));
                        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, acc[t]);
                    }
                }
            }
            k0 += kn;
        }
        store_groups(&accs[..ng], out);
    }
}

/// The whole tile: row groups of 8, token groups of 32/16/8/4/2/1.
#[inline(always)]
unsafe fn tile<I: Isa, W: TileBlock>(n: usize, w: Rows<u8>, a: Rows<u8>, mut out: RowsMut<f32>) {
    // SAFETY: the caller runs this inside an entry point compiled with `I`'s features
    // (see `Isa`); every memory access below is bounds-checked or an unaligned load or
    // store of a local array of the size named beside it.
    unsafe {
        let nb = n / QK;
        let (nr, nt) = (w.n(), a.n());
        let row = |r: usize| -> &[W] { cast_blocks(w.row(r)) };
        let act = |t: usize| -> &[W::Act] { cast_blocks(a.row(t)) };
        let mut r0 = 0;
        while r0 < nr {
            let ng = (nr - r0).div_ceil(8).min(MAX_GROUPS);
            let present = (nr - r0).min(8 * ng);
            let rows: [Option<&[W]>; 8 * MAX_GROUPS] =
                std::array::from_fn(|i| (r0 + i < nr).then(|| row(r0 + i)));
            let rows = &rows[..8 * ng];
            let mut t0 = 0;
            while t0 < nt {
                t0 += crate::dispatch::token_group!(nt - t0, NT => {
                    let acts = std::array::from_fn(|i| act(t0 + i));
                    let out = out.window(t0, NT, r0, present);
                    if W::WIDE && I::WIDE_BY_I16 {
                        group_i16::<W, NT>(rows, acts, nb, out)
                    } else if I::ZMM && ng >= 2 {
                        group512::<W, NT>(rows, acts, nb, out)
                    } else {
                        group::<I, W, NT>(rows, acts, nb, out)
                    }
                }; 128, 64, 32, 16, 8, 4, 2, 1);
            }
            r0 += 8 * ng;
        }
    }
}

/// The whole k-quant tile: row groups of 8, token groups of 32/16/8/4/2/1.
#[inline(always)]
unsafe fn k_tile<I: Isa, W: KTile>(n: usize, w: Rows<u8>, a: Rows<u8>, mut out: RowsMut<f32>) {
    let nb = n / QK_K;
    let (nr, nt) = (w.n(), a.n());
    let row = |r: usize| -> &[W] { cast_blocks(w.row(r)) };
    let act = |t: usize| -> &[BlockQ8_K] { cast_blocks(a.row(t)) };
    let mut r0 = 0;
    while r0 < nr {
        if I::ZMM && nr - r0 > 8 {
            // 16 rows on 512-bit registers (bit-identical to two groups of 8).
            let rows: [Option<&[W]>; 16] =
                std::array::from_fn(|i| (r0 + i < nr).then(|| row(r0 + i)));
            let present = (nr - r0).min(16);
            let mut t0 = 0;
            while t0 < nt {
                // SAFETY: the caller runs this inside an entry point compiled with `I`'s
                // features, which are AVX-512 VNNI's when `I::ZMM`.
                t0 += crate::dispatch::token_group!(nt - t0, NT => unsafe { W::group16::<NT>(
                    rows,
                    std::array::from_fn(|i| act(t0 + i)),
                    nb,
                    out.window(t0, NT, r0, present),
                ) }; 64, 32, 16, 8, 4, 2, 1);
            }
            r0 += 16;
            continue;
        }
        let rows: [Option<&[W]>; 8] = std::array::from_fn(|i| (r0 + i < nr).then(|| row(r0 + i)));
        let present = (nr - r0).min(8);
        let mut t0 = 0;
        while t0 < nt {
            // SAFETY: the caller runs this inside an entry point compiled with `I`'s features.
            t0 += crate::dispatch::token_group!(nt - t0, NT => unsafe { W::group::<I, NT>(
                rows,
                std::array::from_fn(|i| act(t0 + i)),
                nb,
                out.window(t0, NT, r0, present),
            ) }; 32, 16, 8, 4, 2, 1);
        }
        r0 += 8;
    }
}

/// `out.row(t)` = the lanes of `accs[g][t]` for row groups g in order, for the rows present
/// (`out.row_len()` of `8 * accs.len()`).
#[inline(always)]
fn store_groups<const NT: usize>(accs: &[[__m256; NT]], mut out: RowsMut<f32>) {
    let present = out.row_len();
    for t in 0..NT {
        let mut lanes = [0.0f32; 8 * MAX_GROUPS];
        for (g, acc) in accs.iter().enumerate() {
            // SAFETY: `lanes[8g..8g + 8]` is 8 writable floats (g < MAX_GROUPS); unaligned store
            // (AVX, which every caller has).
            unsafe { _mm256_storeu_ps(lanes[8 * g..].as_mut_ptr(), acc[t]) };
        }
        out.row_mut(t).copy_from_slice(&lanes[..present]);
    }
}

/// `out.row(t)` = the lanes of `acc[t]` for the rows present (`out.row_len()` of 8).
#[inline(always)]
pub(in crate::x86_64) fn store_rows(acc: &[__m256], mut out: RowsMut<f32>) {
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
                // The scale as an i16 pair (sc, sc) per row lane, for `vpdpwssd`.
                let sc2 = _mm256_or_si256(scv, _mm256_slli_epi32::<16>(scv));
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
                    if W::HALF_SUMS_FIT_I16 && !I::WIDE_BY_I16 {
                        // Each chain's 16-element sum as the low (p[0]) and high (p[1]) i16 of
                        // a dword: isum += p0 * sc + p1 * sc, exactly.
                        let pk = _mm256_blend_epi16::<0xAA>(p[0], _mm256_slli_epi32::<16>(p[1]));
                        isum[t] = I::dpwssd(isum[t], pk, sc2);
                    } else {
                        let p = _mm256_add_epi32(p[0], p[1]);
                        isum[t] = _mm256_add_epi32(isum[t], _mm256_mullo_epi32(p, scv));
                    }
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

/// Two 8x8 dword transposes side by side in 512-bit registers: lane r of out[j] = dword j of
/// v[r], r < 16 (rows 0..8 in the low half, 8..16 in the high half).
///
/// # Safety
/// The CPU must have AVX-512 F (the `vnni` entry points).
#[inline(always)]
unsafe fn transpose16(v: &[__m256i; 16]) -> [__m512i; 8] {
    // SAFETY: the caller guarantees AVX-512 F.
    unsafe {
        let lo = transpose8([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]);
        let hi = transpose8([v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15]]);
        let mut w = [_mm512_setzero_si512(); 8];
        for j in 0..8 {
            w[j] = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo[j]), hi[j]);
        }
        w
    }
}

/// A Q4_K/Q5_K super-block of 16 rows as the 512-bit k-quant bodies read it: `sc[s]` lane r =
/// scale s of row r, `mn[i]` (i < 4) lane r = row r's min pair i (i16), `d` and `dmin` per lane.
#[derive(Clone, Copy)]
struct KHeader16 {
    sc: [__m512i; 8],
    mn: [__m512i; 8],
    d: __m512,
    dmin: __m512,
}

/// The [`KHeader16`] of super-block `k` of `rows` (`None` = padding: zeros).
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VL and VNNI.
#[inline(always)]
unsafe fn k_header16<W: KBlock>(rows: &[Option<&[W]>; 16], k: usize) -> KHeader16 {
    // SAFETY: the caller guarantees AVX-512; the loads are of 16-float local arrays.
    unsafe {
        let mut sc = [_mm256_setzero_si256(); 16];
        let mut mn = [_mm256_setzero_si256(); 16];
        let mut d = [0.0f32; 16];
        let mut dmin = [0.0f32; 16];
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
        KHeader16 {
            sc: transpose16(&sc),
            mn: transpose16(&mn),
            // d and dmin are 16 readable floats; unaligned loads.
            d: _mm512_loadu_ps(d.as_ptr()),
            dmin: _mm512_loadu_ps(dmin.as_ptr()),
        }
    }
}

/// The float steps of a super-block of 16 rows: acc[t] += isum[t] * d * da - msum * dmin * da,
/// msum the mins against the token's 32-element activation sums (`bsums` pairs).
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VL and VNNI.
#[inline(always)]
unsafe fn k_finish16<const NT: usize>(
    h: &KHeader16,
    ab: &[&BlockQ8_K; NT],
    isum: &[__m512i; NT],
    acc: &mut [__m512; NT],
) {
    // SAFETY: the caller guarantees AVX-512.
    unsafe {
        for t in 0..NT {
            acc[t] = k_finish_token(h, &k_min_pairs(ab[t]), ab[t].d, isum[t], acc[t]);
        }
    }
}

/// A token's 32-element activation sums of one super-block as 4 pairs of i16 (sums 2i, 2i + 1
/// in dword i), as [`k_finish_token`] takes them.
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
unsafe fn k_min_pairs(a: &BlockQ8_K) -> [i32; 4] {
    // SAFETY: the caller guarantees AVX2; bsums is 16 i16 = 32 readable bytes and `bp` 16
    // writable bytes; unaligned.
    unsafe {
        let bs = _mm256_loadu_si256(a.bsums.as_ptr() as *const __m256i);
        let b = _mm_hadd_epi16(
            _mm256_castsi256_si128(bs),
            _mm256_extracti128_si256::<1>(bs),
        );
        let mut bp = [0i32; 4];
        _mm_storeu_si128(bp.as_mut_ptr() as *mut __m128i, b);
        bp
    }
}

/// One token's float steps of [`k_finish16`]: `acc + isum * d * da - msum * dmin * da`, msum the
/// rows' mins against the token's sum pairs `bp` ([`k_min_pairs`]).
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VL and VNNI.
#[inline(always)]
unsafe fn k_finish_token(
    h: &KHeader16,
    bp: &[i32; 4],
    da: f32,
    isum: __m512i,
    acc: __m512,
) -> __m512 {
    // SAFETY: the caller guarantees AVX-512.
    unsafe {
        let mut msum = _mm512_setzero_si512();
        for (i, m) in h.mn[..4].iter().enumerate() {
            msum = _mm512_dpwssd_epi32(msum, *m, _mm512_set1_epi32(bp[i]));
        }
        let da = _mm512_set1_ps(da);
        let acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(h.d, da), acc);
        _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(h.dmin, da), acc)
    }
}

/// [`group_k`] on 512-bit registers for the AVX-512 VNNI set: 16 rows (`rows[r]`, `None` =
/// padding) x NT tokens, so that each token's per-sub-block steps (the chains, the packing and the
/// scale `vpdpwssd` or `vpmulld`) serve 16 rows instead of 8. Every output element gets the same
/// exact integer sums and the same float steps in the same order as in [`group_k`]: the results
/// are bit-identical.
///
/// # Safety
/// The CPU must have AVX2, FMA, F16C, AVX-512 F/BW/VL and VNNI (the `vnni` entry points).
#[inline(always)]
unsafe fn group_k512<W: KBlock, const NT: usize>(
    rows: [Option<&[W]>; 16],
    acts: [&[BlockQ8_K]; NT],
    nb: usize,
    out: RowsMut<f32>,
) {
    // SAFETY: as for `group_k`, with AVX-512 guaranteed by the caller.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); NT];
        for k in 0..nb {
            let h = k_header16(&rows, k);
            let ab: [&BlockQ8_K; NT] = std::array::from_fn(|t| &acts[t][k]);
            let sc = h.sc;
            let mut isum = [_mm512_setzero_si512(); NT];
            for s in 0..8 {
                let mut v = [_mm256_setzero_si256(); 16];
                for r in 0..16 {
                    if let Some(b) = rows[r] {
                        v[r] = b[k].levels(s);
                    }
                }
                let w = transpose16(&v);
                let scv = sc[s];
                let sc2 = _mm512_or_si512(scv, _mm512_slli_epi32::<16>(scv));
                for t in 0..NT {
                    let mut p = [_mm512_setzero_si512(); 2];
                    for j in (0..8).step_by(2) {
                        let i = (j / 2) & 1;
                        let a0 = _mm512_set1_epi32(act4(&ab[t].qs, 32 * s + 4 * j));
                        let a1 = _mm512_set1_epi32(act4(&ab[t].qs, 32 * s + 4 * j + 4));
                        p[i] = _mm512_dpbusd_epi32(p[i], w[j], a0);
                        p[i] = _mm512_dpbusd_epi32(p[i], w[j + 1], a1);
                    }
                    if W::HALF_SUMS_FIT_I16 {
                        let pk = _mm512_mask_blend_epi16(
                            0xAAAA_AAAA,
                            p[0],
                            _mm512_slli_epi32::<16>(p[1]),
                        );
                        isum[t] = _mm512_dpwssd_epi32(isum[t], pk, sc2);
                    } else {
                        let p = _mm512_add_epi32(p[0], p[1]);
                        isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(p, scv));
                    }
                }
            }
            k_finish16(&h, &ab, &isum, &mut acc);
        }
        store_rows16(&acc, out);
    }
}

/// `out.row(t)` = the lanes of `acc[t]` for the rows present (`out.row_len()` of 16).
///
/// # Safety
/// The CPU must have AVX-512 F.
#[inline(always)]
unsafe fn store_rows16(acc: &[__m512], mut out: RowsMut<f32>) {
    let present = out.row_len();
    for (t, a) in acc.iter().enumerate() {
        let mut lanes = [0.0f32; 16];
        // SAFETY: `lanes` is 16 writable floats; unaligned store; AVX-512 F by the caller.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *a) };
        out.row_mut(t).copy_from_slice(&lanes[..present]);
    }
}

/// [`group_k16`] on 512-bit registers for the AVX-512 VNNI set: 16 rows x NT tokens, with the
/// same exact integer sums and the same float steps as [`group_k16`] (bit-identical results).
///
/// # Safety
/// The CPU must have AVX2, FMA, F16C, AVX-512 F/BW/VL and VNNI (the `vnni` entry points).
#[inline(always)]
pub(in crate::x86_64) unsafe fn group_k16_512<W: K16Block, const NT: usize>(
    rows: [Option<&[W]>; 16],
    acts: [&[BlockQ8_K]; NT],
    nb: usize,
    out: RowsMut<f32>,
) {
    // SAFETY: as for `group_k16`, with AVX-512 guaranteed by the caller.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); NT];
        for k in 0..nb {
            let h = k16_header16(&rows, k);
            let sc = h.sc;
            let ab: [&BlockQ8_K; NT] = std::array::from_fn(|t| &acts[t][k]);
            let mut isum = [_mm512_setzero_si512(); NT];
            for c in 0..8 {
                let mut v = [_mm256_setzero_si256(); 16];
                for r in 0..16 {
                    if let Some(b) = rows[r] {
                        v[r] = b[k].levels(c);
                    }
                }
                let w = transpose16(&v);
                let (s_lo, s_hi) = (sc[2 * c], sc[2 * c + 1]);
                let s2 = _mm512_mask_blend_epi16(0xAAAA_AAAA, s_lo, _mm512_slli_epi32::<16>(s_hi));
                for t in 0..NT {
                    let mut p_lo = _mm512_set1_epi32(-W::OFFSET * ab[t].bsums[2 * c] as i32);
                    let mut p_hi = _mm512_set1_epi32(-W::OFFSET * ab[t].bsums[2 * c + 1] as i32);
                    for j in [0, 2] {
                        for i in [j, j + 1] {
                            let lo = _mm512_set1_epi32(act4(&ab[t].qs, 32 * c + 4 * i));
                            let hi = _mm512_set1_epi32(act4(&ab[t].qs, 32 * c + 16 + 4 * i));
                            p_lo = _mm512_dpbusd_epi32(p_lo, w[i], lo);
                            p_hi = _mm512_dpbusd_epi32(p_hi, w[i + 4], hi);
                        }
                    }
                    if W::SUMS_FIT_I16 {
                        let pk = _mm512_mask_blend_epi16(
                            0xAAAA_AAAA,
                            p_lo,
                            _mm512_slli_epi32::<16>(p_hi),
                        );
                        isum[t] = _mm512_dpwssd_epi32(isum[t], pk, s2);
                    } else {
                        let lo = _mm512_mullo_epi32(p_lo, s_lo);
                        let hi = _mm512_mullo_epi32(p_hi, s_hi);
                        isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(lo, hi));
                    }
                }
            }
            k16_finish16::<W, NT>(&h, &ab, &isum, &mut acc);
        }
        store_rows16(&acc, out);
    }
}

/// A [`K16Block`] super-block of 16 rows as the 512-bit bodies read it: `sc[g]` lane r = scale g
/// of row r, `mn[i]` lane r = row r's mins (2i, 2i + 1) as an i16 pair (zero without mins), `d`
/// and `dmin` per lane.
#[derive(Clone, Copy)]
struct K16Header16 {
    sc: [__m512i; 16],
    mn: [__m512i; 8],
    d: __m512,
    dmin: __m512,
}

/// The [`K16Header16`] of super-block `k` of `rows` (`None` = padding: zeros).
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VL and VNNI.
#[inline(always)]
unsafe fn k16_header16<W: K16Block>(rows: &[Option<&[W]>; 16], k: usize) -> K16Header16 {
    // SAFETY: the caller guarantees AVX-512; the loads are of 16-float local arrays.
    unsafe {
        let mut lo = [_mm256_setzero_si256(); 16];
        let mut hi = [_mm256_setzero_si256(); 16];
        let mut mn = [_mm256_setzero_si256(); 16];
        let mut d = [0.0f32; 16];
        let mut dmin = [0.0f32; 16];
        for (r, row) in rows.iter().enumerate() {
            if let Some(b) = row {
                let v = b[k].scales();
                lo[r] = _mm256_cvtepi8_epi32(v);
                hi[r] = _mm256_cvtepi8_epi32(_mm_srli_si128::<8>(v));
                if W::HAS_MIN {
                    mn[r] = _mm256_cvtepu8_epi16(b[k].mins());
                }
                (d[r], dmin[r]) = b[k].d();
            }
        }
        let (lo, hi) = (transpose16(&lo), transpose16(&hi));
        K16Header16 {
            sc: std::array::from_fn(|g| if g < 8 { lo[g] } else { hi[g - 8] }),
            mn: if W::HAS_MIN {
                transpose16(&mn)
            } else {
                [_mm512_setzero_si512(); 8]
            },
            // d and dmin are 16 readable floats; unaligned loads.
            d: _mm512_loadu_ps(d.as_ptr()),
            dmin: _mm512_loadu_ps(dmin.as_ptr()),
        }
    }
}

/// Token t's 16-element activation sums (2i, 2i + 1) as one i16 pair.
#[inline(always)]
fn bsum_pair(a: &BlockQ8_K, i: usize) -> i32 {
    i32::from_le_bytes(std::array::from_fn(|j| {
        a.bsums[2 * i + j / 2].to_le_bytes()[j % 2]
    }))
}

/// The float steps of a [`K16Block`] super-block of 16 rows: acc[t] += isum[t] * d * da, and
/// with mins - msum * dmin * da (msum the mins against the 16-element activation sums).
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VL and VNNI.
#[inline(always)]
unsafe fn k16_finish16<W: K16Block, const NT: usize>(
    h: &K16Header16,
    ab: &[&BlockQ8_K; NT],
    isum: &[__m512i; NT],
    acc: &mut [__m512; NT],
) {
    // SAFETY: the caller guarantees AVX-512.
    unsafe {
        for t in 0..NT {
            acc[t] = k16_finish_token::<W>(h, ab[t], isum[t], acc[t]);
        }
    }
}

/// One token's float steps of [`k16_finish16`].
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VL and VNNI.
#[inline(always)]
unsafe fn k16_finish_token<W: K16Block>(
    h: &K16Header16,
    a: &BlockQ8_K,
    isum: __m512i,
    acc: __m512,
) -> __m512 {
    // SAFETY: the caller guarantees AVX-512.
    unsafe {
        let da = _mm512_set1_ps(a.d);
        let acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(h.d, da), acc);
        if W::HAS_MIN {
            let mut msum = _mm512_setzero_si512();
            for (i, m) in h.mn.iter().enumerate() {
                msum = _mm512_dpwssd_epi32(msum, *m, _mm512_set1_epi32(bsum_pair(a, i)));
            }
            _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(h.dmin, da), acc)
        } else {
            acc
        }
    }
}

pub(in crate::x86_64) mod amx;

/// Tiles with AVX-512 VNNI `vpdpbusd`/`vpdpwssd` on 256-bit registers.
pub(in crate::x86_64) mod vnni {
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

    /// `acc + sum of 2 i16 x i16 products` per i32 lane (exact).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn dpwssd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_dpwssd_epi32(acc, a, b)
    }

    impl_isa!(Vnni, crate::x86_64::debug_assert_vnni, false, true);
    tile_entry_points!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", Vnni);
}

/// The same tiles with AVX-VNNI (Intel Alder Lake and later, Zen 5): the VEX encoding of the same
/// `vpdpbusd`/`vpdpwssd`, exact for every byte, without AVX-512.
pub(in crate::x86_64) mod avxvnni {
    use super::*;

    /// `acc + sum of 4 u8 x i8 products` per i32 lane (exact).
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    #[inline]
    fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(acc, u, s)
    }

    /// `dpbusd` of two operand pairs in one chain.
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    #[inline]
    fn dpbusd2(acc: __m256i, u: [__m256i; 2], s: [__m256i; 2]) -> __m256i {
        _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(acc, u[0], s[0]), u[1], s[1])
    }

    /// `acc + sum of 2 i16 x i16 products` per i32 lane (exact).
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    #[inline]
    fn dpwssd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_dpwssd_avx_epi32(acc, a, b)
    }

    impl_isa!(AvxVnni, crate::x86_64::debug_assert_avxvnni, false, false);
    tile_entry_points!("avx2,fma,f16c,avxvnni", AvxVnni);
}

/// The same tiles on AVX2 alone (a laptop without AVX-512): `vpdpbusd` becomes `maddubs` (u8 x
/// i8 byte pairs summed in i16 lanes, saturating) + `madd` with ones + add. Exact when every pair
/// sum fits i16: the unsigned operand is at most 255 (offset activations) or 63 (k-quant levels)
/// and the signed one at most 31 in magnitude (Q4_0, Q5_0, Q4_1, Q5_1 levels) or 128
/// (activations against levels <= 63): 2 * 255 * 31 = 15810 and 2 * 63 * 128 = 16128 < 32767.
/// Q8_0 weights (up to 128 against 255) would saturate, so their tile widens both sides to i16
/// and uses `madd` ([`group_i16`]).
pub(in crate::x86_64) mod avx2 {
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

    /// `acc + sum of 2 i16 x i16 products` per i32 lane (exact but for -32768 * -32768 twice).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn dpwssd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
    }

    impl_isa!(Avx2, crate::x86_64::debug_assert_avx2, true, false);
    tile_entry_points!("avx2,fma,f16c", Avx2);
}

#[cfg(test)]
mod tests;

//! Prefill tiles (`GemmTileFn`) with `sdot` for Q4_0, Q5_0 and Q8_0 weights x Q8_0 activations,
//! Q4_1 and Q5_1 x Q8_1, and Q2_K .. Q6_K x Q8_K, installed only when the CPU has dotprod (a
//! Raspberry Pi 5's Cortex-A76 and later).
//!
//! For a group of 4 weight rows and one block of 32 elements, each row's block is unpacked once to
//! 32 signed bytes and the 4x8 grid of 4-byte groups is transposed, so that lane r of `w[j]` holds
//! row r's elements 4j..4j+4. Then for every token of the group, 8 `sdot`s of `w[j]` against the
//! token's bytes 4j..4j+4 (the by-element form, `a.4b[i]`, reads them from the activation
//! register: no broadcast) give the 4 rows' exact block sums in the 4 lanes: the weights are
//! unpacked once for all the tokens instead of once per (row, token) as in the `vec_dot` loop.
//! `sdot` multiplies signed by signed bytes, so neither side needs an offset. The k-quants do the
//! same per 32-element sub-block and weight its exact sums by the rows' scales in i32 lanes.
//!
//! Each output element accumulates its blocks in order in its own lane of its own token
//! accumulator, so its value does not depend on how rows and tokens are grouped into tiles.

use core::arch::aarch64::*;
use std::arch::asm;

use super::pair::{Block32, Block32Min};
use super::q4_k::scales_mins_k4;
use super::simd::f16_to_f32;
use crate::blocks::{
    cast_blocks, ActBlock32, Block, BlockQ2_K, BlockQ3_K, BlockQ4_0, BlockQ4_1, BlockQ4_K,
    BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0, BlockQ8_1, BlockQ8_K, QK, QK_K,
};
use crate::matmul::check_tile_args;
use crate::types::GgmlType;
use crate::views::{Rows, RowsMut};

/// `acc + w . a.4b[I]`: lane r gains the products of `w`'s bytes 4r..4r+4 with `a`'s bytes
/// 4I..4I+4. `vdotq_laneq_s32` is unstable, so this is inline assembly.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn sdot_lane<const I: usize>(mut acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
    // SAFETY: this function is only compiled with `dotprod` enabled and only reachable through the
    // kernel table, which holds the tiles only when the CPU has dotprod; `sdot` reads and writes
    // only the three named vector registers: no memory, no stack, no flags.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {w:v}.16b, {a:v}.4b[{i}]",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            a = in(vreg) a,
            i = const I,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// The 4 rows' sums over one 32-element block against one token's bytes `a0` (0..16) and `a1`
/// (16..32): `lo[j]` / `hi[j]` lane r = row r's bytes 4j..4j+4 of each half. Returns the two halves'
/// sums (two independent `sdot` chains).
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn block_sums(
    lo: &[int8x16_t; 4],
    hi: &[int8x16_t; 4],
    a0: int8x16_t,
    a1: int8x16_t,
) -> (int32x4_t, int32x4_t) {
    let z = vdupq_n_s32(0);
    let s0 = sdot_lane::<0>(z, lo[0], a0);
    let s1 = sdot_lane::<0>(z, hi[0], a1);
    let s0 = sdot_lane::<1>(s0, lo[1], a0);
    let s1 = sdot_lane::<1>(s1, hi[1], a1);
    let s0 = sdot_lane::<2>(s0, lo[2], a0);
    let s1 = sdot_lane::<2>(s1, hi[2], a1);
    let s0 = sdot_lane::<3>(s0, lo[3], a0);
    let s1 = sdot_lane::<3>(s1, hi[3], a1);
    (s0, s1)
}

/// Transposes 4 rows of 4 dwords: lane r of out[j] = dword j of v[r].
#[inline]
#[target_feature(enable = "neon")]
fn transpose4(v: [int8x16_t; 4]) -> [int8x16_t; 4] {
    let v: [uint32x4_t; 4] = v.map(|x| vreinterpretq_u32_s8(x));
    let t0 = vtrn1q_u32(v[0], v[1]);
    let t1 = vtrn2q_u32(v[0], v[1]);
    let t2 = vtrn1q_u32(v[2], v[3]);
    let t3 = vtrn2q_u32(v[2], v[3]);
    let (t0, t1, t2, t3) = (
        vreinterpretq_u64_u32(t0),
        vreinterpretq_u64_u32(t1),
        vreinterpretq_u64_u32(t2),
        vreinterpretq_u64_u32(t3),
    );
    [
        vreinterpretq_s8_u64(vtrn1q_u64(t0, t2)),
        vreinterpretq_s8_u64(vtrn1q_u64(t1, t3)),
        vreinterpretq_s8_u64(vtrn2q_u64(t0, t2)),
        vreinterpretq_s8_u64(vtrn2q_u64(t1, t3)),
    ]
}

/// `out.row(t)` = lanes of acc[t] for the rows present (`out.row_len()` of them).
#[inline]
#[target_feature(enable = "neon")]
fn store_rows(acc: &[float32x4_t], mut out: RowsMut<f32>) {
    let present = out.row_len();
    for (t, a) in acc.iter().enumerate() {
        let mut v = [0.0f32; 4];
        // SAFETY: `v` is 4 writable floats.
        unsafe { vst1q_f32(v.as_mut_ptr(), *a) };
        out.row_mut(t).copy_from_slice(&v[..present]);
    }
}

/// `f(row)` for each of the 4 rows present, `pad` for the padding rows (`None`).
#[inline(always)]
pub(super) fn per_row<W, T: Copy>(
    rows: &[Option<&[W]>; 4],
    pad: T,
    f: impl Fn(&[W]) -> T,
) -> [T; 4] {
    let mut out = [pad; 4];
    for (o, row) in out.iter_mut().zip(rows) {
        if let Some(b) = row {
            *o = f(b);
        }
    }
    out
}

/// A weight block unpacked to 32 signed levels (elements 0..16, 16..32), its scale and its min
/// (0 for the formats without one).
#[derive(Clone, Copy)]
pub(super) struct Unpacked {
    pub(super) q: [int8x16_t; 2],
    pub(super) d: f32,
    pub(super) m: f32,
}

/// 4 rows (`rows[r]`, `None` = padding) x NT tokens (`acts[t]`), all blocks; writes
/// `out.row(t)[r]` for the rows present. Per block and token, as ggml's `vec_dot`:
/// `d_w * d_a * isum`, plus `m_w * s_a` for the formats with a min (Q4_1, Q5_1 x Q8_1).
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn group<const NT: usize, W: Block>(
    rows: [Option<&[W]>; 4],
    acts: [&[impl ActBlock32]; NT],
    nb: usize,
    unpack: impl Fn(&W) -> Unpacked,
    out: RowsMut<f32>,
) {
    let zero = Unpacked {
        q: [vdupq_n_s8(0); 2],
        d: 0.0,
        m: 0.0,
    };
    let mut acc = [vdupq_n_f32(0.0); NT];
    for k in 0..nb {
        let u = per_row(&rows, zero, |b| unpack(&b[k]));
        let lo = transpose4([u[0].q[0], u[1].q[0], u[2].q[0], u[3].q[0]]);
        let hi = transpose4([u[0].q[1], u[1].q[1], u[2].q[1], u[3].q[1]]);
        // SAFETY: the arrays are 4 readable f32.
        let (d, m) = unsafe {
            (
                vld1q_f32([u[0].d, u[1].d, u[2].d, u[3].d].as_ptr()),
                vld1q_f32([u[0].m, u[1].m, u[2].m, u[3].m].as_ptr()),
            )
        };
        for t in 0..NT {
            let y = &acts[t][k];
            let q = y.qs();
            // SAFETY: `q` is 32 bytes; the loads read 0..16 and 16..32.
            let (a0, a1) = unsafe { (vld1q_s8(q.as_ptr()), vld1q_s8(q.as_ptr().add(16))) };
            let (s0, s1) = block_sums(&lo, &hi, a0, a1);
            let s = vaddq_s32(s0, s1);
            let scale = vmulq_n_f32(d, f16_to_f32(y.d().to_bits()));
            acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(s), scale);
            if let Some(sa) = y.s() {
                acc[t] = vfmaq_n_f32(acc[t], m, f16_to_f32(sa.to_bits()));
            }
        }
    }
    store_rows(&acc, out);
}

/// The whole tile: row groups of 4, token groups of 8/4/2/1 (`token_group!`), each through
/// `$group::<NT, _>(rows, acts, nb, [extra,] out)` (rows of `$w`, activations of `$a`, `$elems`
/// elements per block).
macro_rules! drive {
    ($w:ty, $a:ty, $elems:expr, $n:ident, $wr:ident, $ar:ident, $out:ident, $group:ident $(, $extra:expr)?) => {{
        let nb = $n / $elems;
        let (nr, nt) = ($wr.n(), $ar.n());
        let row = |r: usize| -> &[$w] { cast_blocks($wr.row(r)) };
        let act = |t: usize| -> &[$a] { cast_blocks($ar.row(t)) };
        let mut out = $out;
        let mut r0 = 0;
        while r0 < nr {
            let rows: [Option<&[$w]>; 4] =
                [0, 1, 2, 3].map(|i| (r0 + i < nr).then(|| row(r0 + i)));
            let present = (nr - r0).min(4);
            let mut t0 = 0;
            while t0 < nt {
                t0 += crate::dispatch::token_group!(nt - t0, NT => {
                    let mut acts = [act(t0); NT];
                    for (i, x) in acts.iter_mut().enumerate() {
                        *x = act(t0 + i);
                    }
                    $group::<NT, _>(rows, acts, nb, $($extra,)? out.window(t0, NT, r0, present))
                }; 8, 4, 2, 1);
            }
            r0 += 4;
        }
    }};
}
pub(super) use drive;

/// A 32-element block's levels and scale ([`Block32`]), no min.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn unpack<W: Block32>(x: &W) -> Unpacked {
    Unpacked {
        q: x.levels(),
        d: f16_to_f32(x.d()),
        m: 0.0,
    }
}

/// A 32-element block's levels, scale and min ([`Block32Min`]).
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn unpack_min<W: Block32Min>(x: &W) -> Unpacked {
    Unpacked {
        q: x.levels(),
        d: f16_to_f32(x.d()),
        m: f16_to_f32(x.m()),
    }
}

/// Defines the safe `GemmTileFn` `$name` over `$group` for the kernel set that needs the target
/// features `$feat` (detected by `$has`): rows of `$w` (`$wt`), activations of `$a` (`$at`).
macro_rules! tile_fn {
    ($(#[$m:meta])* [$feat:literal, $has:path] $name:ident, $w:ty, $wt:expr, $a:ty, $at:expr, $elems:expr, $group:ident $(, $unpack:ident)?) => {
        $(#[$m])*
        pub(super) fn $name(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
            check_tile_args($wt, $at, n, &w, &a, &out);
            #[target_feature(enable = $feat)]
            fn imp(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
                $(let $unpack = |x: &$w| $unpack(x);)?
                drive!($w, $a, $elems, n, w, a, out, $group $(, $unpack)?);
            }
            debug_assert!($has(), "a {} tile ran on a CPU without it", $feat);
            // SAFETY: reachable only through the kernel table, which `install` fills with these
            // tiles only after detecting the features `imp` is compiled for.
            unsafe { imp(n, w, a, out) }
        }
    };
}
pub(super) use tile_fn;

tile_fn!(/// Q4_0 x Q8_0 tile (`sdot`).
    ["neon,dotprod", super::has_dotprod] gemm_tile_q4_0, BlockQ4_0, GgmlType::Q4_0, BlockQ8_0, GgmlType::Q8_0, QK, group, unpack);
tile_fn!(/// Q8_0 x Q8_0 tile (`sdot`).
    ["neon,dotprod", super::has_dotprod] gemm_tile_q8_0, BlockQ8_0, GgmlType::Q8_0, BlockQ8_0, GgmlType::Q8_0, QK, group, unpack);
tile_fn!(/// Q4_1 x Q8_1 tile (`sdot`).
    ["neon,dotprod", super::has_dotprod] gemm_tile_q4_1, BlockQ4_1, GgmlType::Q4_1, BlockQ8_1, GgmlType::Q8_1, QK, group, unpack_min);
tile_fn!(/// Q5_0 x Q8_0 tile (`sdot`).
    ["neon,dotprod", super::has_dotprod] gemm_tile_q5_0, BlockQ5_0, GgmlType::Q5_0, BlockQ8_0, GgmlType::Q8_0, QK, group, unpack);
tile_fn!(/// Q5_1 x Q8_1 tile (`sdot`).
    ["neon,dotprod", super::has_dotprod] gemm_tile_q5_1, BlockQ5_1, GgmlType::Q5_1, BlockQ8_1, GgmlType::Q8_1, QK, group, unpack_min);

/// A Q4_K-layout super-block: 8 sub-blocks of 32, 6-bit scales and mins, 4-bit levels (Q4_K),
/// plus a fifth bit per level (Q5_K).
pub(super) trait K4Block: Block {
    /// (scales, mins) as bytes 0..8 of two little-endian words, d, dmin.
    fn scales(&self) -> (u64, u64, f32, f32);
    /// The 128 level bytes: sub-block 2c in the low nibbles of bytes 32c..32c+32, 2c+1 in the high.
    fn qs(&self) -> &[u8; 128];
    /// Q5_K's fifth bits: bit s of byte l is that of element l of sub-block s. `None`: 4-bit levels.
    #[inline(always)]
    fn qh(&self) -> Option<&[u8; 32]> {
        None
    }
}

impl K4Block for BlockQ4_K {
    #[inline(always)]
    fn scales(&self) -> (u64, u64, f32, f32) {
        let (sc, mn) = scales_mins_k4(&self.scales);
        (sc, mn, self.d.to_f32(), self.dmin.to_f32())
    }
    #[inline(always)]
    fn qs(&self) -> &[u8; 128] {
        &self.qs
    }
}

impl K4Block for BlockQ5_K {
    #[inline(always)]
    fn scales(&self) -> (u64, u64, f32, f32) {
        let (sc, mn) = scales_mins_k4(&self.scales);
        (sc, mn, self.d.to_f32(), self.dmin.to_f32())
    }
    #[inline(always)]
    fn qs(&self) -> &[u8; 128] {
        &self.qs
    }
    #[inline(always)]
    fn qh(&self) -> Option<&[u8; 32]> {
        Some(&self.qh)
    }
}

/// The scales, mins, `d` and `dmin` of super-block `k` of 4 rows (zeros for padding rows).
pub(super) struct K4Header {
    /// `scb[r][s]`: row r's 6-bit scale of sub-block s.
    pub(super) scb: [[u8; 8]; 4],
    /// `mnb[r][s]`: row r's 6-bit min of sub-block s.
    pub(super) mnb: [[u8; 8]; 4],
    pub(super) d: [f32; 4],
    pub(super) dmin: [f32; 4],
}

/// [`K4Header`] of super-block `k` of `rows`.
#[inline(always)]
pub(super) fn k4_header<W: K4Block>(rows: &[Option<&[W]>; 4], k: usize) -> K4Header {
    let h = per_row(rows, (0, 0, 0.0, 0.0), |b| b[k].scales());
    K4Header {
        scb: h.map(|x| x.0.to_le_bytes()),
        mnb: h.map(|x| x.1.to_le_bytes()),
        d: h.map(|x| x.2),
        dmin: h.map(|x| x.3),
    }
}

/// The levels (0..15, Q5_K's 0..31) of sub-block `sb` (0..8) of a Q4_K-layout block as signed
/// bytes: elements 0..16 and 16..32.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn k4_levels<W: K4Block>(b: &W, sb: usize) -> [int8x16_t; 2] {
    let (qs, c) = (b.qs(), sb / 2);
    // SAFETY: `qs` is 128 bytes; the loads read 32c..32c+32, c < 4.
    let (q0, q1) = unsafe {
        (
            vld1q_u8(qs.as_ptr().add(32 * c)),
            vld1q_u8(qs.as_ptr().add(32 * c + 16)),
        )
    };
    let m4 = vdupq_n_u8(0x0F);
    let (mut l0, mut l1) = if sb % 2 == 0 {
        (vandq_u8(q0, m4), vandq_u8(q1, m4))
    } else {
        (vshrq_n_u8::<4>(q0), vshrq_n_u8::<4>(q1))
    };
    if let Some(qh) = b.qh() {
        // SAFETY: `qh` is 32 bytes; the loads read 0..16 and 16..32.
        let (h0, h1) = unsafe { (vld1q_u8(qh.as_ptr()), vld1q_u8(qh.as_ptr().add(16))) };
        // Bit sb of each byte (a negative `vshlq` count shifts right), moved to bit 4.
        let (down, one) = (vdupq_n_s8(-(sb as i8)), vdupq_n_u8(1));
        let bit = |h: uint8x16_t| vshlq_n_u8::<4>(vandq_u8(vshlq_u8(h, down), one));
        (l0, l1) = (vorrq_u8(l0, bit(h0)), vorrq_u8(l1, bit(h1)));
    }
    [vreinterpretq_s8_u8(l0), vreinterpretq_s8_u8(l1)]
}

/// Lane r = element `i` of `b[r]` (a row's scales or mins), as i32.
#[inline]
#[target_feature(enable = "neon")]
fn lanes<T: Copy + Into<i32>, const N: usize>(b: &[[T; N]; 4], i: usize) -> int32x4_t {
    let v: [i32; 4] = [
        b[0][i].into(),
        b[1][i].into(),
        b[2][i].into(),
        b[3][i].into(),
    ];
    // SAFETY: `v` is 4 readable i32.
    unsafe { vld1q_s32(v.as_ptr()) }
}

/// 4 rows x NT tokens of Q4_K . Q8_K over all super-blocks: per 32-element sub-block the same
/// transposed `sdot` scheme (levels 0..15 are valid signed bytes), the exact sub-block sums times
/// the rows' scales (`mla` by lane), the mins times the token's 32-element sums from its `bsums`.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn group_k4<const NT: usize, W: K4Block>(
    rows: [Option<&[W]>; 4],
    acts: [&[BlockQ8_K]; NT],
    nb: usize,
    out: RowsMut<f32>,
) {
    let mut acc = [vdupq_n_f32(0.0); NT];
    for k in 0..nb {
        let K4Header { scb, mnb, d, dmin } = k4_header(&rows, k);
        let mut isum = [vdupq_n_s32(0); NT];
        for sb in 0..8 {
            let v = per_row(&rows, [vdupq_n_s8(0); 2], |b| k4_levels(&b[k], sb));
            let (lo, hi) = (transpose4(v.map(|x| x[0])), transpose4(v.map(|x| x[1])));
            let sc = lanes(&scb, sb);
            for t in 0..NT {
                let q = &acts[t][k].qs[32 * sb..32 * sb + 32];
                // SAFETY: `q` is 32 bytes; the loads read 0..16 and 16..32.
                let (a0, a1) = unsafe { (vld1q_s8(q.as_ptr()), vld1q_s8(q.as_ptr().add(16))) };
                let (s0, s1) = block_sums(&lo, &hi, a0, a1);
                isum[t] = vmlaq_s32(isum[t], vaddq_s32(s0, s1), sc);
            }
        }
        // SAFETY: d and dmin are 4 readable f32.
        let (dv, dmv) = unsafe { (vld1q_f32(d.as_ptr()), vld1q_f32(dmin.as_ptr())) };
        for t in 0..NT {
            let y = &acts[t][k];
            let mut msum = vdupq_n_s32(0);
            for g in 0..8 {
                let b32 = y.bsums[2 * g] as i32 + y.bsums[2 * g + 1] as i32;
                msum = vmlaq_n_s32(msum, lanes(&mnb, g), b32);
            }
            acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(isum[t]), vmulq_n_f32(dv, y.d));
            acc[t] = vfmsq_f32(acc[t], vcvtq_f32_s32(msum), vmulq_n_f32(dmv, y.d));
        }
    }
    store_rows(&acc, out);
}

/// Signed levels `q - 32` of the 32-element chunk `c` (0..8) of a Q6_K block, as two halves
/// (elements 0..16 and 16..32: sub-blocks 2c and 2c + 1).
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn q6_levels(b: &BlockQ6_K, c: usize) -> [int8x16_t; 2] {
    let (n, k) = (c / 4, c % 4);
    let off = 64 * n + 32 * (k % 2);
    // Bits 2k, 2k + 1 of qh moved to bits 4, 5.
    let hi = |h: uint8x16_t| match k {
        0 => vshlq_n_u8::<4>(vandq_u8(h, vdupq_n_u8(0x03))),
        1 => vshlq_n_u8::<2>(vandq_u8(h, vdupq_n_u8(0x0C))),
        2 => vandq_u8(h, vdupq_n_u8(0x30)),
        _ => vshrq_n_u8::<2>(vandq_u8(h, vdupq_n_u8(0xC0))),
    };
    let lo = |l: uint8x16_t| {
        if k < 2 {
            vandq_u8(l, vdupq_n_u8(0x0F))
        } else {
            vshrq_n_u8::<4>(l)
        }
    };
    [0, 16].map(|h| {
        // SAFETY: ql[off + h..off + h + 16] and qh[32n + h..32n + h + 16] are in bounds (off + h
        // + 16 <= 128, 32n + h + 16 <= 64).
        let (l, q) = unsafe {
            (
                vld1q_u8(b.ql.as_ptr().add(off + h)),
                vld1q_u8(b.qh.as_ptr().add(32 * n + h)),
            )
        };
        vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo(l), hi(q))), vdupq_n_s8(32))
    })
}

/// 4 rows x NT tokens of a [`K16Block`] (Q6_K, Q3_K, Q2_K) . Q8_K over all super-blocks: the
/// signed levels need no offset term with `sdot`; each 16-element group's exact sum times its
/// row's scale by lane; with mins, the mins times the token's group sums (`bsums`).
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn group_k16<const NT: usize, W: K16Block>(
    rows: [Option<&[W]>; 4],
    acts: [&[BlockQ8_K]; NT],
    nb: usize,
    out: RowsMut<f32>,
) {
    let mut acc = [vdupq_n_f32(0.0); NT];
    for k in 0..nb {
        let K16Header { scb, mnb, d, dmin } = k16_header(&rows, k);
        let mut isum = [vdupq_n_s32(0); NT];
        for c in 0..8 {
            // SAFETY: this function is compiled with NEON.
            let v = per_row(&rows, [vdupq_n_s8(0); 2], |b| unsafe { b[k].levels(c) });
            let (lo, hi) = (transpose4(v.map(|x| x[0])), transpose4(v.map(|x| x[1])));
            let (s_lo, s_hi) = (lanes(&scb, 2 * c), lanes(&scb, 2 * c + 1));
            for t in 0..NT {
                let q = &acts[t][k].qs[32 * c..32 * c + 32];
                // SAFETY: `q` is 32 bytes; the loads read 0..16 and 16..32.
                let (a0, a1) = unsafe { (vld1q_s8(q.as_ptr()), vld1q_s8(q.as_ptr().add(16))) };
                let (s0, s1) = block_sums(&lo, &hi, a0, a1);
                isum[t] = vmlaq_s32(vmlaq_s32(isum[t], s0, s_lo), s1, s_hi);
            }
        }
        // SAFETY: d and dmin are 4 readable f32.
        let (dv, dmv) = unsafe { (vld1q_f32(d.as_ptr()), vld1q_f32(dmin.as_ptr())) };
        for t in 0..NT {
            let y = &acts[t][k];
            acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(isum[t]), vmulq_n_f32(dv, y.d));
            if W::HAS_MIN {
                let mut msum = vdupq_n_s32(0);
                for g in 0..16 {
                    msum = vmlaq_n_s32(msum, lanes(&mnb, g), y.bsums[g] as i32);
                }
                acc[t] = vfmsq_f32(acc[t], vcvtq_f32_s32(msum), vmulq_n_f32(dmv, y.d));
            }
        }
    }
    store_rows(&acc, out);
}

/// A k-quant of 16 groups of 16 elements per super-block (Q6_K, Q3_K, Q2_K) as the tiles read
/// it: element i of group g is `d * scale_g * q_i - dmin * min_g` with signed levels q
/// (Q6_K: -32..32, Q3_K: -4..4, Q2_K: 0..4).
pub(super) trait K16Block: Block {
    /// The format has per-group mins (Q2_K).
    const HAS_MIN: bool;
    /// The signed levels of elements 32c..32c + 32 (groups 2c and 2c + 1) as two halves, c < 8.
    ///
    /// # Safety
    /// The CPU must have NEON (every caller is compiled for it).
    unsafe fn levels(&self, c: usize) -> [int8x16_t; 2];
    /// (group scales, group mins (zeros without), d, dmin (0 without)).
    fn header(&self) -> ([i8; 16], [u8; 16], f32, f32);
}

impl K16Block for BlockQ6_K {
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn levels(&self, c: usize) -> [int8x16_t; 2] {
        // SAFETY: the caller guarantees NEON.
        unsafe { q6_levels(self, c) }
    }
    #[inline(always)]
    fn header(&self) -> ([i8; 16], [u8; 16], f32, f32) {
        (self.scales, [0; 16], self.d.to_f32(), 0.0)
    }
}

/// Super-block `k` of 4 rows: each row's 16 group scales and mins, its `d` and `dmin` (zeros for
/// padding).
pub(super) struct K16Header {
    pub(super) scb: [[i8; 16]; 4],
    pub(super) mnb: [[u8; 16]; 4],
    pub(super) d: [f32; 4],
    pub(super) dmin: [f32; 4],
}

/// Super-block `k` of the 4 rows' headers.
#[inline(always)]
pub(super) fn k16_header<W: K16Block>(rows: &[Option<&[W]>; 4], k: usize) -> K16Header {
    let h = per_row(rows, ([0; 16], [0; 16], 0.0, 0.0), |b| b[k].header());
    K16Header {
        scb: h.map(|x| x.0),
        mnb: h.map(|x| x.1),
        d: h.map(|x| x.2),
        dmin: h.map(|x| x.3),
    }
}

tile_fn!(/// Q4_K x Q8_K tile (`sdot`).
    ["neon,dotprod", super::has_dotprod] gemm_tile_q4_k, BlockQ4_K, GgmlType::Q4_K, BlockQ8_K, GgmlType::Q8_K, QK_K, group_k4);
tile_fn!(/// Q5_K x Q8_K tile (`sdot`).
    ["neon,dotprod", super::has_dotprod] gemm_tile_q5_k, BlockQ5_K, GgmlType::Q5_K, BlockQ8_K, GgmlType::Q8_K, QK_K, group_k4);
tile_fn!(/// Q6_K x Q8_K tile (`sdot`).
    ["neon,dotprod", super::has_dotprod] gemm_tile_q6_k, BlockQ6_K, GgmlType::Q6_K, BlockQ8_K, GgmlType::Q8_K, QK_K, group_k16);
tile_fn!(/// Q3_K x Q8_K tile (`sdot`).
    ["neon,dotprod", super::has_dotprod] gemm_tile_q3_k, BlockQ3_K, GgmlType::Q3_K, BlockQ8_K, GgmlType::Q8_K, QK_K, group_k16);
tile_fn!(/// Q2_K x Q8_K tile (`sdot`).
    ["neon,dotprod", super::has_dotprod] gemm_tile_q2_k, BlockQ2_K, GgmlType::Q2_K, BlockQ8_K, GgmlType::Q8_K, QK_K, group_k16);

#[cfg(test)]
mod tests {
    //! The `sdot` prefill tiles against the scalar `vec_dot` per (row, token).

    use crate::aarch64::has_dotprod;
    use crate::aarch64::test_util::*;
    use crate::dispatch::{kernels, scalar_kernels};
    use crate::types::GgmlType as T;
    use crate::views::{Rows, RowsMut};

    /// Runs `ty`'s installed tile on `nr` rows `w` x `nt` tokens `a` (n elements each) with an output
    /// stride wider than the tile, and checks every (row, token) against the scalar `vec_dot` and that
    /// nothing was written past the rows.
    fn check_tile(ty: T, n: usize, w: &[u8], nr: usize, a: &[u8], nt: usize) {
        let (wrb, arb) = (w.len() / nr, a.len() / nt);
        let stride = nr + 2;
        let mut out = vec![f32::NAN; nt * stride];
        // This file's tile (with i8mm the table holds the `smmla` one, tested in `mmla.rs`).
        let tile: crate::dispatch::GemmTileFn = match ty {
            T::Q4_0 => super::gemm_tile_q4_0,
            T::Q4_1 => super::gemm_tile_q4_1,
            T::Q5_0 => super::gemm_tile_q5_0,
            T::Q5_1 => super::gemm_tile_q5_1,
            T::Q8_0 => super::gemm_tile_q8_0,
            T::Q4_K => super::gemm_tile_q4_k,
            T::Q5_K => super::gemm_tile_q5_k,
            T::Q6_K => super::gemm_tile_q6_k,
            T::Q3_K => super::gemm_tile_q3_k,
            T::Q2_K => super::gemm_tile_q2_k,
            _ => unreachable!("{ty} has no sdot tile"),
        };
        tile(
            n,
            Rows::new(w, nr, wrb, wrb),
            Rows::new(a, nt, arb, arb),
            RowsMut::new(&mut out, nt, nr, stride),
        );
        let dot = scalar_kernels().get(ty).unwrap().vec_dot.unwrap();
        for t in 0..nt {
            let pad = &out[t * stride + nr..(t + 1) * stride];
            assert!(
                pad.iter().all(|v| v.is_nan()),
                "{ty}: stray write, token {t}"
            );
            for r in 0..nr {
                let want = dot(n, &w[r * wrb..(r + 1) * wrb], &a[t * arb..(t + 1) * arb]);
                let got = out[t * stride + r];
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{ty} row {r} token {t}: {got} vs scalar {want}"
                );
            }
        }
    }

    /// The `sdot` prefill tiles (installed only with dotprod) of Q4_0 and Q8_0: 9 rows (two groups of
    /// 4 and a partial one) x 13 tokens (groups of 8, 4, 1), 3 blocks, weight and activation bytes
    /// including -128 and 127.
    #[test]
    fn sdot_tiles_match_scalar() {
        let installed = [
            T::Q4_0,
            T::Q4_1,
            T::Q5_0,
            T::Q5_1,
            T::Q8_0,
            T::Q4_K,
            T::Q5_K,
            T::Q6_K,
        ]
        .map(|ty| kernels().get(ty).unwrap().gemm_tile.is_some());
        assert_eq!(
            installed,
            [has_dotprod(); 8],
            "tiles installed exactly when dotprod is present"
        );
        if !has_dotprod() {
            eprintln!("skipped: no dotprod");
            return;
        }
        let mut rng = Rng(11);
        let (nr, nt, n) = (9usize, 13usize, 96usize);
        for ty in [T::Q4_0, T::Q8_0] {
            let w = random_blocks(
                &mut rng,
                nr * ty.row_bytes(n as u64).unwrap() as usize,
                ty.block_bytes(),
            );
            let arb = T::Q8_0.row_bytes(n as u64).unwrap() as usize;
            let a = random_blocks(&mut rng, nt * arb, T::Q8_0.block_bytes());
            check_tile(ty, n, &w, nr, &a, nt);
        }
    }

    /// The Q4_K, Q5_K and Q6_K `sdot` tiles: 6 rows x 11 tokens x 2 super-blocks, weights and activations
    /// quantized from random floats by the scalar quantizers.
    #[test]
    fn sdot_tile_k_matches_scalar() {
        if !has_dotprod() {
            eprintln!("skipped: no dotprod");
            return;
        }
        let mut rng = Rng(5);
        let (nr, nt, n) = (6usize, 11usize, 512usize);
        for ty in [T::Q2_K, T::Q3_K, T::Q4_K, T::Q5_K, T::Q6_K] {
            let w = quantized(ty, n, nr, 1.0, &mut rng);
            let a = quantized(T::Q8_K, n, nt, 3.0, &mut rng);
            check_tile(ty, n, &w, nr, &a, nt);
        }
    }

    /// The Q4_1, Q5_0 and Q5_1 `sdot` tiles (Q8_1 activations carry the sums the mins meet): 9 rows
    /// x 13 tokens x 3 blocks, quantized from random floats (an offset, so the mins matter).
    #[test]
    fn sdot_tile_q4_1_q5_matches_scalar() {
        if !has_dotprod() {
            eprintln!("skipped: no dotprod");
            return;
        }
        let mut rng = Rng(17);
        let (nr, nt, n) = (9usize, 13usize, 96usize);
        for ty in [T::Q4_1, T::Q5_0, T::Q5_1] {
            let partner = scalar_kernels().get(ty).unwrap().vec_dot_type;
            let mut w = quantized(ty, n, nr, 1.0, &mut rng);
            if ty != T::Q5_0 {
                // Shift the rows' values: quantize x + 0.7 so that every block has a non-zero min.
                let x: Vec<f32> = (0..nr * n).map(|_| rng.unit() + 0.7).collect();
                let rb = ty.row_bytes(n as u64).unwrap() as usize;
                let q = scalar_kernels().get(ty).unwrap().quantize_row_ref.unwrap();
                for (x, o) in x.chunks_exact(n).zip(w.chunks_exact_mut(rb)) {
                    q(x, o);
                }
            }
            let a = quantized(partner, n, nt, 3.0, &mut rng);
            check_tile(ty, n, &w, nr, &a, nt);
        }
    }
}

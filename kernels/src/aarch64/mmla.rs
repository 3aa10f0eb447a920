//! Prefill tiles (`GemmTileFn`) with `smmla` (the i8mm extension: Apple M2 and later, Graviton 3,
//! Cortex-A710/X2 and later) for the formats `tile.rs` covers with `sdot`: Q4_0, Q5_0 and Q8_0 x
//! Q8_0, Q4_1 and Q5_1 x Q8_1, Q2_K .. Q6_K x Q8_K. Installed only when the CPU has i8mm and
//! dotprod; they then replace the `sdot` tiles.
//!
//! `smmla acc, w, a` treats `w` and `a` as 2x8 matrices of signed bytes (two rows of 8) and adds
//! `w . a^T`, a 2x2 block of exact sums, to `acc`'s lanes `[w0.a0, w0.a1, w1.a0, w1.a1]`: 32
//! multiply-adds per instruction where `sdot` does 16. For a pair of weight rows and a pair of
//! tokens, a 32-element block is 4 such 8-byte chunks (the two rows' bytes 8c..8c+8 side by side,
//! `vzip1q_s64`/`vzip2q_s64` of the unpacked levels, and the same for the two tokens), so 4 `smmla`
//! give the 2x2 exact block sums. A group is 4 rows (two pairs) x NT tokens (NT/2 pairs; an odd
//! last token is paired with itself).
//!
//! The integer sums are exact and every output element then takes the same float steps, in the
//! same order, as in the `sdot` tiles (`acc = fma(isum, d_w * d_a, acc)`, the min term, the k-quant
//! scales in i32): the two tile sets give bit-identical results (tested below), so decode, prefill
//! and the other CPUs' tiles stay consistent.

use core::arch::aarch64::*;
use std::arch::asm;

use super::simd::f16_to_f32;
use super::tile::{
    drive, k16_header, k4_header, k4_levels, per_row, tile_fn, unpack, unpack_min, K16Block,
    K16Header, K4Block, K4Header, Unpacked,
};
use crate::blocks::{
    cast_blocks, ActBlock32, Block, BlockQ2_K, BlockQ3_K, BlockQ4_0, BlockQ4_1, BlockQ4_K,
    BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0, BlockQ8_1, BlockQ8_K, QK, QK_K,
};
use crate::matmul::check_tile_args;
use crate::types::GgmlType;
use crate::views::{Rows, RowsMut};

/// `acc + w . a^T` for `w`, `a` = two rows of 8 signed bytes each: lanes `[w0.a0, w0.a1, w1.a0,
/// w1.a1]`. The intrinsic (`vmmlaq_s32`) is unstable, so this is inline assembly.
#[inline]
#[target_feature(enable = "neon,i8mm")]
fn smmla(mut acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
    // SAFETY: this function is only compiled with `i8mm` enabled and only reachable through the
    // kernel table, which holds these tiles only when the CPU has i8mm; `smmla` reads and writes
    // only the three named vector registers: no memory, no stack, no flags.
    unsafe {
        asm!(
            "smmla {acc:v}.4s, {w:v}.16b, {a:v}.16b",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            a = in(vreg) a,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// The 4 chunks of 8 bytes of a 32-element block for a pair `x`, `y` (each as elements 0..16,
/// 16..32): chunk c = x's bytes 8c..8c+8, then y's.
#[inline]
#[target_feature(enable = "neon")]
fn pair_chunks(x: [int8x16_t; 2], y: [int8x16_t; 2]) -> [int8x16_t; 4] {
    let (x0, x1) = (vreinterpretq_s64_s8(x[0]), vreinterpretq_s64_s8(x[1]));
    let (y0, y1) = (vreinterpretq_s64_s8(y[0]), vreinterpretq_s64_s8(y[1]));
    [
        vreinterpretq_s8_s64(vzip1q_s64(x0, y0)),
        vreinterpretq_s8_s64(vzip2q_s64(x0, y0)),
        vreinterpretq_s8_s64(vzip1q_s64(x1, y1)),
        vreinterpretq_s8_s64(vzip2q_s64(x1, y1)),
    ]
}

/// A row pair's chunks `w` against a token pair's `a`: the exact sums of elements 0..16 and
/// 16..32, each with lanes `[r0.t0, r0.t1, r1.t0, r1.t1]` (two independent `smmla` chains).
#[inline]
#[target_feature(enable = "neon,i8mm")]
fn pair_sums(w: &[int8x16_t; 4], a: &[int8x16_t; 4]) -> (int32x4_t, int32x4_t) {
    let z = vdupq_n_s32(0);
    let lo = smmla(z, w[0], a[0]);
    let hi = smmla(z, w[2], a[2]);
    (smmla(lo, w[1], a[1]), smmla(hi, w[3], a[3]))
}

/// 32 signed bytes as two halves.
#[inline]
#[target_feature(enable = "neon")]
fn load32(q: &[i8]) -> [int8x16_t; 2] {
    assert!(q.len() >= 32);
    // SAFETY: `q` has at least 32 bytes (checked); the loads read 0..16 and 16..32.
    unsafe { [vld1q_s8(q.as_ptr()), vld1q_s8(q.as_ptr().add(16))] }
}

/// Lanes `[r0, r0, r1, r1]`: a row pair's per-row values in the `smmla` result layout.
#[inline]
#[target_feature(enable = "neon")]
fn row_lanes(r0: f32, r1: f32) -> float32x4_t {
    let v = [r0, r0, r1, r1];
    // SAFETY: `v` is 4 readable f32.
    unsafe { vld1q_f32(v.as_ptr()) }
}

/// Lanes `[t0, t1, t0, t1]`: a token pair's values in the `smmla` result layout.
#[inline]
#[target_feature(enable = "neon")]
fn token_lanes(t0: f32, t1: f32) -> float32x4_t {
    let v = [t0, t1, t0, t1];
    // SAFETY: `v` is 4 readable f32.
    unsafe { vld1q_f32(v.as_ptr()) }
}

/// [`row_lanes`] of i32.
#[inline]
#[target_feature(enable = "neon")]
fn row_lanes_i32(r0: i32, r1: i32) -> int32x4_t {
    let v = [r0, r0, r1, r1];
    // SAFETY: `v` is 4 readable i32.
    unsafe { vld1q_s32(v.as_ptr()) }
}

/// [`token_lanes`] of i32.
#[inline]
#[target_feature(enable = "neon")]
fn token_lanes_i32(t0: i32, t1: i32) -> int32x4_t {
    let v = [t0, t1, t0, t1];
    // SAFETY: `v` is 4 readable i32.
    unsafe { vld1q_s32(v.as_ptr()) }
}

/// The tokens of pair `p` of NT: `2p` and `2p + 1`, or `2p` twice for an odd last token.
#[inline(always)]
fn token_pair<const NT: usize>(p: usize) -> (usize, usize) {
    (2 * p, (2 * p + 1).min(NT - 1))
}

/// `out.row(t)[r]` from the pair accumulators: `acc[p][q]` has lanes `[r(2q).t(2p),
/// r(2q).t(2p+1), r(2q+1).t(2p), r(2q+1).t(2p+1)]`; `uzp1`/`uzp2` of the two row pairs give the
/// rows of token 2p and 2p+1. Writes the rows present (`out.row_len()` of them).
#[inline]
#[target_feature(enable = "neon")]
fn store_pairs<const NT: usize>(acc: &[[float32x4_t; 2]; NT], mut out: RowsMut<f32>) {
    let present = out.row_len();
    for (p, a) in acc.iter().enumerate().take(NT.div_ceil(2)) {
        let rows = [vuzp1q_f32(a[0], a[1]), vuzp2q_f32(a[0], a[1])];
        for (i, r) in rows.iter().enumerate() {
            let t = 2 * p + i;
            if t < NT {
                let mut v = [0.0f32; 4];
                // SAFETY: `v` is 4 writable floats.
                unsafe { vst1q_f32(v.as_mut_ptr(), *r) };
                out.row_mut(t).copy_from_slice(&v[..present]);
            }
        }
    }
}

/// 4 rows (`rows[r]`, `None` = padding) x NT tokens (`acts[t]`), all blocks; writes
/// `out.row(t)[r]` for the rows present. Per block and token, as ggml's `vec_dot` (and as the
/// `sdot` tile's `group`): `d_w * d_a * isum`, plus `m_w * s_a` for the formats with a min.
#[inline]
#[target_feature(enable = "neon,i8mm")]
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
    let mut acc = [[vdupq_n_f32(0.0); 2]; NT];
    for k in 0..nb {
        let u = per_row(&rows, zero, |b| unpack(&b[k]));
        let w = [pair_chunks(u[0].q, u[1].q), pair_chunks(u[2].q, u[3].q)];
        let dw = [row_lanes(u[0].d, u[1].d), row_lanes(u[2].d, u[3].d)];
        let mw = [row_lanes(u[0].m, u[1].m), row_lanes(u[2].m, u[3].m)];
        for (p, acc) in acc.iter_mut().enumerate().take(NT.div_ceil(2)) {
            let (t0, t1) = token_pair::<NT>(p);
            let (y0, y1) = (&acts[t0][k], &acts[t1][k]);
            let a = pair_chunks(load32(y0.qs()), load32(y1.qs()));
            let f = |h: half::f16| f16_to_f32(h.to_bits());
            let da = token_lanes(f(y0.d()), f(y1.d()));
            let sa = y0.s().zip(y1.s()).map(|(s0, s1)| token_lanes(f(s0), f(s1)));
            for q in 0..2 {
                let (lo, hi) = pair_sums(&w[q], &a);
                let s = vaddq_s32(lo, hi);
                acc[q] = vfmaq_f32(acc[q], vcvtq_f32_s32(s), vmulq_f32(dw[q], da));
                if let Some(sa) = sa {
                    acc[q] = vfmaq_f32(acc[q], mw[q], sa);
                }
            }
        }
    }
    store_pairs(&acc, out);
}

tile_fn!(/// Q4_0 x Q8_0 tile (`smmla`).
    ["neon,dotprod,i8mm", super::has_i8mm] gemm_tile_q4_0, BlockQ4_0, GgmlType::Q4_0, BlockQ8_0, GgmlType::Q8_0, QK, group, unpack);
tile_fn!(/// Q8_0 x Q8_0 tile (`smmla`).
    ["neon,dotprod,i8mm", super::has_i8mm] gemm_tile_q8_0, BlockQ8_0, GgmlType::Q8_0, BlockQ8_0, GgmlType::Q8_0, QK, group, unpack);
tile_fn!(/// Q4_1 x Q8_1 tile (`smmla`).
    ["neon,dotprod,i8mm", super::has_i8mm] gemm_tile_q4_1, BlockQ4_1, GgmlType::Q4_1, BlockQ8_1, GgmlType::Q8_1, QK, group, unpack_min);
tile_fn!(/// Q5_0 x Q8_0 tile (`smmla`).
    ["neon,dotprod,i8mm", super::has_i8mm] gemm_tile_q5_0, BlockQ5_0, GgmlType::Q5_0, BlockQ8_0, GgmlType::Q8_0, QK, group, unpack);
tile_fn!(/// Q5_1 x Q8_1 tile (`smmla`).
    ["neon,dotprod,i8mm", super::has_i8mm] gemm_tile_q5_1, BlockQ5_1, GgmlType::Q5_1, BlockQ8_1, GgmlType::Q8_1, QK, group, unpack_min);

/// 4 rows x NT tokens of Q4_K . Q8_K over all super-blocks, as the `sdot` tile's `group_k4`: per
/// 32-element sub-block the exact sums (`smmla`, levels 0..15 are valid signed bytes) times the
/// rows' scales in i32 lanes, the mins times the tokens' 32-element sums from their `bsums`.
#[inline]
#[target_feature(enable = "neon,i8mm")]
fn group_k4<const NT: usize, W: K4Block>(
    rows: [Option<&[W]>; 4],
    acts: [&[BlockQ8_K]; NT],
    nb: usize,
    out: RowsMut<f32>,
) {
    let np = NT.div_ceil(2);
    let mut acc = [[vdupq_n_f32(0.0); 2]; NT];
    for k in 0..nb {
        let K4Header { scb, mnb, d, dmin } = k4_header(&rows, k);
        let mut isum = [[vdupq_n_s32(0); 2]; NT];
        for sb in 0..8 {
            let v = per_row(&rows, [vdupq_n_s8(0); 2], |b| k4_levels(&b[k], sb));
            let w = [pair_chunks(v[0], v[1]), pair_chunks(v[2], v[3])];
            let sc = [
                row_lanes_i32(scb[0][sb].into(), scb[1][sb].into()),
                row_lanes_i32(scb[2][sb].into(), scb[3][sb].into()),
            ];
            for (p, isum) in isum.iter_mut().enumerate().take(np) {
                let (t0, t1) = token_pair::<NT>(p);
                let q = |t: usize| load32(&acts[t][k].qs[32 * sb..32 * sb + 32]);
                let a = pair_chunks(q(t0), q(t1));
                for h in 0..2 {
                    let (lo, hi) = pair_sums(&w[h], &a);
                    isum[h] = vmlaq_s32(isum[h], vaddq_s32(lo, hi), sc[h]);
                }
            }
        }
        let dv = [row_lanes(d[0], d[1]), row_lanes(d[2], d[3])];
        let dmv = [row_lanes(dmin[0], dmin[1]), row_lanes(dmin[2], dmin[3])];
        for p in 0..np {
            let (t0, t1) = token_pair::<NT>(p);
            let (y0, y1) = (&acts[t0][k], &acts[t1][k]);
            let yd = token_lanes(y0.d, y1.d);
            let b32 = |y: &BlockQ8_K, g: usize| y.bsums[2 * g] as i32 + y.bsums[2 * g + 1] as i32;
            for h in 0..2 {
                let mut msum = vdupq_n_s32(0);
                for g in 0..8 {
                    let mn = row_lanes_i32(mnb[2 * h][g].into(), mnb[2 * h + 1][g].into());
                    msum = vmlaq_s32(msum, mn, token_lanes_i32(b32(y0, g), b32(y1, g)));
                }
                let a = vfmaq_f32(acc[p][h], vcvtq_f32_s32(isum[p][h]), vmulq_f32(dv[h], yd));
                acc[p][h] = vfmsq_f32(a, vcvtq_f32_s32(msum), vmulq_f32(dmv[h], yd));
            }
        }
    }
    store_pairs(&acc, out);
}

/// 4 rows x NT tokens of a [`K16Block`] (Q6_K, Q3_K, Q2_K) . Q8_K over all super-blocks, as the
/// `sdot` tile's `group_k16`: the signed levels, each 16-element group's exact sum (chunks 0-1
/// and 2-3 of a 32-element chunk) times its row's scale in i32 lanes, the mins times the tokens'
/// group sums.
#[inline]
#[target_feature(enable = "neon,i8mm")]
fn group_k16<const NT: usize, W: K16Block>(
    rows: [Option<&[W]>; 4],
    acts: [&[BlockQ8_K]; NT],
    nb: usize,
    out: RowsMut<f32>,
) {
    let np = NT.div_ceil(2);
    let mut acc = [[vdupq_n_f32(0.0); 2]; NT];
    for k in 0..nb {
        let K16Header { scb, mnb, d, dmin } = k16_header(&rows, k);
        let mut isum = [[vdupq_n_s32(0); 2]; NT];
        for c in 0..8 {
            // SAFETY: this function is compiled with NEON.
            let v = per_row(&rows, [vdupq_n_s8(0); 2], |b| unsafe { b[k].levels(c) });
            let w = [pair_chunks(v[0], v[1]), pair_chunks(v[2], v[3])];
            let s = |r0: usize, j: usize| row_lanes_i32(scb[r0][j].into(), scb[r0 + 1][j].into());
            let s_lo = [s(0, 2 * c), s(2, 2 * c)];
            let s_hi = [s(0, 2 * c + 1), s(2, 2 * c + 1)];
            for (p, isum) in isum.iter_mut().enumerate().take(np) {
                let (t0, t1) = token_pair::<NT>(p);
                let q = |t: usize| load32(&acts[t][k].qs[32 * c..32 * c + 32]);
                let a = pair_chunks(q(t0), q(t1));
                for h in 0..2 {
                    let (lo, hi) = pair_sums(&w[h], &a);
                    isum[h] = vmlaq_s32(vmlaq_s32(isum[h], lo, s_lo[h]), hi, s_hi[h]);
                }
            }
        }
        let dv = [row_lanes(d[0], d[1]), row_lanes(d[2], d[3])];
        let dmv = [row_lanes(dmin[0], dmin[1]), row_lanes(dmin[2], dmin[3])];
        for p in 0..np {
            let (t0, t1) = token_pair::<NT>(p);
            let (y0, y1) = (&acts[t0][k], &acts[t1][k]);
            let yd = token_lanes(y0.d, y1.d);
            for h in 0..2 {
                acc[p][h] = vfmaq_f32(acc[p][h], vcvtq_f32_s32(isum[p][h]), vmulq_f32(dv[h], yd));
                if W::HAS_MIN {
                    let mut msum = vdupq_n_s32(0);
                    for g in 0..16 {
                        let mn = row_lanes_i32(mnb[2 * h][g].into(), mnb[2 * h + 1][g].into());
                        let bs = token_lanes_i32(y0.bsums[g] as i32, y1.bsums[g] as i32);
                        msum = vmlaq_s32(msum, mn, bs);
                    }
                    acc[p][h] = vfmsq_f32(acc[p][h], vcvtq_f32_s32(msum), vmulq_f32(dmv[h], yd));
                }
            }
        }
    }
    store_pairs(&acc, out);
}

tile_fn!(/// Q4_K x Q8_K tile (`smmla`).
    ["neon,dotprod,i8mm", super::has_i8mm] gemm_tile_q4_k, BlockQ4_K, GgmlType::Q4_K, BlockQ8_K, GgmlType::Q8_K, QK_K, group_k4);
tile_fn!(/// Q5_K x Q8_K tile (`smmla`).
    ["neon,dotprod,i8mm", super::has_i8mm] gemm_tile_q5_k, BlockQ5_K, GgmlType::Q5_K, BlockQ8_K, GgmlType::Q8_K, QK_K, group_k4);
tile_fn!(/// Q6_K x Q8_K tile (`smmla`).
    ["neon,dotprod,i8mm", super::has_i8mm] gemm_tile_q6_k, BlockQ6_K, GgmlType::Q6_K, BlockQ8_K, GgmlType::Q8_K, QK_K, group_k16);
tile_fn!(/// Q3_K x Q8_K tile (`smmla`).
    ["neon,dotprod,i8mm", super::has_i8mm] gemm_tile_q3_k, BlockQ3_K, GgmlType::Q3_K, BlockQ8_K, GgmlType::Q8_K, QK_K, group_k16);
tile_fn!(/// Q2_K x Q8_K tile (`smmla`).
    ["neon,dotprod,i8mm", super::has_i8mm] gemm_tile_q2_k, BlockQ2_K, GgmlType::Q2_K, BlockQ8_K, GgmlType::Q8_K, QK_K, group_k16);

#[cfg(test)]
mod tests {
    //! The `smmla` tiles against the `sdot` ones, bit for bit (the scalar oracle checks both in
    //! `tests/props.rs`).

    use super::super::{has_i8mm, tile};
    use crate::aarch64::test_util::*;
    use crate::dispatch::{kernels, scalar_kernels, GemmTileFn};
    use crate::types::GgmlType as T;
    use crate::views::{Rows, RowsMut};

    /// Runs `tile` on `nr` rows x `nt` tokens (output stride wider than the tile, NaN-filled).
    fn run(tile: GemmTileFn, n: usize, w: &[u8], nr: usize, a: &[u8], nt: usize) -> Vec<f32> {
        let (wrb, arb) = (w.len() / nr, a.len() / nt);
        let stride = nr + 2;
        let mut out = vec![f32::NAN; nt * stride];
        tile(
            n,
            Rows::new(w, nr, wrb, wrb),
            Rows::new(a, nt, arb, arb),
            RowsMut::new(&mut out, nt, nr, stride),
        );
        out
    }

    /// Every format: 9 rows (two groups of 4 and one row) x 1..=13 tokens (every group size and
    /// odd tails), weights quantized from offset random floats (non-zero mins), activations from
    /// random floats; the `smmla` and `sdot` tiles agree bit for bit, stride padding included.
    #[test]
    fn smmla_tiles_equal_sdot_tiles() {
        if !has_i8mm() {
            eprintln!("skipped: no i8mm");
            return;
        }
        let tiles: [(T, GemmTileFn, GemmTileFn, usize); 10] = [
            (T::Q4_0, super::gemm_tile_q4_0, tile::gemm_tile_q4_0, 96),
            (T::Q4_1, super::gemm_tile_q4_1, tile::gemm_tile_q4_1, 96),
            (T::Q5_0, super::gemm_tile_q5_0, tile::gemm_tile_q5_0, 96),
            (T::Q5_1, super::gemm_tile_q5_1, tile::gemm_tile_q5_1, 96),
            (T::Q8_0, super::gemm_tile_q8_0, tile::gemm_tile_q8_0, 96),
            (T::Q4_K, super::gemm_tile_q4_k, tile::gemm_tile_q4_k, 512),
            (T::Q5_K, super::gemm_tile_q5_k, tile::gemm_tile_q5_k, 512),
            (T::Q6_K, super::gemm_tile_q6_k, tile::gemm_tile_q6_k, 512),
            (T::Q3_K, super::gemm_tile_q3_k, tile::gemm_tile_q3_k, 512),
            (T::Q2_K, super::gemm_tile_q2_k, tile::gemm_tile_q2_k, 512),
        ];
        let mut rng = Rng(23);
        let nr = 9usize;
        for (ty, mm, sdot, n) in tiles {
            let installed = kernels().get(ty).unwrap().gemm_tile.unwrap();
            assert!(
                std::ptr::fn_addr_eq(installed, mm),
                "{ty}: the smmla tile is not installed"
            );
            let rb = ty.row_bytes(n as u64).unwrap() as usize;
            let x: Vec<f32> = (0..nr * n).map(|_| rng.unit() + 0.7).collect();
            let q = scalar_kernels().get(ty).unwrap().quantize_row_ref.unwrap();
            let mut w = vec![0u8; nr * rb];
            for (x, o) in x.chunks_exact(n).zip(w.chunks_exact_mut(rb)) {
                q(x, o);
            }
            let partner = scalar_kernels().get(ty).unwrap().vec_dot_type;
            for nt in 1..=13 {
                let a = quantized(partner, n, nt, 3.0, &mut rng);
                let (got, want) = (run(mm, n, &w, nr, &a, nt), run(sdot, n, &w, nr, &a, nt));
                for (i, (g, s)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        g.to_bits() == s.to_bits(),
                        "{ty} nt={nt} element {i}: smmla {g} vs sdot {s}"
                    );
                }
            }
        }
        // Raw random bytes with an eighth each -128 and 127, on both sides (Q4_0, Q8_0).
        for (ty, mm, sdot) in [
            (
                T::Q4_0,
                super::gemm_tile_q4_0 as GemmTileFn,
                tile::gemm_tile_q4_0 as GemmTileFn,
            ),
            (T::Q8_0, super::gemm_tile_q8_0, tile::gemm_tile_q8_0),
        ] {
            let n = 96usize;
            let wrb = ty.row_bytes(n as u64).unwrap() as usize;
            let w = random_blocks(&mut rng, nr * wrb, ty.block_bytes());
            let nt = 11;
            let arb = T::Q8_0.row_bytes(n as u64).unwrap() as usize;
            let a = random_blocks(&mut rng, nt * arb, T::Q8_0.block_bytes());
            let (got, want) = (run(mm, n, &w, nr, &a, nt), run(sdot, n, &w, nr, &a, nt));
            let same = got
                .iter()
                .zip(&want)
                .all(|(g, s)| g.to_bits() == s.to_bits());
            assert!(same, "{ty} raw bytes: smmla {got:?} vs sdot {want:?}");
        }
    }
}

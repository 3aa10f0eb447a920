//! The machinery of the decode mat-vecs (`GemvFn`: several weight rows x one token), whose
//! per-format bodies live in the format files (`q4_0.rs`, `q4_k.rs`, ...). Each lays the activation
//! row out once per call in the order its weight levels come out of the loads:
//! - AVX-512 VNNI: Q4_0, Q5_0 (x Q8_0) and Q4_1 (x Q8_1) four blocks per 512-bit step (`quads`);
//!   Q8_0 x Q8_0 two blocks per step on 256-bit registers; Q4_K and Q6_K x Q8_K with `vpdpbusd`,
//!   `packssdw` and one `vpdpwssd` per register pair, Q5_K by Q4_K's body with the fifth bits, Q3_K
//!   and Q2_K the same way as Q6_K (`k16`).
//! - AVX2 alone: Q4_0, Q5_0, Q4_1 and Q5_1 two blocks per register (`pairs`), Q4_K x Q8_K, Q8_0 x
//!   Q8_0 (both sides widened to i16: exact for every byte), Q6_K x Q8_K (the one-row kernel's
//!   arithmetic), Q5_K (Q4_K's body with the fifth bits) and Q3_K, Q2_K x Q8_K (`k16`, whose
//!   one-row `vec_dot` is the mat-vec's bits).
//!
//! `vpdpbusd` multiplies unsigned by signed bytes, so the weights are used as unsigned levels
//! (Q4_0: the nibbles 0..15; Q8_0: `w ^ 0x80 = w + 128`) and the offset times the activation sum
//! (`-8 * sum(a)` or `-128 * sum(a)` per block, per lane) must come off each block's sum. The one-row
//! `vec_dot` kernels spend a second `vpdpbusd` (or `maddubs`) per block and row on it. Here it is
//! computed once per call for every activation block, then seeds the accumulator of that block's
//! `vpdpbusd` in every row: per row and block, one `vpdpbusd`, one conversion and one FMA remain on
//! the multiply pipes. Rows are processed one after another, so the weights stream from memory in
//! order (interleaved rows make several short streams, which defeat the hardware prefetcher).
//!
//! The Q4_0, Q4_1, Q5_0 and Q6_K kernels' software prefetch is chosen per CPU vendor
//! (`prefetch::set_prefetch_plan`): none on AMD (prefetches take fill buffers the hardware
//! prefetcher's stream would use), 2 KiB ahead on Intel (the hardware prefetcher alone falls short).
//! Measurements: docs/perf.md.
//!
//! Each row's arithmetic is the same whatever rows share a call, so results do not depend on how a
//! matrix is split across threads.
//!
//! The multi-token mat-vecs (`GemvMultiFn`, continuous batching: up to four sequences' next tokens
//! in one pass over the weights) are the same bodies, generic over the token count `NT`: per step
//! the weight levels and scales are made once, then each token's activation layout goes through
//! exactly the instructions the one-token body runs (`NT = 1` *is* the `GemvFn` body), into its
//! own accumulators. So a token's outputs are the same bits whatever else shares the call, and a
//! sequence served with others gets what it gets alone. Every x86 `gemv` has its multi-token twin.
//! On AVX-512 VNNI, Q4_1 and Q8_0 have "wide" multi-token bodies instead, which do per lane
//! exactly what the one-token body does in that lane but lay the work out so that less of it is
//! per token (Q8_0: two blocks per 512-bit register where the one-token body, faster alone on
//! 256-bit registers, takes two registers and two permutes; Q4_1: the scales pre-spread, the
//! offset terms of all tokens in one register). A last partial quad of 4-bit blocks is padded
//! (`quads::quad_blocks`), not left to a one-row kernel.

use std::arch::x86_64::*;

use crate::blocks::{cast_blocks, Block};
use crate::dispatch::{VecDotFn, GEMV_MULTI_MAX};
use crate::views::{Rows, RowsMut};

pub(super) mod k16;
pub(super) mod pairs;
pub(super) mod quads;

/// Four f16 scale bit patterns packed into one u64 in general-purpose registers (`movzx`, `shl`,
/// `or`), then moved to a vector once. Without the empty `asm!` barrier LLVM may build the value
/// with `vpinsrw` chains instead, which compete with the mat-vec loops' permutes for port 5 and
/// cost a fifth of the Q4_0 decode on some code layouts (docs/perf.md, "Code placement").
#[inline(always)]
pub(super) fn pack_scales(d: [u16; 4]) -> i64 {
    let mut bits = d[0] as i64 | (d[1] as i64) << 16 | (d[2] as i64) << 32 | (d[3] as i64) << 48;
    // SAFETY: an empty template: it reads and writes only `bits`'s register, touches no memory,
    // no stack and no flags.
    unsafe {
        std::arch::asm!("/* {bits} */", bits = inout(reg) bits, options(pure, nomem, nostack, preserves_flags));
    }
    bits
}

/// Activation blocks whose seeds fit the stack buffers (rows of up to 16384 elements, 16 KiB of
/// seeds); longer rows fall back to the one-row kernels.
pub(super) const MAX_BLOCKS: usize = 512;

/// The bit pattern of 1.5 * 2^23 as f32: an i32 lane seeded with it and then added integers of
/// magnitude below 2^22 holds the f32 `1.5 * 2^23 + s` exactly, so subtracting [`MAGIC_F`] gives
/// `s` as f32 exactly, the value `vcvtdq2ps` gives, by a subtraction that runs on either vector
/// port where the conversion takes port 0, which the `vpdpbusd` of the multi-token kernels
/// saturate.
pub(super) const MAGIC_BITS: i32 = 0x4B40_0000;
/// 1.5 * 2^23.
pub(super) const MAGIC_F: f32 = 12_582_912.0;

/// The sum of a 512-bit register's 16 lanes by a fixed tree: the two halves, then as
/// `hsum_ps` (the quarters, then pairs). [`sum4x4`] of [`halves4`] runs the same tree on four
/// registers at once (the multi-token kernels' ends of rows: the same bits).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
pub(super) fn reduce16(v: __m512) -> f32 {
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    super::hsum_ps(_mm256_add_ps(_mm512_castps512_ps256(v), hi))
}

/// The first steps of [`reduce16`] for four registers: 128-bit lane t of the result holds
/// `v[t]`'s halves added, then its quarters added.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
pub(super) fn halves4(v: [__m512; 4]) -> __m512 {
    // [v0.q0 + v0.q2, v0.q1 + v0.q3, v1.q0 + v1.q2, v1.q1 + v1.q3], the same for v2, v3.
    let h = |a: __m512, b: __m512| {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
        )
    };
    let (a01, a23) = (h(v[0], v[1]), h(v[2], v[3]));
    _mm512_add_ps(
        _mm512_shuffle_f32x4::<0b10_00_10_00>(a01, a23),
        _mm512_shuffle_f32x4::<0b11_01_11_01>(a01, a23),
    )
}

/// In each 128-bit lane, lane 0 becomes `(x0 + x2) + (x1 + x3)` (the last steps of
/// `hsum_ps`).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
pub(super) fn sum4x4(x: __m512) -> __m512 {
    let e = _mm512_add_ps(x, _mm512_permute_ps::<0b11_10_11_10>(x));
    _mm512_add_ps(e, _mm512_movehdup_ps(e))
}

/// Checks a `GemvFn` call: rows of `n` elements of `W`, `a` one row of `n` elements of `A`,
/// `out` at least one output per row; returns the outputs, one per row.
pub(super) fn check<'o, W: Block, A: Block>(
    n: usize,
    w: &Rows<u8>,
    a: &[u8],
    out: &'o mut [f32],
) -> &'o mut [f32] {
    assert!(
        n % W::ELEMS == 0 && w.row_len() == n / W::ELEMS * std::mem::size_of::<W>(),
        "gemv: row of {} bytes for {n} elements",
        w.row_len()
    );
    assert!(
        n % A::ELEMS == 0 && a.len() == n / A::ELEMS * std::mem::size_of::<A>(),
        "gemv: activation row of {} bytes for {n} elements",
        a.len()
    );
    assert!(
        out.len() >= w.n(),
        "gemv: {} outputs for {} rows",
        out.len(),
        w.n()
    );
    &mut out[..w.n()]
}

/// The frame of the `GemvFn` entry points: checks the lengths, then runs `run` on rows of at most
/// `MAX_BLOCKS` blocks of 32 (its stack buffers' size) and the one-row kernel `fallback` on longer
/// ones. `assert_cpu` is the debug check of the features `run` is compiled for.
pub(super) fn gemv_with<W: Block, A: Block>(
    n: usize,
    w: Rows<u8>,
    a: &[u8],
    out: &mut [f32],
    fallback: VecDotFn,
    run: unsafe fn(Rows<u8>, &[A], &mut [f32]),
    assert_cpu: fn(),
) {
    let out = check::<W, A>(n, &w, a, out);
    if n > MAX_BLOCKS * 32 {
        for (r, o) in out.iter_mut().enumerate() {
            *o = fallback(n, w.row(r), a);
        }
        return;
    }
    assert_cpu();
    // SAFETY: the entry points are reachable only through the kernel table, which `install` fills
    // with them only after detecting the features each `run` is compiled for (AVX2, FMA and F16C,
    // and for the AVX-512 ones AVX-512 F/BW/VL and VNNI); lengths checked above.
    unsafe { run(w, cast_blocks(a), out) }
}

/// Row `r` of each token's output row: `out.row(t)[r] = v[t]` (the end of a multi-token body's row).
#[inline(always)]
pub(super) fn store_row<const NT: usize>(out: &mut RowsMut<f32>, r: usize, v: [f32; NT]) {
    for (t, v) in v.into_iter().enumerate() {
        out.row_mut(t)[r] = v;
    }
}

/// The body of a `GemvMultiFn` for `NT` tokens: the rows of `w` against the activation rows
/// `a` (`NT` of them, checked), `out.row(t)[r]` for each token t and row r.
pub(super) type MultiRun<A> = unsafe fn(Rows<u8>, &[&[A]], &mut RowsMut<f32>);

/// The frame of the `GemvMultiFn` entry points: checks the lengths (1 to `GEMV_MULTI_MAX` tokens,
/// one output row per token with one output per weight row), then runs `run[nt - 1]` (the body
/// for nt tokens) on rows of at most `MAX_BLOCKS` blocks of 32, and on longer ones the one-row
/// kernel `fallback` per token and row: what [`gemv_with`] gives each token alone.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemv_multi_with<W: Block, A: Block>(
    n: usize,
    w: Rows<u8>,
    a: Rows<u8>,
    mut out: RowsMut<f32>,
    fallback: VecDotFn,
    run: [MultiRun<A>; GEMV_MULTI_MAX],
    assert_cpu: fn(),
) {
    let nt = a.n();
    assert!(
        (1..=GEMV_MULTI_MAX).contains(&nt),
        "gemv_multi: {nt} tokens (1..={GEMV_MULTI_MAX})"
    );
    assert!(
        n % W::ELEMS == 0 && w.row_len() == n / W::ELEMS * std::mem::size_of::<W>(),
        "gemv_multi: row of {} bytes for {n} elements",
        w.row_len()
    );
    assert!(
        n % A::ELEMS == 0 && a.row_len() == n / A::ELEMS * std::mem::size_of::<A>(),
        "gemv_multi: activation rows of {} bytes for {n} elements",
        a.row_len()
    );
    assert!(
        out.n() >= nt && out.row_len() >= w.n(),
        "gemv_multi: {} output rows of {} for {nt} tokens x {} rows",
        out.n(),
        out.row_len(),
        w.n()
    );
    if n > MAX_BLOCKS * 32 {
        for t in 0..nt {
            let o = out.row_mut(t);
            for (r, v) in o[..w.n()].iter_mut().enumerate() {
                *v = fallback(n, w.row(r), a.row(t));
            }
        }
        return;
    }
    assert_cpu();
    let acts: [&[A]; GEMV_MULTI_MAX] =
        std::array::from_fn(|t| cast_blocks(if t < nt { a.row(t) } else { a.row(0) }));
    // SAFETY: the entry points are reachable only through the kernel table, which `install`
    // fills with them only after detecting the features each body is compiled for; lengths
    // checked above (each activation row has `n / A::ELEMS` blocks, `out` a row per token).
    unsafe { run[nt - 1](w, &acts[..nt], &mut out) }
}

/// The `[MultiRun; GEMV_MULTI_MAX]` of a body generic over its token count: `multi_runs!(f,
/// BlockQ8_1)` for `unsafe fn f<const NT: usize>(Rows<u8>, &[&[A]], &mut RowsMut<f32>)`.
macro_rules! multi_runs {
    ($f:ident, $a:ty) => {{
        /// # Safety
        /// As `$f`: the CPU has its features; `a` holds NT rows of checked length.
        unsafe fn one<const NT: usize>(
            w: crate::views::Rows<u8>,
            a: &[&[$a]],
            out: &mut crate::views::RowsMut<f32>,
        ) {
            let a: [&[$a]; NT] = std::array::from_fn(|t| a[t]);
            // SAFETY: called only through `gemv_multi_with`, which has checked the CPU's
            // features and the lengths (NT activation rows, an output row per token).
            unsafe { $f::<NT>(w, a, out) }
        }
        [one::<1>, one::<2>, one::<3>, one::<4>]
    }};
}
pub(super) use multi_runs;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::scalar_kernels;
    use crate::types::GgmlType;
    use crate::x86_64::test_util::Lcg;

    /// Every row of random matrices (odd and even block counts, every group remainder) against the
    /// scalar `vec_dot`, including the extreme bytes -128 and 127 in weights and activations.
    #[test]
    fn gemv_matches_scalar_vec_dot() {
        let mut rng = Lcg(7);
        let st = scalar_kernels();
        let vnni = crate::x86_64::has_avx512vnni();
        let avx2 = crate::x86_64::has_avx2();
        // The mat-vecs the format files offer for the formats x Q8_0 whose only f16 field is the
        // first (random bytes elsewhere), at the level each needs.
        let offers = crate::x86_64::OFFERS.iter().flat_map(|list| list.iter());
        let simple = [GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q8_0];
        for (ty, f, ok) in offers.filter_map(|o| match o.kernel {
            crate::dispatch::OfferedKernel::Gemv(f) if simple.contains(&o.ty) => Some((
                o.ty,
                f,
                match o.needs {
                    crate::dispatch::Backend::Avx512 => vnni,
                    crate::dispatch::Backend::AvxVnni => crate::x86_64::has_avxvnni(),
                    _ => avx2,
                },
            )),
            _ => None,
        }) {
            if !ok {
                eprintln!("skipped {ty}: the CPU lacks its features");
                continue;
            }
            for nb in [1usize, 2, 3, 6, 7, 8, 17, MAX_BLOCKS + 3] {
                let n = nb * 32;
                for nr in [1usize, 3, 4, 5, 9] {
                    let wrb = ty.row_bytes(n as u64).unwrap() as usize;
                    let mut w = vec![0u8; nr * wrb];
                    for blk in w.chunks_exact_mut(ty.block_bytes()) {
                        for b in blk.iter_mut() {
                            *b = (rng.next_u64() >> 24) as u8;
                        }
                        let d = half::f16::from_f32(rng.f32().abs() * 0.1 + 1e-3);
                        blk[..2].copy_from_slice(&d.to_le_bytes());
                    }
                    let x: Vec<f32> = (0..n)
                        .map(|i| match i % 11 {
                            0 => 50.0,
                            1 => -50.0,
                            _ => rng.f32(),
                        })
                        .collect();
                    let mut a = vec![0u8; GgmlType::Q8_0.row_bytes(n as u64).unwrap() as usize];
                    (st.get(GgmlType::Q8_0).unwrap().from_float.unwrap())(&x, &mut a);
                    let mut out = vec![f32::NAN; nr];
                    f(n, Rows::new(&w, nr, wrb, wrb), &a, &mut out);
                    let dot = st.get(ty).unwrap().vec_dot.unwrap();
                    let mut ad = vec![0.0f32; n];
                    (st.get(GgmlType::Q8_0).unwrap().dequantize_row.unwrap())(&a, &mut ad);
                    for r in 0..nr {
                        let wr = &w[r * wrb..(r + 1) * wrb];
                        let want = dot(n, wr, &a);
                        let got = out[r];
                        // Rounding is relative to the sum of |terms| (cancellation aside).
                        let mut wd = vec![0.0f32; n];
                        (st.get(ty).unwrap().dequantize_row.unwrap())(wr, &mut wd);
                        let mag: f32 = wd.iter().zip(&ad).map(|(x, y)| (x * y).abs()).sum();
                        assert!(
                            (got - want).abs() <= 1e-5 * mag + 1e-6,
                            "{ty} nb {nb} nr {nr} row {r}: {got} vs scalar {want}"
                        );
                        // The same row alone gives the same bits (grouping-independent).
                        let mut one = [0.0f32];
                        f(n, Rows::one(wr), &a, &mut one);
                        assert_eq!(one[0].to_bits(), got.to_bits(), "{ty} row {r} alone");
                    }
                }
            }
        }
    }
}

//! Decode mat-vecs (`GemvFn`: several weight rows x one token) with AVX-512 VNNI `vpdpbusd` on
//! 256-bit registers, for Q4_0 and Q8_0 weights x Q8_0 activations.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes, so the weights are used as unsigned levels
//! (Q4_0: the nibbles 0..15; Q8_0: `w ^ 0x80 = w + 128`) and the offset times the activation sum
//! (`-8 * sum(a)` or `-128 * sum(a)` per block, per lane) must come off each block's sum. The one-row
//! `vec_dot` kernels spend a second `vpdpbusd` (or `maddubs`) per block and row on it. Here it is
//! computed once per call for every activation block, then seeds the accumulator of that block's
//! `vpdpbusd` in every row: per row and block, one `vpdpbusd`, one conversion and one FMA remain on
//! the multiply pipes. Rows are still processed one after another, so the weights stream from
//! memory in order (interleaving several rows was measured slower: several short streams defeat
//! the hardware prefetcher).
//!
//! Each row's arithmetic is the same whatever rows share a call, so results do not depend on how a
//! matrix is split across threads.

use std::arch::x86_64::*;

use super::quants::prefetch;
use super::{f16_table, load16, load32i, lut};
use crate::blocks::{cast_blocks, Block, BlockQ4_0, BlockQ8_0};

/// Activation blocks whose seeds fit the stack buffers (rows of up to 16384 elements, 16 KiB of
/// seeds); longer rows fall back to the one-row kernels.
const MAX_BLOCKS: usize = 512;

/// Per activation block: the seed, lane i = `-off * (a[4i] + .. + a[4i + 3])` (kept per lane, so
/// that every lane of a row's block sum is that lane's exact partial sum, as in the one-row
/// kernels: the float rounding stays relative to the actual terms), and `d_a` as f32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn seeds(a: &[BlockQ8_0], off: i8, seed: &mut [[i32; 8]], da: &mut [f32]) {
    let t = f16_table();
    let offv = _mm256_set1_epi8(off);
    for ((y, s), d) in a.iter().zip(seed.iter_mut()).zip(da.iter_mut()) {
        let v = _mm256_dpbusd_epi32(_mm256_setzero_si256(), offv, load32i(&y.qs));
        let neg = _mm256_sub_epi32(_mm256_setzero_si256(), v);
        // SAFETY: `s` is 8 writable i32 (32 bytes); unaligned store.
        unsafe { _mm256_storeu_si256(s.as_mut_ptr() as *mut __m256i, neg) };
        *d = lut(t, y.d);
    }
}

/// The unsigned levels of a Q4_0 block in activation order (low nibbles, then high).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn levels_q4_0(x: &BlockQ4_0) -> __m256i {
    let raw = _mm256_broadcastsi128_si256(load16(&x.qs));
    _mm256_and_si256(
        _mm256_srlv_epi64(raw, _mm256_set_epi64x(4, 4, 0, 0)),
        _mm256_set1_epi8(0x0F),
    )
}

/// The unsigned levels `w + 128` of a Q8_0 block.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn levels_q8_0(x: &BlockQ8_0) -> __m256i {
    _mm256_xor_si256(load32i(&x.qs), _mm256_set1_epi8(-128))
}

/// A weight block type this module handles.
trait GemvBlock: Block {
    /// The offset that makes the levels unsigned, as `vpdpbusd` reads it (0x80 = 128).
    const OFFSET: i8;
    fn d(&self) -> half::f16;
}

impl GemvBlock for BlockQ4_0 {
    const OFFSET: i8 = 8;
    #[inline(always)]
    fn d(&self) -> half::f16 {
        self.d
    }
}

impl GemvBlock for BlockQ8_0 {
    const OFFSET: i8 = -128;
    #[inline(always)]
    fn d(&self) -> half::f16 {
        self.d
    }
}

/// One row: sum over blocks of `d_w * d_a * (seed + levels . a)`, two blocks per step into two
/// accumulators. (Making the row's block scales in a first pass, to take them off the vector
/// pipes, measured slower: 1.11 vs 0.92 ns per Q4_0 block, cache-resident.)
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn row_dot<W: GemvBlock>(
    w: &[W],
    a: &[BlockQ8_0],
    seed: &[[i32; 8]],
    da: &[f32],
    levels: impl Fn(&W) -> __m256i + Copy,
) -> f32 {
    let nb = w.len();
    assert!(a.len() == nb && seed.len() == nb && da.len() == nb);
    let t = f16_table();
    let mut acc = [_mm256_setzero_ps(); 2];
    let block = |b: usize, acc: __m256| -> __m256 {
        // SAFETY: `seed[b]` is 32 readable bytes; unaligned load.
        let s0 = unsafe { _mm256_loadu_si256(seed[b].as_ptr() as *const __m256i) };
        let s = _mm256_dpbusd_epi32(s0, levels(&w[b]), load32i(&a[b].qs));
        _mm256_fmadd_ps(
            _mm256_cvtepi32_ps(s),
            _mm256_set1_ps(lut(t, w[b].d()) * da[b]),
            acc,
        )
    };
    let mut b = 0;
    while b + 1 < nb {
        prefetch(w[b..].as_ptr());
        acc[0] = block(b, acc[0]);
        acc[1] = block(b + 1, acc[1]);
        b += 2;
    }
    if b < nb {
        acc[0] = block(b, acc[0]);
    }
    super::hsum_ps(_mm256_add_ps(acc[0], acc[1]))
}

/// `out[r] = dot(row r of w, a)` for `nr` rows of `wrb` bytes each.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn run<W: GemvBlock>(
    w: &[u8],
    wrb: usize,
    nr: usize,
    a: &[BlockQ8_0],
    out: &mut [f32],
    levels: impl Fn(&W) -> __m256i + Copy,
) {
    let nb = a.len();
    let mut seed = [[0i32; 8]; MAX_BLOCKS];
    let mut da = [0f32; MAX_BLOCKS];
    seeds(a, W::OFFSET, &mut seed[..nb], &mut da[..nb]);
    for (r, o) in out[..nr].iter_mut().enumerate() {
        let row = cast_blocks::<W>(&w[r * wrb..(r + 1) * wrb]);
        *o = row_dot(row, a, &seed[..nb], &da[..nb], levels);
    }
}

/// Checks a `GemvFn` call: `nr` rows of `wrb` bytes of `n` elements of `W`, `a` one row of `n`
/// Q8_0 elements, `out` at least `nr` long.
fn check<W: Block>(n: usize, w: &[u8], wrb: usize, nr: usize, a: &[u8], out: &[f32]) {
    assert!(
        n % W::ELEMS == 0 && wrb == n / W::ELEMS * std::mem::size_of::<W>(),
        "gemv: row of {wrb} bytes for {n} elements"
    );
    assert!(
        crate::dispatch::strided_fits(nr, wrb, wrb, w.len()),
        "gemv: {nr} rows of {wrb} bytes, weights are {} bytes",
        w.len()
    );
    assert!(
        a.len() == n / 32 * std::mem::size_of::<BlockQ8_0>(),
        "gemv: activation row of {} bytes for {n} elements",
        a.len()
    );
    assert!(out.len() >= nr, "gemv: {} outputs for {nr} rows", out.len());
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q4_0(w: &[u8], wrb: usize, nr: usize, a: &[BlockQ8_0], out: &mut [f32]) {
    // The closure inherits this function's target features, so it inlines into `row_dot`.
    run::<BlockQ4_0>(w, wrb, nr, a, out, |x| levels_q4_0(x))
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q8_0(w: &[u8], wrb: usize, nr: usize, a: &[BlockQ8_0], out: &mut [f32]) {
    run::<BlockQ8_0>(w, wrb, nr, a, out, |x| levels_q8_0(x))
}

/// Q4_0 weights x Q8_0 activations (`GemvFn`).
pub(super) fn gemv_q4_0_q8_0(n: usize, w: &[u8], wrb: usize, nr: usize, a: &[u8], out: &mut [f32]) {
    check::<BlockQ4_0>(n, w, wrb, nr, a, out);
    if n / 32 > MAX_BLOCKS {
        for (r, o) in out[..nr].iter_mut().enumerate() {
            *o = super::quants::vec_dot_q4_0_q8_0(n, &w[r * wrb..(r + 1) * wrb], a);
        }
        return;
    }
    // SAFETY: reachable only through the kernel table, which `install` fills with this kernel only
    // after detecting AVX2, FMA, F16C, AVX-512 F/BW/VL and VNNI; lengths checked above.
    unsafe { run_q4_0(w, wrb, nr, cast_blocks(a), out) }
}

/// Q8_0 weights x Q8_0 activations (`GemvFn`).
pub(super) fn gemv_q8_0_q8_0(n: usize, w: &[u8], wrb: usize, nr: usize, a: &[u8], out: &mut [f32]) {
    check::<BlockQ8_0>(n, w, wrb, nr, a, out);
    if n / 32 > MAX_BLOCKS {
        for (r, o) in out[..nr].iter_mut().enumerate() {
            *o = super::quants::vec_dot_q8_0_q8_0_vnni(n, &w[r * wrb..(r + 1) * wrb], a);
        }
        return;
    }
    // SAFETY: as above.
    unsafe { run_q8_0(w, wrb, nr, cast_blocks(a), out) }
}

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
        if !crate::x86_64::has_avx512vnni() {
            eprintln!("skipped: no AVX-512 VNNI");
            return;
        }
        let mut rng = Lcg(7);
        let st = scalar_kernels();
        for (ty, f) in [
            (GgmlType::Q4_0, gemv_q4_0_q8_0 as crate::dispatch::GemvFn),
            (GgmlType::Q8_0, gemv_q8_0_q8_0),
        ] {
            for nb in [1usize, 2, 3, 8, 17, MAX_BLOCKS + 3] {
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
                    f(n, &w, wrb, nr, &a, &mut out);
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
                        f(n, &w[r * wrb..(r + 1) * wrb], wrb, 1, &a, &mut one);
                        assert_eq!(one[0].to_bits(), got.to_bits(), "{ty} row {r} alone");
                    }
                }
            }
        }
    }
}

//! Decode mat-vecs (`GemvFn`: several weight rows x one token), each laying the activation row out
//! once per call in the order its weight levels come out of the loads:
//! - AVX-512 VNNI: Q4_0, Q5_0 (x Q8_0) and Q4_1 (x Q8_1) four blocks per 512-bit step; Q8_0 x Q8_0
//!   two blocks per step on 256-bit registers; Q4_K and Q6_K x Q8_K with `vpdpbusd`, `packssdw`
//!   and one `vpdpwssd` per register pair (see `row_dot_q4_k`).
//! - AVX2 alone: Q4_0, Q5_0, Q4_1 and Q5_1 two blocks per register (`row_dot_pairs`), and Q4_K x
//!   Q8_K (`row_dot_q4_k_avx2`).
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
//! (`quants::set_prefetch_plan`): none on AMD (prefetches take fill buffers the hardware
//! prefetcher's stream would use), 2 KiB ahead on Intel (the hardware prefetcher alone falls short).
//! Measurements: docs/perf.md.
//!
//! Each row's arithmetic is the same whatever rows share a call, so results do not depend on how a
//! matrix is split across threads.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::quants::{fifth_bits, gemv_streams_prefetch, prefetch_lines, prefetch_lines_q8_0};
use super::{f16_table, load16, load32i, lut};
use crate::blocks::{
    as_bytes, cast_blocks, ActBlock32, Block, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0,
    BlockQ5_1, BlockQ6_K, BlockQ8_0, BlockQ8_1, BlockQ8_K,
};

/// Defines a `GemvFn` entry point: [`gemv_with`] for `$W` rows x `$A` activations, rows of at
/// most `$max_n` elements through `$run`, longer ones through the one-row `$fallback`.
macro_rules! gemv_entry {
    ($(#[$m:meta])* $name:ident, $W:ty, $A:ty, $max_n:expr, $fallback:path, $run:ident) => {
        $(#[$m])*
        pub(super) fn $name(n: usize, w: &[u8], wrb: usize, nr: usize, a: &[u8], out: &mut [f32]) {
            gemv_with::<$W, $A>(n, w, wrb, nr, a, out, $max_n, $fallback, $run);
        }
    };
}

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
    super::hsum_ps(_mm256_add_ps(acc[0], acc[1]))
}

/// Q8_0 rows (`GemvFn` body): `out[r] = dot(row r of w, a)` for `nr` rows of `wrb` bytes; the
/// levels are `w + 128`, so each block's seed is `-128 * sum(a)`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q8_0(w: &[u8], wrb: usize, nr: usize, a: &[BlockQ8_0], out: &mut [f32]) {
    let nb = a.len();
    let mut seed = [[0i32; 8]; MAX_BLOCKS];
    let mut da = [0f32; MAX_BLOCKS];
    seeds(a, -128, &mut seed[..nb], &mut da[..nb]);
    for (r, o) in out[..nr].iter_mut().enumerate() {
        let row = cast_blocks::<BlockQ8_0>(&w[r * wrb..(r + 1) * wrb]);
        *o = row_dot_q8_0(row, a, &seed[..nb], &da[..nb]);
    }
}

/// The first and second halves of four activation blocks' 32 bytes, as `[a0[0..16], a1[0..16],
/// a2[0..16], a3[0..16]]` and `[a0[16..32], ..]`: the order a quad of 4-bit blocks' low and high
/// nibbles come out of `quad_levels`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn quad_halves(qs: [&[i8; 32]; 4]) -> (__m512i, __m512i) {
    let z01 = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(load32i(qs[0])), load32i(qs[1]));
    let z23 = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(load32i(qs[2])), load32i(qs[3]));
    (
        _mm512_permutex2var_epi64(z01, _mm512_set_epi64(13, 12, 9, 8, 5, 4, 1, 0), z23),
        _mm512_permutex2var_epi64(z01, _mm512_set_epi64(15, 14, 11, 10, 7, 6, 3, 2), z23),
    )
}

/// Four 4-bit blocks' 16 quant bytes in the four 128-bit lanes, split into the low nibbles and
/// the high nibbles (a 16-bit shift right by 4 and the same mask): levels 0..15.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn quad_levels(qs: [&[u8; 16]; 4]) -> (__m512i, __m512i) {
    let mask = _mm512_set1_epi8(0x0F);
    let v01 = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(load16(qs[0])), load16(qs[1]));
    let v23 = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(load16(qs[2])), load16(qs[3]));
    let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(v01), v23);
    (
        _mm512_and_si512(v, mask),
        _mm512_and_si512(_mm512_srli_epi16::<4>(v), mask),
    )
}

/// Q4_0 on 512-bit registers, four blocks per step: the activation quad (4q .. 4q + 3) laid out as
/// the four blocks' first halves (`lo`, 128-bit lane j = `a_4q+j[0..16]`, matching the low nibbles
/// of block 4q + j's 16 quant bytes) and second halves (`hi`, matching the high nibbles), and the
/// seed per i32 lane (`-8 *` the sum of the lane's 4 `lo` and 4 `hi` bytes).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct QuadQ4_0 {
    lo: [i8; 64],
    hi: [i8; 64],
    seed: [i32; 16],
}

/// Makes the quads of `a` (`a.len() / 4` of them, seeded for levels offset by `off`: 8 for Q4_0,
/// 16 for Q5_0) and each quad's four `d_a`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn quads_q4_0<'p>(
    a: &[BlockQ8_0],
    off: i8,
    quads: &'p mut [MaybeUninit<QuadQ4_0>],
    da: &'p mut [MaybeUninit<[f32; 4]>],
) -> (&'p [QuadQ4_0], &'p [[f32; 4]]) {
    let t = f16_table();
    let nq = a.len() / 4;
    let (quads, da) = (&mut quads[..nq], &mut da[..nq]);
    let offv = _mm512_set1_epi8(off);
    for ((ab, o), d) in a.chunks_exact(4).zip(quads.iter_mut()).zip(da.iter_mut()) {
        let (lo, hi) = quad_halves(std::array::from_fn(|j| &ab[j].qs));
        let sum = _mm512_dpbusd_epi32(
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), offv, lo),
            offv,
            hi,
        );
        let seed = _mm512_sub_epi32(_mm512_setzero_si512(), sum);
        let p = o.as_mut_ptr();
        // SAFETY: `p` points to a writable, 64-byte aligned `QuadQ4_0`, whose three fields are 64
        // bytes each at offsets 0, 64 and 128; all are written before the slice is read below.
        unsafe {
            _mm512_store_si512(std::ptr::addr_of_mut!((*p).lo) as *mut __m512i, lo);
            _mm512_store_si512(std::ptr::addr_of_mut!((*p).hi) as *mut __m512i, hi);
            _mm512_store_si512(std::ptr::addr_of_mut!((*p).seed) as *mut __m512i, seed);
        }
        d.write(std::array::from_fn(|j| lut(t, ab[j].d)));
    }
    // SAFETY: every element of both slices was written above; `MaybeUninit<T>` has `T`'s layout.
    unsafe {
        (
            &*(quads as *const [MaybeUninit<QuadQ4_0>] as *const [QuadQ4_0]),
            &*(da as *const [MaybeUninit<[f32; 4]>] as *const [[f32; 4]]),
        )
    }
}

/// One quad of four 32-element blocks whose levels (`lo`, `hi`: 0..15 for Q4_0, 0..31 for Q5_0)
/// match the layout of the activation quad `qd`: two chained `vpdpbusd` from its seed, then the
/// four scales `d_w * d_a` made in an xmm and spread to the blocks' lanes by one `vpermps`; returns
/// `acc` plus the four blocks' dot products (in the lanes).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn quad_step(
    lo: __m512i,
    hi: __m512i,
    qd: &QuadQ4_0,
    d: [half::f16; 4],
    da: &[f32; 4],
    acc: __m512,
) -> __m512 {
    // SAFETY: the three fields of `qd` are 64 bytes at 64-byte aligned addresses.
    let (seed, alo, ahi) = unsafe {
        (
            _mm512_load_si512(qd.seed.as_ptr() as *const __m512i),
            _mm512_load_si512(qd.lo.as_ptr() as *const __m512i),
            _mm512_load_si512(qd.hi.as_ptr() as *const __m512i),
        )
    };
    let s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(seed, lo, alo), hi, ahi);
    let bits = d[0].to_bits() as i64
        | (d[1].to_bits() as i64) << 16
        | (d[2].to_bits() as i64) << 32
        | (d[3].to_bits() as i64) << 48;
    // SAFETY: `da` is 16 readable bytes; unaligned load.
    let da4 = unsafe { _mm_loadu_ps(da.as_ptr()) };
    let d4 = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi64_si128(bits)), da4);
    let sidx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    let scale = _mm512_permutexvar_ps(sidx, _mm512_castps128_ps512(d4));
    _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc)
}

/// One Q4_0 row against the quads, plus up to 3 last blocks (`tail`: each with its ymm seed and
/// `d_a`). Per quad of weight blocks: their 16 quant bytes go to the four 128-bit lanes; the low
/// nibbles (one AND) and the high nibbles (a 16-bit shift right by 4 and the same AND) are the
/// levels of `lo` and `hi`, and two chained `vpdpbusd` from the seed sum the four blocks exactly, 4
/// lanes each. The four scales `d_w * d_a` are made in an xmm and spread to those lanes by one
/// `vpermps`: one conversion and one FMA per four blocks, where two blocks per step (the high
/// nibbles in the upper lanes of the same register) took one per two. (A GFNI affine transform
/// for the high nibbles gains nothing from memory: not worth a second feature test.)
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn row_dot_q4_0(
    w: &[BlockQ4_0],
    quads: &[QuadQ4_0],
    da: &[[f32; 4]],
    tail: &[(BlockQ8_0, [i32; 8], f32)],
) -> f32 {
    let nq = quads.len();
    assert!(da.len() == nq && w.len() == 4 * nq + tail.len());
    let quad = |q: usize, acc: __m512| -> __m512 {
        let wq = &w[4 * q..4 * q + 4];
        let (lo, hi) = quad_levels(std::array::from_fn(|j| &wq[j].qs));
        quad_step(
            lo,
            hi,
            &quads[q],
            std::array::from_fn(|j| wq[j].d),
            &da[q],
            acc,
        )
    };
    let mut acc = [_mm512_setzero_ps(); 2];
    let mut q = 0;
    let pf = gemv_streams_prefetch();
    while q + 1 < nq {
        if pf {
            // The two quads' 144 bytes: three lines.
            prefetch_lines::<3, _>(w[4 * q..].as_ptr());
        }
        acc[0] = quad(q, acc[0]);
        acc[1] = quad(q + 1, acc[1]);
        q += 2;
    }
    if q < nq {
        acc[0] = quad(q, acc[0]);
    }
    let mut sum = _mm512_add_ps(acc[0], acc[1]);
    for (x, (a, seed, da)) in w[4 * nq..].iter().zip(tail) {
        // SAFETY: `seed` is 32 readable bytes; unaligned load.
        let s0 = unsafe { _mm256_loadu_si256(seed.as_ptr() as *const __m256i) };
        let s = _mm256_dpbusd_epi32(s0, levels_q4_0(x), load32i(&a.qs));
        let d = lut(f16_table(), x.d) * da;
        let v = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d));
        sum = _mm512_add_ps(sum, _mm512_zextps256_ps512(v));
    }
    _mm512_reduce_add_ps(sum)
}

/// Q4_0 rows (`GemvFn` body), four blocks per 512-bit step.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q4_0(w: &[u8], wrb: usize, nr: usize, a: &[BlockQ8_0], out: &mut [f32]) {
    let nb = a.len();
    let mut qbuf = [MaybeUninit::<QuadQ4_0>::uninit(); MAX_BLOCKS / 4];
    let mut dbuf = [MaybeUninit::<[f32; 4]>::uninit(); MAX_BLOCKS / 4];
    let (quads, da) = quads_q4_0(a, 8, &mut qbuf, &mut dbuf);
    let nt = nb % 4;
    let mut tail = [(a[0], [0i32; 8], 0f32); 3];
    for (j, y) in a[nb - nt..].iter().enumerate() {
        let (mut s, mut d) = ([[0i32; 8]; 1], [0f32; 1]);
        seeds(std::slice::from_ref(y), 8, &mut s, &mut d);
        tail[j] = (*y, s[0], d[0]);
    }
    for (r, o) in out[..nr].iter_mut().enumerate() {
        let row = cast_blocks::<BlockQ4_0>(&w[r * wrb..(r + 1) * wrb]);
        *o = row_dot_q4_0(row, quads, da, &tail[..nt]);
    }
}

/// One Q5_0 row against the quads (seeded with -16 x the activation sums), the last `w.len() % 4`
/// blocks by the one-row AVX2 kernel. As `row_dot_q4_0`, plus the fifth bits: the four blocks'
/// `qh` words give two 64-bit masks (bits 0..16 of each for the low nibbles' bytes, 16..32 for the
/// high), and one masked byte add of 16 per register puts them in (levels 0..31).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn row_dot_q5_0(w: &[BlockQ5_0], quads: &[QuadQ4_0], da: &[[f32; 4]], a: &[BlockQ8_0]) -> f32 {
    let nq = quads.len();
    assert!(w.len() == a.len() && w.len() / 4 == nq && da.len() == nq);
    let sixteen = _mm512_set1_epi8(16);
    let mut acc = _mm512_setzero_ps();
    let pf = gemv_streams_prefetch();
    for (q, qd) in quads.iter().enumerate() {
        let wq = &w[4 * q..4 * q + 4];
        if pf {
            // The quad's 88 bytes: two lines.
            prefetch_lines::<2, _>(wq.as_ptr());
        }
        let (lo, hi) = quad_levels(std::array::from_fn(|j| &wq[j].qs));
        let h: [u64; 4] = std::array::from_fn(|j| u32::from_le_bytes(wq[j].qh) as u64);
        let mlo = (h[0] & 0xFFFF) | (h[1] & 0xFFFF) << 16 | (h[2] & 0xFFFF) << 32 | h[3] << 48;
        let mhi = h[0] >> 16 | (h[1] >> 16) << 16 | (h[2] >> 16) << 32 | (h[3] >> 16) << 48;
        let lo = _mm512_mask_add_epi8(lo, mlo, lo, sixteen);
        let hi = _mm512_mask_add_epi8(hi, mhi, hi, sixteen);
        acc = quad_step(lo, hi, qd, std::array::from_fn(|j| wq[j].d), &da[q], acc);
    }
    let tail = if w.len() > 4 * nq {
        super::quants::dot_q5_0(&w[4 * nq..], &a[4 * nq..])
    } else {
        0.0
    };
    _mm512_reduce_add_ps(acc) + tail
}

/// Q5_0 rows (`GemvFn` body), four blocks per 512-bit step.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q5_0(w: &[u8], wrb: usize, nr: usize, a: &[BlockQ8_0], out: &mut [f32]) {
    let mut qbuf = [MaybeUninit::<QuadQ4_0>::uninit(); MAX_BLOCKS / 4];
    let mut dbuf = [MaybeUninit::<[f32; 4]>::uninit(); MAX_BLOCKS / 4];
    let (quads, da) = quads_q4_0(a, 16, &mut qbuf, &mut dbuf);
    for (r, o) in out[..nr].iter_mut().enumerate() {
        *o = row_dot_q5_0(cast_blocks(&w[r * wrb..(r + 1) * wrb]), quads, da, a);
    }
}

/// Q4_1 x Q8_1, four blocks per 512-bit step like Q4_0: the activation quad's first and second
/// halves (`lo`, `hi`) and its `[d_a, s_a]` pairs (`s_a` = `d_a * sum(a)`, so `m_w * s_a` is each
/// block's offset term). The levels are the nibbles 0..15 as they are, so no seed is needed.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct QuadQ4_1 {
    lo: [i8; 64],
    hi: [i8; 64],
    ds: [f32; 8],
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn quads_q4_1<'p>(a: &[BlockQ8_1], quads: &'p mut [MaybeUninit<QuadQ4_1>]) -> &'p [QuadQ4_1] {
    let t = f16_table();
    let quads = &mut quads[..a.len() / 4];
    for (ab, o) in a.chunks_exact(4).zip(quads.iter_mut()) {
        let (lo, hi) = quad_halves(std::array::from_fn(|j| &ab[j].qs));
        let p = o.as_mut_ptr();
        // SAFETY: `p` points to a writable, 64-byte aligned `QuadQ4_1`; `lo` and `hi` are 64 bytes
        // at offsets 0 and 64, `ds` is written right after; all before the slice is read below.
        unsafe {
            _mm512_store_si512(std::ptr::addr_of_mut!((*p).lo) as *mut __m512i, lo);
            _mm512_store_si512(std::ptr::addr_of_mut!((*p).hi) as *mut __m512i, hi);
            std::ptr::addr_of_mut!((*p).ds).write(std::array::from_fn(|i| {
                lut(t, if i % 2 == 0 { ab[i / 2].d } else { ab[i / 2].s })
            }));
        }
    }
    // SAFETY: every element of `quads` was written above; `MaybeUninit<T>` has `T`'s layout.
    unsafe { &*(quads as *const [MaybeUninit<QuadQ4_1>] as *const [QuadQ4_1]) }
}

/// One Q4_1 row against the quads, the last `w.len() % 4` blocks by the one-row AVX2 kernel. Per
/// quad: levels from `quad_levels`, two chained `vpdpbusd` from zero; the four blocks' `d_w` and
/// `m_w` (adjacent f16 pairs) converted by one `vcvtph2ps` and multiplied by `[d_a, s_a]`: the
/// `d` products spread to the sum's lanes by `vpermps`, the `m * s_a` products summed as they are
/// (their lanes are picked out at the end).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn row_dot_q4_1(w: &[BlockQ4_1], quads: &[QuadQ4_1], a: &[BlockQ8_1]) -> f32 {
    let nq = quads.len();
    assert!(w.len() == a.len() && w.len() / 4 == nq);
    let sidx = _mm512_set_epi32(6, 6, 6, 6, 4, 4, 4, 4, 2, 2, 2, 2, 0, 0, 0, 0);
    let mut acc = _mm512_setzero_ps();
    let mut acc_m = _mm256_setzero_ps();
    let pf = gemv_streams_prefetch();
    for (q, qd) in quads.iter().enumerate() {
        let wq = &w[4 * q..4 * q + 4];
        if pf {
            // The quad's 80 bytes: two lines.
            prefetch_lines::<2, _>(wq.as_ptr());
        }
        let (lo, hi) = quad_levels(std::array::from_fn(|j| &wq[j].qs));
        // SAFETY: the fields of `qd` are 64, 64 and 32 bytes at 64-byte aligned addresses.
        let (alo, ahi, ds) = unsafe {
            (
                _mm512_load_si512(qd.lo.as_ptr() as *const __m512i),
                _mm512_load_si512(qd.hi.as_ptr() as *const __m512i),
                _mm256_load_ps(qd.ds.as_ptr()),
            )
        };
        let z = _mm512_setzero_si512();
        let s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, lo, alo), hi, ahi);
        let dm = |j: usize| wq[j].d.to_bits() as i32 | (wq[j].m.to_bits() as i32) << 16;
        let f = _mm256_mul_ps(
            _mm256_cvtph_ps(_mm_set_epi32(dm(3), dm(2), dm(1), dm(0))),
            ds,
        );
        acc_m = _mm256_add_ps(acc_m, f);
        let scale = _mm512_permutexvar_ps(sidx, _mm512_castps256_ps512(f));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc);
    }
    // The odd lanes of acc_m hold the m * s_a sums.
    let odd = _mm256_permutevar8x32_ps(acc_m, _mm256_set_epi32(7, 5, 3, 1, 7, 5, 3, 1));
    let x = _mm256_castps256_ps128(odd);
    let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    let m = _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
    let tail = if w.len() > 4 * nq {
        super::quants::dot_q4_1(&w[4 * nq..], &a[4 * nq..])
    } else {
        0.0
    };
    _mm512_reduce_add_ps(acc) + m + tail
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q4_1(w: &[u8], wrb: usize, nr: usize, a: &[BlockQ8_1], out: &mut [f32]) {
    let mut buf = [MaybeUninit::<QuadQ4_1>::uninit(); MAX_BLOCKS / 4];
    let quads = quads_q4_1(a, &mut buf);
    for (r, o) in out[..nr].iter_mut().enumerate() {
        *o = row_dot_q4_1(cast_blocks(&w[r * wrb..(r + 1) * wrb]), quads, a);
    }
}

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
/// shift, and/or): bytes `[scales 0..8, mins 0..8]`; and `[d * d_a, dmin * d_a]` (F16C).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q4_k_header(x: &BlockQ4_K, d_a: f32) -> (__m128i, __m128) {
    // SAFETY: `scales` starts 4 bytes into the 144-byte block: 16 readable bytes.
    let raw = unsafe { _mm_loadu_si128(x.scales.as_ptr() as *const __m128i) };
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
    let bits = x.d.to_bits() as i32 | (x.dmin.to_bits() as i32) << 16;
    let dd = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)), _mm_set1_ps(d_a));
    (_mm_or_si128(r, t), dd)
}

/// One Q4_K row: per super-block, four `vpdpbusd` (levels 0..15 x activations, 4 products per
/// i32 lane: |sum| <= 4 * 15 * 128 = 7680) give the register pairs (sub-blocks 0|2, 1|3) and
/// (4|6, 5|7); `packssdw` of each pair is exact (|x| < 2^15) and puts two sub-blocks' partial
/// sums in each 128-bit lane, and one `vpdpwssd` per pair multiplies them by the sub-block
/// scales (words spread by `vpshufb`) and sums exactly in i32 lanes: 6 multiplying instructions
/// per super-block instead of 8 for `maddubs` + `vpdpwssd` per register. The mins term from the
/// precomputed sub-block sums (`madd`).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn row_dot_q4_k(w: &[BlockQ4_K], sup: &[SuperQ4K]) -> f32 {
    assert!(w.len() == sup.len());
    let m4 = _mm512_set1_epi8(0x0F);
    // SAFETY: each control is 64 readable bytes; unaligned loads.
    let (c01, c23) = unsafe {
        (
            _mm512_loadu_si512(Q4_K_SCALE_CTL[0].as_ptr() as *const __m512i),
            _mm512_loadu_si512(Q4_K_SCALE_CTL[1].as_ptr() as *const __m512i),
        )
    };
    let mut acc = _mm512_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    for (x, s) in w.iter().zip(sup) {
        prefetch_lines::<3, _>(x);
        let (um, dd) = q4_k_header(x, s.d);
        // SAFETY: `bsum` is 8 i16 = 16 readable bytes; unaligned load.
        let bs = unsafe { _mm_loadu_si128(s.bsum.as_ptr() as *const __m128i) };
        let mins = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(um, um));
        let mins = _mm_cvtepi32_ps(_mm_madd_epi16(mins, bs));
        acc_m = _mm_fmadd_ps(mins, _mm_permute_ps::<0b01_01_01_01>(dd), acc_m);
        // Scale bytes 0..8 in every 128-bit lane.
        let sc = _mm512_broadcast_i32x4(um);
        // SAFETY: `qs` is 128 readable bytes; `act` is 256 bytes at a 64-byte aligned address.
        let (q0, q1, a) = unsafe {
            let q = x.qs.as_ptr() as *const __m512i;
            let a = s.act.as_ptr() as *const __m512i;
            (
                _mm512_loadu_si512(q),
                _mm512_loadu_si512(q.add(1)),
                [
                    _mm512_load_si512(a),
                    _mm512_load_si512(a.add(1)),
                    _mm512_load_si512(a.add(2)),
                    _mm512_load_si512(a.add(3)),
                ],
            )
        };
        let z = _mm512_setzero_si512();
        let d0 = _mm512_dpbusd_epi32(z, _mm512_and_si512(q0, m4), a[0]);
        let d1 = _mm512_dpbusd_epi32(z, _mm512_and_si512(_mm512_srli_epi16::<4>(q0), m4), a[1]);
        let d2 = _mm512_dpbusd_epi32(z, _mm512_and_si512(q1, m4), a[2]);
        let d3 = _mm512_dpbusd_epi32(z, _mm512_and_si512(_mm512_srli_epi16::<4>(q1), m4), a[3]);
        let sum = _mm512_dpwssd_epi32(z, _mm512_packs_epi32(d0, d1), _mm512_shuffle_epi8(sc, c01));
        let sum = _mm512_dpwssd_epi32(
            sum,
            _mm512_packs_epi32(d2, d3),
            _mm512_shuffle_epi8(sc, c23),
        );
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_broadcastss_ps(dd), acc);
    }
    let m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    let m = _mm_add_ss(m, _mm_movehdup_ps(m));
    _mm512_reduce_add_ps(acc) - _mm_cvtss_f32(m)
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q4_k(w: &[u8], wrb: usize, nr: usize, a: &[BlockQ8_K], out: &mut [f32]) {
    let mut buf = [MaybeUninit::<SuperQ4K>::uninit(); MAX_SUPER];
    let sup = supers_q4_k(a, &mut buf);
    for (r, o) in out[..nr].iter_mut().enumerate() {
        *o = row_dot_q4_k(cast_blocks(&w[r * wrb..(r + 1) * wrb]), sup);
    }
}

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
/// the low nibbles) and words 4..8 group 8n + 4 + j (the high nibbles).
const Q6_K_SCALE_IDX: [[i16; 32]; 2] = {
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

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn row_dot_q6_k(w: &[BlockQ6_K], a: &[BlockQ8_K]) -> f32 {
    assert!(w.len() == a.len());
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
    let mut acc = _mm512_setzero_ps();
    let pf = gemv_streams_prefetch();
    for (x, y) in w.iter().zip(a) {
        if pf {
            // The super-block's 210 bytes: four lines.
            prefetch_lines::<4, _>(x);
        }
        // SAFETY: `scales` is 16 bytes, `bsums` 16 i16 = 32 bytes; unaligned loads.
        let (sc, bs) = unsafe {
            (
                _mm256_cvtepi8_epi16(_mm_loadu_si128(x.scales.as_ptr() as *const __m128i)),
                _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i),
            )
        };
        let off = _mm256_slli_epi32::<5>(_mm256_madd_epi16(sc, bs));
        let mut sum = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(off));
        let scz = _mm512_castsi256_si512(sc);
        for (n, sidx) in idx.iter().enumerate() {
            // SAFETY: `ql[64n..64n + 64]`, `qh[32n..32n + 32]` and `qs[128n..128n + 128]` are in
            // bounds (n < 2: `idx` has two entries); unaligned loads.
            let (ql, qh, alo, ahi) = unsafe {
                let a = y.qs.as_ptr().add(128 * n) as *const __m512i;
                (
                    _mm512_loadu_si512(x.ql.as_ptr().add(64 * n) as *const __m512i),
                    _mm512_broadcast_i64x4(_mm256_loadu_si256(
                        x.qh.as_ptr().add(32 * n) as *const __m256i
                    )),
                    _mm512_loadu_si512(a),
                    _mm512_loadu_si512(a.add(1)),
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
            let z = _mm512_setzero_si512();
            let (dlo, dhi) = (
                _mm512_dpbusd_epi32(z, lo, alo),
                _mm512_dpbusd_epi32(z, hi, ahi),
            );
            let s = _mm512_permutexvar_epi16(*sidx, scz);
            sum = _mm512_dpwssd_epi32(sum, _mm512_packs_epi32(dlo, dhi), s);
        }
        let d = _mm512_set1_ps(super::h2f(x.d) * y.d);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), d, acc);
    }
    _mm512_reduce_add_ps(acc)
}

/// One Q4_K row on AVX2 alone against the super-blocks of `supers_q4_k`: per 32-byte chunk c of
/// `qs`, the low nibbles (sub-block 2c) and the high ones (2c + 1) against their activations by
/// `maddubs` (|pair| <= 2 * 15 * 128), each times its sub-block scale by `madd` with the scale
/// broadcast to i16 words (`pshufb`): exact i32 lanes; the mins term from the precomputed
/// sub-block sums; one conversion and FMA per super-block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn row_dot_q4_k_avx2(w: &[BlockQ4_K], sup: &[SuperQ4K]) -> f32 {
    assert!(w.len() == sup.len());
    let m4 = _mm256_set1_epi8(0x0F);
    // Word k of every 128-bit lane <- scale byte k, zero-extended.
    let spread: [__m256i; 8] =
        std::array::from_fn(|k| _mm256_set1_epi16((0x8000u16 | k as u16) as i16));
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    for (x, s) in w.iter().zip(sup) {
        prefetch_lines::<3, _>(x);
        let (um, dd) = q4_k_header(x, s.d);
        // SAFETY: `bsum` is 8 i16 = 16 readable bytes; unaligned load.
        let bs = unsafe { _mm_loadu_si128(s.bsum.as_ptr() as *const __m128i) };
        let mins = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(um, um));
        let mins = _mm_cvtepi32_ps(_mm_madd_epi16(mins, bs));
        acc_m = _mm_fmadd_ps(mins, _mm_permute_ps::<0b01_01_01_01>(dd), acc_m);
        let sc = _mm256_broadcastsi128_si256(um);
        let mut sum = _mm256_setzero_si256();
        for c in 0..4 {
            let (h, k) = (c / 2, c % 2);
            // Sub-block 2c's activations are at act[128h + 32k..], 2c + 1's at act[128h + 64 + 32k..].
            // SAFETY: `qs[32c..32c + 32]` and the two 32-byte activation runs are in bounds;
            // unaligned loads.
            let (q, al, ah) = unsafe {
                (
                    _mm256_loadu_si256(x.qs.as_ptr().add(32 * c) as *const __m256i),
                    _mm256_loadu_si256(s.act.as_ptr().add(128 * h + 32 * k) as *const __m256i),
                    _mm256_loadu_si256(s.act.as_ptr().add(128 * h + 64 + 32 * k) as *const __m256i),
                )
            };
            let pl = _mm256_maddubs_epi16(_mm256_and_si256(q, m4), al);
            let ph = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16::<4>(q), m4), ah);
            let pl = _mm256_madd_epi16(pl, _mm256_shuffle_epi8(sc, spread[2 * c]));
            let ph = _mm256_madd_epi16(ph, _mm256_shuffle_epi8(sc, spread[2 * c + 1]));
            sum = _mm256_add_epi32(sum, _mm256_add_epi32(pl, ph));
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_broadcastss_ps(dd), acc);
    }
    let m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    let m = _mm_add_ss(m, _mm_movehdup_ps(m));
    super::hsum_ps(acc) - _mm_cvtss_f32(m)
}

/// Q4_K rows on AVX2 (`GemvFn` body).
#[target_feature(enable = "avx2,fma,f16c")]
fn run_q4_k_avx2(w: &[u8], wrb: usize, nr: usize, a: &[BlockQ8_K], out: &mut [f32]) {
    let mut buf = [MaybeUninit::<SuperQ4K>::uninit(); MAX_SUPER];
    let sup = supers_q4_k(a, &mut buf);
    for (r, o) in out[..nr].iter_mut().enumerate() {
        *o = row_dot_q4_k_avx2(cast_blocks(&w[r * wrb..(r + 1) * wrb]), sup);
    }
}

gemv_entry!(/// Q4_K weights x Q8_K activations on AVX2 alone (`GemvFn`).
    gemv_q4_k_q8_k_avx2, BlockQ4_K, BlockQ8_K, MAX_SUPER * 256, super::k_quants::vec_dot_q4_k_q8_k, run_q4_k_avx2);

/// The 32-element formats with 4-bit levels in `qs` (plus a fifth bit in `qh` for Q5_*), for
/// the AVX2 pair gemv: Q4_0 and Q5_0 (levels offset by 8 / 16, no min) and Q4_1 and Q5_1 (a min).
trait NibbleBlock: Block {
    /// The activation block type they dot with (Q8_0 or Q8_1).
    type Act: ActBlock32;
    /// The levels' offset: the seed is `-OFFSET * sum(a)`. Zero exactly for the formats with a
    /// min (Q4_1, Q5_1), which is how `row_dot_pairs` knows to add the min term.
    const OFFSET: i32;
    fn qs(&self) -> &[u8; 16];
    fn d(&self) -> half::f16;
    /// The min, or zero for the formats without one.
    fn m(&self) -> half::f16;
    /// The fifth bits (bit j of element j), or `None` for the 4-bit formats.
    fn qh(&self) -> Option<u32>;
}

macro_rules! nibble_block {
    ($W:ty, $A:ty, $off:expr, |$x:ident| $m:expr, |$y:ident| $qh:expr) => {
        impl NibbleBlock for $W {
            type Act = $A;
            const OFFSET: i32 = $off;
            #[inline(always)]
            fn qs(&self) -> &[u8; 16] {
                &self.qs
            }
            #[inline(always)]
            fn d(&self) -> half::f16 {
                self.d
            }
            #[inline(always)]
            fn m(&self) -> half::f16 {
                let $x = self;
                $m
            }
            #[inline(always)]
            fn qh(&self) -> Option<u32> {
                let $y = self;
                $qh
            }
        }
    };
}
nibble_block!(BlockQ4_0, BlockQ8_0, 8, |_x| half::f16::ZERO, |_y| None);
nibble_block!(BlockQ4_1, BlockQ8_1, 0, |x| x.m, |_y| None);
nibble_block!(BlockQ5_0, BlockQ8_0, 16, |_x| half::f16::ZERO, |y| Some(
    u32::from_le_bytes(y.qh)
));
nibble_block!(BlockQ5_1, BlockQ8_1, 0, |x| x.m, |y| Some(
    u32::from_le_bytes(y.qh)
));

/// The activation side of the AVX2 pair gemv, two blocks (A, B) per pair, made once per call:
/// the bytes in the order the weights' levels come out of `[A.qs | B.qs]` (`lo` = A's elements
/// 0..16 then B's, `hi` = their 16..32) and the seeds `-OFFSET * sum(a)` in lanes 0 and 4 (the
/// first lane of each block's four).
#[repr(C, align(32))]
#[derive(Clone, Copy)]
struct PairAct {
    lo: [i8; 32],
    hi: [i8; 32],
    seed: [i32; 8],
}

/// One row on AVX2 against the pairs: per pair of weight blocks, one AND and one shift+AND give
/// the nibbles of both (the fifth bits OR-ed in for Q5_*: levels 0..31), two `maddubs` against the
/// pair's activations added in i16 (|lane| <= 4 * 31 * 128 < 2^15), one `madd` and the seeds:
/// lanes 0..4 sum to block A's exact integer dot, 4..8 to B's. Per four blocks one F16C conversion
/// of the four `d_w` (and of the four mins, times the activations' `s`), spread to the lanes by
/// two `vpermps`, and two conversions and FMAs. The last `nb % 4` blocks by the one-row kernel.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn row_dot_pairs<W: NibbleBlock>(
    w: &[W],
    a: &[W::Act],
    pairs: &[PairAct],
    da: &[f32],
    sa: &[f32],
    tail: fn(usize, &[u8], &[u8]) -> f32,
) -> f32 {
    let nq = w.len() / 4;
    assert!(a.len() == w.len() && pairs.len() >= 2 * nq && da.len() >= 4 * nq);
    let has_min = W::OFFSET == 0;
    assert!(!has_min || sa.len() >= 4 * nq);
    let (m4, ones) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi16(1));
    let (spread_lo, spread_hi) = (
        _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1),
        _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3),
    );
    let halves = |f: &dyn Fn(&W) -> half::f16, x: &[W]| -> __m128 {
        let bits = f(&x[0]).to_bits() as i64
            | (f(&x[1]).to_bits() as i64) << 16
            | (f(&x[2]).to_bits() as i64) << 32
            | (f(&x[3]).to_bits() as i64) << 48;
        _mm_cvtph_ps(_mm_cvtsi64_si128(bits))
    };
    let pair = |x: &[W], p: &PairAct| -> __m256i {
        let raw = _mm256_set_m128i(load16(x[1].qs()), load16(x[0].qs()));
        let mut lo = _mm256_and_si256(raw, m4);
        let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4);
        if let (Some(ha), Some(hb)) = (x[0].qh(), x[1].qh()) {
            lo = _mm256_or_si256(lo, fifth_bits((ha & 0xFFFF) | hb << 16));
            hi = _mm256_or_si256(hi, fifth_bits(ha >> 16 | (hb >> 16) << 16));
        }
        // SAFETY: the three fields of `p` are 32 bytes at 32-byte aligned addresses.
        let (alo, ahi, seed) = unsafe {
            (
                _mm256_load_si256(p.lo.as_ptr() as *const __m256i),
                _mm256_load_si256(p.hi.as_ptr() as *const __m256i),
                _mm256_load_si256(p.seed.as_ptr() as *const __m256i),
            )
        };
        let s = _mm256_add_epi16(_mm256_maddubs_epi16(lo, alo), _mm256_maddubs_epi16(hi, ahi));
        _mm256_add_epi32(_mm256_madd_epi16(s, ones), seed)
    };
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut acc_m = _mm_setzero_ps();
    for q in 0..nq {
        let wq = &w[4 * q..4 * q + 4];
        prefetch_lines::<2, _>(wq.as_ptr());
        let (s01, s23) = (
            pair(&wq[..2], &pairs[2 * q]),
            pair(&wq[2..], &pairs[2 * q + 1]),
        );
        // SAFETY: da[4q..4q + 4] is in bounds (asserted); unaligned load.
        let da4 = unsafe { _mm_loadu_ps(da.as_ptr().add(4 * q)) };
        let d4 = _mm256_castps128_ps256(_mm_mul_ps(halves(&|x| x.d(), wq), da4));
        let (d01, d23) = (
            _mm256_permutevar8x32_ps(d4, spread_lo),
            _mm256_permutevar8x32_ps(d4, spread_hi),
        );
        acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s01), d01, acc[0]);
        acc[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s23), d23, acc[1]);
        if has_min {
            // SAFETY: sa[4q..4q + 4] is in bounds (asserted); unaligned load.
            let sa4 = unsafe { _mm_loadu_ps(sa.as_ptr().add(4 * q)) };
            acc_m = _mm_fmadd_ps(halves(&|x| x.m(), wq), sa4, acc_m);
        }
    }
    let mut sum = super::hsum_ps(_mm256_add_ps(acc[0], acc[1]));
    if has_min {
        let m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
        sum += _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
    }
    if w.len() > 4 * nq {
        let n = (w.len() - 4 * nq) * 32;
        let (wb, ab) = (as_bytes(&w[4 * nq..]), as_bytes(&a[4 * nq..]));
        sum += tail(n, wb, ab);
    }
    sum
}

/// Rows of a nibble format on AVX2 (`GemvFn` body); `tail` is the format's one-row kernel.
#[target_feature(enable = "avx2,fma,f16c")]
fn run_pairs<W: NibbleBlock>(
    w: &[u8],
    wrb: usize,
    nr: usize,
    a: &[W::Act],
    out: &mut [f32],
    tail: fn(usize, &[u8], &[u8]) -> f32,
) {
    let nb = a.len();
    let np = nb / 4 * 2;
    let mut pbuf = [MaybeUninit::<PairAct>::uninit(); MAX_BLOCKS / 2];
    let (mut da, mut sa) = ([0.0f32; MAX_BLOCKS], [0.0f32; MAX_BLOCKS]);
    for ((d, s), y) in da.iter_mut().zip(sa.iter_mut()).zip(a) {
        (*d, *s) = (
            super::h2f(y.d()),
            super::h2f(y.s().unwrap_or(half::f16::ZERO)),
        );
    }
    let ones = _mm256_set1_epi8(1);
    for (ab, o) in a.chunks_exact(2).zip(pbuf[..np].iter_mut()) {
        let mut seed = [0i32; 8];
        let (mut lo, mut hi) = ([0i8; 32], [0i8; 32]);
        for (j, y) in ab.iter().enumerate() {
            let qs = y.qs();
            lo[16 * j..16 * j + 16].copy_from_slice(&qs[..16]);
            hi[16 * j..16 * j + 16].copy_from_slice(&qs[16..]);
            if W::OFFSET != 0 {
                // The block's activation sum (|sum| <= 32 * 128).
                let sum = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(ones, load32i(qs)),
                    _mm256_set1_epi16(1),
                );
                seed[4 * j] = -W::OFFSET * super::hsum_epi32(sum);
            }
        }
        o.write(PairAct { lo, hi, seed });
    }
    // SAFETY: the first `np` elements were written above; `MaybeUninit<T>` has `T`'s layout.
    let pairs = unsafe { &*(&pbuf[..np] as *const [MaybeUninit<PairAct>] as *const [PairAct]) };
    for (r, o) in out[..nr].iter_mut().enumerate() {
        let row = cast_blocks::<W>(&w[r * wrb..(r + 1) * wrb]);
        *o = row_dot_pairs(row, a, pairs, &da[..nb], &sa[..nb], tail);
    }
}

/// `GemvFn` bodies of the AVX2 pair gemv, one per format (a `fn` item each, for `gemv_with`).
macro_rules! run_pairs_fn {
    ($name:ident, $W:ty, $tail:path) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $name(w: &[u8], wrb: usize, nr: usize, a: &[<$W as NibbleBlock>::Act], out: &mut [f32]) {
            run_pairs::<$W>(w, wrb, nr, a, out, $tail)
        }
    };
}
run_pairs_fn!(run_q4_0_avx2, BlockQ4_0, super::quants::vec_dot_q4_0_q8_0);
run_pairs_fn!(run_q4_1_avx2, BlockQ4_1, super::quants::vec_dot_q4_1_q8_1);
run_pairs_fn!(run_q5_0_avx2, BlockQ5_0, super::quants::vec_dot_q5_0_q8_0);
run_pairs_fn!(run_q5_1_avx2, BlockQ5_1, super::quants::vec_dot_q5_1_q8_1);

gemv_entry!(/// Q4_0 weights x Q8_0 activations on AVX2 alone (`GemvFn`).
    gemv_q4_0_q8_0_avx2, BlockQ4_0, BlockQ8_0, MAX_BLOCKS * 32, super::quants::vec_dot_q4_0_q8_0, run_q4_0_avx2);
gemv_entry!(/// Q4_1 weights x Q8_1 activations on AVX2 alone (`GemvFn`).
    gemv_q4_1_q8_1_avx2, BlockQ4_1, BlockQ8_1, MAX_BLOCKS * 32, super::quants::vec_dot_q4_1_q8_1, run_q4_1_avx2);
gemv_entry!(/// Q5_0 weights x Q8_0 activations on AVX2 alone (`GemvFn`).
    gemv_q5_0_q8_0_avx2, BlockQ5_0, BlockQ8_0, MAX_BLOCKS * 32, super::quants::vec_dot_q5_0_q8_0, run_q5_0_avx2);
gemv_entry!(/// Q5_1 weights x Q8_1 activations on AVX2 alone (`GemvFn`).
    gemv_q5_1_q8_1_avx2, BlockQ5_1, BlockQ8_1, MAX_BLOCKS * 32, super::quants::vec_dot_q5_1_q8_1, run_q5_1_avx2);

/// Checks a `GemvFn` call: `nr` rows of `wrb` bytes of `n` elements of `W`, `a` one row of `n`
/// Q8_0 elements, `out` at least `nr` long.
fn check<W: Block, A: Block>(n: usize, w: &[u8], wrb: usize, nr: usize, a: &[u8], out: &[f32]) {
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
        n % A::ELEMS == 0 && a.len() == n / A::ELEMS * std::mem::size_of::<A>(),
        "gemv: activation row of {} bytes for {n} elements",
        a.len()
    );
    assert!(out.len() >= nr, "gemv: {} outputs for {nr} rows", out.len());
}

/// The frame of the `GemvFn` entry points: checks the lengths, then runs `run` on rows of at most
/// `max_n` elements (its stack buffers' size) and the one-row kernel `fallback` on longer ones.
#[allow(clippy::too_many_arguments)]
fn gemv_with<W: Block, A: Block>(
    n: usize,
    w: &[u8],
    wrb: usize,
    nr: usize,
    a: &[u8],
    out: &mut [f32],
    max_n: usize,
    fallback: fn(usize, &[u8], &[u8]) -> f32,
    run: unsafe fn(&[u8], usize, usize, &[A], &mut [f32]),
) {
    check::<W, A>(n, w, wrb, nr, a, out);
    if n > max_n {
        for (r, o) in out[..nr].iter_mut().enumerate() {
            *o = fallback(n, &w[r * wrb..(r + 1) * wrb], a);
        }
        return;
    }
    // SAFETY: the entry points below are reachable only through the kernel table, which `install`
    // fills with them only after detecting the features each `run` is compiled for (AVX2, FMA and
    // F16C, and for the AVX-512 ones AVX-512 F/BW/VL and VNNI); lengths checked above.
    unsafe { run(w, wrb, nr, cast_blocks(a), out) }
}

gemv_entry!(/// Q4_0 weights x Q8_0 activations (`GemvFn`).
    gemv_q4_0_q8_0, BlockQ4_0, BlockQ8_0, MAX_BLOCKS * 32, super::quants::vec_dot_q4_0_q8_0, run_q4_0);

gemv_entry!(/// Q5_0 weights x Q8_0 activations (`GemvFn`).
    gemv_q5_0_q8_0, BlockQ5_0, BlockQ8_0, MAX_BLOCKS * 32, super::quants::vec_dot_q5_0_q8_0, run_q5_0);

gemv_entry!(/// Q4_1 weights x Q8_1 activations (`GemvFn`).
    gemv_q4_1_q8_1, BlockQ4_1, BlockQ8_1, MAX_BLOCKS * 32, super::quants::vec_dot_q4_1_q8_1, run_q4_1);

gemv_entry!(/// Q8_0 weights x Q8_0 activations (`GemvFn`).
    gemv_q8_0_q8_0, BlockQ8_0, BlockQ8_0, MAX_BLOCKS * 32, super::quants::vec_dot_q8_0_q8_0_vnni, run_q8_0);

/// Q6_K weights x Q8_K activations (`GemvFn`).
pub(super) fn gemv_q6_k_q8_k(n: usize, w: &[u8], wrb: usize, nr: usize, a: &[u8], out: &mut [f32]) {
    check::<BlockQ6_K, BlockQ8_K>(n, w, wrb, nr, a, out);
    let a = cast_blocks::<BlockQ8_K>(a);
    for (r, o) in out[..nr].iter_mut().enumerate() {
        // SAFETY: reachable only through the kernel table, filled with this kernel only after
        // detecting AVX2, FMA, F16C, AVX-512 F/BW/VL and VNNI; lengths checked above.
        *o = unsafe { row_dot_q6_k(cast_blocks(&w[r * wrb..(r + 1) * wrb]), a) };
    }
}

gemv_entry!(/// Q4_K weights x Q8_K activations (`GemvFn`).
    gemv_q4_k_q8_k, BlockQ4_K, BlockQ8_K, MAX_SUPER * 256, super::k_quants::vec_dot_q4_k_q8_k, run_q4_k);

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
        for (ty, f, ok) in [
            (
                GgmlType::Q4_0,
                gemv_q4_0_q8_0 as crate::dispatch::GemvFn,
                vnni,
            ),
            (GgmlType::Q8_0, gemv_q8_0_q8_0, vnni),
            (GgmlType::Q4_0, gemv_q4_0_q8_0_avx2, avx2),
        ] {
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

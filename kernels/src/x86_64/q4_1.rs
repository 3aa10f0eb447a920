//! Q4_1 x Q8_1 on x86: the one-row dot (AVX2), the decode mat-vecs (AVX-512 VNNI quads, AVX2
//! pairs), the block's unpacking for the prefill tiles ([`Nibble32`]), and this format's kernels.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::block32::{dot_nibble, nibble_offers, vec_dot_entry, Nibble32};
use super::gemv::quads::{quad_blocks, quad_halves, quad_levels, ZERO32};
use super::gemv::{
    gemv_multi_with, gemv_with, halves4, multi_runs, reduce16, store_row, sum4x4, MAGIC_BITS,
    MAGIC_F, MAX_BLOCKS,
};
use super::prefetch::{gemv_streams_prefetch, prefetch_lines};
use super::{debug_assert_avx2, debug_assert_vnni, f16_table, lut};
use crate::blocks::{cast_blocks, BlockQ4_1, BlockQ8_1};
use crate::dispatch::{Offer, VecDotFn};
use crate::views::{Rows, RowsMut};

/// Q4_1's kernels.
pub(super) const OFFERS: &[Offer] =
    &nibble_offers::<BlockQ4_1>(gemv_q4_1_q8_1, gemv_multi_q4_1_q8_1);

impl Nibble32 for BlockQ4_1 {
    const VEC_DOT: VecDotFn = vec_dot_q4_1_q8_1;
}

vec_dot_entry!(/// Q4_1 weights . Q8_1 activations.
    vec_dot_q4_1_q8_1, dot_nibble::<BlockQ4_1>, BlockQ4_1, BlockQ8_1, debug_assert_avx2);

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
    let quads = &mut quads[..a.len().div_ceil(4)];
    for (ab, o) in a.chunks(4).zip(quads.iter_mut()) {
        // A last partial quad is padded with zero activations and scales (see `quad_blocks`).
        let (lo, hi) = quad_halves(std::array::from_fn(|j| {
            ab.get(j).map_or(&ZERO32, |y| &y.qs)
        }));
        let p = o.as_mut_ptr();
        // SAFETY: `p` points to a writable, 64-byte aligned `QuadQ4_1`; `lo` and `hi` are 64 bytes
        // at offsets 0 and 64, `ds` is written right after; all before the slice is read below.
        unsafe {
            _mm512_store_si512(std::ptr::addr_of_mut!((*p).lo) as *mut __m512i, lo);
            _mm512_store_si512(std::ptr::addr_of_mut!((*p).hi) as *mut __m512i, hi);
            std::ptr::addr_of_mut!((*p).ds).write(std::array::from_fn(|i| {
                ab.get(i / 2)
                    .map_or(0.0, |y| lut(t, if i % 2 == 0 { y.d } else { y.s }))
            }));
        }
    }
    // SAFETY: every element of `quads` was written above; `MaybeUninit<T>` has `T`'s layout.
    unsafe { &*(quads as *const [MaybeUninit<QuadQ4_1>] as *const [QuadQ4_1]) }
}

/// One Q4_1 row against `NT` tokens' quads (a last partial quad padded: [`quad_blocks`]). Per
/// quad, once for all tokens: the levels from `quad_levels`, the four blocks' `d_w` and `m_w`
/// (adjacent f16 pairs) converted by one `vcvtph2ps`. Per token: two chained `vpdpbusd` from
/// zero; the scales multiplied by the token's `[d_a, s_a]`: the `d` products spread to the sum's
/// lanes by `vpermps`, the `m * s_a` products summed as they are (their lanes are picked out at
/// the end). Each token's arithmetic is the same whatever `NT` is (so batched decode gives the
/// bits a token gets alone).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn rows_dot_q4_1<const NT: usize>(
    w: &[BlockQ4_1],
    quads: [&[QuadQ4_1]; NT],
    a: [&[BlockQ8_1]; NT],
) -> [f32; NT] {
    let nq = w.len().div_ceil(4);
    for t in 0..NT {
        assert!(a[t].len() == w.len() && quads[t].len() == nq);
    }
    let sidx = _mm512_set_epi32(6, 6, 6, 6, 4, 4, 4, 4, 2, 2, 2, 2, 0, 0, 0, 0);
    let mut acc = [_mm512_setzero_ps(); NT];
    let mut acc_m = [_mm256_setzero_ps(); NT];
    let pf = gemv_streams_prefetch();
    let mut step = |q: usize, wq: [&BlockQ4_1; 4]| {
        let (lo, hi) = quad_levels(std::array::from_fn(|j| &wq[j].qs));
        let dm = |j: usize| wq[j].d.to_bits() as i32 | (wq[j].m.to_bits() as i32) << 16;
        let wdm = _mm256_cvtph_ps(_mm_set_epi32(dm(3), dm(2), dm(1), dm(0)));
        for t in 0..NT {
            let qd = &quads[t][q];
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
            let f = _mm256_mul_ps(wdm, ds);
            acc_m[t] = _mm256_add_ps(acc_m[t], f);
            let scale = _mm512_permutexvar_ps(sidx, _mm512_castps256_ps512(f));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[t]);
        }
    };
    let full = w.len() / 4;
    for q in 0..full {
        let wq = &w[4 * q..4 * q + 4];
        if pf {
            // The quad's 80 bytes: two lines.
            prefetch_lines::<2, _>(wq.as_ptr());
        }
        step(q, [&wq[0], &wq[1], &wq[2], &wq[3]]);
    }
    if full < nq {
        step(full, quad_blocks(w, full));
    }
    let mut out = [0.0f32; NT];
    for t in 0..NT {
        // The odd lanes of acc_m hold the m * s_a sums.
        let odd = _mm256_permutevar8x32_ps(acc_m[t], _mm256_set_epi32(7, 5, 3, 1, 7, 5, 3, 1));
        let x = _mm256_castps256_ps128(odd);
        let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        let m = _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
        out[t] = reduce16(acc[t]) + m;
    }
    out
}

/// Q4_1 rows against `NT` tokens: the `GemvFn` body with NT = 1 (several tokens go through
/// [`run_q4_1_wide`], which gives the same bits with less work per token).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q4_1_multi<const NT: usize>(w: Rows<u8>, a: [&[BlockQ8_1]; NT], out: &mut RowsMut<f32>) {
    let mut buf = [[MaybeUninit::<QuadQ4_1>::uninit(); MAX_BLOCKS / 4]; NT];
    let mut quads: [&[QuadQ4_1]; NT] = [&[]; NT];
    for (t, b) in buf.iter_mut().enumerate() {
        quads[t] = quads_q4_1(a[t], b);
    }
    for r in 0..w.n() {
        store_row(out, r, rows_dot_q4_1(cast_blocks(w.row(r)), quads, a));
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q4_1(w: Rows<u8>, a: &[BlockQ8_1], out: &mut [f32]) {
    run_q4_1_multi::<1>(w, [a], &mut RowsMut::one(out));
}

/// The multi-token layout of one token's activation quad: `lo`, `hi` as [`QuadQ4_1`], and each
/// block's `d_a` spread over its four lanes (so the scales need no per-token permute).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct WideQ4_1 {
    lo: [i8; 64],
    hi: [i8; 64],
    da: [f32; 16],
}

/// Rows against `NT` (2..=4) tokens with less work per token than [`rows_dot_q4_1`] and the same
/// bits: per quad the weight scales `d_w` spread to the blocks' lanes and the mins `m_w` spread
/// to the four tokens' groups of lanes (two `vpermps` of the one F16C conversion), then per token
/// two `vpdpbusd`, the scales times its spread `d_a`, one conversion and one FMA; the offset terms
/// `m_w * s_a` of all tokens by one multiplication and one addition per quad (lane 4t + j: token
/// t, block j, the values and operations of the one-token kernel's odd lanes).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn rows_dot_q4_1_wide<const NT: usize>(
    w: &[BlockQ4_1],
    quads: [&[WideQ4_1]; NT],
    sa: &[[f32; 16]],
) -> [f32; NT] {
    let nq = w.len().div_ceil(4);
    assert!(sa.len() == nq && quads.iter().all(|q| q.len() == nq));
    // From the converted [d0, m0, d1, m1, ..]: d_j to lanes 4j..4j + 4; m_j to lanes 4t + j.
    let didx = _mm512_set_epi32(6, 6, 6, 6, 4, 4, 4, 4, 2, 2, 2, 2, 0, 0, 0, 0);
    let midx = _mm512_set_epi32(7, 5, 3, 1, 7, 5, 3, 1, 7, 5, 3, 1, 7, 5, 3, 1);
    let (magic, magic_f) = (_mm512_set1_epi32(MAGIC_BITS), _mm512_set1_ps(MAGIC_F));
    let mut acc = [_mm512_setzero_ps(); NT];
    let mut acc_m = _mm512_setzero_ps();
    let pf = gemv_streams_prefetch();
    for q in 0..nq {
        let wq = quad_blocks(w, q);
        if pf {
            // The quad's 80 bytes: two lines.
            prefetch_lines::<2, _>(wq[0]);
        }
        let (lo, hi) = quad_levels(std::array::from_fn(|j| &wq[j].qs));
        let dm = |j: usize| wq[j].d.to_bits() as i32 | (wq[j].m.to_bits() as i32) << 16;
        let wdm =
            _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_set_epi32(dm(3), dm(2), dm(1), dm(0))));
        let (wd, wm) = (
            _mm512_permutexvar_ps(didx, wdm),
            _mm512_permutexvar_ps(midx, wdm),
        );
        // SAFETY: `sa[q]` is 64 bytes at a 64-byte aligned address (`SaQuad`).
        let s4 = unsafe { _mm512_load_ps(sa[q].as_ptr()) };
        acc_m = _mm512_add_ps(acc_m, _mm512_mul_ps(wm, s4));
        for t in 0..NT {
            let qd = &quads[t][q];
            // SAFETY: the fields of `qd` are 64 bytes each at 64-byte aligned addresses.
            let (alo, ahi, da) = unsafe {
                (
                    _mm512_load_si512(qd.lo.as_ptr() as *const __m512i),
                    _mm512_load_si512(qd.hi.as_ptr() as *const __m512i),
                    _mm512_load_ps(qd.da.as_ptr()),
                )
            };
            // From the magic seed: |sum| <= 8 * 15 * 128 < 2^22, so the float is exact (as
            // `vcvtdq2ps` would give it) without the conversion (see `MAGIC_BITS`).
            let s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(magic, lo, alo), hi, ahi);
            let sf = _mm512_sub_ps(_mm512_castsi512_ps(s), magic_f);
            let scale = _mm512_mul_ps(wd, da);
            acc[t] = _mm512_fmadd_ps(sf, scale, acc[t]);
        }
    }
    // Lane 4t: token t's sum by the one-token kernel's tree (`reduce16`), plus its four offset
    // lanes summed as the one-token kernel sums its odd lanes.
    let z = _mm512_setzero_ps();
    let v = std::array::from_fn(|t| if t < NT { acc[t] } else { z });
    let sums = _mm512_add_ps(sum4x4(halves4(v)), sum4x4(acc_m));
    let mut l = [0.0f32; 16];
    // SAFETY: `l` is 16 writable f32; unaligned store.
    unsafe { _mm512_storeu_ps(l.as_mut_ptr(), sums) };
    std::array::from_fn(|t| l[4 * t])
}

/// One quad's `s_a` of up to four tokens: lane 4t + j = token t's block 4q + j (zero where a
/// token or block is absent).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct SaQuad([f32; 16]);

/// Q4_1 rows against `NT` tokens (the `GemvMultiFn` body).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn run_q4_1_wide<const NT: usize>(w: Rows<u8>, a: [&[BlockQ8_1]; NT], out: &mut RowsMut<f32>) {
    let t16 = f16_table();
    let nb = a[0].len();
    let nq = nb.div_ceil(4);
    let mut buf = [[MaybeUninit::<WideQ4_1>::uninit(); MAX_BLOCKS / 4]; NT];
    let mut sbuf = [SaQuad([0.0; 16]); MAX_BLOCKS / 4];
    let mut quads: [&[WideQ4_1]; NT] = [&[]; NT];
    for (t, b) in buf.iter_mut().enumerate() {
        let b = &mut b[..nq];
        for ((ab, o), sq) in a[t].chunks(4).zip(b.iter_mut()).zip(sbuf.iter_mut()) {
            // A last partial quad is padded with zero activations and scales (`quad_blocks`).
            let (lo, hi) = quad_halves(std::array::from_fn(|j| {
                ab.get(j).map_or(&ZERO32, |y| &y.qs)
            }));
            let p = o.as_mut_ptr();
            // SAFETY: `p` points to a writable, 64-byte aligned `WideQ4_1`, whose three fields
            // are 64 bytes each at offsets 0, 64 and 128; all are written before the slice is
            // read below.
            unsafe {
                _mm512_store_si512(std::ptr::addr_of_mut!((*p).lo) as *mut __m512i, lo);
                _mm512_store_si512(std::ptr::addr_of_mut!((*p).hi) as *mut __m512i, hi);
                std::ptr::addr_of_mut!((*p).da).write(std::array::from_fn(|i| {
                    ab.get(i / 4).map_or(0.0, |y| lut(t16, y.d))
                }));
            }
            for (j, y) in ab.iter().enumerate() {
                sq.0[4 * t + j] = lut(t16, y.s);
            }
        }
        // SAFETY: every element of `b` was written above; `MaybeUninit<T>` has `T`'s layout.
        quads[t] = unsafe { &*(b as *const [MaybeUninit<WideQ4_1>] as *const [WideQ4_1]) };
    }
    // SAFETY: `SaQuad` is a transparent-layout wrapper of [f32; 16] (repr(C), one field).
    let sa = unsafe { &*(&sbuf[..nq] as *const [SaQuad] as *const [[f32; 16]]) };
    for r in 0..w.n() {
        store_row(out, r, rows_dot_q4_1_wide(cast_blocks(w.row(r)), quads, sa));
    }
}

/// Q4_1 weights x Q8_1 activations (`GemvFn`), four blocks per 512-bit step.
fn gemv_q4_1_q8_1(n: usize, w: Rows<u8>, a: &[u8], out: &mut [f32]) {
    gemv_with::<BlockQ4_1, BlockQ8_1>(n, w, a, out, vec_dot_q4_1_q8_1, run_q4_1, debug_assert_vnni);
}

/// Q4_1 weights x up to four tokens' Q8_1 activations (`GemvMultiFn`): `gemv_q4_1_q8_1`'s bits
/// per token, the weights unpacked once.
fn gemv_multi_q4_1_q8_1(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
    let runs = multi_runs!(run_q4_1_wide, BlockQ8_1);
    gemv_multi_with::<BlockQ4_1, BlockQ8_1>(
        n,
        w,
        a,
        out,
        vec_dot_q4_1_q8_1,
        runs,
        debug_assert_vnni,
    );
}

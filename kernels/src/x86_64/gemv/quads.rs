//! The quads of the AVX-512 VNNI decode mat-vecs of the 4-bit formats (Q4_0, Q5_0 x Q8_0 and Q4_1
//! x Q8_1): four 32-element blocks per 512-bit step, the activation quads laid out once per call.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::{pack_scales, MAGIC_BITS, MAGIC_F};
use crate::blocks::BlockQ8_0;
use crate::x86_64::{f16_table, load16, load32i, lut};

/// The activation bytes of the blocks that pad a last partial quad.
pub(in crate::x86_64) static ZERO32: [i8; 32] = [0; 32];

/// The four weight blocks of quad `q` of a row (`q < w.len().div_ceil(4)`): blocks 4q..4q + 4,
/// where a last partial quad repeats the row's last block. The activation quads pad the same
/// places with zero bytes and zero scales, so the repeated blocks add exact zeros: the whole row
/// goes through the quad loop, with no one-row kernel for the last `nb % 4` blocks.
#[inline(always)]
pub(in crate::x86_64) fn quad_blocks<W>(w: &[W], q: usize) -> [&W; 4] {
    if 4 * q + 4 <= w.len() {
        let b: &[W; 4] = w[4 * q..4 * q + 4].try_into().expect("4 blocks");
        [&b[0], &b[1], &b[2], &b[3]]
    } else {
        let last = w.len() - 1;
        std::array::from_fn(|j| &w[(4 * q + j).min(last)])
    }
}

/// The first and second halves of four activation blocks' 32 bytes, as `[a0[0..16], a1[0..16],
/// a2[0..16], a3[0..16]]` and `[a0[16..32], ..]`: the order a quad of 4-bit blocks' low and high
/// nibbles come out of `quad_levels`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
pub(in crate::x86_64) fn quad_halves(qs: [&[i8; 32]; 4]) -> (__m512i, __m512i) {
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
pub(in crate::x86_64) fn quad_levels(qs: [&[u8; 16]; 4]) -> (__m512i, __m512i) {
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
/// seed per i32 lane (`-8 *` the sum of the lane's 4 `lo` and 4 `hi` bytes, plus `MAGIC_BITS`).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(in crate::x86_64) struct QuadQ4_0 {
    lo: [i8; 64],
    hi: [i8; 64],
    seed: [i32; 16],
}

/// Makes the quads of `a` (`a.len().div_ceil(4)` of them, seeded for levels offset by `off`: 8
/// for Q4_0, 16 for Q5_0) and each quad's four `d_a`. A last partial quad is padded with zero
/// activations and `d_a` (see [`quad_blocks`]).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
pub(in crate::x86_64) fn quads_q4_0<'p>(
    a: &[BlockQ8_0],
    off: i8,
    quads: &'p mut [MaybeUninit<QuadQ4_0>],
    da: &'p mut [MaybeUninit<[f32; 4]>],
) -> (&'p [QuadQ4_0], &'p [[f32; 4]]) {
    let t = f16_table();
    let nq = a.len().div_ceil(4);
    let (quads, da) = (&mut quads[..nq], &mut da[..nq]);
    let offv = _mm512_set1_epi8(off);
    for ((ab, o), d) in a.chunks(4).zip(quads.iter_mut()).zip(da.iter_mut()) {
        let (lo, hi) = quad_halves(std::array::from_fn(|j| {
            ab.get(j).map_or(&ZERO32, |y| &y.qs)
        }));
        let sum = _mm512_dpbusd_epi32(
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), offv, lo),
            offv,
            hi,
        );
        // Plus the magic bias: the sums are then read as floats without a conversion
        // (`quad_step`).
        let seed = _mm512_sub_epi32(_mm512_set1_epi32(MAGIC_BITS), sum);
        let p = o.as_mut_ptr();
        // SAFETY: `p` points to a writable, 64-byte aligned `QuadQ4_0`, whose three fields are 64
        // bytes each at offsets 0, 64 and 128; all are written before the slice is read below.
        unsafe {
            _mm512_store_si512(std::ptr::addr_of_mut!((*p).lo) as *mut __m512i, lo);
            _mm512_store_si512(std::ptr::addr_of_mut!((*p).hi) as *mut __m512i, hi);
            _mm512_store_si512(std::ptr::addr_of_mut!((*p).seed) as *mut __m512i, seed);
        }
        d.write(std::array::from_fn(|j| {
            ab.get(j).map_or(0.0, |y| lut(t, y.d))
        }));
    }
    // SAFETY: every element of both slices was written above; `MaybeUninit<T>` has `T`'s layout.
    unsafe {
        (
            &*(quads as *const [MaybeUninit<QuadQ4_0>] as *const [QuadQ4_0]),
            &*(da as *const [MaybeUninit<[f32; 4]>] as *const [[f32; 4]]),
        )
    }
}

/// The four weight scales `d_w` of a quad as f32 (one F16C conversion of the packed bits): the
/// part of [`quad_step`] every token of a multi-token call shares.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
pub(in crate::x86_64) fn quad_scales(d: [half::f16; 4]) -> __m128 {
    let bits = pack_scales(d.map(|h| h.to_bits()));
    _mm_cvtph_ps(_mm_cvtsi64_si128(bits))
}

/// One quad of four 32-element blocks whose levels (`lo`, `hi`: 0..15 for Q4_0, 0..31 for Q5_0)
/// match the layout of the activation quad `qd`: two chained `vpdpbusd` from its seed, then the
/// four scales `d_w * d_a` (`wd` from [`quad_scales`]) made in an xmm and spread to the blocks'
/// lanes by one `vpermps`; returns
/// `acc` plus the four blocks' dot products (in the lanes).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
pub(in crate::x86_64) fn quad_step(
    lo: __m512i,
    hi: __m512i,
    qd: &QuadQ4_0,
    wd: __m128,
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
    // SAFETY: `da` is 16 readable bytes; unaligned load.
    let da4 = unsafe { _mm_loadu_ps(da.as_ptr()) };
    let d4 = _mm_mul_ps(wd, da4);
    let sidx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    let scale = _mm512_permutexvar_ps(sidx, _mm512_castps128_ps512(d4));
    // |sum| <= 8 * 31 * 128 + 16 * 8 * 128 < 2^22 from the biased seed: the float is exact, the
    // value `vcvtdq2ps` gives, by a subtraction off port 0 (see `MAGIC_BITS`).
    let sf = _mm512_sub_ps(_mm512_castsi512_ps(s), _mm512_set1_ps(MAGIC_F));
    _mm512_fmadd_ps(sf, scale, acc)
}

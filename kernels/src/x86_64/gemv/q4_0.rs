//! Q4_0 and Q5_0 x Q8_0 decode mat-vecs (AVX-512 VNNI): four blocks per 512-bit step, the
//! activation quads laid out once per call (Q5_0 adds its fifth bits to the same quads).

use super::*;

/// The unsigned levels of a Q4_0 block in activation order (low nibbles, then high).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
pub(super) fn levels_q4_0(x: &BlockQ4_0) -> __m256i {
    let raw = _mm256_broadcastsi128_si256(load16(&x.qs));
    _mm256_and_si256(
        _mm256_srlv_epi64(raw, _mm256_set_epi64x(4, 4, 0, 0)),
        _mm256_set1_epi8(0x0F),
    )
}

/// The first and second halves of four activation blocks' 32 bytes, as `[a0[0..16], a1[0..16],
/// a2[0..16], a3[0..16]]` and `[a0[16..32], ..]`: the order a quad of 4-bit blocks' low and high
/// nibbles come out of `quad_levels`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
pub(super) fn quad_halves(qs: [&[i8; 32]; 4]) -> (__m512i, __m512i) {
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
pub(super) fn quad_levels(qs: [&[u8; 16]; 4]) -> (__m512i, __m512i) {
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
pub(super) struct QuadQ4_0 {
    lo: [i8; 64],
    hi: [i8; 64],
    seed: [i32; 16],
}

/// Makes the quads of `a` (`a.len() / 4` of them, seeded for levels offset by `off`: 8 for Q4_0,
/// 16 for Q5_0) and each quad's four `d_a`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
pub(super) fn quads_q4_0<'p>(
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
pub(super) fn quad_step(
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
    let bits = pack_scales(d.map(|h| h.to_bits()));
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
pub(super) fn row_dot_q4_0(
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
pub(super) fn run_q4_0(w: Rows<u8>, a: &[BlockQ8_0], out: &mut [f32]) {
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
    for (r, o) in out.iter_mut().enumerate() {
        let row = cast_blocks::<BlockQ4_0>(w.row(r));
        *o = row_dot_q4_0(row, quads, da, &tail[..nt]);
    }
}

/// One Q5_0 row against the quads (seeded with -16 x the activation sums), the last `w.len() % 4`
/// blocks by the one-row AVX2 kernel. As `row_dot_q4_0`, plus the fifth bits: the four blocks'
/// `qh` words give two 64-bit masks (bits 0..16 of each for the low nibbles' bytes, 16..32 for the
/// high), and one masked byte add of 16 per register puts them in (levels 0..31).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
pub(super) fn row_dot_q5_0(
    w: &[BlockQ5_0],
    quads: &[QuadQ4_0],
    da: &[[f32; 4]],
    a: &[BlockQ8_0],
) -> f32 {
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
        crate::x86_64::quants::dot_q5_0(&w[4 * nq..], &a[4 * nq..])
    } else {
        0.0
    };
    _mm512_reduce_add_ps(acc) + tail
}

/// Q5_0 rows (`GemvFn` body), four blocks per 512-bit step.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn run_q5_0(w: Rows<u8>, a: &[BlockQ8_0], out: &mut [f32]) {
    let mut qbuf = [MaybeUninit::<QuadQ4_0>::uninit(); MAX_BLOCKS / 4];
    let mut dbuf = [MaybeUninit::<[f32; 4]>::uninit(); MAX_BLOCKS / 4];
    let (quads, da) = quads_q4_0(a, 16, &mut qbuf, &mut dbuf);
    for (r, o) in out.iter_mut().enumerate() {
        *o = row_dot_q5_0(cast_blocks(w.row(r)), quads, da, a);
    }
}

gemv_entry!(/// Q4_0 weights x Q8_0 activations (`GemvFn`).
    gemv_q4_0_q8_0, BlockQ4_0, BlockQ8_0, MAX_BLOCKS * 32, crate::x86_64::quants::vec_dot_q4_0_q8_0, run_q4_0);

gemv_entry!(/// Q5_0 weights x Q8_0 activations (`GemvFn`).
    gemv_q5_0_q8_0, BlockQ5_0, BlockQ8_0, MAX_BLOCKS * 32, crate::x86_64::quants::vec_dot_q5_0_q8_0, run_q5_0);

//! Q4_K and Q6_K x Q8_K decode mat-vecs: AVX-512 VNNI (`vpdpbusd`, `packssdw`, one `vpdpwssd` per
//! register pair) and Q4_K on AVX2 alone.

use super::*;

/// Q4_K on 512-bit registers: per activation super-block, made once per call, the 256 bytes in
/// the order the weights' levels come out of two 64-byte loads of `qs` (low nibbles of bytes 0..64
/// are elements 0..32 and 64..96, high nibbles 32..64 and 96..128, and the same for the second
/// half), the 8 sub-block sums (for the mins) and `d`.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(super) struct SuperQ4K {
    act: [i8; 256],
    bsum: [i16; 8],
    d: f32,
}

/// Super-blocks (at most 64: rows of up to 16384 elements) a call's stack buffer holds.
pub(super) const MAX_SUPER: usize = MAX_BLOCKS / 8;

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn supers_q4_k<'p>(
    a: &[BlockQ8_K],
    out: &'p mut [MaybeUninit<SuperQ4K>],
) -> &'p [SuperQ4K] {
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
pub(super) const fn q4_k_scale_ctl(first: u8) -> [u8; 64] {
    let mut c = [0x80u8; 64];
    let mut i = 0;
    while i < 32 {
        let (lane, word) = (i / 8, i % 8);
        c[2 * i] = first + if lane >= 2 { 2 } else { 0 } + if word >= 4 { 1 } else { 0 };
        i += 1;
    }
    c
}
pub(super) const Q4_K_SCALE_CTL: [[u8; 64]; 2] = [q4_k_scale_ctl(0), q4_k_scale_ctl(4)];

/// A Q4_K super-block's 6-bit scales and mins unpacked in one xmm (two `pshufd`, a variable
/// shift, and/or): bytes `[scales 0..8, mins 0..8]`; and `[d * d_a, dmin * d_a]` (F16C).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn q4_k_header(x: &BlockQ4_K, d_a: f32) -> (__m128i, __m128) {
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
pub(super) fn row_dot_q4_k(w: &[BlockQ4_K], sup: &[SuperQ4K]) -> f32 {
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
pub(super) fn run_q4_k(w: Rows<u8>, a: &[BlockQ8_K], out: &mut [f32]) {
    let mut buf = [MaybeUninit::<SuperQ4K>::uninit(); MAX_SUPER];
    let sup = supers_q4_k(a, &mut buf);
    for (r, o) in out.iter_mut().enumerate() {
        *o = row_dot_q4_k(cast_blocks(w.row(r)), sup);
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
pub(super) const Q6_K_SCALE_IDX: [[i16; 32]; 2] = {
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
pub(super) fn row_dot_q6_k(w: &[BlockQ6_K], a: &[BlockQ8_K]) -> f32 {
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
        let d = _mm512_set1_ps(crate::x86_64::h2f(x.d) * y.d);
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
pub(super) fn row_dot_q4_k_avx2(w: &[BlockQ4_K], sup: &[SuperQ4K]) -> f32 {
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
    crate::x86_64::hsum_ps(acc) - _mm_cvtss_f32(m)
}

/// Q4_K rows on AVX2 (`GemvFn` body).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn run_q4_k_avx2(w: Rows<u8>, a: &[BlockQ8_K], out: &mut [f32]) {
    let mut buf = [MaybeUninit::<SuperQ4K>::uninit(); MAX_SUPER];
    let sup = supers_q4_k(a, &mut buf);
    for (r, o) in out.iter_mut().enumerate() {
        *o = row_dot_q4_k_avx2(cast_blocks(w.row(r)), sup);
    }
}

gemv_entry!(/// Q4_K weights x Q8_K activations on AVX2 alone (`GemvFn`).
    gemv_q4_k_q8_k_avx2, BlockQ4_K, BlockQ8_K, MAX_SUPER * 256, crate::x86_64::k_quants::vec_dot_q4_k_q8_k, run_q4_k_avx2);

gemv_entry!(/// Q4_K weights x Q8_K activations (`GemvFn`).
    gemv_q4_k_q8_k, BlockQ4_K, BlockQ8_K, MAX_SUPER * 256, crate::x86_64::k_quants::vec_dot_q4_k_q8_k, run_q4_k);

/// Q6_K weights x Q8_K activations (`GemvFn`).
pub(in crate::x86_64) fn gemv_q6_k_q8_k(n: usize, w: Rows<u8>, a: &[u8], out: &mut [f32]) {
    let out = check::<BlockQ6_K, BlockQ8_K>(n, &w, a, out);
    let a = cast_blocks::<BlockQ8_K>(a);
    for (r, o) in out.iter_mut().enumerate() {
        crate::x86_64::debug_assert_vnni();
        // SAFETY: reachable only through the kernel table, filled with this kernel only after
        // detecting AVX2, FMA, F16C, AVX-512 F/BW/VL and VNNI; lengths checked above.
        *o = unsafe { row_dot_q6_k(cast_blocks(w.row(r)), a) };
    }
}

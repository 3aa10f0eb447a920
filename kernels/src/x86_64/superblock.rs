//! What the k-quants (super-blocks of 256 elements x Q8_K) share on x86: the Q4_K/Q5_K scale
//! unpacking and one-row dot body, the scale-broadcast helpers, and the tests of every k-quant's
//! one-row dot against the scalar reference.
//!
//! Per super-block the integer sum is exact: unsigned weight levels (0..4, 0..8, 0..16, 0..32,
//! 0..64) times signed activations with `maddubs` (|pair| <= 63 * 128 * 2 < 2^15), times the 4-,
//! 6- or 8-bit sub-block scales with `madd`, summed in i32. The min / offset terms use the
//! activations' precomputed `bsums`. Only the final f32 scaling and accumulation order differ from
//! the scalar reference.

use std::arch::x86_64::*;

use super::{load32, load32i};
use crate::blocks::BlockQ8_K;

/// Unpacks the 12 packed bytes of Q4_K/Q5_K into 8 scales (bytes 0..8) and 8 mins (bytes 8..16)
/// (ggml's `utmp` trick, equivalent to `get_scale_min_k4` for j = 0..8).
#[inline]
pub(super) fn unpack_scales_mins(s: &[u8; 12]) -> [u32; 4] {
    const KMASK1: u32 = 0x3f3f3f3f;
    const KMASK2: u32 = 0x0f0f0f0f;
    const KMASK3: u32 = 0x03030303;
    let u0 = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let u1 = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
    let u2 = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    let scales_lo = u0 & KMASK1;
    let scales_hi = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
    let mins_lo = u1 & KMASK1;
    let mins_hi = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
    [scales_lo, scales_hi, mins_lo, mins_hi]
}

/// Shuffle mask that broadcasts i16 lane `k` (of each 128-bit half) to all 8 lanes of the half.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn bcast16_mask(k: i32) -> __m256i {
    _mm256_set1_epi16((((2 * k + 1) << 8) | (2 * k)) as i16)
}

/// Shared Q4_K/Q5_K body; `high(j, lo_or_hi)` returns the fifth-bit bytes (0 or 0x10) for chunk j.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
#[allow(clippy::too_many_arguments)]
pub(super) fn dot_k4_like(
    d: f32,
    dmin: f32,
    scales: &[u8; 12],
    qs: &[u8; 128],
    a: &BlockQ8_K,
    high: impl Fn(usize) -> (__m256i, __m256i),
    acc: &mut __m256,
    acc_m: &mut __m128,
) {
    let u = unpack_scales_mins(scales);
    // mins_and_scales: i16 lanes 0..8 = scales, 8..16 = mins.
    let ms = _mm256_cvtepu8_epi16(_mm_set_epi32(
        u[3] as i32,
        u[2] as i32,
        u[1] as i32,
        u[0] as i32,
    ));
    // Min term: sum over sub-blocks of min * (sum of its 32 activations).
    // SAFETY: bsums is 16 i16 = 32 readable bytes; unaligned load.
    let bs = unsafe { _mm256_loadu_si256(a.bsums.as_ptr() as *const __m256i) };
    let q8s = _mm_hadd_epi16(
        _mm256_castsi256_si128(bs),
        _mm256_extracti128_si256::<1>(bs),
    );
    let prod = _mm_madd_epi16(_mm256_extracti128_si256::<1>(ms), q8s);
    *acc_m = _mm_fmadd_ps(_mm_set1_ps(-dmin * a.d), _mm_cvtepi32_ps(prod), *acc_m);

    let scales = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(ms));
    let m4 = _mm256_set1_epi8(0x0F);
    let mut sumi = _mm256_setzero_si256();
    for j in 0..4 {
        let sc_l = _mm256_shuffle_epi8(scales, bcast16_mask(2 * j as i32));
        let sc_h = _mm256_shuffle_epi8(scales, bcast16_mask(2 * j as i32 + 1));
        let bits = load32(qs[32 * j..32 * j + 32].try_into().expect("32 bytes"));
        let (hl, hh) = high(j);
        let ql = _mm256_or_si256(_mm256_and_si256(bits, m4), hl);
        let qh = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4), hh);
        let al = load32i(a.qs[64 * j..64 * j + 32].try_into().expect("32 bytes"));
        let ah = load32i(a.qs[64 * j + 32..64 * j + 64].try_into().expect("32 bytes"));
        let pl = _mm256_madd_epi16(sc_l, _mm256_maddubs_epi16(ql, al));
        let ph = _mm256_madd_epi16(sc_h, _mm256_maddubs_epi16(qh, ah));
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
    }
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), _mm256_cvtepi32_ps(sumi), *acc);
}

/// i16 lanes 0..8 = byte g of `bytes`, lanes 8..16 = byte g + 1 (both sign-extended).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn pair_scales(bytes: __m128i, g: usize) -> __m256i {
    let g = g as i64;
    let mask = _mm_set_epi64x((g + 1) * 0x0101010101010101, g * 0x0101010101010101);
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(bytes, mask))
}

#[cfg(test)]
mod tests {
    use super::super::q2_k::vec_dot_q2_k_q8_k;
    use super::super::q3_k::{q3_scales, vec_dot_q3_k_q8_k};
    use super::super::q4_k::vec_dot_q4_k_q8_k;
    use super::super::q5_k::vec_dot_q5_k_q8_k;
    use super::super::q6_k::vec_dot_q6_k_q8_k;
    use super::super::test_util::{close, f16_bits, Lcg};
    use super::*;
    use crate::blocks::{as_bytes, cast_blocks};
    use crate::scalar;

    /// Random Q8_K activation blocks with consistent bsums and q in [-127, 127] (or all -128 /
    /// 127 extremes when `extreme`).
    fn q8k_blocks(rng: &mut Lcg, nb: usize, extreme: Option<i8>) -> Vec<u32> {
        let mut blocks = Vec::with_capacity(nb);
        for _ in 0..nb {
            let mut b = BlockQ8_K {
                d: rng.f32() * 0.01,
                qs: [0; 256],
                bsums: [0; 16],
            };
            for q in b.qs.iter_mut() {
                *q = match extreme {
                    Some(e) => e,
                    None => ((rng.next_u64() % 255) as i32 - 127) as i8,
                };
            }
            for g in 0..16 {
                b.bsums[g] = b.qs[16 * g..16 * g + 16].iter().map(|&q| q as i16).sum();
            }
            blocks.push(b);
        }
        // 4-byte aligned bytes (BlockQ8_K has an f32).
        let bytes = as_bytes(&blocks);
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    fn u32_bytes(v: &[u32]) -> &[u8] {
        // SAFETY: u32 storage viewed as bytes; exact length.
        unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len() * 4) }
    }

    fn check(
        name: &str,
        simd: fn(usize, &[u8], &[u8]) -> f32,
        scalar_dot: &dyn Fn(&[u8], &[u8]) -> f32,
        wsize: usize,
        wscales: &[usize],
    ) {
        if !super::super::has_avx2() {
            return;
        }
        let mut rng = Lcg(99);
        for nb in [1usize, 2, 3, 8, 9] {
            for round in 0..30 {
                let extreme = match round {
                    0 => Some(-128i8),
                    1 => Some(127),
                    _ => None,
                };
                let mut w = if round == 2 {
                    vec![0xFFu8; nb * wsize]
                } else {
                    rng.bytes(nb * wsize)
                };
                for b in 0..nb {
                    for &o in wscales {
                        w[b * wsize + o..b * wsize + o + 2].copy_from_slice(&f16_bits(&mut rng));
                    }
                }
                let a32 = q8k_blocks(&mut rng, nb, extreme);
                let a = u32_bytes(&a32);
                let got = simd(nb * 256, &w, a);
                let want = scalar_dot(&w, a);
                let mag: f32 = (0..nb)
                    .map(|b| {
                        scalar_dot(&w[b * wsize..(b + 1) * wsize], &a[b * 292..(b + 1) * 292]).abs()
                    })
                    .sum();
                let tol = 1e-6 * (nb as f32 + 8.0) * mag + 1e-6;
                assert!(
                    close(got, want, tol),
                    "{name} nb={nb} round={round}: simd {got} scalar {want}"
                );
            }
        }
    }

    #[test]
    fn q4_k_matches_scalar() {
        check(
            "q4_k",
            vec_dot_q4_k_q8_k,
            &|w, a| scalar::q4_k::vec_dot_q4_k_q8_k(cast_blocks(w), cast_blocks(a)),
            144,
            &[0, 2],
        );
    }

    #[test]
    fn q5_k_matches_scalar() {
        check(
            "q5_k",
            vec_dot_q5_k_q8_k,
            &|w, a| scalar::q5_k::vec_dot_q5_k_q8_k(cast_blocks(w), cast_blocks(a)),
            176,
            &[0, 2],
        );
    }

    #[test]
    fn q3_scales_match_scalar_unpack() {
        let mut rng = Lcg(3);
        for _ in 0..1000 {
            let b: [u8; 12] = rng.bytes(12).try_into().unwrap();
            let u = q3_scales(&b);
            let got: Vec<u8> = u.iter().flat_map(|w| w.to_le_bytes()).collect();
            assert_eq!(got, scalar::q3_k::unpack_scales(&b).to_vec());
        }
    }

    #[test]
    fn q2_k_matches_scalar() {
        check(
            "q2_k",
            vec_dot_q2_k_q8_k,
            &|w, a| scalar::q2_k::vec_dot_q2_k_q8_k(cast_blocks(w), cast_blocks(a)),
            84,
            &[80, 82],
        );
    }

    #[test]
    fn q3_k_matches_scalar() {
        check(
            "q3_k",
            vec_dot_q3_k_q8_k,
            &|w, a| scalar::q3_k::vec_dot_q3_k_q8_k(cast_blocks(w), cast_blocks(a)),
            110,
            &[108],
        );
    }

    #[test]
    fn q6_k_matches_scalar() {
        check(
            "q6_k",
            vec_dot_q6_k_q8_k,
            &|w, a| scalar::q6_k::vec_dot_q6_k_q8_k(cast_blocks(w), cast_blocks(a)),
            210,
            &[208],
        );
    }
}

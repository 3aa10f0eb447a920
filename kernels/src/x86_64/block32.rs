//! What the 32-element formats share on x86: the [`Nibble32`] trait (Q4_0, Q4_1, Q5_0, Q5_1:
//! levels, offset, min, fifth bits), the nibble and fifth-bit unpacking, and the one-row dot body
//! their `vec_dot` kernels (and Q8_0's) are written over.
//!
//! Weights are unpacked to unsigned bytes q (0..16 or 0..32) and multiplied with the signed
//! activations by `maddubs` (|pair sum| <= 31 * 128 * 2, no i16 saturation); the offset of Q4_0/Q5_0
//! (q - 8, q - 16) is removed in i16 by subtracting `maddubs(offset, a)`, so each block's integer sum
//! is exact for every input byte, -128 included. Blocks go two at a time into two f32 accumulators
//! to break the FMA dependency chain.

use std::arch::x86_64::*;

use super::gemv::pairs::{gemv_multi_pairs, gemv_pairs};
use super::prefetch::prefetch_lines;
use super::{f16_table, load16, load32i, lut};
use super::{tile, AVX2, AVXVNNI, VNNI};
use crate::blocks::{ActBlock32, NibbleBlock};
use crate::dispatch::{offer, GemvFn, GemvMultiFn, Offer, OfferedKernel as K, VecDotFn};

/// A nibble format ([`NibbleBlock`]) on x86: its one-row kernel, and the unpacking the AVX2 pair
/// mat-vec, the prefill tile and the one-row dot are written once over. Each format's file
/// implements it.
pub(super) trait Nibble32: NibbleBlock {
    /// The format's one-row kernel (AVX2), for the blocks a mat-vec leaves over.
    const VEC_DOT: VecDotFn;

    /// The unsigned levels q (0..16, or 0..32 with the fifth bits), elements in order.
    ///
    /// # Safety
    /// The CPU must have AVX2 (every caller is compiled for it).
    #[inline(always)]
    unsafe fn levels(&self) -> __m256i {
        // SAFETY: the caller guarantees AVX2.
        unsafe {
            let q = nibbles(self.qs());
            match self.qh() {
                Some(h) => _mm256_or_si256(q, fifth_bits(h)),
                None => q,
            }
        }
    }
}

/// 32 nibbles -> 32 bytes: low nibbles (elements 0..16) in the low lane, high nibbles (16..32) high.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn nibbles(qs: &[u8; 16]) -> __m256i {
    // Both halves loaded by one broadcast load (no shuffle uop), the high half shifted by 4.
    let raw = _mm256_broadcastsi128_si256(load16(qs));
    _mm256_and_si256(
        _mm256_srlv_epi64(raw, _mm256_set_epi64x(4, 4, 0, 0)),
        _mm256_set1_epi8(0x0F),
    )
}

/// Bit j of `bits` -> byte j = 0x10 when set, 0 otherwise (the fifth bit of Q5 weights).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn fifth_bits(bits: u32) -> __m256i {
    let v = _mm256_set1_epi32(bits as i32);
    // Byte k takes byte k / 8 of `bits` ...
    let shuf = _mm256_set_epi64x(
        0x0303030303030303,
        0x0202020202020202,
        0x0101010101010101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(v, shuf);
    // ... and is all ones iff its bit k % 8 is set.
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    let set = _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// Exact i32 lane sums of sum_j (q_j - off) * a_j for unsigned q (< 32) and off (<= 16).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_offset(q: __m256i, a: __m256i, off: __m256i) -> __m256i {
    let p = _mm256_sub_epi16(_mm256_maddubs_epi16(q, a), _mm256_maddubs_epi16(off, a));
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// Exact i32 lane sums of sum_j q_j * a_j for unsigned q (< 128).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_unsigned(q: __m256i, a: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(q, a), _mm256_set1_epi16(1))
}

/// Sums `d_k * s_k` (+ `extra_k` when `EXTRA`) over the blocks, two blocks per step into two
/// accumulators (named, so they stay in registers and the FMA chains interleave).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn accumulate<W, A, const EXTRA: bool>(
    w: &[W],
    a: &[A],
    f: impl Fn(&W, &A) -> (f32, __m256i, f32),
) -> f32 {
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let (mut e0, mut e1) = (0.0f32, 0.0f32);
    let mut wp = w.chunks_exact(2);
    let mut ap = a.chunks_exact(2);
    for (x, y) in (&mut wp).zip(&mut ap) {
        prefetch_lines::<1, _>(x.as_ptr());
        let (d0, s0, x0) = f(&x[0], &y[0]);
        let (d1, s1, x1) = f(&x[1], &y[1]);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d0), _mm256_cvtepi32_ps(s0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(d1), _mm256_cvtepi32_ps(s1), acc1);
        if EXTRA {
            e0 += x0;
            e1 += x1;
        }
    }
    for (x, y) in wp.remainder().iter().zip(ap.remainder()) {
        let (d0, s0, x0) = f(x, y);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d0), _mm256_cvtepi32_ps(s0), acc0);
        if EXTRA {
            e0 += x0;
        }
    }
    let sum = super::hsum_ps(_mm256_add_ps(acc0, acc1));
    if EXTRA {
        sum + (e0 + e1)
    } else {
        sum
    }
}

/// The one-row dot of a nibble format: per block the exact integer sum of levels x activations
/// (less the offset's share, `dot_offset`, for Q4_0/Q5_0; the min times the activations' `s` for
/// Q4_1/Q5_1), scaled by `d_w * d_a`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_nibble<W: Nibble32>(w: &[W], a: &[W::Act]) -> f32 {
    let t = f16_table();
    if W::OFFSET != 0 {
        let off = _mm256_set1_epi8(W::OFFSET as i8);
        accumulate::<_, _, false>(w, a, |x, y| {
            // SAFETY: this function is compiled with AVX2.
            let q = unsafe { x.levels() };
            let s = dot_offset(q, load32i(y.qs()), off);
            (lut(t, x.d()) * lut(t, y.d()), s, 0.0)
        })
    } else {
        accumulate::<_, _, true>(w, a, |x, y| {
            // SAFETY: as above.
            let q = unsafe { x.levels() };
            let s = dot_unsigned(q, load32i(y.qs()));
            let m = lut(t, x.m()) * lut(t, y.s().unwrap_or(half::f16::ZERO));
            (lut(t, x.d()) * lut(t, y.d()), s, m)
        })
    }
}

/// The kernels of a nibble format, slowest first: its one-row dot, the AVX2 pair mat-vec and the
/// AVX2 tile, the AVX-VNNI tile, then the AVX-512 VNNI mat-vec `gemv_vnni` and tile, which replace
/// them where the CPU has VNNI. (Q5_1 has no VNNI mat-vec: it passes the AVX2 one, which then
/// serves both levels.)
pub(super) const fn nibble_offers<W: Nibble32>(
    gemv_vnni: GemvFn,
    multi_vnni: GemvMultiFn,
) -> [Offer; 8] {
    let (t, a) = (W::TYPE, <W::Act as ActBlock32>::TYPE);
    [
        offer(t, a, AVX2, K::VecDot(W::VEC_DOT)),
        offer(t, a, AVX2, K::Gemv(gemv_pairs::<W>)),
        offer(t, a, AVX2, K::GemvMulti(gemv_multi_pairs::<W>)),
        offer(t, a, AVX2, K::Tile(tile::avx2::gemm_tile::<W>)),
        offer(t, a, AVXVNNI, K::Tile(tile::avxvnni::gemm_tile::<W>)),
        offer(t, a, VNNI, K::Gemv(gemv_vnni)),
        offer(t, a, VNNI, K::GemvMulti(multi_vnni)),
        offer(t, a, VNNI, K::Tile(tile::vnni::gemm_tile::<W>)),
    ]
}

/// Defines a `VecDotFn` entry point: checks the row lengths, then runs `$kernel` (compiled for
/// `$features`, asserted in debug builds by `$assert`) on the typed blocks.
macro_rules! vec_dot_entry {
    ($(#[$m:meta])* $name:ident, $kernel:path, $w:ty, $a:ty, $assert:path) => {
        $(#[$m])*
        pub(super) fn $name(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let (w, a) = super::row_blocks::<$w, $a>(n, w, a);
            $assert();
            // SAFETY: reachable only through the kernel table, which `install` fills with this
            // kernel only after detecting the features `$kernel` is compiled for.
            unsafe { $kernel(w, a) }
        }
    };
}
pub(super) use vec_dot_entry;

#[cfg(test)]
mod tests {
    use super::super::q4_0::{vec_dot_q4_0_q8_0, vec_dot_q4_0_q8_0_vnni};
    use super::super::q4_1::vec_dot_q4_1_q8_1;
    use super::super::q5_0::vec_dot_q5_0_q8_0;
    use super::super::q5_1::vec_dot_q5_1_q8_1;
    use super::super::q8_0::{vec_dot_q8_0_q8_0, vec_dot_q8_0_q8_0_vnni};
    use super::super::test_util::{close, f16_bits, Lcg};
    use crate::blocks::{as_bytes, BlockQ8_0};
    use crate::dispatch::{scalar_kernels, VecDotFn};
    use crate::types::GgmlType;

    /// Random blocks: random bytes everywhere, then finite moderate f16 scales at `scale_offsets`.
    fn random_blocks(rng: &mut Lcg, nb: usize, size: usize, scale_offsets: &[usize]) -> Vec<u8> {
        let mut v = rng.bytes(nb * size);
        for b in 0..nb {
            for &o in scale_offsets {
                v[b * size + o..b * size + o + 2].copy_from_slice(&f16_bits(rng));
            }
        }
        v
    }

    /// Byte offsets of the f16 scale fields in a block of `ty` (d, and m or s where it has one).
    fn scale_offsets(ty: GgmlType) -> &'static [usize] {
        match ty {
            GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_1 => &[0, 2],
            _ => &[0],
        }
    }

    /// `simd` (a `VecDotFn` for `ty`) against the scalar table's, on random blocks and extremes.
    fn check(name: &str, simd: VecDotFn, ty: GgmlType) {
        let sk = scalar_kernels().get(ty).unwrap();
        let reference = sk.vec_dot.unwrap();
        let (wsize, wscales) = (ty.block_bytes(), scale_offsets(ty));
        let scalar_dot = |w: &[u8], a: &[u8]| reference(w.len() / wsize * 32, w, a);
        let (asize, ascales) = (
            sk.vec_dot_type.block_bytes(),
            scale_offsets(sk.vec_dot_type),
        );
        if !super::super::has_avx2() {
            return;
        }
        let mut rng = Lcg(1234);
        for nb in [1usize, 2, 3, 7, 8, 64, 65] {
            for _ in 0..20 {
                let w = random_blocks(&mut rng, nb, wsize, wscales);
                let a = random_blocks(&mut rng, nb, asize, ascales);
                let got = simd(nb * 32, &w, &a);
                let want = scalar_dot(&w, &a);
                // Exact integer block sums; only the f32 accumulation order differs, so the error
                // is bounded by a few ulps of the sum of |block terms|.
                let mag: f32 = (0..nb)
                    .map(|b| {
                        scalar_dot(
                            &w[b * wsize..(b + 1) * wsize],
                            &a[b * asize..(b + 1) * asize],
                        )
                        .abs()
                    })
                    .sum();
                let tol = 1e-6 * (nb as f32 + 4.0) * mag;
                assert!(
                    close(got, want, tol),
                    "{name} nb={nb}: simd {got} scalar {want}"
                );
            }
        }
        // Extremes: every activation byte -128 and every weight byte 0xFF / 0x80.
        for wb in [0xFFu8, 0x80, 0x00] {
            for ab in [0x80u8, 0x7F] {
                let nb = 5;
                let mut w = vec![wb; nb * wsize];
                let mut a = vec![ab; nb * asize];
                for b in 0..nb {
                    for &o in wscales {
                        w[b * wsize + o..b * wsize + o + 2]
                            .copy_from_slice(&half::f16::from_f32(0.5).to_bits().to_le_bytes());
                    }
                    for &o in ascales {
                        a[b * asize + o..b * asize + o + 2]
                            .copy_from_slice(&half::f16::from_f32(0.25).to_bits().to_le_bytes());
                    }
                }
                let got = simd(nb * 32, &w, &a);
                let want = scalar_dot(&w, &a);
                assert!(
                    close(got, want, 1e-3),
                    "{name} extremes w={wb:#x} a={ab:#x}: simd {got} scalar {want}"
                );
            }
        }
    }

    #[test]
    fn legacy_formats_match_scalar() {
        for (name, f, ty) in [
            ("q4_0", vec_dot_q4_0_q8_0 as VecDotFn, GgmlType::Q4_0),
            ("q5_0", vec_dot_q5_0_q8_0, GgmlType::Q5_0),
            ("q4_1", vec_dot_q4_1_q8_1, GgmlType::Q4_1),
            ("q5_1", vec_dot_q5_1_q8_1, GgmlType::Q5_1),
            ("q8_0", vec_dot_q8_0_q8_0, GgmlType::Q8_0),
        ] {
            check(name, f, ty);
        }
    }

    #[test]
    fn vnni_variants_match_scalar() {
        if !super::super::has_avx512vnni() {
            return;
        }
        check("q4_0 vnni", vec_dot_q4_0_q8_0_vnni, GgmlType::Q4_0);
        check("q8_0 vnni", vec_dot_q8_0_q8_0_vnni, GgmlType::Q8_0);
    }

    #[test]
    #[should_panic(expected = "weight row is 17 bytes")]
    fn short_row_is_rejected() {
        let w = [0u8; 17];
        let a: Vec<BlockQ8_0> = vec![BlockQ8_0 {
            d: half::f16::ZERO,
            qs: [0; 32],
        }];
        vec_dot_q4_0_q8_0(32, &w, as_bytes(&a));
    }
}

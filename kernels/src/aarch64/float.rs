//! F32, F16 and BF16 weights · f32 activations on NEON: 16 elements per step into four fused
//! multiply-add accumulators; halves widen with `fcvtl`/`fcvtl2`, bf16 with a 16-bit shift.

use core::arch::aarch64::*;

use half::{bf16, f16};

use super::simd::{f16_to_f32, f16x4_to_f32, f16x8_high_to_f32};
use crate::dispatch::{Backend, Offer};
use crate::views::{Rows, RowsMut};

/// Sums four accumulators.
#[inline]
#[target_feature(enable = "neon")]
fn hsum4(acc: [float32x4_t; 4]) -> f32 {
    vaddvq_f32(vaddq_f32(
        vaddq_f32(acc[0], acc[1]),
        vaddq_f32(acc[2], acc[3]),
    ))
}

/// `sum_i w[i] * a[i]`, f32 accumulation. Requires `w.len() == a.len()`.
#[target_feature(enable = "neon")]
fn dot_f32(w: &[f32], a: &[f32]) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 4];
    let (w16, a16) = (w.chunks_exact(16), a.chunks_exact(16));
    let (wr, ar) = (w16.remainder(), a16.remainder());
    for (x, y) in w16.zip(a16) {
        for k in 0..4 {
            // SAFETY: `x` and `y` have 16 elements; the loads read 4k..4k+4, k < 4.
            let (xv, yv) = unsafe {
                (
                    vld1q_f32(x.as_ptr().add(4 * k)),
                    vld1q_f32(y.as_ptr().add(4 * k)),
                )
            };
            acc[k] = vfmaq_f32(acc[k], xv, yv);
        }
    }
    let mut tail = 0.0f32;
    for (&x, &y) in wr.iter().zip(ar) {
        tail += x * y;
    }
    hsum4(acc) + tail
}

/// `sum_i f32(w[i]) * a[i]`. Requires `w.len() == a.len()`.
#[target_feature(enable = "neon")]
fn dot_f16(w: &[f16], a: &[f32]) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 4];
    let (w16, a16) = (w.chunks_exact(16), a.chunks_exact(16));
    let (wr, ar) = (w16.remainder(), a16.remainder());
    for (x, y) in w16.zip(a16) {
        // SAFETY: `x` has 16 halves (32 bytes, `f16` is a 2-byte repr(transparent) u16) and `y`
        // 16 floats; the loads read exactly those.
        let (h0, h1, y0, y1, y2, y3) = unsafe {
            let h = x.as_ptr() as *const u16;
            let p = y.as_ptr();
            (
                vld1q_u16(h),
                vld1q_u16(h.add(8)),
                vld1q_f32(p),
                vld1q_f32(p.add(4)),
                vld1q_f32(p.add(8)),
                vld1q_f32(p.add(12)),
            )
        };
        acc[0] = vfmaq_f32(acc[0], f16x4_to_f32(vget_low_u16(h0)), y0);
        acc[1] = vfmaq_f32(acc[1], f16x8_high_to_f32(h0), y1);
        acc[2] = vfmaq_f32(acc[2], f16x4_to_f32(vget_low_u16(h1)), y2);
        acc[3] = vfmaq_f32(acc[3], f16x8_high_to_f32(h1), y3);
    }
    let mut tail = 0.0f32;
    for (&x, &y) in wr.iter().zip(ar) {
        tail += f16_to_f32(x.to_bits()) * y;
    }
    hsum4(acc) + tail
}

/// `sum_i f32(w[i]) * a[i]` for bf16 weights (bf16 -> f32 is a 16-bit left shift). Requires
/// `w.len() == a.len()`.
#[target_feature(enable = "neon")]
fn dot_bf16(w: &[bf16], a: &[f32]) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 4];
    let (w16, a16) = (w.chunks_exact(16), a.chunks_exact(16));
    let (wr, ar) = (w16.remainder(), a16.remainder());
    for (x, y) in w16.zip(a16) {
        // SAFETY: `x` has 16 bf16 (32 bytes, `bf16` is a 2-byte repr(transparent) u16) and `y`
        // 16 floats; the loads read exactly those.
        let (h0, h1, y0, y1, y2, y3) = unsafe {
            let h = x.as_ptr() as *const u16;
            let p = y.as_ptr();
            (
                vld1q_u16(h),
                vld1q_u16(h.add(8)),
                vld1q_f32(p),
                vld1q_f32(p.add(4)),
                vld1q_f32(p.add(8)),
                vld1q_f32(p.add(12)),
            )
        };
        let w0 = vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h0)));
        let w1 = vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h0));
        let w2 = vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h1)));
        let w3 = vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h1));
        acc[0] = vfmaq_f32(acc[0], w0, y0);
        acc[1] = vfmaq_f32(acc[1], w1, y1);
        acc[2] = vfmaq_f32(acc[2], w2, y2);
        acc[3] = vfmaq_f32(acc[3], w3, y3);
    }
    let mut tail = 0.0f32;
    for (&x, &y) in wr.iter().zip(ar) {
        tail += f32::from_bits((x.to_bits() as u32) << 16) * y;
    }
    hsum4(acc) + tail
}

/// `NG` (<= `MULTI_DOT_GROUP`) vectors against every F16 row: each 8 halves of a row are widened once and FMA'd
/// into the `NG` pairs of accumulators, then each (vector, row) sum is reduced.
#[target_feature(enable = "neon")]
#[inline]
fn multi_rows_f16<const NG: usize>(rows: Rows<u8>, x: Rows<f32>, mut out: RowsMut<f32>) {
    let len = x.row_len();
    let xs: [&[f32]; NG] = x.first();
    for i in 0..rows.n() {
        let row = rows.row(i);
        let mut acc = [[vdupq_n_f32(0.0); 2]; NG];
        let mut k = 0;
        while k + 8 <= len {
            // SAFETY: 2 * (k + 8) <= 2 * len = row.len(); `vld1q_u8` has no alignment requirement.
            let h = vreinterpretq_u16_u8(unsafe { vld1q_u8(row.as_ptr().add(2 * k)) });
            let (r0, r1) = (f16x4_to_f32(vget_low_u16(h)), f16x8_high_to_f32(h));
            for (a, xg) in acc.iter_mut().zip(&xs) {
                let xk = &xg[k..k + 8];
                // SAFETY: `xk` is 8 readable floats.
                let (x0, x1) = unsafe { (vld1q_f32(xk.as_ptr()), vld1q_f32(xk.as_ptr().add(4))) };
                a[0] = vfmaq_f32(a[0], r0, x0);
                a[1] = vfmaq_f32(a[1], r1, x1);
            }
            k += 8;
        }
        let mut tail = [0.0f32; NG];
        while k < len {
            let r = f16_to_f32(u16::from_le_bytes([row[2 * k], row[2 * k + 1]]));
            for (t, xg) in tail.iter_mut().zip(&xs) {
                *t += r * xg[k];
            }
            k += 1;
        }
        for g in 0..NG {
            out.row_mut(g)[i] = vaddvq_f32(vaddq_f32(acc[g][0], acc[g][1])) + tail[g];
        }
    }
}

/// F16 rows . several f32 vectors (`MultiDotFn`), in groups of up to `MULTI_DOT_GROUP` vectors.
pub(crate) fn multi_dot_f16(rows: Rows<u8>, x: Rows<f32>, out: RowsMut<f32>) {
    crate::dispatch::multi_dot_groups(2, rows, x, out, |x, out| {
        // SAFETY: NEON is part of the aarch64 baseline; the views were checked by
        // `multi_dot_groups`, and every access inside is bounds-checked.
        unsafe { crate::dispatch::by_group_size!(x.n(), multi_rows_f16(rows, x, out)) }
    });
}

/// `VecDotFn` for F32 · F32. Panics unless both rows hold exactly `n` floats (4-byte aligned).
pub(crate) fn vec_dot_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = super::rows::<f32, f32>(n, w, a);
    // SAFETY: NEON is part of the aarch64 baseline.
    unsafe { dot_f32(w, a) }
}

/// `VecDotFn` for F16 · F32. Panics unless the rows hold exactly `n` elements (aligned).
pub(crate) fn vec_dot_f16_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = super::rows::<f16, f32>(n, w, a);
    // SAFETY: NEON is part of the aarch64 baseline.
    unsafe { dot_f16(w, a) }
}

/// `VecDotFn` for BF16 · F32. Panics unless the rows hold exactly `n` elements (aligned).
pub(crate) fn vec_dot_bf16_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = super::rows::<bf16, f32>(n, w, a);
    // SAFETY: NEON is part of the aarch64 baseline.
    unsafe { dot_bf16(w, a) }
}

/// This module's kernels (see [`crate::dispatch::install_offers`]).
pub(super) const OFFERS: &[Offer] = {
    use crate::dispatch::offer as o;
    use crate::dispatch::OfferedKernel::*;
    use crate::types::GgmlType as T;
    &[
        o(T::F32, T::F32, Backend::Neon, VecDot(vec_dot_f32)),
        o(T::F16, T::F32, Backend::Neon, VecDot(vec_dot_f16_f32)),
        o(T::F16, T::F32, Backend::Neon, MultiDot(multi_dot_f16)),
        o(T::BF16, T::F32, Backend::Neon, VecDot(vec_dot_bf16_f32)),
    ]
};

#[cfg(test)]
mod tests {
    //! The float kernels against the scalar oracle.

    use crate::aarch64::float_kernel;
    use crate::aarch64::test_util::*;
    use crate::dispatch::scalar_kernels;

    #[test]
    fn float_vec_dot_matches_scalar() {
        let mut rng = Rng(7);
        for ty in FLOAT_TYPES {
            let scalar = scalar_kernels().get(ty).unwrap().vec_dot.unwrap();
            let fast = float_kernel(ty).unwrap();
            for n in [0usize, 1, 3, 15, 16, 17, 31, 33, 64, 100, 1000, 4096] {
                let x: Vec<f32> = (0..n).map(|_| rng.unit() * 4.0).collect();
                let mut w = Buf::zeroed(n * ty.block_bytes());
                (scalar_kernels().get(ty).unwrap().quantize_row_ref.unwrap())(&x, w.bytes_mut());
                let mut a = Buf::zeroed(n * 4);
                for c in a.bytes_mut().chunks_exact_mut(4) {
                    c.copy_from_slice(&rng.unit().to_le_bytes());
                }
                let want = scalar(n, w.bytes(), a.bytes());
                let got = fast(n, w.bytes(), a.bytes());
                let mut wd = vec![0.0f32; n];
                (scalar_kernels().get(ty).unwrap().dequantize_row.unwrap())(w.bytes(), &mut wd);
                let ad: Vec<f32> = a
                    .bytes()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                let mag: f64 = wd
                    .iter()
                    .zip(&ad)
                    .map(|(&p, &q)| (p as f64 * q as f64).abs())
                    .sum();
                check_close(&format!("{ty} n={n}"), got, want, mag, n / 16 + 16);
            }
        }
    }
}

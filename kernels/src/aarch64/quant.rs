//! Activation quantizers on NEON, byte-identical with the scalar `from_float` for every finite
//! input: Q8_0 and Q8_1 (d = amax / 127, multiplier `id = 127 / amax`, 0 when amax = 0, ties to
//! even with `fcvtns`; Q8_1 adds `s = f16(d * sum(q))`) and Q8_K (ggml's reference: iscale =
//! -127 / max with max the signed value of largest magnitude, first one on ties; ties to even;
//! `bsums`). Scales go through the scalar module's f32 -> f16 conversion, so they match bit for bit.

use core::arch::aarch64::*;

use half::f16;

use crate::blocks::{cast_blocks_mut, BlockQ8_0, BlockQ8_1, BlockQ8_K, QK, QK_K};
use crate::dispatch::{Backend, Offer};
use crate::scalar::f32_to_f16;

/// Quantizes 32 values to `qs` with d = amax / 127; returns (d, sum of the quantized values).
#[inline]
#[target_feature(enable = "neon")]
fn q8_block(x: &[f32], qs: &mut [i8; QK]) -> (f32, i32) {
    assert_eq!(x.len(), QK);
    // SAFETY: `x` has 32 elements (asserted); load k reads x[4k..4k+4], k < 8.
    let v: [float32x4_t; 8] = core::array::from_fn(|k| unsafe { vld1q_f32(x.as_ptr().add(4 * k)) });
    let mut m = [vdupq_n_f32(0.0); 4];
    for k in 0..4 {
        m[k] = vmaxq_f32(vabsq_f32(v[2 * k]), vabsq_f32(v[2 * k + 1]));
    }
    let amax = vmaxvq_f32(vmaxq_f32(vmaxq_f32(m[0], m[1]), vmaxq_f32(m[2], m[3])));
    let d = amax / 127.0;
    // 0 for an all-zero block and for blocks so small that 127 / amax overflows (the scalar rule).
    let id = crate::scalar::q8_0::act_multiplier(amax);
    let mut q16 = [vdupq_n_s16(0); 4];
    for k in 0..4 {
        let i0 = vcvtnq_s32_f32(vmulq_n_f32(v[2 * k], id));
        let i1 = vcvtnq_s32_f32(vmulq_n_f32(v[2 * k + 1], id));
        q16[k] = vcombine_s16(vqmovn_s32(i0), vqmovn_s32(i1));
    }
    let q0 = vcombine_s8(vqmovn_s16(q16[0]), vqmovn_s16(q16[1]));
    let q1 = vcombine_s8(vqmovn_s16(q16[2]), vqmovn_s16(q16[3]));
    // SAFETY: `qs` is 32 bytes; the stores write 0..16 and 16..32.
    unsafe {
        vst1q_s8(qs.as_mut_ptr(), q0);
        vst1q_s8(qs.as_mut_ptr().add(16), q1);
    }
    (d, vaddlvq_s8(q0) as i32 + vaddlvq_s8(q1) as i32)
}

/// Q8_0 activation quantizer (`QuantizeRowFn`). Panics unless `out` holds exactly the Q8_0 bytes
/// of `x` (a whole number of 32-element blocks).
pub(crate) fn from_float_q8_0(x: &[f32], out: &mut [u8]) {
    #[target_feature(enable = "neon")]
    fn run(x: &[f32], y: &mut [BlockQ8_0]) {
        for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
            let (d, _) = q8_block(xb, &mut yb.qs);
            yb.d = f16::from_bits(f32_to_f16(d));
        }
    }
    let y = cast_blocks_mut::<BlockQ8_0>(out);
    assert_eq!(
        x.len(),
        y.len() * QK,
        "from_float_q8_0: {} values for {} blocks",
        x.len(),
        y.len()
    );
    // SAFETY: NEON is part of the aarch64 baseline.
    unsafe { run(x, y) }
}

/// Q8_1 activation quantizer (`QuantizeRowFn`). Panics unless `out` holds exactly the Q8_1 bytes
/// of `x` (a whole number of 32-element blocks).
pub(crate) fn from_float_q8_1(x: &[f32], out: &mut [u8]) {
    #[target_feature(enable = "neon")]
    fn run(x: &[f32], y: &mut [BlockQ8_1]) {
        for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
            let (d, sum) = q8_block(xb, &mut yb.qs);
            yb.d = f16::from_bits(f32_to_f16(d));
            yb.s = f16::from_bits(f32_to_f16(d * sum as f32));
        }
    }
    let y = cast_blocks_mut::<BlockQ8_1>(out);
    assert_eq!(
        x.len(),
        y.len() * QK,
        "from_float_q8_1: {} values for {} blocks",
        x.len(),
        y.len()
    );
    // SAFETY: NEON is part of the aarch64 baseline.
    unsafe { run(x, y) }
}

/// Q8_K activation quantizer (`QuantizeRowFn`), ggml's `quantize_row_q8_K_ref`. Panics unless
/// `out` holds exactly the Q8_K bytes of `x` (a whole number of 256-element blocks).
pub(crate) fn from_float_q8_k(x: &[f32], out: &mut [u8]) {
    #[target_feature(enable = "neon")]
    fn run(x: &[f32], y: &mut [BlockQ8_K]) {
        for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
            // Largest magnitude; `fmaxnm` skips NaN as the scalar `ax > amax` test does.
            let mut m = vdupq_n_f32(0.0);
            for c in xb.chunks_exact(4) {
                // SAFETY: `c` has 4 elements.
                m = vmaxnmq_f32(m, vabsq_f32(unsafe { vld1q_f32(c.as_ptr()) }));
            }
            let amax = vmaxnmvq_f32(m);
            // The first value of that magnitude, with its sign (NaN never compares equal).
            let max = xb.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0);
            if !(amax > 0.0) || max == 0.0 {
                yb.d = 0.0;
                yb.qs = [0; QK_K];
                yb.bsums = [0; QK_K / 16];
                continue;
            }
            let iscale = -127.0 / max;
            if !iscale.is_finite() {
                // A block of values below ~1e-37: the reference's nearest_int trick turns the
                // infinite products into 0 (and d into -0.0); do the same.
                yb.d = 1.0 / iscale;
                yb.qs = [0; QK_K];
                yb.bsums = [0; QK_K / 16];
                continue;
            }
            let cap = vdupq_n_s32(127);
            for (g, (xg, qg)) in xb
                .chunks_exact(16)
                .zip(yb.qs.chunks_exact_mut(16))
                .enumerate()
            {
                // SAFETY: `xg` has 16 elements; load k reads xg[4k..4k+4], k < 4.
                let i: [int32x4_t; 4] = core::array::from_fn(|k| {
                    let v = unsafe { vld1q_f32(xg.as_ptr().add(4 * k)) };
                    vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(v, iscale)), cap)
                });
                let lo = vcombine_s16(vqmovn_s32(i[0]), vqmovn_s32(i[1]));
                let hi = vcombine_s16(vqmovn_s32(i[2]), vqmovn_s32(i[3]));
                let q = vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi));
                // SAFETY: `qg` is 16 bytes.
                unsafe { vst1q_s8(qg.as_mut_ptr(), q) };
                yb.bsums[g] = vaddlvq_s8(q);
            }
            yb.d = 1.0 / iscale;
        }
    }
    let y = cast_blocks_mut::<BlockQ8_K>(out);
    assert_eq!(
        x.len(),
        y.len() * QK_K,
        "from_float_q8_k: {} values for {} blocks",
        x.len(),
        y.len()
    );
    // SAFETY: NEON is part of the aarch64 baseline.
    unsafe { run(x, y) }
}

/// This module's activation quantizers (see [`crate::dispatch::install_offers`]).
pub(super) const OFFERS: &[Offer] = {
    use crate::dispatch::offer as o;
    use crate::dispatch::OfferedKernel::FromFloat;
    use crate::types::GgmlType as T;
    &[
        o(T::Q8_0, T::Q8_0, Backend::Neon, FromFloat(from_float_q8_0)),
        o(T::Q8_1, T::Q8_1, Backend::Neon, FromFloat(from_float_q8_1)),
        o(T::Q8_K, T::Q8_K, Backend::Neon, FromFloat(from_float_q8_k)),
    ]
};

#[cfg(test)]
mod tests {
    //! The activation quantizers, byte for byte against the scalar ones.

    use crate::aarch64::from_float_kernel;
    use crate::aarch64::test_util::*;
    use crate::dispatch::scalar_kernels;
    use crate::types::GgmlType as T;

    /// Rows that stress the activation quantizers: random, zeros, ties, an outlier, tiny and huge
    /// values, all negative, and equal magnitudes of both signs (Q8_K takes the first one).
    fn quantizer_rows(n: usize) -> Vec<Vec<f32>> {
        let mut rng = Rng(1234);
        let mut rows = vec![
            (0..n).map(|_| rng.unit() * 3.0).collect::<Vec<f32>>(),
            vec![0.0; n],
            (0..n)
                .map(|j| ((j * 7 % 256) as f32 - 128.0) / 16.0)
                .collect(),
            (0..n)
                .map(|j| {
                    if j % 32 == 0 {
                        127.0 / 16.0
                    } else {
                        ((j * 5 % 254) as f32 - 127.0 + 0.5) / 16.0
                    }
                })
                .collect(),
            (0..n)
                .map(|j| {
                    if j == n / 3 {
                        1000.0
                    } else {
                        rng.unit() * 0.01
                    }
                })
                .collect(),
            (0..n).map(|_| rng.unit() * 1e-6).collect(),
            (0..n).map(|_| rng.unit() * 1e30).collect(),
            (0..n).map(|_| -(rng.unit().abs() + 0.05)).collect(),
            (0..n)
                .map(|j| if j % 2 == 0 { 2.5 } else { -2.5 })
                .collect(),
            (0..n)
                .map(|j| if j % 3 == 0 { -2.5 } else { 1.25 })
                .collect(),
        ];
        // One block of zeros in the middle of a random row.
        let mut r: Vec<f32> = (0..n).map(|_| rng.unit()).collect();
        r[..32].fill(0.0);
        rows.push(r);
        rows
    }

    #[test]
    fn from_float_byte_identical_to_scalar() {
        for ty in [T::Q8_0, T::Q8_1, T::Q8_K] {
            let scalar = scalar_kernels().get(ty).unwrap().from_float.unwrap();
            let fast = from_float_kernel(ty).unwrap();
            for n in [256usize, 512, 4096] {
                for (i, x) in quantizer_rows(n).iter().enumerate() {
                    let len = ty.row_bytes(n as u64).unwrap() as usize;
                    let (mut want, mut got) = (Buf::zeroed(len), Buf::zeroed(len));
                    scalar(x, want.bytes_mut());
                    fast(x, got.bytes_mut());
                    if let Some(pos) = want
                        .bytes()
                        .iter()
                        .zip(got.bytes())
                        .position(|(p, q)| p != q)
                    {
                        panic!(
                            "{ty} row {i} n={n}: first differing byte {pos} (block {})",
                            pos / ty.block_bytes()
                        );
                    }
                }
            }
        }
    }
}

//! The float formats F32, F16 (IEEE half) and BF16 (brain float): conversions as ggml does them,
//! row quantizers/dequantizers, and dot products with f32 activations.
//!
//! ferrolm pairs float weights with f32 activations (ggml pairs F16 with F16); the dot products
//! follow ggml's scalar `ggml_vec_dot_f32`/`_f16`/`_bf16`: each product in f32, summed in f64.

use half::{bf16, f16};

/// f32 -> IEEE half bits, round to nearest even, subnormals kept, NaN -> quiet NaN 0x7E00 with the
/// sign kept. This is ggml's portable `ggml_compute_fp32_to_fp16` (from the FP16 library), which
/// `libggml-base` used for every scale in the golden files; for non-NaN input every correctly
/// rounded conversion (F16C `vcvtps2ph`, `half`) gives the same bits.
#[inline]
pub fn f32_to_f16(f: f32) -> u16 {
    let scale_to_inf = f32::from_bits(0x7780_0000); // 2^112
    let scale_to_zero = f32::from_bits(0x0880_0000); // 2^-110
    let mut base = (f.abs() * scale_to_inf) * scale_to_zero;

    let w = f.to_bits();
    let shl1_w = w.wrapping_add(w);
    let sign = w & 0x8000_0000;
    let mut bias = shl1_w & 0xFF00_0000;
    if bias < 0x7100_0000 {
        bias = 0x7100_0000;
    }
    // Adding 2^(e-10) (with e the input's exponent, at least -14) rounds the mantissa to 10 bits in
    // the f32 adder, under the default round-to-nearest-even mode.
    base += f32::from_bits((bias >> 1) + 0x0780_0000);
    let bits = base.to_bits();
    let exp_bits = (bits >> 13) & 0x0000_7C00;
    let mantissa_bits = bits & 0x0000_0FFF;
    let nonsign = exp_bits + mantissa_bits;
    ((sign >> 16)
        | if shl1_w > 0xFF00_0000 {
            0x7E00
        } else {
            nonsign
        }) as u16
}

/// IEEE half bits -> f32, exact for every input (ggml's portable `ggml_compute_fp16_to_fp32`).
///
/// Branch-free bit arithmetic that inlines into the kernels' loops; `half`'s conversion checks
/// for F16C at run time on every call, which made it the bottleneck of the scalar dot products.
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    let w = (h as u32) << 16;
    let sign = w & 0x8000_0000;
    let two_w = w.wrapping_add(w);
    // Normal (and inf/NaN): move the exponent and mantissa into place, re-bias by 2^-112.
    let exp_offset = 0xE0u32 << 23;
    let exp_scale = f32::from_bits(0x0780_0000); // 2^-112
    let normalized = f32::from_bits((two_w >> 4) + exp_offset) * exp_scale;
    // Subnormal: place the mantissa under a 0.5 exponent and subtract 0.5 (exact).
    let magic_mask = 126u32 << 23;
    let denormalized = f32::from_bits((two_w >> 17) | magic_mask) - 0.5;
    let denormalized_cutoff = 1u32 << 27;
    let bits = if two_w < denormalized_cutoff {
        denormalized.to_bits()
    } else {
        normalized.to_bits()
    };
    f32::from_bits(sign | bits)
}

/// f32 -> bf16 bits as ggml's `ggml_compute_fp32_to_bf16` (at c392e5094): NaN keeps its top
/// bits and is forced quiet (`| 64`); everything else rounds to nearest even, subnormals kept
/// (not flushed), overflow rounds to infinity.
#[inline]
pub fn f32_to_bf16(s: f32) -> u16 {
    let u = s.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// bf16 bits -> f32 (exact).
#[inline]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// F32 "quantization" is a copy.
pub fn quantize_row_f32(x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "quantize_row_f32: length mismatch");
    y.copy_from_slice(x);
}

/// F32 dequantization is a copy.
pub fn dequantize_row_f32(x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "dequantize_row_f32: length mismatch");
    y.copy_from_slice(x);
}

/// x: [n] f32 -> y: [n] f16, round to nearest even.
pub fn quantize_row_f16(x: &[f32], y: &mut [f16]) {
    assert_eq!(x.len(), y.len(), "quantize_row_f16: length mismatch");
    for (o, &v) in y.iter_mut().zip(x) {
        *o = f16::from_bits(f32_to_f16(v));
    }
}

/// x: [n] f16 -> y: [n] f32.
pub fn dequantize_row_f16(x: &[f16], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "dequantize_row_f16: length mismatch");
    for (o, &v) in y.iter_mut().zip(x) {
        *o = f16_to_f32(v.to_bits());
    }
}

/// x: [n] f32 -> y: [n] bf16, as `ggml_compute_fp32_to_bf16`.
pub fn quantize_row_bf16(x: &[f32], y: &mut [bf16]) {
    assert_eq!(x.len(), y.len(), "quantize_row_bf16: length mismatch");
    for (o, &v) in y.iter_mut().zip(x) {
        *o = bf16::from_bits(f32_to_bf16(v));
    }
}

/// x: [n] bf16 -> y: [n] f32.
pub fn dequantize_row_bf16(x: &[bf16], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "dequantize_row_bf16: length mismatch");
    for (o, &v) in y.iter_mut().zip(x) {
        *o = bf16_to_f32(v.to_bits());
    }
}

/// sum_i w[i] * a[i]: products in f32, sum in f64 (ggml's scalar `ggml_vec_dot_f32`).
pub fn vec_dot_f32(w: &[f32], a: &[f32]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot_f32: length mismatch");
    let mut sum = 0.0f64;
    for (&x, &y) in w.iter().zip(a) {
        sum += (x * y) as f64;
    }
    sum as f32
}

/// F16 weights x f32 activations: each weight widened to f32, products in f32, sum in f64.
pub fn vec_dot_f16_f32(w: &[f16], a: &[f32]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot_f16_f32: length mismatch");
    let mut sum = 0.0f64;
    for (&x, &y) in w.iter().zip(a) {
        sum += (f16_to_f32(x.to_bits()) * y) as f64;
    }
    sum as f32
}

/// BF16 weights x f32 activations: each weight widened to f32, products in f32, sum in f64.
pub fn vec_dot_bf16_f32(w: &[bf16], a: &[f32]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot_bf16_f32: length mismatch");
    let mut sum = 0.0f64;
    for (&x, &y) in w.iter().zip(a) {
        sum += (bf16_to_f32(x.to_bits()) * y) as f64;
    }
    sum as f32
}

/// Reference for the F16 [`crate::dispatch::MultiDotFn`]: each dot summed in f64 like
/// [`vec_dot_f16_f32`]. Not in the scalar table (the per-row `vec_dot` loop is the fallback); the
/// oracle of the SIMD versions' tests.
pub fn multi_dot_f16_ref(
    rows: crate::views::Rows<u8>,
    x: crate::views::Rows<f32>,
    mut out: crate::views::RowsMut<f32>,
) {
    crate::dispatch::check_multi_dot_args(2, &rows, &x, &out);
    for g in 0..x.n() {
        let xv = x.row(g);
        let o = out.row_mut(g);
        for (i, oi) in o.iter_mut().enumerate() {
            let s: f64 = rows
                .row(i)
                .chunks_exact(2)
                .zip(xv)
                .map(|(h, &v)| f16_to_f32(u16::from_le_bytes([h[0], h[1]])) as f64 * v as f64)
                .sum();
            *oi = s as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every f32 bit pattern in a coarse sweep (plus the neighbours of every f16 rounding
    /// boundary region) converts exactly as `half`'s correctly rounded conversion, NaN aside.
    #[test]
    fn f16_conversion_matches_correct_rounding() {
        let mut bits: u32 = 0;
        loop {
            let f = f32::from_bits(bits);
            let ours = f32_to_f16(f);
            if f.is_nan() {
                assert_eq!(ours & 0x7fff, 0x7E00);
            } else {
                assert_eq!(ours, f16::from_f32(f).to_bits(), "f32 bits {bits:#010x}");
            }
            match bits.checked_add(4099) {
                Some(b) => bits = b,
                None => break,
            }
        }
        // Ties: halfway between 1.0 and the next half (1 + 2^-10) rounds to even (1.0).
        assert_eq!(f32_to_f16(1.0 + f32::powi(2.0, -11)), 0x3C00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * f32::powi(2.0, -11)), 0x3C02);
        // Smallest subnormal half, and half of it (a tie that rounds to even = 0).
        assert_eq!(f32_to_f16(f32::powi(2.0, -24)), 0x0001);
        assert_eq!(f32_to_f16(f32::powi(2.0, -25)), 0x0000);
        assert_eq!(f32_to_f16(65520.0), 0x7C00);
        assert_eq!(f32_to_f16(-f32::INFINITY), 0xFC00);
    }

    /// Every one of the 65536 halves widens exactly as `half` does (NaN stays NaN).
    #[test]
    fn f16_to_f32_exhaustive() {
        for h in 0..=u16::MAX {
            let want = f16::from_bits(h).to_f32();
            let got = f16_to_f32(h);
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#06x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{h:#06x}");
            }
        }
    }

    #[test]
    fn bf16_conversion_as_ggml() {
        assert_eq!(f32_to_bf16(1.0), 0x3F80);
        // Tie between 0x3F80 and 0x3F81 rounds to even.
        assert_eq!(f32_to_bf16(f32::from_bits(0x3F80_8000)), 0x3F80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3F81_8000)), 0x3F82);
        // Signalling NaN is quieted, payload top bits kept, sign kept.
        assert_eq!(f32_to_bf16(f32::from_bits(0xFF80_0001)), 0xFF80 | 64);
        assert_eq!(f32_to_bf16(f32::from_bits(0x7FC1_2345)), 0x7FC1 | 64);
        // Subnormals are rounded, not flushed.
        assert_eq!(f32_to_bf16(f32::from_bits(0x0000_8001)), 0x0001);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7F80);
        assert_eq!(bf16_to_f32(0x3F80), 1.0);
    }
}

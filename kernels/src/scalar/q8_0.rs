//! Q8_0: 32 weights per block, `x = d * q`; the activation partner of Q4_0, Q5_0 and Q8_0.

use super::{dequant_blocks, f2h, h2f, quant_blocks, round_half_away_i8, round_ties_even_i8};
use crate::blocks::{BlockQ8_0, QK};

/// Largest |x| of a block, with C's `MAX(a, b) = a > b ? a : b` semantics.
#[inline(always)]
pub(crate) fn block_amax(xb: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    for &v in xb {
        let a = v.abs();
        amax = if amax > a { amax } else { a };
    }
    amax
}

/// ggml's `quantize_row_q8_0_ref`. x: [32 * y.len()].
///
/// d = amax / 127, `q = roundf(x * (1 / d))`: a tie rounds away from zero.
pub fn quantize_row_q8_0_ref(x: &[f32], y: &mut [BlockQ8_0]) {
    for (xb, yb) in quant_blocks("quantize_row_q8_0_ref", x, y, QK) {
        let amax = block_amax(xb);
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb.d = f2h(d);
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = round_half_away_i8(v * id);
        }
    }
}

/// The activation multiplier `127 / amax`, or 0 when that is not finite: amax = 0, or
/// amax < 127 / f32::MAX (about 3.7e-37), where f16(d) = f16(amax / 127) is 0 anyway. Such a block
/// then quantizes to all-zero quants, the same on every backend, instead of whatever an infinite
/// multiplier gives (x86 converts inf and NaN to -128, NEON saturates inf to 127).
#[inline(always)]
pub fn act_multiplier(amax: f32) -> f32 {
    let id = 127.0 / amax;
    if id.is_finite() {
        id
    } else {
        0.0
    }
}

/// Activation quantizer (the CPU backend's `from_float`). x: [32 * y.len()].
///
/// d = amax / 127 as in the reference, but the multiplier is `id = 127 / amax` (see
/// [`act_multiplier`] for amax = 0 and tiny blocks) and a tie rounds to even, exactly as
/// llama.cpp's AVX2 path (`_mm256_round_ps`) does on the golden rows; the ferrolm SIMD versions
/// must give the same bytes.
pub fn from_float_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (xb, yb) in quant_blocks("from_float_q8_0", x, y, QK) {
        let amax = block_amax(xb);
        let d = amax / 127.0;
        let id = act_multiplier(amax);
        yb.d = f2h(d);
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = round_ties_even_i8(v * id);
        }
    }
}

/// ggml's `dequantize_row_q8_0`. y: [32 * x.len()].
pub fn dequantize_row_q8_0(x: &[BlockQ8_0], y: &mut [f32]) {
    for (xb, yb) in dequant_blocks("dequantize_row_q8_0", x, y, QK) {
        let d = h2f(xb.d);
        for (o, &q) in yb.iter_mut().zip(&xb.qs) {
            *o = q as f32 * d;
        }
    }
}

/// Integer part of one block: sum_j w_j * a_j, |sum| <= 32 * 128 * 128.
#[inline(always)]
pub fn block_isum(w: &BlockQ8_0, a: &BlockQ8_0) -> i32 {
    let mut sumi = 0i32;
    for j in 0..QK {
        sumi += w.qs[j] as i32 * a.qs[j] as i32;
    }
    sumi
}

/// ggml's `ggml_vec_dot_q8_0_q8_0_generic`: per block `sumf += sumi * (dw * da)`.
pub fn vec_dot_q8_0_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot_q8_0_q8_0: block count mismatch");
    let mut sumf = 0.0f32;
    for (wb, ab) in w.iter().zip(a) {
        let sumi = block_isum(wb, ab);
        sumf += sumi as f32 * (h2f(wb.d) * h2f(ab.d));
    }
    sumf
}

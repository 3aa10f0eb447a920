//! Q8_1: 32 values per block, `x = d * q`, plus `s = d * sum(q)` (d before f16 rounding); the
//! activation partner of Q4_1 and Q5_1, whose min term needs the block sum.

use super::q8_0::{act_multiplier, block_amax};
use super::{dequant_blocks, f2h, h2f, quant_blocks, round_half_away_i8, round_ties_even_i8};
use crate::blocks::{BlockQ8_1, QK};

/// ggml's `quantize_row_q8_1_ref`. x: [32 * y.len()].
///
/// d = amax / 127, `q = roundf(x * (1 / d))` (a tie rounds away from zero), `s = f16(sum(q) * d)`.
pub fn quantize_row_q8_1_ref(x: &[f32], y: &mut [BlockQ8_1]) {
    for (xb, yb) in quant_blocks("quantize_row_q8_1_ref", x, y, QK) {
        let amax = block_amax(xb);
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb.d = f2h(d);
        let mut sum = 0i32;
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = round_half_away_i8(v * id);
            sum += *q as i32;
        }
        yb.s = f2h(sum as f32 * d);
    }
}

/// Activation quantizer (the CPU backend's `from_float`). x: [32 * y.len()].
///
/// As [`super::q8_0::from_float_q8_0`]: `id = 127 / amax` (0 when not finite, see
/// [`super::q8_0::act_multiplier`]), ties to even; `s = f16(d * sum(q))`.
pub fn from_float_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    for (xb, yb) in quant_blocks("from_float_q8_1", x, y, QK) {
        let amax = block_amax(xb);
        let d = amax / 127.0;
        let id = act_multiplier(amax);
        yb.d = f2h(d);
        let mut sum = 0i32;
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = round_ties_even_i8(v * id);
            sum += *q as i32;
        }
        yb.s = f2h(d * sum as f32);
    }
}

/// `x = f16(d) * q` (ggml has no `to_float` for Q8_1; this is the value its dot products use).
/// y: [32 * x.len()].
pub fn dequantize_row_q8_1(x: &[BlockQ8_1], y: &mut [f32]) {
    for (xb, yb) in dequant_blocks("dequantize_row_q8_1", x, y, QK) {
        let d = h2f(xb.d);
        for (o, &q) in yb.iter_mut().zip(&xb.qs) {
            *o = q as f32 * d;
        }
    }
}

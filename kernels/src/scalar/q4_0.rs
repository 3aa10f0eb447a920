//! Q4_0: 32 weights per block, `x = d * (q - 8)`, q in 0..16; pairs with Q8_0 activations.

use super::{dequant_blocks, f2h, h2f, quant_blocks, signed_absmax};
use crate::blocks::{BlockQ4_0, BlockQ8_0, QK};

/// ggml's `quantize_row_q4_0_ref`. x: [32 * y.len()].
///
/// d = max / -8 with `max` the signed value of largest magnitude, so that value maps to q = 0;
/// `q = min(15, trunc(x / d + 8.5))` (a tie rounds up).
pub fn quantize_row_q4_0_ref(x: &[f32], y: &mut [BlockQ4_0]) {
    for (xb, yb) in quant_blocks("quantize_row_q4_0_ref", x, y, QK) {
        let max = signed_absmax(xb);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb.d = f2h(d);
        for j in 0..QK / 2 {
            let x0 = xb[j] * id;
            let x1 = xb[QK / 2 + j] * id;
            // C: MIN(15, (int8_t)(x + 8.5f)); the value is in [0, 17) so `as i8` truncates alike.
            let xi0 = ((x0 + 8.5) as i8).min(15) as u8;
            let xi1 = ((x1 + 8.5) as i8).min(15) as u8;
            yb.qs[j] = xi0 | (xi1 << 4);
        }
    }
}

/// ggml's `dequantize_row_q4_0`. y: [32 * x.len()].
pub fn dequantize_row_q4_0(x: &[BlockQ4_0], y: &mut [f32]) {
    for (xb, yb) in dequant_blocks("dequantize_row_q4_0", x, y, QK) {
        let d = h2f(xb.d);
        for j in 0..QK / 2 {
            let x0 = (xb.qs[j] & 0x0F) as i32 - 8;
            let x1 = (xb.qs[j] >> 4) as i32 - 8;
            yb[j] = x0 as f32 * d;
            yb[j + QK / 2] = x1 as f32 * d;
        }
    }
}

/// Integer part of one block: sum_j (q_j - 8) * a_j, |sum| <= 32 * 8 * 128.
#[inline(always)]
pub fn block_isum(w: &BlockQ4_0, a: &BlockQ8_0) -> i32 {
    let mut sumi0 = 0i32;
    let mut sumi1 = 0i32;
    for j in 0..QK / 2 {
        let v0 = (w.qs[j] & 0x0F) as i32 - 8;
        let v1 = (w.qs[j] >> 4) as i32 - 8;
        sumi0 += v0 * a.qs[j] as i32;
        sumi1 += v1 * a.qs[j + QK / 2] as i32;
    }
    sumi0 + sumi1
}

/// ggml's `ggml_vec_dot_q4_0_q8_0_generic`: per block `sumf += sumi * dw * da`.
pub fn vec_dot_q4_0_q8_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot_q4_0_q8_0: block count mismatch");
    let mut sumf = 0.0f32;
    for (wb, ab) in w.iter().zip(a) {
        let sumi = block_isum(wb, ab);
        sumf += sumi as f32 * h2f(wb.d) * h2f(ab.d);
    }
    sumf
}

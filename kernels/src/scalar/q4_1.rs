//! Q4_1: 32 weights per block, `x = d * q + m`, q in 0..16; pairs with Q8_1 activations.

use super::{dequant_blocks, f2h, h2f, quant_blocks};
use crate::blocks::{BlockQ4_1, BlockQ8_1, QK};

/// ggml's `quantize_row_q4_1_ref`. x: [32 * y.len()].
///
/// m = min, d = (max - min) / 15, `q = min(15, trunc((x - min) / d + 0.5))`.
pub fn quantize_row_q4_1_ref(x: &[f32], y: &mut [BlockQ4_1]) {
    for (xb, yb) in quant_blocks("quantize_row_q4_1_ref", x, y, QK) {
        let mut min = f32::MAX;
        let mut max = -f32::MAX;
        for &v in xb {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb.d = f2h(d);
        yb.m = f2h(min);
        for j in 0..QK / 2 {
            let x0 = (xb[j] - min) * id;
            let x1 = (xb[QK / 2 + j] - min) * id;
            let xi0 = ((x0 + 0.5) as i8).min(15) as u8;
            let xi1 = ((x1 + 0.5) as i8).min(15) as u8;
            yb.qs[j] = xi0 | (xi1 << 4);
        }
    }
}

/// ggml's `dequantize_row_q4_1`. y: [32 * x.len()].
pub fn dequantize_row_q4_1(x: &[BlockQ4_1], y: &mut [f32]) {
    for (xb, yb) in dequant_blocks("dequantize_row_q4_1", x, y, QK) {
        let d = h2f(xb.d);
        let m = h2f(xb.m);
        for j in 0..QK / 2 {
            let x0 = (xb.qs[j] & 0x0F) as i32;
            let x1 = (xb.qs[j] >> 4) as i32;
            yb[j] = x0 as f32 * d + m;
            yb[j + QK / 2] = x1 as f32 * d + m;
        }
    }
}

/// Integer part of one block: sum_j q_j * a_j, |sum| <= 32 * 15 * 128.
#[inline(always)]
pub fn block_isum(w: &BlockQ4_1, a: &BlockQ8_1) -> i32 {
    let mut sumi0 = 0i32;
    let mut sumi1 = 0i32;
    for j in 0..QK / 2 {
        let v0 = (w.qs[j] & 0x0F) as i32;
        let v1 = (w.qs[j] >> 4) as i32;
        sumi0 += v0 * a.qs[j] as i32;
        sumi1 += v1 * a.qs[j + QK / 2] as i32;
    }
    sumi0 + sumi1
}

/// ggml's `ggml_vec_dot_q4_1_q8_1_generic`: per block `sumf += (dw * da) * sumi + mw * sa`
/// (the min term uses the activation block's precomputed `s = d * sum(qs)`).
pub fn vec_dot_q4_1_q8_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot_q4_1_q8_1: block count mismatch");
    let mut sumf = 0.0f32;
    for (wb, ab) in w.iter().zip(a) {
        let sumi = block_isum(wb, ab);
        sumf += (h2f(wb.d) * h2f(ab.d)) * sumi as f32 + h2f(wb.m) * h2f(ab.s);
    }
    sumf
}

//! Q5_1: 32 weights per block, `x = d * q + m`, q in 0..32 (fifth bits in `qh`); pairs with Q8_1.

use super::{dequant_blocks, f2h, h2f, quant_blocks};
use crate::blocks::{BlockQ5_1, BlockQ8_1, QK};

/// ggml's `quantize_row_q5_1_ref`. x: [32 * y.len()].
///
/// m = min, d = (max - min) / 31, `q = trunc((x - min) / d + 0.5)` (no clamp, as in ggml).
pub fn quantize_row_q5_1_ref(x: &[f32], y: &mut [BlockQ5_1]) {
    for (xb, yb) in quant_blocks("quantize_row_q5_1_ref", x, y, QK) {
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
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb.d = f2h(d);
        yb.m = f2h(min);
        let mut qh = 0u32;
        for j in 0..QK / 2 {
            let x0 = (xb[j] - min) * id;
            let x1 = (xb[QK / 2 + j] - min) * id;
            let xi0 = (x0 + 0.5) as u8;
            let xi1 = (x1 + 0.5) as u8;
            yb.qs[j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
            qh |= (((xi0 & 0x10) >> 4) as u32) << j;
            qh |= (((xi1 & 0x10) >> 4) as u32) << (j + QK / 2);
        }
        yb.qh = qh.to_le_bytes();
    }
}

/// ggml's `dequantize_row_q5_1`. y: [32 * x.len()].
pub fn dequantize_row_q5_1(x: &[BlockQ5_1], y: &mut [f32]) {
    for (xb, yb) in dequant_blocks("dequantize_row_q5_1", x, y, QK) {
        let d = h2f(xb.d);
        let m = h2f(xb.m);
        let qh = u32::from_le_bytes(xb.qh);
        for j in 0..QK / 2 {
            let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
            let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
            let x0 = ((xb.qs[j] & 0x0F) | xh_0) as i32;
            let x1 = ((xb.qs[j] >> 4) | xh_1) as i32;
            yb[j] = x0 as f32 * d + m;
            yb[j + QK / 2] = x1 as f32 * d + m;
        }
    }
}

/// Integer part of one block: sum_j q_j * a_j, |sum| <= 32 * 31 * 128.
#[inline(always)]
pub fn block_isum(w: &BlockQ5_1, a: &BlockQ8_1) -> i32 {
    let qh = u32::from_le_bytes(w.qh);
    let mut sumi0 = 0i32;
    let mut sumi1 = 0i32;
    for j in 0..QK / 2 {
        let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
        let x0 = ((w.qs[j] & 0x0F) | xh_0) as i32;
        let x1 = ((w.qs[j] >> 4) | xh_1) as i32;
        sumi0 += x0 * a.qs[j] as i32;
        sumi1 += x1 * a.qs[j + QK / 2] as i32;
    }
    sumi0 + sumi1
}

/// ggml's `ggml_vec_dot_q5_1_q8_1_generic`: per block `sumf += (dw * da) * sumi + mw * sa`.
pub fn vec_dot_q5_1_q8_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot_q5_1_q8_1: block count mismatch");
    let mut sumf = 0.0f32;
    for (wb, ab) in w.iter().zip(a) {
        let sumi = block_isum(wb, ab);
        sumf += (h2f(wb.d) * h2f(ab.d)) * sumi as f32 + h2f(wb.m) * h2f(ab.s);
    }
    sumf
}

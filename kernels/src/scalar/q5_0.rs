//! Q5_0: 32 weights per block, `x = d * (q - 16)`, q in 0..32 (fifth bit of element j = bit j of
//! `qh` as a little-endian u32); pairs with Q8_0 activations.

use super::{dequant_blocks, f2h, h2f, quant_blocks, signed_absmax};
use crate::blocks::{BlockQ5_0, BlockQ8_0, QK};

/// ggml's `quantize_row_q5_0_ref`. x: [32 * y.len()].
///
/// d = max / -16 (max = the signed value of largest magnitude), `q = min(31, trunc(x / d + 16.5))`.
pub fn quantize_row_q5_0_ref(x: &[f32], y: &mut [BlockQ5_0]) {
    for (xb, yb) in quant_blocks("quantize_row_q5_0_ref", x, y, QK) {
        let max = signed_absmax(xb);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb.d = f2h(d);
        let mut qh = 0u32;
        for j in 0..QK / 2 {
            let x0 = xb[j] * id;
            let x1 = xb[QK / 2 + j] * id;
            let xi0 = ((x0 + 16.5) as i8).min(31) as u8;
            let xi1 = ((x1 + 16.5) as i8).min(31) as u8;
            yb.qs[j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
            qh |= (((xi0 & 0x10) >> 4) as u32) << j;
            qh |= (((xi1 & 0x10) >> 4) as u32) << (j + QK / 2);
        }
        yb.qh = qh.to_le_bytes();
    }
}

/// ggml's `dequantize_row_q5_0`. y: [32 * x.len()].
pub fn dequantize_row_q5_0(x: &[BlockQ5_0], y: &mut [f32]) {
    for (xb, yb) in dequant_blocks("dequantize_row_q5_0", x, y, QK) {
        let d = h2f(xb.d);
        let qh = u32::from_le_bytes(xb.qh);
        for j in 0..QK / 2 {
            let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
            let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
            let x0 = ((xb.qs[j] & 0x0F) | xh_0) as i32 - 16;
            let x1 = ((xb.qs[j] >> 4) | xh_1) as i32 - 16;
            yb[j] = x0 as f32 * d;
            yb[j + QK / 2] = x1 as f32 * d;
        }
    }
}

/// Integer part of one block: sum_j (q_j - 16) * a_j, |sum| <= 32 * 16 * 128.
#[inline(always)]
pub fn block_isum(w: &BlockQ5_0, a: &BlockQ8_0) -> i32 {
    let qh = u32::from_le_bytes(w.qh);
    let mut sumi0 = 0i32;
    let mut sumi1 = 0i32;
    for j in 0..QK / 2 {
        let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
        let x0 = ((w.qs[j] & 0x0F) | xh_0) as i32 - 16;
        let x1 = ((w.qs[j] >> 4) | xh_1) as i32 - 16;
        sumi0 += x0 * a.qs[j] as i32;
        sumi1 += x1 * a.qs[j + QK / 2] as i32;
    }
    sumi0 + sumi1
}

/// ggml's `ggml_vec_dot_q5_0_q8_0_generic`: per block `sumf += (dw * da) * sumi`.
pub fn vec_dot_q5_0_q8_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot_q5_0_q8_0: block count mismatch");
    let mut sumf = 0.0f32;
    for (wb, ab) in w.iter().zip(a) {
        let sumi = block_isum(wb, ab);
        sumf += (h2f(wb.d) * h2f(ab.d)) * sumi as f32;
    }
    sumf
}

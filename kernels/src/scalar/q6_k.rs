//! Q6_K: super-blocks of 256 = 16 groups of 16, `x = d * scales[g] * (q - 32)`, q in 0..64 with the
//! low 4 bits in `ql` and the high 2 in `qh`, 8-bit signed group scales; pairs with Q8_K.
//!
//! Within each half of 128: element `l` (l < 32) has its low nibble in `ql[l] & 0xF`, `l + 32` in
//! `ql[l + 32] & 0xF`, `l + 64` in `ql[l] >> 4`, `l + 96` in `ql[l + 32] >> 4`; their high bits are
//! bit pairs 0, 2, 4, 6 of `qh[l]`.

use super::k_quants::{make_qx_quants, GROUP_MAX_EPS};
use super::q4_k::aux32_dot;
use super::{dequant_blocks, f2h, h2f, nearest_int, quant_blocks};
use crate::blocks::{BlockQ6_K, BlockQ8_K, QK_K};

/// ggml's `quantize_row_q6_K_ref`. x: [256 * y.len()].
pub fn quantize_row_q6_k_ref(x: &[f32], y: &mut [BlockQ6_K]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0.0f32; QK_K / 16];
    for (xb, yb) in quant_blocks("quantize_row_q6_k_ref", x, y, QK_K) {
        let mut max_scale = 0.0f32;
        let mut max_abs_scale = 0.0f32;
        for ib in 0..QK_K / 16 {
            let s = make_qx_quants(
                &xb[16 * ib..16 * ib + 16],
                32,
                &mut l[16 * ib..16 * ib + 16],
                1,
                None,
            );
            scales[ib] = s;
            let abs_scale = s.abs();
            if abs_scale > max_abs_scale {
                max_abs_scale = abs_scale;
                max_scale = s;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            yb.ql = [0; QK_K / 2];
            yb.qh = [0; QK_K / 4];
            yb.scales = [0; QK_K / 16];
            yb.d = f2h(0.0);
            continue;
        }
        let iscale = -128.0 / max_scale;
        yb.d = f2h(1.0 / iscale);
        for (o, &s) in yb.scales.iter_mut().zip(&scales) {
            *o = nearest_int(iscale * s).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let d = h2f(yb.d) * yb.scales[j] as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(xb[16 * j + ii] / d).clamp(-32, 31);
                l[16 * j + ii] = (q + 32) as i8;
            }
        }
        for h in 0..2 {
            let j = 128 * h;
            let ql = &mut yb.ql[64 * h..64 * h + 64];
            let qh = &mut yb.qh[32 * h..32 * h + 32];
            for i in 0..32 {
                let q1 = l[j + i] as u8 & 0xF;
                let q2 = l[j + i + 32] as u8 & 0xF;
                let q3 = l[j + i + 64] as u8 & 0xF;
                let q4 = l[j + i + 96] as u8 & 0xF;
                ql[i] = q1 | (q3 << 4);
                ql[i + 32] = q2 | (q4 << 4);
                qh[i] = (l[j + i] as u8 >> 4)
                    | ((l[j + i + 32] as u8 >> 4) << 2)
                    | ((l[j + i + 64] as u8 >> 4) << 4)
                    | ((l[j + i + 96] as u8 >> 4) << 6);
            }
        }
    }
}

/// The 256 levels `q - 32` (in -32..32) of a Q6_K block, in element order.
#[inline(always)]
pub(crate) fn levels(b: &BlockQ6_K) -> [i8; QK_K] {
    let mut a = [0i8; QK_K];
    for h in 0..2 {
        let ql = &b.ql[64 * h..64 * h + 64];
        let qh = &b.qh[32 * h..32 * h + 32];
        let out = &mut a[128 * h..128 * h + 128];
        for l in 0..32 {
            out[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            out[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            out[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            out[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    a
}

/// ggml's `dequantize_row_q6_K`: `y = (d * sc) * q`. y: [256 * x.len()].
pub fn dequantize_row_q6_k(x: &[BlockQ6_K], y: &mut [f32]) {
    for (xb, yb) in dequant_blocks("dequantize_row_q6_k", x, y, QK_K) {
        let d = h2f(xb.d);
        let a = levels(xb);
        for (i, (o, &q)) in yb.iter_mut().zip(&a).enumerate() {
            *o = d * xb.scales[i / 16] as f32 * q as f32;
        }
    }
}

/// ggml's `ggml_vec_dot_q6_K_q8_K_generic`: 8 integer lanes per block, scaled by `dw * da` into
/// 8 float lanes, summed at the end.
pub fn vec_dot_q6_k_q8_k(w: &[BlockQ6_K], a: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot_q6_k_q8_k: block count mismatch");
    let mut sums = [0.0f32; 8];
    for (wb, ab) in w.iter().zip(a) {
        let lv = levels(wb);
        let scale16: [i32; 16] = std::array::from_fn(|g| wb.scales[g] as i32);
        let aux32 = aux32_dot(&lv, &ab.qs, &scale16);
        let d = h2f(wb.d) * ab.d;
        for l in 0..8 {
            sums[l] += d * aux32[l] as f32;
        }
    }
    let mut sumf = 0.0f32;
    for s in sums {
        sumf += s;
    }
    sumf
}

//! Q2_K: super-blocks of 256 = 16 groups of 16, `x = d * sc[g] * q - dmin * m[g]`, q in 0..4;
//! `scales[g]` low nibble = sc, high nibble = m. Element `128h + 32s + l` (s = 0..4, l < 32) is bit
//! pair `s` of `qs[32h + l]`. Pairs with Q8_K.

use super::k_quants::make_qkx2_quants;
use super::{dequant_blocks, f2h, h2f, nearest_int};
use crate::blocks::{BlockQ2_K, BlockQ8_K, QK_K};

/// ggml's `quantize_row_q2_K_ref`. x: [256 * y.len()].
///
/// Per group of 16: `make_qkx2_quants` (nmax 3, weights |x|, 16 steps, absolute error); the group
/// scales and mins are quantized to 4 bits against the largest, then the levels are recomputed
/// against the final scales.
pub fn quantize_row_q2_k_ref(x: &[f32], y: &mut [BlockQ2_K]) {
    assert_eq!(
        x.len(),
        y.len() * QK_K,
        "quantize_row_q2_k_ref: length mismatch"
    );
    const Q4SCALE: f32 = 15.0;
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 16];
    let mut weights = [0.0f32; 16];
    let mut mins = [0.0f32; QK_K / 16];
    let mut scales = [0.0f32; QK_K / 16];
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut max_scale = 0.0f32;
        let mut max_min = 0.0f32;
        for j in 0..QK_K / 16 {
            let xs = &xb[16 * j..16 * j + 16];
            for (w, &v) in weights.iter_mut().zip(xs) {
                *w = v.abs();
            }
            let out = &mut l[16 * j..16 * j + 16];
            let (s, m) = make_qkx2_quants(xs, 3, &weights, out, &mut laux, -0.5, 0.1, 15, true);
            (scales[j], mins[j]) = (s, m);
            max_scale = max_scale.max(s);
            max_min = max_min.max(m);
        }
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for (o, &s) in yb.scales.iter_mut().zip(&scales) {
                *o = nearest_int(iscale * s) as u8;
            }
            yb.d = f2h(max_scale / Q4SCALE);
        } else {
            yb.scales = [0; QK_K / 16];
            yb.d = f2h(0.0);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for (o, &m) in yb.scales.iter_mut().zip(&mins) {
                // C: `scales[j] |= (l << 4)` on a uint8_t keeps the low 8 bits.
                *o |= (nearest_int(iscale * m) << 4) as u8;
            }
            yb.dmin = f2h(max_min / Q4SCALE);
        } else {
            yb.dmin = f2h(0.0);
        }
        for j in 0..QK_K / 16 {
            let d = h2f(yb.d) * (yb.scales[j] & 0xF) as f32;
            if d == 0.0 {
                continue;
            }
            let dm = h2f(yb.dmin) * (yb.scales[j] >> 4) as f32;
            for ii in 0..16 {
                let q = nearest_int((xb[16 * j + ii] + dm) / d).clamp(0, 3);
                l[16 * j + ii] = q as u8;
            }
        }
        for h in 0..2 {
            let j = 128 * h;
            for i in 0..32 {
                yb.qs[32 * h + i] =
                    l[j + i] | (l[j + i + 32] << 2) | (l[j + i + 64] << 4) | (l[j + i + 96] << 6);
            }
        }
    }
}

/// The 256 levels (0..4) of a Q2_K block, in element order.
#[inline(always)]
fn levels(b: &BlockQ2_K) -> [u8; QK_K] {
    let mut a = [0u8; QK_K];
    for h in 0..2 {
        for s in 0..4 {
            for l in 0..32 {
                a[128 * h + 32 * s + l] = (b.qs[32 * h + l] >> (2 * s)) & 3;
            }
        }
    }
    a
}

/// ggml's `dequantize_row_q2_K`: `y = (d * sc) * q - dmin * m`. y: [256 * x.len()].
pub fn dequantize_row_q2_k(x: &[BlockQ2_K], y: &mut [f32]) {
    for (xb, yb) in dequant_blocks("dequantize_row_q2_k", x, y, QK_K) {
        let d = h2f(xb.d);
        let min = h2f(xb.dmin);
        let a = levels(xb);
        for (g, (out, q)) in yb.chunks_exact_mut(16).zip(a.chunks_exact(16)).enumerate() {
            let sc = xb.scales[g];
            let dl = d * (sc & 0xF) as f32;
            let ml = min * (sc >> 4) as f32;
            for (o, &v) in out.iter_mut().zip(q) {
                *o = dl * v as f32 - ml;
            }
        }
    }
}

/// ggml's `ggml_vec_dot_q2_K_q8_K_generic`: per block
/// `sumf += (da * dw) * sum_g sc[g] * dot_g - (da * dmin) * sum_g m[g] * bsums[g]`.
pub fn vec_dot_q2_k_q8_k(w: &[BlockQ2_K], a: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot_q2_k_q8_k: block count mismatch");
    let mut sumf = 0.0f32;
    for (wb, ab) in w.iter().zip(a) {
        let mut summs = 0i32;
        for j in 0..16 {
            summs += ab.bsums[j] as i32 * (wb.scales[j] >> 4) as i32;
        }
        let dall = ab.d * h2f(wb.d);
        let dmin = ab.d * h2f(wb.dmin);
        let lv = levels(wb);
        let mut isum = 0i32;
        for (g, (q8, q2)) in ab.qs.chunks_exact(16).zip(lv.chunks_exact(16)).enumerate() {
            let mut isuml = 0i32;
            for (&a, &w) in q8.iter().zip(q2) {
                isuml += a as i32 * w as i32;
            }
            isum += (wb.scales[g] & 0xF) as i32 * isuml;
        }
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

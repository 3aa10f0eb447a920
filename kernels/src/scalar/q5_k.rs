//! Q5_K: like Q4_K (8 groups of 32, 6-bit scales and mins) with q in 0..32, the fifth bit of
//! element `64k + i` in bit `2k` of `qh[i]` and of `64k + 32 + i` in bit `2k + 1`; pairs with Q8_K.

use super::q4_k::{aux32_dot, min_sum, requantize_k4, search_k4, unpack_scales_mins};
use super::{dequant_blocks, f2h, get_scale_min_k4, h2f, quant_blocks};
use crate::blocks::{BlockQ5_K, BlockQ8_K, QK_K};

/// ggml's `quantize_row_q5_K_ref`. x: [256 * y.len()].
pub fn quantize_row_q5_k_ref(x: &[f32], y: &mut [BlockQ5_K]) {
    for (xb, yb) in quant_blocks("quantize_row_q5_k_ref", x, y, QK_K) {
        let (mut l, scales, d, dmin) = search_k4(xb, 31, -0.5, 0.1, 15);
        yb.scales = scales;
        yb.d = f2h(d);
        yb.dmin = f2h(dmin);
        requantize_k4(xb, &mut l, &yb.scales, h2f(yb.d), h2f(yb.dmin), 31);
        yb.qh = [0; QK_K / 8];
        let (mut m1, mut m2) = (1u8, 2u8);
        for (k, ql) in yb.qs.chunks_exact_mut(32).enumerate() {
            let n = 64 * k;
            for j in 0..32 {
                let mut l1 = l[n + j];
                if l1 > 15 {
                    l1 -= 16;
                    yb.qh[j] |= m1;
                }
                let mut l2 = l[n + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    yb.qh[j] |= m2;
                }
                ql[j] = l1 | (l2 << 4);
            }
            m1 <<= 2;
            m2 <<= 2;
        }
    }
}

/// ggml's `dequantize_row_q5_K`. y: [256 * x.len()].
pub fn dequantize_row_q5_k(x: &[BlockQ5_K], y: &mut [f32]) {
    for (xb, yb) in dequant_blocks("dequantize_row_q5_k", x, y, QK_K) {
        let d = h2f(xb.d);
        let min = h2f(xb.dmin);
        let (mut u1, mut u2) = (1u8, 2u8);
        for (k, (ql, out)) in xb
            .qs
            .chunks_exact(32)
            .zip(yb.chunks_exact_mut(64))
            .enumerate()
        {
            let (sc, m) = get_scale_min_k4(2 * k, &xb.scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = get_scale_min_k4(2 * k + 1, &xb.scales);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            for l in 0..32 {
                let h1 = if xb.qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if xb.qh[l] & u2 != 0 { 16 } else { 0 };
                out[l] = d1 * ((ql[l] & 0xF) + h1) as f32 - m1;
                out[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
            }
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

/// ggml's `ggml_vec_dot_q5_K_q8_K_generic` (same accumulation as Q4_K's).
pub fn vec_dot_q5_k_q8_k(w: &[BlockQ5_K], a: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot_q5_k_q8_k: block count mismatch");
    let mut sums = [0.0f32; 8];
    let mut sumf = 0.0f32;
    let mut levels = [0i8; QK_K];
    for (wb, ab) in w.iter().zip(a) {
        let mut m = 1u8;
        for (k, q) in wb.qs.chunks_exact(32).enumerate() {
            for l in 0..32 {
                let h = if wb.qh[l] & m != 0 { 16 } else { 0 };
                levels[64 * k + l] = ((q[l] & 0xF) + h) as i8;
            }
            m <<= 1;
            for l in 0..32 {
                let h = if wb.qh[l] & m != 0 { 16 } else { 0 };
                levels[64 * k + 32 + l] = ((q[l] >> 4) + h) as i8;
            }
            m <<= 1;
        }
        let (sc, mn) = unpack_scales_mins(&wb.scales);
        let scale16: [i32; 16] = std::array::from_fn(|g| sc[g / 2] as i32);
        let aux32 = aux32_dot(&levels, &ab.qs, &scale16);
        let sumi = min_sum(&ab.bsums, &mn);
        let d = h2f(wb.d) * ab.d;
        for l in 0..8 {
            sums[l] += d * aux32[l] as f32;
        }
        let dmin = h2f(wb.dmin) * ab.d;
        sumf -= dmin * sumi as f32;
    }
    for s in sums {
        sumf += s;
    }
    sumf
}

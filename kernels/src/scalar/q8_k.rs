//! Q8_K: 256 values per block, f32 scale `d`, `x = d * q`, and `bsums[g]` = sum of `q[16g..16g+16]`
//! (the k-quant dot products use them for the min terms). The activation partner of the k-quants.

use super::nearest_int;
use super::{dequant_blocks, quant_blocks};
use crate::blocks::{BlockQ8_K, QK_K};

/// ggml's `quantize_row_q8_K_ref` (also the CPU backend's `from_float` for Q8_K on x86 and the
/// generic path). x: [256 * y.len()].
///
/// `iscale = -127 / max` with `max` the signed value of largest magnitude, `q = min(127,
/// nearest_int(iscale * x))` (ties to even), `d = 1 / iscale`. An all-zero block gets d = 0 and zero
/// quants and sums.
pub fn quantize_row_q8_k_ref(x: &[f32], y: &mut [BlockQ8_K]) {
    for (xb, yb) in quant_blocks("quantize_row_q8_k_ref", x, y, QK_K) {
        let mut max = 0.0f32;
        let mut amax = 0.0f32;
        for &v in xb {
            let ax = v.abs();
            if ax > amax {
                amax = ax;
                max = v;
            }
        }
        if amax == 0.0 {
            yb.d = 0.0;
            yb.qs = [0; QK_K];
            yb.bsums = [0; QK_K / 16];
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (j, s) in yb.bsums.iter_mut().enumerate() {
            *s = yb.qs[16 * j..16 * j + 16].iter().map(|&q| q as i16).sum();
        }
        yb.d = 1.0 / iscale;
    }
}

/// ggml's `dequantize_row_q8_K`. y: [256 * x.len()].
pub fn dequantize_row_q8_k(x: &[BlockQ8_K], y: &mut [f32]) {
    for (xb, yb) in dequant_blocks("dequantize_row_q8_k", x, y, QK_K) {
        for (o, &q) in yb.iter_mut().zip(&xb.qs) {
            *o = xb.d * q as f32;
        }
    }
}

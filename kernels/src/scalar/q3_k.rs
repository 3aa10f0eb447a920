//! Q3_K: super-blocks of 256 = 16 groups of 16, `x = d * (sc[g] - 32) * (q - 4)`, q in 0..8: the
//! low 2 bits as in Q2_K (`qs`), the high bit of element `32s + l` (per half of 128: s counts on
//! across halves) in bit `s` of `hmask[l]`; 6-bit group scales packed in `scales`: low nibbles of
//! groups 0..8 in the low nibbles of bytes 0..8, of groups 8..16 in the high nibbles, and the top
//! 2 bits of group g in bits `2 * (g / 4)` of byte `8 + g % 4`. Pairs with Q8_K.

use super::k_quants::make_q3_quants;
use super::{dequant_blocks, f2h, h2f, nearest_int, quant_blocks};
use crate::blocks::{BlockQ3_K, BlockQ8_K, QK_K};

/// The 16 group scales of a Q3_K block, unpacked to 0..64 (subtract 32 for the signed scale).
#[inline(always)]
pub fn unpack_scales(s: &[u8; 12]) -> [u8; 16] {
    std::array::from_fn(|j| {
        let low = if j < 8 { s[j] & 0xF } else { s[j - 8] >> 4 };
        low | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)
    })
}

/// ggml's `quantize_row_q3_K_ref`. x: [256 * y.len()].
///
/// Per group of 16: `make_q3_quants` (nmax 4, x^2-weighted refinement); the signed group scales
/// are quantized to 6 bits against the one of largest magnitude (`d = max / -32`), then the levels
/// are recomputed against the final scales.
pub fn quantize_row_q3_k_ref(x: &[f32], y: &mut [BlockQ3_K]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0.0f32; QK_K / 16];
    for (xb, yb) in quant_blocks("quantize_row_q3_k_ref", x, y, QK_K) {
        let mut max_scale = 0.0f32;
        let mut amax = 0.0f32;
        for j in 0..QK_K / 16 {
            scales[j] = make_q3_quants(
                &xb[16 * j..16 * j + 16],
                4,
                &mut l[16 * j..16 * j + 16],
                true,
            );
            let scale = scales[j].abs();
            if scale > amax {
                amax = scale;
                max_scale = scales[j];
            }
        }
        yb.scales = [0; 12];
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for (j, &s) in scales.iter().enumerate() {
                // C: `int8_t l = nearest_int(...)` (truncated to 8 bits), clamped, + 32.
                let q = (nearest_int(iscale * s) as i8).clamp(-32, 31) as i32 + 32;
                if j < 8 {
                    yb.scales[j] = (q & 0xF) as u8;
                } else {
                    yb.scales[j - 8] |= ((q & 0xF) << 4) as u8;
                }
                let hi = q >> 4;
                yb.scales[j % 4 + 8] |= (hi << (2 * (j / 4))) as u8;
            }
            yb.d = f2h(1.0 / iscale);
        } else {
            yb.d = f2h(0.0);
        }
        let sc = unpack_scales(&yb.scales);
        for j in 0..QK_K / 16 {
            let d = h2f(yb.d) * (sc[j] as i32 - 32) as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(xb[16 * j + ii] / d).clamp(-4, 3);
                l[16 * j + ii] = (q + 4) as i8;
            }
        }
        yb.hmask = [0; QK_K / 8];
        let mut m = 0usize;
        let mut hm = 1u8;
        for v in l.iter_mut() {
            if *v > 3 {
                yb.hmask[m] |= hm;
                *v -= 4;
            }
            m += 1;
            if m == QK_K / 8 {
                m = 0;
                hm <<= 1;
            }
        }
        for h in 0..2 {
            let j = 128 * h;
            for i in 0..32 {
                let v = |k: usize| l[j + i + k] as u8;
                yb.qs[32 * h + i] = v(0) | (v(32) << 2) | (v(64) << 4) | (v(96) << 6);
            }
        }
    }
}

/// The 256 levels `q - 4` (in -4..4) of a Q3_K block, in element order.
#[inline(always)]
fn levels(b: &BlockQ3_K) -> [i8; QK_K] {
    let mut a = [0i8; QK_K];
    let mut m = 1u8;
    for h in 0..2 {
        for s in 0..4 {
            for l in 0..32 {
                let low = ((b.qs[32 * h + l] >> (2 * s)) & 3) as i8;
                a[128 * h + 32 * s + l] = low - if b.hmask[l] & m != 0 { 0 } else { 4 };
            }
            m <<= 1;
        }
    }
    a
}

/// ggml's `dequantize_row_q3_K`: `y = (d * (sc - 32)) * (q - 4)`. y: [256 * x.len()].
pub fn dequantize_row_q3_k(x: &[BlockQ3_K], y: &mut [f32]) {
    for (xb, yb) in dequant_blocks("dequantize_row_q3_k", x, y, QK_K) {
        let d_all = h2f(xb.d);
        let sc = unpack_scales(&xb.scales);
        let a = levels(xb);
        for (g, (out, q)) in yb.chunks_exact_mut(16).zip(a.chunks_exact(16)).enumerate() {
            let dl = d_all * (sc[g] as i32 - 32) as f32;
            for (o, &v) in out.iter_mut().zip(q) {
                *o = dl * v as f32;
            }
        }
    }
}

/// ggml's `ggml_vec_dot_q3_K_q8_K_generic`: 8 integer lanes per block, scaled by `dw * da` into
/// 8 float lanes, summed at the end.
pub fn vec_dot_q3_k_q8_k(w: &[BlockQ3_K], a: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot_q3_k_q8_k: block count mismatch");
    let mut sums = [0.0f32; 8];
    for (wb, ab) in w.iter().zip(a) {
        let lv = levels(wb);
        let sc = unpack_scales(&wb.scales);
        let scale16: [i32; 16] = std::array::from_fn(|g| sc[g] as i32 - 32);
        let aux32 = super::q4_k::aux32_dot(&lv, &ab.qs, &scale16);
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

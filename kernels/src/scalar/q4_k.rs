//! Q4_K: super-blocks of 256 = 8 groups of 32, `x = d * sc[g] * q - dmin * m[g]`, q in 0..16,
//! 6-bit `sc`/`m` packed in `scales` (see [`super::get_scale_min_k4`]); pairs with Q8_K.

use super::k_quants::make_qkx2_quants;
use super::{dequant_blocks, f2h, get_scale_min_k4, h2f, nearest_int, quant_blocks};
use crate::blocks::{BlockQ4_K, BlockQ8_K, QK_K};

/// Packs 6-bit scales and mins of the 8 groups as Q4_K/Q5_K store them.
pub(crate) fn pack_scales_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

/// The Q4_K/Q5_K reference scale search for one super-block: per group of 32, `make_qkx2_quants`
/// with weights `sqrt(mean(x^2)) + |x|`; the group scales and mins are then quantized to 6 bits
/// against the largest of each. Returns (levels L [256] from the search, packed scales, d, dmin).
pub(crate) fn search_k4(
    xb: &[f32],
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> ([u8; QK_K], [u8; 12], f32, f32) {
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 32];
    let mut weights = [0.0f32; 32];
    let mut mins = [0.0f32; QK_K / 32];
    let mut scales = [0.0f32; QK_K / 32];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..QK_K / 32 {
        let xs = &xb[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let out = &mut l[32 * j..32 * j + 32];
        let (s, m) = make_qkx2_quants(
            xs, nmax, &weights, out, &mut laux, rmin, rdelta, nstep, false,
        );
        (scales[j], mins[j]) = (s, m);
        max_scale = max_scale.max(s);
        max_min = max_min.max(m);
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..QK_K / 32 {
        // C: `uint8_t ls = nearest_int(...)` truncates to 8 bits, then MIN(63, ls).
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    (
        l,
        pack_scales_k4(&ls, &lm),
        max_scale / 63.0,
        max_min / 63.0,
    )
}

/// Re-quantizes each group of 32 against its final (6-bit, f16) scale and min: `l =
/// clamp(nearest_int((x + dm) / d), 0, nmax)`; groups whose scale is 0 keep the search's levels.
pub(crate) fn requantize_k4(
    xb: &[f32],
    l: &mut [u8; QK_K],
    scales: &[u8; 12],
    d: f32,
    dmin: f32,
    nmax: i32,
) {
    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, scales);
        let dj = d * sc as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for ii in 0..32 {
            let q = nearest_int((xb[32 * j + ii] + dm) / dj);
            l[32 * j + ii] = q.clamp(0, nmax) as u8;
        }
    }
}

/// ggml's `quantize_row_q4_K_ref`. x: [256 * y.len()].
pub fn quantize_row_q4_k_ref(x: &[f32], y: &mut [BlockQ4_K]) {
    for (xb, yb) in quant_blocks("quantize_row_q4_k_ref", x, y, QK_K) {
        let (mut l, scales, d, dmin) = search_k4(xb, 15, -1.0, 0.1, 20);
        yb.scales = scales;
        yb.d = f2h(d);
        yb.dmin = f2h(dmin);
        requantize_k4(xb, &mut l, &yb.scales, h2f(yb.d), h2f(yb.dmin), 15);
        for (k, q) in yb.qs.chunks_exact_mut(32).enumerate() {
            let j = 64 * k;
            for i in 0..32 {
                q[i] = l[j + i] | (l[j + i + 32] << 4);
            }
        }
    }
}

/// ggml's `dequantize_row_q4_K`. y: [256 * x.len()].
pub fn dequantize_row_q4_k(x: &[BlockQ4_K], y: &mut [f32]) {
    for (xb, yb) in dequant_blocks("dequantize_row_q4_k", x, y, QK_K) {
        let d = h2f(xb.d);
        let min = h2f(xb.dmin);
        for (k, (q, out)) in xb
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
                out[l] = d1 * (q[l] & 0xF) as f32 - m1;
                out[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

/// The 8 group scales and 8 group mins of a Q4_K/Q5_K block, unpacked.
#[inline(always)]
pub(crate) fn unpack_scales_mins(s: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        (sc[j], mn[j]) = get_scale_min_k4(j, s);
    }
    (sc, mn)
}

/// The integer dot of a k-quant block with 8 accumulators, as ggml's generic code sums it:
/// `aux32[l] += scale[g] * (q8 * a)` over the 16-element groups, for lanes l = i % 8.
/// a: the weight levels [256] (|a| <= 63), q8: activations [256], scales: one per 16 elements.
#[inline(always)]
pub(crate) fn aux32_dot(a: &[i8; QK_K], q8: &[i8; QK_K], scale16: &[i32; 16]) -> [i32; 8] {
    let mut aux32 = [0i32; 8];
    for (g, &scale) in scale16.iter().enumerate() {
        for half in 0..2 {
            let base = 16 * g + 8 * half;
            for l in 0..8 {
                // |q8 * a| <= 128 * 63 fits the i16 ggml keeps it in.
                let p = q8[base + l] as i16 * a[base + l] as i16;
                aux32[l] += scale * p as i32;
            }
        }
    }
    aux32
}

/// `sum_g bsums[g] * mins[g / 2]`: the min term of a Q4_K/Q5_K block against Q8_K.
#[inline(always)]
pub(crate) fn min_sum(bsums: &[i16; 16], mins: &[u8; 8]) -> i32 {
    let mut sumi = 0i32;
    for j in 0..QK_K / 16 {
        sumi += bsums[j] as i32 * mins[j / 2] as i32;
    }
    sumi
}

/// ggml's `ggml_vec_dot_q4_K_q8_K_generic`: per block, 8 integer lane sums scaled by
/// `d = dw * da` into 8 float lanes, the min term `dmin * sumi` subtracted from `sumf`; the lanes
/// are added to `sumf` at the end.
pub fn vec_dot_q4_k_q8_k(w: &[BlockQ4_K], a: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot_q4_k_q8_k: block count mismatch");
    let mut sums = [0.0f32; 8];
    let mut sumf = 0.0f32;
    let mut levels = [0i8; QK_K];
    for (wb, ab) in w.iter().zip(a) {
        for (k, q) in wb.qs.chunks_exact(32).enumerate() {
            for l in 0..32 {
                levels[64 * k + l] = (q[l] & 0xF) as i8;
                levels[64 * k + 32 + l] = (q[l] >> 4) as i8;
            }
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

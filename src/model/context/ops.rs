//! The forward pass's element-wise steps, each computed as ggml computes it (same operation
//! order, same rounding), so that the logits track llama.cpp's.

use std::sync::OnceLock;

/// out[t] = x[t] / sqrt(mean(x[t]²) + eps) * w, per row of `d`, as ggml's rms_norm (sum in f64).
pub(super) fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], d: usize, eps: f32) {
    for (o, xr) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        let scale = rms_scale(xr, eps);
        for ((o, &v), &wi) in o.iter_mut().zip(xr).zip(w) {
            *o = (v * scale) * wi;
        }
    }
}

/// [`rmsnorm`] of every row of `d` of `x` in place.
pub(super) fn rmsnorm_in_place(x: &mut [f32], w: &[f32], d: usize, eps: f32) {
    for xr in x.chunks_exact_mut(d) {
        let scale = rms_scale(xr, eps);
        for (v, &wi) in xr.iter_mut().zip(w) {
            *v = (*v * scale) * wi;
        }
    }
}

/// [`rmsnorm`] in place of every head (rows of `w.len()`) of `x`: the Q/K norms.
pub(super) fn rmsnorm_heads(x: &mut [f32], w: &[f32], eps: f32) {
    rmsnorm_in_place(x, w, w.len(), eps);
}

/// 1 / sqrt(mean(x²) + eps): squares in f32, summed in f64, the mean rounded to f32.
#[inline]
fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let mean = (sum / x.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// cos/sin of θ_i = pos · freq_scale · base^(-2i/n_rot) / factor_i (times `mscale`) for the
/// positions pos0.. of the rows of `rope` ([cos θ0, sin θ0, ...], n_rot values each), as ggml's
/// `ggml_rope_cache_init` computes them (θ multiplied by base^(-2/n_rot) step by step, in f32).
pub(super) fn rope_table(
    rope: &mut [f32],
    n_rot: usize,
    pos0: usize,
    base: f32,
    freq_scale: f32,
    mscale: f32,
    factors: Option<&[f32]>,
) {
    let theta_scale = base.powf(-2.0 / n_rot as f32);
    for (t, row) in rope.chunks_exact_mut(n_rot).enumerate() {
        let mut theta = (pos0 + t) as f32;
        for i in 0..n_rot / 2 {
            let f = factors.map_or(1.0, |f| f[i]);
            let th = freq_scale * (theta / f);
            row[2 * i] = th.cos() * mscale;
            row[2 * i + 1] = th.sin() * mscale;
            theta *= theta_scale;
        }
    }
}

/// Rotate the `h.len()` leading dimensions of one head by the cos/sin pairs in `cs`: pairs
/// (i, i + len/2) for NEOX, (2i, 2i + 1) otherwise.
#[inline]
pub(super) fn rope(h: &mut [f32], cs: &[f32], neox: bool) {
    let half = h.len() / 2;
    for i in 0..half {
        let (cos, sin) = (cs[2 * i], cs[2 * i + 1]);
        let (a, b) = if neox {
            (i, i + half)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (x0, x1) = (h[a], h[b]);
        h[a] = x0 * cos - x1 * sin;
        h[b] = x0 * sin + x1 * cos;
    }
}

pub(super) fn add(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// x[t] += b for each row of len(b).
pub(super) fn add_bias(x: &mut [f32], b: &[f32]) {
    for row in x.chunks_exact_mut(b.len()) {
        add(row, b);
    }
}

/// x *= k.
pub(super) fn scale(x: &mut [f32], k: f32) {
    for v in x.iter_mut() {
        *v *= k;
    }
}

/// x = cap * tanh(x / cap), as ggml computes it (scale, tanh, scale).
pub(super) fn softcap(x: &mut [f32], cap: f32) {
    let inv = 1.0 / cap;
    for v in x.iter_mut() {
        *v = (*v * inv).tanh() * cap;
    }
}

/// GELU (tanh approximation) of every f16 value, rounded to f16: ggml's `ggml_table_gelu_f16`,
/// which its CPU backend looks GELU up in (x rounded to f16 first).
fn gelu_table() -> &'static [half::f16] {
    static TABLE: OnceLock<Box<[half::f16]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        #[allow(clippy::excessive_precision)]
        const SQRT_2_OVER_PI: f32 = 0.797_884_560_802_865_4;
        const GELU_COEF_A: f32 = 0.044715;
        (0..=u16::MAX)
            .map(|h| {
                let x = half::f16::from_bits(h).to_f32();
                let g = 0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)).tanh());
                half::f16::from_f32(g)
            })
            .collect()
    })
}

/// a = gelu(a) * b (GeGLU), as ggml's `ggml_vec_geglu_f32`: 0 below -10, the identity above 10,
/// the f16 table in between.
pub(super) fn geglu(a: &mut [f32], b: &[f32]) {
    let t = gelu_table();
    for (x, &g) in a.iter_mut().zip(b) {
        let v = *x;
        let y = if v <= -10.0 {
            0.0
        } else if v >= 10.0 {
            v
        } else {
            t[half::f16::from_f32(v).to_bits() as usize].to_f32()
        };
        *x = y * g;
    }
}

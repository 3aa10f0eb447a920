//! Element-wise math written over 8-lane arrays, for the ISA modules to compile inside their
//! `#[target_feature]` functions (LLVM turns each lane loop into one vector instruction: AVX2+FMA
//! on x86-64, NEON on aarch64). The scalar references are in [`crate::scalar::ops`].

/// Lanes per step.
pub(crate) const LANES: usize = 8;

/// The constants of [`exp_lanes`], shared with the ISA modules' vector copies of it.
pub(crate) mod exp_consts {
    /// 1.5 * 2^23: added and subtracted to round to the nearest integer.
    pub(crate) const SHIFT: f32 = 12_582_912.0;
    /// ln 2 to 16 significant bits (0x3F31_7200, exact).
    pub(crate) const LN2_HI: f32 = 0.693_145_75;
    /// ln 2 - LN2_HI, rounded to f32.
    pub(crate) const LN2_LO: f32 = 1.428_606_8e-6;
    /// The Taylor coefficients of e^r to r^7.
    pub(crate) const C: [f32; 8] = [
        1.0,
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
    ];
}

/// e^x per lane, for the SwiGLU gate (not a general-purpose `exp`): inputs are clamped to
/// [-87, 88.3], so results are normal f32 (no infinities, no subnormals: x/(1 + e^-x) is then
/// within 1e-37 of its limit at either end). Method: n = round(x / ln 2) by adding and
/// subtracting 1.5 * 2^23 (round to nearest even), r = x - n ln 2 in two FMAs (Cody-Waite: ln 2
/// split in a 16-bit head and a tail), |r| <= ln(2)/2; e^r by its Taylor series to r^7 (Horner,
/// truncation error < 0.347^8 / 8! < 6e-9, under 0.05 ulp), then 2^n put into the exponent
/// field. Measured against f64 `exp` over [-87, 88.3]: within 2 ulp (see the kernel tests).
#[inline(always)]
pub(crate) fn exp_lanes(x: [f32; LANES]) -> [f32; LANES] {
    use exp_consts::*;
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    let mut out = [0.0f32; LANES];
    for i in 0..LANES {
        let v = x[i].clamp(-87.0, 88.3);
        let z = v.mul_add(LOG2E, SHIFT);
        let n = z - SHIFT;
        let r = (-n).mul_add(LN2_HI, v);
        let r = (-n).mul_add(LN2_LO, r);
        let mut p = C[7];
        for &c in C[..7].iter().rev() {
            p = p.mul_add(r, c);
        }
        // n is in [-126, 127]: the low bits of z hold n (two's complement in the mantissa).
        let e = (z.to_bits() as i32).wrapping_add(127) << 23;
        out[i] = p * f32::from_bits(e as u32);
    }
    out
}

/// One step of [`swiglu_lanes`]. (A function, not a closure: closures do not inherit the
/// caller's target features, and `mul_add` without FMA is a libm call.)
#[inline(always)]
fn swiglu_step(x: &mut [f32; LANES], y: &[f32; LANES]) {
    let e = exp_lanes(std::array::from_fn(|i| -x[i]));
    for i in 0..LANES {
        x[i] = x[i] / (1.0 + e[i]) * y[i];
    }
}

/// a = silu(a) * b = a / (1 + e^-a) * b, 8 lanes at a time; a short tail goes through the same
/// lane code in a padded copy, so every element gets the same arithmetic wherever it sits.
#[inline(always)]
pub(crate) fn swiglu_lanes(a: &mut [f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "swiglu: gate and up lengths differ");
    let mut xs = a.chunks_exact_mut(LANES);
    let mut ys = b.chunks_exact(LANES);
    for (x, y) in (&mut xs).zip(&mut ys) {
        swiglu_step(
            x.try_into().expect("8 lanes"),
            y.try_into().expect("8 lanes"),
        );
    }
    let (xt, yt) = (xs.into_remainder(), ys.remainder());
    if !xt.is_empty() {
        let mut x = [0.0f32; LANES];
        let mut y = [0.0f32; LANES];
        x[..xt.len()].copy_from_slice(xt);
        y[..yt.len()].copy_from_slice(yt);
        swiglu_step(&mut x, &y);
        xt.copy_from_slice(&x[..xt.len()]);
    }
}

/// s = softmax(s * scale), 8 lanes at a time ([`crate::dispatch::SoftmaxFn`]): the scaled scores
/// and their maximum, then e^(x - max) by [`exp_lanes`] (0 where x - max < -87, below the
/// polynomial's clamp: such a weight is under 2^-125 of the largest, which is 1), each 8 lanes
/// summed in f32 in a fixed pairwise order and the sums added in f64 (ggml's AVX2
/// `ggml_vec_soft_max_f32` sums its 8-lane groups the same way); a short tail goes through the same
/// lane code padded with -inf, which weighs 0.
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))] // x86-64 has its own intrinsics
#[inline(always)]
pub(crate) fn softmax_lanes(s: &mut [f32], scale: f32) {
    let mut mx = [f32::NEG_INFINITY; LANES];
    let mut xs = s.chunks_exact_mut(LANES);
    for x in &mut xs {
        for i in 0..LANES {
            x[i] *= scale;
            mx[i] = mx[i].max(x[i]);
        }
    }
    for v in xs.into_remainder() {
        *v *= scale;
        mx[0] = mx[0].max(*v);
    }
    let max = mx.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    let mut xs = s.chunks_exact_mut(LANES);
    for x in &mut xs {
        sum += softmax_step(x.try_into().expect("8 lanes"), max) as f64;
    }
    let tail = xs.into_remainder();
    if !tail.is_empty() {
        let mut x = [f32::NEG_INFINITY; LANES];
        x[..tail.len()].copy_from_slice(tail);
        sum += softmax_step(&mut x, max) as f64;
        tail.copy_from_slice(&x[..tail.len()]);
    }
    let inv = (1.0 / sum) as f32;
    for v in s.iter_mut() {
        *v *= inv;
    }
}

/// One step of [`softmax_lanes`]: x = e^(x - max) (0 below -87), returns the lanes' sum. (A
/// function, not a closure: closures do not inherit the caller's target features.)
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
#[inline(always)]
fn softmax_step(x: &mut [f32; LANES], max: f32) -> f32 {
    let e = exp_lanes(std::array::from_fn(|i| x[i] - max));
    for i in 0..LANES {
        x[i] = if x[i] - max < -87.0 { 0.0 } else { e[i] };
    }
    let p: [f32; 4] = std::array::from_fn(|i| x[i] + x[i + 4]);
    (p[0] + p[2]) + (p[1] + p[3])
}

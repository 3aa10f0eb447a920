//! Element-wise reference operations (libm's `exp`): the oracle for the vector versions.

/// a = silu(a) * b = a / (1 + e^-a) * b (ggml's `ggml_silu_f32(a) * b`).
pub fn swiglu(a: &mut [f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "swiglu: gate and up lengths differ");
    for (x, &y) in a.iter_mut().zip(b) {
        *x = *x / (1.0 + (-*x).exp()) * y;
    }
}

/// One cached position of ggml's flash attention over an F16 cache, for one query head (the
/// reference for [`crate::dispatch::FlashStepFn`]): when `ms` is not 1 (the position raised the
/// running maximum) the f16 accumulator is first scaled, acc = f16(acc * ms); then
/// acc = f16(fma(v, vs, acc)), the product fused with the add as ggml's FMA builds compute it.
/// Panics when the lengths differ.
pub fn flash_step_f16(acc: &mut [half::f16], v: &[half::f16], ms: f32, vs: f32) {
    use half::f16;
    assert_eq!(
        acc.len(),
        v.len(),
        "flash step: accumulator and value lengths differ"
    );
    if ms != 1.0 {
        for a in acc.iter_mut() {
            *a = f16::from_f32(a.to_f32() * ms);
        }
    }
    for (a, &x) in acc.iter_mut().zip(v) {
        *a = f16::from_f32(x.to_f32().mul_add(vs, a.to_f32()));
    }
}

/// s = softmax(s * scale) in place (ggml's `soft_max` of the scaled scores): the maximum
/// subtracted, libm's e^x (0 below -105, where f32 e^x rounds to 0 anyway), the sum in f64.
/// The reference for [`crate::dispatch::SoftmaxFn`].
pub fn softmax(s: &mut [f32], scale: f32) {
    let mut max = f32::NEG_INFINITY;
    for v in s.iter_mut() {
        *v *= scale;
        max = max.max(*v);
    }
    let mut sum = 0.0f64;
    for v in s.iter_mut() {
        let d = *v - max;
        *v = if d < -105.0 { 0.0 } else { d.exp() };
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in s.iter_mut() {
        *v *= inv;
    }
}

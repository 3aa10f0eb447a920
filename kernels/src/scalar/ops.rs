//! Element-wise reference operations (libm's `exp`): the oracle for the vector versions.

/// a = silu(a) * b = a / (1 + e^-a) * b (ggml's `ggml_silu_f32(a) * b`).
pub fn swiglu(a: &mut [f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "swiglu: gate and up lengths differ");
    for (x, &y) in a.iter_mut().zip(b) {
        *x = *x / (1.0 + (-*x).exp()) * y;
    }
}

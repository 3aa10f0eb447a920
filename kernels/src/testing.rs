//! Deterministic inputs for the workspace's tests and benchmarks (not part of the API): one
//! generator, so that the kernels' tests, the converter's tests and the benches draw the same way,
//! and one list of the formats.

use crate::types::GgmlType;

/// Every weight format with a dot product, floats first.
pub const WEIGHT_TYPES: [GgmlType; 13] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// Knuth's MMIX linear congruential generator; each draw steps the state and reads its top 24 bits.
pub struct Lcg(pub u64);

impl Lcg {
    /// Uniform in [0, 1), 24 bits.
    pub fn unit(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [-1, 1).
    pub fn signed(&mut self) -> f32 {
        self.unit() * 2.0 - 1.0
    }
}

/// `n` values uniform in [-1, 1), the generator started at `seed`.
pub fn lcg_values(n: usize, seed: u64) -> Vec<f32> {
    let mut g = Lcg(seed);
    (0..n).map(|_| g.signed()).collect()
}

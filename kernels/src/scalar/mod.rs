//! Scalar reference kernels: always compiled; the fallback and the test oracle.
//!
//! One file per format. Each file offers typed functions over block slices:
//! - `quantize_row_<t>_ref(x: &[f32], y: &mut [Block<T>])`: ggml's `quantize_row_<t>_ref`, byte-exact
//!   with llama.cpp commit c392e5094 (written as plain `a * b + c`: Rust never fuses a multiply-add,
//!   which is what the reference build did);
//! - `dequantize_row_<t>(x: &[Block<T>], y: &mut [f32])`: bit-identical with ggml's `to_float`;
//! - `vec_dot_<t>_<partner>(w: &[Block<T>], a: &[Block<Partner>]) -> f32`: ggml's
//!   `ggml_vec_dot_*_generic`, integer sums per block and the same order of float operations;
//! - for the activation formats, `from_float_<t>`: what the CPU backend uses for activations.
//!
//! The typed functions `assert!` that the slices agree in length (a caller bug, not bad input); the
//! byte-level entry points in [`crate::dispatch`] check lengths and return errors first.

pub mod float;
pub mod k_quants;
pub mod ops;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod q8_1;
pub mod q8_k;

pub use float::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};

/// A quantizer's walk: each block of `y` with the `elems` values of `x` it stands for. Panics
/// (naming `what`) unless `x` holds exactly `elems` values per block.
#[track_caller]
pub(crate) fn quant_blocks<'a, B>(
    what: &str,
    x: &'a [f32],
    y: &'a mut [B],
    elems: usize,
) -> impl Iterator<Item = (&'a [f32], &'a mut B)> {
    assert_eq!(x.len(), y.len() * elems, "{what}: length mismatch");
    x.chunks_exact(elems).zip(y.iter_mut())
}

/// A dequantizer's walk: each block of `x` with the `elems` values of `y` it fills. Panics
/// (naming `what`) unless `y` holds exactly `elems` values per block.
#[track_caller]
pub(crate) fn dequant_blocks<'a, B>(
    what: &str,
    x: &'a [B],
    y: &'a mut [f32],
    elems: usize,
) -> impl Iterator<Item = (&'a B, &'a mut [f32])> {
    assert_eq!(y.len(), x.len() * elems, "{what}: length mismatch");
    x.iter().zip(y.chunks_exact_mut(elems))
}

/// The value of largest magnitude (the first of equal magnitudes; 0 for none): the legacy
/// formats' scale is it divided by minus the level offset, so that value maps to level 0.
#[inline(always)]
pub(crate) fn signed_absmax(xb: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in xb {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// ggml's `nearest_int`: round to nearest, ties to even, by the magic-number trick
/// (`x + 1.5 * 2^23` puts the rounded integer in the low mantissa bits).
///
/// Valid for |x| <= 4194303 (2^22 - 1), as in ggml; outside that range (or for NaN) the result is an
/// unspecified integer, never a panic.
#[inline(always)]
pub fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    let i = val.to_bits() as i32;
    (i & 0x007f_ffff) - 0x0040_0000
}

/// Rounds half to even to an integer, saturating to the i8 range: what `roundevenf` and the
/// SIMD round-to-nearest instructions give, then a saturating pack. Uses the magic-number trick
/// for |x| <= 2^22 - 1 (every finite activation times 127/amax); inf and NaN go the slow way
/// (NaN -> 0).
#[inline(always)]
pub fn round_ties_even_i8(x: f32) -> i8 {
    if x.abs() <= 4_194_303.0 {
        nearest_int(x).clamp(-128, 127) as i8
    } else {
        x.round_ties_even() as i8
    }
}

/// C's `roundf` (half away from zero) to an integer, saturating to the i8 range, without a libm
/// call: for |x| < 2^23, `x - trunc(x)` is exact, so comparing it with 0.5 decides exactly.
#[inline(always)]
pub fn round_half_away_i8(x: f32) -> i8 {
    if x.abs() < 8_388_608.0 {
        let i = x as i32;
        let frac = x - i as f32;
        // Branch-free: a data-dependent branch here mispredicts on every other element.
        let r = i + (frac >= 0.5) as i32 - (frac <= -0.5) as i32;
        r.clamp(-128, 127) as i8
    } else {
        x.round() as i8
    }
}

/// ggml's `GGML_FP16_TO_FP32` on the raw bits of an `f16` field (exact).
#[inline(always)]
pub(crate) fn h2f(h: half::f16) -> f32 {
    f16_to_f32(h.to_bits())
}

/// ggml's `GGML_FP32_TO_FP16`, as an `f16` field value.
#[inline(always)]
pub(crate) fn f2h(x: f32) -> half::f16 {
    half::f16::from_bits(f32_to_f16(x))
}

/// Unpacks scale and min `j` (0..8) of a Q4_K/Q5_K block (`get_scale_min_k4` in ggml):
/// `scales[0..4]` low 6 bits = scales 0..3, `scales[4..8]` low 6 bits = mins 0..3,
/// `scales[8..12]` = low nibble scale / high nibble min of 4..7, whose top 2 bits sit in the top
/// 2 bits of `scales[j-4]` (scale) and `scales[j]` (min).
#[inline(always)]
pub fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        let d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        let m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        (d, m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-0.5), 0);
        assert_eq!(nearest_int(-1.5), -2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(3.49), 3);
        assert_eq!(nearest_int(-127.0), -127);
        assert_eq!(nearest_int(4_194_303.0), 4_194_303);
    }

    /// The fast roundings agree with std's on a dense sweep of [-300, 300] (all halves and
    /// quarter steps, plus values one ulp either side of every tie) and on inf/NaN.
    #[test]
    fn fast_roundings_match_std() {
        let mut xs = vec![
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e30,
            -1e30,
            0.0,
            -0.0,
        ];
        for k in -1200..=1200 {
            let x = k as f32 * 0.25;
            xs.extend([
                x,
                f32::from_bits(x.to_bits() + 1),
                f32::from_bits(x.to_bits().wrapping_sub(1)),
            ]);
        }
        for x in xs {
            assert_eq!(round_ties_even_i8(x), x.round_ties_even() as i8, "{x:e}");
            assert_eq!(round_half_away_i8(x), x.round() as i8, "{x:e}");
        }
    }
}

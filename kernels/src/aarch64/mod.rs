//! aarch64 NEON kernels, with an `sdot` path where dotprod is present.
//!
//! NEON is part of the aarch64 baseline, so the plain NEON kernels always run; on CPUs with the
//! dotprod extension (Cortex-A76 / Raspberry Pi 5 and later) [`install`] picks the `sdot` variants,
//! on those without (Cortex-A72 / Raspberry Pi 4) the widening-multiply ones (`smull`/`sadalp`).
//! One binary serves both: every kernel body is generic over `const SDOT: bool` and compiled twice.
//!
//! Integer products are summed in integers per block, then scaled in f32, as ggml's NEON paths do;
//! the 32-element formats process two blocks per step into two float accumulators.
//!
//! Files by format: `q4_0.rs` ... `q2_k.rs` ... `q6_k.rs` (vec_dot), `float.rs` (F32/F16/BF16 · f32), `quant.rs`
//! (activation quantizers Q8_0/Q8_1/Q8_K), `simd.rs` (shared helpers), `tile.rs` (prefill tiles of
//! Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 and Q2_K..Q6_K with `sdot`, installed only with dotprod), `mmla.rs` (the
//! same tiles with `smmla`, installed only with i8mm).

use crate::blocks::{cast_blocks, Block};
use crate::dispatch::{install_offers, Backend, KernelTable, Offer};
#[cfg(test)]
use crate::dispatch::{QuantizeRowFn, VecDotFn};
#[cfg(test)]
use crate::types::GgmlType;

/// Defines the two safe `VecDotFn` entry points of a module whose
/// `unsafe fn vec_dot<const SDOT: bool>(w: &[$W], a: &[$A]) -> f32` does the work.
macro_rules! vec_dot_entry_points {
    ($neon:ident, $sdot:ident, $W:ty, $A:ty) => {
        /// `VecDotFn` entry point, plain NEON (any aarch64 CPU). Panics unless `w` and `a` hold
        /// exactly `n` elements each (suitably aligned).
        pub(crate) fn $neon(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let (w, a) = $crate::aarch64::rows::<$W, $A>(n, w, a);
            // SAFETY: NEON is part of the aarch64 baseline; with SDOT = false nothing else is used;
            // `rows` checked that both slices hold the same number of blocks.
            unsafe { vec_dot::<false>(w, a) }
        }

        /// `VecDotFn` entry point using `sdot`. Reachable only through the kernel table, which
        /// `install` fills with it only after detecting dotprod (debug builds check the CPU on
        /// every call, as the x86 entry points do). Panics unless `w` and `a` hold exactly `n`
        /// elements each (suitably aligned).
        pub(crate) fn $sdot(n: usize, w: &[u8], a: &[u8]) -> f32 {
            #[target_feature(enable = "neon,dotprod")]
            fn with_dotprod(w: &[$W], a: &[$A]) -> f32 {
                // SAFETY: this function has dotprod enabled, so the CPU has it (see the
                // caller); the slices have equal lengths (checked by `rows`).
                unsafe { vec_dot::<true>(w, a) }
            }
            let (w, a) = $crate::aarch64::rows::<$W, $A>(n, w, a);
            debug_assert!(
                $crate::aarch64::has_dotprod(),
                "a dotprod kernel ran on a CPU without dotprod"
            );
            // SAFETY: reachable only through the kernel table, filled with this entry point only
            // after detecting dotprod.
            unsafe { with_dotprod(w, a) }
        }
    };
}
pub(crate) use vec_dot_entry_points;

mod float;
mod mmla;
mod pair;
mod q2_k;
mod q3_k;
mod q4_0;
mod q4_1;
mod q4_k;
mod q5_0;
mod q5_1;
mod q5_k;
mod q6_k;
mod q8_0;
mod quant;
mod simd;
mod tile;

#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;

#[cfg(test)]
use q4_0::vec_dot_q4_0_q8_0_neon;

/// Views the two rows of a dot product as blocks, checking that each holds exactly `n` elements.
/// Panics on a mismatch (a caller bug: the safe entry points in `dispatch` check first).
#[inline]
pub(crate) fn rows<'a, W: Block, A: Block>(
    n: usize,
    w: &'a [u8],
    a: &'a [u8],
) -> (&'a [W], &'a [A]) {
    let w = cast_blocks::<W>(w);
    let a = cast_blocks::<A>(a);
    assert!(
        w.len().checked_mul(W::ELEMS) == Some(n) && a.len().checked_mul(A::ELEMS) == Some(n),
        "vec_dot: {} weight blocks and {} activation blocks for n = {}",
        w.len(),
        a.len(),
        n
    );
    (w, a)
}

/// True when the CPU has the dotprod extension (`sdot`/`udot`).
pub fn has_dotprod() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

/// True when the CPU has the i8mm extension (`smmla`) and dotprod (every such CPU has both; the
/// `smmla` tiles stand in for the `sdot` ones).
pub fn has_i8mm() -> bool {
    std::arch::is_aarch64_feature_detected!("i8mm") && has_dotprod()
}

/// The kernels of this module, one list per file.
const OFFERS: [&[Offer]; 12] = [
    q4_0::OFFERS,
    q4_1::OFFERS,
    q5_0::OFFERS,
    q5_1::OFFERS,
    q8_0::OFFERS,
    q2_k::OFFERS,
    q3_k::OFFERS,
    q4_k::OFFERS,
    q5_k::OFFERS,
    q6_k::OFFERS,
    float::OFFERS,
    quant::OFFERS,
];

/// The integer-dot kernels of this module for `ty`: `(activation type, plain NEON, sdot)`.
#[cfg(test)]
pub(crate) fn int_kernels(ty: GgmlType) -> Option<(GgmlType, VecDotFn, VecDotFn)> {
    use crate::dispatch::{find_offer, OfferedKernel};
    let dot = |needs| {
        find_offer(&OFFERS, ty, needs, |k| match k {
            OfferedKernel::VecDot(f) => Some(f),
            _ => None,
        })
    };
    let act = OFFERS
        .iter()
        .flat_map(|l| l.iter())
        .find(|o| o.ty == ty)?
        .act;
    Some((act, dot(Backend::Neon)?, dot(Backend::NeonDotprod)?))
}

/// The float dot product of this module for `ty` (all pair with f32 activations).
#[cfg(test)]
pub(crate) fn float_kernel(ty: GgmlType) -> Option<VecDotFn> {
    use crate::dispatch::{find_offer, OfferedKernel};
    let f = find_offer(&OFFERS, ty, Backend::Neon, |k| match k {
        OfferedKernel::VecDot(f) => Some(f),
        _ => None,
    });
    f.filter(|_| matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16))
}

/// The activation quantizer of this module for `ty` (byte-identical with the scalar one).
#[cfg(test)]
pub(crate) fn from_float_kernel(ty: GgmlType) -> Option<QuantizeRowFn> {
    use crate::dispatch::{find_offer, OfferedKernel};
    find_offer(&OFFERS, ty, Backend::Neon, |k| match k {
        OfferedKernel::FromFloat(f) => Some(f),
        _ => None,
    })
}

/// Overwrites the entries of `table` that this ISA accelerates, after run-time feature detection:
/// the `sdot` kernels (dot products and prefill tiles) when the CPU has dotprod, the plain NEON
/// ones otherwise; the float dot products; the activation quantizers.
pub fn install(table: &mut KernelTable) {
    table.swiglu = swiglu;
    table.softmax = softmax;
    let (dotprod, i8mm) = (has_dotprod(), has_i8mm());
    let has = |b: Backend| match b {
        Backend::Neon => true,
        Backend::NeonDotprod => dotprod,
        Backend::NeonI8mm => i8mm,
        _ => false,
    };
    for list in OFFERS {
        install_offers(table, list, has);
    }
    table.backend = if i8mm {
        Backend::NeonI8mm
    } else if dotprod {
        Backend::NeonDotprod
    } else {
        Backend::Neon
    };
}

/// `s = softmax(s * scale)`: [`crate::vecmath::softmax_lanes`] on NEON (two 128-bit vectors per
/// step).
fn softmax(s: &mut [f32], scale: f32) {
    crate::vecmath::softmax_lanes(s, scale)
}

/// `a = silu(a) * b`: [`crate::vecmath::swiglu_lanes`], which NEON (always present on aarch64)
/// runs as two 128-bit vectors per step.
fn swiglu(a: &mut [f32], b: &[f32]) {
    crate::vecmath::swiglu_lanes(a, b)
}

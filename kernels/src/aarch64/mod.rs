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
//! Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q6_K with `sdot`, installed only with dotprod).

use crate::blocks::{cast_blocks, Block};
use crate::dispatch::{Backend, GemmTileFn, KernelTable, QuantizeRowFn, VecDotFn};
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
mod tests;

pub(crate) use float::{multi_dot_f16, vec_dot_bf16_f32, vec_dot_f16_f32, vec_dot_f32};
pub(crate) use q2_k::{vec_dot_q2_k_q8_k_neon, vec_dot_q2_k_q8_k_sdot};
pub(crate) use q3_k::{vec_dot_q3_k_q8_k_neon, vec_dot_q3_k_q8_k_sdot};
pub(crate) use q4_0::{vec_dot_q4_0_q8_0_neon, vec_dot_q4_0_q8_0_sdot};
pub(crate) use q4_1::{vec_dot_q4_1_q8_1_neon, vec_dot_q4_1_q8_1_sdot};
pub(crate) use q4_k::{vec_dot_q4_k_q8_k_neon, vec_dot_q4_k_q8_k_sdot};
pub(crate) use q5_0::{vec_dot_q5_0_q8_0_neon, vec_dot_q5_0_q8_0_sdot};
pub(crate) use q5_1::{vec_dot_q5_1_q8_1_neon, vec_dot_q5_1_q8_1_sdot};
pub(crate) use q5_k::{vec_dot_q5_k_q8_k_neon, vec_dot_q5_k_q8_k_sdot};
pub(crate) use q6_k::{vec_dot_q6_k_q8_k_neon, vec_dot_q6_k_q8_k_sdot};
pub(crate) use q8_0::{vec_dot_q8_0_q8_0_neon, vec_dot_q8_0_q8_0_sdot};
pub(crate) use quant::{from_float_q8_0, from_float_q8_1, from_float_q8_k};

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

/// The integer-dot kernels of this module for `ty`: `(activation type, plain NEON, sdot)`.
pub(crate) fn int_kernels(ty: GgmlType) -> Option<(GgmlType, VecDotFn, VecDotFn)> {
    use GgmlType as T;
    let k: (GgmlType, VecDotFn, VecDotFn) = match ty {
        T::Q4_0 => (T::Q8_0, vec_dot_q4_0_q8_0_neon, vec_dot_q4_0_q8_0_sdot),
        T::Q4_1 => (T::Q8_1, vec_dot_q4_1_q8_1_neon, vec_dot_q4_1_q8_1_sdot),
        T::Q5_0 => (T::Q8_0, vec_dot_q5_0_q8_0_neon, vec_dot_q5_0_q8_0_sdot),
        T::Q5_1 => (T::Q8_1, vec_dot_q5_1_q8_1_neon, vec_dot_q5_1_q8_1_sdot),
        T::Q8_0 => (T::Q8_0, vec_dot_q8_0_q8_0_neon, vec_dot_q8_0_q8_0_sdot),
        T::Q2_K => (T::Q8_K, vec_dot_q2_k_q8_k_neon, vec_dot_q2_k_q8_k_sdot),
        T::Q3_K => (T::Q8_K, vec_dot_q3_k_q8_k_neon, vec_dot_q3_k_q8_k_sdot),
        T::Q4_K => (T::Q8_K, vec_dot_q4_k_q8_k_neon, vec_dot_q4_k_q8_k_sdot),
        T::Q5_K => (T::Q8_K, vec_dot_q5_k_q8_k_neon, vec_dot_q5_k_q8_k_sdot),
        T::Q6_K => (T::Q8_K, vec_dot_q6_k_q8_k_neon, vec_dot_q6_k_q8_k_sdot),
        _ => return None,
    };
    Some(k)
}

/// The float kernels of this module for `ty` (all pair with f32 activations).
pub(crate) fn float_kernel(ty: GgmlType) -> Option<VecDotFn> {
    match ty {
        GgmlType::F32 => Some(vec_dot_f32),
        GgmlType::F16 => Some(vec_dot_f16_f32),
        GgmlType::BF16 => Some(vec_dot_bf16_f32),
        _ => None,
    }
}

/// The activation quantizers of this module (byte-identical with the scalar `from_float`).
pub(crate) fn from_float_kernel(ty: GgmlType) -> Option<QuantizeRowFn> {
    match ty {
        GgmlType::Q8_0 => Some(from_float_q8_0),
        GgmlType::Q8_1 => Some(from_float_q8_1),
        GgmlType::Q8_K => Some(from_float_q8_k),
        _ => None,
    }
}

/// Overwrites the entries of `table` that this ISA accelerates, after run-time feature detection:
/// the `sdot` dot products when the CPU has dotprod, the plain NEON ones otherwise; the float dot
/// products; the activation quantizers. An entry is replaced only when its activation type is the
/// one the NEON kernel expects, so a table that pairs differently keeps its scalar kernel.
pub fn install(table: &mut KernelTable) {
    table.swiglu = swiglu;
    let dotprod = has_dotprod();
    let int_backend = if dotprod {
        Backend::NeonDotprod
    } else {
        Backend::Neon
    };
    for ty in GgmlType::ALL {
        let Some(entry) = table.get_mut(ty) else {
            continue;
        };
        if let Some((partner, neon, sdot)) = int_kernels(ty) {
            if entry.vec_dot_type == partner {
                entry.vec_dot = Some(if dotprod { sdot } else { neon });
                entry.backend = int_backend;
            }
        }
        if let Some(f) = float_kernel(ty) {
            if entry.vec_dot_type == GgmlType::F32 {
                entry.vec_dot = Some(f);
                entry.backend = Backend::Neon;
            }
        }
        if ty == GgmlType::F16 {
            entry.multi_dot = Some(multi_dot_f16);
        }
        if let Some(q) = from_float_kernel(ty) {
            entry.from_float = Some(q);
        }
        if dotprod {
            let t: Option<(GgmlType, GemmTileFn)> = match ty {
                GgmlType::Q4_0 => Some((GgmlType::Q8_0, tile::gemm_tile_q4_0)),
                GgmlType::Q4_1 => Some((GgmlType::Q8_1, tile::gemm_tile_q4_1)),
                GgmlType::Q5_0 => Some((GgmlType::Q8_0, tile::gemm_tile_q5_0)),
                GgmlType::Q5_1 => Some((GgmlType::Q8_1, tile::gemm_tile_q5_1)),
                GgmlType::Q8_0 => Some((GgmlType::Q8_0, tile::gemm_tile_q8_0)),
                GgmlType::Q4_K => Some((GgmlType::Q8_K, tile::gemm_tile_q4_k)),
                GgmlType::Q6_K => Some((GgmlType::Q8_K, tile::gemm_tile_q6_k)),
                _ => None,
            };
            if let Some((partner, f)) = t {
                if entry.vec_dot_type == partner {
                    entry.gemm_tile = Some(f);
                }
            }
        }
    }
    table.backend = int_backend;
}

/// `a = silu(a) * b`: [`crate::vecmath::swiglu_lanes`], which NEON (always present on aarch64)
/// runs as two 128-bit vectors per step.
fn swiglu(a: &mut [f32], b: &[f32]) {
    crate::vecmath::swiglu_lanes(a, b)
}

//! ferrolm-kernels: ggml block formats and the kernels that run them.
//!
//! - `types`: ggml type ids and block geometry.
//! - `blocks`: one `#[repr(C)]` struct per block format, sizes pinned.
//! - `scalar`: reference quantizers (byte-exact with ggml), dequantizers and dot products; always
//!   compiled; the fallback and the test oracle.
//! - `x86_64` / `aarch64`: hand-written SIMD (AVX2/AVX-512, NEON/dotprod), chosen at run time.
//! - `dispatch`: the kernel table, filled once after feature detection by one loop over the
//!   kernels each ISA module offers per format (`Offer`, `install_offers`).
//! - `matmul`: mat-vec and batched mat-mul over the kernel table (activations quantized once;
//!   decode through `gemv`, prefill through `gemm_tile`; bit-identical for any thread count).
//! - `pool`: the allocation-free thread pool `matmul` runs on.
//! - `views`: strided row views (`Rows`, `RowsMut`), checked once, that the multi-row kernels take.
//! - `testing` (hidden): the LCG and format list the workspace's tests and benches share.
//! - `vecmath`: element-wise math over 8-lane arrays that the ISA modules compile as vectors.
//!
//! This crate depends on nothing of the runtime.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod blocks;
pub mod dispatch;
pub mod matmul;
pub mod pool;
pub mod scalar;
#[doc(hidden)]
pub mod testing;
pub mod types;
mod vecmath;
pub mod views;

#[cfg(target_arch = "x86_64")]
pub mod x86_64;

#[cfg(target_arch = "aarch64")]
pub mod aarch64;

pub use blocks::*;
pub use dispatch::{Backend, KernelTable, TypeKernels};
pub use types::GgmlType;

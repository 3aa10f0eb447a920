//! The kernel table: one entry per ggml type, filled once at start-up after CPU feature detection.
//!
//! `kernels()` returns the process-wide table. `FERROLM_KERNELS=scalar` forces the scalar reference
//! kernels everywhere (any other value, or unset, means "best available").
//!
//! Contract for the ISA modules: `x86_64::install(&mut KernelTable)` and
//! `aarch64::install(&mut KernelTable)` run after the scalar table is built and overwrite the
//! entries they accelerate, choosing by run-time feature detection.

use crate::types::GgmlType;

/// Dot product of one weight row with one activation row.
/// `n` = elements in the row; `w` = the row's bytes in the weight type; `a` = the row's bytes in the
/// weight type's `vec_dot_type` (the activation partner). Returns the f32 dot product.
/// Implementations assert that both slices hold exactly `n` elements.
pub type VecDotFn = fn(n: usize, w: &[u8], a: &[u8]) -> f32;

/// Quantize `x` (a whole number of blocks) into `out` (exactly the row's bytes).
pub type QuantizeRowFn = fn(x: &[f32], out: &mut [u8]);

/// Dequantize `src` (a whole number of blocks) into `out` (exactly the row's elements).
pub type DequantizeRowFn = fn(src: &[u8], out: &mut [f32]);

/// Which implementation family filled an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Scalar,
    Avx2,
    Avx512,
    Neon,
    NeonDotprod,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::Avx2 => "avx2",
            Backend::Avx512 => "avx512",
            Backend::Neon => "neon",
            Backend::NeonDotprod => "neon+dotprod",
        }
    }
}

/// The kernels for one ggml type.
#[derive(Clone, Copy, Debug)]
pub struct TypeKernels {
    pub ty: GgmlType,
    /// The activation format `vec_dot` pairs with (Q8_0, Q8_1, Q8_K, F32, ...).
    pub vec_dot_type: GgmlType,
    /// ggml's reference quantizer (`quantize_row_*_ref`): byte-exact with llama-quantize.
    pub quantize_row_ref: Option<QuantizeRowFn>,
    /// The fast quantizer used for activations when this type is someone's `vec_dot_type`.
    /// May round ties differently from the reference (as ggml's own SIMD path does).
    pub from_float: Option<QuantizeRowFn>,
    pub dequantize_row: Option<DequantizeRowFn>,
    pub vec_dot: Option<VecDotFn>,
    /// Optional multi-row x multi-token tile kernel for prefill; `None` means loop over `vec_dot`.
    pub gemm_tile: Option<GemmTileFn>,
    /// Which backend `vec_dot` comes from.
    pub backend: Backend,
}

/// Table indexed by ggml type id.
pub const TABLE_LEN: usize = 31;

#[derive(Clone, Debug)]
pub struct KernelTable {
    pub entries: [Option<TypeKernels>; TABLE_LEN],
    /// The best backend in use (for reporting).
    pub backend: Backend,
}

impl KernelTable {
    pub fn get(&self, ty: GgmlType) -> Option<&TypeKernels> {
        self.entries[ty.id() as usize].as_ref()
    }

    pub fn get_mut(&mut self, ty: GgmlType) -> Option<&mut TypeKernels> {
        self.entries[ty.id() as usize].as_mut()
    }
}

/// A tile of a batched mat-mul (prefill): for r in 0..nr and t in 0..nt,
/// `out[t * out_stride + r] = dot(w[r * w_stride ..][..row bytes], a[t * a_stride ..][..row bytes])`,
/// with `n` elements per row, `w` in the weight type and `a` in its `vec_dot_type`. Lets a kernel unpack
/// each weight block once and reuse it across several tokens.
pub type GemmTileFn = fn(
    n: usize,
    w: &[u8],
    w_stride: usize,
    nr: usize,
    a: &[u8],
    a_stride: usize,
    nt: usize,
    out: &mut [f32],
    out_stride: usize,
);

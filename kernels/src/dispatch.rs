//! The kernel table: one entry per ggml type, filled once at start-up after CPU feature detection.
//!
//! `kernels()` returns the process-wide table. `FERROLM_KERNELS=scalar` forces the scalar reference
//! kernels everywhere; `FERROLM_KERNELS=avx2` stops an x86-64 CPU at its AVX2 kernels (what a
//! laptop without AVX-512 or AVX-VNNI runs), `FERROLM_KERNELS=avxvnni` at its AVX-VNNI ones (Intel
//! 12th generation and later, Zen 5: `vpdpbusd` on 256-bit registers without AVX-512); any other
//! value, or unset, means "best available".
//!
//! Contract for the ISA modules: `x86_64::install(&mut KernelTable)` and
//! `aarch64::install(&mut KernelTable)` run after the scalar table is built and overwrite the
//! entries they accelerate, choosing by run-time feature detection.
//!
//! - [`kernels()`]: the process-wide table (scalar, then the ISA module's overrides).
//! - [`scalar_kernels()`]: always the pure scalar table, the oracle for tests and benches.
//! - [`build_scalar_table()`]: a fresh scalar table, for callers that build their own variant.
//! - [`quantize_row`], [`from_float`], [`dequantize_row`], [`vec_dot`]: safe entry points that check
//!   block counts, lengths and alignment and return a [`KernelError`] instead of panicking.
//!
//! Pairings (`vec_dot_type`): Q4_0/Q5_0/Q8_0 -> Q8_0; Q4_1/Q5_1 -> Q8_1; the k-quants -> Q8_K;
//! F32/F16/BF16 -> F32. Q8_1 and Q8_K are activation formats only (no `vec_dot`).

use std::sync::OnceLock;

use crate::blocks::{
    cast_blocks, cast_blocks_mut, Block, BlockQ2_K, BlockQ3_K, BlockQ4_0, BlockQ4_1, BlockQ4_K,
    BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0, BlockQ8_1, BlockQ8_K,
};
use crate::scalar;
use crate::types::GgmlType;
use crate::views::{Rows, RowsMut};

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
    /// AVX2 plus AVX-VNNI (the VEX-encoded `vpdpbusd`/`vpdpwssd`, without AVX-512).
    AvxVnni,
    Avx512,
    /// AVX-512 VNNI plus AMX-INT8 (the 32-element formats' prefill tiles).
    Amx,
    Neon,
    NeonDotprod,
    /// aarch64 with dotprod and i8mm (`smmla` prefill tiles).
    NeonI8mm,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::Avx2 => "avx2",
            Backend::AvxVnni => "avxvnni",
            Backend::Avx512 => "avx512",
            Backend::Amx => "avx512+amx",
            Backend::Neon => "neon",
            Backend::NeonDotprod => "neon+dotprod",
            Backend::NeonI8mm => "neon+i8mm",
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
    /// Optional multi-row x one-token kernel for decode; `None` means one `vec_dot` per row.
    pub gemv: Option<GemvFn>,
    /// Optional multi-row x up to [`GEMV_MULTI_MAX`] tokens decode kernel, each token's outputs
    /// bit for bit what `gemv` gives it alone; `None` means one `gemv` call per token.
    pub gemv_multi: Option<GemvMultiFn>,
    /// Optional rows x several f32 vectors kernel (attention over an F16 cache); `None` means one
    /// `vec_dot` per (row, vector).
    pub multi_dot: Option<MultiDotFn>,
    /// Which backend `vec_dot` comes from.
    pub backend: Backend,
}

/// Table indexed by ggml type id.
pub const TABLE_LEN: usize = 31;

#[derive(Clone, Debug)]
pub struct KernelTable {
    pub entries: [Option<TypeKernels>; TABLE_LEN],
    /// `a = silu(a) * b` (the SwiGLU feed-forward's gate), element-wise.
    pub swiglu: SwigluFn,
    /// One position of flash attention over an F16 cache (see [`FlashStepFn`]).
    pub flash_step_f16: FlashStepFn,
    /// Attention weights from scores (see [`SoftmaxFn`]).
    pub softmax: SoftmaxFn,
    /// `softmax` with every weight then rounded to f16 precision (what meets an F16 cache's
    /// values), in one pass, where a backend has it: the same result bit for bit.
    pub softmax_round_f16: Option<SoftmaxFn>,
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

/// `a[i] = a[i] / (1 + e^-a[i]) * b[i]`; panics when the lengths differ.
pub type SwigluFn = fn(a: &mut [f32], b: &[f32]);

/// `acc = f16(acc * ms)` when `ms != 1`, then `acc = f16(fma(v, vs, acc))`, element-wise over an
/// f16 accumulator and an f16 value row ([`crate::scalar::ops::flash_step_f16`]); panics when the
/// lengths differ.
pub type FlashStepFn = fn(acc: &mut [half::f16], v: &[half::f16], ms: f32, vs: f32);

/// `s = softmax(s * scale)` in place ([`crate::scalar::ops::softmax`]); the vector versions use
/// a polynomial e^x and sum in another order (within a few ulp of the reference).
pub type SoftmaxFn = fn(s: &mut [f32], scale: f32);

/// Several f32 vectors dotted with several rows of the entry's (float) type, each row read and
/// converted once for all vectors: `out.row(g)[i] = rows.row(i) . x.row(g)` for every vector g
/// and row i, where a row of `rows` holds `x.row_len()` elements. Attention uses it for the query
/// heads that share a KV head (scores against the keys, then the values against the scores).
pub type MultiDotFn = fn(rows: Rows<u8>, x: Rows<f32>, out: RowsMut<f32>);

/// Checks that a [`MultiDotFn`]'s views agree, for rows of `elem_bytes`-byte elements; panics
/// naming the problem (the views themselves were checked when built).
pub fn check_multi_dot_args(elem_bytes: usize, rows: &Rows<u8>, x: &Rows<f32>, out: &RowsMut<f32>) {
    assert!(
        rows.row_len() == elem_bytes * x.row_len(),
        "multi_dot: rows of {} bytes against vectors of {} elements",
        rows.row_len(),
        x.row_len()
    );
    assert!(
        out.n() == x.n() && out.row_len() == rows.n(),
        "multi_dot: {} x {} outputs for {} vectors x {} rows",
        out.n(),
        out.row_len(),
        x.n(),
        rows.n()
    );
}

/// Vectors per group in the NEON `MultiDotFn` kernels (their accumulators stay in registers).
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
pub(crate) const MULTI_DOT_GROUP: usize = 8;

/// The frame of the NEON `MultiDotFn`s: checks the views (rows of `elem_bytes`-byte
/// elements), then calls `group(x, out)` for the vectors in groups of at most `MULTI_DOT_GROUP`.
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
pub(crate) fn multi_dot_groups(
    elem_bytes: usize,
    rows: Rows<u8>,
    x: Rows<f32>,
    mut out: RowsMut<f32>,
    mut group: impl FnMut(Rows<f32>, RowsMut<f32>),
) {
    check_multi_dot_args(elem_bytes, &rows, &x, &out);
    let mut g0 = 0;
    while g0 < x.n() {
        let ng = (x.n() - g0).min(MULTI_DOT_GROUP);
        group(x.rows(g0, ng), out.rows_mut(g0, ng));
        g0 += ng;
    }
}

/// Calls `f::<NG>(args)` with the const `NG` equal to the group size `ng` (1..=MULTI_DOT_GROUP).
#[allow(unused_macros)] // used by the NEON multi_dot (x86-64 has passes of its own)
macro_rules! by_group_size {
    ($ng:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $ng {
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            4 => $f::<4>($($arg),*),
            5 => $f::<5>($($arg),*),
            6 => $f::<6>($($arg),*),
            7 => $f::<7>($($arg),*),
            _ => $f::<8>($($arg),*),
        }
    };
}
#[allow(unused_imports)]
pub(crate) use by_group_size;

/// Evaluates `$body` once with the const `$nt` bound to the largest of the group sizes `$g` (listed
/// largest first, the last 1) that is at most `$left` (> 0), and returns that size: the prefill
/// tiles take their tokens in the largest group that fits.
#[allow(unused_macros)] // used by the tile kernels of the ISA modules (none on some targets)
macro_rules! token_group {
    ($left:expr, $nt:ident => $body:expr; $($g:literal),+) => {{
        let left: usize = $left;
        let mut taken = 0usize;
        $(
            if taken == 0 && left >= $g {
                const $nt: usize = $g;
                $body;
                taken = $g;
            }
        )+
        taken
    }};
}
#[allow(unused_imports)]
pub(crate) use token_group;

/// A decode mat-vec over several rows: `out[r] = dot(w.row(r), a)` for every row r of `w`, with
/// `n` elements per row, `w` in the weight type and `a` one row in its `vec_dot_type`. Each
/// `out[r]` must not depend on the other rows (bit for bit), so that results do not depend on how
/// rows are split across threads.
pub type GemvFn = fn(n: usize, w: Rows<u8>, a: &[u8], out: &mut [f32]);

/// Most tokens one [`GemvMultiFn`] call takes.
pub const GEMV_MULTI_MAX: usize = 4;

/// Several decode tokens' mat-vecs in one pass over the weight rows (continuous batching: the
/// next tokens of several sequences): `out.row(t)[r]` = `dot(w.row(r), a.row(t))` for 1 to
/// [`GEMV_MULTI_MAX`] tokens, each token's outputs the same bits as the type's [`GemvFn`] gives
/// that token alone (the same arithmetic per token, the weights unpacked once for all), so that
/// a sequence's results do not depend on what else shares the pass.
pub type GemvMultiFn = fn(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>);

/// A tile of a batched mat-mul (prefill): `out.row(t)[r] = dot(w.row(r), a.row(t))` for every
/// weight row r and token t, with `n` elements per row, `w` in the weight type and `a` in its
/// `vec_dot_type`. Lets a kernel unpack each weight block once and reuse it across several tokens.
pub type GemmTileFn = fn(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>);

/// A kernel an ISA module offers for one type, and the instruction-set level it needs.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
#[derive(Clone, Copy)]
pub(crate) struct Offer {
    pub ty: GgmlType,
    /// The activation format the kernel reads; the table entry's `vec_dot_type` must be it (for
    /// an activation quantizer, the type itself).
    pub act: GgmlType,
    /// The level the CPU must have: `Avx2`, `Avx512`, `Neon`, `NeonDotprod` or `NeonI8mm`.
    pub needs: Backend,
    pub kernel: OfferedKernel,
}

/// An [`Offer`] (a `const fn`, for the ISA modules' offer lists).
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(crate) const fn offer(
    ty: GgmlType,
    act: GgmlType,
    needs: Backend,
    kernel: OfferedKernel,
) -> Offer {
    Offer {
        ty,
        act,
        needs,
        kernel,
    }
}

/// The first offer in `lists` for `ty` at level `needs` that fills the slot `pick` selects (for
/// tests that run one kernel of an ISA module directly).
#[cfg(all(test, target_arch = "aarch64"))]
pub(crate) fn find_offer<F: Copy>(
    lists: &[&[Offer]],
    ty: GgmlType,
    needs: Backend,
    pick: impl Fn(OfferedKernel) -> Option<F>,
) -> Option<F> {
    lists
        .iter()
        .flat_map(|l| l.iter())
        .filter(|o| o.ty == ty && o.needs == needs)
        .find_map(|o| pick(o.kernel))
}

/// Which slot of a [`TypeKernels`] an [`Offer`] fills.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
#[derive(Clone, Copy)]
pub(crate) enum OfferedKernel {
    VecDot(VecDotFn),
    // aarch64 offers no decode mat-vec (its `vec_dot` loop serves decode).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Gemv(GemvFn),
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    GemvMulti(GemvMultiFn),
    Tile(GemmTileFn),
    MultiDot(MultiDotFn),
    FromFloat(QuantizeRowFn),
}

/// The one install loop of the ISA modules: every offer whose level the CPU has (`has`) fills its
/// slot, in list order, so a later offer replaces an earlier one (each format lists its kernels
/// slowest first); a `vec_dot` also sets the entry's backend. An offer for an entry that pairs
/// with another activation format is skipped: that entry keeps its kernel.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(crate) fn install_offers(
    table: &mut KernelTable,
    offers: &[Offer],
    has: impl Fn(Backend) -> bool,
) {
    for o in offers.iter().filter(|o| has(o.needs)) {
        let Some(e) = table.get_mut(o.ty) else {
            continue;
        };
        match o.kernel {
            OfferedKernel::FromFloat(f) => e.from_float = Some(f),
            _ if e.vec_dot_type != o.act => {}
            OfferedKernel::VecDot(f) => {
                e.vec_dot = Some(f);
                e.backend = o.needs;
            }
            // A new `gemv` drops the multi-token kernel of the one it replaces (whose bits it
            // matched): a format lists its `GemvMulti` after the `Gemv` it goes with.
            OfferedKernel::Gemv(f) => (e.gemv, e.gemv_multi) = (Some(f), None),
            OfferedKernel::GemvMulti(f) => e.gemv_multi = Some(f),
            OfferedKernel::Tile(f) => e.gemm_tile = Some(f),
            OfferedKernel::MultiDot(f) => e.multi_dot = Some(f),
        }
    }
}

/// Errors of the safe entry points ([`quantize_row`], [`from_float`], [`dequantize_row`],
/// [`vec_dot`]): the facts needed to see which buffer is wrong and by how much.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    #[error("ggml type {ty} has no {op} kernel")]
    UnsupportedType { ty: GgmlType, op: &'static str },
    #[error("{ty} {op}: {n} elements is not a whole number of {block_elems}-element blocks")]
    PartialBlock {
        ty: GgmlType,
        op: &'static str,
        n: usize,
        block_elems: usize,
    },
    #[error("{ty} {op}: {what} has length {have}, need {need} for {n} elements")]
    LengthMismatch {
        ty: GgmlType,
        op: &'static str,
        what: &'static str,
        n: usize,
        need: usize,
        have: usize,
    },
    #[error("{ty} {op}: {what} at address {addr:#x} is not {align}-byte aligned")]
    Misaligned {
        ty: GgmlType,
        op: &'static str,
        what: &'static str,
        addr: usize,
        align: usize,
    },
}

/// Byte-level adapters from the typed scalar kernels to the table's fn-pointer types. The casts
/// panic on a length or alignment the safe entry points have already ruled out.
macro_rules! quant_fn {
    ($B:ty, $f:path) => {{
        fn q(x: &[f32], out: &mut [u8]) {
            $f(x, cast_blocks_mut::<$B>(out))
        }
        q as QuantizeRowFn
    }};
}

macro_rules! dequant_fn {
    ($B:ty, $f:path) => {{
        fn d(src: &[u8], out: &mut [f32]) {
            $f(cast_blocks::<$B>(src), out)
        }
        d as DequantizeRowFn
    }};
}

macro_rules! dot_fn {
    ($W:ty, $A:ty, $f:path) => {{
        fn v(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let w = cast_blocks::<$W>(w);
            let a = cast_blocks::<$A>(a);
            assert!(
                w.len() * <$W as Block>::ELEMS == n && a.len() * <$A as Block>::ELEMS == n,
                "vec_dot: {} weight blocks and {} activation blocks for n = {}",
                w.len(),
                a.len(),
                n
            );
            $f(w, a)
        }
        v as VecDotFn
    }};
}

/// One scalar entry: `quantize_row_ref` doubles as `from_float` unless the format has its own.
fn entry(
    ty: GgmlType,
    vec_dot_type: GgmlType,
    quantize_row_ref: QuantizeRowFn,
    from_float: QuantizeRowFn,
    dequantize_row: DequantizeRowFn,
    vec_dot: Option<VecDotFn>,
) -> TypeKernels {
    TypeKernels {
        ty,
        vec_dot_type,
        quantize_row_ref: Some(quantize_row_ref),
        from_float: Some(from_float),
        dequantize_row: Some(dequantize_row),
        vec_dot,
        gemm_tile: None,
        gemv: None,
        gemv_multi: None,
        multi_dot: None,
        backend: Backend::Scalar,
    }
}

/// Builds the pure scalar table: every type, its reference quantizer, dequantizer, activation
/// quantizer and scalar dot product; `gemm_tile` is `None` everywhere.
pub fn build_scalar_table() -> KernelTable {
    use half::{bf16, f16};
    use scalar::*;
    type T = GgmlType;

    let mut table = KernelTable {
        entries: [None; TABLE_LEN],
        swiglu: scalar::ops::swiglu,
        flash_step_f16: scalar::ops::flash_step_f16,
        softmax: scalar::ops::softmax,
        softmax_round_f16: None,
        backend: Backend::Scalar,
    };
    let mut put = |k: TypeKernels| table.entries[k.ty.id() as usize] = Some(k);

    // A weight format whose activation quantizer is its reference quantizer:
    // (type, partner type, block, partner block, quantize_ref, dequantize, vec_dot).
    macro_rules! weight {
        ($ty:expr, $vt:expr, $B:ty, $A:ty, $q:path, $dq:path, $dot:path) => {{
            let q = quant_fn!($B, $q);
            put(entry(
                $ty,
                $vt,
                q,
                q,
                dequant_fn!($B, $dq),
                Some(dot_fn!($B, $A, $dot)),
            ));
        }};
    }

    weight!(
        T::F32,
        T::F32,
        f32,
        f32,
        float::quantize_row_f32,
        float::dequantize_row_f32,
        float::vec_dot_f32
    );
    weight!(
        T::F16,
        T::F32,
        f16,
        f32,
        float::quantize_row_f16,
        float::dequantize_row_f16,
        float::vec_dot_f16_f32
    );
    weight!(
        T::BF16,
        T::F32,
        bf16,
        f32,
        float::quantize_row_bf16,
        float::dequantize_row_bf16,
        float::vec_dot_bf16_f32
    );
    weight!(
        T::Q4_0,
        T::Q8_0,
        BlockQ4_0,
        BlockQ8_0,
        q4_0::quantize_row_q4_0_ref,
        q4_0::dequantize_row_q4_0,
        q4_0::vec_dot_q4_0_q8_0
    );
    weight!(
        T::Q4_1,
        T::Q8_1,
        BlockQ4_1,
        BlockQ8_1,
        q4_1::quantize_row_q4_1_ref,
        q4_1::dequantize_row_q4_1,
        q4_1::vec_dot_q4_1_q8_1
    );
    weight!(
        T::Q5_0,
        T::Q8_0,
        BlockQ5_0,
        BlockQ8_0,
        q5_0::quantize_row_q5_0_ref,
        q5_0::dequantize_row_q5_0,
        q5_0::vec_dot_q5_0_q8_0
    );
    weight!(
        T::Q5_1,
        T::Q8_1,
        BlockQ5_1,
        BlockQ8_1,
        q5_1::quantize_row_q5_1_ref,
        q5_1::dequantize_row_q5_1,
        q5_1::vec_dot_q5_1_q8_1
    );
    weight!(
        T::Q2_K,
        T::Q8_K,
        BlockQ2_K,
        BlockQ8_K,
        q2_k::quantize_row_q2_k_ref,
        q2_k::dequantize_row_q2_k,
        q2_k::vec_dot_q2_k_q8_k
    );
    weight!(
        T::Q3_K,
        T::Q8_K,
        BlockQ3_K,
        BlockQ8_K,
        q3_k::quantize_row_q3_k_ref,
        q3_k::dequantize_row_q3_k,
        q3_k::vec_dot_q3_k_q8_k
    );
    weight!(
        T::Q4_K,
        T::Q8_K,
        BlockQ4_K,
        BlockQ8_K,
        q4_k::quantize_row_q4_k_ref,
        q4_k::dequantize_row_q4_k,
        q4_k::vec_dot_q4_k_q8_k
    );
    weight!(
        T::Q5_K,
        T::Q8_K,
        BlockQ5_K,
        BlockQ8_K,
        q5_k::quantize_row_q5_k_ref,
        q5_k::dequantize_row_q5_k,
        q5_k::vec_dot_q5_k_q8_k
    );
    weight!(
        T::Q6_K,
        T::Q8_K,
        BlockQ6_K,
        BlockQ8_K,
        q6_k::quantize_row_q6_k_ref,
        q6_k::dequantize_row_q6_k,
        q6_k::vec_dot_q6_k_q8_k
    );

    // Q8_0 is both a weight format and an activation format with its own from_float.
    put(entry(
        T::Q8_0,
        T::Q8_0,
        quant_fn!(BlockQ8_0, q8_0::quantize_row_q8_0_ref),
        quant_fn!(BlockQ8_0, q8_0::from_float_q8_0),
        dequant_fn!(BlockQ8_0, q8_0::dequantize_row_q8_0),
        Some(dot_fn!(BlockQ8_0, BlockQ8_0, q8_0::vec_dot_q8_0_q8_0)),
    ));
    // Activation-only formats: no vec_dot of their own.
    put(entry(
        T::Q8_1,
        T::Q8_1,
        quant_fn!(BlockQ8_1, q8_1::quantize_row_q8_1_ref),
        quant_fn!(BlockQ8_1, q8_1::from_float_q8_1),
        dequant_fn!(BlockQ8_1, q8_1::dequantize_row_q8_1),
        None,
    ));
    // Q8_K's activation quantizer is the reference itself (as on ggml's x86 and generic paths).
    let q8k = quant_fn!(BlockQ8_K, q8_k::quantize_row_q8_k_ref);
    put(entry(
        T::Q8_K,
        T::Q8_K,
        q8k,
        q8k,
        dequant_fn!(BlockQ8_K, q8_k::dequantize_row_q8_k),
        None,
    ));

    table
}

/// The pure scalar table (never touched by the ISA modules): the oracle for tests and benches.
pub fn scalar_kernels() -> &'static KernelTable {
    static SCALAR: OnceLock<KernelTable> = OnceLock::new();
    SCALAR.get_or_init(build_scalar_table)
}

/// True when `FERROLM_KERNELS=scalar` (any case) asks for the reference kernels everywhere.
pub fn scalar_forced() -> bool {
    std::env::var_os("FERROLM_KERNELS").is_some_and(|v| v.eq_ignore_ascii_case("scalar"))
}

/// The highest x86-64 kernel set `FERROLM_KERNELS` allows: `avx2` (any case) stops at the AVX2
/// kernels, `avxvnni` at the AVX-VNNI ones (none of the AVX-512 kernels either way), `avx512` at
/// the AVX-512 ones (no AMX tiles); `None`: no limit. A CPU without the named set runs the best set below it.
pub fn x86_ceiling() -> Option<Backend> {
    let v = std::env::var_os("FERROLM_KERNELS")?;
    if v.eq_ignore_ascii_case("avx2") {
        Some(Backend::Avx2)
    } else if v.eq_ignore_ascii_case("avxvnni") {
        Some(Backend::AvxVnni)
    } else if v.eq_ignore_ascii_case("avx512") {
        Some(Backend::Avx512)
    } else {
        None
    }
}

/// The process-wide table: the scalar table with the entries this CPU accelerates overwritten by
/// the ISA module (after run-time feature detection), or the pure scalar table when
/// `FERROLM_KERNELS=scalar`. Built once, on first use.
pub fn kernels() -> &'static KernelTable {
    static KERNELS: OnceLock<KernelTable> = OnceLock::new();
    KERNELS.get_or_init(|| {
        #[allow(unused_mut)]
        let mut table = build_scalar_table();
        if !scalar_forced() {
            #[cfg(target_arch = "x86_64")]
            crate::x86_64::install(&mut table);
            #[cfg(target_arch = "aarch64")]
            crate::aarch64::install(&mut table);
        }
        table
    })
}

/// Alignment the kernels need for a buffer of `ty` (that of its block struct).
pub fn block_align(ty: GgmlType) -> usize {
    match ty {
        GgmlType::F32 | GgmlType::Q8_K => 4,
        _ => 2,
    }
}

fn check_elems(ty: GgmlType, op: &'static str, n: usize) -> Result<(), KernelError> {
    let be = ty.block_elems();
    if n % be != 0 {
        return Err(KernelError::PartialBlock {
            ty,
            op,
            n,
            block_elems: be,
        });
    }
    Ok(())
}

fn check_bytes(
    ty: GgmlType,
    op: &'static str,
    what: &'static str,
    n: usize,
    b: &[u8],
) -> Result<(), KernelError> {
    let need = n / ty.block_elems() * ty.block_bytes();
    if b.len() != need {
        return Err(KernelError::LengthMismatch {
            ty,
            op,
            what,
            n,
            need,
            have: b.len(),
        });
    }
    let align = block_align(ty);
    let addr = b.as_ptr() as usize;
    if !b.is_empty() && addr % align != 0 {
        return Err(KernelError::Misaligned {
            ty,
            op,
            what,
            addr,
            align,
        });
    }
    Ok(())
}

fn entry_of(ty: GgmlType, op: &'static str) -> Result<&'static TypeKernels, KernelError> {
    kernels()
        .get(ty)
        .ok_or(KernelError::UnsupportedType { ty, op })
}

/// Quantizes `x` (a whole number of `ty` blocks) into `out` (exactly its row bytes) with the
/// reference quantizer (`quantize_row_*_ref`, byte-exact with llama-quantize).
pub fn quantize_row(ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), KernelError> {
    quantize_with(ty, "quantize_row", |k| k.quantize_row_ref, x, out)
}

/// Quantizes activations `x` into `out` with the fastest quantizer for `ty` (`from_float`).
pub fn from_float(ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), KernelError> {
    quantize_with(ty, "from_float", |k| k.from_float, x, out)
}

/// The checks and call shared by `quantize_row` and `from_float`: `pick` chooses the quantizer.
fn quantize_with(
    ty: GgmlType,
    op: &'static str,
    pick: fn(&TypeKernels) -> Option<QuantizeRowFn>,
    x: &[f32],
    out: &mut [u8],
) -> Result<(), KernelError> {
    let f = pick(entry_of(ty, op)?).ok_or(KernelError::UnsupportedType { ty, op })?;
    check_elems(ty, op, x.len())?;
    check_bytes(ty, op, "output", x.len(), out)?;
    // An empty row has nothing to do (and an empty slice's dangling pointer need not be aligned).
    if !x.is_empty() {
        f(x, out);
    }
    Ok(())
}

/// Dequantizes `src` (a whole number of `ty` blocks) into `out` (exactly its elements).
pub fn dequantize_row(ty: GgmlType, src: &[u8], out: &mut [f32]) -> Result<(), KernelError> {
    const OP: &str = "dequantize_row";
    let f = entry_of(ty, OP)?
        .dequantize_row
        .ok_or(KernelError::UnsupportedType { ty, op: OP })?;
    check_elems(ty, OP, out.len())?;
    check_bytes(ty, OP, "source", out.len(), src)?;
    if !out.is_empty() {
        f(src, out);
    }
    Ok(())
}

/// Dot product of a weight row `w` of type `ty` with an activation row `a` in `ty`'s
/// `vec_dot_type`, both of `n` elements.
pub fn vec_dot(ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> Result<f32, KernelError> {
    const OP: &str = "vec_dot";
    let e = entry_of(ty, OP)?;
    let f = e
        .vec_dot
        .ok_or(KernelError::UnsupportedType { ty, op: OP })?;
    check_elems(ty, OP, n)?;
    check_elems(e.vec_dot_type, OP, n)?;
    check_bytes(ty, OP, "weights", n, w)?;
    check_bytes(e.vec_dot_type, OP, "activations", n, a)?;
    if n == 0 {
        return Ok(0.0);
    }
    Ok(f(n, w, a))
}

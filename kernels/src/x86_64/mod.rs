//! x86-64 SIMD kernels (AVX2+FMA+F16C; AVX-VNNI and AVX-512 VNNI where present).
//!
//! Every kernel is a `#[target_feature]` function over typed block slices, behind a safe wrapper
//! with the table's byte-slice signature that `assert!`s the lengths. The wrappers are private to
//! this module tree and reach callers only through the kernel table, which [`install`] fills only
//! after run-time feature detection; that is the invariant every `// SAFETY:` at a wrapper's call
//! into a `#[target_feature]` function relies on.
//!
//! Integer products are summed exactly in integers per block (maddubs/madd with unsigned weights,
//! so no i16 saturation and no sign-trick corner case for -128), then scaled in f32.
//!
//! One file per format holds all of that format's kernels and its `OFFERS` list: `q4_0`, `q4_1`,
//! `q5_0`, `q5_1`, `q8_0` (32-element blocks), `q2_k` .. `q6_k` (super-blocks of 256): the one-row
//! `vec_dot`, the decode mat-vecs where the format has them, and how its blocks unpack for the
//! prefill tiles. `float` holds F32/F16/BF16 rows . f32, the F16 multi-vector dot (attention over
//! an F16 cache) and SwiGLU; `act` the activation quantizers Q8_0/Q8_1/Q8_K. Shared machinery:
//! - `block32`: the [`Nibble32`](block32::Nibble32) trait of the 4-bit formats (levels, offset,
//!   min, fifth bits) and the one-row dot body; `superblock`: the k-quants' shared pieces.
//! - `gemv`: the decode mat-vec frame (lengths, long-row fallback), the AVX2 pair body over
//!   `Nibble32` (`gemv::pairs`) and the AVX-512 quads of the 4-bit formats (`gemv::quads`).
//! - `tile`: the prefill tile bodies (8 rows x up to 32 tokens), generic over the `Isa` trait with
//!   entry points for AVX-512 VNNI `vpdpbusd` (`tile::vnni`), AVX-VNNI's VEX-encoded one
//!   (`tile::avxvnni`) and AVX2 `maddubs` + `madd` (`tile::avx2`), and over the format
//!   (`TileBlock`, `KTile`, and `K16Block` for the 16-element-group k-quants Q2_K, Q3_K, Q6_K).
//! - `prefetch`: the software-prefetch plan (`set_prefetch_plan`, `prefetch_lines`).
//!
//! [`install`] detects the CPU and hands every format's list to `dispatch::install_offers`, the
//! loop the aarch64 module uses too.

use std::arch::x86_64::*;

use crate::blocks::{cast_blocks, cast_blocks_mut, Block};
use crate::dispatch::{install_offers, Backend, KernelTable, Offer};

mod act;
mod block32;
mod float;
mod gemv;
mod prefetch;
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
mod superblock;
mod tile;

/// The rule every entry point of this module follows: a safe function that runs code compiled
/// for AVX2 (some for AVX-512 VNNI), reachable only through the kernel table, which [`install`]
/// fills after detecting those features. Debug builds check the CPU on every call.
#[inline(always)]
pub(crate) fn debug_assert_avx2() {
    debug_assert!(
        has_avx2(),
        "an AVX2 kernel ran on a CPU without AVX2, FMA and F16C"
    );
}

/// As [`debug_assert_avx2`], for the AVX-512 VNNI kernels.
#[inline(always)]
pub(crate) fn debug_assert_vnni() {
    debug_assert!(
        has_avx512vnni(),
        "an AVX-512 VNNI kernel ran on a CPU without it"
    );
}

/// As [`debug_assert_avx2`], for the AVX-VNNI kernels.
#[inline(always)]
pub(crate) fn debug_assert_avxvnni() {
    debug_assert!(has_avxvnni(), "an AVX-VNNI kernel ran on a CPU without it");
}

/// True when the AVX2 kernel set can run: AVX2, FMA and F16C (the OS saving the YMM state is part
/// of what `is_x86_feature_detected!` checks).
pub fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// True when the AVX-VNNI kernels can run: the AVX2 set plus AVX-VNNI (VEX-encoded `vpdpbusd`
/// and `vpdpwssd` on 256-bit registers: Intel Alder Lake and later, AMD Zen 5).
pub fn has_avxvnni() -> bool {
    has_avx2() && is_x86_feature_detected!("avxvnni")
}

/// True when the 256-bit VNNI kernels can run: the AVX2 set plus AVX-512 VNNI, BW and VL
/// (`vpdpbusd` on YMM registers needs VNNI + VL).
pub fn has_avx512vnni() -> bool {
    has_avx2()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
}

/// The instruction-set levels of the offer lists.
const AVX2: Backend = Backend::Avx2;
const AVXVNNI: Backend = Backend::AvxVnni;
const VNNI: Backend = Backend::Avx512;

/// The kernels of this module, one list per format file (and the float kernels and activation
/// quantizers), each slowest first: AVX2, then AVX-VNNI, then AVX-512 VNNI, each replacing the
/// one before where the CPU has it.
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
    act::OFFERS,
];

/// Overwrites the entries of `table` that this ISA accelerates, after run-time feature detection
/// (`FERROLM_KERNELS=avx2` stops at the AVX2 kernels, `avxvnni` at the AVX-VNNI ones).
pub fn install(table: &mut KernelTable) {
    if !has_avx2() {
        return;
    }
    f16_table();
    prefetch::set_prefetch_plan();
    let ceiling = crate::dispatch::x86_ceiling();
    let avxvnni = has_avxvnni() && ceiling != Some(AVX2);
    let vnni = has_avx512vnni() && matches!(ceiling, None | Some(VNNI));
    let amx = vnni && ceiling.is_none() && tile::amx::available();
    let has = |b: Backend| match b {
        AVX2 => true,
        AVXVNNI => avxvnni,
        VNNI => vnni,
        _ => false,
    };
    for list in OFFERS {
        install_offers(table, list, has);
    }
    if amx {
        use crate::blocks::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
        use crate::types::GgmlType;
        let amx_tiles: [(GgmlType, crate::dispatch::GemmTileFn); 5] = [
            (GgmlType::Q4_0, tile::amx::gemm_tile::<BlockQ4_0>),
            (GgmlType::Q4_1, tile::amx::gemm_tile::<BlockQ4_1>),
            (GgmlType::Q5_0, tile::amx::gemm_tile::<BlockQ5_0>),
            (GgmlType::Q5_1, tile::amx::gemm_tile::<BlockQ5_1>),
            (GgmlType::Q8_0, tile::amx::gemm_tile::<BlockQ8_0>),
        ];
        use crate::blocks::{BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K};
        let amx_k_tiles: [(GgmlType, crate::dispatch::GemmTileFn); 5] = [
            (GgmlType::Q4_K, tile::amx::gemm_tile_k::<BlockQ4_K>),
            (GgmlType::Q5_K, tile::amx::gemm_tile_k::<BlockQ5_K>),
            (GgmlType::Q6_K, tile::amx::gemm_tile_k16::<BlockQ6_K>),
            (GgmlType::Q3_K, tile::amx::gemm_tile_k16::<BlockQ3_K>),
            (GgmlType::Q2_K, tile::amx::gemm_tile_k16::<BlockQ2_K>),
        ];
        for (ty, f) in amx_tiles.into_iter().chain(amx_k_tiles) {
            if let Some(e) = table.get_mut(ty) {
                e.gemm_tile = Some(f);
            }
        }
    }
    table.swiglu = float::swiglu;
    table.flash_step_f16 = float::flash_step_f16;
    if vnni {
        table.softmax = float::softmax_512;
        table.softmax_round_f16 = Some(float::softmax_512_round_f16);
    } else {
        table.softmax = float::softmax;
    }
    table.backend = if amx {
        Backend::Amx
    } else if vnni {
        VNNI
    } else if avxvnni {
        AVXVNNI
    } else {
        AVX2
    };
}

/// Views `w` and `a` as the blocks of one row of `n` elements each, asserting the lengths.
#[inline]
fn row_blocks<'a, W: Block, A: Block>(n: usize, w: &'a [u8], a: &'a [u8]) -> (&'a [W], &'a [A]) {
    assert!(
        n % W::ELEMS == 0 && n % A::ELEMS == 0,
        "row of {n} elements is not a whole number of blocks"
    );
    let (nw, na) = (n / W::ELEMS, n / A::ELEMS);
    assert!(
        w.len() == nw * std::mem::size_of::<W>(),
        "weight row is {} bytes, {n} elements need {}",
        w.len(),
        nw * std::mem::size_of::<W>()
    );
    assert!(
        a.len() == na * std::mem::size_of::<A>(),
        "activation row is {} bytes, {n} elements need {}",
        a.len(),
        na * std::mem::size_of::<A>()
    );
    (cast_blocks(w), cast_blocks(a))
}

/// Views `x` and `out` as one row to quantize into blocks of `B`, asserting the lengths.
#[inline]
fn quant_blocks<'a, B: Block>(x: &[f32], out: &'a mut [u8]) -> &'a mut [B] {
    assert!(
        x.len() % B::ELEMS == 0,
        "row of {} elements is not a whole number of blocks",
        x.len()
    );
    let nb = x.len() / B::ELEMS;
    assert!(
        out.len() == nb * std::mem::size_of::<B>(),
        "output is {} bytes, {} elements need {}",
        out.len(),
        x.len(),
        nb * std::mem::size_of::<B>()
    );
    cast_blocks_mut(out)
}

/// f16 -> f32 lookup table (256 KiB), as ggml's CPU backend uses for block scales: one load per
/// conversion instead of a move, a convert and a move back. Built on first use by `install`.
static F16_TABLE: std::sync::OnceLock<Box<[f32; 65536]>> = std::sync::OnceLock::new();

fn f16_table() -> &'static [f32; 65536] {
    F16_TABLE.get_or_init(|| {
        let v: Vec<f32> = (0..=u16::MAX)
            .map(|h| half::f16::from_bits(h).to_f32())
            .collect();
        v.into_boxed_slice().try_into().expect("65536 entries")
    })
}

/// f16 -> f32 (exact) through the table.
#[inline(always)]
fn lut(t: &[f32; 65536], h: half::f16) -> f32 {
    t[h.to_bits() as usize]
}

/// f16 -> f32 (exact) with F16C.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn h2f(h: half::f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32)))
}

/// f32 -> f16, round to nearest even (as `scalar::f32_to_f16`), with F16C.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn f2h(x: f32) -> half::f16 {
    half::f16::from_bits(
        _mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(x))) as u16,
    )
}

/// Sum of the 8 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum_ps(x: __m256) -> f32 {
    let r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
    let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    let r = _mm_add_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

/// Sum of the 8 i32 lanes (wrapping).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum_epi32(a: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256::<1>(a));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// Loads 32 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load32(p: &[u8; 32]) -> __m256i {
    // SAFETY: `p` is 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(p.as_ptr() as *const __m256i) }
}

/// Loads 32 signed bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load32i(p: &[i8; 32]) -> __m256i {
    // SAFETY: `p` is 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(p.as_ptr() as *const __m256i) }
}

/// Loads 16 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load16(p: &[u8; 16]) -> __m128i {
    // SAFETY: `p` is 16 readable bytes; the load is unaligned.
    unsafe { _mm_loadu_si128(p.as_ptr() as *const __m128i) }
}

#[cfg(test)]
pub(crate) mod test_util {
    /// Deterministic pseudo-random generator for the kernel tests.
    pub struct Lcg(pub u64);

    impl Lcg {
        pub fn next_u64(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 ^ (self.0 >> 29)
        }
        pub fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| (self.next_u64() >> 24) as u8).collect()
        }
        /// Uniform in [-1, 1).
        pub fn f32(&mut self) -> f32 {
            ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
        pub fn f32s(&mut self, n: usize, scale: f32) -> Vec<f32> {
            (0..n).map(|_| self.f32() * scale).collect()
        }
    }

    /// A random f16 bit pattern that is a finite value of moderate size (scales).
    pub fn f16_bits(rng: &mut Lcg) -> [u8; 2] {
        half::f16::from_f32(rng.f32() * 0.5).to_bits().to_le_bytes()
    }

    /// `true` when `got` is within `tol` (absolute) plus 1e-5 relative of `want`.
    pub fn close(got: f32, want: f32, tol: f32) -> bool {
        (got - want).abs() <= tol + 1e-5 * want.abs()
    }
}

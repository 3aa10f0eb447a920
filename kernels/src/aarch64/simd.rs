//! Shared NEON building blocks: integer dot products (plain NEON and `sdot`), half-precision
//! widening without the unstable `f16` vector types, horizontal sums.
//!
//! Every function is `#[target_feature(enable = "neon")]` (baseline on aarch64, so always present):
//! inside one, the register intrinsics are safe to call; only the loads need `unsafe`. The `sdot`
//! helpers additionally require `dotprod` and are called only from kernels compiled with it.

use core::arch::aarch64::*;
use core::arch::asm;

/// `acc + a·b` for 16 signed bytes, four products per lane. Plain NEON: `smull`/`smull2` to 16 bits,
/// then pairwise widening adds (`sadalp`), so any input (even -128 * -128 twice) is exact.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn dot_i8_full(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let p0 = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    let p1 = vmull_high_s8(a, b);
    vpadalq_s16(vpadalq_s16(acc, p0), p1)
}

/// `acc + a0·b0 + a1·b1`, plain NEON with 16-bit partial sums: each 16-bit lane gathers four
/// products, so it is exact when |a| <= 63 (4 * 63 * 128 = 32256 fits an i16), which holds for every
/// weight format but Q8_0 (4-, 5- and 6-bit values, signed or not).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn dot2_i8_narrow(
    acc: int32x4_t,
    a0: int8x16_t,
    b0: int8x16_t,
    a1: int8x16_t,
    b1: int8x16_t,
) -> int32x4_t {
    let mut p = vmull_s8(vget_low_s8(a0), vget_low_s8(b0));
    p = vmlal_high_s8(p, a0, b0);
    p = vmlal_s8(p, vget_low_s8(a1), vget_low_s8(b1));
    p = vmlal_high_s8(p, a1, b1);
    vpadalq_s16(acc, p)
}

/// `acc + a·b` with one 16-byte operand pair, plain NEON, exact when |a| <= 127 and |b| <= 128
/// (two products per 16-bit lane: 2 * 127 * 128 = 32512).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn dot_i8_narrow(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    vpadalq_s16(acc, vmlal_high_s8(p, a, b))
}

/// `acc + a·b` with the dotprod instruction `sdot` (lane i gains the four products of bytes
/// 4i..4i+4). `vdotq_s32` is unstable, so this is inline assembly.
#[inline]
#[target_feature(enable = "neon,dotprod")]
pub(crate) fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: this function is only compiled with `dotprod` enabled and only callable where the CPU
    // has it (its callers run only after `install` detected dotprod); `sdot` reads and writes only
    // the three named vector registers: no memory, no stack, no flags.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// `acc + a·b` for weights that fit the narrow bound (see [`dot_i8_narrow`]); `SDOT` picks `sdot`.
///
/// # Safety
/// With `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn dot16<const SDOT: bool>(
    acc: int32x4_t,
    a: int8x16_t,
    b: int8x16_t,
) -> int32x4_t {
    if SDOT {
        // SAFETY: the caller guarantees dotprod.
        unsafe { sdot(acc, a, b) }
    } else {
        dot_i8_narrow(acc, a, b)
    }
}

/// `acc + a0·b0 + a1·b1` (a 32-element block) for weights with |a| <= 63; `SDOT` picks `sdot`.
///
/// # Safety
/// With `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn dot32<const SDOT: bool>(
    acc: int32x4_t,
    a0: int8x16_t,
    b0: int8x16_t,
    a1: int8x16_t,
    b1: int8x16_t,
) -> int32x4_t {
    if SDOT {
        // SAFETY: the caller guarantees dotprod.
        unsafe { sdot(sdot(acc, a0, b0), a1, b1) }
    } else {
        dot2_i8_narrow(acc, a0, b0, a1, b1)
    }
}

/// `acc + a0·b0 + a1·b1` for arbitrary signed bytes (Q8_0 weights); `SDOT` picks `sdot`.
///
/// # Safety
/// With `SDOT = true` the CPU must have dotprod.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn dot32_full<const SDOT: bool>(
    acc: int32x4_t,
    a0: int8x16_t,
    b0: int8x16_t,
    a1: int8x16_t,
    b1: int8x16_t,
) -> int32x4_t {
    if SDOT {
        // SAFETY: the caller guarantees dotprod.
        unsafe { sdot(sdot(acc, a0, b0), a1, b1) }
    } else {
        dot_i8_full(dot_i8_full(acc, a0, b0), a1, b1)
    }
}

/// Widens four IEEE halves (raw bits) to f32, exactly (`fcvtl`; subnormals, infinities and NaN
/// included). Stable Rust has no `float16x4_t`, hence the assembly.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn f16x4_to_f32(h: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: `fcvtl` is base ARMv8 Advanced SIMD; it reads and writes only the named registers.
    unsafe {
        asm!(
            "fcvtl {o:v}.4s, {i:v}.4h",
            o = lateout(vreg) out,
            i = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

/// Widens the upper four halves of eight (raw bits) to f32 (`fcvtl2`).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn f16x8_high_to_f32(h: uint16x8_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: `fcvtl2` is base ARMv8 Advanced SIMD; it reads and writes only the named registers.
    unsafe {
        asm!(
            "fcvtl2 {o:v}.4s, {i:v}.8h",
            o = lateout(vreg) out,
            i = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

/// One IEEE half (raw bits) to f32, exactly (scalar `fcvt`, base ARMv8 floating point).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let out: f32;
    // SAFETY: scalar `fcvt s, h` is base ARMv8 FP; it reads the low 16 bits of the input register
    // and writes only the output register.
    unsafe {
        asm!(
            "fcvt {o:s}, {i:h}",
            o = lateout(vreg) out,
            i = in(vreg) f32::from_bits(h as u32),
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

/// Four halves (raw bits) packed into a vector, `a` in lane 0.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn u16x4(a: u16, b: u16, c: u16, d: u16) -> uint16x4_t {
    vcreate_u16(a as u64 | (b as u64) << 16 | (c as u64) << 32 | (d as u64) << 48)
}

/// `[a0 * b0, a1 * b1]` for halves given as raw bits, both products in f32 after exact widening
/// (the per-block scale products of a two-block step).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn scale_pair(a0: u16, a1: u16, b0: u16, b1: u16) -> float32x2_t {
    let v = f16x4_to_f32(u16x4(a0, a1, b0, b1));
    vmul_f32(vget_low_f32(v), vget_high_f32(v))
}

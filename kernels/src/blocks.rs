//! Block formats, laid out bit for bit as ggml stores them (`ggml-common.h`).
//!
//! Every block is `#[repr(C)]` with its size pinned by a `const` assert. Scales are IEEE half
//! (`half::f16`, little-endian), so weight blocks have alignment 2; every block size is even and
//! GGUF aligns tensor data, so a row of blocks inside a mapped file is always suitably aligned
//! (`cast_blocks` checks it anyway).

use half::f16;

/// Elements per block of the 32-element formats.
pub const QK: usize = 32;
/// Elements per super-block of the k-quants.
pub const QK_K: usize = 256;
/// Bytes of packed 6-bit scales/mins in Q4_K/Q5_K (and Q3_K's 6-bit scales).
pub const K_SCALE_SIZE: usize = 12;

/// Q4_0: 32 weights, 4.5 bits/weight. `x = d * (q - 8)`, q in 0..16.
/// `qs[j]` low nibble is element j, high nibble element j + 16.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

/// Q4_1: 32 weights, 5 bits/weight. `x = d * q + m`, q in 0..16.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// Q5_0: 32 weights, 5.5 bits/weight. `x = d * (q - 16)`, q in 0..32; the fifth bit of
/// element j is bit j of `qh` read as a little-endian u32.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

/// Q5_1: 32 weights, 6 bits/weight. `x = d * q + m`, q in 0..32.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

/// Q8_0: 32 weights, 8.5 bits/weight. `x = d * q`. Also the activation partner of Q4_0, Q5_0, Q8_0.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

/// Q8_1: activation partner of Q4_1 and Q5_1. `s = f16(d * sum(qs))` with d before f16 rounding.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ8_1 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 36);

/// Q2_K: 256 weights in 16 groups of 16, 2.625 bits/weight.
/// `scales[i]`: low nibble scale, high nibble min (both scaled by d / dmin).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ2_K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: f16,
    pub dmin: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ2_K>() == 84);

/// Q3_K: 256 weights in 16 groups of 16, 3.4375 bits/weight. High bit in `hmask`,
/// 6-bit signed scales packed in `scales`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ3_K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ3_K>() == 110);

/// Q4_K: 256 weights in 8 groups of 32, 4.5 bits/weight. `x = d * sc * q - dmin * m`,
/// 6-bit `sc`/`m` packed in `scales` (see `get_scale_min_k4`).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ4_K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; K_SCALE_SIZE],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_K>() == 144);

/// Q5_K: 256 weights in 8 groups of 32, 5.5 bits/weight. Like Q4_K plus a fifth bit in `qh`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ5_K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; K_SCALE_SIZE],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_K>() == 176);

/// Q6_K: 256 weights in 16 groups of 16, 6.5625 bits/weight. `x = d * scales[g] * (q - 32)`,
/// low 4 bits in `ql`, high 2 bits in `qh`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ6_K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ6_K>() == 210);

/// Q8_K: activation partner of the k-quants. f32 scale; `bsums[g]` = sum of `qs[16g..16g+16]`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ8_K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_K>() == 292);

/// A plain-old-data block: any bit pattern is a valid value, no padding, no pointers.
///
/// # Safety
/// Implementors must be `#[repr(C)]` structs of integers, `f16`, `f32` and arrays of them with no
/// padding bytes, so that every byte sequence of `size_of::<Self>()` is a valid value.
pub unsafe trait Block: Copy + 'static {
    /// Elements per block.
    const ELEMS: usize;
}

/// A 32-element activation block as the kernels read it: its 32 signed bytes, its scale, and for
/// Q8_1 its `s = d * sum(qs)` (which meets the weights' min in Q4_1/Q5_1 dot products).
pub trait ActBlock32: Block {
    /// Its format in the kernel table (Q8_0 or Q8_1).
    const TYPE: crate::types::GgmlType;
    fn qs(&self) -> &[i8; QK];
    fn d(&self) -> f16;
    /// `s` of Q8_1; `None` for Q8_0.
    fn s(&self) -> Option<f16>;
}

impl ActBlock32 for BlockQ8_0 {
    const TYPE: crate::types::GgmlType = crate::types::GgmlType::Q8_0;
    #[inline(always)]
    fn qs(&self) -> &[i8; QK] {
        &self.qs
    }
    #[inline(always)]
    fn d(&self) -> f16 {
        self.d
    }
    #[inline(always)]
    fn s(&self) -> Option<f16> {
        None
    }
}

impl ActBlock32 for BlockQ8_1 {
    const TYPE: crate::types::GgmlType = crate::types::GgmlType::Q8_1;
    #[inline(always)]
    fn qs(&self) -> &[i8; QK] {
        &self.qs
    }
    #[inline(always)]
    fn d(&self) -> f16 {
        self.d
    }
    #[inline(always)]
    fn s(&self) -> Option<f16> {
        Some(self.s)
    }
}

/// A 32-element weight block with 4-bit levels, plus a fifth bit for Q5_* (Q4_0, Q4_1, Q5_0,
/// Q5_1): what the SIMD bodies written once for the four formats read of a block.
pub trait NibbleBlock: Block {
    /// Its format in the kernel table.
    const TYPE: crate::types::GgmlType;
    /// The activation block it dots with (Q8_0 or Q8_1).
    type Act: ActBlock32;
    /// The value of level q is `d * (q - OFFSET)` (+ `m`). Zero exactly for the formats with a
    /// min (Q4_1, Q5_1).
    const OFFSET: i32;
    fn qs(&self) -> &[u8; QK / 2];
    fn d(&self) -> f16;
    /// The min, or zero for the formats without one.
    #[inline(always)]
    fn m(&self) -> f16 {
        f16::ZERO
    }
    /// The fifth bits (bit j of element j), or `None` for the 4-bit formats.
    #[inline(always)]
    fn qh(&self) -> Option<u32> {
        None
    }
}

impl NibbleBlock for BlockQ4_0 {
    const TYPE: crate::types::GgmlType = crate::types::GgmlType::Q4_0;
    type Act = BlockQ8_0;
    const OFFSET: i32 = 8;
    #[inline(always)]
    fn qs(&self) -> &[u8; QK / 2] {
        &self.qs
    }
    #[inline(always)]
    fn d(&self) -> f16 {
        self.d
    }
}

impl NibbleBlock for BlockQ5_0 {
    const TYPE: crate::types::GgmlType = crate::types::GgmlType::Q5_0;
    type Act = BlockQ8_0;
    const OFFSET: i32 = 16;
    #[inline(always)]
    fn qs(&self) -> &[u8; QK / 2] {
        &self.qs
    }
    #[inline(always)]
    fn d(&self) -> f16 {
        self.d
    }
    #[inline(always)]
    fn qh(&self) -> Option<u32> {
        Some(u32::from_le_bytes(self.qh))
    }
}

impl NibbleBlock for BlockQ4_1 {
    const TYPE: crate::types::GgmlType = crate::types::GgmlType::Q4_1;
    type Act = BlockQ8_1;
    const OFFSET: i32 = 0;
    #[inline(always)]
    fn qs(&self) -> &[u8; QK / 2] {
        &self.qs
    }
    #[inline(always)]
    fn d(&self) -> f16 {
        self.d
    }
    #[inline(always)]
    fn m(&self) -> f16 {
        self.m
    }
}

impl NibbleBlock for BlockQ5_1 {
    const TYPE: crate::types::GgmlType = crate::types::GgmlType::Q5_1;
    type Act = BlockQ8_1;
    const OFFSET: i32 = 0;
    #[inline(always)]
    fn qs(&self) -> &[u8; QK / 2] {
        &self.qs
    }
    #[inline(always)]
    fn d(&self) -> f16 {
        self.d
    }
    #[inline(always)]
    fn m(&self) -> f16 {
        self.m
    }
    #[inline(always)]
    fn qh(&self) -> Option<u32> {
        Some(u32::from_le_bytes(self.qh))
    }
}

// SAFETY: each type below is repr(C), made of f16/f32/integer fields and arrays, and its size
// assert above equals the sum of its field sizes, so it has no padding.
unsafe impl Block for BlockQ4_0 {
    const ELEMS: usize = QK;
}
// SAFETY: as above.
unsafe impl Block for BlockQ4_1 {
    const ELEMS: usize = QK;
}
// SAFETY: as above.
unsafe impl Block for BlockQ5_0 {
    const ELEMS: usize = QK;
}
// SAFETY: as above.
unsafe impl Block for BlockQ5_1 {
    const ELEMS: usize = QK;
}
// SAFETY: as above.
unsafe impl Block for BlockQ8_0 {
    const ELEMS: usize = QK;
}
// SAFETY: as above.
unsafe impl Block for BlockQ8_1 {
    const ELEMS: usize = QK;
}
// SAFETY: as above.
unsafe impl Block for BlockQ2_K {
    const ELEMS: usize = QK_K;
}
// SAFETY: as above.
unsafe impl Block for BlockQ3_K {
    const ELEMS: usize = QK_K;
}
// SAFETY: as above.
unsafe impl Block for BlockQ4_K {
    const ELEMS: usize = QK_K;
}
// SAFETY: as above.
unsafe impl Block for BlockQ5_K {
    const ELEMS: usize = QK_K;
}
// SAFETY: as above.
unsafe impl Block for BlockQ6_K {
    const ELEMS: usize = QK_K;
}
// SAFETY: as above.
unsafe impl Block for BlockQ8_K {
    const ELEMS: usize = QK_K;
}
// SAFETY: f16 is a 2-byte integer-like POD; every bit pattern is some half value.
unsafe impl Block for f16 {
    const ELEMS: usize = 1;
}
// SAFETY: every bit pattern is some f32 value.
unsafe impl Block for f32 {
    const ELEMS: usize = 1;
}
// SAFETY: every bit pattern is some bf16 value.
unsafe impl Block for half::bf16 {
    const ELEMS: usize = 1;
}

/// Views `bytes` as a slice of blocks.
///
/// Panics if the length is not a whole number of blocks or the pointer is misaligned for `B`;
/// callers (the GGUF reader, the kernel entry points) check both before they get here.
#[inline]
pub fn cast_blocks<B: Block>(bytes: &[u8]) -> &[B] {
    let size = std::mem::size_of::<B>();
    assert!(
        bytes.len() % size == 0,
        "byte length {} is not a multiple of block size {}",
        bytes.len(),
        size
    );
    assert!(
        bytes.as_ptr() as usize % std::mem::align_of::<B>() == 0,
        "block data misaligned for a {}-byte alignment",
        std::mem::align_of::<B>()
    );
    // SAFETY: length and alignment were checked above; `B: Block` guarantees every byte pattern is
    // a valid `B`, and the returned slice borrows `bytes`, so it cannot outlive the data.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const B, bytes.len() / size) }
}

/// Mutable version of [`cast_blocks`].
#[inline]
pub fn cast_blocks_mut<B: Block>(bytes: &mut [u8]) -> &mut [B] {
    let size = std::mem::size_of::<B>();
    assert!(
        bytes.len() % size == 0,
        "byte length {} is not a multiple of block size {}",
        bytes.len(),
        size
    );
    assert!(
        bytes.as_ptr() as usize % std::mem::align_of::<B>() == 0,
        "block data misaligned for a {}-byte alignment",
        std::mem::align_of::<B>()
    );
    // SAFETY: as in `cast_blocks`; the exclusive borrow of `bytes` becomes the exclusive borrow of
    // the blocks, and any bit pattern written through `B` is a valid byte sequence.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr() as *mut B, bytes.len() / size) }
}

/// Views a slice of blocks as its bytes.
#[inline]
pub fn as_bytes<B: Block>(blocks: &[B]) -> &[u8] {
    // SAFETY: `B: Block` has no padding, so every byte of the slice is initialized; u8 has
    // alignment 1 and the length is the exact byte size of the slice.
    unsafe {
        std::slice::from_raw_parts(blocks.as_ptr() as *const u8, std::mem::size_of_val(blocks))
    }
}

/// Views a mutable slice of blocks as its bytes.
#[inline]
pub fn as_bytes_mut<B: Block>(blocks: &mut [B]) -> &mut [u8] {
    // SAFETY: as in `as_bytes`; any bytes written are a valid `B` because `B: Block`.
    unsafe {
        std::slice::from_raw_parts_mut(
            blocks.as_mut_ptr() as *mut u8,
            std::mem::size_of_val(blocks),
        )
    }
}

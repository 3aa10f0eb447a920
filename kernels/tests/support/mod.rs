//! Helpers shared by the kernels' integration tests: the format lists, aligned byte buffers and
//! random blocks of every format (proptest strategies).
#![allow(dead_code)]

use ferrolm_kernels::dispatch::scalar_kernels;
use ferrolm_kernels::GgmlType;
use proptest::prelude::*;

pub use ferrolm_kernels::testing::WEIGHT_TYPES;

// ---------------------------------------------------------------------------------------------
// Aligned buffers

/// A zeroed byte buffer aligned for every block type.
pub struct Aligned {
    words: Vec<u64>,
    len: usize,
}

impl Aligned {
    pub fn zeroed(len: usize) -> Aligned {
        Aligned {
            words: vec![0u64; len.div_ceil(8)],
            len,
        }
    }

    pub fn from_bytes(b: &[u8]) -> Aligned {
        let mut a = Aligned::zeroed(b.len());
        a.bytes_mut().copy_from_slice(b);
        a
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: u64 has no padding and all its bytes are initialized; u8 has alignment 1; the
        // length never exceeds the words' byte size, and the slice borrows `self`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr() as *const u8, self.len) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; any byte pattern is a valid u64, and the borrow is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr() as *mut u8, self.len) }
    }
}

// ---------------------------------------------------------------------------------------------
// Random blocks

/// How a block's f16 scale fields are chosen.
#[derive(Clone, Copy, Debug)]
pub enum Scale {
    /// Random normal half in about [2^-14, 2^4], random sign.
    Normal(u16),
    /// 65504 (f16 max), random sign.
    Max(bool),
    /// A random subnormal half (exponent 0), random sign.
    Subnormal(u16),
    Zero,
}

impl Scale {
    fn bits(self) -> u16 {
        match self {
            // exponent 1..=19 (2^-14 .. 2^4), any mantissa, any sign.
            Scale::Normal(r) => (r & 0x8000) | ((1 + (r >> 10) % 19) << 10) | (r & 0x3FF),
            Scale::Max(neg) => 0x7BFF | if neg { 0x8000 } else { 0 },
            Scale::Subnormal(r) => (r & 0x83FF).max(1),
            Scale::Zero => 0,
        }
    }
}

pub fn scale_strategy() -> impl Strategy<Value = Scale> {
    prop_oneof![
        6 => any::<u16>().prop_map(Scale::Normal),
        1 => any::<bool>().prop_map(Scale::Max),
        1 => any::<u16>().prop_map(Scale::Subnormal),
        1 => Just(Scale::Zero),
    ]
}

/// What fills the quant bytes of the blocks of a case.
#[derive(Clone, Copy, Debug)]
pub enum Fill {
    /// Uniform random bytes.
    Random,
    /// Every weight byte 0xFF (top level everywhere) and activations +127 (or -127):
    /// the largest integer sums, that overflow naive 16-bit pair sums.
    Saturated { negative: bool },
    /// Every byte zero (for Q8 types: all-zero quants).
    Zero,
}

pub fn fill_strategy() -> impl Strategy<Value = Fill> {
    prop_oneof![
        6 => Just(Fill::Random),
        2 => any::<bool>().prop_map(|negative| Fill::Saturated { negative }),
        1 => Just(Fill::Zero),
    ]
}

/// Offsets of the f16 scale fields inside a block of `ty`.
pub fn f16_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_1 | GgmlType::Q4_K | GgmlType::Q5_K => {
            &[0, 2]
        }
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q6_K => &[208],
        _ => &[],
    }
}

/// A deterministic byte stream from a seed (splitmix64), so a case is reproducible from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// `nb` weight blocks of `ty` (or `n` float weights): quant bytes by `fill`, f16 scales by
/// `scales` (cycled). Float weights are finite.
pub fn weight_row(ty: GgmlType, nb: usize, fill: Fill, scales: &[Scale], seed: u64) -> Aligned {
    let bb = ty.block_bytes();
    let mut rng = Rng(seed);
    let mut buf = Aligned::zeroed(nb * bb);
    let b = buf.bytes_mut();
    match ty {
        GgmlType::F32 => {
            for c in b.chunks_exact_mut(4) {
                let v = match fill {
                    Fill::Random => (rng.normal() * 10f64.powi((rng.byte() % 9) as i32 - 4)) as f32,
                    Fill::Saturated { negative } => {
                        if negative {
                            -3.0e4
                        } else {
                            3.0e4
                        }
                    }
                    Fill::Zero => 0.0,
                };
                c.copy_from_slice(&v.to_le_bytes());
            }
            return buf;
        }
        GgmlType::F16 | GgmlType::BF16 => {
            for (i, c) in b.chunks_exact_mut(2).enumerate() {
                // Values as f16 first (finite, at most 65504 in magnitude, subnormals included),
                // then in this format's bits: bf16 of a huge exponent would overflow the products.
                let h16 = match fill {
                    Fill::Random => {
                        let h = rng.next_u64() as u16;
                        // An all-ones exponent (inf/NaN) loses its top exponent bit.
                        if h & 0x7C00 == 0x7C00 {
                            h & !0x4000
                        } else {
                            h
                        }
                    }
                    Fill::Saturated { negative } => {
                        scales[i % scales.len()].bits() & 0x7FFF | (negative as u16) << 15
                    }
                    Fill::Zero => 0,
                };
                let h = if ty == GgmlType::F16 {
                    h16
                } else {
                    half::bf16::from_f32(half::f16::from_bits(h16).to_f32()).to_bits()
                };
                c.copy_from_slice(&h.to_le_bytes());
            }
            return buf;
        }
        _ => {}
    }
    for (i, blk) in b.chunks_exact_mut(bb).enumerate() {
        for v in blk.iter_mut() {
            *v = match fill {
                Fill::Random => rng.byte(),
                Fill::Saturated { negative } if ty == GgmlType::Q8_0 => {
                    // Q8_0 weights: -128 (which a crafted file may hold) or +127.
                    if negative {
                        0x80
                    } else {
                        0x7F
                    }
                }
                Fill::Saturated { .. } => 0xFF,
                Fill::Zero => 0,
            };
        }
        for (k, &off) in f16_fields(ty).iter().enumerate() {
            let s = scales[(2 * i + k) % scales.len()];
            blk[off..off + 2].copy_from_slice(&s.bits().to_le_bytes());
        }
    }
    buf
}

/// An activation row of `vt` for `n` elements. Quants are in [-127, 127]: the range every
/// activation quantizer produces (|round(x * 127 / amax)| <= 127), which SIMD kernels may rely on
/// (ggml's sign trick needs it). Q8_K `bsums` are consistent with its quants, as the kernels assume.
pub fn activation_row(vt: GgmlType, n: usize, fill: Fill, scales: &[Scale], seed: u64) -> Aligned {
    let mut rng = Rng(seed ^ 0xA5A5_A5A5_5A5A_5A5A);
    let nb = n / vt.block_elems();
    let mut buf = Aligned::zeroed(nb * vt.block_bytes());
    let b = buf.bytes_mut();
    let quant = |rng: &mut Rng| -> i8 {
        match fill {
            Fill::Random => ((rng.next_u64() % 255) as i32 - 127) as i8,
            Fill::Saturated { negative } => {
                if negative {
                    -127
                } else {
                    127
                }
            }
            Fill::Zero => 0,
        }
    };
    match vt {
        GgmlType::F32 => {
            for c in b.chunks_exact_mut(4) {
                let v = match fill {
                    Fill::Random => (rng.normal() * 10f64.powi((rng.byte() % 7) as i32 - 3)) as f32,
                    Fill::Saturated { negative } => {
                        if negative {
                            -1.0e3
                        } else {
                            1.0e3
                        }
                    }
                    Fill::Zero => 0.0,
                };
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        GgmlType::Q8_0 | GgmlType::Q8_1 => {
            let bb = vt.block_bytes();
            let q0 = if vt == GgmlType::Q8_0 { 2 } else { 4 };
            for (i, blk) in b.chunks_exact_mut(bb).enumerate() {
                for k in 0..q0 / 2 {
                    let s = scales[(2 * i + k + 1) % scales.len()];
                    blk[2 * k..2 * k + 2].copy_from_slice(&s.bits().to_le_bytes());
                }
                for v in blk[q0..].iter_mut() {
                    *v = quant(&mut rng) as u8;
                }
            }
        }
        GgmlType::Q8_K => {
            for (i, blk) in b.chunks_exact_mut(292).enumerate() {
                // f32 scale in [1e-30, 1e3], or 0, random sign: finite products with any weight.
                let d = match scales[(i + 1) % scales.len()] {
                    Scale::Zero => 0.0f32,
                    Scale::Subnormal(_) => 1.0e-30,
                    Scale::Max(neg) => {
                        if neg {
                            -1.0e3
                        } else {
                            1.0e3
                        }
                    }
                    Scale::Normal(r) => {
                        (r as f32 / 65536.0 + 0.01) * if r & 1 == 1 { -1.0 } else { 1.0 }
                    }
                };
                blk[..4].copy_from_slice(&d.to_le_bytes());
                let mut qs = [0i8; 256];
                for v in qs.iter_mut() {
                    *v = quant(&mut rng);
                }
                for (j, v) in qs.iter().enumerate() {
                    blk[4 + j] = *v as u8;
                }
                for g in 0..16 {
                    let s: i16 = qs[16 * g..16 * g + 16].iter().map(|&v| v as i16).sum();
                    blk[260 + 2 * g..262 + 2 * g].copy_from_slice(&s.to_le_bytes());
                }
            }
        }
        other => panic!("no activation generator for {other}"),
    }
    buf
}

/// Dequantizes `row` of `ty` twice, with the min field (resp. the scale field) zeroed, giving the
/// scale part and the min part of every weight. Formats without a min give an all-zero min part.
pub fn split_scale_min(ty: GgmlType, row: &[u8], n: usize) -> (Vec<f32>, Vec<f32>) {
    let fields = match ty {
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => Some((0, 2)),
        GgmlType::Q2_K => Some((80, 82)),
        _ => None,
    };
    let deq = scalar_kernels().get(ty).unwrap().dequantize_row.unwrap();
    let mut scale_part = vec![0.0f32; n];
    let mut min_part = vec![0.0f32; n];
    match fields {
        None => deq(row, &mut scale_part),
        Some((d_off, m_off)) => {
            let bb = ty.block_bytes();
            for (off, out) in [(m_off, &mut scale_part), (d_off, &mut min_part)] {
                let mut b = Aligned::from_bytes(row);
                for blk in b.bytes_mut().chunks_exact_mut(bb) {
                    blk[off..off + 2].fill(0);
                }
                deq(b.bytes(), out);
            }
        }
    }
    (scale_part, min_part)
}

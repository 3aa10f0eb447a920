//! Helpers of the NEON kernels' tests: format lists, a seeded generator, aligned buffers, random
//! and extreme rows, the rounding bound the kernels are held to against the scalar oracle.
#![cfg(test)]

use half::f16;

use super::*;
use crate::dispatch::scalar_kernels;
use crate::types::GgmlType as T;

pub(crate) const INT_TYPES: [T; 10] = [
    T::Q4_0,
    T::Q4_1,
    T::Q5_0,
    T::Q5_1,
    T::Q8_0,
    T::Q2_K,
    T::Q3_K,
    T::Q4_K,
    T::Q5_K,
    T::Q6_K,
];
pub(crate) const FLOAT_TYPES: [T; 3] = [T::F32, T::F16, T::BF16];

/// xorshift64*: deterministic, no dependencies.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub(crate) fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// A byte buffer aligned for any block (u64 storage).
pub(crate) struct Buf(pub(crate) Vec<u64>, pub(crate) usize);

impl Buf {
    pub(crate) fn zeroed(len: usize) -> Buf {
        Buf(vec![0; len.div_ceil(8)], len)
    }
    pub(crate) fn bytes(&self) -> &[u8] {
        &bytemuck_bytes(&self.0)[..self.1]
    }
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.1;
        &mut bytemuck_bytes_mut(&mut self.0)[..len]
    }
}

pub(crate) fn bytemuck_bytes(v: &[u64]) -> &[u8] {
    // SAFETY: u64 has no padding and every byte of it is initialized; u8 has alignment 1; the
    // length is the exact byte size of the slice.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len() * 8) }
}

pub(crate) fn bytemuck_bytes_mut(v: &mut [u64]) -> &mut [u8] {
    // SAFETY: as above; any byte pattern is a valid u64.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, v.len() * 8) }
}

/// Byte offsets of the f16 scale fields of a weight block: (scale-like, min-like).
pub(crate) fn f16_fields(ty: T) -> (&'static [usize], &'static [usize]) {
    match ty {
        T::Q4_0 | T::Q5_0 | T::Q8_0 => (&[0], &[]),
        T::Q4_1 | T::Q5_1 | T::Q4_K | T::Q5_K => (&[0], &[2]),
        T::Q6_K => (&[208], &[]),
        T::Q2_K => (&[80], &[82]),
        T::Q3_K => (&[108], &[]),
        _ => (&[], &[]),
    }
}

/// A weight row of `nb` blocks: random bytes with finite random f16 scales, or the scalar
/// reference quantization of random floats.
pub(crate) fn weight_row(ty: T, nb: usize, rng: &mut Rng, quantized: bool) -> Buf {
    let mut buf = Buf::zeroed(nb * ty.block_bytes());
    if quantized {
        let x: Vec<f32> = (0..nb * ty.block_elems())
            .map(|_| rng.unit() * 3.0)
            .collect();
        (scalar_kernels().get(ty).unwrap().quantize_row_ref.unwrap())(&x, buf.bytes_mut());
        return buf;
    }
    for b in buf.bytes_mut() {
        *b = rng.next_u64() as u8;
    }
    let (s, m) = f16_fields(ty);
    for blk in buf.bytes_mut().chunks_exact_mut(ty.block_bytes()) {
        for &off in s.iter().chain(m) {
            let v = f16::from_f32(rng.unit() * 0.5);
            blk[off..off + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    buf
}

/// An activation row for `ty`'s partner: the scalar `from_float` of random floats.
pub(crate) fn activation_row(ty: T, n: usize, rng: &mut Rng) -> Buf {
    let vt = scalar_kernels().get(ty).unwrap().vec_dot_type;
    let x: Vec<f32> = (0..n).map(|_| rng.unit() * 2.0).collect();
    let mut buf = Buf::zeroed(vt.row_bytes(n as u64).unwrap() as usize);
    (scalar_kernels().get(vt).unwrap().from_float.unwrap())(&x, buf.bytes_mut());
    buf
}

/// Sum over elements of |scale part| * |a| + |min part| * |a| (each part dequantized with the other
/// field zeroed), plus |m * s| per block for Q4_1/Q5_1: what the rounding error is relative to.
pub(crate) fn magnitude(ty: T, n: usize, w: &[u8], a: &[u8]) -> f64 {
    let st = scalar_kernels();
    let vt = st.get(ty).unwrap().vec_dot_type;
    let mut ad = vec![0.0f32; n];
    (st.get(vt).unwrap().dequantize_row.unwrap())(a, &mut ad);
    let (s, m) = f16_fields(ty);
    let mut total = 0.0f64;
    for zero in [m, s] {
        let mut wz = Buf::zeroed(w.len());
        wz.bytes_mut().copy_from_slice(w);
        for blk in wz.bytes_mut().chunks_exact_mut(ty.block_bytes()) {
            for &off in zero {
                blk[off..off + 2].fill(0);
            }
        }
        let mut wd = vec![0.0f32; n];
        (st.get(ty).unwrap().dequantize_row.unwrap())(wz.bytes(), &mut wd);
        total += wd
            .iter()
            .zip(&ad)
            .map(|(&x, &y)| (x as f64 * y as f64).abs())
            .sum::<f64>();
    }
    if matches!(ty, T::Q4_1 | T::Q5_1) {
        for (wb, ab) in w.chunks_exact(ty.block_bytes()).zip(a.chunks_exact(36)) {
            let mw = f16::from_le_bytes([wb[2], wb[3]]).to_f32() as f64;
            let sa = f16::from_le_bytes([ab[2], ab[3]]).to_f32() as f64;
            total += (mw * sa).abs();
        }
    }
    total
}

/// The NEON kernels to check for `ty`: plain always, sdot when the CPU has it.
pub(crate) fn variants(ty: T) -> Vec<(&'static str, VecDotFn)> {
    let (_, neon, sdot) = int_kernels(ty).unwrap();
    let mut v = vec![("neon", neon)];
    if has_dotprod() {
        v.push(("sdot", sdot));
    }
    v
}

pub(crate) fn check_close(what: &str, got: f32, want: f32, mag: f64, terms: usize) {
    let bound = 4.0 * (terms as f64 + 4.0) * f32::EPSILON as f64 * mag + 1e-30;
    let diff = (got as f64 - want as f64).abs();
    assert!(
        diff <= bound,
        "{what}: neon {got} vs scalar {want}: |diff| {diff:e} > {bound:e}"
    );
}

/// Sets every f16 scale field of a block row to `v` (and the min fields to `m`).
pub(crate) fn set_scales(ty: T, row: &mut [u8], v: f16, m: f16) {
    let (s, mf) = f16_fields(ty);
    for blk in row.chunks_exact_mut(ty.block_bytes()) {
        for &off in s {
            blk[off..off + 2].copy_from_slice(&v.to_le_bytes());
        }
        for &off in mf {
            blk[off..off + 2].copy_from_slice(&m.to_le_bytes());
        }
    }
}

/// An activation row with every quant `q`, unit scale, consistent sums (`s`, `bsums`).
pub(crate) fn saturated_activation(ty: T, n: usize, q: i8) -> Buf {
    let vt = scalar_kernels().get(ty).unwrap().vec_dot_type;
    let mut buf = Buf::zeroed(vt.row_bytes(n as u64).unwrap() as usize);
    for blk in buf.bytes_mut().chunks_exact_mut(vt.block_bytes()) {
        match vt {
            T::Q8_0 => {
                blk[..2].copy_from_slice(&f16::ONE.to_le_bytes());
                blk[2..].fill(q as u8);
            }
            T::Q8_1 => {
                blk[..2].copy_from_slice(&f16::ONE.to_le_bytes());
                blk[2..4].copy_from_slice(&f16::from_f32(32.0 * q as f32).to_le_bytes());
                blk[4..].fill(q as u8);
            }
            T::Q8_K => {
                blk[..4].copy_from_slice(&1.0f32.to_le_bytes());
                blk[4..260].fill(q as u8);
                for g in 0..16 {
                    blk[260 + 2 * g..262 + 2 * g].copy_from_slice(&(16 * q as i16).to_le_bytes());
                }
            }
            other => panic!("no activation for {other}"),
        }
    }
    buf
}

/// `len` bytes of blocks of `block` bytes: random bytes (an eighth each -128 and 127) after an
/// f16 scale in 0.001..0.101 (the Q4_0 and Q8_0 layout).
pub(crate) fn random_blocks(rng: &mut Rng, len: usize, block: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for blk in v.chunks_exact_mut(block) {
        for b in blk.iter_mut() {
            *b = match rng.next_u64() % 8 {
                0 => 0x80,
                1 => 0x7F,
                _ => rng.next_u64() as u8,
            };
        }
        let d = f16::from_f32(rng.unit().abs() * 0.1 + 1e-3);
        blk[..2].copy_from_slice(&d.to_le_bytes());
    }
    v
}

/// `rows` rows of `n` random floats (times `scale`) quantized to `ty` by the scalar quantizer.
pub(crate) fn quantized(ty: T, n: usize, rows: usize, scale: f32, rng: &mut Rng) -> Vec<u8> {
    let rb = ty.row_bytes(n as u64).unwrap() as usize;
    let e = scalar_kernels().get(ty).unwrap();
    let q = e.quantize_row_ref.or(e.from_float).unwrap();
    let x: Vec<f32> = (0..rows * n).map(|_| rng.unit() * scale).collect();
    let mut v = vec![0u8; rows * rb];
    for (x, o) in x.chunks_exact(n).zip(v.chunks_exact_mut(rb)) {
        q(x, o);
    }
    v
}

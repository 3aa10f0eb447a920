//! NEON kernels against the scalar oracle (`dispatch::scalar_kernels()`), both variants directly
//! (plain NEON always; `sdot` when the CPU has dotprod: run under qemu with the default CPU and
//! with `QEMU_CPU=cortex-a72` to cover both, as `scripts/test-aarch64.sh` does).

use half::f16;

use super::*;
use crate::dispatch::{kernels, scalar_kernels, Backend};
use crate::types::GgmlType as T;
use crate::views::{Rows, RowsMut};

const INT_TYPES: [T; 10] = [
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
const FLOAT_TYPES: [T; 3] = [T::F32, T::F16, T::BF16];

/// xorshift64*: deterministic, no dependencies.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// A byte buffer aligned for any block (u64 storage).
struct Buf(Vec<u64>, usize);

impl Buf {
    fn zeroed(len: usize) -> Buf {
        Buf(vec![0; len.div_ceil(8)], len)
    }
    fn bytes(&self) -> &[u8] {
        &bytemuck_bytes(&self.0)[..self.1]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.1;
        &mut bytemuck_bytes_mut(&mut self.0)[..len]
    }
}

fn bytemuck_bytes(v: &[u64]) -> &[u8] {
    // SAFETY: u64 has no padding and every byte of it is initialized; u8 has alignment 1; the
    // length is the exact byte size of the slice.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len() * 8) }
}

fn bytemuck_bytes_mut(v: &mut [u64]) -> &mut [u8] {
    // SAFETY: as above; any byte pattern is a valid u64.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, v.len() * 8) }
}

/// Byte offsets of the f16 scale fields of a weight block: (scale-like, min-like).
fn f16_fields(ty: T) -> (&'static [usize], &'static [usize]) {
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
fn weight_row(ty: T, nb: usize, rng: &mut Rng, quantized: bool) -> Buf {
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
fn activation_row(ty: T, n: usize, rng: &mut Rng) -> Buf {
    let vt = scalar_kernels().get(ty).unwrap().vec_dot_type;
    let x: Vec<f32> = (0..n).map(|_| rng.unit() * 2.0).collect();
    let mut buf = Buf::zeroed(vt.row_bytes(n as u64).unwrap() as usize);
    (scalar_kernels().get(vt).unwrap().from_float.unwrap())(&x, buf.bytes_mut());
    buf
}

/// Sum over elements of |scale part| * |a| + |min part| * |a| (each part dequantized with the other
/// field zeroed), plus |m * s| per block for Q4_1/Q5_1: what the rounding error is relative to.
fn magnitude(ty: T, n: usize, w: &[u8], a: &[u8]) -> f64 {
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
fn variants(ty: T) -> Vec<(&'static str, VecDotFn)> {
    let (_, neon, sdot) = int_kernels(ty).unwrap();
    let mut v = vec![("neon", neon)];
    if has_dotprod() {
        v.push(("sdot", sdot));
    }
    v
}

fn check_close(what: &str, got: f32, want: f32, mag: f64, terms: usize) {
    let bound = 4.0 * (terms as f64 + 4.0) * f32::EPSILON as f64 * mag + 1e-30;
    let diff = (got as f64 - want as f64).abs();
    assert!(
        diff <= bound,
        "{what}: neon {got} vs scalar {want}: |diff| {diff:e} > {bound:e}"
    );
}

#[test]
fn int_vec_dot_matches_scalar_on_random_blocks() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for ty in INT_TYPES {
        let scalar = scalar_kernels().get(ty).unwrap().vec_dot.unwrap();
        for nb in [1usize, 2, 3, 5, 8, 17] {
            for quantized in [false, true] {
                let n = nb * ty.block_elems();
                let w = weight_row(ty, nb, &mut rng, quantized);
                let a = activation_row(ty, n, &mut rng);
                let want = scalar(n, w.bytes(), a.bytes());
                let mag = magnitude(ty, n, w.bytes(), a.bytes());
                for (name, f) in variants(ty) {
                    let got = f(n, w.bytes(), a.bytes());
                    check_close(
                        &format!("{ty} {name} nb={nb} quantized={quantized}"),
                        got,
                        want,
                        mag,
                        9 * nb,
                    );
                }
            }
        }
    }
}

/// Sets every f16 scale field of a block row to `v` (and the min fields to `m`).
fn set_scales(ty: T, row: &mut [u8], v: f16, m: f16) {
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
fn saturated_activation(ty: T, n: usize, q: i8) -> Buf {
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

/// All weight bytes one value (0x00, 0xFF, 0x80, 0x77: the extreme nibbles and bytes, high bits
/// all set or clear), all activations -128, 127 or -127, unit scales: every integer sum is at
/// its extreme and every result is an exactly representable integer, so NEON, sdot and scalar must
/// agree exactly. This catches any 16-bit overflow in the widening paths.
#[test]
fn int_vec_dot_exact_on_overflow_prone_inputs() {
    for ty in INT_TYPES {
        let scalar = scalar_kernels().get(ty).unwrap().vec_dot.unwrap();
        for nb in [1usize, 2, 3] {
            let n = nb * ty.block_elems();
            for wbyte in [0x00u8, 0xFF, 0x80, 0x77] {
                let mut w = Buf::zeroed(nb * ty.block_bytes());
                w.bytes_mut().fill(wbyte);
                set_scales(ty, w.bytes_mut(), f16::ONE, f16::ONE);
                if matches!(ty, T::Q4_K | T::Q5_K) {
                    // 6-bit scales and mins all 63 (0xFF bytes) or all 0: keep the fill.
                }
                if ty == T::Q6_K {
                    // Signed 8-bit group scales: extreme values -128 and 127 alternate.
                    for blk in w.bytes_mut().chunks_exact_mut(210) {
                        for (g, s) in blk[192..208].iter_mut().enumerate() {
                            *s = if g % 2 == 0 { 0x80 } else { 0x7F };
                        }
                    }
                }
                for q in [-128i8, 127, -127] {
                    let a = saturated_activation(ty, n, q);
                    let want = scalar(n, w.bytes(), a.bytes());
                    for (name, f) in variants(ty) {
                        let got = f(n, w.bytes(), a.bytes());
                        assert_eq!(
                            got.total_cmp(&want),
                            std::cmp::Ordering::Equal,
                            "{ty} {name} nb={nb} w={wbyte:#04x} a={q}: {got} vs scalar {want}"
                        );
                    }
                }
            }
        }
    }
}

/// Random signed bytes everywhere (Q8_0 weights at -128 included) with unit scales: exact.
#[test]
fn int_vec_dot_exact_with_unit_scales() {
    let mut rng = Rng(42);
    for ty in INT_TYPES {
        let scalar = scalar_kernels().get(ty).unwrap().vec_dot.unwrap();
        for nb in [1usize, 4, 7] {
            let n = nb * ty.block_elems();
            let mut w = weight_row(ty, nb, &mut rng, false);
            set_scales(ty, w.bytes_mut(), f16::ONE, f16::from_f32(0.5));
            let mut a = saturated_activation(ty, n, 0);
            let vt = scalar_kernels().get(ty).unwrap().vec_dot_type;
            for blk in a.bytes_mut().chunks_exact_mut(vt.block_bytes()) {
                let (lo, hi) = match vt {
                    T::Q8_0 => (2, 34),
                    T::Q8_1 => (4, 36),
                    _ => (4, 260),
                };
                for b in &mut blk[lo..hi] {
                    *b = rng.next_u64() as u8;
                }
                if vt == T::Q8_K {
                    for g in 0..16 {
                        let s: i16 = blk[4 + 16 * g..20 + 16 * g]
                            .iter()
                            .map(|&b| b as i8 as i16)
                            .sum();
                        blk[260 + 2 * g..262 + 2 * g].copy_from_slice(&s.to_le_bytes());
                    }
                }
            }
            let want = scalar(n, w.bytes(), a.bytes());
            for (name, f) in variants(ty) {
                let got = f(n, w.bytes(), a.bytes());
                assert_eq!(
                    got.total_cmp(&want),
                    std::cmp::Ordering::Equal,
                    "{ty} {name} nb={nb}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn float_vec_dot_matches_scalar() {
    let mut rng = Rng(7);
    for ty in FLOAT_TYPES {
        let scalar = scalar_kernels().get(ty).unwrap().vec_dot.unwrap();
        let fast = float_kernel(ty).unwrap();
        for n in [0usize, 1, 3, 15, 16, 17, 31, 33, 64, 100, 1000, 4096] {
            let x: Vec<f32> = (0..n).map(|_| rng.unit() * 4.0).collect();
            let mut w = Buf::zeroed(n * ty.block_bytes());
            (scalar_kernels().get(ty).unwrap().quantize_row_ref.unwrap())(&x, w.bytes_mut());
            let mut a = Buf::zeroed(n * 4);
            for c in a.bytes_mut().chunks_exact_mut(4) {
                c.copy_from_slice(&rng.unit().to_le_bytes());
            }
            let want = scalar(n, w.bytes(), a.bytes());
            let got = fast(n, w.bytes(), a.bytes());
            let mut wd = vec![0.0f32; n];
            (scalar_kernels().get(ty).unwrap().dequantize_row.unwrap())(w.bytes(), &mut wd);
            let ad: Vec<f32> = a
                .bytes()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let mag: f64 = wd
                .iter()
                .zip(&ad)
                .map(|(&p, &q)| (p as f64 * q as f64).abs())
                .sum();
            check_close(&format!("{ty} n={n}"), got, want, mag, n / 16 + 16);
        }
    }
}

/// Rows that stress the activation quantizers: random, zeros, ties, an outlier, tiny and huge
/// values, all negative, and equal magnitudes of both signs (Q8_K takes the first one).
fn quantizer_rows(n: usize) -> Vec<Vec<f32>> {
    let mut rng = Rng(1234);
    let mut rows = vec![
        (0..n).map(|_| rng.unit() * 3.0).collect::<Vec<f32>>(),
        vec![0.0; n],
        (0..n)
            .map(|j| ((j * 7 % 256) as f32 - 128.0) / 16.0)
            .collect(),
        (0..n)
            .map(|j| {
                if j % 32 == 0 {
                    127.0 / 16.0
                } else {
                    ((j * 5 % 254) as f32 - 127.0 + 0.5) / 16.0
                }
            })
            .collect(),
        (0..n)
            .map(|j| {
                if j == n / 3 {
                    1000.0
                } else {
                    rng.unit() * 0.01
                }
            })
            .collect(),
        (0..n).map(|_| rng.unit() * 1e-6).collect(),
        (0..n).map(|_| rng.unit() * 1e30).collect(),
        (0..n).map(|_| -(rng.unit().abs() + 0.05)).collect(),
        (0..n)
            .map(|j| if j % 2 == 0 { 2.5 } else { -2.5 })
            .collect(),
        (0..n)
            .map(|j| if j % 3 == 0 { -2.5 } else { 1.25 })
            .collect(),
    ];
    // One block of zeros in the middle of a random row.
    let mut r: Vec<f32> = (0..n).map(|_| rng.unit()).collect();
    r[..32].fill(0.0);
    rows.push(r);
    rows
}

#[test]
fn from_float_byte_identical_to_scalar() {
    for ty in [T::Q8_0, T::Q8_1, T::Q8_K] {
        let scalar = scalar_kernels().get(ty).unwrap().from_float.unwrap();
        let fast = from_float_kernel(ty).unwrap();
        for n in [256usize, 512, 4096] {
            for (i, x) in quantizer_rows(n).iter().enumerate() {
                let len = ty.row_bytes(n as u64).unwrap() as usize;
                let (mut want, mut got) = (Buf::zeroed(len), Buf::zeroed(len));
                scalar(x, want.bytes_mut());
                fast(x, got.bytes_mut());
                if let Some(pos) = want
                    .bytes()
                    .iter()
                    .zip(got.bytes())
                    .position(|(p, q)| p != q)
                {
                    panic!(
                        "{ty} row {i} n={n}: first differing byte {pos} (block {})",
                        pos / ty.block_bytes()
                    );
                }
            }
        }
    }
}

#[test]
fn install_selects_neon_by_feature() {
    let mut table = crate::dispatch::build_scalar_table();
    install(&mut table);
    let expect = if has_dotprod() {
        Backend::NeonDotprod
    } else {
        Backend::Neon
    };
    assert_eq!(table.backend, expect);
    for ty in INT_TYPES {
        let e = table.get(ty).unwrap();
        let (_, neon, sdot) = int_kernels(ty).unwrap();
        let want = if has_dotprod() { sdot } else { neon };
        assert_eq!(e.backend, expect, "{ty}");
        assert!(
            std::ptr::fn_addr_eq(e.vec_dot.unwrap(), want),
            "{ty}: not the NEON kernel"
        );
    }
    for ty in FLOAT_TYPES {
        assert_eq!(table.get(ty).unwrap().backend, Backend::Neon, "{ty}");
    }
}

/// Prints which kernels this run exercises (visible with `--nocapture`, as the script runs it).
#[test]
fn report_backend() {
    let k = kernels();
    println!(
        "aarch64 kernels: backend {} (dotprod {}), FERROLM_KERNELS={:?}",
        k.backend.name(),
        has_dotprod(),
        std::env::var("FERROLM_KERNELS").ok()
    );
    if !crate::dispatch::scalar_forced() {
        assert_ne!(k.backend, Backend::Scalar);
    }
}

/// With dotprod, the integer lanes of the `sdot` entry points are grouped differently from the
/// plain NEON ones before scaling, so the two agree within the rounding bound. (Without dotprod
/// the table never holds an `sdot` kernel, and calling one is a bug the debug builds catch.)
#[test]
fn sdot_entry_points_agree_with_neon() {
    if !has_dotprod() {
        eprintln!("skipped: this CPU has no dotprod");
        return;
    }
    let mut rng = Rng(99);
    for ty in INT_TYPES {
        let (_, neon, sdot) = int_kernels(ty).unwrap();
        for nb in [1usize, 2, 5] {
            let n = nb * ty.block_elems();
            let w = weight_row(ty, nb, &mut rng, true);
            let a = activation_row(ty, n, &mut rng);
            let (p, q) = (neon(n, w.bytes(), a.bytes()), sdot(n, w.bytes(), a.bytes()));
            let mag = magnitude(ty, n, w.bytes(), a.bytes());
            check_close(&format!("{ty} sdot vs neon nb={nb}"), q, p, mag, 9 * nb);
        }
    }
}

/// A row whose length disagrees with `n` is a caller bug: the entry points panic rather than read
/// out of bounds.
#[test]
#[should_panic(expected = "vec_dot")]
fn vec_dot_rejects_mismatched_lengths() {
    let w = Buf::zeroed(2 * 18);
    let a = Buf::zeroed(34);
    vec_dot_q4_0_q8_0_neon(64, w.bytes(), a.bytes());
}

/// `len` bytes of blocks of `block` bytes: random bytes (an eighth each -128 and 127) after an
/// f16 scale in 0.001..0.101 (the Q4_0 and Q8_0 layout).
fn random_blocks(rng: &mut Rng, len: usize, block: usize) -> Vec<u8> {
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

/// Runs `ty`'s installed tile on `nr` rows `w` x `nt` tokens `a` (n elements each) with an output
/// stride wider than the tile, and checks every (row, token) against the scalar `vec_dot` and that
/// nothing was written past the rows.
fn check_tile(ty: T, n: usize, w: &[u8], nr: usize, a: &[u8], nt: usize) {
    let (wrb, arb) = (w.len() / nr, a.len() / nt);
    let stride = nr + 2;
    let mut out = vec![f32::NAN; nt * stride];
    let tile = kernels().get(ty).unwrap().gemm_tile.unwrap();
    tile(
        n,
        Rows::new(w, nr, wrb, wrb),
        Rows::new(a, nt, arb, arb),
        RowsMut::new(&mut out, nt, nr, stride),
    );
    let dot = scalar_kernels().get(ty).unwrap().vec_dot.unwrap();
    for t in 0..nt {
        let pad = &out[t * stride + nr..(t + 1) * stride];
        assert!(
            pad.iter().all(|v| v.is_nan()),
            "{ty}: stray write, token {t}"
        );
        for r in 0..nr {
            let want = dot(n, &w[r * wrb..(r + 1) * wrb], &a[t * arb..(t + 1) * arb]);
            let got = out[t * stride + r];
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{ty} row {r} token {t}: {got} vs scalar {want}"
            );
        }
    }
}

/// The `sdot` prefill tiles (installed only with dotprod) of Q4_0 and Q8_0: 9 rows (two groups of
/// 4 and a partial one) x 13 tokens (groups of 8, 4, 1), 3 blocks, weight and activation bytes
/// including -128 and 127.
#[test]
fn sdot_tiles_match_scalar() {
    let installed = [
        T::Q4_0,
        T::Q4_1,
        T::Q5_0,
        T::Q5_1,
        T::Q8_0,
        T::Q4_K,
        T::Q6_K,
    ]
    .map(|ty| kernels().get(ty).unwrap().gemm_tile.is_some());
    assert_eq!(
        installed,
        [has_dotprod(); 7],
        "tiles installed exactly when dotprod is present"
    );
    if !has_dotprod() {
        eprintln!("skipped: no dotprod");
        return;
    }
    let mut rng = Rng(11);
    let (nr, nt, n) = (9usize, 13usize, 96usize);
    for ty in [T::Q4_0, T::Q8_0] {
        let w = random_blocks(
            &mut rng,
            nr * ty.row_bytes(n as u64).unwrap() as usize,
            ty.block_bytes(),
        );
        let arb = T::Q8_0.row_bytes(n as u64).unwrap() as usize;
        let a = random_blocks(&mut rng, nt * arb, T::Q8_0.block_bytes());
        check_tile(ty, n, &w, nr, &a, nt);
    }
}

/// The Q4_K and Q6_K `sdot` tiles: 6 rows x 11 tokens x 2 super-blocks, weights and activations
/// quantized from random floats by the scalar quantizers.
#[test]
fn sdot_tile_k_matches_scalar() {
    if !has_dotprod() {
        eprintln!("skipped: no dotprod");
        return;
    }
    let mut rng = Rng(5);
    let (nr, nt, n) = (6usize, 11usize, 512usize);
    for ty in [T::Q4_K, T::Q6_K] {
        let w = quantized(ty, n, nr, 1.0, &mut rng);
        let a = quantized(T::Q8_K, n, nt, 3.0, &mut rng);
        check_tile(ty, n, &w, nr, &a, nt);
    }
}

/// `rows` rows of `n` random floats (times `scale`) quantized to `ty` by the scalar quantizer.
fn quantized(ty: T, n: usize, rows: usize, scale: f32, rng: &mut Rng) -> Vec<u8> {
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

/// The Q4_1, Q5_0 and Q5_1 `sdot` tiles (Q8_1 activations carry the sums the mins meet): 9 rows
/// x 13 tokens x 3 blocks, quantized from random floats (an offset, so the mins matter).
#[test]
fn sdot_tile_q4_1_q5_matches_scalar() {
    if !has_dotprod() {
        eprintln!("skipped: no dotprod");
        return;
    }
    let mut rng = Rng(17);
    let (nr, nt, n) = (9usize, 13usize, 96usize);
    for ty in [T::Q4_1, T::Q5_0, T::Q5_1] {
        let partner = scalar_kernels().get(ty).unwrap().vec_dot_type;
        let mut w = quantized(ty, n, nr, 1.0, &mut rng);
        if ty != T::Q5_0 {
            // Shift the rows' values: quantize x + 0.7 so that every block has a non-zero min.
            let x: Vec<f32> = (0..nr * n).map(|_| rng.unit() + 0.7).collect();
            let rb = ty.row_bytes(n as u64).unwrap() as usize;
            let q = scalar_kernels().get(ty).unwrap().quantize_row_ref.unwrap();
            for (x, o) in x.chunks_exact(n).zip(w.chunks_exact_mut(rb)) {
                q(x, o);
            }
        }
        let a = quantized(partner, n, nt, 3.0, &mut rng);
        check_tile(ty, n, &w, nr, &a, nt);
    }
}

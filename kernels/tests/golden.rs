//! Golden tests: the scalar reference quantizers and dequantizers against llama.cpp's own output
//! (`tests/data/quant/`, copied from the golden set made with llama.cpp c392e5094; see its README).
//!
//! - `TYPE.bin`: `quantize_row_<type>_ref` over 14 rows of 4096 values, compared byte for byte.
//! - `TYPE.dequant.f32`: ggml's `to_float` of `TYPE.bin`, compared bit for bit.
//! - `Q8_0/Q8_1.cpu-x86-avx2.bin`: the CPU backend's activation quantizer (`from_float`), which
//!   rounds ties to even; checked against the scalar `from_float` and against whatever `kernels()`
//!   selects on this machine (AVX2 here, NEON under qemu), so SIMD activations are checked too.

use ferrolm_kernels::dispatch::{
    dequantize_row, from_float, kernels, quantize_row, scalar_kernels, DequantizeRowFn,
    QuantizeRowFn,
};
use ferrolm_kernels::GgmlType;

mod support;
use support::{split_scale_min, Aligned, WEIGHT_TYPES};

const ROWS: usize = 14;
const N_PER_ROW: usize = 4096;

fn data_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/quant")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(data_path(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

fn read_f32(name: &str) -> Vec<f32> {
    let b = read(name);
    assert_eq!(
        b.len() % 4,
        0,
        "{name}: length {} not a multiple of 4",
        b.len()
    );
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Compares quantized bytes; on mismatch names the first differing rows/blocks/bytes.
fn assert_bytes_eq(what: &str, ty: GgmlType, ours: &[u8], want: &[u8]) {
    assert_eq!(ours.len(), want.len(), "{what}: length");
    let row_bytes = ty.row_bytes(N_PER_ROW as u64).unwrap() as usize;
    let bb = ty.block_bytes();
    let mut bad = Vec::new();
    for (i, (a, b)) in ours.iter().zip(want).enumerate() {
        if a != b {
            bad.push((i / row_bytes, (i % row_bytes) / bb, i % bb, *a, *b));
        }
    }
    if !bad.is_empty() {
        let mut msg = format!(
            "{what}: {} of {} bytes differ; first ones:\n",
            bad.len(),
            want.len()
        );
        for (row, block, byte, a, b) in bad.iter().take(12) {
            msg += &format!("  row {row} block {block} byte {byte}: ours {a:#04x} want {b:#04x}\n");
        }
        panic!("{msg}");
    }
}

/// Compares floats bit for bit; on mismatch names the first differing rows/elements.
fn assert_f32_bits_eq(what: &str, ty: GgmlType, ours: &[f32], want: &[f32]) {
    assert_eq!(ours.len(), want.len(), "{what}: length");
    let be = ty.block_elems();
    let bad: Vec<usize> = (0..want.len())
        .filter(|&i| ours[i].to_bits() != want[i].to_bits())
        .collect();
    if !bad.is_empty() {
        let mut msg = format!(
            "{what}: {} of {} values differ; first ones:\n",
            bad.len(),
            want.len()
        );
        for &i in bad.iter().take(12) {
            let (row, e) = (i / N_PER_ROW, i % N_PER_ROW);
            msg += &format!(
                "  row {row} block {} elem {}: ours {:e} want {:e}\n",
                e / be,
                e % be,
                ours[i],
                want[i]
            );
        }
        panic!("{msg}");
    }
}

fn source() -> Vec<f32> {
    let x = read_f32("source.f32");
    assert_eq!(x.len(), ROWS * N_PER_ROW);
    x
}

/// Quantizes all rows as one flat array (as `ggml_quantize_chunk` does) and compares with
/// `TYPE.bin`, then dequantizes `TYPE.bin` and compares with `TYPE.dequant.f32` when it exists.
fn check_type(
    ty: GgmlType,
    quant: QuantizeRowFn,
    dequant: DequantizeRowFn,
    has_dequant_file: bool,
) {
    let x = source();
    let want = read(&format!("{}.bin", ty.name()));
    let row_bytes = ty.row_bytes(N_PER_ROW as u64).unwrap() as usize;
    assert_eq!(want.len(), ROWS * row_bytes);

    let mut ours = Aligned::zeroed(want.len());
    quant(&x, ours.bytes_mut());
    assert_bytes_eq(&format!("{ty} quantize_row_ref"), ty, ours.bytes(), &want);

    // Row by row must give the same bytes (every format here is row-independent).
    let mut by_row = Aligned::zeroed(want.len());
    for (xr, out) in x
        .chunks_exact(N_PER_ROW)
        .zip(by_row.bytes_mut().chunks_exact_mut(row_bytes))
    {
        quant(xr, out);
    }
    assert_bytes_eq(
        &format!("{ty} quantize_row_ref row by row"),
        ty,
        by_row.bytes(),
        &want,
    );

    let golden = Aligned::from_bytes(&want);
    let mut y = vec![0.0f32; ROWS * N_PER_ROW];
    dequant(golden.bytes(), &mut y);
    if has_dequant_file {
        let want_y = read_f32(&format!("{}.dequant.f32", ty.name()));
        assert_f32_bits_eq(&format!("{ty} dequantize_row"), ty, &y, &want_y);
    }
}

/// Checks the scalar table's kernels and whatever `kernels()` installs for `ty`: the reference
/// quantizer and the dequantizer must be exact on every backend.
fn check_table_type(ty: GgmlType, has_dequant_file: bool) {
    for table in [scalar_kernels(), kernels()] {
        let t = table
            .get(ty)
            .unwrap_or_else(|| panic!("{ty}: no entry ({} table)", table.backend.name()));
        check_type(
            ty,
            t.quantize_row_ref
                .unwrap_or_else(|| panic!("{ty}: no quantize_row_ref")),
            t.dequantize_row
                .unwrap_or_else(|| panic!("{ty}: no dequantize_row")),
            has_dequant_file,
        );
    }
}

#[test]
fn golden_q4_0() {
    check_table_type(GgmlType::Q4_0, true);
}

#[test]
fn golden_q4_1() {
    check_table_type(GgmlType::Q4_1, true);
}

#[test]
fn golden_q5_0() {
    check_table_type(GgmlType::Q5_0, true);
}

#[test]
fn golden_q5_1() {
    check_table_type(GgmlType::Q5_1, true);
}

#[test]
fn golden_q8_0() {
    check_table_type(GgmlType::Q8_0, true);
}

#[test]
fn golden_q8_1() {
    // No `.dequant.f32` for Q8_1 (ggml has no to_float); check our dequantizer by its definition.
    check_table_type(GgmlType::Q8_1, false);
    let want = read("Q8_1.bin");
    let mut y = vec![0.0f32; ROWS * N_PER_ROW];
    dequantize_row(GgmlType::Q8_1, Aligned::from_bytes(&want).bytes(), &mut y).unwrap();
    for (b, (blk, yb)) in want.chunks_exact(36).zip(y.chunks_exact(32)).enumerate() {
        let d = half::f16::from_bits(u16::from_le_bytes([blk[0], blk[1]])).to_f32();
        for j in 0..32 {
            assert_eq!(
                yb[j].to_bits(),
                (blk[4 + j] as i8 as f32 * d).to_bits(),
                "Q8_1 block {b} elem {j}"
            );
        }
    }
}

#[test]
fn golden_q2_k() {
    check_table_type(GgmlType::Q2_K, true);
}

#[test]
fn golden_q3_k() {
    check_table_type(GgmlType::Q3_K, true);
}

#[test]
fn golden_q4_k() {
    check_table_type(GgmlType::Q4_K, true);
}

#[test]
fn golden_q5_k() {
    check_table_type(GgmlType::Q5_K, true);
}

#[test]
fn golden_q6_k() {
    check_table_type(GgmlType::Q6_K, true);
}

#[test]
fn golden_q8_k() {
    check_table_type(GgmlType::Q8_K, true);
    // On x86 (and in ggml's generic path) Q8_K's activation quantizer is the reference itself.
    check_from_float(GgmlType::Q8_K, "Q8_K.bin");
}

/// The CPU backend's activation quantizer, scalar and through `kernels()`.
fn check_from_float(ty: GgmlType, file: &str) {
    let x = source();
    let want = read(file);
    for (label, table) in [("scalar", scalar_kernels()), ("kernels()", kernels())] {
        let f = table
            .get(ty)
            .and_then(|t| t.from_float)
            .unwrap_or_else(|| panic!("{ty}: no from_float"));
        let mut ours = Aligned::zeroed(want.len());
        f(&x, ours.bytes_mut());
        assert_bytes_eq(
            &format!(
                "{ty} from_float ({label}, backend {})",
                table.backend.name()
            ),
            ty,
            ours.bytes(),
            &want,
        );
    }
    // The safe entry point as well.
    let mut ours = Aligned::zeroed(want.len());
    from_float(ty, &x, ours.bytes_mut()).unwrap();
    assert_bytes_eq(
        &format!("{ty} dispatch::from_float"),
        ty,
        ours.bytes(),
        &want,
    );
}

#[test]
fn golden_q8_0_activations() {
    check_from_float(GgmlType::Q8_0, "Q8_0.cpu-x86-avx2.bin");
}

#[test]
fn golden_q8_1_activations() {
    check_from_float(GgmlType::Q8_1, "Q8_1.cpu-x86-avx2.bin");
}

/// The reference and CPU-path Q8 files differ only on row 13 (ties), as the README says; this
/// guards the premise that the two quantizers round differently only there.
#[test]
fn q8_reference_and_activation_differ_only_on_ties_row() {
    for ty in [GgmlType::Q8_0, GgmlType::Q8_1] {
        let a = read(&format!("{}.bin", ty.name()));
        let b = read(&format!("{}.cpu-x86-avx2.bin", ty.name()));
        let rb = ty.row_bytes(N_PER_ROW as u64).unwrap() as usize;
        for r in 0..ROWS {
            let same = a[r * rb..(r + 1) * rb] == b[r * rb..(r + 1) * rb];
            assert_eq!(same, r != 13, "{ty} row {r}");
        }
    }
}

/// The safe entry points give the same result as the table and check their lengths.
#[test]
fn safe_entry_points() {
    let x = source();
    let want = read("Q4_0.bin");
    let mut out = Aligned::zeroed(want.len());
    quantize_row(GgmlType::Q4_0, &x, out.bytes_mut()).unwrap();
    assert_bytes_eq(
        "dispatch::quantize_row Q4_0",
        GgmlType::Q4_0,
        out.bytes(),
        &want,
    );
    let mut short = Aligned::zeroed(want.len() - 18);
    assert!(quantize_row(GgmlType::Q4_0, &x, short.bytes_mut()).is_err());
    assert!(quantize_row(GgmlType::Q4_0, &x[..31], &mut []).is_err());
}

/// Scalar `vec_dot` on the golden weight rows against an f64 dot of the dequantized values.
///
/// The kernel sums integers exactly per block and rounds only a few times per block term, then
/// once per term while accumulating (at most ~9 terms per 256-block for the k-quants), so its
/// error is at most ~(9 * n_blocks + 16) * 2^-24 * S with S = sum_i (|scale part of w_i| +
/// |min part of w_i|) * |a_i|, the sum of the magnitudes of every term (for Q4_1/Q5_1 the min
/// term is m * s with the Q8_1 block's stored sum s, so the exact value and S use that).
/// A layout bug (a wrong nibble, scale or lane) gives errors of order S itself.
#[test]
fn vec_dot_matches_dequantized_dot() {
    let x = source();
    let weight_types = WEIGHT_TYPES.into_iter().filter(|t| t.is_quantized());
    for ty in weight_types {
        let t = scalar_kernels().get(ty).unwrap();
        let vt = t.vec_dot_type;
        let wbin = Aligned::from_bytes(&read(&format!("{}.bin", ty.name())));
        let w_rb = ty.row_bytes(N_PER_ROW as u64).unwrap() as usize;
        let a_rb = vt.row_bytes(N_PER_ROW as u64).unwrap() as usize;
        let mut wd = vec![0.0f32; N_PER_ROW];
        let mut ad = vec![0.0f32; N_PER_ROW];
        let mut abuf = Aligned::zeroed(a_rb);
        for r in 0..ROWS {
            // Activations: a different row, so signs and magnitudes do not line up.
            let ar = (r + 3) % ROWS;
            from_float(
                vt,
                &x[ar * N_PER_ROW..(ar + 1) * N_PER_ROW],
                abuf.bytes_mut(),
            )
            .unwrap();
            let wrow = &wbin.bytes()[r * w_rb..(r + 1) * w_rb];
            dequantize_row(ty, wrow, &mut wd).unwrap();
            dequantize_row(vt, abuf.bytes(), &mut ad).unwrap();
            let got = (t.vec_dot.unwrap())(N_PER_ROW, wrow, abuf.bytes()) as f64;

            // Magnitudes of the scale and min parts of each weight: dequantize with the min
            // (resp. the scale) zeroed.
            let (scale_part, min_part) =
                split_scale_min(ty, wrow, wrow.len() / ty.block_bytes() * ty.block_elems());
            let nb = N_PER_ROW / ty.block_elems();
            let (exact, s) = if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
                // The min term is defined with the activation block's stored sum s (f16 of
                // d * sum(q), d unrounded), which is not the sum of its dequantized values (it
                // stays nonzero when f16(d) underflows): exact = sum_i w_scale_i * a_i + sum_b m_b s_b.
                let ab = abuf.bytes();
                let mut exact = 0.0f64;
                let mut s = 0.0f64;
                for i in 0..N_PER_ROW {
                    exact += scale_part[i] as f64 * ad[i] as f64;
                    s += (scale_part[i] as f64 * ad[i] as f64).abs();
                }
                for b in 0..nb {
                    let m = min_part[32 * b] as f64;
                    let sb = half::f16::from_le_bytes([ab[36 * b + 2], ab[36 * b + 3]]).to_f64();
                    exact += m * sb;
                    s += (m * sb).abs();
                }
                (exact, s)
            } else {
                let exact: f64 = wd.iter().zip(&ad).map(|(&w, &a)| w as f64 * a as f64).sum();
                let s: f64 = (0..N_PER_ROW)
                    .map(|i| {
                        (scale_part[i].abs() as f64 + min_part[i].abs() as f64) * ad[i].abs() as f64
                    })
                    .sum();
                (exact, s)
            };
            let mut bound = (9.0 * nb as f64 + 16.0) * 2f64.powi(-24) * s * 1.05;
            bound += 1e-30;
            assert!(
                (got - exact).abs() <= bound,
                "{ty} row {r}: vec_dot {got} vs dequantized dot {exact} (|diff| {} > bound {bound})",
                (got - exact).abs()
            );
        }
    }
}

/// The float formats through the table on the golden source rows: F16 and BF16 round to nearest
/// even (checked against `half`'s conversions; the rows hold no NaN), F32 is a copy, and
/// dequantization widens exactly.
#[test]
fn float_formats_on_source_rows() {
    let x = source();
    let n = x.len();
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        let mut q = Aligned::zeroed(n * ty.block_bytes());
        quantize_row(ty, &x, q.bytes_mut()).unwrap();
        let mut y = vec![0.0f32; n];
        dequantize_row(ty, q.bytes(), &mut y).unwrap();
        for (i, &v) in x.iter().enumerate() {
            let b = q.bytes();
            let (bits, want_bits, back) = match ty {
                GgmlType::F32 => {
                    let got =
                        u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
                    (got, v.to_bits(), v)
                }
                GgmlType::F16 => {
                    let got = u16::from_le_bytes([b[2 * i], b[2 * i + 1]]) as u32;
                    let h = half::f16::from_f32(v);
                    (got, h.to_bits() as u32, h.to_f32())
                }
                _ => {
                    let got = u16::from_le_bytes([b[2 * i], b[2 * i + 1]]) as u32;
                    let h = half::bf16::from_f32(v);
                    (got, h.to_bits() as u32, h.to_f32())
                }
            };
            assert_eq!(bits, want_bits, "{ty} element {i} ({v:e})");
            assert_eq!(
                y[i].to_bits(),
                back.to_bits(),
                "{ty} dequantized element {i}"
            );
        }
    }
}

/// Empty rows are fine for every type and entry point (no panic on a dangling empty slice), and
/// wrong lengths are errors, not panics.
#[test]
fn safe_entry_points_edge_cases() {
    use ferrolm_kernels::dispatch::{vec_dot, KernelError};
    for ty in GgmlType::ALL {
        quantize_row(ty, &[], &mut []).unwrap();
        from_float(ty, &[], &mut []).unwrap();
        dequantize_row(ty, &[], &mut []).unwrap();
        if scalar_kernels().get(ty).unwrap().vec_dot.is_some() {
            assert_eq!(vec_dot(ty, 0, &[], &[]).unwrap(), 0.0);
        }
    }
    // One element short of a block, and output one block short.
    let x = vec![1.0f32; 256];
    let e = quantize_row(GgmlType::Q4_K, &x[..255], &mut []).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::PartialBlock {
                n: 255,
                block_elems: 256,
                ..
            }
        ),
        "{e}"
    );
    let mut out = Aligned::zeroed(143);
    let e = quantize_row(GgmlType::Q4_K, &x, out.bytes_mut()).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::LengthMismatch {
                need: 144,
                have: 143,
                ..
            }
        ),
        "{e}"
    );
    // Misaligned output for Q8_K (needs 4).
    let mut out = Aligned::zeroed(292 + 1);
    let e = from_float(GgmlType::Q8_K, &x, &mut out.bytes_mut()[1..]).unwrap_err();
    assert!(matches!(e, KernelError::Misaligned { align: 4, .. }), "{e}");
    // vec_dot: activations in the wrong format length.
    let w = Aligned::zeroed(144);
    let a = Aligned::zeroed(36 * 8);
    let e = vec_dot(GgmlType::Q4_K, 256, w.bytes(), a.bytes()).unwrap_err();
    assert!(
        matches!(e, KernelError::LengthMismatch { need: 292, .. }),
        "{e}"
    );
}

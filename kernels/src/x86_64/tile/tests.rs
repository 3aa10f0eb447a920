//! Every tile against the scalar `vec_dot` per (row, token), on each instruction set the CPU has.

use super::super::test_util::{close, Lcg};
use super::*;
use crate::blocks::{
    BlockQ2_K, BlockQ3_K, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K,
    BlockQ6_K, BlockQ8_0,
};
use crate::dispatch::scalar_kernels;

/// Checks the tile `$f::<$b>` of each instruction set (AVX-512 VNNI, AVX-VNNI, AVX2) this CPU
/// has.
macro_rules! check_sets {
    ($ty:expr, $act:expr, $f:ident::<$b:ty>) => {
        for (has, set, f) in [
            (
                super::super::has_avx512vnni(),
                "avx512vnni",
                vnni::$f::<$b> as crate::dispatch::GemmTileFn,
            ),
            (super::super::has_avxvnni(), "avxvnni", avxvnni::$f::<$b>),
            (super::super::has_avx2(), "avx2", avx2::$f::<$b>),
        ] {
            if has {
                check($ty, $act, f);
            } else {
                eprintln!("skipped the {set} tile: the CPU lacks its features");
            }
        }
    };
}

fn check(ty: GgmlType, act: GgmlType, tile_fn: crate::dispatch::GemmTileFn) {
    let mut rng = Lcg(31);
    let sk = scalar_kernels();
    let k = sk.get(ty).unwrap();
    let (q, ff, dot) = (
        k.quantize_row_ref.unwrap(),
        sk.get(act).unwrap().from_float.unwrap(),
        k.vec_dot.unwrap(),
    );
    for &(n, nr, nt) in &[
        (32usize, 1usize, 1usize),
        (64, 8, 8),
        (96, 13, 11),
        (256, 16, 16),
        (128, 3, 5),
        (512, 9, 10),
        (768, 16, 16),
        // Token groups of 128 and 64 (the largest) and what is left over.
        (256, 24, 133),
    ] {
        if n % ty.block_elems() != 0 {
            continue;
        }
        let wrb = ty.row_bytes(n as u64).unwrap() as usize;
        let arb = act.row_bytes(n as u64).unwrap() as usize;
        let w_stride = wrb + 2 * std::mem::align_of::<u32>(); // a stride larger than the row
        let mut w = vec![0u8; nr * w_stride];
        for r in 0..nr {
            q(&rng.f32s(n, 1.0), &mut w[r * w_stride..r * w_stride + wrb]);
        }
        let mut a = vec![0u8; nt * arb];
        for t in 0..nt {
            let mut x = rng.f32s(n, 2.0);
            if t == 0 {
                x.iter_mut().for_each(|v| *v = -v.abs()); // -127 activations
            }
            ff(&x, &mut a[t * arb..(t + 1) * arb]);
        }
        let out_stride = nr + 3;
        let mut out = vec![f32::NAN; nt * out_stride];
        tile_fn(
            n,
            Rows::new(&w, nr, wrb, w_stride),
            Rows::new(&a, nt, arb, arb),
            RowsMut::new(&mut out, nt, nr, out_stride),
        );
        for t in 0..nt {
            for r in 0..nr {
                let want = dot(
                    n,
                    &w[r * w_stride..r * w_stride + wrb],
                    &a[t * arb..(t + 1) * arb],
                );
                let got = out[t * out_stride + r];
                assert!(
                    close(got, want, 1e-4 * n as f32),
                    "{ty} n={n} r={r} t={t}: tile {got} scalar {want}"
                );
            }
            for r in nr..out_stride {
                assert!(
                    out[t * out_stride + r].is_nan(),
                    "{ty}: tile wrote outside its rows"
                );
            }
        }
        // The same element computed in a smaller tile is bit-identical.
        if nr > 1 && nt > 1 {
            let mut one = [0.0f32; 1];
            let (r, t) = (nr - 1, nt - 1);
            tile_fn(
                n,
                Rows::one(&w[r * w_stride..r * w_stride + wrb]),
                Rows::one(&a[t * arb..(t + 1) * arb]),
                RowsMut::one(&mut one),
            );
            assert_eq!(
                one[0].to_bits(),
                out[t * out_stride + r].to_bits(),
                "{ty}: tile result depends on grouping"
            );
        }
    }
}

/// The AMX tile (where the CPU has it) against the scalar dot ([`check`]), and bit for bit
/// against the AVX-512 tile on 40 rows x 133 tokens and 24 x 53 (token groups of 128, 32 and 16,
/// 5 left over for the AVX-512 tile; row groups of 16 and 8), one and three k-quant super-blocks.
fn check_amx(
    ty: GgmlType,
    act: GgmlType,
    amx_fn: crate::dispatch::GemmTileFn,
    vnni_fn: crate::dispatch::GemmTileFn,
) {
    if !amx::available() {
        eprintln!("skipped the AMX tile: the CPU or the OS lacks AMX");
        return;
    }
    check(ty, act, amx_fn);
    let mut rng = Lcg(5);
    let sk = scalar_kernels();
    let (q, ff) = (
        sk.get(ty).unwrap().quantize_row_ref.unwrap(),
        sk.get(act).unwrap().from_float.unwrap(),
    );
    let ns: &[usize] = if ty.block_elems() == 256 {
        &[256, 768]
    } else {
        &[320]
    };
    for &n in ns {
        // 133 tokens: a group of 128 and 5 left over; 53: 32, 16 (an odd group) and 5.
        for (nr, nt) in [(40usize, 133usize), (24, 53)] {
            let (wrb, arb) = (
                ty.row_bytes(n as u64).unwrap() as usize,
                act.row_bytes(n as u64).unwrap() as usize,
            );
            let mut w = vec![0u8; nr * wrb];
            for r in 0..nr {
                q(&rng.f32s(n, 1.0), &mut w[r * wrb..(r + 1) * wrb]);
            }
            let mut a = vec![0u8; nt * arb];
            for t in 0..nt {
                ff(&rng.f32s(n, 2.0), &mut a[t * arb..(t + 1) * arb]);
            }
            let run = |f: crate::dispatch::GemmTileFn| {
                let mut out = vec![f32::NAN; nt * nr];
                f(
                    n,
                    Rows::new(&w, nr, wrb, wrb),
                    Rows::new(&a, nt, arb, arb),
                    RowsMut::new(&mut out, nt, nr, nr),
                );
                out.into_iter().map(f32::to_bits).collect::<Vec<_>>()
            };
            assert!(
                run(amx_fn) == run(vnni_fn),
                "{ty}: the AMX tile differs from the AVX-512 tile ({nr} rows x {nt} tokens x {n})"
            );
        }
    }
}

#[test]
fn q4_0_tile_matches_scalar() {
    check_sets!(GgmlType::Q4_0, GgmlType::Q8_0, gemm_tile::<BlockQ4_0>);
    check_amx(
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        amx::gemm_tile::<BlockQ4_0>,
        vnni::gemm_tile::<BlockQ4_0>,
    );
}

#[test]
fn q5_0_tile_matches_scalar() {
    check_sets!(GgmlType::Q5_0, GgmlType::Q8_0, gemm_tile::<BlockQ5_0>);
    check_amx(
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        amx::gemm_tile::<BlockQ5_0>,
        vnni::gemm_tile::<BlockQ5_0>,
    );
}

#[test]
fn q8_0_tile_matches_scalar() {
    check_sets!(GgmlType::Q8_0, GgmlType::Q8_0, gemm_tile::<BlockQ8_0>);
    check_amx(
        GgmlType::Q8_0,
        GgmlType::Q8_0,
        amx::gemm_tile::<BlockQ8_0>,
        vnni::gemm_tile::<BlockQ8_0>,
    );
}

#[test]
fn q4_1_tile_matches_scalar() {
    check_sets!(GgmlType::Q4_1, GgmlType::Q8_1, gemm_tile::<BlockQ4_1>);
    check_amx(
        GgmlType::Q4_1,
        GgmlType::Q8_1,
        amx::gemm_tile::<BlockQ4_1>,
        vnni::gemm_tile::<BlockQ4_1>,
    );
}

#[test]
fn q4_k_tile_matches_scalar() {
    check_sets!(GgmlType::Q4_K, GgmlType::Q8_K, gemm_tile_k::<BlockQ4_K>);
    check_amx(
        GgmlType::Q4_K,
        GgmlType::Q8_K,
        amx::gemm_tile_k::<BlockQ4_K>,
        vnni::gemm_tile_k::<BlockQ4_K>,
    );
}

#[test]
fn q5_k_tile_matches_scalar() {
    check_sets!(GgmlType::Q5_K, GgmlType::Q8_K, gemm_tile_k::<BlockQ5_K>);
    check_amx(
        GgmlType::Q5_K,
        GgmlType::Q8_K,
        amx::gemm_tile_k::<BlockQ5_K>,
        vnni::gemm_tile_k::<BlockQ5_K>,
    );
}

#[test]
fn q6_k_tile_matches_scalar() {
    check_sets!(GgmlType::Q6_K, GgmlType::Q8_K, gemm_tile_k::<BlockQ6_K>);
    check_amx(
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        amx::gemm_tile_k16::<BlockQ6_K>,
        vnni::gemm_tile_k::<BlockQ6_K>,
    );
}

#[test]
fn q3_k_tile_matches_scalar() {
    check_sets!(GgmlType::Q3_K, GgmlType::Q8_K, gemm_tile_k::<BlockQ3_K>);
    check_amx(
        GgmlType::Q3_K,
        GgmlType::Q8_K,
        amx::gemm_tile_k16::<BlockQ3_K>,
        vnni::gemm_tile_k::<BlockQ3_K>,
    );
}

#[test]
fn q2_k_tile_matches_scalar() {
    check_sets!(GgmlType::Q2_K, GgmlType::Q8_K, gemm_tile_k::<BlockQ2_K>);
    check_amx(
        GgmlType::Q2_K,
        GgmlType::Q8_K,
        amx::gemm_tile_k16::<BlockQ2_K>,
        vnni::gemm_tile_k::<BlockQ2_K>,
    );
}

#[test]
fn q5_1_tile_matches_scalar() {
    check_sets!(GgmlType::Q5_1, GgmlType::Q8_1, gemm_tile::<BlockQ5_1>);
    check_amx(
        GgmlType::Q5_1,
        GgmlType::Q8_1,
        amx::gemm_tile::<BlockQ5_1>,
        vnni::gemm_tile::<BlockQ5_1>,
    );
}

/// The tile of 1 and of 16 copies of the row `w` (an 8-row group, and on AVX-512 the 16-row
/// one) against the one token `a`: (row count, each output).
fn extreme_rows(f: crate::dispatch::GemmTileFn, n: usize, w: &[u8], a: &[u8]) -> Vec<(usize, f32)> {
    let mut got = Vec::new();
    for nr in [1, 16] {
        let ww = w.repeat(nr);
        let mut out = vec![f32::NAN; nr];
        f(
            n,
            Rows::new(&ww, nr, w.len(), w.len()),
            Rows::one(a),
            RowsMut::new(&mut out, 1, nr, nr),
        );
        got.extend(out.into_iter().map(|v| (nr, v)));
    }
    got
}

/// The Q4_K tile's half sums at their extremes: every level 15, every activation -128 (a Q8_K
/// block can hold -128), every sub-block scale 63: each 16-element half sum is -30720, the most
/// an i16 must hold in the `vpdpwssd` form. The tile equals the scalar dot on every set.
#[test]
fn q4_k_tile_extreme_half_sums() {
    let sk = scalar_kernels();
    let dot = sk.get(GgmlType::Q4_K).unwrap().vec_dot.unwrap();
    let n = 512;
    let w_block = BlockQ4_K {
        d: half::f16::from_f32(0.5),
        dmin: half::f16::ZERO,
        // 6-bit scales 63 (and mins 63) in the packed 12-byte form: all bits set.
        scales: [0xFF; 12],
        qs: [0xFF; 128],
    };
    let a_block = BlockQ8_K {
        d: 0.25,
        qs: [-128; 256],
        bsums: [-128 * 16; 16],
    };
    let w: Vec<u8> = (0..n / 256)
        .flat_map(|_| crate::blocks::as_bytes(std::slice::from_ref(&w_block)).to_vec())
        .collect();
    let a: Vec<u8> = (0..n / 256)
        .flat_map(|_| crate::blocks::as_bytes(std::slice::from_ref(&a_block)).to_vec())
        .collect();
    let want = dot(n, &w, &a);
    for (has, set, f) in [
        (
            super::super::has_avx512vnni(),
            "avx512vnni",
            vnni::gemm_tile_k::<BlockQ4_K> as crate::dispatch::GemmTileFn,
        ),
        (
            super::super::has_avxvnni(),
            "avxvnni",
            avxvnni::gemm_tile_k::<BlockQ4_K>,
        ),
        (
            super::super::has_avx2(),
            "avx2",
            avx2::gemm_tile_k::<BlockQ4_K>,
        ),
    ] {
        if !has {
            continue;
        }
        for (nr, got) in extreme_rows(f, n, &w, &a) {
            assert!(
                close(got, want, 1e-4 * n as f32),
                "{set} {nr} rows: tile {got} scalar {want}"
            );
        }
    }
}

/// The Q3_K and Q2_K tiles at their sums' extremes: every level at its most negative (Q3_K: -4,
/// scales -32) or largest (Q2_K: 3, scales and mins 15), every activation -128. Each group's
/// sum is then 8192 (Q3_K) or -6144 (Q2_K) in magnitude, what the `vpdpwssd` form packs into an
/// i16. The tiles equal the scalar dot on every set.
#[test]
fn q3_k_q2_k_tiles_extreme_sums() {
    let q3 = BlockQ3_K {
        hmask: [0; 32],
        qs: [0; 64],
        scales: [0; 12],
        d: half::f16::from_f32(0.5),
    };
    let q2 = BlockQ2_K {
        scales: [0xFF; 16],
        qs: [0xFF; 64],
        d: half::f16::from_f32(0.5),
        dmin: half::f16::from_f32(0.25),
    };
    let a_block = BlockQ8_K {
        d: 0.25,
        qs: [-128; 256],
        bsums: [-128 * 16; 16],
    };
    let n = 512;
    let rep = |b: &[u8]| -> Vec<u8> { (0..n / 256).flat_map(|_| b.to_vec()).collect() };
    let a = rep(crate::blocks::as_bytes(std::slice::from_ref(&a_block)));
    let cases: [(GgmlType, Vec<u8>, [crate::dispatch::GemmTileFn; 3]); 2] = [
        (
            GgmlType::Q3_K,
            rep(crate::blocks::as_bytes(std::slice::from_ref(&q3))),
            [
                vnni::gemm_tile_k::<BlockQ3_K>,
                avxvnni::gemm_tile_k::<BlockQ3_K>,
                avx2::gemm_tile_k::<BlockQ3_K>,
            ],
        ),
        (
            GgmlType::Q2_K,
            rep(crate::blocks::as_bytes(std::slice::from_ref(&q2))),
            [
                vnni::gemm_tile_k::<BlockQ2_K>,
                avxvnni::gemm_tile_k::<BlockQ2_K>,
                avx2::gemm_tile_k::<BlockQ2_K>,
            ],
        ),
    ];
    let has = [
        super::super::has_avx512vnni(),
        super::super::has_avxvnni(),
        super::super::has_avx2(),
    ];
    for (ty, w, fs) in cases {
        let want = scalar_kernels().get(ty).unwrap().vec_dot.unwrap()(n, &w, &a);
        for (f, has) in fs.into_iter().zip(has) {
            if !has {
                continue;
            }
            for (nr, got) in extreme_rows(f, n, &w, &a) {
                assert!(
                    close(got, want, 1e-4 * n as f32),
                    "{ty} {nr} rows: tile {got} scalar {want}"
                );
            }
        }
    }
}

/// The AMX k-quant tiles at their weight extremes, 20 rows x 16 tokens (one AMX token group):
/// each level's `scale * (u - offset)` at its largest (Q4_K 15 x 63 = 945, Q5_K 31 x 63 = 1953,
/// Q6_K -32 x -128 = 4096, whose `h` byte is 64) and most negative (Q6_K 31 x -128 = -3968),
/// against activations of -128 and of 127. Equal to the scalar dot and, bit for bit, to the
/// AVX-512 tile.
#[test]
fn amx_k_tiles_extreme_levels() {
    if !amx::available() {
        eprintln!("skipped the AMX tile: the CPU or the OS lacks AMX");
        return;
    }
    let n = 512;
    let rep = |b: &[u8]| -> Vec<u8> { (0..n / 256).flat_map(|_| b.to_vec()).collect() };
    let q4 = BlockQ4_K {
        d: half::f16::from_f32(0.5),
        dmin: half::f16::ZERO,
        scales: [0xFF; 12],
        qs: [0xFF; 128],
    };
    let q5 = BlockQ5_K {
        d: half::f16::from_f32(0.5),
        dmin: half::f16::ZERO,
        scales: [0xFF; 12],
        qh: [0xFF; 32],
        qs: [0xFF; 128],
    };
    let q6 = |u: u8, scale: i8| BlockQ6_K {
        ql: [u & 0xF | (u & 0xF) << 4; 128],
        qh: [(u >> 4) * 0x55; 64],
        scales: [scale; 16],
        d: half::f16::from_f32(0.5),
    };
    let bytes = |b: &dyn Fn() -> Vec<u8>| rep(&b());
    let cases: [(
        GgmlType,
        Vec<u8>,
        crate::dispatch::GemmTileFn,
        crate::dispatch::GemmTileFn,
    ); 4] = [
        (
            GgmlType::Q4_K,
            bytes(&|| crate::blocks::as_bytes(std::slice::from_ref(&q4)).to_vec()),
            amx::gemm_tile_k::<BlockQ4_K>,
            vnni::gemm_tile_k::<BlockQ4_K>,
        ),
        (
            GgmlType::Q5_K,
            bytes(&|| crate::blocks::as_bytes(std::slice::from_ref(&q5)).to_vec()),
            amx::gemm_tile_k::<BlockQ5_K>,
            vnni::gemm_tile_k::<BlockQ5_K>,
        ),
        (
            GgmlType::Q6_K,
            bytes(&|| crate::blocks::as_bytes(std::slice::from_ref(&q6(0, -128))).to_vec()),
            amx::gemm_tile_k16::<BlockQ6_K>,
            vnni::gemm_tile_k::<BlockQ6_K>,
        ),
        (
            GgmlType::Q6_K,
            bytes(&|| crate::blocks::as_bytes(std::slice::from_ref(&q6(63, -128))).to_vec()),
            amx::gemm_tile_k16::<BlockQ6_K>,
            vnni::gemm_tile_k::<BlockQ6_K>,
        ),
    ];
    let (nr, nt) = (20usize, 16usize);
    for (ty, w, amx_fn, vnni_fn) in cases {
        let ww = w.repeat(nr);
        for qa in [-128i8, 127] {
            let a_block = BlockQ8_K {
                d: 0.25,
                qs: [qa; 256],
                bsums: [qa as i16 * 16; 16],
            };
            let a = rep(crate::blocks::as_bytes(std::slice::from_ref(&a_block))).repeat(nt);
            let want =
                scalar_kernels().get(ty).unwrap().vec_dot.unwrap()(n, &w, &a[..a.len() / nt]);
            let run = |f: crate::dispatch::GemmTileFn| {
                let mut out = vec![f32::NAN; nt * nr];
                f(
                    n,
                    Rows::new(&ww, nr, w.len(), w.len()),
                    Rows::new(&a, nt, a.len() / nt, a.len() / nt),
                    RowsMut::new(&mut out, nt, nr, nr),
                );
                out
            };
            let (got, base) = (run(amx_fn), run(vnni_fn));
            for (i, &g) in got.iter().enumerate() {
                assert!(
                    close(g, want, 1e-4 * n as f32),
                    "{ty} activations {qa}, output {i}: AMX tile {g} scalar {want}"
                );
                assert_eq!(
                    g.to_bits(),
                    base[i].to_bits(),
                    "{ty}: AMX differs from AVX-512"
                );
            }
        }
    }
}

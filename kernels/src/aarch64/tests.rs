//! The integer `vec_dot` entry points of every format (`vec_dot_entry_points!`) against the
//! scalar oracle (`dispatch::scalar_kernels()`), both variants directly (plain NEON always; `sdot`
//! when the CPU has dotprod: run under qemu with the default CPU and with `QEMU_CPU=cortex-a72` to
//! cover both, as `scripts/test-aarch64.sh` does), and what `install` selects. The float, quantizer
//! and tile tests sit beside their kernels; the helpers are in `test_util.rs`.

use half::f16;

use super::test_util::*;
use super::*;
use crate::dispatch::{kernels, scalar_kernels, Backend};
use crate::types::GgmlType as T;

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
fn install_selects_neon_by_feature() {
    let mut table = crate::dispatch::build_scalar_table();
    install(&mut table);
    let expect = if has_dotprod() {
        Backend::NeonDotprod
    } else {
        Backend::Neon
    };
    let best = if has_i8mm() {
        Backend::NeonI8mm
    } else {
        expect
    };
    assert_eq!(table.backend, best);
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
        "aarch64 kernels: backend {} (dotprod {}, i8mm {}), FERROLM_KERNELS={:?}",
        k.backend.name(),
        has_dotprod(),
        has_i8mm(),
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

//! Inputs the `gguf_reader` fuzz target (fuzz/) found, kept as regression tests. Each input lives in
//! tests/data/fuzz-crashes/ as the fuzzer wrote it; a test names what went wrong.
//!
//! The property for every one of them: the reader returns an error value, or the file parses and
//! everything it offers (metadata, tensor views, `n_elements`, `inspect`) works without a panic
//! and with correct values.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ferrolm::gguf::Gguf;

mod common;

/// Every tensor of an accepted file: its element count must fit in u64, and `n_elements()` must
/// return it (not panic on overflow, not wrap).
fn assert_tensor_sizes_sound(bytes: &[u8]) {
    let Ok(g) = Gguf::from_bytes(bytes) else {
        return;
    };
    for (t, info) in g.tensors().zip(g.tensor_infos()) {
        let exact = t.dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        assert!(
            exact.is_some(),
            "tensor {:?} with shape {:?} was accepted, but its element count overflows u64 \
             (n_elements() panics in debug builds and wraps in release; ferrolm inspect sums it)",
            t.name,
            t.shape()
        );
        let got = catch_unwind(AssertUnwindSafe(|| (t.n_elements(), info.n_elements())));
        assert_eq!(
            got.ok(),
            Some((exact.unwrap(), exact.unwrap())),
            "tensor {:?}",
            t.name
        );
    }
}

/// Found by cargo-fuzz (libFuzzer) in its first minutes: a 3-d F16 tensor whose later dimension is 0
/// has 0 bytes, so every size check passes, but the product of its dimensions overflows u64 before
/// reaching the 0. `TensorView::n_elements` / `TensorInfo::n_elements` then panic with "attempt to
/// multiply with overflow" (debug, fuzz and test builds) or return a wrapped count (release).
#[test]
fn fuzz_tensor_element_count_overflow() {
    let bytes =
        std::fs::read(common::data("fuzz-crashes/tensor-n-elements-overflow.gguf")).unwrap();
    assert_tensor_sizes_sound(&bytes);
}

/// The same bug, minimal and hand-made: one F32 tensor of shape [2^33, 2^33, 0].
#[test]
fn crafted_tensor_element_count_overflow() {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes()); // tensors
    b.extend_from_slice(&0u64.to_le_bytes()); // metadata
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(b"t");
    b.extend_from_slice(&3u32.to_le_bytes());
    for d in [1u64 << 33, 1 << 33, 0] {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&0u32.to_le_bytes()); // F32
    b.extend_from_slice(&0u64.to_le_bytes()); // offset
    b.resize(b.len().div_ceil(32) * 32, 0);
    assert_tensor_sizes_sound(&b);
}

//! GGUF reader/writer: round trip of every metadata type, corruption resistance, real models.

use ferrolm::gguf::{Gguf, GgufError, GgufWriter, TensorSpec, Value};
use ferrolm::kernels::GgmlType;

mod common;

pub fn sample_bytes() -> Vec<u8> {
    let (w, data) = common::every_type::sample();
    let refs: Vec<&[u8]> = data.iter().map(|d| d.as_slice()).collect();
    w.write_all(Vec::new(), &refs).unwrap()
}

#[test]
fn round_trip_every_type() {
    let (w, data) = common::every_type::sample();
    let meta = w.metadata().to_vec();
    let specs = w.tensors().to_vec();
    let bytes = sample_bytes();
    let g = Gguf::from_bytes(&bytes).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.alignment(), 64);
    assert_eq!(g.n_metadata(), meta.len());
    for ((k, v), (k2, v2)) in meta.iter().zip(g.metadata()) {
        assert_eq!(k, k2);
        assert_eq!(*v, v2.to_owned_value(), "key {k}");
    }
    assert_eq!(g.get_u32("t.u32").unwrap(), 4_000_000_000);
    assert_eq!(g.get_u32("t.u8").unwrap(), 200);
    assert!(matches!(
        g.get_u32("t.i8"),
        Err(GgufError::OutOfRange { .. })
    ));
    assert!(matches!(
        g.get_u32("t.str"),
        Err(GgufError::WrongType { .. })
    ));
    let e = g.get_u32("llama.context_length").unwrap_err().to_string();
    assert!(
        e.contains("llama.context_length") && e.contains("missing"),
        "{e}"
    );
    assert_eq!(g.get_f32("t.f64").unwrap(), std::f64::consts::PI as f32);
    assert!(g
        .get_str("t.str")
        .unwrap()
        .starts_with("héllo wörld ✓ \"quoted\""));
    let strs: Vec<&str> = g.get_array("t.arr_str").unwrap().strings().collect();
    assert_eq!(strs, ["a", "", "ü", "<0x0A>", "Ġthe"]);
    assert_eq!(
        g.get_array("t.arr_i32")
            .unwrap()
            .to_i32_vec("t.arr_i32")
            .unwrap(),
        (-50..50).collect::<Vec<_>>()
    );
    assert_eq!(g.n_tensors(), specs.len());
    for ((t, spec), d) in g.tensors().zip(&specs).zip(&data) {
        assert_eq!(t.name, spec.name);
        assert_eq!(t.ty, spec.ty);
        assert_eq!(t.shape(), spec.dims.as_slice());
        assert_eq!(t.data, d.as_slice());
        let info = g
            .tensor_infos()
            .iter()
            .find(|i| g.tensor_name(i) == t.name)
            .unwrap();
        assert_eq!(info.file_offset % 64, 0, "{} not aligned", t.name);
    }
    assert!(matches!(g.get("t.arr_nested"), Some(Value::Array(_))));
}

#[test]
fn writer_rejects_bad_specs() {
    let mut w = GgufWriter::new();
    assert!(w
        .add_tensor(TensorSpec {
            name: "a".into(),
            ty: GgmlType::Q4_0,
            dims: vec![33, 2]
        })
        .is_err());
    assert!(w
        .add_tensor(TensorSpec {
            name: "b".into(),
            ty: GgmlType::F32,
            dims: vec![1, 1, 1, 1, 1]
        })
        .is_err());
    w.add_tensor(TensorSpec {
        name: "c".into(),
        ty: GgmlType::F32,
        dims: vec![4],
    })
    .unwrap();
    assert!(w
        .add_tensor(TensorSpec {
            name: "c".into(),
            ty: GgmlType::F32,
            dims: vec![4]
        })
        .is_err());
    let mut s = w.begin(Vec::new()).unwrap();
    assert!(s.write_tensor(&[0u8; 15]).is_err());
}

/// Truncating a valid file anywhere in its header region, or flipping any header byte, gives an
/// error value or a still-valid parse — never a panic, never an out-of-bounds read.
#[test]
fn corruption_never_panics() {
    let bytes = sample_bytes();
    let g = Gguf::from_bytes(&bytes).unwrap();
    let header_end = g.data_offset() as usize;
    for cut in 0..bytes.len() {
        match Gguf::from_bytes(&bytes[..cut]) {
            Ok(_) => assert!(
                cut >= header_end,
                "truncated at {cut} (header ends {header_end}) parsed OK"
            ),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    let mut errors = 0;
    for pos in 0..header_end {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[pos] ^= flip;
            if let Err(e) = Gguf::from_bytes(&b) {
                errors += 1;
                assert!(!e.to_string().is_empty());
            } else if let Ok(g) = Gguf::from_bytes(&b) {
                // A flip that still parses must still give in-bounds views.
                for t in g.tensors() {
                    assert!(t.data.len() as u64 <= g.file_len());
                }
                let _ = g.metadata().count();
            }
        }
    }
    assert!(errors > header_end, "too few flips detected: {errors}");
}

#[test]
fn specific_errors() {
    let bytes = sample_bytes();
    let e = Gguf::from_bytes(b"GGML\x03\0\0\0").unwrap_err();
    assert!(matches!(e, GgufError::BadMagic { .. }), "{e}");
    let mut b = bytes.clone();
    b[4] = 1;
    assert!(matches!(
        Gguf::from_bytes(&b).unwrap_err(),
        GgufError::UnsupportedVersion(1)
    ));
    let e = Gguf::from_bytes(&bytes[..20]).unwrap_err();
    assert!(matches!(e, GgufError::Truncated { .. }), "{e}");
    // A huge metadata count is rejected before any allocation sized by it.
    let mut b = bytes.clone();
    b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        Gguf::from_bytes(&b).unwrap_err(),
        GgufError::Truncated { .. }
    ));
    // A huge tensor count likewise.
    let mut b = bytes.clone();
    b[8..16].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    assert!(matches!(
        Gguf::from_bytes(&b).unwrap_err(),
        GgufError::Truncated { .. }
    ));
    // Dropping the data section puts tensors out of bounds.
    let g = Gguf::from_bytes(&bytes).unwrap();
    let e = Gguf::from_bytes(&bytes[..g.data_offset() as usize + 10]).unwrap_err();
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e}");
}

/// Errors for crafted files built with the writer's building blocks.
#[test]
fn crafted_files() {
    fn file(meta: &[u8], n_kv: u64, tensors: &[u8], n_t: u64) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&n_t.to_le_bytes());
        b.extend_from_slice(&n_kv.to_le_bytes());
        b.extend_from_slice(meta);
        b.extend_from_slice(tensors);
        b.resize(b.len() + 4096, 0);
        b
    }
    fn s(x: &str) -> Vec<u8> {
        let mut v = (x.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(x.as_bytes());
        v
    }
    fn tensor(name: &str, dims: &[u64], ty: u32, off: u64) -> Vec<u8> {
        let mut v = s(name);
        v.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            v.extend_from_slice(&d.to_le_bytes());
        }
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(&off.to_le_bytes());
        v
    }
    // Unknown value type.
    let mut m = s("k");
    m.extend_from_slice(&99u32.to_le_bytes());
    assert!(matches!(
        Gguf::from_bytes(&file(&m, 1, &[], 0)).unwrap_err(),
        GgufError::UnknownValueType { .. }
    ));
    // Nesting too deep.
    let mut m = s("deep");
    m.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..10 {
        m.extend_from_slice(&9u32.to_le_bytes());
        m.extend_from_slice(&1u64.to_le_bytes());
    }
    assert!(matches!(
        Gguf::from_bytes(&file(&m, 1, &[], 0)).unwrap_err(),
        GgufError::TooDeep { .. }
    ));
    // Huge string length.
    let mut m = (u64::MAX).to_le_bytes().to_vec();
    m.extend_from_slice(b"k");
    assert!(matches!(
        Gguf::from_bytes(&file(&m, 1, &[], 0)).unwrap_err(),
        GgufError::TooLong { .. }
    ));
    // Invalid UTF-8 key.
    let mut m = 2u64.to_le_bytes().to_vec();
    m.extend_from_slice(&[0xff, 0xfe]);
    m.extend_from_slice(&4u32.to_le_bytes());
    m.extend_from_slice(&1u32.to_le_bytes());
    assert!(matches!(
        Gguf::from_bytes(&file(&m, 1, &[], 0)).unwrap_err(),
        GgufError::InvalidUtf8 { .. }
    ));
    // Duplicate key.
    let mut m = s("a");
    m.extend_from_slice(&4u32.to_le_bytes());
    m.extend_from_slice(&1u32.to_le_bytes());
    let m2 = [m.clone(), m].concat();
    assert!(matches!(
        Gguf::from_bytes(&file(&m2, 2, &[], 0)).unwrap_err(),
        GgufError::DuplicateKey(_)
    ));
    // Bad alignment.
    let mut m = s("general.alignment");
    m.extend_from_slice(&4u32.to_le_bytes());
    m.extend_from_slice(&3u32.to_le_bytes());
    assert!(matches!(
        Gguf::from_bytes(&file(&m, 1, &[], 0)).unwrap_err(),
        GgufError::BadAlignment(3)
    ));
    // Tensor problems.
    let cases: Vec<(Vec<u8>, u64, fn(&GgufError) -> bool)> = vec![
        (tensor("t", &[1, 1, 1, 1, 1], 0, 0), 1, |e| {
            matches!(e, GgufError::TooManyDims { .. })
        }),
        (tensor("t", &[32], 77, 0), 1, |e| {
            matches!(e, GgufError::UnknownTensorType { type_id: 77, .. })
        }),
        (tensor("t", &[33], 2, 0), 1, |e| {
            matches!(e, GgufError::BadRowLength { .. })
        }),
        (tensor("t", &[u64::MAX, u64::MAX], 0, 0), 1, |e| {
            matches!(e, GgufError::ShapeOverflow { .. })
        }),
        (tensor("t", &[4], 0, 3), 1, |e| {
            matches!(e, GgufError::MisalignedTensor { .. })
        }),
        (tensor("t", &[1 << 40], 0, 0), 1, |e| {
            matches!(e, GgufError::TensorOutOfBounds { .. })
        }),
        (tensor("t", &[4], 0, u64::MAX - 31), 1, |e| {
            matches!(e, GgufError::TensorOutOfBounds { .. })
        }),
        (
            [tensor("t", &[4], 0, 0), tensor("t", &[4], 0, 32)].concat(),
            2,
            |e| matches!(e, GgufError::DuplicateTensor(_)),
        ),
        (
            [tensor("a", &[64], 0, 0), tensor("b", &[4], 0, 32)].concat(),
            2,
            |e| matches!(e, GgufError::TensorOverlap { .. }),
        ),
    ];
    for (i, (t, n, check)) in cases.into_iter().enumerate() {
        let e = Gguf::from_bytes(&file(&[], 0, &t, n)).unwrap_err();
        assert!(check(&e), "case {i}: {e}");
    }
}

#[test]
fn real_models_open() {
    let Some(path) = common::model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let g = Gguf::open(&path).unwrap();
    assert!(g.is_mapped());
    assert_eq!(g.architecture().unwrap(), "llama");
    assert_eq!(g.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(g.get_array("tokenizer.ggml.tokens").unwrap().len(), 49152);
    assert_eq!(g.n_tensors(), 272);
    let mut counts = std::collections::BTreeMap::new();
    for t in g.tensors() {
        *counts.entry(t.ty.name()).or_insert(0) += 1;
    }
    assert_eq!(
        counts,
        [("F32", 61), ("Q4_1", 210), ("Q8_0", 1)]
            .into_iter()
            .collect()
    );

    let Some(path) = common::model("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf") else {
        return;
    };
    let g = Gguf::open(&path).unwrap();
    assert_eq!(g.architecture().unwrap(), "qwen2");
    assert_eq!(g.get_u32("qwen2.block_count").unwrap(), 24);
    assert_eq!(g.get_array("tokenizer.ggml.tokens").unwrap().len(), 151936);
    let mut counts = std::collections::BTreeMap::new();
    for t in g.tensors() {
        *counts.entry(t.ty.name()).or_insert(0) += 1;
    }
    assert_eq!(
        counts,
        [
            ("F32", 121),
            ("Q4_K", 12),
            ("Q5_0", 133),
            ("Q6_K", 12),
            ("Q8_0", 13)
        ]
        .into_iter()
        .collect()
    );
}

/// Header-region corruption of a real model: truncations and byte flips all give errors, no panics.
#[test]
fn real_model_header_corruption() {
    let Some(path) = common::model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    let g = Gguf::from_bytes(&bytes).unwrap();
    let header_end = g.data_offset() as usize;
    let mut n = 0;
    // Truncate at ~300 offsets spread over the header region.
    for cut in (0..header_end).step_by(header_end / 300 + 1) {
        let e = Gguf::validate(&bytes[..cut]).unwrap_err();
        assert!(!e.to_string().is_empty());
        n += 1;
    }
    // Flip bytes at ~300 positions of the header region: an error or a valid parse, never a panic.
    let mut img = bytes;
    for pos in (0..header_end).step_by(header_end / 300 + 1) {
        img[pos] ^= 0xa5;
        let _ = Gguf::validate(&img);
        img[pos] ^= 0xa5;
        n += 1;
    }
    assert!(n > 500);
}

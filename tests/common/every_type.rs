//! The every-metadata-type GGUF sample the reader, writer and gguf-py interop tests (and the fuzz
//! seeds, `fuzz/src/bin/make_seeds.rs`) share: every value type, arrays of each, nested and empty
//! arrays, awkward strings, and one tensor of each format we run, with patterned bytes.

use ferrolm::gguf::{GgufWriter, OwnedValue, TensorSpec, ValueType};
use ferrolm::kernels::GgmlType;

/// Every metadata type, nested arrays, and a spread of tensor types (float, legacy quants, k-quants).
pub fn sample() -> (GgufWriter, Vec<Vec<u8>>) {
    let mut w = GgufWriter::new();
    w.set("general.architecture", OwnedValue::Str("llama".into()));
    w.set(
        "general.name",
        OwnedValue::Str("gguf-py interop sample".into()),
    );
    w.set("t.u8", OwnedValue::U8(200));
    w.set("t.i8", OwnedValue::I8(-100));
    w.set("t.u16", OwnedValue::U16(60000));
    w.set("t.i16", OwnedValue::I16(-30000));
    w.set("t.u32", OwnedValue::U32(4_000_000_000));
    w.set("t.i32", OwnedValue::I32(-2_000_000_000));
    w.set("t.u64", OwnedValue::U64(u64::MAX - 1));
    w.set("t.i64", OwnedValue::I64(i64::MIN + 1));
    w.set("t.f32", OwnedValue::F32(1e-5));
    w.set("t.f32_neg", OwnedValue::F32(-3.25e30));
    w.set("t.f64", OwnedValue::F64(std::f64::consts::PI));
    w.set("t.bool_true", OwnedValue::Bool(true));
    w.set("t.bool_false", OwnedValue::Bool(false));
    w.set(
        "t.str",
        OwnedValue::Str("héllo wörld ✓ \"quoted\" \\ tab\t nl\n 日本語 🦀".into()),
    );
    w.set("t.empty_str", OwnedValue::Str(String::new()));
    w.set(
        "t.arr_str",
        OwnedValue::str_array(["a", "", "ü", "<0x0A>", "Ġthe"]),
    );
    w.set(
        "t.arr_u8",
        OwnedValue::Array(ValueType::U8, [0u8, 1, 255].map(OwnedValue::U8).to_vec()),
    );
    w.set(
        "t.arr_i8",
        OwnedValue::Array(ValueType::I8, [-128i8, 0, 127].map(OwnedValue::I8).to_vec()),
    );
    w.set(
        "t.arr_u16",
        OwnedValue::Array(ValueType::U16, [0u16, 65535].map(OwnedValue::U16).to_vec()),
    );
    w.set(
        "t.arr_i16",
        OwnedValue::Array(
            ValueType::I16,
            [i16::MIN, -1, i16::MAX].map(OwnedValue::I16).to_vec(),
        ),
    );
    w.set(
        "t.arr_u32",
        OwnedValue::Array(
            ValueType::U32,
            [0u32, u32::MAX].map(OwnedValue::U32).to_vec(),
        ),
    );
    w.set(
        "t.arr_i32",
        OwnedValue::Array(ValueType::I32, (-50..50).map(OwnedValue::I32).collect()),
    );
    w.set(
        "t.arr_u64",
        OwnedValue::Array(
            ValueType::U64,
            [0u64, u64::MAX].map(OwnedValue::U64).to_vec(),
        ),
    );
    w.set(
        "t.arr_i64",
        OwnedValue::Array(
            ValueType::I64,
            [i64::MIN, i64::MAX].map(OwnedValue::I64).to_vec(),
        ),
    );
    w.set(
        "t.arr_f32",
        OwnedValue::Array(
            ValueType::F32,
            [-1.5f32, 2.0, 1e-30].map(OwnedValue::F32).to_vec(),
        ),
    );
    w.set(
        "t.arr_f64",
        OwnedValue::Array(
            ValueType::F64,
            [0.1f64, -1e300].map(OwnedValue::F64).to_vec(),
        ),
    );
    w.set(
        "t.arr_bool",
        OwnedValue::Array(
            ValueType::Bool,
            [true, false, true].map(OwnedValue::Bool).to_vec(),
        ),
    );
    w.set("t.arr_empty", OwnedValue::Array(ValueType::U8, vec![]));
    w.set(
        "t.arr_nested",
        OwnedValue::Array(
            ValueType::Array,
            vec![
                OwnedValue::Array(ValueType::U16, vec![OwnedValue::U16(1), OwnedValue::U16(2)]),
                OwnedValue::Array(ValueType::String, vec![OwnedValue::Str("x".into())]),
                OwnedValue::Array(ValueType::F32, vec![]),
            ],
        ),
    );
    w.set("general.alignment", OwnedValue::U32(64));
    let specs: &[(&str, GgmlType, &[u64])] = &[
        ("token_embd.weight", GgmlType::F32, &[7, 3]),
        ("f16.weight", GgmlType::F16, &[5, 2, 3]),
        ("bf16.weight", GgmlType::BF16, &[8, 2, 1, 2]),
        ("q4_0.weight", GgmlType::Q4_0, &[64, 2]),
        ("q4_1.weight", GgmlType::Q4_1, &[32, 3]),
        ("q5_0.weight", GgmlType::Q5_0, &[96]),
        ("q5_1.weight", GgmlType::Q5_1, &[32, 2]),
        ("q8_0.weight", GgmlType::Q8_0, &[64, 3]),
        ("q2_k.weight", GgmlType::Q2_K, &[256]),
        ("q3_k.weight", GgmlType::Q3_K, &[256, 2]),
        ("q4_k.weight", GgmlType::Q4_K, &[256, 2]),
        ("q5_k.weight", GgmlType::Q5_K, &[512]),
        ("q6_k.weight", GgmlType::Q6_K, &[256, 3]),
    ];
    let mut data = Vec::new();
    for (i, (name, ty, dims)) in specs.iter().enumerate() {
        let spec = TensorSpec {
            name: name.to_string(),
            ty: *ty,
            dims: dims.to_vec(),
        };
        let n = spec.n_bytes().unwrap() as usize;
        data.push(
            (0..n)
                .map(|j| (j * 131 + i * 17 + (j >> 8)) as u8)
                .collect(),
        );
        w.add_tensor(spec).unwrap();
    }
    (w, data)
}

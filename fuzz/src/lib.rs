//! The property the `gguf_reader` fuzz target checks, shared by the libFuzzer build and the
//! standalone driver ([`drive`]).
//!
//! For any bytes:
//! 1. `Gguf::validate` (in place) and `Gguf::from_bytes` (aligned copy) agree, and neither panics;
//!    an error's message renders.
//! 2. When they parse, every metadata value can be read back: arrays iterate exactly `len` elements
//!    (nested too), every typed getter returns a value or an error, `get(key)` finds the entry;
//!    every tensor view lies inside the file and has the byte size its type and shape imply.
//! 3. Writing the parsed metadata and tensors back with `GgufWriter` gives a file that parses to the
//!    same keys, values (bit for bit) and tensors.
//!
//! Any panic is a finding: either in the reader or writer, or a broken invariant above.

pub mod drive;

use ferrolm::gguf::{Gguf, GgufWriter, TensorSpec, Value, ValueType};

/// At most this many keys / tensors are looked up by name (each lookup is a linear scan).
const MAX_LOOKUPS: usize = 64;
/// Skip the writer round trip above this alignment: the writer pads every tensor to it, so a huge
/// (valid) alignment in a tiny input would make a huge output and look like an out-of-memory.
const MAX_ROUND_TRIP_ALIGNMENT: u64 = 1 << 12;

/// Run every check on one input. Panics on a finding.
pub fn check(data: &[u8]) {
    let valid = Gguf::validate(data);
    let parsed = Gguf::from_bytes(data);
    match (&valid, &parsed) {
        (Ok(()), Ok(_)) => {}
        (Err(a), Err(b)) => {
            // Both report; the messages must render (Display of every variant).
            let (a, b) = (a.to_string(), b.to_string());
            assert!(!a.is_empty() && !b.is_empty());
            return;
        }
        (v, p) => panic!(
            "validate and from_bytes disagree: validate = {:?}, from_bytes = {:?}",
            v.as_ref().err(),
            p.as_ref().err()
        ),
    }
    let g = parsed.expect("checked above");
    walk(&g);
    round_trip(&g);
}

/// Read every metadata value and tensor view; returns a digest so nothing is optimised away.
pub fn walk(g: &Gguf) -> u64 {
    let mut h = 0u64;
    assert!(g.version() == 2 || g.version() == 3, "version {}", g.version());
    assert!(g.alignment().is_power_of_two(), "alignment {}", g.alignment());
    let mut n_meta = 0;
    for (i, (k, v)) in g.metadata().enumerate() {
        n_meta += 1;
        h = mix(h, k.len() as u64);
        h = mix(h, walk_value(&v, 1));
        let _ = v.to_string();
        let _ = v.as_i128();
        let _ = v.as_f64();
        if i < MAX_LOOKUPS {
            let found = g.get(k).unwrap_or_else(|| panic!("get({k:?}) finds nothing"));
            assert!(same_value(&found, &v), "get({k:?}) = {found:?}, metadata() gave {v:?}");
            h = mix(h, g.get_str(k).map(|s| s.len() as u64).unwrap_or(1));
            h = mix(h, g.get_u32(k).map(u64::from).unwrap_or(2));
            h = mix(h, g.get_u64(k).unwrap_or(3));
            h = mix(h, g.get_i64(k).map(|x| x as u64).unwrap_or(4));
            h = mix(h, g.get_f32(k).map(|x| x.to_bits() as u64).unwrap_or(5));
            h = mix(h, g.get_bool(k).map(u64::from).unwrap_or(6));
            h = mix(h, g.get_array(k).map(|a| a.len() as u64).unwrap_or(7));
        }
    }
    assert_eq!(n_meta, g.n_metadata());
    let _ = g.architecture().map(|a| h = mix(h, a.len() as u64));

    let file_len = g.file_len();
    assert!(g.data_offset() <= file_len || g.n_tensors() == 0);
    let mut n_t = 0;
    for (i, (t, info)) in g.tensors().zip(g.tensor_infos()).enumerate() {
        n_t += 1;
        assert_eq!(t.name, g.tensor_name(info));
        assert_eq!(t.data.len() as u64, info.n_bytes, "tensor {:?}", t.name);
        assert_eq!(t.shape().len(), info.n_dims as usize);
        assert!(info.file_offset.checked_add(info.n_bytes).is_some_and(|e| e <= file_len));
        assert_eq!(info.file_offset % g.alignment(), g.data_offset() % g.alignment());
        // The element count fits in u64 (the reader rejects shapes whose product overflows, a fuzzer
        // finding kept in tests/gguf_fuzz_regressions.rs) and n_elements() returns it.
        let n = t.dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        assert!(n.is_some(), "tensor {:?}: shape {:?} accepted, element count overflows", t.name, t.shape());
        assert_eq!(Some(t.n_elements()), n);
        assert_eq!(Some(info.n_elements()), n);
        // The byte size follows from the type and shape.
        let rows: u64 = t.dims[1..].iter().product();
        assert_eq!(t.ty.row_bytes(t.dims[0]).and_then(|r| r.checked_mul(rows)), Some(info.n_bytes));
        if let (Some(a), Some(b)) = (t.data.first(), t.data.last()) {
            h = mix(h, *a as u64 ^ ((*b as u64) << 8));
        }
        if i < MAX_LOOKUPS {
            let found = g.tensor(t.name).unwrap_or_else(|| panic!("tensor({:?}) finds nothing", t.name));
            assert_eq!(found.data.as_ptr(), t.data.as_ptr());
        }
    }
    assert_eq!(n_t, g.n_tensors());
    h
}

/// Walk one value: arrays are iterated completely (nested arrays too) and must yield `len` items.
fn walk_value(v: &Value<'_>, depth: u32) -> u64 {
    match *v {
        Value::Str(s) => s.len() as u64,
        Value::Array(a) => {
            assert!(depth <= ferrolm::gguf::MAX_ARRAY_DEPTH, "array nested {depth} deep was accepted");
            let mut h = a.len() as u64;
            let mut n = 0usize;
            for e in a.iter() {
                assert_eq!(e.value_type(), a.elem_type(), "array element of the wrong type");
                h = mix(h, walk_value(&e, depth + 1));
                n += 1;
            }
            assert_eq!(n, a.len(), "array iteration yields {n} of {} elements", a.len());
            if let Some(size) = a.elem_type().scalar_size() {
                assert_eq!(a.raw_bytes().len() as u64, size * a.len() as u64);
            }
            if a.elem_type() == ValueType::String {
                assert_eq!(a.strings().count(), a.len());
            }
            match a.to_f32_vec("k") {
                Ok(f) => assert_eq!(f.len(), a.len()),
                Err(e) => h = mix(h, e.to_string().len() as u64),
            }
            match a.to_i32_vec("k") {
                Ok(i) => assert_eq!(i.len(), a.len()),
                Err(e) => h = mix(h, e.to_string().len() as u64),
            }
            h
        }
        other => other.as_f64().map(|f| f.to_bits()).unwrap_or(0) ^ other.value_type() as u64,
    }
}

/// Write the parsed file back with the writer and check the result parses to the same thing.
fn round_trip(g: &Gguf) {
    if g.alignment() > MAX_ROUND_TRIP_ALIGNMENT {
        return;
    }
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata() {
        w.set(k, v.to_owned_value());
    }
    let mut data = Vec::with_capacity(g.n_tensors());
    for t in g.tensors() {
        // The writer refuses some shapes the reader tolerates (zero dimensions); nothing to compare then.
        if w.add_tensor(TensorSpec { name: t.name.to_string(), ty: t.ty, dims: t.shape().to_vec() }).is_err() {
            return;
        }
        data.push(t.data);
    }
    // The writer accepts only a UINT32 general.alignment; the reader also takes UINT64 and INT32.
    let Ok(bytes) = w.write_all(Vec::new(), &data) else { return };
    let g2 = Gguf::from_bytes(&bytes).unwrap_or_else(|e| panic!("the writer's output does not parse: {e}"));
    assert_eq!(g2.n_metadata(), g.n_metadata());
    for ((k1, v1), (k2, v2)) in g.metadata().zip(g2.metadata()) {
        assert_eq!(k1, k2);
        assert!(same_value(&v1, &v2), "key {k1:?}: {v1:?} written back as {v2:?}");
    }
    assert_eq!(g2.n_tensors(), g.n_tensors());
    assert_eq!(g2.alignment(), g.alignment());
    for (a, b) in g.tensors().zip(g2.tensors()) {
        assert_eq!((a.name, a.ty, a.shape()), (b.name, b.ty, b.shape()));
        assert!(a.data == b.data, "tensor {:?}: data differs after the round trip", a.name);
    }
}

/// Equality of values with floats compared bit for bit (NaN payloads included).
fn same_value(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => {
            x.elem_type() == y.elem_type()
                && x.len() == y.len()
                && (x.raw_bytes() == y.raw_bytes() || x.iter().zip(y.iter()).all(|(p, q)| same_value(&p, &q)))
        }
        _ => a == b,
    }
}

fn mix(h: u64, x: u64) -> u64 {
    (h ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(23)
}

//! Interoperability with gguf-py (`gguf==0.19.0`, llama.cpp's Python reader): a file written by
//! `GgufWriter` with every metadata type and many tensor types is read by gguf-py's `GGUFReader`
//! (scripts/gguf_py_dump.py prints it as JSON) and must show exactly what was written; and the real
//! SmolLM2 model must look the same to gguf-py and to `Gguf::open` (metadata, tensor list, offsets,
//! data hashes).
//!
//! Skips with a message when python3 or the gguf package is missing (scripts/test.sh installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use ferrolm::gguf::{Gguf, OwnedValue};
use serde_json::Value as Json;

mod common;

/// Runs scripts/gguf_py_dump.py on `path`; `None` (with a SKIP line) when python3 or gguf is missing.
fn gguf_py_dump(path: &Path, hash: bool) -> Option<Json> {
    let script = common::root().join("scripts/gguf_py_dump.py");
    let out = match Command::new("python3")
        .arg(&script)
        .arg(path)
        .args(["--hash", if hash { "all" } else { "none" }])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIP: cannot run python3 ({e}); scripts/test.sh installs gguf==0.19.0");
            return None;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(2) {
        eprintln!(
            "SKIP: {}; run `python3 -m pip install gguf==0.19.0` (scripts/test.sh does)",
            stderr.trim()
        );
        return None;
    }
    assert!(
        out.status.success(),
        "gguf-py could not read {}: {}",
        path.display(),
        stderr.trim()
    );
    let j: Json = serde_json::from_slice(&out.stdout).expect("gguf_py_dump.py prints JSON");
    if j["gguf_py_version"] != "0.19.0" {
        eprintln!(
            "note: gguf-py {} (the suite pins 0.19.0)",
            j["gguf_py_version"]
        );
    }
    Some(j)
}

/// `j` (gguf-py's decoded value) equals the written value `v`: same type, same value (floats bit
/// for bit after narrowing gguf-py's float64 back to float32).
fn assert_value(key: &str, v: &OwnedValue, j: &Json) {
    let ok = match v {
        OwnedValue::U8(x) => j.as_u64() == Some(*x as u64),
        OwnedValue::U16(x) => j.as_u64() == Some(*x as u64),
        OwnedValue::U32(x) => j.as_u64() == Some(*x as u64),
        OwnedValue::U64(x) => j.as_u64() == Some(*x),
        OwnedValue::I8(x) => j.as_i64() == Some(*x as i64),
        OwnedValue::I16(x) => j.as_i64() == Some(*x as i64),
        OwnedValue::I32(x) => j.as_i64() == Some(*x as i64),
        OwnedValue::I64(x) => j.as_i64() == Some(*x),
        OwnedValue::F32(x) => j.as_f64().map(|f| (f as f32).to_bits()) == Some(x.to_bits()),
        // JSON float text round trips f64 to within an ulp.
        OwnedValue::F64(x) => j
            .as_f64()
            .is_some_and(|f| f == *x || (f - x).abs() <= x.abs() * f64::EPSILON),
        OwnedValue::Bool(x) => j.as_bool() == Some(*x),
        OwnedValue::Str(s) => j.as_str() == Some(s.as_str()),
        OwnedValue::Array(_, items) => {
            let arr = j
                .as_array()
                .unwrap_or_else(|| panic!("{key}: gguf-py gave {j}, expected an array"));
            assert_eq!(arr.len(), items.len(), "{key}: array length");
            for (it, ji) in items.iter().zip(arr) {
                assert_value(key, it, ji);
            }
            true
        }
    };
    assert!(ok, "{key}: gguf-py read {j}, ferrolm wrote {v:?}");
}

/// Compare one metadata entry of gguf-py's dump with a (key, value).
fn assert_entry(e: &Json, key: &str, v: &OwnedValue) {
    assert_eq!(e["key"], key);
    assert_eq!(e["type"], v.value_type().name(), "{key}: type");
    if let OwnedValue::Array(elem, _) = v {
        assert_eq!(e["elem_type"], elem.name(), "{key}: element type");
    }
    assert_value(key, v, &e["value"]);
    // gguf-py's own ReaderField.contents(), for everything but nested arrays.
    if e.get("contents").is_some() {
        assert_value(key, v, &e["contents"]);
    }
}

#[test]
fn gguf_py_reads_what_we_write() {
    let (w, data) = common::every_type::sample();
    let meta = w.metadata().to_vec();
    let specs = w.tensors().to_vec();
    let refs: Vec<&[u8]> = data.iter().map(|d| d.as_slice()).collect();
    let bytes = w.write_all(Vec::new(), &refs).unwrap();
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("gguf_py_sample_{}.gguf", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let dump = gguf_py_dump(&path, true);
    let g = Gguf::open(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let Some(j) = dump else { return };

    assert_eq!(j["alignment"], 64);
    let jm = j["metadata"].as_array().unwrap();
    assert_eq!(jm.len(), meta.len(), "metadata count");
    for (e, (k, v)) in jm.iter().zip(&meta) {
        assert_entry(e, k, v);
    }
    let jt = j["tensors"].as_array().unwrap();
    assert_eq!(jt.len(), specs.len(), "tensor count");
    for (((e, spec), d), info) in jt.iter().zip(&specs).zip(&data).zip(g.tensor_infos()) {
        let name = &spec.name;
        assert_eq!(e["name"], spec.name.as_str());
        assert_eq!(e["type"], spec.ty.name(), "{name}: type");
        assert_eq!(e["shape"], serde_json::json!(spec.dims), "{name}: shape");
        assert_eq!(
            e["n_elements"],
            spec.dims.iter().product::<u64>(),
            "{name}: elements"
        );
        assert_eq!(e["n_bytes"], d.len(), "{name}: bytes");
        assert_eq!(e["data_offset"], info.file_offset, "{name}: data offset");
        assert_eq!(e["sha256"], sha256_hex(d), "{name}: data");
    }
    println!(
        "gguf-py {} read {} keys and {} tensors as written",
        j["gguf_py_version"],
        jm.len(),
        jt.len()
    );
}

#[test]
fn gguf_py_and_ferrolm_agree_on_smollm2() {
    let Some(path) = common::model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let Some(j) = gguf_py_dump(&path, true) else {
        return;
    };
    let g = Gguf::open(&path).unwrap();
    assert_eq!(j["alignment"], g.alignment());

    let jm = j["metadata"].as_array().unwrap();
    assert_eq!(jm.len(), g.n_metadata(), "metadata count");
    for (e, (k, v)) in jm.iter().zip(g.metadata()) {
        assert_entry(e, k, &v.to_owned_value());
    }
    let jt = j["tensors"].as_array().unwrap();
    assert_eq!(jt.len(), g.n_tensors(), "tensor count");
    assert_eq!(jt.len(), 272);
    let bytes = std::fs::read(&path).unwrap();
    for ((e, info), t) in jt.iter().zip(g.tensor_infos()).zip(g.tensors()) {
        let name = g.tensor_name(info);
        assert_eq!(e["name"], name);
        assert_eq!(e["type"], info.ty.name(), "{name}: type");
        assert_eq!(e["shape"], serde_json::json!(info.shape()), "{name}: shape");
        assert_eq!(e["n_bytes"], info.n_bytes, "{name}: bytes");
        assert_eq!(e["data_offset"], info.file_offset, "{name}: data offset");
        let at = info.file_offset as usize;
        assert_eq!(t.data, &bytes[at..at + info.n_bytes as usize]);
        assert_eq!(e["sha256"], sha256_hex(t.data), "{name}: data");
    }
    println!(
        "gguf-py and Gguf::open agree on SmolLM2: {} keys, {} tensors",
        jm.len(),
        jt.len()
    );
}

#[test]
fn sha256_known_answers() {
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_eq!(
        sha256_hex(long),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    assert_eq!(
        sha256_hex(&[b'a'; 1000]),
        "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
    );
}

/// SHA-256 (FIPS 180-4), so the tests need no extra crate to compare with Python's hashlib.
fn sha256_hex(msg: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let compress = |h: &mut [u32; 8], block: &[u8]| {
        let mut w = [0u32; 64];
        for (i, c) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = *h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    };
    let mut blocks = msg.chunks_exact(64);
    for b in &mut blocks {
        compress(&mut h, b);
    }
    // Padding: 0x80, zeros, then the bit length as a big-endian u64.
    let rest = blocks.remainder();
    let mut tail = rest.to_vec();
    tail.push(0x80);
    while tail.len() % 64 != 56 {
        tail.push(0);
    }
    tail.extend_from_slice(&((msg.len() as u64) * 8).to_be_bytes());
    for b in tail.chunks_exact(64) {
        compress(&mut h, b);
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

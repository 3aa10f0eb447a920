//! Helpers for the converter tests: paths, fixtures, golden comparison.
#![allow(dead_code)]

pub mod tiny;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use ferrolm::gguf::{Gguf, OwnedValue};
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

/// Repository root (the workspace, one level above `tools/`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tools/ has a parent")
        .to_path_buf()
}

pub fn models() -> PathBuf {
    std::env::var_os("FERROLM_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models"))
}

/// A scratch directory for one test, emptied first. The process id keeps two concurrent runs of
/// the suite in one checkout apart.
pub fn scratch(name: &str) -> PathBuf {
    let d = root()
        .join("target/tmp/quantize-tests")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

static FIXTURES: Mutex<Option<bool>> = Mutex::new(None);

/// False (with a SKIP line) under qemu-user emulation (scripts/test-aarch64.sh), where converting
/// the 135M-parameter checkpoints dozens of times would take hours; FERROLM_HEAVY_TESTS=1 forces.
pub fn heavy_allowed(what: &str) -> bool {
    if std::env::var_os("FERROLM_HEAVY_TESTS").is_some_and(|v| v == "1") {
        return true;
    }
    if std::env::var_os("QEMU_LD_PREFIX").is_some() {
        eprintln!("SKIP {what}: running under qemu (set FERROLM_HEAVY_TESTS=1 to run it anyway)");
        return false;
    }
    true
}

/// `models/hf/` with both checkpoints, built by scripts/make-hf-fixtures.sh when missing;
/// `None` (with a SKIP line) when they cannot be built here.
pub fn hf_fixtures() -> Option<PathBuf> {
    let dir = models().join("hf");
    let mut state = FIXTURES.lock().unwrap_or_else(|p| p.into_inner());
    if state.is_none() {
        let ok = if dir.join("smollm2-135m/model.safetensors").is_file()
            && dir
                .join("synth-llama-256/model-00002-of-00002.safetensors")
                .is_file()
        {
            true
        } else if !models().join("SmolLM2-135M-Instruct.Q4_1.gguf").is_file() {
            eprintln!("SKIP: models/SmolLM2-135M-Instruct.Q4_1.gguf missing (run scripts/fetch-models.sh smollm2)");
            false
        } else {
            match Command::new("bash")
                .arg(root().join("scripts/make-hf-fixtures.sh"))
                // No nested cargo build while cargo test holds the target directory.
                .arg("--no-requant")
                .status()
            {
                Ok(s) if s.success() => true,
                Ok(s) => {
                    eprintln!("SKIP: scripts/make-hf-fixtures.sh failed ({s}); needs python3 with pip (PyPI)");
                    false
                }
                Err(e) => {
                    eprintln!("SKIP: cannot run scripts/make-hf-fixtures.sh: {e}");
                    false
                }
            }
        };
        *state = Some(ok);
    }
    state.unwrap().then_some(dir)
}

/// A golden JSON from tools/tests/data/convert/.
pub fn golden(rel: &str) -> Json {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/convert")
        .join(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).expect("golden JSON")
}

pub fn sha256_hex(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}

/// A metadata value as the golden JSON shows it: `{type, value}` for scalars and arrays of up to
/// 16 elements, `{type: ARRAY, elem_type, length, sha256}` for longer arrays (sha256 over
/// Python's compact `json.dumps`, which serde_json's compact output equals for ints and strings).
pub fn describe(v: &OwnedValue) -> Json {
    fn plain(v: &OwnedValue) -> Json {
        match v {
            OwnedValue::U8(x) => json!(x),
            OwnedValue::I8(x) => json!(x),
            OwnedValue::U16(x) => json!(x),
            OwnedValue::I16(x) => json!(x),
            OwnedValue::U32(x) => json!(x),
            OwnedValue::I32(x) => json!(x),
            OwnedValue::U64(x) => json!(x),
            OwnedValue::I64(x) => json!(x),
            OwnedValue::F32(x) => json!(*x as f64),
            OwnedValue::F64(x) => json!(x),
            OwnedValue::Bool(x) => json!(x),
            OwnedValue::Str(s) => json!(s),
            OwnedValue::Array(_, items) => Json::Array(items.iter().map(plain).collect()),
        }
    }
    match v {
        OwnedValue::Array(elem, items) if items.len() > 16 => {
            let text = serde_json::to_string(&plain(v)).expect("json");
            json!({"type": "ARRAY", "elem_type": elem.name(), "length": items.len(), "sha256": sha256_hex(text.as_bytes())})
        }
        OwnedValue::Array(elem, items) => {
            json!({"type": "ARRAY", "elem_type": elem.name(), "length": items.len(), "value": plain(v)})
        }
        _ => json!({"type": v.value_type().name(), "value": plain(v)}),
    }
}

fn must_match(key: &str) -> bool {
    key.starts_with("llama.")
        || key.starts_with("qwen2.")
        || key.starts_with("tokenizer.")
        || matches!(
            key,
            "general.architecture" | "general.file_type" | "general.quantization_version"
        )
}

/// Compare a written GGUF with a golden description: every tensor's name, type, shape and
/// sha256 (in file order), every metadata key llama.cpp must agree on (type and value), and the
/// whole file (key order and the naming keys included). Returns the file's sha256.
pub fn assert_matches_golden(path: &Path, g: &Json, label: &str) -> String {
    let file = Gguf::open(path)
        .unwrap_or_else(|e| panic!("{label}: cannot read back {}: {e}", path.display()));
    let gt = g["tensors"].as_array().expect("tensors");
    let mine: Vec<_> = file.tensors().collect();
    assert_eq!(mine.len(), gt.len(), "{label}: tensor count");
    for (m, t) in mine.iter().zip(gt) {
        assert_eq!(m.name, t["name"].as_str().unwrap(), "{label}: tensor order");
        assert_eq!(
            m.ty.name(),
            t["type"].as_str().unwrap(),
            "{label}: type of {}",
            m.name
        );
        let shape: Vec<u64> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(m.shape(), &shape[..], "{label}: shape of {}", m.name);
        assert_eq!(
            sha256_hex(m.data),
            t["sha256"].as_str().unwrap(),
            "{label}: data of {} ({})",
            m.name,
            m.ty
        );
    }
    let gm = g["metadata"].as_object().expect("metadata");
    let mut mine_keys = Vec::new();
    for (k, v) in file.metadata() {
        mine_keys.push(k.to_string());
        if must_match(k) {
            let want = gm
                .get(k)
                .unwrap_or_else(|| panic!("{label}: extra key {k}"));
            let got = describe(&v.to_owned_value());
            assert_eq!(&got, want, "{label}: metadata {k}");
        }
    }
    for k in gm.keys().filter(|k| must_match(k)) {
        assert!(mine_keys.contains(k), "{label}: missing key {k}");
    }
    // Only the key set is compared here; the whole-file sha256 below covers the order.
    mine_keys.sort();
    let mut want_keys: Vec<String> = gm.keys().cloned().collect();
    want_keys.sort();
    assert_eq!(mine_keys, want_keys, "{label}: metadata keys");
    let sha = sha256_hex(file.bytes());
    assert_eq!(
        sha,
        g["file_sha256"].as_str().unwrap(),
        "{label}: whole-file sha256"
    );
    sha
}

/// Read a file back with gguf-py (scripts/gguf_py_dump.py, `gguf` from models/.pydeps or the
/// system) and check its tensor list and data hashes against the golden. `false` (with a SKIP
/// line) when python3 or gguf is missing.
pub fn gguf_py_readback(path: &Path, g: &Json) -> bool {
    let mut pp = models().join(".pydeps").into_os_string();
    if let Some(old) = std::env::var_os("PYTHONPATH") {
        pp.push(":");
        pp.push(old);
    }
    let out = match Command::new("python3")
        .arg(root().join("scripts/gguf_py_dump.py"))
        .arg(path)
        .args(["--hash", "all"])
        .env("PYTHONPATH", pp)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIP gguf-py read-back: cannot run python3 ({e})");
            return false;
        }
    };
    if out.status.code() == Some(2) {
        eprintln!("SKIP gguf-py read-back: gguf not installed");
        return false;
    }
    assert!(
        out.status.success(),
        "gguf-py could not read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Json = serde_json::from_slice(&out.stdout).expect("dump JSON");
    let tensors = j["tensors"].as_array().expect("tensors");
    let gt = g["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), gt.len());
    for (a, b) in tensors.iter().zip(gt) {
        assert_eq!(a["name"], b["name"]);
        assert_eq!(a["type"], b["type"]);
        assert_eq!(a["shape"], b["shape"]);
        assert_eq!(
            a["sha256"], b["sha256"],
            "gguf-py sees other bytes for {}",
            a["name"]
        );
    }
    true
}

/// The `quantize` binary.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_quantize"))
}

/// `quantize IN OUT TYPE`, run to completion.
pub fn quantize(input: impl AsRef<Path>, out: impl AsRef<Path>, ty: &str) -> Output {
    bin()
        .arg(input.as_ref())
        .arg(out.as_ref())
        .arg(ty)
        .output()
        .expect("run quantize")
}

/// A run's stderr as text.
pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The run failed cleanly (an exit status, not a signal; no panic) with one line on stderr that
/// contains `needle` (besides clap's "For more information, try '--help'." after a bad flag).
pub fn fails_with(o: &Output, needle: &str) {
    let e = err(o);
    assert!(!o.status.success(), "expected failure; stderr: {e}");
    assert!(o.status.code().is_some(), "killed by a signal: {e}");
    assert!(!e.contains("panicked"), "{e}");
    let lines = e
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"));
    assert_eq!(lines.count(), 1, "one line expected: {e:?}");
    assert!(e.contains(needle), "{e:?} should mention {needle:?}");
}

/// Files in `dir` (names, sorted), to check nothing was left behind.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

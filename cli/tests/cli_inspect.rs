//! `ferrolm inspect` as a user runs it: the built binary on both real models (text and --json), on a
//! file written by the writer (no model needed), and its failures: a non-GGUF file and a missing
//! file give one `error:` line and a non-zero status; a bad flag is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferrolm::gguf::{GgufWriter, OwnedValue, TensorSpec, ValueType};
use ferrolm::kernels::GgmlType;
use serde_json::Value as Json;

#[path = "../../tests/common/mod.rs"]
mod common;

/// The ferrolm binary as a command. Under qemu-user (scripts/test-aarch64.sh runs the aarch64 test
/// binaries with QEMU_LD_PREFIX set) the kernel cannot start an aarch64 child by itself unless a
/// binfmt_misc handler is registered, so the child is started through qemu-aarch64 as well.
fn ferrolm_cmd() -> Command {
    let exe = env!("CARGO_BIN_EXE_ferrolm");
    let under_qemu = cfg!(target_arch = "aarch64") && std::env::var_os("QEMU_LD_PREFIX").is_some();
    if under_qemu && !Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists() {
        let mut c = Command::new("qemu-aarch64");
        c.arg(exe);
        c
    } else {
        Command::new(exe)
    }
}

fn ferrolm(args: &[&str]) -> Output {
    ferrolm_cmd()
        .args(args)
        .output()
        .expect("run the ferrolm binary")
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli_inspect_{}_{name}", std::process::id()))
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("UTF-8 output")
}

/// Runs `inspect FILE --json`, checks success and parses stdout.
fn inspect_json(path: &Path) -> Json {
    let out = ferrolm(&["inspect", path.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "inspect --json failed: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("--json output is not JSON: {e}"))
}

/// A failing run: non-zero status, nothing on stdout, exactly one stderr line starting `error:`.
fn assert_one_error_line(out: &Output, what: &str) -> String {
    assert!(
        !out.status.success(),
        "{what}: exit status {:?}",
        out.status
    );
    assert_eq!(out.status.code(), Some(1), "{what}: errors exit with 1");
    assert!(
        out.stdout.is_empty(),
        "{what}: stdout {:?}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: stderr should be one line, got {err:?}"
    );
    assert!(lines[0].starts_with("error: "), "{what}: {err:?}");
    lines[0].to_string()
}

struct Expect {
    file: &'static str,
    arch: &'static str,
    blocks: u64,
    vocab: u64,
    n_tensors: usize,
    types: &'static [(&'static str, u64)],
}

const SMOLLM2: Expect = Expect {
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    arch: "llama",
    blocks: 30,
    vocab: 49152,
    n_tensors: 272,
    types: &[("F32", 61), ("Q4_1", 210), ("Q8_0", 1)],
};

const QWEN: Expect = Expect {
    file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    arch: "qwen2",
    blocks: 24,
    vocab: 151936,
    n_tensors: 291,
    types: &[
        ("F32", 121),
        ("Q4_K", 12),
        ("Q5_0", 133),
        ("Q6_K", 12),
        ("Q8_0", 13),
    ],
};

fn check_model(e: &Expect) {
    let Some(path) = common::model(e.file) else {
        return;
    };
    let j = inspect_json(&path);
    assert_eq!(j["architecture"], e.arch);
    assert_eq!(j["block_count"], e.blocks);
    assert_eq!(j["n_vocab"], e.vocab);
    let types: serde_json::Map<String, Json> = e
        .types
        .iter()
        .map(|(t, n)| (t.to_string(), Json::from(*n)))
        .collect();
    assert_eq!(j["tensor_types"], Json::Object(types), "{}", e.file);
    let tensors = j["tensors"].as_array().expect("tensors array");
    assert_eq!(tensors.len(), e.n_tensors);
    assert_eq!(
        tensors.len() as u64,
        e.types.iter().map(|t| t.1).sum::<u64>()
    );
    let md = &j["metadata"];
    assert_eq!(md["general.architecture"]["value"], e.arch);
    assert_eq!(md[format!("{}.block_count", e.arch)]["value"], e.blocks);
    // Long arrays are summarized, not dumped.
    assert_eq!(md["tokenizer.ggml.tokens"]["value"]["len"], e.vocab);
    assert_eq!(md["tokenizer.ggml.tokens"]["value"]["elem_type"], "STRING");
    let n_params = j["n_params"].as_u64().unwrap();
    let sum: u64 = tensors
        .iter()
        .map(|t| {
            t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .product::<u64>()
        })
        .sum();
    assert_eq!(n_params, sum);
    let bpw = j["bits_per_weight"].as_f64().unwrap();
    assert!(
        (4.0..9.0).contains(&bpw),
        "{}: {bpw} bits per weight",
        e.file
    );

    // The text form says the same.
    let out = ferrolm(&["inspect", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    let line = |label: &str| -> String {
        t.lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} line in:\n{t}"))[label.len()..]
            .trim()
            .to_string()
    };
    assert_eq!(line("architecture:"), e.arch);
    assert_eq!(line("blocks:"), e.blocks.to_string());
    assert_eq!(line("vocab:"), e.vocab.to_string());
    let want: Vec<String> = e.types.iter().map(|(t, n)| format!("{t}: {n}")).collect();
    assert_eq!(line("tensor types:"), want.join(", "));
    assert!(t.contains(&format!("tensors ({}):", e.n_tensors)), "{t}");
    assert!(t.contains("token_embd.weight"), "{t}");
}

#[test]
fn smollm2() {
    check_model(&SMOLLM2);
}

#[test]
fn qwen() {
    check_model(&QWEN);
}

/// No model needed: a writer-made file, inspected as JSON, shows its metadata and tensors.
#[test]
fn written_file_json() {
    let mut w = GgufWriter::new();
    w.set("general.architecture", OwnedValue::Str("llama".into()));
    w.set("llama.block_count", OwnedValue::U32(2));
    w.set("general.file_type", OwnedValue::U32(7));
    w.set(
        "tokenizer.ggml.tokens",
        OwnedValue::str_array((0..20).map(|i| format!("tok{i}"))),
    );
    w.set("t.f64", OwnedValue::F64(0.5));
    w.set(
        "t.arr",
        OwnedValue::Array(
            ValueType::I32,
            vec![OwnedValue::I32(-1), OwnedValue::I32(2)],
        ),
    );
    w.add_tensor(TensorSpec {
        name: "token_embd.weight".into(),
        ty: GgmlType::Q8_0,
        dims: vec![64, 20],
    })
    .unwrap();
    w.add_tensor(TensorSpec {
        name: "output_norm.weight".into(),
        ty: GgmlType::F32,
        dims: vec![64],
    })
    .unwrap();
    let q8 = vec![0u8; 34 * 2 * 20];
    let f32s = vec![0u8; 64 * 4];
    let path = tmp("written.gguf");
    let bytes = w.write_all(Vec::new(), &[&q8, &f32s]).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let j = inspect_json(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(j["architecture"], "llama");
    assert_eq!(j["block_count"], 2);
    assert_eq!(j["n_vocab"], 20);
    assert_eq!(j["file_type"]["name"], "MOSTLY_Q8_0");
    assert_eq!(j["n_params"], 64 * 20 + 64);
    assert_eq!(j["tensor_bytes"], q8.len() + f32s.len());
    assert_eq!(j["tensor_types"], serde_json::json!({"F32": 1, "Q8_0": 1}));
    assert_eq!(
        j["metadata"]["t.f64"],
        serde_json::json!({"type": "FLOAT64", "value": 0.5})
    );
    assert_eq!(
        j["metadata"]["t.arr"],
        serde_json::json!({"type": "ARRAY", "value": [-1, 2]})
    );
    assert_eq!(j["tensors"][0]["name"], "token_embd.weight");
    assert_eq!(j["tensors"][0]["shape"], serde_json::json!([64, 20]));
    // The second tensor starts at the first one's size rounded up to the default alignment (32).
    assert_eq!(
        j["tensors"][1]["offset"],
        (34 * 2 * 20usize).div_ceil(32) * 32
    );
}

#[test]
fn not_a_gguf_file() {
    let path = tmp("not.gguf");
    std::fs::write(&path, b"this is plain text, not a model\n").unwrap();
    let out = ferrolm(&["inspect", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    let line = assert_one_error_line(&out, "plain-text file");
    assert!(line.contains("GGUF"), "{line}");
}

#[test]
fn empty_and_truncated_files() {
    let path = tmp("empty.gguf");
    std::fs::write(&path, b"").unwrap();
    assert_one_error_line(&ferrolm(&["inspect", path.to_str().unwrap()]), "empty file");
    std::fs::write(&path, b"GGUF\x03\0\0\0\x01\0").unwrap();
    let line = assert_one_error_line(
        &ferrolm(&["inspect", path.to_str().unwrap(), "--json"]),
        "truncated header",
    );
    assert!(line.contains("truncated"), "{line}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn missing_file() {
    let path = tmp("does-not-exist.gguf");
    let line = assert_one_error_line(
        &ferrolm(&["inspect", path.to_str().unwrap()]),
        "missing file",
    );
    assert!(
        line.contains("does-not-exist.gguf"),
        "the error names the file: {line}"
    );
}

#[test]
fn directory_instead_of_file() {
    let dir = env!("CARGO_TARGET_TMPDIR");
    assert_one_error_line(&ferrolm(&["inspect", dir]), "a directory");
}

#[test]
fn bad_flags() {
    let out = ferrolm(&["inspect", "--no-such-flag", "x.gguf"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--no-such-flag"),
        "{}",
        text(&out.stderr)
    );
    let out = ferrolm(&["inspect"]);
    assert!(!out.status.success(), "inspect without a file");
    let out = ferrolm(&["no-such-subcommand"]);
    assert!(!out.status.success());
    let out = ferrolm(&["inspect", "x.gguf", "--max-array", "many"]);
    assert!(!out.status.success());
    let out = ferrolm(&["--help"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("inspect"));
}

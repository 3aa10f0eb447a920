//! The model families besides llama and qwen2, against llama.cpp: qwen3, phi3, smollm3 and gemma3
//! on small random-weight files that `ferrolm synth --shape test-ARCH --type F16` writes (F16
//! weights: only the arithmetic differs, so the logits agree to a few thousandths), whose
//! llama.cpp logits are in `tests/data/arch/` (how they were made: its README.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

#[path = "../../tests/common/mod.rs"]
mod common;

/// Largest |Δ| allowed on any of llama.cpp's top-10 logits of an F16 file, and the near-tie
/// margin within which an argmax may differ (the random files' logits sit close together).
const F16_TOL: f32 = 0.05;

fn ferrolm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferrolm"))
        .args(args)
        .output()
        .expect("run ferrolm")
}

/// `ferrolm synth --shape test-{arch}` with the SmolLM2 vocabulary, in a scratch directory;
/// `None` when the vocabulary file is not fetched.
fn synth(arch: &str, dir: &Path) -> Option<PathBuf> {
    let vocab = common::model("SmolLM2-135M-Instruct.Q4_1.gguf")?;
    let out = dir.join(format!("test-{arch}.gguf"));
    common::synth_test_arch(Path::new(env!("CARGO_BIN_EXE_ferrolm")), arch, &vocab, &out);
    Some(out)
}

fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every prompt of `tests/data/arch/test-{arch}.jsonl`: ferrolm's top logits against llama.cpp's.
fn check_family(arch: &str, extra: &[&str]) {
    check_goldens(arch, &[(&format!("test-{arch}.jsonl"), extra)]);
}

/// `synth --shape test-{arch}`, then for each `(golden, extra)`: [`compare`].
fn check_goldens(arch: &str, goldens: &[(&str, &[&str])]) {
    let dir = std::env::temp_dir().join(format!("ferrolm-families-{}-{arch}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let Some(file) = synth(arch, &dir) else {
        return;
    };
    for (golden, extra) in goldens {
        compare(&file, golden, extra);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every prompt of `tests/data/arch/{golden}`, `ferrolm eval` of `file` with `extra` arguments:
/// ferrolm's top logits against llama.cpp's.
fn compare(file: &Path, golden: &str, extra: &[&str]) {
    let tag = golden.trim_end_matches(".jsonl");
    let golden = std::fs::read_to_string(common::data(&format!("arch/{golden}"))).unwrap();
    let (mut n, mut max_d) = (0usize, 0f32);
    for line in golden.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            row["model_sha256"].as_str().unwrap(),
            sha256(&file),
            "synth no longer writes the file llama.cpp's logits were taken on"
        );
        let ids: Vec<String> = row["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect();
        let ids = ids.join(",");
        let mut args = vec![
            "eval",
            "-m",
            file.to_str().unwrap(),
            "--ids",
            &ids,
            "--top",
            "32",
            "--json",
            "-t",
            "2",
        ];
        args.extend_from_slice(extra);
        let o = ferrolm(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let ours: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let gold = row["positions"].as_array().unwrap();
        let mine = ours["positions"].as_array().unwrap();
        assert_eq!(gold.len(), mine.len());
        for (p, (g, m)) in gold.iter().zip(mine).enumerate() {
            let logit = |top: &serde_json::Value, id: u64| {
                top.as_array()
                    .unwrap()
                    .iter()
                    .find(|pair| pair[0].as_u64() == Some(id))
                    .map(|pair| pair[1].as_f64().unwrap() as f32)
            };
            for pair in g["top"].as_array().unwrap().iter().take(10) {
                let (id, want) = (pair[0].as_u64().unwrap(), pair[1].as_f64().unwrap() as f32);
                let got = logit(&m["top"], id)
                    .unwrap_or_else(|| panic!("{tag} position {p}: token {id} not in our top 32"));
                let d = (got - want).abs();
                assert!(
                    d <= F16_TOL,
                    "{tag} position {p} token {id}: ours {got}, llama.cpp {want}"
                );
                max_d = max_d.max(d);
                n += 1;
            }
            let (ga, ma) = (g["argmax"].as_u64().unwrap(), m["argmax"].as_u64().unwrap());
            if ga != ma {
                // Only a near-tie: llama.cpp's logit for our pick is within the tolerance of its best.
                let best = g["top"][0][1].as_f64().unwrap() as f32;
                let ours_in_gold = logit(&g["top"], ma).unwrap_or(f32::NEG_INFINITY);
                assert!(
                    best - ours_in_gold <= F16_TOL,
                    "{tag} position {p}: argmax {ma}, llama.cpp {ga}"
                );
            }
        }
    }
    eprintln!("{tag}: max |Δ| {max_d:.4} over {n} logits");
}

#[test]
fn qwen3_matches_llamacpp() {
    check_family("qwen3", &[]);
}

#[test]
fn phi3_matches_llamacpp() {
    check_family("phi3", &[]);
}

/// Phi-3 with LongRoPE (`rope_factors_short/long`, `rope.scaling.attn_factor`, original context
/// 256): a 256-position context takes the short factors, a 1024-position one the long factors, as
/// llama.cpp chooses them; the attention factor scales both.
#[test]
fn phi3_longrope_matches_llamacpp() {
    check_goldens(
        "phi3-longrope",
        &[
            ("test-phi3-longrope-c256.jsonl", &["-c", "256"]),
            ("test-phi3-longrope-c1024.jsonl", &["-c", "1024"]),
        ],
    );
}

#[test]
fn smollm3_matches_llamacpp() {
    check_family("smollm3", &[]);
}

/// Six layers, five of them with a 16-position sliding window: the 118-token prompt crosses it.
#[test]
fn gemma3_matches_llamacpp() {
    check_family("gemma3", &[]);
}

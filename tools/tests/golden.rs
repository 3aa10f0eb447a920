//! The converter against llama.cpp's golden outputs (tools/tests/data/convert/, copied from
//! golden/convert/): every tensor's name, type, shape and sha256, the metadata llama.cpp must
//! agree on, and the whole file.
//!
//! - synth-llama-256 (F32, 2 shards, untied, widths multiples of 256): the checkpoint to F32, F16,
//!   BF16, Q8_0 (`convert-*`) and to every quantized type (`quantize-fromF32-*`); its F16 GGUF
//!   requantized to every quantized type (`quantize-fromF16-*`).
//! - smollm2-135m (BF16, tied): the checkpoint to all eleven types (`convert-*`,
//!   `quantize-fromF16-*`), and its F16 GGUF requantized to Q4_0, Q4_K_M, Q6_K (`quantize-fromF16-*`); the real Q4_1 GGUF requantized to F16 and that to Q8_0, Q4_0, Q4_K_M
//!   (`smollm2-135m-requant/*`), written to models/SmolLM2-135M-Instruct.{F16,Q8_0,Q4_0,Q4_K_M}.gguf
//!   for the decoder's tests; converted models load and generate in ferrolm and read back in gguf-py.
//!
//! The checkpoints are built by scripts/make-hf-fixtures.sh; the tests skip with a message when
//! they cannot be.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferrolm::model::{Context, ContextParams, Logits, Model};
use ferrolm::tokenizer::Tokenizer;
use ferrolm_quantize::{quantize_file, FileType};

mod common;

const QUANTS: [&str; 7] = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K_M", "Q5_K_M", "Q6_K"];
const DIRECT: [&str; 4] = ["F32", "F16", "BF16", "Q8_0"];

fn convert(input: &Path, out: &Path, ty: &str) {
    let ft = FileType::parse(ty).unwrap();
    quantize_file(input, out, ft, true)
        .unwrap_or_else(|e| panic!("{} -> {ty}: {e}", input.display()));
}

#[test]
fn synth_llama_256_matches_llama_cpp() {
    if !common::heavy_allowed("synth_llama_256_matches_llama_cpp") {
        return;
    }
    let Some(hf) = common::hf_fixtures() else {
        return;
    };
    let ck = hf.join("synth-llama-256");
    let dir = common::scratch("synth");
    let t0 = std::time::Instant::now();
    for ty in DIRECT {
        let out = dir.join(format!("synth-{ty}.gguf"));
        convert(&ck, &out, ty);
        common::assert_matches_golden(
            &out,
            &common::golden(&format!("synth-llama-256/convert-{ty}.json")),
            &format!("synth {ty}"),
        );
        if ty != "F16" {
            std::fs::remove_file(&out).unwrap();
        }
    }
    let f16 = dir.join("synth-F16.gguf");
    for ty in QUANTS {
        let out = dir.join(format!("synth-{ty}.gguf"));
        convert(&ck, &out, ty);
        let g = common::golden(&format!("synth-llama-256/quantize-fromF32-{ty}.json"));
        common::assert_matches_golden(&out, &g, &format!("synth F32->{ty}"));
        convert(&f16, &out, ty);
        let g = common::golden(&format!("synth-llama-256/quantize-fromF16-{ty}.json"));
        common::assert_matches_golden(&out, &g, &format!("synth F16 gguf->{ty}"));
        if ty == "Q4_K_M" {
            // The random model still loads and runs.
            let ids = generate(&out, "Hello", 2);
            assert_eq!(ids.len(), 2);
        }
        std::fs::remove_file(&out).unwrap();
    }
    std::fs::remove_file(&f16).unwrap();
    eprintln!(
        "synth: 18 conversions checked in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// Greedy continuation of `prompt` (`n` tokens) with a converted model.
fn generate(path: &Path, prompt: &str, n: usize) -> Vec<u32> {
    let model = Arc::new(
        Model::load(path)
            .unwrap_or_else(|e| panic!("{}: ferrolm cannot load: {e}", path.display())),
    );
    let tok = Tokenizer::from_gguf(model.gguf()).expect("tokenizer");
    let params = ContextParams {
        n_ctx: 256,
        ..ContextParams::default()
    };
    let mut ctx = Context::new(Arc::clone(&model), params).expect("context");
    let mut ids = tok.encode(prompt, true, true);
    let mut out = Vec::new();
    for _ in 0..n {
        ctx.eval(&ids, Logits::Last).expect("eval");
        let logits = ctx.logits();
        assert!(logits.iter().all(|x| x.is_finite()), "non-finite logits");
        let best = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap() as u32;
        out.push(best);
        ids = vec![best];
    }
    out
}

fn generate_text(path: &Path, prompt: &str, n: usize) -> String {
    let ids = generate(path, prompt, n);
    let model = Model::load(path).unwrap();
    Tokenizer::from_gguf(model.gguf())
        .unwrap()
        .decode(&ids, false)
}

const PROMPT: &str =
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";

#[test]
fn smollm2_135m_matches_llama_cpp() {
    if !common::heavy_allowed("smollm2_135m_matches_llama_cpp") {
        return;
    }
    let Some(hf) = common::hf_fixtures() else {
        return;
    };
    let ck = hf.join("smollm2-135m");
    let dir = common::scratch("smollm2");
    let t0 = std::time::Instant::now();
    for ty in DIRECT.iter().chain(QUANTS.iter()) {
        let out = dir.join(format!("smollm2-{ty}.gguf"));
        convert(&ck, &out, ty);
        let rel = if DIRECT.contains(ty) {
            format!("smollm2-135m/convert-{ty}.json")
        } else {
            format!("smollm2-135m/quantize-fromF16-{ty}.json")
        };
        let g = common::golden(&rel);
        common::assert_matches_golden(&out, &g, &format!("smollm2 {ty}"));
        if *ty == "Q4_K_M" {
            common::gguf_py_readback(&out, &g);
            let text = generate_text(&out, PROMPT, 12);
            assert!(
                text.contains("Paris"),
                "SmolLM2 Q4_K_M (converted) answered {text:?}"
            );
        }
        if *ty == "BF16" {
            let text = generate_text(&out, PROMPT, 12);
            assert!(
                text.contains("Paris"),
                "SmolLM2 BF16 (converted) answered {text:?}"
            );
        }
        if *ty != "F16" {
            std::fs::remove_file(&out).unwrap();
        }
    }
    // llama.cpp's own route: the converted F16 file through llama-quantize.
    let f16 = dir.join("smollm2-F16.gguf");
    for ty in ["Q4_0", "Q4_K_M", "Q6_K"] {
        let out = dir.join(format!("smollm2-F16-{ty}.gguf"));
        convert(&f16, &out, ty);
        let g = common::golden(&format!("smollm2-135m/quantize-fromF16-{ty}.json"));
        common::assert_matches_golden(&out, &g, &format!("smollm2 F16 gguf->{ty}"));
        std::fs::remove_file(&out).unwrap();
    }
    std::fs::remove_file(&f16).unwrap();
    eprintln!(
        "smollm2: 14 conversions checked in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn smollm2_requantized_matches_llama_cpp() {
    if !common::heavy_allowed("smollm2_requantized_matches_llama_cpp") {
        return;
    }
    let q41 = common::models().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if !q41.is_file() {
        eprintln!(
            "SKIP: {} missing (run scripts/fetch-models.sh smollm2)",
            q41.display()
        );
        return;
    }
    let models = common::models();
    let f16 = models.join("SmolLM2-135M-Instruct.F16.gguf");
    let g = common::golden("smollm2-135m-requant/requant-F16.json");
    convert(&q41, &f16, "F16");
    let sha = common::assert_matches_golden(&f16, &g, "requant F16");
    assert_eq!(
        sha,
        "a269e3181fcbb25046f99f64ba8d3c159165b211c2ff4ffca7ba1bb219d2ccd0"
    );
    for ty in ["Q8_0", "Q4_0", "Q4_K_M"] {
        let out: PathBuf = models.join(format!("SmolLM2-135M-Instruct.{ty}.gguf"));
        convert(&f16, &out, ty);
        common::assert_matches_golden(
            &out,
            &common::golden(&format!("smollm2-135m-requant/requant-F16-{ty}.json")),
            &format!("requant {ty}"),
        );
    }
    let text = generate_text(&f16, PROMPT, 12);
    assert!(
        text.contains("Paris"),
        "SmolLM2 F16 (requantized) answered {text:?}"
    );
}

//! The architectures on small checkpoints made here (with SmolLM2's tokenizer files): Qwen2
//! (biases, no Q/K permutation) and Llama (Q/K rows permuted for the llama RoPE layout), converted
//! and loaded by ferrolm.

use std::path::Path;
use std::sync::Arc;

use ferrolm::gguf::Gguf;
use ferrolm::model::{Context, ContextParams, Logits, Model};
use ferrolm::tokenizer::Tokenizer;
use ferrolm_quantize::{quantize_file, FileType};

mod common;
use common::tiny;

fn with_tokenizer(ck: &Path) -> bool {
    let Some(hf) = common::hf_fixtures() else {
        return false;
    };
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        std::fs::copy(hf.join("smollm2-135m").join(f), ck.join(f)).unwrap();
    }
    true
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Load, run a short prompt, check the logits are finite.
fn runs(path: &Path) {
    let model = Arc::new(Model::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    let tok = Tokenizer::from_gguf(model.gguf()).unwrap();
    let mut ctx = Context::new(Arc::clone(&model), ContextParams::with_n_ctx(64)).unwrap();
    let ids = tok.encode("Hello, world", true, true);
    ctx.eval(&ids, Logits::Last).unwrap();
    assert!(ctx.logits().iter().all(|x| x.is_finite()));
    assert_eq!(ctx.logits().len(), tiny::TINY.vocab);
}

#[test]
fn qwen2_with_biases_converts_and_runs() {
    let d = common::scratch("qwen2");
    let ck = d.join("tiny-qwen2");
    tiny::checkpoint(&ck, "Qwen2ForCausalLM", tiny::TINY, true, true);
    if !with_tokenizer(&ck) {
        return;
    }
    let src = tiny::tensors(tiny::TINY, true, true);
    for ft in [FileType::F32, FileType::Q8_0, FileType::Q4_K_M] {
        let out = d.join(format!("tiny-qwen2-{ft}.gguf"));
        quantize_file(&ck, &out, ft, false).unwrap();
        let g = Gguf::open(&out).unwrap();
        assert_eq!(g.architecture().unwrap(), "qwen2");
        assert_eq!(g.get_u32("qwen2.block_count").unwrap(), 2);
        assert_eq!(g.get_u32("qwen2.attention.head_count_kv").unwrap(), 2);
        assert!(
            g.get("qwen2.rope.dimension_count").is_none(),
            "Qwen2Model writes no rope.dimension_count"
        );
        assert_eq!(g.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
        assert_eq!(g.get_u32("general.file_type").unwrap(), ft.id());
        let bias = g.tensor("blk.1.attn_k.bias").expect("bias kept");
        assert_eq!(bias.ty.name(), "F32");
        if ft == FileType::F32 {
            // No permutation for qwen2: the bytes are the checkpoint's.
            let (_, _, q) = src
                .iter()
                .find(|t| t.0 == "model.layers.0.self_attn.q_proj.weight")
                .unwrap();
            assert_eq!(&f32s(g.tensor("blk.0.attn_q.weight").unwrap().data), q);
            let (_, _, kb) = src
                .iter()
                .find(|t| t.0 == "model.layers.1.self_attn.k_proj.bias")
                .unwrap();
            assert_eq!(&f32s(bias.data), kb);
        }
        drop(g);
        runs(&out);
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn llama_q_and_k_rows_are_permuted() {
    let d = common::scratch("llama-permute");
    let ck = d.join("tiny-llama");
    tiny::checkpoint(&ck, "LlamaForCausalLM", tiny::TINY, false, false);
    if !with_tokenizer(&ck) {
        return;
    }
    let out = d.join("tiny-llama-F32.gguf");
    quantize_file(&ck, &out, FileType::F32, false).unwrap();
    let g = Gguf::open(&out).unwrap();
    assert!(
        g.tensor("output.weight").is_some(),
        "untied: lm_head becomes output.weight"
    );
    let src = tiny::tensors(tiny::TINY, false, false);
    let hd = tiny::TINY.hidden / tiny::TINY.heads;
    for (hf, gg, heads) in [
        (
            "model.layers.1.self_attn.q_proj.weight",
            "blk.1.attn_q.weight",
            tiny::TINY.heads,
        ),
        (
            "model.layers.1.self_attn.k_proj.weight",
            "blk.1.attn_k.weight",
            tiny::TINY.kv_heads,
        ),
    ] {
        let (_, shape, w) = src.iter().find(|t| t.0 == hf).unwrap();
        let cols = shape[1];
        let got = f32s(g.tensor(gg).unwrap().data);
        // HF row (h, j, i) -> GGUF row (h, i, j) for j in {0,1} halves of each head.
        let half = hd / 2;
        for h in 0..heads {
            for j in 0..2 {
                for i in 0..half {
                    let s = h * hd + j * half + i;
                    let o = h * hd + i * 2 + j;
                    assert_eq!(
                        &got[o * cols..(o + 1) * cols],
                        &w[s * cols..(s + 1) * cols],
                        "{gg} row {o}"
                    );
                }
            }
        }
    }
    let (_, _, v) = src
        .iter()
        .find(|t| t.0 == "model.layers.0.self_attn.v_proj.weight")
        .unwrap();
    assert_eq!(
        &f32s(g.tensor("blk.0.attn_v.weight").unwrap().data),
        v,
        "V is not permuted"
    );
    assert_eq!(
        g.get_u32("llama.rope.dimension_count").unwrap() as usize,
        hd
    );
    drop(g);
    runs(&out);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn sentencepiece_tokenizer_model() {
    let d = common::scratch("spm");
    let ck = d.join("tiny-spm");
    let words = [
        "\u{2581}h",
        "\u{2581}he",
        "ll",
        "o",
        "\u{2581}hello",
        "\u{2581}w",
        "or",
        "ld",
        "\u{2581}world",
    ];
    let vocab = 3 + 256 + words.len() + 3; // three [PAD] entries past the model's pieces
    let dims = tiny::Dims {
        vocab,
        ..tiny::TINY
    };
    tiny::checkpoint(&ck, "LlamaForCausalLM", dims, false, true);
    std::fs::write(ck.join("tokenizer.model"), tiny::spm_model(&words)).unwrap();
    std::fs::write(
        ck.join("tokenizer_config.json"),
        r#"{"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
            "chat_template": "{{ messages }}"}"#,
    )
    .unwrap();
    let out = d.join("tiny-spm-Q8_0.gguf");
    quantize_file(&ck, &out, FileType::Q8_0, false).unwrap();
    let g = Gguf::open(&out).unwrap();
    assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "llama");
    assert_eq!(g.get_str("tokenizer.ggml.pre").unwrap(), "default");
    let tokens: Vec<&str> = g
        .get_array("tokenizer.ggml.tokens")
        .unwrap()
        .strings()
        .collect();
    assert_eq!(tokens.len(), vocab);
    assert_eq!(tokens[0], "<unk>");
    assert_eq!(tokens[3], "<0x00>");
    assert_eq!(tokens[vocab - 1], format!("[PAD{}]", vocab - 1));
    let types = g
        .get_array("tokenizer.ggml.token_type")
        .unwrap()
        .to_i32_vec("t")
        .unwrap();
    assert_eq!(&types[..4], &[2, 3, 3, 6]);
    assert_eq!(types[3 + 256], 1);
    assert_eq!(types[vocab - 1], 5);
    let scores = g
        .get_array("tokenizer.ggml.scores")
        .unwrap()
        .to_f32_vec("s")
        .unwrap();
    assert_eq!(scores[3 + 256 + 1], -2.0);
    assert_eq!(scores[vocab - 1], -10000.0);
    assert_eq!(g.get_u32("tokenizer.ggml.bos_token_id").unwrap(), 1);
    assert_eq!(g.get_u32("tokenizer.ggml.eos_token_id").unwrap(), 2);
    assert!(g.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert_eq!(
        g.get_str("tokenizer.chat_template").unwrap(),
        "{{ messages }}"
    );
    let tok = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!(
        tok.encode("hello world", true, false),
        // Pieces merge by score: ▁h+e, l+l, then nothing longer is in the vocabulary.
        vec![1, 260, 261, 262, 264, 265, 266]
    );
    drop(g);
    let model = Arc::new(Model::load(&out).unwrap());
    let mut ctx = Context::new(Arc::clone(&model), ContextParams::with_n_ctx(32)).unwrap();
    ctx.eval(&[1, 263, 267], Logits::Last).unwrap();
    assert!(ctx.logits().iter().all(|x| x.is_finite()));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn llama3_rope_scaling_writes_rope_freqs() {
    let d = common::scratch("llama3-rope");
    let ck = d.join("tiny-llama3");
    tiny::checkpoint(&ck, "LlamaForCausalLM", tiny::TINY, false, true);
    if !with_tokenizer(&ck) {
        return;
    }
    let mut cfg = tiny::config("LlamaForCausalLM", tiny::TINY, true);
    cfg["rope_theta"] = 500000.0.into();
    cfg["rope_scaling"] = serde_json::json!({
        "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192, "rope_type": "llama3"
    });
    std::fs::write(ck.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    let out = d.join("tiny-llama3-F16.gguf");
    quantize_file(&ck, &out, FileType::F16, false).unwrap();
    let g = Gguf::open(&out).unwrap();
    let first = g.tensors().next().unwrap();
    assert_eq!(
        first.name, "rope_freqs.weight",
        "generated before the checkpoint's tensors"
    );
    assert_eq!(first.ty.name(), "F32");
    let f = f32s(first.data);
    assert_eq!(f.len(), 8);
    assert_eq!(f[0], 1.0);
    assert_eq!(f[7], 8.0);
    assert!(f.windows(2).all(|w| w[0] <= w[1]), "{f:?}");
    assert!(
        f.iter().any(|&x| x > 1.0 && x < 8.0),
        "a smoothed factor in between: {f:?}"
    );
    assert!(g.get("llama.rope.scaling.type").is_none());
    drop(g);
    runs(&out);
    // Quantized: rope_freqs sorts among the non-block tensors and stays F32.
    let out = d.join("tiny-llama3-Q8_0.gguf");
    quantize_file(&ck, &out, FileType::Q4_0, false).unwrap();
    let g = Gguf::open(&out).unwrap();
    let names: Vec<&str> = g.tensors().take(3).map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "output_norm.weight",
            "rope_freqs.weight",
            "token_embd.weight"
        ]
    );
    assert_eq!(g.tensor("rope_freqs.weight").unwrap().ty.name(), "F32");
    let _ = std::fs::remove_dir_all(&d);
}

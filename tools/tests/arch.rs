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
    let mut ctx = Context::new(
        Arc::clone(&model),
        ContextParams {
            n_ctx: 64,
            ..Default::default()
        },
    )
    .unwrap();
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
}

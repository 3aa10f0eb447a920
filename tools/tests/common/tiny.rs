//! Tiny checkpoints and GGUF files written by the tests themselves.
#![allow(dead_code)]

use std::path::Path;

use ferrolm::gguf::{GgufWriter, OwnedValue, TensorSpec};
use ferrolm::kernels::GgmlType;
use serde_json::{json, Value as Json};

/// Write a safetensors file: `tensors` are (name, shape, f32 values), stored as F32, laid out in
/// name order with the header padded to 8 bytes as the reference writer does.
pub fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let mut sorted: Vec<&(String, Vec<usize>, Vec<f32>)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header = serde_json::Map::new();
    let mut off = 0usize;
    for (name, shape, data) in &sorted {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "{name}");
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [off, off + 4 * data.len()]}),
        );
        off += 4 * data.len();
    }
    let mut hb = serde_json::to_vec(&Json::Object(header)).unwrap();
    while !hb.len().is_multiple_of(8) {
        hb.push(b' ');
    }
    let mut out = (hb.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&hb);
    for (_, _, data) in &sorted {
        for v in data.iter() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(path, out).unwrap();
}

/// Deterministic pseudo-random values in about [-0.1, 0.1).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut g = ferrolm_kernels::testing::Lcg(seed);
    g.unit();
    (0..n).map(|_| (g.unit() - 0.5) * 0.2).collect()
}

/// Shape of a tiny model.
#[derive(Clone, Copy)]
pub struct Dims {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    pub vocab: usize,
}

pub const TINY: Dims = Dims {
    hidden: 64,
    layers: 2,
    heads: 4,
    kv_heads: 2,
    ffn: 128,
    vocab: 49152,
};

/// The tensors of a Llama/Qwen2 checkpoint (`biases`: Qwen2's q/k/v biases; `tied`: no lm_head).
pub fn tensors(d: Dims, biases: bool, tied: bool) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let hd = d.hidden / d.heads;
    let (q, kv) = (d.heads * hd, d.kv_heads * hd);
    let mut t = Vec::new();
    let mut seed = 1;
    let mut add = |name: String, shape: Vec<usize>| {
        seed += 1;
        let n = shape.iter().product();
        let v = if name.contains("norm") {
            vec![1.0; n]
        } else {
            values(n, seed)
        };
        t.push((name, shape, v));
    };
    add("model.embed_tokens.weight".into(), vec![d.vocab, d.hidden]);
    add("model.norm.weight".into(), vec![d.hidden]);
    if !tied {
        add("lm_head.weight".into(), vec![d.vocab, d.hidden]);
    }
    for l in 0..d.layers {
        let p = format!("model.layers.{l}.");
        add(format!("{p}input_layernorm.weight"), vec![d.hidden]);
        add(
            format!("{p}post_attention_layernorm.weight"),
            vec![d.hidden],
        );
        add(format!("{p}self_attn.q_proj.weight"), vec![q, d.hidden]);
        add(format!("{p}self_attn.k_proj.weight"), vec![kv, d.hidden]);
        add(format!("{p}self_attn.v_proj.weight"), vec![kv, d.hidden]);
        add(format!("{p}self_attn.o_proj.weight"), vec![d.hidden, q]);
        if biases {
            add(format!("{p}self_attn.q_proj.bias"), vec![q]);
            add(format!("{p}self_attn.k_proj.bias"), vec![kv]);
            add(format!("{p}self_attn.v_proj.bias"), vec![kv]);
        }
        add(format!("{p}mlp.gate_proj.weight"), vec![d.ffn, d.hidden]);
        add(format!("{p}mlp.up_proj.weight"), vec![d.ffn, d.hidden]);
        add(format!("{p}mlp.down_proj.weight"), vec![d.hidden, d.ffn]);
    }
    t
}

pub fn config(arch: &str, d: Dims, tied: bool) -> Json {
    json!({
        "architectures": [arch],
        "hidden_size": d.hidden,
        "intermediate_size": d.ffn,
        "max_position_embeddings": 512,
        "num_attention_heads": d.heads,
        "num_hidden_layers": d.layers,
        "num_key_value_heads": d.kv_heads,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": tied,
        "torch_dtype": "float32",
        "vocab_size": d.vocab,
        "bos_token_id": 1,
        "eos_token_id": 2
    })
}

/// A checkpoint directory with config.json and model.safetensors (no tokenizer files).
pub fn checkpoint(dir: &Path, arch: &str, d: Dims, biases: bool, tied: bool) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&config(arch, d, tied)).unwrap(),
    )
    .unwrap();
    write_safetensors(&dir.join("model.safetensors"), &tensors(d, biases, tied));
}

/// A small GGUF (no tokenizer, three llama-named tensors), for requantization and output-path
/// tests. Not a whole model, so its architecture is one ferrolm does not run: quantize then checks
/// its output with the GGUF reader alone, not by loading it as a model.
pub fn gguf(path: &Path) {
    let mut w = GgufWriter::new();
    w.set("general.architecture", OwnedValue::Str("tinytest".into()));
    w.set("tinytest.block_count", OwnedValue::U32(1));
    w.set("general.file_type", OwnedValue::U32(0));
    let specs = [
        ("token_embd.weight", vec![64u64, 32]),
        ("output_norm.weight", vec![64]),
        ("blk.0.attn_v.weight", vec![64, 64]),
    ];
    write_f32_tensors(path, w, &specs, 0);
}

/// Adds `specs` to `w` as F32 tensors of [`values`] (seeded by `seed0` plus their index) and
/// writes the file.
pub fn write_f32_tensors(path: &Path, mut w: GgufWriter, specs: &[(&str, Vec<u64>)], seed0: u64) {
    let mut data = Vec::new();
    for (i, (name, dims)) in specs.iter().enumerate() {
        w.add_tensor(TensorSpec {
            name: name.to_string(),
            ty: GgmlType::F32,
            dims: dims.clone(),
        })
        .unwrap();
        let n: u64 = dims.iter().product();
        data.push(
            values(n as usize, seed0 + i as u64)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
    }
    let refs: Vec<&[u8]> = data.iter().map(|d| d.as_slice()).collect();
    std::fs::write(path, w.write_all(Vec::new(), &refs).unwrap()).unwrap();
}

/// A sentencepiece `tokenizer.model` (ModelProto) with `<unk>`, `<s>`, `</s>`, the 256 byte
/// pieces and `words` (scored by position), serialized by hand.
pub fn spm_model(words: &[&str]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn piece(text: &str, score: f32, ty: u64) -> Vec<u8> {
        let mut p = vec![0x0a];
        varint(&mut p, text.len() as u64);
        p.extend_from_slice(text.as_bytes());
        p.push(0x15);
        p.extend_from_slice(&score.to_le_bytes());
        p.push(0x18);
        varint(&mut p, ty);
        p
    }
    let mut pieces = vec![
        piece("<unk>", 0.0, 2),
        piece("<s>", 0.0, 3),
        piece("</s>", 0.0, 3),
    ];
    for b in 0..256 {
        pieces.push(piece(&format!("<0x{b:02X}>"), 0.0, 6));
    }
    for (i, w) in words.iter().enumerate() {
        pieces.push(piece(w, -(i as f32) - 1.0, 1));
    }
    let mut out = Vec::new();
    for p in pieces {
        out.push(0x0a);
        varint(&mut out, p.len() as u64);
        out.extend_from_slice(&p);
    }
    // trainer_spec { model_type: BPE }, normalizer_spec { add_dummy_prefix: true }
    out.extend_from_slice(&[0x12, 0x02, 0x18, 0x02, 0x1a, 0x02, 0x18, 0x01]);
    out
}

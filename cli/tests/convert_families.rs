//! The converter on the families besides llama and qwen2: each random-weight `synth` file is
//! turned into a Hugging Face-layout checkpoint by the inverse of llama.cpp's transformations
//! (Gemma's norm weights stored as offsets from 1, SmolLM3's Q/K rows back in rotate-half order,
//! Phi-3's fused QKV and gate+up under their HF names), converted back with `ferrolm quantize`,
//! and must come out with identical tensors, the same metadata (up to the keys listed below, which
//! llama.cpp's converter writes differently from `synth`) and identical logits.
//! Gemma 3's SentencePiece vocabulary makes the same round trip through a `tokenizer.model`
//! written from the real Gemma 3 file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferrolm::gguf::{Gguf, OwnedValue};
use serde_json::{json, Value as Json};

#[path = "../../tests/common/mod.rs"]
mod common;

fn ferrolm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferrolm"))
        .args(args)
        .output()
        .expect("run ferrolm")
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferrolm-convert-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A safetensors file: (name, shape outer-first, dtype, little-endian bytes), in this order.
fn write_safetensors(path: &Path, tensors: &[(String, Vec<u64>, &str, Vec<u8>)]) {
    let mut header = serde_json::Map::new();
    let mut off = 0usize;
    for (name, shape, dtype, bytes) in tensors {
        header.insert(
            name.clone(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [off, off + bytes.len()]}),
        );
        off += bytes.len();
    }
    let mut h = serde_json::to_vec(&Json::Object(header)).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    for (_, _, _, b) in tensors {
        out.extend_from_slice(b);
    }
    std::fs::write(path, out).unwrap();
}

/// The Hugging Face name of a GGUF tensor of `arch`.
fn hf_name(arch: &str, gguf: &str) -> String {
    match gguf {
        "token_embd.weight" => return "model.embed_tokens.weight".into(),
        "output_norm.weight" => return "model.norm.weight".into(),
        "output.weight" => return "lm_head.weight".into(),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.").unwrap();
    let (bid, tail) = rest.split_once('.').unwrap();
    let (base, suffix) = tail.rsplit_once('.').unwrap();
    let hf = match (arch, base) {
        (_, "attn_norm") => "input_layernorm",
        (_, "attn_qkv") => "self_attn.qkv_proj",
        (_, "attn_q") => "self_attn.q_proj",
        (_, "attn_k") => "self_attn.k_proj",
        (_, "attn_v") => "self_attn.v_proj",
        (_, "attn_output") => "self_attn.o_proj",
        (_, "attn_q_norm") => "self_attn.q_norm",
        (_, "attn_k_norm") => "self_attn.k_norm",
        (_, "post_attention_norm") => "post_attention_layernorm",
        (_, "post_ffw_norm") => "post_feedforward_layernorm",
        ("gemma3", "ffn_norm") => "pre_feedforward_layernorm",
        (_, "ffn_norm") => "post_attention_layernorm",
        (_, "ffn_gate") => "mlp.gate_proj",
        ("phi3", "ffn_up") => "mlp.gate_up_proj",
        (_, "ffn_up") => "mlp.up_proj",
        (_, "ffn_down") => "mlp.down_proj",
        (_, other) => panic!("no HF name for {other}"),
    };
    format!("model.layers.{bid}.{hf}.{suffix}")
}

/// Undo llama.cpp's Q/K permutation (`LlamaModel.permute`): GGUF row (h, i, j) came from HF row
/// (h, j, i) with j in {0, 1}; so HF row (h, j, i) = GGUF row (h, 2i + j).
fn unpermute(bytes: &[u8], rows: usize, heads: usize) -> Vec<u8> {
    let rb = bytes.len() / rows;
    let rph = rows / heads;
    let half = rph / 2;
    let mut out = vec![0u8; bytes.len()];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..half {
                let hf = h * rph + j * half + i;
                let gg = h * rph + 2 * i + j;
                out[hf * rb..(hf + 1) * rb].copy_from_slice(&bytes[gg * rb..(gg + 1) * rb]);
            }
        }
    }
    out
}

/// The Hugging Face checkpoint of a `synth` file of `arch`, tokenizer files from `tok_dir`.
fn checkpoint(src: &Gguf, arch: &str, dir: &Path, tok_dir: &Path) {
    let u = |k: &str| src.get_u32(&format!("{arch}.{k}")).unwrap() as u64;
    let (n_embd, n_head, n_head_kv) = (
        u("embedding_length"),
        u("attention.head_count"),
        u("attention.head_count_kv"),
    );
    let class = match arch {
        "qwen3" => "Qwen3ForCausalLM",
        "gemma3" => "Gemma3ForCausalLM",
        "phi3" => "Phi3ForCausalLM",
        "smollm3" => "SmolLM3ForCausalLM",
        _ => unreachable!(),
    };
    let mut cfg = json!({
        "architectures": [class],
        "hidden_size": n_embd,
        "intermediate_size": u("feed_forward_length"),
        "num_hidden_layers": u("block_count"),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_head_kv,
        "max_position_embeddings": u("context_length"),
        "rms_norm_eps": src.get_f32(&format!("{arch}.attention.layer_norm_rms_epsilon")).unwrap() as f64,
        "rope_theta": src.get_f32(&format!("{arch}.rope.freq_base")).unwrap() as f64,
        "vocab_size": src.get_array("tokenizer.ggml.tokens").unwrap().len(),
        "tie_word_embeddings": src.tensor("output.weight").is_none(),
        "torch_dtype": "float16",
    });
    let c = cfg.as_object_mut().unwrap();
    if let Ok(hd) = src.get_u32(&format!("{arch}.attention.key_length")) {
        c.insert("head_dim".into(), json!(hd));
    }
    match arch {
        "gemma3" => {
            c.insert(
                "sliding_window".into(),
                json!(u("attention.sliding_window")),
            );
            c.insert("rope_local_base_freq".into(), json!(10000.0));
            c.insert("query_pre_attn_scalar".into(), json!(c["head_dim"]));
        }
        "phi3" => {
            let hd = n_embd / n_head;
            let partial = u("rope.dimension_count") as f64 / hd as f64;
            c.insert("partial_rotary_factor".into(), json!(partial));
            c.insert("original_max_position_embeddings".into(), json!(4096));
        }
        "smollm3" => {
            let layers: Vec<i64> = (0..u("block_count"))
                .map(|i| ((i + 1) % 4 != 0) as i64)
                .collect();
            c.insert("no_rope_layers".into(), json!(layers));
        }
        _ => {}
    }
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&cfg).unwrap(),
    )
    .unwrap();

    let mut tensors = Vec::new();
    for t in src.tensors() {
        let shape: Vec<u64> = t.shape().iter().rev().copied().collect();
        let (dtype, mut bytes) = match t.ty.name() {
            "F32" => ("F32", t.data.to_vec()),
            "F16" => ("F16", t.data.to_vec()),
            other => panic!(
                "{}: {other}; the round trip needs an F16 synth file",
                t.name
            ),
        };
        if arch == "gemma3" && t.name.ends_with("norm.weight") {
            // Gemma3Model.modify_tensors adds 1; these weights sit near 1, where w - 1 is exact.
            bytes = bytes
                .chunks_exact(4)
                .flat_map(|b| (f32::from_le_bytes(b.try_into().unwrap()) - 1.0).to_le_bytes())
                .collect();
        }
        if arch == "smollm3" && t.name.ends_with("attn_q.weight") {
            bytes = unpermute(&bytes, shape[0] as usize, n_head as usize);
        }
        if arch == "smollm3" && t.name.ends_with("attn_k.weight") {
            bytes = unpermute(&bytes, shape[0] as usize, n_head_kv as usize);
        }
        tensors.push((hf_name(arch, t.name), shape, dtype, bytes));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    write_safetensors(&dir.join("model.safetensors"), &tensors);
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        std::fs::copy(tok_dir.join(f), dir.join(f)).unwrap();
    }
}

fn metadata(g: &Gguf) -> BTreeMap<String, OwnedValue> {
    g.metadata()
        .map(|(k, v)| (k.to_string(), v.to_owned_value()))
        .collect()
}

/// The keys where llama.cpp's converter and `synth` legitimately differ: names derived from the
/// directory; `vocab_size`, which only Llama-derived classes write; SmolLM3's `no_rope_layers`,
/// which the converter does not export (llama.cpp's smollm3 rotates all but every fourth layer,
/// as the runtime does without the key); keys the converter writes that are defaults when absent
/// (Gemma's local RoPE base, Phi-3's original context and window, SmolLM3's rope dimensions) or
/// that `synth` writes and Phi-3's converter leaves implied (head size = n_embd / n_head);
/// `add_bos_token = false` and `add_space_prefix = false`, which the source vocabulary (SmolLM2's,
/// a llama) carries from LlamaModel.set_vocab's rules (49,152-token vocabularies; the tokenizer
/// config's `add_prefix_space`), rules only Llama-derived classes apply.
fn differs_legitimately(arch: &str, key: &str) -> bool {
    key.starts_with("general.") && key != "general.architecture"
        || (key == format!("{arch}.vocab_size") && arch != "smollm3")
        || (key == "tokenizer.ggml.add_bos_token" && arch != "smollm3")
        || (key == "tokenizer.ggml.add_space_prefix" && arch != "smollm3")
        || key == "smollm3.rope.dimension_count"
        || key == "phi3.attention.key_length"
        || key == "phi3.attention.value_length"
        || key == "smollm3.no_rope_layers"
        || key == "gemma3.rope.freq_base_swa"
        || key == "phi3.rope.scaling.original_context_length"
        || key == "phi3.attention.sliding_window"
}

/// A `synth --shape test-{arch}` F16 file (SmolLM2's vocabulary) and its Hugging Face checkpoint
/// `checkpoint` writes, in a fresh scratch directory: (directory, GGUF, checkpoint). `None` (the
/// test is skipped) when the vocabulary or its tokenizer files are not fetched.
fn synth_checkpoint(arch: &str, scratch_name: &str) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let vocab = common::model("SmolLM2-135M-Instruct.Q4_1.gguf")?;
    let tok_dir = common::root().join("models/hf/smollm2-135m");
    if !tok_dir.join("tokenizer.json").exists() {
        eprintln!("skipped: run scripts/make-hf-fixtures.sh for models/hf/smollm2-135m");
        return None;
    }
    let d = scratch(scratch_name);
    let a = d.join("a.gguf");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_ferrolm"));
    common::synth_test_arch(bin, arch, &vocab, &a);
    let ck = d.join(format!("hf-{arch}"));
    std::fs::create_dir_all(&ck).unwrap();
    checkpoint(&Gguf::open(&a).unwrap(), arch, &ck, &tok_dir);
    Some((d, a, ck))
}

fn round_trip(arch: &str) {
    let Some((d, a, ck)) = synth_checkpoint(arch, arch) else {
        return;
    };
    let ga = Gguf::open(&a).unwrap();
    let b = d.join("b.gguf");
    ok(&ferrolm(&[
        "quantize",
        ck.to_str().unwrap(),
        b.to_str().unwrap(),
        "F16",
    ]));
    let gb = Gguf::open(&b).unwrap();

    // Tensors: the same names, types, shapes and bytes.
    let names = |g: &Gguf| {
        let mut v: Vec<String> = g.tensors().map(|t| t.name.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&ga), names(&gb), "{arch}: tensor names");
    for t in ga.tensors() {
        let u = gb.tensor(t.name).unwrap();
        assert_eq!((t.ty, t.shape()), (u.ty, u.shape()), "{arch}: {}", t.name);
        assert!(
            t.data == u.data,
            "{arch}: {} differs after the round trip",
            t.name
        );
    }

    // Metadata.
    let (ma, mb) = (metadata(&ga), metadata(&gb));
    for (k, v) in &ma {
        if differs_legitimately(arch, k) {
            continue;
        }
        assert_eq!(mb.get(k), Some(v), "{arch}: {k}");
    }
    for k in mb.keys() {
        assert!(
            ma.contains_key(k) || differs_legitimately(arch, k),
            "{arch}: the converter wrote {k}, which the source lacks"
        );
    }
    assert_eq!(
        gb.get_u32("general.file_type").unwrap(),
        1,
        "{arch}: MOSTLY_F16"
    );

    // And so the model: the same logits.
    let eval = |m: &Path| {
        ok(&ferrolm(&[
            "eval",
            "-m",
            m.to_str().unwrap(),
            "-p",
            "The capital of France is",
        ]))
    };
    assert_eq!(eval(&a), eval(&b), "{arch}: logits differ");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn qwen3_converts_back_to_the_same_file() {
    round_trip("qwen3");
}

#[test]
fn gemma3_converts_back_to_the_same_file() {
    round_trip("gemma3");
}

#[test]
fn phi3_converts_back_to_the_same_file() {
    round_trip("phi3");
}

#[test]
fn smollm3_converts_back_to_the_same_file() {
    round_trip("smollm3");
}

/// Protobuf: a length-delimited field.
fn pb_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    pb_varint(out, field << 3 | 2);
    pb_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn pb_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Gemma 3's vocabulary: the real file's tokens, scores and types written as the `tokenizer.model`
/// (sentencepiece ModelProto: pieces = 1 {piece = 1, score = 2, type = 3}) and the config files a
/// Hugging Face checkpoint carries, read back by the converter: the same tokenizer keys.
#[test]
fn gemma3_sentencepiece_vocabulary_round_trips() {
    let Some(path) = common::model("gemma-3-270m-q4_k_m.gguf") else {
        return;
    };
    let g = Gguf::open(&path).unwrap();
    let m = metadata(&g);
    let arr = |k: &str| match &m[k] {
        OwnedValue::Array(_, v) => v.clone(),
        other => panic!("{k}: {other:?}"),
    };
    let (tokens, scores, types) = (
        arr("tokenizer.ggml.tokens"),
        arr("tokenizer.ggml.scores"),
        arr("tokenizer.ggml.token_type"),
    );
    let mut model = Vec::new();
    let mut decoder = serde_json::Map::new();
    for (i, ((t, s), ty)) in tokens.iter().zip(&scores).zip(&types).enumerate() {
        let (OwnedValue::Str(t), OwnedValue::F32(s), OwnedValue::I32(ty)) = (t, s, ty) else {
            panic!("token {i}");
        };
        let mut piece = Vec::new();
        pb_bytes(&mut piece, 1, t.as_bytes());
        pb_varint(&mut piece, 2 << 3 | 5);
        piece.extend_from_slice(&s.to_le_bytes());
        pb_varint(&mut piece, 3 << 3);
        pb_varint(&mut piece, *ty as u64);
        pb_bytes(&mut model, 1, &piece);
        if *ty == 4 {
            // The converter reads user-defined pieces as normal ones; the tokenizer config's
            // added tokens mark them.
            decoder.insert(
                i.to_string(),
                json!({"content": t, "special": false, "lstrip": false, "rstrip": false, "normalized": false, "single_word": false}),
            );
        }
    }
    let d = scratch("gemma3-spm");
    std::fs::write(d.join("tokenizer.model"), &model).unwrap();
    let u = |k: &str| match &m[k] {
        OwnedValue::U32(v) => *v,
        other => panic!("{k}: {other:?}"),
    };
    let b = |k: &str| match &m[k] {
        OwnedValue::Bool(v) => *v,
        other => panic!("{k}: {other:?}"),
    };
    std::fs::write(
        d.join("config.json"),
        serde_json::to_vec_pretty(&json!({
            "architectures": ["Gemma3ForCausalLM"],
            "bos_token_id": u("tokenizer.ggml.bos_token_id"),
            "eos_token_id": u("tokenizer.ggml.eos_token_id"),
            "unk_token_id": u("tokenizer.ggml.unknown_token_id"),
            "pad_token_id": u("tokenizer.ggml.padding_token_id"),
        }))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(
        d.join("tokenizer_config.json"),
        serde_json::to_vec_pretty(&json!({
            "add_bos_token": b("tokenizer.ggml.add_bos_token"),
            "add_eos_token": b("tokenizer.ggml.add_eos_token"),
            "add_sep_token": b("tokenizer.ggml.add_sep_token"),
            "added_tokens_decoder": decoder,
        }))
        .unwrap(),
    )
    .unwrap();
    let kv =
        ferrolm_quantize::vocab::tokenizer_metadata(&d, tokens.len() as u64, "gemma3").unwrap();
    let got: BTreeMap<String, OwnedValue> = kv.into_iter().collect();
    let want: BTreeMap<String, OwnedValue> = m
        .into_iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, v) in &want {
        assert!(got[k] == *v, "{k} differs");
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// Phi-3 with LongRoPE (Phi-3.5/Phi-4-mini's `rope_scaling`): the factor lists become
/// `rope_factors_long/short.weight`, the first tensors, and `phi3.rope.scaling.attn_factor`
/// = sqrt(1 + ln(scale) / ln(original context)) the second key, as llama.cpp's converter writes.
#[test]
fn phi3_longrope_factors_convert() {
    let Some((d, _, ck)) = synth_checkpoint("phi3", "phi3-longrope") else {
        return;
    };
    let mut cfg: Json =
        serde_json::from_slice(&std::fs::read(ck.join("config.json")).unwrap()).unwrap();
    let half = 48 / 2; // test-phi3: 48 rotated dimensions
    let long: Vec<f64> = (0..half).map(|i| 1.0 + i as f64 * 0.5).collect();
    let short: Vec<f64> = (0..half).map(|i| 1.0 + i as f64 * 0.01).collect();
    cfg["max_position_embeddings"] = json!(131072);
    cfg["original_max_position_embeddings"] = json!(4096);
    cfg["rope_scaling"] = json!({"type": "longrope", "long_factor": long, "short_factor": short});
    std::fs::write(ck.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    let b = d.join("b.gguf");
    ok(&ferrolm(&[
        "quantize",
        ck.to_str().unwrap(),
        b.to_str().unwrap(),
        "F16",
    ]));
    let g = Gguf::open(&b).unwrap();
    let names: Vec<&str> = g.tensors().map(|t| t.name).take(2).collect();
    assert_eq!(
        names,
        ["rope_factors_long.weight", "rope_factors_short.weight"]
    );
    let f32s = |n: &str| -> Vec<f32> {
        let t = g.tensor(n).unwrap();
        assert_eq!(t.ty.name(), "F32");
        t.data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let as_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    assert_eq!(f32s("rope_factors_long.weight"), as_f32(&long));
    assert_eq!(f32s("rope_factors_short.weight"), as_f32(&short));
    let keys: Vec<&str> = g.metadata().map(|(k, _)| k).take(2).collect();
    assert_eq!(
        keys,
        ["general.architecture", "phi3.rope.scaling.attn_factor"]
    );
    let want = (1.0 + (131072.0f64 / 4096.0).ln() / 4096f64.ln()).sqrt() as f32;
    assert_eq!(g.get_f32("phi3.rope.scaling.attn_factor").unwrap(), want);
    assert_eq!(g.get_u32("phi3.context_length").unwrap(), 131072);
    assert_eq!(
        g.get_u32("phi3.rope.scaling.original_context_length")
            .unwrap(),
        4096
    );
    // And ferrolm runs the file.
    ok(&ferrolm(&[
        "eval",
        "-m",
        b.to_str().unwrap(),
        "-p",
        "Hello",
    ]));
    let _ = std::fs::remove_dir_all(&d);
}

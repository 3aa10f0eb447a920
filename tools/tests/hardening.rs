//! Issue 15's converter items, one test each (the numbers are the issue's); each fails without
//! its fix.

use std::path::{Path, PathBuf};

use ferrolm::gguf::{GgufWriter, OwnedValue};

mod common;
use common::{bin, err, fails_with, listing, quantize, tiny};

fn set_config(ck: &Path, key: &str, v: serde_json::Value) {
    let p = ck.join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    c[key] = v;
    std::fs::write(&p, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Peak resident memory of this process's waited-for children, in KiB.
fn children_maxrss_kib() -> i64 {
    // SAFETY: getrusage writes the struct it is given.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru.ru_maxrss
    }
}

// 2. Thread counts are capped as ferrolm caps them (the positional 100000 spawned 5,700
// threads that ignored SIGTERM).
#[test]
fn item02_thread_count_is_capped() {
    let d = common::scratch("hard-threads");
    let g = d.join("in.gguf");
    tiny::gguf(&g);
    let out = d.join("out.gguf");
    let o = bin()
        .arg(&g)
        .arg(&out)
        .arg("Q8_0")
        .args(["-t", "2000"])
        .output()
        .unwrap();
    fails_with(&o, "over the limit of 512");
    let o = bin()
        .arg(&g)
        .arg(&out)
        .arg("Q8_0")
        .arg("100000")
        .output()
        .unwrap();
    fails_with(&o, "over the limit of 512");
    assert_eq!(listing(&d), ["in.gguf"]);
}

// 3. A hostile count in config.json is checked against the tensors before anything is sized by
// it (num_hidden_layers = 2^40 allocated until the process aborted).
#[test]
fn item03_hostile_config_counts() {
    let d = common::scratch("hard-counts");
    let ck = d.join("ck");
    tiny::checkpoint(&ck, "LlamaForCausalLM", tiny::TINY, false, true);
    set_config(
        &ck,
        "num_hidden_layers",
        serde_json::json!(1099511627776u64),
    );
    let out = d.join("out.gguf");
    let o = quantize(&ck, &out, "F16");
    fails_with(&o, "num_hidden_layers");
    assert!(
        children_maxrss_kib() < 512 * 1024,
        "peak memory {} KiB",
        children_maxrss_kib()
    );
    set_config(&ck, "num_hidden_layers", serde_json::json!(3));
    let o = quantize(&ck, &out, "F16");
    fails_with(&o, "holds tensors for 2 layers");
    assert_eq!(listing(&d), ["ck"]);
}

// 11 (sweep). rope_scaling that is not an object, or whose factor is not a positive number, is
// refused with a message naming it (a negative factor was converted, then silently ignored).
#[test]
fn item11_rope_scaling_is_checked() {
    let d = common::scratch("hard-rope");
    let ck = d.join("ck");
    tiny::checkpoint(&ck, "LlamaForCausalLM", tiny::TINY, false, true);
    let out = d.join("out.gguf");
    for (v, needle) in [
        (
            serde_json::json!("s"),
            "rope_scaling must be an object or null",
        ),
        (
            serde_json::json!({"type": "linear", "factor": -1}),
            "rope_scaling factor -1 is not a positive number",
        ),
        (
            serde_json::json!({"type": "linear", "factor": 0.0}),
            "is not a positive number",
        ),
        (
            serde_json::json!({"type": "linear"}),
            "rope_scaling type \"linear\" has no factor",
        ),
    ] {
        set_config(&ck, "rope_scaling", v);
        let o = quantize(&ck, &out, "F16");
        fails_with(&o, needle);
        assert_eq!(listing(&d), ["ck"]);
    }
    // Null and a valid linear factor pass the config checks: this tokenizer-less checkpoint then
    // fails on the tokenizer, which is read after them.
    for v in [
        serde_json::Value::Null,
        serde_json::json!({"type": "linear", "factor": 2.0}),
    ] {
        set_config(&ck, "rope_scaling", v);
        let o = quantize(&ck, &out, "F16");
        fails_with(&o, "neither tokenizer.model nor tokenizer.json");
    }
}

// 4. --force never replaces a FIFO or a device (nor one behind a symlink).
#[test]
fn item04_force_refuses_non_regular_outputs() {
    let d = common::scratch("hard-fifo");
    let g = d.join("in.gguf");
    tiny::gguf(&g);
    let fifo = d.join("fifo");
    mkfifo(&fifo);
    let link = d.join("link.gguf");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    for target in [&fifo, &link] {
        let o = bin()
            .arg(&g)
            .arg(target)
            .arg("Q8_0")
            .arg("--force")
            .output()
            .unwrap();
        fails_with(&o, "not a regular file");
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert_eq!(listing(&d), ["fifo", "in.gguf", "link.gguf"]);
}

/// A whole one-layer llama GGUF in F32 (no tokenizer): every tensor the decoder needs, with
/// `meta` set last (it may override).
fn llama_gguf(path: &Path, meta: &[(&str, OwnedValue)], skip: &str) {
    let mut w = GgufWriter::new();
    let u = OwnedValue::U32;
    w.set("general.architecture", OwnedValue::Str("llama".into()));
    w.set("llama.block_count", u(1));
    w.set("llama.embedding_length", u(64));
    w.set("llama.feed_forward_length", u(128));
    w.set("llama.context_length", u(128));
    w.set("llama.attention.head_count", u(4));
    w.set("llama.attention.head_count_kv", u(2));
    w.set(
        "llama.attention.layer_norm_rms_epsilon",
        OwnedValue::F32(1e-5),
    );
    for (k, v) in meta {
        w.set(k, v.clone());
    }
    let specs: [(&str, Vec<u64>); 11] = [
        ("token_embd.weight", vec![64, 32]),
        ("output_norm.weight", vec![64]),
        ("blk.0.attn_norm.weight", vec![64]),
        ("blk.0.attn_q.weight", vec![64, 64]),
        ("blk.0.attn_k.weight", vec![64, 32]),
        ("blk.0.attn_v.weight", vec![64, 32]),
        ("blk.0.attn_output.weight", vec![64, 64]),
        ("blk.0.ffn_norm.weight", vec![64]),
        ("blk.0.ffn_gate.weight", vec![64, 128]),
        ("blk.0.ffn_up.weight", vec![64, 128]),
        ("blk.0.ffn_down.weight", vec![128, 64]),
    ];
    let specs: Vec<(&str, Vec<u64>)> = specs.into_iter().filter(|(n, _)| *n != skip).collect();
    tiny::write_f32_tensors(path, w, &specs, 0);
}

// 11. quantize validates the model before writing the output: files ferrolm would refuse are
// not written (missing token_embd, head count 0, rms_norm_eps -1).
#[test]
fn item11_quantize_writes_only_models_ferrolm_loads() {
    let d = common::scratch("hard-valid");
    let g = d.join("good.gguf");
    llama_gguf(&g, &[], "");
    let out = d.join("out.gguf");
    let o = quantize(&g, &out, "Q8_0");
    assert!(o.status.success(), "{}", err(&o));
    ferrolm::model::Model::load(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    let bad: Vec<(&str, PathBuf, &str)> = vec![
        ("no-embd.gguf", d.join("no-embd.gguf"), "token_embd.weight"),
        ("heads0.gguf", d.join("heads0.gguf"), "head_count"),
        ("eps.gguf", d.join("eps.gguf"), "layer_norm_rms_epsilon"),
    ];
    llama_gguf(&bad[0].1, &[], "token_embd.weight");
    llama_gguf(
        &bad[1].1,
        &[("llama.attention.head_count", OwnedValue::U32(0))],
        "",
    );
    llama_gguf(
        &bad[2].1,
        &[(
            "llama.attention.layer_norm_rms_epsilon",
            OwnedValue::F32(-1.0),
        )],
        "",
    );
    for (_, input, needle) in &bad {
        let o = quantize(input, &out, "Q8_0");
        fails_with(&o, "would not load");
        fails_with(&o, needle);
        assert!(!out.exists());
    }
    // The same from a checkpoint: caught in config.json, before anything is written.
    let ck = d.join("ck");
    tiny::checkpoint(&ck, "LlamaForCausalLM", tiny::TINY, false, true);
    set_config(&ck, "rms_norm_eps", serde_json::json!(-1));
    let o = quantize(&ck, &out, "F16");
    fails_with(&o, "rms_norm_eps");
    set_config(&ck, "rms_norm_eps", serde_json::json!(1e-6));
    set_config(&ck, "num_attention_heads", serde_json::json!(0));
    let o = quantize(&ck, &out, "F16");
    fails_with(&o, "num_attention_heads");
    let mut names = listing(&d);
    names.retain(|n| n != "ck");
    assert_eq!(
        names,
        ["eps.gguf", "good.gguf", "heads0.gguf", "no-embd.gguf"]
    );
}

// 21. One line on success whatever stderr is; requantizing needs --allow-requantize.
#[test]
fn item21_success_line_and_requantize_flag() {
    let d = common::scratch("hard-requant");
    let g = d.join("in.gguf");
    llama_gguf(&g, &[], "");
    let q8 = d.join("q8.gguf");
    let o = quantize(&g, &q8, "Q8_0");
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        err(&o).starts_with("quantize: wrote ") && err(&o).contains("Q8_0"),
        "{}",
        err(&o)
    );
    let q4 = d.join("q4.gguf");
    let o = quantize(&q8, &q4, "Q4_0");
    fails_with(&o, "--allow-requantize");
    assert!(!q4.exists());
    let o = bin()
        .arg(&q8)
        .arg(&q4)
        .arg("Q4_0")
        .arg("--allow-requantize")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(listing(&d), ["in.gguf", "q4.gguf", "q8.gguf"]);
}

// 9 (for the converter; found by the re-run sweep). Inputs that are not regular files — the
// input itself, config.json, a shard listed in model.safetensors.index.json — are named as such
// at once: a FIFO shard blocked the converter forever, /dev/zero was "no such file".
#[test]
fn item09_non_regular_inputs() {
    let d = common::scratch("hard-inputs");
    let out = d.join("out.gguf");
    let fifo = d.join("fifo");
    mkfifo(&fifo);
    for input in [fifo.as_path(), Path::new("/dev/zero")] {
        let o = quantize(input, &out, "Q8_0");
        fails_with(&o, "is not a regular file");
    }
    let ck = d.join("ck");
    tiny::checkpoint(&ck, "LlamaForCausalLM", tiny::TINY, false, true);
    // A shard that is a FIFO, named by the index.
    let index =
        serde_json::json!({"weight_map": {"model.embed_tokens.weight": "shard.safetensors"}});
    std::fs::write(
        ck.join("model.safetensors.index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    mkfifo(&ck.join("shard.safetensors"));
    let t0 = std::time::Instant::now();
    let o = quantize(&ck, &out, "F16");
    fails_with(&o, "shard.safetensors: is not a regular file");
    assert!(t0.elapsed().as_secs() < 60, "took {:?}", t0.elapsed());
    // config.json a FIFO: not "no config.json".
    std::fs::remove_file(ck.join("config.json")).unwrap();
    mkfifo(&ck.join("config.json"));
    let o = quantize(&ck, &out, "F16");
    fails_with(&o, "config.json: is not a regular file");
    assert!(!out.exists());
}

//! ferrolm-quantize: Hugging Face safetensors checkpoints and GGUF files to GGUF, byte for byte as
//! llama.cpp's `convert_hf_to_gguf.py` + `llama-quantize` make them.
//!
//! - [`prepare`] opens the input (a checkpoint directory or a GGUF file), builds the metadata and
//!   the plan: every tensor's name, shape, source type and output type ([`Plan`]).
//! - [`Job::write`] streams the tensors: each one is read from the memory map, converted on all
//!   threads, written, and its input pages released, so memory holds a few tensors, not the model.
//!   The output goes to a temporary file renamed at the end.
//!
//! A checkpoint converted to F32/F16/BF16/Q8_0 is laid out as `convert_hf_to_gguf.py --outtype`
//! writes it. The other types are quantized straight from the checkpoint's own dtype, laid out as
//! `llama-quantize` writes them from a converted file (tensor order, `general.file_type` last):
//! a BF16 checkpoint gives what llama.cpp gives through an F16 file, an F32 one what it gives
//! through an F32 file. A GGUF input is requantized as `llama-quantize --allow-requantize` does:
//! every tensor dequantized to f32 by ggml's dequantizer, then quantized; all metadata kept.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cli;
pub mod error;
pub mod ftype;
pub mod hf;
pub mod naming;
pub mod source;
pub mod vocab;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ferrolm::gguf::{Gguf, GgufWriter, OwnedValue, TensorSpec};
use ferrolm_kernels::scalar::float::{f32_to_bf16, f32_to_f16};
use ferrolm_kernels::{dispatch, GgmlType};
use memmap2::Mmap;
use rayon::prelude::*;

pub use error::QuantizeError;
pub use ftype::FileType;
use ftype::{convert_type, quantize_order, FtypeError, TypeChooser};
use source::{Elem, SrcTensor};

/// `general.quantization_version` (GGML_QNT_VERSION).
pub const QUANTIZATION_VERSION: u32 = 2;

/// What the input was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    Checkpoint,
    Gguf,
}

/// One tensor of the plan.
#[derive(Clone, Debug)]
pub struct PlanEntry {
    pub name: String,
    /// ne0 first.
    pub dims: Vec<u64>,
    /// The source's type (F32/F16/BF16 for a checkpoint).
    pub src: GgmlType,
    pub dst: GgmlType,
    /// The first choice did not fit the row length (llama-quantize's "fallback quantization").
    pub fallback: bool,
    /// Output bytes.
    pub n_bytes: u64,
    /// Source bytes.
    pub src_bytes: u64,
}

/// Everything the output will hold, before any tensor is converted.
#[derive(Clone, Debug)]
pub struct Plan {
    pub input: PathBuf,
    pub kind: InputKind,
    pub ftype: FileType,
    pub arch: String,
    pub metadata: Vec<(String, OwnedValue)>,
    pub tensors: Vec<PlanEntry>,
}

impl Plan {
    pub fn n_fallback(&self) -> usize {
        self.tensors.iter().filter(|t| t.fallback).count()
    }

    pub fn src_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.src_bytes).sum()
    }

    pub fn out_tensor_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_bytes).sum()
    }
}

/// Progress, reported after each slice of rows written.
#[derive(Clone, Copy, Debug)]
pub struct Progress<'a> {
    /// Tensors completely written.
    pub done: usize,
    pub total: usize,
    pub name: &'a str,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// A prepared conversion: the plan and the maps the tensors are read from.
pub struct Job {
    plan: Plan,
    maps: Vec<Mmap>,
    tensors: Vec<SrcTensor>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("input", &self.plan.input)
            .field("ftype", &self.plan.ftype)
            .field("tensors", &self.plan.tensors.len())
            .field("maps", &self.maps.len())
            .finish()
    }
}

/// Open `input` (a checkpoint directory or a GGUF file) and plan its conversion to `ftype`.
pub fn prepare(input: &Path, ftype: FileType) -> Result<Job, QuantizeError> {
    // A FIFO, a device or a socket is named as such, not "no such file" (and never read).
    if std::fs::metadata(input).is_ok_and(|m| m.is_dir()) {
        return prepare_checkpoint(input, ftype);
    }
    let f = hf::open_input(input)?;
    let mut magic = [0u8; 4];
    use std::io::Read;
    let n = (&f)
        .read(&mut magic)
        .map_err(|e| QuantizeError::io(input, e))?;
    drop(f);
    if n == 4 && &magic == b"GGUF" {
        prepare_gguf(input, ftype)
    } else {
        Err(QuantizeError::UnknownInput(input.to_path_buf()))
    }
}

fn str_kv(k: &str, v: &str) -> (String, OwnedValue) {
    (k.to_string(), OwnedValue::Str(v.to_string()))
}

fn u32_kv(k: &str, v: u64) -> (String, OwnedValue) {
    (
        k.to_string(),
        OwnedValue::U32(v.min(u32::MAX as u64) as u32),
    )
}

/// Move `general.quantization_version` and `general.file_type` to the end, as llama-quantize's
/// `gguf_set_val_u32` (remove, then append) leaves them.
fn finish_quantized_metadata(meta: &mut Vec<(String, OwnedValue)>, ftype: FileType) {
    meta.retain(|(k, _)| k != "general.quantization_version" && k != "general.file_type");
    meta.push(u32_kv(
        "general.quantization_version",
        QUANTIZATION_VERSION as u64,
    ));
    meta.push(u32_kv("general.file_type", ftype.id() as u64));
}

fn prepare_checkpoint(dir: &Path, ftype: FileType) -> Result<Job, QuantizeError> {
    let ck = hf::Checkpoint::open(dir)?;
    let cfg = &ck.config;
    let arch = cfg.arch.name();
    let cfg_path = dir.join("config.json");
    let scaling = match cfg.raw.get("rope_scaling") {
        None | Some(serde_json::Value::Null) => None,
        Some(s) if s.is_object() => Some(s),
        Some(s) => {
            return Err(QuantizeError::bad_config(
                &cfg_path,
                format!("rope_scaling must be an object or null, not {s}"),
            ))
        }
    };
    let scaling_kind = scaling
        .and_then(|s| s.get("rope_type").or_else(|| s.get("type")))
        .and_then(|t| t.as_str())
        .unwrap_or("");
    // A scaling factor, where one is given, stretches positions: it must be finite and positive.
    let factor = match scaling.and_then(|s| s.get("factor")) {
        None | Some(serde_json::Value::Null) => None,
        Some(f) => match f.as_f64() {
            Some(v) if v.is_finite() && v > 0.0 && (v as f32).is_finite() => Some(v),
            _ => {
                return Err(QuantizeError::bad_config(
                    &cfg_path,
                    format!("rope_scaling factor {f} is not a positive number"),
                ))
            }
        },
    };
    if matches!(scaling_kind, "linear" | "yarn") && factor.is_none() {
        return Err(QuantizeError::bad_config(
            &cfg_path,
            format!("rope_scaling type {scaling_kind:?} has no factor"),
        ));
    }
    let tokenizer = vocab::tokenizer_metadata(dir, ck.vocab_size(), arch)?;

    // general.*
    // Llama 3 rope scaling is carried by a generated `rope_freqs.weight` tensor.
    let rope_factors = match cfg.raw.get("rope_scaling") {
        Some(sc) if cfg.arch == hf::Arch::Llama && rope_type(sc) == "llama3" => Some(
            llama3_rope_factors(cfg, sc).map_err(|w| QuantizeError::bad_config(&cfg_path, w))?,
        ),
        _ => None,
    };
    let n_params: u64 = ck.tensors.iter().map(|t| t.n_elements()).sum::<u64>()
        + rope_factors.as_ref().map_or(0, |f| f.len() as u64);
    let dir_name = std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let names = naming::model_name(&dir_name, n_params);
    let mut meta = vec![
        str_kv("general.architecture", arch),
        str_kv("general.type", "model"),
    ];
    for (k, v) in [
        ("general.name", &names.name),
        ("general.version", &names.version),
        ("general.finetune", &names.finetune),
        ("general.basename", &names.basename),
        ("general.size_label", &names.size_label),
    ] {
        if let Some(v) = v {
            meta.push(str_kv(k, v));
        }
    }

    let convert_ftype = if ftype.is_direct_convert() {
        ftype
    } else {
        FileType::F16
    };
    // Tensors the architecture generates (generate_extra_tensors), written before the
    // checkpoint's: Llama 3's rope_freqs, Phi-3's LongRoPE factors.
    let extra_tensors: Vec<(String, Vec<f32>)> = match cfg.arch {
        hf::Arch::Llama | hf::Arch::Qwen2 => {
            classic_params(&mut meta, &ck, convert_ftype, scaling, scaling_kind, factor)?;
            rope_factors
                .map(|f| vec![("rope_freqs.weight".to_string(), f)])
                .unwrap_or_default()
        }
        _ => family_params(&mut meta, &ck, convert_ftype, scaling, scaling_kind, factor)?,
    };
    meta.extend(tokenizer);
    meta.push(u32_kv(
        "general.quantization_version",
        QUANTIZATION_VERSION as u64,
    ));

    let mut tensors = ck.tensors;
    let mut maps: Vec<Mmap> = ck.shards.into_iter().map(|s| s.map).collect();
    for (i, (name, values)) in extra_tensors.iter().enumerate() {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut anon =
            memmap2::MmapMut::map_anon(bytes.len()).map_err(|e| QuantizeError::io(dir, e))?;
        anon.copy_from_slice(&bytes);
        let map = anon
            .make_read_only()
            .map_err(|e| QuantizeError::io(dir, e))?;
        tensors.insert(
            i,
            SrcTensor {
                name: name.clone(),
                hf_name: None,
                dims: vec![values.len() as u64],
                elem: Elem::F32,
                map: maps.len(),
                start: 0,
                len: bytes.len(),
                permute: None,
                add_one: false,
            },
        );
        maps.push(map);
    }
    let mut entries = Vec::with_capacity(tensors.len());
    if ftype.is_direct_convert() {
        for t in &tensors {
            entries.push(entry(t, convert_type(ftype, &t.name, &t.dims), false)?);
        }
    } else {
        finish_quantized_metadata(&mut meta, ftype);
        tensors.sort_by(|x, y| quantize_order(&x.name, &y.name));
        let mut chooser = TypeChooser::new(
            ftype,
            tensors.iter().map(|t| t.name.as_str()),
            cfg.n_layer as usize,
        );
        for t in &tensors {
            let e = match chooser.choose(&t.name, &t.dims)? {
                Some(c) => entry(t, c.ty, c.fallback)?,
                // Kept as the intermediate file holds it.
                None if t.elem == Elem::F32 => entry(t, GgmlType::F32, false)?,
                None => entry(t, convert_type(FileType::F16, &t.name, &t.dims), false)?,
            };
            entries.push(e);
        }
    }
    let plan = Plan {
        input: dir.to_path_buf(),
        kind: InputKind::Checkpoint,
        ftype,
        arch: arch.to_string(),
        metadata: meta,
        tensors: entries,
    };
    Ok(Job {
        plan,
        maps,
        tensors,
    })
}

/// TextModel.set_gguf_parameters' keys, in its order, each where config.json (with the class
/// defaults) has it: the counts, then `rope_scaling` (already as keys), the base frequency and
/// the sliding layers' one (`swa_base`), the norm epsilon, the head size, `general.file_type`.
fn text_model_keys(
    meta: &mut Vec<(String, OwnedValue)>,
    cfg: &hf::HfConfig,
    convert_ftype: FileType,
    rope_scaling: Vec<(String, OwnedValue)>,
    swa_base: Option<f64>,
) {
    let arch = cfg.arch.name();
    let a = |k: &str| format!("{arch}.{k}");
    meta.push(u32_kv(&a("block_count"), cfg.n_layer));
    if let Some(c) = cfg.n_ctx {
        meta.push(u32_kv(&a("context_length"), c));
    }
    meta.push(u32_kv(&a("embedding_length"), cfg.n_embd));
    meta.push(u32_kv(&a("feed_forward_length"), cfg.n_ff));
    meta.push(u32_kv(&a("attention.head_count"), cfg.n_head));
    if let Some(kv) = cfg.n_head_kv {
        meta.push(u32_kv(&a("attention.head_count_kv"), kv));
    }
    meta.extend(rope_scaling);
    if let Some(t) = cfg.rope_theta {
        meta.push((a("rope.freq_base"), OwnedValue::F32(t as f32)));
    }
    if let Some(t) = swa_base {
        meta.push((a("rope.freq_base_swa"), OwnedValue::F32(t as f32)));
    }
    if let Some(e) = cfg.rms_eps {
        meta.push((
            a("attention.layer_norm_rms_epsilon"),
            OwnedValue::F32(e as f32),
        ));
    }
    if let Some(hd) = cfg.head_dim {
        meta.push(u32_kv(&a("attention.key_length"), hd));
        meta.push(u32_kv(&a("attention.value_length"), hd));
    }
    meta.push(u32_kv("general.file_type", convert_ftype.id() as u64));
}

/// `{arch}.*` for llama and qwen2 as the reference converter wrote them: TextModel's keys, then the
/// architecture's own.
fn classic_params(
    meta: &mut Vec<(String, OwnedValue)>,
    ck: &hf::Checkpoint,
    convert_ftype: FileType,
    scaling: Option<&serde_json::Value>,
    scaling_kind: &str,
    factor: Option<f64>,
) -> Result<(), QuantizeError> {
    let cfg = &ck.config;
    let arch = cfg.arch.name();
    let cfg_path = ck.dir.join("config.json");
    // {arch}.* as TextModel.set_gguf_parameters, then the architecture's own keys.
    let a = |k: &str| format!("{arch}.{k}");
    text_model_keys(meta, cfg, convert_ftype, Vec::new(), None);
    match cfg.arch {
        hf::Arch::Llama => {
            meta.push(u32_kv(&a("vocab_size"), ck.vocab_size()));
            meta.push(u32_kv(&a("rope.dimension_count"), cfg.head_dim()));
            match (scaling_kind, factor) {
                ("linear", Some(f)) => {
                    meta.push(str_kv(&a("rope.scaling.type"), "linear"));
                    meta.push((a("rope.scaling.factor"), OwnedValue::F32(f as f32)));
                }
                ("", _) | ("llama3", _) | ("default", _) => {}
                (other, _) => {
                    return Err(QuantizeError::bad_config(
                        &cfg_path,
                        format!("rope_scaling type {other:?} is not supported"),
                    ));
                }
            }
        }
        hf::Arch::Qwen2 => match (scaling_kind, factor) {
            ("yarn", Some(f)) => {
                meta.push(str_kv(&a("rope.scaling.type"), "yarn"));
                meta.push((a("rope.scaling.factor"), OwnedValue::F32(f as f32)));
                let orig = scaling
                    .and_then(|s| s.get("original_max_position_embeddings"))
                    .and_then(|v| v.as_u64());
                if let Some(o) = orig {
                    meta.push(u32_kv(&a("rope.scaling.original_context_length"), o));
                }
            }
            ("", _) | ("default", _) => {}
            (other, _) => {
                return Err(QuantizeError::bad_config(
                    &cfg_path,
                    format!("rope_scaling type {other:?} is not supported"),
                ));
            }
        },
        _ => unreachable!("classic_params is for llama and qwen2"),
    }
    Ok(())
}

/// `{arch}.*` for qwen3, gemma3, phi3 and smollm3 in the order llama.cpp's converter writes them
/// (TextModel.set_gguf_parameters and each model's override; a key written twice keeps its first
/// place). Returns the extra tensors the architecture generates (Phi-3's LongRoPE factors), to be
/// written first.
fn family_params(
    meta: &mut Vec<(String, OwnedValue)>,
    ck: &hf::Checkpoint,
    convert_ftype: FileType,
    scaling: Option<&serde_json::Value>,
    scaling_kind: &str,
    factor: Option<f64>,
) -> Result<Vec<(String, Vec<f32>)>, QuantizeError> {
    use hf::Arch;
    let cfg = &ck.config;
    let arch = cfg.arch;
    let name = arch.name();
    let cfg_path = ck.dir.join("config.json");
    let raw = &cfg.raw;
    let a = |k: &str| format!("{name}.{k}");
    let get_f64 = |k: &str| raw.get(k).and_then(|v| v.as_f64());
    let bad = |what: String| QuantizeError::bad_config(&cfg_path, what);
    let mut extra = Vec::new();

    if arch == Arch::Phi3 {
        let max_pos = cfg
            .n_ctx
            .ok_or_else(|| bad("\"max_position_embeddings\" is missing".into()))?;
        let orig = scaling
            .and_then(|s| s.get("original_max_position_embeddings"))
            .or_else(|| raw.get("original_max_position_embeddings"))
            .and_then(|v| v.as_u64())
            .filter(|&o| o > 0)
            .ok_or_else(|| bad("\"original_max_position_embeddings\" is missing".into()))?;
        let partial = get_f64("partial_rotary_factor").unwrap_or(1.0);
        let rope_dims = ((partial * cfg.n_embd as f64) as u64) / cfg.n_head;
        // LongRoPE: per-dimension factor tensors and an attention factor (generate_extra_tensors).
        if let Some(long) = scaling
            .and_then(|s| s.get("long_factor"))
            .filter(|l| !l.is_null())
        {
            let short = scaling.and_then(|s| s.get("short_factor"));
            let list =
                |v: Option<&serde_json::Value>, k: &str| -> Result<Vec<f32>, QuantizeError> {
                    let arr = v
                        .and_then(|v| v.as_array())
                        .ok_or_else(|| bad(format!("rope_scaling.{k} is not a list of numbers")))?;
                    let out: Option<Vec<f32>> =
                        arr.iter().map(|x| x.as_f64().map(|f| f as f32)).collect();
                    let out = out
                        .ok_or_else(|| bad(format!("rope_scaling.{k} is not a list of numbers")))?;
                    if out.len() as u64 != rope_dims / 2 {
                        return Err(bad(format!(
                            "rope_scaling.{k} has {} entries, expected rope dimensions / 2 = {}",
                            out.len(),
                            rope_dims / 2
                        )));
                    }
                    Ok(out)
                };
            let long = list(Some(long), "long_factor")?;
            let short = list(short, "short_factor")?;
            let scale = max_pos as f64 / orig as f64;
            let attn = match scaling_kind.to_ascii_lowercase().as_str() {
                "su" | "longrope" if scale > 1.0 => (1.0 + scale.ln() / (orig as f64).ln()).sqrt(),
                "yarn" if scale > 1.0 => 0.1 * scale.ln() + 1.0,
                "su" | "longrope" | "yarn" => 1.0,
                other => {
                    return Err(bad(format!(
                        "rope_scaling type {other:?} with long_factor is not supported (su, longrope, yarn)"
                    )))
                }
            };
            // Written while the tensors are prepared: right after general.architecture.
            meta.insert(
                1,
                (a("rope.scaling.attn_factor"), OwnedValue::F32(attn as f32)),
            );
            extra.push(("rope_factors_long.weight".to_string(), long));
            extra.push(("rope_factors_short.weight".to_string(), short));
        }
        meta.push(u32_kv(&a("context_length"), max_pos));
        meta.push(u32_kv(&a("rope.scaling.original_context_length"), orig));
        meta.push(u32_kv(&a("embedding_length"), cfg.n_embd));
        meta.push(u32_kv(&a("feed_forward_length"), cfg.n_ff));
        meta.push(u32_kv(&a("block_count"), cfg.n_layer));
        meta.push(u32_kv(&a("attention.head_count"), cfg.n_head));
        meta.push(u32_kv(&a("attention.head_count_kv"), cfg.kv_heads()));
        let eps = cfg
            .rms_eps
            .ok_or_else(|| bad("\"rms_norm_eps\" is missing".into()))?;
        meta.push((
            a("attention.layer_norm_rms_epsilon"),
            OwnedValue::F32(eps as f32),
        ));
        meta.push(u32_kv(&a("rope.dimension_count"), rope_dims));
        let theta = cfg.rope_theta.unwrap_or(10000.0);
        meta.push((a("rope.freq_base"), OwnedValue::F32(theta as f32)));
        meta.push(u32_kv("general.file_type", convert_ftype.id() as u64));
        let swa = raw
            .get("sliding_window")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        meta.push(u32_kv(&a("attention.sliding_window"), swa));
        return Ok(extra);
    }

    // TextModel.set_gguf_parameters: RoPE scaling keys before the base frequency.
    let mut rope_scaling = Vec::new();
    match (scaling_kind, factor) {
        ("linear", Some(f)) => {
            rope_scaling.push(str_kv(&a("rope.scaling.type"), "linear"));
            rope_scaling.push((a("rope.scaling.factor"), OwnedValue::F32(f as f32)));
        }
        ("yarn", Some(f)) => {
            rope_scaling.push(str_kv(&a("rope.scaling.type"), "yarn"));
            rope_scaling.push((a("rope.scaling.factor"), OwnedValue::F32(f as f32)));
            let sc = scaling.expect("a scaling kind comes from a rope_scaling object");
            let orig = sc
                .get("original_max_position_embeddings")
                .or_else(|| raw.get("original_max_position_embeddings"))
                .and_then(|v| v.as_u64())
                .ok_or_else(|| {
                    bad("rope_scaling type \"yarn\" has no original_max_position_embeddings".into())
                })?;
            rope_scaling.push(u32_kv(&a("rope.scaling.original_context_length"), orig));
            for (k, keys) in [
                (
                    "rope.scaling.yarn_ext_factor",
                    &["extrapolation_factor"][..],
                ),
                (
                    "rope.scaling.yarn_attn_factor",
                    &["attention_factor", "attn_factor"][..],
                ),
                ("rope.scaling.yarn_beta_fast", &["beta_fast"][..]),
                ("rope.scaling.yarn_beta_slow", &["beta_slow"][..]),
            ] {
                if let Some(v) = keys
                    .iter()
                    .find_map(|k| sc.get(*k).and_then(|v| v.as_f64()))
                {
                    rope_scaling.push((a(k), OwnedValue::F32(v as f32)));
                }
            }
        }
        ("", _) | ("default", _) => {}
        (other, _) => {
            return Err(bad(format!(
                "rope_scaling type {other:?} is not supported for {name}"
            )));
        }
    }
    let swa_base = if arch == Arch::Gemma3 {
        get_f64("rope_local_base_freq")
    } else {
        None
    };
    text_model_keys(meta, cfg, convert_ftype, rope_scaling, swa_base);
    match arch {
        Arch::SmolLM3 => {
            meta.push(u32_kv(&a("vocab_size"), ck.vocab_size()));
            meta.push(u32_kv(&a("rope.dimension_count"), cfg.head_dim()));
        }
        Arch::Gemma3 => {
            if raw
                .get("attn_logit_softcapping")
                .is_some_and(|v| !v.is_null())
            {
                return Err(bad(
                    "attn_logit_softcapping is not supported for gemma3".into()
                ));
            }
            if let Some(c) = get_f64("final_logit_softcapping").filter(|&c| c != 0.0) {
                meta.push((a("final_logit_softcapping"), OwnedValue::F32(c as f32)));
            }
            if raw.get("sliding_window_pattern").and_then(|v| v.as_u64()) != Some(1) {
                let w = raw
                    .get("sliding_window")
                    .and_then(|v| v.as_u64())
                    .ok_or_else(|| bad("\"sliding_window\" is missing".into()))?;
                meta.push(u32_kv(&a("attention.sliding_window"), w));
            }
        }
        _ => {}
    }
    Ok(extra)
}

fn rope_type(scaling: &serde_json::Value) -> &str {
    scaling
        .get("rope_type")
        .or_else(|| scaling.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("")
}

/// Llama 3's RoPE frequency factors, as `LlamaModel.generate_extra_tensors` computes them with
/// float32 torch tensors: 1 for short wavelengths, `factor` for long ones, smoothed in between.
fn llama3_rope_factors(cfg: &hf::HfConfig, sc: &serde_json::Value) -> Result<Vec<f32>, String> {
    let num = |k: &str, d: f64| sc.get(k).and_then(|v| v.as_f64()).unwrap_or(d);
    let base = cfg.rope_theta.unwrap_or(10000.0) as f32;
    let dim = cfg.head_dim() as usize;
    let factor = num("factor", 8.0);
    let (low, high) = (num("low_freq_factor", 1.0), num("high_freq_factor", 4.0));
    let old = sc
        .get("original_max_position_embeddings")
        .or_else(|| cfg.raw.get("original_max_position_embeddings"))
        .and_then(|v| v.as_f64())
        .unwrap_or(8192.0);
    let (low_wl, high_wl) = (old / low, old / high);
    if !(low_wl.is_finite() && high_wl.is_finite()) || low_wl == high_wl {
        return Err(format!(
            "rope_scaling: low_freq_factor {low} and high_freq_factor {high} are unusable"
        ));
    }
    Ok((0..dim / 2)
        .map(|i| {
            let freq = 1.0f32 / base.powf((2 * i) as f32 / dim as f32);
            let wavelen = (2.0 * std::f64::consts::PI) as f32 / freq;
            if wavelen < high_wl as f32 {
                1.0
            } else if wavelen > low_wl as f32 {
                factor as f32
            } else {
                let smooth = (old as f32 / wavelen - low as f32) / (high - low) as f32;
                1.0 / ((1.0 - smooth) / factor as f32 + smooth)
            }
        })
        .collect())
}

/// One more than the highest layer number among the `blk.N.` tensor names (0 when none).
pub(crate) fn layers_present<'a>(names: impl Iterator<Item = &'a str>) -> u64 {
    names
        .filter_map(|n| {
            n.strip_prefix("blk.")?
                .split('.')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .map_or(0, |m| m + 1)
}

fn entry(t: &SrcTensor, dst: GgmlType, fallback: bool) -> Result<PlanEntry, QuantizeError> {
    let spec = TensorSpec {
        name: t.name.clone(),
        ty: dst,
        dims: t.dims.clone(),
    };
    let n_bytes = spec
        .n_bytes()
        .ok_or_else(|| FtypeError::IncompatibleShape {
            tensor: t.name.clone(),
            ne0: t.dims[0],
            ty: dst,
            block: dst.block_elems(),
        })?;
    if dst != t.elem.ggml()
        && dispatch::kernels()
            .get(t.elem.ggml())
            .and_then(|k| k.dequantize_row)
            .is_none()
    {
        return Err(QuantizeError::UnsupportedSourceType {
            tensor: t.name.clone(),
            ty: t.elem.ggml(),
        });
    }
    Ok(PlanEntry {
        name: t.name.clone(),
        dims: t.dims.clone(),
        src: t.elem.ggml(),
        dst,
        fallback,
        n_bytes,
        src_bytes: t.len as u64,
    })
}

fn prepare_gguf(path: &Path, ftype: FileType) -> Result<Job, QuantizeError> {
    let g = Gguf::open(path).map_err(|source| QuantizeError::Gguf {
        path: path.to_path_buf(),
        source,
    })?;
    let arch = g
        .architecture()
        .map_err(|source| QuantizeError::Gguf {
            path: path.to_path_buf(),
            source,
        })?
        .to_string();
    let mut meta: Vec<(String, OwnedValue)> = g
        .metadata()
        .filter(|(k, _)| !k.starts_with("split."))
        .map(|(k, v)| (k.to_string(), v.to_owned_value()))
        .collect();
    finish_quantized_metadata(&mut meta, ftype);

    let mut tensors: Vec<SrcTensor> = g
        .tensor_infos()
        .iter()
        .map(|ti| SrcTensor {
            name: g.tensor_name(ti).to_string(),
            hf_name: None,
            dims: if ti.shape().is_empty() {
                vec![1]
            } else {
                ti.shape().to_vec()
            },
            elem: Elem::from_ggml(ti.ty),
            map: 0,
            start: ti.file_offset as usize,
            len: ti.n_bytes as usize,
            permute: None,
            add_one: false,
        })
        .collect();
    tensors.sort_by(|x, y| quantize_order(&x.name, &y.name));
    let n_layer = match g.get_u32(&format!("{arch}.block_count")) {
        Ok(n) => n as usize,
        Err(_) => layers_present(tensors.iter().map(|t| t.name.as_str())) as usize,
    };
    let mut chooser = TypeChooser::new(ftype, tensors.iter().map(|t| t.name.as_str()), n_layer);
    let mut entries = Vec::with_capacity(tensors.len());
    for t in &tensors {
        let (ty, fb) = match chooser.choose(&t.name, &t.dims)? {
            Some(c) => (c.ty, c.fallback),
            None => (t.elem.ggml(), false),
        };
        entries.push(entry(t, ty, fb)?);
    }
    drop(g);
    let f = hf::open_input(path)?;
    // SAFETY: read-only mapping of a file opened read-only; the input must not change while the
    // job runs (as for every mmap-based loader).
    let map = unsafe { Mmap::map(&f) }.map_err(|e| QuantizeError::io(path, e))?;
    for t in &tensors {
        if t.start.checked_add(t.len).is_none_or(|e| e > map.len()) {
            return Err(QuantizeError::io(
                path,
                std::io::Error::other("the file changed while it was being read"),
            ));
        }
    }
    let plan = Plan {
        input: path.to_path_buf(),
        kind: InputKind::Gguf,
        ftype,
        arch,
        metadata: meta,
        tensors: entries,
    };
    Ok(Job {
        plan,
        maps: vec![map],
        tensors,
    })
}

/// A byte buffer with 8-byte alignment (what the row kernels need for any type).
struct AlignedBuf {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> AlignedBuf {
        AlignedBuf {
            words: vec![0u64; len.div_ceil(8)],
            len,
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `words` holds at least `len` initialized bytes; u8 has no invalid values and
        // alignment 1; the slice borrows `self` mutably.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr() as *mut u8, self.len) }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: as in `bytes_mut`, shared.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr() as *const u8, self.len) }
    }
}

/// Encode one f32 row as `dst`.
fn encode_row(dst: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), QuantizeError> {
    match dst {
        GgmlType::F32 => {
            for (o, v) in out.chunks_exact_mut(4).zip(x) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (o, v) in out.chunks_exact_mut(2).zip(x) {
                o.copy_from_slice(&f32_to_f16(*v).to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for (o, v) in out.chunks_exact_mut(2).zip(x) {
                o.copy_from_slice(&f32_to_bf16(*v).to_le_bytes());
            }
        }
        t => dispatch::quantize_row(t, x, out).map_err(|e| QuantizeError::Kernel(e.to_string()))?,
    }
    Ok(())
}

impl Job {
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Convert rows `r0..r0 + out.len() / row_bytes` of tensor `i` into `out`, on the rayon pool.
    fn convert_rows(
        &self,
        i: usize,
        r0: usize,
        out: &mut [u8],
        cancel: &AtomicBool,
    ) -> Result<(), QuantizeError> {
        let t = &self.tensors[i];
        let e = &self.plan.tensors[i];
        let map: &[u8] = &self.maps[t.map];
        let ne0 = t.dims[0] as usize;
        let rb = row_bytes(e);
        // Rows per work item: about 64K elements, so items are many and small.
        let per = (65536 / ne0.max(1)).max(1);
        out.par_chunks_mut(rb * per)
            .enumerate()
            .try_for_each(|(ci, oc)| {
                if cancel.load(Ordering::Relaxed) {
                    return Err(QuantizeError::Cancelled);
                }
                let n = oc.len() / rb;
                let mut x = vec![0f32; n * ne0];
                t.read_rows(map, (r0 + ci * per) as u64, &mut x)?;
                for (xr, or) in x.chunks_exact(ne0).zip(oc.chunks_exact_mut(rb)) {
                    encode_row(e.dst, xr, or)?;
                }
                Ok(())
            })
    }

    /// Convert every tensor and write the GGUF to `out` (through a temporary file renamed at the
    /// end). `threads`: 0 for all. Each tensor is converted in slices of rows (about
    /// `CHUNK_BYTES` of f32 each), written, and the input pages behind it released, so memory
    /// stays at a few slices whatever the model size. `cancel` is polled between work items;
    /// when it is set the temporary file is removed and `Cancelled` returned.
    pub fn write(
        &self,
        out: &Path,
        force: bool,
        threads: usize,
        progress: &mut dyn FnMut(Progress<'_>),
        cancel: &AtomicBool,
    ) -> Result<(), QuantizeError> {
        const CHUNK_BYTES: usize = 16 << 20;
        let mut tmp = ferrolm::output::AtomicOutput::create(out, Some(&self.plan.input), force)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| QuantizeError::Kernel(format!("thread pool: {e}")))?;
        let wr = |source| QuantizeError::Write {
            path: out.to_path_buf(),
            source,
        };
        let io = |e| QuantizeError::io(out, e);
        let mut w = GgufWriter::new();
        let mut alignment = 32u64;
        for (k, v) in &self.plan.metadata {
            if let ("general.alignment", OwnedValue::U32(a)) = (k.as_str(), v) {
                alignment = *a as u64;
            }
            w.set(k, v.clone());
        }
        for e in &self.plan.tensors {
            w.add_tensor(TensorSpec {
                name: e.name.clone(),
                ty: e.dst,
                dims: e.dims.clone(),
            })
            .map_err(wr)?;
        }
        let file = tmp.file().try_clone().map_err(io)?;
        let mut bw = BufWriter::with_capacity(1 << 20, file);
        // The header (metadata, tensor infos, padding); the data follows, each tensor padded to
        // the alignment exactly as the writer laid out the offsets.
        drop(w.begin(&mut bw).map_err(wr)?);
        let total_bytes = self.plan.out_tensor_bytes();
        let mut done_bytes = 0;
        let mut buf = AlignedBuf::new(0);
        for (i, e) in self.plan.tensors.iter().enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return Err(QuantizeError::Cancelled);
            }
            let t = &self.tensors[i];
            let map = &self.maps[t.map];
            if e.dst == e.src && t.permute.is_none() && !t.add_one {
                for c in (0..t.len).step_by(CHUNK_BYTES) {
                    let n = CHUNK_BYTES.min(t.len - c);
                    bw.write_all(&map[t.start + c..t.start + c + n])
                        .map_err(io)?;
                    source::release(map, t.start + c, n);
                }
            } else {
                let ne0 = t.dims[0] as usize;
                let rows = (t.n_elements() as usize) / ne0.max(1);
                let rb = row_bytes(e);
                let src_rb = t.len / rows.max(1);
                let step = (CHUNK_BYTES / (4 * ne0.max(1))).max(1);
                for r0 in (0..rows).step_by(step) {
                    let n = step.min(rows - r0);
                    if buf.len != n * rb {
                        buf = AlignedBuf::new(n * rb);
                    }
                    pool.install(|| self.convert_rows(i, r0, buf.bytes_mut(), cancel))?;
                    bw.write_all(buf.bytes()).map_err(io)?;
                    if t.permute.is_none() {
                        source::release(map, t.start + r0 * src_rb, n * src_rb);
                    }
                    if r0 + n < rows {
                        progress(Progress {
                            done: i,
                            total: self.plan.tensors.len(),
                            name: &e.name,
                            bytes_done: done_bytes + ((r0 + n) * rb) as u64,
                            bytes_total: total_bytes,
                        });
                    }
                }
                source::release(map, t.start, t.len);
            }
            let pad = e.n_bytes.div_ceil(alignment) * alignment - e.n_bytes;
            bw.write_all(&vec![0u8; pad as usize]).map_err(io)?;
            done_bytes += e.n_bytes;
            progress(Progress {
                done: i + 1,
                total: self.plan.tensors.len(),
                name: &e.name,
                bytes_done: done_bytes,
                bytes_total: total_bytes,
            });
        }
        bw.flush().map_err(io)?;
        drop(bw);
        if cancel.load(Ordering::Relaxed) {
            return Err(QuantizeError::Cancelled);
        }
        validate_output(tmp.tmp_path())?;
        // Validation reads the whole file: a signal may have come meanwhile.
        if cancel.load(Ordering::Relaxed) {
            return Err(QuantizeError::Cancelled);
        }
        tmp.commit().map_err(|e| match e {
            ferrolm::output::OutputError::Cancelled => QuantizeError::Cancelled,
            e => e.into(),
        })?;
        Ok(())
    }
}

/// Load the written file as `ferrolm` will before it takes the output's name: a file ferrolm would
/// refuse (no `token_embd`, a head count of 0, a negative `rms_norm_eps`, a vocabulary that does
/// not match the embedding) is an error and nothing is written. Architectures ferrolm does not run
/// are checked by the GGUF reader alone.
fn validate_output(path: &Path) -> Result<(), QuantizeError> {
    let bad = |e: &(dyn std::error::Error + 'static)| {
        QuantizeError::InvalidOutput(ferrolm::error_chain(e))
    };
    let g = Gguf::open(path).map_err(|e| bad(&e))?;
    let supported = g
        .architecture()
        .is_ok_and(|a| ferrolm::model::Arch::from_name(a).is_ok());
    if g.get("tokenizer.ggml.tokens").is_some() {
        ferrolm::tokenizer::Tokenizer::from_gguf(&g).map_err(|e| bad(&e))?;
    }
    if supported {
        ferrolm::model::Model::from_gguf(g).map_err(|e| bad(&e))?;
    }
    Ok(())
}

/// Bytes of one output row of a planned tensor.
fn row_bytes(e: &PlanEntry) -> usize {
    let rows: u64 = e.dims.iter().skip(1).product();
    (e.n_bytes / rows.max(1)) as usize
}

/// Convert `input` to `out` as `ftype` in one call (no progress, never cancelled).
pub fn quantize_file(
    input: &Path,
    out: &Path,
    ftype: FileType,
    force: bool,
) -> Result<Plan, QuantizeError> {
    let job = prepare(input, ftype)?;
    let never = AtomicBool::new(false);
    job.write(out, force, 0, &mut |_| {}, &never)?;
    Ok(job.plan)
}

//! Hugging Face checkpoints: `config.json`, safetensors shards over memory maps, tensor names and
//! shapes mapped and checked the way `convert_hf_to_gguf.py` maps them.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde_json::Value as Json;

use crate::error::QuantizeError;
use crate::source::{Elem, SrcTensor};

/// The architectures the converter knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Gemma3,
    Phi3,
    SmolLM3,
}

impl Arch {
    /// `general.architecture`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
            Arch::Phi3 => "phi3",
            Arch::SmolLM3 => "smollm3",
        }
    }

    /// The class `config.json`'s `architectures[0]` names.
    fn from_hf(name: &str) -> Option<Arch> {
        Some(match name {
            "LlamaForCausalLM" => Arch::Llama,
            "Qwen2ForCausalLM" => Arch::Qwen2,
            "Qwen3ForCausalLM" => Arch::Qwen3,
            "Gemma3ForCausalLM" | "Gemma3ForConditionalGeneration" => Arch::Gemma3,
            "Phi3ForCausalLM" => Arch::Phi3,
            "SmolLM3ForCausalLM" => Arch::SmolLM3,
            _ => return None,
        })
    }

    /// Q/K rows interleaved for the llama RoPE layout (`LlamaModel.permute`).
    pub fn permutes_qk(self) -> bool {
        matches!(self, Arch::Llama | Arch::SmolLM3)
    }

    /// The transformers config class defaults `AutoConfig` fills in before the converter reads
    /// the hyperparameters (transformers 4.57, the version llama.cpp's converter pins), for the
    /// keys the converter writes.
    fn defaults(self) -> &'static [(&'static str, f64)] {
        match self {
            Arch::Qwen3 => &[
                ("max_position_embeddings", 32768.0),
                ("rms_norm_eps", 1e-6),
                ("rope_theta", 10000.0),
                ("head_dim", 128.0),
            ],
            Arch::Gemma3 => &[
                ("max_position_embeddings", 131072.0),
                ("num_attention_heads", 8.0),
                ("num_key_value_heads", 4.0),
                ("rms_norm_eps", 1e-6),
                ("rope_theta", 1_000_000.0),
                ("rope_local_base_freq", 10000.0),
                ("head_dim", 256.0),
                ("sliding_window", 4096.0),
            ],
            Arch::Phi3 => &[
                ("rope_theta", 10000.0),
                ("original_max_position_embeddings", 4096.0),
            ],
            Arch::SmolLM3 => &[("rms_norm_eps", 1e-6), ("rope_theta", 2_000_000.0)],
            Arch::Llama | Arch::Qwen2 => &[],
        }
    }
}

/// The hyperparameters of `config.json` the converter uses.
#[derive(Clone, Debug)]
pub struct HfConfig {
    pub arch: Arch,
    pub n_layer: u64,
    pub n_ctx: Option<u64>,
    pub n_embd: u64,
    pub n_ff: u64,
    pub n_head: u64,
    pub n_head_kv: Option<u64>,
    pub head_dim: Option<u64>,
    pub rope_theta: Option<f64>,
    pub rms_eps: Option<f64>,
    pub vocab_size: Option<u64>,
    pub tie_embeddings: bool,
    /// The whole file, for the keys read elsewhere (`rope_scaling`, token ids).
    pub raw: Json,
}

/// The bytes of an input file, which must be a regular file: a FIFO or device named in a
/// checkpoint is an error that says so, not a hang or an endless read.
pub(crate) fn read_input(path: &Path) -> Result<Vec<u8>, QuantizeError> {
    use std::io::Read;
    let f = open_input(path)?;
    let mut b = Vec::new();
    (&f).read_to_end(&mut b)
        .map_err(|e| QuantizeError::io(path, e))?;
    Ok(b)
}

/// Open an input file for reading if it is a regular file ([`ferrolm::gguf::open_regular`]).
pub(crate) fn open_input(path: &Path) -> Result<File, QuantizeError> {
    ferrolm::gguf::open_regular(path).map_err(|e| QuantizeError::io(path, e))
}

pub(crate) fn read_json(path: &Path) -> Result<Json, QuantizeError> {
    let bytes = read_input(path)?;
    serde_json::from_slice(&bytes).map_err(|source| QuantizeError::Json {
        path: path.to_path_buf(),
        source,
    })
}

impl HfConfig {
    pub fn load(dir: &Path) -> Result<HfConfig, QuantizeError> {
        let path = dir.join("config.json");
        if !path.exists() {
            return Err(QuantizeError::MissingConfig {
                dir: dir.to_path_buf(),
            });
        }
        let mut raw = read_json(&path)?;
        let archs = raw.get("architectures").and_then(|a| a.as_array());
        let arch_name = archs
            .and_then(|a| a.first())
            .and_then(|a| a.as_str())
            .ok_or_else(|| QuantizeError::bad_config(&path, "no \"architectures\" list"))?;
        let arch =
            Arch::from_hf(arch_name).ok_or_else(|| QuantizeError::UnsupportedArchitecture {
                found: arch_name.to_string(),
            })?;
        if let Some(obj) = raw.as_object_mut() {
            // A multimodal config nests the text model's: its keys win (ModelBase.__init__).
            if let Some(Json::Object(text)) = obj.get("text_config").cloned() {
                for (k, v) in text {
                    obj.insert(k, v);
                }
            }
            for &(k, v) in arch.defaults() {
                if !obj.contains_key(k) {
                    let v = if v.fract() == 0.0 && v >= 1.0 {
                        Json::from(v as u64)
                    } else {
                        Json::from(v)
                    };
                    obj.insert(k.to_string(), v);
                }
            }
        }
        let raw = raw;
        let opt_u64 = |k: &str| -> Result<Option<u64>, QuantizeError> {
            match raw.get(k) {
                None | Some(Json::Null) => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                    QuantizeError::bad_config(
                        &path,
                        format!("\"{k}\" is {v}, expected a non-negative integer"),
                    )
                }),
            }
        };
        let req_u64 = |k: &str| -> Result<u64, QuantizeError> {
            match opt_u64(k)? {
                Some(0) => Err(QuantizeError::bad_config(&path, format!("\"{k}\" is 0"))),
                Some(v) => Ok(v),
                None => Err(QuantizeError::bad_config(
                    &path,
                    format!("\"{k}\" is missing"),
                )),
            }
        };
        let opt_f64 = |k: &str| -> Result<Option<f64>, QuantizeError> {
            match raw.get(k) {
                None | Some(Json::Null) => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                    QuantizeError::bad_config(&path, format!("\"{k}\" is {v}, expected a number"))
                }),
            }
        };
        let n_head = req_u64("num_attention_heads")?;
        let n_embd = req_u64("hidden_size")?;
        let cfg = HfConfig {
            arch,
            n_layer: req_u64("num_hidden_layers")?,
            n_ctx: opt_u64("max_position_embeddings")?,
            n_embd,
            n_ff: req_u64("intermediate_size")?,
            n_head,
            n_head_kv: opt_u64("num_key_value_heads")?,
            head_dim: opt_u64("head_dim")?,
            rope_theta: opt_f64("rope_theta")?,
            rms_eps: opt_f64("rms_norm_eps")?,
            vocab_size: opt_u64("vocab_size")?,
            tie_embeddings: raw
                .get("tie_word_embeddings")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            raw,
        };
        if let Some(e) = cfg.rms_eps {
            if !(e > 0.0 && e < 1.0) {
                return Err(QuantizeError::bad_config(
                    &path,
                    format!("\"rms_norm_eps\" is {e}, expected a number between 0 and 1"),
                ));
            }
        }
        if let Some(t) = cfg.rope_theta {
            if !(t > 0.0 && t.is_finite()) {
                return Err(QuantizeError::bad_config(
                    &path,
                    format!("\"rope_theta\" is {t}, expected a positive number"),
                ));
            }
        }
        if cfg.head_dim.is_none() && n_embd % n_head != 0 {
            return Err(QuantizeError::bad_config(
                &path,
                format!("hidden_size {n_embd} is not a multiple of num_attention_heads {n_head}"),
            ));
        }
        if cfg.n_head_kv == Some(0) || n_head % cfg.n_head_kv.unwrap_or(n_head) != 0 {
            return Err(QuantizeError::bad_config(
                &path,
                "num_key_value_heads does not divide num_attention_heads",
            ));
        }
        Ok(cfg)
    }

    pub fn head_dim(&self) -> u64 {
        self.head_dim.unwrap_or(self.n_embd / self.n_head)
    }

    pub fn kv_heads(&self) -> u64 {
        self.n_head_kv.unwrap_or(self.n_head)
    }
}

/// One opened safetensors file.
pub(crate) struct Shard {
    pub path: PathBuf,
    pub map: Mmap,
}

/// An opened checkpoint: config, maps, and its tensors in the converter's order (files in sorted
/// order, names sorted within a file).
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: HfConfig,
    pub(crate) shards: Vec<Shard>,
    pub(crate) tensors: Vec<SrcTensor>,
}

fn map_file(path: &Path) -> Result<Mmap, QuantizeError> {
    let f = open_input(path)?;
    // SAFETY: the file is opened read-only and mapped read-only; the converter documents that the
    // input must not be modified while it runs (as every mmap-based loader, llama.cpp included).
    unsafe { Mmap::map(&f) }.map_err(|e| QuantizeError::io(path, e))
}

/// The GGUF name of a Hugging Face tensor (`None`: skipped, as `rotary_emb.inv_freq` or a Gemma 3
/// vision tower).
fn gguf_name(arch: Arch, hf: &str) -> Result<Option<String>, ()> {
    if hf.ends_with(".rotary_emb.inv_freq") {
        return Ok(None);
    }
    // Gemma3ForConditionalGeneration: the text model under `language_model.`, its vision tower
    // and projector dropped (TextModel.filter_tensors, ModelBase.filter_tensors).
    let owned;
    let hf = if arch == Arch::Gemma3 {
        if hf.starts_with("vision_tower.")
            || hf.starts_with("multi_modal_projector.")
            || hf.contains("vision_tower.")
            || hf.contains("multi_modal_projector.")
        {
            return Ok(None);
        }
        owned = hf.replacen("language_model.", "", 1);
        owned.as_str()
    } else {
        hf
    };
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Ok(Some(f.to_string()));
    }
    let rest = hf.strip_prefix("model.layers.").ok_or(())?;
    let (bid, tail) = rest.split_once('.').ok_or(())?;
    let bid: u64 = bid.parse().map_err(|_| ())?;
    let (base, suffix) = tail.rsplit_once('.').ok_or(())?;
    let g = match (arch, base) {
        (_, "input_layernorm") => "attn_norm",
        (Arch::Phi3, "self_attn.qkv_proj") => "attn_qkv",
        (Arch::Phi3, "self_attn.q_proj" | "self_attn.k_proj" | "self_attn.v_proj") => {
            return Err(())
        }
        (_, "self_attn.q_proj") => "attn_q",
        (_, "self_attn.k_proj") => "attn_k",
        (_, "self_attn.v_proj") => "attn_v",
        (_, "self_attn.o_proj") => "attn_output",
        (Arch::Qwen3 | Arch::Gemma3, "self_attn.q_norm") => "attn_q_norm",
        (Arch::Qwen3 | Arch::Gemma3, "self_attn.k_norm") => "attn_k_norm",
        (Arch::Gemma3, "post_attention_layernorm") => "post_attention_norm",
        (Arch::Gemma3, "pre_feedforward_layernorm") => "ffn_norm",
        (Arch::Gemma3, "post_feedforward_layernorm") => "post_ffw_norm",
        (_, "post_attention_layernorm") => "ffn_norm",
        (Arch::Phi3, "mlp.gate_up_proj") => "ffn_up",
        (Arch::Phi3, "mlp.gate_proj" | "mlp.up_proj") => return Err(()),
        (_, "mlp.gate_proj") => "ffn_gate",
        (_, "mlp.up_proj") => "ffn_up",
        (_, "mlp.down_proj") => "ffn_down",
        _ => return Err(()),
    };
    if suffix != "weight" && suffix != "bias" {
        return Err(());
    }
    Ok(Some(format!("blk.{bid}.{g}.{suffix}")))
}

/// The Hugging Face shape (outer dimension first) config.json implies for a GGUF-named tensor.
fn expected_shape(cfg: &HfConfig, vocab: u64, name: &str) -> Option<Vec<u64>> {
    let (e, f) = (cfg.n_embd, cfg.n_ff);
    let hd = cfg.head_dim();
    let q = cfg.n_head.saturating_mul(hd);
    let kv = cfg.kv_heads().saturating_mul(hd);
    if name == "token_embd.weight" || name == "output.weight" {
        return Some(vec![vocab, e]);
    }
    if name == "output_norm.weight" {
        return Some(vec![e]);
    }
    let rest = name.strip_prefix("blk.")?;
    let (bid, tail) = rest.split_once('.')?;
    if bid.parse::<u64>().ok()? >= cfg.n_layer {
        return None;
    }
    let phi3 = cfg.arch == Arch::Phi3;
    Some(match tail {
        "attn_norm.weight" | "ffn_norm.weight" => vec![e],
        "post_attention_norm.weight" | "post_ffw_norm.weight" => vec![e],
        "attn_q_norm.weight" | "attn_k_norm.weight" => vec![hd],
        "attn_qkv.weight" => vec![q.saturating_add(kv.saturating_mul(2)), e],
        "attn_q.weight" => vec![q, e],
        "attn_k.weight" | "attn_v.weight" => vec![kv, e],
        "attn_output.weight" => vec![e, q],
        "attn_q.bias" => vec![q],
        "attn_k.bias" | "attn_v.bias" => vec![kv],
        "ffn_up.weight" if phi3 => vec![f.saturating_mul(2), e],
        "ffn_gate.weight" | "ffn_up.weight" => vec![f, e],
        "ffn_down.weight" => vec![e, f],
        _ => return None,
    })
}

/// The per-layer tensors an architecture must have (GGUF names without `blk.N.`, `.weight`).
fn layer_tensors(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::Llama | Arch::Qwen2 | Arch::SmolLM3 => &[
            "attn_norm",
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_norm",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
        ],
        Arch::Qwen3 => &[
            "attn_norm",
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_q_norm",
            "attn_k_norm",
            "attn_output",
            "ffn_norm",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
        ],
        Arch::Gemma3 => &[
            "attn_norm",
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_q_norm",
            "attn_k_norm",
            "attn_output",
            "post_attention_norm",
            "ffn_norm",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
            "post_ffw_norm",
        ],
        Arch::Phi3 => &[
            "attn_norm",
            "attn_qkv",
            "attn_output",
            "ffn_norm",
            "ffn_up",
            "ffn_down",
        ],
    }
}

impl Checkpoint {
    pub fn open(dir: &Path) -> Result<Checkpoint, QuantizeError> {
        let config = HfConfig::load(dir)?;
        let index_path = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        // (file name, tensors the index says it holds)
        let mut files: Vec<(String, Vec<String>)> = Vec::new();
        if index_path.exists() {
            let index = read_json(&index_path)?;
            let wm = index
                .get("weight_map")
                .and_then(|w| w.as_object())
                .ok_or_else(|| {
                    QuantizeError::bad_config(&index_path, "no \"weight_map\" object")
                })?;
            for (tensor, file) in wm {
                let file = file
                    .as_str()
                    .filter(|f| !f.contains('/') && !f.contains('\\') && !f.is_empty())
                    .ok_or_else(|| {
                        QuantizeError::bad_config(
                            &index_path,
                            format!("bad file name for '{tensor}'"),
                        )
                    })?;
                match files.iter_mut().find(|(f, _)| f == file) {
                    Some((_, v)) => v.push(tensor.clone()),
                    None => files.push((file.to_string(), vec![tensor.clone()])),
                }
            }
            files.sort();
        } else if single.exists() {
            files.push(("model.safetensors".to_string(), Vec::new()));
        } else {
            return Err(QuantizeError::NoWeights {
                dir: dir.to_path_buf(),
            });
        }

        let arch = config.arch.name();
        let mut shards = Vec::new();
        let mut tensors: Vec<SrcTensor> = Vec::new();
        let mut hf_names: Vec<(String, PathBuf)> = Vec::new();
        for (file, listed) in &files {
            let path = dir.join(file);
            let map = map_file(&path)?;
            let (n, meta) = safetensors::SafeTensors::read_metadata(&map).map_err(|e| {
                QuantizeError::BadSafetensors {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?;
            let data_start = 8 + n;
            let infos = meta.tensors();
            for t in listed {
                if !infos.contains_key(t) {
                    return Err(QuantizeError::IndexMismatch {
                        index: index_path.clone(),
                        tensor: t.clone(),
                        file: file.clone(),
                    });
                }
            }
            let mut names: Vec<&String> = infos.keys().collect();
            names.sort();
            for hf in names {
                let info = infos[hf];
                let Some(gname) =
                    gguf_name(config.arch, hf).map_err(|_| QuantizeError::UnknownTensor {
                        path: path.clone(),
                        tensor: hf.clone(),
                        arch,
                    })?
                else {
                    continue;
                };
                let elem = match info.dtype {
                    safetensors::Dtype::F32 => Elem::F32,
                    safetensors::Dtype::F16 => Elem::F16,
                    safetensors::Dtype::BF16 => Elem::BF16,
                    other => {
                        return Err(QuantizeError::UnsupportedDtype {
                            path: path.clone(),
                            tensor: hf.clone(),
                            dtype: format!("{other:?}"),
                        })
                    }
                };
                if hf_names.iter().any(|(n, _)| n == hf) {
                    return Err(QuantizeError::DuplicateTensor(hf.clone()));
                }
                hf_names.push((hf.clone(), path.clone()));
                let shape: Vec<u64> = info.shape.iter().map(|&d| d as u64).collect();
                let (s, e) = info.data_offsets;
                tensors.push(SrcTensor {
                    name: gname,
                    hf_name: Some(hf.clone()),
                    dims: shape.iter().rev().copied().collect(),
                    elem,
                    map: shards.len(),
                    start: data_start + s,
                    len: e - s,
                    permute: None,
                    add_one: false,
                });
            }
            shards.push(Shard { path, map });
        }

        // Shapes against config.json; the Q/K permutation for the llama RoPE layout.
        let vocab = match config.vocab_size {
            Some(v) => v,
            None => tensors
                .iter()
                .find(|t| t.name == "token_embd.weight")
                .and_then(|t| t.dims.get(1).copied())
                .ok_or_else(|| QuantizeError::MissingTensor("model.embed_tokens.weight".into()))?,
        };
        for t in tensors.iter_mut() {
            let hf = t.hf_name.clone().unwrap_or_default();
            let path = shards[t.map].path.clone();
            let found: Vec<u64> = t.dims.iter().rev().copied().collect();
            let expected = expected_shape(&config, vocab, &t.name).ok_or_else(|| {
                QuantizeError::UnknownTensor {
                    path: path.clone(),
                    tensor: hf.clone(),
                    arch,
                }
            })?;
            if found != expected {
                return Err(QuantizeError::ShapeMismatch {
                    path,
                    tensor: hf,
                    found,
                    expected,
                });
            }
            // Gemma stores RMS norm weights as offsets from 1 (Gemma3Model.modify_tensors: + 1).
            t.add_one = config.arch == Arch::Gemma3 && hf.ends_with("norm.weight");
            if config.arch.permutes_qk() {
                if t.name.ends_with(".attn_q.weight") || t.name.ends_with(".attn_q.bias") {
                    t.permute = Some(config.n_head);
                } else if t.name.ends_with(".attn_k.weight") || t.name.ends_with(".attn_k.bias") {
                    t.permute = Some(config.kv_heads());
                }
                if let Some(h) = t.permute {
                    if !found[0].is_multiple_of(2 * h) {
                        return Err(QuantizeError::bad_config(
                            dir.join("config.json"),
                            format!(
                                "'{hf}' has {} rows, not a multiple of 2 x {h} heads",
                                found[0]
                            ),
                        ));
                    }
                }
            }
        }
        // Every count of config.json is checked against the tensors before anything is sized by
        // it: a hostile num_hidden_layers (2^40) must not make 9 x 2^40 names.
        let n_present = crate::layers_present(tensors.iter().map(|t| t.name.as_str()));
        if config.n_layer != n_present {
            return Err(QuantizeError::bad_config(
                dir.join("config.json"),
                format!(
                    "\"num_hidden_layers\" is {}, but the checkpoint holds tensors for {n_present} layers",
                    config.n_layer
                ),
            ));
        }
        let has = |n: &str| tensors.iter().any(|t| t.name == n);
        let mut required = vec![
            "token_embd.weight".to_string(),
            "output_norm.weight".to_string(),
        ];
        if !config.tie_embeddings {
            required.push("output.weight".into());
        }
        for b in 0..config.n_layer {
            for n in layer_tensors(config.arch) {
                required.push(format!("blk.{b}.{n}.weight"));
            }
        }
        for r in required {
            if !has(&r) {
                return Err(QuantizeError::MissingTensor(hf_name_of(config.arch, &r)));
            }
        }
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            config,
            shards,
            tensors,
        })
    }

    /// The vocabulary size the converter uses (config.json's, else the embedding's rows).
    pub fn vocab_size(&self) -> u64 {
        self.config.vocab_size.unwrap_or_else(|| {
            self.tensors
                .iter()
                .find(|t| t.name == "token_embd.weight")
                .map(|t| t.dims[1])
                .unwrap_or(0)
        })
    }
}

/// The Hugging Face name of a GGUF tensor name (for messages).
fn hf_name_of(arch: Arch, gguf: &str) -> String {
    match gguf {
        "token_embd.weight" => return "model.embed_tokens.weight".into(),
        "output_norm.weight" => return "model.norm.weight".into(),
        "output.weight" => return "lm_head.weight".into(),
        _ => {}
    }
    let Some((bid, tail)) = gguf.strip_prefix("blk.").and_then(|r| r.split_once('.')) else {
        return gguf.to_string();
    };
    let (base, suffix) = tail.rsplit_once('.').unwrap_or((tail, ""));
    let hf = match base {
        "attn_norm" => "input_layernorm",
        "attn_qkv" => "self_attn.qkv_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "post_attention_norm" => "post_attention_layernorm",
        "post_ffw_norm" => "post_feedforward_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_norm" if arch == Arch::Gemma3 => "pre_feedforward_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" if arch == Arch::Phi3 => "mlp.gate_up_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        other => other,
    };
    format!("model.layers.{bid}.{hf}.{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for hf in [
            "model.layers.3.self_attn.q_proj.weight",
            "model.layers.12.mlp.down_proj.weight",
            "lm_head.weight",
            "model.layers.0.self_attn.k_proj.bias",
        ] {
            let g = gguf_name(Arch::Llama, hf).unwrap().unwrap();
            assert_eq!(hf_name_of(Arch::Llama, &g), hf);
        }
        assert!(gguf_name(Arch::Llama, "model.layers.0.mlp.experts.0.weight").is_err());
        assert_eq!(
            gguf_name(Arch::Llama, "model.layers.0.self_attn.rotary_emb.inv_freq").unwrap(),
            None
        );
        let g = |hf| gguf_name(Arch::Gemma3, hf).unwrap();
        assert_eq!(
            g("language_model.model.layers.2.pre_feedforward_layernorm.weight").as_deref(),
            Some("blk.2.ffn_norm.weight")
        );
        assert_eq!(
            g("vision_tower.vision_model.embeddings.patch_embedding.weight"),
            None
        );
        assert_eq!(
            gguf_name(Arch::Phi3, "model.layers.1.mlp.gate_up_proj.weight")
                .unwrap()
                .as_deref(),
            Some("blk.1.ffn_up.weight")
        );
        assert!(gguf_name(Arch::Phi3, "model.layers.1.mlp.gate_proj.weight").is_err());
    }
}

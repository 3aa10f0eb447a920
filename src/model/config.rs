//! Model hyper-parameters from GGUF metadata.

use crate::gguf::Gguf;

use super::family::{self, Family, Meta};
use super::ModelError;

/// Architectures the decoder runs; what each computes is its [`Family`] description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3, TinyLlama, Mistral, SmolLM: RoPE on adjacent pairs (GGUF Q/K rows are permuted
    /// by the converter for it), no biases.
    Llama,
    /// Qwen2 / Qwen2.5: Q/K/V biases, NEOX-style RoPE (pairs i and i + head_dim/2).
    Qwen2,
    /// Qwen3 (dense): Q/K norms, NEOX RoPE, head size from `attention.key_length`.
    Qwen3,
    /// Gemma 3 text models: sliding-window and global layers, GeGLU, post-norms.
    Gemma3,
    /// Phi-3 / Phi-3.5 / Phi-4-mini: fused QKV and gate+up, partial rotary.
    Phi3,
    /// SmolLM3: llama with every fourth layer unrotated.
    SmolLM3,
}

pub const SUPPORTED_ARCHS: &str = "llama, qwen2, qwen3, gemma3, phi3, smollm3";

impl Arch {
    pub fn from_name(name: &str) -> Result<Arch, ModelError> {
        match name {
            "llama" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            "qwen3" => Ok(Arch::Qwen3),
            "gemma3" => Ok(Arch::Gemma3),
            "phi3" => Ok(Arch::Phi3),
            "smollm3" => Ok(Arch::SmolLM3),
            other => Err(ModelError::UnsupportedArch {
                arch: other.to_string(),
            }),
        }
    }

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
}

/// Everything the forward pass needs to know about the model's shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub arch: Arch,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    /// Context length the model was trained with.
    pub n_ctx_train: usize,
    pub rope_base: f32,
    /// Linear RoPE scaling (`rope.scaling.factor` with type linear): positions are multiplied by it.
    pub rope_freq_scale: f32,
    pub rms_eps: f32,
    /// What the layers compute: norms, RoPE, attention variants, FFN kind.
    pub family: Family,
}

impl Config {
    pub fn from_gguf(g: &Gguf) -> Result<Config, ModelError> {
        let arch = Arch::from_name(g.architecture()?)?;
        let a = arch.name();
        let key = |k: &str| format!("{a}.{k}");
        let u = |k: &str| -> Result<usize, ModelError> { Ok(g.get_u32(&key(k))? as usize) };
        let n_embd = u("embedding_length")?;
        let n_layer = u("block_count")?;
        let n_head = u("attention.head_count")?;
        let n_head_kv = match g.get(&key("attention.head_count_kv")) {
            Some(_) => u("attention.head_count_kv")?,
            None => n_head,
        };
        let n_ff = u("feed_forward_length")?;
        let n_ctx_train = u("context_length")?;
        let rms_eps = g.get_f32(&key("attention.layer_norm_rms_epsilon"))?;
        let rope_base = match g.get(&key("rope.freq_base")) {
            Some(_) => g.get_f32(&key("rope.freq_base"))?,
            None => 10000.0,
        };
        let mut rope_freq_scale = 1.0f32;
        if let Ok(t) = g.get_str(&key("rope.scaling.type")) {
            match t {
                "none" => {}
                "linear" => {
                    let f = g.get_f32(&key("rope.scaling.factor"))?;
                    if !(f.is_finite() && f > 0.0) {
                        return Err(ModelError::RopeScalingFactor {
                            key: key("rope.scaling.factor"),
                            factor: f,
                        });
                    }
                    rope_freq_scale = 1.0 / f;
                }
                // Llama-3 style scaling is carried by the `rope_freqs.weight` tensor.
                "llama3" => {}
                other => {
                    return Err(ModelError::RopeScalingType {
                        key: key("rope.scaling.type"),
                        found: other.to_string(),
                    })
                }
            }
        }
        let head_dim = match g.get(&key("attention.key_length")) {
            Some(_) => u("attention.key_length")?,
            None => {
                if n_head == 0 || n_embd % n_head != 0 {
                    return Err(ModelError::HeadsDoNotDivide {
                        arch: a,
                        n_embd,
                        n_head,
                    });
                }
                n_embd / n_head
            }
        };
        // Consistency of the metadata with the tensors and itself, as llama.cpp's loader checks it
        // (it refuses or warns where ferrolm used to load silently).
        for t in g.tensors() {
            let layer = t
                .name
                .strip_prefix("blk.")
                .and_then(|r| r.split('.').next());
            if let Some(i) = layer.and_then(|i| i.parse::<usize>().ok()) {
                if i >= n_layer {
                    return Err(ModelError::LayerOutOfRange {
                        arch: a,
                        n_layer,
                        tensor: t.name.to_string(),
                        layer: i,
                    });
                }
            }
        }
        if let Some(v) = g.get(&key("attention.value_length")) {
            if v.as_i128() != Some(head_dim as i128) {
                return Err(ModelError::BadMetadata {
                    key: key("attention.value_length"),
                    why: format!("must equal the key length, {head_dim}"),
                });
            }
        }
        let family = family::describe(
            arch,
            &Meta {
                g,
                arch: a,
                n_layer,
                n_embd,
                head_dim,
                partial_rotary: arch == Arch::Phi3,
            },
        )?;
        let n_vocab_rows = match g.tensor("token_embd.weight") {
            Some(t) => t.dims[1] as usize,
            None => return Err(ModelError::MissingTensor("token_embd.weight".into())),
        };
        if let Ok(toks) = g.get_array("tokenizer.ggml.tokens") {
            if toks.len() != n_vocab_rows {
                return Err(ModelError::VocabMismatch {
                    n_tokens: toks.len(),
                    n_rows: n_vocab_rows,
                });
            }
            for k in [
                "bos",
                "eos",
                "eot",
                "eom",
                "unknown",
                "padding",
                "seperator",
                "cls",
                "mask",
            ] {
                let k = format!("tokenizer.ggml.{k}_token_id");
                if let Some(v) = g.get(&k) {
                    let id = v.as_i128().unwrap_or(-1);
                    // -1 is what some converters write for "none".
                    if id != -1 && !(0..toks.len() as i128).contains(&id) {
                        return Err(ModelError::SpecialTokenOutOfRange {
                            key: k,
                            id,
                            n_vocab: toks.len(),
                        });
                    }
                }
            }
        }
        let n_vocab = n_vocab_rows;
        let cfg = Config {
            arch,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_vocab,
            n_ctx_train,
            rope_base,
            rope_freq_scale,
            rms_eps,
            family,
        };
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ModelError> {
        let arch = self.arch.name();
        if self.n_embd == 0
            || self.n_layer == 0
            || self.n_head == 0
            || self.n_ff == 0
            || self.n_vocab == 0
        {
            return Err(ModelError::ZeroSize { arch });
        }
        if self.n_head_kv == 0 || self.n_head % self.n_head_kv != 0 {
            return Err(ModelError::KvHeads {
                arch,
                n_head: self.n_head,
                n_head_kv: self.n_head_kv,
            });
        }
        if self.head_dim == 0 || self.head_dim % 2 != 0 || self.head_dim > 1024 {
            return Err(ModelError::HeadDim {
                arch,
                head_dim: self.head_dim,
            });
        }
        if !(self.rms_eps > 0.0 && self.rms_eps < 1.0) {
            return Err(ModelError::OutOfRange {
                arch,
                key: "attention.layer_norm_rms_epsilon",
                value: self.rms_eps,
            });
        }
        if !(self.rope_base > 0.0 && self.rope_base.is_finite()) {
            return Err(ModelError::OutOfRange {
                arch,
                key: "rope.freq_base",
                value: self.rope_base,
            });
        }
        if self.n_layer > 4096 || self.n_embd > 1 << 16 || self.n_ff > 1 << 18 || self.n_head > 1024
        {
            return Err(ModelError::Implausible {
                arch,
                n_embd: self.n_embd,
                n_layer: self.n_layer,
                n_ff: self.n_ff,
                n_head: self.n_head,
            });
        }
        Ok(())
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

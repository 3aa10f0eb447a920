//! Model families as descriptions: what a family's layers compute (norms, RoPE style, base,
//! rotated dimensions and per-layer switch, attention window and scale, FFN kind, fused tensors,
//! embedding scale, post-norms), read from the file once. `forward` is one function over these
//! switches; a family is one small file here that fills them from its metadata.

use crate::gguf::Gguf;

use super::ModelError;

mod gemma3;
mod llama;
mod phi3;
mod qwen2;
mod qwen3;
mod smollm3;

/// The gated FFN's activation: `down(act(gate) * up)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ffn {
    /// SiLU (SwiGLU): llama, qwen2/3, phi3, smollm3.
    Silu,
    /// GELU, tanh approximation (GeGLU): Gemma 3.
    Gelu,
}

/// How a family's layers compute.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// RoPE rotates the pairs (i, i + n_rot/2) ("NEOX"); otherwise (2i, 2i + 1) ("normal").
    pub rope_neox: bool,
    /// Leading dimensions of each head that RoPE rotates; the rest pass through (Phi-3 partial
    /// rotary).
    pub n_rot: usize,
    /// Per layer: rotated by RoPE (SmolLM3 leaves every fourth layer unrotated).
    pub rope_layers: Vec<bool>,
    /// Per layer: sliding-window attention over the last `n_swa` positions (Gemma 3's local
    /// layers).
    pub swa_layers: Vec<bool>,
    /// The window of the sliding-window layers (0: none).
    pub n_swa: usize,
    /// RoPE base and linear frequency scale of the sliding-window layers (the others use the
    /// model's `rope_base` and `rope_freq_scale`).
    pub rope_base_swa: f32,
    pub rope_freq_scale_swa: f32,
    /// cos and sin multiplied by this (LongRoPE's attention factor; 1 elsewhere).
    pub rope_mscale: f32,
    /// The attention's scale of q·k.
    pub attn_scale: f32,
    /// Apply `attn_scale` to the queries before the dot products (Gemma 3, Phi-3, as llama.cpp
    /// does for them) rather than to the scores.
    pub scale_queries: bool,
    /// RMS norms of each head's queries and keys before RoPE (`attn_q_norm`, `attn_k_norm`).
    pub qk_norm: bool,
    /// RMS norms of the attention and FFN outputs before their residual adds
    /// (`post_attention_norm`, `post_ffw_norm`).
    pub post_norms: bool,
    /// Token embeddings multiplied by this (Gemma 3: sqrt(n_embd)).
    pub embd_scale: Option<f32>,
    pub ffn: Ffn,
    /// Q, K and V in one `attn_qkv` tensor, gate and up in one `ffn_up` (gate rows first).
    pub fused: bool,
    /// Q/K/V biases are required (qwen2); otherwise they are used when present.
    pub qkv_bias: bool,
    /// LongRoPE frequency factors: `rope_factors_short` up to this context, `_long` above (0: none).
    pub longrope_ctx: usize,
    /// Logits soft-capped to cap * tanh(logit / cap) (Gemma's `final_logit_softcapping`).
    pub final_softcap: Option<f32>,
}

/// What a family file reads its description from: the file and the shape already read.
pub(super) struct Meta<'a> {
    pub g: &'a Gguf,
    /// The architecture's key prefix.
    pub arch: &'static str,
    pub n_layer: usize,
    pub n_embd: usize,
    pub head_dim: usize,
    /// The family may rotate fewer dimensions than the head has (`rope.dimension_count`).
    pub partial_rotary: bool,
}

impl Meta<'_> {
    pub fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }

    /// An optional u32 key.
    pub fn opt_u32(&self, k: &str) -> Result<Option<usize>, ModelError> {
        let key = self.key(k);
        Ok(match self.g.get(&key) {
            Some(_) => Some(self.g.get_u32(&key)? as usize),
            None => None,
        })
    }

    /// An optional f32 key.
    pub fn opt_f32(&self, k: &str) -> Result<Option<f32>, ModelError> {
        let key = self.key(k);
        Ok(match self.g.get(&key) {
            Some(_) => Some(self.g.get_f32(&key)?),
            None => None,
        })
    }

    /// The rotary dimensions: `rope.dimension_count`, the whole head when absent; for a family
    /// without partial rotary anything else is an error naming the key.
    pub fn n_rot(&self) -> Result<usize, ModelError> {
        let n_rot = self
            .opt_u32("rope.dimension_count")?
            .unwrap_or(self.head_dim);
        let ok = if self.partial_rotary {
            n_rot > 0 && n_rot <= self.head_dim && n_rot % 2 == 0
        } else {
            n_rot == self.head_dim
        };
        if !ok {
            return Err(ModelError::PartialRotary {
                arch: self.arch,
                n_rot: n_rot as i128,
                head_dim: self.head_dim,
            });
        }
        Ok(n_rot)
    }

    /// The llama-like description the families start from: normal RoPE over the whole head on
    /// every layer, no window, scores scaled by 1/sqrt(head_dim), SwiGLU, nothing fused.
    pub fn base(&self) -> Result<Family, ModelError> {
        Ok(Family {
            rope_neox: false,
            n_rot: self.n_rot()?,
            rope_layers: vec![true; self.n_layer],
            swa_layers: vec![false; self.n_layer],
            n_swa: 0,
            rope_base_swa: 0.0,
            rope_freq_scale_swa: 1.0,
            rope_mscale: 1.0,
            attn_scale: 1.0 / (self.head_dim as f32).sqrt(),
            scale_queries: false,
            qk_norm: false,
            post_norms: false,
            embd_scale: None,
            ffn: Ffn::Silu,
            fused: false,
            qkv_bias: false,
            longrope_ctx: 0,
            final_softcap: None,
        })
    }
}

/// The description of `arch` from the file.
pub(super) fn describe(arch: super::Arch, m: &Meta) -> Result<Family, ModelError> {
    use super::Arch;
    match arch {
        Arch::Llama => llama::describe(m),
        Arch::Qwen2 => qwen2::describe(m),
        Arch::Qwen3 => qwen3::describe(m),
        Arch::Gemma3 => gemma3::describe(m),
        Arch::Phi3 => phi3::describe(m),
        Arch::SmolLM3 => smollm3::describe(m),
    }
}

//! Gemma 3 (text): embeddings scaled by sqrt(n_embd); per-head RMS norms of Q and K; norms of the
//! attention and FFN outputs before the residual adds; a GELU-gated FFN; NEOX RoPE; sliding-window
//! (local) layers, by default five to every global one
//! (`attention.sliding_window_pattern`: a per-layer array or the period), the local ones with
//! RoPE base `rope.freq_base_swa` (10000) and no frequency scaling; queries scaled by
//! 1/sqrt(head_dim) (1/sqrt(n_embd / n_head) for the 62-layer 27B model); the logits soft-capped
//! when `final_logit_softcapping` is set. As llama.cpp's `llama_model_gemma3`.

use super::{Family, Ffn, Meta};
use crate::model::ModelError;

/// The default period of local and global layers (five local, then one global).
const SWA_PATTERN: usize = 6;

pub(super) fn describe(m: &Meta) -> Result<Family, ModelError> {
    let n_swa = m.opt_u32("attention.sliding_window")?.unwrap_or(0);
    let swa_layers = if n_swa == 0 {
        vec![false; m.n_layer]
    } else {
        swa_pattern(m)?
    };
    let n_head = m.g.get_u32(&m.key("attention.head_count"))? as usize;
    let attn_scale = if m.n_layer == 62 {
        1.0 / ((m.n_embd / n_head) as f32).sqrt()
    } else {
        1.0 / (m.head_dim as f32).sqrt()
    };
    let rope_base_swa = m.opt_f32("rope.freq_base_swa")?.unwrap_or(10000.0);
    if !(rope_base_swa > 0.0 && rope_base_swa.is_finite()) {
        return Err(ModelError::BadMetadata {
            key: m.key("rope.freq_base_swa"),
            why: format!("= {rope_base_swa} must be a positive number"),
        });
    }
    let softcap = m.opt_f32("final_logit_softcapping")?.unwrap_or(0.0);
    if !(softcap >= 0.0 && softcap.is_finite()) {
        return Err(ModelError::BadMetadata {
            key: m.key("final_logit_softcapping"),
            why: format!("= {softcap} must be zero (off) or a positive number"),
        });
    }
    Ok(Family {
        rope_neox: true,
        swa_layers,
        n_swa,
        rope_base_swa,
        rope_freq_scale_swa: 1.0,
        attn_scale,
        scale_queries: true,
        qk_norm: true,
        post_norms: true,
        embd_scale: Some((m.n_embd as f32).sqrt()),
        ffn: Ffn::Gelu,
        final_softcap: (softcap > 0.0).then_some(softcap),
        ..m.base()?
    })
}

/// Which layers are local: `attention.sliding_window_pattern` as a per-layer array (non-zero =
/// local) or as the period n (layer i local when i % n < n - 1; 0: all local), else period 6.
fn swa_pattern(m: &Meta) -> Result<Vec<bool>, ModelError> {
    let key = m.key("attention.sliding_window_pattern");
    let Some(v) = m.g.get(&key) else {
        return Ok(period(m.n_layer, SWA_PATTERN));
    };
    if let Some(n) = v.as_i128() {
        let n = usize::try_from(n).map_err(|_| ModelError::BadMetadata {
            key: key.clone(),
            why: format!("= {n} must not be negative"),
        })?;
        return Ok(period(m.n_layer, n));
    }
    let a = m.g.get_array(&key)?;
    let layers: Vec<bool> = a
        .iter()
        .map(|x| x.as_i128().map(|i| i != 0))
        .collect::<Option<_>>()
        .ok_or_else(|| ModelError::BadMetadata {
            key: key.clone(),
            why: "must be an integer or an array of booleans".into(),
        })?;
    if layers.len() != m.n_layer {
        return Err(ModelError::BadMetadata {
            key,
            why: format!("has {} entries for {} layers", layers.len(), m.n_layer),
        });
    }
    Ok(layers)
}

/// llama.cpp's `set_swa_pattern(n)`: layer i is local when n == 0 or i % n < n - 1.
fn period(n_layer: usize, n: usize) -> Vec<bool> {
    (0..n_layer).map(|i| n == 0 || i % n < n - 1).collect()
}

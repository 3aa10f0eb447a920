//! Phi-3, Phi-3.5-mini, Phi-4-mini: Q, K and V in one `attn_qkv` tensor and gate and up in one
//! `ffn_up` (gate rows first); NEOX RoPE over the leading `rope.dimension_count` dimensions
//! (partial rotary); queries scaled by 1/sqrt(head_dim) before the dot products; LongRoPE factor
//! tensors (`rope_factors_short`/`_long`, switched at `rope.scaling.original_context_length`)
//! when present. The sliding window in the metadata is not applied: llama.cpp disables it for
//! this architecture, and ferrolm follows llama.cpp.

use super::{Family, Meta};
use crate::model::ModelError;

pub(super) fn describe(m: &Meta) -> Result<Family, ModelError> {
    let longrope_ctx = if m.g.tensor("rope_factors_long.weight").is_some() {
        let key = m.key("rope.scaling.original_context_length");
        m.opt_u32("rope.scaling.original_context_length")?
            .filter(|&n| n > 0)
            .ok_or_else(|| ModelError::BadMetadata {
                key,
                why: "is required (and non-zero) with LongRoPE factor tensors".into(),
            })?
    } else {
        0
    };
    Ok(Family {
        rope_neox: true,
        scale_queries: true,
        fused: true,
        longrope_ctx,
        rope_mscale: m.opt_f32("rope.scaling.attn_factor")?.unwrap_or(1.0),
        ..m.base()?
    })
}

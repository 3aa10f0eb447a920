//! Qwen3 (dense): per-head RMS norms of Q and K before RoPE, NEOX RoPE, no biases; the head size
//! comes from `attention.key_length` (Qwen3-0.6B: 128 where n_embd / n_head is 64).

use super::{Family, Meta};
use crate::model::ModelError;

pub(super) fn describe(m: &Meta) -> Result<Family, ModelError> {
    Ok(Family {
        rope_neox: true,
        qk_norm: true,
        ..m.base()?
    })
}

//! Qwen2 / Qwen2.5: Q/K/V biases, NEOX RoPE.

use super::{Family, Meta};
use crate::model::ModelError;

pub(super) fn describe(m: &Meta) -> Result<Family, ModelError> {
    Ok(Family {
        rope_neox: true,
        qkv_bias: true,
        ..m.base()?
    })
}

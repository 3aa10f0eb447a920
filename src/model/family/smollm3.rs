//! SmolLM3: llama with every fourth layer unrotated. `smollm3.no_rope_layers` lists per layer
//! whether it uses RoPE (1) or not (0); without it, layers 3, 7, 11, ... skip RoPE (llama.cpp's
//! fixed step of 4).

use super::{Family, Meta};
use crate::model::ModelError;

pub(super) fn describe(m: &Meta) -> Result<Family, ModelError> {
    let key = m.key("no_rope_layers");
    let rope_layers = match m.g.get(&key) {
        None => (0..m.n_layer).map(|i| (i + 1) % 4 != 0).collect(),
        Some(_) => {
            let a = m.g.get_array(&key)?;
            let v: Vec<bool> = a
                .iter()
                .map(|x| x.as_i128().map(|i| i != 0))
                .collect::<Option<_>>()
                .ok_or_else(|| ModelError::BadMetadata {
                    key: key.clone(),
                    why: "must be an array of integers".into(),
                })?;
            if v.len() != m.n_layer {
                return Err(ModelError::BadMetadata {
                    key,
                    why: format!("has {} entries for {} layers", v.len(), m.n_layer),
                });
            }
            v
        }
    };
    Ok(Family {
        rope_layers,
        ..m.base()?
    })
}

//! Llama 2/3, TinyLlama, Mistral, SmolLM/SmolLM2: the base description (normal RoPE: the
//! converter permutes the Q/K rows for it; biases used when a file has them).

use super::{Family, Meta};
use crate::model::ModelError;

pub(super) fn describe(m: &Meta) -> Result<Family, ModelError> {
    m.base()
}

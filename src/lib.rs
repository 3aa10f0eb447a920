//! ferrolm: run Llama-family GGUF models on CPUs.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod chat;
pub mod generate;
pub mod gguf;
pub mod kv_cache;
pub mod model;
pub mod output;
pub mod sampler;
pub mod tokenizer;

pub use ferrolm_kernels as kernels;

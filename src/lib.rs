//! ferrolm: run Llama-family GGUF models on CPUs.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod gguf;

pub use ferrolm_kernels as kernels;

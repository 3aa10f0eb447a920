//! ferrolm: run Llama-family GGUF models on CPUs.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod chat;
pub mod generate;
pub mod gguf;
pub mod grammar;
pub mod kv_cache;
pub mod model;
pub mod output;
pub mod sampler;
pub mod state;
pub mod tokenizer;

pub use ferrolm_kernels as kernels;

/// `e` and its sources, outermost first, joined by ": ": the one line the CLI, the converter and
/// the C API show. (An error's own message never repeats its source; the chain carries it.)
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

//! ferrolm's C ABI (crate `ferrolm-capi`, built as `libferrolm.so` / `libferrolm.a`): the only place
//! in ferrolm with `extern "C"`. `capi/include/ferrolm.h` is generated from these files by cbindgen
//! (`scripts/gen-header.sh`); the doc comments here become the header's.
//!
//! Design (after rure / regex-capi):
//! - opaque handles: `ferrolm_model` (the mapped weights and the tokenizer; shared by any number
//!   of contexts and threads) and `ferrolm_context` (KV cache, scratch, sampler state; one thread
//!   at a time);
//! - every fallible function returns a `ferrolm_status`; results come back through out-parameters;
//!   the message of a failure is owned by ferrolm: `ferrolm_context_error(ctx)` for calls on a
//!   context, `ferrolm_last_error()` (per thread) for every failing call;
//! - parameter structs begin with `size_t struct_size` and have no padding, so fields can be
//!   appended in later versions without breaking callers built against older headers;
//! - every entry point runs inside `std::panic::catch_unwind`: a panic becomes `FERROLM_PANIC`
//!   and never unwinds into C.
//!
//! Safety contract for callers (the usual C one): a handle passed in must come from the matching
//! `*_new`/`*_load` and not be freed yet; a `(pointer, length)` pair must describe readable (or,
//! for outputs, writable) memory. Everything that can be checked (NULL, UTF-8, buffer sizes,
//! token ids, parameter values) is checked and reported as a status.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]
#![deny(unsafe_op_in_unsafe_fn)]

// The modules in the order the header presents them: cbindgen follows `mod` declarations in
// order, and the comment line between each keeps rustfmt from sorting them.

// the ABI's constants, status codes, handles and structs
mod types;
// errors, the last-error slot, panic guards
mod error;
// checking what C passes in
mod args;
// entry points: version, status strings, default parameters
mod version;
// entry points: loading a model, its metadata, the tokenizer
mod model;
// entry points: contexts, evaluation, logits, the sampler
mod context;
// entry points: generation
mod generate;

#[cfg(test)]
mod tests;

pub use context::*;
pub use generate::*;
pub use model::*;
pub use types::*;
pub use version::*;

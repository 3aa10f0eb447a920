//! Fuzz target `gguf_reader`: arbitrary bytes into `Gguf::validate`, and when they parse, into
//! `Gguf::from_bytes`, a walk of every metadata value and tensor view, and a writer round trip
//! (see `ferrolm_fuzz::check`).
//!
//! With the default `libfuzzer` feature this is a cargo-fuzz target; built with
//! `--no-default-features` it is a standalone driver that mutates the seeds itself.
#![cfg_attr(feature = "libfuzzer", no_main)]

#[cfg(feature = "libfuzzer")]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrolm_fuzz::check(data);
});

#[cfg(not(feature = "libfuzzer"))]
fn main() -> std::process::ExitCode {
    ferrolm_fuzz::drive::main()
}

//! Writes the fuzz seeds in `fuzz/seeds/` (checked in; rerun only to change them):
//!
//! - `every_type.gguf`: every metadata value type, nested arrays, a tensor of each format
//!   (`tests/common/every_type.rs`, shared with the GGUF tests).
//! - `v2_empty.gguf`: a GGUF v2 header with no keys and no tensors.
//! - `vocab_gpt2_mini.gguf`: the llama.cpp GPT-2 vocab file's metadata, arrays cut to 48 elements
//!   (from `tests/data/tokenize/llamacpp/ggml-vocab-gpt-2.gguf`: llama.cpp reference data, copied
//!   into tests/data).
//! - `smollm2_mini.gguf`: SmolLM2's metadata with arrays cut to 48 elements, and one small tensor of
//!   each of its types holding the head of the real tensor's bytes (from models/, when present).
//!
//! Usage: cargo run --manifest-path fuzz/Cargo.toml --no-default-features --bin make_seeds [OUT_DIR]

use std::path::{Path, PathBuf};

use ferrolm::gguf::{Gguf, GgufError, GgufWriter, OwnedValue, TensorSpec};
use ferrolm::kernels::GgmlType;

const ARRAY_KEEP: usize = 48;

#[path = "../../../tests/common/every_type.rs"]
mod every_type_sample;

fn every_type() -> Result<Vec<u8>, GgufError> {
    let (w, data) = every_type_sample::sample();
    let refs: Vec<&[u8]> = data.iter().map(|d| d.as_slice()).collect();
    w.write_all(Vec::new(), &refs)
}

fn v2_empty() -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b
}

/// A value with every array cut to `ARRAY_KEEP` elements.
fn cut(v: OwnedValue) -> OwnedValue {
    match v {
        OwnedValue::Array(t, mut items) => {
            items.truncate(ARRAY_KEEP);
            OwnedValue::Array(t, items.into_iter().map(cut).collect())
        }
        v => v,
    }
}

/// `src`'s metadata (arrays cut), plus one `[block, 2]` tensor per type found in `src` holding the
/// head of the first such tensor's bytes, when `with_tensors`.
fn miniature(src: &Path, with_tensors: bool) -> Result<Vec<u8>, GgufError> {
    let g = Gguf::open(src)?;
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata() {
        w.set(k, cut(v.to_owned_value()));
    }
    let mut data: Vec<Vec<u8>> = Vec::new();
    let mut done: Vec<GgmlType> = Vec::new();
    for t in g.tensors().filter(|_| with_tensors) {
        if done.contains(&t.ty) {
            continue;
        }
        done.push(t.ty);
        let spec = TensorSpec { name: t.name.to_string(), ty: t.ty, dims: vec![t.ty.block_elems() as u64, 2] };
        let n = spec.n_bytes().unwrap_or(0) as usize;
        if t.data.len() < n {
            continue;
        }
        data.push(t.data[..n].to_vec());
        w.add_tensor(spec)?;
    }
    let refs: Vec<&[u8]> = data.iter().map(|d| d.as_slice()).collect();
    w.write_all(Vec::new(), &refs)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("..")).to_path_buf();
    let out = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| root.join("fuzz/seeds"));
    std::fs::create_dir_all(&out)?;
    let write = |name: &str, bytes: Vec<u8>| -> std::io::Result<()> {
        println!("{name}: {} bytes", bytes.len());
        std::fs::write(out.join(name), bytes)
    };
    write("every_type.gguf", every_type()?)?;
    write("v2_empty.gguf", v2_empty())?;
    let vocab = root.join("tests/data/tokenize/llamacpp/ggml-vocab-gpt-2.gguf");
    if vocab.exists() {
        write("vocab_gpt2_mini.gguf", miniature(&vocab, false)?)?;
    } else {
        eprintln!("skipping vocab_gpt2_mini.gguf: {} not found", vocab.display());
    }
    let smol = root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if smol.exists() {
        write("smollm2_mini.gguf", miniature(&smol, true)?)?;
    } else {
        eprintln!("skipping smollm2_mini.gguf: {} not found (scripts/fetch-models.sh smollm2)", smol.display());
    }
    Ok(())
}

//! `ferrolm synth`: write a GGUF with random weights in the shape of a named model, in any type we
//! run. Speed does not depend on trained values, so users can size their hardware with it (and the
//! benchmarks use it for models too large to ship).

use std::io::BufWriter;
use std::path::PathBuf;

use ferrolm::gguf::{GgufWriter, OwnedValue, TensorSpec, ValueType};
use ferrolm::kernels::GgmlType;
use ferrolm::output::AtomicOutput;
use ferrolm_quantize::ftype::{FileType, TypeChooser};
use half::f16;

use super::CliError;

/// A model shape.
pub struct Shape {
    pub name: &'static str,
    pub arch: &'static str,
    pub n_embd: u64,
    pub n_layer: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    pub n_ff: u64,
    pub n_vocab: u64,
    pub n_ctx: u64,
    pub rope_base: f32,
    pub tied: bool,
    /// Head size (`attention.key_length`); 0: n_embd / n_head.
    pub head_dim: u64,
    /// Rotated dimensions (`rope.dimension_count`, phi3); 0: the whole head.
    pub n_rot: u64,
    /// Sliding window (gemma3's `attention.sliding_window`); 0: none.
    pub n_swa: u64,
    /// LongRoPE (phi3): the original context length, with `rope_factors_short/long` tensors and
    /// the attention factor llama.cpp's converter writes; 0: none.
    pub longrope_orig: u64,
}

/// The fields the shapes below share unless they say otherwise.
const BASE: Shape = Shape {
    name: "",
    arch: "llama",
    n_embd: 0,
    n_layer: 0,
    n_head: 0,
    n_head_kv: 0,
    n_ff: 0,
    n_vocab: 0,
    n_ctx: 0,
    rope_base: 10000.0,
    tied: true,
    head_dim: 0,
    n_rot: 0,
    n_swa: 0,
    longrope_orig: 0,
};

/// The small test shapes of the other families (the SmolLM2 vocabulary, F16 weights in the
/// tests): n_embd 512, 8 heads / 2 KV heads of 64, n_ff 1408.
const TEST: Shape = Shape {
    n_embd: 512,
    n_layer: 4,
    n_head: 8,
    n_head_kv: 2,
    n_ff: 1408,
    n_vocab: 49152,
    n_ctx: 4096,
    rope_base: 1000000.0,
    tied: false,
    head_dim: 64,
    ..BASE
};

pub const SHAPES: &[Shape] = &[
    Shape {
        name: "tinyllama-1.1b",
        arch: "llama",
        n_embd: 2048,
        n_layer: 22,
        n_head: 32,
        n_head_kv: 4,
        n_ff: 5632,
        n_vocab: 32000,
        n_ctx: 2048,
        rope_base: 10000.0,
        tied: false,
        ..BASE
    },
    Shape {
        name: "llama-3.2-1b",
        arch: "llama",
        n_embd: 2048,
        n_layer: 16,
        n_head: 32,
        n_head_kv: 8,
        n_ff: 8192,
        n_vocab: 128256,
        n_ctx: 131072,
        rope_base: 500000.0,
        tied: true,
        ..BASE
    },
    Shape {
        name: "qwen2.5-0.5b",
        arch: "qwen2",
        n_embd: 896,
        n_layer: 24,
        n_head: 14,
        n_head_kv: 2,
        n_ff: 4864,
        n_vocab: 151936,
        n_ctx: 32768,
        rope_base: 1000000.0,
        tied: true,
        ..BASE
    },
    Shape {
        name: "smollm2-135m",
        arch: "llama",
        n_embd: 576,
        n_layer: 30,
        n_head: 9,
        n_head_kv: 3,
        n_ff: 1536,
        n_vocab: 49152,
        n_ctx: 8192,
        rope_base: 100000.0,
        tied: true,
        ..BASE
    },
    Shape {
        name: "qwen3-0.6b",
        arch: "qwen3",
        n_embd: 1024,
        n_layer: 28,
        n_head: 16,
        n_head_kv: 8,
        n_ff: 3072,
        n_vocab: 151936,
        n_ctx: 40960,
        rope_base: 1000000.0,
        head_dim: 128,
        ..BASE
    },
    Shape {
        name: "gemma3-270m",
        arch: "gemma3",
        n_embd: 640,
        n_layer: 18,
        n_head: 4,
        n_head_kv: 1,
        n_ff: 2048,
        n_vocab: 262144,
        n_ctx: 32768,
        rope_base: 1000000.0,
        head_dim: 256,
        n_swa: 512,
        ..BASE
    },
    Shape {
        name: "phi-4-mini",
        arch: "phi3",
        n_embd: 3072,
        n_layer: 32,
        n_head: 24,
        n_head_kv: 8,
        n_ff: 8192,
        n_vocab: 200064,
        n_ctx: 4096,
        head_dim: 128,
        n_rot: 96,
        ..BASE
    },
    Shape {
        name: "smollm3-3b",
        arch: "smollm3",
        n_embd: 2048,
        n_layer: 36,
        n_head: 16,
        n_head_kv: 4,
        n_ff: 11008,
        n_vocab: 128256,
        n_ctx: 65536,
        rope_base: 5000000.0,
        ..BASE
    },
    Shape {
        name: "test-qwen3",
        arch: "qwen3",
        ..TEST
    },
    Shape {
        name: "test-phi3",
        arch: "phi3",
        rope_base: 10000.0,
        n_rot: 48,
        ..TEST
    },
    Shape {
        name: "test-phi3-longrope",
        arch: "phi3",
        rope_base: 10000.0,
        n_rot: 48,
        longrope_orig: 256,
        ..TEST
    },
    Shape {
        name: "test-smollm3",
        arch: "smollm3",
        ..TEST
    },
    Shape {
        name: "test-gemma3",
        arch: "gemma3",
        n_layer: 6,
        n_swa: 16,
        ..TEST
    },
];

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model shape: tinyllama-1.1b, llama-3.2-1b, qwen2.5-0.5b, smollm2-135m, qwen3-0.6b,
    /// gemma3-270m, phi-4-mini, smollm3-3b, or the small test shapes test-qwen3, test-phi3,
    /// test-phi3-longrope, test-smollm3, test-gemma3.
    #[arg(long, default_value = "tinyllama-1.1b")]
    pub shape: String,
    /// Weight type: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, or the mixes Q4_K_M, Q5_K_M.
    #[arg(long = "type", default_value = "Q4_0")]
    pub ty: String,
    /// Output file.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Overwrite an existing output.
    #[arg(long)]
    pub force: bool,
    /// Copy the `tokenizer.*` metadata from this GGUF (its vocabulary must have the shape's size),
    /// so that tools that need a vocabulary (llama.cpp's llama-bench) load the file.
    #[arg(long = "vocab-from")]
    pub vocab_from: Option<PathBuf>,
}

/// The per-tensor types: a file type name (`Q4_K_M`, `Q4_0`, ...) takes llama-quantize's rules, a
/// plain weight type that is not a file type (`Q4_K`, `Q2_K`, ...) llama-quantize `--pure`'s. Both
/// come from [`ferrolm::ftype`], the converter's own copy, fallbacks included.
fn type_chooser(ty: &str, names: &[&str], n_layer: u64) -> Result<TypeChooser, CliError> {
    if let Ok(ft) = FileType::parse(ty) {
        return Ok(TypeChooser::new(
            ft,
            names.iter().copied(),
            n_layer as usize,
        ));
    }
    let t = GgmlType::from_name(&ty.to_ascii_uppercase()).ok_or_else(|| {
        format!("unknown type '{ty}' (a file type such as Q4_K_M, or a weight type such as Q4_K)")
    })?;
    if matches!(t, GgmlType::Q8_1 | GgmlType::Q8_K) {
        return Err(format!("{t} is an activation format, not a weight type").into());
    }
    Ok(TypeChooser::pure(t))
}

/// SplitMix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Random tensor bytes of type `ty`: random quantized values with small, finite scales.
fn random_bytes(ty: GgmlType, n_bytes: usize, rng: &mut Rng, scale: f32) -> Vec<u8> {
    let mut b = vec![0u8; n_bytes];
    for c in b.chunks_mut(8) {
        let r = rng.next().to_le_bytes();
        c.copy_from_slice(&r[..c.len()]);
    }
    let small =
        |rng: &mut Rng| f16::from_f32(scale * (0.5 + 0.5 * rng.unit().abs()) / 16.0).to_le_bytes();
    let bb = ty.block_bytes();
    match ty {
        GgmlType::F32 => {
            for c in b.chunks_exact_mut(4) {
                c.copy_from_slice(&(scale * rng.unit()).to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for c in b.chunks_exact_mut(2) {
                c.copy_from_slice(&f16::from_f32(scale * rng.unit()).to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for c in b.chunks_exact_mut(2) {
                c.copy_from_slice(&half::bf16::from_f32(scale * rng.unit()).to_le_bytes());
            }
        }
        // Scales (and mins) at the start of the block.
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => {
            for blk in b.chunks_exact_mut(bb) {
                blk[..2].copy_from_slice(&small(rng));
            }
        }
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => {
            for blk in b.chunks_exact_mut(bb) {
                blk[..2].copy_from_slice(&small(rng));
                blk[2..4].copy_from_slice(&small(rng));
            }
        }
        // d at the end of the block.
        GgmlType::Q6_K | GgmlType::Q3_K => {
            for blk in b.chunks_exact_mut(bb) {
                let s = small(rng);
                blk[bb - 2..].copy_from_slice(&s);
            }
        }
        GgmlType::Q2_K => {
            for blk in b.chunks_exact_mut(bb) {
                let (s, m) = (small(rng), small(rng));
                blk[bb - 4..bb - 2].copy_from_slice(&s);
                blk[bb - 2..].copy_from_slice(&m);
            }
        }
        GgmlType::Q8_1 | GgmlType::Q8_K => unreachable!("rejected by base_type"),
    }
    b
}

pub fn run(args: Args) -> Result<(), CliError> {
    let shape = SHAPES
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(&args.shape))
        .ok_or_else(|| {
            let names: Vec<&str> = SHAPES.iter().map(|s| s.name).collect();
            format!(
                "unknown shape '{}' (known: {})",
                args.shape,
                names.join(", ")
            )
        })?;
    // Fails early on an existing output without --force, or one that is not a regular file.
    let mut out = AtomicOutput::create(&args.output, args.vocab_from.as_deref(), args.force)?;
    let s = shape;
    let a = s.arch;
    let hd = if s.head_dim > 0 {
        s.head_dim
    } else {
        s.n_embd / s.n_head
    };
    let mut w = GgufWriter::new();
    w.set("general.architecture", OwnedValue::Str(a.into()));
    // No "phi3" in the name: llama.cpp then looks up Phi-3's own vocabulary tokens.
    let label = if a == "phi3" { "phi" } else { s.name };
    w.set(
        "general.name",
        OwnedValue::Str(format!("synthetic {label} {}", args.ty)),
    );
    let counts = [
        ("context_length", s.n_ctx),
        ("embedding_length", s.n_embd),
        ("block_count", s.n_layer),
        ("feed_forward_length", s.n_ff),
        ("attention.head_count", s.n_head),
        ("attention.head_count_kv", s.n_head_kv),
        ("vocab_size", s.n_vocab),
    ];
    for (key, v) in counts {
        w.set(&format!("{a}.{key}"), OwnedValue::U32(v as u32));
    }
    w.set(&format!("{a}.rope.freq_base"), OwnedValue::F32(s.rope_base));
    if s.head_dim > 0 {
        w.set(
            &format!("{a}.attention.key_length"),
            OwnedValue::U32(hd as u32),
        );
        w.set(
            &format!("{a}.attention.value_length"),
            OwnedValue::U32(hd as u32),
        );
    }
    if s.n_rot > 0 {
        w.set(
            &format!("{a}.rope.dimension_count"),
            OwnedValue::U32(s.n_rot as u32),
        );
    }
    if s.longrope_orig > 0 {
        // As llama.cpp's converter: sqrt(1 + ln(n_ctx / original) / ln(original)).
        let scale = s.n_ctx as f64 / s.longrope_orig as f64;
        let attn_factor = (1.0 + scale.ln() / (s.longrope_orig as f64).ln()).sqrt();
        w.set(
            &format!("{a}.rope.scaling.attn_factor"),
            OwnedValue::F32(attn_factor as f32),
        );
        w.set(
            &format!("{a}.rope.scaling.original_context_length"),
            OwnedValue::U32(s.longrope_orig as u32),
        );
    }
    if s.n_swa > 0 {
        w.set(
            &format!("{a}.attention.sliding_window"),
            OwnedValue::U32(s.n_swa as u32),
        );
    }
    if a == "smollm3" {
        // Every fourth layer without RoPE (1 = RoPE), as SmolLM3's converter writes it.
        let layers = (0..s.n_layer).map(|i| OwnedValue::I32(((i + 1) % 4 != 0) as i32));
        w.set(
            &format!("{a}.no_rope_layers"),
            OwnedValue::Array(ValueType::I32, layers.collect()),
        );
    }
    w.set(
        &format!("{a}.attention.layer_norm_rms_epsilon"),
        OwnedValue::F32(1e-5),
    );
    w.set("general.quantization_version", OwnedValue::U32(2));
    if let Some(v) = &args.vocab_from {
        let g = ferrolm::gguf::Gguf::open(v)?;
        let n = g.get_array("tokenizer.ggml.tokens")?.len() as u64;
        if n != s.n_vocab {
            return Err(format!(
                "{} has {n} tokens, the {} shape needs {}",
                v.display(),
                s.name,
                s.n_vocab
            )
            .into());
        }
        for (k, val) in g.metadata() {
            if k.starts_with("tokenizer.") {
                w.set(k, val.to_owned_value());
            }
        }
    }

    // (name, dims, layer, is_vector)
    let mut specs: Vec<(String, Vec<u64>, Option<u64>)> = Vec::new();
    if s.longrope_orig > 0 {
        // First, as llama.cpp's converter writes them: one factor per rotated dimension pair.
        let half = if s.n_rot > 0 { s.n_rot } else { hd } / 2;
        specs.push(("rope_factors_long.weight".into(), vec![half], None));
        specs.push(("rope_factors_short.weight".into(), vec![half], None));
    }
    specs.push(("token_embd.weight".into(), vec![s.n_embd, s.n_vocab], None));
    specs.push(("output_norm.weight".into(), vec![s.n_embd], None));
    if !s.tied {
        specs.push(("output.weight".into(), vec![s.n_embd, s.n_vocab], None));
    }
    for i in 0..s.n_layer {
        let n = |x: &str| format!("blk.{i}.{x}");
        specs.push((n("attn_norm.weight"), vec![s.n_embd], Some(i)));
        let (q, kv) = (s.n_head * hd, s.n_head_kv * hd);
        if a == "phi3" {
            specs.push((n("attn_qkv.weight"), vec![s.n_embd, q + 2 * kv], Some(i)));
        } else {
            specs.push((n("attn_q.weight"), vec![s.n_embd, q], Some(i)));
            specs.push((n("attn_k.weight"), vec![s.n_embd, kv], Some(i)));
            specs.push((n("attn_v.weight"), vec![s.n_embd, kv], Some(i)));
        }
        if a == "qwen2" {
            specs.push((n("attn_q.bias"), vec![q], Some(i)));
            specs.push((n("attn_k.bias"), vec![kv], Some(i)));
            specs.push((n("attn_v.bias"), vec![kv], Some(i)));
        }
        if a == "qwen3" || a == "gemma3" {
            specs.push((n("attn_q_norm.weight"), vec![hd], Some(i)));
            specs.push((n("attn_k_norm.weight"), vec![hd], Some(i)));
        }
        specs.push((
            n("attn_output.weight"),
            vec![s.n_head * hd, s.n_embd],
            Some(i),
        ));
        if a == "gemma3" {
            specs.push((n("post_attention_norm.weight"), vec![s.n_embd], Some(i)));
        }
        specs.push((n("ffn_norm.weight"), vec![s.n_embd], Some(i)));
        if a == "phi3" {
            specs.push((n("ffn_up.weight"), vec![s.n_embd, 2 * s.n_ff], Some(i)));
        } else {
            specs.push((n("ffn_gate.weight"), vec![s.n_embd, s.n_ff], Some(i)));
            specs.push((n("ffn_up.weight"), vec![s.n_embd, s.n_ff], Some(i)));
        }
        specs.push((n("ffn_down.weight"), vec![s.n_ff, s.n_embd], Some(i)));
        if a == "gemma3" {
            specs.push((n("post_ffw_norm.weight"), vec![s.n_embd], Some(i)));
        }
    }
    // llama-quantize's order, so that its attn_v / ffn_down counters count as they do there.
    let mut order: Vec<usize> = (0..specs.len()).collect();
    order.sort_by(|&i, &j| ferrolm_quantize::ftype::quantize_order(&specs[i].0, &specs[j].0));
    let names: Vec<&str> = specs.iter().map(|(n, _, _)| n.as_str()).collect();
    let mut chooser = type_chooser(&args.ty, &names, s.n_layer)?;
    let mut types = vec![GgmlType::F32; specs.len()];
    for &i in &order {
        let (name, dims, _) = &specs[i];
        if let Some(c) = chooser.choose(name, dims)? {
            types[i] = c.ty;
        }
    }
    for ((name, dims, _), ty) in specs.iter().zip(&types) {
        w.add_tensor(TensorSpec {
            name: name.clone(),
            ty: *ty,
            dims: dims.clone(),
        })?;
    }
    // Written to a temporary file beside the target and renamed at the end; Ctrl-C or SIGTERM
    // stops between tensors and removes it.
    let cancel = ferrolm::output::cancel_on_signals();
    let file = out.file().try_clone()?;
    let mut stream = w.begin(BufWriter::with_capacity(1 << 20, file))?;
    let mut rng = Rng(args.seed);
    for ((name, dims, _), ty) in specs.iter().zip(&types) {
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err("interrupted; no output was written".into());
        }
        let spec = TensorSpec {
            name: name.clone(),
            ty: *ty,
            dims: dims.clone(),
        };
        let n = spec.n_bytes().ok_or("tensor size overflows")? as usize;
        let bytes = if let Some(kind) = name.strip_prefix("rope_factors_") {
            // Frequency divisors: rising to 1 + 0.25 i (long) or 1 + 0.02 i (short).
            let step = if kind.starts_with("long") { 0.25 } else { 0.02 };
            (0..dims[0])
                .flat_map(|i| (1.0 + step * i as f32).to_le_bytes())
                .collect()
        } else if dims.len() == 1 {
            // Norm weights near 1, biases near 0.
            let v: f32 = if name.contains("norm") { 1.0 } else { 0.0 };
            (0..dims[0])
                .flat_map(|_| (v + 0.01 * rng.unit()).to_le_bytes())
                .collect()
        } else {
            random_bytes(*ty, n, &mut rng, 0.05)
        };
        stream.write_tensor(&bytes)?;
    }
    stream.finish()?.into_inner().map_err(|e| e.into_error())?;
    out.file().sync_all()?;
    drop_cached_pages(out.file());
    out.commit()?;
    let size = std::fs::metadata(&args.output)?.len();
    eprintln!(
        "wrote {} ({} {}, {:.1} MB)",
        args.output.display(),
        s.name,
        args.ty,
        size as f64 / 1e6
    );
    Ok(())
}

/// Drops the page cache's copy of a written (and synced) file, so that its first load reads it
/// back in 2 MiB pages (the loader asks for them) rather than keeping the 4 KiB pages the writes
/// left: a synthetic model exists to be benchmarked, and decode is much slower from 4 KiB pages.
fn drop_cached_pages(f: &std::fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: plain syscall on an open descriptor we own; only a hint, errors are ignored.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = f;
}

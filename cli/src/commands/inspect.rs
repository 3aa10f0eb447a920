//! `ferrolm inspect FILE [--json]`: architecture, metadata, tensor table, parameter count, bits per weight.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ferrolm::gguf::{Gguf, Value};
use serde_json::json;

use super::CliError;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GGUF file.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Show at most this many elements of each array (longer arrays are summarized).
    #[arg(long, default_value_t = 8)]
    pub max_array: usize,
}

/// llama.cpp's `general.file_type` names (`llama_ftype`).
pub fn file_type_name(ft: u32) -> &'static str {
    match ft {
        0 => "ALL_F32",
        1 => "MOSTLY_F16",
        2 => "MOSTLY_Q4_0",
        3 => "MOSTLY_Q4_1",
        7 => "MOSTLY_Q8_0",
        8 => "MOSTLY_Q5_0",
        9 => "MOSTLY_Q5_1",
        10 => "MOSTLY_Q2_K",
        11 => "MOSTLY_Q3_K_S",
        12 => "MOSTLY_Q3_K_M",
        13 => "MOSTLY_Q3_K_L",
        14 => "MOSTLY_Q4_K_S",
        15 => "MOSTLY_Q4_K_M",
        16 => "MOSTLY_Q5_K_S",
        17 => "MOSTLY_Q5_K_M",
        18 => "MOSTLY_Q6_K",
        32 => "MOSTLY_BF16",
        _ => "unknown",
    }
}

fn value_json(v: &Value<'_>, max_array: usize) -> serde_json::Value {
    match *v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F32(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Bool(x) => json!(x),
        Value::Str(s) => json!(s),
        Value::Array(a) => {
            let head: Vec<_> = a
                .iter()
                .take(max_array)
                .map(|e| value_json(&e, max_array))
                .collect();
            if a.len() <= max_array {
                json!(head)
            } else {
                json!({"type": "array", "elem_type": a.elem_type().name(), "len": a.len(), "head": head})
            }
        }
    }
}

fn value_text(v: &Value<'_>, max_array: usize) -> String {
    match *v {
        Value::Str(s) => {
            let s: String = s.chars().take(200).collect();
            format!("{s:?}")
        }
        Value::Array(a) => {
            let head: Vec<String> = a
                .iter()
                .take(max_array)
                .map(|e| value_text(&e, max_array))
                .collect();
            if a.len() <= max_array {
                format!("[{}]", head.join(", "))
            } else {
                format!(
                    "[{}, ...] ({} x {})",
                    head.join(", "),
                    a.len(),
                    a.elem_type().name()
                )
            }
        }
        ref other => other.to_string(),
    }
}

pub fn run(args: Args) -> Result<(), CliError> {
    let g = Gguf::open(&args.file)?;
    let arch = g.architecture().unwrap_or("(none)").to_string();
    let n_params: u64 = g.tensors().map(|t| t.n_elements()).sum();
    let n_bytes: u64 = g.tensors().map(|t| t.data.len() as u64).sum();
    let bpw = if n_params > 0 {
        n_bytes as f64 * 8.0 / n_params as f64
    } else {
        0.0
    };
    let file_type = g.get_u32("general.file_type").ok();
    let mut type_counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in g.tensors() {
        *type_counts.entry(t.ty.name()).or_default() += 1;
    }
    let blocks = g.get_u32(&format!("{arch}.block_count")).ok();
    let n_vocab = g.get_array("tokenizer.ggml.tokens").map(|a| a.len()).ok();

    if args.json {
        // Streamed: one metadata entry or tensor at a time goes to stdout, so memory stays at the
        // parsed index of the file (one serde_json::Value costs many times the file).
        use serde::ser::{SerializeMap, Serializer};
        let stdout = std::io::stdout();
        let mut ser = serde_json::Serializer::pretty(std::io::BufWriter::new(stdout.lock()));
        let mut m = ser.serialize_map(None)?;
        m.serialize_entry("file", &args.file.display().to_string())?;
        m.serialize_entry("gguf_version", &g.version())?;
        m.serialize_entry("alignment", &g.alignment())?;
        m.serialize_entry("architecture", &arch)?;
        m.serialize_entry("block_count", &blocks)?;
        m.serialize_entry("n_vocab", &n_vocab)?;
        m.serialize_entry(
            "file_type",
            &file_type.map(|f| json!({"id": f, "name": file_type_name(f)})),
        )?;
        m.serialize_entry("n_params", &n_params)?;
        m.serialize_entry("tensor_bytes", &n_bytes)?;
        m.serialize_entry("bits_per_weight", &bpw)?;
        m.serialize_entry("tensor_types", &type_counts)?;
        m.serialize_entry(
            "metadata",
            &Lazy(|s: &mut dyn FnMut(serde_json::Value, serde_json::Value) -> bool| {
                for (k, v) in g.metadata() {
                    let val = json!({"type": v.value_type().name(), "value": value_json(&v, args.max_array)});
                    if !s(json!(k), val) {
                        return;
                    }
                }
            }, true),
        )?;
        m.serialize_entry(
            "tensors",
            &Lazy(|s: &mut dyn FnMut(serde_json::Value, serde_json::Value) -> bool| {
                for t in g.tensor_infos() {
                    let val = json!({"name": g.tensor_name(t), "type": t.ty.name(), "shape": t.shape(),
                           "offset": t.offset, "n_bytes": t.n_bytes});
                    if !s(serde_json::Value::Null, val) {
                        return;
                    }
                }
            }, false),
        )?;
        m.end()?;
        let mut w = ser.into_inner();
        std::io::Write::write_all(&mut w, b"\n")?;
        std::io::Write::flush(&mut w)?;
        return Ok(());
    }

    println!("file:          {}", args.file.display());
    println!(
        "gguf version:  {} (alignment {})",
        g.version(),
        g.alignment()
    );
    println!("architecture:  {arch}");
    if let Some(b) = blocks {
        println!("blocks:        {b}");
    }
    if let Some(v) = n_vocab {
        println!("vocab:         {v}");
    }
    if let Some(f) = file_type {
        println!("file type:     {} ({f})", file_type_name(f));
    }
    println!("parameters:    {n_params} ({:.1} M)", n_params as f64 / 1e6);
    println!(
        "tensor bytes:  {n_bytes} ({:.1} MiB), {bpw:.2} bits per weight",
        n_bytes as f64 / (1 << 20) as f64
    );
    let counts: Vec<String> = type_counts
        .iter()
        .map(|(t, n)| format!("{t}: {n}"))
        .collect();
    println!("tensor types:  {}", counts.join(", "));
    println!("\nmetadata ({} keys):", g.n_metadata());
    for (k, v) in g.metadata() {
        println!(
            "  {k:<40} {:<8} {}",
            v.value_type().name(),
            value_text(&v, args.max_array)
        );
    }
    println!("\ntensors ({}):", g.n_tensors());
    println!(
        "  {:<36} {:<5} {:<22} {:>12} {:>12}",
        "name", "type", "shape", "offset", "bytes"
    );
    for t in g.tensor_infos() {
        let shape: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
        println!(
            "  {:<36} {:<5} {:<22} {:>12} {:>12}",
            g.tensor_name(t),
            t.ty.name(),
            format!("[{}]", shape.join(", ")),
            t.offset,
            t.n_bytes
        );
    }
    Ok(())
}

/// A JSON object (`map`) or array whose entries a closure produces one at a time, so that a file
/// with millions of metadata entries is written without holding them all.
struct Lazy<F>(F, bool);

impl<F> serde::Serialize for Lazy<F>
where
    F: Fn(&mut dyn FnMut(serde_json::Value, serde_json::Value) -> bool),
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap, SerializeSeq};
        // A failed entry stops the walk; its error is returned once the walk is over.
        fn keep<E: std::fmt::Display>(r: Result<(), E>, err: &mut Option<String>) -> bool {
            r.map_err(|e| *err = Some(e.to_string())).is_ok()
        }
        let mut err = None;
        if self.1 {
            let mut m = s.serialize_map(None)?;
            (self.0)(&mut |k, v| keep(m.serialize_entry(&k, &v), &mut err));
            err.map_or(Ok(()), |e| Err(S::Error::custom(e)))?;
            m.end()
        } else {
            let mut q = s.serialize_seq(None)?;
            (self.0)(&mut |_, v| keep(q.serialize_element(&v), &mut err));
            err.map_or(Ok(()), |e| Err(S::Error::custom(e)))?;
            q.end()
        }
    }
}

//! Output file types and the per-tensor type choice, as llama.cpp makes it. One copy of the rules,
//! used by the converter (`quantize`) and by `ferrolm synth`.
//!
//! Two rule sets exist upstream and both are reproduced here:
//! - `convert_hf_to_gguf.py --outtype {f32,f16,bf16,q8_0}` ([`convert_type`]): 1-D tensors and
//!   norms are F32, every other tensor takes the outtype (Q8_0 falls back to F16 when a row is not
//!   a whole number of 32-blocks).
//! - `llama-quantize` ([`TypeChooser`], `llama_tensor_get_type` in `src/llama-quant.cpp`): the
//!   output tensor (or a tied `token_embd`) gets Q6_K, `attn_v`/`ffn_down` get Q6_K in the
//!   "more bits" layers of the `_M` mixes, and a type whose block does not divide the row length
//!   falls back (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16).

use ferrolm_kernels::GgmlType;

/// A type name or a shape the rules cannot serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FtypeError {
    #[error("unknown output type {0:?} (one of: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K_M, Q5_K_M, Q6_K)")]
    UnknownType(String),
    #[error("tensor '{tensor}': row length {ne0} is not a multiple of the {ty} block size {block} and no fallback type fits")]
    IncompatibleShape {
        tensor: String,
        ne0: u64,
        ty: GgmlType,
        block: usize,
    },
}

/// An output type as `quantize IN OUT TYPE` takes it (llama.cpp's `llama_ftype`).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4_K_M,
    Q5_K_M,
    Q6_K,
}

impl FileType {
    pub const ALL: [FileType; 11] = [
        FileType::F32,
        FileType::F16,
        FileType::BF16,
        FileType::Q8_0,
        FileType::Q4_0,
        FileType::Q4_1,
        FileType::Q5_0,
        FileType::Q5_1,
        FileType::Q4_K_M,
        FileType::Q5_K_M,
        FileType::Q6_K,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FileType::F32 => "F32",
            FileType::F16 => "F16",
            FileType::BF16 => "BF16",
            FileType::Q8_0 => "Q8_0",
            FileType::Q4_0 => "Q4_0",
            FileType::Q4_1 => "Q4_1",
            FileType::Q5_0 => "Q5_0",
            FileType::Q5_1 => "Q5_1",
            FileType::Q4_K_M => "Q4_K_M",
            FileType::Q5_K_M => "Q5_K_M",
            FileType::Q6_K => "Q6_K",
        }
    }

    /// Parse a type name, case-insensitively.
    pub fn parse(s: &str) -> Result<FileType, FtypeError> {
        FileType::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| FtypeError::UnknownType(s.to_string()))
    }

    /// `general.file_type` (`LLAMA_FTYPE_*`).
    pub fn id(self) -> u32 {
        match self {
            FileType::F32 => 0,
            FileType::F16 => 1,
            FileType::Q4_0 => 2,
            FileType::Q4_1 => 3,
            FileType::Q8_0 => 7,
            FileType::Q5_0 => 8,
            FileType::Q5_1 => 9,
            FileType::Q4_K_M => 15,
            FileType::Q5_K_M => 17,
            FileType::Q6_K => 18,
            FileType::BF16 => 32,
        }
    }

    /// The tensor type most weights get.
    pub fn default_type(self) -> GgmlType {
        match self {
            FileType::F32 => GgmlType::F32,
            FileType::F16 => GgmlType::F16,
            FileType::BF16 => GgmlType::BF16,
            FileType::Q8_0 => GgmlType::Q8_0,
            FileType::Q4_0 => GgmlType::Q4_0,
            FileType::Q4_1 => GgmlType::Q4_1,
            FileType::Q5_0 => GgmlType::Q5_0,
            FileType::Q5_1 => GgmlType::Q5_1,
            FileType::Q4_K_M => GgmlType::Q4_K,
            FileType::Q5_K_M => GgmlType::Q5_K,
            FileType::Q6_K => GgmlType::Q6_K,
        }
    }

    /// True for the types `convert_hf_to_gguf.py` writes itself; the others are what
    /// `llama-quantize` makes from its output.
    pub fn is_direct_convert(self) -> bool {
        matches!(
            self,
            FileType::F32 | FileType::F16 | FileType::BF16 | FileType::Q8_0
        )
    }

    pub fn is_quantized(self) -> bool {
        self.default_type().is_quantized()
    }
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// ggml_n_dims: dimensions with trailing 1s dropped (at least 1).
fn n_dims(dims: &[u64]) -> usize {
    let mut n = dims.len();
    while n > 1 && dims[n - 1] == 1 {
        n -= 1;
    }
    n.max(1)
}

/// convert_hf_to_gguf.py's type for one tensor at `--outtype ftype` (ftype one of F32, F16, BF16,
/// Q8_0).
pub fn convert_type(ftype: FileType, name: &str, dims: &[u64]) -> GgmlType {
    if n_dims(dims) == 1 || name.ends_with("_norm.weight") || ftype == FileType::F32 {
        return GgmlType::F32;
    }
    let t = ftype.default_type();
    if t == GgmlType::Q8_0 && !dims[0].is_multiple_of(32) {
        return GgmlType::F16;
    }
    t
}

/// Whether llama-quantize quantizes this tensor at all (`tensor_allows_quantization`).
pub fn allows_quantization(name: &str, dims: &[u64]) -> bool {
    if n_dims(dims) < 2 || !name.ends_with("weight") {
        return false;
    }
    const NEVER: [&str; 6] = [
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ssm_conv1d",
        "time_mix_first.weight",
        "attn_rel_b.weight",
        "altup",
    ];
    if NEVER.iter().any(|s| name.contains(s)) {
        return false;
    }
    name != "position_embd.weight" && name != "token_types.weight"
}

/// The result of choosing one tensor's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    pub ty: GgmlType,
    /// The first choice did not fit the row length and a fallback type was used.
    pub fallback: bool,
}

/// `llama_tensor_get_type` with its running counters. Feed it the tensors in llama-quantize's
/// order (see [`quantize_order`]): the `attn_v` counter counts in that order.
#[derive(Debug)]
pub struct TypeChooser {
    ftype: FileType,
    /// llama-quantize `--pure`: every quantized tensor takes this type (fallbacks still apply).
    pure: Option<GgmlType>,
    has_output: bool,
    n_attention_wv: usize,
    i_attention_wv: usize,
    n_ffn_down: usize,
    i_ffn_down: usize,
}

fn use_more_bits(i_layer: usize, n_layers: usize) -> bool {
    // The first and last eighth, and every third layer in between.
    i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2
}

impl TypeChooser {
    /// `names`: every tensor of the model; `n_layer`: `{arch}.block_count`.
    pub fn new<'a>(
        ftype: FileType,
        names: impl IntoIterator<Item = &'a str>,
        n_layer: usize,
    ) -> TypeChooser {
        let mut has_output = false;
        let mut n_attention_wv = 0;
        for n in names {
            if n.contains("attn_v.weight")
                || n.contains("attn_qkv.weight")
                || n.contains("attn_kv_b.weight")
            {
                n_attention_wv += 1;
            } else if n == "output.weight" {
                has_output = true;
            }
        }
        TypeChooser {
            ftype,
            pure: None,
            has_output,
            n_attention_wv,
            i_attention_wv: 0,
            n_ffn_down: n_layer,
            i_ffn_down: 0,
        }
    }

    /// llama-quantize `--pure` with `ty` (any weight type, e.g. Q2_K or Q4_K alone): every tensor
    /// that is quantized at all takes `ty`, or its fallback when the row length does not fit.
    pub fn pure(ty: GgmlType) -> TypeChooser {
        TypeChooser {
            ftype: FileType::F32,
            pure: Some(ty),
            has_output: false,
            n_attention_wv: 0,
            i_attention_wv: 0,
            n_ffn_down: 0,
            i_ffn_down: 0,
        }
    }

    /// The type for `name`; `None` when the tensor is not quantized (it keeps its type).
    pub fn choose(&mut self, name: &str, dims: &[u64]) -> Result<Option<Choice>, FtypeError> {
        if !allows_quantization(name, dims) {
            return Ok(None);
        }
        if let Some(ty) = self.pure {
            return fit(name, dims[0], ty);
        }
        let default = self.ftype.default_type();
        if !self.ftype.is_quantized() {
            return Ok(Some(Choice {
                ty: default,
                fallback: false,
            }));
        }
        let mix_m = matches!(self.ftype, FileType::Q4_K_M | FileType::Q5_K_M);
        let ne0 = dims[0];
        let mut ty = default;
        if name == "output.weight" || (!self.has_output && name == "token_embd.weight") {
            if !ne0.is_multiple_of(ty.block_elems() as u64) {
                ty = GgmlType::Q8_0;
            } else if ty != GgmlType::Q8_0 {
                ty = GgmlType::Q6_K;
            }
        } else if name == "token_embd.weight" {
            // the base type
        } else if name.contains("attn_v.weight") {
            if mix_m && use_more_bits(self.i_attention_wv, self.n_attention_wv) {
                ty = GgmlType::Q6_K;
            }
            self.i_attention_wv += 1;
        } else if name.contains("attn_qkv.weight") {
            match self.ftype {
                FileType::Q4_K_M => ty = GgmlType::Q5_K,
                FileType::Q5_K_M => ty = GgmlType::Q6_K,
                _ => {}
            }
        } else if name.contains("ffn_down") {
            if mix_m && use_more_bits(self.i_ffn_down, self.n_ffn_down) {
                ty = GgmlType::Q6_K;
            }
            self.i_ffn_down += 1;
        }

        fit(name, ne0, ty)
    }
}

/// `ty` when rows of `ne0` elements are whole blocks of it, else llama-quantize's fallback
/// (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16).
fn fit(name: &str, ne0: u64, ty: GgmlType) -> Result<Option<Choice>, FtypeError> {
    if ne0.is_multiple_of(ty.block_elems() as u64) {
        return Ok(Some(Choice {
            ty,
            fallback: false,
        }));
    }
    let fb = match ty {
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        _ => {
            return Err(FtypeError::IncompatibleShape {
                tensor: name.to_string(),
                ne0,
                ty,
                block: ty.block_elems(),
            })
        }
    };
    let fb = if !ne0.is_multiple_of(fb.block_elems() as u64) {
        GgmlType::F16
    } else {
        fb
    };
    Ok(Some(Choice {
        ty: fb,
        fallback: true,
    }))
}

/// The block number of `blk.N.*`, or -1.
fn layer_of(name: &str) -> i64 {
    name.strip_prefix("blk.")
        .and_then(|r| r.split('.').next())
        .and_then(|n| n.parse::<i64>().ok())
        .unwrap_or(-1)
}

/// llama-quantize's tensor order (llama_model_loader's `weight_name_comparer`): non-block tensors
/// first, then by block number, names compared bytewise within the same block.
pub fn quantize_order(a: &str, b: &str) -> std::cmp::Ordering {
    layer_of(a).cmp(&layer_of(b)).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_bits_layers_match_llama_cpp() {
        let l: Vec<usize> = (0..30).filter(|&i| use_more_bits(i, 30)).collect();
        assert_eq!(l, [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]);
        let l: Vec<usize> = (0..4).filter(|&i| use_more_bits(i, 4)).collect();
        assert_eq!(l, [2, 3]);
    }

    #[test]
    fn tied_embedding_576_wide() {
        let names = ["token_embd.weight", "blk.0.attn_v.weight"];
        // Q4_K_M's output type Q6_K, and Q4_0's Q8_0 rule for a tied embedding: Q8_0 either way,
        // a fallback only for Q4_0 (its own type does not fit 576 either).
        for (ft, fallback) in [(FileType::Q4_K_M, false), (FileType::Q4_0, true)] {
            let mut c = TypeChooser::new(ft, names, 1);
            let ch = c.choose("token_embd.weight", &[576, 49152]).unwrap();
            let want = Choice {
                ty: GgmlType::Q8_0,
                fallback,
            };
            assert_eq!(ch, Some(want), "{ft:?}");
            // A 1-D norm is not quantized.
            assert_eq!(c.choose("blk.0.attn_norm.weight", &[576]).unwrap(), None);
        }
    }

    #[test]
    fn order() {
        let mut v = vec![
            "blk.10.a",
            "token_embd.weight",
            "blk.2.b",
            "blk.2.a",
            "output.weight",
            "output_norm.weight",
        ];
        v.sort_by(|a, b| quantize_order(a, b));
        assert_eq!(
            v,
            [
                "output.weight",
                "output_norm.weight",
                "token_embd.weight",
                "blk.2.a",
                "blk.2.b",
                "blk.10.a"
            ]
        );
    }

    #[test]
    fn parse_names() {
        assert_eq!(FileType::parse("q4_k_m").unwrap(), FileType::Q4_K_M);
        assert!(matches!(
            FileType::parse("Q3_K"),
            Err(FtypeError::UnknownType(_))
        ));
    }
}

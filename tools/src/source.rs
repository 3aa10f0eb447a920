//! Source tensors, from either input kind, read row by row into f32 straight from a memory map.

use ferrolm_kernels::scalar::float::{bf16_to_f32, f16_to_f32, f32_to_f16};
use ferrolm_kernels::{dispatch, GgmlType};
use memmap2::Mmap;
#[cfg(unix)]
use memmap2::UncheckedAdvice;

use crate::error::QuantizeError;

/// How a source tensor's elements are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    F32,
    F16,
    BF16,
    /// A ggml block type from a GGUF input (F32/F16/BF16 GGUF tensors use the variants above).
    Ggml(GgmlType),
}

impl Elem {
    pub fn from_ggml(t: GgmlType) -> Elem {
        match t {
            GgmlType::F32 => Elem::F32,
            GgmlType::F16 => Elem::F16,
            GgmlType::BF16 => Elem::BF16,
            t => Elem::Ggml(t),
        }
    }

    pub fn ggml(self) -> GgmlType {
        match self {
            Elem::F32 => GgmlType::F32,
            Elem::F16 => GgmlType::F16,
            Elem::BF16 => GgmlType::BF16,
            Elem::Ggml(t) => t,
        }
    }

    /// Bytes of a row of `n` elements (`n` a whole number of blocks).
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        self.ggml().row_bytes(n)
    }
}

/// A tensor as it will be written: GGUF name and shape, where its bytes are, and the Q/K row
/// permutation to apply while reading.
#[derive(Clone, Debug)]
pub struct SrcTensor {
    pub name: String,
    /// The safetensors name, for a checkpoint tensor.
    pub hf_name: Option<String>,
    /// ne0 (contiguous) first.
    pub dims: Vec<u64>,
    pub elem: Elem,
    /// Which map holds the bytes.
    pub map: usize,
    /// Absolute byte range in that map.
    pub start: usize,
    pub len: usize,
    /// `Some(n_head)`: interleave the rotate-half Q/K rows per head for the llama RoPE layout
    /// (convert_hf_to_gguf.py's `LlamaModel.permute`).
    pub permute: Option<u64>,
    /// Add 1 to every value (Gemma's RMS norm weights are stored as offsets from 1). For an F16
    /// source the sum is rounded to F16, as the converter adds in the tensor's own type.
    pub add_one: bool,
}

impl SrcTensor {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// The source row an output row comes from (rows of ne0 elements). For a permuted tensor with
    /// `rph` rows per head, output row (h, i, j) (j in {0,1}) is input row (h, j, i).
    fn src_row(&self, r: u64, rows: u64) -> u64 {
        match self.permute {
            Some(heads) if heads > 0 => {
                let rph = rows / heads;
                let half = rph / 2;
                let (h, rem) = (r / rph, r % rph);
                h * rph + (rem % 2) * half + rem / 2
            }
            _ => r,
        }
    }

    /// Fill `out` (k rows of ne0) with rows `first..first+k` as f32.
    pub fn read_rows(&self, map: &[u8], first: u64, out: &mut [f32]) -> Result<(), QuantizeError> {
        let ne0 = self.dims[0];
        if self.dims.len() == 1 && self.permute.is_some() {
            // A permuted bias: the permutation acts on single elements.
            let one = SrcTensor {
                dims: vec![1, ne0],
                ..self.clone()
            };
            for (i, o) in out.iter_mut().enumerate() {
                one.read_rows(map, i as u64, std::slice::from_mut(o))?;
            }
            return Ok(());
        }
        let rows: u64 = self.dims[1..].iter().product();
        let rb = self
            .elem
            .row_bytes(ne0)
            .ok_or_else(|| QuantizeError::Kernel(format!("{}: bad row length", self.name)))?
            as usize;
        let data = &map[self.start..self.start + self.len];
        for (k, orow) in out.chunks_exact_mut(ne0 as usize).enumerate() {
            let sr = self.src_row(first + k as u64, rows) as usize;
            let src = &data[sr * rb..(sr + 1) * rb];
            match self.elem {
                Elem::F32 => {
                    for (o, b) in orow.iter_mut().zip(src.chunks_exact(4)) {
                        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    }
                }
                Elem::F16 => {
                    for (o, b) in orow.iter_mut().zip(src.chunks_exact(2)) {
                        *o = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
                    }
                }
                Elem::BF16 => {
                    for (o, b) in orow.iter_mut().zip(src.chunks_exact(2)) {
                        *o = bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
                    }
                }
                Elem::Ggml(t) => {
                    dispatch::dequantize_row(t, src, orow)
                        .map_err(|e| QuantizeError::Kernel(format!("{}: {e}", self.name)))?;
                }
            }
            if self.add_one {
                for o in orow.iter_mut() {
                    *o = match self.elem {
                        Elem::F16 => f16_to_f32(f32_to_f16(*o + 1.0)),
                        _ => *o + 1.0,
                    };
                }
            }
        }
        Ok(())
    }
}

/// Tell the kernel the pages of `start..start+len` are no longer needed, so a converted tensor's
/// input does not stay resident. Best effort: errors are ignored.
#[cfg(unix)]
pub(crate) fn release(map: &Mmap, start: usize, len: usize) {
    let page = 4096usize;
    let s = start.div_ceil(page) * page;
    let e = (start + len) / page * page;
    if e > s {
        // SAFETY: the map is a read-only, file-backed mapping. MADV_DONTNEED only drops its
        // resident pages; later reads fault them back in from the file, with the same contents.
        let _ = unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, s, e - s) };
    }
}

/// Elsewhere the pages stay mapped until the map is dropped.
#[cfg(not(unix))]
pub(crate) fn release(_map: &Mmap, _start: usize, _len: usize) {}

//! The GGUF v3 writer: metadata and tensor infos up front (every tensor's size follows from its type
//! and shape), then tensor data streamed in declaration order, each aligned.

use std::io::Write;

use ferrolm_kernels::GgmlType;

use super::value::OwnedValue;
use super::{GgufError, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};

/// A tensor to be written: name, type and shape (ne0 first).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub ty: GgmlType,
    pub dims: Vec<u64>,
}

impl TensorSpec {
    pub fn n_bytes(&self) -> Option<u64> {
        let rows = self
            .dims
            .iter()
            .skip(1)
            .try_fold(1u64, |a, &d| a.checked_mul(d))?;
        self.ty
            .row_bytes(*self.dims.first().unwrap_or(&1))?
            .checked_mul(rows)
    }
}

/// Collects metadata and tensor specs, then streams the file.
#[derive(Clone, Debug, Default)]
pub struct GgufWriter {
    meta: Vec<(String, OwnedValue)>,
    tensors: Vec<TensorSpec>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set a key (replacing its value in place if present, else appending).
    pub fn set(&mut self, key: &str, value: OwnedValue) {
        match self.meta.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.meta.push((key.to_string(), value)),
        }
    }

    /// Remove a key if present.
    pub fn remove(&mut self, key: &str) {
        self.meta.retain(|(k, _)| k != key);
    }

    pub fn metadata(&self) -> &[(String, OwnedValue)] {
        &self.meta
    }

    pub fn tensors(&self) -> &[TensorSpec] {
        &self.tensors
    }

    /// Declare a tensor. Its data must later be written in declaration order.
    pub fn add_tensor(&mut self, spec: TensorSpec) -> Result<(), GgufError> {
        if spec.dims.is_empty() || spec.dims.len() > MAX_DIMS as usize {
            return Err(GgufError::TooManyDims {
                name: spec.name.clone(),
                n_dims: spec.dims.len() as u32,
            });
        }
        if self.tensors.iter().any(|t| t.name == spec.name) {
            return Err(GgufError::DuplicateTensor(spec.name));
        }
        if spec.ty.row_bytes(spec.dims[0]).is_none() {
            return Err(GgufError::BadRowLength {
                name: spec.name.clone(),
                ty: spec.ty,
                ne0: spec.dims[0],
                block: spec.ty.block_elems(),
            });
        }
        if spec.n_bytes().is_none() {
            return Err(GgufError::ShapeOverflow {
                name: spec.name.clone(),
                shape: spec.dims.clone(),
            });
        }
        self.tensors.push(spec);
        Ok(())
    }

    fn alignment(&self) -> Result<u64, GgufError> {
        match self.meta.iter().find(|(k, _)| k == "general.alignment") {
            None => Ok(DEFAULT_ALIGNMENT),
            Some((_, OwnedValue::U32(a))) if *a != 0 && a.is_power_of_two() => Ok(*a as u64),
            Some((_, OwnedValue::U32(a))) => Err(GgufError::BadAlignment(*a as u64)),
            Some((_, v)) => Err(GgufError::wrong_type(
                "general.alignment",
                "UINT32",
                v.value_type(),
            )),
        }
    }

    /// Write the header, metadata, tensor infos and padding; returns a stream that takes the tensor
    /// data in declaration order.
    pub fn begin<W: Write>(self, mut w: W) -> Result<GgufStream<W>, GgufError> {
        let alignment = self.alignment()?;
        let mut head = Vec::new();
        head.extend_from_slice(&GGUF_MAGIC);
        head.extend_from_slice(&3u32.to_le_bytes());
        head.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        head.extend_from_slice(&(self.meta.len() as u64).to_le_bytes());
        for (k, v) in &self.meta {
            put_str(&mut head, k);
            head.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut head, k, v, 1)?;
        }
        let mut offset = 0u64;
        let mut sizes = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            put_str(&mut head, &t.name);
            head.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                head.extend_from_slice(&d.to_le_bytes());
            }
            head.extend_from_slice(&t.ty.id().to_le_bytes());
            head.extend_from_slice(&offset.to_le_bytes());
            let n = t.n_bytes().unwrap_or(0); // validated in add_tensor
            sizes.push(n);
            offset += n.div_ceil(alignment) * alignment;
        }
        let pad = (head.len() as u64).div_ceil(alignment) * alignment - head.len() as u64;
        head.resize(head.len() + pad as usize, 0);
        w.write_all(&head)?;
        Ok(GgufStream {
            w,
            specs: self.tensors,
            sizes,
            next: 0,
            alignment,
        })
    }

    /// Convenience: write a whole file whose tensor data is in memory, in declaration order.
    pub fn write_all<W: Write>(self, w: W, data: &[&[u8]]) -> Result<W, GgufError> {
        let mut s = self.begin(w)?;
        for d in data {
            s.write_tensor(d)?;
        }
        s.finish()
    }
}

/// Streams tensor data after the header.
pub struct GgufStream<W: Write> {
    w: W,
    specs: Vec<TensorSpec>,
    sizes: Vec<u64>,
    next: usize,
    alignment: u64,
}

impl<W: Write> GgufStream<W> {
    /// The spec of the tensor whose data comes next, if any.
    pub fn next_spec(&self) -> Option<&TensorSpec> {
        self.specs.get(self.next)
    }

    /// Write the next tensor's data (exactly its byte size), followed by alignment padding.
    pub fn write_tensor(&mut self, data: &[u8]) -> Result<(), GgufError> {
        let spec = self.specs.get(self.next).ok_or_else(|| {
            GgufError::Write(format!(
                "more tensor data than the {} tensors declared",
                self.specs.len()
            ))
        })?;
        let want = self.sizes[self.next];
        if data.len() as u64 != want {
            return Err(GgufError::Write(format!(
                "tensor '{}' ({} {:?}) needs {} bytes, got {}",
                spec.name,
                spec.ty,
                spec.dims,
                want,
                data.len()
            )));
        }
        self.w.write_all(data)?;
        let pad = want.div_ceil(self.alignment) * self.alignment - want;
        if pad > 0 {
            self.w.write_all(&vec![0u8; pad as usize])?;
        }
        self.next += 1;
        Ok(())
    }

    /// Check every declared tensor was written; flush and return the writer.
    pub fn finish(mut self) -> Result<W, GgufError> {
        if self.next != self.specs.len() {
            return Err(GgufError::Write(format!(
                "only {} of {} tensors were written (next: '{}')",
                self.next,
                self.specs.len(),
                self.specs[self.next].name
            )));
        }
        self.w.flush()?;
        Ok(self.w)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, key: &str, v: &OwnedValue, depth: u32) -> Result<(), GgufError> {
    match v {
        OwnedValue::U8(x) => out.push(*x),
        OwnedValue::I8(x) => out.push(*x as u8),
        OwnedValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        OwnedValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        OwnedValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        OwnedValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        OwnedValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        OwnedValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        OwnedValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        OwnedValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        OwnedValue::Bool(x) => out.push(*x as u8),
        OwnedValue::Str(s) => put_str(out, s),
        OwnedValue::Array(elem, items) => {
            if depth > MAX_ARRAY_DEPTH {
                return Err(GgufError::TooDeep {
                    key: key.to_string(),
                    limit: MAX_ARRAY_DEPTH,
                });
            }
            out.extend_from_slice(&(*elem as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                if it.value_type() != *elem {
                    return Err(GgufError::Write(format!(
                        "array '{key}' of {} holds a {}",
                        elem.name(),
                        it.value_type().name()
                    )));
                }
                put_value(out, key, it, depth + 1)?;
            }
        }
    }
    Ok(())
}
